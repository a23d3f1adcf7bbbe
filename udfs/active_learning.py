"""Active learning: how unsure a classifier is of an instance, and a diverse
choice among the most unsure (jobs/annotate_next.py computes the same
uncertainty in Spark; these are the reference versions and the driver-side
diversity step).

Uncertainty of class probabilities p (K classes):

* least confidence: 1 - max p;
* margin: p(1) - p(2), the two largest (small = unsure; 1 with one class);
* entropy: -sum p log p / log K, in 0..1 (0 with one class).

`uncertainty_score` puts them on one "higher = more unsure" scale: least
confidence and entropy as they are, 1 - margin for the margin.

Diversity: k-center greedy (Sener & Savarese 2018, "core-set"): start from
the most unsure candidate, then repeatedly take the candidate farthest from
everything chosen so far. O(pool x size) distance computations.
"""
from __future__ import annotations

import math

import numpy as np

KINDS = ("least_confidence", "margin", "entropy")


def least_confidence(probs: np.ndarray) -> np.ndarray:
    probs = np.atleast_2d(np.asarray(probs, dtype=float))
    return 1.0 - probs.max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    probs = np.atleast_2d(np.asarray(probs, dtype=float))
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    top = -np.sort(-probs, axis=1)
    return top[:, 0] - top[:, 1]


def entropy(probs: np.ndarray) -> np.ndarray:
    probs = np.atleast_2d(np.asarray(probs, dtype=float))
    k = probs.shape[1]
    if k < 2:
        return np.zeros(len(probs))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(probs), 0.0)
    return np.clip(-terms.sum(axis=1) / math.log(k), 0.0, 1.0)


def uncertainty_score(probs: np.ndarray, kind: str) -> np.ndarray:
    """Higher = more unsure, for every kind."""
    if kind == "least_confidence":
        return least_confidence(probs)
    if kind == "margin":
        return 1.0 - margin(probs)
    if kind == "entropy":
        return entropy(probs)
    raise ValueError(f"uncertainty {kind!r}: must be one of {', '.join(KINDS)}")


def k_center_greedy(vectors: np.ndarray, size: int, first: int = 0) -> tuple[list[int], list[float | None]]:
    """(chosen indices in choice order, distance of each to the nearest
    earlier choice when it was chosen; None for the first).

    Candidates should come sorted most unsure first: the first choice is
    `first` (the most unsure) and ties in distance go to the lower index, so
    among equally distant candidates the more unsure one wins. Euclidean
    distance (on L2-normalised embeddings it orders like cosine distance).
    Once only copies of chosen points remain (distance 0), the rest follow in
    index order.
    """
    X = np.asarray(vectors, dtype=np.float64)
    n = len(X)
    size = min(int(size), n)
    if size <= 0:
        return [], []
    chosen, distances = [int(first)], [None]
    nearest = np.linalg.norm(X - X[first], axis=1)
    nearest[first] = -np.inf
    for _ in range(size - 1):
        idx = int(np.argmax(nearest))
        chosen.append(idx)
        distances.append(float(nearest[idx]))
        nearest = np.minimum(nearest, np.linalg.norm(X - X[idx], axis=1))
        nearest[chosen] = -np.inf
    return chosen, distances
