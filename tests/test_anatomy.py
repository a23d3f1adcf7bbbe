"""udfs/anatomy.py: weak labels, training, uncertainty, the model's findings, persistence (no Spark)."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from dicom_triage.udfs.anatomy import (FINDING_MISMATCH, FINDING_UNEXPECTED, REGIONS, InsufficientLabels, TrainedModel,
                          coarse_region, find_bundle, header_region, load_model, model_findings,
                          predict_proba, regions_compatible, save_model, train_region_classifier,
                          uncertainty)

DIM = 64
CLUSTER_NAMES = ["head", "chest", "abdomen", "lower_extremity"]


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def cluster_points(centre, n, rng, spread=0.04):
    return unit(centre + rng.normal(scale=spread, size=(n, len(centre))))


def make_clusters(n_per_class=120, names=CLUSTER_NAMES, seed=0, dim=DIM):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(len(names), dim)))
    X = np.vstack([cluster_points(c, n_per_class, rng) for c in centres])
    y = [name for name in names for _ in range(n_per_class)]
    return X, y, centres


@pytest.fixture(scope="module")
def clusters():
    return make_clusters()


@pytest.fixture(scope="module")
def model(clusters):
    X, y, _ = clusters
    return train_region_classifier(X, y, label_source="weak")


# ------------------------------------------------------------------ header_region
@pytest.mark.parametrize("body_part, expected", [
    ("HEAD", "head"), ("BRAIN", "head"), ("skull", "head"), ("Brain ", "head"), ("IAC", "head"),
    ("HEADNECK", "head"), ("NECK", "neck"), ("THYROID", "neck"), ("CHEST", "chest"),
    ("THORAX", "chest"), ("LUNG", "chest"), ("HEART", "chest"), ("BREAST", "breast"),
    ("ABDOMEN", "abdomen"), ("LIVER", "abdomen"), ("KIDNEY", "abdomen"), ("ABDOMENPELVIS", "abdomen"),
    ("CHESTABDPELVIS", "chest"), ("PELVIS", "pelvis"), ("PROSTATE", "pelvis"), ("SPINE", "spine"),
    ("CSPINE", "spine"), ("TSPINE", "spine"), ("LSPINE", "spine"), ("C-Spine", "spine"),
    ("l spine", "spine"), ("SACRUM", "spine"), ("KNEE", "lower_extremity"), ("LEG", "lower_extremity"),
    ("FOOT", "lower_extremity"), ("ANKLE", "lower_extremity"), ("HIP", "lower_extremity"),
    ("HAND", "upper_extremity"), ("WRIST", "upper_extremity"), ("ARM", "upper_extremity"),
    ("SHOULDER", "upper_extremity"), ("ELBOW", "upper_extremity"), ("EXTREMITY", "extremity"),
    ("WHOLEBODY", "whole_body"), ("WHOLE BODY", "whole_body"), ("whole_body", "whole_body"),
    ("KOPF", "head"), ("Schädel", "head"), ("LWS", "spine"),
    ("LEFT KNEE", "lower_extremity"),      # not a defined term: keywords in the value itself
    ("Femoral neck", "lower_extremity"),   # the first region named wins, not "neck"
])
def test_header_region_defined_terms(body_part, expected):
    assert header_region(body_part) == expected


@pytest.mark.parametrize("args, expected", [
    ((None, None, "t1_mprage_sag_p2"), "head"),
    ((None, "MRI BRAIN W/WO"), "head"),
    ((None, "HEAD^ROUTINE"), "head"),
    (("", "", "CT THORAX W/O"), "chest"),
    ((None, "CT CHEST ABD PELVIS"), "chest"),
    ((None, None, None, "ABD/PEL"), "abdomen"),
    ((None, None, "Ax T2 abd"), "abdomen"),
    ((None, "MR KNEE LT"), "lower_extremity"),
    ((None, None, "L SPINE SAG T2"), "spine"),
    ((None, None, "MAMMO L MLO"), "breast"),
    ((None, "XR Lower extremity"), "lower_extremity"),
    ((None, "ARMS UP CHEST"), "chest"),             # "arms" is not a region keyword
    ((None, "FEET FIRST ABDOMEN"), "abdomen"),      # patient position, not feet
    ((float("nan"), "PET/CT whole body"), "whole_body"),
    # precedence: body part > series > protocol > study
    (("KNEE", "CT CHEST", "BRAIN", "ABD"), "lower_extremity"),
    ((None, "CT CHEST", "t1 brain", "ABD"), "head"),
    ((None, "CT CHEST", None, "ABD"), "abdomen"),
    ((None, "CT CHEST", None, None), "chest"),
    (("UNKNOWNPART", None, "knee pd"), "lower_extremity"),
])
def test_header_region_description_fallbacks(args, expected):
    assert header_region(*args) == expected


@pytest.mark.parametrize("args", [
    (None,), ("",), ("  ",), ("XYZ", None, "Scout"), (None, "Research study 12", "localizer", "ep2d"),
    (float("nan"), None, None, None), (None, "PET WB"),   # "WB": whole body or weight bearing
])
def test_header_region_unknown_is_none(args):
    assert header_region(*args) is None


def test_region_vocabulary():
    assert len(REGIONS) == len(set(REGIONS)) <= 12
    values = {header_region(term) for term in ("HEAD", "NECK", "CHEST", "BREAST", "ABDOMEN", "PELVIS",
                                               "SPINE", "HAND", "KNEE", "EXTREMITY", "WHOLEBODY")}
    assert values == set(REGIONS)
    assert coarse_region("upper_extremity") == coarse_region("lower_extremity") == "extremity"
    assert coarse_region("chest") == "chest" and coarse_region(None) is None


# ----------------------------------------------------------------------- training
def test_training_on_clusters(model):
    metrics = model.metrics
    assert model.classes == sorted(CLUSTER_NAMES)
    assert metrics["accuracy"] > 0.95 and metrics["balanced_accuracy"] > 0.95
    assert set(metrics) >= {"accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion_matrix",
                            "confusion_matrix_labels", "n_train", "n_test", "n_fit"}
    assert metrics["confusion_matrix_labels"] == model.classes
    matrix = np.asarray(metrics["confusion_matrix"])
    assert matrix.shape == (4, 4) and matrix.sum() == metrics["n_test"] == 4 * 30
    assert metrics["n_train"] + metrics["n_test"] == metrics["n_fit"] == 480
    for cls in model.classes:
        assert set(metrics["per_class"][cls]) == {"precision", "recall", "f1", "support"}
        assert metrics["per_class"][cls]["support"] == 30
    assert model.label_source == "weak" and model.dropped_classes == {}
    assert model.label_counts == model.train_counts == dict.fromkeys(sorted(CLUSTER_NAMES), 120)
    json.dumps(metrics)   # plain Python types only (MLflow, metadata.json)


def test_predict_proba_columns_follow_classes(model, clusters):
    _, _, centres = clusters
    rng = np.random.default_rng(5)
    for name, centre in zip(CLUSTER_NAMES, centres):
        probs = predict_proba(model, cluster_points(centre, 10, rng))
        assert probs.shape == (10, 4)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0)
        assert (probs.argmax(axis=1) == model.classes.index(name)).all()
    assert predict_proba(model, np.zeros((0, DIM))).shape == (0, 4)
    with pytest.raises(ValueError, match="dimensions"):
        predict_proba(model, np.zeros((2, DIM + 1)))


def test_training_is_deterministic(clusters):
    X, y, _ = clusters
    a = train_region_classifier(X, y, seed=3)
    b = train_region_classifier(X, y, seed=3)
    assert a.metrics == b.metrics
    np.testing.assert_array_equal(predict_proba(a, X[:20]), predict_proba(b, X[:20]))


def test_labels_are_normalised_and_unlabelled_rows_skipped():
    X, y, _ = make_clusters(n_per_class=20, names=["head", "chest"])
    y = [label.upper() + " " if i % 2 else label for i, label in enumerate(y)]
    y[0] = None
    model = train_region_classifier(X, y)
    assert model.classes == ["chest", "head"]
    assert model.label_counts == {"chest": 20, "head": 19}


def test_rare_classes_dropped_and_listed():
    X, y, _ = make_clusters(n_per_class=40, names=["head", "chest", "abdomen"])
    X, y = np.vstack([X, X[:3] + 0.01]), y + ["knee"] * 3
    model = train_region_classifier(X, y, min_per_class=5, ignore_rare_classes=True)
    assert model.classes == ["abdomen", "chest", "head"]
    assert model.dropped_classes == {"knee": 3}
    assert model.metrics["dropped_classes"] == {"knee": 3}
    assert model.label_counts["knee"] == 3


def test_rare_classes_error_names_class_count_and_settings():
    X, y, _ = make_clusters(n_per_class=40, names=["head", "chest"])
    X, y = np.vstack([X, X[:4], X[:1]]), y + ["knee"] * 4 + ["neck"]
    with pytest.raises(InsufficientLabels) as info:
        train_region_classifier(X, y, min_per_class=5, ignore_rare_classes=False)
    message = str(info.value)
    for part in ("'knee' (4)", "'neck' (1)", "anatomy.min_labels_per_class", "anatomy.ignore_rare_classes"):
        assert part in message
    assert "'head'" not in message


def test_fewer_than_two_classes_is_an_error():
    X, y, _ = make_clusters(n_per_class=30, names=["head"])
    with pytest.raises(InsufficientLabels, match="at least 2 regions"):
        train_region_classifier(X, y)
    X2, y2, _ = make_clusters(n_per_class=30, names=["head", "chest"])
    y2 = y2[:30] + ["chest"] * 2          # chest is rare and dropped: one class left
    with pytest.raises(InsufficientLabels, match="left out as rare"):
        train_region_classifier(X2[:32], y2)
    with pytest.raises(InsufficientLabels, match="no labelled embeddings"):
        train_region_classifier(np.zeros((0, 1)), [])


def test_class_too_small_for_holdout_is_an_error():
    X, y, _ = make_clusters(n_per_class=20, names=["head", "chest"])
    X, y = np.vstack([X, X[:5]]), y + ["knee"] * 5
    with pytest.raises(InsufficientLabels) as info:
        train_region_classifier(X, y, min_per_class=5, test_fraction=0.05)
    assert "'knee' (5)" in str(info.value) and "anatomy.holdout_fraction" in str(info.value)


def test_max_per_class_caps_deterministically():
    X, y, _ = make_clusters(n_per_class=30, names=["head", "chest"])
    X_big, y_big, _ = make_clusters(n_per_class=300, names=["abdomen"], seed=1)
    X, y = np.vstack([X, X_big]), y + y_big
    a = train_region_classifier(X, y, max_per_class=50)
    b = train_region_classifier(X, y, max_per_class=50)
    assert a.label_counts == {"abdomen": 300, "chest": 30, "head": 30}
    assert a.train_counts == {"abdomen": 50, "chest": 30, "head": 30}
    assert a.metrics["n_fit"] == 110
    assert a.metrics["per_class"]["abdomen"]["support"] == 13   # 12.5 rounded half up
    np.testing.assert_array_equal(predict_proba(a, X[:40]), predict_proba(b, X[:40]))
    uncapped = train_region_classifier(X, y, max_per_class=None)
    assert uncapped.train_counts["abdomen"] == 300


def test_grouped_holdout_keeps_groups_apart():
    rng = np.random.default_rng(2)
    centres = unit(rng.normal(size=(2, DIM)))
    X, y, groups = [], [], []
    for name, centre in zip(["head", "chest"], centres):
        for series in range(6):   # 6 series of 10 near-identical slices per class
            series_centre = cluster_points(centre, 1, rng, spread=0.03)[0]
            X.append(cluster_points(series_centre, 10, rng, spread=0.005))
            y += [name] * 10
            groups += [f"{name}-{series}"] * 10
    X = np.vstack(X)
    grouped = train_region_classifier(X, y, groups=groups)
    plain = train_region_classifier(X, y)
    assert grouped.metrics["grouped_holdout"] and grouped.metrics["holdout_ungrouped_classes"] == []
    assert grouped.metrics["n_test"] % 10 == 0           # whole series only
    assert grouped.metrics["accuracy"] > 0.95
    assert not plain.metrics["grouped_holdout"]
    with pytest.raises(ValueError, match="groups"):
        train_region_classifier(X, y, groups=groups[:-1])


# -------------------------------------------------------------------- uncertainty
def test_uncertainty_hand_checked():
    probs = np.array([[0.25, 0.25, 0.25, 0.25],
                      [0.0, 1.0, 0.0, 0.0],
                      [0.7, 0.2, 0.1, 0.0]])
    u = uncertainty(probs)
    np.testing.assert_allclose(u["confidence"], [0.25, 1.0, 0.7])
    np.testing.assert_allclose(u["least_confidence"], [0.75, 0.0, 0.3])
    np.testing.assert_allclose(u["margin"], [0.0, 1.0, 0.5])
    h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)) / math.log(4)
    np.testing.assert_allclose(u["entropy"], [1.0, 0.0, h])


def test_uncertainty_edge_shapes():
    single = uncertainty(np.array([[1.0], [1.0]]))
    np.testing.assert_allclose(single["margin"], [1.0, 1.0])
    np.testing.assert_allclose(single["entropy"], [0.0, 0.0])
    two = uncertainty(np.array([0.5, 0.5]))   # one row given as 1-d
    assert two["entropy"].shape == (1,) and two["entropy"][0] == pytest.approx(1.0)
    assert two["margin"][0] == pytest.approx(0.0)


# ----------------------------------------------------------------------- findings
def codes(findings):
    return [f["code"] for f in findings]


def test_unexpected_anatomy():
    found = model_findings("head", 0.9, None, ["chest", "abdomen"])
    assert codes(found) == [FINDING_UNEXPECTED]
    assert found[0]["score"] == 0.9 and found[0]["threshold"] == 0.8 and "head" in found[0]["detail"]
    assert set(found[0]) == {"code", "score", "threshold", "detail"}
    assert model_findings("head", 0.79, None, ["chest"]) == []                   # not confident
    assert model_findings("chest", 0.9, None, ["Chest"]) == []
    assert model_findings("head", 0.9, None, []) == []
    assert model_findings("head", 0.9, None, None) == []
    assert model_findings(None, None, "head", ["chest"]) == []
    # coarse / fine: a knee is an expected extremity, a coarse "extremity" an expected leg
    assert model_findings("lower_extremity", 0.9, None, ["extremity"]) == []
    assert model_findings("extremity", 0.9, None, ["lower_extremity"]) == []
    assert model_findings("chest", 0.9, None, ["whole_body"]) == []
    assert codes(model_findings("whole_body", 0.9, None, ["chest"])) == [FINDING_UNEXPECTED]


def test_header_mismatch():
    found = model_findings("head", 0.95, "chest", None)
    assert codes(found) == [FINDING_MISMATCH]
    assert found[0]["score"] == 0.95 and found[0]["threshold"] == 0.8
    assert model_findings("head", 0.79, "chest", None) == []          # not confident
    assert codes(model_findings("head", 0.8, "chest", None)) == [FINDING_MISMATCH]
    assert model_findings("head", 0.95, None, None) == []             # header unknown
    assert model_findings("head", 0.95, "head", None) == []
    # both findings at once
    assert codes(model_findings("head", 0.95, "chest", ["chest"])) == [FINDING_UNEXPECTED, FINDING_MISMATCH]
    # the header's region must be one the model can judge
    classes = ["chest", "head", "lower_extremity"]
    assert model_findings("head", 0.95, "breast", None, classes=classes) == []
    assert codes(model_findings("head", 0.95, "chest", None, classes=classes)) == [FINDING_MISMATCH]
    assert codes(model_findings("head", 0.95, "extremity", None, classes=classes)) == [
        FINDING_MISMATCH]   # coarse header, fine class
    assert codes(model_findings("head", 0.95, "chest", None, min_confidence=0.99)) == []


def test_header_mismatch_region_compatibility():
    for predicted, header in [("lower_extremity", "extremity"), ("extremity", "upper_extremity"),
                              ("chest", "whole_body"), ("whole_body", "pelvis"),
                              ("abdomen", "chest"), ("spine", "abdomen")]:   # adjacent
        assert model_findings(predicted, 0.99, header, None) == [], (predicted, header)
    assert codes(model_findings("abdomen", 0.99, "chest", None, adjacent_compatible=False)) == [
        FINDING_MISMATCH]
    assert codes(model_findings("upper_extremity", 0.99, "lower_extremity", None)) == [FINDING_MISMATCH]


def test_regions_compatible():
    assert regions_compatible("extremity", "lower_extremity") and regions_compatible("upper_extremity", "extremity")
    assert regions_compatible("whole_body", "head") and regions_compatible("head", "whole_body")
    assert not regions_compatible("upper_extremity", "lower_extremity")
    assert not regions_compatible("head", "chest") and not regions_compatible("head", "lower_extremity")
    assert regions_compatible("head", "neck") and not regions_compatible("head", "neck", adjacent=False)
    assert regions_compatible("extremity", "pelvis")        # through lower_extremity
    assert not regions_compatible("upper_extremity", "pelvis")


# ------------------------------------------------------------------ serialisation
def test_save_load_round_trip(model, clusters, tmp_path):
    X, _, _ = clusters
    folder = save_model(model, str(tmp_path / "bundle"))
    assert sorted(os.listdir(folder)) == ["classifier.joblib", "metadata.json"]
    loaded = load_model(folder)
    assert isinstance(loaded, TrainedModel)
    np.testing.assert_array_equal(predict_proba(loaded, X), predict_proba(model, X))
    assert loaded.classes == model.classes and loaded.dim == DIM
    assert loaded.metrics == model.metrics
    assert (loaded.label_source, loaded.label_counts, loaded.train_counts, loaded.dropped_classes) == (
        model.label_source, model.label_counts, model.train_counts, model.dropped_classes)


def test_find_bundle_whatever_the_logged_folder_is_called(model, tmp_path):
    """MLflow stores a logged folder under its own (temporary) name."""
    save_model(model, str(tmp_path / "artifacts" / "tmpab12cd"))
    assert find_bundle(str(tmp_path)) == str(tmp_path / "artifacts" / "tmpab12cd")
    with pytest.raises(FileNotFoundError, match="no anatomy model"):
        find_bundle(str(tmp_path / "artifacts" / "elsewhere"))


def test_version_1_bundles_still_load(model, clusters, tmp_path):
    """Bundles of the first format also held an irrelevance reference; they load."""
    folder = save_model(model, str(tmp_path / "v1"))
    meta = json.loads((tmp_path / "v1" / "metadata.json").read_text())
    meta.update(format_version=1, irrelevance_threshold=0.3, irrelevance_k=5, reference_groups=None)
    (tmp_path / "v1" / "metadata.json").write_text(json.dumps(meta))
    np.save(tmp_path / "v1" / "reference.npy", np.zeros((3, DIM), dtype=np.float32))
    X, _, _ = clusters
    np.testing.assert_array_equal(predict_proba(load_model(folder), X[:5]), predict_proba(model, X[:5]))
    meta["format_version"] = 99
    (tmp_path / "v1" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unsupported"):
        load_model(folder)


def test_cross_fitting():
    """A labelled image is judged by a model that did not see its group."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 32))
    X = np.concatenate([centres[i] + 0.05 * rng.normal(size=(40, 32)) for i in range(3)])
    y = ["head"] * 40 + ["chest"] * 40 + ["pelvis"] * 40
    y[5] = "chest"  # a wrong label on a head image
    keys = [f"k{i}" for i in range(len(y))]
    groups = [f"s{i // 4}" for i in range(len(y))]
    model = train_region_classifier(X, y, groups=groups, keys=keys)
    probs = predict_proba(model, X[:10], keys=keys[:10])
    assert model.classes[int(np.argmax(probs[5]))] == "head", "out-of-fold prediction ignores the bad label"
    assert len(model.out_of_fold) == len(y)
