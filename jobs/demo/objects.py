"""Single objects: radiographs, screenshots with burned-in text, objects without
pixels, and content that does not belong (other modalities, other anatomy,
photographs, mislabelled images). Several keep a source file's original
compressed pixel data."""
from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from dicom_triage.jobs.demo import dicom as dcm
from dicom_triage.jobs.demo import imaging, sources
from dicom_triage.jobs.demo.delivery import MNI, Delivery, Item
from dicom_triage.jobs.demo.imaging import HeadPose
from dicom_triage.jobs.demo.roster import Scanner
from dicom_triage.jobs.demo.series import head_center, plan_stack

# --------------------------------------------------------------------------
# Good content: radiographs

RADIOGRAPH_SOURCES = {"chest": "pydicom-data:RG1_UNCR.dcm", "tibia": "pydicom-data:RG3_UNCR.dcm",
                      "cat": "deid-data:animals/cat.dcm"}


def _radiograph_instance(d: Delivery, series: dcm.Series, pixels: np.ndarray, number: int,
                         photometric: str, view: str) -> Dataset:
    sop_class = dcm.CR_IMAGE if series.modality == "CR" else dcm.DX_PRESENTATION
    ds = dcm.new_instance(series, sop_class, d.sop_uid(series, number), number,
                          image_type=["ORIGINAL", "PRIMARY"])
    if series.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImagerPixelSpacing = ["0.7", "0.7"]
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.ViewPosition = view
    ds.KVP = "110" if series.body_part == "CHEST" else "60"
    ds.AcquisitionDate, ds.AcquisitionTime = ds.ContentDate, ds.ContentTime
    dcm.set_pixels(ds, pixels, photometric=photometric, bits_stored=12)
    dcm.set_window(ds, 2048, 4096)
    return ds


def radiograph(d: Delivery, study: dcm.Study, kind: str, modality: str, *,
               body_part: str | None = None, defect: str | None = None,
               burned_in: list[str] | None = None, true_region: str | None = None,
               category: str | None = None, reasons: tuple[str, ...] = (),
               description: str | None = None, note: str = "") -> Item:
    """A CR (MONOCHROME1, as the source) or DX (MONOCHROME2) radiograph made
    from a real one. `defect` applies a quality defect, `burned_in` draws text."""
    site = study.site
    body_part = body_part or {"chest": "CHEST", "tibia": "LEG", "cat": "CHEST"}[kind]
    view = "PA" if kind == "chest" else ("LL" if kind == "cat" else "AP")
    series = d.series(study, modality, description or f"{body_part} {view}", site.scanners[modality],
                      body_part=body_part, protocol=f"{body_part} {view}")
    rng = d.rng("radiograph", series.uid)
    invert = modality == "DX" and kind != "cat"
    pixels = imaging.radiograph(kind, rng, max_value=4095, invert=invert)
    photometric = "MONOCHROME1" if modality == "CR" and kind != "cat" else "MONOCHROME2"
    if defect == "SATURATED":
        pixels = imaging.saturate(pixels, 0.4, 4095)
    elif defect == "CONSTANT_IMAGE":
        pixels = imaging.constant(pixels, 4095 if photometric == "MONOCHROME1" else 0)
    if burned_in:
        white = 0 if photometric == "MONOCHROME1" else 4095
        pixels = imaging.burn_text(pixels, burned_in, white, corner="top-left")
    ds = _radiograph_instance(d, series, pixels, 1, photometric, view)
    region = true_region or {"chest": "chest", "tibia": "extremity", "cat": "chest"}[kind]
    codes = reasons or ((defect,) if defect else ())
    return d.add_dicom(ds, series, 1, true_region=region, source=RADIOGRAPH_SOURCES[kind],
                       category=category or defect or (codes[0] if codes else "good"),
                       reasons=codes, note=note)


def chest_cr_original_j2k(d: Delivery, study: dcm.Study) -> Item:
    """A good CR chest kept exactly as the source encodes it (RG1_J2KI, lossy JPEG 2000,
    1955x1841, MONOCHROME1)."""
    site = study.site
    series = d.series(study, "CR", "CHEST PA", site.scanners["CR"], body_part="CHEST",
                      protocol="CHEST PA")
    source = sources.read_source("pydicom-data", "RG1_J2KI.dcm")
    ds = dcm.new_instance(series, dcm.CR_IMAGE, d.sop_uid(series, 1), 1,
                          image_type=["DERIVED", "PRIMARY"])
    ds.ViewPosition = "PA"
    ds.PixelSpacing = ["0.171", "0.171"]
    dcm.copy_encoded_pixels(ds, source)
    return d.add_dicom(ds, series, 1, true_region="chest", source="pydicom-data:RG1_J2KI.dcm",
                       note="original lossy JPEG 2000 encoding")


