"""Mutations of real DICOM files, and a worker that runs the per-object code paths
on them under a time bound and a memory cap.

Used by tests/test_fuzz.py (a short seeded run) and benchmarks/fuzz/run.py (the
long run). Importable without installing anything (the repository root is on
sys.path for pytest and for the benchmark script).

Mutation kinds (every one starts from a real file and is deterministic for a seed):

* bitflip: 1-16 random bit flips, half of them in the header bytes;
* truncate: the file cut at a structural boundary (an element's start, the end
  of its tag, the start or end of its value, an item or fragment boundary),
  found by walking the encoded dataset (`walk`);
* huge_length: one element's length field rewritten to an absurd value
  (0xFFFFFFF0, 0x7FFFFFFF, undefined length, 0xFFFF for 2-byte lengths, ...);
* deep_sequence: a sequence nested thousands of levels deep inserted before
  the pixel data (closed, unclosed, or with defined lengths);
* wrong_ts: the file meta Transfer Syntax UID swapped for another one
  (implicit / explicit / big endian / deflate / JPEG / JPEG-LS / JPEG 2000 / RLE);
* expansion: objects whose decoding would need many GiB: declared Rows x
  Columns x NumberOfFrames blown up, a JPEG / JPEG-LS / JPEG 2000 codestream
  declaring 65535 x 65535 (or larger) behind a small DICOM header, a small RLE
  stream declared to fill 65535 x 65535 frames, a deflated dataset that
  inflates to GiBs.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import resource
import struct
import time
import traceback
import zlib
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator

import pydicom
from pydicom.datadict import dictionary_VR

KINDS = ("bitflip", "truncate", "huge_length", "deep_sequence", "wrong_ts", "expansion")
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
RLE = "1.2.840.10008.1.2.5"
SYNTAXES = (IMPLICIT, EXPLICIT, DEFLATED, BIG_ENDIAN, RLE,
            "1.2.840.10008.1.2.4.50",   # JPEG baseline
            "1.2.840.10008.1.2.4.70",   # JPEG lossless SV1
            "1.2.840.10008.1.2.4.80",   # JPEG-LS lossless
            "1.2.840.10008.1.2.4.90",   # JPEG 2000 lossless
            "1.2.3.4.5.6.7.8.9")        # not a transfer syntax at all
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


# ---------------------------------------------------------------- seeds
def pydicom_seeds() -> list[tuple[str, bytes]]:
    """pydicom's own test files (read from its folder: get_testdata_files downloads)."""
    return [(f"pydicom/{p.name}", p.read_bytes())
            for p in sorted(PYDICOM_FILES.glob("*.dcm")) if p.stat().st_size <= 4 * 2**20]


