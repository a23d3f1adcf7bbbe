"""Byte-level DICOM Part 10 writer.

A header is a dict keyed by DICOM keyword (or an int tag for private elements);
values are plain Python values whose VR comes from pydicom's data dictionary,
`V(vr, value)` to force a VR (ambiguous or private elements), a list of dicts for
a sequence, or `Encapsulated` for compressed pixel data. `part10` returns the
file bytes together with the byte span of every top-level element, so defects can
cut or overwrite a file at an exact structural position.

Supported transfer syntaxes: implicit VR little endian, explicit VR little
endian, deflated explicit VR little endian and every encapsulated syntax
(the dataset is explicit VR little endian, pixel data in fragments).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydicom.datadict import dictionary_VR, tag_for_keyword

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
ENCAPSULATED = {JPEG_BASELINE, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, J2K_LOSSLESS, RLE_LOSSLESS}

TS_NAMES = {IMPLICIT_LE: "implicit-le", EXPLICIT_LE: "explicit-le", DEFLATED_LE: "deflated-le",
            JPEG_BASELINE: "jpeg-baseline", JPEG_LOSSLESS_SV1: "jpeg-lossless",
            JPEG_LS_LOSSLESS: "jpeg-ls-lossless", J2K_LOSSLESS: "j2k-lossless",
            RLE_LOSSLESS: "rle"}

TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
            "UC", "UI", "UR", "UT"}
SINGLE_VALUED_TEXT = {"LT", "ST", "UT", "UR"}
NUMERIC_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d",
               "UV": "Q", "SV": "q"}
LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
UNDEFINED = 0xFFFFFFFF


class V(NamedTuple):
    """A value with its VR given explicitly."""
    vr: str
    value: Any


@dataclass
class Encapsulated:
    """Compressed pixel data: one list of fragments per frame, and whether the
    Basic Offset Table is filled in (else it is an empty item)."""
    frames: list[list[bytes]]
    offset_table: bool = False


@dataclass
class Span:
    """Byte range of one top-level element inside the file."""
    tag: int
    start: int        # first byte of the tag
    value_start: int  # first byte of the value (after the length field)
    end: int          # one past the last byte of the value (or of the delimiter)
    vr: str


@dataclass
class Encoded:
    data: bytes
    spans: list[Span] = field(default_factory=list)
    dataset_offset: int = 0
    transfer_syntax: str = EXPLICIT_LE

    def span(self, tag: int) -> Span:
        for s in self.spans:
            if s.tag == tag:
                return s
        raise KeyError(f"{tag:08X} not in file")


def tag_of(key: str | int) -> int:
    if isinstance(key, int):
        return key
    tag = tag_for_keyword(key)
    if tag is None:
        raise KeyError(f"unknown keyword {key!r}")
    return tag


def format_ds(x: float) -> str:
    """Decimal string of at most 16 characters (PS3.5 DS)."""
    x = float(x)
    if x == 0:
        return "0"
    for digits in range(12, 3, -1):
        text = f"{x:.{digits}g}"
        if "e" in text:
            text = f"{x:.{min(digits, 8)}f}".rstrip("0").rstrip(".")
        if text in ("-0", ""):
            return "0"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot format {x} as DS")


def _text(vr: str, value: Any, charset: str) -> bytes:
    if isinstance(value, (list, tuple)):
        parts = [_text_one(vr, v) for v in value]
        text = "\\".join(parts)
    else:
        text = _text_one(vr, value)
    raw = text.encode(charset)
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    return raw


def _text_one(vr: str, value: Any) -> str:
    if value is None:
        return ""
    if vr == "DS" and not isinstance(value, str):
        return format_ds(value)
    if vr == "IS" and not isinstance(value, str):
        return str(int(value))
    return str(value)


def _value_bytes(vr: str, value: Any, explicit: bool, charset: str) -> tuple[bytes, bool]:
    """Encoded value and whether it has undefined length (sequences / encapsulated)."""
    if vr in TEXT_VRS:
        return _text(vr, value, charset), False
    if vr in NUMERIC_VRS:
        values = value if isinstance(value, (list, tuple)) else ([] if value is None else [value])
        return struct.pack("<" + NUMERIC_VRS[vr] * len(values), *values), False
    if vr == "AT":
        values = value if isinstance(value, (list, tuple)) else [value]
        return b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in values), False
    if vr == "SQ":
        raise TypeError("sequences are encoded by _encode_element")
    if isinstance(value, Encapsulated):
        return _encapsulate(value), True
    raw = bytes(value or b"")
    if len(raw) % 2:
        raw += b"\0"
    return raw, False


def _encapsulate(pixels: Encapsulated) -> bytes:
    item = lambda payload: struct.pack("<HHI", 0xFFFE, 0xE000, len(payload)) + payload
    frames = []
    for fragments in pixels.frames:
        frames.append(b"".join(item(f + (b"\0" if len(f) % 2 else b"")) for f in fragments))
    if pixels.offset_table:
        offsets, pos = [], 0
        for f in frames:
            offsets.append(pos)
            pos += len(f)
        bot = item(struct.pack(f"<{len(offsets)}I", *offsets))
    else:
        bot = item(b"")
    return bot + b"".join(frames) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def _resolve(key: str | int, value: Any) -> tuple[int, str, Any]:
    tag = tag_of(key)
    if isinstance(value, V):
        return tag, value.vr, value.value
    if isinstance(value, Encapsulated):
        return tag, "OB", value
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return tag, "SQ", value
    vr = dictionary_VR(tag)
    if " or " in vr:
        raise ValueError(f"{key}: ambiguous VR {vr!r}, give it with V(vr, value)")
    return tag, vr, value


def _header(tag: int, vr: str, length: int, explicit: bool) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    if not explicit:
        return struct.pack("<HHI", group, elem, length)
    if vr in LONG_LENGTH_VRS:
        return struct.pack("<HH2sHI", group, elem, vr.encode("ascii"), 0, length)
    if length > 0xFFFF:
        raise ValueError(f"({group:04X},{elem:04X}) {vr} value too long: {length}")
    return struct.pack("<HH2sH", group, elem, vr.encode("ascii"), length)


def encode_dataset(header: dict, explicit: bool = True, charset: str = "latin-1",
                   undefined_sequences: bool = False, base: int = 0) -> tuple[bytes, list[Span]]:
    """Encode `header` (elements sorted by tag) and return bytes and top-level spans."""
    items = sorted((_resolve(k, v) for k, v in header.items() if v is not ...),
                   key=lambda t: t[0])
    out = bytearray()
    spans = []
    for tag, vr, value in items:
        start = base + len(out)
        if vr == "SQ":
            body = b"".join(_encode_item(item, explicit, charset, undefined_sequences)
                            for item in value)
            if undefined_sequences:
                head = _header(tag, vr, UNDEFINED, explicit)
                body += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
            else:
                head = _header(tag, vr, len(body), explicit)
        else:
            body, undefined = _value_bytes(vr, value, explicit, charset)
            head = _header(tag, vr, UNDEFINED if undefined else len(body), explicit)
        out += head + body
        spans.append(Span(tag, start, start + len(head), base + len(out), vr))
    return bytes(out), spans


def _encode_item(item: dict, explicit: bool, charset: str, undefined: bool) -> bytes:
    body, _ = encode_dataset(item, explicit, charset, undefined)
    if undefined:
        return (struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + body
                + struct.pack("<HHI", 0xFFFE, 0xE00D, 0))
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def file_meta(header: dict, transfer_syntax: str, implementation_uid: str,
              implementation_name: str, source_ae: str | None = None,
              overrides: dict | None = None) -> dict:
    """Group 0002 elements for `header` (PS3.10 7.1); `overrides` may replace or,
    with the value `...`, drop an element."""
    meta = {
        "FileMetaInformationVersion": V("OB", b"\x00\x01"),
        "MediaStorageSOPClassUID": header["SOPClassUID"],
        "MediaStorageSOPInstanceUID": header["SOPInstanceUID"],
        "TransferSyntaxUID": transfer_syntax,
        "ImplementationClassUID": implementation_uid,
        "ImplementationVersionName": implementation_name,
    }
    if source_ae:
        meta["SourceApplicationEntityTitle"] = source_ae
    meta.update(overrides or {})
    return meta


def part10(header: dict, transfer_syntax: str, meta: dict, *, preamble: bytes = b"\0" * 128,
           undefined_sequences: bool = False, group_length: bool = True) -> Encoded:
    """A complete Part 10 file: preamble, 'DICM', file meta (explicit VR LE) and the
    dataset in `transfer_syntax`."""
    meta_body, meta_spans = encode_dataset(meta, True, "ascii", False, base=132 + 12)
    prefix = preamble + b"DICM"
    spans = []
    if group_length:
        gl = _header(0x00020000, "UL", 4, True) + struct.pack("<I", len(meta_body))
        spans.append(Span(0x00020000, 132, 140, 144, "UL"))
        prefix += gl
    else:
        meta_body, meta_spans = encode_dataset(meta, True, "ascii", False, base=132)
    spans += meta_spans
    prefix += meta_body
    explicit = transfer_syntax != IMPLICIT_LE
    body, body_spans = encode_dataset(header, explicit, "latin-1", undefined_sequences,
                                      base=len(prefix))
    if transfer_syntax == DEFLATED_LE:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = compressor.compress(body) + compressor.flush()
        if len(body) % 2:
            body += b"\0"
        body_spans = []  # positions inside the deflated stream are not byte positions
    return Encoded(prefix + body, spans + body_spans, len(prefix), transfer_syntax)
