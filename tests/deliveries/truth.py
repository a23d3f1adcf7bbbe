"""Ground truth of one delivery: one record per written object, and the files
`_ground_truth.csv` / `_ground_truth.json`.

Duplicates are resolved when the delivery is finished, by path order: among
objects with the same decoded pixels (a hash of the stored values), or the same
SOPInstanceUID, or a registered near-duplicate pair, the object whose relative
path sorts later carries the code and `duplicate_of` names the earliest.

An object is reported for its most basic reason: an unreadable file lists only
its ingest error, and a readable object without pixel data lists only
NO_PIXEL_DATA (no modality, anatomy, series, duplicate or header code).
"""
from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NON_CONFORMANT = "NON_CONFORMANT"
INGEST_CODES = ("EMPTY_FILE", "NOT_DICOM", "TRUNCATED", "CORRUPT_HEADER")
CODE_ORDER = (
    "EMPTY_FILE", "NOT_DICOM", "TRUNCATED", "CORRUPT_HEADER", "NO_PIXEL_DATA",
    "UNREADABLE_PIXELS", NON_CONFORMANT, "EXACT_DUPLICATE", "DUPLICATE_SOP_UID",
    "NEAR_DUPLICATE", "UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY", "IRRELEVANT_CONTENT",
    "ANATOMY_HEADER_MISMATCH", "LOCALIZER", "INCONSISTENT_ORIENTATION", "IRREGULAR_SPACING",
    "MISSING_SLICES", "TOO_FEW_SLICES", "SPACING_OUT_OF_RANGE", "RESOLUTION_OUT_OF_RANGE",
    "CONSTANT_IMAGE", "LOW_DYNAMIC_RANGE", "SATURATED", "NOISY", "BLURRY",
    "INTENSITY_OUT_OF_RANGE", "PHI_PRESENT", "BURNED_IN_ANNOTATION")
SERIES_CODES = ("LOCALIZER", "INCONSISTENT_ORIENTATION", "IRREGULAR_SPACING", "MISSING_SLICES",
                "TOO_FEW_SLICES", "SPACING_OUT_OF_RANGE", "RESOLUTION_OUT_OF_RANGE")

