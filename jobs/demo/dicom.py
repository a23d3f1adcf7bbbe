"""Write proper DICOM Part 10 files for the demo delivery.

Every object gets a 128-byte preamble, "DICM", File Meta Information, and the
Patient / General Study / General Series / General Equipment / SOP Common
modules filled from the roster, so headers look like what each site's scanners
write. UIDs come from `pydicom.uid.generate_uid(entropy_srcs=[...])` with the
seed and a path-like key: the same seed gives the same UIDs.
"""
from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian,
                         JPEG2000Lossless, RLELossless, generate_uid)

from dicom_triage.jobs.demo.imaging import Stack
from dicom_triage.jobs.demo.roster import Patient, Scanner, Site, patient_age

# Storage SOP classes (PS3.4 Annex B.5)
CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT = UID("1.2.840.10008.5.1.4.1.1.2.1")
MR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_MR = UID("1.2.840.10008.5.1.4.1.1.4.1")
CR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
US_IMAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
US_MULTIFRAME = UID("1.2.840.10008.5.1.4.1.1.3.1")
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")
COMPREHENSIVE_SR = UID("1.2.840.10008.5.1.4.1.1.88.33")
XRAY_DOSE_SR = UID("1.2.840.10008.5.1.4.1.1.88.67")
RAW_DATA = UID("1.2.840.10008.5.1.4.1.1.66")

ENCODERS = {"rle": RLELossless, "j2k": JPEG2000Lossless, "deflate": DeflatedExplicitVRLittleEndian}


# A birth date of the planted patients (YYYYMMDD, 1930-2009). UIDs never contain one,
# so a leak check can search outputs for planted birth dates as plain substrings.
BIRTH_DATE_LIKE = re.compile(r"(?:19[3-9]\d|200\d)(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")


class Uids:
    """Deterministic UIDs: the same seed and key always give the same UID.

    `generate_uid(entropy_srcs=...)` hashes the seed and the key into the decimal
    suffix of pydicom's root; about 1 % of suffixes hold a digit run that reads as
    a birth date, and those are drawn again with a counter added to the key.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, *key) -> str:
        for attempt in range(1000):
            extra = [f"#{attempt}"] if attempt else []
            uid = str(generate_uid(entropy_srcs=[f"dicom-triage-demo/{self.seed}",
                                                 *map(str, key), *extra]))
            if not BIRTH_DATE_LIKE.search(uid):
                return uid
        raise RuntimeError(f"no UID without a date-like digit run for {key}")


@dataclass(frozen=True)
class Study:
    patient: Patient
    folder: str
    uid: str
    accession: str
    study_id: str
    when: dt.datetime
    description: str
    referring: str
    operator: str

    @property
    def site(self) -> Site:
        return self.patient.site


@dataclass(frozen=True)
class Series:
    study: Study
    folder: str
    uid: str
    number: int
    modality: str
    description: str
    protocol: str
    scanner: Scanner
    body_part: str
    frame_uid: str
    when: dt.datetime


def _da(when: dt.datetime | dt.date) -> str:
    return when.strftime("%Y%m%d")


def _tm(when: dt.datetime) -> str:
    return when.strftime("%H%M%S")


def new_instance(series: Series, sop_class: str, sop_uid: str, number: int,
                 image_type: list[str] | None = None,
                 when: dt.datetime | None = None) -> Dataset:
    """A dataset with file meta and the common modules of one instance of `series`."""
    study, patient, site = series.study, series.study.patient, series.study.site
    when = when or series.when
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    if site.charset:
        ds.SpecificCharacterSet = site.charset
    if image_type:
        ds.ImageType = image_type
    ds.InstanceCreationDate, ds.InstanceCreationTime = _da(when), _tm(when)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate, ds.StudyTime = _da(study.when), _tm(study.when)
    ds.SeriesDate, ds.SeriesTime = _da(series.when), _tm(series.when)
    ds.ContentDate, ds.ContentTime = _da(when), _tm(when)
    ds.AccessionNumber = study.accession
    ds.Modality = series.modality
    ds.Manufacturer = series.scanner.manufacturer
    ds.InstitutionName = site.institution
    ds.InstitutionAddress = site.address
    ds.ReferringPhysicianName = study.referring
    ds.StationName = series.scanner.station
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.InstitutionalDepartmentName = site.department
    ds.OperatorsName = study.operator
    ds.ManufacturerModelName = series.scanner.model
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = patient_age(patient.birth_date, study.when.date())
    if site.code in ("A", "C"):
        ds.OtherPatientIDs = patient.other_id
        ds.PatientAddress = patient.address
    if series.body_part:
        ds.BodyPartExamined = series.body_part
    ds.DeviceSerialNumber = series.scanner.serial
    ds.SoftwareVersions = series.scanner.software
    if series.protocol:
        ds.ProtocolName = series.protocol
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series.number
    ds.InstanceNumber = number
    if series.modality in ("CT", "MR"):
        ds.PatientPosition = "HFS"
    block = ds.private_block(0x0011, site.private_creator, create=True)
    block.add_new(0x10, "LO", patient.patient_id)      # private copy of the patient ID
    return ds


def set_pixels(ds: Dataset, array: np.ndarray, photometric: str = "MONOCHROME2",
               bits_stored: int | None = None, frames: bool = False) -> None:
    """Image Pixel module from a numpy array: (rows, cols), (rows, cols, 3) RGB, or
    (frames, rows, cols[, 3]) when `frames`."""
    array = np.ascontiguousarray(array)
    colour = array.shape[-1] == 3 and array.ndim == (4 if frames else 3)
    shape = array.shape[1:] if frames else array.shape
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    if frames:
        ds.NumberOfFrames = array.shape[0]
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    bits = array.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if np.issubdtype(array.dtype, np.signedinteger) else 0
    ds.PixelData = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"


def set_window(ds: Dataset, center: float, width: float) -> None:
    ds.WindowCenter = f"{center:.0f}"
    ds.WindowWidth = f"{width:.0f}"


def _ds(value: float, places: int = 4) -> str:
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def set_plane(ds: Dataset, stack: Stack, offset: float, thickness: float,
              spacing: float | None, frame_uid: str) -> None:
    """Frame of Reference and Image Plane modules for the slice at `offset` of `stack`."""
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceThickness = _ds(thickness)
    if spacing is not None:
        ds.SpacingBetweenSlices = _ds(spacing)
    ds.ImagePositionPatient = [_ds(v) for v in stack.position(offset)]
    ds.ImageOrientationPatient = [_ds(v, 6) for v in stack.orientation]
    ds.SliceLocation = _ds(float(stack.position(offset) @ stack.normal))
    ds.PixelSpacing = [_ds(stack.pixel_spacing, 6)] * 2


def copy_encoded_pixels(ds: Dataset, source: Dataset) -> None:
    """Keep a source file's pixel data exactly as encoded (JPEG, JPEG 2000, RLE,
    JPEG-LS, palette colour ...) with its Image Pixel attributes and transfer syntax."""
    for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration",
                    "NumberOfFrames", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "LossyImageCompression", "LossyImageCompressionRatio",
                    "LossyImageCompressionMethod", "RedPaletteColorLookupTableDescriptor",
                    "GreenPaletteColorLookupTableDescriptor", "BluePaletteColorLookupTableDescriptor",
                    "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
                    "BluePaletteColorLookupTableData", "FrameIncrementPointer", "FrameTime"):
        if keyword in source:
            ds[keyword] = source[keyword]
    ds.PixelData = source.PixelData
    ds["PixelData"].VR = source["PixelData"].VR
    ds.file_meta.TransferSyntaxUID = source.file_meta.TransferSyntaxUID


# Attributes removed from a reused source dataset before our own are written.
SOURCE_IDENTIFYING = (
    "AccessionNumber", "InstitutionName", "InstitutionAddress", "StationName",
    "InstitutionalDepartmentName", "DeviceSerialNumber", "StudyID", "PatientID",
    "OtherPatientIDs", "OtherPatientIDsSequence", "IssuerOfPatientID", "PatientAddress",
    "PatientBirthDate", "PatientBirthTime", "ImageComments", "StudyComments",
    "AdmittingDiagnosesDescription", "RequestAttributesSequence", "ReferencedStudySequence",
    "ReferencedPatientSequence", "ReferencedPerformedProcedureStepSequence",
    "InstanceCreatorUID", "CreatorVersionUID", "DeidentificationMethod", "PatientIdentityRemoved",
    "OtherPatientNames", "DerivationDescription", "SourceImageSequence",
)


def strip_source(ds: Dataset) -> Dataset:
    """Remove the source file's people, places and private data (recursively)."""
    ds.remove_private_tags()

    def scrub(dataset: Dataset) -> None:
        for elem in list(dataset):
            if elem.VR == "PN" or elem.keyword in SOURCE_IDENTIFYING:
                del dataset[elem.tag]
            elif elem.VR == "SQ":
                for item in elem.value:
                    scrub(item)
    scrub(ds)
    return ds


