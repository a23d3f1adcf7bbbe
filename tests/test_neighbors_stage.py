"""The neighbors stage on the demo delivery's embeddings (real local Spark):
exact k-NN equals brute force, duplicate groups, outliers and clusters."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from pyspark.sql import functions as F

from jobs.cli import main as triage

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def neighbors(demo_pipeline):
    # exact mode: one list, so the table must equal numpy brute force
    assert triage(["neighbors", *demo_pipeline.args, "--set", "neighbors.exact=true",
                   "--set", "mlflow.enabled=false"]) == 0
    return demo_pipeline


def truth(delivery) -> dict[str, dict]:
    with open(delivery / "_ground_truth.csv", newline="") as handle:
        return {r["path"]: r for r in csv.DictReader(handle) if not r["ingest_error"]}


def test_exact_neighbors_equal_brute_force(neighbors):
    store = neighbors.store
    vectors = store.read("embeddings").filter("embedding IS NOT NULL").select("path", "embedding").toPandas()
    matrix = np.stack(vectors["embedding"].to_numpy()).astype(np.float64)
    distance = 1.0 - matrix @ matrix.T
    np.fill_diagonal(distance, np.inf)
    k = 10
    table = store.read("neighbors").select("path", "rank", "neighbor_path", "distance").toPandas()
    assert len(table) == len(vectors) * k
    index = {p: i for i, p in enumerate(vectors["path"])}
    for path, rows in list(table.groupby("path"))[:60]:
        expected = np.sort(distance[index[path]])[:k]
        got = rows.sort_values("rank")["distance"].to_numpy()
        assert np.allclose(got, expected, atol=1e-4), path
        assert path not in set(rows["neighbor_path"])


def test_duplicate_groups(neighbors):
    store = neighbors.store
    duplicates = store.read("duplicates")
    exact = duplicates.filter("kind = 'exact'")
    originals = exact.groupBy("group_id").agg(F.sum(F.col("is_original").cast("int"))).collect()
    assert originals and all(r[1] == 1 for r in originals), "one original per group"
    flagged = {r.path for r in store.read("pixel_stats")
               .filter("exists(findings, f -> f.code = 'EXACT_DUPLICATE')").select("path").collect()}
    later = {r.path for r in exact.filter("NOT is_original").select("path").collect()}
    assert later == flagged, "the exact groups agree with the pixels stage's EXACT_DUPLICATE"
    near = duplicates.filter("kind = 'near'")
    pairs = store.read("neighbors").filter("NOT same_series AND distance <= 0.01").count()
    assert (near.count() > 0) == (pairs > 0)


def test_outliers_and_clusters(neighbors):
    store = neighbors.store
    clusters = store.read("clusters")
    assert clusters.count() == store.read("embeddings").filter("embedding IS NOT NULL").count()
    assert clusters.filter("map_x IS NULL OR map_y IS NULL OR cluster IS NULL").count() == 0
    expected = {p for p, r in truth(neighbors.delivery).items() if "IRRELEVANT_CONTENT" in r["reasons"]}
    rows = (clusters.join(store.read("instances").select("path", "relative_path"), "path")
            .select("relative_path", "findings.code", "outlier_score").collect())
    outliers = {r.relative_path for r in rows if "EMBEDDING_OUTLIER" in r.code or "CLUSTER_OUTLIER" in r.code}
    caught = len(expected & outliers) / len(expected)
    print(f"\nirrelevant images caught by the outlier findings: {caught:.2f} ({len(outliers)} flagged)")
    assert caught >= 0.6
    makeup = (clusters.groupBy("cluster", "site").count()).toPandas()
    assert makeup["count"].sum() == clusters.count()
