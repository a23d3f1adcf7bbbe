"""The demo delivery generator (jobs.demo_data): real files, no mocks.

One delivery is generated per test module into a temporary folder; a second
build with the same seed must give the same bytes, and provides the intact
originals of the broken objects. The S3 test writes to a moto server on
loopback started by this module's own fixture.
"""
from __future__ import annotations

import csv
import io
import json
import os
import struct
from collections import Counter, defaultdict

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from dicom_triage.jobs.demo import sources
from dicom_triage.jobs.demo_data import (GROUND_TRUTH_COLUMNS, GROUND_TRUTH_CSV, GROUND_TRUTH_JSON,
                            build_delivery, delivery_files, generate_delivery)
from dicom_triage.schemas.reasons import ALL_CODES, INGEST_ERROR_CODES

SEED = 7
INGEST_ERRORS = ("EMPTY_FILE", "NOT_DICOM", "TRUNCATED", "CORRUPT_HEADER")
# Every planted defect and its minimum count at scale 1.
MINIMUMS = {code: 3 for code in INGEST_ERRORS} | {code: 2 for code in (
    "EXACT_DUPLICATE", "DUPLICATE_SOP_UID", "UNEXPECTED_MODALITY", "IRRELEVANT_CONTENT",
    "NO_PIXEL_DATA", "LOCALIZER", "SATURATED", "NOISY", "BLURRY", "LOW_DYNAMIC_RANGE",
    "CONSTANT_IMAGE", "MISSING_SLICES", "IRREGULAR_SPACING", "INCONSISTENT_ORIENTATION",
    "TOO_FEW_SLICES", "ANATOMY_HEADER_MISMATCH", "BURNED_IN_ANNOTATION", "UNEXPECTED_ANATOMY")} | {
    "NEAR_DUPLICATE": 4}