# --------------------------------------------------------------------------
# Burned-in annotations, non-image objects

def _secondary_capture(d: Delivery, series: dcm.Series, number: int, burned_in: bool) -> Dataset:
    ds = dcm.new_instance(series, dcm.SECONDARY_CAPTURE, d.sop_uid(series, number), number,
                          image_type=["DERIVED", "SECONDARY"])
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    return ds


def mr_key_image(d: Delivery, study: dcm.Study, pose: HeadPose) -> Item:
    """BURNED_IN_ANNOTATION: a key-image screenshot from the reading workstation,
    a Secondary Capture with series/window text and a measurement burned into the
    pixels (BurnedInAnnotation YES)."""
    site = study.site
    series = d.series(study, "MR", "Key Images", site.scanners["OT"], body_part=site.mr_body_part)
    protocol = site.protocols["t2"]
    stack = plan_stack(protocol, head_center(d, study, pose, "key"), count=1)
    rng = d.rng("key-image", series.uid)
    values = imaging.mr_signal(imaging.sample_head("T2", stack, pose), rng, gain=3.0)[0]
    grey = np.clip(values / np.percentile(values, 99.5) * 255, 0, 255).astype(np.uint8)
    grey = np.kron(grey, np.ones((2, 2), np.uint8))
    grey = imaging.burn_text(grey, [f"{site.scanners['MR'].station}  {protocol.name}",
                                    "SE 3  IM 9/18", "W 1200  L 600"], 255, "top-left")
    grey = imaging.burn_text(grey, ["18.4 mm"], 255, "bottom-right")
    ds = _secondary_capture(d, series, 1, burned_in=True)
    dcm.set_pixels(ds, grey)
    return d.add_dicom(ds, series, 1, true_region="head", source=MNI,
                       category="BURNED_IN_ANNOTATION", reasons=("BURNED_IN_ANNOTATION",))


