"""Pixel data encoders: native little endian, RLE Lossless (PS3.5 Annex G),
JPEG 2000 lossless (OpenJPEG), JPEG baseline (Pillow), and the own JPEG lossless
process 14 / JPEG-LS lossless encoders of `jpeg_lossless`.

`encode_pixels(frames, ts, bits_stored)` takes a (frames, rows, columns[, 3])
array of stored values and returns the PixelData value for the writer.
"""
from __future__ import annotations

import io

import numpy as np

from . import jpeg_lossless
from .writer import (DEFLATED_LE, EXPLICIT_LE, IMPLICIT_LE, J2K_LOSSLESS, JPEG_BASELINE,
                     JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, RLE_LOSSLESS, Encapsulated, V)


def native(frames: np.ndarray) -> V:
    """Native PixelData: OW for 16-bit, OB for 8-bit, little endian."""
    if frames.dtype.itemsize == 1:
        return V("OB", np.ascontiguousarray(frames).tobytes())
    return V("OW", np.ascontiguousarray(frames.astype(frames.dtype.newbyteorder("<"))).tobytes())


def packbits_plane(plane: np.ndarray) -> bytearray:
    """PackBits every row of a (rows, cols) uint8 plane (rows never share a run):
    replicate runs of 3 or more bytes, literals otherwise, at most 128 per packet."""
    rows, cols = plane.shape
    flat = np.ascontiguousarray(plane).ravel()
    boundary = np.empty(flat.size, bool)
    boundary[0] = True
    np.not_equal(flat[1:], flat[:-1], out=boundary[1:])
    boundary[::cols] = True
    starts = np.flatnonzero(boundary)
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    rep = lengths >= 3
    row_of = starts // cols
    # consecutive literal runs of one row form one literal block
    new_block = ~rep & np.concatenate(([True], rep[:-1] | (row_of[1:] != row_of[:-1])))
    items_start, items_len, items_rep = [], [], []
    block_id = np.cumsum(new_block) - 1
    lit = ~rep
    if lit.any():
        ids = block_id[lit]
        first = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        lit_starts = starts[lit][first]
        lit_lens = np.add.reduceat(lengths[lit], first)
        items_start.append(lit_starts)
        items_len.append(lit_lens)
        items_rep.append(np.zeros(len(lit_starts), bool))
    items_start.append(starts[rep])
    items_len.append(lengths[rep])
    items_rep.append(np.ones(int(rep.sum()), bool))
    start = np.concatenate(items_start)
    order = np.argsort(start, kind="stable")
    start = start[order]
    length = np.concatenate(items_len)[order]
    replicate = np.concatenate(items_rep)[order]
    # split items into packets of at most 128 bytes
    count = (length + 127) // 128
    item = np.repeat(np.arange(len(start)), count)
    first_packet = np.repeat(np.cumsum(count) - count, count)
    k = np.arange(item.size) - first_packet
    p_start = start[item] + 128 * k
    p_len = np.minimum(128, length[item] - 128 * k)
    p_rep = replicate[item] & (p_len >= 2)
    header = np.where(p_rep, 257 - p_len, p_len - 1).astype(np.uint8)
    payload = np.where(p_rep, 1, p_len)
    size = 1 + payload
    offset = np.cumsum(size) - size
    out = np.empty(int(size.sum()), np.uint8)
    out[offset] = header
    # payload bytes: source index for each output payload byte
    owner = np.repeat(np.arange(item.size), payload)
    within = np.arange(owner.size) - np.repeat(np.cumsum(payload) - payload, payload)
    src = p_start[owner] + np.where(p_rep[owner], 0, within)
    dst = offset[owner] + 1 + within
    out[dst] = flat[src]
    return bytearray(out.tobytes())


def rle_frame(frame: np.ndarray) -> bytes:
    """One RLE Lossless frame: a 64-byte header and one segment per byte plane
    (most significant byte first; for colour, sample planes R, G, B)."""
    if frame.ndim == 3:  # colour, 8-bit samples
        planes = [frame[..., s].astype(np.uint8) for s in range(frame.shape[2])]
    elif frame.dtype.itemsize == 1:
        planes = [frame.astype(np.uint8)]
    else:
        raw = frame.astype(frame.dtype.newbyteorder(">")).view(np.uint8)
        raw = raw.reshape(frame.shape[0], frame.shape[1], frame.dtype.itemsize)
        planes = [raw[..., b] for b in range(frame.dtype.itemsize)]
    segments = []
    for plane in planes:
        seg = packbits_plane(plane)
        if len(seg) % 2:
            seg.append(0)
        segments.append(bytes(seg))
    offsets, pos = [], 64
    for seg in segments:
        offsets.append(pos)
        pos += len(seg)
    header = np.zeros(16, "<u4")
    header[0] = len(segments)
    header[1:1 + len(offsets)] = offsets
    return header.tobytes() + b"".join(segments)


def j2k_frame(frame: np.ndarray, bits_stored: int) -> bytes:
    """JPEG 2000 lossless codestream (reversible 5-3 wavelet, no colour transform)."""
    import openjpeg

    photometric = 1 if frame.ndim == 3 else 2
    return openjpeg.encode(np.ascontiguousarray(frame), bits_stored=bits_stored,
                           photometric_interpretation=photometric, use_mct=False)


def jpeg_baseline_frame(frame8: np.ndarray, quality: int) -> bytes:
    """JPEG baseline (8-bit) of a grey or RGB frame, 4:2:2 chroma for colour."""
    from PIL import Image

    buf = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(frame8.astype(np.uint8)))
    options = {"quality": int(quality), "optimize": False}
    if frame8.ndim == 3:
        options["subsampling"] = 1
    image.save(buf, "JPEG", **options)
    return buf.getvalue()


def encode_pixels(frames: np.ndarray, ts: str, bits_stored: int, quality: int = 90,
                  offset_table: bool = False):
    """PixelData value for (frames, rows, cols[, samples]) stored values."""
    if ts in (EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE):
        return native(frames)
    if ts == RLE_LOSSLESS:
        coded = [[rle_frame(f)] for f in frames]
    elif ts == J2K_LOSSLESS:
        coded = [[j2k_frame(f, bits_stored)] for f in frames]
    elif ts == JPEG_BASELINE:
        coded = [[jpeg_baseline_frame(f, quality)] for f in frames]
    elif ts == JPEG_LOSSLESS_SV1:
        coded = [[jpeg_lossless.encode_process14(f, bits_stored)] for f in frames]
    elif ts == JPEG_LS_LOSSLESS:
        coded = [[jpeg_lossless.encode_jpegls(f, bits_stored)] for f in frames]
    else:
        raise ValueError(f"no encoder for {ts}")
    return Encapsulated(coded, offset_table)
