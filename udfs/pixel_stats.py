"""Per-instance pixel statistics in one pass over the frames, pure Python.

Plain functions on a pydicom Dataset / numpy arrays (no Spark). Units are
MODALITY units (Modality LUT applied; HU for CT) unless a docstring says
otherwise; colour images use BT.601 luminance (see udfs/pixels.py).

How the value statistics are exact yet cheap: integer pixels of <= 16 bits
are counted with ONE ``np.bincount`` per frame, accumulated over frames. The
non-empty bins (a few thousand values at most) are then mapped through the
Modality LUT (or palette luminance), sorted and merged into a `Distribution`
(sorted unique values + counts). Every value statistic - min, max, mean, std,
percentiles, histogram, entropy, saturation - comes from that distribution,
never from a copy of the pixels. Wider integers and float pixel data take a
numpy path (``np.unique`` per frame, merged), still frame by frame.

Percentile convention: numpy's default ``method="linear"`` (Hyndman & Fan
type 7); `percentiles` reproduces ``np.percentile`` of the same values.

Image-based measures (sharpness, noise, Otsu split, EFC, SNR, thumbnail,
preview) use ONE frame: the middle frame (index frames // 2) of a multi-frame
object. Padded pixels are excluded from every statistic; in the images they
are filled with the window's low end.
"""
from __future__ import annotations

import hashlib
import io
import math
import struct
import sys
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageFilter

from dicom_triage.udfs.burned_in import burned_in_text
from dicom_triage.udfs.pixels import (MAX_DECODED_BYTES, MAX_FRAME_BYTES, NO_PIXEL_DATA, UNREADABLE_PIXELS,
                         PixelDecodeError, PixelInfo, describe, frame_float_dtype, iter_stored_frames,
                         padding_mask, read_for_decoding, scalar_frame)

PERCENTILES = (0.5, 1, 5, 25, 50, 75, 95, 99, 99.5)
PERCENTILE_KEYS = ("p0_5", "p1", "p5", "p25", "p50", "p75", "p95", "p99", "p99_5")
CT_HIST_RANGE = (-1024.0, 3072.0)   # HU
ENTROPY_BINS = 256
MAX_FRAME_STATS = 1000              # frame_stats keeps every k-th frame beyond this
MAX_DISTINCT = 2 ** 22              # numpy path: coarsen values beyond this many distinct ones
SHARPNESS_PX = 256                  # laplacian_var / efc image: longest side at most
CLEANVISION_PX = 64                 # CleanVision MAX_RESOLUTION_FOR_BLURRY_DETECTION
PREVIEW_PX = 64
NOISE_SAMPLES = 16384               # residuals used by noise_sigma (grid-subsampled)
MAD_TO_SIGMA = 1.4826               # 1 / Phi^-1(3/4): MAD -> sigma for Gaussian data
DEFER_BYTES = 1 << 20               # measure_file: larger elements are read lazily


# ---------------------------------------------------------------- distributions
@dataclass(frozen=True)
class Distribution:
    """An exact value distribution: sorted unique `values` (float64) and their `counts`."""
    values: np.ndarray
    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def make_distribution(values: np.ndarray, counts: np.ndarray) -> Distribution:
    """Sort `values` (any order, duplicates allowed, e.g. after a non-monotonic LUT)
    and merge duplicates, summing their counts."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    if len(values) > 1 and not np.all(values[1:] != values[:-1]):
        values, inverse = np.unique(values, return_inverse=True)
        counts = np.bincount(inverse, weights=counts, minlength=len(values)).astype(np.int64)
    return Distribution(values, counts)


def distribution_of(array: np.ndarray) -> Distribution:
    """The exact distribution of a numpy array's values (test and fallback helper)."""
    values, counts = np.unique(np.asarray(array).ravel(), return_counts=True)
    return Distribution(values.astype(np.float64), counts.astype(np.int64))


def percentiles(dist: Distribution, pcts=PERCENTILES) -> np.ndarray:
    """Exact percentiles of `dist`, identical to ``np.percentile(data, pcts)``
    (method "linear": virtual index (n - 1) * q, numpy's two-sided lerp)."""
    n = dist.total
    q = np.true_divide(np.asarray(pcts, dtype=np.float64), 100)
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1
    prev[above] = nxt[above] = n - 1
    gamma = virtual - prev
    cum = np.cumsum(dist.counts)
    a = dist.values[np.searchsorted(cum, prev, side="right")]
    b = dist.values[np.searchsorted(cum, nxt, side="right")]
    diff = b - a
    out = a + diff * gamma
    upper = gamma >= 0.5
    out[upper] = (b - diff * (1 - gamma))[upper]
    return out


