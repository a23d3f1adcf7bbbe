"""Body-region classification on image embeddings, pure numpy / pandas / sklearn.

Every instance carries an L2-normalised image embedding (jobs/embed.py). A
small classifier on top predicts the body region. Its confident predictions
add two findings for images whose header claims expected content
(`model_findings`): UNEXPECTED_ANATOMY (predicted outside the expected
regions) and ANATOMY_HEADER_MISMATCH (predicted region contradicts the
header's). Header rules and the content check that need no classifier are in
udfs/relevance.py.

Region vocabulary (`REGIONS`): deliberately small, so weak labels from headers
have enough examples per class and a linear classifier can separate them.

    head             brain, skull, face, orbits, sinuses, jaw, ears
    neck             soft-tissue neck, thyroid, larynx, pharynx, carotids
    chest            thorax, lungs, heart, mediastinum, ribs
    breast           mammography, breast MR / US
    abdomen          abdominal organs (liver, kidneys, pancreas, bowel, ...)
    pelvis           pelvic organs, bony pelvis, sacroiliac joints
    spine            cervical / thoracic / lumbar / sacral spine
    upper_extremity  shoulder girdle, arm, elbow, forearm, wrist, hand
    lower_extremity  hip, thigh, knee, leg, ankle, foot
    extremity        COARSE: a limb, side unknown (DICOM "EXTREMITY")
    whole_body       whole-body scans (PET/CT, bone scans, skeletal surveys)

`extremity` is the parent of `upper_extremity` and `lower_extremity`
(`COARSE`); `whole_body` contains every region. `regions_compatible` is the
single place that decides when two regions do not contradict each other.

Weak labels (`header_region`): DICOM BodyPartExamined defined terms (PS3.16
CID 4031, plus a few common vendor / German spellings) first, then keywords in
SeriesDescription, ProtocolName and StudyDescription, in that order (the series
describes its own images; a study may span several regions). Within one text
the FIRST region named wins ("CT CHEST ABD PELVIS" -> chest), and combined
defined terms follow the same rule (CHESTABDPELVIS -> chest, ABDOMENPELVIS ->
abdomen, HEADNECK -> head). Multi-region series therefore give noisy slice
labels; that is what the hold-out metrics and the adjacency tolerance of the
mismatch rule are for.

Classifier: StandardScaler + multinomial LogisticRegression (lbfgs,
class_weight="balanced") - fast, convex, deterministic and reasonably well
calibrated, which matters because the confidence gates a finding and feeds the
active-learning uncertainty scores (`uncertainty`, docs/relevance.md).

"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

# ------------------------------------------------------------------- vocabulary
HEAD, NECK, CHEST, BREAST = "head", "neck", "chest", "breast"
ABDOMEN, PELVIS, SPINE = "abdomen", "pelvis", "spine"
UPPER_EXTREMITY, LOWER_EXTREMITY, EXTREMITY = "upper_extremity", "lower_extremity", "extremity"
WHOLE_BODY = "whole_body"

REGIONS: tuple[str, ...] = (HEAD, NECK, CHEST, BREAST, ABDOMEN, PELVIS, SPINE,
                            UPPER_EXTREMITY, LOWER_EXTREMITY, EXTREMITY, WHOLE_BODY)

# fine region -> coarse parent
COARSE: dict[str, str] = {UPPER_EXTREMITY: EXTREMITY, LOWER_EXTREMITY: EXTREMITY}

# Anatomically adjacent regions: a slice at the border (the lowest slices of a
# chest CT show the liver, axial lumbar spine slices show the abdomen) or a
# multi-region series makes a confident "contradiction" between these likely
# noise rather than a wrong header.
ADJACENT: frozenset[frozenset[str]] = frozenset(frozenset(pair) for pair in [
    (HEAD, NECK), (NECK, CHEST), (CHEST, BREAST), (CHEST, ABDOMEN), (ABDOMEN, PELVIS),
    (SPINE, NECK), (SPINE, CHEST), (SPINE, ABDOMEN), (SPINE, PELVIS),
    (CHEST, UPPER_EXTREMITY), (PELVIS, LOWER_EXTREMITY),
])

FINDING_IRRELEVANT = "IRRELEVANT_CONTENT"
FINDING_UNEXPECTED = "UNEXPECTED_ANATOMY"
FINDING_MISMATCH = "ANATOMY_HEADER_MISMATCH"

# 2: the classifier alone. Version 1 bundles also held an irrelevance
# reference, which is now the delivery's own (udfs/relevance.py); they load.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


def _key(text: str) -> str:
    """Upper case, letters and digits only: 'C-Spine' -> 'CSPINE'."""
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def _terms(region: str, *names: str) -> dict[str, str]:
    return {_key(n): region for n in names}


# BodyPartExamined defined terms (PS3.16 CID 4031 "Common Anatomic Regions",
# the terms as they appear in the attribute) and frequent vendor variants.
BODY_PART_TERMS: dict[str, str] = {
    **_terms(HEAD, "HEAD", "BRAIN", "SKULL", "CRANIUM", "FACE", "EYE", "ORBIT", "EAR", "IAC",
             "NOSE", "SINUS", "PARANASALSINUS", "JAW", "MANDIBLE", "MAXILLA", "TMJ", "SELLA",
             "PITUITARY", "CEREBRUM", "CEREBELLUM", "TEMPORALBONE", "ZYGOMA", "TOOTH", "TEETH",
             "HEADNECK", "HEAD_NECK", "CIRCLEOFWILLIS",
             "KOPF", "SCHAEDEL", "SCHADEL", "SCHÄDEL", "GEHIRN", "CRANE", "TETE", "CABEZA", "CRANEO"),
    **_terms(NECK, "NECK", "THYROID", "LARYNX", "PHARYNX", "NASOPHARYNX", "OROPHARYNX",
             "HYPOPHARYNX", "CAROTID", "CCA", "ICA", "PAROTID", "HALS", "CUELLO", "COU"),
    **_terms(CHEST, "CHEST", "THORAX", "LUNG", "HEART", "CARDIAC", "MEDIASTINUM", "RIB", "RIBS",
             "STERNUM", "ESOPHAGUS", "THORACICAORTA", "CORONARYARTERY", "AXILLA",
             "CHESTABDOMEN", "CHESTABDPELVIS", "CHEST_TO_PELVIS", "THORAXABDOMEN",
             "LUNGE", "HERZ", "TORAX", "POUMON", "COEUR"),
    **_terms(BREAST, "BREAST", "MAMMA", "MAMMO", "BRUST", "SEIN", "MAMA"),
    **_terms(ABDOMEN, "ABDOMEN", "ABD", "LIVER", "KIDNEY", "PANCREAS", "SPLEEN", "GALLBLADDER",
             "STOMACH", "BOWEL", "SMALLBOWEL", "COLON", "DUODENUM", "ADRENAL", "BILIARYTRACT",
             "RETROPERITONEUM", "ABDOMINALAORTA", "RENAL", "ABDOMENPELVIS", "ABDPELVIS",
             "BAUCH", "LEBER", "NIERE", "ABDOMEN_PELVIS"),
    **_terms(PELVIS, "PELVIS", "BLADDER", "PROSTATE", "UTERUS", "OVARY", "RECTUM", "SIJOINT",
             "SACROILIACJOINT", "SCROTUM", "TESTIS", "PENIS", "VAGINA", "BECKEN", "BASSIN"),
    **_terms(SPINE, "SPINE", "CSPINE", "TSPINE", "LSPINE", "SSPINE", "CTSPINE", "TLSPINE",
             "LSSPINE", "WHOLESPINE", "SACRUM", "COCCYX", "VERTEBRA", "CERVICALSPINE",
             "THORACICSPINE", "LUMBARSPINE", "HWS", "BWS", "LWS", "WIRBELSAEULE", "WS"),
    **_terms(UPPER_EXTREMITY, "UPPEREXTREMITY", "UPREXTREMITY", "ARM", "UPPERARM", "UPRARM",
             "ELBOW", "FOREARM", "WRIST", "HAND", "FINGER", "THUMB", "SHOULDER", "HUMERUS",
             "RADIUS", "ULNA", "SCAPULA", "CLAVICLE", "ACJOINT", "UPPERLIMB",
             "SCHULTER", "ELLENBOGEN", "HANDGELENK", "OBERARM", "UNTERARM"),
    **_terms(LOWER_EXTREMITY, "LOWEREXTREMITY", "LOWREXTREMITY", "LEG", "LOWERLEG", "THIGH",
             "KNEE", "ANKLE", "FOOT", "TOE", "HEEL", "CALCANEUS", "FEMUR", "TIBIA", "FIBULA",
             "PATELLA", "HIP", "LOWERLIMB", "KNIE", "FUSS", "SPRUNGGELENK", "HUEFTE", "HÜFTE",
             "OBERSCHENKEL", "UNTERSCHENKEL"),
    **_terms(EXTREMITY, "EXTREMITY", "EXTREMITIES", "LIMB", "EXTREMITAET", "EXTREMITÄT"),
    **_terms(WHOLE_BODY, "WHOLEBODY", "WHOLE_BODY", "TOTALBODY", "GANZKOERPER", "GANZKÖRPER"),
}

# Keywords in free text (lower case; non-alphanumerics are read as spaces).
# Order does not matter: the match that starts first in the text wins, the
# longest one on a tie ("upper extremity" beats "extremity"). Words that are
# too ambiguous in descriptions are left out on purpose: "arm(s)" ("ARMS UP"
# chest CT protocols), "cervical" (spine, neck nodes or uterine cervix),
# "thoracic" (spine or chest), "wb" (whole body or weight-bearing), "cc" (views).
_KEYWORDS: list[tuple[str, str]] = [
    (HEAD, r"brain|head|skull|crani(?:al|um)|intracranial|cerebr(?:al|um)|cerebellum|mp2?rage"
           r"|fmri|bold|dti|swi|iacs?|orbits?|sinus(?:es)?|face|facial|maxillofacial|mandible"
           r"|tmj|pituitary|sella|temporal bone|dental|teeth|neuro ?cranium|kopf|schaedel|schadel"),
    (NECK, r"neck|thyroid|larynx|laryngeal|pharynx|nasopharynx|oropharynx|hypopharynx|carotids?"
           r"|parotid|hals"),
    (CHEST, r"chest|thorax|thx|lungs?|pulmonary|heart|cardiac|coronary|cxr|ctpa|mediastinum"
            r"|ribs?|sternum|lunge|herz"),
    (BREAST, r"breasts?|mammo\w*|mamma|mlo|tomosynthesis breast|brust"),
    (ABDOMEN, r"abdomen|abdominal|abdo?|liver|hepatic|kidneys?|renal|pancreas|pancreatic|spleen"
              r"|gallbladder|biliary|mrcp|stomach|bowel|colon|enterography|adrenals?|kub|bauch|leber"),
    (PELVIS, r"pelvis|pelvic|pelv?|prostate|bladder|uterus|uterine|ovar(?:y|ies)|rectum|rectal"
             r"|sacroiliac|sij|scrotum|scrotal|test(?:is|es)|becken"),
    (SPINE, r"spine|spinal|[clts] ?spine|cspine|tspine|lspine|lumbar|sacrum|coccyx|vertebra[el]?"
            r"|myelogram|hws|bws|lws"),
    (UPPER_EXTREMITY, r"upper (?:extremity|limb)|shoulders?|humerus|elbows?|forearms?|wrists?"
                      r"|hands?|fingers?|thumbs?|clavicle|scapula|radius|ulna|schulter"),
    (LOWER_EXTREMITY, r"lower (?:extremity|limb)|hips?|femur|femoral|thighs?|knees?|tibia|fibula"
                      r"|tib fib|ankles?|foot|feet(?! first)|toes?|heel|calcaneus|patella|legs?"
                      r"|hallux|achilles|knie"),
    (EXTREMITY, r"extremity|extremities|limbs?"),
    (WHOLE_BODY, r"whole ?body|total ?body|skeletal survey"),
]
_KEYWORD_RES = [(region, re.compile(rf"(?<![a-z0-9])(?:{pattern})(?![a-z0-9])"))
                for region, pattern in _KEYWORDS]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def _region_in_text(text: str) -> str | None:
    """The region whose keyword starts first in `text` (longest match on a tie)."""
    normalised = re.sub(r"[^a-z0-9]+", " ", text.lower().replace("ä", "ae").replace("ö", "oe")
                        .replace("ü", "ue"))
    best: tuple[int, int, str] | None = None
    for region, pattern in _KEYWORD_RES:
        match = pattern.search(normalised)
        if match is not None:
            candidate = (match.start(), -(match.end() - match.start()), region)
            if best is None or candidate < best:
                best = candidate
    return best[2] if best else None


def header_region(body_part_examined: str | None, study_description: str | None = None,
                  series_description: str | None = None, protocol_name: str | None = None) -> str | None:
    """The body region the headers name, or None when they name none.

    BodyPartExamined as a defined term first (case, spaces, '-' and '_' do not
    matter: 'c-spine', 'C SPINE', 'CSPINE'), then keywords in BodyPartExamined
    itself, SeriesDescription, ProtocolName and StudyDescription, in that order.
    """
    body_part = _text(body_part_examined)
    if body_part is not None:
        region = BODY_PART_TERMS.get(_key(body_part))
        if region is None:
            region = _region_in_text(body_part)
        if region is not None:
            return region
    for value in (series_description, protocol_name, study_description):
        text = _text(value)
        if text is not None:
            region = _region_in_text(text)
            if region is not None:
                return region
    return None


def coarse_region(region: str | None) -> str | None:
    """`upper_extremity` / `lower_extremity` -> `extremity`; others unchanged."""
    return COARSE.get(region, region) if region is not None else None


def _covers(outer: str, inner: str) -> bool:
    """`outer` contains `inner`: equal, whole body, or its coarse parent."""
    return outer == inner or outer == WHOLE_BODY or COARSE.get(inner) == outer


def regions_compatible(a: str, b: str, adjacent: bool = True) -> bool:
    """Whether two regions do NOT contradict each other.

    Compatible: equal; one contains the other (whole_body contains every
    region, extremity contains upper_ and lower_extremity); and, with
    `adjacent`, anatomical neighbours (`ADJACENT`, also through the coarse
    parent: extremity is next to chest and pelvis)."""
    if _covers(a, b) or _covers(b, a):
        return True
    if not adjacent:
        return False
    return any(frozenset((x, y)) in ADJACENT for x in _with_children(a) for y in _with_children(b))


def _with_children(region: str) -> set[str]:
    return {region} | {fine for fine, parent in COARSE.items() if parent == region}


# --------------------------------------------------------------------- the model
class InsufficientLabels(ValueError):
    """Not enough labelled examples to train and evaluate the region classifier."""


@dataclass
class TrainedModel:
    """A trained region classifier with everything inference needs.

    `pipeline` is the sklearn Pipeline (StandardScaler + LogisticRegression);
    `classes` its class order (the columns of `predict_proba`).
    `label_counts`: labels per class as given; `train_counts`: per class after
    the cap (what the final model was fitted on); `dropped_classes`: classes
    left out for too few labels, with their counts. `out_of_fold`: for every
    training row (by key), probabilities from a model that did not see its
    group (cross-fitting), so a labelled image is never judged by a model that
    memorised its own label."""
    pipeline: Any
    classes: list[str]
    metrics: dict = field(default_factory=dict)
    label_source: str | None = None
    label_counts: dict[str, int] = field(default_factory=dict)
    train_counts: dict[str, int] = field(default_factory=dict)
    dropped_classes: dict[str, int] = field(default_factory=dict)
    out_of_fold: dict[str, list[float]] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.pipeline.named_steps["scale"].n_features_in_)


def _as_matrix(X, dim: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d array [N, D], got shape {X.shape}")
    if dim is not None and X.shape[0] and X.shape[1] != dim:
        raise ValueError(f"embeddings have {X.shape[1]} dimensions, the model expects {dim}")
    return X


def _make_pipeline(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    # lbfgs fits the multinomial (softmax) model for > 2 classes.
    return Pipeline([("scale", StandardScaler()),
                     ("classify", LogisticRegression(class_weight="balanced", max_iter=2000,
                                                     random_state=seed))])


def _cap_indices(y: np.ndarray, classes: list[str], max_per_class: int | None,
                 rng: np.random.Generator) -> np.ndarray:
    """Row indices with at most `max_per_class` per class (random, seeded; sorted)."""
    keep = []
    for cls in classes:
        idx = np.flatnonzero(y == cls)
        if max_per_class is not None and len(idx) > max_per_class:
            idx = np.sort(rng.choice(idx, size=max_per_class, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)


def _holdout_size(n: int, fraction: float) -> int:
    return int(math.floor(n * fraction + 0.5))   # round half up


def _evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                                 precision_recall_fscore_support)

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(np.mean(f1)),
        "per_class": {cls: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for cls, p, r, f, s in zip(classes, precision, recall, f1, support)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).astype(int).tolist(),
        "confusion_matrix_labels": list(classes),
    }


def train_region_classifier(X: np.ndarray, y: list[str], min_per_class: int = 5,
                            ignore_rare_classes: bool = True, test_fraction: float = 0.25,
                            seed: int = 0, max_per_class: int | None = 2000, *,
                            groups: list | None = None, label_source: str | None = None,
                            keys: list | None = None, folds: int = 5) -> TrainedModel:
    """Train and evaluate a body-region classifier on embeddings `X` [N, D] with labels `y`.

    1. Labels are stripped and lower-cased. Classes with fewer than
       `min_per_class` labels are left out (`dropped_classes`) with
       `ignore_rare_classes`, else `InsufficientLabels` names them.
    2. Every class is capped at `max_per_class` rows (seeded random subsample).
    3. Stratified hold-out: round(n_c * test_fraction) rows of each class
       (at least 1, and at least 1 left for training, else InsufficientLabels).
    4. Fit on the training part, evaluate on the hold-out (`metrics`), then
       refit on all capped rows - the returned model has seen every label.
    5. With `keys` (one per row, e.g. the path): out-of-fold probabilities of
       every kept row from `folds` group-wise folds (cross-fitting). Weak labels
       come from the same delivery the model then judges; without this, an
       image whose header lies is predicted by a model trained on that lie.
    `groups` (optional, one per row, e.g. SeriesInstanceUID): slices of one
    series are near duplicates, so a row-level split leaks them into the
    hold-out and inflates its metrics. With groups, whole groups go to the
    hold-out (per class, until its share is reached; a class with a single
    group falls back to a row split and is listed in
    metrics["holdout_ungrouped_classes"]). Deterministic for a given `seed`."""
    X = _as_matrix(X)
    labels = [None if _text(v) is None else _text(v).lower() for v in y]
    if len(labels) != X.shape[0]:
        raise ValueError(f"{X.shape[0]} embeddings but {len(labels)} labels")
    if groups is not None and len(groups) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if max_per_class is not None and max_per_class < 2:
        raise ValueError(f"max_per_class must be >= 2 or None, got {max_per_class}")
    labelled = np.array([v is not None for v in labels], dtype=bool)
    finite = np.isfinite(X).all(axis=1) if X.shape[0] else labelled
    usable = labelled & finite
    X = X[usable]
    y_arr = np.array([v for v, ok in zip(labels, usable) if ok], dtype=object)
    g_arr = None if groups is None else np.array([str(g) for g, ok in zip(groups, usable) if ok], dtype=object)
    k_arr = None if keys is None else np.array([str(v) for v, ok in zip(keys, usable) if ok], dtype=object)
    if len(y_arr) == 0:
        raise InsufficientLabels(
            "anatomy: no labelled embeddings to train on (no verified labels matched an embedded "
            "instance, and no header names a body region); set 'anatomy.labels' to a labels table")

    names, counts = np.unique(y_arr.astype(str), return_counts=True)
    label_counts = {str(n): int(c) for n, c in zip(names, counts)}
    rare = {cls: n for cls, n in label_counts.items() if n < min_per_class}
    if rare and not ignore_rare_classes:
        listed = ", ".join(f"'{cls}' ({n})" for cls, n in sorted(rare.items()))
        raise InsufficientLabels(
            f"anatomy: too few labels for {listed}; every class needs at least {min_per_class} "
            f"(setting 'anatomy.min_labels_per_class'). Add labels, lower the minimum, or set "
            f"'anatomy.ignore_rare_classes' to true to leave these classes out.")
    classes = sorted(cls for cls in label_counts if cls not in rare)
    if len(classes) < 2:
        raise InsufficientLabels(
            f"anatomy: a classifier needs at least 2 regions with >= {min_per_class} labels "
            f"(setting 'anatomy.min_labels_per_class'); have {len(classes)}: "
            + ", ".join(f"{c} {label_counts[c]}" for c in classes)
            + ("; left out as rare: " + ", ".join(f"{c} {n}" for c, n in sorted(rare.items())) if rare else ""))

    rng = np.random.default_rng(seed)
    keep = _cap_indices(y_arr, classes, max_per_class, rng)
    X, y_arr = X[keep], y_arr[keep].astype(str)
    g_arr = None if g_arr is None else g_arr[keep]
    k_arr = None if k_arr is None else k_arr[keep]
    train_counts = {cls: int(np.sum(y_arr == cls)) for cls in classes}

    test_idx, too_few, ungrouped = [], {}, []
    for cls in classes:
        idx = np.flatnonzero(y_arr == cls)
        n_test = _holdout_size(len(idx), test_fraction)
        if n_test < 1 or n_test >= len(idx):
            too_few[cls] = len(idx)
            continue
        chosen = None if g_arr is None else _group_holdout(idx, g_arr[idx], n_test, rng)
        if chosen is None:
            if g_arr is not None:
                ungrouped.append(cls)
            chosen = rng.permutation(idx)[:n_test]
        test_idx.append(np.sort(chosen))
    if too_few:
        listed = ", ".join(f"'{cls}' ({n})" for cls, n in sorted(too_few.items()))
        raise InsufficientLabels(
            f"anatomy: too few labels to hold out at least one example per class (and keep one for "
            f"training) with hold-out fraction {test_fraction} (setting 'anatomy.holdout_fraction'): "
            f"{listed}. Raise 'anatomy.min_labels_per_class' (these classes are then left out when "
            f"'anatomy.ignore_rare_classes' is true), raise the hold-out fraction, or add labels.")
    test_mask = np.zeros(len(y_arr), dtype=bool)
    test_mask[np.concatenate(test_idx)] = True

    evaluator = _make_pipeline(seed).fit(X[~test_mask], y_arr[~test_mask])
    metrics = _evaluate(y_arr[test_mask], evaluator.predict(X[test_mask]), classes)
    metrics.update({"n_train": int((~test_mask).sum()), "n_test": int(test_mask.sum()),
                    "n_fit": int(len(y_arr)), "test_fraction": float(test_fraction),
                    "classes": list(classes), "dropped_classes": dict(sorted(rare.items())),
                    "grouped_holdout": g_arr is not None, "holdout_ungrouped_classes": ungrouped})

    pipeline = _make_pipeline(seed).fit(X, y_arr)
    fitted = [str(c) for c in pipeline.classes_]
    assert fitted == classes, (fitted, classes)

    out_of_fold = {} if k_arr is None else _out_of_fold(
        X, y_arr, g_arr if g_arr is not None else k_arr, k_arr, classes, folds, seed)
    return TrainedModel(pipeline=pipeline, classes=classes, metrics=metrics, label_source=label_source,
                        label_counts=label_counts, train_counts=train_counts,
                        dropped_classes=dict(sorted(rare.items())), out_of_fold=out_of_fold)


def _out_of_fold(X: np.ndarray, y: np.ndarray, groups: np.ndarray, keys: np.ndarray,
                 classes: list[str], folds: int, seed: int) -> dict[str, list[float]]:
    """key → class probabilities from a model fitted without the row's group."""
    from sklearn.model_selection import GroupKFold

    n_splits = min(folds, len(np.unique(groups)))
    if n_splits < 2:
        return {}
    probs = np.zeros((len(y), len(classes)))
    for train_rows, test_rows in GroupKFold(n_splits=n_splits).split(X, y, groups):
        if len(np.unique(y[train_rows])) < 2:
            probs[test_rows] = np.nan  # cannot fit: these rows fall back to the final model
            continue
        fold = _make_pipeline(seed).fit(X[train_rows], y[train_rows])
        columns = [classes.index(str(c)) for c in fold.classes_]
        probs[np.ix_(test_rows, columns)] = fold.predict_proba(X[test_rows])
    return {str(key): [float(p) for p in row] for key, row in zip(keys, probs) if np.isfinite(row).all()}


