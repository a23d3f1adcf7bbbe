"""udfs.pixel_stats: exact histogram statistics, image measures, thumbnails, errors.

Hand-made arrays with values computed by hand or by plain numpy, and real
files from pydicom's test_files and pydicom-data's data_store (read from disk
directly, never through get_testdata_files).
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFilter, ImageStat
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy import ndimage

from dicom_triage.udfs.pixel_stats import (PERCENTILE_KEYS, PERCENTILES, RESULT_KEYS, blurry_score,
                              distribution_of, efc, laplacian_variance, measure_file,
                              measure_pixels, moments, noise_sigma, otsu_threshold, percentiles,
                              value_stats)
from dicom_triage.udfs.pixels import NO_PIXEL_DATA, UNREADABLE_PIXELS

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DATA_STORE = Path(pydicom.__file__).parents[1] / "data_store" / "data"

pytestmark = pytest.mark.filterwarnings("ignore")


def path_of(name: str) -> Path:
    return TEST_FILES / name if (TEST_FILES / name).exists() else DATA_STORE / name


def measure(name: str, **kwargs) -> dict:
    result = measure_file(path_of(name).read_bytes(), **kwargs)
    assert "pixel_error" not in result, result
    return result


def make_ds(arr: np.ndarray, **attrs) -> Dataset:
    """A minimal MONOCHROME2 dataset holding `arr` ((rows, cols) or (frames, rows, cols))."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8 * arr.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(arr.dtype.kind == "i")
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def check_against_numpy(result: dict, values: np.ndarray) -> None:
    """Every value statistic equals the plain numpy computation on `values`."""
    values = values.astype(np.float64).ravel()
    np.testing.assert_array_equal([result[k] for k in PERCENTILE_KEYS], np.percentile(values, PERCENTILES))
    assert result["min"] == values.min() and result["max"] == values.max()
    assert result["mean"] == pytest.approx(values.mean(), rel=1e-12, abs=1e-9)
    assert result["std"] == pytest.approx(values.std(), rel=1e-9, abs=1e-9)
    assert result["distinct_values"] == len(np.unique(values))
    assert result["valid_pixels"] == values.size


# ------------------------------------------------------------------ helpers on tiny arrays
@pytest.mark.parametrize("seed", range(6))
def test_percentiles_from_the_histogram_equal_numpy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    data = rng.integers(-40, 40, n) * 2.5 if seed % 2 else rng.normal(100, 30, n)
    np.testing.assert_array_equal(percentiles(distribution_of(data)), np.percentile(data, PERCENTILES))
    mean, std = moments(distribution_of(data))
    assert mean == pytest.approx(data.mean(), rel=1e-12) and std == pytest.approx(data.std(), rel=1e-9)


def test_percentiles_by_hand():
    # 0, 10, 20, 30: virtual index 3q; p50 -> 1.5 -> 15; p99.5 -> 2.985 -> 29.85
    dist = distribution_of(np.array([30, 0, 20, 10]))
    np.testing.assert_allclose(percentiles(dist, [0.5, 50, 99.5]), [0.15, 15.0, 29.85])


def test_two_level_image_has_one_bit_of_entropy():
    img = np.zeros((8, 8), dtype=np.uint16)
    img[:, 4:] = 1000
    r = measure_pixels(make_ds(img))
    assert r["entropy_bits"] == pytest.approx(1.0)
    assert (r["min"], r["max"], r["mean"], r["std"]) == (0.0, 1000.0, 500.0, 500.0)
    assert r["frac_at_min"] == r["frac_at_max"] == 0.5
    assert r["foreground_fraction"] == 0.5
    assert r["distinct_values"] == 2


def test_constant_image():
    r = measure_pixels(make_ds(np.full((16, 16), 77, dtype=np.uint16)))
    assert r["std"] == 0 and r["value_range"] == 0 and r["dynamic_range"] == 0
    assert r["frac_at_min"] == r["frac_at_max"] == 1.0
    assert r["entropy_bits"] == 0 and r["distinct_values"] == 1
    assert r["laplacian_var"] == 0 and r["noise_sigma"] == 0
    assert r["foreground_fraction"] is None and r["snr"] is None
    assert r["histogram"][0] == 256 and sum(r["histogram"]) == 256


