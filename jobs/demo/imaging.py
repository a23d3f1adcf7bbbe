"""New pixel arrays made from the real source images.

Coordinates follow DICOM: patient space is LPS millimetres (x to the patient's
left, y to posterior, z to head). A slice is placed by ImagePositionPatient
(centre of the first transmitted pixel) and ImageOrientationPatient (row
direction = direction of increasing column index, then column direction); the
slice normal is row x column. The MNI152 volume is RAS millimetres, so
x_LPS = -x_RAS and y_LPS = -y_RAS.

Every random choice takes a `numpy.random.Generator`, so the caller decides
the determinism.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from dicom_triage.jobs.demo import sources

# --------------------------------------------------------------------------
# Geometry of slice stacks

AXIAL = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))       # normal +z (to head)
SAGITTAL = (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]))   # normal -x (to right)
CORONAL = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0]))    # normal +y (posterior)
PLANES = {"AX": AXIAL, "SAG": SAGITTAL, "COR": CORONAL}


def rotation(rx_deg: float = 0.0, ry_deg: float = 0.0, rz_deg: float = 0.0) -> np.ndarray:
    """Rotation matrix, angles about the x, y, z axes in degrees, applied x then y then z."""
    x, y, z = (math.radians(a) for a in (rx_deg, ry_deg, rz_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Stack:
    """One planned stack of parallel slices (what ImagePlane attributes describe)."""

    row_dir: np.ndarray          # unit vector along a row (IOP values 1-3)
    col_dir: np.ndarray          # unit vector down a column (IOP values 4-6)
    center: np.ndarray           # LPS centre of the middle slice
    rows: int
    cols: int
    pixel_spacing: float         # mm, same along rows and columns
    offsets: tuple[float, ...]   # position of each slice along the normal, mm from centre

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @property
    def orientation(self) -> list[float]:
        return [round(float(v), 6) for v in (*self.row_dir, *self.col_dir)]

    def position(self, offset: float) -> np.ndarray:
        """ImagePositionPatient of the slice at `offset`: centre of pixel (0, 0)."""
        half_w = (self.cols - 1) / 2 * self.pixel_spacing
        half_h = (self.rows - 1) / 2 * self.pixel_spacing
        return self.center + offset * self.normal - half_w * self.row_dir - half_h * self.col_dir


def plane_stack(plane: str, center, rows: int, cols: int, pixel_spacing: float,
                offsets, tilt_deg: float = 0.0) -> Stack:
    """A stack in a standard plane, optionally angulated by `tilt_deg` about the
    left-right axis (as a technologist aligns axial slices to the AC-PC line)."""
    row, col = PLANES[plane]
    turn = rotation(rx_deg=tilt_deg)
    return Stack(turn @ row, turn @ col, np.asarray(center, float), rows, cols,
                 pixel_spacing, tuple(float(o) for o in offsets))


# --------------------------------------------------------------------------
# MR head from the MNI152 template

@dataclass(frozen=True)
class HeadPose:
    """One patient's head and where it sits in the scanner: MNI RAS mm -> patient LPS mm.

    p_LPS = F R (scale * p_RAS) + shift, with F = diag(-1, -1, 1) and `scale`
    per RAS axis (head width, length, height). `warp` makes the anatomy the
    patient's own: a smooth displacement of the template (see `Warp`), and
    `gamma` changes the grey / white matter contrast a little. Without them
    every patient's brain would be the template's, and slices of different
    patients at the same level would look like near duplicates.
    """

    rot: np.ndarray
    scale: np.ndarray
    shift: np.ndarray
    warp: "Warp | None" = None
    gamma: float = 1.0

    @classmethod
    def random(cls, rng: np.random.Generator) -> "HeadPose":
        angles = rng.uniform(-6, 6, size=3)
        scale = rng.uniform(0.93, 1.07) * rng.uniform(0.95, 1.05, size=3)
        shift = np.array([rng.uniform(-6, 6), rng.uniform(-8, 8), rng.uniform(-20, 20)])
        warp = Warp.random(rng, dims=3, amplitude=5.0, wavelength=(50, 110))
        return cls(rotation(*angles), scale, shift, warp, float(rng.uniform(0.8, 1.25)))

    def to_patient(self, ras: np.ndarray) -> np.ndarray:
        return FLIP * (self.rot @ (self.scale * np.asarray(ras, float))) + self.shift

    def to_ras(self, lps: np.ndarray) -> np.ndarray:
        """(..., 3) patient LPS points -> MNI RAS points (before the warp)."""
        local = (lps - self.shift) * FLIP
        return local @ self.rot / self.scale  # row vectors: R^T applied


@dataclass(frozen=True)
class Warp:
    """A smooth random displacement: the sum of a few plane waves,
    u(p) = sum_k a_k sin(2 pi f_k . p + phase_k), in the units of p (mm or pixels).
    With amplitude x 2 pi / wavelength well below 1 it folds nothing; it
    bends and stretches anatomy like one person's differs from another's."""

    amplitudes: np.ndarray      # (modes, dims)
    frequencies: np.ndarray     # (modes, dims), cycles per unit
    phases: np.ndarray          # (modes,)

    @classmethod
    def random(cls, rng: np.random.Generator, dims: int, amplitude: float,
               wavelength: tuple[float, float], modes: int = 4) -> "Warp":
        directions = rng.normal(size=(modes, dims))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        frequencies = directions / rng.uniform(*wavelength, size=(modes, 1))
        amplitudes = rng.normal(size=(modes, dims)) * amplitude / math.sqrt(modes * dims)
        return cls(amplitudes, frequencies, rng.uniform(0, 2 * math.pi, size=modes))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """(dims, ...) points -> (dims, ...) displacements."""
        shape = points.shape
        flat = points.reshape(shape[0], -1)
        waves = np.sin(2 * math.pi * (self.frequencies @ flat) + self.phases[:, None])
        return (self.amplitudes.T @ waves).reshape(shape).astype(points.dtype)


FLIP = np.array([-1.0, -1.0, 1.0])
BRAIN_CENTER_RAS = np.array([0.0, -18.0, 12.0])

# Layers outside the brain, by distance from its surface (mm): meninges/CSF,
# skull, scalp fat, skin; then air. Intensities per contrast, arbitrary units
# (brain white matter ~ 400-800).
SHELL_EDGES = (2.0, 7.0, 11.0, 12.5)
SHELL = {
    "T1": (60.0, 20.0, 850.0, 420.0),
    "T2": (950.0, 30.0, 560.0, 330.0),
    "FLAIR": (70.0, 25.0, 520.0, 300.0),
}


# Brain tissue mixes: intensity = a * white matter + b * grey matter + c * CSF.
TISSUE = {"T2": (260.0, 480.0, 950.0), "FLAIR": (430.0, 570.0, 60.0)}
LUT_STEPS_PER_MM = 4


@functools.lru_cache(maxsize=1)
def head_contrasts() -> dict[str, np.ndarray]:
    """T1-, T2- and FLAIR-like head volumes on the MNI grid (float32, cached).

    T1 is the template itself. T2 and FLAIR are mixed from the grey / white
    matter maps and the CSF remainder inside the brain. A skull and scalp shell
    is added (layers by distance from the brain surface, from a distance map at
    2 mm), because the template is brain only. Work is done on the bounding box
    of the head and with lookup tables: ~1-2 s once per process.
    """
    maps = sources.mni_maps()
    coarse = ndi.binary_fill_holes(ndi.binary_closing(maps["t1"][::2, ::2, ::2] > 8, iterations=2))
    dist = ndi.distance_transform_edt(~coarse).astype(np.float32) * 2.0
    near = np.argwhere(dist <= SHELL_EDGES[-1] + 2)
    lo, hi = near.min(axis=0) * 2, near.max(axis=0) * 2 + 2
    box = tuple(slice(int(a), int(min(b, s))) for a, b, s in zip(lo, hi, maps["t1"].shape))
    dist = ndi.zoom(dist[tuple(slice(b.start // 2, (b.stop + 1) // 2) for b in box)], 2, order=1)
    t1, gm, wm = (maps[k][box] for k in ("t1", "gm", "wm"))
    dist = dist[: t1.shape[0], : t1.shape[1], : t1.shape[2]]
    index = np.minimum(dist * LUT_STEPS_PER_MM, 255).astype(np.uint8)
    d = np.arange(256, dtype=np.float32) / LUT_STEPS_PER_MM
    inside = np.clip(1.0 - d / 1.5, 0.0, 1.0)
    out = {}
    for name in ("T1", "T2", "FLAIR"):
        if name == "T1":
            brain = t1 * np.float32(3.2)
        else:
            a, b, c = (v / 255.0 for v in TISSUE[name])
            # CSF = (1 - gm - wm) inside the brain: c*255 - (c-a)*wm - (c-b)*gm, clipped below.
            brain = np.float32(c * 255) * (t1 > 8) - np.float32(c - a) * wm - np.float32(c - b) * gm
            np.maximum(brain, 0, out=brain)
        weight = inside[index]
        shell = ((1.0 - inside) * _shell_lut(d, SHELL[name])).astype(np.float32)[index]
        volume = np.zeros(maps["t1"].shape, np.float32)
        volume[box] = brain * weight + shell
        out[name] = volume
    return out


def _shell_lut(d: np.ndarray, values: tuple[float, ...]) -> np.ndarray:
    """Piecewise-constant layers by distance, with 1 mm soft edges."""
    result = np.zeros_like(d)
    lower = 0.0
    for edge, value in zip(SHELL_EDGES, values):
        result += np.clip(d - lower + 0.5, 0, 1) * (1 - np.clip(d - edge + 0.5, 0, 1)) * value
        lower = edge
    return result


def sample_head(contrast: str, stack: Stack, pose: HeadPose) -> np.ndarray:
    """(slices, rows, cols) float intensities of the patient's head seen through `stack`."""
    volume = head_contrasts()[contrast]
    origin = sources.mni_maps()["affine"][:3, 3]

    def to_voxel_axis(lps_vector: np.ndarray) -> np.ndarray:
        return pose.rot.T @ (FLIP * lps_vector) / pose.scale

    # Output index (row, column) -> MNI voxel is affine, plus the patient's warp (1 mm voxels).
    matrix = np.column_stack([to_voxel_axis(stack.pixel_spacing * stack.col_dir),
                              to_voxel_axis(stack.pixel_spacing * stack.row_dir)])
    grid = np.mgrid[0:stack.rows, 0:stack.cols].reshape(2, -1).astype(np.float32)
    slices = []
    for offset in stack.offsets:
        start = pose.to_ras(stack.position(offset)) - origin
        voxels = (matrix.astype(np.float32) @ grid) + start.astype(np.float32)[:, None]
        if pose.warp is not None:
            voxels += pose.warp(voxels)
        values = ndi.map_coordinates(volume, voxels, order=1, mode="constant", cval=0.0)
        slices.append(values.reshape(stack.rows, stack.cols))
    values = np.stack(slices)
    if pose.gamma != 1.0:   # the patient's own tissue contrast (700 ~ bright white matter)
        values = np.float32(700.0) * (np.maximum(values, 0) / np.float32(700.0)) ** np.float32(pose.gamma)
    return values


