"""Duplicates (byte copies, re-exports, re-sent series, reused UIDs) and objects
that cannot be read (empty, not DICOM, truncated, corrupt header), as `Item`s.
The byte-level damage is in `jobs.demo.damage`."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from jobs.demo import damage, imaging
from jobs.demo import dicom as dcm
from jobs.demo.delivery import MNI, Delivery, Item
from jobs.demo.roster import Scanner

# --------------------------------------------------------------------------
# Duplicates

def byte_copy(d: Delivery, original: Item, folder: str) -> Item:
    """EXACT_DUPLICATE + DUPLICATE_SOP_UID: the same file delivered twice, at
    another path (an export run twice into different folders)."""
    parts = original.path.split("/")
    path = "/".join(parts[:3] + [folder] + parts[4:])
    item = replace(original, path=path, category="EXACT_DUPLICATE",
                   reasons=("EXACT_DUPLICATE", "DUPLICATE_SOP_UID"), duplicate_of=original.path,
                   note="byte-identical copy", dataset=None)
    d.items.append(item)
    return item


def reexport(d: Delivery, original: Item, study: dcm.Study) -> Item:
    """EXACT_DUPLICATE: the same image exported again by another workstation with
    new UIDs and header changes (new study, station, dates) but identical pixels."""
    ds = original.dataset
    series = d.series(study, ds.Modality, f"{ds.SeriesDescription} (export)",
                      Scanner(ds.Modality, ds.Manufacturer, ds.ManufacturerModelName,
                              "KVHEXPORT", "2.4", ds.DeviceSerialNumber),
                      body_part=str(ds.get("BodyPartExamined", "")))
    export = dcm.new_instance(series, ds.SOPClassUID, d.sop_uid(series, 1), 1,
                              image_type=["DERIVED", "PRIMARY"])
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "ViewPosition", "KVP",
                    "PresentationIntentType", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            export[keyword] = ds[keyword]
    dcm.set_pixels(export, ds.pixel_array, photometric=ds.PhotometricInterpretation,
                   bits_stored=ds.BitsStored)
    item = d.add_dicom(export, series, 1, true_region=original.true_region, source=original.source,
                       category="EXACT_DUPLICATE", reasons=("EXACT_DUPLICATE",),
                       note="re-exported with new UIDs and header, identical pixels")
    item.duplicate_of = original.path
    return item


def resend_series(d: Delivery, study: dcm.Study, originals: list[Item]) -> list[Item]:
    """EXACT_DUPLICATE: a whole series sent a second time by the PACS with new
    Series/SOP Instance UIDs (a re-push after a failed transfer)."""
    first = originals[0].dataset
    series = d.series(study, first.Modality, f"{first.SeriesDescription}", study.site.scanners["CT"],
                      body_part=str(first.get("BodyPartExamined", "")), protocol=first.ProtocolName,
                      number=first.SeriesNumber + 900)
    items = []
    for original in originals:
        ds = copy.deepcopy(original.dataset)
        number = int(ds.InstanceNumber)
        uid = d.sop_uid(series, number)
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SeriesInstanceUID = series.uid
        ds.SeriesNumber = series.number
        items.append(d.add_dicom(ds, series, number, true_region=original.true_region,
                                 source=original.source, category="EXACT_DUPLICATE",
                                 reasons=("EXACT_DUPLICATE",), note=f"re-sent copy of {original.path}"))
    for item, original in zip(items, originals):
        item.duplicate_of = original.path
    return items


def reuse_sop_uid(d: Delivery, victim: Item, donor: Item) -> Item:
    """DUPLICATE_SOP_UID: a different image that carries another object's
    SOPInstanceUID (a modality whose UID counter was reset)."""
    ds = victim.dataset
    ds.SOPInstanceUID = donor.sop_instance_uid
    ds.file_meta.MediaStorageSOPInstanceUID = donor.sop_instance_uid
    victim.data = dcm.encode(ds)
    victim.sop_instance_uid = donor.sop_instance_uid
    victim.category = "DUPLICATE_SOP_UID"
    victim.reasons = ("DUPLICATE_SOP_UID",) + tuple(r for r in victim.reasons if r != "DUPLICATE_SOP_UID")
    victim.duplicate_of = donor.path
    victim.note = "different image, reused SOPInstanceUID"
    return victim


# --------------------------------------------------------------------------
# Objects that cannot be read (ingest errors)

def _break(item: Item, data: bytes, error: str, note: str, intact: bytes | None = None) -> Item:
    item.intact = intact if intact is not None else item.data
    item.data = data
    item.category, item.ingest_error, item.reasons = error, error, (error,)
    item.note = note
    return item


def truncate_header(item: Item) -> Item:
    """TRUNCATED: see damage.truncate_in_header."""
    data = damage.truncate_in_header(item.data)
    damage.check_truncated(data, item.data)
    return _break(item, data, "TRUNCATED", "cut inside the header, before the pixel data")


def truncate_pixels(item: Item, share: float = 0.55) -> Item:
    """TRUNCATED: see damage.truncate_in_pixels."""
    data = damage.truncate_in_pixels(item.data, share)
    damage.check_truncated(data, item.data)
    return _break(item, data, "TRUNCATED", f"cut after {share:.0%} of the pixel data")


def corrupt_charset(d: Delivery, item: Item) -> Item:
    """CORRUPT_HEADER: see damage.corrupt_charset."""
    data = damage.corrupt_charset(item.data, d.rng("corrupt", item.path))
    message = damage.check_corrupt(data, item.data)
    return _break(item, data, "CORRUPT_HEADER", f"Specific Character Set overwritten: {message}")


def corrupt_nested_charset(d: Delivery, item: Item) -> Item:
    """CORRUPT_HEADER: see damage.corrupt_nested_charset. The intact object gets a
    Request Attributes Sequence (undefined length) whose item has its own
    Specific Character Set; that one is damaged."""
    ds = item.dataset
    request = Dataset()
    request.SpecificCharacterSet = item.dataset.SpecificCharacterSet
    request.RequestedProcedureID = f"RP{ds.AccessionNumber}"
    request.ScheduledProcedureStepDescription = ds.SeriesDescription
    ds.RequestAttributesSequence = Sequence([request])
    ds["RequestAttributesSequence"].is_undefined_length = True
    request.is_undefined_length_sequence_item = True
    intact = dcm.encode(ds)
    data = damage.corrupt_nested_charset(intact, d.rng("corrupt", item.path))
    message = damage.check_corrupt(data, intact)
    return _break(item, data, "CORRUPT_HEADER",
                  f"character set inside a sequence item overwritten: {message}", intact)


def corrupt_deflated(item: Item) -> Item:
    """CORRUPT_HEADER: see damage.corrupt_deflate (the object is stored deflated)."""
    intact = dcm.encode(item.dataset, "deflate")
    data = damage.corrupt_deflate(intact)
    message = damage.check_corrupt(data, intact)
    return _break(item, data, "CORRUPT_HEADER", f"deflated dataset damaged: {message}", intact)


def empty_file(d: Delivery, series: dcm.Series) -> Item:
    """EMPTY_FILE: see damage.empty_file."""
    return d.add_raw(series, damage.empty_file(), ingest_error="EMPTY_FILE", true_region="none",
                     source="generated", note="zero bytes")


def text_file(d: Delivery, series: dcm.Series) -> Item:
    """NOT_DICOM: see damage.text_file."""
    lines = ["TRANSFER LOG", f"series {series.number}: {series.description}",
             "status: partial, 3 retries", "checksum mismatch on 1 object"]
    return d.add_raw(series, damage.text_file(lines), ingest_error="NOT_DICOM", true_region="none",
                     source="generated", note="text file")


def png_file(d: Delivery, series: dcm.Series, image: np.ndarray, region: str) -> Item:
    """NOT_DICOM: a PNG screenshot of an image saved with a .dcm name."""
    return d.add_raw(series, imaging.to_png(image), ingest_error="NOT_DICOM", true_region=region,
                     source=MNI, note="PNG image")


def random_file(d: Delivery, series: dcm.Series) -> Item:
    """NOT_DICOM: see damage.random_bytes."""
    data = damage.random_bytes(d.rng("random", series.uid), 20_000)
    return d.add_raw(series, data, ingest_error="NOT_DICOM", true_region="none",
                     source="generated", note="random bytes")


def zip_file(d: Delivery, series: dcm.Series) -> Item:
    """NOT_DICOM: see damage.zip_file."""
    data = damage.zip_file({"README.txt": b"Study export, see DICOMDIR\n",
                            "DICOMDIR": b"\x00" * 256})
    return d.add_raw(series, data, ingest_error="NOT_DICOM", true_region="none",
                     source="generated", note="zip archive")
