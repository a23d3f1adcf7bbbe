"""Agreement measures, votes and box matching against hand-computed examples
and the reference implementations (no Spark)."""
from __future__ import annotations

import math

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from dicom_triage.udfs import boxes as B
from dicom_triage.udfs.agreement import (Params, analyse_batch, batch_records, cohen_kappa, domain, fleiss, krippendorff_alpha,
                            label_value, vote)

# Two annotators, ten items, labels Y / N:
#   item   1 2 3 4 5 6 7 8 9 10
#   A      Y Y Y Y Y Y N N N N
#   B      Y Y Y Y N N N N N Y
A = list("YYYYYYNNNN")
B_ = list("YYYYNNNNNY")


def wide(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns, dtype=object)


# ---------------------------------------------------------------- Cohen's kappa


def test_cohen_kappa_by_hand():
    # agreements: items 1-4 (Y,Y) and 7-9 (N,N): p_o = 7/10 = 0.7
    # A says Y 6/10, B says Y 5/10: p_e = 0.6*0.5 + 0.4*0.5 = 0.5
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    assert cohen_kappa(A, B_).value == pytest.approx(0.4)
    assert cohen_kappa(A, B_).value == pytest.approx(cohen_kappa_score(A, B_))


def test_weighted_kappa_by_hand():
    # grades 0..2, five items: A 0 1 2 2 1, B 0 2 2 1 1
    # observed disagreements (1,2) and (2,1), each 1/5
    # both marginals (0.2, 0.4, 0.4)
    # linear weights w = |i-j|/2:  sum w*o = 2 * 0.5/5 = 0.2
    #   sum w*e = 2*(0.5*0.2*0.4) + 2*(1*0.2*0.4) + 2*(0.5*0.4*0.4) = 0.08 + 0.16 + 0.16 = 0.40
    #   kappa = 1 - 0.2/0.4 = 0.5
    # quadratic w = (|i-j|/2)^2: sum w*o = 2 * 0.25/5 = 0.1
    #   sum w*e = 2*(0.25*0.08) + 2*(1*0.08) + 2*(0.25*0.16) = 0.04 + 0.16 + 0.08 = 0.28
    #   kappa = 1 - 0.1/0.28 = 0.642857
    a, b = [0.0, 1.0, 2.0, 2.0, 1.0], [0.0, 2.0, 2.0, 1.0, 1.0]
    assert cohen_kappa(a, b, "ordinal", "linear").value == pytest.approx(0.5)
    assert cohen_kappa(a, b, "ordinal", "quadratic").value == pytest.approx(1 - 0.1 / 0.28)
    assert cohen_kappa(a, b, "ordinal", "quadratic").value == pytest.approx(
        cohen_kappa_score(a, b, weights="quadratic"))
    # unweighted for nominal labels and for weights none: p_o = 3/5, p_e = .04+.16+.16 = .36
    assert cohen_kappa(a, b, "nominal", "quadratic").value == pytest.approx((0.6 - 0.36) / 0.64)
    assert cohen_kappa(a, b, "ordinal", "none").value == pytest.approx((0.6 - 0.36) / 0.64)


def test_weighted_kappa_counts_unused_grades_as_steps():
    assert domain([0.0, 3.0, 1.0, None], "ordinal") == [0.0, 1.0, 2.0, 3.0]
    assert domain(["b", "a", None], "nominal") == ["a", "b"]
    a, b = [0.0, 3.0, 3.0, 0.0], [0.0, 3.0, 1.0, 1.0]
    assert cohen_kappa(a, b, "ordinal", "linear", [0.0, 1.0, 2.0, 3.0]).value == pytest.approx(
        cohen_kappa_score(a, b, weights="linear", labels=[0.0, 1.0, 2.0, 3.0]))