def mr_signal(values: np.ndarray, rng: np.random.Generator, *, gain: float,
              noise: float = 12.0, bias: float = 0.08, max_value: int = 4095) -> np.ndarray:
    """Scanner-like stored values: smooth coil bias field, gain, Rician noise, 12-bit clip.

    `noise` is the Gaussian sigma of each complex channel, in stored units.
    """
    n, rows, cols = values.shape
    yy, xx = np.mgrid[-1:1:rows * 1j, -1:1:cols * 1j]
    a, b, c = rng.uniform(-bias, bias, size=3)
    field = (1.0 + a * xx + b * yy + c * (xx * yy)).astype(np.float32)
    signal = values.astype(np.float32) * np.float32(gain) * field[None]
    real = signal + np.float32(noise) * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = np.float32(noise) * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.clip(np.rint(np.hypot(real, imag)), 0, max_value).astype(np.uint16)


# --------------------------------------------------------------------------
# CT from real CT slices

CT_AIR_STORED = 24        # -1000 HU with RescaleIntercept -1024
CT_PADDING = -2000        # PixelPaddingValue of the source scanner (outside the FOV circle)


@functools.lru_cache(maxsize=1)
def _ct_head_reference() -> tuple[np.ndarray, np.ndarray]:
    """693_UNCR (a real 512x512 head CT), as HU at 256x256 and its field-of-view mask."""
    stored = sources.source_pixels("pydicom-data", "693_UNCR.dcm").astype(np.float32)
    fov = stored != CT_PADDING
    hu = np.where(fov, stored - 1024.0, -1000.0)
    hu = hu.reshape(256, 2, 256, 2).mean(axis=(1, 3))
    fov = fov.reshape(256, 2, 256, 2).all(axis=(1, 3))
    return hu, fov


