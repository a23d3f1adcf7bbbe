"""A head phantom built around the MNI152 2009a brain, and its sampling on any plane.

The MNI template is brain only. Around it this module adds, by distance from the
brain surface: subarachnoid CSF, an inner table, diploe and outer table whose
thickness varies smoothly, and a scalp of fat and skin with temporalis muscle at
the sides; below and in front: eyes, orbital fat, maxillary sinuses, nasal cavity
and a neck with spinal cord, vertebrae and airway.

Tissue fractions live on a 1 mm grid in MNI RAS millimetres (uint8, 0-255).
A `Pose` places one subject in the scanner: rotation, translation and scale.
`sample_plane` returns the value of a tissue-weighted volume on a DICOM plane
given in patient LPS millimetres (averaged over the slice thickness).
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from dicom_triage.jobs.demo import sources

TISSUES = ("gm", "wm", "csf", "fat", "muscle", "bone", "marrow", "fluid", "lesion")
PAD = {"x": (16, 16), "y": (16, 26), "z": (44, 12)}  # voxels added below/above each axis


@dataclass
class HeadModel:
    maps: dict[str, np.ndarray]  # tissue -> uint8 fraction map stored (z, y, x) for speed
    origin: np.ndarray           # RAS mm of voxel (0, 0, 0)
    shape: tuple[int, int, int]  # (x, y, z)


def _ellipsoid(grid, centre, radii):
    x, y, z = grid
    return (((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
            + ((z - centre[2]) / radii[2]) ** 2)


def _soft(inside_measure, edge=0.08):
    """Partial-volume fraction from an ellipsoid measure (1 inside, 0 outside)."""
    return np.clip((1.0 + edge - inside_measure) / (2 * edge), 0.0, 1.0)


def _band(d, lo, hi, ramp=0.6):
    """Fraction of a voxel at distance d (mm) that lies in [lo, hi)."""
    return np.clip(np.minimum(d - lo, hi - d) / ramp + 0.5, 0.0, 1.0)


def _block(origin, shape, lo, hi):
    """Index slices and RAS axis vectors of the box [lo, hi] mm inside the grid."""
    sl, axes = [], []
    for a in range(3):
        i0 = max(int(np.floor(lo[a] - origin[a])), 0)
        i1 = min(int(np.ceil(hi[a] - origin[a])) + 1, shape[a])
        sl.append(slice(i0, i1))
        axes.append(origin[a] + np.arange(i0, i1, dtype=np.float32))
    grid = (axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])
    return tuple(sl), grid


def _cache_file() -> Path:
    """Where a built model is kept between runs: keyed by this module's source and
    the template files, so any change rebuilds it."""
    h = hashlib.sha1(Path(__file__).read_bytes())
    for name in (sources.MNI_T1, sources.MNI_GM, sources.MNI_WM):
        h.update(str(sources.source_path("nilearn", name).stat().st_size).encode())
    return Path(tempfile.gettempdir()) / f"eval-deliveries-head-{h.hexdigest()[:16]}.npz"


@functools.lru_cache(maxsize=1)
def head_model() -> HeadModel:
    path = _cache_file()
    if path.is_file():
        try:
            with np.load(path) as z:
                maps = {name: z[name] for name in TISSUES}
                return HeadModel(maps, z["origin"], tuple(int(v) for v in z["shape"]))
        except (OSError, KeyError, ValueError):
            pass
    model = _build_head_model()
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    try:
        np.savez_compressed(tmp, origin=model.origin, shape=np.array(model.shape), **model.maps)
        os.replace(tmp, path)
    except OSError:
        pass
    return model


def _build_head_model() -> HeadModel:
    mni = sources.mni_maps()
    pads = [PAD["x"], PAD["y"], PAD["z"]]
    t1 = np.pad(mni["t1"], pads)
    shape = t1.shape
    origin = np.array([-98.0 - PAD["x"][0], -134.0 - PAD["y"][0], -72.0 - PAD["z"][0]])
    brain_f = np.clip((t1 - 3.0) / 12.0, 0.0, 1.0)
    brain = t1 > 5
    del t1
    maps = {name: np.zeros(shape, np.float32) for name in TISSUES}
    maps["gm"] = np.minimum(np.pad(mni["gm"], pads) / np.float32(255.0), brain_f)
    maps["wm"] = np.minimum(np.pad(mni["wm"], pads) / np.float32(255.0), brain_f)
    maps["csf"] = np.clip(brain_f - maps["gm"] - maps["wm"], 0.0, 1.0)
    air = np.zeros(shape, np.float32)

    # Shells by distance (mm) from the brain, computed only near the surface.
    coarse = ndimage.distance_transform_edt(~brain[::2, ::2, ::2]).astype(np.float32) * 2.0
    near_c = (coarse > 0) & (coarse < 22)
    near = np.zeros(shape, bool)
    rep = near_c.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    near[:] = rep[:shape[0], :shape[1], :shape[2]]
    near &= ~brain
    ii = np.nonzero(near)
    d = ndimage.map_coordinates(coarse, [i / 2.0 for i in ii], order=1, mode="nearest")
    d = d.astype(np.float32)
    x = (origin[0] + ii[0]).astype(np.float32)
    y = (origin[1] + ii[1]).astype(np.float32)
    z = (origin[2] + ii[2]).astype(np.float32)
    outside = 1.0 - brain_f[ii]
    # Skull thickness varies smoothly (fixed for the template), thicker at the occiput.
    noise = np.random.default_rng(152).normal(0, 1, (6, 7, 6))
    extra = ndimage.map_coordinates(noise, [ii[a] * (noise.shape[a] - 1) / (shape[a] - 1)
                                            for a in range(3)], order=3, mode="nearest")
    diploe = 2.5 + 0.8 * extra.astype(np.float32) + np.clip(-y / 60.0, 0, 1.5)
    cranium = (z > -62).astype(np.float32)
    maps["csf"][ii] += _band(d, 0.0, 2.5) * outside * cranium
    inner_end = 4.0
    marrow_end = inner_end + diploe
    outer_end = marrow_end + 1.6
    maps["bone"][ii] += (_band(d, 2.5, inner_end) + _band(d, marrow_end, outer_end)) * cranium
    maps["marrow"][ii] += _band(d, inner_end, marrow_end) * cranium
    fat_end = outer_end + 3.5
    skin_end = fat_end + 1.8
    lateral = (np.clip((np.abs(x) - 45.0) / 10.0, 0, 1) * (np.abs(y + 5) < 40)
               * (z > -30) * (z < 35))
    maps["muscle"][ii] += (_band(d, outer_end, outer_end + 5.0) * lateral
                           + _band(d, fat_end, skin_end)) * cranium
    maps["fat"][ii] += _band(d, outer_end, fat_end) * (1 - lateral) * cranium
    del ii, d, x, y, z, outside, extra, diploe, cranium, lateral, near, rep

    # Face, jaw and neck: an envelope of muscle with a fat rim, holding the eyes,
    # orbital fat, air spaces rimmed by bone, cord, vertebral column and airway.
    sl, grid = _block(origin, shape, (-80, -110, -200), (80, 100, -5))
    gx, gy, gz = grid
    outer = np.maximum(_soft(_ellipsoid(grid, (0, 38, -48), (60, 46, 44))),
                       _soft(_ellipsoid(grid, (0, -18, -82), (60, 66, 46))))
    inner = np.maximum(_soft(_ellipsoid(grid, (0, 38, -48), (54, 40, 38))),
                       _soft(_ellipsoid(grid, (0, -18, -82), (54, 60, 40))))
    column = lambda c, r: _soft(((gx - c[0]) / r[0]) ** 2 + ((gy - c[1]) / r[1]) ** 2 + 0 * gz)
    low = np.clip((-95.0 - gz) / 8.0, 0, 1)
    outer = np.maximum(outer, column((0, -30), (54, 56)) * low)
    inner = np.maximum(inner, column((0, -30), (48, 50)) * low)
    existing = sum(maps[name][sl] for name in TISSUES)
    free = np.clip(1.0 - existing, 0, 1)
    fluid = np.zeros(outer.shape, np.float32)
    for side in (-1, 1):
        fluid += _soft(_ellipsoid(grid, (32 * side, 52, -38), (11.5, 11.5, 11.5)), 0.1)
    fluid *= free
    orbit_fat = np.zeros(outer.shape, np.float32)
    for side in (-1, 1):
        orbit_fat += _soft(_ellipsoid(grid, (30 * side, 40, -37), (16, 22, 14)))
    orbit_fat = np.clip(orbit_fat * 0.9 - fluid, 0, 1) * free
    holes = np.zeros(outer.shape, np.float32)
    bone = np.zeros(outer.shape, np.float32)
    for centre, radii in (((-25, 44, -58), (13, 18, 15)), ((25, 44, -58), (13, 18, 15)),
                          ((0, 58, -48), (7, 24, 18)), ((0, 44, -30), (9, 14, 9))):
        hole = _soft(_ellipsoid(grid, centre, radii), 0.1)
        holes = np.maximum(holes, hole)
        bone += np.clip(_soft(_ellipsoid(grid, centre, [r + 2.0 for r in radii]), 0.1) - hole,
                        0, 1) * 0.8
    neck = np.clip((-60.0 - gz) / 8.0, 0, 1)
    cord = column((0, -45), (5.5, 5.0)) * neck
    canal = column((0, -45), (9, 8)) * neck
    ring = column((0, -40), (16, 17)) * neck
    body = column((0, -22), (11, 9)) * neck
    airway = column((0, -4), (8, 6)) * neck
    holes = np.maximum(holes, airway) * free
    bone = np.clip(bone + np.clip(ring - canal, 0, 1) * 0.5, 0, 1) * free
    body *= free
    cord *= free
    csf = np.clip(canal - cord, 0, 1) * free
    used = fluid + orbit_fat + holes + bone + body + cord + csf
    soft = np.clip(np.minimum(outer, free) - used, 0, 1)
    soft_inner = np.clip(np.minimum(inner, free) - used, 0, 1)
    maps["fluid"][sl] += fluid * outer
    maps["fat"][sl] += orbit_fat * outer + np.clip(soft - soft_inner, 0, 1)
    maps["muscle"][sl] += soft_inner
    maps["bone"][sl] += bone * outer
    maps["marrow"][sl] += body * outer
    maps["wm"][sl] += cord * outer
    maps["csf"][sl] += csf * outer
    air[sl] = np.maximum(air[sl], holes * outer)
    del outer, inner, existing, free, fluid, orbit_fat, holes, bone, neck, cord, canal, ring
    del body, airway, csf, used, soft, soft_inner, brain_f

    total = np.zeros(shape, np.float32)
    for arr in maps.values():
        total += arr
    scale = np.float32(255.0) / np.maximum(total, np.float32(1.0))
    scale *= (np.float32(1.0) - air)
    out = {}
    for name, arr in maps.items():
        arr *= scale
        arr += np.float32(0.5)
        np.clip(arr, 0, 255, out=arr)
        out[name] = np.ascontiguousarray(arr.astype(np.uint8).transpose(2, 1, 0))
        maps[name] = None
    # crop to the tissue's bounding box (plus a margin): half the voxels, same content
    occupied = np.zeros(out["gm"].shape, bool)
    for arr in out.values():
        occupied |= arr > 0
    lo = np.maximum(np.argwhere(occupied).min(0) - 2, 0)
    hi = np.minimum(np.argwhere(occupied).max(0) + 3, occupied.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    out = {name: np.ascontiguousarray(arr[box]) for name, arr in out.items()}
    origin = origin + lo[::-1].astype(float)
    shape = tuple(int(v) for v in (hi - lo)[::-1])
    return HeadModel(out, origin, shape)


@dataclass
class Pose:
    """Where a subject's head sits: MNI point m -> scanner RAS  R @ (scale * m) + shift."""
    rotation: np.ndarray  # 3x3
    shift: np.ndarray     # mm
    scale: np.ndarray     # per axis

    @staticmethod
    def random(r: np.random.Generator, tilt_deg=(8.0, 4.0, 5.0), shift_mm=8.0,
               scale=(0.9, 1.1)) -> "Pose":
        angles = np.radians(r.uniform(-1, 1, 3) * np.array(tilt_deg))
        base = r.uniform(*scale)
        return Pose(rotation_matrix(*angles), r.uniform(-shift_mm, shift_mm, 3),
                    base * r.uniform(0.97, 1.03, 3))

    def moved(self, r: np.random.Generator, deg=1.5, mm=1.5) -> "Pose":
        """The same head after a small movement (a repeat acquisition)."""
        angles = np.radians(r.uniform(-deg, deg, 3))
        return Pose(rotation_matrix(*angles) @ self.rotation,
                    self.shift + r.uniform(-mm, mm, 3), self.scale.copy())


