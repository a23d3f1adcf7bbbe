"""udfs.burned_in: text burned into image corners, found from pixels.

Positives: real CT / MR slices and radiographs from pydicom's test files with
text drawn by the demo generator's `imaging.burn_text` into each corner.
Negatives: the same images clean, plus hard cases: a radiograph behind a
collimator shutter, a head CT (skull edge), MR slices with strong noise.
Scores come from `measure_pixels`, i.e. from the windowed, downscaled image
the other measures use.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_triage.jobs.demo.imaging import burn_text
from dicom_triage.udfs.burned_in import CORNERS, burned_in_text, corner_bands, text_glyphs
from dicom_triage.udfs.pixel_stats import SHARPNESS_PX, downscale, measure_pixels, window01

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DATA_STORE = Path(pydicom.__file__).parents[1] / "data_store" / "data"
MIN_SCORE = 0.4   # conf/default.yaml quality.burned_in_text_min_score

# (file, frame of a multi-frame object or None)
BASES = [("CT_small.dcm", None), ("693_UNCR.dcm", None), ("eCT_Supplemental.dcm", 0),
         ("MR2_UNCR.dcm", None), ("RG1_UNCR.dcm", None), ("RG3_UNCR.dcm", None)]
TEXTS = [["DOE^JOHN  M 67Y", "12-MAR-2024 14:05"], ["W:80 L:40"], ["120 kV  280 mAs", "5.0 mm"],
         ["PORTABLE AP", "ERECT"]]

pytestmark = pytest.mark.filterwarnings("ignore")


def load(name: str, frame: int | None):
    path = TEST_FILES / name if (TEST_FILES / name).exists() else DATA_STORE / name
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if frame is not None:
        pixels = pixels[frame]
        ds.NumberOfFrames = 1
    return ds, pixels


def score_of(ds, pixels: np.ndarray) -> tuple[float, str | None]:
    """burned_in_text_score of `ds` holding `pixels` instead of its own, and the
    corner found on the same windowed (p0.5..p99.5), downscaled image."""
    out = copy.deepcopy(ds)
    dtype = f"{'i' if ds.PixelRepresentation else 'u'}{ds.BitsAllocated // 8}"
    out.PixelData = np.ascontiguousarray(np.rint(pixels).astype(dtype)).tobytes()
    score = measure_pixels(out)["burned_in_text_score"]
    small = downscale(pixels, SHARPNESS_PX)
    return score, burned_in_text(window01(small, *np.percentile(pixels, [0.5, 99.5])))[1]


def contrasting(pixels: np.ndarray, corner: str):
    """The value text is drawn with: the image's extreme farthest from the
    corner's background (white text on a white unexposed border is invisible)."""
    band = corner_bands(pixels)[corner]
    lo, hi = pixels.min(), pixels.max()
    return hi if np.median(band) - lo < hi - np.median(band) else lo


@pytest.fixture(scope="module")
def bases():
    return {name: load(name, frame) for name, frame in BASES}


