"""Shape `brain-mr`: axial brain MR from three sites (Siemens, GE, Philips).

Each subject has one session: a 3-plane localizer and T1, T2, FLAIR (GE and
Philips add a b0 diffusion series, a whole protocol that is legitimately
noisier). Six subjects per scale unit (two per site); each subject slot carries
its own set of planted defects, foreign objects and hard negatives, repeated
with fresh anatomy at higher scales.

Expected by the job: modalities [MR], regions [head], declared de-identified.
"""
from __future__ import annotations

import numpy as np

from . import extras, foreign, ids, modules, mr, ops, series
from .common import downsample, next_series as _next, other_study, place, real_date
from . import file_defects as fd
from . import geometry_defects as geo
from . import image_defects as imd
from . import mr_protocols as mp
from .delivery import Delivery
from .foreign import Spec
from .layout import extra_path, instance_path, study_folder
from .sites import MR_SITES
from .writer import EXPLICIT_LE, J2K_LOSSLESS, RLE_LOSSLESS

SHAPE = "brain-mr"
EXPECTATIONS = {"modalities": ["MR"], "body_regions": ["head"], "declared_deidentified": True}
BIAS = {"A": 0.16, "B": 0.10, "C": 0.09}
BODY_PART = {"A": "HEAD", "B": "HEAD", "C": "BRAIN"}


def generate(out, seed: int = 0, scale: int = 1, sites=None) -> Delivery:
    d = Delivery(out, SHAPE, seed, scale)
    for site in MR_SITES:
        if sites and site.folder not in sites:
            continue
        contrast = mr.SiteContrast(d.rng("contrast", site.key))
        for rep in range(scale):
            for j in (1, 2):
                slot = f"{site.key}{j}"
                ctx = _context(d, site, rep * 2 + j, contrast, strong_bias=slot == "A2")
                BUNDLES[slot](ctx, d.rng("bundle", slot, rep), rep)
                ctx.subject.release()
        contrast.volumes.clear()
    return d


# --- session helpers -------------------------------------------------------------------

def _context(d: Delivery, site, n: int, contrast: mr.SiteContrast, strong_bias=False) -> mp.Context:
    patient = modules.make_patient(site, n, d.seed, SHAPE)
    study = modules.make_study(patient, d.seed)
    study.extra.update(index=0, order=0)
    if site.key == "C":
        study.next_series = 101
    r = d.rng("subject", site.key, n)
    subject = mr.Subject.random(r, contrast, BIAS[site.key], strong_bias)
    pitch = -float(r.uniform(8, 16)) if site.key == "C" else 0.0
    pose = subject.pose
    centre = pose.rotation @ (pose.scale * np.array([0.0, -8.0, 18.0])) + pose.shift
    centre = np.round(centre * np.array([-1.0, -1.0, 1.0]), 1)
    model = site.models[n % len(site.models)]
    ctx = mp.Context(d, site, study, subject, model, pitch, centre, BODY_PART[site.key])
    ctx.strong_bias = strong_bias
    return ctx


def _hard(ctx: mp.Context, key: str):
    if key == "dwi":
        return "noisier_protocol"
    if getattr(ctx, "strong_bias", False):
        return "strong_bias_field"

    def dark_end(index: int, img: np.ndarray) -> str:
        return "dark_end_slice" if float(np.mean(img > 0.25)) < 0.12 else ""
    return dark_end


def axial(ctx: mp.Context, key: str, **kw) -> series.SeriesPlan:
    number, order = _next(ctx)
    plan = mp.axial_plan(ctx, key, number=number, order=order, **kw)
    plan.hard_negative = _hard(ctx, key)
    return plan


def localizer(ctx: mp.Context, per_plane: int = 1) -> series.SeriesPlan:
    number, order = _next(ctx)
    return mp.localizer_plan(ctx, number=number, order=order, per_plane=per_plane)


def write(ctx: mp.Context, plan: series.SeriesPlan) -> list[series.Written]:
    return series.write_series(ctx.d, plan)


def sop_of(ctx: mp.Context, plan: series.SeriesPlan, index: int) -> str:
    return ctx.d.uid(ctx.site.uid_root, "sop", plan.ref.uid, index)


def post_contrast(ctx: mp.Context) -> None:
    """T1 after gadolinium: same protocol family, enhancing tissue, head moved a little."""
    plan = axial(ctx, "t1c", pose=ctx.subject.pose.moved(ctx.d.rng("contrast-move", ctx.study.uid)))
    plan.hard_negative = "post_contrast_repeat"
    plan.note = "T1 repeated after contrast injection"
    write(ctx, plan)


