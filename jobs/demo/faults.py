"""Duplicates (byte copies, re-exports, re-sent series, reused UIDs) and objects
that cannot be read (empty, not DICOM, truncated, corrupt header), as `Item`s.
The byte-level damage is in `jobs.demo.damage`."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicom_triage.jobs.demo import damage, imaging
from dicom_triage.jobs.demo import dicom as dcm
from dicom_triage.jobs.demo.delivery import MNI, Delivery, Item
from dicom_triage.jobs.demo.roster import Scanner

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


# Near duplicates: the same image exported again with slightly different pixels.
NEAR_CHANGES = {
    "jpeg": "re-exported as an 8-bit JPEG (lossy, quality 90) Secondary Capture",
    "crop": "re-exported with its border cropped (a few per cent per side)",
    "resize": "re-exported resized to 80 %",
    "rescale": "re-exported with another rescale intercept and window (same HU)",
    "noise": "re-exported after re-processing that left light noise (0.5 % of the signal)",
}


def near_duplicate(d: Delivery, original: Item, study: dcm.Study, change: str) -> Item:
    """NEAR_DUPLICATE: the same image exported again by a workstation or PACS
    with new UIDs in another series, and pixels that are no longer identical:
    `change` is one of NEAR_CHANGES. Cross-sectional images become Secondary
    Captures (no position: an export of one slice, not a series); radiographs
    keep their SOP class."""
    ds = original.dataset
    stored = ds.pixel_array
    rng = d.rng("near-duplicate", original.path)
    radiograph = ds.Modality in ("CR", "DX")
    scanner = Scanner(ds.Modality, ds.Manufacturer, ds.ManufacturerModelName, "PACSEXPORT", "3.1",
                      ds.DeviceSerialNumber)
    series = d.series(study, ds.Modality, f"{ds.SeriesDescription} (export)", scanner,
                      body_part=str(ds.get("BodyPartExamined", "")))
    sop_class = ds.SOPClassUID if radiograph else dcm.SECONDARY_CAPTURE
    export = dcm.new_instance(series, sop_class, d.sop_uid(series, 1), 1, image_type=["DERIVED", "SECONDARY"])
    if not radiograph:
        export.ConversionType = "WSD"
        export.BurnedInAnnotation = "NO"
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "ViewPosition", "KVP", "PresentationIntentType",
                    "RescaleIntercept", "RescaleSlope", "RescaleType", "PixelPaddingValue",
                    "WindowCenter", "WindowWidth"):
        if keyword in ds:
            export[keyword] = ds[keyword]
    photometric = ds.PhotometricInterpretation
    if change == "jpeg":            # display values now: no rescale, no window
        for keyword in ("RescaleIntercept", "RescaleSlope", "RescaleType", "PixelPaddingValue",
                        "WindowCenter", "WindowWidth"):
            if keyword in export:
                delattr(export, keyword)
        _set_jpeg(export, _window8(ds, stored), quality=90)
    else:
        if change == "crop":
            h, w = stored.shape
            top, bottom, left, right = (int(round(n * f)) for n, f in
                                        zip((h, h, w, w), rng.uniform(0.02, 0.06, size=4)))
            pixels = stored[top:h - bottom, left:w - right]
        elif change == "resize":
            pixels = imaging.resize(stored, 0.8)
            export.PixelSpacing = [f"{float(v) / 0.8:.6g}" for v in ds.PixelSpacing]
            if "ImagerPixelSpacing" in ds:
                export.ImagerPixelSpacing = [f"{float(v) / 0.8:.6g}" for v in ds.ImagerPixelSpacing]
        elif change == "rescale":
            shift = 24                      # intercept -1024 -> -1000, stored values moved along
            padding = stored == ds.PixelPaddingValue if "PixelPaddingValue" in ds else False
            pixels = np.where(padding, stored, stored - shift).astype(stored.dtype)
            export.RescaleIntercept = f"{float(ds.RescaleIntercept) + shift:.0f}"
            dcm.set_window(export, float(ds.WindowCenter) - 5, float(ds.WindowWidth) * 1.15)
        elif change == "noise":
            pixels = imaging.add_noise(stored, rng, 0.005, 2 ** int(ds.BitsStored) - 1)
        else:
            raise KeyError(change)
        dcm.set_pixels(export, pixels, photometric=photometric, bits_stored=int(ds.BitsStored))
    item = d.add_dicom(export, series, 1, true_region=original.true_region, source=original.source,
                       category="NEAR_DUPLICATE", reasons=("NEAR_DUPLICATE",), note=NEAR_CHANGES[change])
    item.duplicate_of = original.path
    return item


def _window8(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """8-bit display image of a grey dataset: its window (else p0.5-p99.5), MONOCHROME1 inverted."""
    values = stored * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    if "WindowCenter" in ds:
        center, width = float(ds.WindowCenter), float(ds.WindowWidth)
        lo, hi = center - width / 2, center + width / 2
    else:
        lo, hi = np.percentile(values, [0.5, 99.5])
    grey = np.clip((values - lo) / max(hi - lo, 1e-6), 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        grey = 1 - grey
    return np.rint(grey * 255).astype(np.uint8)


def _set_jpeg(ds: Dataset, grey: np.ndarray, quality: int) -> None:
    """8-bit grey pixels stored as one JPEG baseline frame (Pillow's encoder)."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=quality)
    dcm.set_pixels(ds, grey)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{grey.size / len(buffer.getvalue()):.2f}"
    ds.LossyImageCompressionMethod = "ISO_10918_1"


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