def test_saturation_fractions():
    rng = np.random.default_rng(0)
    img = rng.integers(100, 3000, (100, 100)).astype(np.uint16)
    img.flat[:700] = 4095
    img.flat[700:900] = 0
    r = measure_pixels(make_ds(img, BitsStored=12, HighBit=11))
    assert r["frac_at_max"] == pytest.approx(0.07) and r["frac_at_min"] == pytest.approx(0.02)
    assert r["value_range"] == 4095
    check_against_numpy(r, img)


def test_histogram_and_window_range():
    img = np.arange(100, dtype=np.uint16).reshape(10, 10)
    r = measure_pixels(make_ds(img), hist_bins=10)
    assert (r["hist_min"], r["hist_max"]) == (0.0, 99.0)
    assert r["histogram"] == np.histogram(img, 10, range=(0, 99))[0].tolist()
    r = measure_pixels(make_ds(img), hist_bins=4, hist_range=(20, 60))
    assert r["histogram"] == [30, 10, 10, 50]          # outside values counted in the edge bins


def test_laplacian_variance_is_higher_for_a_sharp_edge():
    edge = np.zeros((64, 64), dtype=np.float32)
    edge[:, 32:] = 1
    blurred = ndimage.gaussian_filter(edge, 3)
    assert laplacian_variance(edge) > 10 * laplacian_variance(blurred) > 0


def test_noise_sigma_of_gaussian_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 10, (256, 256))
    assert noise_sigma(noise) == pytest.approx(10, rel=0.15)
    # smooth structure (a ramp, a gentle bump) is cancelled by the residual kernel
    y, x = np.mgrid[:256, :256]
    scene = 3 * x + 1000 * np.exp(-((x - 128) ** 2 + (y - 128) ** 2) / 5000) + noise
    assert noise_sigma(scene) == pytest.approx(10, rel=0.15)


def test_noise_sigma_is_in_modality_units():
    rng = np.random.default_rng(1)
    stored = np.rint(rng.normal(2000, 10, (256, 256))).astype(np.uint16)
    r = measure_pixels(make_ds(stored, RescaleSlope=2, RescaleIntercept=-1000))
    assert r["noise_sigma"] == pytest.approx(20, rel=0.15)


def test_efc_is_lower_for_a_sharp_image_than_a_blurred_or_ghosted_one():
    img = np.zeros((128, 128))
    img[40:88, 40:88] = 1
    blurred = ndimage.gaussian_filter(img, 4)
    ghosted = img + 0.3 * np.roll(img, 40, axis=0)
    assert efc(img) < efc(blurred) and efc(img) < efc(ghosted)
    assert efc(np.full((32, 32), 5.0)) == pytest.approx(1.0)   # flat image: the maximum
    assert efc(np.zeros((8, 8))) is None


def test_otsu_threshold_splits_two_modes():
    counts = np.zeros(256, dtype=np.int64)
    counts[20:40] = 10
    counts[200:230] = 5
    t = otsu_threshold(counts)
    assert 39 <= t < 200
    assert otsu_threshold(np.bincount([7], minlength=256)) is None