def adopt(source: Dataset, series: Series, sop_uid: str, number: int) -> Dataset:
    """Reuse a whole source dataset (e.g. an enhanced multi-frame object with its
    functional groups) as an instance of `series`: its identifiers are stripped,
    ours and new UIDs written, the pixel data kept as encoded."""
    fresh = new_instance(series, source.SOPClassUID, sop_uid, number,
                         image_type=list(source.ImageType) if "ImageType" in source else None)
    syntax = source.file_meta.TransferSyntaxUID
    strip_source(source)
    for elem in fresh:
        source[elem.tag] = elem
    if "FrameOfReferenceUID" in source:
        source.FrameOfReferenceUID = series.frame_uid
    source.file_meta = fresh.file_meta
    source.file_meta.TransferSyntaxUID = syntax
    return source


def encode(ds: Dataset, encoding: str | None = None) -> bytes:
    """Part 10 bytes of `ds`; `encoding` "rle" / "j2k" compresses the native pixel
    data (lossless), "deflate" deflates the whole dataset; None keeps it as it is."""
    if encoding in ("rle", "j2k"):
        ds.compress(ENCODERS[encoding], generate_instance_uid=False)
    elif encoding == "deflate":
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def sr_content(concept: Dataset, items: list[tuple[str, Dataset, str]]) -> dict:
    """Attributes of a minimal SR document: a CONTAINER with TEXT / CODE / NUM children."""
    content = []
    for value_type, name, value in items:
        node = Dataset()
        node.RelationshipType = "CONTAINS"
        node.ValueType = value_type
        node.ConceptNameCodeSequence = Sequence([name])
        if value_type == "TEXT":
            node.TextValue = value
        elif value_type == "NUM":
            measured = Dataset()
            measured.NumericValue = value
            measured.MeasurementUnitsCodeSequence = Sequence([code_item("mGy.cm", "UCUM", "mGy.cm")])
            node.MeasuredValueSequence = Sequence([measured])
        content.append(node)
    return {
        "ValueType": "CONTAINER",
        "ConceptNameCodeSequence": Sequence([concept]),
        "ContinuityOfContent": "SEPARATE",
        "CompletionFlag": "COMPLETE",
        "VerificationFlag": "UNVERIFIED",
        "ContentSequence": Sequence(content),
    }