def test_kappa_degenerate_cases_are_null_with_a_reason():
    one = cohen_kappa(["Y"] * 5, ["Y"] * 5)
    assert one.value is None and "one class only" in one.note
    few = cohen_kappa(["Y"], ["N"])
    assert few.value is None and "at least 2" in few.note
    # opposite raters: p_o = 0, p_e = 0 -> kappa 0, defined
    assert cohen_kappa(["Y", "Y"], ["N", "N"]).value == pytest.approx(0.0)


# ---------------------------------------------------------------- Fleiss' kappa

# Fleiss (1971) / Wikipedia: 10 subjects, 14 raters, 5 categories; kappa = 0.210
# (P-bar = 0.378, P_e = 0.213: (0.378 - 0.213) / (1 - 0.213) = 0.210).
WIKIPEDIA = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def ratings_from_counts(table) -> pd.DataFrame:
    rows = [[c for c, n in enumerate(row) for _ in range(n)] for row in table]
    return pd.DataFrame(rows, columns=[f"r{i}" for i in range(len(rows[0]))], dtype=object)


def test_fleiss_kappa_on_the_wikipedia_example():
    value, items = fleiss(ratings_from_counts(WIKIPEDIA), list(range(5)))
    assert items == 10
    assert round(value.value, 3) == 0.210
    assert value.value == pytest.approx(sm_fleiss(np.array(WIKIPEDIA)))


def test_fleiss_kappa_two_raters_by_hand():
    # two raters: Fleiss' kappa is Scott's pi. p_o = 0.7;
    # pooled shares Y 11/20, N 9/20: p_e = 0.55^2 + 0.45^2 = 0.505
    # (0.7 - 0.505) / (1 - 0.505) = 0.393939
    value, items = fleiss(wide(a=A, b=B_), ["N", "Y"])
    assert items == 10 and value.value == pytest.approx(0.195 / 0.495)


def test_fleiss_kappa_uses_the_items_with_the_most_common_rater_count():
    ratings = ratings_from_counts(WIKIPEDIA)
    partial = ratings.copy()
    partial.loc[0, "r0"] = None   # item 1 now has 13 ratings; the other 9 keep 14
    value, items = fleiss(partial, list(range(5)))
    assert items == 9
    assert value.value == pytest.approx(sm_fleiss(np.array(WIKIPEDIA[1:])))


def test_fleiss_kappa_degenerate():
    value, items = fleiss(wide(a=["x", "x", "x"], b=["x", "x", "x"]), ["x"])
    assert value.value is None and "one class" in value.note and items == 3
    value, items = fleiss(wide(a=["x", None], b=["y", "x"]), ["x", "y"])
    assert value.value is None and items == 1
    value, items = fleiss(wide(a=["x"], b=[None]), ["x"])
    assert value.value is None and items == 0


# ---------------------------------------------------------------- Krippendorff's alpha


def test_krippendorff_alpha_two_coders_by_hand():
    # 10 units x 2 coders, n = 20 pairable values: Y 11, N 9.
    # coincidences off the diagonal: 3 disagreeing units x 2 ordered pairs = 6
    # D_o ~ 6, D_e ~ 2 * 11 * 9 / (n - 1) = 198 / 19
    # alpha = 1 - (n - 1) * 6 / 198 = 1 - 114/198 = 0.424242
    assert krippendorff_alpha(wide(a=A, b=B_), "nominal", ["N", "Y"]).value == pytest.approx(1 - 114 / 198)


def test_krippendorff_alpha_on_krippendorffs_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers,
    # 12 units, missing values; nominal alpha 0.743, ordinal 0.815
    nan = None
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    frame = pd.DataFrame({f"o{i}": [None if v is None else float(v) for v in row] for i, row in enumerate(data)},
                         dtype=object)
    scale = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert round(krippendorff_alpha(frame, "nominal", scale).value, 3) == 0.743
    assert round(krippendorff_alpha(frame, "ordinal", scale).value, 3) == 0.815
    reference = krippendorff.alpha(reliability_data=[[np.nan if v is None else v for v in r] for r in data],
                                   level_of_measurement="nominal")
    assert krippendorff_alpha(frame, "nominal", scale).value == pytest.approx(reference)


