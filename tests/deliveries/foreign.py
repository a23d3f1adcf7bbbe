"""Objects made from real files that ship inside installed packages (pydicom,
pydicom-data, deid-data): their pixels and modality-specific attributes are kept,
the patient / study / series identity is that of a subject of the delivery, and
Modality, BodyPartExamined and the descriptions are set as the roster says
(relabelled by a faulty gateway, or left as they were).

Elements whose values a strict parser rejects are dropped, so a foreign object
carries only the defects it is planted for.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.valuerep import validate_value

from dicom_triage.jobs.demo import sources

from . import modules
from .delivery import Delivery, record_from
from .encoders import encode_pixels
from .layout import SeriesRef, instance_path
from .modules import Study
from .truth import Record, pixel_key
from .writer import EXPLICIT_LE, TEXT_VRS, V, Encapsulated

DROP = {
    # identity, patient, study and series: replaced by the delivery's own
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "PatientSize", "OtherPatientIDs", "OtherPatientNames", "PatientAddress", "PatientComments",
    "EthnicGroup", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "StudyDate",
    "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
    "ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime",
    "AcquisitionDateTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "NameOfPhysiciansReadingStudy",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "DeviceSerialNumber", "StudyDescription", "SeriesDescription", "ProtocolName",
    "BodyPartExamined", "Modality", "SeriesNumber", "InstanceNumber", "FrameOfReferenceUID",
    "RequestAttributesSequence", "ReferencedStudySequence", "ReferencedPatientSequence",
    "ReferencedPerformedProcedureStepSequence", "ReferencedImageSequence",
    "SourceImageSequence", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "RequestedProcedureID",
    "ScheduledProcedureStepID", "IssuerOfPatientID", "PatientIdentityRemoved",
    "DeidentificationMethod", "DeidentificationMethodCodeSequence", "SpecificCharacterSet",
    "ImageComments", "AdditionalPatientHistory", "AdmittingDiagnosesDescription",
    "RequestingPhysician", "PhysiciansOfRecord", "ReferencedSOPInstanceUID",
    "StorageMediaFileSetUID", "IrradiationEventUID", "DerivationDescription",
    "PixelData", "PixelPaddingValue", "LargestImagePixelValue", "SmallestImagePixelValue",
    "DataSetTrailingPadding", "PatientOrientation", "TimezoneOffsetFromUTC",
    "ReferencedFrameOfReferenceUID", "StudyComments", "InterpretationAuthor",
    "OperatorIdentificationSequence", "VerifyingObserverSequence", "ContentCreatorName",
    "InstitutionCodeSequence", "PersonName", "VerifyingOrganization", "ObserverContextFlag",
}
PLANE = {"ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
         "SliceThickness", "SpacingBetweenSlices", "TablePosition"}


def _convert(elem) -> object:
    vr = elem.VR
    if vr == "SQ":
        return [dataset_to_header(item) for item in elem.value]
    value = elem.value
    if vr in TEXT_VRS:
        if value is None:
            return V(vr, "")
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            return V(vr, [str(v) for v in value])
        return V(vr, str(value))
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"):
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            return V(vr, [v for v in value])
        return V(vr, value)
    if isinstance(value, (bytes, bytearray)):
        return V(vr if vr != "UN" else "UN", bytes(value))
    return None


def _valid(elem) -> bool:
    if elem.VR not in TEXT_VRS or elem.VR in ("PN",):
        return True
    try:
        values = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
        for v in values:
            validate_value(elem.VR, "" if v is None else str(v), pydicom.config.RAISE)
    except Exception:
        return False
    return True


def dataset_to_header(ds, drop: set[str] = frozenset()) -> dict:
    """Header dict (writer format) of a pydicom Dataset: public elements only,
    without group 0002, `drop` keywords, or values that break their VR."""
    h = {}
    for elem in ds:
        tag = int(elem.tag)
        if elem.tag.is_private or (tag >> 16) in (0x0002, 0x6000, 0x6002) or elem.keyword in drop:
            continue
        if (tag >> 16) & 0xFF00 == 0x6000 or tag == 0x7FE00010 or elem.VR == "UN":
            continue
        if not _valid(elem):
            continue
        value = _convert(elem)
        if value is not None:
            h[elem.keyword or tag] = value
    return h


def load(label: str, name: str) -> pydicom.Dataset:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(sources.source_path(label, name), force=True)


def decoded(ds: pydicom.Dataset) -> np.ndarray:
    """Stored values as (frames, rows, cols[, 3]); colour converted to RGB."""
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[None]
    return arr


def kept_pixel_data(ds: pydicom.Dataset):
    """The source's PixelData value as it is (native or encapsulated)."""
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_compressed:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return Encapsulated([[f] for f in generate_frames(ds.PixelData, number_of_frames=frames)]), ts
    vr = "OB" if ds.BitsAllocated <= 8 else "OW"
    return V(vr, bytes(ds.PixelData)), ts