# ------------------------------------------------------------------ hold-out split
def _group_holdout(idx: np.ndarray, groups: np.ndarray, n_test: int,
                   rng: np.random.Generator) -> np.ndarray | None:
    """Rows of whole groups (random order) until >= n_test, leaving at least
    one group for training; None when the class has a single group."""
    names = np.unique(groups)
    if len(names) < 2:
        return None
    chosen: list[np.ndarray] = []
    taken = 0
    for name in rng.permutation(names)[:-1]:
        rows = idx[groups == name]
        chosen.append(rows)
        taken += len(rows)
        if taken >= n_test:
            break
    return np.concatenate(chosen)


# ------------------------------------------------------------------- prediction
def predict_proba(model: TrainedModel, X: np.ndarray, keys: list | None = None) -> np.ndarray:
    """Class probabilities [N, K], columns in `model.classes` order. Rows whose
    key was a training row get its out-of-fold probabilities (cross-fitting)."""
    X = _as_matrix(X, model.dim)
    if X.shape[0] == 0:
        return np.zeros((0, len(model.classes)))
    probs = model.pipeline.predict_proba(X)
    if keys is not None and model.out_of_fold:
        for row, key in enumerate(keys):
            known = model.out_of_fold.get(str(key))
            if known is not None:
                probs[row] = known
    return probs


