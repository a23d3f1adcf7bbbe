"""Checks that a written delivery is what its ground truth says.

Independent of the generator's code paths: files are read back from disk with
pydicom (strict validation for objects called conformant) and with a small
Part 10 walker of its own, and the claimed defects are measured on the decoded
pixels and headers.

    python -m tests.deliveries.verify OUT [--sample N]
"""
from __future__ import annotations

import csv
import io
import json
import re
import struct
import sys
import warnings
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config
from pydicom.datadict import dictionary_VR

from .truth import CODE_ORDER, NON_CONFORMANT

VALID_VRS = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD",
             "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI",
             "UL", "UN", "UR", "US", "UT", "UV"}
LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
META_TYPE1 = ("FileMetaInformationVersion", "MediaStorageSOPClassUID",
              "MediaStorageSOPInstanceUID", "TransferSyntaxUID", "ImplementationClassUID")
REGION_WORDS = [
    ("head", ("HEAD", "BRAIN", "SKULL", "SCHAEDEL", "KOPF", "HERSENEN", "CRAN", "CEREB")),
    ("chest", ("CHEST", "THORAX", "LUNG", "THX", "THORAC")),
    ("abdomen", ("ABDOMEN", "ABD", "LIVER", "KIDNEY")),
    ("upper_extremity", ("SHOULDER", "SCHULTER", "ARM", "HAND", "ELBOW", "WRIST")),
    ("lower_extremity", ("LEG", "KNEE", "KNIE", "UNTERSCHENKEL", "ANKLE", "ENKEL", "FOOT", "HIP")),
    ("whole_body", ("WHOLE BODY", "WHOLEBODY", "WB")),
    ("neck", ("NECK", "CSPINE", "HALS")),
    ("pelvis", ("PELVIS", "BECKEN")),
]


