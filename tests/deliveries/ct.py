"""Shape `ct`: head and chest CT from three sites (GE, Siemens, Canon), the
project's two-region delivery.

Per site and scale unit: a head exam, a chest exam and a head-and-chest exam,
each with its topogram(s). GE pads outside the reconstruction circle with
-2000 (PixelPaddingValue) and tilts the gantry for heads; Siemens stores chest
reconstructions as Enhanced CT multi-frame objects and adds bone / lung kernel
reconstructions; Canon encodes with JPEG lossless, RLE and JPEG-LS.

Expected by the job: modalities [CT], regions [head, chest], declared de-identified.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ct_images, enhanced, extras, head, ids, modules, ops, series
from . import file_defects as fd
from . import geometry_defects as geo
from . import image_defects as imd
from .common import downsample, next_series, other_study, place, real_date
from .delivery import Delivery, record_from
from .foreign import Spec
from .layout import SeriesRef, extra_path, instance_path, study_folder
from .mr import Plane
from .series import Op, SeriesPlan
from .sites import CT_SITES, Site
from .torso import Torso
from .writer import (EXPLICIT_LE, J2K_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS,
                     RLE_LOSSLESS, V, format_ds)

SHAPE = "ct"
EXPECTATIONS = {"modalities": ["CT"], "body_regions": ["head", "chest"], "declared_deidentified": True}
RDSR = "1.2.840.10008.5.1.4.1.1.88.67"


@dataclass
class Recon:
    description: str
    protocol: str
    kernel_name: str
    kernel: str           # ct_images.KERNELS key
    ts: str
    fov: float            # mm
    window: tuple[float, float]
    thickness: float = 5.0
    tilt: float = 0.0     # gantry tilt, degrees
    enhanced: bool = False


RECONS = {
    "N": {"head": Recon("HEAD 5mm STND", "5.1 ROUTINE HEAD", "STANDARD", "standard", EXPLICIT_LE,
                        230.0, (40, 100), tilt=15.0),
          "chest": Recon("CHEST 5mm STND", "6.1 CHEST ROUTINE", "STANDARD", "standard",
                         EXPLICIT_LE, 380.0, (40, 400)),
          "topo": Recon("Scout", "SCOUT", "STANDARD", "standard", EXPLICIT_LE, 500.0, (1800, 3600))},
    "S": {"head": Recon("Head 5.0 H31s", "HeadSeq", "H31s", "soft", J2K_LOSSLESS, 230.0, (40, 80)),
          "bone": Recon("Head 5.0 H60s bone", "HeadSeq", "H60s", "bone", J2K_LOSSLESS, 230.0,
                        (500, 2500)),
          "chest": Recon("Thorax 5.0 Br40d", "ThoraxRoutine", "Br40d", "standard", J2K_LOSSLESS,
                         360.0, (40, 400), enhanced=True),
          "lung": Recon("Lung 5.0 Bl64d", "ThoraxRoutine", "Bl64d", "lung", J2K_LOSSLESS, 360.0,
                        (-600, 1500), enhanced=True),
          "mip": Recon("Thorax MIP 20.0 Br40d", "ThoraxRoutine", "Br40d", "standard", J2K_LOSSLESS,
                       360.0, (-600, 1600), thickness=20.0),
          "topo": Recon("Topogram 0.6 T20f", "Topogram", "T20f", "standard", J2K_LOSSLESS, 500.0,
                        (1500, 3000))},
    "E": {"head": Recon("Head 5.0 FC23", "Schaedel", "FC23", "soft", JPEG_LOSSLESS_SV1, 220.0,
                        (35, 90)),
          "chest": Recon("Chest 5.0 FC13", "Thorax", "FC13", "standard", RLE_LOSSLESS, 350.0,
                         (40, 400)),
          "topo": Recon("Scanogram", "Scanogram", "FC10", "standard", JPEG_LOSSLESS_SV1, 500.0,
                        (2000, 4000))},
}
BODY_PART = {"N": ("HEAD", "CHEST"), "S": ("HEAD", "CHEST"), "E": ("SCHAEDEL", "THORAX")}


@dataclass
class Context:
    d: Delivery
    site: Site
    study: modules.Study
    model: str
    pose: head.Pose
    torso: Torso
    head_centre: np.ndarray
    contrast: bool
    extra: dict = field(default_factory=dict)



def ct_series_ref(ctx, description: str, *uid_parts) -> SeriesRef:
    """The next CT series of the study: number, export order and a UID seeded by its description."""
    number, order = next_series(ctx)
    uid = ctx.d.uid(ctx.site.uid_root, "series", ctx.study.uid, number, description, *uid_parts)
    return SeriesRef(ctx.study, number, description, uid, order, "CT")

def generate(out, seed: int = 0, scale: int = 1, sites=None) -> Delivery:
    d = Delivery(out, SHAPE, seed, scale)
    for site in CT_SITES:
        if sites and site.folder not in sites:
            continue
        for rep in range(scale):
            for j, exam in ((1, "head"), (2, "chest"), (3, "both"), (4, "head")):
                slot = f"{site.key}{j}"
                ctx = _context(d, site, rep * 4 + j, exam)
                SLOTS[slot](ctx, d.rng("slot", slot, rep), rep)
    return d


def _context(d: Delivery, site: Site, n: int, exam: str) -> Context:
    patient = modules.make_patient(site, n, d.seed, SHAPE)
    desc = site.study_descriptions[{"head": 0, "chest": 1, "both": 2}[exam]]
    study = modules.make_study(patient, d.seed, description=desc)
    study.extra.update(index=0, order=0)
    r = d.rng("ct-subject", site.key, n)
    if site.naming == "accession":
        study.accession = f"A{int(r.integers(10**6, 10**7))}"
    pose = head.Pose.random(r, tilt_deg=(12.0, 3.0, 4.0), shift_mm=6.0)
    centre = pose.rotation @ (pose.scale * np.array([0.0, -10.0, 15.0])) + pose.shift
    centre = np.round(centre * np.array([-1.0, -1.0, 1.0]), 1)
    torso = Torso.random(r, patient.sex == "F", contrast=site.key != "S" and bool(r.random() < 0.7))
    model = site.models[n % len(site.models)]
    return Context(d, site, study, model, pose, torso, centre, torso.blood > 100)


# --- series builders ---------------------------------------------------------------------

def ct_params(ctx: Context, recon: Recon, region: str) -> dict:
    r = ctx.d.rng("ct-params", ctx.study.uid, recon.description)
    kv = 120 if region == "head" else int(r.choice([100, 120]))
    ma = int(r.integers(180, 320)) if region == "head" else int(r.integers(90, 260))
    h = {"KVP": kv, "DataCollectionDiameter": 500, "ReconstructionDiameter": format_ds(recon.fov),
         "DistanceSourceToDetector": format_ds(1085.6), "DistanceSourceToPatient": format_ds(595.0),
         "GantryDetectorTilt": format_ds(recon.tilt), "TableHeight": format_ds(round(float(r.uniform(140, 190)), 1)),
         "RotationDirection": "CW", "ExposureTime": int(r.integers(500, 1000)),
         "XRayTubeCurrent": ma, "Exposure": int(ma * 0.8), "FilterType": "BODY FILTER" if region == "chest" else "HEAD FILTER",
         "GeneratorPower": 48, "FocalSpots": "0.7", "ConvolutionKernel": recon.kernel_name,
         "CTDIvol": round(float(r.uniform(40, 60) if region == "head" else r.uniform(4, 12)), 2),
         "PatientPosition": "HFS"}
    if region == "chest":
        h["SpiralPitchFactor"] = 0.984
    return h


def stored_converter(ctx: Context, recon: Recon, matrix: int, pad: bool = True):
    """HU -> stored values for the site (intercept, bit depth, padding outside the FOV)."""
    site = ctx.site
    bits, signed = site.params["bits_stored"], site.params["signed"]
    intercept = site.params["intercept"]
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    padding = site.params.get("padding")
    circle = ct_images.fov_circle(matrix) if (padding is not None or site.key == "S") and pad else None

    def convert(hu: np.ndarray):
        stored = np.clip(np.round(hu - intercept), lo, hi)
        if circle is not None:
            stored[~circle] = padding if padding is not None else 0
        stored = stored.astype(np.int16 if signed else np.uint16)
        h = {"RescaleIntercept": format_ds(intercept), "RescaleSlope": "1", "RescaleType": "HU"}
        h.update(modules.window(*recon.window))
        if padding is not None and pad:
            h["PixelPaddingValue"] = V("SS" if signed else "US", padding)
        return stored, h
    return convert


def axial_stack(centre: np.ndarray, matrix: int, spacing: float, step: float, count: int,
                tilt: float = 0.0, z_start: float | None = None) -> list[Plane]:
    """Axial planes `step` mm apart along the table (z); with a gantry tilt the
    image plane is tilted about the left-right axis while positions still step in z."""
    a = np.radians(tilt)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(a), np.sin(a)])
    planes = []
    z0 = centre[2] - step * (count - 1) / 2 if z_start is None else z_start
    for k in range(count):
        c = np.array([centre[0], centre[1], z0 + k * step])
        origin = c - row * spacing * (matrix - 1) / 2 - col * spacing * (matrix - 1) / 2
        planes.append(Plane(np.round(origin, 4), row, col))
    return planes


def head_plan(ctx: Context, key: str = "head", *, count: int | None = None, thickness=None,
              matrix: int = 512, description: str | None = None, body_part: str | None = None,
              metal: dict | None = None, tilt: float | None = None) -> SeriesPlan:
    recon = RECONS[ctx.site.key][key]
    thick = thickness or recon.thickness
    count = count or int(round(125.0 / thick)) + 1
    spacing = recon.fov / matrix
    tilt = recon.tilt if tilt is None else tilt
    planes = axial_stack(ctx.head_centre + np.array([0.0, 0.0, 2.0]), matrix, spacing, thick,
                         count, tilt)
    ref = ct_series_ref(ctx, description or recon.description)
    uid = ref.uid

    def render(index: int, plane: Plane) -> np.ndarray:
        r = ctx.d.rng("ct-render", uid, index)
        m = metal.get(index) if metal else None
        return ct_images.render_head(ctx.pose, plane, matrix, spacing, thick, r, recon.kernel,
                                     metal=m)

    extra = ct_params(ctx, recon, "head")
    extra["GantryDetectorTilt"] = format_ds(tilt)
    plan = SeriesPlan(ref=ref, site=ctx.site, model=ctx.model, sop_class=modules.CT_IMAGE,
                      image_type=("ORIGINAL", "PRIMARY", "AXIAL"), protocol=recon.protocol,
                      body_part=body_part or BODY_PART[ctx.site.key][0], planes=planes,
                      instance_numbers=list(range(1, count + 1)), matrix=(matrix, matrix),
                      spacing=(spacing, spacing), thickness=thick, ts=recon.ts, render=render,
                      to_stored=stored_converter(ctx, recon, matrix),
                      bits_stored=ctx.site.params["bits_stored"], signed=ctx.site.params["signed"],
                      true_modality="CT", true_region="head", source="nilearn:MNI152 2009a head phantom",
                      extra=extra, time_s=ctx.study.time + 120.0 * ref.number)
    plan.hard_negative = _head_hard(ctx, tilt, key)
    return plan


def _head_hard(ctx: Context, tilt: float, key: str):
    def hard(index: int, img: np.ndarray) -> str:
        if float(np.mean(img > -300)) < 0.1:
            return "dark_end_slice"
        if key == "bone":
            return "bone_kernel_recon"
        if tilt:
            return "gantry_tilt"
        if ctx.site.params.get("padding") is not None:
            return "fov_padding"
        return ""
    return hard


def chest_positions(ctx: Context, step: float, top: float = 95.0, bottom: float = -185.0):
    z_top = ctx.torso.carina + top
    count = int(round((top - bottom) / step)) + 1
    return z_top - step * (count - 1), count


def chest_plan(ctx: Context, key: str = "chest", *, count: int | None = None, z_start=None,
               description: str | None = None, body_part: str | None = None,
               slab: float = 0.0, region: str = "chest") -> SeriesPlan:
    recon = RECONS[ctx.site.key][key]
    matrix = 512
    spacing = recon.fov / matrix
    step = recon.thickness
    z0, n = chest_positions(ctx, step)
    count = count or n
    z0 = z0 if z_start is None else z_start
    centre = np.array([ctx.torso.cx, ctx.torso.cy + 20.0, 0.0])
    planes = axial_stack(centre, matrix, spacing, step, count, 0.0, z_start=z0)
    ref = ct_series_ref(ctx, description or recon.description)
    uid = ref.uid

    def render(index: int, plane: Plane) -> np.ndarray:
        r = ctx.d.rng("ct-render", uid, index)
        return ct_images.render_torso(ctx.torso, float(plane.origin[2]), plane, matrix, spacing, r,
                                      recon.kernel, slab=slab)

    extra = ct_params(ctx, recon, "chest")
    if ctx.contrast:
        extra["ContrastBolusAgent"] = "Iomeron 400" if ctx.site.key != "N" else "OMNIPAQUE 350"
    plan = SeriesPlan(ref=ref, site=ctx.site, model=ctx.model, sop_class=modules.CT_IMAGE,
                      image_type=("ORIGINAL", "PRIMARY", "AXIAL"), protocol=recon.protocol,
                      body_part=body_part or BODY_PART[ctx.site.key][1], planes=planes,
                      instance_numbers=list(range(1, count + 1)), matrix=(matrix, matrix),
                      spacing=(spacing, spacing), thickness=recon.thickness, ts=recon.ts,
                      render=render, to_stored=stored_converter(ctx, recon, matrix),
                      bits_stored=ctx.site.params["bits_stored"], signed=ctx.site.params["signed"],
                      true_modality="CT", true_region=region, source="torso phantom",
                      extra=extra, time_s=ctx.study.time + 120.0 * ref.number)
    pad = ctx.site.params.get("padding") is not None

    def hard(index: int, img: np.ndarray) -> str:
        if key == "lung":
            return "sharp_kernel_recon"
        return "fov_padding" if pad else ""
    plan.hard_negative = hard
    return plan


def topogram_plan(ctx: Context, region: str, view: str = "ap", *,
                  body_part: str | None = None, description: str | None = None) -> SeriesPlan:
    """One projection localizer (topogram / scout / scanogram)."""
    recon = RECONS[ctx.site.key]["topo"]
    rows = cols = 512
    if region == "head":
        field = 320.0
        top = ctx.head_centre[2] + 150
        view = "lat"
    else:
        field = 500.0
        top = ctx.torso.carina + 170
    spacing = field / cols
    if view == "lat":
        row, col = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
        origin = np.array([0.0, ctx.head_centre[1] - field / 2 if region == "head"
                           else ctx.torso.cy - field / 2, top])
    else:
        row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])
        origin = np.array([ctx.torso.cx - field / 2, 0.0, top])
    ref = ct_series_ref(ctx, description or recon.description, view)
    uid = ref.uid

    def render(index: int, plane: Plane) -> np.ndarray:
        r = ctx.d.rng("topo", uid)
        if region == "head":
            proj = ct_images.head_topogram(ctx.pose, rows, cols, field)
        else:
            proj = ctx.torso.projection(top, top - field, field, rows, cols,
                                        axis="ap" if view == "ap" else "lat")
        img = proj * 95.0 + 40.0
        return img + r.normal(0, 6.0, img.shape)

    def to_stored(img: np.ndarray):
        stored = np.clip(np.round(img), 0, 4095).astype(np.uint16)
        h = modules.window(*recon.window)
        h.update({"RescaleIntercept": "0", "RescaleSlope": "1", "RescaleType": "US"})
        return stored, h

    extra = {"KVP": 120, "XRayTubeCurrent": 35, "ExposureTime": 4100, "ConvolutionKernel": recon.kernel_name,
             "GantryDetectorTilt": "0", "TableHeight": "160", "RotationDirection": "CW",
             "DataCollectionDiameter": 500, "FilterType": "FLAT", "PatientPosition": "HFS"}
    return SeriesPlan(ref=ref, site=ctx.site, model=ctx.model, sop_class=modules.CT_IMAGE,
                      image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), protocol=recon.protocol,
                      body_part=body_part or BODY_PART[ctx.site.key][0 if region == "head" else 1],
                      planes=[Plane(origin, row, col)], instance_numbers=[1], matrix=(rows, cols),
                      spacing=(spacing, spacing), thickness=0.6, ts=recon.ts, render=render,
                      to_stored=to_stored, bits_stored=12, signed=False, true_modality="CT",
                      true_region=region, source="topogram projection of the phantom",
                      extra=extra, series_codes=["LOCALIZER"], time_s=ctx.study.time + 10.0)


def write(ctx: Context, plan: SeriesPlan, keep: bool = True):
    return series.write_series(ctx.d, plan, keep_pixels=keep)


def write_enhanced(ctx: Context, key: str, *, note: str = "", hard_negative: str = "",
                   ts: str | None = None) -> np.ndarray:
    """A chest reconstruction as one Enhanced CT object; returns its HU frames."""
    plan = chest_plan(ctx, key)
    recon = RECONS[ctx.site.key][key]
    frames, hu_frames = [], []
    for i, p in enumerate(plan.planes):
        hu = plan.render(i, p)
        stored, _ = plan.to_stored(hu)
        frames.append(stored)
        hu_frames.append(hu.astype(np.float32))
    arr = np.stack(frames)
    enhanced.write_enhanced_ct(ctx.d, plan.ref, ctx.site, ctx.model, arr, plan.planes,
                               plan.spacing[0], plan.thickness, ts or recon.ts,
                               ctx.site.params["bits_stored"], ctx.site.params["signed"],
                               ctx.site.params["intercept"], recon.window, recon.kernel_name,
                               plan.body_part, recon.protocol, true_region="chest",
                               hard_negative=hard_negative, note=note,
                               ct_params={"KVP": 120})
    return np.stack(hu_frames)


def rdsr(ctx: Context, dlp: float, note: str) -> None:
    """An X-Ray Radiation Dose SR (TID 10011) for the exam."""
    d, site, study = ctx.d, ctx.site, ctx.study
    number, order = next_series(ctx)
    uid = d.uid(site.uid_root, "rdsr-series", study.uid)
    sop = d.uid(site.uid_root, "rdsr-sop", uid)
    time_s = study.time + 900
    code = lambda value, scheme, meaning: {"CodeValue": value, "CodingSchemeDesignator": scheme,
                                           "CodeMeaning": meaning}
    h = {}
    h.update(modules.sop_common(RDSR, sop, study, time_s))
    h.update(modules.patient_study(study))
    h.update(modules.series_module(study, modality="SR", series_uid=uid, number=number,
                                   description="Dose Report", protocol=None, body_part=None,
                                   time_s=time_s, patient_position=None))
    h.update(modules.equipment(site, ctx.model))
    h.update({
        "InstanceNumber": 1, "ContentDate": study.date, "ContentTime": ids.format_time(time_s),
        "ReferencedPerformedProcedureStepSequence": [], "PerformedProcedureCodeSequence": [],
        "ValueType": "CONTAINER", "ContinuityOfContent": "SEPARATE",
        "CompletionFlag": "COMPLETE", "VerificationFlag": "UNVERIFIED",
        "ConceptNameCodeSequence": [code("113701", "DCM", "X-Ray Radiation Dose Report")],
        "ContentTemplateSequence": [{"MappingResource": "DCMR", "TemplateIdentifier": "10011"}],
        "ContentSequence": [
            {"RelationshipType": "HAS CONCEPT MOD", "ValueType": "CODE",
             "ConceptNameCodeSequence": [code("121058", "DCM", "Procedure reported")],
             "ConceptCodeSequence": [code("P5-08000", "SRT", "Computed Tomography X-Ray")]},
            {"RelationshipType": "CONTAINS", "ValueType": "CONTAINER", "ContinuityOfContent": "SEPARATE",
             "ConceptNameCodeSequence": [code("113811", "DCM", "CT Accumulated Dose Data")],
             "ContentSequence": [
                 {"RelationshipType": "CONTAINS", "ValueType": "NUM",
                  "ConceptNameCodeSequence": [code("113813", "DCM", "CT Dose Length Product Total")],
                  "MeasuredValueSequence": [{"NumericValue": format_ds(round(dlp, 1)),
                                             "MeasurementUnitsCodeSequence": [code("mGy.cm", "UCUM", "mGy.cm")]}]}]}],
    })
    enc = d.encode(h, EXPLICIT_LE, site)
    rec = record_from(h, site=site.folder, patient=study.patient.pseudonym, true_modality="SR",
                      true_region="none", source="constructed radiation dose SR", note=note)
    rec.add("NO_PIXEL_DATA")
    rec.primary = "NO_PIXEL_DATA"
    ref = SeriesRef(study, number, "Dose Report", uid, order, "SR")
    d.put(instance_path(ref, 1, 0, sop), enc.data, rec)


def dose_screen(ctx: Context, rows_text: list[str]) -> None:
    """The scanner's 'patient protocol' dose page saved as a secondary capture:
    text on black, nearly every pixel one value (LOW_DYNAMIC_RANGE, not judged
    as content)."""
    img = np.zeros((512, 512))
    lines = ["Patient Protocol", "", "Series  Type    Scan  kV   mAs  CTDIvol  DLP"] + rows_text
    img = imd.burn_text(img, lines, "tl", 200.0, 14)
    stored = np.round(img).astype(np.uint8)
    ctx.d.truth.burned_in_text.extend(lines)
    spec = Spec("synthetic", f"dose-page-{ctx.study.uid}", "CT", None, "Patient Protocol", None, "OT", "none",
                ["LOW_DYNAMIC_RANGE", "BURNED_IN_ANNOTATION"], "dose page screen capture",
                sop_class=modules.SC_IMAGE,
                extra={"BurnedInAnnotation": "YES", "ImageType": ["DERIVED", "SECONDARY", "OTHER"]},
                pixels=lambda arr, s=stored: (s[None], {"BitsStored": 8}))
    place(ctx, spec)


def coronal_mip(ctx: Context, hu_frames: np.ndarray, thickness: float, spacing: float) -> None:
    """A coronal maximum intensity projection of the chest saved as a secondary
    capture (an expected derived image)."""
    mip = hu_frames.max(axis=1)[::-1]                   # (z from top, x)
    rows = int(round(mip.shape[0] * thickness / spacing))
    img = imd.resize(mip, (rows / mip.shape[0], 1.0))
    stored = np.clip(np.round(img + 1024), 0, 4095).astype(np.uint16)
    spec = Spec("synthetic", f"coronal-mip-{ctx.study.uid}", "CT", BODY_PART[ctx.site.key][1],
                "Thorax MIP cor 10.0", None, "CT", "chest", [], "coronal MIP of the chest",
                sop_class=modules.SC_IMAGE,
                extra={"BurnedInAnnotation": "NO", "ImageType": ["DERIVED", "SECONDARY", "MIP"],
                       "RescaleIntercept": "-1024", "RescaleSlope": "1", "RescaleType": "HU",
                       "WindowCenter": "200", "WindowWidth": "1600"},
                pixels=lambda arr, s=stored: (s[None], {"BitsStored": 12}))
    rec = place(ctx, spec)
    rec.hard_negative = "derived_secondary_capture"


# --- per-instance defects specific to CT -------------------------------------------------

def no_padding_attribute() -> Op:
    def header(h):
        h.pop("PixelPaddingValue", None)
    return Op("INTENSITY_OUT_OF_RANGE", header=header,
              note="PixelPaddingValue dropped: -3024 HU outside the FOV unmarked")


def wrong_slope(slope: float) -> Op:
    def header(h):
        h["RescaleSlope"] = format_ds(slope)
    return Op("INTENSITY_OUT_OF_RANGE", header=header, note=f"RescaleSlope {slope:g} written by a converter")


def metal_note() -> Op:
    return Op("INTENSITY_OUT_OF_RANGE", note="aneurysm clip: metal beyond 4000 HU (extended CT scale)")


def constant_frame(site: Site, rep: int) -> Op:
    """A blank frame: padding everywhere at GE, air (-1024 / -1000 HU) elsewhere."""
    padding = site.params.get("padding")
    hu = {"S": -1024, "E": -1000}.get(site.key, -1000)
    value = padding if padding is not None and rep == 0 else int(hu - site.params["intercept"]) + rep
    return Op("CONSTANT_IMAGE", stored=lambda s, m: np.full_like(s, value), note="blank frame")


# --- slots -------------------------------------------------------------------------------

def slot_n1(ctx: Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, topogram_plan(ctx, "head"))
    h = head_plan(ctx)
    geo.missing_slice(h, 13)
    last, first = ids.person("fr", r)
    h.ops = {3: [ops.phi(d, {"PatientName": f"{last}^{first}", "PatientID": ids.mrn("fr", r),
                             "PatientBirthDate": ids.birth_date(r)}, "identity left on one slice")],
             9: [no_padding_attribute()], 14: [ops.noisy_gaussian(60.0)], 20: [constant_frame(ctx.site, rep)]}
    ws = write(ctx, h)
    w = ws[12]
    extras.byte_copy(d, h, w, extra_path(study, "renvoi", w.path.rsplit("/", 1)[1]),
                     "the same file sent again")
    extras.near_copy_in_series(d, h, ws[16], JPEG_LOSSLESS_SV1, len(h.planes), d.rng("near", h.ref.uid))
    rdsr(ctx, float(r.uniform(700, 1100)), "radiation dose structured report")
    extras.plain_file(d, f"{ctx.site.folder}/{study.accession}/export_manifest.csv",
                      ("series,instances,status\r\n" + f"{h.ref.number},{len(h.planes)},OK\r\n").encode(),
                      site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="NOT_DICOM", note="CSV manifest")
    place(ctx, Spec("synthetic", f"mr-t2-slice:{float(r.uniform(-5, 40)):.1f}", "CT", "HEAD", "HEAD 5mm STND", None, "MR", "head",
                    ["IRRELEVANT_CONTENT"], "an MR slice relabelled CT", sop_class=modules.SC_IMAGE))


def slot_n2(ctx: Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, topogram_plan(ctx, "chest", "ap"))
    write(ctx, topogram_plan(ctx, "chest", "lat"))
    c = chest_plan(ctx)
    c.ops = {12: [ops.squeezed(14)], 22: [wrong_slope(10.0)], 40: [ops.unreadable("native_short")],
             47: [ops.motion(11, 90.0)]}
    ws = write(ctx, c)
    w = ws[5]
    extras.damaged_copy(d, c, w, extra_path(study, "incoming", w.path.rsplit("/", 1)[1]),
                        "truncated_pixels", d.rng("damage", w.path), float(r.uniform(0.2, 0.8)))
    extras.plain_file(d, instance_path(c.ref, 900, len(c.planes) + 1, "x"), b"",
                      site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="EMPTY_FILE", note="zero-byte file")
    place(ctx, Spec("pydicom-data", "RG1_UNCR.dcm", "CR", "CHEST", "THORAX PA", None, "CR", "chest",
                    ["UNEXPECTED_MODALITY"], "chest radiograph sent with the CT",
                    pixels=downsample(2), ts=J2K_LOSSLESS, extra={"PixelSpacing": ["0.2", "0.2"]}),
          other_study(ctx, "RADIO THORAX"))


def slot_n3(ctx: Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, topogram_plan(ctx, "head"))
    write(ctx, head_plan(ctx))
    thick = head_plan(ctx, thickness=10.0, description="THORAX 10mm STND", body_part="CHEST")
    thick.protocol = "6.1 CHEST ROUTINE"
    thick.series_codes.append("ANATOMY_HEADER_MISMATCH")
    thick.note = "head reconstruction filed under the chest protocol"
    write(ctx, thick)
    write(ctx, topogram_plan(ctx, "chest", "ap"))
    c = chest_plan(ctx)
    c.ops = {12: [ops.nonconformant("ds_comma_kvp")], 20: [ops.blurred(3.0)],
             40: [ops.saturated(0.3)]}
    ws = write(ctx, c)
    number, order = next_series(ctx)
    extras.export_key_images(d, c, [ws[18], ws[33]], number, order, d.rng("export", c.ref.uid),
                             "KEY IMAGES")
    w = ws[8]
    extras.damaged_copy(d, c, w, extra_path(study, "incoming", w.path.rsplit("/", 1)[1]),
                        "garbage_vr", d.rng("damage", w.path))
    rdsr(ctx, float(r.uniform(900, 1400)), "radiation dose structured report")


def slot_s1(ctx: Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, topogram_plan(ctx, "head"))
    stopped = head_plan(ctx)
    geo.keep_middle(stopped, 2)
    write(ctx, stopped)
    h = head_plan(ctx)
    last = len(h.planes) - 1
    h.ops = {8: [ops.unreadable("j2k_cut")], 17: [ops.requantised(12)],
             22: [ops.nonconformant("no_sop_class_meta")], 24: [ops.saturated(0.35, gain=4.0)],
             last: [ops.damaged("truncated_header")]}
    ws = write(ctx, h)
    bone = head_plan(ctx, "bone")
    bone.ts = EXPLICIT_LE
    write(ctx, bone)
    extras.resend_new_uid(d, h, ws[5], EXPLICIT_LE, len(h.planes))
    members = {f"{k:04d}.dcm": w.data for k, w in enumerate(ws[:2])}
    extras.plain_file(d, f"{study_folder(study)}/head_export.zip", fd.zip_of(members),
                      site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="NOT_DICOM", note="zip archive of two DICOM files")
    place(ctx, Spec("deid-data", "dicom-cookies/image2.dcm", "CT", "HEAD", "Head 5.0 H31s", None,
                    "XC", "none", ["IRRELEVANT_CONTENT"], "photograph relabelled CT head", keep=True))
    place(ctx, Spec("synthetic", "test-pattern", "CT", None, "QA PHANTOM", "QA", "OT", "none",
                    ["SATURATED"], "monitor test pattern stored as CT",
                    sop_class=modules.SC_IMAGE))


def slot_s2(ctx: Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    topo = topogram_plan(ctx, "chest", "ap")
    topo.ops = {0: [ops.phi(d, {"ReferringPhysicianName": ids.PHYSICIANS["us"][rep % 3]},
                            "referring physician left in")]}
    write(ctx, topo)
    hu = write_enhanced(ctx, "chest")
    write_enhanced(ctx, "lung", ts=EXPLICIT_LE, hard_negative="sharp_kernel_recon",
                   note="lung kernel reconstruction: sharper and noisier by design")
    mip = chest_plan(ctx, "mip", count=8, slab=20.0)
    geo.thick_slab(mip)
    write(ctx, mip)
    coronal_mip(ctx, hu, RECONS["S"]["chest"].thickness, RECONS["S"]["chest"].fov / 512)
    dose_screen(ctx, [f"{k + 1:<7} {t:<7} {s:<5} 120  {m:<4} {c:<8} {dl}" for k, (t, s, m, c, dl) in
                      enumerate([("Topo", "1", "35", "-", "6.1"), ("Spiral", "2-58", "142", "7.84", "271.4")])])
    extras.plain_file(d, f"{study_folder(study)}/index.html", fd.html_error_page(404, "Not Found"),
                      site=ctx.site.folder, patient=study.patient.pseudonym, ingest_error="NOT_DICOM",
                      note="HTML page in the export")


def slot_s3(ctx: Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    topo = topogram_plan(ctx, "head")
    write(ctx, topo)
    h = head_plan(ctx)
    geo.reangled(h, len(h.planes) - 6, 10.0)
    h.ops = {10: [ops.no_pixel_data()],
             22: [ops.other_sop_uid(d.uid(ctx.site.uid_root, "sop", topo.ref.uid, 0))],
             14: [ops.noisy_gaussian(70.0)], 18: [constant_frame(ctx.site, rep)],
             3: [ops.phi(d, {"InstitutionAddress": ids.INSTITUTIONS["us"][1]}, "institution address left in")]}
    ws = write(ctx, h)
    write_enhanced(ctx, "chest", ts=EXPLICIT_LE)
    abd_study = other_study(ctx, "CT ABDOMEN WITH CONTRAST")
    main_study, ctx.study = ctx.study, abd_study
    abdomen = chest_plan(ctx, description="Abdomen 10.0 Br40d", body_part="ABDOMEN", count=6,
                         z_start=ctx.torso.carina - 290.0, region="abdomen")
    ctx.study = main_study
    abdomen.series_codes.append("UNEXPECTED_ANATOMY")
    abdomen.note = "abdomen reconstruction of the same scan sent along"
    abdomen.thickness = 10.0
    abdomen.planes = axial_stack(np.array([ctx.torso.cx, ctx.torso.cy + 20.0, 0.0]), 512,
                                 abdomen.spacing[0], 10.0, 6, z_start=ctx.torso.carina - 290.0)
    abdomen.protocol = "AbdomenRoutine"
    abdomen.instance_numbers = list(range(1, 7))
    write(ctx, abdomen)
    w = ws[6]
    extras.damaged_copy(d, h, w, extra_path(study, "retry", w.path.rsplit("/", 1)[1]), "bad_length",
                        d.rng("damage", w.path))
    extras.plain_file(d, f"{study_folder(study)}/{h.ref.uid.rsplit('.', 1)[-1][-8:]}/0099.dcm", b"",
                      site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="EMPTY_FILE", note="zero-byte file")


def slot_e1(ctx: Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, topogram_plan(ctx, "head"))
    h = head_plan(ctx, metal={22: (230, 300, 5)})
    geo.irregular_gap(h, 13, 1.5)
    name = ids.person("de", r)
    when = real_date(ctx)
    h.ops = {6: [ops.burned_in(d, [f"{name[0]}, {name[1]}", when.strftime("%d.%m.%Y"),
                                   "Klinikum Sued, Radiologie"], "tr", 13)],
             12: [ops.nonconformant("uid_leading_zero")], 19: [ops.blurred(3.0)],
             22: [metal_note()]}
    write(ctx, h)
    icons = head_plan(ctx, count=3, matrix=48, description="Head 5.0 FC23 icons", thickness=5.0)
    icons.ts = JPEG_LS_LOSSLESS
    geo.low_matrix(icons)
    write(ctx, icons)
    extras.plain_file(d, f"{study_folder(study)}/CT.{d.uid(ctx.site.uid_root, 'junk', study.uid)}.dcm",
                      fd.random_bytes(d.rng("random", study.uid), 200000 + int(r.integers(0, 5000))),
                      site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="NOT_DICOM", note="random bytes named like an image")
    extras.plain_file(d, f"{study_folder(study)}/CT.{d.uid(ctx.site.uid_root, 'empty', study.uid)}.dcm",
                      b"", site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="EMPTY_FILE", note="zero-byte file")


def slot_e2(ctx: Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    topo = topogram_plan(ctx, "chest", "ap", body_part="SCHAEDEL")
    topo.ts = JPEG_LS_LOSSLESS
    topo.series_codes.append("ANATOMY_HEADER_MISMATCH")
    topo.note = "chest scanogram with BodyPartExamined of the head program"
    write(ctx, topo)
    c = chest_plan(ctx)
    last = len(c.planes) - 1
    name = ids.person("de", r)
    c.ops = {15: [constant_frame(ctx.site, rep)], 40: [ops.noisy_gaussian(90.0)],
             30: [ops.phi(d, {"StudyDescription": f"CT Thorax mit KM {name[0].title()}"},
                          "patient name typed into StudyDescription")],
             last: [ops.damaged("truncated_pixels", float(r.uniform(0.3, 0.8)))]}
    ws = write(ctx, c)
    number, order = next_series(ctx)
    extras.export_key_images(d, c, [ws[10], ws[20]], number, order, d.rng("export", c.ref.uid),
                             "Key Images")
    w = ws[3]
    extras.damaged_copy(d, c, w, extra_path(study, "eingang", w.path.rsplit("/", 1)[1]),
                        "junk_bytes", d.rng("damage", w.path))
    place(ctx, Spec("deid-data", "animals/cat.dcm", "CT", "THORAX", "Chest 5.0 FC13", None, "DX",
                    "chest", ["IRRELEVANT_CONTENT"], "veterinary radiograph (cat) relabelled CT",
                    pixels=downsample(4), ts=RLE_LOSSLESS))


def slot_e3(ctx: Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, topogram_plan(ctx, "head"))
    h = head_plan(ctx)
    h.ops = {9: [ops.requantised(10)]}
    write(ctx, h)
    write(ctx, topogram_plan(ctx, "chest", "ap"))
    single = chest_plan(ctx)
    geo.keep_middle(single, 1)
    write(ctx, single)
    c = chest_plan(ctx)
    c.ops = {10: [ops.saturated(0.3)], 33: [ops.unreadable("rle_segments")]}
    ws = write(ctx, c)
    w = ws[21]
    extras.byte_copy(d, c, w, extra_path(study, "nachversand", w.path.rsplit("/", 1)[1]),
                     "the same file sent again")
    place(ctx, Spec("deid-data", "ultrasounds/GREYSCALE_IMAGE.dcm", "CT", "THORAX", "Chest 5.0 FC13",
                    None, "US", "abdomen", ["IRRELEVANT_CONTENT", "BURNED_IN_ANNOTATION"],
                    "ultrasound (with burned-in text) relabelled CT", keep=True))
    place(ctx, Spec("pydicom-data", "MR2_UNCR.dcm", "MR", "SHOULDER", "PD TSE FS COR", None, "MR",
                    "upper_extremity", ["UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY"],
                    "shoulder MR sent along", pixels=downsample(2)),
          other_study(ctx, "MRT Schulter links"))


def slot_clean_head(ctx: Context, r: np.random.Generator, rep: int) -> None:
    """A head exam without planted defects (hard negatives only)."""
    write(ctx, topogram_plan(ctx, "head"))
    write(ctx, head_plan(ctx))


SLOTS = {"N4": slot_clean_head, "S4": slot_clean_head, "E4": slot_clean_head, "N1": slot_n1, "N2": slot_n2, "N3": slot_n3, "S1": slot_s1, "S2": slot_s2, "S3": slot_s3,
         "E1": slot_e1, "E2": slot_e2, "E3": slot_e3}
