"""Cross-sectional series: MR brain from the MNI152 template, CT head and chest
from real CT slices, 3-plane localizers, an enhanced multi-frame MR; and the
series-level geometry defects and per-slice quality defects planted in them."""
from __future__ import annotations

import datetime as dt

import numpy as np
from pydicom.dataset import Dataset

from dicom_triage.jobs.demo import dicom as dcm
from dicom_triage.jobs.demo import imaging, sources
from dicom_triage.jobs.demo.delivery import MNI, Delivery, Item
from dicom_triage.jobs.demo.imaging import HeadPose
from dicom_triage.jobs.demo.roster import Protocol


def _mr_instance(d: Delivery, series: dcm.Series, protocol: Protocol, stack, offset: float,
                 number: int, pixels: np.ndarray, image_type=None) -> Dataset:
    scanner = series.scanner
    ds = dcm.new_instance(series, dcm.MR_IMAGE, d.sop_uid(series, number), number,
                          image_type=image_type or ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"],
                          when=series.when + dt.timedelta(seconds=7 * number))
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate, ds.AcquisitionTime = ds.ContentDate, ds.ContentTime
    for keyword, value in protocol.mr.items():
        setattr(ds, keyword, value)
    ds.MagneticFieldStrength = scanner.field_strength
    ds.ImagingFrequency = round(42.577 * scanner.field_strength, 6)
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = 1
    ds.NumberOfAverages = 1
    spacing = protocol.spacing if protocol.mr.get("MRAcquisitionType") == "2D" else None
    dcm.set_plane(ds, stack, offset, protocol.thickness, spacing, series.frame_uid)
    dcm.set_pixels(ds, pixels, bits_stored=12)
    high = float(np.percentile(pixels, 99.5))
    dcm.set_window(ds, high / 2, high)
    return ds


def _mr_series(d: Delivery, study: dcm.Study, key: str) -> tuple[dcm.Series, Protocol]:
    """A new MR series of the site's protocol `key`."""
    site = study.site
    protocol = site.protocols[key]
    series = d.series(study, "MR", protocol.name, site.scanners["MR"],
                      body_part=site.mr_body_part, protocol=protocol.name)
    return series, protocol


def plan_stack(protocol: Protocol, center: np.ndarray, count: int | None = None) -> imaging.Stack:
    """The protocol's stack (or its first `count` slices' worth) centred on `center`."""
    n = count or protocol.slices
    offsets = (np.arange(n) - (n - 1) / 2) * protocol.spacing
    return imaging.plane_stack(protocol.plane, center, protocol.matrix, protocol.matrix,
                               protocol.pixel_spacing, offsets, protocol.tilt)


def head_center(d: Delivery, study: dcm.Study, pose: HeadPose, key: str) -> np.ndarray:
    """Where the technologist centred the stack: the brain centre, give or take 4 mm."""
    return pose.to_patient(imaging.BRAIN_CENTER_RAS) + d.rng("centre", study.uid, key).uniform(-4, 4, 3)


def _write_mr(d: Delivery, series: dcm.Series, protocol: Protocol, pose: HeadPose,
              stacks: list[imaging.Stack], *, keep=None, quality: dict | None = None,
              reasons: tuple[str, ...] = (), encoding: str | None = None) -> list[Item]:
    """Sample the head through each stack and write one instance per kept slice.

    `keep` selects slice indices (over all stacks, in order); `quality` maps a
    slice index to a defect function name in imaging (NOISY -> add_noise, ...).
    """
    rng = d.rng("mr-signal", series.uid)
    gain = rng.uniform(2.6, 3.4)
    planned = []
    for stack in stacks:
        values = imaging.mr_signal(imaging.sample_head(protocol.contrast, stack, pose), rng, gain=gain)
        planned += [(stack, offset, values[i]) for i, offset in enumerate(stack.offsets)]
    items = []
    for index, (stack, offset, pixels) in enumerate(planned):
        if keep is not None and index not in keep:
            continue
        number = index + 1
        defect = (quality or {}).get(index)
        if defect:
            pixels = QUALITY_DEFECTS[defect](pixels, d.rng("quality", series.uid, index))
        ds = _mr_instance(d, series, protocol, stack, offset, number, pixels)
        codes = (defect,) if defect else reasons
        items.append(d.add_dicom(ds, series, number, true_region="head", source=MNI,
                                 category=defect or (reasons[0] if reasons else "good"),
                                 reasons=codes, encoding=encoding))
    return items


QUALITY_DEFECTS = {
    "NOISY": lambda a, rng: imaging.add_noise(a, rng, 0.35, 4095),
    "BLURRY": lambda a, rng: imaging.blur(a, 4.0),
    "SATURATED": lambda a, rng: imaging.saturate(a, 0.25, 4095),
    "LOW_DYNAMIC_RANGE": lambda a, rng: imaging.low_dynamic_range(a, rng),
    "CONSTANT_IMAGE": lambda a, rng: imaging.constant(a, int(rng.integers(0, 3))),
}


