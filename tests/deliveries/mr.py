"""MR acquisitions of the head phantom: contrast per sequence, slice planning,
and rendering of one slice (partial volume over the thickness, coil bias field,
Rician noise, k-space-like interpolation to the reconstruction matrix).

Signal units are relative (white matter on T1 about 1). Positions are patient LPS mm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import head

# Relative signal per tissue for each sequence (lesion = white matter hyperintensity).
CONTRAST = {
    "t1": dict(wm=1.0, gm=0.62, csf=0.16, fat=1.2, muscle=0.45, bone=0.03, marrow=0.95,
               fluid=0.14, lesion=0.5),
    "t1_flair": dict(wm=1.0, gm=0.55, csf=0.07, fat=1.1, muscle=0.4, bone=0.03, marrow=0.9,
                     fluid=0.08, lesion=0.45),
    "t1c": dict(wm=1.0, gm=0.64, csf=0.2, fat=1.2, muscle=0.62, bone=0.03, marrow=1.05,
                fluid=0.16, lesion=0.8),
    "t2": dict(wm=0.40, gm=0.58, csf=1.0, fat=0.8, muscle=0.28, bone=0.03, marrow=0.55,
               fluid=1.0, lesion=0.85),
    "flair": dict(wm=0.52, gm=0.72, csf=0.06, fat=0.75, muscle=0.3, bone=0.03, marrow=0.5,
                  fluid=0.09, lesion=1.1),
    "dwi": dict(wm=0.45, gm=0.62, csf=1.0, fat=0.06, muscle=0.22, bone=0.02, marrow=0.08,
                fluid=0.95, lesion=0.7),
    "loc": dict(wm=0.75, gm=0.62, csf=0.40, fat=1.0, muscle=0.5, bone=0.05, marrow=0.8,
                fluid=0.35, lesion=0.65),
    "swi": dict(wm=0.78, gm=0.62, csf=0.85, fat=0.5, muscle=0.35, bone=0.02, marrow=0.3,
                fluid=0.8, lesion=0.7),
    "csi": dict(wm=0.75, gm=1.0, csf=0.12, fat=0.0, muscle=0.0, bone=0.0, marrow=0.0,
                fluid=0.0, lesion=0.3),
}
# Noise sigma relative to a signal of 1, per sequence (before site / subject factors).
NOISE = {"t1": 0.020, "t1c": 0.020, "t1_flair": 0.020, "t2": 0.018, "flair": 0.022, "dwi": 0.055,
         "loc": 0.030, "swi": 0.015, "csi": 0.01}


class SiteContrast:
    """Tissue signal volumes of one site's protocols (contrast varies a little
    between scanners and protocol versions), built once per site and kind."""

    def __init__(self, r: np.random.Generator) -> None:
        self.jitter = {k: float(r.uniform(0.9, 1.1)) for k in CONTRAST["t1"]}
        self.volumes: dict[str, np.ndarray] = {}

    def volume(self, kind: str) -> np.ndarray:
        if kind not in self.volumes:
            weights = {t: w * self.jitter.get(t, 1.0) for t, w in CONTRAST[kind].items()
                       if t != "lesion"}
            self.volumes[kind] = head.weighted_volume(weights)
        return self.volumes[kind]


@dataclass
class Subject:
    """One patient's head: pose in the scanner, lesions, noise habits, coil bias."""
    pose: head.Pose
    lesions: list
    noise_factor: float
    bias: np.ndarray          # coefficients of the coil sensitivity field
    contrast: SiteContrast
    volumes: dict = field(default_factory=dict)

    @staticmethod
    def random(r: np.random.Generator, contrast: SiteContrast, bias_amplitude: float,
               strong_bias: bool = False) -> "Subject":
        pose = head.Pose.random(r)
        n_lesions = int(r.choice([0, 0, 1, 3, 6]))
        lesions = [(p, float(r.uniform(1.5, 4.0))) for p in head.white_matter_points(r, n_lesions)]
        amp = bias_amplitude * (2.6 if strong_bias else 1.0)
        bias = r.normal(0, 1, 6) * amp
        bias[5] = abs(bias[5]) + amp  # receive arrays: brighter towards the periphery
        return Subject(pose, lesions, float(r.uniform(0.85, 1.2)), bias, contrast)

    def volume(self, kind: str) -> np.ndarray:
        """The site's volume for `kind`, with this subject's lesions painted in (one
        painted copy is kept at a time, to bound memory)."""
        if kind not in self.volumes:
            base = self.contrast.volume(kind)
            self.volumes.clear()
            if not self.lesions:
                self.volumes[kind] = base
            else:
                vol = base.copy()
                head.add_lesions(vol, [(c, rad, CONTRAST[kind]["lesion"]) for c, rad in self.lesions])
                self.volumes[kind] = vol
        return self.volumes[kind]

    def release(self) -> None:
        self.volumes.clear()

    def bias_field(self, points: np.ndarray) -> np.ndarray:
        """Multiplicative coil sensitivity at LPS points (3, ...), around 1."""
        c = self.pose.shift
        x = (points[0] + c[0]) / 100.0
        y = (points[1] + c[1]) / 100.0
        z = (points[2] - c[2]) / 100.0
        b = self.bias
        return np.exp(b[0] * x + b[1] * y + b[2] * z + b[3] * x * y + b[4] * z * z
                      + b[5] * (x * x + y * y) * 0.5)


