"""Shape `chest-xray`: CR and DX chest radiographs from three sites.

SITE_R: computed radiography (MONOCHROME1, RLE), PA and lateral, one series per view.
SITE_T: DX detector (MONOCHROME2, explicit VR; every fourth patient JPEG 2000 lossless
        as the PACS compressed it), PA and lateral in one series, some with a
        dual-energy soft-tissue image.
SITE_U: bedside DX, AP supine (MONOCHROME2, 14-bit, explicit VR), follow-up studies.

Every other patient carries one planted defect or foreign object (a task); the
others are clean, with lead side markers (an orientation letter in the pixels,
not burned-in annotation) on most images. Series geometry does not apply to
single projection images.

Expected by the job: modalities [CR, DX], regions [chest], declared de-identified.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import extras, ids, modules, ops, series, xray
from . import file_defects as fd
from .common import downsample, next_series, other_study, place, real_date
from .delivery import Delivery
from .foreign import Spec
from .layout import SeriesRef, extra_path, instance_path, study_folder
from .series import Op, SeriesPlan
from .sites import XR_SITES, Site
from .writer import EXPLICIT_LE, J2K_LOSSLESS, RLE_LOSSLESS, format_ds

SHAPE = "chest-xray"
EXPECTATIONS = {"modalities": ["CR", "DX"], "body_regions": ["chest"], "declared_deidentified": True}
PATIENTS = {"R": 55, "T": 55, "U": 48}
TS = {"rle": RLE_LOSSLESS, "j2k": J2K_LOSSLESS, "explicit": EXPLICIT_LE}
VIEW_CODE = {"PA": "PA", "AP": "AP", "LAT": "LL"}
ORIENTATION = {"PA": ["L", "F"], "AP": ["R", "F"], "LAT": ["A", "F"]}


@dataclass
class Ctx:
    d: Delivery
    site: Site
    study: modules.Study
    model: str
    n: int
    rep: int
    plans: list = field(default_factory=list)
    written: list = field(default_factory=list)


@dataclass
class Task:
    pre: Callable | None = None    # (ctx) -> None, before writing (may set ops)
    post: Callable | None = None   # (ctx) -> None, after writing (extras)


def generate(out, seed: int = 0, scale: int = 1, sites=None) -> Delivery:
    d = Delivery(out, SHAPE, seed, scale)
    for site in XR_SITES:
        if sites and site.folder not in sites:
            continue
        tasks = TASKS[site.key]()
        count = PATIENTS[site.key]
        recent: list[str] = []
        for rep in range(scale):
            for k in range(count):
                n = rep * count + k + 1
                task = tasks[k // 2] if k % 2 == 0 and k // 2 < len(tasks) else None
                ctx = write_patient(d, site, n, rep, task, recent)
                recent[:] = ([w.header["SOPInstanceUID"] for ws in ctx.written for w in ws] + recent)[:4]
    return d


# --- one patient -----------------------------------------------------------------------

def write_patient(d: Delivery, site: Site, n: int, rep: int, task: Task | None, recent: list) -> Ctx:
    patient = modules.make_patient(site, n, d.seed, SHAPE)
    r = d.rng("xr-patient", site.key, n)
    study = modules.make_study(patient, d.seed,
                               description=site.study_descriptions[int(r.integers(2))])
    study.extra.update(index=0, order=0)
    if site.naming == "accession":
        study.accession = f"CR{int(r.integers(10**7, 10**8))}"
    ctx = Ctx(d, site, study, site.models[n % len(site.models)], n, rep)
    ctx.recent = list(recent)
    views = ["AP"] if site.key == "U" else ["PA", "LAT"]
    if site.params["series_per_view"]:
        ctx.plans = [view_plan(ctx, [v]) for v in views]
    else:
        ctx.plans = [view_plan(ctx, views)]
    if site.key == "T" and n % 7 == 3:
        ctx.plans.append(view_plan(ctx, ["PA"], derived=True))
    if task and task.pre:
        task.pre(ctx)
    ctx.written = [series.write_series(d, plan) for plan in ctx.plans]
    if task and task.post:
        task.post(ctx)
    if site.key == "U" and n % 3 == 0:                      # a follow-up the next morning
        follow = Ctx(d, site, modules.make_study(patient, d.seed, index=1,
                                                 description=site.study_descriptions[1]),
                     ctx.model, n, rep)
        follow.study.extra.update(index=1, order=0)
        follow.plans = [view_plan(follow, ["AP"])]
        follow.written = [series.write_series(d, p) for p in follow.plans]
    return ctx


def _source(views: list[str]) -> str:
    names = {"PA": "pydicom-data:RG1_UNCR.dcm warped", "AP": "pydicom-data:RG1_UNCR.dcm warped",
             "LAT": "torso phantom lateral projection"}
    return " + ".join(dict.fromkeys(names[v] for v in views))


def _ts(ctx: Ctx) -> str:
    if ctx.site.params["ts"] == "j2k" and ctx.n % 4:
        return EXPLICIT_LE
    return TS[ctx.site.params["ts"]]


def view_plan(ctx: Ctx, views: list[str], derived: bool = False, size=None) -> SeriesPlan:
    site = ctx.site
    rows, cols = size or site.params["detector"]
    spacing = site.params["spacing"] * (site.params["detector"][0] / rows)
    bits = site.params["bits_stored"]
    mono1 = site.params["photometric"] == "MONOCHROME1"
    number, order = next_series(ctx)
    desc = {"PA": "Thorax PA", "AP": "Thorax AP liegend", "LAT": "Thorax lateral"}[views[0]]
    if site.key == "R":
        desc = {"PA": "CHEST PA", "LAT": "CHEST LAT"}[views[0]]
    if site.key == "T" and not derived:
        desc = "THORAX PA/LAT"
    if derived:
        desc = "THORAX PA SOFT TISSUE"
    uid = ctx.d.uid(site.uid_root, "xr-series", ctx.study.uid, number, desc)
    ref = SeriesRef(ctx.study, number, desc, uid, order, site.params["modality"])
    exposure = 0.55 if site.key == "U" else 1.0
    markers = {}

    def render(index: int, plane) -> np.ndarray:
        r = ctx.d.rng("xr-render", uid, index)
        view = views[index]
        marker = None if r.random() < 0.12 or rows < 200 else ("L" if view != "AP" else "R")
        img, info = xray.radiograph(view, rows, cols, r, marker=marker, exposure=exposure)
        markers[index] = bool(marker)
        if derived:
            from scipy import ndimage
            img = 0.55 * ndimage.gaussian_filter(img, 2.0) + 0.35 * img
        return img

    def to_stored(img: np.ndarray):
        stored = xray.to_stored(img, bits, mono1)
        sub = stored[::4, ::4].astype(np.float64)
        lo, hi = np.percentile(sub, [2, 98])
        h = modules.window((lo + hi) / 2, (hi - lo) * 1.2 + 1)
        h.update({"RescaleIntercept": "0", "RescaleSlope": "1", "RescaleType": "US"})
        return stored, h

    def hard(index: int, img: np.ndarray) -> str:
        if derived:
            return "derived_image"
        if site.key == "U":
            return "bedside_ap"
        return "lead_marker" if markers.get(index) else ""

    modality = site.params["modality"]
    extra = {
        "PatientPosition": "" if modality == "CR" else None,
        "KVP": 120 if views[0] != "AP" else 90,
        "ExposureTime": 12 if views[0] != "AP" else 20,
        "XRayTubeCurrent": 320 if views[0] != "AP" else 100,
        "Exposure": 4 if views[0] != "AP" else 2,
        "DistanceSourceToDetector": format_ds(1800 if views[0] != "AP" else 1000),
        "ImagerPixelSpacing": [format_ds(spacing), format_ds(spacing)],
        "PixelSpacing": [format_ds(spacing), format_ds(spacing)],
        "BurnedInAnnotation": "NO", "LossyImageCompression": "00",
        "PresentationLUTShape": "INVERSE" if mono1 else "IDENTITY",
        "PhotometricInterpretation": site.params["photometric"],
    }
    extra = {k: v for k, v in extra.items() if v is not None}
    if modality == "CR":
        extra.update({"PlateType": "GP-25", "Sensitivity": format_ds(200),
                      "AcquisitionDeviceProcessingDescription": "CHEST"})
    else:
        extra.update({"PresentationIntentType": "FOR PRESENTATION", "DetectorType": "SCINTILLATOR",
                      "DetectorConfiguration": "AREA", "PixelIntensityRelationship": "LOG",
                      "PixelIntensityRelationshipSign": 1, "Grid": "IN" if site.key == "T" else "NONE",
                      "ExposureIndex": format_ds(300 if site.key == "T" else 180),
                      "TargetExposureIndex": format_ds(300 if site.key == "T" else 250)})
    image_type = ("DERIVED", "SECONDARY") if derived else ("ORIGINAL", "PRIMARY")

    def per_instance(index: int) -> dict:
        view = views[index]
        h = {"ViewPosition": VIEW_CODE[view], "PatientOrientation": ORIENTATION[view]}
        if modality == "DX":
            h["AcquisitionDeviceProcessingDescription"] = f"Chest {view}"
        return h

    sop_class = modules.CR_IMAGE if modality == "CR" else modules.DX_PRESENTATION
    return SeriesPlan(ref=ref, site=site, model=ctx.model, sop_class=sop_class,
                      image_type=image_type, protocol=None, body_part="CHEST",
                      planes=[None] * len(views), instance_numbers=list(range(1, len(views) + 1)),
                      matrix=(rows, cols), spacing=(spacing, spacing), thickness=0.0,
                      ts=_ts(ctx), render=render, to_stored=to_stored,
                      bits_stored=bits, signed=False, true_modality=modality,
                      true_region="chest", source=_source(views),
                      extra=extra, hard_negative=hard, time_s=ctx.study.time + 60.0 * number,
                      plane_attributes=False, instance_extra=per_instance,
                      note="dual-energy soft-tissue image" if derived else "")


# --- tasks ---------------------------------------------------------------------------------

def target(ctx: Ctx, view: int):
    """(plan, index) of the view-th image of the patient."""
    if len(ctx.plans[0].planes) > 1:
        return ctx.plans[0], view
    return ctx.plans[min(view, len(ctx.plans) - 1)], 0


def on(view: int, *make_ops: Callable[[Ctx], Op]) -> Task:
    def pre(ctx: Ctx):
        plan, index = target(ctx, view)
        plan.ops.setdefault(index, []).extend(m(ctx) for m in make_ops)
    return Task(pre=pre)


def after(fn: Callable[[Ctx], None]) -> Task:
    return Task(post=fn)


def spacing_zero(ctx: Ctx) -> Op:
    def header(h):
        h["ImagerPixelSpacing"] = ["0.000", "0.000"]
        h["PixelSpacing"] = ["0.000", "0.000"]
    return Op("SPACING_OUT_OF_RANGE", header=header, note="pixel spacing written as 0.000")


def header_names(desc: str, note: str):
    def make(ctx: Ctx) -> Op:
        def header(h):
            h["SeriesDescription"] = desc
            h["ProtocolName"] = desc
        return Op("ANATOMY_HEADER_MISMATCH", header=header, note=note)
    return make


def noisy(sigma: float):
    return lambda ctx: Op("NOISY", pixels=lambda img, r: img + r.normal(0, sigma, img.shape),
                          note=f"underexposed: quantum noise sigma {sigma:g} of full scale")


def constant_plate(ctx: Ctx) -> Op:
    mono1 = ctx.site.params["photometric"] == "MONOCHROME1"
    return Op("CONSTANT_IMAGE", stored=lambda s, m: np.full_like(s, m - ctx.rep if mono1 else ctx.rep),
              note="plate read without exposure")


def burned(lines_for: Callable[[Ctx], list[str]], corner: str = "tl"):
    return lambda ctx: ops.burned_in(ctx.d, lines_for(ctx), corner, max(ctx.site.params["detector"][0] // 45, 12))


def phi_identity(ctx: Ctx) -> Op:
    r = ctx.d.rng("xr-phi", ctx.study.uid)
    last, first = ids.person(ctx.site.country, r)
    return ops.phi(ctx.d, {"PatientName": f"{last}^{first}", "PatientID": ids.mrn(ctx.site.country, r),
                           "PatientBirthDate": ids.birth_date(r)}, "identity left in the header")


def collide(ctx: Ctx) -> Op:
    return ops.other_sop_uid(ctx.recent[0])


def byte_copy(view: int, folder: str) -> Task:
    def post(ctx: Ctx):
        plan, index = target(ctx, view)
        w = ctx.written[ctx.plans.index(plan)][index]
        extras.byte_copy(ctx.d, plan, w, extra_path(ctx.study, folder, w.path.rsplit("/", 1)[1]),
                         "the same file sent again")
    return after(post)


def damaged(view: int, kind: str, folder: str) -> Task:
    def post(ctx: Ctx):
        plan, index = target(ctx, view)
        w = ctx.written[ctx.plans.index(plan)][index]
        extras.damaged_copy(ctx.d, plan, w, extra_path(ctx.study, folder, w.path.rsplit("/", 1)[1] or "x"),
                            kind, ctx.d.rng("xr-damage", w.path))
    return after(post)


def export_jpeg(view: int) -> Task:
    def post(ctx: Ctx):
        plan, index = target(ctx, view)
        w = ctx.written[ctx.plans.index(plan)][index]
        number, order = next_series(ctx)
        extras.export_key_images(ctx.d, plan, [w], number, order, ctx.d.rng("xr-export", w.path),
                                 "Exported image")
    return after(post)


def near_in_series(ctx: Ctx) -> None:
    plan = ctx.plans[0]
    w = ctx.written[0][0]
    extras.near_copy_in_series(ctx.d, plan, w, EXPLICIT_LE, len(plan.planes), ctx.d.rng("xr-near", w.path))


def resend(ctx: Ctx) -> None:
    plan, index = target(ctx, 1)
    w = ctx.written[ctx.plans.index(plan)][index]
    extras.resend_new_uid(ctx.d, plan, w, EXPLICIT_LE, len(plan.planes) + 1)


def empty_next_to(ctx: Ctx) -> None:
    plan = ctx.plans[0]
    extras.plain_file(ctx.d, instance_path(plan.ref, 99, len(plan.planes) + 5, "x"), b"",
                      site=ctx.site.folder, patient=ctx.study.patient.pseudonym,
                      ingest_error="EMPTY_FILE", note="zero-byte file")


def not_dicom(kind: str) -> Task:
    def post(ctx: Ctx):
        folder = study_folder(ctx.study)
        if kind == "text":
            data = fd.transfer_log(["Export finished with warnings",
                                    f"studies: 1  images: {sum(len(w) for w in ctx.written)}",
                                    "see the PACS log for details"])
            path = f"{folder}/README.txt"
        elif kind == "png":
            w = ctx.written[0][0]
            data = fd.png_preview((w.stored[::4, ::4] >> (ctx.site.params['bits_stored'] - 8)).astype(np.uint8))
            path = f"{folder}/thumbnail.png"
        else:
            data = fd.zip_of({w.path.rsplit("/", 1)[1]: w.data for ws in ctx.written for w in ws})
            path = f"{folder}/images.zip"
        extras.plain_file(ctx.d, path, data, site=ctx.site.folder,
                          patient=ctx.study.patient.pseudonym, ingest_error="NOT_DICOM",
                          note=f"{kind} file in the export")
    return after(post)


def ct_topogram(ctx: Ctx) -> None:
    """A CT topogram of the chest (header CT, ImageType LOCALIZER) sent along."""
    from .torso import Torso

    r = ctx.d.rng("xr-topo", ctx.study.uid)
    torso = Torso.random(r, ctx.study.patient.sex == "F", contrast=False)
    proj = torso.projection(torso.carina + 170, torso.carina - 330, 500.0, 512, 512)
    stored = np.clip(np.round(proj * 95 + 40 + r.normal(0, 6, proj.shape)), 0, 4095).astype(np.uint16)
    top = torso.carina + 170
    spec = Spec("synthetic", f"topogram:{ctx.study.uid}", "CT", "CHEST", "Topogram 0.6 T20f", "Thorax",
                "CT", "chest", ["UNEXPECTED_MODALITY", "LOCALIZER"], "CT topogram sent along",
                sop_class=modules.CT_IMAGE,
                extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"],
                       "ImagePositionPatient": [format_ds(torso.cx - 250), "0", format_ds(top)],
                       "ImageOrientationPatient": ["1", "0", "0", "0", "0", "-1"],
                       "PixelSpacing": [format_ds(500 / 512), format_ds(500 / 512)],
                       "SliceThickness": "0.6", "FrameOfReferenceUID": ctx.study.frame_uid,
                       "PositionReferenceIndicator": "", "KVP": 120,
                       "RescaleIntercept": "0", "RescaleSlope": "1", "RescaleType": "US"},
                pixels=lambda arr, s=stored: (s[None], {"BitsStored": 12}))
    place(ctx, spec, other_study(ctx, "CT THORAX", 2))


def abdomen_view(ctx: Ctx) -> None:
    r = ctx.d.rng("xr-abdomen", ctx.study.uid)
    img = xray.abdomen_radiograph(860, 700, r)
    bits = ctx.site.params["bits_stored"]
    stored = xray.to_stored(img, bits, ctx.site.params["photometric"] == "MONOCHROME1")
    study = other_study(ctx, "ABDOMEN" if ctx.site.key != "T" else "X-ABDOMEN", 2)
    spec = Spec("synthetic", f"abdomen:{ctx.study.uid}", ctx.site.params["modality"], "ABDOMEN",
                "ABDOMEN AP", None, ctx.site.params["modality"], "abdomen", ["UNEXPECTED_ANATOMY"],
                "abdomen radiograph sent along",
                sop_class=modules.CR_IMAGE if ctx.site.params["modality"] == "CR" else modules.DX_PRESENTATION,
                extra={"ImagerPixelSpacing": ["0.5", "0.5"], "ViewPosition": "AP",
                       "PatientOrientation": ["R", "F"], "PhotometricInterpretation": ctx.site.params["photometric"],
                       "PresentationIntentType": "FOR PRESENTATION" if ctx.site.key != "R" else None,
                       "BurnedInAnnotation": "NO"},
                pixels=lambda arr, s=stored: (s[None], {"BitsStored": bits}))
    if spec.extra.get("PresentationIntentType") is None:
        spec.extra.pop("PresentationIntentType")
    place(ctx, spec, study)


def thumbnail(ctx: Ctx) -> None:
    """A 60 x 48 preview stored as a radiograph of its own."""
    plan = view_plan(ctx, ["PA"], size=(60, 48))
    plan.ref.description = "Preview"
    plan.extra["ImagerPixelSpacing"] = [format_ds(plan.spacing[0])] * 2
    plan.extra["PixelSpacing"] = [format_ds(plan.spacing[0])] * 2
    plan.series_codes += ["RESOLUTION_OUT_OF_RANGE", "SPACING_OUT_OF_RANGE"]
    plan.note = "60 x 48 preview image (about 7 mm per pixel)"
    series.write_series(ctx.d, plan)


def sr_report(ctx: Ctx) -> None:
    place(ctx, Spec("pydicom", "reportsi.dcm", "SR", None, "Report", None, "SR", "none",
                    ["NO_PIXEL_DATA"], "structured report in the delivery"))


def foreign_task(spec_for: Callable[[Ctx], Spec], study_desc: str | None = None) -> Task:
    def post(ctx: Ctx):
        place(ctx, spec_for(ctx), other_study(ctx, study_desc, 2) if study_desc else None)
    return after(post)


def combine(*tasks: Task) -> Task:
    def pre(ctx):
        for t in tasks:
            if t.pre:
                t.pre(ctx)

    def post(ctx):
        for t in tasks:
            if t.post:
                t.post(ctx)
    return Task(pre, post)


def name_lines(ctx: Ctx) -> list[str]:
    last, first = ids.person(ctx.site.country, ctx.d.rng("xr-burn", ctx.study.uid))
    return [f"{last}, {first}", real_date(ctx).strftime("%d.%m.%Y")]


def tasks_r() -> list[Task]:
    return [
        after(empty_next_to),
        not_dicom("text"),
        on(1, lambda c: ops.damaged("truncated_pixels", 0.6)),
        on(0, lambda c: ops.nonconformant("uid_letters")),
        on(1, lambda c: ops.nonconformant("no_sop_class_meta")),
        on(0, lambda c: ops.unreadable("rle_segments")),
        byte_copy(0, "resend"),
        export_jpeg(0),
        after(ct_topogram),
        foreign_task(lambda c: Spec("deid-data", "animals/cat.dcm", "CR", "CHEST", "CHEST LAT", None, "DX",
                                    "chest", ["IRRELEVANT_CONTENT"], "veterinary thorax radiograph (cat)",
                                    pixels=downsample(3), ts=RLE_LOSSLESS)),
        foreign_task(lambda c: Spec("deid-data", "dicom-cookies/image5.dcm", "CR", "CHEST", "CHEST PA",
                                    None, "XC", "none", ["IRRELEVANT_CONTENT"],
                                    "photograph relabelled as a chest CR", keep=True)),
        on(1, constant_plate),
        on(0, lambda c: ops.saturated(0.4, gain=1.9)),
        on(0, noisy(0.09)),
        combine(on(0, phi_identity), on(1, phi_identity)),
        on(0, burned(name_lines)),
        after(abdomen_view),
        on(0, spacing_zero),
        after(sr_report),
        on(0, lambda c: ops.requantised(12)),
        on(1, lambda c: ops.blurred(4.0)),
        after(thumbnail),
        on(0, header_names("ABDOMEN AP", "chest image acquired with the abdomen protocol")),
    ]


def tasks_t() -> list[Task]:
    return [
        damaged(0, "garbage_vr", "incoming"),
        after(empty_next_to),
        not_dicom("png"),
        on(1, lambda c: ops.unreadable("j2k_cut")),
        on(0, lambda c: ops.unreadable("j2k_cod")),
        on(1, collide),
        after(near_in_series),
        foreign_task(lambda c: Spec("pydicom-data", "MR2_UNCR.dcm", "MR", "SHOULDER", "SCHOUDER COR PD",
                                    None, "MR", "upper_extremity",
                                    ["UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY"], "shoulder MR sent along",
                                    pixels=downsample(2)), "MRI SCHOUDER"),
        foreign_task(lambda c: Spec("synthetic", "test-pattern", "DX", "CHEST", "THORAX PA/LAT", None,
                                    "OT", "none", ["SATURATED"], "monitor test pattern stored as DX",
                                    sop_class=modules.SC_IMAGE)),
        after(abdomen_view),
        on(0, lambda c: ops.requantised(12)),
        on(1, lambda c: ops.motion(15, 90.0)),
        on(0, noisy(0.08)),
        on(0, constant_plate),
        on(0, lambda c: ops.phi(c.d, {"ReferringPhysicianName": ids.PHYSICIANS["nl"][c.rep % 3],
                                      "OperatorsName": "VISSER^MARIEKE"}, "physician and operator names")),
        on(0, burned(lambda c: ["STAAND", "FFA 180 cm", real_date(c).strftime("%d-%m-%Y 08:14")], "tl")),
        on(0, header_names("KNIE AP", "chest image with the knee protocol name")),
        on(0, lambda c: ops.nonconformant("ds_comma_kvp")),
        after(resend),
        on(1, spacing_zero),
        after(sr_report),
        on(0, lambda c: ops.saturated(0.3, gain=2.5)),
        damaged(1, "truncated_pixels", "incoming"),
        after(thumbnail),
    ]


def tasks_u() -> list[Task]:
    return [
        on(0, lambda c: ops.damaged("truncated_header")),
        damaged(0, "bad_length", "retry"),
        damaged(0, "junk_bytes", "retry2"),
        not_dicom("zip"),
        on(0, lambda c: ops.nonconformant("uid_leading_zero")),
        on(0, lambda c: ops.unreadable("native_short")),
        on(0, lambda c: ops.no_pixel_data()),
        foreign_task(lambda c: Spec("deid-data", "ultrasounds/GREYSCALE_IMAGE.dcm", "DX", "CHEST",
                                    "Thorax AP liegend", None, "US", "abdomen",
                                    ["IRRELEVANT_CONTENT", "BURNED_IN_ANNOTATION"],
                                    "ultrasound relabelled as a chest DX", keep=True)),
        after(ct_topogram),
        after(ct_topogram),
        after(thumbnail),
        on(0, constant_plate),
        on(0, lambda c: ops.squeezed(20)),
        on(0, lambda c: ops.saturated(0.45, gain=2.2)),
        on(0, lambda c: ops.blurred(4.5)),
        foreign_task(lambda c: Spec("pydicom-data", "RG3_UNCR.dcm", "DX", "CHEST", "UNTERSCHENKEL AP",
                                    None, "CR", "lower_extremity",
                                    ["ANATOMY_HEADER_MISMATCH"],
                                    "lower leg radiograph filed as chest, description names the leg",
                                    pixels=downsample(2), ts=EXPLICIT_LE)),
        on(0, phi_identity),
        on(0, burned(lambda c: ["PORTABEL", "LIEGEND", real_date(c).strftime("%d.%m.%Y 06:42")], "tr")),
        byte_copy(0, "nachversand"),
        on(0, collide),
        export_jpeg(0),
        after(empty_next_to),
        on(0, noisy(0.12)),
        on(0, spacing_zero),
    ]


TASKS = {"R": tasks_r, "T": tasks_t, "U": tasks_u}
