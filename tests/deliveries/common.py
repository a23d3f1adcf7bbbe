"""Helpers shared by the shape rosters: series numbering inside a study, other
studies of the same patient, placing foreign objects, and small pixel transforms.

A roster context is any object with `d` (Delivery), `site` and `study`.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from . import foreign, modules
from .foreign import Spec


def series_step(site) -> int:
    """Philips-style sites number series 101, 201, ...; others 1, 2, ..."""
    return 100 if site.params.get("series_step") == 100 or site.key == "C" else 1


def next_series(ctx, study: modules.Study | None = None) -> tuple[int, int]:
    study = study or ctx.study
    number = study.series_number(series_step(ctx.site))
    order = study.extra.get("order", 0)
    study.extra["order"] = order + 1
    return number, order


def other_study(ctx, description: str, index: int = 1) -> modules.Study:
    study = modules.make_study(ctx.study.patient, ctx.d.seed, index=index, description=description)
    study.extra.update(index=index, order=0)
    if series_step(ctx.site) == 100:
        study.next_series = 101
    return study


def place(ctx, spec: Spec, study: modules.Study | None = None):
    study = study or ctx.study
    number, order = next_series(ctx, study)
    return foreign.place(ctx.d, study, spec, number, order)


def real_date(ctx) -> dt.date:
    """The acquisition date before the site's de-identification shifted it."""
    shifted = dt.datetime.strptime(ctx.study.date, "%Y%m%d").date()
    return shifted - dt.timedelta(days=ctx.site.date_shift_days)


def downsample(factor: int, bits: int | None = None):
    """Pixel transform for foreign objects: mean over factor x factor blocks."""
    def apply(arr):
        f, r, c = arr.shape[:3]
        r2, c2 = r // factor * factor, c // factor * factor
        a = arr[:, :r2, :c2].astype(np.float64)
        a = a.reshape(f, r2 // factor, factor, c2 // factor, factor, *arr.shape[3:]).mean(axis=(2, 4))
        out = np.round(a).astype(arr.dtype)
        return out, ({"BitsStored": bits} if bits else {})
    return apply
