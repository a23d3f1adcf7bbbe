"""Objects derived from instances already written: byte copies, re-sent copies
with new UIDs, near-duplicate re-encodings, key-image exports and screen-save
montages (secondary captures)."""
from __future__ import annotations

import copy

import numpy as np

from . import image_defects as imd
from . import modules
from .delivery import Delivery, record_from
from .encoders import encode_pixels, jpeg_baseline_frame
from .layout import SeriesRef, instance_path
from .series import SeriesPlan, Written
from .truth import Record, pixel_key
from .writer import EXPLICIT_LE, IMPLICIT_LE, JPEG_BASELINE, Encapsulated


def _record_like(w: Written, plan: SeriesPlan, header: dict, note: str) -> Record:
    return record_from(header, site=plan.site.folder, patient=plan.ref.study.patient.pseudonym,
                       true_modality=plan.true_modality, true_region=plan.true_region,
                       source=plan.source, note=note)


def byte_copy(d: Delivery, plan: SeriesPlan, w: Written, relpath: str, note: str) -> Record:
    """The same file again under another folder (a transfer repeated)."""
    rec = _record_like(w, plan, w.header, note)
    rec.pixel_key = w.record.pixel_key
    rec.add(*plan.series_codes)
    rec.primary = "EXACT_DUPLICATE"
    return d.put(relpath, w.data, rec)


def _same_series_copy(d: Delivery, plan: SeriesPlan, w: Written, stored: np.ndarray, ts: str,
                      key: str, name_index: int) -> tuple[dict, str, Record]:
    h = copy.deepcopy({k: v for k, v in w.header.items() if k != "PixelData"})
    sop = d.uid(plan.site.uid_root, key, plan.ref.uid, w.index)
    h["SOPInstanceUID"] = sop
    h["PixelData"] = encode_pixels(stored[None], ts, plan.bits_stored)
    enc = d.encode(h, ts, plan.site, undefined_sequences=plan.site.key == "B")
    instance = 1000 + plan.instance_numbers[w.index]
    path = instance_path(plan.ref, instance, name_index, sop)
    return h, path, enc


def resend_new_uid(d: Delivery, plan: SeriesPlan, w: Written, ts: str, name_index: int) -> Record:
    """The instance re-sent by a gateway that gave it a new SOPInstanceUID: same
    pixels, possibly another transfer syntax."""
    h, path, enc = _same_series_copy(d, plan, w, w.stored, ts, "resent", name_index)
    rec = _record_like(w, plan, h, "re-sent with a new SOPInstanceUID, identical pixels")
    rec.pixel_key = pixel_key(w.stored)
    rec.add(*plan.series_codes)
    rec.primary = "EXACT_DUPLICATE"
    return d.put(path, enc.data, rec)


def near_copy_in_series(d: Delivery, plan: SeriesPlan, w: Written, ts: str, name_index: int,
                        r: np.random.Generator) -> Record:
    """The same slice stored again in its series: new SOPInstanceUID, every pixel
    changed by +-1..2 grey levels, another transfer syntax."""
    maxval = (1 << (plan.bits_stored - 1)) - 1 if plan.signed else (1 << plan.bits_stored) - 1
    delta = r.choice([-2, -1, 1, 2], size=w.stored.shape)
    stored = np.clip(w.stored.astype(np.int32) + delta, 0, maxval).astype(w.stored.dtype)
    h, path, enc = _same_series_copy(d, plan, w, stored, ts, "near", name_index)
    rec = _record_like(w, plan, h, "stored twice: +-1..2 grey levels, re-encoded")
    rec.pixel_key = pixel_key(stored)
    rec.add(*plan.series_codes)
    rec.primary = "NEAR_DUPLICATE"
    out = d.put(path, enc.data, rec)
    d.truth.near_duplicate(w.path, path)
    return out


def _sc_header(d: Delivery, plan: SeriesPlan, ref: SeriesRef, index: int, sop: str,
               rows: int, cols: int, time_s: float, description: str) -> dict:
    study = ref.study
    h = {}
    h.update(modules.sop_common(modules.SC_IMAGE, sop, study, time_s))
    h.update(modules.patient_study(study))
    h.update(modules.series_module(study, modality=ref.modality, series_uid=ref.uid,
                                   number=ref.number, description=description,
                                   protocol=None, body_part=plan.body_part, time_s=time_s,
                                   patient_position=None))
    h.update(modules.equipment(plan.site, plan.model))
    h["ConversionType"] = "WSD"
    h.update(modules.general_image(study, index + 1, ("DERIVED", "SECONDARY"), time_s,
                                   acquisition=None))
    h.update(modules.image_pixel(rows, cols, 8, False))
    return h


