"""Brain MR protocols per site (vendor wording, matrices, timing, encodings) and
the `SeriesPlan` for one acquisition of one subject.

Matrix and FOV give the in-plane spacing (FOV / matrix, mm); `acquired` is the
sampled matrix before zero-filled interpolation; thickness and gap are mm.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import modules, mr
from .delivery import Delivery
from .layout import SeriesRef
from .series import SeriesPlan
from .sites import Site
from .writer import EXPLICIT_LE, IMPLICIT_LE, J2K_LOSSLESS, RLE_LOSSLESS, format_ds

SIEMENS_IT = ("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D")
GE_IT = ("ORIGINAL", "PRIMARY", "OTHER")


@dataclass
class Protocol:
    kind: str                  # contrast key of mr.CONTRAST
    description: str
    protocol: str
    matrix: int
    acquired: int
    image_type: tuple
    ts: str
    params: dict = field(default_factory=dict)
    fov: float | None = None
    thickness: float | None = None
    gap: float | None = None
    gain: float = 1.0
    epi: float = 0.0


def _p(**kw) -> dict:
    return kw


PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "A": {
        "loc": Protocol("loc", "localizer", "localizer", 256, 160, SIEMENS_IT, EXPLICIT_LE,
                        _p(ScanningSequence="GR", SequenceVariant=["SP", "OSP"], SequenceName="*fl2d1",
                           RepetitionTime=8.6, EchoTime=4.0, FlipAngle=20, EchoTrainLength=1),
                        fov=260.0, thickness=7.0, gain=0.8),
        "t1": Protocol("t1", "t1_se_tra", "t1_se_tra", 256, 256, SIEMENS_IT, EXPLICIT_LE,
                       _p(ScanningSequence="SE", SequenceVariant=["SK", "SP"], SequenceName="*se2d1",
                          RepetitionTime=550, EchoTime=9.5, FlipAngle=90, EchoTrainLength=1)),
        "t1c": Protocol("t1c", "t1_se_tra_KM", "t1_se_tra_KM", 256, 256, SIEMENS_IT, EXPLICIT_LE,
                        _p(ScanningSequence="SE", SequenceVariant=["SK", "SP"], SequenceName="*se2d1",
                           RepetitionTime=550, EchoTime=9.5, FlipAngle=90, EchoTrainLength=1,
                           ContrastBolusAgent="Gadovist")),
        "t2": Protocol("t2", "t2_tse_tra_p2", "t2_tse_tra_p2", 384, 256, SIEMENS_IT, EXPLICIT_LE,
                       _p(ScanningSequence="SE", SequenceVariant=["SK", "SP", "OSP"],
                          SequenceName="*tse2d1_17", RepetitionTime=5000, EchoTime=98,
                          FlipAngle=150, EchoTrainLength=17), gain=1.2),
        "flair": Protocol("flair", "t2_tirm_tra_dark-fluid", "t2_tirm_tra_dark-fluid", 256, 256,
                          SIEMENS_IT, J2K_LOSSLESS,
                          _p(ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "SP", "MP"],
                             SequenceName="*tir2d1_16", RepetitionTime=9000, EchoTime=81,
                             InversionTime=2500, FlipAngle=150, EchoTrainLength=16), gain=1.2),
        "swi": Protocol("swi", "SWI_mIP_Images(SW)", "swi_tra_p3", 256, 256,
                        ("DERIVED", "PRIMARY", "MNIP", "NORM", "DIS2D"), EXPLICIT_LE,
                        _p(ScanningSequence="GR", SequenceVariant=["SP", "OSP"], SequenceName="*swi3d1r",
                           RepetitionTime=28, EchoTime=20, FlipAngle=15, EchoTrainLength=1),
                        thickness=16.0, gap=0.0),
    },
    "B": {
        "loc": Protocol("loc", "3-Plane Loc", "3-Plane Loc", 256, 256,
                        ("ORIGINAL", "PRIMARY", "LOCALIZER"), IMPLICIT_LE,
                        _p(ScanningSequence="GR", SequenceVariant="SS", RepetitionTime=5.2,
                           EchoTime=1.6, FlipAngle=30, EchoTrainLength=1),
                        fov=280.0, thickness=8.0, gain=0.8),
        "t1": Protocol("t1_flair", "AX T1 FLAIR", "AX T1 FLAIR", 512, 320, GE_IT, IMPLICIT_LE,
                       _p(ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "SP"],
                          RepetitionTime=2000, EchoTime=24, InversionTime=750, FlipAngle=111,
                          EchoTrainLength=8)),
        "t2": Protocol("t2", "AX T2 FSE", "AX T2 FSE", 512, 384, GE_IT, IMPLICIT_LE,
                       _p(ScanningSequence="SE", SequenceVariant=["SK", "OSP"], RepetitionTime=4800,
                          EchoTime=102, FlipAngle=111, EchoTrainLength=20),
                       gain=1.2),
        "flair": Protocol("flair", "AX T2 FLAIR", "AX T2 FLAIR", 512, 256, GE_IT, IMPLICIT_LE,
                          _p(ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "SP", "MP"],
                             RepetitionTime=9500, EchoTime=120, InversionTime=2400,
                             FlipAngle=111, EchoTrainLength=24), gain=1.2),
        "dwi": Protocol("dwi", "AX DWI", "AX DWI", 256, 128, GE_IT, RLE_LOSSLESS,
                        _p(ScanningSequence="EP", SequenceVariant="NONE", RepetitionTime=6000,
                           EchoTime=82, FlipAngle=90, EchoTrainLength=1, DiffusionBValue=0.0),
                        epi=3.5),
        "csi": Protocol("csi", "CSI NAA MAP", "PROBE-SI 2D 144", 32, 32,
                        ("DERIVED", "SECONDARY", "OTHER"), IMPLICIT_LE,
                        _p(ScanningSequence="SE", SequenceVariant="NONE", RepetitionTime=1000,
                           EchoTime=144, FlipAngle=90, EchoTrainLength=1),
                        fov=150.0, thickness=10.0, gap=5.0),
    },
    "C": {
        "loc": Protocol("loc", "Survey", "Survey", 256, 256, ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"),
                        RLE_LOSSLESS,
                        _p(ScanningSequence="GR", SequenceVariant="SP", RepetitionTime=11,
                           EchoTime=4.6, FlipAngle=15, EchoTrainLength=1),
                        fov=250.0, thickness=10.0, gain=0.8),
        "t1": Protocol("t1", "T1W_SE_TRA", "T1W_SE_TRA", 320, 256, ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"),
                       J2K_LOSSLESS,
                       _p(ScanningSequence="SE", SequenceVariant="SK", RepetitionTime=480,
                          EchoTime=15, FlipAngle=90, EchoTrainLength=1)),
        "t1c": Protocol("t1c", "T1W_SE_TRA_GD", "T1W_SE_TRA_GD", 320, 256,
                        ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"), J2K_LOSSLESS,
                        _p(ScanningSequence="SE", SequenceVariant="SK", RepetitionTime=480,
                           EchoTime=15, FlipAngle=90, EchoTrainLength=1,
                           ContrastBolusAgent="Dotarem")),
        "t2": Protocol("t2", "T2W_TSE_TRA", "T2W_TSE_TRA", 384, 256, ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"),
                       J2K_LOSSLESS,
                       _p(ScanningSequence="SE", SequenceVariant="SK", RepetitionTime=3500,
                          EchoTime=100, FlipAngle=90, EchoTrainLength=15), gain=1.2),
        "flair": Protocol("flair", "FLAIR_TRA", "FLAIR_longTR SENSE", 320, 256,
                          ("ORIGINAL", "PRIMARY", "M_IR", "M", "IR"), J2K_LOSSLESS,
                          _p(ScanningSequence=["SE", "IR"], SequenceVariant="SK", RepetitionTime=11000,
                             EchoTime=125, InversionTime=2800, FlipAngle=90, EchoTrainLength=32),
                          gain=1.2),
        "dwi": Protocol("dwi", "DWI_SENSE", "DWI_SENSE", 256, 112, ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"),
                        RLE_LOSSLESS,
                        _p(ScanningSequence=["SE", "EP"], SequenceVariant="SK", RepetitionTime=3300,
                           EchoTime=75, FlipAngle=90, EchoTrainLength=55, DiffusionBValue=0.0),
                        thickness=4.0, gap=1.5, epi=2.5),
    },
}

FIELD_FREQ = {1.5: 63.87, 3.0: 127.74}


@dataclass
class Context:
    """One subject's session at one site."""
    d: Delivery
    site: Site
    study: modules.Study
    subject: mr.Subject
    model: str
    pitch: float               # slice angulation, degrees
    centre: np.ndarray         # LPS mm, centre of the axial coverage
    body_part: str


