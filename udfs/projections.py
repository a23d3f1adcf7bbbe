"""Series projections: maximum and mean intensity along the slice axis, as PNG.

`series_projections(previews, ...)` takes one series' per-slice previews
(small uint8 images, already in slice order, e.g. the order of
`udfs.geometry.series_geometry(...)["slice_order"]`) and returns four 8-bit
grey PNGs:

* `mip_png` / `mean_png`: the en-face projections, max / mean over slices of
  each pixel (a rows x cols image). For an axial CT this is the classic
  axial MIP: it shows what the whole stack contains at a glance.
* `side_mip_png` / `side_mean_png`: side views, one line per slice, stacked
  top to bottom in slice order (first slice at the top). Line i is the max /
  mean over the rows of slice i, so the image is slices x cols: for an axial
  stack it looks like a coronal projection. A missing slice is a dark line
  (when `slice_positions` is given, slices are placed at their positions on a
  regular grid and empty grid rows stay black), a shifted or misregistered
  slice is a line that breaks the outline.

Intensity: each projection is stretched linearly so that its maximum becomes
255 (0 stays 0, so empty rows stay black); a constant-zero projection stays 0.
Size: physical aspect ratio when spacings are given (else one pixel per preview
pixel and per slice), longest side <= `max_side`. Downscaling uses a box filter,
upscaling nearest neighbour, so a one-slice gap stays a crisp line.
"""
from __future__ import annotations

import io
from collections import Counter
from typing import Sequence

import numpy as np
from PIL import Image

PROJECTION_KEYS = ("mip_png", "mean_png", "side_mip_png", "side_mean_png")

# A positional grid longer than this many times the slice count means the
# positions are too irregular to place (e.g. one far-away slice): fall back to
# one line per slice.
_MAX_GRID_FACTOR = 8


def _grey(preview) -> np.ndarray | None:
    """2-D float32 image from an (H, W) or (H, W, C) array; None when unusable."""
    if preview is None:
        return None
    arr = np.asarray(preview)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].astype(np.float32).mean(axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        return None
    return np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)


def _resize_float(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(arr.astype(np.float32))
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    top = float(arr.max()) if arr.size else 0.0
    if top <= 0:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)


def _png(arr: np.ndarray, height: float, width: float, max_side: int) -> bytes:
    """8-bit grey PNG of `arr` shown at (height, width) pixels, longest side <= max_side."""
    scale = min(1.0, max_side / max(height, width))
    out_h = max(1, int(round(height * scale)))
    out_w = max(1, int(round(width * scale)))
    img = Image.fromarray(_to_uint8(arr))
    # Resize each axis on its own: box filter when shrinking, nearest when growing.
    if out_h != img.height:
        filt = Image.Resampling.BOX if out_h < img.height else Image.Resampling.NEAREST
        img = img.resize((img.width, out_h), filt)
    if out_w != img.width:
        filt = Image.Resampling.BOX if out_w < img.width else Image.Resampling.NEAREST
        img = img.resize((out_w, img.height), filt)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _place_on_grid(lines_max: np.ndarray, lines_mean: np.ndarray, z: np.ndarray,
                   step: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Put one line per slice at round((z - z0) / step); empty grid rows are 0."""
    index = np.rint((z - z.min()) / step).astype(int)
    n_grid = int(index.max()) + 1
    if n_grid > _MAX_GRID_FACTOR * len(z):
        return None
    grid_max = np.zeros((n_grid, lines_max.shape[1]), np.float32)
    np.maximum.at(grid_max, index, lines_max)
    sums = np.zeros_like(grid_max)
    np.add.at(sums, index, lines_mean)
    counts = np.bincount(index, minlength=n_grid).astype(np.float32)[:, None]
    grid_mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return grid_max, grid_mean


def series_projections(
    previews: Sequence[np.ndarray | None],
    max_side: int = 256,
    *,
    slice_positions: Sequence[float] | None = None,
    slice_spacing: float | None = None,
    pixel_spacing: Sequence[float] | None = None,
    image_shape: Sequence[int] | None = None,
) -> dict:
    """En-face and side-view MIP / mean projections of one series as PNG bytes.

    previews: per-slice 2-D (or H x W x 3) images in slice order; None entries
        (unreadable slices) are skipped. Previews of another shape than the most
        common one are resized to it.
    max_side: longest side of every PNG, pixels.
    slice_positions: optional coordinate of each preview along the slice normal
        (mm; `ImagePositionPatient . normal`), same length as `previews`. When
        given, the side view places each slice at its position on a grid of
        step `slice_spacing` (default: median positive step), so missing slices
        show as black lines.
    slice_spacing: slice step, mm (geometry's `slice_spacing`).
    pixel_spacing: (row, column) spacing in mm of the ORIGINAL images
        (PixelSpacing); with `image_shape` = their (rows, columns), the preview's
        own spacing is derived from it. Without `image_shape` the spacing is
        taken to be the previews' own.

    Returns {"mip_png", "mean_png", "side_mip_png", "side_mean_png"}: bytes, or
    all None for fewer than 2 usable previews.
    """
    empty = dict.fromkeys(PROJECTION_KEYS)
    images, keep = [], []
    for i, p in enumerate(previews if previews is not None else []):
        g = _grey(p)
        if g is not None:
            images.append(g)
            keep.append(i)
    if len(images) < 2:
        return empty

    shape = Counter(im.shape for im in images).most_common(1)[0][0]
    vol = np.stack([im if im.shape == shape else _resize_float(im, shape) for im in images])
    h, w = shape

    # Physical size of one preview pixel (row, col), mm; None when unknown.
    prev_row_mm = prev_col_mm = None
    if pixel_spacing is not None and len(pixel_spacing) == 2 and all(
            v is not None and np.isfinite(v) and v > 0 for v in pixel_spacing):
        prev_row_mm, prev_col_mm = float(pixel_spacing[0]), float(pixel_spacing[1])
        if image_shape is not None and len(image_shape) == 2 and all(
                v is not None and v > 0 for v in image_shape):
            prev_row_mm *= float(image_shape[0]) / h
            prev_col_mm *= float(image_shape[1]) / w

    # En-face: max / mean over slices.
    mip, mean = vol.max(axis=0), vol.mean(axis=0)
    enface_h = h * (prev_row_mm / prev_col_mm) if prev_row_mm else float(h)

    # Side view: per slice, max / mean over rows -> slices x cols.
    lines_max, lines_mean = vol.max(axis=1), vol.mean(axis=1)
    step = float(slice_spacing) if slice_spacing is not None and np.isfinite(
        slice_spacing) and slice_spacing > 0 else None
    side_max, side_mean = lines_max, lines_mean
    if slice_positions is not None and len(slice_positions) == len(previews):
        z = np.asarray([slice_positions[i] for i in keep], dtype=float)
        if np.all(np.isfinite(z)):
            if step is None:
                diffs = np.diff(np.sort(z))
                diffs = diffs[diffs > 1e-6]
                step = float(np.median(diffs)) if diffs.size else None
            if step is not None:
                placed = _place_on_grid(lines_max, lines_mean, z, step)
                if placed is not None:
                    side_max, side_mean = placed
    line_px = step / prev_col_mm if (step is not None and prev_col_mm) else 1.0
    side_h = side_max.shape[0] * line_px

    return {
        "mip_png": _png(mip, enface_h, w, max_side),
        "mean_png": _png(mean, enface_h, w, max_side),
        "side_mip_png": _png(side_max, side_h, w, max_side),
        "side_mean_png": _png(side_mean, side_h, w, max_side),
    }
