"""Decode DICOM pixel data one frame at a time, into modality units.

Plain functions on a pydicom Dataset (and optionally the file's bytes), no
Spark. Memory stays bounded by one frame: frames come from
`pydicom.pixels.iter_pixels` (or, when the dataset was read with the pixel
element deferred, from the pydicom decoder reading the file object directly),
never from `Dataset.pixel_array`, which builds the whole volume.

Value pipeline (PS3.3 C.7.6.3, C.11.1, C.7.5.1.1.2):

* stored values, as decoded (YBR_FULL / YBR_FULL_422 converted to RGB by
  pydicom, YBR_ICT / YBR_RCT by the JPEG 2000 codec);
* padding: PixelPaddingValue (and PixelPaddingRangeLimit) are compared with
  the STORED values, before any LUT; padded pixels are masked;
* grey (MONOCHROME1/2): Modality LUT - ModalityLUTSequence wins, else
  RescaleSlope / RescaleIntercept, else identity;
* RGB: luminance Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601), rounded to
  an integer as PIL's ``convert("L")`` does;
* PALETTE COLOR: stored index -> palette RGB -> the same luminance (not
  rounded: it is a per-index table);
* MONOCHROME1: values are NOT inverted (statistics stay in modality units);
  `PixelInfo.invert_display` tells display code to invert.
"""
from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder, iter_pixels
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, \
    ImplicitVRLittleEndian, ExplicitVRBigEndian

NO_PIXEL_DATA = "NO_PIXEL_DATA"
UNREADABLE_PIXELS = "UNREADABLE_PIXELS"

PIXEL_KEYWORDS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData",
                  0x7FE00009: "DoubleFloatPixelData"}

# ITU-R BT.601 luma weights, the ones PIL's convert("L") uses.
BT601 = (0.299, 0.587, 0.114)

# Decoding bounds (conf pixels.max_frame_bytes / pixels.max_decoded_bytes). The
# header declares the decoded size and decoders allocate it up front, so a
# damaged or hostile header (65535 x 65535 rows x columns, a tiny RLE or deflate
# stream) would ask for many GiB. One frame: measuring holds a few copies of
# it (8192 x 8192 16-bit, the largest radiography frames, is 128 MiB). All
# frames of an object, and a deflated dataset inflated (held whole): a bound
# on the work per object beyond its time limit.
MAX_FRAME_BYTES = 256 * 2**20
MAX_DECODED_BYTES = 2 * 2**30


