"""Broken objects, made from the bytes of valid ones.

Each maker returns new bytes and says in its docstring what real failure it
imitates. `check_*` functions state the property the ground truth promises,
so the generator can refuse to write a broken object that is not broken the
way it claims.

Why CORRUPT_HEADER uses the character set: pydicom 3 reads headers very
leniently. Garbage VRs, impossible lengths and bad items make it read to the
end of the file and stop with a warning (or an EOF-like "No tag to read"), not
with an error in the middle. Two damages make `dcmread(...,
stop_before_pixels=True)` fail while the file is still full length: bytes of a
Specific Character Set value (top level or inside a sequence item) replaced by
garbage holding a NUL byte (`ValueError: embedded null character`), and a
deflated dataset whose compressed stream is damaged (`zlib.error`).
"""
from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib

import numpy as np
import pydicom

CHARSET_ELEMENT = b"\x08\x00\x05\x00CS"   # (0008,0005) CS, explicit VR little endian


# --------------------------------------------------------------------------
# Locating elements in the bytes of a valid file

def header_elements(data: bytes) -> list[tuple[int, int, int]]:
    """(tag, value offset, value length) of every top-level element before Pixel Data."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, defer_size=16)
    raw = [ds.get_item(tag) for tag in ds.keys()]
    return [(int(r.tag), r.value_tell, r.length) for r in raw
            if getattr(r, "value_tell", None) is not None]


# --------------------------------------------------------------------------
# EMPTY_FILE and NOT_DICOM

def empty_file() -> bytes:
    """EMPTY_FILE: zero bytes (a copy that failed before writing anything, a 0-byte
    placeholder left by a sync tool)."""
    return b""


def text_file(lines: list[str]) -> bytes:
    """NOT_DICOM: a text export (report, transfer log) saved with a .dcm name."""
    return ("\n".join(lines) + "\n").encode("ascii")


def zip_file(members: dict[str, bytes]) -> bytes:
    """NOT_DICOM: a zip archive given a .dcm name (a zipped study dropped into the tree).
    Member timestamps are fixed so the bytes are reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, payload in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 3, 1, 12, 0, 0))
            archive.writestr(info, payload, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def random_bytes(rng: np.random.Generator, size: int) -> bytes:
    """NOT_DICOM: random bytes (an encrypted or half-downloaded blob). The first bytes
    are kept from looking like a preamble-less DICOM dataset (group 0002 / 0008)."""
    data = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    while struct.unpack("<H", data[:2])[0] in (2, 8) or struct.unpack(">H", data[:2])[0] in (2, 8):
        data[0] = (data[0] + 1) % 256
    if data[128:132] == b"DICM":
        data[128] ^= 0xFF
    return bytes(data)


# --------------------------------------------------------------------------
# TRUNCATED

def truncate_in_header(data: bytes) -> bytes:
    """TRUNCATED inside the header: the copy stopped in the middle of an element
    value after the file meta and after Rows/Columns, before Pixel Data (an
    interrupted transfer of the first block)."""
    elements = [(tag, off, length) for tag, off, length in header_elements(data)
                if tag > 0x00280011 and length >= 4]
    if not elements:
        raise ValueError("no element after Columns to cut in")
    tag, offset, length = elements[-1]
    return data[: offset + length // 2]


def truncate_in_pixels(data: bytes, share: float = 0.55) -> bytes:
    """TRUNCATED inside the pixel data: the copy stopped after `share` of the pixel
    bytes (native or encapsulated), e.g. a full disk or a dropped connection."""
    offset, length = pixel_data_span(data)
    return data[: offset + int(length * share)]


def pixel_data_span(data: bytes) -> tuple[int, int]:
    """(offset, length) of the Pixel Data value (explicit VR little endian); an
    encapsulated value runs to the end of the file."""
    stream = io.BytesIO(data)
    pydicom.dcmread(stream, stop_before_pixels=True)
    start = stream.tell()                       # the parser stops at the element's tag
    tag = struct.unpack("<HH", data[start:start + 4])
    if tag != (0x7FE0, 0x0010) or data[start + 4:start + 6] not in (b"OB", b"OW"):
        raise ValueError("no explicit VR little endian Pixel Data element")
    length = struct.unpack("<I", data[start + 8:start + 12])[0]
    offset = start + 12
    if length == 0xFFFFFFFF:
        length = len(data) - offset
    return offset, length


def check_truncated(data: bytes, intact: bytes) -> None:
    if not (len(data) < len(intact) and intact.startswith(data)):
        raise AssertionError("a truncated object must be a strict prefix of a valid file")


# --------------------------------------------------------------------------
# CORRUPT_HEADER

def _garbage_with_nul(rng: np.random.Generator, length: int) -> bytes:
    """Printable garbage (no backslash, so it stays one value) with a NUL in the middle."""
    alphabet = np.array([c for c in range(0x21, 0x7F) if c != 0x5C], dtype=np.uint8)
    garbage = bytearray(rng.choice(alphabet, length).tobytes())
    garbage[length // 2] = 0
    return bytes(garbage)


def corrupt_charset(data: bytes, rng: np.random.Generator) -> bytes:
    """CORRUPT_HEADER: the Specific Character Set value, first element of the
    dataset, overwritten by garbage holding a NUL byte (bit rot / a writer that
    spilled binary into the header). Same length as the intact file."""
    offset = data.index(CHARSET_ELEMENT, 132)
    length = struct.unpack("<H", data[offset + 6: offset + 8])[0]
    start = offset + 8
    return data[:start] + _garbage_with_nul(rng, length) + data[start + length:]


def corrupt_nested_charset(data: bytes, rng: np.random.Generator) -> bytes:
    """CORRUPT_HEADER deep in the header: the Specific Character Set inside an item
    of an undefined-length sequence overwritten by garbage with a NUL. The top
    of the header is intact, so the failure is in the middle of the dataset."""
    first = data.index(CHARSET_ELEMENT, 132)
    offset = data.index(CHARSET_ELEMENT, first + 1)
    length = struct.unpack("<H", data[offset + 6: offset + 8])[0]
    start = offset + 8
    return data[:start] + _garbage_with_nul(rng, length) + data[start + length:]


def corrupt_deflate(data: bytes) -> bytes:
    """CORRUPT_HEADER in a deflated file (Deflated Explicit VR Little Endian): the
    first byte of the compressed dataset damaged so that its block type is the
    reserved value 3 - zlib stops with "invalid block type" at once."""
    meta_length = struct.unpack("<I", data[140:144])[0]
    start = 144 + meta_length
    return data[:start] + bytes([data[start] | 0x07]) + data[start + 1:]


def check_corrupt(data: bytes, intact: bytes) -> str:
    """The damaged file is as long as the intact one, pydicom fails on it with
    stop_before_pixels (not with an end-of-file error) and reads the intact file;
    returns the error message."""
    if len(data) != len(intact):
        raise AssertionError("a corrupt header must not shorten the file")
    pydicom.dcmread(io.BytesIO(intact), stop_before_pixels=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (EOFError, struct.error) as exc:
        raise AssertionError(f"corrupt header fails like a short file: {exc}") from exc
    except (ValueError, zlib.error) as exc:
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("pydicom reads the corrupt header without an error")