CONVENTIONS = {
    "EMPTY_FILE": "The object has zero bytes; the row lists only this code.",
    "NOT_DICOM": "Text, PNG, zip, HTML or random bytes without a DICM prefix or a parsable dataset; only this code.",
    "TRUNCATED": "The file ends inside an element (inside PixelData or inside the header); only this code.",
    "CORRUPT_HEADER": "The file is complete but its header cannot be parsed (bad element length, junk bytes between elements, a garbage VR); only this code.",
    "NO_PIXEL_DATA": "A readable object without PixelData (a structured report, key object selection, a segmentation without pixels, or an image object whose PixelData is absent); the row lists only this code and its category is NO_PIXEL_DATA: no UNEXPECTED_MODALITY, anatomy, series, duplicate, conformance or header code. An unusable object is reported for its most basic reason, as an unreadable file lists only its ingest error.",
    "UNREADABLE_PIXELS": "PixelData is present but cannot be decoded (corrupt JPEG 2000 or RLE codestream, or native PixelData shorter than rows x columns x bits with a consistent element length).",
    NON_CONFORMANT: "Readable only by a lenient parser: an invalid VR on an element, a missing Type 1 File Meta element, invalid UIDs or values that break their VR.",
    "EXACT_DUPLICATE": "Same decoded pixels as another object (byte copy elsewhere, or re-sent with a new SOPInstanceUID); the later path carries it, duplicate_of names the earliest.",
    "DUPLICATE_SOP_UID": "Carries the SOPInstanceUID of another readable object; the later path carries it.",
    "NEAR_DUPLICATE": "The same acquisition saved again with changed bytes and pixels (re-encoded with a grey-level change, or exported lossy / resized / cropped / rescaled); the later path carries it.",
    "UNEXPECTED_MODALITY": "Header Modality is not among the expected modalities (of an object with pixel data: an SR or key object selection is NO_PIXEL_DATA alone).",
    "LOCALIZER": "Scout, survey, 3-plane localizer or CT topogram; a series finding on every instance of the series; geometry codes are not applied to localizer series.",
    "UNEXPECTED_ANATOMY": "The header region (BodyPartExamined, else SeriesDescription, ProtocolName, StudyDescription) is not an expected region.",
    "ANATOMY_HEADER_MISMATCH": "Header region fields contradict each other (BodyPartExamined names one region, SeriesDescription or ProtocolName another), or an image of one expected region is filed under the other expected region's header. A header that contradicts itself is the finding: such an object does not also list IRRELEVANT_CONTENT, whatever its pixels show.",
    "IRRELEVANT_CONTENT": "Header claims expected content (expected modality, expected or absent region, and region fields that agree with each other) but the pixels are a photo, animal, another modality's image or a region that is not expected. Not listed where the header contradicts itself (ANATOMY_HEADER_MISMATCH alone), nor on foreign pixels that are flat or clipped by construction: content is not judged on such pixels, so a drawing on a white page lists SATURATED and LOW_DYNAMIC_RANGE, a monitor test pattern of full-intensity fields SATURATED, a text page on black LOW_DYNAMIC_RANGE.",
    "INCONSISTENT_ORIENTATION": "Some slices of the series have another ImageOrientationPatient; on every instance of the series.",
    "IRREGULAR_SPACING": "One gap between slice positions is a non-integer multiple (about 1.5x) of the series step; on every instance.",
    "MISSING_SLICES": "A slice is missing: one gap of twice the step and a gap in InstanceNumber; on every instance.",
    "TOO_FEW_SLICES": "A tomographic series (with a slice position) of one or two slices; on every instance.",
    "SPACING_OUT_OF_RANGE": "PixelSpacing outside [0.05, 5] mm or SliceThickness outside [0.1, 12] mm; on every instance.",
    "RESOLUTION_OUT_OF_RANGE": "Rows or Columns outside [64, 8192]; on every instance.",
    "CONSTANT_IMAGE": "Every stored pixel has the same value.",
    "LOW_DYNAMIC_RANGE": "Requantised to a handful of grey levels, squeezed into a very narrow intensity range, or mostly one value (a drawing on a white page, a text page on black).",
    "SATURATED": "A large share of the pixels at the maximum stored value (a clipped slice, a white page, a test pattern's full-intensity fields).",
    "NOISY": "Noise much stronger than in the peers of the same protocol and site (one slice or a whole series).",
    "BLURRY": "Strongly blurred (motion or a smoothing filter) compared with its peers.",
    "INTENSITY_OUT_OF_RANGE": "CT values below -1200 HU not marked as padding, or above 4000 HU.",
    "PHI_PRESENT": "A header identifier in a delivery declared de-identified (real name, MRN-like ID, birth date, physician or operator name, address, a name typed into a description); values in planted_identifiers.",
    "BURNED_IN_ANNOTATION": "Text burned into the pixels (name, date, institution), or BurnedInAnnotation YES on a secondary capture; burned-in names are not PHI_PRESENT (that code is about header values).",
}

COLUMNS = ("path", "category", "ingest_error", "reasons", "site", "patient", "study_uid",
           "series_uid", "sop_instance_uid", "modality", "true_modality", "body_part",
           "true_region", "hard_negative", "size_bytes", "duplicate_of", "source", "note")


