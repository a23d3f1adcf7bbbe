"""Review-queue selection (udfs/review.py) and the curate settings' checks, without Spark."""
from __future__ import annotations

import random

import pytest

from dicom_triage.jobs.config import ConfigError, load_settings
from dicom_triage.schemas.reasons import ALL_CODES, IO_ERROR, TIMEOUT
from dicom_triage.udfs.review import cluster_quota, diversified_order


def test_priority_order_when_clusters_are_balanced():
    priorities = [0.2, 0.9, 0.5, 0.7]
    clusters = ["a", "b", "c", "d"]
    assert diversified_order(priorities, clusters, 3, 0.5) == [1, 3, 2]


def test_one_cluster_cannot_fill_the_queue_while_others_have_candidates():
    # cluster "a" holds the 8 best candidates; "b" and "c" hold weaker ones
    priorities = [0.99 - 0.01 * i for i in range(8)] + [0.5, 0.4, 0.3, 0.2]
    clusters = ["a"] * 8 + ["b", "b", "c", "c"]
    chosen = diversified_order(priorities, clusters, 8, 0.25)
    picked = [clusters[i] for i in chosen]
    assert picked.count("a") == cluster_quota(8, 0.25) + (8 - 2 - 4)  # quota, then filled by priority
    assert {"b", "c"} <= set(picked)
    # still ordered by priority, best first
    assert [priorities[i] for i in chosen] == sorted((priorities[i] for i in chosen), reverse=True)


def test_quota_lets_other_clusters_in_before_refilling():
    priorities = [1.0, 0.9, 0.8, 0.1]
    clusters = [0, 0, 0, 1]
    assert diversified_order(priorities, clusters, 2, 0.5) == [0, 3]
    assert diversified_order(priorities, clusters, 3, 0.34) == [0, 1, 3]


def test_fills_up_when_only_one_cluster_remains():
    assert diversified_order([0.3, 0.2, 0.1], ["a", "a", "a"], 3, 0.1) == [0, 1, 2]


def test_size_and_edge_cases():
    assert diversified_order([], [], 5, 0.25) == []
    assert diversified_order([0.5, 0.4], [None, None], 0, 0.25) == []
    rng = random.Random(3)
    priorities = [rng.random() for _ in range(200)]
    clusters = [rng.randrange(7) for _ in range(200)]
    chosen = diversified_order(priorities, clusters, 30, 0.2)
    assert len(chosen) == len(set(chosen)) == 30
    # deterministic, and every cluster with candidates is represented
    assert chosen == diversified_order(priorities, clusters, 30, 0.2)
    assert {clusters[i] for i in chosen} == set(clusters)


def test_every_reason_code_has_a_default_severity():
    severity = load_settings()["curate.severity"]
    assert set(severity) == set(ALL_CODES) | {IO_ERROR, TIMEOUT}
    assert set(severity.values()) <= {"exclude", "review", "annotate"}


@pytest.mark.parametrize("override, named", [
    ("curate.severity.NOISY=drop", "curate.severity.NOISY"),
    ("curate.severity.NOT_A_CODE=exclude", "curate.severity.NOT_A_CODE"),
    ("curate.series_exclude_fraction=0", "curate.series_exclude_fraction"),
    ("review_queue.max_cluster_share=1.5", "review_queue.max_cluster_share"),
    ("review_queue.size=-1", "review_queue.size"),
])
def test_bad_curate_settings_name_themselves(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(overrides=[override])