def write_foreign(d: Delivery, study: Study, label: str, name: str, *, number: int, order: int,
                  source: "pydicom.Dataset | None" = None,
                  modality: str, body_part: str | None, description: str, protocol: str | None,
                  true_modality: str, true_region: str, codes: list[str], note: str,
                  pixels=None, ts: str | None = None, sop_class: str | None = None,
                  drop_plane: bool = True, extra: dict | None = None, keep: bool = False,
                  frames: int | None = None) -> Record:
    """Write one object made from package file `name`.

    `pixels`: None keeps the source's pixels; else a function (frames array) ->
    (new frames, pixel-module overrides) and the result is encoded in `ts`."""
    ds = source if source is not None else load(label, name)
    site = study.patient.site
    drop = set(DROP) | (PLANE if drop_plane else set())
    h = dataset_to_header(ds, drop)
    source_sop_class = str(ds.get("SOPClassUID", "") or modules.SC_IMAGE)
    sop_class = sop_class or source_sop_class
    uid = d.uid(site.uid_root, "foreign-series", study.uid, number, name)
    sop = d.uid(site.uid_root, "foreign-sop", uid)
    ref = SeriesRef(study, number, description, uid, order, modality)
    time_s = study.time + 200.0 * number
    h.update(modules.sop_common(sop_class, sop, study, time_s))
    h.update(modules.patient_study(study))
    h.update(modules.series_module(study, modality=modality, series_uid=uid, number=number,
                                   description=description, protocol=protocol,
                                   body_part=body_part, time_s=time_s, patient_position=None))
    if "Manufacturer" not in h:
        h["Manufacturer"] = site.manufacturer
    h["InstanceNumber"] = 1
    h["ContentDate"] = study.date
    h["ContentTime"] = modules.ids.format_time(time_s)
    if sop_class == modules.SC_IMAGE and "ConversionType" not in h:
        h["ConversionType"] = "WSD"
    if "PixelData" in ds:
        if keep and pixels is None:
            value, src_ts = kept_pixel_data(ds)
            h["PixelData"] = value
            out_ts = src_ts
            arr = decoded(ds)
            key = pixel_key(arr if frames is None else arr[:frames])
        else:
            arr = decoded(ds)
            overrides = {}
            if arr.ndim == 4 or str(ds.get("PhotometricInterpretation", "")).startswith("YBR"):
                overrides["PhotometricInterpretation"] = "RGB"  # decoded colour is RGB
            if pixels is not None:
                arr, more = pixels(arr)
                overrides.update(more)
            out_ts = ts or EXPLICIT_LE
            bits = int(overrides.get("BitsStored", ds.get("BitsStored", 8)))
            h.update(_pixel_module(arr, bits, overrides, ds))
            h["PixelData"] = encode_pixels(arr, out_ts, bits)
            key = pixel_key(arr)
    else:
        out_ts = ts or EXPLICIT_LE
        key = None
    if extra:
        h.update(extra)
    enc = d.encode(h, str(out_ts), site)
    rec = record_from(h, site=site.folder, patient=study.patient.pseudonym,
                      true_modality=true_modality, true_region=true_region,
                      source=f"{label}:{name}", note=note)
    rec.add(*codes)
    rec.primary = codes[0] if codes else ""
    rec.pixel_key = key
    return d.put(instance_path(ref, 1, 0, sop), enc.data, rec)