class PixelDecodeError(Exception):
    """Pixel data absent (code NO_PIXEL_DATA) or not decodable (UNREADABLE_PIXELS)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ValueMap:
    """Stored value -> statistics value (modality units, or luminance for palette).

    kind: "identity", "rescale" (value * slope + intercept) or "table"
    (``table[clip(value - first, 0, len - 1)]``, for a ModalityLUTSequence or a
    palette's luminance).
    """
    kind: str = "identity"
    slope: float = 1.0
    intercept: float = 0.0
    first: int = 0
    table: np.ndarray | None = None
    _code_tables: dict = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, values: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
        """Map an array of stored values; returns a new array of `dtype`."""
        if self.kind == "table":
            if values.dtype.kind in "ui" and values.dtype.itemsize <= 2 and values.size > 65536:
                return self._code_table(values.dtype, dtype)[values.view(f"u{values.dtype.itemsize}")]
            idx = np.clip(values.astype(np.int64) - self.first, 0, len(self.table) - 1)
            return self.table.astype(dtype, copy=False)[idx]
        out = values.astype(dtype)
        if self.kind == "rescale":
            out *= self.slope       # a Python float keeps the array's dtype (NEP 50)
            out += self.intercept
        return out

    def _code_table(self, stored_dtype: np.dtype, dtype: Any) -> np.ndarray:
        """The mapped value of every possible 8/16-bit code (unsigned view), cached:
        a frame is then mapped by one gather, without clipping or widening."""
        key = (stored_dtype.str, np.dtype(dtype).str)
        if key not in self._code_tables:
            codes = np.arange(1 << (8 * stored_dtype.itemsize), dtype=np.int64)
            if stored_dtype.kind == "i":
                codes[codes >= len(codes) // 2] -= len(codes)
            self._code_tables[key] = self(codes, dtype)
        return self._code_tables[key]


@dataclass(frozen=True)
class PixelInfo:
    """What the Image Pixel, Modality LUT and padding attributes say about the pixels."""
    keyword: str                 # PixelData | FloatPixelData | DoubleFloatPixelData
    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    photometric: str             # as in the header ("" when absent)
    bits_allocated: int
    bits_stored: int
    signed: bool                 # PixelRepresentation == 1
    is_float: bool
    is_color: bool               # RGB / YBR (3 samples) or PALETTE COLOR
    is_palette: bool
    invert_display: bool         # MONOCHROME1
    padding: tuple[int, int] | None   # inclusive stored-value range, or None
    value_map: ValueMap
    units: str                   # "HU" | "modality" | "luminance"
    transfer_syntax: str
    window: tuple[float, float] | None  # header (WindowCenter, WindowWidth), first values
    palette_depth: int = 8       # bits per palette entry (8 or 16)
    palette_rgb: np.ndarray | None = None  # (entries, 3) palette, index = stored - value_map.first


def _first(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        return value[0] if len(value) else None
    return value


def _float_or(value: Any, default: float | None) -> float | None:
    try:
        value = _first(value)
        return default if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return default


def transfer_syntax_of(ds) -> UID:
    """The dataset's Transfer Syntax UID (file meta), else the encoding it was read with."""
    ts = getattr(ds, "file_meta", None) and ds.file_meta.get("TransferSyntaxUID")
    if ts:
        return UID(ts)
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRBigEndian if little is False else ExplicitVRLittleEndian


def _to_stored(value: int, bits_allocated: int, signed: bool) -> int:
    """A padding value read as US although PixelRepresentation is 1 -> its signed value."""
    if signed and value >= 2 ** (bits_allocated - 1):
        return value - 2 ** bits_allocated
    return value


def _padding(ds, bits_allocated: int, signed: bool) -> tuple[int, int] | None:
    ppv = _first(ds.get("PixelPaddingValue"))
    if ppv is None:
        return None
    lo = hi = _to_stored(int(ppv), bits_allocated, signed)
    limit = _first(ds.get("PixelPaddingRangeLimit"))
    if limit is not None:
        limit = _to_stored(int(limit), bits_allocated, signed)
        lo, hi = min(lo, limit), max(lo, limit)
    return lo, hi


def _modality_map(ds, signed: bool) -> ValueMap:
    if ds.get("ModalityLUTSequence"):
        desc = ds.ModalityLUTSequence[0].LUTDescriptor
        n = int(desc[0]) or 65536
        first = int(desc[1])
        if signed and first >= 32768:      # US-encoded negative first mapped value
            first -= 65536
        inputs = np.arange(first, first + n, dtype=np.int64)
        table = apply_modality_lut(inputs, ds).astype(np.float64)
        return ValueMap("table", first=first, table=table)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope = _float_or(ds.get("RescaleSlope"), 1.0) or 1.0
        return ValueMap("rescale", slope=slope, intercept=_float_or(ds.get("RescaleIntercept"), 0.0))
    return ValueMap()


def _palette_map(ds) -> tuple[ValueMap, int, np.ndarray]:
    desc = ds.RedPaletteColorLookupTableDescriptor
    n, first = int(desc[0]) or 65536, int(desc[1])
    rgb = np.ascontiguousarray(apply_color_lut(np.arange(first, first + n, dtype=np.int64), ds)[..., :3])
    depth = 16 if rgb.dtype.itemsize == 2 else 8
    if depth == 16 and "RedPaletteColorLookupTableData" in ds \
            and not UID(transfer_syntax_of(ds)).is_little_endian:
        rgb = rgb.byteswap()   # pydicom 3.0 reads OW palette data as little endian
    lum = rgb.astype(np.float64) @ np.array(BT601)
    return ValueMap("table", first=first, table=lum), depth, rgb


def describe(ds) -> PixelInfo:
    """Read the pixel description of `ds`.

    Attributes read: PixelData / FloatPixelData / DoubleFloatPixelData (presence
    only), Rows, Columns, NumberOfFrames, SamplesPerPixel,
    PhotometricInterpretation, BitsAllocated, BitsStored, PixelRepresentation,
    PixelPaddingValue, PixelPaddingRangeLimit, ModalityLUTSequence,
    RescaleSlope, RescaleIntercept, Modality, WindowCenter, WindowWidth, the
    palette LUT descriptors/data, and the Transfer Syntax UID.

    Raises PixelDecodeError(NO_PIXEL_DATA) without a pixel element and
    PixelDecodeError(UNREADABLE_PIXELS) when the description is unusable.
    """
    keyword = next((kw for tag, kw in PIXEL_KEYWORDS.items() if tag in ds._dict), None)
    if keyword is None:
        raise PixelDecodeError(NO_PIXEL_DATA, "no PixelData, FloatPixelData or DoubleFloatPixelData")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        spp = int(ds.get("SamplesPerPixel") or 1)
        if keyword == "PixelData":
            bits_allocated = int(ds.BitsAllocated)
        else:
            bits_allocated = 32 if keyword == "FloatPixelData" else 64
        bits_stored = int(ds.get("BitsStored") or bits_allocated)
        signed = int(ds.get("PixelRepresentation") or 0) == 1
        frames = int(_first(ds.get("NumberOfFrames")) or 1)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PixelDecodeError(UNREADABLE_PIXELS, f"invalid Image Pixel description: {exc}") from exc
    if rows <= 0 or columns <= 0 or frames <= 0 or spp not in (1, 3):
        raise PixelDecodeError(UNREADABLE_PIXELS,
                               f"invalid dimensions rows={rows} columns={columns} "
                               f"frames={frames} samples={spp}")
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    is_float = keyword != "PixelData"
    is_palette = photometric == "PALETTE COLOR" and spp == 1
    try:
        padding = _padding(ds, bits_allocated, signed) if spp == 1 and not is_float else None
        palette_depth, palette_rgb = 8, None
        if is_palette:
            value_map, palette_depth, palette_rgb = _palette_map(ds)
        elif spp == 1 and not is_float:
            value_map = _modality_map(ds, signed)
        else:
            value_map = ValueMap()
    except Exception as exc:  # malformed LUTs: the pixels cannot be interpreted
        raise PixelDecodeError(UNREADABLE_PIXELS, f"invalid LUT or padding attributes: {exc}") from exc
    if spp == 3 or is_palette:
        units = "luminance"
    elif str(ds.get("Modality") or "").upper() == "CT" and value_map.kind != "identity":
        units = "HU"
    else:
        units = "modality"
    center, width = _float_or(ds.get("WindowCenter"), None), _float_or(ds.get("WindowWidth"), None)
    window = (center, width) if center is not None and width and width > 0 else None
    return PixelInfo(keyword, rows, columns, frames, spp, photometric, bits_allocated, bits_stored,
                     signed, is_float, spp == 3 or is_palette, is_palette,
                     photometric == "MONOCHROME1", padding, value_map, units,
                     str(transfer_syntax_of(ds)), window, palette_depth, palette_rgb)


def _decode_options(ds, info: PixelInfo) -> dict[str, Any]:
    """Overrides for a header missing PhotometricInterpretation / SamplesPerPixel."""
    opts: dict[str, Any] = {}
    if not info.photometric:
        opts["photometric_interpretation"] = "MONOCHROME2" if info.samples_per_pixel == 1 else "RGB"
    if "SamplesPerPixel" not in ds:
        opts["samples_per_pixel"] = info.samples_per_pixel
    if "BitsStored" not in ds:
        opts["bits_stored"] = info.bits_stored
    if "PixelRepresentation" not in ds:
        opts["pixel_representation"] = int(info.signed)
    return opts


def _available_bytes(source: bytes | BinaryIO, start: int) -> int:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source) - start
    pos = source.tell()
    end = source.seek(0, io.SEEK_END)
    source.seek(pos)
    return end - start


