"""DICOM module builders shared by all shapes: patient (de-identified as the site
does it), study, series, equipment, general image, image plane and image pixel.

Header dicts are keyed by keyword (see `writer`). Dates are DA strings
(YYYYMMDD, already shifted by the site's de-identification), times TM strings.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from . import ids
from .sites import DEID_CODE_MEANINGS, Site
from .writer import V, format_ds

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
KEY_OBJECT = "1.2.840.10008.5.1.4.1.1.88.59"


@dataclass
class Patient:
    site: Site
    n: int
    pseudonym: str
    sex: str
    age: int
    weight: float
    key: tuple


@dataclass
class Study:
    patient: Patient
    uid: str
    date: str
    time: float
    description: str
    frame_uid: str
    accession: str
    study_id: str
    next_series: int = 1
    extra: dict = field(default_factory=dict)

    def series_number(self, step: int = 1) -> int:
        n = self.next_series
        self.next_series += step
        return n


def make_patient(site: Site, n: int, seed: int, shape: str) -> Patient:
    r = ids.rng(seed, shape, "patient", site.key, n)
    return Patient(site, n, site.pseudonym_for(n), str(r.choice(["F", "M"])),
                   int(r.integers(19, 86)), float(round(r.uniform(52, 104), 1)),
                   (shape, site.key, n))


def make_study(patient: Patient, seed: int, index: int = 0, base_date=dt.date(2021, 3, 1),
               description: str | None = None) -> Study:
    site = patient.site
    r = ids.rng(seed, "study", patient.key, index)
    day = base_date + dt.timedelta(days=int(r.integers(0, 540)) + site.date_shift_days)
    uid = ids.make_uid(site.uid_root, seed, "study", patient.key, index)
    frame = ids.make_uid(site.uid_root, seed, "frame", patient.key, index)
    desc = description or site.study_descriptions[int(r.integers(len(site.study_descriptions)))]
    accession = "" if site.naming != "ge_media" else f"{int(r.integers(10**7, 10**8))}"
    return Study(patient, uid, day.strftime("%Y%m%d"), ids.time_of_day(r), desc, frame,
                 accession, "" if site.key != "C" else f"{int(r.integers(1000, 9999))}")


def patient_study(study: Study) -> dict:
    """Patient and General Study modules as the site's de-identification left them."""
    p = study.patient
    site = p.site
    h = {
        "SpecificCharacterSet": "ISO_IR 100",
        "PatientName": p.pseudonym,
        "PatientID": p.pseudonym,
        "PatientBirthDate": "",
        "PatientSex": p.sex if site.keeps_characteristics else "",
        "PatientIdentityRemoved": "YES",
        "DeidentificationMethod": site.deid_method,
        "DeidentificationMethodCodeSequence": [
            {"CodeValue": c, "CodingSchemeDesignator": "DCM", "CodeMeaning": DEID_CODE_MEANINGS[c]}
            for c in site.deid_codes],
        "StudyInstanceUID": study.uid,
        "StudyDate": study.date,
        "StudyTime": ids.format_time(study.time),
        "ReferringPhysicianName": "",
        "StudyID": study.study_id,
        "AccessionNumber": study.accession,
        "StudyDescription": study.description,
    }
    if site.keeps_characteristics:
        h["PatientAge"] = f"{p.age:03d}Y"
        h["PatientWeight"] = p.weight
    if site.date_shift_days:
        h["LongitudinalTemporalInformationModified"] = "MODIFIED"
    return h


def equipment(site: Site, model: str) -> dict:
    return {"Manufacturer": site.manufacturer, "ManufacturerModelName": model,
            "StationName": site.station,
            "SoftwareVersions": site.software.split("\\") if "\\" in site.software else site.software}


def series_module(study: Study, *, modality: str, series_uid: str, number: int,
                  description: str, protocol: str | None, body_part: str | None,
                  time_s: float, patient_position: str | None = "HFS") -> dict:
    h = {"Modality": modality, "SeriesInstanceUID": series_uid, "SeriesNumber": number,
         "SeriesDescription": description, "SeriesDate": study.date,
         "SeriesTime": ids.format_time(time_s)}
    if protocol is not None:
        h["ProtocolName"] = protocol
    if body_part is not None:
        h["BodyPartExamined"] = body_part
    if patient_position:
        h["PatientPosition"] = patient_position
    return h


def sop_common(sop_class: str, sop_uid: str, study: Study, time_s: float) -> dict:
    return {"SOPClassUID": sop_class, "SOPInstanceUID": sop_uid,
            "InstanceCreationDate": study.date,
            "InstanceCreationTime": ids.format_time(time_s)}


def general_image(study: Study, instance: int, image_type, time_s: float,
                  acquisition: int | None = 1) -> dict:
    h = {"InstanceNumber": instance, "ImageType": list(image_type),
         "ContentDate": study.date, "ContentTime": ids.format_time(time_s, fraction=True)}
    if acquisition is not None:
        h["AcquisitionNumber"] = acquisition
        h["AcquisitionDate"] = study.date
        h["AcquisitionTime"] = ids.format_time(time_s, fraction=True)
    return h


def image_plane(origin, row_dir, col_dir, spacing, thickness, slice_location=True) -> dict:
    """Image Plane module: ImagePositionPatient (LPS mm of the first pixel centre),
    ImageOrientationPatient (row then column direction cosines), PixelSpacing
    (row spacing, column spacing, mm), SliceThickness (mm)."""
    iop = [float(v) for v in list(row_dir) + list(col_dir)]
    h = {"ImagePositionPatient": [format_ds(v) for v in origin],
         "ImageOrientationPatient": [format_ds(round(v, 10)) for v in iop],
         "PixelSpacing": [format_ds(spacing[0]), format_ds(spacing[1])],
         "SliceThickness": format_ds(thickness)}
    if slice_location:
        normal = np.cross(row_dir, col_dir)
        h["SliceLocation"] = format_ds(round(float(np.dot(normal, origin)), 6))
    return h


def image_pixel(rows: int, cols: int, bits_stored: int, signed: bool,
                photometric: str = "MONOCHROME2", samples: int = 1,
                bits_allocated: int | None = None) -> dict:
    allocated = bits_allocated or (8 if bits_stored <= 8 else 16)
    h = {"SamplesPerPixel": samples, "PhotometricInterpretation": photometric,
         "Rows": rows, "Columns": cols, "BitsAllocated": allocated,
         "BitsStored": bits_stored, "HighBit": bits_stored - 1,
         "PixelRepresentation": 1 if signed else 0}
    if samples > 1:
        h["PlanarConfiguration"] = 0
    return h


def window(center: float, width: float, explanation: str | None = None) -> dict:
    h = {"WindowCenter": format_ds(round(center, 2)), "WindowWidth": format_ds(round(max(width, 1), 2))}
    if explanation:
        h["WindowCenterWidthExplanation"] = explanation
    return h


def private_block(group: int, creator: str, elements: dict[int, tuple[str, object]]) -> dict:
    """Private creator (gggg,0010) and its elements (gggg,10xx) -> (VR, value)."""
    h = {(group << 16) | 0x0010: V("LO", creator)}
    for elem, (vr, value) in elements.items():
        h[(group << 16) | 0x1000 | elem] = V(vr, value)
    return h