def _pixel_module(arr: np.ndarray, bits: int, overrides: dict, ds) -> dict:
    samples = 3 if arr.ndim == 4 else 1
    h = {"Rows": int(arr.shape[1]), "Columns": int(arr.shape[2]), "SamplesPerPixel": samples,
         "BitsAllocated": 8 if bits <= 8 else 16, "BitsStored": bits, "HighBit": bits - 1,
         "PixelRepresentation": 1 if arr.dtype.kind == "i" else 0,
         "PhotometricInterpretation": overrides.get(
             "PhotometricInterpretation", str(ds.get("PhotometricInterpretation", "MONOCHROME2")))}
    if samples == 3:
        h["PlanarConfiguration"] = 0
    if arr.shape[0] > 1:
        h["NumberOfFrames"] = int(arr.shape[0])
    for k, v in overrides.items():
        if k not in ("BitsStored",):
            h[k] = v
    return h


@dataclass
class Spec:
    """A foreign object: which package file, how its header is labelled, its truth."""
    label: str
    name: str
    modality: str
    body_part: str | None
    description: str
    protocol: str | None
    true_modality: str
    true_region: str
    codes: list[str]
    note: str
    keep: bool = False
    ts: str | None = None
    sop_class: str | None = None
    pixels: object = None
    extra: dict | None = None
    frames: int | None = None


def _variant(pixels, r: np.random.Generator):
    """The source once more, changed: cropped by a few pixels and rescaled (never
    brighter, so values stay within the source's bits stored)."""
    crop = [int(v) for v in r.integers(3, 9, 4)]
    gain = float(r.uniform(0.85, 0.97))

    def apply(arr):
        overrides = {}
        if pixels is not None:
            arr, overrides = pixels(arr)
        arr = arr[:, crop[0]:arr.shape[1] - crop[1], crop[2]:arr.shape[2] - crop[3]]
        info = np.iinfo(arr.dtype) if arr.dtype.kind in "ui" else None
        out = arr.astype(np.float64) * gain
        if info is not None:
            bits = int(overrides.get("BitsStored", info.bits))
            hi = min(info.max, (1 << bits) - 1) if arr.dtype.kind == "u" else info.max
            out = np.clip(np.round(out), info.min if arr.dtype.kind == "i" else 0, hi)
        return out.astype(arr.dtype), overrides
    return apply


def place(d: Delivery, study: Study, spec: Spec, number: int, order: int) -> Record:
    """Write `spec` into `study`; a source already used in this delivery comes out
    changed and is recorded as a near duplicate of its first use."""
    key = f"{spec.label}:{spec.name}"
    first = d.sources_used.get(key)
    pixels, keep = spec.pixels, spec.keep
    if first is not None:
        pixels = _variant(pixels, d.rng("variant", key, study.uid, number))
        keep = False
    source = None
    if spec.label == "synthetic":
        make = SYNTHETIC.get(spec.name.split(":")[0], SYNTHETIC["blank"])
        source = make(spec.name)
    rec = write_foreign(d, study, spec.label, spec.name, number=number, order=order,
                        source=source, modality=spec.modality, body_part=spec.body_part,
                        description=spec.description, protocol=spec.protocol,
                        true_modality=spec.true_modality, true_region=spec.true_region,
                        codes=list(spec.codes), note=spec.note, pixels=pixels, ts=spec.ts,
                        sop_class=spec.sop_class, extra=spec.extra, keep=keep,
                        frames=spec.frames)
    if first is None:
        d.sources_used[key] = rec.path
    elif rec.pixel_key is not None:
        d.truth.near_duplicate(first, rec.path)
    return rec


