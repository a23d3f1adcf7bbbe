"""Image embeddings: one DICOM object -> one network input, batches -> vectors.

Plain functions (no Spark); `make_embedder` wraps them for `mapInPandas`.

Preprocessing (`preprocess`), one documented way for every object:

1. One representative frame is decoded: the middle one (index frames // 2,
   the same frame udfs.pixel_stats measures) or the first (`frame="first"`).
   Only that frame is decoded (pydicom's frame index), so memory is one frame
   beyond the file's bytes.
2. Grey images (MONOCHROME1/2, float pixel data): the Modality LUT is applied
   (udfs.pixels: ModalityLUTSequence, else RescaleSlope/Intercept), then the
   values are windowed to [0, 1] with
   * the header's FIRST WindowCenter / WindowWidth (top-level attributes,
     DICOM's linear function PS3.3 C.11.2.1.2.1, as udfs.pixel_stats'
     thumbnails) when present and valid, else
   * the frame's own 0.5th .. 99.5th percentiles of its non-padded pixels
     (min .. max when those coincide).
   VOI LUT Sequences and per-frame functional-group windows are not used.
   MONOCHROME1 is inverted (1 - x) so that bone / dense matter is bright, as
   in MONOCHROME2. Padding pixels (PixelPaddingValue) and non-finite float
   values become 0 (black, like the letterbox). The grey image is replicated
   into three channels.
3. Colour images stay RGB: YBR_* is converted by pydicom / the JPEG codec,
   PALETTE COLOR is looked up, 16-bit RGB is shifted to 8 bits
   (udfs.pixel_stats.colour_display); values / 255, no windowing.
4. The image is resized (PIL bilinear, which antialiases when shrinking) to
   fit `size` x `size` keeping its aspect ratio (udfs.pixel_stats.fit_size),
   centred on a black (0) canvas, then normalised with ImageNet mean / std.

`embed_rows` reads and preprocesses the next batch on a 2-thread pool while
the model runs the current one (at most one batch ahead), and L2-normalises
the vectors. A row whose object cannot be read or decoded gets
`embedding_error` and no vector; the other rows are unaffected. The vector of
an image does not depend on the batch it is in nor on prefetching (bitwise
identical on the CPU here; the tests allow 1e-5 for other kernels).
"""
from __future__ import annotations

import contextlib
import io
import math
import threading
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from dicom_triage.udfs import pixels
from dicom_triage.udfs.encoders import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE
from dicom_triage.udfs.pixel_stats import (DEFER_BYTES, _looks_like_cut_pixel_data, colour_display, display_window,
                               fit_size, window01)
from dicom_triage.udfs.pixels import (NO_PIXEL_DATA, UNREADABLE_PIXELS, PixelDecodeError,
                         PixelInfo, describe, padding_mask, to_modality)