def ct_head_slices(offsets_mm, rng: np.random.Generator, *, radius_mm: float = 80.0,
                   noise_hu: float = 4.0) -> np.ndarray:
    """A short axial head CT stack (stored int16, intercept -1024, padding -2000).

    There is one real slice; the others are that slice shrunk about the head's
    centre as an ellipsoid's cross-section shrinks away from its widest level
    (scale sqrt(1 - (dz/R)^2)). Each patient's head gets its own width and
    length (+-7 %), a smooth warp, a small turn and shift, and quantum noise
    of `noise_hu`.
    """
    hu, fov = _ct_head_reference()
    center = np.array(ndi.center_of_mass(hu > -500))
    angle = math.radians(rng.uniform(-6, 6))
    shift = rng.uniform(-6, 6, size=2)
    shape = np.diag(1.0 / rng.uniform(0.93, 1.07, size=2))
    warp = Warp.random(rng, dims=2, amplitude=5.0, wavelength=(60, 140))
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    slices = []
    for dz in offsets_mm:
        scale = math.sqrt(max(0.35, 1.0 - (dz / radius_mm) ** 2)) * rng.uniform(0.995, 1.005)
        matrix = turn @ shape / scale
        offset = center - matrix @ (center + shift)
        moved = resample(hu, matrix, offset, warp, cval=-1000.0)
        moved += rng.normal(0, noise_hu, moved.shape)
        stored = np.clip(np.rint(moved + 1024), 0, 4095)
        slices.append(np.where(fov, stored, CT_PADDING).astype(np.int16))
    return np.stack(slices)