def ct_screenshot(d: Delivery, study: dcm.Study, slice_item: Item) -> Item:
    """BURNED_IN_ANNOTATION: an RGB screen capture of a head CT slice (brain window)
    with yellow annotation text, RLE-compressed, BurnedInAnnotation YES."""
    site = study.site
    series = d.series(study, "CT", "Screen Save", site.scanners["OT"], body_part="HEAD")
    stored = slice_item.dataset.pixel_array.astype(np.float64) - 1024
    grey = np.clip((stored - 0) / 80 * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb = imaging.burn_text(rgb, ["W:80 L:40", "120 kV  280 mAs", "5.0 mm"], [255, 230, 0], "top-left")
    rgb = imaging.burn_text(rgb, ["R"], [255, 230, 0], "bottom-right")
    ds = _secondary_capture(d, series, 1, burned_in=True)
    dcm.set_pixels(ds, rgb, photometric="RGB")
    return d.add_dicom(ds, series, 1, true_region="head", source="pydicom-data:693_UNCR.dcm",
                       category="BURNED_IN_ANNOTATION", reasons=("BURNED_IN_ANNOTATION",),
                       encoding="rle")


def report_sr(d: Delivery, study: dcm.Study) -> Item:
    """NO_PIXEL_DATA: the radiology report as a Comprehensive SR document."""
    series = d.series(study, "SR", "Radiology Report", study.site.scanners["OT"])
    ds = dcm.new_instance(series, dcm.COMPREHENSIVE_SR, d.sop_uid(series, 1), 1)
    attrs = dcm.sr_content(
        dcm.code_item("18748-4", "LN", "Diagnostic imaging report"),
        [("TEXT", dcm.code_item("121071", "DCM", "Finding"),
          f"Accession {study.accession}: no acute intracranial abnormality.")])
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return d.add_dicom(ds, series, 1, true_region="none", source="generated",
                       category="NO_PIXEL_DATA", reasons=("NO_PIXEL_DATA",))


def dose_sr(d: Delivery, study: dcm.Study) -> Item:
    """NO_PIXEL_DATA: the CT scanner's radiation dose report (X-Ray Radiation Dose SR)."""
    series = d.series(study, "SR", "Dose Report", study.site.scanners["CT"], number=997)
    ds = dcm.new_instance(series, dcm.XRAY_DOSE_SR, d.sop_uid(series, 1), 1)
    attrs = dcm.sr_content(
        dcm.code_item("113701", "DCM", "X-Ray Radiation Dose Report"),
        [("NUM", dcm.code_item("113813", "DCM", "CT Dose Length Product Total"), "812.4")])
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return d.add_dicom(ds, series, 1, true_region="none", source="generated",
                       category="NO_PIXEL_DATA", reasons=("NO_PIXEL_DATA",))


def ct_raw_data(d: Delivery, study: dcm.Study) -> Item:
    """NO_PIXEL_DATA: a vendor raw-data object (Raw Data Storage) that CT scanners
    archive next to the images: a private binary block, no pixels."""
    site = study.site
    series = d.series(study, "CT", "RawData", site.scanners["CT"], body_part="HEAD", number=998)
    ds = dcm.new_instance(series, dcm.RAW_DATA, d.sop_uid(series, 1), 1)
    block = ds.private_block(0x7FD1, "SIEMENS SYNGO RAW", create=True)
    block.add_new(0x10, "OB", d.rng("raw", series.uid).integers(0, 256, 6000, dtype=np.uint8).tobytes())
    return d.add_dicom(ds, series, 1, true_region="none", source="generated",
                       category="NO_PIXEL_DATA", reasons=("NO_PIXEL_DATA",))


# --------------------------------------------------------------------------
# Irrelevant, unexpected or mislabelled content

def _kept_encoding(d: Delivery, study: dcm.Study, label: str, name: str, *, modality: str,
                   sop_class: str, scanner: Scanner, description: str, body_part: str = "",
                   true_region: str, category: str, reasons: tuple[str, ...],
                   burned_in: bool = False, note: str = "") -> Item:
    """An object whose pixels are a source file's, kept in their original encoding."""
    series = d.series(study, modality, description, scanner, body_part=body_part)
    source = sources.read_source(label, name)
    ds = dcm.new_instance(series, sop_class, d.sop_uid(series, 1), 1,
                          image_type=list(source.get("ImageType", ["ORIGINAL", "PRIMARY"])))
    if sop_class == dcm.SECONDARY_CAPTURE:
        ds.ConversionType = str(source.get("ConversionType", "") or "WSD")
    if burned_in:
        ds.BurnedInAnnotation = "YES"
    for keyword in ("PixelSpacing", "FrameTime", "CineRate"):
        if keyword in source:
            ds[keyword] = source[keyword]
    dcm.copy_encoded_pixels(ds, source)
    return d.add_dicom(ds, series, 1, true_region=true_region, source=f"{label}:{name}",
                       category=category, reasons=reasons, note=note)


def ultrasound_still(d: Delivery, study: dcm.Study) -> Item:
    """UNEXPECTED_MODALITY / UNEXPECTED_ANATOMY: an ultrasound still of the neck
    (small parts, with the machine's burned-in text), original JPEG 2000
    lossless encoding."""
    return _kept_encoding(d, study, "pydicom-data", "US1_J2KR.dcm", modality="US",
                          sop_class=dcm.US_IMAGE, scanner=study.site.scanners["US"],
                          description="US SMALL PARTS", body_part="NECK", true_region="neck",
                          category="UNEXPECTED_MODALITY", burned_in=True,
                          reasons=("UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY", "BURNED_IN_ANNOTATION"))


def ultrasound_cine(d: Delivery, study: dcm.Study) -> Item:
    """UNEXPECTED_MODALITY / UNEXPECTED_ANATOMY: a 2-frame obstetric ultrasound
    clip (pelvis), palette colour, original RLE encoding, burned-in text."""
    return _kept_encoding(d, study, "pydicom-data", "OBXXXX1A_rle_2frame.dcm", modality="US",
                          sop_class=dcm.US_MULTIFRAME, scanner=study.site.scanners["US"],
                          description="OB 2D CINE", body_part="PELVIS", true_region="pelvis",
                          category="UNEXPECTED_MODALITY", burned_in=True,
                          reasons=("UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY", "BURNED_IN_ANNOTATION"),
                          note="multi-frame (2 frames), palette colour")


def cookie_photo(d: Delivery, study: dcm.Study, name: str, scanner: Scanner) -> Item:
    """UNEXPECTED_MODALITY: a phone photo (of cookies) imported into PACS as an OT
    Secondary Capture, original JPEG baseline encoding. Its header already says
    it is not expected content, so the content check does not judge it."""
    return _kept_encoding(d, study, "deid-data", f"dicom-cookies/{name}", modality="OT",
                          sop_class=dcm.SECONDARY_CAPTURE, scanner=scanner,
                          description="Imported photo", true_region="none",
                          category="UNEXPECTED_MODALITY",
                          reasons=("UNEXPECTED_MODALITY",),
                          note="colour photograph stored as DICOM")


def qa_pattern(d: Delivery, study: dcm.Study) -> Item:
    """UNEXPECTED_MODALITY: a monitor test pattern (colour bars) stored as an OT
    Secondary Capture in the patient's study."""
    return _kept_encoding(d, study, "pydicom-data", "SC_rgb.dcm", modality="OT",
                          sop_class=dcm.SECONDARY_CAPTURE, scanner=study.site.scanners["OT"],
                          description="QA pattern", true_region="none",
                          category="UNEXPECTED_MODALITY",
                          reasons=("UNEXPECTED_MODALITY",))


def nm_bone_scan(d: Delivery, study: dcm.Study) -> Item:
    """UNEXPECTED_MODALITY / UNEXPECTED_ANATOMY: a nuclear-medicine whole-body bone
    scan (NM), original JPEG lossless encoding."""
    scanner = Scanner("NM", "GE MEDICAL SYSTEMS", "Infinia Hawkeye 4", "GMHNM1", "2.5", "NM2231")
    return _kept_encoding(d, study, "pydicom-data", "JPEG-LL.dcm", modality="NM",
                          sop_class=dcm.SECONDARY_CAPTURE, scanner=scanner,
                          description="WB BONE ANT/POST", body_part="WHOLEBODY",
                          true_region="whole_body", category="UNEXPECTED_MODALITY",
                          reasons=("UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY"))


def smiley_labelled_ct_head(d: Delivery, study: dcm.Study) -> Item:
    """SATURATED / LOW_DYNAMIC_RANGE: deid-data's test object, a head-CT header
    (Modality CT, BodyPartExamined HEAD) whose pixels are a hand-drawn smiley on
    a white page (97 % of pixels at the maximum), JPEG baseline. Foreign content,
    but flat pixels are reported as the defect they are: the content check does
    not judge them (docs/relevance.md)."""
    return _kept_encoding(d, study, "deid-data", "humans/ctbrain1.dcm", modality="CT",
                          sop_class=dcm.SECONDARY_CAPTURE, scanner=study.site.scanners["OT"],
                          description="BRAIN SEQ 4.8 H31s", body_part="HEAD", true_region="none",
                          category="SATURATED", reasons=("SATURATED", "LOW_DYNAMIC_RANGE"),
                          note="drawing of a smiley under a CT head header")


def enhanced_ct_abdomen(d: Delivery, study: dcm.Study) -> Item:
    """UNEXPECTED_ANATOMY: an abdominal CT perfusion map (Enhanced CT, 2 frames,
    palette colour) sent with a neuro project's data."""
    site = study.site
    series = d.series(study, "CT", "Perfusion rCBF", site.scanners["CT"], body_part="ABDOMEN")
    source = sources.read_source("pydicom-data", "eCT_Supplemental.dcm")
    ds = dcm.adopt(source, series, d.sop_uid(series, 1), 1)
    return d.add_dicom(ds, series, 1, true_region="abdomen", source="pydicom-data:eCT_Supplemental.dcm",
                       category="UNEXPECTED_ANATOMY", reasons=("UNEXPECTED_ANATOMY",),
                       note="multi-frame (2 frames) Enhanced CT with functional groups")


def mr_abdomen_slice(d: Delivery, study: dcm.Study) -> Item:
    """UNEXPECTED_ANATOMY: a single abdominal MR slice (liver lesion, Siemens, with
    overlay planes) - abdomen is not in the project; alone in its series it is also
    TOO_FEW_SLICES."""
    site = study.site
    series = d.series(study, "MR", "abdomen^liver marked lesion", site.scanners["MR"],
                      body_part="ABDOMEN", protocol="t1_vibe_tra")
    source = sources.read_source("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm")
    ds = dcm.new_instance(series, dcm.MR_IMAGE, d.sop_uid(series, 1), 1,
                          image_type=["DERIVED", "SECONDARY", "MPR"])
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                    "SliceThickness", "RepetitionTime", "EchoTime", "ScanningSequence",
                    "SequenceVariant", "MRAcquisitionType", "MagneticFieldStrength"):
        if keyword in source:
            ds[keyword] = source[keyword]
    ds.FrameOfReferenceUID = series.frame_uid
    for elem in source.group_dataset(0x6000):
        ds.add(elem)
    dcm.set_pixels(ds, source.pixel_array, bits_stored=12)
    return d.add_dicom(ds, series, 1, true_region="abdomen",
                       source="pydicom-data:MR-SIEMENS-DICOM-WithOverlays.dcm",
                       category="UNEXPECTED_ANATOMY", reasons=("UNEXPECTED_ANATOMY", "TOO_FEW_SLICES"),
                       note="overlay planes in group 6000")