def _deferred_iterator(ds, info: PixelInfo, elem: RawDataElement, source, opts,
                       indices: list[int] | None = None) -> Iterator[np.ndarray]:
    """Decode straight from the file object: the pixel value is never held whole."""
    ts = UID(info.transfer_syntax)
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    if not ts.is_encapsulated:
        frames_needed = max(indices) + 1 if indices else info.frames
        have = min(elem.length, _available_bytes(source, elem.value_tell))
        need = math.ceil(info.rows * info.columns * info.samples_per_pixel * frames_needed
                         * info.bits_allocated / 8)
        if info.photometric == "YBR_FULL_422":
            need = need // 3 * 2
        if have < need:
            raise PixelDecodeError(UNREADABLE_PIXELS,
                                   f"pixel data is {have} bytes, {need} needed for "
                                   f"{info.frames} frame(s) of {info.rows}x{info.columns}")
    options = as_pixel_options(ds, **opts)
    options.update(transfer_syntax_uid=ts, pixel_keyword=info.keyword,
                   pixel_vr=elem.VR or ("OW" if info.bits_allocated > 8 else "OB"))
    fp.seek(elem.value_tell)
    for arr, _ in get_decoder(ts).iter_array(fp, indices=indices, **options):
        yield arr


def _ensure_transfer_syntax(ds, ts: UID) -> None:
    """pydicom decodes only with file_meta.TransferSyntaxUID: fill it in from the
    encoding the dataset was read with (files without a File Meta header)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if not meta.get("TransferSyntaxUID"):
        meta.TransferSyntaxUID = ts


def iter_stored_frames(ds, source: bytes | BinaryIO | None = None,
                       info: PixelInfo | None = None,
                       indices: list[int] | None = None,
                       max_frame_bytes: int = MAX_FRAME_BYTES,
                       max_decoded_bytes: int = MAX_DECODED_BYTES) -> Iterator[np.ndarray]:
    """Yield decoded frames of STORED values, one at a time (all frames, or only
    those in `indices`: native data reads only their bytes, encapsulated data
    decodes only their fragments).

    Shape (rows, columns) for one sample per pixel, (rows, columns, 3) RGB for
    colour (YBR already converted). dtype as pydicom decodes (uint8/int16/...,
    float32/float64 for float pixel data), in native byte order. No LUT, no
    padding mask. A dataset without file_meta.TransferSyntaxUID gets one from
    the encoding it was read with (pydicom needs it to decode).

    `source`: the bytes (or seekable binary file object) the dataset was read
    from. Used when the pixel element was deferred (dcmread(defer_size=...)):
    frames are then decoded from it without loading the whole pixel value.

    Raises PixelDecodeError (NO_PIXEL_DATA / UNREADABLE_PIXELS), also when
    fewer frames than NumberOfFrames could be decoded, and before decoding
    when the declared size is over `max_frame_bytes` / `max_decoded_bytes`.
    """
    info = info or describe(ds)
    if indices is not None and not all(0 <= i < info.frames for i in indices):
        raise PixelDecodeError(UNREADABLE_PIXELS, f"frames {indices} requested of {info.frames}")
    if indices is not None and info.frames == 1:
        indices = None  # a single frame: decode it the usual way
    wanted = len(indices) if indices is not None else info.frames
    check_decoded_size(info, wanted, max_frame_bytes, max_decoded_bytes)
    ts = UID(info.transfer_syntax)
    opts = _decode_options(ds, info)
    tag = next(t for t, kw in PIXEL_KEYWORDS.items() if kw == info.keyword)
    elem = ds._dict[tag]
    deferred = isinstance(elem, RawDataElement) and elem.value is None
    count = 0
    try:
        if ts.is_encapsulated:
            _check_codestreams(ds, info, elem, source, deferred and source is not None)
        if deferred and source is not None and ts != DeflatedExplicitVRLittleEndian:
            frames = _deferred_iterator(ds, info, elem, source, opts, indices)
        else:
            _ensure_transfer_syntax(ds, ts)
            frames = iter_pixels(ds, indices=indices, **opts)
        for arr in frames:
            yield arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
            count += 1
            if count == wanted:   # JPEG may yield extra fragments as frames
                break
    except PixelDecodeError:
        raise
    except NotImplementedError as exc:
        raise PixelDecodeError(UNREADABLE_PIXELS, f"no decoder for {ts.name}: {exc}") from exc
    except Exception as exc:
        raise PixelDecodeError(UNREADABLE_PIXELS, f"{type(exc).__name__}: {exc}") from exc
    if count < wanted:
        raise PixelDecodeError(UNREADABLE_PIXELS, f"only {count} of {wanted} frames decoded")


def check_decoded_size(info: PixelInfo, frames: int, max_frame_bytes: int = MAX_FRAME_BYTES,
                       max_decoded_bytes: int = MAX_DECODED_BYTES) -> None:
    """Refuse (UNREADABLE_PIXELS) to decode `frames` frames whose declared decoded
    size is over the bounds, before any decoder allocates it."""
    _check_size(info.rows, info.columns, info.samples_per_pixel, info.bits_allocated, frames,
                max_frame_bytes, max_decoded_bytes)


def _check_size(rows: int, columns: int, samples: int, bits_allocated: int, frames: int,
                max_frame_bytes: int, max_decoded_bytes: int) -> None:
    frame = rows * columns * samples * max(1, -(-bits_allocated // 8))
    if frame > max_frame_bytes:
        raise PixelDecodeError(UNREADABLE_PIXELS,
                               f"one decoded frame would be {frame} bytes ({rows}x{columns}x{samples}, "
                               f"{bits_allocated}-bit), more than pixels.max_frame_bytes = {max_frame_bytes}")
    if frame * frames > max_decoded_bytes:
        raise PixelDecodeError(UNREADABLE_PIXELS,
                               f"{frames} decoded frame(s) would be {frame * frames} bytes, more than "
                               f"pixels.max_decoded_bytes = {max_decoded_bytes}")


def _check_declared_size(ds, max_frame_bytes: int, max_decoded_bytes: int) -> None:
    """The size check on a header read without its pixel data (a malformed
    description is left for `describe` to report)."""
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.get("BitsAllocated") or 8)
        frames = int(_first(ds.get("NumberOfFrames")) or 1)
    except Exception:
        return
    _check_size(rows, columns, samples, bits, frames, max_frame_bytes, max_decoded_bytes)


def codestream_size(ts: UID, frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) that a JPEG, JPEG-LS or JPEG 2000 frame's own codestream
    declares (SOFn / SOF55 / SIZ marker), None when not found or not JPEG."""
    from pydicom.pixels.utils import _get_jpg_parameters
    from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes
    if ts in JPEG2000TransferSyntaxes:
        siz = frame.find(b"\xff\x4f\xff\x51", 0, 65536)   # SOC then SIZ
        if siz == -1 or len(frame) < siz + 24:
            return None
        x, y, x0, y0 = struct.unpack(">IIII", frame[siz + 8:siz + 24])
        return max(y - y0, 0), max(x - x0, 0)
    if ts in JPEGLSTransferSyntaxes or ts in JPEGTransferSyntaxes:
        info = _get_jpg_parameters(frame)
        return (info["height"], info["width"]) if "height" in info else None
    return None


