"""Header parsing on real DICOM files (pydicom's and pydicom-data's test sets),
including the broken ones they ship, and on damaged copies made here."""
from __future__ import annotations

import datetime as dt
import io
import json
import os
from pathlib import Path

import pydicom
import pytest

from dicom_triage.jobs.config import load_settings
from dicom_triage.jobs.runtime import header_policy
from dicom_triage.schemas.ingest import INSTANCES, PARSED, PROMOTED_COLUMNS, snake_case
from dicom_triage.udfs.headers import HeaderPolicy, parse_object
from dicom_triage.udfs.identifiers import keyed_hash
from dicom_triage.udfs.object_reader import BlockReader, ReadBudgetExceeded

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DATA_STORE = Path(__import__("data_store").__file__).parent / "data"
SECRET = b"test-secret-0123456789"
POLICY = header_policy(load_settings(), SECRET)  # the shipped defaults


def parse_bytes(data: bytes, policy: HeaderPolicy = POLICY) -> dict:
    return parse_object(lambda start, end: data[start:end], len(data), policy)


def parse_file(path: Path, policy: HeaderPolicy = POLICY) -> dict:
    return parse_bytes(path.read_bytes(), policy)


def test_snake_case_names():
    assert snake_case("SliceThickness") == "slice_thickness"
    assert snake_case("SOPInstanceUID") == "sop_instance_uid"
    assert snake_case("XRayTubeCurrent") == "x_ray_tube_current"
    assert snake_case("MRAcquisitionType") == "mr_acquisition_type"
    assert snake_case("KVP") == "kvp"


def test_ct_header_typed_values():
    row = parse_file(PYDICOM_FILES / "CT_small.dcm")
    assert row["error_code"] is None
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm", stop_before_pixels=True)
    assert row["sop_instance_uid"] == ds.SOPInstanceUID
    assert row["modality"] == "CT"
    assert row["rows"] == 128 and row["columns"] == 128
    assert row["pixel_spacing"] == pytest.approx([float(v) for v in ds.PixelSpacing])
    assert row["slice_thickness"] == pytest.approx(float(ds.SliceThickness))
    assert row["image_position_patient"] == pytest.approx([float(v) for v in ds.ImagePositionPatient])
    assert len(row["image_orientation_patient"]) == 6
    assert row["rescale_intercept"] == pytest.approx(float(ds.RescaleIntercept))
    assert row["kvp"] == pytest.approx(float(ds.KVP))
    assert row["image_type"] == list(ds.ImageType)
    assert row["study_date"] == dt.date(int(ds.StudyDate[:4]), int(ds.StudyDate[4:6]), int(ds.StudyDate[6:]))
    assert row["transfer_syntax_uid"] == str(ds.file_meta.TransferSyntaxUID)
    assert row["sop_class_name"] == "CT Image Storage"
    assert row["has_pixel_data"] is True and row["has_preamble"] is True
    assert row["pixel_data_offset"] > 0


def test_identifiers_are_keyed_hashes_everywhere():
    path = PYDICOM_FILES / "CT_small.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    row = parse_file(path)
    text = json.dumps(row, default=str)
    assert str(ds.PatientName) and str(ds.PatientName) not in text
    assert ds.PatientID not in text
    assert row["patient_key"] == keyed_hash(SECRET, ds.PatientID)
    header = json.loads(row["header_json"])
    assert header["PatientID"]["Value"] == [keyed_hash(SECRET, ds.PatientID)]
    assert header["PatientName"]["Value"][0].startswith("hmac:")
    assert "PatientID" in row["identifiers_present"]
    # Another secret gives other keys: nobody without the secret can test a guess.
    other = parse_file(path, HeaderPolicy(secret=b"another-secret-9876543210"))
    assert other["patient_key"] != row["patient_key"]


def test_header_json_is_keyed_by_keyword_without_pixels():
    row = parse_file(PYDICOM_FILES / "MR_small.dcm")
    header = json.loads(row["header_json"])
    assert header["Modality"] == {"vr": "CS", "Value": ["MR"]}
    assert "TransferSyntaxUID" in header  # file meta is kept
    assert "PixelData" not in header and "7FE00010" not in header


def test_private_values_dropped_unless_configured():
    path = PYDICOM_FILES / "CT_small.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    private = [elem for elem in ds if elem.tag.is_private]
    assert private, "test file should carry private elements"
    header = json.loads(parse_file(path)["header_json"])
    keys = [f"{int(elem.tag):08X}" for elem in private]
    assert all(header[k].get("Private") and "Value" not in header[k] for k in keys if k in header)


