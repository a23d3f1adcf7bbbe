"""Annotator drift on simulated annotators (no Spark): over 8 batches, one
whose error rate grows batch after batch and one who draws boxes 25 % smaller
per side are flagged, the consistent ones are not."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dicom_triage.udfs.agreement import Params, analyse_batch
from dicom_triage.udfs.annotator_drift import batch_figures, flag_annotator

CLASSES = ["nodule", "mass", "normal"]
PARAMS = Params(label_kind="nominal", box_match_iou=0.5, min_items=5, worst_items=5)
DISAGREEMENT_MAX, BOX_SIZE_BIAS_MAX = 0.25, 0.15


def simulate_labels(batches: int = 8, items: int = 30, seed: int = 3) -> pd.DataFrame:
    """Rows of the `labels` table (annotator, path, sop_instance_uid, batch_id, label,
    grade, boxes, source, source_row) for four annotators who all label every item:

    * steady, second: 4 % label errors, boxes within ±2 % of the truth;
    * drifter: label errors 4 % in batch 0, growing 7 points per batch (53 % in batch 7);
    * small: like steady, but every box 25 % smaller per side around its centre.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for batch in range(batches):
        for i in range(items):
            path = f"file:///delivery/b{batch}/img{i}.dcm"
            truth = CLASSES[rng.integers(len(CLASSES))]
            objects = [(rng.uniform(20, 300), rng.uniform(20, 300), rng.uniform(40, 120), rng.uniform(40, 120))
                       for _ in range(rng.integers(1, 3))]
            for annotator in ("steady", "second", "drifter", "small"):
                error = 0.04 + (0.07 * batch if annotator == "drifter" else 0.0)
                label = truth
                if rng.random() < error:
                    label = rng.choice([c for c in CLASSES if c != truth])
                scale = 0.75 if annotator == "small" else 1.0
                boxes = []
                for x, y, w, h in objects:
                    cx, cy = x + w / 2 + rng.normal(0, 0.01) * w, y + h / 2 + rng.normal(0, 0.01) * h
                    bw, bh = w * scale * (1 + rng.normal(0, 0.01)), h * scale * (1 + rng.normal(0, 0.01))
                    boxes.append({"x": cx - bw / 2, "y": cy - bh / 2, "width": bw, "height": bh, "label": None})
                rows.append({"annotator": annotator, "path": path, "sop_instance_uid": f"1.2.{batch}.{i}",
                             "batch_id": batch, "label": str(label), "grade": None, "boxes": boxes,
                             "source": "sim.csv", "source_row": str(len(rows))})
    return pd.DataFrame(rows)


def drift_rows(labels: pd.DataFrame, params: Params = PARAMS) -> pd.DataFrame:
    per_batch = [row for _, frame in labels.groupby("batch_id") for row in analyse_batch(frame, params)["drift"]]
    frame = pd.DataFrame(per_batch)
    return pd.concat([flag_annotator(rows, DISAGREEMENT_MAX, BOX_SIZE_BIAS_MAX)
                      for _, rows in frame.groupby("annotator")], ignore_index=True)


@pytest.fixture(scope="module")
def drift():
    return drift_rows(simulate_labels())


def test_growing_error_rate_is_flagged_with_a_rising_trend(drift):
    mine = drift[drift["annotator"] == "drifter"].sort_values("batch_id")
    print("\n" + drift.pivot(index="batch_id", columns="annotator", values="disagreement").round(2).to_string())
    assert mine["flagged"].all()
    reasons = mine["flag_reasons"].iloc[0]
    assert len(reasons) == 1 and reasons[0].startswith("DISAGREEMENT") and "in batch 7" in reasons[0]
    assert mine["disagreement"].iloc[0] < DISAGREEMENT_MAX < mine["disagreement"].iloc[-1]
    assert mine["disagreement_slope"].iloc[0] > 0.04  # 7 points per batch simulated
    assert mine["latest"].tolist() == [False] * 7 + [True]
    # box sizes are fine
    assert abs(mine["box_size_bias"]).max() < BOX_SIZE_BIAS_MAX


