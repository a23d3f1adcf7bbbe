"""Relevance: does an object show what the delivery is expected to hold?

Two kinds of evidence, neither of which needs a trained region classifier
(docs/relevance.md):

* Header rules, on every image object: UNEXPECTED_MODALITY (Modality not in
  `expect.modalities`), UNEXPECTED_ANATOMY (the region the header names is not
  in `anatomy.expected_regions`) and ANATOMY_HEADER_MISMATCH (BodyPartExamined,
  SeriesDescription and ProtocolName name regions that contradict each other).
* Acquisition evidence in the header (`foreign_acquisition`): an image
  labelled MR whose header carries X-ray exposure (KVP) or Hounsfield
  rescaling, an X-ray image with MR sequence timing, or a colour image
  labelled with a grey-scale modality: its pixels are not what its Modality
  claims (IRRELEVANT_CONTENT, from the header alone).
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

from dicom_triage.udfs.anatomy import (FINDING_IRRELEVANT, FINDING_MISMATCH, FINDING_UNEXPECTED, _covers, _region_in_text,
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


# Pixel findings that explain why an image looks unlike its peers: a blank,
# flattened, noisy, blurred, clipped, tiny or out-of-range image is reported as such, not
# judged as foreign content (and does not join the content reference).
# Measured: such brain slices lie as far from their peers as photographs do.
PIXEL_DEFECTS = ("CONSTANT_IMAGE", "LOW_DYNAMIC_RANGE", "NOISY", "BLURRY", "SATURATED",
                 "RESOLUTION_OUT_OF_RANGE", "INTENSITY_OUT_OF_RANGE")
# Modalities whose images are grey-scale, and those acquired with X-rays.
GREY_SCALE = frozenset({"MR", "CT", "CR", "DX", "MG", "XA", "RF", "PT", "NM", "PX", "IO"})
X_RAY = frozenset({"CT", "CR", "DX", "MG", "XA", "RF", "PX", "IO"})


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None   # NaN > 0 is False


# the instances columns that are foreign_acquisition's arguments after the modality, in order
ACQUISITION_COLUMNS = ("photometric_interpretation", "kvp", "rescale_type", "magnetic_field_strength", "echo_time")


def foreign_acquisition(modality, photometric=None, kvp=None, rescale_type=None, field_strength=None,
                        echo_time=None) -> str | None:
    """Why the header's own acquisition attributes say the pixels are not what
    its Modality claims, or None. A relabelled object keeps the attributes of
    the device that made it: a CT slice renamed MR still carries KVP and a
    Hounsfield RescaleType, a photograph renamed MR is in colour."""
    shown = (_text(modality) or "").upper()
    colour = _text(photometric)
    if shown in GREY_SCALE and colour and not colour.upper().startswith("MONOCHROME"):
        return (f"PhotometricInterpretation {colour} on an image labelled {shown}, a grey-scale modality: "
                "a photograph, screen capture or colour map")
    if shown == "MR":
        exposure = _positive(kvp)
        hounsfield = (_text(rescale_type) or "").upper() == "HU"
        if exposure or hounsfield:
            shown_by = ", ".join(([f"KVP {exposure:g}"] if exposure else [])
                                 + (["RescaleType HU"] if hounsfield else []))
            return f"an image labelled MR with X-ray acquisition attributes ({shown_by})"
    if shown in X_RAY:
        field, echo = _positive(field_strength), _positive(echo_time)
        if field or echo:
            shown_by = ", ".join(([f"MagneticFieldStrength {field:g}"] if field else [])
                                 + ([f"EchoTime {echo:g}"] if echo else []))
            return f"an image labelled {shown} with MR acquisition attributes ({shown_by})"
    return None


def header_findings(modality, body_part, study_description, series_description, protocol_name,
                    expected_modalities: list[str], expected_regions: list[str],
                    acquisition: dict | None = None) -> list[dict]:
    """Findings from the header alone, dicts {code, score, threshold, detail}.

    UNEXPECTED_MODALITY      Modality is not one of `expected_modalities` (upper case).
    UNEXPECTED_ANATOMY       the series' region (`series_region`) is not expected.
    ANATOMY_HEADER_MISMATCH  two of BodyPartExamined, SeriesDescription and
                             ProtocolName name regions that are neither equal,
                             nested nor anatomical neighbours
                             (`regions_compatible`).
    IRRELEVANT_CONTENT       `foreign_acquisition` on `acquisition` (keyword
                             arguments of it: photometric, kvp, ...), when
                             nothing else is found."""
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
    # Only for a header that otherwise claims expected content consistently (a
    # contradiction is reported alone), and only with `acquisition` given: the
    # caller leaves it out for an image whose pixel defect explains its look.
    if acquisition and not findings:
        foreign = foreign_acquisition(modality, **acquisition)
        if foreign:
            findings.append(_finding(FINDING_IRRELEVANT, None, None, foreign))
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


MIN_NEIGHBOURS = 3   # fewer comparable images than this: not judged


def _knn_mean(distance: np.ndarray, k: int, min_k: int = MIN_NEIGHBOURS) -> np.ndarray:
    """Mean of each row's k smallest finite distances, or of all of them when
    fewer than k are finite; NaN with fewer than `min_k`."""
    out = np.full(len(distance), np.nan)
    if distance.shape[1] == 0 or len(distance) == 0:
        return out
    k = min(k, distance.shape[1])
    nearest = np.sort(np.partition(distance, k - 1, axis=1)[:, :k], axis=1)
    finite = np.isfinite(nearest)
    count = finite.sum(axis=1)
    total = np.where(finite, np.clip(nearest, 0.0, 2.0), 0.0).sum(axis=1)
    enough = count >= min(min_k, k)
    out[enough] = total[enough] / count[enough]
    return out


def knn_mean_distance(X: np.ndarray, reference: np.ndarray, k: int, query_groups=None,
                      reference_groups=None, allowed: np.ndarray | None = None) -> np.ndarray:
    """Mean cosine distance of each row of X (L2-normalised) to its k nearest
    rows of `reference` (L2-normalised). With groups, reference rows of the
    query's own group are skipped; `allowed` [N, R] limits each row to some
    reference rows. A row left with fewer than k reference rows is measured
    against those it has, and gets NaN with fewer than three: it has nothing
    comparable to be judged against."""
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


def content_scores(X: np.ndarray, groups, modality, region, reference: dict, k: int) -> dict[str, list]:
    """The content check for a batch of images (X L2-normalised, one series
    `groups`, claimed `modality` and header `region` per row) against
    `reference` {vectors, groups, modality, region}:

    score           mean cosine distance to the k nearest comparable
                    reference images outside the row's own series (fewer when
                    fewer exist; NaN with fewer than three: not judged)
    resembles       of the regions named in the reference that contradict the
                    row's named region, the one whose images (any modality)
                    it is closest to, or None
    resembles_distance  its mean distance to that region's k nearest
    The caller compares `score` with the fence of the row's group and
    `resembles_distance` with the fence of that region: an image unlike what
    its header claims but like another region's images is mislabelled, not
    foreign."""
    distance = _distances(X, reference["vectors"], groups, reference["groups"])
    allowed = comparable(modality, region, reference["modality"], reference["region"])
    score = _knn_mean(np.where(allowed, distance, np.inf), k)
    resembles: list = [None] * len(X)
    resembles_distance = np.full(len(X), np.nan)
    reference_region = np.asarray(reference["region"], dtype=object)
    named = sorted({r for r in reference_region if isinstance(r, str)})
    for other in named:
        rows = np.array([isinstance(r, str) and not regions_compatible(r, other) for r in region], dtype=bool)
        if not rows.any():
            continue
        mean = _knn_mean(np.where((reference_region == other)[None, :], distance[rows], np.inf), k)
        for i, value in zip(np.flatnonzero(rows), mean):
            if np.isfinite(value) and not value >= resembles_distance[i]:
                resembles[i], resembles_distance[i] = other, float(value)
    return {"score": score, "resembles": resembles, "resembles_distance": resembles_distance}


def l2_normalise(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)