@dataclass
class Plane:
    origin: np.ndarray  # LPS mm of the first pixel centre
    row: np.ndarray     # direction along a row
    col: np.ndarray     # direction down a column

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.col)


def axial_directions(pitch_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Row / column directions of an axial plane tilted by `pitch_deg` about the
    left-right axis (AC-PC angulation)."""
    a = np.radians(pitch_deg)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(a), np.sin(a)])
    return row, col


def stack(centre: np.ndarray, row: np.ndarray, col: np.ndarray, matrix: tuple[int, int],
          spacing: tuple[float, float], step: float, count: int) -> list[Plane]:
    """`count` parallel planes `step` mm apart, the middle one through `centre`."""
    normal = np.cross(row, col)
    rows, cols = matrix
    planes = []
    for k in range(count):
        c = centre + normal * step * (k - (count - 1) / 2.0)
        origin = c - row * spacing[1] * (cols - 1) / 2.0 - col * spacing[0] * (rows - 1) / 2.0
        planes.append(Plane(np.round(origin, 6), row, col))
    return planes


def render(subject: Subject, kind: str, plane: Plane, matrix: tuple[int, int],
           spacing: tuple[float, float], thickness: float, r: np.random.Generator, *,
           acquired: int = 256, noise_scale: float = 1.0,
           epi_distortion: float = 0.0, pose: head.Pose | None = None,
           sub_slices: int = 2) -> np.ndarray:
    """Magnitude image (float, relative units) of one slice.

    The slice is sampled on an `acquired`-sized grid spanning the same pixel
    centres, then interpolated to `matrix` (as zero-filled reconstruction does)."""
    rows, cols = matrix
    n_r = min(rows, acquired, 256)
    n_c = min(cols, acquired, 256)
    # Sampled pixels cover the same field of view as the reconstruction matrix
    # (area-aligned), so interpolation keeps the geometry exact.
    coarse_spacing = (spacing[0] * rows / n_r, spacing[1] * cols / n_c)
    origin = (np.asarray(plane.origin, float)
              + plane.row * spacing[1] * (cols / n_c - 1) / 2
              + plane.col * spacing[0] * (rows / n_r - 1) / 2)
    pose = pose or subject.pose
    if epi_distortion:
        amp = epi_distortion

        def warp(ras, amp=amp):  # susceptibility shift along the phase (A-P) axis
            out = ras.copy()
            out[1] += amp * np.exp(-((ras[2] + 20) / 25.0) ** 2) * np.cos(ras[0] / 30.0)
            return out
    else:
        warp = None
    vol = subject.volume(kind)
    img = head.sample_plane(vol, pose, origin, plane.row, plane.col, (n_r, n_c),
                            coarse_spacing, thickness, sub_slices=sub_slices,
                            warp=warp).astype(np.float64)
    pts = head.plane_points(origin, plane.row, plane.col, (n_r, n_c), coarse_spacing)
    img *= subject.bias_field(pts)
    sigma = NOISE[kind] * subject.noise_factor * noise_scale
    img = _rician(img, sigma, r)  # noise of the sampled k-space, interpolated below
    if (n_r, n_c) != (rows, cols):
        img = resize_bilinear(img, rows, cols)
    return img


def resize_bilinear(img: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Area-aligned bilinear interpolation (float)."""
    from PIL import Image

    out = Image.fromarray(img.astype(np.float32), mode="F").resize((cols, rows), Image.BILINEAR)
    return np.asarray(out, dtype=np.float64)


def _rician(img: np.ndarray, sigma: float, r: np.random.Generator) -> np.ndarray:
    re = img + r.normal(0, sigma, img.shape)
    im = r.normal(0, sigma, img.shape)
    return np.sqrt(re * re + im * im)


def head_fraction(img: np.ndarray, noise_sigma: float) -> float:
    """Share of pixels clearly above the background noise (for dark end slices)."""
    return float(np.mean(img > max(6 * noise_sigma, 0.08)))