def stored_converter(site: Site, gain: float, r: np.random.Generator):
    """Float image -> (stored values, pixel-related header) for the site's encoding."""
    bits = site.params["bits_stored"]
    signed = site.params["signed"]
    maxval = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    rescale = site.params.get("rescale")
    slope = round(float(r.uniform(0.9, 2.6)), 6) if rescale else 1.0

    def convert(img: np.ndarray):
        physical = img * gain
        stored = np.clip(np.round(physical / slope), 0, maxval)
        stored = stored.astype(np.int16 if signed else np.uint16)
        sub = stored[::3, ::3]
        fg = sub[sub > np.percentile(sub, 60)]
        lo, hi = (np.percentile(fg, [2, 99.5]) if fg.size else (0, 1))
        h = modules.window((lo + hi) / 2 * slope, (hi - lo) * 1.1 * slope + 1)
        if rescale:
            h["RescaleIntercept"] = "0"
            h["RescaleSlope"] = format_ds(slope)
            h["RescaleType"] = "normalized"
        return stored, h
    return convert


def mr_params(ctx: Context, proto: Protocol, step: float, matrix: int, fov: float) -> dict:
    field_t = ctx.site.params["field_strength"]
    p = dict(proto.params)
    h = {
        "ScanningSequence": p.pop("ScanningSequence"),
        "SequenceVariant": p.pop("SequenceVariant"),
        "ScanOptions": "PFP" if ctx.site.key == "B" else "",
        "MRAcquisitionType": "3D" if proto.kind == "swi" else "2D",
        "RepetitionTime": p.pop("RepetitionTime"),
        "EchoTime": p.pop("EchoTime"),
        "EchoTrainLength": p.pop("EchoTrainLength"),
        "FlipAngle": p.pop("FlipAngle"),
        "NumberOfAverages": 1 if proto.kind != "dwi" else 2,
        "ImagingFrequency": FIELD_FREQ[field_t],
        "ImagedNucleus": "1H",
        "MagneticFieldStrength": field_t,
        "SpacingBetweenSlices": format_ds(step),
        "PercentSampling": 100,
        "PercentPhaseFieldOfView": 100,
        "PixelBandwidth": {"A": 190, "B": 162.773, "C": 217.5}[ctx.site.key],
        "AcquisitionMatrix": [0, proto.acquired, proto.acquired, 0],
        "InPlanePhaseEncodingDirection": "COL" if proto.kind == "dwi" else "ROW",
        "ReceiveCoilName": ctx.site.params["coil"],
        "TransmitCoilName": "Body",
        "PatientPosition": "HFS",
    }
    if "InversionTime" in p:
        h["InversionTime"] = p.pop("InversionTime")
    if "SequenceName" in p:
        h["SequenceName"] = p.pop("SequenceName")
    if "ContrastBolusAgent" in p:
        h["ContrastBolusAgent"] = p.pop("ContrastBolusAgent")
    if "DiffusionBValue" in p:
        h["DiffusionBValue"] = p.pop("DiffusionBValue")
    return h


