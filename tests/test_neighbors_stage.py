"""The neighbors stage on the demo delivery's embeddings (real local Spark):
exact k-NN equals brute force, duplicate groups (the planted near duplicates
found), outliers, clusters, the 2-D maps and the clusters' makeup."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from pyspark.sql import functions as F

from dicom_triage.jobs.cli import main as triage

pytestmark = pytest.mark.spark

DEFAULTS = yaml.safe_load((Path(__file__).parents[1] / "conf" / "default.yaml").read_text())
NEAR_LIMIT = DEFAULTS["neighbors"]["near_duplicate_max_distance"]


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
    pairs = store.read("neighbors").filter(f"NOT same_series AND distance <= {NEAR_LIMIT}").count()
    assert (near.count() > 0) == (pairs > 0)


def test_planted_near_duplicates_are_found(neighbors):
    """Every planted near duplicate is in a near group with its original
    (recall 1.0); most members of near groups are planted copies (precision)."""
    store = neighbors.store
    rows = truth(neighbors.delivery)
    near = (store.read("duplicates").filter("kind = 'near'")
            .join(store.read("instances").select("path", "relative_path"), "path")
            .select("relative_path", "group_id", "is_original").toPandas())
    group_of = dict(zip(near["relative_path"], near["group_id"]))
    planted = {p: r["duplicate_of"] for p, r in rows.items() if "NEAR_DUPLICATE" in r["reasons"]}
    assert len(planted) >= 4
    found = {p for p, original in planted.items() if p in group_of and group_of[p] == group_of.get(original)}
    copies = near[~near["is_original"]]

    def is_copy(path: str) -> bool:      # a planted near or exact copy of a member of its group
        row = rows[path]
        return bool(row["duplicate_of"]) and group_of.get(row["duplicate_of"]) == group_of[path] and (
            "NEAR_DUPLICATE" in row["reasons"] or "EXACT_DUPLICATE" in row["reasons"])

    right = sum(is_copy(p) for p in copies["relative_path"])
    precision = right / len(copies)
    print(f"\nnear duplicates (limit {NEAR_LIMIT}): recall {len(found) / len(planted):.2f} "
          f"({len(found)}/{len(planted)}), precision {precision:.2f} ({right}/{len(copies)} flagged "
          f"members are planted copies); wrong: {sorted(p for p in copies['relative_path'] if not is_copy(p))}")
    assert found == set(planted), sorted(set(planted) - found)
    assert precision >= 0.9


def test_outliers_and_clusters(neighbors):
    store = neighbors.store
    clusters = store.read("clusters")
    assert clusters.count() == store.read("embeddings").filter("embedding IS NOT NULL").count()
    assert clusters.filter("map_x IS NULL OR map_y IS NULL OR cluster IS NULL").count() == 0
    umap_rows = clusters.filter("umap_x IS NOT NULL AND umap_y IS NOT NULL").count()
    # auto: UMAP wherever umap-learn is installed (the dev extra installs it)
    assert umap_rows == (clusters.count() if importlib.util.find_spec("umap") else 0)
    expected = {p for p, r in truth(neighbors.delivery).items() if "IRRELEVANT_CONTENT" in r["reasons"]}
    rows = (clusters.join(store.read("instances").select("path", "relative_path"), "path")
            .select("relative_path", "findings.code", "outlier_score").collect())
    outliers = {r.relative_path for r in rows if "EMBEDDING_OUTLIER" in r.code or "CLUSTER_OUTLIER" in r.code}
    caught = len(expected & outliers) / len(expected)
    print(f"\nirrelevant images caught by the outlier findings: {caught:.2f} ({len(outliers)} flagged)")
    assert caught == 1.0, sorted(expected - outliers)
    makeup = (clusters.groupBy("cluster", "site").count()).toPandas()
    assert makeup["count"].sum() == clusters.count()


def test_cluster_makeup(neighbors):
    store = neighbors.store
    makeup = store.read("cluster_makeup")
    sizes = {r.cluster: r["count"] for r in store.read("clusters").groupBy("cluster").count().collect()}
    per = (makeup.groupBy("cluster", "dimension")
           .agg(F.sum("share").alias("shares"), F.sum("count").alias("n"), F.min("cluster_size").alias("size"),
                F.max("cluster_size").alias("size_max"))
           .collect())
    assert {r.dimension for r in per} == {"site", "manufacturer", "modality"}
    assert len(per) == 3 * len(sizes)
    for r in per:
        assert abs(r.shares - 1.0) < 1e-9, r
        assert r.n == r.size == r.size_max == sizes[r.cluster], r
    assert makeup.filter("run_id IS NULL OR computed_at IS NULL").count() == 0
    embedded = store.read("clusters").select("path").join(store.read("instances"), "path")
    for name in ("site", "manufacturer", "modality"):
        values = {r[0] for r in makeup.filter(F.col("dimension") == name).select("value").distinct().collect()}
        assert values == {r[0] for r in embedded.select(F.col(name).cast("string")).distinct().collect()}, name


def test_only_one_acquisition_saved_twice_may_be_a_near_duplicate(spark):
    """Look-alikes are not duplicates: another patient, an adjacent slice, a
    repeated acquisition. A slice stored twice in its series, an export and a
    series sent twice may be."""
    from dicom_triage.jobs.neighbors import same_acquisition

    schema = ("id long, patient_key string, series_instance_uid string, series_time string, "
              "image_position_patient array<double>, image_type array<string>")
    original = ["ORIGINAL", "PRIMARY"]
    rows = [
        (1, "p1", "s1", "101500", [0.0, 0.0, 10.0], original),
        (2, "p1", "s1", "101500", [0.0, 0.0, 10.0], original),        # stored twice in its series
        (3, "p1", "s1", "101500", [0.0, 0.0, 11.0], original),        # the adjacent slice
        (4, "p1", "s2", "103000", [0.0, 0.0, 10.0], original),        # repeated after contrast
        (5, "p1", "s3", "110000", None, ["derived", "secondary"]),    # a key image export
        (6, "p2", "s4", "101500", [0.0, 0.0, 10.0], original),        # another patient
        (7, "p1", "s5", "101500", [0.0, 0.0, 10.0], original),        # the series sent again
        (8, None, "s6", None, None, ["DERIVED"]),                     # no patient: never
    ]
    instances = spark.createDataFrame(rows, schema)
    pairs = spark.createDataFrame([(1, n, 0.001) for n in range(2, 9)] + [(8, 5, 0.0)],
                                  "id long, neighbor_id long, distance double")
    kept = {(r.id, r.neighbor_id) for r in pairs.transform(same_acquisition(instances)).collect()}
    assert kept == {(1, 2), (1, 5), (1, 7)}
