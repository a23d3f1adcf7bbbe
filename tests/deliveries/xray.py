"""Chest radiographs of many patients from few sources.

Frontal views start from pydicom-data's RG1 chest CR; lateral views from
lateral projections of `torso` phantoms. Each patient's image is the source
warped its own way (scale, aspect, rotation, a smooth mesh deformation), with
its own exposure and processing curve, quantum noise, collimator shutters and a
lead side marker. Brightness is 'for presentation' (bone and unexposed bright).
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from . import image_defects as imd
from .foreign import decoded, load
from .torso import Torso


@functools.lru_cache(maxsize=1)
def frontal_base() -> np.ndarray:
    """RG1 as brightness 0..1 (air dark), about 0.4 mm per pixel."""
    arr = decoded(load("pydicom-data", "RG1_UNCR.dcm"))[0].astype(np.float32)
    small = np.asarray(Image.fromarray(arr, mode="F").resize((arr.shape[1] // 2, arr.shape[0] // 2),
                                                              Image.BILINEAR))
    lo, hi = np.percentile(small, [0.5, 99.5])
    return np.clip((hi - small) / (hi - lo), 0, 1).astype(np.float32)   # MONOCHROME1 -> brightness


@functools.lru_cache(maxsize=4)
def lateral_base(k: int) -> np.ndarray:
    """Lateral projection of a torso phantom as brightness 0..1 (0.8 mm per pixel)."""
    r = np.random.default_rng(7100 + k)
    torso = Torso.random(r, bool(k % 2), contrast=False)
    proj = torso.projection(torso.carina + 120, torso.carina - 300, 420.0, 540, 540, axis="lat",
                            step=3.0, samples=200, table=False)
    p = proj / np.percentile(proj, 99.5)
    return np.clip(p, 0, 1.2).astype(np.float32) ** 0.8


def _mesh(cols: int, rows: int, src_w: int, src_h: int, r: np.random.Generator, view_scale: float,
          n: int = 4) -> list:
    """PIL MESH data: output quads mapped to jittered source quads (a smooth warp)."""
    sx = view_scale * src_w / cols * r.uniform(0.93, 1.07)
    sy = view_scale * src_h / rows * r.uniform(0.93, 1.07)
    ang = np.radians(r.uniform(-4, 4))
    cx_src = src_w / 2 + r.uniform(-0.04, 0.04) * src_w
    cy_src = src_h / 2 + r.uniform(-0.03, 0.05) * src_h
    jitter = r.normal(0, 0.018, (n + 1, n + 1, 2))

    def src(u, v, i, j):
        x = (u - cols / 2) * sx
        y = (v - rows / 2) * sy
        xr = x * np.cos(ang) - y * np.sin(ang) + cx_src + jitter[i, j, 0] * src_w
        yr = x * np.sin(ang) + y * np.cos(ang) + cy_src + jitter[i, j, 1] * src_h
        return float(xr), float(yr)

    mesh = []
    for i in range(n):
        for j in range(n):
            x0, x1 = cols * j / n, cols * (j + 1) / n
            y0, y1 = rows * i / n, rows * (i + 1) / n
            box = (int(x0), int(y0), int(x1), int(y1))
            quad = (*src(x0, y0, i, j), *src(x0, y1, i + 1, j), *src(x1, y1, i + 1, j + 1),
                    *src(x1, y0, i, j + 1))
            mesh.append((box, quad))
    return mesh


def radiograph(view: str, rows: int, cols: int, r: np.random.Generator, *, marker: str | None,
               exposure: float = 1.0, field_scale: float | None = None) -> tuple[np.ndarray, dict]:
    """Brightness image 0..1 of one patient's chest (`view` PA, AP or LAT) and a
    description of what was drawn (shutter margins, marker)."""
    base = frontal_base() if view in ("PA", "AP") else lateral_base(int(r.integers(0, 3)))
    h, w = base.shape
    scale = field_scale or r.uniform(0.78, 0.98)
    if view == "AP":
        scale *= r.uniform(0.85, 0.95)   # bedside: closer source, larger magnification
    img = Image.fromarray(base, mode="F").transform((cols, rows), Image.MESH,
                                                    _mesh(cols, rows, w, h, r, scale), Image.BILINEAR)
    img = np.asarray(img, dtype=np.float32)
    # patient-specific density and processing curve
    yy = np.arange(rows, dtype=np.float32)[:, None]
    xx = np.arange(cols, dtype=np.float32)[None, :]
    field = (np.float32(r.normal(0, 0.04)) * (xx / cols - 0.5)
             + np.float32(r.normal(0, 0.04)) * (yy / rows - 0.5))
    img = np.clip(img + field, 0, None)
    gamma = np.float32(r.uniform(0.75, 1.3) / exposure)
    img = img ** gamma
    lo, hi = np.percentile(img[::4, ::4], [1, 99.5])
    img = (np.clip((img - lo) / (hi - lo + 1e-9), 0, 1) * np.float32(r.uniform(0.82, 0.95))
           + np.float32(r.uniform(0.02, 0.08)))
    # quantum noise, stronger in dark (high exposure) areas after the log transform
    noise = r.standard_normal((rows, cols), dtype=np.float32)
    img = img + noise * ((0.006 + 0.012 * (1 - img)) / np.float32(np.sqrt(exposure)))
    info = {}
    # collimator shutters: unexposed, bright, straight edges with a slight tilt
    margins = [int(v) for v in (r.uniform(0.0, 0.07, 4) * np.array([rows, rows, cols, cols]))]
    tilt = np.float32(r.uniform(-0.015, 0.015))
    top, bottom, left, right = margins
    shutter = ((yy < top + tilt * xx) | (yy > rows - bottom + tilt * xx)
               | (xx < left - tilt * yy) | (xx > cols - right - tilt * yy))
    img = np.where(shutter, np.float32(0.93) + noise * np.float32(0.004), img)
    info["shutters"] = margins
    if marker:
        size = max(rows // 22, 14)
        corner = "tr" if r.random() < 0.5 else "tl"
        mask = imd.text_mask((rows, cols), [marker], corner, size,
                             margin=int(max(top, left if corner == "tl" else right) + size))
        img = img * (1 - mask) + 0.98 * mask
        info["marker"] = marker
    return np.clip(img, 0, 1), info


def abdomen_radiograph(rows: int, cols: int, r: np.random.Generator) -> np.ndarray:
    """A supine abdomen (KUB) radiograph from a torso phantom projection, 0..1."""
    torso = Torso.random(r, bool(r.random() < 0.5), contrast=False)
    proj = torso.projection(torso.carina - 120, torso.carina - 430, 380.0, rows, cols, axis="ap",
                            step=4.0, samples=128, table=False)
    p = proj / np.percentile(proj, 99.5)
    return np.clip(p ** 0.9 + r.normal(0, 0.01, p.shape), 0, 1)


def to_stored(img: np.ndarray, bits: int, monochrome1: bool) -> np.ndarray:
    maxval = (1 << bits) - 1
    v = np.round(np.clip(img, 0, 1) * maxval)
    if monochrome1:
        v = maxval - v
    return v.astype(np.uint16)