@pytest.fixture(scope="module")
def synthetic(bases):
    """[(label, has_text, score, corner, expected corner)] over every base image."""
    rows = []
    for name, (ds, pixels) in bases.items():
        s, c = score_of(ds, pixels)
        rows.append((f"{name} clean", False, s, c, None))
        for i, corner in enumerate(CORNERS):
            text = TEXTS[(i + len(rows)) % len(TEXTS)]
            s, c = score_of(ds, burn_text(pixels, text, contrasting(pixels, corner), corner))
            rows.append((f"{name} {corner} {text[0]!r}", True, s, c, corner))
    rng = np.random.default_rng(0)
    for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm"):       # collimator shutter: bright frame around the field
        ds, pixels = bases[name]
        shuttered = pixels.copy()
        h, w = pixels.shape
        frame = np.ones_like(pixels, dtype=bool)
        frame[h // 8: h - h // 6, w // 7: w - w // 9] = False
        shuttered[frame] = np.percentile(pixels, 2 if ds.PhotometricInterpretation == "MONOCHROME1" else 98)
        s, c = score_of(ds, shuttered)
        rows.append((f"{name} collimator shutter", False, s, c, None))
    noisy_bases = {name: bases[name] for name in ("MR2_UNCR.dcm", "CT_small.dcm")}
    noisy_bases["emri_small.dcm"] = load("emri_small.dcm", 5)
    for name, (ds, pixels) in noisy_bases.items():     # strong noise over the whole image
        sigma = 0.08 * float(pixels.max() - pixels.min())
        noisy = np.clip(pixels + rng.normal(0, sigma, pixels.shape), 0, pixels.max())
        s, c = score_of(ds, noisy)
        rows.append((f"{name} noisy", False, s, c, None))
    return rows


def test_recall_and_precision_on_synthetic_set(synthetic):
    flagged = [r for r in synthetic if r[2] > MIN_SCORE]
    positives = [r for r in synthetic if r[1]]
    hits = [r for r in flagged if r[1]]
    recall, precision = len(hits) / len(positives), len(hits) / len(flagged)
    print(f"\nsynthetic: {len(positives)} with text, {len(synthetic) - len(positives)} without; "
          f"recall {recall:.2f} precision {precision:.2f}")
    for label, has_text, score, corner, _ in synthetic:
        if has_text != (score > MIN_SCORE):
            print(f"  {'missed' if has_text else 'false positive'}: {label} score {score:.2f} {corner}")
    assert precision == 1.0
    assert recall >= 0.9


def test_flagged_corner_is_where_the_text_is(synthetic):
    wrong = [r for r in synthetic if r[1] and r[2] > MIN_SCORE and r[3] != r[4]]
    assert not wrong, wrong


def test_hard_negatives_score_low(synthetic):
    hard = {r[0]: r[2] for r in synthetic if not r[1]}
    assert all(score <= 0.34 for score in hard.values()), hard


def test_glyph_rows_count_letters_and_reject_edges():
    canvas = np.zeros((100, 200), dtype=np.float32)
    letters = burn_text(canvas, ["ABCDEF"], 1.0, "top-left", height_share=0.1) > 0.5
    assert text_glyphs(letters) >= 5
    edge = np.zeros((60, 120), dtype=bool)
    edge[20:22, :] = True          # a shutter or table edge: one long line
    edge[:, 50] = True
    assert text_glyphs(edge) == 0
    dots = np.zeros((60, 120), dtype=bool)
    dots[::7, ::7] = True          # isolated specks (noise) are too small to be glyphs
    assert text_glyphs(dots) == 0


def test_score_range_corner_names_and_tiny_images():
    img = np.zeros((200, 240), dtype=np.float32)
    assert burned_in_text(img) == (0.0, None)
    assert burned_in_text(np.zeros((6, 6), dtype=np.float32)) == (0.0, None)
    for corner in CORNERS:
        score, where = burned_in_text(burn_text(img, ["PATIENT NAME 1234", "W:80 L:40"], 1.0, corner))
        assert 0.5 < score <= 1.0 and where == corner
    assert set(corner_bands(img)) == set(CORNERS)
    dark_text = burn_text(np.ones((200, 240), dtype=np.float32), ["ABC 123 XYZ"], 0.0, "bottom-left")
    assert burned_in_text(dark_text)[1] == "bottom-left"


@pytest.mark.parametrize("density", [0.05, 0.15, 0.3, 0.5])
def test_speckle_and_grey_noise_are_not_text(density):
    rng = np.random.default_rng(1)
    speckle = (rng.random((256, 256)) < density).astype(np.float32)
    grey = np.clip(0.5 + rng.normal(0, density, (256, 256)), 0, 1).astype(np.float32)
    assert burned_in_text(speckle) == (0.0, None)
    assert burned_in_text(grey) == (0.0, None)