def uncertainty(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Active-learning uncertainty scores per row of `probs` [N, K]:

    confidence        max p
    least_confidence  1 - max p
    margin            p(1) - p(2) (top two; 1 with a single class) - small = uncertain
    entropy           -sum p log p / log K, in 0..1 (0 with a single class)"""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    n, k = p.shape
    if k == 0:
        raise ValueError("probabilities need at least one column")
    top = -np.sort(-p, axis=1)
    confidence = top[:, 0]
    margin = top[:, 0] - top[:, 1] if k > 1 else np.ones(n)
    if k > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        entropy = np.clip(-terms.sum(axis=1) / math.log(k), 0.0, 1.0)
    else:
        entropy = np.zeros(n)
    return {"confidence": confidence, "least_confidence": 1.0 - confidence,
            "margin": np.clip(margin, 0.0, 1.0), "entropy": entropy}


# --------------------------------------------------------------------- findings
def _finding(code: str, score: float | None, threshold: float | None, detail: str) -> dict:
    return {"code": code, "score": None if score is None else float(score),
            "threshold": None if threshold is None else float(threshold), "detail": detail}


def knows_region(classes: Iterable[str] | None, region: str) -> bool:
    """Whether a model with these classes can confirm or refute `region`: one of
    its classes, or a coarse parent or fine child of one."""
    return classes is None or any(c == region or COARSE.get(c) == region or COARSE.get(region) == c
                                  for c in classes)


def model_findings(predicted: str | None, confidence: float | None, header_region: str | None,
                   expected_regions: list[str] | None, min_confidence: float = 0.8, *,
                   classes: Iterable[str] | None = None, adjacent_compatible: bool = True) -> list[dict]:
    """The region model's findings for one image whose header claims expected
    content, dicts {code, score, threshold, detail}; only predictions at least
    `min_confidence` sure count (score = confidence).

    UNEXPECTED_ANATOMY      `expected_regions` non-empty and the prediction is
                            not within one of them (a fine region counts under
                            its expected coarse parent or whole body, a coarse
                            prediction under an expected fine child).
    ANATOMY_HEADER_MISMATCH the header names a region the model can judge
                            (`knows_region`) and the prediction contradicts it
                            (`regions_compatible`; anatomical neighbours are
                            tolerated unless `adjacent_compatible=False`)."""
    if predicted is None or confidence is None or (isinstance(confidence, float) and math.isnan(confidence)):
        return []
    if confidence < min_confidence:
        return []
    expected = [str(r).strip().lower() for r in (expected_regions or []) if _text(r)]
    findings: list[dict] = []
    if expected and not any(_covers(e, predicted) or COARSE.get(e) == predicted for e in expected):
        findings.append(_finding(FINDING_UNEXPECTED, confidence, min_confidence,
                                 f"predicted '{predicted}' (p={confidence:.2f}) is not among the "
                                 f"expected regions {expected}"))
    header = _text(header_region)
    header = header.lower() if header else None
    if header is not None and knows_region(classes, header) and not regions_compatible(
            header, predicted, adjacent=adjacent_compatible):
        findings.append(_finding(FINDING_MISMATCH, confidence, min_confidence,
                                 f"predicted '{predicted}' (p={confidence:.2f}) contradicts the "
                                 f"header's region '{header}'"))
    return findings


# ---------------------------------------------------------------- serialisation
CLASSIFIER_FILE = "classifier.joblib"
METADATA_FILE = "metadata.json"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_model(model: TrainedModel, folder: str) -> str:
    """Write the model to `folder` (created): classifier.joblib (the sklearn
    pipeline) and metadata.json (classes, metrics, label source, counts,
    out-of-fold probabilities, library versions). Returns the folder; log it
    as an MLflow artifact / pyfunc bundle."""
    import joblib
    import sklearn

    os.makedirs(folder, exist_ok=True)
    joblib.dump(model.pipeline, os.path.join(folder, CLASSIFIER_FILE))
    metadata = {
        "format_version": FORMAT_VERSION,
        "classes": list(model.classes),
        "label_source": model.label_source,
        "label_counts": model.label_counts,
        "train_counts": model.train_counts,
        "dropped_classes": model.dropped_classes,
        "metrics": model.metrics,
        "out_of_fold": model.out_of_fold,
        "regions": list(REGIONS),
        "versions": {"sklearn": sklearn.__version__, "numpy": np.__version__},
    }
    with open(os.path.join(folder, METADATA_FILE), "w", encoding="utf-8") as handle:
        json.dump(_jsonable(metadata), handle, indent=2, sort_keys=True)
    return folder


def find_bundle(folder: str) -> str:
    """The folder under `folder` (itself included) that holds a saved model:
    MLflow keeps a logged folder under its own name, whatever it was called."""
    for root, _, files in sorted(os.walk(folder)):
        if METADATA_FILE in files and CLASSIFIER_FILE in files:
            return root
    raise FileNotFoundError(f"no anatomy model ({METADATA_FILE} and {CLASSIFIER_FILE}) under {folder}")


def load_model(folder: str) -> TrainedModel:
    """Read a model written by `save_model` (joblib unpickles: trusted folders only)."""
    import joblib
    import sklearn

    with open(os.path.join(folder, METADATA_FILE), encoding="utf-8") as handle:
        metadata = json.load(handle)
    if metadata.get("format_version") not in READABLE_FORMATS:
        raise ValueError(f"{folder}: unsupported anatomy model format {metadata.get('format_version')}")
    saved_with = metadata.get("versions", {}).get("sklearn")
    if saved_with and saved_with != sklearn.__version__:
        warnings.warn(f"anatomy model saved with scikit-learn {saved_with}, loading with "
                      f"{sklearn.__version__}", stacklevel=2)
    pipeline = joblib.load(os.path.join(folder, CLASSIFIER_FILE))
    classes = list(metadata["classes"])
    if [str(c) for c in pipeline.classes_] != classes:
        raise ValueError(f"{folder}: classifier classes {list(pipeline.classes_)} != metadata {classes}")
    return TrainedModel(pipeline=pipeline, classes=classes, metrics=metadata["metrics"],
                        label_source=metadata.get("label_source"),
                        label_counts=metadata.get("label_counts", {}),
                        train_counts=metadata.get("train_counts", {}),
                        dropped_classes=metadata.get("dropped_classes", {}),
                        out_of_fold=metadata.get("out_of_fold", {}))