def pixel_key(frames: np.ndarray) -> str:
    """Hash of decoded pixel values (shape and integer values, whatever the dtype)."""
    arr = np.ascontiguousarray(frames)
    if arr.dtype.kind in "ui" or arr.dtype == bool:
        small = arr.dtype.itemsize <= 2 or arr.dtype == bool
        arr = arr.astype(np.int32 if small else np.int64)
    h = hashlib.sha1(repr(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


@dataclass
class Record:
    path: str
    reasons: list[str] = field(default_factory=list)
    primary: str = ""
    ingest_error: str = ""
    site: str = ""
    patient: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    modality: str = ""
    true_modality: str = ""
    body_part: str = ""
    true_region: str = ""
    hard_negative: str = ""
    size_bytes: int = 0
    duplicate_of: str = ""
    source: str = ""
    note: str = ""
    pixel_key: str | None = None  # None: no decodable pixels
    category: str = ""

    def add(self, *codes: str) -> None:
        for code in codes:
            if code and code not in self.reasons:
                self.reasons.append(code)


class Truth:
    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.near_pairs: list[tuple[str, str]] = []
        self.identifiers: list[str] = []
        self.burned_in_text: list[str] = []

    def add(self, record: Record) -> Record:
        if record.path in self.records:
            raise ValueError(f"path written twice: {record.path}")
        if record.ingest_error:
            record.reasons = [record.ingest_error]
            record.pixel_key = None
        self.records[record.path] = record
        return record

    def near_duplicate(self, original: str, copy: str) -> None:
        self.near_pairs.append((original, copy))

    def plant_identifier(self, *values: str) -> None:
        for v in values:
            if v and v not in self.identifiers:
                self.identifiers.append(v)

    def finalize(self) -> list[Record]:
        readable = [r for r in self.records.values() if not r.ingest_error]
        for r in readable:
            if "NO_PIXEL_DATA" in r.reasons:
                r.reasons = ["NO_PIXEL_DATA"]
                r.primary = "NO_PIXEL_DATA"
                r.pixel_key = None
        groups: dict[str, list[Record]] = {}
        for r in readable:
            if r.pixel_key:
                groups.setdefault(r.pixel_key, []).append(r)
        for members in groups.values():
            members.sort(key=lambda r: r.path)
            for later in members[1:]:
                later.add("EXACT_DUPLICATE")
                later.duplicate_of = later.duplicate_of or members[0].path
        by_uid: dict[str, list[Record]] = {}
        for r in readable:
            if r.sop_instance_uid:
                by_uid.setdefault(r.sop_instance_uid, []).append(r)
        for members in by_uid.values():
            members.sort(key=lambda r: r.path)
            for later in members[1:]:
                if "NO_PIXEL_DATA" in later.reasons:
                    continue
                later.add("DUPLICATE_SOP_UID")
                later.duplicate_of = later.duplicate_of or members[0].path
        for a, b in self.near_pairs:
            first, later = sorted((a, b))
            rec = self.records[later]
            if rec.ingest_error or "EXACT_DUPLICATE" in rec.reasons or "NO_PIXEL_DATA" in rec.reasons:
                continue
            rec.add("NEAR_DUPLICATE")
            rec.duplicate_of = rec.duplicate_of or first
        for r in self.records.values():
            r.reasons = sorted(set(r.reasons), key=CODE_ORDER.index)
            if not r.reasons:
                r.category = "good"
            elif r.primary in r.reasons:
                r.category = r.primary
            else:
                r.category = r.reasons[0]
        return sorted(self.records.values(), key=lambda r: r.path)

    def write(self, out: Path, meta: dict) -> dict:
        rows = self.finalize()
        with open(out / "_ground_truth.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow([r.path, r.category, r.ingest_error, ";".join(r.reasons), r.site,
                            r.patient, r.study_uid, r.series_uid, r.sop_instance_uid,
                            r.modality, r.true_modality, r.body_part, r.true_region,
                            r.hard_negative, r.size_bytes, r.duplicate_of, r.source, r.note])
        counts = {
            "objects": len(rows),
            "defective": sum(1 for r in rows if r.reasons),
            "per_category": dict(sorted(Counter(r.category for r in rows).items())),
            "per_reason": dict(sorted(Counter(c for r in rows for c in r.reasons).items(),
                                      key=lambda kv: CODE_ORDER.index(kv[0]))),
            "per_site": dict(sorted(Counter(r.site for r in rows).items())),
            "hard_negatives": dict(sorted(Counter(r.hard_negative for r in rows
                                                  if r.hard_negative).items())),
        }
        doc = dict(meta)
        doc["counts"] = counts
        doc["planted_identifiers"] = list(self.identifiers)
        doc["burned_in_text"] = list(self.burned_in_text)
        doc["conventions"] = {c: CONVENTIONS[c] for c in CODE_ORDER}
        with open(out / "_ground_truth.json", "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, sort_keys=False)
            f.write("\n")
        return doc