def _check_codestreams(ds, info: PixelInfo, elem, source, deferred: bool) -> None:
    """Every JPEG-family frame must not declare more rows or columns than the
    header: its decoder allocates what the codestream says (a patched SOF or
    SIZ marker makes a 1 KiB frame ask for 65535 x 65535)."""
    from pydicom.encaps import generate_frames
    from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes
    ts = UID(info.transfer_syntax)
    if not (ts in JPEG2000TransferSyntaxes or ts in JPEGLSTransferSyntaxes or ts in JPEGTransferSyntaxes):
        return
    if deferred:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        fp.seek(elem.value_tell)
        buffer = fp
    else:
        buffer = ds[elem.tag].value
    try:
        for index, frame in enumerate(generate_frames(buffer, number_of_frames=info.frames)):
            size = codestream_size(ts, bytes(frame[:65536 + 64]) if ts in JPEG2000TransferSyntaxes
                                   else bytes(frame))
            if size and (size[0] > info.rows or size[1] > info.columns):
                raise PixelDecodeError(UNREADABLE_PIXELS,
                                       f"frame {index}'s codestream declares {size[0]}x{size[1]}, "
                                       f"the header {info.rows}x{info.columns}")
    except PixelDecodeError:
        raise
    except Exception:
        return   # unreadable fragments: the decoder reports them