def export_key_images(d: Delivery, plan: SeriesPlan, ws: list[Written], number: int, order: int,
                      r: np.random.Generator, description: str) -> list[Record]:
    """Slices exported again as 8-bit secondary captures, as displayed: windowed,
    cropped by a few pixels, resized, JPEG baseline at quality 85-95."""
    study = plan.ref.study
    uid = d.uid(plan.site.uid_root, "export", study.uid, number)
    ref = SeriesRef(study, number, description, uid, order, plan.ref.modality)
    out = []
    for k, w in enumerate(ws):
        img = w.stored.astype(np.float64)
        lo, hi = np.percentile(img, [1, 99.7])
        c = [int(v) for v in r.integers(1, 6, 4)]
        img = imd.crop(img, *c)
        img = imd.resize(img, float(r.choice([0.75, 0.8, 1.25])))
        img8 = imd.to_uint8(img, lo, hi * float(r.uniform(0.9, 1.05)))
        quality = int(r.integers(85, 96))
        frag = jpeg_baseline_frame(img8, quality)
        sop = d.uid(plan.site.uid_root, "export-sop", uid, k)
        h = _sc_header(d, plan, ref, k, sop, img8.shape[0], img8.shape[1],
                       study.time + 3000 + k, description)
        h["LossyImageCompression"] = "01"
        h["LossyImageCompressionRatio"] = f"{img8.size / len(frag):.2f}"
        h["LossyImageCompressionMethod"] = "ISO_10918_1"
        h["BurnedInAnnotation"] = "NO"
        h["PixelData"] = Encapsulated([[frag]])
        enc = d.encode(h, JPEG_BASELINE, plan.site)
        rec = record_from(h, site=plan.site.folder, patient=study.patient.pseudonym,
                          true_modality=plan.true_modality, true_region=plan.true_region,
                          source=plan.source,
                          note=f"key image export of instance {plan.instance_numbers[w.index]}: "
                               f"window, crop {c}, resize, JPEG q{quality}")
        rec.pixel_key = "jpeg:" + pixel_key(np.frombuffer(frag, np.uint8))
        rec.primary = "NEAR_DUPLICATE"
        path = instance_path(ref, k + 1, k, sop)
        out.append(d.put(path, enc.data, rec))
        d.truth.near_duplicate(w.path, path)
    return out


def screen_save(d: Delivery, plan: SeriesPlan, ws: list[Written], number: int, order: int,
                lines: list[str], description: str) -> Record:
    """A 2x2 montage of slices saved from a viewer with its text overlay burned in
    (BurnedInAnnotation YES)."""
    study = plan.ref.study
    tiles = []
    for w in ws[:4]:
        img = w.stored.astype(np.float64)
        lo, hi = np.percentile(img, [1, 99.5])
        img8 = imd.to_uint8(imd.resize(img, 256.0 / img.shape[0]), lo, hi).astype(np.float64)
        tiles.append(img8[:256, :256])
    montage = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]])
    montage = imd.burn_text(montage, lines[:2], "tl", 255, 14)
    montage = imd.burn_text(montage, lines[2:], "br", 255, 14)
    stored = np.clip(np.round(montage), 0, 255).astype(np.uint8)
    uid = d.uid(plan.site.uid_root, "screen", study.uid, number)
    ref = SeriesRef(study, number, description, uid, order, plan.ref.modality)
    sop = d.uid(plan.site.uid_root, "screen-sop", uid)
    h = _sc_header(d, plan, ref, 0, sop, stored.shape[0], stored.shape[1], study.time + 4000,
                   description)
    h["BurnedInAnnotation"] = "YES"
    h["PixelData"] = encode_pixels(stored[None], plan.ts if plan.ts != JPEG_BASELINE else plan.ts, 8)
    enc = d.encode(h, plan.ts, plan.site)
    rec = record_from(h, site=plan.site.folder, patient=study.patient.pseudonym,
                      true_modality=plan.true_modality, true_region=plan.true_region,
                      source=plan.source, note="viewer screen save, text overlay burned in")
    rec.add("BURNED_IN_ANNOTATION")
    rec.primary = "BURNED_IN_ANNOTATION"
    rec.pixel_key = pixel_key(stored)
    d.truth.burned_in_text.extend(lines)
    return d.put(instance_path(ref, 1, 0, sop), enc.data, rec)


def damaged_copy(d: Delivery, plan: SeriesPlan, w: Written, relpath: str, kind: str,
                 r: np.random.Generator, fraction: float = 0.5) -> Record:
    """A second copy of an instance that arrived damaged (truncated or corrupt)."""
    from . import ops

    ts = w.ts
    if not kind.startswith("truncated") and ts == IMPLICIT_LE:
        ts = EXPLICIT_LE  # a garbage VR or misread length is only detectable with explicit VRs
    enc = d.encode(w.header, ts, plan.site, undefined_sequences=plan.site.key == "B")
    data = ops.damage(enc, kind, r, fraction)
    code = "TRUNCATED" if kind.startswith("truncated") else "CORRUPT_HEADER"
    rec = _record_like(w, plan, w.header, ops.DAMAGE_NOTES[kind])
    rec.ingest_error = code
    return d.put(relpath, data, rec)


def plain_file(d: Delivery, relpath: str, data: bytes, *, site: str, patient: str,
               ingest_error: str, note: str, source: str = "") -> Record:
    """A file that is not a DICOM object (or is empty)."""
    rec = Record(path="", site=site, patient=patient, ingest_error=ingest_error,
                 true_modality="none", true_region="none", note=note, source=source)
    return d.put(relpath, data, rec)