def test_multiframe_and_compressed_headers():
    row = parse_file(DATA_STORE / "emri_small_jpeg_2k_lossless.dcm")
    assert row["error_code"] is None
    assert row["number_of_frames"] == 10
    assert row["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.90"
    assert row["has_pixel_data"]


def test_big_endian_and_implicit_files_parse():
    for name in ("MR_small_bigendian.dcm", "MR_small_implicit.dcm"):
        row = parse_file(PYDICOM_FILES / name)
        assert row["error_code"] is None, (name, row.get("error_message"))
        assert row["rows"] == 64


def test_shipped_truncated_files_are_truncated():
    for name in ("MR_truncated.dcm", "rtplan_truncated.dcm"):
        row = parse_file(PYDICOM_FILES / name)
        assert row["error_code"] == "TRUNCATED", (name, row)
    row = parse_file(DATA_STORE / "emri_small_jpeg_2k_lossless_too_short.dcm")
    assert row["error_code"] == "TRUNCATED"


def test_encapsulated_files_with_trailing_data_are_not_truncated():
    # DICOM/TIFF dual files carry TIFF data after the pixel data's delimiter.
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"):
        assert parse_file(PYDICOM_FILES / name)["error_code"] is None


def test_empty_and_not_dicom():
    assert parse_bytes(b"")["error_code"] == "EMPTY_FILE"
    assert parse_bytes(b"hello, this is a text file\n" * 20)["error_code"] == "NOT_DICOM"
    png = b"\x89PNG\r\n\x1a\n" + bytes(300)
    assert parse_bytes(png)["error_code"] == "NOT_DICOM"
    assert parse_file(PYDICOM_FILES / "README.txt" if (PYDICOM_FILES / "README.txt").exists()
                      else PYDICOM_FILES / "rtplan.dump")["error_code"] == "NOT_DICOM"


def test_preamble_less_dataset_is_accepted_when_plausible():
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=True, little_endian=True)  # no preamble
    raw = buffer.getvalue()
    assert raw[128:132] != b"DICM" and len(raw) < len(data) + 100
    row = parse_bytes(raw)
    assert row["error_code"] is None and row["has_preamble"] is False
    assert row["sop_instance_uid"] == ds.SOPInstanceUID


@pytest.mark.parametrize("cut", [140, 200, 700, 1500, 3000, 6000])
def test_cut_inside_header_is_truncated(cut):
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    assert parse_bytes(data[:cut])["error_code"] == "TRUNCATED"


def test_cut_inside_pixels_is_truncated():
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    pixel_start = parse_bytes(data)["pixel_data_offset"] + 12
    assert parse_bytes(data[:pixel_start + 1000])["error_code"] == "TRUNCATED"
    assert parse_bytes(data[:pixel_start + 6])["error_code"] == "TRUNCATED"
    assert parse_bytes(data)["error_code"] is None


def test_corrupt_dataset_bytes():
    data = bytearray((PYDICOM_FILES / "CT_small.dcm").read_bytes())
    ds_start = data.index(b"\x08\x00\x05\x00")  # first dataset element after the meta group
    data[ds_start + 4:ds_start + 6] = b"\x01\x02"  # invalid VR bytes
    data[ds_start + 6:ds_start + 8] = b"\xff\xff"
    row = parse_bytes(bytes(data))
    assert row["error_code"] == "CORRUPT_HEADER", row


def test_absurd_value_length_is_bounded():
    data = bytearray((PYDICOM_FILES / "CT_small.dcm").read_bytes())
    # ImageComments-sized text with a 3.9 GB declared length: deferred, never read.
    pos = data.index(b"\x08\x00\x05\x00")
    fake = b"\x08\x00\x05\x00UT\x00\x00\xf0\xff\xff\xff"
    broken = bytes(data[:pos]) + fake + bytes(data[pos:])
    reads = []

    def fetch(start, end):
        reads.append(end - start)
        return broken[start:end]

    row = parse_object(fetch, len(broken), POLICY)
    assert row["error_code"] in ("TRUNCATED", "CORRUPT_HEADER")
    assert sum(reads) <= len(broken)


def test_header_reads_only_the_beginning():
    data = (DATA_STORE / "MR2_UNCR.dcm").read_bytes()  # 1024x1024 16-bit: 2 MB of pixels
    fetched = []

    def fetch(start, end):
        fetched.append((start, end))
        return data[start:end]

    row = parse_object(fetch, len(data), POLICY)
    assert row["error_code"] is None
    header_size = row["pixel_data_offset"] + 12
    assert row["header_bytes_read"] <= max(2 * header_size, POLICY.first_block_bytes + 64)
    assert row["header_bytes_read"] < len(data) / 50


def test_block_reader_budget_and_skips():
    data = bytes(range(256)) * 4096  # 1 MiB
    reader = BlockReader(lambda s, e: data[s:e], len(data), first_block=1024, max_block=4096, budget=20000)
    assert reader.read(10) == data[:10]
    reader.seek(500_000)  # a skipped long value is never fetched
    assert reader.read(4) == data[500_000:500_004]
    assert reader.bytes_fetched < 10_000
    with pytest.raises(ReadBudgetExceeded):
        reader.seek(0)
        reader.read(50_000)


def test_slow_parse_is_cut_off_by_time_bound():
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    import time

    def slow_fetch(start, end):
        time.sleep(0.3)
        return data[start:end]

    policy = HeaderPolicy(secret=SECRET, first_block_bytes=256, max_block_bytes=256, timeout_seconds=0.5)
    row = parse_object(slow_fetch, len(data), policy)
    assert row["error_code"] == "TIMEOUT"