class Walk(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind  # truncated | corrupt


def walk_part10(data: bytes) -> tuple[str, str]:
    """Structure of a Part 10 file: ('ok' | 'truncated' | 'corrupt' | 'not-part10', detail).
    'truncated' means a declared length runs past the end of the file before any
    structural error; 'corrupt' an invalid VR, item tag or element order first."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return "not-part10", "no DICM prefix"
    try:
        pos, ts = _walk_meta(data)
        body = data[pos:]
        if ts == "1.2.840.10008.1.2.1.99":
            body = zlib.decompressobj(-15).decompress(body)
        _walk(body, 0, len(body), ts != "1.2.840.10008.1.2", 0)
    except Walk as w:
        return w.kind, str(w)
    return "ok", ""


def _walk_meta(data: bytes) -> tuple[int, str]:
    pos, ts = 132, ""
    while pos + 8 <= len(data):
        group = struct.unpack_from("<H", data, pos)[0]
        if group != 2:
            break
        tag, vr, length, head = _element_header(data, pos, True)
        if pos + head + length > len(data):
            raise Walk("truncated", f"file meta element {tag:08X} runs past the end")
        if tag == 0x00020010:
            ts = data[pos + head:pos + head + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos += head + length
    return pos, ts


def _element_header(data: bytes, pos: int, explicit: bool) -> tuple[int, str, int, int]:
    if pos + 8 > len(data):
        raise Walk("truncated", f"element header cut at {pos}")
    group, elem = struct.unpack_from("<HH", data, pos)
    tag = (group << 16) | elem
    if tag in (0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD):
        return tag, "", struct.unpack_from("<I", data, pos + 4)[0], 8
    if not explicit:
        vr = dictionary_vr(tag)
        return tag, vr, struct.unpack_from("<I", data, pos + 4)[0], 8
    vr = data[pos + 4:pos + 6].decode("latin-1")
    if vr not in VALID_VRS:
        raise Walk("corrupt", f"invalid VR {vr!r} at {pos} for {tag:08X}")
    if vr in LONG:
        if pos + 12 > len(data):
            raise Walk("truncated", f"element header cut at {pos}")
        return tag, vr, struct.unpack_from("<I", data, pos + 8)[0], 12
    return tag, vr, struct.unpack_from("<H", data, pos + 6)[0], 8


def dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _walk(data: bytes, pos: int, end: int, explicit: bool, depth: int) -> int:
    """Walk elements from `pos` to `end` (or an item delimiter); returns the end position."""
    last = -1
    while pos < end:
        tag, vr, length, head = _element_header(data, pos, explicit)
        if tag == 0xFFFEE00D:  # item delimiter
            return pos + 8
        if tag in (0xFFFEE000, 0xFFFEE0DD):
            raise Walk("corrupt", f"item tag where an element belongs at {pos}")
        if tag <= last:
            raise Walk("corrupt", f"element {tag:08X} out of order at {pos}")
        last = tag
        pos += head
        if length == 0xFFFFFFFF:
            if vr not in ("SQ", "OB", "UN", "OW") and "SQ" not in vr:
                raise Walk("corrupt", f"undefined length on {vr} at {pos}")
            pos = _walk_items(data, pos, explicit, depth, encapsulated=(tag == 0x7FE00010))
            continue
        if pos + length > len(data):
            raise Walk("truncated", f"element {tag:08X} declares {length} bytes, {len(data) - pos} left")
        if vr == "SQ" or (not explicit and "SQ" in vr):
            _walk_items(data, pos, explicit, depth, end=pos + length)
        pos += length
    if pos > end:
        raise Walk("corrupt", "element runs past its container")
    return pos


def _walk_items(data: bytes, pos: int, explicit: bool, depth: int, end: int | None = None,
                encapsulated: bool = False) -> int:
    while end is None or pos < end:
        if pos + 8 > len(data):
            raise Walk("truncated", f"item header cut at {pos}")
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        tag = (group << 16) | elem
        if tag == 0xFFFEE0DD:
            return pos + 8
        if tag != 0xFFFEE000:
            raise Walk("corrupt", f"expected an item at {pos}, found {tag:08X}")
        pos += 8
        if encapsulated:
            if pos + length > len(data):
                raise Walk("truncated", f"fragment declares {length} bytes, {len(data) - pos} left")
            pos += length
        elif length == 0xFFFFFFFF:
            pos = _walk(data, pos, len(data), explicit, depth + 1)
        else:
            if pos + length > len(data):
                raise Walk("truncated", f"item declares {length} bytes, {len(data) - pos} left")
            _walk(data, pos, pos + length, explicit, depth + 1)
            pos += length
    return pos


def conformance_problems(data: bytes, ds: pydicom.Dataset) -> list[str]:
    """Part 10 / PS3.5 violations: missing Type 1 File Meta elements, invalid UIDs,
    VRs that differ from the dictionary, values invalid for their VR."""
    problems = []
    meta = getattr(ds, "file_meta", None)
    for kw in META_TYPE1:
        if meta is None or kw not in meta or meta[kw].value in (None, "", b""):
            problems.append(f"File Meta lacks {kw}")
    for elem in ds.iterall():
        if elem.tag.is_private or elem.tag.group == 0xFFFE:
            continue
        expected = dictionary_vr(int(elem.tag))
        if expected != "UN" and elem.VR not in expected and elem.VR != "UN" \
                and not (expected == "OB or OW" and elem.VR in ("OB", "OW")):
            problems.append(f"{elem.keyword} has VR {elem.VR}, dictionary {expected}")
        if elem.VR == "UI" and elem.value:
            uid = str(elem.value)
            if len(uid) > 64 or not UID_RE.match(uid):
                problems.append(f"{elem.keyword} is not a valid UID: {uid!r}")
    for elem in (meta or []):
        if elem.VR == "UI" and elem.value:
            uid = str(elem.value)
            if len(uid) > 64 or not UID_RE.match(uid):
                problems.append(f"{elem.keyword} is not a valid UID: {uid!r}")
    old = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    try:
        strict = pydicom.dcmread(io.BytesIO(data))
        for elem in strict.iterall():
            elem.value  # noqa: B018 - converting raises on invalid values
    except Exception as exc:  # noqa: BLE001
        problems.append(f"strict read fails: {type(exc).__name__}: {str(exc)[:80]}")
    finally:
        config.settings.reading_validation_mode = old
    return problems


def header_region(ds: pydicom.Dataset) -> str:
    for kw in ("BodyPartExamined", "SeriesDescription", "ProtocolName", "StudyDescription"):
        text = str(ds.get(kw, "") or "").upper()
        if not text:
            continue
        for region, words in REGION_WORDS:
            if any(w in text for w in words):
                return region
        if kw == "BodyPartExamined":
            return "unknown"
    return ""


def regions_named(ds: pydicom.Dataset, keywords=("BodyPartExamined", "SeriesDescription",
                                                 "ProtocolName")) -> set[str]:
    found = set()
    for kw in keywords:
        text = str(ds.get(kw, "") or "").upper()
        for region, words in REGION_WORDS:
            if any(re.search(rf"(^|[^A-Z]){re.escape(w)}", text) for w in words):
                found.add(region)
    return found


def header_contradiction(ds: pydicom.Dataset) -> bool:
    """Series-level region fields disagree, or none of them is among the regions
    the study description names."""
    series_regions = regions_named(ds)
    study_regions = regions_named(ds, ("StudyDescription",))
    return len(series_regions) > 1 or bool(series_regions and study_regions
                                           and not series_regions & study_regions)


def noise_sigma(img: np.ndarray) -> float:
    """Robust noise estimate: MAD of the difference of neighbouring pixels."""
    a = img.astype(np.float64)
    d = (a[:, 1:] - a[:, :-1]).ravel()
    return float(np.median(np.abs(d - np.median(d))) * 1.4826 / np.sqrt(2))


def sharpness(img: np.ndarray) -> float:
    """Mean absolute Laplacian over the brighter half, relative to its intensity."""
    a = img.astype(np.float64)
    lap = np.abs(4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:])
    fg = a[1:-1, 1:-1] > np.percentile(a, 50)
    scale = np.percentile(a, 99) - np.percentile(a, 1) + 1e-6
    return float(lap[fg].mean() / scale) if fg.any() else 0.0


def _similar(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two images resized to 36 x 36 (grey, lightly smoothed),
    the best over shifts of up to two cells (crops move the content a little)."""
    from scipy import ndimage

    def norm(x):
        x = x.astype(np.float64)
        if x.ndim == 3:
            x = x.mean(axis=2)
        x = ndimage.gaussian_filter(x, x.shape[0] / 64)
        return ndimage.zoom(x, (36 / x.shape[0], 36 / x.shape[1]), order=1)[:36, :36]

    def ranks(x):
        from scipy.stats import rankdata

        r = rankdata(x.ravel())  # ties share their average rank
        return (r - r.mean()) / (r.std() + 1e-9)
    x, y = norm(a), norm(b)
    core = ranks(x[2:34, 2:34])
    best = -1.0
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            best = max(best, float(np.mean(core * ranks(y[2 + dy:34 + dy, 2 + dx:34 + dx]))))
    return best


def _frame(ds) -> np.ndarray:
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[len(arr) // 2]
    return arr


def check(out: str | Path, sample: int | None = None, seed: int = 0, per_code: int = 4) -> list[str]:
    """All problems found (empty when the delivery matches its truth). With
    `sample`, only up to `per_code` objects per reason code, `sample` clean
    objects and the series they belong to are checked in depth."""
    out = Path(out)
    doc = json.loads((out / "_ground_truth.json").read_text())
    expect = doc["expectations"]
    with open(out / "_ground_truth.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    problems = []
    written = sorted(str(p.relative_to(out)).replace("\\", "/") for p in out.rglob("*")
                     if p.is_file() and not p.name.startswith("_"))
    if written != sorted(r["path"] for r in rows):
        problems.append("truth rows and written files differ")
    by_path = {r["path"]: r for r in rows}
    chosen = rows
    if sample is not None:
        rng = np.random.default_rng(seed)
        picked: dict[str, dict] = {}
        for code in CODE_ORDER:
            with_code = [r for r in rows if code in r["reasons"].split(";")]
            for i in rng.permutation(len(with_code))[:per_code]:
                picked[with_code[i]["path"]] = with_code[i]
        clean = [r for r in rows if not r["reasons"]]
        for i in rng.permutation(len(clean))[:sample]:
            picked[clean[i]["path"]] = clean[i]
        chosen = sorted(picked.values(), key=lambda r: r["path"])
    cache: dict[str, object] = {}

    def load(path, pixels=True):
        key = (path, pixels)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[key] = pydicom.dcmread(out / path, stop_before_pixels=not pixels)
        return cache[key]

    known = set(CODE_ORDER)
    for row in rows:
        for code in filter(None, row["reasons"].split(";")):
            if code not in known:
                problems.append(f"{row['path']}: unknown code {code}")
        if (row["category"] == "good") != (row["reasons"] == ""):
            problems.append(f"{row['path']}: category {row['category']} vs reasons {row['reasons']}")
        elif row["reasons"] and row["category"] not in row["reasons"].split(";"):
            problems.append(f"{row['path']}: category {row['category']} not among {row['reasons']}")
        if "NO_PIXEL_DATA" in row["reasons"].split(";") and (
                row["reasons"] != "NO_PIXEL_DATA" or row["category"] != "NO_PIXEL_DATA"):
            problems.append(f"{row['path']}: an object without pixel data lists {row['reasons']}"
                            f" (category {row['category']}), not NO_PIXEL_DATA alone")
    for row in chosen:
        try:
            problems += [f"{row['path']}: {p}" for p in _check_row(out, row, by_path, expect, load, doc)]
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{row['path']}: check crashed: {type(exc).__name__}: {exc}")
    series = {r["series_uid"] for r in chosen}
    problems += _check_series([r for r in rows if r["series_uid"] in series],
                              lambda path: load(path, pixels=False), True)
    problems += _check_peers(rows, chosen, load)
    return problems


def _check_row(out: Path, row: dict, by_path: dict, expect: dict, load, doc) -> list[str]:
    p = []
    data = (out / row["path"]).read_bytes()
    codes = set(filter(None, row["reasons"].split(";")))
    if len(data) != int(row["size_bytes"]):
        p.append("size differs from truth")
    err = row["ingest_error"]
    if err:
        if codes != {err}:
            p.append(f"ingest error row lists {codes}")
        status, detail = walk_part10(data)
        if err == "EMPTY_FILE" and data:
            p.append("EMPTY_FILE has bytes")
        if err == "NOT_DICOM":
            if status != "not-part10" or not data:
                p.append(f"NOT_DICOM has a DICM prefix ({status})")
            try:
                pydicom.dcmread(io.BytesIO(data))
                p.append("NOT_DICOM parses")
            except Exception:  # noqa: BLE001
                pass
        if err == "TRUNCATED" and status != "truncated":
            p.append(f"TRUNCATED walks as {status}: {detail}")
        if err == "CORRUPT_HEADER":
            if status != "corrupt":
                p.append(f"CORRUPT_HEADER walks as {status}: {detail}")
            old = config.settings.reading_validation_mode
            config.settings.reading_validation_mode = config.RAISE
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(io.BytesIO(data))
                    for e in ds.iterall():
                        e.value  # noqa: B018
                    if "PixelData" in ds:
                        ds.pixel_array  # noqa: B018
                        p.append("CORRUPT_HEADER reads completely in pydicom")
            except Exception:  # noqa: BLE001
                pass
            finally:
                config.settings.reading_validation_mode = old
        return p
    status, detail = walk_part10(data)
    if status != "ok":
        p.append(f"readable object walks as {status}: {detail}")
    ds = load(row["path"])
    conf = conformance_problems(data, ds)
    if NON_CONFORMANT in codes and not conf:
        p.append("NON_CONFORMANT but conformant")
    if NON_CONFORMANT not in codes and conf:
        p.append(f"not flagged NON_CONFORMANT: {conf[:2]}")
    has_pixels = "PixelData" in ds
    if "NO_PIXEL_DATA" in codes and has_pixels:
        p.append("NO_PIXEL_DATA but PixelData present")
    if "NO_PIXEL_DATA" not in codes and not has_pixels:
        p.append("no PixelData but not NO_PIXEL_DATA")
    if not has_pixels:
        # reported for its most basic reason only (its codes are checked with the
        # category for every row), like an unreadable file
        if row["duplicate_of"]:
            p.append("object without pixel data names a duplicate_of")
        return p
    arr = None
    if has_pixels:
        try:
            arr = ds.pixel_array
        except Exception:  # noqa: BLE001
            if "UNREADABLE_PIXELS" not in codes:
                p.append("pixels do not decode")
        else:
            if "UNREADABLE_PIXELS" in codes:
                p.append("UNREADABLE_PIXELS decodes")
    modality = str(ds.get("Modality", ""))
    if (modality not in expect["modalities"]) != ("UNEXPECTED_MODALITY" in codes):
        p.append(f"modality {modality} vs UNEXPECTED_MODALITY")
    region = header_region(ds)
    unexpected_region = region not in ("", *expect["body_regions"])
    if unexpected_region != ("UNEXPECTED_ANATOMY" in codes):
        p.append(f"header region {region!r} vs UNEXPECTED_ANATOMY")
    contradiction = header_contradiction(ds)
    if contradiction and "ANATOMY_HEADER_MISMATCH" not in codes:
        p.append("header region fields contradict without ANATOMY_HEADER_MISMATCH")
    filed_elsewhere = (row["true_region"] in expect["body_regions"] and region in expect["body_regions"]
                       and row["true_region"] != region)
    if filed_elsewhere and "ANATOMY_HEADER_MISMATCH" not in codes:
        p.append(f"{row['true_region']} image under a {region} header without ANATOMY_HEADER_MISMATCH")
    if "ANATOMY_HEADER_MISMATCH" in codes and not contradiction and not filed_elsewhere:
        p.append("ANATOMY_HEADER_MISMATCH without contradicting fields or content")
    claims_expected = modality in expect["modalities"] and not unexpected_region and not contradiction
    if "IRRELEVANT_CONTENT" in codes and contradiction:
        p.append("IRRELEVANT_CONTENT on a header that contradicts itself (ANATOMY_HEADER_MISMATCH alone)")
    elif "IRRELEVANT_CONTENT" in codes and not claims_expected:
        p.append(f"IRRELEVANT_CONTENT but the header does not claim expected content "
                 f"(modality {modality}, region {region!r})")
    is_loc = ("LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])]
              or re.search(r"(^|[^A-Z])(LOC|LOCALI[SZ]ER|SURVEY|SCOUT|TOPOGRAM|SCANOGRAM)",
                           str(ds.get("SeriesDescription", "")).upper()) is not None)
    if is_loc != ("LOCALIZER" in codes):
        p.append("localizer naming vs LOCALIZER")
    ids_here = _identifiers(ds, doc["planted_identifiers"])
    if ("PHI_PRESENT" in codes) != bool(ids_here):
        p.append(f"PHI_PRESENT vs identifiers found {ids_here}")
    if not codes and (str(ds.get("PatientIdentityRemoved", "")) != "YES" or ds.get("PatientBirthDate")):
        p.append("clean object not de-identified")
    if str(ds.get("BurnedInAnnotation", "")) == "YES" and "BURNED_IN_ANNOTATION" not in codes:
        p.append("BurnedInAnnotation YES without the code")
    if "ImagePositionPatient" not in ds and "Rows" in ds and "PerFrameFunctionalGroupsSequence" not in ds:
        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        if spacing is not None:
            bad = any(float(v) < 0.05 or float(v) > 5 for v in spacing)
            if bad != ("SPACING_OUT_OF_RANGE" in codes):
                p.append(f"projection spacing {list(spacing)} vs SPACING_OUT_OF_RANGE")
        res = any(v < 64 or v > 8192 for v in (ds.Rows, ds.Columns))
        if res != ("RESOLUTION_OUT_OF_RANGE" in codes):
            p.append(f"matrix {ds.Rows}x{ds.Columns} vs RESOLUTION_OUT_OF_RANGE")
    if arr is not None:
        img = _grey(_frame(ds))
        flat, clipped = _flat_or_clipped(img)
        p += _quality(img, codes, ds, flat)
        if "IRRELEVANT_CONTENT" in codes and (flat or clipped):
            p.append("IRRELEVANT_CONTENT on flat or clipped pixels (their pixel codes are the finding)")
        foreign_content = (row["true_modality"] not in expect["modalities"]
                           or row["true_region"] not in expect["body_regions"])
        if claims_expected and foreign_content and "CONSTANT_IMAGE" not in codes:
            what = f"{row['true_modality']} {row['true_region']} pixels under an expected header"
            if flat and "LOW_DYNAMIC_RANGE" not in codes:
                p.append(f"{what}, mostly one value, without LOW_DYNAMIC_RANGE")
            if clipped and "SATURATED" not in codes:
                p.append(f"{what}, a large share at the maximum, without SATURATED")
            if not (flat or clipped) and "IRRELEVANT_CONTENT" not in codes:
                p.append(f"{what} without IRRELEVANT_CONTENT")
    if "EXACT_DUPLICATE" in codes:
        other = by_path.get(row["duplicate_of"])
        if other is None:
            p.append("EXACT_DUPLICATE without duplicate_of")
        elif arr is not None and not np.array_equal(arr, load(other["path"]).pixel_array):
            p.append("EXACT_DUPLICATE pixels differ")
        elif not row["path"] > row["duplicate_of"]:
            p.append("duplicate_of sorts later")
    if "DUPLICATE_SOP_UID" in codes:
        other = by_path.get(row["duplicate_of"])
        if other is None or load(other["path"]).SOPInstanceUID != ds.SOPInstanceUID:
            if not any(r != row and load(r["path"]).SOPInstanceUID == ds.SOPInstanceUID
                       for r in by_path.values() if r["sop_instance_uid"] == row["sop_instance_uid"]
                       and not r["ingest_error"] and r["path"] < row["path"]):
                p.append("DUPLICATE_SOP_UID without an earlier object with that UID")
    if "NEAR_DUPLICATE" in codes:
        other = by_path.get(row["duplicate_of"])
        if other is None:
            p.append("NEAR_DUPLICATE without duplicate_of")
        else:
            o = load(other["path"])
            if data == (out / other["path"]).read_bytes():
                p.append("NEAR_DUPLICATE has the same bytes")
            if arr is not None:
                b = o.pixel_array
                if arr.shape == b.shape and np.array_equal(arr, b):
                    p.append("NEAR_DUPLICATE has the same pixels")
                s = _similar(_frame(ds), _frame(o))
                if s < 0.85:
                    p.append(f"NEAR_DUPLICATE not close (correlation {s:.2f})")
    return p


def _identifiers(ds, planted: list[str]) -> list[str]:
    found = []
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "OperatorsName",
               "ReferringPhysicianName", "StudyDescription", "PatientAddress",
               "InstitutionAddress", "InstitutionName", "PerformingPhysicianName"):
        value = str(ds.get(kw, "") or "")
        if not value:
            continue
        if kw == "PatientBirthDate":
            found.append(value)
            continue
        for ident in planted:
            if ident and (ident == value or (len(ident) > 5 and ident in value)):
                found.append(ident)
    return found


def _grey(img: np.ndarray) -> np.ndarray:
    """One value per pixel (the mean of the samples of a colour image)."""
    return img.astype(np.float64).mean(axis=-1) if img.ndim == 3 else img


def _flat_or_clipped(img: np.ndarray) -> tuple[bool, bool]:
    """(mostly one value, a large share at the maximum): pixels whose content is
    not judged (a white page, a text page on black, full-intensity test fields)."""
    a = np.asarray(img, np.float64)
    if a.min() == a.max():
        return True, True
    _, counts = np.unique(a, return_counts=True)
    return bool(counts.max() / a.size >= 0.9), bool(np.mean(a == a.max()) >= 0.1)


def _quality(img: np.ndarray, codes: set[str], ds, flat: bool) -> list[str]:
    p = []
    a = img.astype(np.float64)
    constant = a.min() == a.max()
    if constant != ("CONSTANT_IMAGE" in codes):
        p.append("constant pixels vs CONSTANT_IMAGE")
    if constant:
        return p
    levels = len(np.unique(a))
    lo, hi = np.percentile(a, [0.5, 99.5])
    low = levels <= 16 or (hi - lo) <= 32
    if "LOW_DYNAMIC_RANGE" in codes and not (low or flat):
        p.append(f"LOW_DYNAMIC_RANGE with {levels} levels, range {hi - lo:.0f}")
    if not codes and low and int(ds.get("BitsStored", 8)) > 8:
        p.append(f"clean image with {levels} levels, range {hi - lo:.0f}")
    at_max = float(np.mean(a == a.max()))
    if "SATURATED" in codes and at_max < 0.1:
        p.append(f"SATURATED with {at_max:.1%} at the maximum")
    if not codes and at_max > 0.05 and str(ds.get("Modality")) in ("MR",):
        p.append(f"clean MR with {at_max:.1%} at the maximum")
    return p


def _check_series(rows: list[dict], load, full: bool) -> list[str]:
    """Geometry of tomographic series against the truth (series codes)."""
    p = []
    groups = defaultdict(list)
    for r in rows:
        if not r["ingest_error"] and r["series_uid"]:
            groups[r["series_uid"]].append(r)
    geometry = {"INCONSISTENT_ORIENTATION", "IRREGULAR_SPACING", "MISSING_SLICES",
                "TOO_FEW_SLICES", "SPACING_OUT_OF_RANGE", "RESOLUTION_OUT_OF_RANGE"}
    for uid, members in groups.items():
        # an instance without pixel data is NO_PIXEL_DATA alone; its position
        # still belongs to the series geometry
        codes = [set(filter(None, r["reasons"].split(";"))) & (geometry | {"LOCALIZER"})
                 for r in members if "NO_PIXEL_DATA" not in r["reasons"].split(";")]
        if not codes:
            continue
        series_codes = set.intersection(*codes)
        dss = [load(r["path"]) for r in members]
        planar = [ds for ds in dss if "ImagePositionPatient" in ds]
        if not planar:
            continue  # projection images: spacing and matrix are checked per object
        if any(c != series_codes for c in codes):
            p.append(f"series {uid[-12:]}: series codes differ between instances")
        if "LOCALIZER" in series_codes:
            continue
        if int(planar[0].get("NumberOfFrames", 1) or 1) > 1:
            continue
        iops = {tuple(np.round(np.array(ds.ImageOrientationPatient, float), 5)) for ds in planar}
        if (len(iops) > 1) != ("INCONSISTENT_ORIENTATION" in series_codes):
            p.append(f"series {uid[-12:]}: {len(iops)} orientations vs truth {sorted(series_codes)}")
        spacing = [float(v) for v in planar[0].PixelSpacing]
        thick = float(planar[0].get("SliceThickness", 1) or 1)
        out_of_range = any(s < 0.05 or s > 5 for s in spacing) or thick < 0.1 or thick > 12
        if out_of_range != ("SPACING_OUT_OF_RANGE" in series_codes):
            p.append(f"series {uid[-12:]}: spacing {spacing} thickness {thick} vs truth")
        res = any(v < 64 or v > 8192 for v in (planar[0].Rows, planar[0].Columns))
        if res != ("RESOLUTION_OUT_OF_RANGE" in series_codes):
            p.append(f"series {uid[-12:]}: matrix vs RESOLUTION_OUT_OF_RANGE")
        if len(planar) <= 2:
            if "TOO_FEW_SLICES" not in series_codes and len({ds.SOPInstanceUID for ds in planar}) <= 2:
                p.append(f"series {uid[-12:]}: {len(planar)} slices without TOO_FEW_SLICES")
            continue
        if "TOO_FEW_SLICES" in series_codes:
            p.append(f"series {uid[-12:]}: TOO_FEW_SLICES with {len(planar)} slices")
        if len(iops) > 1:
            continue
        iop = np.array(planar[0].ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        pos = sorted({round(float(np.dot(normal, np.array(ds.ImagePositionPatient, float))), 4)
                      for ds in planar})
        gaps = np.diff(pos)
        if len(gaps) == 0:
            continue
        step = float(np.min(gaps))
        ratios = gaps / step
        regular = np.allclose(gaps, step, atol=1e-3)
        missing = bool(np.any(np.abs(ratios - 2) < 0.01))
        irregular = bool(np.any(np.abs(ratios - np.round(ratios)) > 0.1))
        if regular == bool(series_codes & {"IRREGULAR_SPACING", "MISSING_SLICES"}):
            p.append(f"series {uid[-12:]}: regular={regular} vs truth {sorted(series_codes)}")
        if missing != ("MISSING_SLICES" in series_codes):
            p.append(f"series {uid[-12:]}: missing={missing} vs truth")
        if irregular != ("IRREGULAR_SPACING" in series_codes):
            p.append(f"series {uid[-12:]}: irregular={irregular} vs truth")
        numbers = sorted({int(ds.InstanceNumber) for ds in planar})
        gap_numbers = numbers != list(range(numbers[0], numbers[0] + len(numbers)))
        if gap_numbers != ("MISSING_SLICES" in series_codes):
            p.append(f"series {uid[-12:]}: instance numbers {numbers[:3]}.. vs truth")
    return p


def _check_peers(rows: list[dict], chosen: list[dict], load) -> list[str]:
    """NOISY and BLURRY measured against clean instances of the same protocol and site."""
    p = []
    peers = defaultdict(list)
    for r in rows:
        if not r["reasons"]:
            peers[(r["site"], r["modality"])].append(r)
    for r in chosen:
        codes = set(filter(None, r["reasons"].split(";")))
        if not codes & {"NOISY", "BLURRY"} or r["ingest_error"]:
            continue
        ds = load(r["path"])
        desc = str(ds.get("SeriesDescription", ""))
        group = [q for q in peers[(r["site"], r["modality"])]
                 if str(load(q["path"]).get("SeriesDescription", "")) == desc
                 and q["series_uid"] != r["series_uid"] or q["series_uid"] == r["series_uid"]
                 and not q["reasons"]]
        group = [q for q in group if load(q["path"]).Rows == ds.Rows][:12]
        if len(group) < 3:
            continue
        img = _frame(ds)
        ref = [_frame(load(q["path"])) for q in group]
        if "NOISY" in codes:
            ratio = noise_sigma(img) / (np.median([noise_sigma(x) for x in ref]) + 1e-9)
            if ratio < 1.8:
                p.append(f"{r['path']}: NOISY only {ratio:.2f}x its peers")
        if "BLURRY" in codes:
            ratio = sharpness(img) / (np.median([sharpness(x) for x in ref]) + 1e-9)
            if ratio > 0.6:
                p.append(f"{r['path']}: BLURRY keeps {ratio:.2f} of its peers' sharpness")
    return p


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.deliveries.verify")
    parser.add_argument("out")
    parser.add_argument("--sample", type=int, default=None)
    args = parser.parse_args(argv)
    problems = check(args.out, args.sample)
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
