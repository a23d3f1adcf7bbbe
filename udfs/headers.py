"""Parse one DICOM object's header into a typed row, or classify why it cannot be read.

Reads only the header (pydicom `stop_before_pixels`, long values skipped with
`defer_size`) through a `BlockReader`, so an object costs roughly its header's
bytes. The outcome is always a dict: either the promoted attributes of
`schemas.ingest.PROMOTED` plus the header as DICOM JSON, or `error_code` with
a message. Error classes (schemas.reasons): EMPTY_FILE, NOT_DICOM, TRUNCATED,
CORRUPT_HEADER, IO_ERROR, TIMEOUT.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import signal
import struct
import threading
from dataclasses import dataclass
from typing import Any, Callable

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from dicom_triage.schemas.ingest import PROMOTED, PROMOTED_COLUMNS
from dicom_triage.udfs.identifiers import keyed_hash
from dicom_triage.udfs.conformance import conformance_problems
from dicom_triage.udfs.phi import PATIENT_NAME_KEYWORDS, name_words, phi_evidence, without_names
from dicom_triage.udfs.object_reader import (DEFLATED_TS, BlockReader, InflateLimitExceeded, ReadBudgetExceeded,
                                declared_transfer_syntax, read_deflated)

# Malformed values are common in real deliveries; they become nulls, not warnings.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
# Text VRs a person may type a name into; the patient's name is taken out of them.
FREE_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC"}
FREE_TEXT_KEYWORDS = ("StudyDescription", "SeriesDescription", "ProtocolName")
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


@dataclass(frozen=True)
class HeaderPolicy:
    """What one header parse may read and what it must hide (conf: ingest.*, privacy.*)."""

    secret: bytes
    hash_keywords: frozenset[str] = frozenset()
    drop_keywords: frozenset[str] = frozenset()
    keep_private_values: bool = False
    first_block_bytes: int = 8192
    max_block_bytes: int = 262144
    max_header_bytes: int = 16 * 2**20
    defer_size_bytes: int = 16384
    timeout_seconds: float = 20.0
    accept_missing_preamble: bool = True
    json_max_chars: int = 1_000_000


class ParseTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float, work: str = "header parse", setting: str = "ingest.parse_timeout_seconds"):
    """Raise ParseTimeout after `seconds` of wall time (main thread only: SIGALRM);
    the message names the work and the setting that bounds it."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise ParseTimeout(f"{work} exceeded {seconds:g} s ({setting})")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# How the listing writes a byte of a file name that is not UTF-8 (jobs/storage.py).
UNDECODABLE_BYTE = re.compile(r"\\x[89a-f][0-9a-f]")


