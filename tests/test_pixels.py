"""udfs.pixels: frame decoding into modality units, padding, colour, errors.

Real files from pydicom's test_files and pydicom-data's data_store (read from
disk directly, never through get_testdata_files), plus small edits of them.
"""
from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, apply_modality_lut

from dicom_triage.udfs.pixels import (NO_PIXEL_DATA, UNREADABLE_PIXELS, PixelDecodeError, describe,
                         iter_frames, iter_stored_frames, luminance, padding_mask)

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DATA_STORE = Path(pydicom.__file__).parents[1] / "data_store" / "data"

pytestmark = pytest.mark.filterwarnings("ignore")


def read(name: str, **kwargs) -> pydicom.Dataset:
    path = TEST_FILES / name if (TEST_FILES / name).exists() else DATA_STORE / name
    return pydicom.dcmread(path, **kwargs)


def frames_of(ds, source=None) -> list[np.ma.MaskedArray]:
    return list(iter_frames(ds, source))


def test_ct_rescale_gives_hounsfield_units():
    ds = read("CT_small.dcm")
    info = describe(ds)
    assert info.units == "HU"
    assert (info.value_map.kind, info.value_map.slope, info.value_map.intercept) == ("rescale", 1.0, -1024.0)
    assert info.padding == (-2000, -2000)
    (frame,) = frames_of(ds)
    assert frame.shape == (128, 128) and frame.dtype == np.float32
    np.testing.assert_array_equal(frame.filled(np.nan), apply_modality_lut(ds.pixel_array, ds))
    assert -1100 < frame.min() < -800            # air/lung near -1000 HU, nothing below
    assert 0 < np.median(frame) < 100             # soft tissue


def test_padding_value_is_masked_on_stored_values():
    ds = read("CT_small.dcm")
    arr = ds.pixel_array.copy()
    arr[:10] = -2000                              # stored PixelPaddingValue
    ds.PixelData = arr.tobytes()
    (frame,) = frames_of(ds)
    assert frame.mask[:10].all() and not frame.mask[10:].any()
    assert frame.count() == 118 * 128
    # the masked pixels would otherwise read -3024 HU
    assert frame.min() == apply_modality_lut(arr[10:], ds).min()


def test_padding_range_limit_masks_the_whole_range():
    ds = read("CT_small.dcm")
    arr = ds.pixel_array.copy()
    arr[0, :4] = [-2000, -1990, -1980, -1979]
    ds.PixelData = arr.tobytes()
    ds.PixelPaddingRangeLimit = -1980
    mask = padding_mask(next(iter_stored_frames(ds)), describe(ds))
    assert mask[0, :4].tolist() == [True, True, True, False]
    assert mask.sum() == 3


def test_signed_padding_value_written_as_us_is_reinterpreted():
    ds = read("CT_small.dcm")
    ds["PixelPaddingValue"].VR = "US"
    ds.PixelPaddingValue = 63536                  # 0xF830 == int16 -2000
    assert describe(ds).padding == (-2000, -2000)


def test_modality_lut_sequence_wins():
    ds = read("mlut_18.dcm")
    info = describe(ds)
    assert info.value_map.kind == "table"
    (frame,) = frames_of(ds)
    expected = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(frame.filled(np.nan), expected.astype(np.float32))
    ds.RescaleSlope, ds.RescaleIntercept = 100, 5   # ignored when a LUT sequence is present
    np.testing.assert_array_equal(frames_of(ds)[0].filled(np.nan), expected.astype(np.float32))


def test_monochrome1_is_flagged_not_inverted():
    ds = read("RG3_UNCR.dcm")
    info = describe(ds)
    assert info.photometric == "MONOCHROME1" and info.invert_display
    (frame,) = frames_of(ds)
    np.testing.assert_array_equal(frame.filled(np.nan), apply_modality_lut(ds.pixel_array, ds))


def test_rgb_becomes_bt601_luminance():
    ds = read("SC_rgb.dcm")
    (frame,) = frames_of(ds)
    rgb = ds.pixel_array.astype(np.float64)
    expected = rgb @ [0.299, 0.587, 0.114]
    assert frame.shape == rgb.shape[:2]
    assert np.abs(frame - expected).max() <= 0.5 + 1e-6      # rounded to integers
    assert describe(ds).units == "luminance"


def test_luminance_16_bit_is_rounded_weighted_sum():
    rgb = np.array([[[65535, 0, 0], [0, 65535, 0], [0, 0, 65535], [1000, 2000, 3000]]], dtype=np.uint16)
    assert luminance(rgb).tolist() == [[19595, 38469, 7471, 1815]]


def test_ybr_is_converted_to_rgb_before_luminance():
    rgb = frames_of(read("SC_rgb.dcm"))[0]
    ybr = frames_of(read("SC_ybr_full_uncompressed.dcm"))[0]
    assert read("SC_ybr_full_uncompressed.dcm").PhotometricInterpretation == "YBR_FULL"
    assert abs(float(ybr.mean()) - float(rgb.mean())) < 1.0
    assert np.percentile(np.abs(ybr - rgb), 99) <= 3     # YCbCr round trip on 8 bits