def axial_plan(ctx: Context, key: str, *, number: int, order: int, count: int | None = None,
               overrides: dict | None = None, pose=None, noise_scale: float = 1.0,
               description: str | None = None) -> SeriesPlan:
    """A regular axial stack of protocol `key` for this subject (no defects yet)."""
    site = ctx.site
    proto = PROTOCOLS[site.key][key]
    if overrides:
        proto = replace(proto, **overrides)
    fov = proto.fov or site.params["fov"]
    thickness = proto.thickness or site.params["thickness"]
    gap = site.params["gap"] if proto.gap is None else proto.gap
    step = thickness + gap
    matrix = proto.matrix
    spacing = (fov / matrix, fov / matrix)
    if count is None:
        count = int(round(112.0 / step)) + 1
    row, col = mr.axial_directions(ctx.pitch)
    planes = mr.stack(ctx.centre, row, col, (matrix, matrix), spacing, step, count)
    desc = description or proto.description
    uid = ctx.d.uid(site.uid_root, "series", ctx.study.uid, number, desc)
    ref = SeriesRef(ctx.study, number, desc, uid, order, "MR")
    r = ctx.d.rng("series-gain", uid)
    gain = site.params["gain"] * proto.gain * float(r.uniform(0.85, 1.15))
    subject = ctx.subject

    def render(index: int, plane: mr.Plane, proto=proto, uid=uid) -> np.ndarray:
        rr = ctx.d.rng("render", uid, index)
        return mr.render(subject, proto.kind, plane, (matrix, matrix), spacing, thickness, rr,
                         acquired=proto.acquired, noise_scale=noise_scale, epi_distortion=proto.epi,
                         pose=pose)

    extra = mr_params(ctx, proto, step, matrix, fov)
    extra.update(site_private(site, proto))
    t0 = ctx.study.time + 60.0 * number
    return SeriesPlan(ref=ref, site=site, model=ctx.model, sop_class=modules.MR_IMAGE,
                      image_type=proto.image_type, protocol=proto.protocol,
                      body_part=ctx.body_part, planes=planes,
                      instance_numbers=list(range(1, count + 1)), matrix=(matrix, matrix),
                      spacing=spacing, thickness=thickness, ts=proto.ts, render=render,
                      to_stored=stored_converter(site, gain, r),
                      bits_stored=site.params["bits_stored"], signed=site.params["signed"],
                      true_modality="MR", true_region="head", source="nilearn:MNI152 2009a phantom",
                      extra=extra, time_s=t0)