def read_error_message(path: str, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and UNDECODABLE_BYTE.search(path):
        return ("the file name is not valid UTF-8 (its bytes are shown as \\xNN); tables hold names as "
                "UTF-8, so the object cannot be read by its name: rename it, e.g. with "
                "`convmv -f latin1 -t utf8 -r --notest DELIVERY`")
    return f"{type(exc).__name__}: {exc}"


def error_row(code: str, message: str, bytes_read: int = 0) -> dict:
    return {"error_code": code, "error_message": message[:2000], "bytes_read": bytes_read}


def parse_object(fetch: Callable[[int, int], bytes], size: int, policy: HeaderPolicy, path: str = "") -> dict:
    """Parse the header of one object of `size` bytes, read through `fetch(start, end)`
    (`path` only words a read error)."""
    if size == 0:
        return error_row("EMPTY_FILE", "object has zero bytes")
    reader = BlockReader(fetch, size, policy.first_block_bytes, policy.max_block_bytes,
                         policy.max_header_bytes)
    try:
        with time_limit(policy.timeout_seconds):
            return _parse(reader, policy)
    except ParseTimeout as exc:
        return error_row("TIMEOUT", str(exc), reader.bytes_fetched)
    except ReadBudgetExceeded as exc:
        return error_row("CORRUPT_HEADER", str(exc), reader.bytes_fetched)
    except (OSError, EOFError) as exc:
        if isinstance(exc, EOFError) or "shorter than listed" in str(exc):
            return error_row("IO_ERROR", f"object changed while reading: {exc}", reader.bytes_fetched)
        return error_row("IO_ERROR", read_error_message(path, exc), reader.bytes_fetched)


def _parse(reader: BlockReader, policy: HeaderPolicy) -> dict:
    head = reader.read(132)
    reader.seek(0)
    has_preamble = len(head) == 132 and head[128:132] == b"DICM"
    if not has_preamble and not (policy.accept_missing_preamble and _looks_like_raw_dataset(head)):
        return error_row("NOT_DICOM", "no 'DICM' prefix at byte 128 and no DICOM dataset at byte 0",
                         reader.bytes_fetched)
    deflated_pixels = False
    try:
        if has_preamble and declared_transfer_syntax(reader) == DEFLATED_TS:
            # inflated here with a bound: pydicom would inflate the whole stream
            ds, deflated_pixels = read_deflated(reader, policy.max_header_bytes, stop_before_pixels=True,
                                                defer_size=policy.defer_size_bytes)
        else:
            ds = pydicom.dcmread(reader, stop_before_pixels=True, defer_size=policy.defer_size_bytes,
                                 force=not has_preamble)
    except (ParseTimeout, ReadBudgetExceeded):
        raise
    except InflateLimitExceeded as exc:
        return error_row("CORRUPT_HEADER", f"{exc} (ingest.max_header_bytes)", reader.bytes_fetched)
    except InvalidDicomError as exc:
        if not has_preamble:
            return error_row("NOT_DICOM", str(exc), reader.bytes_fetched)
        code = "TRUNCATED" if reader.tell() >= reader.size - 8 else "CORRUPT_HEADER"
        return error_row(code, f"file meta information unreadable: {exc}", reader.bytes_fetched)
    except Exception as exc:  # pydicom raises many types on damaged bytes
        code = "TRUNCATED" if _ran_out_of_bytes(exc, reader) else "CORRUPT_HEADER"
        return error_row(code, f"{type(exc).__name__}: {exc}", reader.bytes_fetched)

    stop_offset = reader.tell()
    try:
        truncation = _truncation(ds, reader, stop_offset)
    except (ParseTimeout, ReadBudgetExceeded):
        raise
    except Exception as exc:
        return error_row("CORRUPT_HEADER", f"{type(exc).__name__}: {exc}", reader.bytes_fetched)
    if truncation:
        damaged = _length_overruns_pixel_data(ds, reader)
        if damaged:
            return error_row("CORRUPT_HEADER", damaged, reader.bytes_fetched)
        return error_row("TRUNCATED", truncation, reader.bytes_fetched)
    if not has_preamble and not _plausible(ds):
        return error_row("NOT_DICOM", "bytes parse only as an empty or implausible dataset",
                         reader.bytes_fetched)
    try:
        row = dataset_row(ds, policy)
    except (ParseTimeout, ReadBudgetExceeded):
        raise
    except Exception as exc:
        return error_row("CORRUPT_HEADER", f"{type(exc).__name__}: {exc}", reader.bytes_fetched)
    row["has_preamble"] = has_preamble
    row["has_pixel_data"] = deflated_pixels or _has_pixel_tag(ds, reader, stop_offset)
    # a deflated object's pixel data sits in the inflated stream: no file offset
    row["pixel_data_offset"] = stop_offset if row["has_pixel_data"] and not _is_deflated(ds) else None
    row["header_bytes_read"] = reader.bytes_fetched
    row["error_code"] = None
    return row


def _ran_out_of_bytes(exc: Exception, reader: BlockReader) -> bool:
    """Did the parser fail because the bytes ended (rather than because they are wrong)?"""
    ended = isinstance(exc, (EOFError, struct.error)) or any(
        hint in str(exc) for hint in ("No tag to read", "truncated", "EOF", "end of file"))
    return ended and reader.tell() >= reader.size - 8


def _looks_like_raw_dataset(head: bytes) -> bool:
    """A preamble-less file (ACR-NEMA style) starts with a group 0x0002 or 0x0008 element
    (little or big endian)."""
    if len(head) < 8:
        return False
    return any(struct.unpack(order, head[:4])[0] in (0x0002, 0x0008) for order in ("<HH", ">HH"))


def _plausible(ds) -> bool:
    return any(keyword in ds for keyword in ("SOPClassUID", "SOPInstanceUID", "Modality", "Rows"))


def _is_deflated(ds) -> bool:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return bool(ts) and ts.is_deflated


def _truncation(ds, reader: BlockReader, stop_offset: int) -> str | None:
    """Why the object is shorter than its header says, or None.

    pydicom stops silently when a file ends between or inside elements, so
    check that the last element read fits in the file, and that the pixel data
    element's declared length fits in what follows it.
    """
    if _is_deflated(ds):
        return None
    size = reader.size
    last_end = _last_element_end(ds)
    if last_end is None and getattr(ds, "file_meta", None) is not None:
        last_end = _last_element_end(ds.file_meta)
    if len(ds) == 0 and stop_offset >= size:
        return "object ends before its dataset starts"
    if last_end is not None and last_end > size:
        return f"last header element needs {last_end} bytes, object has {size}"
    if stop_offset >= size:  # parser ran to the end without meeting pixel data
        if last_end is not None and 0 < size - last_end < 8:
            return f"object ends inside an element header at byte {last_end}"
        # An image object whose last element ends exactly at the end of the
        # file is whole, only without pixel data (NO_PIXEL_DATA, pixels stage);
        # a cut lands inside an element far more often than between two.
        if _is_image_storage(ds) and last_end != size:
            return "image object ends before its pixel data"
        return None
    tag_bytes = reader.read_at(stop_offset, 12)
    little = _little_endian(ds)
    if _tag_at(tag_bytes, little) not in PIXEL_TAGS:
        return None
    header_len, length = _pixel_element_header(tag_bytes, little)
    if length is None:
        return f"pixel data element header cut at byte {size}"
    value_start = stop_offset + header_len
    if length == 0xFFFFFFFF:
        return _encapsulated_truncation(reader, value_start, little)
    if length > size - value_start:
        return f"pixel data declares {length} bytes, object holds {size - value_start}"
    return None


def _pixel_element_header(data: bytes, little: bool) -> tuple[int, int | None]:
    """(header length, value length) of the pixel data element at `data`.
    The VR encoding is sniffed from the bytes: files that declare explicit VR
    and write implicit VR (or have no transfer syntax) exist."""
    fmt = "<I" if little else ">I"
    explicit = data[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN")
    header_len = 12 if explicit else 8
    if len(data) < header_len:
        return header_len, None
    return header_len, struct.unpack(fmt, data[header_len - 4:header_len])[0]


def _encapsulated_truncation(reader: BlockReader, start: int, little: bool) -> str | None:
    """Encapsulated pixel data ends with a sequence delimiter. Look at the
    tail first (one small read); only when it is not there (trailing data after
    the pixels, as in DICOM/TIFF dual files) walk the fragment item headers."""
    tail = reader.read_at(reader.size - 64, 64)
    if little and SEQUENCE_DELIMITER in tail:
        return None
    item, delimiter = (0xFFFEE000, 0xFFFEE0DD)
    offset = start
    while offset + 8 <= reader.size:
        header = reader.read_at(offset, 8)
        tag = _tag_at(header, little)
        length = struct.unpack("<I" if little else ">I", header[4:8])[0]
        if tag == delimiter:
            return None
        if tag != item:
            return f"unexpected element inside encapsulated pixel data at byte {offset}"
        offset += 8 + length
    return f"encapsulated pixel data runs past the end of the object ({reader.size} bytes)"


# how far past a damaged element to look for the pixel data's tag
PIXEL_TAG_SEARCH_BYTES = 65536


def _length_overruns_pixel_data(ds, reader: BlockReader) -> str | None:
    """Why a header element that runs past the end of the object is damaged
    rather than cut, or None: it claims more bytes than the whole object, or
    the object goes on to hold its pixel data element after that element's
    start. A cut file ends inside its last element; a damaged length (or VR,
    misread as a length) claims bytes the file has, and more."""
    elements = list(ds._dict.values())
    last = elements[-1] if elements else None
    if not isinstance(last, RawDataElement) or last.value_tell is None or last.tag in PIXEL_TAGS:
        return None
    if last.length == 0xFFFFFFFF or last.value_tell + last.length <= reader.size:
        return None   # the element fits: what is cut is the pixel data
    start = last.value_tell
    if last.length > reader.size:
        return (f"element {last.tag} at byte {start} claims {last.length} bytes, more than the whole object "
                f"({reader.size} bytes): a damaged length or VR")
    window = reader.read_at(start, min(reader.size - start, PIXEL_TAG_SEARCH_BYTES))
    tag = b"\xe0\x7f\x10\x00" if _little_endian(ds) else b"\x7f\xe0\x00\x10"
    found = window.find(tag)
    if found < 0:
        return None
    return (f"element {last.tag} claims {last.length} bytes from byte {start}, past the end of the object "
            f"({reader.size} bytes), yet the pixel data element follows at byte {start + found}: "
            "a damaged length or VR")


def _last_element_end(ds) -> int | None:
    elements = list(ds._dict.values())
    if not elements:
        return None
    last = elements[-1]
    if isinstance(last, RawDataElement) and last.value_tell is not None and last.length != 0xFFFFFFFF:
        return last.value_tell + last.length
    return None


def _is_image_storage(ds) -> bool:
    sop_class = ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None),
                                                  "MediaStorageSOPClassUID", None)
    name = UID(str(sop_class)).name if sop_class else ""
    return "Image Storage" in name and "Rows" in ds


