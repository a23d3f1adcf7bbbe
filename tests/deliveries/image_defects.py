"""Pixel-level defects and re-exports, on float or integer 2-D images.

All functions return new arrays and never change their input. Values stay in the
caller's stored-value units; the caller clips to the stored range.
"""
from __future__ import annotations

import functools
import io

import numpy as np
from scipy import ndimage


def requantise(img: np.ndarray, levels: int) -> np.ndarray:
    """Keep `levels` grey levels between the 1st and 99.5th percentile (a bad
    bit-depth conversion)."""
    lo, hi = np.percentile(img, [1, 99.5])
    step = (hi - lo) / max(levels - 1, 1)
    q = np.clip(np.round((img - lo) / step), 0, levels - 1)
    return lo + q * step


def squeeze(img: np.ndarray, width: float, centre: float) -> np.ndarray:
    """Map the image's range linearly into `width` stored values around `centre`
    (a wrong rescale: an almost flat image)."""
    lo, hi = float(img.min()), float(img.max())
    return centre - width / 2 + (img - lo) / max(hi - lo, 1e-6) * width


def saturate(img: np.ndarray, gain: float, maxval: float) -> np.ndarray:
    """Receiver or window overflow: `gain` times the image, clipped at `maxval`."""
    return np.minimum(img * gain, maxval)


def gaussian_noise(img: np.ndarray, sigma: float, r: np.random.Generator) -> np.ndarray:
    return img + r.normal(0, sigma, img.shape)


def rician(img: np.ndarray, sigma: float, r: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of `sigma` per channel."""
    real = img + r.normal(0, sigma, img.shape)
    imag = r.normal(0, sigma, img.shape)
    return np.sqrt(real * real + imag * imag)


def rf_interference(img: np.ndarray, amplitude: float, r: np.random.Generator) -> np.ndarray:
    """A zipper / herringbone artefact plus broadband noise (RF leak into the room)."""
    rows, cols = img.shape
    out = rician(img, amplitude, r)
    yy, xx = np.mgrid[:rows, :cols]
    k = r.uniform(0.15, 0.45)
    out += amplitude * 1.5 * (np.sin(k * xx + 0.3 * yy) > 0.6)
    zipper = int(r.integers(cols // 4, 3 * cols // 4))
    out[:, zipper:zipper + 2] += amplitude * 3 * r.random((rows, 1))
    return np.abs(out)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(img.astype(np.float64), sigma)


def motion_blur(img: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Average along a line of `length` pixels (patient motion during a long echo train)."""
    kernel = np.zeros((length, length))
    c = (length - 1) / 2
    t = np.radians(angle_deg)
    for s in np.linspace(-c, c, 4 * length):
        kernel[int(round(c + s * np.sin(t))), int(round(c + s * np.cos(t)))] = 1
    kernel /= kernel.sum()
    return ndimage.convolve(img.astype(np.float64), kernel, mode="nearest")


@functools.lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def text_mask(shape: tuple[int, int], lines: list[str], corner: str, size: int,
              margin: int | None = None) -> np.ndarray:
    """Float mask (0..1) of `lines` rendered in `corner` (tl, tr, bl, br)."""
    from PIL import Image, ImageDraw

    rows, cols = shape
    image = Image.new("L", (cols, rows), 0)
    draw = ImageDraw.Draw(image)
    font = _font(size)
    margin = margin if margin is not None else max(4, size // 2)
    heights = []
    widths = []
    for line in lines:
        box = draw.textbbox((0, 0), line, font=font)
        widths.append(box[2] - box[0])
        heights.append(max(box[3] - box[1], size))
    total = sum(h + 2 for h in heights)
    y = margin if corner[0] == "t" else rows - margin - total
    for line, w, h in zip(lines, widths, heights):
        x = margin if corner[1] == "l" else cols - margin - w
        draw.text((x, y), line, fill=255, font=font)
        y += h + 2
    return np.asarray(image, np.float64) / 255.0


def burn_text(img: np.ndarray, lines: list[str], corner: str, value: float,
              size: int) -> np.ndarray:
    """Write `lines` into the pixels at `value` (as a scanner or PACS overlay does)."""
    mask = text_mask(img.shape, lines, corner, size)
    return img * (1 - mask) + value * mask


def resize(img: np.ndarray, factor: float) -> np.ndarray:
    return ndimage.zoom(img.astype(np.float64), factor, order=1)


def crop(img: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    return img[top:img.shape[0] - bottom, left:img.shape[1] - right]


def to_uint8(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Window [lo, hi] to 0..255 (an export 'as displayed')."""
    return np.clip(np.round((img - lo) / max(hi - lo, 1e-6) * 255), 0, 255).astype(np.uint8)


def jpeg_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))