def localizer_plan(ctx: Context, *, number: int, order: int, per_plane: int) -> SeriesPlan:
    """3-plane localizer: sagittal, coronal and axial images through the head centre."""
    site = ctx.site
    proto = PROTOCOLS[site.key]["loc"]
    fov = proto.fov
    matrix = proto.matrix
    spacing = (fov / matrix, fov / matrix)
    dirs = [(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])),
            (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])),
            (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))]
    centre = ctx.centre + np.array([0.0, 0.0, -10.0])
    planes = []
    for row, col in dirs:
        planes += mr.stack(centre, row, col, (matrix, matrix), spacing, 10.0, per_plane)
    uid = ctx.d.uid(site.uid_root, "series", ctx.study.uid, number, proto.description)
    ref = SeriesRef(ctx.study, number, proto.description, uid, order, "MR")
    r = ctx.d.rng("series-gain", uid)
    gain = site.params["gain"] * proto.gain * float(r.uniform(0.85, 1.15))
    subject = ctx.subject

    def render(index: int, plane: mr.Plane) -> np.ndarray:
        rr = ctx.d.rng("render", uid, index)
        return mr.render(subject, "loc", plane, (matrix, matrix), spacing, proto.thickness, rr,
                         acquired=proto.acquired, sub_slices=1)

    extra = mr_params(ctx, proto, 10.0, matrix, fov)
    extra.pop("SpacingBetweenSlices")
    extra.update(site_private(site, proto))
    return SeriesPlan(ref=ref, site=site, model=ctx.model, sop_class=modules.MR_IMAGE,
                      image_type=proto.image_type, protocol=proto.protocol,
                      body_part=ctx.body_part, planes=planes,
                      instance_numbers=list(range(1, len(planes) + 1)), matrix=(matrix, matrix),
                      spacing=spacing, thickness=proto.thickness, ts=proto.ts, render=render,
                      to_stored=stored_converter(site, gain, r),
                      bits_stored=site.params["bits_stored"], signed=site.params["signed"],
                      true_modality="MR", true_region="head", source="nilearn:MNI152 2009a phantom",
                      extra=extra, series_codes=["LOCALIZER"], time_s=ctx.study.time + 30.0)


def site_private(site: Site, proto: Protocol) -> dict:
    """A few vendor private elements, as exports that keep safe private tags have them."""
    if site.key == "A":
        return modules.private_block(0x0019, "SIEMENS MR HEADER",
                                     {0x08: ("CS", "IMAGE NUM 4"), 0x0B: ("DS", "3200"),
                                      0x0F: ("SH", "Fast")})
    if site.key == "B":
        return modules.private_block(0x0043, "GEMS_PARM_01",
                                     {0x2C: ("SS", 0), 0x39: ("IS", ["0", "8", "0", "0"])})
    return modules.private_block(0x2005, "Philips MR Imaging DD 001",
                                 {0x20: ("SL", 1), 0x2D: ("SS", 0)})
