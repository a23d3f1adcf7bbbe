"""Relevance: does an object show what the delivery is expected to hold?

Two kinds of evidence, neither of which needs a trained region classifier
(docs/relevance.md):

* Header rules, on every image object: UNEXPECTED_MODALITY (Modality not in
  `expect.modalities`), UNEXPECTED_ANATOMY (the region the header names is not
  in `anatomy.expected_regions`) and ANATOMY_HEADER_MISMATCH (BodyPartExamined,
  SeriesDescription and ProtocolName name regions that contradict each other).
* The content check, a one-class model of the delivery's own expected content:
  an image whose header claims expected content is compared with a bounded
  reference sample of the delivery's images that claim the same (modality and
  named region); its score is the mean cosine distance to its k nearest
  reference images outside its own series (an image and its series never
  vouch for themselves). A score above the fence of its group is
  IRRELEVANT_CONTENT. An image with nothing comparable (the only series of
  its kind) is not judged: it cannot be told from a rare but valid protocol.

Pure numpy; the Spark wiring is jobs/anatomy.py.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from udfs.anatomy import (FINDING_MISMATCH, FINDING_UNEXPECTED, _covers, _region_in_text,
                          _text, BODY_PART_TERMS, COARSE, _key, header_region, regions_compatible)

FINDING_UNEXPECTED_MODALITY = "UNEXPECTED_MODALITY"
# Header fields that describe one series' images; the study description may
# span several regions ("CT CHEST ABD PELVIS"), so it never contradicts them.
SERIES_FIELDS = ("body_part_examined", "series_description", "protocol_name")


def _finding(code: str, score: float | None, threshold: float | None, detail: str) -> dict:
    return {"code": code, "score": None if score is None else float(score),
            "threshold": None if threshold is None else float(threshold), "detail": detail}


def normalised_regions(expected: Iterable[str] | None) -> list[str]:
    return [str(r).strip().lower() for r in (expected or []) if _text(r)]


def region_expected(region: str, expected: list[str]) -> bool:
    """Whether `region` lies within an expected region: equal, under an expected
    coarse parent (upper_extremity under extremity) or whole body, or a coarse
    region whose fine child is expected."""
    return any(_covers(e, region) or COARSE.get(e) == region for e in expected)


def field_region(value, body_part: bool = False) -> str | None:
    """The region one header field names: a BodyPartExamined defined term, else
    the first region keyword in the text."""
    text = _text(value)
    if text is None:
        return None
    if body_part:
        region = BODY_PART_TERMS.get(_key(text))
        if region is not None:
            return region
    return _region_in_text(text)


def series_region(body_part, series_description, protocol_name) -> str | None:
    """The region the series' own header fields name (BodyPartExamined, then
    SeriesDescription, ProtocolName). The study description is left out: a
    study may span several regions ("MRI BRAIN AND C-SPINE"), so it says
    little about one series."""
    return header_region(body_part, None, series_description, protocol_name)


def claims_expected(modality, body_part, series_description, protocol_name, expected_modalities: list[str],
                    expected_regions: list[str]) -> bool:
    """The header says this is expected content: an expected modality (or no
    expectation), a region that is expected or not named, and header fields
    that agree with each other (a contradiction is ANATOMY_HEADER_MISMATCH
    already, which is what the content check would find)."""
    modality_ok = not expected_modalities or (_text(modality) or "").upper() in expected_modalities
    region = series_region(body_part, series_description, protocol_name)
    region_ok = not expected_regions or region is None or region_expected(region, expected_regions)
    return modality_ok and region_ok and _contradiction(body_part, series_description, protocol_name) is None


def _contradiction(body_part, series_description, protocol_name) -> tuple | None:
    """((field, region), (field, region)) of the first two series fields that
    name contradicting regions, or None."""
    named = [(name, field_region(value, body_part=name == "body_part_examined"))
             for name, value in zip(SERIES_FIELDS, (body_part, series_description, protocol_name))]
    named = [(name, r) for name, r in named if r is not None]
    for i, (name_a, a) in enumerate(named):
        for name_b, b in named[i + 1:]:
            if not regions_compatible(a, b):
                return (name_a, a), (name_b, b)
    return None


def header_findings(modality, body_part, study_description, series_description, protocol_name,
                    expected_modalities: list[str], expected_regions: list[str]) -> list[dict]:
    """Findings from the header alone, dicts {code, score, threshold, detail}.

    UNEXPECTED_MODALITY      Modality is not one of `expected_modalities` (upper case).
    UNEXPECTED_ANATOMY       the series' region (`series_region`) is not expected.
    ANATOMY_HEADER_MISMATCH  two of BodyPartExamined, SeriesDescription and
                             ProtocolName name regions that are neither equal,
                             nested nor anatomical neighbours
                             (`regions_compatible`)."""
    findings = []
    shown = _text(modality) or ""
    if expected_modalities and shown.upper() not in expected_modalities:
        findings.append(_finding(FINDING_UNEXPECTED_MODALITY, None, None,
                                 f"modality '{shown}' not in expect.modalities {expected_modalities}"))
    region = series_region(body_part, series_description, protocol_name)
    if expected_regions and region is not None and not region_expected(region, expected_regions):
        findings.append(_finding(FINDING_UNEXPECTED, None, None,
                                 f"the header names region '{region}', not among the expected regions "
                                 f"{expected_regions}"))
    clash = _contradiction(body_part, series_description, protocol_name)
    if clash is not None:
        (name_a, a), (name_b, b) = clash
        findings.append(_finding(FINDING_MISMATCH, None, None, f"{name_a} names '{a}' but {name_b} names '{b}'"))
    return findings


# ------------------------------------------------------------- content check
def comparable(query_modality, query_region, reference_modality, reference_region) -> np.ndarray:
    """[Q, R] bool: reference images an image may be compared with, those that
    claim what it claims: the same modality and, when the image's header names
    a region, the same region (an image whose header names none is compared
    with every image of its modality)."""
    qm = np.asarray(query_modality, dtype=object)[:, None]
    qr = np.asarray(query_region, dtype=object)[:, None]
    rm = np.asarray(reference_modality, dtype=object)[None, :]
    rr = np.asarray(reference_region, dtype=object)[None, :]
    return (qm == rm) & (_is_none(qr) | (qr == rr))


def _is_none(values: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: v is None or (isinstance(v, float) and v != v), otypes=[bool])(values)


def _knn_mean(distance: np.ndarray, k: int) -> np.ndarray:
    """Mean of each row's k smallest finite distances; NaN with fewer than k."""
    if distance.shape[1] < k:
        return np.full(len(distance), np.nan)
    nearest = np.partition(distance, k - 1, axis=1)[:, :k]
    mean = np.clip(nearest, 0.0, 2.0).mean(axis=1)
    mean[~np.isfinite(nearest).all(axis=1)] = np.nan
    return mean