def mr_brain(d: Delivery, study: dcm.Study, pose: HeadPose, key: str, *,
             quality: dict | None = None, encoding: str | None = None) -> list[Item]:
    """A good MR brain series of the site's protocol `key` (optionally with
    per-slice quality defects: {slice index: reason code})."""
    series, protocol = _mr_series(d, study, key)
    stack = plan_stack(protocol, head_center(d, study, pose, key))
    return _write_mr(d, series, protocol, pose, [stack], quality=quality, encoding=encoding)


def mr_missing_slices(d: Delivery, study: dcm.Study, pose: HeadPose, key: str,
                      encoding: str | None = None) -> list[Item]:
    """MISSING_SLICES: two neighbouring slices in the middle of the stack never
    arrived (a PACS export that dropped instances): a position gap of three
    steps and a gap in InstanceNumber."""
    series, protocol = _mr_series(d, study, key)
    stack = plan_stack(protocol, head_center(d, study, pose, key))
    middle = protocol.slices // 2
    keep = set(range(protocol.slices)) - {middle - 1, middle}
    return _write_mr(d, series, protocol, pose, [stack], keep=keep,
                     reasons=("MISSING_SLICES",), encoding=encoding)


def mr_mixed_orientation(d: Delivery, study: dcm.Study, pose: HeadPose, key: str,
                         encoding: str | None = None) -> list[Item]:
    """INCONSISTENT_ORIENTATION: after the first 10 slices the technologist
    re-angled the stack by 12 degrees and the scanner appended 3 more slices to
    the same series."""
    series, protocol = _mr_series(d, study, key)
    center = head_center(d, study, pose, key)
    first = plan_stack(protocol, center, count=10)
    extra = imaging.plane_stack(protocol.plane, center + np.array([0, 0, 40.0]), protocol.matrix,
                                protocol.matrix, protocol.pixel_spacing,
                                np.arange(3) * protocol.spacing, protocol.tilt + 12.0)
    return _write_mr(d, series, protocol, pose, [first, extra],
                     reasons=("INCONSISTENT_ORIENTATION",), encoding=encoding)


def mr_too_few_slices(d: Delivery, study: dcm.Study, pose: HeadPose, key: str,
                      encoding: str | None = None) -> list[Item]:
    """TOO_FEW_SLICES: an acquisition stopped after two slices (patient moved,
    sequence aborted) but the two images were still sent."""
    series, protocol = _mr_series(d, study, key)
    stack = plan_stack(protocol, head_center(d, study, pose, key), count=2)
    return _write_mr(d, series, protocol, pose, [stack], reasons=("TOO_FEW_SLICES",),
                     encoding=encoding)