REGIONS = {"head", "neck", "chest", "abdomen", "pelvis", "extremity", "whole_body", "none"}
MNI = "nilearn:MNI152 2009a T1/GM/WM"


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    out = tmp_path_factory.mktemp("delivery")
    summary = generate_delivery(str(out), seed=SEED)
    with open(out / GROUND_TRUTH_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    truth = json.loads((out / GROUND_TRUTH_JSON).read_text())
    return {"out": out, "summary": summary, "rows": rows, "truth": truth,
            "by_path": {row["path"]: row for row in rows}}


@pytest.fixture(scope="module")
def rebuilt():
    """A second, in-memory build with the same seed (Items carry the intact originals)."""
    return build_delivery(SEED)


def read(delivery, path: str) -> bytes:
    return (delivery["out"] / path).read_bytes()


def rows_with(delivery, **match):
    return [r for r in delivery["rows"] if all(r[k] == v for k, v in match.items())]


def dicom_rows(delivery):
    """Readable DICOM objects."""
    return [r for r in delivery["rows"] if not r["ingest_error"]]


# --------------------------------------------------------------------------- files and rows

def test_every_ground_truth_row_is_a_file_of_its_size(delivery):
    out = delivery["out"]
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == set(delivery["by_path"]) | {GROUND_TRUTH_CSV, GROUND_TRUTH_JSON}
    for row in delivery["rows"]:
        assert os.path.getsize(out / row["path"]) == int(row["size_bytes"]), row["path"]
        parts = row["path"].split("/")
        assert len(parts) == 5 and parts[-1].endswith(".dcm"), row["path"]
        assert parts[0] == row["site"]
    assert tuple(delivery["rows"][0].keys()) == GROUND_TRUTH_COLUMNS


def test_vocabulary_of_the_ground_truth(delivery):
    for row in delivery["rows"]:
        reasons = [r for r in row["reasons"].split(";") if r]
        assert set(reasons) <= ALL_CODES, row
        assert row["category"] == "good" and not reasons or row["category"] in reasons, row
        assert row["true_region"] in REGIONS, row
        if row["ingest_error"]:
            assert row["ingest_error"] in INGEST_ERROR_CODES and reasons == [row["ingest_error"]]
        else:
            assert row["sop_instance_uid"] and row["series_uid"] and row["study_uid"], row
            assert row["patient_key"], row


def test_counts_meet_the_planted_shares(delivery):
    rows, truth, summary = delivery["rows"], delivery["truth"], delivery["summary"]
    categories = Counter(r["category"] for r in rows)
    reasons = Counter(code for r in rows for code in r["reasons"].split(";") if code)
    for code, minimum in MINIMUMS.items():
        assert reasons[code] >= minimum, (code, reasons[code])
    for code in INGEST_ERRORS:
        assert categories[code] >= 3
    assert 200 <= len(rows) <= 400
    assert 0.65 <= categories["good"] / len(rows) <= 0.85
    assert truth["categories"] == summary["categories"] == dict(sorted(categories.items()))
    assert truth["ingest_errors"] == {k: v for k, v in sorted(
        Counter(r["ingest_error"] for r in rows if r["ingest_error"]).items())}
    assert truth["files"] == len(rows) and truth["seed"] == SEED and truth["scale"] == 1
    assert truth["bytes"] == sum(int(r["size_bytes"]) for r in rows) < 60 * 2**20
    assert len({r["site"] for r in rows}) == 4


# --------------------------------------------------------------------------- determinism

def test_same_seed_gives_the_same_bytes(delivery, rebuilt):
    files = delivery_files(rebuilt)
    assert set(files) == set(delivery["by_path"]) | {GROUND_TRUTH_CSV, GROUND_TRUTH_JSON}
    for path, data in files.items():
        assert read(delivery, path) == data, path


def test_another_seed_gives_other_uids_and_patients(delivery):
    other = build_delivery(SEED + 1)
    uids = {r["sop_instance_uid"] for r in delivery["rows"] if r["sop_instance_uid"]}
    assert not uids & {i.sop_instance_uid for i in other.items if i.sop_instance_uid}
    by_keyword = delivery["truth"]["planted_identifiers_by_keyword"]
    for keyword in ("PatientName", "PatientID", "AccessionNumber"):   # sites and staff stay
        assert not set(by_keyword[keyword]) & other.identifiers[keyword], keyword


@pytest.mark.slow
def test_scale_multiplies_patients_and_series(delivery):
    doubled = build_delivery(SEED, scale=2)
    rows = [item.row() for item in doubled.items]
    once = Counter(r["category"] for r in delivery["rows"])
    assert Counter(r["category"] for r in rows) == Counter({k: 2 * v for k, v in once.items()})
    assert len({r["patient_key"] for r in rows}) == 2 * len({r["patient_key"] for r in delivery["rows"]})
    readable = [r for r in rows if not r["ingest_error"]]
    assert len({r["series_uid"] for r in readable}) == 2 * len(
        {r["series_uid"] for r in dicom_rows(delivery)})
    assert len({r["path"] for r in rows}) == len(rows)
    assert [r for r in rows if r["path"] in delivery["by_path"]] == [
        r for r in rows if r["patient_key"] in {x["patient_key"] for x in delivery["rows"]}]


# --------------------------------------------------------------------------- ingest errors

def test_empty_files_have_no_bytes(delivery):
    rows = rows_with(delivery, ingest_error="EMPTY_FILE")
    assert len(rows) >= 3
    assert all(read(delivery, r["path"]) == b"" for r in rows)


def test_not_dicom_files_fail_without_force(delivery):
    rows = rows_with(delivery, ingest_error="NOT_DICOM")
    kinds = set()
    for row in rows:
        data = read(delivery, row["path"])
        assert len(data) > 0 and data[128:132] != b"DICM", row["path"]
        group = struct.unpack("<H", data[:2])[0]
        assert group not in (0x0002, 0x0008), "must not look like a preamble-less dataset"
        with pytest.raises(InvalidDicomError):
            pydicom.dcmread(io.BytesIO(data))
        kinds.add(data[:4])
    assert b"\x89PNG" in kinds and b"PK\x03\x04" in kinds and len(kinds) >= 4


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_truncated_files_are_strict_prefixes_of_valid_files(delivery, rebuilt):
    items = {i.path: i for i in rebuilt.items}
    rows = rows_with(delivery, ingest_error="TRUNCATED")
    assert len(rows) >= 3
    cut_in_header = cut_in_pixels = 0
    for row in rows:
        data, intact = read(delivery, row["path"]), items[row["path"]].intact
        assert len(data) < len(intact) and intact.startswith(data), row["path"]
        full = pydicom.dcmread(io.BytesIO(intact))
        full.pixel_array  # the original is a valid, decodable file
        stream = io.BytesIO(intact)
        pydicom.dcmread(stream, stop_before_pixels=True)
        pixel_start = stream.tell()
        assert data[128:132] == b"DICM" and len(data) > 132
        if len(data) < pixel_start:
            cut_in_header += 1
        else:
            cut_in_pixels += 1
            with pytest.raises(Exception):   # not enough pixel bytes to decode
                pydicom.dcmread(io.BytesIO(data)).pixel_array
    assert cut_in_header >= 1 and cut_in_pixels >= 1


def test_corrupt_headers_raise_without_being_short(delivery, rebuilt):
    items = {i.path: i for i in rebuilt.items}
    rows = rows_with(delivery, ingest_error="CORRUPT_HEADER")
    assert len(rows) >= 3
    for row in rows:
        data, intact = read(delivery, row["path"]), items[row["path"]].intact
        assert len(data) == len(intact) and data != intact, row["path"]
        assert data[128:132] == b"DICM"
        meta = pydicom.filereader.read_file_meta_info(delivery["out"] / row["path"])
        assert meta.MediaStorageSOPInstanceUID == row["sop_instance_uid"]
        pydicom.dcmread(io.BytesIO(intact), stop_before_pixels=True)
        with pytest.raises(Exception) as caught:
            pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        assert not isinstance(caught.value, (EOFError, struct.error)), caught.value
        message = str(caught.value).lower()
        assert "no tag to read" not in message and "end of file" not in message
        assert "truncated" not in message and "incomplete" not in message


# --------------------------------------------------------------------------- readable objects

def test_readable_objects_parse_and_images_decode(delivery):
    syntaxes = Counter()
    multiframe = 0
    expect = delivery["truth"]["expectations"]
    for row in dicom_rows(delivery):
        ds = pydicom.dcmread(delivery["out"] / row["path"])
        assert ds.preamble == b"\x00" * 128
        assert str(ds.SOPInstanceUID) == row["sop_instance_uid"]
        assert str(ds.SeriesInstanceUID) == row["series_uid"]
        assert str(ds.StudyInstanceUID) == row["study_uid"]
        assert ds.Modality == row["modality"] and str(ds.get("BodyPartExamined", "")) == row["body_part"]
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        if "NO_PIXEL_DATA" in row["reasons"]:
            assert "PixelData" not in ds
            continue
        assert all(expect["rows_columns"][0] <= n <= expect["rows_columns"][1]
                   for n in (ds.Rows, ds.Columns)), row["path"]
        if "PixelSpacing" in ds:
            low, high = expect["pixel_spacing_mm"]
            assert all(low <= float(v) <= high for v in ds.PixelSpacing), row["path"]
        if "ImagePositionPatient" in ds:
            low, high = expect["slice_thickness_mm"]
            assert low <= float(ds.SliceThickness) <= high, row["path"]
        array = ds.pixel_array
        frames = int(ds.get("NumberOfFrames", 1))
        multiframe += frames > 1
        assert array.shape[int(frames > 1):][:2] == (ds.Rows, ds.Columns), row["path"]
        syntaxes[ds.file_meta.TransferSyntaxUID.name] += 1
        if row["category"] == "good":
            assert np.ptp(array) > 0, row["path"]
    assert multiframe >= 3
    assert len(syntaxes) >= 7, syntaxes   # native, RLE, JPEG 2000 (lossless and lossy), JPEG-LS, JPEG ...


def test_mr_series_from_mni_have_consistent_geometry(delivery):
    series = defaultdict(list)
    for row in dicom_rows(delivery):
        if row["source"] == MNI and row["modality"] == "MR" and row["category"] not in (
                "BURNED_IN_ANNOTATION", "LOCALIZER", "NEAR_DUPLICATE"):   # single exported images
            series[row["series_uid"]].append(pydicom.dcmread(delivery["out"] / row["path"],
                                                             stop_before_pixels=True))
    assert len(series) >= 15
    checked_regular = 0
    for uid, slices in series.items():
        reasons = {r for s in slices for r in delivery["by_path"][_path_of(delivery, s)]["reasons"].split(";")}
        first = slices[0]
        assert first.BitsAllocated == 16 and first.PhotometricInterpretation == "MONOCHROME2"
        assert float(first.PixelSpacing[0]) > 0 and float(first.SliceThickness) > 0
        orientations = {tuple(np.round(np.array(s.ImageOrientationPatient, float), 5)) for s in slices}
        if "INCONSISTENT_ORIENTATION" in reasons:
            assert len(orientations) == 2
            continue
        assert len(orientations) == 1, uid
        iop = np.array(first.ImageOrientationPatient, float)
        row_dir, col_dir = iop[:3], iop[3:]
        assert abs(row_dir @ col_dir) < 1e-4 and abs(np.linalg.norm(row_dir) - 1) < 1e-4
        normal = np.cross(row_dir, col_dir)
        positions = np.array([np.array(s.ImagePositionPatient, float) for s in slices])
        z = positions @ normal
        order = np.argsort(z)
        # Every slice sits on the same line along the normal (no in-plane drift).
        in_plane = positions[order] - np.outer(z[order], normal)
        assert np.abs(in_plane - in_plane[0]).max() < 1e-3, uid
        steps = np.diff(z[order])
        numbers = np.array([int(s.InstanceNumber) for s in slices])[order]
        assert np.all(np.diff(numbers) > 0), "instance numbers follow the positions"
        if "TOO_FEW_SLICES" in reasons:
            assert len(slices) == 2
            continue
        step = np.min(steps)
        if "MISSING_SLICES" in reasons:
            assert sorted(np.round(steps / step).astype(int).tolist())[-1] == 3
            continue
        assert np.allclose(steps, step, atol=1e-3), (uid, steps)
        if "SpacingBetweenSlices" in first:
            assert abs(float(first.SpacingBetweenSlices) - step) < 1e-3
        assert np.allclose(np.array([float(s.SliceLocation) for s in slices])[order], z[order], atol=1e-3)
        checked_regular += 1
    assert checked_regular >= 12


def _path_of(delivery, ds) -> str:
    uid = str(ds.SOPInstanceUID)
    return next(r["path"] for r in delivery["rows"] if r["sop_instance_uid"] == uid
                and not r["ingest_error"] and r["series_uid"] == str(ds.SeriesInstanceUID))


def test_duplicates_point_at_earlier_objects(delivery):
    rows = [r for r in delivery["rows"] if r["duplicate_of"]]
    assert rows
    for row in rows:
        original = delivery["by_path"][row["duplicate_of"]]
        assert row["duplicate_of"] < row["path"]
        copy = pydicom.dcmread(delivery["out"] / row["path"])
        first = pydicom.dcmread(delivery["out"] / original["path"])
        same_pixels = np.array_equal(copy.pixel_array, first.pixel_array)
        assert same_pixels == ("EXACT_DUPLICATE" in row["reasons"]), row["path"]
        same_uid = copy.SOPInstanceUID == first.SOPInstanceUID
        assert same_uid == ("DUPLICATE_SOP_UID" in row["reasons"]), row["path"]
        if same_pixels and same_uid:
            assert read(delivery, row["path"]) == read(delivery, original["path"])


def _display(delivery, path: str) -> np.ndarray:
    """The embed stage's network input of a file, as one grey 224 x 224 image."""
    from dicom_triage.udfs.embedding import preprocess

    return preprocess(read(delivery, path))[0].ravel()


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_near_duplicates_are_changed_copies_and_patients_differ(delivery):
    rows = [r for r in delivery["rows"] if "NEAR_DUPLICATE" in r["reasons"]]
    assert len({r["note"] for r in rows}) >= 4, "several kinds of change"
    near = []
    for row in rows:
        original = delivery["by_path"][row["duplicate_of"]]
        assert row["category"] == "NEAR_DUPLICATE" and not original["duplicate_of"]
        assert row["patient_key"] == original["patient_key"]
        assert row["series_uid"] != original["series_uid"]
        assert row["sop_instance_uid"] != original["sop_instance_uid"]
        if "cropped" in row["note"]:      # the copy is a window of the original's pixels
            copy = pydicom.dcmread(delivery["out"] / row["path"]).pixel_array
            first = pydicom.dcmread(delivery["out"] / original["path"]).pixel_array
            h, w = copy.shape
            assert 0 < h * w < first.size and any(
                np.array_equal(first[y:y + h, x:x + w], copy)
                for y in range(first.shape[0] - h + 1) for x in range(first.shape[1] - w + 1))
            continue
        near.append(_similarity(_display(delivery, row["path"]), _display(delivery, original["path"])))
    # The same level of two patients' brains (same site, protocol and slice number).
    t1 = sorted((r for r in delivery["rows"] if r["category"] == "good" and r["site"] == "site_a"
                 and r["modality"] == "MR" and r["path"].endswith("se_002/im_0007.dcm")), key=lambda r: r["path"])
    assert len({r["patient_key"] for r in t1}) >= 2
    apart = _similarity(_display(delivery, t1[0]["path"]), _display(delivery, t1[1]["path"]))
    print(f"\nnear duplicates' similarity to their originals {np.round(near, 3)}; "
          f"two patients at the same level {apart:.3f}")
    assert min(near) > 0.9 and apart < 0.9


def test_planted_identifiers_are_in_the_files_and_nowhere_else(delivery):
    planted = delivery["truth"]["planted_identifiers"]
    by_keyword = delivery["truth"]["planted_identifiers_by_keyword"]
    assert {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
            "ReferringPhysicianName", "OperatorsName", "InstitutionAddress"} <= {
        k for k, v in by_keyword.items() if v}
    assert len(planted) >= 60
    blob = b"\n".join(read(delivery, r["path"]) for r in delivery["rows"])
    for value in planted:
        assert value.encode("latin-1") in blob, value
    names_and_uids = " ".join(r["path"] + " " + r["study_uid"] + r["series_uid"] + r["sop_instance_uid"]
                              for r in delivery["rows"])
    for value in planted:
        assert value not in names_and_uids, value
    for source in delivery["truth"]["sources"]:
        if ":" in source and not source.startswith("nilearn"):
            label, name = source.split(":", 1)
            raw = sources.source_bytes(label, name)
            assert not any(v.encode("latin-1") in raw for v in planted), source
    for row in delivery["rows"]:
        if not row["ingest_error"]:
            assert row["patient_key"] in by_keyword["PatientID"]


# --------------------------------------------------------------------------- object storage

@pytest.fixture
def moto_s3(monkeypatch):
    """A real S3-compatible endpoint on loopback (moto), with fake credentials."""
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_generate_into_an_s3_bucket(moto_s3, delivery):
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto_s3}, skip_instance_cache=True)
    fs.mkdir("demo-bucket")
    summary = generate_delivery("s3://demo-bucket/deliveries/demo", seed=SEED,
                                storage_options={"endpoint_url": moto_s3})
    assert summary["files"] == len(delivery["rows"])
    listed = fs.find("demo-bucket/deliveries/demo", detail=True)
    prefix = "demo-bucket/deliveries/demo/"
    sizes = {key[len(prefix):]: info["size"] for key, info in listed.items()}
    expected = {r["path"]: int(r["size_bytes"]) for r in delivery["rows"]}
    assert {k: v for k, v in sizes.items() if not k.startswith("_")} == expected
    assert fs.cat_file(prefix + GROUND_TRUTH_CSV) == read(delivery, GROUND_TRUTH_CSV)
    assert fs.cat_file(prefix + GROUND_TRUTH_JSON) == read(delivery, GROUND_TRUTH_JSON)
    some_dicom = next(r["path"] for r in delivery["rows"] if r["category"] == "good")
    assert fs.cat_file(prefix + some_dicom) == read(delivery, some_dicom)