def rotation_matrix(pitch: float, roll: float, yaw: float) -> np.ndarray:
    """Rotations about x (pitch), y (roll), z (yaw), in radians."""
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(roll), np.sin(roll)
    cz, sz = np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def weighted_volume(weights: dict[str, float], lesions=()) -> np.ndarray:
    """float32 volume (z, y, x): sum of tissue fractions times `weights`; `lesions`
    is a list of (centre RAS mm, radius mm, value) blobs replacing the tissue inside."""
    model = head_model()
    shape = model.shape[::-1]
    vol = np.empty(shape, np.float32)
    tmp = np.empty((16,) + shape[1:], np.float32)
    items = [(model.maps[name], np.float32(w / 255.0)) for name, w in weights.items() if w]
    for z0 in range(0, shape[0], 16):
        z1 = min(z0 + 16, shape[0])
        out = vol[z0:z1]
        t = tmp[:z1 - z0]
        np.multiply(items[0][0][z0:z1], items[0][1], out=out)
        for arr, w in items[1:]:
            np.multiply(arr[z0:z1], w, out=t)
            out += t
    add_lesions(vol, lesions)
    return vol


def add_lesions(vol: np.ndarray, lesions) -> None:
    """Paint (centre RAS mm, radius mm, value) blobs into a (z, y, x) volume in place."""
    model = head_model()
    for centre, radius, value in lesions:
        idx = np.round(np.asarray(centre) - model.origin).astype(int)[::-1]
        rad = int(np.ceil(radius)) + 2
        sl = tuple(slice(max(i - rad, 0), i + rad + 1) for i in idx)
        sub = vol[sl]
        grids = np.meshgrid(*[np.arange(s.start, s.start + n) for s, n in zip(sl, sub.shape)],
                            indexing="ij")
        dist = np.sqrt(sum((g - i) ** 2 for g, i in zip(grids, idx)))
        frac = np.clip(radius + 0.5 - dist, 0, 1).astype(np.float32)
        vol[sl] = sub * (1 - frac) + value * frac