FRAMES = ("middle", "first")
OUTPUT_COLUMNS = ("path", "sop_instance_uid", "embedding", "encoder", "embedding_error")
PREFETCH_THREADS = 2

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.array(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


# ---------------------------------------------------------------- decoding one frame
def frame_index(frames: int, frame: str = "middle") -> int:
    """Index of the representative frame: frames // 2 ("middle") or 0 ("first")."""
    if frame not in FRAMES:
        raise ValueError(f"embed.frame must be one of {FRAMES}, got {frame!r}")
    return frames // 2 if frame == "middle" else 0


def decode_stored_frame(ds, index: int, source: bytes | None = None,
                        info: PixelInfo | None = None) -> np.ndarray:
    """Decode only frame `index` (stored values, as udfs.pixels.iter_stored_frames
    yields them: YBR converted to RGB, native byte order). Single-frame objects
    go through iter_stored_frames itself; multi-frame ones ask pydicom for that
    frame alone (native data: only its bytes are read; encapsulated: only its
    fragments are decoded). Raises PixelDecodeError."""
    return next(pixels.iter_stored_frames(ds, source, info, indices=[index]))


def read_dataset(data: bytes, force: bool = False):
    """dcmread of a whole file's bytes with large elements deferred (decoded
    later straight from `data`; deflated datasets inflated whole, with a bound);
    any read failure -> PixelDecodeError."""
    try:
        ds = pixels.read_for_decoding(io.BytesIO(data), force, DEFER_BYTES)
    except PixelDecodeError:
        raise
    except Exception as exc:
        raise PixelDecodeError(UNREADABLE_PIXELS, f"not readable as DICOM: {type(exc).__name__}: {exc}") from exc
    return ds


# ---------------------------------------------------------------- image in [0, 1]
def grey01(stored: np.ndarray, info: PixelInfo) -> np.ndarray:
    """A grey frame in modality units windowed to [0, 1] float32 (header window,
    else p0.5..p99.5 of the valid pixels), MONOCHROME1 inverted, padding 0."""
    values = to_modality(stored, info)
    invalid = padding_mask(stored, info)
    if info.is_float:
        bad = ~np.isfinite(values)
        invalid = bad if bad.any() else None
    lo, hi = 0.0, 1.0
    if info.window is None:
        valid = values if invalid is None else values[~invalid]
        if valid.size:
            lo, hi = (float(v) for v in np.percentile(valid, [0.5, 99.5]))
            if hi <= lo:
                lo, hi = float(valid.min()), float(valid.max())
    img = window01(values, *display_window(info, lo, hi))
    if info.invert_display:
        np.subtract(1.0, img, out=img)
    if invalid is not None:
        img[invalid] = 0.0
    return img


def image01(stored: np.ndarray, info: PixelInfo) -> np.ndarray:
    """(rows, columns) grey or (rows, columns, 3) RGB float32 image in [0, 1]."""
    if info.is_color:
        rgb = colour_display(stored, info, max(info.rows, info.columns))
        return np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
    return grey01(stored, info)


def letterbox(img01: np.ndarray, size: int) -> np.ndarray:
    """Fit a [0, 1] image into size x size keeping its aspect ratio (bilinear),
    centred on black: float32 [3, size, size] (grey replicated)."""
    h, w = img01.shape[:2]
    fw, fh = fit_size(w, h, size)
    channels = [img01] if img01.ndim == 2 else [img01[..., c] for c in range(3)]
    out = np.zeros((3, size, size), dtype=np.float32)
    top, left = (size - fh) // 2, (size - fw) // 2
    for c, channel in enumerate(channels):
        resized = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), "F")
        if (fw, fh) != (w, h):
            resized = resized.resize((fw, fh), Image.BILINEAR)
        out[c, top:top + fh, left:left + fw] = np.asarray(resized)
    if len(channels) == 1:
        out[1] = out[0]
        out[2] = out[0]
    return out


def normalize(img: np.ndarray) -> np.ndarray:
    """ImageNet mean / std normalisation of a [3, H, W] image in [0, 1] (in place)."""
    img -= _MEAN
    img /= _STD
    return img


def preprocess(data: bytes, force: bool = False, frame: str = "middle", size: int = INPUT_SIZE) -> np.ndarray:
    """One DICOM file's bytes -> float32 [3, size, size] network input (see the
    module docstring). Raises PixelDecodeError when the object has no pixels or
    they cannot be decoded (also for bytes that are not DICOM at all)."""
    frame_index(1, frame)              # validates `frame` before any work
    with _quiet():
        ds = read_dataset(data, force)
        try:
            info = describe(ds)
        except PixelDecodeError as exc:
            if exc.code == NO_PIXEL_DATA and _looks_like_cut_pixel_data(bytes(data)):
                raise PixelDecodeError(UNREADABLE_PIXELS,
                                       "pixel data element present but its value is cut short") from exc
            raise
        stored = decode_stored_frame(ds, frame_index(info.frames, frame), data, info)
        return normalize(letterbox(image01(stored, info), size))


@contextlib.contextmanager
def _quiet():
    """pydicom's warnings (odd VRs, excess padding) silenced on the main thread.
    warnings.catch_warnings is not thread-safe, so prefetch threads leave the
    filters alone (Python then shows each distinct warning once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------- batches
def _force(row: dict) -> bool:
    """dcmread(force=...) for a row: files without the DICM preamble need it;
    an unknown has_preamble (None / NaN) forces too."""
    value = row.get("has_preamble")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return not bool(value)


def _prepare(row: dict, read_object: Callable[[str], bytes], frame: str, size: int):
    """(input array, None) or (None, error message); never raises."""
    try:
        data = read_object(row["path"])
    except Exception as exc:
        return None, f"cannot read object: {type(exc).__name__}: {exc}"
    try:
        return preprocess(data, force=_force(row), frame=frame, size=size), None
    except PixelDecodeError as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"{UNREADABLE_PIXELS}: {type(exc).__name__}: {exc}"


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32; a zero row stays zero)."""
    v = vectors.astype(np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)


