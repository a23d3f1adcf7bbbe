"""Writes one single-frame tomographic (or projection) series, slice by slice,
applying per-instance defects given as `Op`s, and records the truth of each file.

A `SeriesPlan` says what to write: geometry (planes, matrix, spacing in mm),
how to render a slice (float image) and turn it into stored values, the header
extras of the modality, the transfer syntax, and the series-wide truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import modules
from .delivery import Delivery, record_from
from .encoders import encode_pixels
from .layout import SeriesRef, instance_path
from .mr import Plane
from .sites import Site
from .truth import Record, pixel_key
from .writer import Encoded


@dataclass
class Op:
    """One defect or change applied to one instance."""
    code: str = ""
    pixels: Callable | None = None      # (float image, rng) -> float image
    stored: Callable | None = None      # (stored ints, maxval) -> stored ints
    header: Callable | None = None      # (header dict) -> None, mutates
    pixel_data: Callable | None = None  # (stored frames, ts, bits) -> (PixelData, decodable)
    file: Callable | None = None        # (Encoded, rng) -> bytes, an ingest failure
    ts: str | None = None
    meta: dict | None = None
    ingest_error: str = ""
    note: str = ""


@dataclass
class SeriesPlan:
    ref: SeriesRef
    site: Site
    model: str
    sop_class: str
    image_type: tuple
    protocol: str | None
    body_part: str | None
    planes: list[Plane]
    instance_numbers: list[int]
    matrix: tuple[int, int]
    spacing: tuple[float, float]
    thickness: float
    ts: str
    render: Callable[[int, Plane], np.ndarray]
    to_stored: Callable[[np.ndarray], tuple[np.ndarray, dict]]
    bits_stored: int
    signed: bool
    true_modality: str
    true_region: str
    source: str
    extra: dict = field(default_factory=dict)
    header_spacing: tuple | None = None
    header_thickness: float | None = None
    series_codes: list[str] = field(default_factory=list)
    hard_negative: Callable[[int, np.ndarray], str] | str = ""
    note: str = ""
    ops: dict[int, list[Op]] = field(default_factory=dict)
    time_s: float = 36000.0
    plane_attributes: bool = True
    instance_extra: Callable[[int], dict] | None = None


@dataclass
class Written:
    index: int
    path: str
    header: dict
    stored: np.ndarray | None
    record: Record
    ts: str
    data: bytes


def build_header(plan: SeriesPlan, index: int, sop_uid: str, time_s: float) -> dict:
    study = plan.ref.study
    h = {}
    h.update(modules.sop_common(plan.sop_class, sop_uid, study, time_s))
    h.update(modules.patient_study(study))
    h.update(modules.series_module(study, modality=plan.ref.modality, series_uid=plan.ref.uid,
                                   number=plan.ref.number, description=plan.ref.description,
                                   protocol=plan.protocol, body_part=plan.body_part,
                                   time_s=plan.time_s))
    h.update(modules.equipment(plan.site, plan.model))
    h.update(modules.general_image(study, plan.instance_numbers[index], plan.image_type, time_s))
    if plan.plane_attributes:
        p = plan.planes[index]
        h["FrameOfReferenceUID"] = study.frame_uid
        h["PositionReferenceIndicator"] = ""
        h.update(modules.image_plane(p.origin, p.row, p.col, plan.header_spacing or plan.spacing,
                                     plan.header_thickness or plan.thickness))
    h.update(modules.image_pixel(plan.matrix[0], plan.matrix[1], plan.bits_stored, plan.signed))
    h.update(plan.extra)
    if plan.instance_extra:
        h.update(plan.instance_extra(index))
    return h


def write_series(d: Delivery, plan: SeriesPlan, keep_pixels: bool = True) -> list[Written]:
    site = plan.site
    study = plan.ref.study
    out = []
    maxval = (1 << (plan.bits_stored - 1)) - 1 if plan.signed else (1 << plan.bits_stored) - 1
    for index, plane in enumerate(plan.planes):
        r = d.rng("slice", plan.ref.uid, index)
        ops = plan.ops.get(index, [])
        img = plan.render(index, plane)
        for op in ops:
            if op.pixels:
                img = op.pixels(img, r)
        stored, pix_header = plan.to_stored(img)
        for op in ops:
            if op.stored:
                stored = op.stored(stored, maxval)
        sop_uid = d.uid(site.uid_root, "sop", plan.ref.uid, index)
        time_s = plan.time_s + 2.5 * index
        h = build_header(plan, index, sop_uid, time_s)
        h.update(pix_header)
        ts = plan.ts
        meta = {}
        for op in ops:
            ts = op.ts or ts
            meta.update(op.meta or {})
        decodable = True
        pixel_value = None
        for op in ops:
            if op.pixel_data:
                pixel_value, decodable = op.pixel_data(stored[None], ts, plan.bits_stored)
        if pixel_value is None:
            pixel_value = encode_pixels(stored[None], ts, plan.bits_stored)
        h["PixelData"] = pixel_value
        for op in ops:
            if op.header:
                op.header(h)
        if "PixelData" not in h:
            decodable = False
        enc: Encoded = d.encode(h, ts, site, meta_overrides=meta or None,
                                undefined_sequences=site.key == "B")
        data = enc.data
        ingest_error = ""
        for op in ops:
            if op.file:
                data = op.file(enc, r)
                ingest_error = op.ingest_error
        hard = plan.hard_negative(index, img) if callable(plan.hard_negative) else plan.hard_negative
        notes = [plan.note] + [op.note for op in ops]
        rec = record_from(h, site=site.folder, patient=study.patient.pseudonym,
                          true_modality=plan.true_modality, true_region=plan.true_region,
                          source=plan.source, ingest_error=ingest_error,
                          note="; ".join(n for n in notes if n))
        if not ingest_error:
            rec.add(*plan.series_codes)
            rec.add(*[op.code for op in ops])
            codes = [op.code for op in ops if op.code]
            rec.primary = codes[0] if codes else (plan.series_codes[0] if plan.series_codes else "")
            rec.pixel_key = pixel_key(stored) if decodable else None
            if not rec.reasons:
                rec.hard_negative = hard
        path = instance_path(plan.ref, plan.instance_numbers[index], index, sop_uid)
        d.put(path, data, rec)
        out.append(Written(index, path, h, stored if keep_pixels else None, rec, ts, data))
    return out