def test_every_shipped_file_gives_one_row_with_known_columns():
    files = [p for folder in (PYDICOM_FILES, DATA_STORE) for p in folder.rglob("*") if p.is_file()]
    assert len(files) > 100
    outcomes = {}
    columns = set(PARSED.fieldNames())
    for path in files:
        row = parse_file(path)
        assert set(row) - {"has_preamble"} <= columns, set(row) - columns
        outcomes[row["error_code"]] = outcomes.get(row["error_code"], 0) + 1
    print("outcomes over shipped test files:", outcomes)
    assert outcomes[None] > 200
    assert set(outcomes) <= {None, "NOT_DICOM", "TRUNCATED", "CORRUPT_HEADER", "EMPTY_FILE"}


def test_promoted_columns_exist_in_schema():
    names = set(INSTANCES.fieldNames())
    assert set(PROMOTED_COLUMNS.values()) <= names
    assert {"path", "size_bytes", "modified_at", "header_json", "run_id"} <= names
    assert len(names) == len(INSTANCES.fieldNames())
    assert os.path.basename(__file__) == "test_headers.py"


def test_an_image_object_without_pixel_data_is_whole_not_truncated():
    """The bytes decide: a file that ends exactly after its last element is
    whole (the pixels stage calls it NO_PIXEL_DATA), one cut inside an
    element is TRUNCATED."""
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer)
    row = parse_bytes(buffer.getvalue())
    assert row["error_code"] is None and row["has_pixel_data"] is False
    assert parse_bytes(buffer.getvalue()[:-3])["error_code"] == "TRUNCATED"


def test_a_damaged_length_inside_a_whole_file_is_a_corrupt_header():
    data = bytearray((PYDICOM_FILES / "CT_small.dcm").read_bytes())
    at = data.index(b"\x08\x00\x30\x10")     # StudyDescription (0008,1030), explicit VR LO: 2-byte length
    data[at + 6:at + 8] = b"\xff\x7f"         # 32767 bytes: into the next elements, short of the pixel data
    row = parse_bytes(bytes(data))
    assert row["error_code"] == "CORRUPT_HEADER", row
    whole = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    assert parse_bytes(whole[:at + 10])["error_code"] == "TRUNCATED"   # an undamaged file cut inside it


def test_header_policy_defaults_are_the_configuration_defaults():
    """The parser's own defaults (used by tools and tests that build a policy
    directly) are the ones conf/default.yaml gives the job."""
    from dataclasses import fields
    configured = header_policy(load_settings(), b"any-secret")
    bare = HeaderPolicy(secret=b"any-secret")
    for item in fields(HeaderPolicy):
        if item.name not in ("secret", "hash_keywords", "drop_keywords", "json_max_chars"):
            assert getattr(bare, item.name) == getattr(configured, item.name), item.name


def test_identifiers_outside_the_keyword_list_are_not_stored_in_clear():
    """Person names anywhere (sequences included), the further Basic Profile
    identifiers, and the patient's name typed into a description."""
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ds.PatientName = "KOWALSKI^MAGDALENA"
    ds.StudyDescription = "CT HEAD Kowalski"
    ds.SeriesDescription = "magdalena follow-up"
    ds.ConsultingPhysicianName = "OKAFOR^CHIDI"
    ds.ResponsiblePerson = "LINDQVIST^BRITT"
    ds.PatientTelecomInformation = "+48 601 555 019"
    ds.AdmissionID = "ADM-88231907"
    ds.PatientBirthTime = "073015"
    step = Dataset()
    step.ScheduledPerformingPhysicianName = "ABERNATHY^ROSE"
    ds.ScheduledProcedureStepSequence = [step]
    context = Dataset()
    context.PersonName = "TANAKA^HIRO"
    ds.AcquisitionContextSequence = [context]
    buffer = io.BytesIO()
    ds.save_as(buffer)
    row = parse_bytes(buffer.getvalue())
    text = json.dumps(row, default=str).upper()
    for clear in ("KOWALSKI", "MAGDALENA", "OKAFOR", "LINDQVIST", "601 555 019", "ADM-88231907", "073015",
                  "ABERNATHY", "TANAKA"):
        assert clear not in text, clear
    assert row["study_description"] == "CT HEAD [name]" and row["series_description"] == "[name] follow-up"
    header = json.loads(row["header_json"])
    assert header["ConsultingPhysicianName"]["Value"][0].startswith("hmac:")
    assert header["ScheduledProcedureStepSequence"]["Value"][0]["ScheduledPerformingPhysicianName"][
        "Value"][0].startswith("hmac:")
    for line in ("ConsultingPhysicianName is a person's name", "ResponsiblePerson is a person's name",
                 "PatientTelecomInformation present", "AdmissionID present", "PatientBirthTime present",
                 "StudyDescription contains the patient's name"):
        assert line in row["phi_evidence"], line