def knn_mean_distance(X: np.ndarray, reference: np.ndarray, k: int, query_groups=None,
                      reference_groups=None, allowed: np.ndarray | None = None) -> np.ndarray:
    """Mean cosine distance of each row of X (L2-normalised) to its k nearest
    rows of `reference` (L2-normalised). With groups, reference rows of the
    query's own group are skipped; `allowed` [N, R] limits each row to some
    reference rows. A row left with fewer than k reference rows gets NaN: it
    has nothing comparable to be judged against."""
    return _knn_mean(_distances(X, reference, query_groups, reference_groups, allowed), k)


def _distances(X, reference, query_groups=None, reference_groups=None, allowed=None) -> np.ndarray:
    """[N, R] cosine distances, inf where a reference row may not be used."""
    reference = np.asarray(reference, dtype=np.float32)
    distance = (1.0 - np.asarray(X, dtype=np.float32) @ reference.T).astype(np.float64)
    if query_groups is not None and reference_groups is not None and len(reference):
        same = (np.asarray(query_groups, dtype=object)[:, None]
                == np.asarray(reference_groups, dtype=object)[None, :])
        distance[same] = np.inf
    if allowed is not None:
        distance[~allowed] = np.inf
    return distance


def kind_label(modality, region) -> str:
    return f"{_text(modality) or '?'} {region}"


def content_scores(X: np.ndarray, groups, modality, region, reference: dict, k: int) -> dict[str, list]:
    """The content check for a batch of images (X L2-normalised, one series
    `groups`, claimed `modality` and header `region` per row) against
    `reference` {vectors, groups, modality, region}:

    score           mean cosine distance to the k nearest comparable
                    reference images outside the row's own series (NaN when
                    fewer than k: not judged)
    other_kind      of the kinds (modality and named region) whose region
                    contradicts the row's named region, the one it is closest
                    to ("CR chest"), or None
    other_distance  its mean distance to that kind's k nearest
    The caller compares `score` with the fence of the row's group and
    `other_distance` with the fence of `other_kind`: an image unlike what its
    header claims but like another region's images is mislabelled, not foreign."""
    distance = _distances(X, reference["vectors"], groups, reference["groups"])
    allowed = comparable(modality, region, reference["modality"], reference["region"])
    score = _knn_mean(np.where(allowed, distance, np.inf), k)
    other_kind: list = [None] * len(X)
    other_distance = np.full(len(X), np.nan)
    kinds = {}
    for m, r in zip(reference["modality"], reference["region"]):
        if not _is_none(np.array([r], dtype=object))[0]:
            kinds.setdefault((m, r), None)
    for m, r in kinds:
        rows = np.array([reg is not None and isinstance(reg, str) and not regions_compatible(reg, r)
                         for reg in region], dtype=bool)
        if not rows.any():
            continue
        in_kind = (np.asarray(reference["modality"], dtype=object) == m) & \
                  (np.asarray(reference["region"], dtype=object) == r)
        mean = _knn_mean(np.where(in_kind[None, :], distance[rows], np.inf), k)
        for i, value in zip(np.flatnonzero(rows), mean):
            if np.isfinite(value) and not value >= other_distance[i]:
                other_kind[i], other_distance[i] = kind_label(m, r), float(value)
    return {"score": score, "other_kind": other_kind, "other_distance": other_distance}


def l2_normalise(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)