def test_pattern(rows: int = 512, cols: int = 512) -> np.ndarray:
    """A monitor calibration pattern (grey steps, colour-free bars, line pairs,
    a circle and a cross-hair), 12-bit stored values; about a sixth of the
    pixels sit at full intensity (SATURATED, not judged as content)."""
    img = np.zeros((rows, cols), np.float64)
    steps = 11
    for k in range(steps):
        img[: rows // 4, k * cols // steps:(k + 1) * cols // steps] = k / (steps - 1)
    yy, xx = np.mgrid[:rows, :cols]
    band = (yy >= rows // 4) & (yy < rows // 2)
    img[band] = ((xx[band] // 8) % 2).astype(float)
    ramp = (yy >= rows // 2) & (yy < 3 * rows // 4)
    img[ramp] = xx[ramp] / (cols - 1)
    low = yy >= 3 * rows // 4
    img[low] = 0.5
    r = np.hypot(yy - rows * 0.6, xx - cols / 2)
    img[np.abs(r - rows * 0.3) < 2] = 1.0
    img[np.abs(yy - rows * 0.6) < 1] = 1.0
    img[np.abs(xx - cols / 2) < 1] = 1.0
    return np.round(img * 4095).astype(np.uint16)


def synthetic_dataset(arr: np.ndarray, sop_class: str = modules.SC_IMAGE) -> pydicom.Dataset:
    """A minimal in-memory dataset around `arr` (frames, rows, cols) 16-bit."""
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    ds.SOPClassUID = sop_class
    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.ascontiguousarray(arr.astype("<u2")).tobytes()
    return ds


def key_object(d: Delivery, study: Study, refs: list[tuple[str, str, str]], *, number: int,
               order: int, note: str) -> Record:
    """A Key Object Selection document ("Of Interest") referencing `refs`
    (series UID, SOP class, SOP instance UID)."""
    site = study.patient.site
    uid = d.uid(site.uid_root, "ko-series", study.uid, number)
    sop = d.uid(site.uid_root, "ko-sop", uid)
    time_s = study.time + 5000
    series_refs = {}
    for series_uid, sop_class, sop_uid in refs:
        series_refs.setdefault(series_uid, []).append(
            {"ReferencedSOPClassUID": sop_class, "ReferencedSOPInstanceUID": sop_uid})
    h = {}
    h.update(modules.sop_common(modules.KEY_OBJECT, sop, study, time_s))
    h.update(modules.patient_study(study))
    h.update(modules.series_module(study, modality="KO", series_uid=uid, number=number,
                                   description="Key Images", protocol=None, body_part=None,
                                   time_s=time_s, patient_position=None))
    h.update({"Manufacturer": site.manufacturer, "InstanceNumber": 1,
              "ContentDate": study.date, "ContentTime": modules.ids.format_time(time_s),
              "ReferencedPerformedProcedureStepSequence": [],
              "ValueType": "CONTAINER",
              "ConceptNameCodeSequence": [{"CodeValue": "113000", "CodingSchemeDesignator": "DCM",
                                           "CodeMeaning": "Of Interest"}],
              "ContinuityOfContent": "SEPARATE",
              "ContentTemplateSequence": [{"MappingResource": "DCMR", "TemplateIdentifier": "2010"}],
              "CurrentRequestedProcedureEvidenceSequence": [
                  {"StudyInstanceUID": study.uid,
                   "ReferencedSeriesSequence": [
                       {"SeriesInstanceUID": s, "ReferencedSOPSequence": items}
                       for s, items in series_refs.items()]}],
              "ContentSequence": [
                  {"RelationshipType": "CONTAINS", "ValueType": "IMAGE",
                   "ReferencedSOPSequence": [item]}
                  for items in series_refs.values() for item in items]})
    enc = d.encode(h, EXPLICIT_LE, site)
    rec = record_from(h, site=site.folder, patient=study.patient.pseudonym, true_modality="KO",
                      true_region="none", source="constructed key object selection", note=note)
    rec.add("NO_PIXEL_DATA")
    rec.primary = "NO_PIXEL_DATA"
    ref = SeriesRef(study, number, "Key Images", uid, order, "KO")
    return d.put(instance_path(ref, 1, 0, sop), enc.data, rec)


@functools.lru_cache(maxsize=1)
def _t2_volume() -> np.ndarray:
    from . import head

    weights = {"wm": 0.4, "gm": 0.58, "csf": 1.0, "fat": 0.8, "muscle": 0.28, "bone": 0.03,
               "marrow": 0.55, "fluid": 1.0}
    return head.weighted_volume(weights)


def mr_slice(name: str) -> pydicom.Dataset:
    """An axial T2-weighted MR slice of the head phantom ("mr-t2-slice:<z mm>")."""
    from . import head

    z = float(name.split(":")[1]) if ":" in name else 10.0
    pose = head.Pose(np.eye(3), np.zeros(3), np.ones(3))
    img = head.sample_plane(_t2_volume(), pose, (-114.5, -114.5, z), (1, 0, 0), (0, 1, 0),
                            (256, 256), (0.9, 0.9), 5.0)
    noise = np.random.default_rng(int(z * 10) % 1000).normal(0, 0.02, img.shape)
    return synthetic_dataset(np.clip(np.round((img + noise) * 1800), 0, 4095)[None])


SYNTHETIC = {"test-pattern": lambda name: synthetic_dataset(test_pattern()[None]),
             "mr-t2-slice": mr_slice,
             "blank": lambda name: synthetic_dataset(np.zeros((1, 8, 8), np.uint16))}
