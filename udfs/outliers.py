"""Outlier scores and fences on plain numpy arrays (no Spark), after cleanlab
and FiftyOne Brain (docs/methods.md, "Outlier scores and fences")."""
from __future__ import annotations

import numpy as np

_EPS = 100 * np.finfo(np.float64).eps


def knn_outlier_scores(mean_knn_distance: np.ndarray) -> np.ndarray:
    """cleanlab's out-of-distribution score from embeddings
    (`cleanlab.outlier.OutOfDistribution`, features mode):
    exp(−d / median(d)), d = mean distance to the k nearest neighbours.
    1 = typical, → 0 = far from everything. NaNs stay NaN and are ignored in
    the median; a median of 0 is floored at a tiny epsilon like cleanlab."""
    d = np.asarray(mean_knn_distance, dtype=np.float64)
    if d.size == 0 or np.all(np.isnan(d)):
        return np.full(d.shape, np.nan)
    scale = max(float(np.nanmedian(d)), _EPS)
    return np.exp(-d / scale)


def robust_fence(values, k: float = 1.7) -> float:
    """Upper Tukey-style fence Q3 + k·IQR, with cleanlab Datalab's outlier
    default k = 1.7 (NaNs ignored; NaN when there is no value)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan")
    q1, q3 = np.percentile(v, [25, 75])
    return float(q3 + k * (q3 - q1))


def robust_z(values) -> np.ndarray:
    """Modified z-score (Iglewicz & Hoaglin), the rule of jobs/fences.py:
    0.6745·(x − median)/MAD; with MAD 0, (x − median)/(1.2533·MeanAD); with
    both 0 (all equal), 0. NaN-safe (NaN in → NaN out, ignored for the
    statistics)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or np.all(np.isnan(v)):
        return np.full(v.shape, np.nan)
    median = np.nanmedian(v)
    deviation = np.abs(v - median)
    mad, mean_ad = np.nanmedian(deviation), np.nanmean(deviation)
    if mad > 0:
        return 0.6745 * (v - median) / mad
    if mean_ad > 0:
        return (v - median) / (1.2533 * mean_ad)
    return np.where(np.isnan(v), np.nan, 0.0)


def uniqueness(distances_top3) -> np.ndarray:
    """FiftyOne Brain's uniqueness: distances to the 3 nearest neighbours
    (shape n × 3, nearest first) weighted 0.6/0.3/0.1, divided by the maximum
    over the dataset (so the most unique sample scores 1; all-zero stays 0)."""
    d = np.asarray(distances_top3, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != 3:
        raise ValueError(f"uniqueness expects an (n, 3) array of neighbour distances, got shape {d.shape}")
    weighted = d @ np.array([0.6, 0.3, 0.1])
    top = np.nanmax(weighted) if weighted.size and not np.all(np.isnan(weighted)) else np.nan
    return weighted / top if top > 0 else np.where(np.isnan(weighted), np.nan, 0.0)