def demo_seeds(folder: str | os.PathLike, seed: int = 7) -> list[tuple[str, bytes]]:
    """The demo delivery's files (written into `folder` when it holds none yet)."""
    folder = Path(folder)
    if not any(folder.rglob("*.dcm")):
        from dicom_triage.jobs.demo_data import generate_delivery
        generate_delivery(str(folder), seed=seed)
    return [(f"demo/{p.relative_to(folder)}", p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith("_") and p.stat().st_size > 0]


# ---------------------------------------------------------------- walking the encoding
@dataclasses.dataclass(frozen=True)
class Element:
    """Where one encoded element (or item / delimiter) sits in the file."""
    tag: int
    start: int          # first byte of the tag
    value_start: int
    end: int            # one past the value (== value_start for undefined length)
    length_at: int      # offset of the length field
    length_size: int    # 2 or 4
    depth: int


def _meta_end_and_syntax(data: bytes) -> tuple[int, str | None]:
    """Offset where the dataset starts and the declared Transfer Syntax UID."""
    if data[128:132] != b"DICM":
        return 0, None
    pos, syntax = 132, None
    while pos + 8 <= len(data):
        group, elem = struct.unpack("<HH", data[pos:pos + 4])
        if group != 2:
            break
        vr = data[pos + 4:pos + 6]
        if vr in LONG_VRS:
            length, header = struct.unpack("<I", data[pos + 8:pos + 12])[0], 12
        else:
            length, header = struct.unpack("<H", data[pos + 6:pos + 8])[0], 8
        if elem == 0x0010:
            syntax = data[pos + header:pos + header + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos += header + length
    return pos, syntax


def walk(data: bytes, limit: int = 20000) -> list[Element]:
    """Every element, item and delimiter of the file (meta and dataset, nested
    ones too), in file order; stops quietly where the bytes stop making sense.
    Deflated datasets are walked only as far as the file meta."""
    out: list[Element] = []
    if data[128:132] == b"DICM":
        _walk(data, 132, len(data), True, False, 0, out, limit, meta_only=True)
    start, syntax = _meta_end_and_syntax(data)
    if syntax == DEFLATED:
        return out
    implicit = syntax == IMPLICIT or (syntax is None and not data[start + 4:start + 6].isalpha())
    little = syntax != BIG_ENDIAN
    _walk(data, start, len(data), little, not implicit, 0, out, limit)
    return out


def _walk(data, pos, stop, little, explicit, depth, out, limit, meta_only=False) -> int:
    order = "<" if little else ">"
    while pos + 8 <= stop and len(out) < limit:
        group, elem = struct.unpack(order + "HH", data[pos:pos + 4])
        tag = (group << 16) | elem
        if meta_only and group != 2:
            return pos
        if group == 0xFFFE:      # item or delimiter: always 4-byte length, no VR
            length, header, length_at, size = struct.unpack(order + "I", data[pos + 4:pos + 8])[0], 8, pos + 4, 4
        elif explicit or group == 2:
            vr = data[pos + 4:pos + 6]
            if vr in LONG_VRS:
                length, header, length_at, size = struct.unpack(order + "I", data[pos + 8:pos + 12])[0], 12, pos + 8, 4
            elif vr.isalpha():
                length, header, length_at, size = struct.unpack(order + "H", data[pos + 6:pos + 8])[0], 8, pos + 6, 2
            else:
                return pos
        else:
            length, header, length_at, size = struct.unpack(order + "I", data[pos + 4:pos + 8])[0], 8, pos + 4, 4
        value_start = pos + header
        defined = length != UNDEFINED
        end = value_start + length if defined else value_start
        if defined and end > stop:
            return pos
        out.append(Element(tag, pos, value_start, end, length_at, size, depth))
        if tag in (ITEM_END, SEQ_END):
            return end
        is_sequence = (explicit and data[pos + 4:pos + 6] == b"SQ") or \
            (not explicit and _implicit_vr(tag) == "SQ") or (not defined and tag not in PIXEL_TAGS)
        if tag == ITEM or is_sequence:
            inner = _walk(data, value_start, end if defined else stop, little, explicit,
                          depth + 1, out, limit)
            pos = end if defined else inner
        elif not defined:        # encapsulated pixel data: fragments up to the delimiter
            pos = _walk(data, value_start, stop, little, explicit, depth + 1, out, limit)
        else:
            pos = end
    return pos


def _implicit_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def header_end(data: bytes, elements: list[Element]) -> int:
    """Offset of the pixel data element (or the end of the file)."""
    return next((e.start for e in elements if e.tag in PIXEL_TAGS and e.depth == 0), len(data))


# ---------------------------------------------------------------- mutations
@dataclasses.dataclass
class Mutant:
    kind: str
    seed_name: str
    detail: str
    data: bytes


def bitflip(data: bytes, rng: random.Random, elements: list[Element]) -> tuple[bytes, str] | None:
    if not data:
        return None
    out = bytearray(data)
    head = max(header_end(data, elements), 1)
    flips = []
    for _ in range(rng.randint(1, 16)):
        pos = rng.randrange(min(head, len(out))) if rng.random() < 0.5 else rng.randrange(len(out))
        bit = rng.randrange(8)
        out[pos] ^= 1 << bit
        flips.append(f"{pos}.{bit}")
    return bytes(out), "flipped " + ",".join(flips)


def boundaries(data: bytes, elements: list[Element]) -> list[int]:
    """Every structural cut point: element starts, tag ends, value starts and ends."""
    cuts = {0, 1, 128, 132}
    for e in elements:
        cuts.update((e.start, e.start + 4, e.length_at, e.value_start, e.end, e.end - 1,
                     (e.value_start + e.end) // 2))
    return sorted(c for c in cuts if 0 <= c < len(data))


def truncate(data: bytes, rng: random.Random, elements: list[Element]) -> tuple[bytes, str] | None:
    if len(data) < 2:
        return None
    cut = rng.choice(boundaries(data, elements))
    return data[:cut], f"cut at byte {cut} of {len(data)}"


HUGE_4 = (0xFFFFFFF0, 0xFFFFFFFE, 0x7FFFFFFF, 0x80000000, UNDEFINED, 0x10000000)
HUGE_2 = (0xFFFF, 0xFFF0, 0x8000)


def huge_length(data: bytes, rng: random.Random, elements: list[Element]) -> tuple[bytes, str] | None:
    if not elements:
        return None
    # favour the pixel data element, items and fragments: the lengths decoders trust
    special = [e for e in elements if e.tag in PIXEL_TAGS or e.tag == ITEM]
    e = rng.choice(special) if special and rng.random() < 0.4 else rng.choice(elements)
    little = not _is_big_endian(data) or e.tag >> 16 == 2
    order = "<" if little else ">"
    if e.length_size == 4:
        value = rng.choice(HUGE_4 + (len(data) * 2, len(data) - e.value_start + 1))
        packed = struct.pack(order + "I", value & 0xFFFFFFFF)
    else:
        value = rng.choice(HUGE_2)
        packed = struct.pack(order + "H", value)
    out = bytearray(data)
    out[e.length_at:e.length_at + e.length_size] = packed
    return bytes(out), f"length of ({e.tag >> 16:04X},{e.tag & 0xFFFF:04X}) at {e.length_at} -> {value:#x}"


def _is_big_endian(data: bytes) -> bool:
    return _meta_end_and_syntax(data)[1] == BIG_ENDIAN


def _encoding(data: bytes) -> tuple[bool, bool] | None:
    """(little endian, explicit VR) of the dataset, None when deflated."""
    _, syntax = _meta_end_and_syntax(data)
    if syntax == DEFLATED:
        return None
    return syntax != BIG_ENDIAN, syntax != IMPLICIT


def nested_sequence(depth: int, little: bool, explicit: bool, style: str) -> bytes:
    """(0040,A730) ContentSequence nested `depth` levels: `closed` (undefined
    lengths with delimiters), `unclosed` (no delimiters) or `defined` (lengths)."""
    o = "<" if little else ">"
    tag = struct.pack(o + "HH", 0x0040, 0xA730)

    def seq_header(length: int) -> bytes:
        if explicit:
            return tag + b"SQ\0\0" + struct.pack(o + "I", length)
        return tag + struct.pack(o + "I", length)

    item = struct.pack(o + "HHI", 0xFFFE, 0xE000, UNDEFINED)
    if style == "defined":   # headers only, outermost first; each length covers the levels inside
        level = len(seq_header(0)) + 8
        return b"".join(seq_header((depth - k) * level - len(seq_header(0)))
                        + struct.pack(o + "HHI", 0xFFFE, 0xE000, (depth - k - 1) * level)
                        for k in range(depth))
    opening = (seq_header(UNDEFINED) + item) * depth
    if style == "unclosed":
        return opening
    closing = (struct.pack(o + "HHI", 0xFFFE, 0xE00D, 0) + struct.pack(o + "HHI", 0xFFFE, 0xE0DD, 0)) * depth
    return opening + closing


def deep_sequence(data: bytes, rng: random.Random, elements: list[Element]) -> tuple[bytes, str] | None:
    encoding = _encoding(data)
    if encoding is None or not elements:
        return None
    depth = rng.choice((1000, 3000, 10000, 50000))
    style = rng.choice(("closed", "unclosed", "defined"))
    at = header_end(data, elements)
    if at == len(data):
        top = [e for e in elements if e.depth == 0 and e.tag >> 16 != 2]
        at = rng.choice(top).start if top else len(data)
    blob = nested_sequence(depth, *encoding, style)
    return data[:at] + blob + data[at:], f"{style} sequence {depth} deep inserted at byte {at}"


def set_transfer_syntax(data: bytes, syntax: str) -> bytes:
    """The file with its (0002,0010) value replaced and (0002,0000) fixed up."""
    meta = [e for e in walk(data) if e.tag >> 16 == 2 and e.depth == 0]
    ts = next((e for e in meta if e.tag == 0x00020010), None)
    if ts is None:
        return data
    value = syntax.encode() + (b"\0" if len(syntax) % 2 else b"")
    new = data[ts.start:ts.start + 6] + struct.pack("<H", len(value)) + value
    out = bytearray(data[:ts.start] + new + data[ts.end:])
    group_length = next((e for e in meta if e.tag == 0x00020000), None)
    if group_length is not None and group_length.end - group_length.value_start == 4:
        old = struct.unpack("<I", out[group_length.value_start:group_length.end])[0]
        delta = len(new) - (ts.end - ts.start)
        out[group_length.value_start:group_length.end] = struct.pack("<I", (old + delta) & 0xFFFFFFFF)
    return bytes(out)


def wrong_ts(data: bytes, rng: random.Random, elements: list[Element]) -> tuple[bytes, str] | None:
    _, current = _meta_end_and_syntax(data)
    if current is None or not any(e.tag == 0x00020010 for e in elements):
        return None
    syntax = rng.choice([s for s in SYNTAXES if s != current])
    return set_transfer_syntax(data, syntax), f"transfer syntax {current} -> {syntax}"


# -- expansion: objects that would decode to many GiB --------------------------
def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element."""
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in LONG_VRS:
        return struct.pack("<HH", group, elem) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value


def _text(value: str) -> bytes:
    raw = value.encode()
    return raw + (b" " if len(raw) % 2 else b"")


def _uid(value: str) -> bytes:
    raw = value.encode()
    return raw + (b"\0" if len(raw) % 2 else b"")


def minimal_file(syntax: str, rows: int, columns: int, frames: int, bits: int, pixel_element: bytes,
                 samples: int = 1, deflate_body: Callable[[bytes], bytes] | None = None) -> bytes:
    """A small but complete CT image file in explicit VR little endian (or deflated)."""
    meta_body = (_element(0x00020001, b"OB", b"\0\1")
                 + _element(0x00020002, b"UI", _uid("1.2.840.10008.5.1.4.1.1.2"))
                 + _element(0x00020003, b"UI", _uid("1.2.3.4.99"))
                 + _element(0x00020010, b"UI", _uid(syntax)))
    meta = _element(0x00020000, b"UL", struct.pack("<I", len(meta_body))) + meta_body
    body = (_element(0x00080016, b"UI", _uid("1.2.840.10008.5.1.4.1.1.2"))
            + _element(0x00080018, b"UI", _uid("1.2.3.4.99"))
            + _element(0x00080060, b"CS", _text("CT"))
            + _element(0x0020000D, b"UI", _uid("1.2.3.4.1"))
            + _element(0x0020000E, b"UI", _uid("1.2.3.4.2"))
            + _element(0x00280002, b"US", struct.pack("<H", samples))
            + _element(0x00280004, b"CS", _text("MONOCHROME2" if samples == 1 else "RGB"))
            + (_element(0x00280006, b"US", struct.pack("<H", 0)) if samples == 3 else b"")
            + _element(0x00280008, b"IS", _text(str(frames)))
            + _element(0x00280010, b"US", struct.pack("<H", rows))
            + _element(0x00280011, b"US", struct.pack("<H", columns))
            + _element(0x00280100, b"US", struct.pack("<H", bits))
            + _element(0x00280101, b"US", struct.pack("<H", bits))
            + _element(0x00280102, b"US", struct.pack("<H", bits - 1))
            + _element(0x00280103, b"US", struct.pack("<H", 0))
            + pixel_element)
    if deflate_body is not None:
        body = deflate_body(body)
    return b"\0" * 128 + b"DICM" + meta + body


def rle_bomb_fragment(segment_bytes: int) -> bytes:
    """One RLE frame of one segment: runs of 128 zero bytes (2 bytes each)
    decoding to `segment_bytes` bytes."""
    runs = b"\x81\x00" * (segment_bytes // 128)
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    return header + runs


def encapsulated(fragments: list[bytes]) -> bytes:
    body = struct.pack("<HHI", 0xFFFE, 0xE000, 0)   # empty basic offset table
    for frag in fragments:
        frag = frag + (b"\0" if len(frag) % 2 else b"")
        body += struct.pack("<HHI", 0xFFFE, 0xE000, len(frag)) + frag
    body += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0" + struct.pack("<I", UNDEFINED) + body


_ZERO_DEFLATE: dict[int, bytes] = {}


def deflated_zeros(mib: int) -> bytes:
    """A raw deflate stream of `mib` MiB of zero bytes (about 1 KiB per MiB),
    built from one compressed MiB repeated (a full flush resets the compressor)."""
    if mib not in _ZERO_DEFLATE:
        chunk = bytes(2**20)
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        first = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
        again = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
        _ZERO_DEFLATE[mib] = first + again * (mib - 1) + comp.flush()
    return _ZERO_DEFLATE[mib]


def expansion(data: bytes, rng: random.Random, elements: list[Element]) -> tuple[bytes, str] | None:
    variant = rng.choice(("declared_dims", "codestream_dims", "rle_frames", "deflate_pixels",
                          "deflate_header"))
    if variant == "declared_dims":
        return _blow_up_dims(data, rng, elements)
    if variant == "codestream_dims":
        return _blow_up_codestream(data, rng, elements)
    if variant == "rle_frames":
        side = rng.choice((16384, 32768, 65535))
        frames = rng.choice((1, 3, 1000))
        # a 64 KiB frame encoded in 1 KiB, declared to be side x side: the decoder
        # sizes its output from the header
        fragment = rle_bomb_fragment(65536)
        out = minimal_file(RLE, side, side, frames, 8, encapsulated([fragment] * min(frames, 8)))
        return out, f"RLE, {frames} frame(s) declared {side}x{side} 8-bit"
    if variant == "deflate_pixels":
        mib = rng.choice((1024, 3072))
        side = int((mib * 2**20 / 2) ** 0.5)
        pixel_header = _element(0x7FE00010, b"OW", b"")[:-4] + struct.pack("<I", side * side * 2)
        stream = _deflated_body_with_zeros(pixel_header, mib)
        out = minimal_file(DEFLATED, side, side, 1, 16, b"", deflate_body=lambda body: stream(body))
        return out, f"deflated dataset, {mib} MiB of zero pixels ({side}x{side} 16-bit)"
    # deflate_header: a private OB element of GiBs before the pixels
    mib = rng.choice((512, 2048))
    private = struct.pack("<HH", 0x0009, 0x1010) + b"OB\0\0" + struct.pack("<I", mib * 2**20)
    stream = _deflated_body_with_zeros(private, mib)
    out = minimal_file(DEFLATED, 64, 64, 1, 8, b"", deflate_body=lambda body: stream(body))
    return out, f"deflated dataset, a {mib} MiB private element before the pixels"


def _deflated_body_with_zeros(element_header: bytes, mib: int) -> Callable[[bytes], bytes]:
    """Deflate `body + element_header + mib MiB of zeros` without building the zeros."""
    def build(body: bytes) -> bytes:
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        head = comp.compress(body + element_header) + comp.flush(zlib.Z_FULL_FLUSH)
        # the zero stream starts on a byte boundary with an empty window: splice it
        return head + deflated_zeros(mib)
    return build


def _blow_up_dims(data: bytes, rng: random.Random, elements: list[Element]) -> tuple[bytes, str] | None:
    """Rows / Columns to 65535 (and NumberOfFrames huge when present)."""
    out = bytearray(data)
    little = not _is_big_endian(data)
    changed = []
    for e in elements:
        if e.depth != 0:
            continue
        if e.tag in (0x00280010, 0x00280011) and e.end - e.value_start == 2:
            value = rng.choice((65535, 32768, 16384))
            out[e.value_start:e.end] = struct.pack("<H" if little else ">H", value)
            changed.append(f"{e.tag & 0xFFFF:04X}={value}")
        elif e.tag == 0x00280008 and e.end - e.value_start >= 2:
            width = e.end - e.value_start
            value = rng.choice(("9" * width, "65535".ljust(width)[:width]))
            out[e.value_start:e.end] = value.encode()
            changed.append(f"frames={value.strip()}")
    if not changed:
        return None
    return bytes(out), "declared " + " ".join(changed)


# JPEG SOF0/1/2/3 and JPEG-LS SOF55: FFCx Lf P Y X; JPEG 2000 SIZ: FF51 Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz
_SOF_MARKERS = (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2", b"\xff\xc3", b"\xff\xf7")


def _blow_up_codestream(data: bytes, rng: random.Random, elements: list[Element]) -> tuple[bytes, str] | None:
    """A compressed frame whose own codestream declares huge dimensions while
    the DICOM header keeps its small ones (the decoder sizes by the codestream)."""
    start = header_end(data, elements)
    out = bytearray(data)
    j2k = data.find(b"\xff\x4f\xff\x51", start)
    if j2k != -1:
        side = rng.choice((46000, 65535, 0x7FFFFFFF))
        siz = j2k + 4
        struct.pack_into(">II", out, siz + 4, side, side)          # Xsiz, Ysiz
        struct.pack_into(">II", out, siz + 20, side, side)         # XTsiz, YTsiz (one tile)
        return bytes(out), f"JPEG 2000 SIZ at {siz} declares {side}x{side}"
    for marker in _SOF_MARKERS:
        sof = data.find(marker, start)
        if sof != -1:
            struct.pack_into(">HH", out, sof + 5, 65535, 65535)      # Y, X
            return bytes(out), f"JPEG SOF {marker.hex()} at {sof} declares 65535x65535"
    return None


# A mutator returns (bytes, what it did), or None when the seed file does not
# suit it (no file meta to rewrite, no JPEG codestream, ...): another seed is drawn.
MUTATORS: dict[str, Callable[[bytes, random.Random, list[Element]], tuple[bytes, str] | None]] = {
    "bitflip": bitflip, "truncate": truncate, "huge_length": huge_length,
    "deep_sequence": deep_sequence, "wrong_ts": wrong_ts, "expansion": expansion,
}


def mutants(seeds: list[tuple[str, bytes]], count: int, seed: int,
            kinds: tuple[str, ...] = KINDS) -> Iterator[Mutant]:
    """`count` mutants, kinds in turn, seed files drawn at random; deterministic."""
    rng = random.Random(seed)
    walked: dict[str, list[Element]] = {}
    for i in range(count):
        kind = kinds[i % len(kinds)]
        made, tries = None, 0
        while made is None:
            tries += 1
            if tries > 10000:
                raise ValueError(f"no seed file suits mutation kind {kind!r}")
            name, data = seeds[rng.randrange(len(seeds))]
            if name not in walked:
                walked[name] = walk(data)
            made = MUTATORS[kind](data, rng, walked[name])
        yield Mutant(kind, name, made[1], made[0])


# ---------------------------------------------------------------- running one input
@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-input bounds: the time bound of each path (seconds; also given to the
    header policy and the pixels stage as their own bound), the grace after
    which the harness kills a worker, and its address-space cap (bytes)."""
    time_bound: float = 10.0
    grace: float = 5.0
    memory_cap: int = 3 * 2**30

    @property
    def kill_after(self) -> float:
        """Three paths run per input, each bounded by `time_bound`."""
        return 3 * self.time_bound + self.grace


def run_paths(data: bytes, time_bound: float) -> dict:
    """Run one object through what the stages run per object: the ingest batch
    parser's per-row function, the pixels stage's per-row function, and the
    embed stage's decode of one representative frame. Returns per path
    ("header", "pixels", "embed"): ("row", None) or ("error", code/message)."""
    from dicom_triage.jobs.config import load_settings
    from dicom_triage.jobs.runtime import header_policy
    from dicom_triage.udfs.embedding import _prepare
    from dicom_triage.udfs.ingest_batch import parse_rows
    from dicom_triage.udfs.pixel_batch import measure_rows

    policy = dataclasses.replace(header_policy(load_settings(), b"fuzz-secret-0123456789"),
                                 timeout_seconds=time_bound)
    listed = {"path": "mem://object.dcm", "size_bytes": len(data)}
    seconds = {}
    started = time.perf_counter()
    row = next(parse_rows([listed], policy, lambda path: (lambda s, e: data[s:e]), "fuzz",
                          dt.datetime(2026, 1, 1)))
    seconds["header"] = time.perf_counter() - started
    out = {"header": ("error", row["error_code"]) if row.get("error_code") else ("row", None)}
    instance = {"path": listed["path"], "has_preamble": row.get("has_preamble")
                if row.get("has_preamble") is not None else True}
    started = time.perf_counter()
    measured = next(measure_rows([instance], lambda path: data, time_bound))
    seconds["pixels"] = time.perf_counter() - started
    out["pixels"] = (("error", measured["pixel_error"] + ": " + str(measured["pixel_error_message"])[:300])
                     if measured.get("pixel_error") else ("row", None))
    started = time.perf_counter()
    arr, err = _prepare(instance, lambda path: data, "middle", 224)
    seconds["embed"] = time.perf_counter() - started
    out["embed"] = ("row", None) if arr is not None else ("error", str(err)[:300])
    out["path_seconds"] = seconds
    return out


def _peak_rss_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")     # resets the peak RSS (VmHWM) of this process
    except OSError:
        pass


def _status_bytes(field: str) -> int:
    """VmHWM (peak RSS) or VmRSS of this process, bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _worker(conn, memory_cap: int, time_bound: float) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))
    import warnings
    warnings.simplefilter("ignore")
    run_paths(b"", time_bound)     # imports before the first measured input
    while True:
        data = conn.recv()
        if data is None:
            return
        _peak_rss_reset()
        started = time.perf_counter()
        try:
            result = run_paths(data, time_bound)
        except BaseException as exc:   # a path that raised is a finding, reported as such
            result = {"raised": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"}
        result["seconds"] = time.perf_counter() - started
        result["peak_rss"] = _status_bytes("VmHWM")
        result["rss_after"] = _status_bytes("VmRSS")
        conn.send(result)


PRELOAD = ["tests.fuzzing", "dicom_triage.jobs.config", "dicom_triage.jobs.runtime",
           "dicom_triage.udfs.ingest_batch", "dicom_triage.udfs.pixel_batch",
           "dicom_triage.udfs.embedding"]


class Worker:
    """One worker process; replaced after it is killed or dies."""

    def __init__(self, limits: Limits):
        self.limits = limits
        # workers start from a fresh server process, not from the caller: a
        # forked child would inherit (and count against its cap) the caller's memory
        self._ctx = get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)   # imported once: a restart then takes no time
        self._start()

    def _start(self) -> None:
        self.conn, child = self._ctx.Pipe()
        self.proc = self._ctx.Process(target=_worker, args=(child, self.limits.memory_cap,
                                                            self.limits.time_bound), daemon=True)
        self.proc.start()
        child.close()

    def submit(self, data: bytes) -> None:
        self.started = time.perf_counter()
        self.conn.send(data)

    def collect(self) -> dict:
        """The outcome of the submitted input (waits at most the time bound plus grace)."""
        deadline = self.started + self.limits.kill_after
        died = False
        if self.conn.poll(max(0.0, deadline - time.perf_counter())):
            try:
                result = self.conn.recv()
            except (EOFError, OSError):   # the worker died
                died = True
            else:
                if result.get("rss_after", 0) > self.limits.memory_cap // 2:
                    self.restart()        # memory the decoders kept must not burden the next input
                return classify(result, self.limits)
        elapsed = time.perf_counter() - self.started
        alive = not died and self.proc.is_alive()
        code = self.restart()
        if alive:
            return {"outcome": "exceeded_time", "seconds": elapsed, "peak_rss": None, "paths": {},
                    "path_seconds": {}, "message": f"killed after {elapsed:.0f} s"}
        return {"outcome": "crashed", "seconds": elapsed, "peak_rss": None, "paths": {},
                "path_seconds": {}, "message": f"worker exit code {code}"}

    def restart(self) -> int | None:
        """Kill the worker (if alive) and start a new one; the old exit code."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        code = self.proc.exitcode
        self._start()
        return code

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def classify(result: dict, limits: Limits) -> dict:
    """One outcome for the input: `crashed` (a path raised), `exceeded_memory`
    (MemoryError anywhere, or peak RSS over the cap), `exceeded_time` (a path
    took longer than the time bound), else `row` (every path gave a row, data
    or error; an error row may itself say that the code's own time bound hit)."""
    out = {"seconds": result["seconds"], "peak_rss": result.get("peak_rss"), "paths": {},
           "path_seconds": result.get("path_seconds", {})}
    if "raised" in result:
        return {**out, "outcome": "crashed", "message": result["raised"]}
    out["paths"] = {p: result[p] for p in ("header", "pixels", "embed")}
    text = " ".join(str(v[1]) for v in out["paths"].values())
    if "MemoryError" in text or (out["peak_rss"] or 0) > limits.memory_cap:
        return {**out, "outcome": "exceeded_memory", "message": text[:500]}
    slowest = max(out["path_seconds"].values(), default=0.0)
    if slowest > limits.time_bound:
        return {**out, "outcome": "exceeded_time", "message": f"a path took {slowest:.1f} s; {text[:400]}"}
    return {**out, "outcome": "row"}


def run_all(items: list[Mutant], limits: Limits, workers: int = 2,
            progress: Callable[[int], None] | None = None) -> list[dict]:
    """Outcome of every mutant, in order; `workers` processes side by side."""
    pool = [Worker(limits) for _ in range(workers)]
    results: list[dict | None] = [None] * len(items)
    try:
        pending: dict[int, Worker] = {}
        queue = list(range(len(items)))[::-1]
        while queue or pending:
            for w in pool:
                if queue and w not in pending.values():
                    i = queue.pop()
                    w.submit(items[i].data)
                    pending[i] = w
            # collect whichever finishes first
            while True:
                ready = [i for i, w in pending.items() if w.conn.poll(0) or not w.proc.is_alive()
                         or time.perf_counter() > w.started + limits.kill_after]
                if ready:
                    break
                time.sleep(0.002)
            for i in ready:
                w = pending.pop(i)
                results[i] = {"kind": items[i].kind, "seed": items[i].seed_name,
                              "detail": items[i].detail, "size": len(items[i].data), **w.collect()}
                if progress:
                    progress(sum(r is not None for r in results))
    finally:
        for w in pool:
            w.close()
    return results