def test_palette_goes_through_its_lut_then_luminance():
    ds = read("OBXXXX1A.dcm")
    (frame,) = frames_of(ds)
    rgb = apply_color_lut(ds.pixel_array, ds)[..., :3].astype(np.float64)
    np.testing.assert_allclose(frame, rgb @ [0.299, 0.587, 0.114], rtol=1e-6)
    # pydicom reads big-endian OW palette data as little endian; describe corrects it
    big = frames_of(read("OBXXXX1A_expb.dcm"))[0]
    np.testing.assert_array_equal(big, frame)


@pytest.mark.parametrize("name", ["emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm",
                                  "emri_small_jpeg_ls_lossless.dcm", "emri_small_big_endian.dcm"])
def test_multiframe_in_any_transfer_syntax_matches_native(name):
    native = list(iter_stored_frames(read("emri_small.dcm")))
    other = list(iter_stored_frames(read(name)))
    assert len(native) == len(other) == 10
    for a, b in zip(native, other):
        assert b.dtype.isnative and b.shape == (64, 64)
        np.testing.assert_array_equal(a, b)


def test_deferred_pixel_data_is_decoded_from_the_source():
    data = (DATA_STORE / "emri_small.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data), defer_size=1024)
    assert ds._dict[0x7FE00010].value is None                # pixel value not loaded
    from_source = list(iter_stored_frames(ds, data))
    assert ds._dict[0x7FE00010].value is None                # ... and still not loaded
    expected = list(iter_stored_frames(read("emri_small.dcm")))
    assert all(np.array_equal(a, b) for a, b in zip(from_source, expected))
    with open(DATA_STORE / "emri_small.dcm", "rb") as fp:   # a file object works as well
        ds = pydicom.dcmread(fp, defer_size=1024)
        assert all(np.array_equal(a, b) for a, b in zip(iter_stored_frames(ds, fp), expected))


def test_float_pixel_data_masks_non_finite_values():
    ds = read("CT_small.dcm")
    values = np.linspace(-1, 1, 128 * 128, dtype=np.float32).reshape(128, 128)
    values[0, 0] = np.nan
    del ds.PixelData
    ds.FloatPixelData = values.tobytes()
    ds.BitsAllocated = 32
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation", "PixelPaddingValue"):
        delattr(ds, keyword)
    (frame,) = frames_of(ds)
    assert describe(ds).is_float and frame.dtype == np.float32
    assert frame.mask[0, 0] and frame.count() == 128 * 128 - 1
    assert frame.min() == values[0, 1]


def test_no_pixel_data():
    with pytest.raises(PixelDecodeError) as err:
        describe(read("rtplan.dcm"))
    assert err.value.code == NO_PIXEL_DATA


def test_pixel_data_shorter_than_needed_in_memory_and_deferred():
    with pytest.raises(PixelDecodeError) as err:
        list(iter_stored_frames(read("MR_truncated.dcm")))
    assert err.value.code == UNREADABLE_PIXELS
    data = (TEST_FILES / "MR_truncated.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data), defer_size=1024)
    with pytest.raises(PixelDecodeError) as err:
        list(iter_stored_frames(ds, data))
    assert err.value.code == UNREADABLE_PIXELS and "8130 bytes" in err.value.message


def test_transfer_syntax_without_decoder():
    ds = read("emri_small_jpeg_2k_lossless.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.110"   # JPEG XL: no decoder here
    with pytest.raises(PixelDecodeError) as err:
        list(iter_stored_frames(ds))
    assert err.value.code == UNREADABLE_PIXELS


def test_corrupt_compressed_stream():
    ds = read("emri_small_RLE.dcm")
    ds.PixelData = ds.PixelData[:200] + b"\x00" * 100 + ds.PixelData[300:]
    with pytest.raises(PixelDecodeError) as err:
        list(iter_stored_frames(ds))
    assert err.value.code == UNREADABLE_PIXELS


def test_invalid_image_pixel_description():
    ds = read("CT_small.dcm")
    del ds.Rows
    with pytest.raises(PixelDecodeError) as err:
        describe(ds)
    assert err.value.code == UNREADABLE_PIXELS


def test_missing_photometric_interpretation_is_assumed_monochrome2():
    ds = read("MR_small.dcm")
    expected = ds.pixel_array
    ds = copy.deepcopy(ds)
    del ds.PhotometricInterpretation
    np.testing.assert_array_equal(next(iter_stored_frames(ds)), expected)


def test_never_builds_the_whole_volume(monkeypatch):
    """Frames come one at a time: Dataset.pixel_array (all frames) is never used."""
    def whole_volume(self):
        raise AssertionError("pixel_array decodes every frame at once")
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(whole_volume))
    ds = read("emri_small_RLE.dcm")
    it = iter_frames(ds)
    first = next(it)
    assert first.shape == (64, 64)
    assert len([first, *it]) == 10