def _mislabelled_sc(d: Delivery, study: dcm.Study, pixels: np.ndarray, description: str, *,
                    true_region: str, source: str, category: str, reasons: tuple[str, ...],
                    note: str) -> Item:
    site = study.site
    series = d.series(study, "MR", description, site.scanners["MR"], body_part="HEAD",
                      protocol=description)
    ds = _secondary_capture(d, series, 1, burned_in=False)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    dcm.set_pixels(ds, pixels, bits_stored=12)
    return d.add_dicom(ds, series, 1, true_region=true_region, source=source, category=category,
                       reasons=reasons, note=note)


def chest_labelled_head_mr(d: Delivery, study: dcm.Study) -> Item:
    """ANATOMY_HEADER_MISMATCH: a chest radiograph imported into a brain MR study
    with that study's header (Modality MR, BodyPartExamined HEAD) - a misfiled image."""
    rng = d.rng("mislabel-chest", study.uid)
    pixels = imaging.radiograph("chest", rng, max_value=4095, invert=True)
    return _mislabelled_sc(d, study, pixels, "Ax T1 SE", true_region="chest",
                           source=RADIOGRAPH_SOURCES["chest"], category="ANATOMY_HEADER_MISMATCH",
                           reasons=("ANATOMY_HEADER_MISMATCH",),
                           note="chest radiograph with a head MR header")