def localizer(d: Delivery, study: dcm.Study, pose: HeadPose, encoding: str | None = None) -> list[Item]:
    """LOCALIZER: the 3-plane scout at the start of every MR exam (one sagittal, one
    coronal, one axial slice; ImageType ORIGINAL\\PRIMARY\\LOCALIZER; vendor name
    such as Siemens "AAHScout", GE "3-Plane Loc", Philips "Survey")."""
    site = study.site
    name = site.localizer
    series = d.series(study, "MR", name, site.scanners["MR"], body_part=site.mr_body_part,
                      protocol=name)
    protocol = Protocol(name, "AX", "T1", 1, 10.0, 10.0, 128, 2.0,
                        mr={"ScanningSequence": ["GR"], "SequenceVariant": ["SP"],
                            "MRAcquisitionType": "2D", "RepetitionTime": 8.6, "EchoTime": 4.0,
                            "FlipAngle": 20.0})
    center = head_center(d, study, pose, "loc")
    rng = d.rng("mr-signal", series.uid)
    items = []
    for number, plane in enumerate(("SAG", "COR", "AX"), start=1):
        stack = imaging.plane_stack(plane, center, 128, 128, 2.0, [0.0])
        pixels = imaging.mr_signal(imaging.sample_head("T1", stack, pose), rng, gain=2.5, noise=20)[0]
        ds = _mr_instance(d, series, protocol, stack, 0.0, number, pixels,
                          image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"])
        ds.SliceThickness = "10"
        items.append(d.add_dicom(ds, series, number, true_region="head", source=MNI,
                                 category="LOCALIZER", reasons=("LOCALIZER",), encoding=encoding))
    return items


def _ct_instance(d: Delivery, series: dcm.Series, stack, offset: float, number: int,
                 pixels: np.ndarray, thickness: float, kernel: str, padding: bool) -> Dataset:
    ds = dcm.new_instance(series, dcm.CT_IMAGE, d.sop_uid(series, number), number,
                          image_type=["ORIGINAL", "PRIMARY", "AXIAL"],
                          when=series.when + dt.timedelta(seconds=number))
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate, ds.AcquisitionTime = ds.ContentDate, ds.ContentTime
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = f"{stack.pixel_spacing * stack.cols:.1f}"
    ds.GantryDetectorTilt = "0"
    ds.XRayTubeCurrent = 280
    ds.ExposureTime = 1000
    ds.ConvolutionKernel = kernel
    dcm.set_plane(ds, stack, offset, thickness, None, series.frame_uid)
    dcm.set_pixels(ds, pixels)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    if padding:
        ds.PixelPaddingValue = imaging.CT_PADDING
    return ds


def ct_head(d: Delivery, study: dcm.Study, *, quality: dict | None = None,
            offsets: list[float] | None = None, thickness: list[float] | None = None,
            reasons: tuple[str, ...] = (), encoding: str | None = None,
            description: str | None = None) -> list[Item]:
    """A head CT series built from the real 693 head slice (see imaging.ct_head_slices)."""
    site = study.site
    protocol = site.protocols["ct"]
    series = d.series(study, "CT", description or protocol.name, site.scanners["CT"],
                      body_part="HEAD", protocol=protocol.name)
    if offsets is None:
        offsets = list((np.arange(protocol.slices) - (protocol.slices - 1) / 2) * protocol.spacing)
    thickness = thickness or [protocol.thickness] * len(offsets)
    rng = d.rng("ct", series.uid)
    center = np.array([0.0, 20.0, 0.0]) + rng.uniform(-5, 5, 3) + np.array([0, 0, rng.uniform(-400, -300)])
    stack = imaging.plane_stack("AX", center, 256, 256, protocol.pixel_spacing, offsets)
    volume = imaging.ct_head_slices(offsets, rng)
    items = []
    for index, offset in enumerate(offsets):
        number = index + 1
        pixels = volume[index]
        defect = (quality or {}).get(index)
        if defect == "CONSTANT_IMAGE":
            pixels = imaging.constant(pixels, imaging.CT_AIR_STORED)
        elif defect:
            pixels = QUALITY_DEFECTS[defect](pixels, d.rng("quality", series.uid, index))
        ds = _ct_instance(d, series, stack, offset, number, pixels, thickness[index],
                          kernel="H31s" if site.code == "A" else "STANDARD", padding=True)
        dcm.set_window(ds, 40, 80)
        codes = (defect,) if defect else reasons
        items.append(d.add_dicom(ds, series, number, true_region="head",
                                 source="pydicom-data:693_UNCR.dcm", encoding=encoding,
                                 category=defect or (reasons[0] if reasons else "good"),
                                 reasons=codes))
    return items


def ct_head_irregular_spacing(d: Delivery, study: dcm.Study) -> list[Item]:
    """IRREGULAR_SPACING: a variable-thickness head protocol stored as one series:
    2.5 mm slices through the posterior fossa, then 5 mm slices above."""
    offsets = [-27.5, -25.0, -22.5, -20.0, -16.25, -11.25, -6.25, -1.25, 3.75, 8.75, 13.75]
    thickness = [2.5] * 4 + [5.0] * 7
    return ct_head(d, study, offsets=offsets, thickness=thickness,
                   reasons=("IRREGULAR_SPACING",), description="Routine Head 2.5/5mm")


def ct_chest(d: Delivery, study: dcm.Study, *, quality: dict | None = None,
             encoding: str | None = None) -> list[Item]:
    """A chest CT series built from the real CT_small thoracic slice."""
    site = study.site
    protocol = site.protocols["ctchest"]
    series = d.series(study, "CT", protocol.name, site.scanners["CT"], body_part="CHEST",
                      protocol=protocol.name)
    rng = d.rng("ct", series.uid)
    offsets = (np.arange(protocol.slices) - (protocol.slices - 1) / 2) * protocol.spacing
    center = np.array([0.0, 60.0, -180.0]) + rng.uniform(-5, 5, 3)
    stack = imaging.plane_stack("AX", center, 128, 128, protocol.pixel_spacing, offsets)
    volume = imaging.ct_chest_slices(protocol.slices, rng)
    items = []
    for index, offset in enumerate(offsets):
        number = index + 1
        pixels = volume[index]
        defect = (quality or {}).get(index)
        if defect:
            pixels = QUALITY_DEFECTS[defect](pixels, d.rng("quality", series.uid, index))
        ds = _ct_instance(d, series, stack, offset, number, pixels, protocol.thickness,
                          kernel="B", padding=False)
        dcm.set_window(ds, -600, 1600)
        items.append(d.add_dicom(ds, series, number, true_region="chest",
                                 source="pydicom:CT_small.dcm", encoding=encoding,
                                 category=defect or "good", reasons=(defect,) if defect else ()))
    return items


def enhanced_mr(d: Delivery, study: dcm.Study) -> Item:
    """A good multi-frame Enhanced MR object (emri_small, 10 frames of a head),
    kept in its original JPEG-LS lossless encoding."""
    site = study.site
    series = d.series(study, "MR", "3D_T2W_VISTA", site.scanners["MR"],
                      body_part=site.mr_body_part, protocol="3D_T2W_VISTA")
    source = sources.read_source("pydicom-data", "emri_small_jpeg_ls_lossless.dcm")
    ds = dcm.adopt(source, series, d.sop_uid(series, 1), 1)
    return d.add_dicom(ds, series, 1, true_region="head",
                       source="pydicom-data:emri_small_jpeg_ls_lossless.dcm",
                       note="multi-frame (10 frames, 64x64), original JPEG-LS lossless")
