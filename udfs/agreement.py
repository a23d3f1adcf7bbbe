"""Inter-annotator agreement on one batch of labels: plain pandas/numpy with
the reference implementations, no Spark (jobs/annotate_agreement.py calls
`analyse_batch` once per batch through applyInPandas).

Measures (the well-kept implementations, not re-derived here):

* Cohen's kappa per annotator pair, on the items both labelled:
  `sklearn.metrics.cohen_kappa_score`; ordinal grades use
  `annotate.kappa_weights` (none, linear, quadratic) over the grade scale,
  nominal labels are unweighted.
* Fleiss' kappa: `statsmodels.stats.inter_rater.fleiss_kappa` on the
  `aggregate_raters` count table. It needs the same number of ratings per
  item, so it is computed on the overlap items with the most common rater
  count (on a tie the larger count); `fleiss_items` says how many items that
  is. Krippendorff's alpha uses every overlap item, missing ratings included.
* Krippendorff's alpha: the `krippendorff` package, level nominal for labels
  and ordinal for grades (its default, interval, would treat class codes as
  distances).
* Consensus: plurality vote per item, with the share of its annotators giving
  that label (`agreement`). A tie leaves nominal labels without consensus
  (rule `tie`); for ordinal grades the median of the item's grades is taken
  when it is one of the grades given (rule `median_of_tie`, e.g. 1, 2, 3 -> 2),
  else (1, 1, 2, 2 -> 1.5) it is left without consensus too.
* Each annotator against the majority: leave-one-out, the vote of the OTHER
  annotators of the item, so nobody votes on their own reference; items where
  the others tie are left out.

Undefined values (one class only: chance agreement is 1; fewer than two
items) are None with a note saying why; nothing raises on small batches.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dicom_triage.udfs import boxes as B
from dicom_triage.udfs.annotator_drift import batch_figures


@dataclass(frozen=True)
class Measure:
    """A measure's value, or None with the reason it is undefined."""
    value: float | None
    note: str | None = None


@dataclass(frozen=True)
class Params:
    label_kind: str = "nominal"
    kappa_weights: str = "quadratic"
    box_match_iou: float = 0.5
    min_items: int = 5
    worst_items: int = 20

    @classmethod
    def from_settings(cls, annotate) -> "Params":
        return cls(label_kind=annotate.label_kind, kappa_weights=str(annotate.kappa_weights),
                   box_match_iou=float(annotate.box_match_iou), min_items=int(annotate.drift.min_items),
                   worst_items=int(annotate.drift.worst_items))


# ---------------------------------------------------------------- label values


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def label_value(label, grade, kind: str):
    """The value compared between annotators: the label text for nominal labels, the
    grade (else the label read as a number) for ordinal ones; None when absent."""
    if kind == "ordinal":
        if not _missing(grade):
            return float(grade)
        try:
            return float(str(label).strip()) if not _missing(label) and str(label).strip() else None
        except ValueError:
            return None
    if _missing(label):
        return None
    text = str(label).strip()
    return text or None


def value_text(value) -> str | None:
    """A value as label text: grades without a trailing .0."""
    if _missing(value):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def domain(values, kind: str) -> list:
    """The label scale: sorted classes; for integral grades every grade from the
    lowest to the highest seen (a grade nobody used still counts as a step)."""
    seen = sorted({v for v in values if not _missing(v)})
    if kind == "ordinal" and seen and all(float(v).is_integer() for v in seen) and seen[-1] - seen[0] <= 1000:
        return [float(v) for v in range(int(seen[0]), int(seen[-1]) + 1)]
    return seen


# ---------------------------------------------------------------- measures


def cohen_kappa(a, b, kind: str = "nominal", weights: str = "none", scale: list | None = None) -> Measure:
    """Cohen's kappa of two aligned rating lists (sklearn), weighted for ordinal grades."""
    from sklearn.metrics import cohen_kappa_score

    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError("ratings of unequal length")
    if len(a) < 2:
        return Measure(None, f"{len(a)} item(s) rated by both: kappa needs at least 2")
    if len(set(a) | set(b)) < 2:
        return Measure(None, "one class only: kappa is undefined (chance agreement is 1)")
    labels = scale or sorted(set(a) | set(b))
    mode = None if kind != "ordinal" or weights in (None, "none") else weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = cohen_kappa_score(a, b, labels=labels, weights=mode)
    if value is None or math.isnan(value):
        return Measure(None, "kappa is undefined (chance agreement is 1)")
    return Measure(float(value))