# --- subject slots ----------------------------------------------------------------------

def slot_a1(ctx: mp.Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, localizer(ctx))
    t1 = axial(ctx, "t1")
    last = len(t1.planes) - 1
    name = ids.person("de", r)
    when = real_date(ctx)
    t1.ops = {
        4: [ops.constant(rep)],
        11: [ops.noisy_rf(0.25)],
        15: [ops.burned_in(d, [f"{name[0]}, {name[1]}", f"*{ids.birth_date(r)[6:]}."
                               f"{ids.birth_date(r)[4:6]}.19{int(r.integers(40, 99))}",
                               when.strftime("%d.%m.%Y"), "Uniklinik Rheinland"], "tl", 11)],
        last: [ops.damaged("truncated_pixels", float(r.uniform(0.3, 0.8)))],
    }
    t1_ws = write(ctx, t1)
    t2 = axial(ctx, "t2")
    t2.ops = {7: [ops.requantised(10)],
              3: [ops.phi(d, {"OperatorsName": "WEBER^CLAUDIA",
                              "ReferringPhysicianName": ids.PHYSICIANS["de"][rep % 3]},
                          "operator and referring physician names left in")]}
    t2_ws = write(ctx, t2)
    again = axial(ctx, "t2", pose=ctx.subject.pose.moved(d.rng("moved", study.uid)))
    again.hard_negative = "repeat_acquisition"
    again.note = "T2 repeated after motion: same protocol, new noise, head moved slightly"
    write(ctx, again)
    flair = axial(ctx, "flair")
    geo.missing_slice(flair, 9)
    write(ctx, flair)
    post_contrast(ctx)
    # copies and stray files
    w = t1_ws[10]
    extras.byte_copy(d, t1, w, extra_path(study, f"resend_{study.date}", w.path.rsplit("/", 1)[1]),
                     "the same file sent again in a second transfer")
    extras.plain_file(d, instance_path(t1.ref, last + 2, last + 1, "x"), b"", site=ctx.site.folder,
                      patient=study.patient.pseudonym, ingest_error="EMPTY_FILE",
                      note="zero-byte file left by an interrupted export")
    if ctx.study.patient.n == 1:
        extras.plain_file(d, f"{ctx.site.folder}/transfer_log_{study.date[:6]}.txt",
                          fd.transfer_log([f"{study.date} 18:02:11 START export job 4711",
                                           f"{study.date} 18:02:13 C-STORE 254 objects queued",
                                           f"{study.date} 18:40:57 WARN association aborted by peer",
                                           f"{study.date} 18:41:02 END 253 sent, 1 failed"]),
                          site=ctx.site.folder, patient="", ingest_error="NOT_DICOM",
                          note="transfer log (text)")
    preview = imd.to_uint8(t2_ws[10].stored.astype(float), 0, float(np.percentile(t2_ws[10].stored, 99.5)))
    extras.plain_file(d, f"{study_folder(study)}/preview_t2.png", fd.png_preview(preview),
                      site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="NOT_DICOM", note="PNG preview of a T2 slice")
    # foreign objects
    shoulder = other_study(ctx, "MRT Schulter rechts nativ")
    place(ctx, Spec("pydicom-data", "MR2_UNCR.dcm", "MR", "SHOULDER", "pd_tse_fs_cor",
                    "pd_tse_fs_cor", "MR", "upper_extremity", ["UNEXPECTED_ANATOMY"],
                    "shoulder MR of the same patient sent along", pixels=downsample(2)), shoulder)
    place(ctx, Spec("pydicom-data", "693_UNCR.dcm", "MR", "HEAD", "5/5mm Plain", None, "CT",
                    "head", ["IRRELEVANT_CONTENT"], "CT slice whose Modality was rewritten to MR",
                    keep=True, sop_class=modules.SC_IMAGE))