def test_smaller_boxes_are_flagged_for_size_bias(drift):
    mine = drift[drift["annotator"] == "small"]
    print("\n" + drift.pivot(index="batch_id", columns="annotator", values="box_size_bias").round(3).to_string())
    assert mine["flagged"].all()
    reasons = mine["flag_reasons"].iloc[0]
    assert len(reasons) == 1 and reasons[0].startswith("BOX_SIZE_BIAS") and "smaller" in reasons[0]
    # log(0.75) = -0.288 per side: the cluster median is the others' box with 3 of 4 normal annotators
    assert mine["box_size_bias"].between(math.log(0.75) - 0.05, math.log(0.75) + 0.05).all()
    assert mine["over_fence"].all()


def test_consistent_annotators_are_not_flagged(drift):
    for name in ("steady", "second"):
        mine = drift[drift["annotator"] == name]
        assert not mine["flagged"].any(), mine[["batch_id", "disagreement", "box_size_bias"]]
        assert mine["flag_reasons"].map(len).eq(0).all()
        assert mine["disagreement"].max() < DISAGREEMENT_MAX
        assert mine["box_size_bias"].abs().max() < 0.03  # the small annotator does not move the median
        # worst items are listed only for batches over a fence
        assert mine.loc[~mine["over_fence"], "worst_items"].map(len).eq(0).all()


def test_worst_items_of_a_flagged_annotator(drift):
    latest = drift[(drift["annotator"] == "drifter") & drift["latest"]].iloc[0]
    worst = latest["worst_items"]
    assert 0 < len(worst) <= PARAMS.worst_items
    scores = [w["misalignment"] for w in worst]
    assert scores == sorted(scores, reverse=True)
    # the worst ones are label disagreements (1 point) plus some box misalignment
    assert all(w["label"] != w["others_label"] for w in worst)
    assert all(s >= 1.0 for s in scores)
    assert all(w["path"].startswith("file:///delivery/b7/") for w in worst)


def test_small_batches_give_no_figure():
    labels = simulate_labels(batches=1, items=4)
    rows = drift_rows(labels, Params(label_kind="nominal", min_items=5))
    assert rows["disagreement"].isna().all() and rows["box_size_bias"].isna().all()
    assert (rows["n_items"] == 4).all()
    assert not rows["flagged"].any() and not rows["latest"].any()
    assert rows["disagreement_slope"].isna().all()


def test_batch_figures_leave_one_out_and_fences():
    params = Params(min_items=2, worst_items=1)
    details = [{"path": "a", "misalignment": 1.0}, {"path": "b", "misalignment": 0.0},
               {"path": "c", "misalignment": 0.4}]
    row = batch_figures("ann", 3, details, [("x", "x"), ("x", "y"), ("y", "y"), ("y", "x")], [-0.2, -0.4], params)
    assert row["disagreement"] == 0.5 and row["box_size_bias"] == pytest.approx(-0.3)
    assert [w["path"] for w in row["worst_items"]] == ["a"]
    frame = pd.DataFrame([row, {**row, "batch_id": 1, "disagreement": 0.1, "box_size_bias": 0.0},
                          {**row, "batch_id": None, "disagreement": 0.9, "box_size_bias": None}])
    out = flag_annotator(frame, 0.25, 0.15).set_index(frame.index)
    assert out["flagged"].all() and len(out["flag_reasons"].iloc[0]) == 2
    assert out["latest"].tolist() == [True, False, False]
    assert out["disagreement_slope"].iloc[0] == pytest.approx((0.5 - 0.1) / 2)
    # the unassigned batch crosses the fence but takes no part in the flag
    assert out["over_fence"].tolist() == [True, False, True]
    recovered = flag_annotator(pd.DataFrame([{**row, "batch_id": 4, "disagreement": 0.1, "box_size_bias": 0.0},
                                             row]), 0.25, 0.15)
    assert not recovered["flagged"].any(), "a fence crossed earlier and since fixed does not flag"