def moments(dist: Distribution) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0, as np.std)."""
    n = dist.total
    mean = float(np.dot(dist.values, dist.counts) / n)
    dev = dist.values - mean
    return mean, float(math.sqrt(np.dot(dev * dev, dist.counts) / n))


def bin_index(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin of each value in `bins` equal bins over [lo, hi], out-of-range clipped
    to the edge bins; hi == lo puts everything in bin 0."""
    if hi <= lo:
        return np.zeros(len(values), dtype=np.int64)
    idx = np.floor((values - lo) * (bins / (hi - lo))).astype(np.int64)
    return np.clip(idx, 0, bins - 1)


def binned_counts(dist: Distribution, lo: float, hi: float, bins: int) -> np.ndarray:
    """Counts of `dist` in `bins` equal bins over [lo, hi] (edges clipped in)."""
    return np.bincount(bin_index(dist.values, lo, hi, bins), weights=dist.counts,
                       minlength=bins).astype(np.int64)


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of a histogram of counts."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


def otsu_threshold(counts: np.ndarray) -> int | None:
    """Otsu's threshold on a histogram: the bin t maximising the between-class
    variance; foreground = bins > t. None when fewer than two bins are occupied."""
    p = counts.astype(np.float64)
    w0 = np.cumsum(p)[:-1]
    w1 = p.sum() - w0
    m = np.cumsum(p * np.arange(len(p)))[:-1]
    mu_t = float(np.dot(p, np.arange(len(p))))
    ok = (w0 > 0) & (w1 > 0)
    if not ok.any():
        return None
    between = np.zeros_like(w0)
    mu0 = m[ok] / w0[ok]
    mu1 = (mu_t - m[ok]) / w1[ok]
    between[ok] = w0[ok] * w1[ok] * (mu0 - mu1) ** 2
    return int(np.argmax(between))


def robust_sigma(dist: Distribution) -> float:
    """1.4826 * median absolute deviation from the median of a distribution."""
    med = percentiles(dist, [50])[0]
    deviations = make_distribution(np.abs(dist.values - med), dist.counts)
    return MAD_TO_SIGMA * float(percentiles(deviations, [50])[0])