HEADER_INFLATE_BYTES = 16 * 2**20   # a deflated header larger than this is not worth decoding


def read_for_decoding(fp: BinaryIO, force: bool, defer_size: int,
                      max_frame_bytes: int = MAX_FRAME_BYTES,
                      max_decoded_bytes: int = MAX_DECODED_BYTES):
    """dcmread for decoding: elements over `defer_size` deferred (decoded later
    from `fp`). A deflated dataset is inflated whole (deferred offsets would
    point into the inflated stream), but only after its header passed the size
    checks, and at most `max_decoded_bytes`; else PixelDecodeError. Other read
    failures raise as dcmread's do."""
    from pydicom import dcmread
    from dicom_triage.udfs.object_reader import DEFLATED_TS, InflateLimitExceeded, declared_transfer_syntax, read_deflated
    if declared_transfer_syntax(fp) != DEFLATED_TS:
        return dcmread(fp, force=force, defer_size=defer_size)
    start = fp.tell()
    try:
        header, _ = read_deflated(fp, HEADER_INFLATE_BYTES, stop_before_pixels=True, defer_size=defer_size)
    except InflateLimitExceeded as exc:
        raise PixelDecodeError(UNREADABLE_PIXELS, str(exc)) from exc
    _check_declared_size(header, max_frame_bytes, max_decoded_bytes)
    fp.seek(start)
    try:
        return read_deflated(fp, max_decoded_bytes)[0]
    except InflateLimitExceeded as exc:
        raise PixelDecodeError(UNREADABLE_PIXELS, f"{exc} (pixels.max_decoded_bytes)") from exc