def resample(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray, warp: Warp | None = None,
             mode: str = "constant", cval: float = 0.0) -> np.ndarray:
    """ndi.affine_transform(image, matrix, offset) with a smooth `warp` (in input
    pixels) added to the sampling positions; bilinear."""
    grid = np.mgrid[0:image.shape[0], 0:image.shape[1]].reshape(2, -1).astype(np.float64)
    points = matrix @ grid + np.asarray(offset, float)[:, None]
    if warp is not None:
        points += warp(points)
    return ndi.map_coordinates(image, points, order=1, mode=mode, cval=cval).reshape(image.shape)


def ct_chest_slices(count: int, rng: np.random.Generator, noise_hu: float = 8.0) -> np.ndarray:
    """A short chest CT stack from CT_small (a real 128x128 thoracic slice),
    drifting a few pixels and a few per cent from slice to slice like the spine does."""
    stored = sources.source_pixels("pydicom", "CT_small.dcm").astype(np.float32)
    hu = stored - 1024.0
    center = np.array(hu.shape) / 2
    slices = []
    drift = np.zeros(2)
    for _ in range(count):
        drift += rng.normal(0, 0.8, size=2)
        scale = rng.uniform(0.97, 1.03)
        matrix = np.eye(2) / scale
        offset = center - matrix @ (center + drift)
        moved = ndi.affine_transform(hu, matrix, offset=offset, order=1, mode="nearest")
        moved += rng.normal(0, noise_hu, moved.shape)
        slices.append(np.clip(np.rint(moved + 1024), 0, 4095).astype(np.int16))
    return np.stack(slices)


# --------------------------------------------------------------------------
# Radiographs

def downsample(array: np.ndarray, factor: int) -> np.ndarray:
    """Block mean by an integer factor (crops the remainder)."""
    h, w = (s - s % factor for s in array.shape[:2])
    a = array[:h, :w].astype(np.float32)
    return a.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