def plane_points(origin_lps, row_dir, col_dir, shape, spacing) -> np.ndarray:
    """Patient LPS coordinates (3, rows, cols) of pixel centres. `row_dir` is the
    direction along a row (increasing column), `col_dir` along a column;
    `spacing` is (between rows, between columns), as in PixelSpacing."""
    rows, cols = shape
    i = np.arange(rows, dtype=np.float64)[:, None]
    j = np.arange(cols, dtype=np.float64)[None, :]
    o = np.asarray(origin_lps, float)
    r = np.asarray(row_dir, float)
    c = np.asarray(col_dir, float)
    return (o[:, None, None] + r[:, None, None] * (j * spacing[1])
            + c[:, None, None] * (i * spacing[0]))


def lps_to_index(points: np.ndarray, pose: Pose, warp=None) -> np.ndarray:
    """Voxel indices (x, y, z) of the head model for LPS points (3, ...)."""
    model = head_model()
    ras = points.copy()
    ras[0] *= -1
    ras[1] *= -1
    if warp is not None:
        ras = warp(ras)
    flat = ras.reshape(3, -1) - pose.shift[:, None]
    mni = (pose.rotation.T @ flat) / pose.scale[:, None]
    return (mni - model.origin[:, None]).reshape(points.shape)


def _affine(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """index = A @ lps + b for the head model's (x, y, z) voxel indices."""
    model = head_model()
    flip = np.diag([-1.0, -1.0, 1.0])
    a = np.diag(1.0 / pose.scale) @ pose.rotation.T @ flip
    b = -np.diag(1.0 / pose.scale) @ pose.rotation.T @ pose.shift - model.origin
    return a, b


def sample_plane(volume: np.ndarray, pose: Pose, origin_lps, row_dir, col_dir, shape,
                 spacing, thickness: float, sub_slices: int = 3, warp=None,
                 cval: float = 0.0) -> np.ndarray:
    """Mean of `volume` (stored z, y, x) over the slab of `thickness` mm around the plane."""
    normal = np.cross(row_dir, col_dir)
    offsets = (np.arange(sub_slices) + 0.5) / sub_slices - 0.5
    acc = np.zeros(shape, np.float32)
    rows, cols = shape
    a, b = _affine(pose)
    step_j = (a @ np.asarray(row_dir, float)) * spacing[1]
    step_i = (a @ np.asarray(col_dir, float)) * spacing[0]
    ii = np.arange(rows, dtype=np.float64)[:, None]
    jj = np.arange(cols, dtype=np.float64)[None, :]
    for off in offsets:
        o = np.asarray(origin_lps, float) + normal * off * thickness
        if warp is None:
            start = a @ o + b
            # reversed axis order (z, y, x) to match the volume's memory layout
            coords = np.stack([start[k] + step_i[k] * ii + step_j[k] * jj for k in (2, 1, 0)])
        else:
            pts = plane_points(o, row_dir, col_dir, shape, spacing)
            coords = lps_to_index(pts, pose, warp)[::-1]
        acc += ndimage.map_coordinates(volume, coords, order=1, mode="constant",
                                       cval=cval).astype(np.float32)
    return acc / sub_slices


def white_matter_points(r: np.random.Generator, n: int) -> list[np.ndarray]:
    """`n` random MNI RAS points deep in white matter (for lesions)."""
    model = head_model()
    wm = model.maps["wm"].transpose(2, 1, 0)
    cand = np.argwhere(wm[::3, ::3, ::3] > 240) * 3
    picks = cand[r.choice(len(cand), size=n, replace=False)] if n else np.zeros((0, 3), int)
    return [p + model.origin for p in picks]