# ---------------------------------------------------------------- accumulation
class _Histogram:
    """Counts stored (scalar) values over frames.

    Integers of <= 16 bits: one np.bincount per frame over the unsigned view of
    the values (the "code"), 256 or 65536 bins. Anything else (32-bit integers,
    float pixel data, luminance of 32-bit RGB): np.unique per frame, merged;
    beyond MAX_DISTINCT distinct values they are rounded to 16 significant
    bits (`exact` becomes False)."""

    def __init__(self, sample: np.ndarray, info: PixelInfo):
        self.info = info
        self.coded = sample.dtype.kind in "ui" and sample.dtype.itemsize <= 2
        self.exact = True
        if self.coded:
            self.nbins = 1 << (8 * sample.dtype.itemsize)
            self.code_dtype = np.dtype(f"u{sample.dtype.itemsize}")
            self.signed = sample.dtype.kind == "i"
            self.total = np.zeros(self.nbins, dtype=np.int64)
            self.padding_codes = None
            if info.padding is not None and info.samples_per_pixel == 1:
                low = -(self.nbins // 2) if self.signed else 0
                lo, hi = max(info.padding[0], low), min(info.padding[1], low + self.nbins - 1)
                if lo <= hi:   # stored values lo..hi -> their codes (two's complement)
                    self.padding_codes = np.arange(lo, hi + 1) & (self.nbins - 1)
        else:
            self.values = np.empty(0, dtype=np.float64)
            self.counts = np.empty(0, dtype=np.int64)

    def add(self, scalar: np.ndarray, invalid: np.ndarray | None = None):
        """Count one frame; returns the frame's own counts (for per-frame stats).

        Coded path: every pixel is counted and the bins of padding values are
        then emptied (same as masking, no mask needed). Numpy path: pixels
        where `invalid` is True (padding, non-finite) are left out."""
        if self.coded:
            frame = np.bincount(scalar.view(self.code_dtype).ravel(), minlength=self.nbins)
            if self.padding_codes is not None:
                frame[self.padding_codes] = 0
            self.total += frame
            return frame
        data = scalar if invalid is None else scalar[~invalid]
        values, counts = np.unique(data.ravel(), return_counts=True)
        values = values.astype(np.float64)
        if not self.exact:
            values = _coarsen(values)
        self.values, self.counts = _merge(self.values, self.counts, values, counts)
        if len(self.values) > MAX_DISTINCT:
            self.exact = False
            self.values, self.counts = _merge(np.empty(0), np.empty(0, np.int64),
                                              _coarsen(self.values), self.counts)
        return values, counts

    def _stored(self, codes: np.ndarray) -> np.ndarray:
        stored = codes.astype(np.int64)
        if self.signed:
            stored[stored >= self.nbins // 2] -= self.nbins
        return stored

    def distribution(self, frame=None) -> Distribution:
        """Distribution in statistics units (ValueMap applied) of everything
        counted, or of one frame's counts as returned by `add`."""
        if self.coded:
            hist = self.total if frame is None else frame
            if self.signed:    # codes of negative values (upper half) first: ascending order
                half = self.nbins // 2
                codes = np.concatenate([np.flatnonzero(hist[half:]) + half, np.flatnonzero(hist[:half])])
            else:
                codes = np.flatnonzero(hist)
            values = self.info.value_map(self._stored(codes))
            if self.info.value_map.kind in ("identity", "rescale") and self.info.value_map.slope > 0:
                return Distribution(values, hist[codes])   # already sorted and unique
            return make_distribution(values, hist[codes])
        values, counts = (self.values, self.counts) if frame is None else frame
        return make_distribution(self.info.value_map(values), counts)


def _merge(v1, c1, v2, c2):
    values, inverse = np.unique(np.concatenate([v1, v2]), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate([c1, c2]), minlength=len(values))
    return values, counts.astype(np.int64)


def _coarsen(values: np.ndarray, bits: int = 16) -> np.ndarray:
    mantissa, exponent = np.frexp(values)
    return np.ldexp(np.round(mantissa * (1 << bits)) / (1 << bits), exponent)


# ---------------------------------------------------------------- value statistics
def value_stats(dist: Distribution, units: str, hist_bins: int = 64,
                hist_range: tuple[float, float] | None = None) -> dict[str, Any]:
    """Every value statistic of a distribution (units as the distribution's).

    Keys: min, max, mean, std, p0_5 ... p99_5, dynamic_range (p99.5 - p0.5),
    value_range (max - min), distinct_values, frac_at_min, frac_at_max,
    entropy_bits (256 bins over p0.5..p99.5), histogram / hist_min / hist_max
    (`hist_bins` bins over [-1024, 3072] for HU, else min..max, or `hist_range`;
    values outside are counted in the edge bins). Statistics are None when the
    distribution is empty (every pixel padded)."""
    n = dist.total
    if n == 0:
        keys = ("min", "max", "mean", "std", *PERCENTILE_KEYS, "dynamic_range", "value_range",
                "frac_at_min", "frac_at_max", "entropy_bits", "hist_min", "hist_max")
        return {**dict.fromkeys(keys), "distinct_values": 0, "histogram": [0] * hist_bins}
    pct = percentiles(dist)
    lo_v, hi_v = float(dist.values[0]), float(dist.values[-1])
    mean, std = moments(dist)
    out: dict[str, Any] = {"min": lo_v, "max": hi_v, "mean": mean, "std": std}
    out.update({k: float(v) for k, v in zip(PERCENTILE_KEYS, pct)})
    out["dynamic_range"] = float(pct[-1] - pct[0])
    out["value_range"] = hi_v - lo_v
    out["distinct_values"] = int(len(dist.values))
    out["frac_at_min"] = float(dist.counts[0] / n)
    out["frac_at_max"] = float(dist.counts[-1] / n)
    out["entropy_bits"] = entropy_bits(binned_counts(dist, pct[0], pct[-1], ENTROPY_BINS))
    if hist_range is None:
        hist_range = CT_HIST_RANGE if units == "HU" else (lo_v, hi_v)
    h_lo, h_hi = float(hist_range[0]), float(hist_range[1])
    out["histogram"] = binned_counts(dist, h_lo, h_hi, hist_bins).tolist()
    out["hist_min"], out["hist_max"] = h_lo, h_hi
    return out


def frame_summary(index: int, dist: Distribution) -> dict[str, Any]:
    """{index, min, max, mean, std, p50} of one frame (None values if all padded)."""
    if dist.total == 0:
        return {"index": index, "min": None, "max": None, "mean": None, "std": None, "p50": None}
    mean, std = moments(dist)
    return {"index": index, "min": float(dist.values[0]), "max": float(dist.values[-1]),
            "mean": mean, "std": std, "p50": float(percentiles(dist, [50])[0])}


def stats_window(dist: Distribution) -> tuple[float, float]:
    """(low, high) = (p0.5, p99.5), widened to (min, max) when they coincide."""
    if dist.total == 0:
        return 0.0, 1.0
    lo, hi = percentiles(dist, [0.5, 99.5])
    if hi <= lo:
        lo, hi = dist.values[0], dist.values[-1]
    return float(lo), float(hi)


def otsu_split(dist: Distribution, lo: float, hi: float, offset: float = 0.0) -> dict[str, Any]:
    """Otsu on the 256-bin histogram of `dist` windowed to [lo, hi].

    Returns foreground_fraction (share above the threshold) and
    snr = (median(foreground) + offset) / (1.4826 * MAD(background)), MRIQC's
    SNR for magnitude images whose air is ~0; `offset` moves the zero there
    (1024 for HU: air = -1000 HU). None where undefined (one occupied bin, MAD 0)."""
    out = {"foreground_fraction": None, "snr": None}
    if dist.total == 0 or hi <= lo:
        return out
    idx = bin_index(dist.values, lo, hi, ENTROPY_BINS)
    t = otsu_threshold(np.bincount(idx, weights=dist.counts, minlength=ENTROPY_BINS))
    if t is None:
        return out
    fg = idx > t
    out["foreground_fraction"] = float(dist.counts[fg].sum() / dist.total)
    if fg.any() and (~fg).any():
        sigma = robust_sigma(Distribution(dist.values[~fg], dist.counts[~fg]))
        if sigma > 0:
            fg_median = float(percentiles(Distribution(dist.values[fg], dist.counts[fg]), [50])[0])
            out["snr"] = (fg_median + offset) / sigma
    return out


# ---------------------------------------------------------------- image measures
def window01(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float32 image scaled so lo -> 0, hi -> 1, clipped to [0, 1]."""
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    out = np.subtract(img, lo, dtype=np.float32)
    out *= scale
    return np.clip(out, 0.0, 1.0, out=out)


def downscale(img: np.ndarray, max_side: int) -> np.ndarray:
    """Box-average a 2-D image by the smallest integer factor k that brings its
    longest side to <= max_side (float32; the last rows/columns that do not
    fill a k x k block are dropped)."""
    k = math.ceil(max(img.shape) / max_side)
    if k <= 1:
        return np.array(img, dtype=np.float32)   # a copy: callers scale it in place
    h, w = img.shape[0] // k * k, img.shape[1] // k * k
    out = np.zeros((h // k, w // k), dtype=np.float32)
    for i in range(k):
        for j in range(k):
            out += img[i:h:k, j:w:k]
    out *= 1.0 / (k * k)
    return out


def laplacian_variance(img01: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian (4-neighbour kernel, cv2.Laplacian ksize=1)
    over the interior of an image in [0, 1]. Higher = sharper."""
    if min(img01.shape) < 3:
        return 0.0
    x = img01.astype(np.float32, copy=False)
    lap = x[:-2, 1:-1] + x[2:, 1:-1]
    lap += x[1:-1, :-2]
    lap += x[1:-1, 2:]
    lap -= 4 * x[1:-1, 1:-1]
    return float(lap.var())


def efc(img: np.ndarray) -> float | None:
    """MRIQC's entropy focus criterion of a non-negative image, normalised by
    its maximum (every pixel equal) -> 1.0 for a flat image, lower = sharper /
    less ghosting. E = sum (x/b) ln(x/b), b = sqrt(sum x^2),
    E_max = N (1/sqrt N) ln(1/sqrt N) (Atkinson et al. 1997, MRIQC qc.anatomical.efc)."""
    x = np.ascontiguousarray(img, dtype=np.float32).ravel()
    n = x.size
    b_max = math.sqrt(float(np.dot(x, x)))
    if n < 2 or b_max == 0:
        return None
    efc_max = n * (1.0 / math.sqrt(n)) * math.log(1.0 / math.sqrt(n))
    r = x * np.float32(1.0 / b_max)
    return float(np.dot(r, np.log(r + np.float32(1e-16)))) / efc_max


def noise_sigma(img: np.ndarray, invalid: np.ndarray | None = None,
                max_samples: int = NOISE_SAMPLES) -> float | None:
    """Robust noise standard deviation, in the image's units.

    Residual r = I * M with Immerkaer's kernel M = [[1,-2,1],[-2,4,-2],[1,-2,1]]
    (J. Immerkaer, "Fast Noise Variance Estimation", CVIU 64(2):300-302, 1996),
    which cancels locally planar structure; for white Gaussian noise r has
    standard deviation 6 sigma (||M|| = 6). Immerkaer averages |r|; here
    sigma = 1.4826 * MAD(r) / 6, which ignores the tails edges put in r.
    Residuals are taken on a regular grid of about `max_samples` points (every
    k-th row and column); those touching an `invalid` (padded) pixel are dropped."""
    h, w = img.shape
    if h < 3 or w < 3:
        return None
    step = max(1, math.ceil(math.sqrt((h - 2) * (w - 2) / max_samples)))
    dtype = np.float64 if img.dtype.itemsize >= 4 and img.dtype != np.float32 else np.float32
    rows = [img[i:h - 2 + i:step].astype(dtype) for i in range(3)]
    v = rows[0] - 2 * rows[1] + rows[2]
    r = v[:, 0:w - 2:step] - 2 * v[:, 1:w - 1:step] + v[:, 2:w:step]
    if invalid is not None:
        bad = invalid[0:h - 2:step] | invalid[1:h - 1:step] | invalid[2:h:step]
        r = r[~(bad[:, 0:w - 2:step] | bad[:, 1:w - 1:step] | bad[:, 2:w:step])]
    r = r.ravel()
    if r.size == 0:
        return None
    return MAD_TO_SIGMA * fast_median(np.abs(r - fast_median(r))) / 6.0


def fast_median(a: np.ndarray) -> float:
    """np.median of a 1-D array via one single-kth partition (np.median's
    two-kth partition is several times slower)."""
    k = a.size // 2
    p = np.partition(a, k)
    if a.size % 2:
        return float(p[k])
    return (float(p[:k].max()) + float(p[k])) / 2


def blurry_score(gray: Image.Image, max_resolution: int = CLEANVISION_PX,
                 normalizing_factor: float = 0.01, color_threshold: float = 0.18) -> float:
    """CleanVision's blurry score of an 8-bit grey PIL image (flagged < 0.29).

    Resize to longest side `max_resolution` (PIL default filter), FIND_EDGES,
    s_e = std of the edge image, s_h = std of the 256-bin grey histogram;
    score = min((1 - e^(-0.01 s_e)) + (1 - e^(-0.01 s_h), or 0 if <= 0.18), 1)."""
    ratio = max(gray.width, gray.height) / max_resolution
    if ratio > 1:
        gray = gray.resize((max(int(gray.width // ratio), 1), max(int(gray.height // ratio), 1)))
    s_e = float(np.asarray(gray.filter(ImageFilter.FIND_EDGES)).std())  # = sqrt(ImageStat var)
    s_h = float(np.std(np.bincount(np.asarray(gray).ravel(), minlength=256)))  # = std(histogram())
    blur = 1 - math.exp(-s_e * normalizing_factor)
    hist = 1 - math.exp(-s_h * normalizing_factor)
    return float(min(blur + (hist if hist > color_threshold else 0.0), 1.0))


def fit_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longest side is `longest` (at least 1 px)."""
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def display_window(info: PixelInfo, lo: float, hi: float) -> tuple[float, float]:
    """Display range: the header's first WindowCenter/WindowWidth (DICOM linear
    function, PS3.3 C.11.2.1.2.1) when present, else (lo, hi)."""
    if info.window is None:
        return lo, hi
    c, w = info.window
    low = c - 0.5 - (w - 1) / 2
    return low, max(low + 1e-6, c - 0.5 + (w - 1) / 2)


def to_u8(img01: np.ndarray) -> np.ndarray:
    """[0, 1] float image -> uint8 0..255, rounded."""
    return np.rint(img01 * 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG of an 8-bit grey (rows, columns) or RGB (rows, columns, 3) array:
    IHDR + one IDAT (filter type 0 rows, zlib level 1) + IEND (about 4x faster
    than PIL's encoder for a 128 px thumbnail, ~10 % larger)."""
    h, w = pixels.shape[:2]
    rows = np.zeros((h, 1 + pixels[0].size), dtype=np.uint8)
    rows[:, 1:] = pixels.reshape(h, -1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2 if pixels.ndim == 3 else 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + chunk(b"IEND", b""))


def preview_bytes(gray: Image.Image, size: int = PREVIEW_PX) -> bytes:
    """size x size uint8, row-major: `gray` fitted inside keeping its aspect
    ratio, centred, padded with 0."""
    fitted = gray.resize(fit_size(gray.width, gray.height, size), Image.BILINEAR)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return canvas.tobytes()


def colour_display(stored: np.ndarray, info: PixelInfo, max_side: int) -> Image.Image:
    """8-bit RGB PIL image of a colour frame (palette applied), at most `max_side`."""
    if info.is_palette:   # nearest-neighbour subsample the indexes, then look them up
        step = max(1, max(stored.shape) // max_side)
        lut = info.palette_rgb
        if lut.dtype != np.uint8:
            lut = (lut >> (info.palette_depth - 8)).astype(np.uint8)
        idx = stored[::step, ::step].astype(np.int64) - info.value_map.first
        rgb = lut[np.clip(idx, 0, len(lut) - 1)]
    else:
        rgb = stored
        if rgb.dtype != np.uint8:
            shift = max(min(info.bits_stored, 8 * rgb.dtype.itemsize) - 8, 0)
            rgb = (rgb >> shift).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    factor = math.ceil(max(img.size) / max_side)
    return img.reduce(factor) if factor > 1 else img


# ---------------------------------------------------------------- hashing
def canonical_bytes(frame: np.ndarray) -> memoryview:
    """A decoded frame's stored values as little-endian, C-ordered bytes."""
    if frame.dtype.byteorder == ">" or (frame.dtype.byteorder == "=" and sys.byteorder == "big"):
        frame = frame.astype(frame.dtype.newbyteorder("<"))
    return memoryview(np.ascontiguousarray(frame)).cast("B")


def hash_header(info: PixelInfo) -> bytes:
    """The geometry prefix of pixel_hash: b"rows x columns x frames x samples;"."""
    return f"{info.rows}x{info.columns}x{info.frames}x{info.samples_per_pixel};".encode()


# ---------------------------------------------------------------- the measure
def invalid_pixels(stored: np.ndarray, scalar: np.ndarray, info: PixelInfo) -> np.ndarray | None:
    """True where a pixel is padding (stored value) or, for float data, not finite."""
    if info.is_float:
        bad = ~np.isfinite(scalar)
        return bad if bad.any() else None
    return padding_mask(stored, info)


def measure_pixels(ds, thumbnail_px: int = 128, hist_bins: int = 64,
                   hist_range: tuple[float, float] | None = None,
                   source: bytes | BinaryIO | None = None,
                   max_frame_bytes: int = MAX_FRAME_BYTES,
                   max_decoded_bytes: int = MAX_DECODED_BYTES) -> dict[str, Any]:
    """Decode every frame once and measure the instance's pixels.

    Attributes read: see udfs.pixels.describe (Image Pixel module, padding,
    Modality LUT, palette, Modality, WindowCenter/WindowWidth).
    `source`: the bytes / file object `ds` was read from, so a deferred pixel
    element is decoded frame by frame straight from it.
    Raises PixelDecodeError, also (before decoding) when the declared decoded
    size is over `max_frame_bytes` for one frame or `max_decoded_bytes` for all.

    Returns a dict with exactly RESULT_KEYS, in that order. "Units" means the
    `units` value: HU (CT with a Modality LUT), modality (other grey images,
    Modality LUT applied), luminance (BT.601, colour and palette images).

    * rows, columns, frames, samples_per_pixel (int), photometric_interpretation
      (str, as in the header), is_color (bool), units (str)
    * valid_pixels (int, non-padded pixels counted over all frames),
      padded_fraction (float), stats_exact (bool; False only when float data
      had > 4M distinct values and were rounded to 16 significant bits)
    * min, max, mean, std, p0_5 ... p99_5, dynamic_range (p99.5 - p0.5),
      value_range (max - min): float, units; None if every pixel is padding
    * distinct_values (int), frac_at_min, frac_at_max (float, share of pixels)
    * entropy_bits (float, bits, 256 bins over p0.5..p99.5)
    * histogram (list[int], `hist_bins` counts), hist_min, hist_max (float,
      units: [-1024, 3072] for HU, else min..max, or `hist_range`)
    * middle frame (frames // 2), window p0.5..p99.5 of the whole object:
      foreground_fraction (float, Otsu), snr (float; None if the background
      MAD is 0), noise_sigma (float, units), laplacian_var (float, image
      scaled to [0, 1]), efc (float, 0..1), blurry_score (float, 0..1,
      CleanVision), burned_in_text_score (float, 0..1, rows of text-like
      glyphs in an image corner, udfs.burned_in), thumbnail_png (bytes, PNG,
      longest side `thumbnail_px`, 8-bit grey or RGB), preview (bytes, 64 x 64 uint8 row-major)
    * pixel_hash (str, sha256 hex of rows/columns/frames/samples + every
      frame's decoded stored values, little endian)
    * frame_stats (list of {index: int, min, max, mean, std, p50: float} for
      multi-frame objects, at most MAX_FRAME_STATS entries; None for one frame)
    """
    info = describe(ds)
    multi = info.frames > 1
    mid = info.frames // 2
    stride = math.ceil(info.frames / MAX_FRAME_STATS)
    hasher = hashlib.sha256(hash_header(info))
    hist: _Histogram | None = None
    frame_stats: list[dict[str, Any]] = []
    mid_stored = mid_scalar = mid_counts = None
    for i, stored in enumerate(iter_stored_frames(ds, source, info, None, max_frame_bytes,
                                                  max_decoded_bytes)):
        hasher.update(canonical_bytes(stored))
        scalar = scalar_frame(stored, info)
        if hist is None:
            hist = _Histogram(scalar, info)
        counts = hist.add(scalar, None if hist.coded else invalid_pixels(stored, scalar, info))
        if multi and i % stride == 0:
            frame_stats.append(frame_summary(i, hist.distribution(counts)))
        if i == mid:
            mid_stored, mid_scalar, mid_counts = stored, scalar, counts
    dist = hist.distribution()
    out: dict[str, Any] = {
        "rows": info.rows, "columns": info.columns, "frames": info.frames,
        "samples_per_pixel": info.samples_per_pixel,
        "photometric_interpretation": info.photometric, "is_color": info.is_color,
        "units": info.units, "valid_pixels": dist.total,
        "padded_fraction": 1.0 - dist.total / (info.rows * info.columns * info.frames),
        "stats_exact": hist.exact,
    }
    out.update(value_stats(dist, info.units, hist_bins, hist_range))
    mid_dist = hist.distribution(mid_counts) if multi else dist
    out.update(_image_measures(info, dist, mid_dist, mid_stored, mid_scalar,
                               invalid_pixels(mid_stored, mid_scalar, info), thumbnail_px))
    out["pixel_hash"] = hasher.hexdigest()
    out["frame_stats"] = frame_stats if multi else None
    return out


def _image_measures(info: PixelInfo, dist: Distribution, mid_dist: Distribution,
                    stored: np.ndarray, scalar: np.ndarray, invalid: np.ndarray | None,
                    thumbnail_px: int) -> dict[str, Any]:
    """Sharpness, noise, Otsu/SNR, EFC, burned-in text, thumbnail and preview of the middle frame.

    `scalar` is the frame's stored (or luminance) values; its padded pixels are
    overwritten with the window's low end (the frame has been counted already)."""
    lo, hi = stats_window(dist)
    vmap = info.value_map
    if vmap.kind == "table":        # LUT / palette: map the full frame
        img, gain = vmap(scalar, frame_float_dtype(info)), 1.0
        fill = lo
    else:                           # linear: stay in stored units, map the small images only
        img, gain = scalar, vmap.slope
        fill = (lo - vmap.intercept) / vmap.slope
        if img.dtype.kind in "ui":
            fill = int(np.clip(round(fill), np.iinfo(img.dtype).min, np.iinfo(img.dtype).max))
    if invalid is not None:
        img[invalid] = fill          # overwrites padded pixels of the (already counted) frame
    out = otsu_split(mid_dist, lo, hi, offset=1024.0 if info.units == "HU" else 0.0)
    sigma = noise_sigma(img, invalid)
    out["noise_sigma"] = None if sigma is None else sigma * abs(gain)
    small = downscale(img, SHARPNESS_PX)
    if vmap.kind == "rescale":
        small *= vmap.slope
        small += vmap.intercept
    small01 = window01(small, lo, hi)
    out["laplacian_var"] = laplacian_variance(small01)
    out["efc"] = efc(small01)
    mini = downscale(small, thumbnail_px)
    out["blurry_score"] = blurry_score(Image.fromarray(to_u8(window01(mini, lo, hi)), "L"))
    out["burned_in_text_score"] = burned_in_text(small01)[0]
    size = fit_size(info.columns, info.rows, thumbnail_px)
    if info.is_color:
        thumb = colour_display(stored, info, SHARPNESS_PX).resize(size, Image.BILINEAR)
        gray = thumb.convert("L")
    else:
        disp = window01(mini, *display_window(info, lo, hi))
        if info.invert_display:
            np.subtract(1.0, disp, out=disp)
        thumb = gray = Image.fromarray(to_u8(disp), "L")
        if thumb.size != size:
            thumb = gray = thumb.resize(size, Image.BILINEAR)
    out["thumbnail_png"] = png_bytes(np.asarray(thumb))
    out["preview"] = preview_bytes(gray)
    return out


RESULT_KEYS = (
    "rows", "columns", "frames", "samples_per_pixel", "photometric_interpretation", "is_color",
    "units", "valid_pixels", "padded_fraction", "stats_exact",
    "min", "max", "mean", "std", *PERCENTILE_KEYS, "dynamic_range", "value_range",
    "distinct_values", "frac_at_min", "frac_at_max", "entropy_bits",
    "histogram", "hist_min", "hist_max",
    "foreground_fraction", "snr", "noise_sigma", "laplacian_var", "efc", "blurry_score",
    "burned_in_text_score", "thumbnail_png", "preview", "pixel_hash", "frame_stats",
)


def _looks_like_cut_pixel_data(data: bytes) -> bool:
    """A PixelData tag followed by an OB/OW VR or an undefined length: the element
    was there but pydicom dropped it (its value ended before the delimiter)."""
    for tag in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"):
        pos = data.find(tag)
        while pos != -1:
            follow = data[pos + 4:pos + 8]
            if follow[:2] in (b"OB", b"OW") or follow == b"\xff\xff\xff\xff":
                return True
            pos = data.find(tag, pos + 1)
    return False


def measure_file(data: bytes | BinaryIO, force: bool = False, **kwargs: Any) -> dict[str, Any]:
    """dcmread(force=`force`, default False) then measure_pixels; never raises.

    `data`: the whole file as bytes, or a seekable binary file object at its
    start. Elements over 1 MiB (the pixel data of most images) are deferred
    and decoded frame by frame from `data`, so memory stays near one frame
    beyond `data` itself (a deflated dataset is inflated whole, at most
    `max_decoded_bytes`, see udfs.pixels.read_for_decoding). On failure returns only
    {"pixel_error": NO_PIXEL_DATA | UNREADABLE_PIXELS, "pixel_error_message": str};
    any exception other than PixelDecodeError (not DICOM, bad header) is
    UNREADABLE_PIXELS, and NO_PIXEL_DATA becomes UNREADABLE_PIXELS when the bytes
    hold a PixelData tag that pydicom dropped because its value was cut short."""
    is_buffer = isinstance(data, (bytes, bytearray, memoryview))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fp = io.BytesIO(data) if is_buffer else data
            ds = read_for_decoding(fp, force, DEFER_BYTES, kwargs.get("max_frame_bytes", MAX_FRAME_BYTES),
                                   kwargs.get("max_decoded_bytes", MAX_DECODED_BYTES))
            return measure_pixels(ds, source=data if is_buffer else fp, **kwargs)
    except PixelDecodeError as exc:
        if exc.code == NO_PIXEL_DATA and is_buffer and _looks_like_cut_pixel_data(bytes(data)):
            return {"pixel_error": UNREADABLE_PIXELS,
                    "pixel_error_message": "pixel data element present but its value is cut short"}
        return {"pixel_error": exc.code, "pixel_error_message": exc.message}
    except Exception as exc:  # the job must go on
        return {"pixel_error": UNREADABLE_PIXELS, "pixel_error_message": f"{type(exc).__name__}: {exc}"}