def test_krippendorff_alpha_degenerate():
    one = krippendorff_alpha(wide(a=["x", "x"], b=["x", "x"]), "nominal", ["x"])
    assert one.value is None and "one value" in one.note
    lone = krippendorff_alpha(wide(a=["x", None], b=[None, "y"]), "nominal", ["x", "y"])
    assert lone.value is None and "no item" in lone.note


# ---------------------------------------------------------------- votes


def test_votes_and_ties():
    v = vote(["a", "a", "b"])
    assert (v.value, v.votes, v.n, v.tie, v.rule) == ("a", 2, 3, False, "majority")
    assert v.agreement == pytest.approx(2 / 3)
    tie = vote(["a", "b", None])
    assert tie.value is None and tie.tie and tie.rule == "tie" and tie.agreement == 0.5
    # ordinal: a tie takes the median when it is a grade given...
    med = vote([1.0, 2.0, 3.0], "ordinal")
    assert med.value == 2.0 and med.tie and med.rule == "median_of_tie" and med.agreement == pytest.approx(1 / 3)
    # ...and stays unresolved when the median falls between grades
    assert vote([1.0, 1.0, 2.0, 2.0], "ordinal").value is None
    assert vote(["a"]).rule == "single_annotator" and vote(["a"]).agreement is None
    assert vote([None]).rule == "no_label"


def test_label_values():
    assert label_value(" mass ", None, "nominal") == "mass"
    assert label_value("", None, "nominal") is None
    assert label_value("3", None, "ordinal") == 3.0
    assert label_value("3", 2.0, "ordinal") == 2.0
    assert label_value("high", float("nan"), "ordinal") is None


# ---------------------------------------------------------------- boxes


def test_iou_by_hand():
    # (0,0,10,10) vs (5,5,10,10): intersection 5x5 = 25, union 100 + 100 - 25 = 175
    assert B.iou((0, 0, 10, 10), (5, 5, 10, 10)) == pytest.approx(25 / 175)
    # (0,0,10,10) vs (0,0,10,5): intersection 50, union 100
    assert B.iou((0, 0, 10, 10), (0, 0, 10, 5)) == pytest.approx(0.5)
    assert B.iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert B.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert B.iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def boxes(*xywh, labels=None) -> B.Boxes:
    return B.Boxes(np.array(xywh, dtype=float).reshape(-1, 4), tuple(labels or [None] * len(xywh)))


def test_hungarian_matching_beats_greedy():
    # equal 10x10 boxes shifted by d along x: IoU = (10 - d) / (10 + d)
    # a0 x=0, a1 x=6; b0 x=3, b1 x=-4
    # a0-b0 7/13 = .538, a0-b1 6/14 = .429, a1-b0 .538, a1-b1 0
    # greedy takes a0-b0 first and leaves a1 alone; Hungarian: a0-b1 + a1-b0
    a, b = boxes((0, 0, 10, 10), (6, 0, 10, 10)), boxes((3, 0, 10, 10), (-4, 0, 10, 10))
    found = B.match(a, b, min_iou=0.4)
    assert sorted((i, j) for i, j, _ in found.pairs) == [(0, 1), (1, 0)]
    assert sorted(found.ious) == pytest.approx([6 / 14, 7 / 13])
    assert found.unmatched_a == found.unmatched_b == 0
    strict = B.match(a, b, min_iou=0.5)
    assert len(strict.pairs) == 1 and strict.unmatched_a == strict.unmatched_b == 1
    assert strict.overlap_score(2, 2) == pytest.approx((7 / 13) / 2)


