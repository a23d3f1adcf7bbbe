"""Byte-level defects of whole files: empty, not DICOM, truncated, corrupt header,
and the pixel-data damage that leaves the file readable but the image undecodable.

Functions take an `writer.Encoded` (bytes plus element spans) and return bytes.
"""
from __future__ import annotations

import io
import struct
import zipfile

import numpy as np

from .writer import Encoded

PIXEL_DATA = 0x7FE00010


def truncate_in_pixel_data(enc: Encoded, fraction: float) -> bytes:
    """Cut the file `fraction` of the way into the PixelData value (a transfer
    that stopped), never on an element boundary."""
    s = enc.span(PIXEL_DATA)
    length = s.end - s.value_start
    cut = s.value_start + min(max(int(length * fraction), 7), length - 3)
    return enc.data[:cut]


def truncate_in_header(enc: Encoded, r: np.random.Generator) -> bytes:
    """Cut the file in the middle of a header element's value (after the file meta)."""
    candidates = [s for s in enc.spans
                  if s.start >= enc.dataset_offset and s.tag < 0x7FE00000
                  and s.end - s.value_start >= 10 and s.vr not in ("SQ",)]
    s = candidates[int(r.integers(len(candidates)))]
    cut = s.value_start + int(r.integers(3, s.end - s.value_start - 2))
    return enc.data[:cut]


def garbage_vr(enc: Encoded, tag: int, junk: bytes = b"\x07\x9c") -> bytes:
    """Overwrite the two VR bytes of an explicit-VR element with non-letters."""
    s = enc.span(tag)
    data = bytearray(enc.data)
    data[s.start + 4:s.start + 6] = junk
    return bytes(data)


def insert_junk(enc: Encoded, before_tag: int, junk: bytes) -> bytes:
    """Insert bytes between two header elements (a writer that leaked a buffer)."""
    s = enc.span(before_tag)
    return enc.data[:s.start] + junk + enc.data[s.start:]


def bad_length(enc: Encoded, tag: int, delta: int, implicit: bool = False) -> bytes:
    """Change the length of a header element (16-bit in explicit VR, 32-bit in
    implicit VR) so that parsing resumes in the middle of the next element; the
    file size does not change."""
    s = enc.span(tag)
    data = bytearray(enc.data)
    if implicit:
        (length,) = struct.unpack("<I", data[s.start + 4:s.start + 8])
        data[s.start + 4:s.start + 8] = struct.pack("<I", length + delta)
    else:
        (length,) = struct.unpack("<H", data[s.start + 6:s.start + 8])
        data[s.start + 6:s.start + 8] = struct.pack("<H", length + delta)
    return bytes(data)


# --- pixel data that cannot be decoded -----------------------------------------------

def cut_codestream(fragment: bytes, keep: float) -> bytes:
    """A JPEG 2000 / JPEG codestream cut short (item length stays consistent)."""
    n = max(int(len(fragment) * keep), 64)
    return fragment[:n]


def scramble_j2k_cod(fragment: bytes) -> bytes:
    """Overwrite the coding style (COD) marker segment of a J2K codestream."""
    i = fragment.find(b"\xff\x52")
    data = bytearray(fragment)
    data[i + 2:i + 14] = b"\xff" * 12
    return bytes(data)


def rle_bad_segments(fragment: bytes, segments: int) -> bytes:
    """An RLE frame whose header announces the wrong number of segments."""
    return struct.pack("<I", segments) + fragment[4:]


# --- objects that are not DICOM ----------------------------------------------------

def transfer_log(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def png_preview(img8: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img8).save(buf, "PNG", optimize=False)
    return buf.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    """A zip archive with fixed timestamps (deterministic bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2021, 5, 4, 10, 30, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def html_error_page(status: int, message: str) -> bytes:
    return (f"<!DOCTYPE html>\n<html><head><title>{status} {message}</title></head>\n"
            f"<body><h1>{status} {message}</h1><p>The requested object could not be "
            f"retrieved from the archive gateway.</p><hr><address>nginx</address></body>"
            f"</html>\n").encode("ascii")


def random_bytes(r: np.random.Generator, n: int) -> bytes:
    data = r.integers(0, 256, n, dtype=np.uint8).tobytes()
    if data[128:132] == b"DICM":
        data = data[:128] + b"DICX" + data[132:]
    return data