def slot_b1(ctx: mp.Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    loc = localizer(ctx)
    last, first = ids.person("us", r)
    ident = {"PatientName": f"{last}^{first}", "PatientID": ids.mrn("us", r),
             "PatientBirthDate": ids.birth_date(r)}
    loc.ops = {i: [ops.phi(d, ident, "localizer series exported before de-identification")]
               for i in range(len(loc.planes))}
    write(ctx, loc)
    t1 = axial(ctx, "t1")
    geo.reangled(t1, len(t1.planes) - 5, 12.0)
    t1_ws = write(ctx, t1)
    t2 = axial(ctx, "t2")
    t2.ops = {5: [ops.saturated(0.3)], 12: [ops.nonconformant("ds_comma")]}
    t2_ws = write(ctx, t2)
    flair = axial(ctx, "flair")
    flair.ops = {8: [ops.motion(15, 30.0)]}
    write(ctx, flair)
    dwi = axial(ctx, "dwi")
    dwi.ops = {6: [ops.unreadable("rle_segments")]}
    write(ctx, dwi)
    extras.near_copy_in_series(d, t2, t2_ws[10], EXPLICIT_LE, len(t2.planes), d.rng("near", t2.ref.uid))
    w = t1_ws[7]
    extras.damaged_copy(d, t1, w, extra_path(study, "DICOM_RETRY", f"IM{w.index:06d}"), "garbage_vr",
                        d.rng("damage", w.path))
    extras.plain_file(d, instance_path(dwi.ref, 0, len(dwi.planes), "x"),
                      fd.random_bytes(d.rng("random", dwi.ref.uid), 65536 + int(r.integers(0, 4096))),
                      site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="NOT_DICOM", note="random bytes named like an image")
    place(ctx, Spec("deid-data", "ultrasounds/GREYSCALE_IMAGE.dcm", "MR", "HEAD", "AX T2 FSE",
                    "AX T2 FSE", "US", "abdomen", ["IRRELEVANT_CONTENT", "BURNED_IN_ANNOTATION"],
                    "ultrasound (with its burned-in text) relabelled as MR head", keep=True))
    place(ctx, Spec("pydicom", "test-SR.dcm", "SR", None, "Radiology Report", None, "SR", "none",
                    ["NO_PIXEL_DATA"], "structured report in the delivery"))


def slot_c1(ctx: mp.Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, localizer(ctx))
    t1 = axial(ctx, "t1")
    t1.ops = {9: [ops.unreadable("j2k_cut")], 14: [ops.nonconformant("no_sop_class_meta")]}
    t1_ws = write(ctx, t1)
    t2 = axial(ctx, "t2")
    geo.irregular_gap(t2, 10, 1.5)
    t2_ws = write(ctx, t2)
    flair = axial(ctx, "flair")
    last = len(flair.planes) - 1
    flair.ops = {4: [ops.constant(rep)], 12: [ops.other_sop_uid(sop_of(ctx, t1, 12))],
                 last: [ops.damaged("truncated_pixels", float(r.uniform(0.2, 0.7)))]}
    write(ctx, flair)
    write(ctx, axial(ctx, "dwi"))
    post_contrast(ctx)
    number, order = _next(ctx)
    extras.export_key_images(d, t2, [t2_ws[i] for i in (6, 10, 14)], number, order,
                             d.rng("export", t2.ref.uid), "T2W_TSE_TRA key images")
    extras.resend_new_uid(d, t1, t1_ws[3], EXPLICIT_LE, len(t1.planes))
    extras.plain_file(d, f"{study_folder(study)}/MR.{d.uid(ctx.site.uid_root, 'empty', study.uid)}.dcm",
                      b"", site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="EMPTY_FILE", note="zero-byte file")
    place(ctx, Spec("pydicom-data", "RG1_UNCR.dcm", "MR", "BRAIN", "T2W_TSE_TRA", "T2W_TSE_TRA",
                    "CR", "chest", ["IRRELEVANT_CONTENT"], "chest radiograph relabelled as MR brain",
                    pixels=downsample(2), ts=J2K_LOSSLESS, extra={"PixelSpacing": ["0.2", "0.2"]}))
    place(ctx, Spec("deid-data", "dicom-cookies/image1.dcm", "MR", "BRAIN", "T1W_SE_TRA", None,
                    "XC", "none", ["IRRELEVANT_CONTENT"], "photograph relabelled as MR brain",
                    keep=True))


def slot_a2(ctx: mp.Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    loc = localizer(ctx)
    loc.protocol = "localizer_knee"
    loc.ref.description = "localizer_knee"
    loc.series_codes.append("ANATOMY_HEADER_MISMATCH")
    loc.note = "head localizer run with the knee program's name"
    write(ctx, loc)
    t1 = axial(ctx, "t1")
    t1.ops = {5: [ops.nonconformant("vr_mismatch")], 12: [ops.blurred(3.5)]}
    t1_ws = write(ctx, t1)
    stopped = axial(ctx, "t2")
    geo.keep_middle(stopped, 2)
    write(ctx, stopped)
    t2 = axial(ctx, "t2")
    last = len(t2.planes) - 1
    name = ids.person("de", r)
    t2.ops = {2: [ops.phi(d, {"StudyDescription": f"MRT Schaedel nativ {name[1].title()} {name[0].title()}"},
                          "patient name typed into StudyDescription")],
              9: [ops.phi(d, {"PatientAddress": ids.ADDRESSES["de"][rep % 2]}, "patient address left in")],
              last: [ops.damaged("truncated_header")]}
    t2_ws = write(ctx, t2)
    flair = axial(ctx, "flair")
    flair.ops = {6: [ops.saturated(0.25)]}
    write(ctx, flair)
    swi = axial(ctx, "swi", count=6)
    geo.thick_slab(swi)
    write(ctx, swi)
    number, order = _next(ctx)
    when = real_date(ctx)
    extras.screen_save(d, t1, [t1_ws[i] for i in (6, 9, 12, 15)], number, order,
                       [f"{name[0]}, {name[1]}", when.strftime("%d.%m.%Y"),
                        "Uniklinik Rheinland", "Se:2  W:600 L:300"], "Bildschirmfoto")
    members = {w.path.rsplit("/", 1)[1]: w.data for w in t2_ws[:3]}
    extras.plain_file(d, f"{study_folder(study)}/t2_tse_export.zip", fd.zip_of(members),
                      site=ctx.site.folder, patient=study.patient.pseudonym,
                      ingest_error="NOT_DICOM", note="zip archive of three DICOM files")
    xray = other_study(ctx, "Roentgen Unterschenkel rechts")
    place(ctx, Spec("pydicom-data", "RG3_UNCR.dcm", "CR", "LEG", "US re. a.p.", None, "CR",
                    "lower_extremity", ["UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY"],
                    "lower leg radiograph sent along", pixels=downsample(2), ts=J2K_LOSSLESS), xray)
    place(ctx, Spec("deid-data", "animals/cat.dcm", "MR", "HEAD", "t1_se_tra", None, "DX", "chest",
                    ["IRRELEVANT_CONTENT"], "veterinary thorax radiograph (cat) relabelled as MR head",
                    pixels=downsample(4), ts=J2K_LOSSLESS))


def slot_b2(ctx: mp.Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, localizer(ctx))
    t1 = axial(ctx, "t1")
    t1.ops = {5: [ops.noisy_rf(0.3)], 9: [ops.squeezed(12)], 13: [ops.no_pixel_data()]}
    write(ctx, t1)
    t2 = axial(ctx, "t2")
    flair = axial(ctx, "flair")
    t2.ops = {3: [ops.blurred(4.0)], 14: [ops.unreadable("native_short")],
              8: [ops.other_sop_uid(sop_of(ctx, flair, 8))]}
    t2_ws = write(ctx, t2)
    flair.ops = {5: [ops.nonconformant("uid_leading_zero")]}
    write(ctx, flair)
    again = axial(ctx, "flair", pose=ctx.subject.pose.moved(d.rng("moved", study.uid)))
    again.hard_negative = "repeat_acquisition"
    again.note = "FLAIR repeated: same protocol, new noise, head moved slightly"
    write(ctx, again)
    dwi = axial(ctx, "dwi")
    dwi.ops = {0: [ops.constant(None)]}
    write(ctx, dwi)
    csi = axial(ctx, "csi", count=4)
    geo.low_matrix(csi)
    write(ctx, csi)
    w = t2_ws[4]
    extras.damaged_copy(d, t2, w, extra_path(study, "DICOM_RETRY", f"IM{w.index:06d}"), "bad_length",
                        d.rng("damage", w.path))
    extras.plain_file(d, instance_path(t1.ref, 0, len(t1.planes), "x"), b"", site=ctx.site.folder,
                      patient=study.patient.pseudonym, ingest_error="EMPTY_FILE",
                      note="zero-byte file")
    number, order = _next(ctx)
    foreign.key_object(d, study, [(t2.ref.uid, modules.MR_IMAGE, t2_ws[i].header["SOPInstanceUID"])
                                  for i in (5, 9, 11)], number=number, order=order,
                       note="key object selection document")
    place(ctx, Spec("pydicom-data", "US1_UNCR.dcm", "US", None, "US ABDOMEN", None, "US", "abdomen",
                    ["UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY", "BURNED_IN_ANNOTATION"],
                    "ultrasound with burned-in text sent along", keep=True),
          other_study(ctx, "US ABDOMEN COMPLETE"))
    place(ctx, Spec("deid-data", "humans/ctbrain1.dcm", "MR", "HEAD", "AX T1 FLAIR", None, "OT", "none",
                    ["SATURATED", "LOW_DYNAMIC_RANGE"], "a drawing stored as a CT image, relabelled MR head",
                    keep=True))
    place(ctx, Spec("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm", "MR", "HEAD",
                    "AX T1 FS ABDOMEN", "AX T1 FS ABDOMEN", "MR", "abdomen",
                    ["ANATOMY_HEADER_MISMATCH"],
                    "abdomen MR filed with BodyPartExamined HEAD, description names the abdomen",
                    keep=True))


def slot_c2(ctx: mp.Context, r: np.random.Generator, rep: int) -> None:
    d, study = ctx.d, ctx.study
    write(ctx, localizer(ctx))
    if rep % 2:
        t1 = axial(ctx, "t1", noise_scale=5.0)
        t1.series_codes.append("NOISY")
        t1.note = "whole series five times noisier than its peers (coil element failure)"
        t1.hard_negative = ""
    else:
        t1 = axial(ctx, "t1")
        t1.ops = {7: [ops.noisy_gaussian(0.12)]}
    write(ctx, t1)
    single = axial(ctx, "t2")
    geo.keep_middle(single, 1)
    write(ctx, single)
    t2 = axial(ctx, "t2")
    last_name, first_name = ids.person("nl", r)
    t2.ops = {11: [ops.requantised(8)],
              2: [ops.phi(d, {"PatientName": f"{last_name}^{first_name}", "PatientID": ids.mrn("nl", r),
                              "PatientBirthDate": ids.birth_date(r)},
                          "slice re-sent from the archive with its identity")]}
    t2_ws = write(ctx, t2)
    flair = axial(ctx, "flair")
    flair.ops = {4: [ops.saturated(0.3)], 9: [ops.no_pixel_data()]}
    flair_ws = write(ctx, flair)
    dwi = axial(ctx, "dwi")
    inst_name, inst_address = ids.INSTITUTIONS["nl"]
    dwi.ops = {3: [ops.phi(d, {"OperatorsName": "MULDER^SASKIA", "InstitutionName": inst_name,
                               "InstitutionAddress": inst_address},
                           "operator and institution left in")]}
    write(ctx, dwi)
    extras.near_copy_in_series(d, t2, t2_ws[8], RLE_LOSSLESS, len(t2.planes), d.rng("near", t2.ref.uid))
    w = flair_ws[2]
    extras.byte_copy(d, flair, w, extra_path(study, "resend", w.path.rsplit("/", 1)[1]),
                     "the same file sent again")
    w = t2_ws[5]
    extras.damaged_copy(d, t2, w, extra_path(study, "incoming", w.path.rsplit("/", 1)[1]),
                        "junk_bytes", d.rng("damage", w.path))
    extras.plain_file(d, f"{study_folder(study)}/MR.{d.uid(ctx.site.uid_root, 'html', study.uid)}.dcm",
                      fd.html_error_page(502, "Bad Gateway"), site=ctx.site.folder,
                      patient=study.patient.pseudonym, ingest_error="NOT_DICOM",
                      note="HTML error page saved under a DICOM name")
    place(ctx, Spec("deid-data", "dicom-cookies/image3.dcm", "MR", "BRAIN", "FLAIR_TRA", None, "XC",
                    "none", ["IRRELEVANT_CONTENT"], "photograph relabelled as MR brain", keep=True))
    place(ctx, Spec("synthetic", "test-pattern", "MR", "BRAIN", "QA_SMPTE", "QA", "OT", "none",
                    ["SATURATED"], "monitor test pattern stored as MR brain",
                    sop_class=modules.SC_IMAGE))
    place(ctx, Spec("pydicom-data", "JPEG-LL.dcm", "NM", "WHOLE BODY", "Whole Body Bone", None, "NM",
                    "whole_body", ["UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY"],
                    "bone scintigraphy sent along", keep=True), other_study(ctx, "Skeletscintigrafie", 1))
    place(ctx, Spec("pydicom-data", "liver.dcm", "SEG", None, "Liver Segmentation", None, "SEG",
                    "abdomen", ["UNEXPECTED_MODALITY", "UNEXPECTED_ANATOMY"],
                    "liver segmentation object in the delivery", keep=True),
          other_study(ctx, "CT Lever", 2))
    place(ctx, Spec("pydicom", "CT_small.dcm", "MR", "BRAIN", "THORAX WK", None, "CT", "chest",
                    ["ANATOMY_HEADER_MISMATCH"],
                    "thoracic spine CT filed as MR brain, description names the thorax",
                    keep=True, sop_class=modules.SC_IMAGE))


BUNDLES = {"A1": slot_a1, "B1": slot_b1, "C1": slot_c1, "A2": slot_a2, "B2": slot_b2, "C2": slot_c2}