def _run_batch(rows: list[dict], prepared: list, encoder) -> Iterator[dict]:
    ok = [i for i, (arr, _) in enumerate(prepared) if arr is not None]
    vectors: dict[int, list[float]] = {}
    errors = {i: err for i, (_, err) in enumerate(prepared) if err is not None}
    if ok:
        try:
            out = l2_normalize(encoder.embed(np.stack([prepared[i][0] for i in ok])))
            vectors = {i: out[j].tolist() for j, i in enumerate(ok)}
        except Exception as exc:   # the model failed on this batch: report it on its rows
            errors.update({i: f"ENCODER_ERROR: {type(exc).__name__}: {exc}" for i in ok})
    for i, row in enumerate(rows):
        yield {"path": row.get("path"), "sop_instance_uid": row.get("sop_instance_uid"),
               "embedding": vectors.get(i), "encoder": encoder.name,
               "embedding_error": errors.get(i)}


def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def embed_rows(rows: Iterable[dict], read_object: Callable[[str], bytes], encoder, batch_size: int,
               prefetch: bool = True, frame: str = "middle") -> Iterator[dict]:
    """Embed instance rows (`path`, `sop_instance_uid`, `has_preamble`) in
    batches of `batch_size`; yields, in input order, one dict per row: path,
    sop_instance_uid, embedding (L2-normalised list of float, or None),
    encoder (encoder.name), embedding_error (None, or why there is no vector).

    `prefetch`: a pool of 2 threads reads and preprocesses batch k+1 while the
    model runs batch k; never more than one batch ahead (memory: two batches
    of inputs). Results are the same with and without it."""
    if batch_size < 1:
        raise ValueError("embed.batch_size must be >= 1")
    frame_index(1, frame)            # validate early
    size = encoder.input_size
    batches = _chunks(rows, batch_size)
    if not prefetch:
        for batch in batches:
            yield from _run_batch(batch, [_prepare(r, read_object, frame, size) for r in batch], encoder)
        return
    with ThreadPoolExecutor(PREFETCH_THREADS, thread_name_prefix="embed-prefetch") as pool:
        def submit(batch: list[dict] | None) -> list[Future] | None:
            if batch is None:
                return None
            return [pool.submit(_prepare, r, read_object, frame, size) for r in batch]

        current = next(batches, None)
        pending = submit(current)
        try:
            while current is not None:
                prepared = [f.result() for f in pending]
                following = next(batches, None)
                pending = submit(following)           # decoded while the model runs `current`
                yield from _run_batch(current, prepared, encoder)
                current = following
        finally:
            for f in pending or ():
                f.cancel()


# ---------------------------------------------------------------- Spark
def make_embedder(read_object: Callable[[str], bytes], encoder_spec: str, device: str, threads: int | None,
                  batch_size: int, prefetch: bool, frame: str):
    """A function for ``mapInPandas``: pandas DataFrames (path, sop_instance_uid,
    has_preamble) in, DataFrames with OUTPUT_COLUMNS out, one output frame per
    input frame with the same rows in the same order. The encoder is loaded on
    the worker, once per Python process (udfs.encoders.get_encoder); batches
    and prefetching run across the incoming Arrow batches."""

    def embed_frames(frames: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd
        from dicom_triage.udfs.encoders import get_encoder

        encoder = get_encoder(encoder_spec, device, threads)
        sizes: deque[int] = deque()

        def rows() -> Iterator[dict]:
            for pdf in frames:
                sizes.append(len(pdf))
                yield from pdf.to_dict("records")

        def frame_of(out: list[dict]):
            return pd.DataFrame(out, columns=list(OUTPUT_COLUMNS))

        done: list[dict] = []
        for out in embed_rows(rows(), read_object, encoder, batch_size, prefetch, frame):
            done.append(out)
            while sizes and len(done) >= sizes[0]:
                n = sizes.popleft()
                yield frame_of(done[:n])
                done = done[n:]
        while sizes:                  # trailing empty input frames
            n = sizes.popleft()
            yield frame_of(done[:n])
            done = done[n:]

    return embed_frames