def test_matching_respects_box_labels_and_empty_sets():
    a = boxes((0, 0, 10, 10), labels=["nodule"])
    assert not B.match(a, boxes((0, 0, 10, 10), labels=["mass"]), 0.5).pairs
    assert B.match(a, boxes((0, 0, 10, 10), labels=[None]), 0.5).pairs
    empty = boxes()
    found = B.match(a, empty, 0.5)
    assert found.unmatched_a == 1 and found.unmatched_b == 0
    assert B.match(empty, empty, 0.5).overlap_score(0, 0) == 1.0
    assert B.as_boxes(None) is None and len(B.as_boxes([])) == 0
    assert B.as_boxes([{"x": 1, "y": 2, "width": 3, "height": 4, "label": "m"}]).labels == ("m",)


def test_clusters_fusion_and_size_bias():
    # three annotators see one object; "c" draws it 25 % smaller per side, "b" misses a second object
    # that "a" and "c" both box.
    item = {"a": boxes((0, 0, 40, 40), (100, 100, 20, 20)),
            "b": boxes((2, 0, 40, 40)),
            "c": boxes((5, 5, 30, 30), (101, 100, 20, 20)),
            "d": None}   # gave no boxes: not a voter
    matches = B.pairwise_matches(item, 0.5)
    assert set(matches) == {("a", "b"), ("a", "c"), ("b", "c")}
    groups = B.clusters(item, matches)
    assert sorted(len(g) for g in groups) == [2, 3]
    fused = B.fuse(item, groups)
    # both clusters are seen by more than half of the 3 voters
    assert len(fused) == 2
    big = fused[0]
    # mean corners: x1 (0+2+5)/3, y1 (0+0+5)/3, x2 (40+42+35)/3, y2 (40+40+35)/3
    assert (big["x"], big["y"]) == pytest.approx((7 / 3, 5 / 3))
    assert (big["width"], big["height"]) == pytest.approx((117 / 3 - 7 / 3, 115 / 3 - 5 / 3))
    assert big["n_annotators"] == 3 and 0.5 < big["mean_iou"] <= 1
    terms = B.size_bias_terms(item, groups)
    # big object: log areas a, b = log 1600, c = log 900; median log 1600:
    #   c: (log 900 - log 1600) / 2 = log(30/40) = log 0.75; a, b: 0
    # small object: a and c equal areas: 0, 0
    assert sorted(terms["c"]) == pytest.approx([math.log(0.75), 0.0])
    assert terms["a"] == pytest.approx([0.0, 0.0]) and terms["b"] == pytest.approx([0.0])
    # with two voters a cluster needs both
    two = {"a": item["a"], "b": item["b"]}
    assert len(B.fuse(two, B.clusters(two, B.pairwise_matches(two, 0.5)))) == 1


# ---------------------------------------------------------------- one batch


def labels_frame(rows) -> pd.DataFrame:
    out = []
    for annotator, path, label, box_list in rows:
        out.append({"annotator": annotator, "path": path, "sop_instance_uid": "uid-" + path, "batch_id": 4,
                    "label": label, "grade": None, "boxes": box_list})
    return pd.DataFrame(out)


