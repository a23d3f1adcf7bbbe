"""NON_CONFORMANT: what breaks PS3.10 / PS3.5 in an object pydicom still reads
(udfs/conformance.py), through the whole header parse of real files."""
from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import DataElement

from dicom_triage.jobs.config import load_settings
from dicom_triage.jobs.runtime import header_policy
from dicom_triage.udfs.headers import parse_object

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
POLICY = header_policy(load_settings(), b"conformance-test-secret")


def parse(data: bytes) -> dict:
    return parse_object(lambda start, end: data[start:end], len(data), POLICY)


def written(change) -> bytes:
    """MR_small.dcm with one change applied, saved as it is (no fixing up)."""
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    patch = change(ds)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    data = buffer.getvalue()
    return patch(data) if patch else data


def text_as(keyword: str, vr: str, text: str):
    """Write `text` under `keyword` with `vr` although it is no valid `vr` value
    (pydicom refuses to encode it): written as LO, the VR bytes then patched."""
    def change(ds):
        tag = pydicom.datadict.tag_for_keyword(keyword)
        ds[tag] = DataElement(tag, "LO", text)
        marker = tag.to_bytes(4, "big")
        marker = marker[1::-1] + marker[:1:-1]  # group, element: little endian

        def patch(data: bytes) -> bytes:
            assert data.count(marker + b"LO") == 1
            return data.replace(marker + b"LO", marker + vr.encode())
        return patch
    return change


def raw_value(keyword: str, vr: str, value):
    def change(ds):
        tag = pydicom.datadict.tag_for_keyword(keyword)
        ds[tag] = DataElement(tag, vr, value, validation_mode=pydicom.config.IGNORE)
    return change


def test_conformant_files_have_no_problems():
    for name in ("MR_small.dcm", "CT_small.dcm", "rtplan.dcm", "JPEG2000.dcm"):
        row = parse((PYDICOM_FILES / name).read_bytes())
        assert row.get("error_code") is None and row["conformance"] == [], name


@pytest.mark.parametrize("change, expected", [
    (text_as("RepetitionTime", "DS", "4000,0"), "RepetitionTime '4000,0': a decimal comma"),
    (text_as("EchoTrainLength", "IS", "17A"), "EchoTrainLength '17A' is not an integer string"),
    (raw_value("MagneticFieldStrength", "FD", 3.0), "MagneticFieldStrength written as FD; the standard says DS"),
    (raw_value("SOPInstanceUID", "UI", "1.2.840.0123.5"), "SOPInstanceUID is not a valid UID"),
    (raw_value("SOPInstanceUID", "UI", "1.2.840.12a3.5"), "SOPInstanceUID is not a valid UID"),
    (raw_value("SOPInstanceUID", "UI", "1.2." + "3" * 70), "SOPInstanceUID is not a valid UID"),
    (lambda ds: delattr(ds.file_meta, "MediaStorageSOPClassUID"),
     "file meta MediaStorageSOPClassUID missing (Type 1)"),
])
def test_each_kind_of_break_is_named(change, expected):
    row = parse(written(change))
    assert row.get("error_code") is None, row.get("error_message")
    assert expected in row["conformance"], row["conformance"]


def test_pydicoms_bad_file_is_readable_and_non_conformant():
    row = parse((PYDICOM_FILES / "badVR.dcm").read_bytes())
    assert row.get("error_code") is None
    assert row["conformance"] == ["NumberOfFrames '1A' is not an integer string"]
