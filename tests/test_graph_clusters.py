"""Connected components (jobs/graph.py), outlier scores (udfs/outliers.py) and
clusters (jobs/clusters.py)."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from dicom_triage.jobs.clusters import (cluster_embeddings, cluster_makeup, default_k, makeup_by_dimension, umap_map,
                           use_umap)
from dicom_triage.jobs.graph import ComponentsDidNotConverge, connected_components
from dicom_triage.udfs.outliers import knn_outlier_scores, robust_fence, robust_z, uniqueness


def components(spark, edges, vertices=None, **kwargs):
    e = spark.createDataFrame(edges, "src long, dst long")
    v = spark.createDataFrame([(i,) for i in vertices], "id long") if vertices is not None else None
    return {r.id: r.component for r in connected_components(e, v, **kwargs).collect()}


def test_chain(spark):
    assert components(spark, [(1, 2), (2, 3), (3, 4), (4, 5)]) == {i: 1 for i in range(1, 6)}


def test_chain_given_backwards_and_star_and_cycle(spark):
    assert components(spark, [(5, 4), (4, 3), (3, 2), (2, 1)]) == {i: 1 for i in range(1, 6)}
    assert components(spark, [(7, 3), (7, 9), (7, 4), (7, 8)]) == {i: 3 for i in (3, 4, 7, 8, 9)}
    assert components(spark, [(12, 10), (10, 11), (11, 13), (13, 12)]) == {i: 10 for i in (10, 11, 12, 13)}


def test_disjoint_parts_isolated_vertex_and_self_loop(spark):
    got = components(spark, [(1, 2), (2, 3), (20, 10), (10, 30), (5, 5)], vertices=[1, 2, 3, 10, 20, 30, 99])
    assert got == {1: 1, 2: 1, 3: 1, 10: 10, 20: 10, 30: 10, 99: 99, 5: 5}


def test_long_chain_converges_and_too_few_iterations_raise(spark):
    chain = [(i + 1, i) for i in range(1, 30)]  # 30 vertices, listed from the far end
    assert components(spark, chain, max_iterations=40) == {i: 1 for i in range(1, 31)}
    with pytest.raises(ComponentsDidNotConverge, match="max_iterations=5"):
        components(spark, chain, max_iterations=5)


def test_knn_outlier_scores():
    got = knn_outlier_scores(np.array([1.0, 2.0, 4.0, np.nan]))
    np.testing.assert_allclose(got[:3], [math.exp(-0.5), math.exp(-1.0), math.exp(-2.0)])
    assert np.isnan(got[3])


def test_robust_fence():
    # Q1 = 2, Q3 = 4 (numpy linear percentiles of 1..5), IQR 2
    assert robust_fence([1, 2, 3, 4, 5, np.nan]) == pytest.approx(4 + 1.7 * 2)
    assert robust_fence([1, 2, 3, 4, 5], k=1.5) == pytest.approx(7.0)
    assert math.isnan(robust_fence([]))


def test_robust_z():
    # median 3, |x - 3| = 2,1,0,1,7 → MAD 1
    np.testing.assert_allclose(robust_z([1, 2, 3, 4, 10]), [-1.349, -0.6745, 0, 0.6745, 4.7215])
    got = robust_z([2, 2, 2, 9, np.nan])  # MAD 0: the mean absolute deviation (1.75) stands in
    np.testing.assert_allclose(got[:4], [0, 0, 0, 7 / (1.2533 * 1.75)])
    assert np.isnan(got[4])  # NaN stays NaN
    np.testing.assert_array_equal(robust_z([5, 5, 5]), [0, 0, 0])  # all equal: nothing stands out


def test_one_fence_in_spark_and_numpy(spark):
    """jobs/fences.py gives udfs/outliers.py's z in every case: spread, MAD 0, all
    equal, a group too small (odd group sizes: the approximate median is exact)."""
    from dicom_triage.jobs.fences import with_robust_z

    groups = {"spread": [1.0, 2.0, 3.0, 4.0, 10.0], "mad0": [2.0, 2.0, 2.0, 9.0, 2.0],
              "equal": [5.0] * 5, "small": [1.0, 8.0, 3.0]}
    rows = [(g, i, v) for g, values in groups.items() for i, v in enumerate(values)]
    df = spark.createDataFrame(rows, "g string, i int, x double")
    got = {(r.g, r.i): r.x_z for r in with_robust_z(df, "x", ["g"], min_group=5).collect()}
    for g, values in groups.items():
        expected = robust_z(values) if len(values) >= 5 else [None] * len(values)
        for i, want in enumerate(expected):
            assert (got[(g, i)] is None) if want is None else got[(g, i)] == pytest.approx(want), (g, i)


def test_uniqueness():
    d = np.array([[0.1, 0.2, 0.3], [0.5, 0.5, 1.0], [0.0, 0.0, 0.0]])
    # 0.06+0.06+0.03 = 0.15; 0.3+0.15+0.1 = 0.55
    np.testing.assert_allclose(uniqueness(d), [0.15 / 0.55, 1.0, 0.0])
    with pytest.raises(ValueError):
        uniqueness(np.ones((2, 2)))


def test_default_k():
    assert default_k(1) == 2 and default_k(200) == 10 and default_k(10_000) == 20


@pytest.fixture(scope="module")
def clustered(spark):
    rng = np.random.default_rng(3)
    dim, per = 16, 40
    rows, truth = [], {}
    for c in range(3):
        for j in range(per):
            v = np.eye(dim)[c] + rng.normal(0, 0.02, dim)
            i = c * 1000 + j
            rows.append((i, (v / np.linalg.norm(v)).astype(np.float32).tolist(), f"site-{c}"))
            truth[i] = c
    far = np.eye(dim)[0] + 0.6 * np.eye(dim)[7]  # cluster 0's direction, pushed sideways
    rows.append((9999, (far / np.linalg.norm(far)).astype(np.float32).tolist(), "site-0"))
    truth[9999] = 0
    df = spark.createDataFrame(rows, "id long, vector array<float>, site string")
    out = cluster_embeddings(df, k=3)
    yield out, truth
    out.unpersist()


def test_kmeans_recovers_clusters_and_flags_the_planted_point(clustered):
    out, truth = clustered
    rows = out.collect()
    assert set(out.columns) == {"id", "vector", "site", "cluster", "centroid_distance", "cluster_z",
                                "cluster_outlier", "map_x", "map_y"}
    ids = [r.id for r in rows]
    assert adjusted_rand_score([truth[i] for i in ids], [r.cluster for r in rows]) == 1.0
    flagged = {r.id for r in rows if r.cluster_outlier}
    assert flagged == {9999}
    assert all(r.map_x is not None and r.map_y is not None for r in rows)
    assert all(0 <= r.centroid_distance < 0.2 for r in rows)


def test_cluster_makeup(clustered):
    out, _ = clustered
    makeup = cluster_makeup(out, ["site"]).collect()
    totals = {}
    for r in makeup:
        totals[r.cluster] = totals.get(r.cluster, 0) + r.share
    assert totals == pytest.approx({c: 1.0 for c in totals}) and len(totals) == 3
    assert sorted(r.share for r in makeup) == [1.0, 1.0, 1.0]  # each site is exactly one cluster
    assert sorted(r["count"] for r in makeup) == [40, 40, 41]


def test_makeup_by_dimension(clustered):
    out, _ = clustered
    with_vendor = out.withColumn("manufacturer", (out.id % 2).cast("string")).withColumn("modality", out.site)
    rows = makeup_by_dimension(with_vendor).collect()
    shares, sizes = {}, {}
    for r in rows:
        shares[(r.cluster, r.dimension)] = shares.get((r.cluster, r.dimension), 0) + r.share
        sizes.setdefault(r.cluster, set()).add(r.cluster_size)
    assert len(shares) == 9 and shares == pytest.approx({key: 1.0 for key in shares})
    assert sorted(s for v in sizes.values() for s in v) == [40, 40, 41]
    vendor = [r for r in rows if r.dimension == "manufacturer"]
    assert len(vendor) == 6 and all(0.4 < r.share < 0.6 for r in vendor)   # ids alternate in every cluster


def test_map_setting():
    with pytest.raises(ValueError, match="clusters.map"):
        use_umap("tsne")
    assert use_umap("pca") is False
    installed = importlib.util.find_spec("umap") is not None
    assert use_umap("auto") is installed
    if not installed:
        with pytest.raises(ValueError, match="umap-learn"):
            use_umap("umap")


@pytest.mark.slow
def test_umap_map_separates_the_clusters(clustered, spark):
    pytest.importorskip("umap")
    out, truth = clustered
    mapped = umap_map(out, sample=60, epochs=50).select("id", "umap_x", "umap_y").toPandas()
    assert len(mapped) == len(truth) and mapped[["umap_x", "umap_y"]].notna().all().all()
    # fitted on 60 of 121 rows, every row mapped; each cluster's points sit closer
    # to their own centre than to another cluster's
    mapped["c"] = mapped["id"].map(truth)
    centres = mapped.groupby("c")[["umap_x", "umap_y"]].median()
    points = mapped[["umap_x", "umap_y"]].to_numpy()
    nearest = np.argmin(((points[:, None, :] - centres.to_numpy()[None]) ** 2).sum(-1), axis=1)
    assert (centres.index.to_numpy()[nearest] == mapped["c"].to_numpy()).mean() >= 0.95