@functools.lru_cache(maxsize=None)
def _radiograph_base(kind: str) -> np.ndarray:
    """Downsampled real radiographs, float, stored-value scale of the source."""
    if kind == "chest":      # RG1: CR chest PA, 1955x1841, MONOCHROME1, 15 bits
        return downsample(sources.source_pixels("pydicom-data", "RG1_UNCR.dcm"), 4)
    if kind == "tibia":      # RG3: CR tibia, 1760x1760, MONOCHROME1, 10 bits; crop the
        raw = sources.source_pixels("pydicom-data", "RG3_UNCR.dcm")  # collimated border
        cols = np.flatnonzero((raw > 0).mean(axis=0) > 0.5)
        rows = np.flatnonzero((raw > 0).mean(axis=1) > 0.5)
        return downsample(raw[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 4)
    if kind == "cat":        # deid-data: a cat's thorax, DX, 2614x3072, 12 bits
        return downsample(sources.source_pixels("deid-data", "animals/cat.dcm"), 6)
    raise KeyError(kind)


def radiograph(kind: str, rng: np.random.Generator, *, max_value: int,
               invert: bool = False, source_max: float | None = None) -> np.ndarray:
    """One patient's version of a real radiograph: the patient's build (width and
    height +-8 %, a smooth warp), small turn and shift, exposure curve, gain, noise.

    `invert` flips MONOCHROME1 data to MONOCHROME2 (source_max is the source's
    largest stored value). Output uint16 within [0, max_value].
    """
    base = _radiograph_base(kind)
    top = source_max or float(base.max())
    image = (top - base) if invert else base.copy()
    image = image / top * max_value
    center = np.array(image.shape) / 2
    angle = math.radians(rng.uniform(-2.5, 2.5))
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    matrix = turn @ np.diag(1.0 / rng.uniform(0.92, 1.08, size=2))    # the patient's build
    offset = center - matrix @ (center + rng.uniform(-8, 8, size=2))
    warp = Warp.random(rng, dims=2, amplitude=6.0, wavelength=(80, 200))
    image = resample(image, matrix, offset, warp, mode="nearest")
    exposure = rng.uniform(0.8, 1.25)                                   # film-screen response
    image = max_value * (np.clip(image, 0, None) / max_value) ** exposure
    image = image * rng.uniform(0.9, 1.05) + rng.normal(0, max_value * 0.004, image.shape)
    return np.clip(np.rint(image), 0, max_value).astype(np.uint16)


# --------------------------------------------------------------------------
# Image-quality defects (each returns a new array of the same dtype)

def add_noise(image: np.ndarray, rng: np.random.Generator, share: float = 0.35,
              max_value: int = 4095) -> np.ndarray:
    """NOISY: Gaussian noise with sigma = `share` x the image's 99th percentile
    (imitates an RF spike / failed coil element / very low dose)."""
    sigma = share * float(np.percentile(image, 99))
    noisy = image.astype(np.float64) + rng.normal(0, sigma, image.shape)
    return _like(noisy, image, 0, max_value)


def blur(image: np.ndarray, sigma_px: float = 4.0) -> np.ndarray:
    """BLURRY: heavy Gaussian blur (imitates patient motion / wrong reconstruction kernel)."""
    return _like(ndi.gaussian_filter(image.astype(np.float64), sigma_px), image)


def saturate(image: np.ndarray, share: float, max_value: int) -> np.ndarray:
    """SATURATED: the brightest `share` of pixels clipped to `max_value` (imitates
    over-exposure / detector saturation / a window burnt into the stored values)."""
    threshold = np.quantile(image, 1.0 - share)
    out = image.copy()
    out[image >= threshold] = max_value
    return out


def low_dynamic_range(image: np.ndarray, rng: np.random.Generator, factor: float = 0.01,
                      noise: float = 0.8) -> np.ndarray:
    """LOW_DYNAMIC_RANGE: contrast squeezed `factor`-fold around the median, then
    detector noise of `noise` stored units: a few dozen grey levels in all
    (imitates a wrong rescale / bit depth on export, or a failed gain setting).
    The noise keeps the darkest level from becoming a large share of the image."""
    a = image.astype(np.float64)
    median = float(np.median(a))
    squeezed = median + (a - median) * factor + rng.normal(0, noise, a.shape)
    return _like(squeezed, image)


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    """The image scaled by `factor` (bilinear), same dtype."""
    return _like(ndi.zoom(image.astype(np.float64), factor, order=1), image)


def constant(image: np.ndarray, value: int) -> np.ndarray:
    """CONSTANT_IMAGE: every pixel `value` (imitates a blank frame / failed reconstruction)."""
    return np.full_like(image, value)


def _like(values: np.ndarray, template: np.ndarray, lo=None, hi=None) -> np.ndarray:
    info = np.iinfo(template.dtype)
    lo = info.min if lo is None else lo
    hi = info.max if hi is None else hi
    return np.clip(np.rint(values), lo, hi).astype(template.dtype)


# --------------------------------------------------------------------------
# Burned-in text

def burn_text(image: np.ndarray, lines: list[str], value, corner: str = "top-left",
              height_share: float = 0.045) -> np.ndarray:
    """Draw `lines` into a corner of a grey (H, W) or colour (H, W, 3) image."""
    h, w = image.shape[:2]
    size = max(9, int(round(h * height_share)))
    font = ImageFont.load_default(size=size)
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    margin = max(3, size // 2)
    y = margin if corner.startswith("top") else h - margin - len(lines) * (size + 2)
    for line in lines:
        box = draw.textbbox((0, 0), line, font=font)
        x = margin if corner.endswith("left") else w - margin - (box[2] - box[0])
        draw.text((x, y), line, fill=255, font=font)
        y += size + 2
    on = np.asarray(mask) > 127
    out = image.copy()
    out[on] = value
    return out


def to_png(image: np.ndarray) -> bytes:
    """8-bit PNG of a grey image, windowed to its 1st-99th percentiles."""
    import io

    a = image.astype(np.float64)
    lo, hi = np.percentile(a, [1, 99])
    a = np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    buffer = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