def cookie_labelled_head_mr(d: Delivery, study: dcm.Study) -> Item:
    """IRRELEVANT_CONTENT: a photograph (cookies) converted to grey and filed as a
    head MR image (Modality MR, BodyPartExamined HEAD)."""
    grey = sources.jpeg_photo_grey("deid-data", "dicom-cookies/image2.dcm", reduce=4)
    pixels = (grey.astype(np.uint16) * 16).astype(np.uint16)
    return _mislabelled_sc(d, study, pixels, "Ax FLAIR", true_region="none",
                           source="deid-data:dicom-cookies/image2.dcm", category="IRRELEVANT_CONTENT",
                           reasons=("IRRELEVANT_CONTENT",),
                           note="photograph with a head MR header")


def tibia_labelled_skull(d: Delivery, study: dcm.Study) -> Item:
    """ANATOMY_HEADER_MISMATCH: a tibia radiograph whose header says SKULL (the
    technologist picked the wrong exam on the console)."""
    return radiograph(d, study, "tibia", "CR", body_part="SKULL", description="SKULL AP",
                      category="ANATOMY_HEADER_MISMATCH", reasons=("ANATOMY_HEADER_MISMATCH",),
                      note="extremity radiograph labelled SKULL")


def cat_radiograph(d: Delivery, study: dcm.Study) -> Item:
    """IRRELEVANT_CONTENT: a veterinary radiograph (a cat's thorax, deid-data) in a
    human delivery, labelled DX CHEST. A hard case: the pixels look medical."""
    return radiograph(d, study, "cat", "DX", category="IRRELEVANT_CONTENT",
                      reasons=("IRRELEVANT_CONTENT",),
                      note="veterinary radiograph (cat thorax) with a DX CHEST header; hard case")


# --------------------------------------------------------------------------
