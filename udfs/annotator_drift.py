"""Annotator drift: how far each annotator departs from the others, batch after
batch (batches in `batch_id` order). Plain pandas/numpy, no Spark.

Per annotator and batch (`batch_figures`, from udfs/agreement.py's per-batch pass):

* disagreement: the share of the overlap items they labelled where their label
  differs from the majority of the OTHER annotators of the item (leave-one-out:
  nobody votes on their own reference; items where the others tie are left out);
* box size bias: the mean over their matched boxes of (log area − median log
  area of the matched cluster) / 2, the log of the linear scale per side
  (udfs/boxes.py); -0.29 is boxes about 25 % smaller per side;
* the overlap items with the largest misalignment: the label part (0/1 for
  classes; |grade − the others' grade| / the grade range for grades) plus the
  box part (1 − matched IoU sum / larger box count, mean over the others).

A batch with fewer than `annotate.drift.min_items` overlap items labelled by
the annotator gives no figure (null).

The flag (`flag_annotator`): an annotator is flagged when their LATEST batch
with a figure crosses a fence, disagreement above
`annotate.drift.disagreement_max` or |box size bias| above
`annotate.drift.box_size_bias_max`: what a team acts on is where an annotator
is now, not an early batch they have since got right. The least-squares slope
of each figure over the annotator's batches is reported beside it, so a
growing disagreement that has not crossed the fence yet is visible too. Every
batch row says whether that batch crossed a fence, and those rows list their
`annotate.drift.worst_items` most misaligned overlap items.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def batch_figures(annotator: str, batch_id, details: list[dict], compared: list[tuple], bias_terms: list[float],
                  params) -> dict:
    """One annotator's drift row for one batch (schemas/agreement.py DRIFT_BATCH_FIELDS).
    `details`: one dict per overlap item they labelled (path, sop_instance_uid, label,
    others_label, box_agreement, misalignment); `compared`: (own, others' majority)
    label pairs; `bias_terms`: their size-bias terms."""
    enough = len(details) >= params.min_items
    disagreement = None
    if enough and compared:
        disagreement = float(np.mean([float(own != other) for own, other in compared]))
    bias = float(np.mean(bias_terms)) if enough and bias_terms else None
    ranked = sorted((d for d in details if d["misalignment"] > 0),
                    key=lambda d: (-d["misalignment"], d["path"]))[:params.worst_items]
    return {"annotator": annotator, "batch_id": batch_id, "n_items": len(details), "disagreement": disagreement,
            "box_size_bias": bias, "box_clusters": len(bias_terms), "worst_items": ranked}


def _slope(batches, values) -> float | None:
    points = [(float(b), float(v)) for b, v in zip(batches, values)
              if b is not None and v is not None and not (isinstance(v, float) and math.isnan(v))]
    if len({b for b, _ in points}) < 2:
        return None
    xs, ys = zip(*points)
    return float(np.polyfit(xs, ys, 1)[0])


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def flag_annotator(rows: pd.DataFrame, disagreement_max: float, box_size_bias_max: float) -> pd.DataFrame:
    """One annotator's per-batch rows (DRIFT_BATCH_FIELDS) with the fence columns
    of ANNOTATOR_DRIFT_FIELDS: over_fence, latest, the slopes, flagged, flag_reasons;
    worst_items kept only on rows over a fence. Unassigned labels (batch_id null)
    get figures but take no part in the trend or the flag."""
    rows = rows.copy()
    ordered = rows[rows["batch_id"].notna()].sort_values("batch_id")
    disagreement = [v if _present(v) else None for v in ordered["disagreement"]]
    bias = [v if _present(v) else None for v in ordered["box_size_bias"]]
    batches = [int(b) for b in ordered["batch_id"]]
    slopes = {"disagreement_slope": _slope(batches, disagreement),
              "box_size_bias_slope": _slope(batches, bias)}
    reasons, latest_batch = [], None
    last_d = [(b, v) for b, v in zip(batches, disagreement) if v is not None]
    last_s = [(b, v) for b, v in zip(batches, bias) if v is not None]
    if last_d:
        b, v = last_d[-1]
        latest_batch = b
        if v > disagreement_max:
            trend = slopes["disagreement_slope"]
            reasons.append(f"DISAGREEMENT {v:.2f} > {disagreement_max:g} in batch {b}"
                           + (f" (slope {trend:+.3f} per batch)" if trend is not None else ""))
    if last_s:
        b, v = last_s[-1]
        latest_batch = b if latest_batch is None else max(latest_batch, b)
        if abs(v) > box_size_bias_max:
            side = "smaller" if v < 0 else "larger"
            scale = 100 * abs(math.exp(v) - 1)
            reasons.append(f"BOX_SIZE_BIAS {v:+.2f} beyond ±{box_size_bias_max:g} in batch {b}: boxes about "
                           f"{scale:.0f} % {side} per side than the item's median box")

    def over(row) -> bool:
        d, s = row["disagreement"], row["box_size_bias"]
        return bool((_present(d) and d > disagreement_max) or (_present(s) and abs(s) > box_size_bias_max))

    rows["over_fence"] = [over(r) for _, r in rows.iterrows()]
    rows["latest"] = [_present(b) and latest_batch is not None and int(b) == latest_batch for b in rows["batch_id"]]
    for name, value in slopes.items():
        rows[name] = value
    rows["flagged"] = bool(reasons)
    rows["flag_reasons"] = [list(reasons) for _ in range(len(rows))]
    rows["worst_items"] = [list(w) if o and w is not None else [] for w, o in zip(rows["worst_items"], rows["over_fence"])]
    return rows