def test_analyse_batch():
    box = [{"x": 0.0, "y": 0.0, "width": 10.0, "height": 10.0, "label": None}]
    rows = []
    for i, (x, y, z) in enumerate(zip(A, B_, A)):
        rows += [("ana", f"p{i}", x, box), ("ben", f"p{i}", y, box), ("chen", f"p{i}", z, None)]
    rows += [("ana", "solo", "Y", None), ("ana", "tie", "Y", None), ("ben", "tie", "N", None)]
    rows += [("ana", "p0", "N", box)]  # a repeated row: the last one counts
    out = analyse_batch(labels_frame(rows), Params(label_kind="nominal", min_items=5))
    batch = out["batch"][0]
    assert batch["batch_id"] == 4 and batch["n_items"] == 11 and batch["n_labelled_items"] == 12
    assert batch["annotators"] == ["ana", "ben", "chen"] and batch["tie_items"] == 1
    assert batch["mean_box_iou"] == 1.0 and batch["matched_boxes"] == 10 and batch["unmatched_boxes"] == 0
    assert batch["fleiss_items"] == 10   # the 10 items rated by three; the tie item has two ratings
    pairs = {(r["annotator"], r["other"]): r for r in out["pair"]}
    assert set(pairs) == {("ana", "ben"), ("ana", "chen"), ("ben", "chen")}
    # chen copies ana's original labels, ana changed p0 to N: ana-chen agree on 9 of 10
    assert pairs[("ana", "chen")]["agreement"] == pytest.approx(0.9)
    assert pairs[("ben", "chen")]["kappa"] == pytest.approx(0.4)  # the hand example above
    assert pairs[("ana", "chen")]["box_items"] == 0 and pairs[("ana", "ben")]["box_items"] == 10
    consensus = {r["path"]: r for r in out["consensus"]}
    assert consensus["solo"]["rule"] == "single_annotator" and consensus["solo"]["label"] == "Y"
    assert consensus["tie"]["label"] is None and consensus["tie"]["tie"]
    assert consensus["p1"]["label"] == "Y" and consensus["p1"]["agreement"] == 1.0
    assert consensus["p1"]["boxes"][0]["n_annotators"] == 2
    assert consensus["solo"]["boxes"] is None
    majority = {r["annotator"]: r for r in out["majority"]}
    assert majority["ana"]["level"] == "majority" and majority["ana"]["other"] is None
    assert majority["chen"]["box_items"] == 0 and majority["chen"]["box_size_bias"] is None
    drift = {r["annotator"]: r for r in out["drift"]}
    assert drift["ana"]["n_items"] == 11 and drift["chen"]["n_items"] == 10
    columns = ["kind", "batch_id", "path", "annotator", "n_items"]
    records = batch_records(labels_frame(rows), Params(), columns)
    assert list(records.columns) == columns
    assert records["kind"].value_counts().to_dict() == {"consensus": 12, "pair": 3, "majority": 3, "drift": 3,
                                                        "batch": 1}


def test_analyse_batch_degenerate_inputs():
    # every annotator gives the same class: kappas and alpha are null with notes, nothing raises
    rows = [(a, f"p{i}", "normal", None) for i in range(4) for a in ("ana", "ben")]
    out = analyse_batch(labels_frame(rows), Params())
    batch = out["batch"][0]
    assert batch["fleiss_kappa"] is None and batch["krippendorff_alpha"] is None
    assert batch["mean_pairwise_kappa"] is None and batch["mean_box_iou"] is None
    assert any("one class" in n for n in batch["notes"])
    assert out["pair"][0]["kappa"] is None and "one class" in out["pair"][0]["kappa_note"]
    # one annotator only: no overlap
    out = analyse_batch(labels_frame([("ana", "p0", "x", None)]), Params())
    assert out["batch"][0]["n_items"] == 0 and not out["pair"] and not out["drift"]
    assert "no item labelled by 2 or more annotators" in out["batch"][0]["notes"]
    # ordinal grades from text
    rows = [("ana", "p0", "1", None), ("ben", "p0", "2", None), ("chen", "p0", "3", None)]
    out = analyse_batch(labels_frame(rows), Params(label_kind="ordinal"))
    assert out["consensus"][0]["grade"] == 2.0 and out["consensus"][0]["rule"] == "median_of_tie"
    assert out["batch"][0]["krippendorff_level"] == "ordinal"


def test_unassigned_labels_form_their_own_batch():
    frame = labels_frame([("ana", "p0", "x", None), ("ben", "p0", "x", None), ("ana", "p1", "y", None),
                          ("ben", "p1", "x", None)])
    frame["batch_id"] = None
    out = analyse_batch(frame, Params())
    assert out["batch"][0]["batch_id"] is None and out["batch"][0]["n_items"] == 2
    assert all(r["batch_id"] is None for r in out["consensus"] + out["pair"] + out["drift"])
    frame["batch_id"] = float("nan")   # how pandas may hand over a null integer column
    assert analyse_batch(frame, Params())["batch"][0]["batch_id"] is None