def test_blurry_score_matches_cleanvision():
    rng = np.random.default_rng(3)
    img = Image.fromarray(ndimage.gaussian_filter(rng.integers(0, 255, (200, 300)), 1).astype(np.uint8))

    def cleanvision(image):   # cleanvision's BlurrinessProperty, defaults 64 px / 0.01 / 0.18
        ratio = max(image.width, image.height) / 64
        small = image.resize((max(int(image.width // ratio), 1), max(int(image.height // ratio), 1)))
        gray = small.convert("L")
        blur = 1 - np.exp(-np.sqrt(ImageStat.Stat(gray.filter(ImageFilter.FIND_EDGES)).var[0]) * 0.01)
        hist = 1 - np.exp(-np.std(gray.histogram()) * 0.01)
        return min(blur + (hist if hist > 0.18 else 0), 1)

    assert blurry_score(img) == pytest.approx(cleanvision(img), rel=1e-6)
    assert blurry_score(img.filter(ImageFilter.GaussianBlur(4))) < blurry_score(img)


def test_value_stats_of_an_empty_distribution():
    r = value_stats(distribution_of(np.array([])), "modality", hist_bins=4)
    assert r["min"] is None and r["p50"] is None and r["histogram"] == [0, 0, 0, 0]


def test_everything_padded():
    img = np.full((8, 8), -2000, dtype=np.int16)
    r = measure_pixels(make_ds(img, PixelPaddingValue=-2000, Modality="CT",
                               RescaleSlope=1, RescaleIntercept=-1024))
    assert r["valid_pixels"] == 0 and r["padded_fraction"] == 1.0
    assert r["mean"] is None and r["histogram"] == [0] * 64


def test_float_pixel_data_takes_the_numpy_path():
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, (3, 20, 20)).astype(np.float32)
    values[1, 2, 3] = np.nan
    ds = make_ds(np.zeros((3, 20, 20), np.uint8))
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated, ds.FloatPixelData = 32, values.tobytes()
    r = measure_pixels(ds)
    finite = values[np.isfinite(values)]
    check_against_numpy(r, finite)
    assert r["stats_exact"] and len(r["frame_stats"]) == 3


# ------------------------------------------------------------------ real files
def test_ct_small_in_hounsfield_units():
    r = measure("CT_small.dcm")
    ds = pydicom.dcmread(path_of("CT_small.dcm"))
    hu = apply_modality_lut(ds.pixel_array, ds)
    check_against_numpy(r, hu)
    assert r["units"] == "HU" and (r["hist_min"], r["hist_max"]) == (-1024.0, 3072.0)
    assert r["histogram"] == np.histogram(hu, 64, range=(-1024, 3072))[0].tolist()
    assert -1100 < r["min"] < -800 and 0 < r["p50"] < 100
    assert r["snr"] > 0 and 0 < r["foreground_fraction"] < 1
    assert 0 < r["noise_sigma"] < 50


def test_padding_is_excluded_from_statistics():
    ds = pydicom.dcmread(path_of("CT_small.dcm"))
    arr = ds.pixel_array.copy()
    arr[:32] = -2000
    ds.PixelData = arr.tobytes()
    r = measure_pixels(ds)
    assert r["valid_pixels"] == 96 * 128 and r["padded_fraction"] == pytest.approx(0.25)
    check_against_numpy(r, apply_modality_lut(arr[32:], ds))


def test_modality_lut_sequence_file():
    r = measure("mlut_18.dcm")
    ds = pydicom.dcmread(path_of("mlut_18.dcm"))
    check_against_numpy(r, apply_modality_lut(ds.pixel_array, ds))
    assert r["units"] == "modality"


def test_monochrome1_thumbnail_is_inverted_statistics_are_not():
    ds = pydicom.dcmread(path_of("RG3_UNCR.dcm"))
    mono1 = measure_pixels(ds)
    ds.PhotometricInterpretation = "MONOCHROME2"
    mono2 = measure_pixels(ds)
    thumb1 = np.asarray(Image.open(io.BytesIO(mono1["thumbnail_png"])), dtype=int)
    thumb2 = np.asarray(Image.open(io.BytesIO(mono2["thumbnail_png"])), dtype=int)
    assert np.abs(thumb1 + thumb2 - 255).max() <= 1
    assert thumb1.std() > 10
    assert {k: mono1[k] for k in PERCENTILE_KEYS} == {k: mono2[k] for k in PERCENTILE_KEYS}


def test_header_window_is_used_for_the_thumbnail():
    ramp = np.tile(np.arange(1000, dtype=np.uint16), (10, 1))
    auto = measure_pixels(make_ds(ramp))
    narrow = measure_pixels(make_ds(ramp, WindowCenter=500, WindowWidth=100))
    pixels = lambda r: np.asarray(Image.open(io.BytesIO(r["thumbnail_png"])))  # noqa: E731
    assert np.mean((pixels(narrow) == 0) | (pixels(narrow) == 255)) > 0.85
    assert np.mean((pixels(auto) == 0) | (pixels(auto) == 255)) < 0.05


def test_rgb_and_ybr_statistics_are_luminance():
    rgb = measure("SC_rgb.dcm")
    ds = pydicom.dcmread(path_of("SC_rgb.dcm"))
    lum = ds.pixel_array.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert rgb["units"] == "luminance" and rgb["is_color"]
    assert rgb["mean"] == pytest.approx(lum.mean(), abs=0.5)
    ybr = measure("SC_ybr_full_uncompressed.dcm")
    assert ybr["photometric_interpretation"] == "YBR_FULL"
    assert ybr["mean"] == pytest.approx(rgb["mean"], abs=1.0)
    assert ybr["p50"] == rgb["p50"]
    thumb = Image.open(io.BytesIO(ybr["thumbnail_png"]))
    assert thumb.mode == "RGB" and max(thumb.size) == 128


def test_palette_statistics_are_luminance_of_the_palette():
    r = measure("OBXXXX1A.dcm")
    ds = pydicom.dcmread(path_of("OBXXXX1A.dcm"))
    lum = apply_color_lut(ds.pixel_array, ds)[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]
    assert r["units"] == "luminance"
    np.testing.assert_allclose([r[k] for k in PERCENTILE_KEYS], np.percentile(lum, PERCENTILES))
    big_endian = measure("OBXXXX1A_expb.dcm")
    assert [big_endian[k] for k in PERCENTILE_KEYS] == [r[k] for k in PERCENTILE_KEYS]


@pytest.mark.parametrize("name,frames", [
    ("emri_small.dcm", 10), ("emri_small_RLE.dcm", 10), ("emri_small_jpeg_2k_lossless.dcm", 10),
    ("SC_rgb_rle_2frame.dcm", 2), ("examples_ybr_color.dcm", 30)])
def test_multiframe_frame_stats(name, frames):
    r = measure(name)
    assert r["frames"] == frames and len(r["frame_stats"]) == frames
    assert [f["index"] for f in r["frame_stats"]] == list(range(frames))
    assert min(f["min"] for f in r["frame_stats"]) == r["min"]
    assert max(f["max"] for f in r["frame_stats"]) == r["max"]


def test_frame_stats_equal_numpy_per_frame():
    r = measure("emri_small.dcm")
    arr = pydicom.dcmread(path_of("emri_small.dcm")).pixel_array.astype(np.float64)
    for stats, frame in zip(r["frame_stats"], arr):
        assert (stats["min"], stats["max"], stats["p50"]) == (frame.min(), frame.max(), np.median(frame))
        assert stats["mean"] == pytest.approx(frame.mean()) and stats["std"] == pytest.approx(frame.std())
    check_against_numpy(r, arr)


def test_frame_stats_are_capped():
    r = measure_pixels(make_ds(np.arange(1500 * 16, dtype=np.uint16).reshape(1500, 4, 4)))
    assert len(r["frame_stats"]) == 750 and r["frame_stats"][1]["index"] == 2


def test_single_frame_has_no_frame_stats():
    assert measure("MR_small.dcm")["frame_stats"] is None


@pytest.mark.parametrize("group", [
    ["emri_small.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm",
     "emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm"],
    ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
     "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"],
    ["SC_rgb.dcm", "SC_rgb_expb.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm"],
])
def test_pixel_hash_ignores_transfer_syntax(group):
    results = [measure(name) for name in group]
    assert len({r["pixel_hash"] for r in results}) == 1
    assert len({tuple(r[k] for k in PERCENTILE_KEYS) for r in results}) == 1


def test_pixel_hash_changes_with_one_pixel():
    ds = pydicom.dcmread(path_of("MR_small.dcm"))
    before = measure_pixels(ds)["pixel_hash"]
    arr = ds.pixel_array.copy()
    arr[10, 10] += 1
    ds.PixelData = arr.tobytes()
    assert measure_pixels(ds)["pixel_hash"] != before


@pytest.mark.parametrize("name,size,mode", [
    ("MR_small.dcm", (128, 128), "L"), ("JPEG2000_UNC.dcm", (32, 128), "L"),
    ("US1_UNCR.dcm", (128, 96), "RGB"), ("CT_small.dcm", (128, 128), "L"),
    ("examples_palette.dcm", (128, 56), "RGB")])
def test_thumbnail_and_preview(name, size, mode):
    r = measure(name)
    thumb = Image.open(io.BytesIO(r["thumbnail_png"]))
    thumb.load()
    assert thumb.format == "PNG" and thumb.size == size and thumb.mode == mode
    assert np.asarray(thumb).std() > 5
    preview = np.frombuffer(r["preview"], dtype=np.uint8).reshape(64, 64)
    assert preview.std() > 5


def test_preview_keeps_aspect_ratio_with_zero_padding():
    img = np.full((20, 80), 1000, dtype=np.uint16)
    img[:, ::2] = 3000
    preview = np.frombuffer(measure_pixels(make_ds(img))["preview"], dtype=np.uint8).reshape(64, 64)
    assert (preview[:20] == 0).all() and (preview[-20:] == 0).all() and preview[30:34].max() > 0


# ------------------------------------------------------------------ measure_file and errors
def test_result_keys_and_types():
    r = measure("emri_small.dcm")
    assert tuple(r) == RESULT_KEYS
    types = {"rows": int, "columns": int, "frames": int, "samples_per_pixel": int,
             "photometric_interpretation": str, "is_color": bool, "units": str, "valid_pixels": int,
             "stats_exact": bool, "distinct_values": int, "histogram": list, "pixel_hash": str,
             "thumbnail_png": bytes, "preview": bytes, "frame_stats": list}
    for key in RESULT_KEYS:
        assert isinstance(r[key], types.get(key, float)), key
    assert all(type(c) is int for c in r["histogram"]) and len(r["histogram"]) == 64
    assert set(r["frame_stats"][0]) == {"index", "min", "max", "mean", "std", "p50"}
    assert len(r["preview"]) == 4096 and len(r["pixel_hash"]) == 64


@pytest.mark.parametrize("name,code", [
    ("rtplan.dcm", NO_PIXEL_DATA), ("waveform_ecg.dcm", NO_PIXEL_DATA),
    ("MR_truncated.dcm", UNREADABLE_PIXELS),
    ("emri_small_jpeg_2k_lossless_too_short.dcm", UNREADABLE_PIXELS),
    ("JPEG2000-embedded-sequence-delimiter.dcm", UNREADABLE_PIXELS),
    ("no_meta.dcm", UNREADABLE_PIXELS)])
def test_pixel_errors(name, code):
    r = measure_file(path_of(name).read_bytes())
    assert r["pixel_error"] == code and r["pixel_error_message"]
    assert set(r) == {"pixel_error", "pixel_error_message"}


def test_no_decoder_for_the_transfer_syntax():
    ds = pydicom.dcmread(path_of("emri_small_jpeg_2k_lossless.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"   # MPEG2: pydicom has no decoder
    r = measure_file(to_bytes(ds))
    assert r["pixel_error"] == UNREADABLE_PIXELS and "decoder" in r["pixel_error_message"]


def test_garbage_and_empty_input_do_not_raise():
    assert measure_file(b"")["pixel_error"] == UNREADABLE_PIXELS
    assert measure_file(os.urandom(2000))["pixel_error"] == UNREADABLE_PIXELS


@pytest.fixture(scope="module")
def large_multiframe() -> bytes:
    """8 frames of 512x512 int16 (4 MiB): the pixel element is deferred by measure_file."""
    rng = np.random.default_rng(7)
    frames = np.rint(rng.normal(0, 30, (8, 512, 512))).astype(np.int16)
    frames[:, :20] = -2000
    return to_bytes(make_ds(frames, Modality="CT", RescaleSlope=1, RescaleIntercept=-1024,
                            PixelPaddingValue=-2000))


def test_deferred_decoding_equals_in_memory_decoding(large_multiframe):
    deferred = measure_file(large_multiframe)
    in_memory = measure_pixels(pydicom.dcmread(io.BytesIO(large_multiframe)))
    assert deferred == in_memory
    assert deferred["valid_pixels"] == 8 * 492 * 512 and len(deferred["frame_stats"]) == 8
    assert measure_file(io.BytesIO(large_multiframe)) == deferred     # file object input


def test_deferred_pixel_data_cut_short(large_multiframe):
    r = measure_file(large_multiframe[:-100_000])
    assert r["pixel_error"] == UNREADABLE_PIXELS and "needed" in r["pixel_error_message"]


def test_every_test_file_gives_a_result_without_raising(capsys):
    decoded, errors, not_dicom = [], [], []
    for folder in (TEST_FILES, DATA_STORE):
        for root, _, names in os.walk(folder):
            for name in sorted(names):
                data = Path(root, name).read_bytes()
                r = measure_file(data)
                if "pixel_error" not in r:
                    assert tuple(r) == RESULT_KEYS and math.isfinite(r["mean"])
                    decoded.append(name)
                elif "InvalidDicomError" in r["pixel_error_message"]:
                    not_dicom.append(name)
                else:
                    errors.append((name, r["pixel_error"]))
    no_pixels = [n for n, code in errors if code == NO_PIXEL_DATA]
    unreadable = [n for n, code in errors if code == UNREADABLE_PIXELS]
    with capsys.disabled():
        print(f"\n{len(decoded)} decoded, {len(unreadable)} UNREADABLE_PIXELS {sorted(unreadable)}, "
              f"{len(no_pixels)} NO_PIXEL_DATA, {len(not_dicom)} not DICOM (dcmread force=False)")
    assert len(decoded) >= 150 and len(unreadable) <= 8


def test_an_object_over_the_byte_bound_is_never_read():
    """pixels.max_object_bytes is checked against the listed size before any read."""
    from dicom_triage.udfs.pixel_batch import measure_rows

    reads = []
    row = {"path": "s3://b/huge.dcm", "size_bytes": 2**31, "has_preamble": True}
    out = next(measure_rows([row], lambda path: reads.append(path) or b"", 5, max_object_bytes=2**30))
    assert reads == [] and out["pixel_error"] == UNREADABLE_PIXELS
    assert "pixels.max_object_bytes" in out["pixel_error_message"] and str(2**31) in out["pixel_error_message"]
    data = to_bytes(make_ds(np.arange(64, dtype=np.uint16).reshape(8, 8)))
    under = next(measure_rows([{**row, "size_bytes": len(data)}], lambda path: data, 5, max_object_bytes=2**30))
    assert under["pixel_error"] is None and under["bytes_read"] == len(data)


def test_a_slow_read_counts_against_the_pixel_time_bound():
    """The read is inside pixels.timeout_seconds, and the message names that setting."""
    import time

    from dicom_triage.udfs.pixel_batch import measure_rows

    def stalled_read(path):
        time.sleep(5)
        return b""

    started = time.monotonic()
    out = next(measure_rows([{"path": "s3://b/slow.dcm", "size_bytes": 10}], stalled_read, 0.5))
    assert time.monotonic() - started < 3
    assert out["pixel_error"] == UNREADABLE_PIXELS
    assert "pixels.timeout_seconds" in out["pixel_error_message"] and "ingest" not in out["pixel_error_message"]


def test_pixel_bounds_defaults_are_the_configuration_defaults():
    """The per-row functions' own defaults (used by benchmarks and tools that call
    them directly) are the ones conf/default.yaml gives the job."""
    from dicom_triage.jobs.config import load_settings
    from dicom_triage.udfs.pixel_batch import MAX_OBJECT_BYTES
    from dicom_triage.udfs.pixels import MAX_DECODED_BYTES, MAX_FRAME_BYTES

    pixels = load_settings().pixels
    assert (MAX_OBJECT_BYTES, MAX_FRAME_BYTES, MAX_DECODED_BYTES) == \
        (pixels.max_object_bytes, pixels.max_frame_bytes, pixels.max_decoded_bytes)
