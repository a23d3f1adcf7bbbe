"""udfs/relevance.py: header rules and the content check (no Spark)."""
from __future__ import annotations

import numpy as np
import pytest

from dicom_triage.udfs import relevance
from dicom_triage.udfs.relevance import claims_expected, comparable, content_scores, header_findings, knn_mean_distance


def codes(findings):
    return [f["code"] for f in findings]


def rules(modality="MR", body_part=None, study=None, series=None, protocol=None,
          modalities=("MR",), regions=("head",)):
    return header_findings(modality, body_part, study, series, protocol, list(modalities), list(regions))


# ------------------------------------------------------------------ header rules
def test_unexpected_modality():
    assert codes(rules("US", "HEAD")) == ["UNEXPECTED_MODALITY"]
    assert rules("MR ", "HEAD") == []
    assert codes(rules(None, "HEAD")) == ["UNEXPECTED_MODALITY"]
    assert rules("CT", "HEAD", modalities=()) == []          # no expectation, no finding
    finding = rules("US", "HEAD")[0]
    assert set(finding) == {"code", "score", "threshold", "detail"} and "'US'" in finding["detail"]


@pytest.mark.parametrize("body_part, series, protocol, study, expected", [
    ("SHOULDER", None, None, None, ["UNEXPECTED_ANATOMY"]),
    ("HEAD", None, None, None, []),
    ("BRAIN", "AX T2 FLAIR", "t2_flair_tra", "MRI BRAIN", []),
    (None, "SAG T1 KNEE", None, None, ["UNEXPECTED_ANATOMY"]),
    (None, None, None, "MR LUMBAR SPINE", []),       # a study may span regions: not the series' region
    (None, "AX T1", None, None, []),                                 # no region named: nothing to judge
    # BodyPartExamined wins for the header's region; the description contradicts it
    ("HEAD", "KNEE T2 FS", None, None, ["ANATOMY_HEADER_MISMATCH"]),
    ("HEAD", None, "L-SPINE SAG", None, ["ANATOMY_HEADER_MISMATCH"]),
    ("HEAD", "AX T1 NECK", None, None, []),                           # neighbours do not contradict
    ("HEAD", "T1 MPRAGE", None, "CT CHEST ABDOMEN PELVIS", []),      # a study may span regions
    ("KNEE", "T2 BRAIN", None, None, ["UNEXPECTED_ANATOMY", "ANATOMY_HEADER_MISMATCH"]),
])
def test_header_regions(body_part, series, protocol, study, expected):
    assert codes(rules("MR", body_part, study, series, protocol)) == expected


def test_regions_within_expected_ones():
    assert rules("CR", "KNEE", modalities=("CR",), regions=("extremity",)) == []
    assert rules("CR", "EXTREMITY", modalities=("CR",), regions=("lower_extremity",)) == []
    assert codes(rules("CR", "HAND", modalities=("CR",), regions=("lower_extremity",))) == [
        "UNEXPECTED_ANATOMY"]
    assert rules("MR", "SHOULDER", regions=()) == []


def test_claims_expected():
    assert claims_expected("MR", "HEAD", None, None, ["MR"], ["head"])
    assert claims_expected("MR", None, "AX T1", None, ["MR"], ["head"])   # an unnamed region may be anything
    assert not claims_expected("CT", "HEAD", None, None, ["MR"], ["head"])
    assert not claims_expected("MR", "SHOULDER", None, None, ["MR"], ["head"])
    assert not claims_expected("MR", "HEAD", "KNEE T2", None, ["MR"], ["head"])   # a contradicting header
    assert claims_expected("CT", "CHEST", None, None, [], [])


# ------------------------------------------------------------------ content check
DIM = 48


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def series_of(centre, n, rng, spread=0.15):
    return unit(centre + spread * rng.normal(size=(n, DIM)) / np.sqrt(DIM))


@pytest.fixture(scope="module")
def delivery():
    """Brain MR (8 series), chest CR (6 single images), and a CT head series of its own."""
    rng = np.random.default_rng(4)
    centres = unit(rng.normal(size=(4, DIM)))
    vectors, groups, modality, region = [], [], [], []
    for s in range(8):
        vectors.append(series_of(centres[0], 12, rng))
        groups += [f"mr{s}"] * 12
        modality += ["MR"] * 12
        region += ["head"] * 12
    for s in range(6):
        vectors.append(series_of(centres[1], 1, rng))
        groups.append(f"cr{s}")
        modality.append("CR")
        region.append("chest")
    vectors.append(series_of(centres[2], 8, rng))
    groups += ["ct0"] * 8
    modality += ["CT"] * 8
    region += ["head"] * 8
    reference = {"vectors": np.vstack(vectors).astype(np.float32), "groups": np.array(groups, dtype=object),
                 "modality": np.array(modality, dtype=object), "region": np.array(region, dtype=object)}
    return reference, centres, rng