def _little_endian(ds) -> bool:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return True if not ts else ts.is_little_endian


def _tag_at(data: bytes, little: bool) -> int | None:
    if len(data) < 4:
        return None
    group, element = struct.unpack("<HH" if little else ">HH", data[:4])
    return (group << 16) | element


def _has_pixel_tag(ds, reader: BlockReader, stop_offset: int) -> bool:
    if any(keyword in ds for keyword in PIXEL_KEYWORDS):
        return True
    if stop_offset >= reader.size:
        return False
    return _tag_at(reader.read_at(stop_offset, 4), _little_endian(ds)) in PIXEL_TAGS


# -- typed promoted attributes -------------------------------------------------

def dataset_row(ds, policy: HeaderPolicy) -> dict:
    """Promoted attributes as typed values, identifier keys and the header JSON."""
    row: dict[str, Any] = {"conformance": conformance_problems(ds)}  # first: on the raw, unconverted values
    names = name_words(_text(ds, keyword) for keyword in PATIENT_NAME_KEYWORDS)
    named_in_text = []
    for keyword, kind in PROMOTED:
        value = _typed(ds, keyword, kind)
        if keyword in FREE_TEXT_KEYWORDS and (cleaned := without_names(value, names)) != value:
            value = cleaned
            named_in_text.append(f"{keyword} contains the patient's name")
        row[PROMOTED_COLUMNS[keyword]] = value
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    row["transfer_syntax_uid"] = str(ts) if ts else None
    sop_class = row.get("sop_class_uid")
    row["sop_class_name"] = UID(sop_class).name if sop_class else None
    row["patient_key"] = keyed_hash(policy.secret, _text(ds, "PatientID"))
    row["accession_key"] = keyed_hash(policy.secret, _text(ds, "AccessionNumber"))
    identifiers = {kw: value for kw in policy.hash_keywords if (value := _text(ds, kw))}
    person_names = {kw: value for kw, value in _person_names(ds) if kw not in identifiers}
    identifiers.update(person_names)
    row["identifiers_present"] = sorted(identifiers)
    row["phi_evidence"] = phi_evidence(identifiers, _text(ds, "PatientIdentityRemoved"),
                                       frozenset(person_names)) + named_in_text
    header = header_json(ds, policy, names)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False, default=str)
    row["header_json"] = text if len(text) <= policy.json_max_chars else json.dumps(
        {"_truncated": True, "_chars": len(text)})
    return row


