"""k-NN kernels (udfs/knn.py) against numpy brute force, and the IVF job (jobs/knn.py)."""
from __future__ import annotations

import numpy as np
import pytest

from dicom_triage.udfs.knn import assign_lists, merge_topk, topk_block


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(x, ids, k):
    d = 1.0 - x @ x.T
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(d, order, axis=1)


def clustered(n, dim, clusters, seed, spread=0.35):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))
    return unit(x)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = unit(rng.normal(size=(400, 24)))
    ids = rng.permutation(10**6)[:400].astype(np.int64)
    return x, ids


def test_topk_block_matches_brute_force(data, monkeypatch):
    x, ids = data
    want_ids, want_d = brute(x, ids, 7)
    from dicom_triage.udfs import knn as knn_module
    monkeypatch.setattr(knn_module, "CHUNK_CELLS", 50 * 400)  # force several query chunks
    got_ids, got_d = topk_block(x, ids, x, ids, 7)
    assert (got_ids == want_ids).all()
    np.testing.assert_allclose(got_d, want_d, atol=1e-5)
    assert not (got_ids == ids[:, None]).any()


def test_topk_block_pads_when_few_candidates(data):
    x, ids = data
    got_ids, got_d = topk_block(x[:3], ids[:3], x[:4], ids[:4], 6)
    assert (got_ids[:, 3:] == -1).all() and np.isinf(got_d[:, 3:]).all()
    assert (got_ids[:, :3] >= 0).all() and not (got_ids == ids[:3, None]).any()
    empty_ids, empty_d = topk_block(x[:2], ids[:2], x[:0], ids[:0], 3)
    assert (empty_ids == -1).all() and np.isinf(empty_d).all()


def test_merge_topk_matches_brute_force(data):
    x, ids = data
    want_ids, want_d = brute(x, ids, 5)
    parts = [topk_block(x, ids, x[a:b], ids[a:b], 5) for a, b in [(0, 200), (150, 320), (300, 400)]]
    got_ids, got_d = merge_topk([p[0] for p in parts], [p[1] for p in parts], 5)
    assert (got_ids == want_ids).all()
    np.testing.assert_allclose(got_d, want_d, atol=1e-5)
    # duplicates across lists are kept once
    twice_ids, _ = merge_topk([parts[0][0], parts[0][0]], [parts[0][1], parts[0][1]], 10)
    for row in twice_ids:
        real = row[row >= 0]
        assert len(real) == len(set(real)) == 5


def test_assign_lists_nearest_first(data):
    x, _ = data
    c = x[:10]
    got = assign_lists(x, c, 3)
    want = np.argsort(-(x @ c.T), axis=1, kind="stable")[:, :3]
    assert (got == want).all()


def frame(spark, x, ids):
    import pandas as pd
    return spark.createDataFrame(pd.DataFrame({"id": ids, "vector": [v.tolist() for v in x]}), "id long, vector array<float>")


def collect_knn(result, k):
    pdf = result.toPandas().sort_values(["id", "rank"])
    return {i: (g["neighbor_id"].to_numpy(), g["distance"].to_numpy(), g["rank"].to_numpy())
            for i, g in pdf.groupby("id")}


def test_exact_equals_brute_force_with_blocks_on_both_sides(spark):
    from dicom_triage.jobs.knn import all_pairs_knn

    rng = np.random.default_rng(3)
    x = unit(rng.normal(size=(500, 32)))
    ids = rng.choice(10**12, 500, replace=False).astype(np.int64)
    want_ids, want_d = brute(x, ids, 5)
    stats = {}
    # lists unset and n <= exact_below: the exact mode (as exact=True)
    got = collect_knn(all_pairs_knn(frame(spark, x, ids), k=5, exact_below=500, max_block=128, stats=stats), 5)
    assert stats["exact"] and stats["work_fraction"] == 1.0 and stats["query_blocks"] == 4 and stats["db_blocks"] == 4
    assert stats["tasks"] == 16 and stats["split_lists"] == 1
    # no task sees the whole list: the documented bound max_block + 3 sqrt(max_block)
    assert 100 < stats["max_task_queries"] <= 128 + 3 * 128 ** 0.5, stats
    assert 100 < stats["max_task_base"] <= 128 + 3 * 128 ** 0.5, stats
    assert len(got) == 500
    for row, i in enumerate(ids):
        assert (got[i][0] == want_ids[row]).all()
        np.testing.assert_allclose(got[i][1], want_d[row], atol=1e-5)
        assert (got[i][2] == np.arange(1, 6)).all()


def test_database_split_does_not_change_the_approximate_result(spark):
    from dicom_triage.jobs.knn import all_pairs_knn

    n, k = 1500, 5
    x = clustered(n, 32, 6, seed=7)
    ids = np.arange(n, dtype=np.int64)
    df = frame(spark, x, ids)
    whole_stats, split_stats = {}, {}
    whole = collect_knn(all_pairs_knn(df, k=k, lists=8, overlap=3, stats=whole_stats), k)
    split = collect_knn(all_pairs_knn(df, k=k, lists=8, overlap=3, max_block=150, stats=split_stats), k)
    assert whole_stats["split_lists"] == 0 and split_stats["split_lists"] > 0
    assert split_stats["max_task_base"] <= 150 + 3 * 150 ** 0.5 < whole_stats["max_task_base"]
    assert whole_stats["distance_computations"] == split_stats["distance_computations"]
    assert set(whole) == set(split) == set(ids)
    for i in ids:
        assert (whole[i][0] == split[i][0]).all() and (whole[i][2] == split[i][2]).all()
        np.testing.assert_allclose(whole[i][1], split[i][1], atol=1e-5)


def test_approximate_recall_on_clusters(spark):
    from dicom_triage.jobs.knn import all_pairs_knn

    n, k = 3000, 10
    x = clustered(n, 64, 30, seed=5)
    ids = np.arange(n, dtype=np.int64) * 3 + 11
    want_ids, _ = brute(x, ids, k)
    stats = {}
    result = all_pairs_knn(frame(spark, x, ids), k=k, stats=stats)
    got = collect_knn(result, k)
    hits = sum(len(set(got.get(i, ([], []))[0]) & set(want_ids[r])) for r, i in enumerate(ids))
    recall = hits / (n * k)
    assert recall >= 0.95, (recall, stats)
    assert stats["work_fraction"] < 0.15, stats  # the target for the defaults
    assert all(i not in got[i][0] for i in got)
    assert all(len(set(v[0])) == len(v[0]) for v in got.values())


def test_k_larger_than_candidates(spark):
    from dicom_triage.jobs.knn import all_pairs_knn

    x = unit(np.random.default_rng(9).normal(size=(6, 8)))
    ids = np.arange(6, dtype=np.int64)
    got = collect_knn(all_pairs_knn(frame(spark, x, ids), k=10, exact=True), 10)
    assert set(got) == set(ids)
    for i, (nbr, dist, _) in got.items():
        assert sorted(nbr) == [j for j in ids if j != i]
        assert (np.diff(dist) >= 0).all()