def _rows_of_ratings(wide: pd.DataFrame) -> list[list]:
    return [[v for v in row if not _missing(v)] for row in wide.itertuples(index=False)]


def fleiss(wide: pd.DataFrame, scale: list) -> tuple[Measure, int]:
    """Fleiss' kappa (statsmodels) of an items x annotators frame of values (None:
    not rated), on the items with the most common number of ratings (>= 2)."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    rows = [r for r in _rows_of_ratings(wide) if len(r) >= 2]
    if not rows:
        return Measure(None, "no item rated by 2 or more annotators"), 0
    counts = Counter(len(r) for r in rows)
    top = max(counts.values())
    raters = max(n for n, c in counts.items() if c == top)
    chosen = [r for r in rows if len(r) == raters]
    if len(chosen) < 2:
        return Measure(None, f"{len(chosen)} item(s) with {raters} ratings: Fleiss' kappa needs at least 2"), \
            len(chosen)
    code = {v: i for i, v in enumerate(scale)}
    table, _ = aggregate_raters(np.array([[code[v] for v in r] for r in chosen]), n_cat=len(scale))
    if np.count_nonzero(table.sum(axis=0)) < 2:
        return Measure(None, "one class only: Fleiss' kappa is undefined"), len(chosen)
    with np.errstate(all="ignore"):
        value = float(fleiss_kappa(table, method="fleiss"))
    if math.isnan(value):
        return Measure(None, "Fleiss' kappa is undefined"), len(chosen)
    return Measure(value), len(chosen)


def krippendorff_alpha(wide: pd.DataFrame, kind: str, scale: list) -> Measure:
    """Krippendorff's alpha (krippendorff package) of an items x annotators frame:
    level nominal for labels, ordinal for grades; missing ratings allowed."""
    import krippendorff

    rows = [r for r in _rows_of_ratings(wide) if len(r) >= 2]
    if not rows:
        return Measure(None, "no item rated by 2 or more annotators")
    if len({v for r in rows for v in r}) < 2:
        return Measure(None, "one value only: Krippendorff's alpha is undefined")
    code = {v: float(i) for i, v in enumerate(scale)}
    data = np.array([[np.nan if _missing(v) else code[v] for v in column] for _, column in wide.items()],
                    dtype=float)
    level = "ordinal" if kind == "ordinal" else "nominal"
    try:
        with np.errstate(all="ignore"):
            value = float(krippendorff.alpha(reliability_data=data, value_domain=np.arange(len(scale), dtype=float),
                                             level_of_measurement=level))
    except (ValueError, ZeroDivisionError) as exc:
        return Measure(None, f"Krippendorff's alpha is undefined: {exc}")
    if math.isnan(value):
        return Measure(None, "Krippendorff's alpha is undefined")
    return Measure(value)


# ---------------------------------------------------------------- votes


@dataclass(frozen=True)
class Vote:
    value: object            # the consensus value, None when there is none
    votes: int               # annotators giving it
    n: int                   # annotators with a value
    agreement: float | None  # votes / n (for no consensus: the largest class's share)
    tie: bool
    rule: str                # majority | median_of_tie | tie | single_annotator | no_label


def vote(values, kind: str = "nominal") -> Vote:
    """Plurality vote over one item's values, with the tie rule of the module doc."""
    values = [v for v in values if not _missing(v)]
    n = len(values)
    if n == 0:
        return Vote(None, 0, 0, None, False, "no_label")
    counts = Counter(values)
    top = max(counts.values())
    winners = [v for v, c in counts.items() if c == top]
    if len(winners) == 1:
        if n == 1:
            return Vote(winners[0], 1, 1, None, False, "single_annotator")
        return Vote(winners[0], top, n, top / n, False, "majority")
    if kind == "ordinal":
        median = float(np.median(values))
        if median in counts:
            return Vote(median, counts[median], n, counts[median] / n, True, "median_of_tie")
    return Vote(None, top, n, top / n, True, "tie")