def padding_mask(stored: np.ndarray, info: PixelInfo) -> np.ndarray | None:
    """True where a stored value lies in the padding range (PixelPaddingValue ..
    PixelPaddingRangeLimit, inclusive); None when the object declares no padding."""
    if info.padding is None or stored.ndim != 2:
        return None
    lo, hi = info.padding
    if lo == hi:
        return stored == lo
    return (stored >= lo) & (stored <= hi)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luminance of an (rows, columns, 3) RGB frame, rounded to an integer.

    8-bit input: PIL's convert("L") (fixed point, rounded) -> uint8.
    16-bit: round(0.299 R + 0.587 G + 0.114 B) -> uint16. Wider: float64, rounded.
    """
    if rgb.dtype == np.uint8:
        from PIL import Image
        return np.asarray(Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L"))
    if rgb.dtype.itemsize <= 2 and rgb.dtype.kind == "u":
        acc = rgb[..., 0].astype(np.uint32) * 299
        acc += rgb[..., 1].astype(np.uint32) * 587
        acc += rgb[..., 2].astype(np.uint32) * 114
        acc += 500
        acc //= 1000
        return acc.astype(np.uint16)
    return np.rint(rgb.astype(np.float64) @ np.array(BT601))


def scalar_frame(stored: np.ndarray, info: PixelInfo) -> np.ndarray:
    """The single-valued frame statistics are built on: stored values for grey and
    palette (their ValueMap turns them into modality units / luminance), integer
    luminance for RGB."""
    return luminance(stored) if stored.ndim == 3 else stored


def frame_float_dtype(info: PixelInfo) -> type:
    """float32 when it holds every value exactly enough (<= 24-bit integers), else float64."""
    if info.is_float:
        return np.float64 if info.bits_allocated == 64 else np.float32
    return np.float64 if info.bits_stored > 24 else np.float32


def to_modality(stored: np.ndarray, info: PixelInfo) -> np.ndarray:
    """A 2-D float frame in modality units (luminance for colour); padding not masked."""
    scalar = scalar_frame(stored, info)
    return info.value_map(scalar, frame_float_dtype(info))


def iter_frames(ds, source: bytes | BinaryIO | None = None) -> Iterator[np.ma.MaskedArray]:
    """Yield each frame as a 2-D masked array in MODALITY units.

    Values: Modality LUT applied (ModalityLUTSequence, else RescaleSlope /
    RescaleIntercept); RGB/YBR as integer BT.601 luminance; PALETTE COLOR as
    luminance of its palette. dtype float32 (float64 for > 24-bit or double data).
    Mask: True where the STORED value is padding (PixelPaddingValue /
    PixelPaddingRangeLimit) and where float data is not finite; ``np.ma.nomask``
    when nothing is masked. MONOCHROME1 is not inverted: see
    ``describe(ds).invert_display``. One frame in memory at a time.
    """
    info = describe(ds)
    for stored in iter_stored_frames(ds, source, info):
        values = to_modality(stored, info)
        mask = padding_mask(stored, info)
        if info.is_float:
            bad = ~np.isfinite(values)
            mask = bad if bad.any() else None
        yield np.ma.MaskedArray(values, mask=np.ma.nomask if mask is None else mask)
