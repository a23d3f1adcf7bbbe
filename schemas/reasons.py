"""The reason-code vocabulary of the output contract (README "The tables").

Every finding and every exclusion names one of these codes. Ingest errors use
the integrity codes, plus IO_ERROR / TIMEOUT for objects that could not be read
at all (they are not a property of the file, and a re-run may succeed).
"""
from __future__ import annotations

REASONS: dict[str, dict[str, str]] = {
    "integrity": {
        "EMPTY_FILE": "object has zero bytes",
        "NOT_DICOM": "object is not a DICOM file (no DICM prefix and no parsable dataset)",
        "TRUNCATED": "object ends before its declared content does",
        "CORRUPT_HEADER": "header cannot be parsed",
        "UNREADABLE_PIXELS": "pixel data present but cannot be decoded",
        "NO_PIXEL_DATA": "object carries no image (e.g. a structured report)",
        "EXACT_DUPLICATE": "same decoded pixels as another instance (the first seen is kept)",
        "DUPLICATE_SOP_UID": "another object carries the same SOPInstanceUID",
        "NEAR_DUPLICATE": "embedding within the near-duplicate radius of another instance",
        "NON_CONFORMANT": "readable, but breaks DICOM Part 10 (invalid VR, missing Type 1 file meta, invalid UID)",
    },
    "relevance": {
        "UNEXPECTED_MODALITY": "modality not in the expected list",
        "LOCALIZER": "scout / localizer image or series",
        "UNEXPECTED_ANATOMY": "predicted body region not in the expected list",
        "ANATOMY_HEADER_MISMATCH": "confident prediction contradicts the header's body part",
        "IRRELEVANT_CONTENT": "image far from any medical content the model knows",
    },
    "geometry": {
        "INCONSISTENT_ORIENTATION": "orientation differs between slices of one series",
        "IRREGULAR_SPACING": "slice spacing not uniform",
        "MISSING_SLICES": "gaps in the slice positions or instance numbers",
        "TOO_FEW_SLICES": "series has fewer slices than configured",
        "SPACING_OUT_OF_RANGE": "pixel or slice spacing outside the configured range",
        "RESOLUTION_OUT_OF_RANGE": "rows/columns outside the configured range",
    },
    "quality": {
        "CONSTANT_IMAGE": "every pixel has the same value",
        "LOW_DYNAMIC_RANGE": "too few distinct intensities / low contrast",
        "SATURATED": "large share of pixels at the minimum or maximum value",
        "NOISY": "noise estimate above the group's fence",
        "BLURRY": "sharpness below the group's fence",
        "INTENSITY_OUT_OF_RANGE": "intensities implausible for the modality (e.g. CT HU)",
    },
    "statistics": {
        "EMBEDDING_OUTLIER": "far from its nearest neighbours in embedding space",
        "CLUSTER_OUTLIER": "far from its own cluster's centre",
    },
    "privacy": {
        "PHI_PRESENT": "identifiers present in a delivery declared de-identified",
        "BURNED_IN_ANNOTATION": "image likely carries burned-in text",
    },
}

# Ingest failures that are about reading, not about the file's content.
IO_ERROR = "IO_ERROR"
TIMEOUT = "TIMEOUT"

ALL_CODES: frozenset[str] = frozenset(code for group in REASONS.values() for code in group)
INGEST_ERROR_CODES: frozenset[str] = frozenset(
    {"EMPTY_FILE", "NOT_DICOM", "TRUNCATED", "CORRUPT_HEADER", IO_ERROR, TIMEOUT})


def group_of(code: str) -> str:
    for group, codes in REASONS.items():
        if code in codes:
            return group
    if code in (IO_ERROR, TIMEOUT):
        return "integrity"
    raise KeyError(f"unknown reason code {code!r}")
