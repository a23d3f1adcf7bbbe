"""CT images in Hounsfield units: head slices from the MNI-based head phantom,
chest / abdomen slices from `torso`, reconstruction kernels (resolution and
noise texture), the circular field of view, and topograms.

Head tissue HU: grey matter 38, white matter 28, CSF 6, fat -95, muscle 50,
cortical bone 1400, diploe 420, vitreous 12; air -1000.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from . import head
from .mr import Plane, resize_bilinear
from .torso import Torso

HEAD_HU = {"gm": 38, "wm": 28, "csf": 6, "fat": -95, "muscle": 50, "bone": 1400,
           "marrow": 420, "fluid": 12, "lesion": 18}

# kernel -> (image blur sigma in pixels, noise sigma HU, noise correlation sigma px, sharpening)
KERNELS = {"soft": (0.7, 5.0, 0.9, 0.0), "standard": (0.5, 9.0, 0.7, 0.0),
           "lung": (0.2, 30.0, 0.35, 0.6), "bone": (0.2, 45.0, 0.35, 0.8)}


@functools.lru_cache(maxsize=1)
def head_volume() -> np.ndarray:
    """(HU + 1000) of the head phantom, so that outside the grid reads as air."""
    return head.weighted_volume({t: v + 1000.0 for t, v in HEAD_HU.items() if t != "lesion"})


def render_head(pose: head.Pose, plane: Plane, matrix: int, spacing: float, thickness: float,
                r: np.random.Generator, kernel: str, dose: float = 1.0,
                metal: tuple | None = None) -> np.ndarray:
    """Head slice in HU (float), sampled at up to 256 pixels and interpolated."""
    n = min(matrix, 256)
    coarse = spacing * matrix / n
    origin = (np.asarray(plane.origin, float) + plane.row * spacing * (matrix / n - 1) / 2
              + plane.col * spacing * (matrix / n - 1) / 2)
    hu = head.sample_plane(head_volume(), pose, origin, plane.row, plane.col, (n, n),
                           (coarse, coarse), thickness, sub_slices=2).astype(np.float64) - 1000.0
    if n != matrix:
        hu = resize_bilinear(hu, matrix, matrix)
    if metal is not None:
        hu = add_metal(hu, *metal, r)
    return reconstruct(hu, kernel, r, dose)


def render_torso(torso: Torso, z: float, plane: Plane, matrix: int, spacing: float,
                 r: np.random.Generator, kernel: str, dose: float = 1.0,
                 slab: float = 0.0) -> np.ndarray:
    """Axial torso slice at table position z in HU; `slab` > 0 gives a maximum
    intensity projection over that many mm."""
    o = plane.origin
    if slab:
        zs = z + np.linspace(-slab / 2, slab / 2, 5)
        hu = np.max([torso.axial(zz, o[0], o[1], spacing, spacing, matrix, matrix) for zz in zs],
                    axis=0).astype(np.float64)
    else:
        hu = torso.axial(z, o[0], o[1], spacing, spacing, matrix, matrix).astype(np.float64)
    return reconstruct(hu, kernel, r, dose)


def reconstruct(hu: np.ndarray, kernel: str, r: np.random.Generator, dose: float = 1.0) -> np.ndarray:
    """Apply a kernel's resolution and noise texture (noise scales as 1/sqrt(dose));
    smooth kernels have noise correlated over about two pixels."""
    blur, sigma, corr, sharpen = KERNELS[kernel]
    img = hu.astype(np.float32)
    if blur >= 0.45:
        img = ndimage.gaussian_filter(img, blur)
    if sharpen:
        img = img + np.float32(sharpen) * (img - ndimage.gaussian_filter(img, 1.2))
    rows, cols = hu.shape
    if corr >= 0.6 and rows >= 64:
        noise = resize_bilinear(r.standard_normal((rows // 2, cols // 2), dtype=np.float32), rows, cols)
    else:
        noise = r.standard_normal(hu.shape, dtype=np.float32)
    noise *= np.float32(sigma / (float(noise.std()) + 1e-9) / np.sqrt(dose))
    body = hu > -900
    return img + noise * np.where(body, np.float32(1.0), np.float32(0.45))


def add_metal(hu: np.ndarray, row: int, col: int, radius: int, r: np.random.Generator) -> np.ndarray:
    """A metal implant (clip / filling) with the streaks it causes; values beyond
    the 12-bit HU range as on scanners with an extended CT scale."""
    out = hu.copy()
    yy, xx = np.mgrid[:hu.shape[0], :hu.shape[1]]
    d = np.hypot(yy - row, xx - col)
    out[d <= radius] = float(r.uniform(8000, 14000))
    ang = np.arctan2(yy - row, xx - col)
    streak = np.cos(ang * 7 + r.uniform(0, np.pi)) * 350 * np.exp(-d / 90.0)
    out += np.where(d > radius, streak, 0)
    return out


def fov_circle(matrix: int) -> np.ndarray:
    """True inside the reconstructed circular field of view."""
    yy, xx = np.mgrid[:matrix, :matrix]
    c = (matrix - 1) / 2
    return np.hypot(yy - c, xx - c) <= matrix / 2


def head_topogram(pose: head.Pose, rows: int, cols: int, field_mm: float = 320.0) -> np.ndarray:
    """Lateral projection of the head (line integrals, water = 1 per cm) over a
    square field of `field_mm`: rows from the vertex down, columns anterior to
    posterior."""
    vol = head_volume()                           # (z, y, x), HU + 1000, 1 mm voxels
    mu = vol.sum(axis=2) / 10000.0                # (z, y) line integrals along x, in cm water
    mu = mu[::-1, ::-1]                           # vertex first; anterior first
    n = int(field_mm)
    canvas = np.zeros((n, n))
    top = int(round((n - mu.shape[0]) / 2 - pose.shift[2] - 20))
    left = int(round((n - mu.shape[1]) / 2 - pose.shift[1]))
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + mu.shape[0], n), min(left + mu.shape[1], n)
    canvas[t0:t1, l0:l1] = mu[t0 - top:t1 - top, l0 - left:l1 - left]
    return resize_bilinear(canvas, rows, cols)