# ---------------------------------------------------------------- one batch


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (annotator, path): an annotator's repeated annotation of an item in a
    batch counts once, the last in (source, source_row) order."""
    order = [c for c in ("annotator", "path", "source", "source_row") if c in frame.columns]
    frame = frame.sort_values(order, kind="stable", na_position="first")
    return frame.drop_duplicates(["annotator", "path"], keep="last")


@dataclass
class _Item:
    path: str
    uid: str | None
    values: dict                               # annotator -> value (None: no label)
    boxes: dict                                # annotator -> Boxes | None
    matches: dict = field(default_factory=dict)
    groups: list = field(default_factory=list)


def _items(frame: pd.DataFrame, kind: str, min_iou: float) -> list[_Item]:
    out = []
    for path, rows in frame.groupby("path", sort=True):
        uids = [u for u in rows.get("sop_instance_uid", pd.Series(dtype=object)) if not _missing(u)]
        values, boxes = {}, {}
        for r in rows.itertuples(index=False):
            values[r.annotator] = label_value(getattr(r, "label", None), getattr(r, "grade", None), kind)
            boxes[r.annotator] = B.as_boxes(getattr(r, "boxes", None))
        item = _Item(path, uids[0] if uids else None, values, boxes)
        if sum(b is not None for b in boxes.values()) >= 2:
            item.matches = B.pairwise_matches(boxes, min_iou)
            item.groups = B.clusters(boxes, item.matches)
        elif any(b is not None for b in boxes.values()):
            item.groups = B.clusters(boxes, {})
        out.append(item)
    return out


def _pair_match(item: _Item, a: str, b: str):
    """(PairMatch oriented a -> b) or None when either gave no boxes."""
    if item.boxes.get(a) is None or item.boxes.get(b) is None:
        return None
    if (a, b) in item.matches:
        return item.matches[(a, b)]
    found = item.matches[(b, a)]
    return B.PairMatch([(j, i, s) for i, j, s in found.pairs], found.unmatched_b, found.unmatched_a)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else None


def analyse_batch(frame: pd.DataFrame, params: Params) -> dict[str, list[dict]]:
    """Every figure of one batch's labels (columns annotator, path, sop_instance_uid,
    batch_id, label, grade, boxes[, source, source_row]): lists of row dicts keyed
    `batch`, `pair`, `majority`, `drift` and `consensus`, in the columns of
    schemas/agreement.py."""
    kind, weights = params.label_kind, params.kappa_weights
    frame = frame[frame["annotator"].notna() & frame["path"].notna()]
    batch_id = None
    if len(frame) and not _missing(frame["batch_id"].iloc[0]):
        batch_id = int(frame["batch_id"].iloc[0])
    frame = _dedupe(frame)
    items = _items(frame, kind, params.box_match_iou)
    overlap = [it for it in items if len(it.values) >= 2]
    annotators = sorted({a for it in overlap for a in it.values})
    scale = domain([v for it in items for v in it.values.values()], kind)

    # consensus for every item of the batch
    consensus, votes = [], {}
    for it in items:
        v = vote(it.values.values(), kind)
        votes[it.path] = v
        gave_boxes = any(b is not None for b in it.boxes.values())
        consensus.append({
            "path": it.path, "sop_instance_uid": it.uid, "batch_id": batch_id,
            "label": value_text(v.value), "grade": float(v.value) if kind == "ordinal" and v.value is not None
            else None, "agreement": v.agreement, "n_annotators": len(it.values), "n_votes": v.votes,
            "tie": v.tie, "rule": v.rule, "boxes": B.fuse(it.boxes, it.groups) if gave_boxes else None})

    # every pair of annotators
    pairs, all_ious, matched_total, unmatched_total, pair_kappas = [], [], 0, 0, []
    for i, a in enumerate(annotators):
        for b in annotators[i + 1:]:
            both = [it for it in overlap if a in it.values and b in it.values]
            rated = [(it.values[a], it.values[b]) for it in both
                     if it.values[a] is not None and it.values[b] is not None]
            kappa = cohen_kappa([x for x, _ in rated], [y for _, y in rated], kind, weights, scale)
            if kappa.value is not None:
                pair_kappas.append(kappa.value)
            found = [m for m in (_pair_match(it, a, b) for it in both) if m is not None]
            ious = [s for m in found for s in m.ious]
            all_ious += ious
            matched = sum(len(m.pairs) for m in found)
            unmatched_a, unmatched_b = sum(m.unmatched_a for m in found), sum(m.unmatched_b for m in found)
            matched_total += matched
            unmatched_total += unmatched_a + unmatched_b
            pairs.append({"batch_id": batch_id, "level": "pair", "annotator": a, "other": b, "n_items": len(rated),
                          "agreement": _mean([float(x == y) for x, y in rated]), "kappa": kappa.value,
                          "kappa_note": kappa.note, "box_items": len(found), "mean_box_iou": _mean(ious),
                          "matched_boxes": matched, "unmatched_own": unmatched_a, "unmatched_other": unmatched_b,
                          "box_size_bias": None})

    # each annotator against the others' majority, and the drift figures
    majority, drift = [], []
    for a in annotators:
        compared, ious, matched, unmatched_own, unmatched_other, box_items, bias_terms = [], [], 0, 0, 0, 0, []
        details = []
        for it in overlap:
            if a not in it.values:
                continue
            own = it.values[a]
            others = vote([v for name, v in it.values.items() if name != a], kind)
            label_part = None
            if own is not None and others.value is not None:
                compared.append((own, others.value))
                if kind == "ordinal":
                    span = (scale[-1] - scale[0]) if len(scale) > 1 else 1.0
                    label_part = abs(own - others.value) / span
                else:
                    label_part = float(own != others.value)
            box_part, scores = None, []
            for b in it.values:
                if b == a:
                    continue
                m = _pair_match(it, a, b)
                if m is None:
                    continue
                scores.append(m.overlap_score(len(it.boxes[a]), len(it.boxes[b])))
                ious += m.ious
                matched += len(m.pairs)
                unmatched_own += m.unmatched_a
                unmatched_other += m.unmatched_b
            if scores:
                box_items += 1
                box_part = 1.0 - float(np.mean(scores))
            terms = B.size_bias_terms(it.boxes, it.groups).get(a, []) if it.groups else []
            bias_terms += terms
            details.append({"path": it.path, "sop_instance_uid": it.uid, "label": value_text(own),
                            "others_label": value_text(others.value),
                            "box_agreement": None if box_part is None else 1.0 - box_part,
                            "misalignment": (label_part or 0.0) + (box_part or 0.0)})
        kappa = cohen_kappa([x for x, _ in compared], [y for _, y in compared], kind, weights, scale)
        majority.append({"batch_id": batch_id, "level": "majority", "annotator": a, "other": None,
                         "n_items": len(compared), "agreement": _mean([float(x == y) for x, y in compared]),
                         "kappa": kappa.value, "kappa_note": kappa.note, "box_items": box_items,
                         "mean_box_iou": _mean(ious), "matched_boxes": matched, "unmatched_own": unmatched_own,
                         "unmatched_other": unmatched_other, "box_size_bias": _mean(bias_terms)})
        drift.append(batch_figures(a, batch_id, details, compared, bias_terms, params))

    # the batch
    notes = []
    wide = pd.DataFrame([{name: it.values.get(name) for name in annotators} for it in overlap],
                        columns=annotators, dtype=object)
    fleiss_kappa, fleiss_items = fleiss(wide, scale)
    alpha = krippendorff_alpha(wide, kind, scale)
    for name, m in (("fleiss_kappa", fleiss_kappa), ("krippendorff_alpha", alpha)):
        if m.note:
            notes.append(f"{name}: {m.note}")
    if pairs and not pair_kappas:
        notes.append("mean_pairwise_kappa: no annotator pair has a defined kappa")
    if not overlap:
        notes.append("no item labelled by 2 or more annotators")
    overlap_votes = [votes[it.path] for it in overlap]
    batch = {"batch_id": batch_id, "n_items": len(overlap), "n_labelled_items": len(items),
             "n_annotators": len(annotators), "annotators": annotators, "label_kind": kind,
             "fleiss_kappa": fleiss_kappa.value, "fleiss_items": fleiss_items,
             "krippendorff_alpha": alpha.value, "krippendorff_level": "ordinal" if kind == "ordinal" else "nominal",
             "mean_pairwise_kappa": _mean(pair_kappas), "kappa_weights": weights if kind == "ordinal" else "none",
             "mean_box_iou": _mean(all_ious), "matched_boxes": matched_total, "unmatched_boxes": unmatched_total,
             "consensus_items": sum(v.value is not None for v in overlap_votes),
             "tie_items": sum(v.tie for v in overlap_votes), "notes": notes}
    return {"batch": [batch], "pair": pairs, "majority": majority, "drift": drift, "consensus": consensus}


def batch_records(frame: pd.DataFrame, params: Params, columns: list[str]) -> pd.DataFrame:
    """`analyse_batch` as one frame in the columns of schemas/agreement.py
    AGREEMENT_RECORDS (`kind` says which table a row belongs to)."""
    out = analyse_batch(frame, params)
    rows = [{"kind": kind, **row} for kind, mine in out.items() for row in mine]
    return pd.DataFrame([[row.get(c) for c in columns] for row in rows], columns=columns)