def test_clean_images_are_close_and_foreign_ones_far(delivery):
    reference, centres, rng = delivery
    clean = series_of(centres[0], 4, rng)
    photo = unit(rng.normal(size=(1, DIM)))
    X = np.vstack([clean, photo])
    out = content_scores(X, ["new"] * 4 + ["photo"], ["MR"] * 5, ["head"] * 5, reference, k=5)
    assert out["score"][:4].max() < 0.2 < 0.6 < out["score"][4]
    assert out["resembles"][4] in ("chest", None) and out["resembles_distance"][4] > 0.6


def test_a_mislabelled_image_resembles_the_kind_it_shows(delivery):
    reference, centres, rng = delivery
    chest = series_of(centres[1], 1, rng)          # a chest radiograph filed as brain MR
    out = content_scores(chest, ["x"], ["MR"], ["head"], reference, k=5)
    assert out["score"][0] > 0.6
    assert out["resembles"] == ["chest"] and out["resembles_distance"][0] < 0.2


def test_an_image_and_its_series_never_vouch_for_themselves(delivery):
    reference, centres, rng = delivery
    # the CT head series is the only one of its kind: nothing comparable outside it
    ct = reference["vectors"][reference["groups"] == "ct0"]
    assert len(ct) == 8
    out = content_scores(ct, ["ct0"] * len(ct), ["CT"] * len(ct), ["head"] * len(ct), reference, k=5)
    assert np.isnan(out["score"]).all()
    # as another series it would be judged, and close
    other = content_scores(ct, ["ct1"] * len(ct), ["CT"] * len(ct), ["head"] * len(ct), reference, k=5)
    assert (other["score"] < 0.1).all()


def test_unnamed_region_is_compared_with_its_whole_modality(delivery):
    reference, _, _ = delivery
    allowed = comparable(["CT", "MR"], [None, "chest"], reference["modality"], reference["region"])
    assert allowed[0].sum() == 8                     # every CT image
    assert allowed[1].sum() == 0                     # no MR chest images


def test_knn_mean_distance_hand_checked():
    reference = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    X = np.array([[1, 0]], dtype=np.float32)
    assert knn_mean_distance(X, reference, 2)[0] == pytest.approx((0 + 1) / 2)
    assert knn_mean_distance(X, reference, 2, ["a"], ["a", "b", "c"])[0] == pytest.approx((1 + 2) / 2)
    assert knn_mean_distance(X, reference, 5)[0] == pytest.approx((0 + 1 + 2) / 3)   # all three it has
    assert np.isnan(knn_mean_distance(X, reference, 3, ["a"], ["a", "b", "c"])[0])   # 2 left: not judged
    assert np.isnan(knn_mean_distance(X, reference[:0], 1)[0])


# -- acquisition evidence in the header -------------------------------------------------

@pytest.mark.parametrize("modality, acquisition, says", [
    ("MR", dict(kvp=140.0, rescale_type="HU"), "X-ray acquisition attributes (KVP 140, RescaleType HU)"),
    ("MR", dict(photometric="YBR_FULL_422"), "PhotometricInterpretation YBR_FULL_422"),
    ("CT", dict(photometric="RGB"), "grey-scale modality"),
    ("CT", dict(field_strength=1.5, echo_time=4.2), "MR acquisition attributes (MagneticFieldStrength 1.5"),
    ("DX", dict(echo_time=12.0), "MR acquisition attributes (EchoTime 12)"),
])
def test_acquisition_attributes_of_another_device_are_foreign(modality, acquisition, says):
    assert says in relevance.foreign_acquisition(modality, **acquisition)


@pytest.mark.parametrize("modality, acquisition", [
    ("MR", dict(photometric="MONOCHROME2", field_strength=3.0, echo_time=90.0)),
    ("MR", dict(kvp=0.0, rescale_type="US")),              # a zero KVP is "not recorded"
    ("MR", dict(kvp=float("nan"))),
    ("CT", dict(kvp=120.0, rescale_type="HU", photometric="MONOCHROME1")),
    ("US", dict(photometric="RGB")),                        # ultrasound and photographs may be in colour
    ("XC", dict(photometric="YBR_FULL")),
    (None, dict(kvp=120.0)),
])
def test_consistent_acquisitions_are_not_foreign(modality, acquisition):
    assert relevance.foreign_acquisition(modality, **acquisition) is None


def test_header_findings_report_a_foreign_acquisition_only_when_nothing_else_is_found():
    ct_as_mr = dict(kvp=140.0, rescale_type="HU")
    codes = [f["code"] for f in relevance.header_findings("MR", "HEAD", None, "T1", None, ["MR"], ["head"],
                                                          ct_as_mr)]
    assert codes == ["IRRELEVANT_CONTENT"]
    codes = [f["code"] for f in relevance.header_findings("CT", "HEAD", None, "T1", None, ["MR"], ["head"],
                                                          dict(field_strength=3.0))]
    assert codes == ["UNEXPECTED_MODALITY"]      # already foreign by its label
    codes = [f["code"] for f in relevance.header_findings("MR", "HEAD", None, "T SPINE", None, ["MR"], ["head"],
                                                          ct_as_mr)]
    assert codes == ["ANATOMY_HEADER_MISMATCH"]  # a header that contradicts itself is reported alone
    assert relevance.header_findings("MR", "HEAD", None, "T1", None, ["MR"], ["head"], None) == []