def _person_names(ds):
    """(keyword, text) of the top-level person-name (PN) elements that hold a value."""
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
            if elem.VR == "PN" and elem.keyword and (text := _text(ds, elem.keyword)):
                yield elem.keyword, text
        except Exception:  # a malformed element is reported by header_json
            continue


def _text(ds, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _values(ds, keyword: str) -> list:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _typed(ds, keyword: str, kind: str):
    """The attribute's value as the column's type; None when absent or malformed."""
    try:
        values = _values(ds, keyword)
    except Exception:
        return None
    if not values:
        return None
    convert = {"str": _as_str, "long": _as_long, "double": _as_double, "date": _as_date}[kind.rstrip("[]")]
    converted = [convert(v) for v in values]
    if kind.endswith("[]"):
        converted = [v for v in converted if v is not None]
        return converted or None
    return converted[0]


def _as_str(value) -> str | None:
    text = str(value).strip().strip("\x00")
    return text or None


def _as_double(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _as_long(value) -> int | None:
    number = _as_double(value)
    if number is None or abs(number) >= 2**63:
        return None
    return int(number)


def _as_date(value) -> dt.date | None:
    text = str(value).strip()
    for fmt in ("%Y%m%d", "%Y.%m.%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text[:10], fmt).date()
        except ValueError:
            continue
    return None


# -- DICOM JSON keyed by keyword -----------------------------------------------

def header_json(ds, policy: HeaderPolicy, names: frozenset[str] = frozenset()) -> dict:
    """The header as DICOM JSON (PS3.18 F.2) keyed by keyword (tag for private and
    unknown elements). Identifiers and every person name (VR PN, at any depth)
    are keyed hashes; the words of the patient's name (`names`) are taken out of
    other text; configured free text and bulk data are left out, private values
    dropped unless configured."""
    out = {}
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        out.update(_dataset_json(meta, policy, names))
    out.update(_dataset_json(ds, policy, names))
    return out


def _dataset_json(ds, policy: HeaderPolicy, names: frozenset[str]) -> dict:
    out = {}
    for tag in list(ds.keys()):
        try:
            raw = ds.get_item(tag)
            key, value = _element_json(ds, tag, raw, policy, names)
        except Exception as exc:  # one bad element must not lose the header
            key, value = f"{int(tag):08X}", {"Error": f"{type(exc).__name__}"}
        if key is not None:
            out[key] = value
    return out


def _element_json(ds, tag, raw, policy: HeaderPolicy, names: frozenset[str]):
    key = pydicom.datadict.keyword_for_tag(tag) or f"{int(tag):08X}"
    if int(tag) in PIXEL_TAGS:
        return None, None
    vr = getattr(raw, "VR", None)
    length = getattr(raw, "length", None)
    if isinstance(raw, RawDataElement) and raw.value is None and length:
        return key, {"vr": vr, "BulkDataLength": length}  # deferred: never read
    if tag.is_private and not policy.keep_private_values:
        return key, {"vr": vr, "Private": True}
    if key in policy.drop_keywords:
        return key, {"vr": vr, "Dropped": True}
    elem = ds[tag]
    vr = elem.VR
    if vr == "SQ":
        return key, {"vr": "SQ", "Value": [_dataset_json(item, policy, names) for item in elem.value]}
    if vr in BINARY_VRS:
        return key, {"vr": vr, "BulkDataLength": len(elem.value or b"")}
    if key in policy.hash_keywords or vr == "PN":
        values = elem.value if isinstance(elem.value, (list, tuple)) or type(elem.value).__name__ == "MultiValue" \
            else ([elem.value] if elem.value not in (None, "") else [])
        text = "\\".join(str(v) for v in values)
        return key, {"vr": vr, "Value": [keyed_hash(policy.secret, text)] if text.strip() else []}
    encoded = elem.to_json_dict(None, 1024)
    encoded.pop("InlineBinary", None)
    if names and vr in FREE_TEXT_VRS and "Value" in encoded:
        encoded["Value"] = [without_names(value, names) for value in encoded["Value"]]
    return key, encoded
