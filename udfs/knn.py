"""Exact k-NN kernels for the IVF all-pairs k-NN (jobs/knn.py), plain numpy.

Vectors are L2-normalised float32; the distance is cosine distance
1 - q.b computed with one BLAS matrix product per query chunk. Torch is used
for the product only when a CUDA device is present (guarded import).
"""
from __future__ import annotations

import numpy as np

# Query rows per matrix product: memory of one product is CHUNK_CELLS floats.
CHUNK_CELLS = 4096 * 20000


def _cuda():
    try:  # pragma: no cover - no GPU in CI
        import torch
        return torch if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover
        return None


def _similarity(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    torch = _cuda()
    if torch is not None and q.shape[0] * b.shape[0] >= 1 << 20:  # pragma: no cover
        with torch.no_grad():
            out = torch.from_numpy(q).cuda() @ torch.from_numpy(b).cuda().T
        return out.cpu().numpy()
    return q @ b.T


def _sorted_rows(ids: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the k smallest distances, sorted by (distance, id); pad -1 / inf."""
    q, c = dist.shape
    out_ids = np.full((q, k), -1, dtype=np.int64)
    out_dist = np.full((q, k), np.inf, dtype=np.float32)
    if c == 0 or q == 0:
        return out_ids, out_dist
    if c > k:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        dist = np.take_along_axis(dist, part, axis=1)
        ids = np.take_along_axis(ids, part, axis=1)
    order = np.lexsort((ids, dist), axis=1)
    dist = np.take_along_axis(dist, order, axis=1)
    ids = np.take_along_axis(ids, order, axis=1)
    ids = np.where(np.isfinite(dist), ids, -1)
    width = min(k, dist.shape[1])
    out_ids[:, :width] = ids[:, :width]
    out_dist[:, :width] = dist[:, :width]
    return out_ids, out_dist


def topk_block(queries: np.ndarray, q_ids: np.ndarray, base: np.ndarray, b_ids: np.ndarray,
               k: int, exclude_self: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest `base` rows of every query: (ids [q,k] int64, dist [q,k] float32).

    Cosine distance 1 - q.b (inputs L2-normalised). A query never returns its
    own id when `exclude_self`; rows with fewer than k candidates are padded
    with id -1 and distance inf.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    q_ids = np.asarray(q_ids, dtype=np.int64)
    b_ids = np.asarray(b_ids, dtype=np.int64)
    nq, nb = queries.shape[0], base.shape[0]
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    out_dist = np.full((nq, k), np.inf, dtype=np.float32)
    if nq == 0 or nb == 0 or k <= 0:
        return out_ids, out_dist
    chunk = max(1, min(nq, CHUNK_CELLS // max(nb, 1)))
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        dist = 1.0 - _similarity(queries[start:stop], base)
        if exclude_self:
            dist[q_ids[start:stop, None] == b_ids[None, :]] = np.inf
        ids = np.broadcast_to(b_ids, dist.shape)
        out_ids[start:stop], out_dist[start:stop] = _sorted_rows(ids, dist, k)
    return out_ids, out_dist


def merge_topk(ids_list, dist_list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge candidate lists [q, k_i] of the same queries: dedupe ids (keep the
    smallest distance), drop padding (-1), keep the k smallest per row."""
    ids = np.concatenate([np.asarray(a, dtype=np.int64) for a in ids_list], axis=1)
    dist = np.concatenate([np.asarray(a, dtype=np.float32) for a in dist_list], axis=1).copy()
    dist[ids < 0] = np.inf
    if ids.shape[1]:
        # sort by (id, distance): the first of each run of equal ids is the best copy
        order = np.lexsort((dist, ids), axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        dist = np.take_along_axis(dist, order, axis=1)
        dup = np.zeros(ids.shape, dtype=bool)
        dup[:, 1:] = ids[:, 1:] == ids[:, :-1]
        dist[dup] = np.inf
    return _sorted_rows(ids, dist, k)


def assign_lists(vectors: np.ndarray, centroids: np.ndarray, m: int) -> np.ndarray:
    """[n, m] indices of the m nearest centroids (highest cosine), nearest first."""
    vectors = np.asarray(vectors, dtype=np.float32)
    centroids = np.asarray(centroids, dtype=np.float32)
    m = min(m, centroids.shape[0])
    n = vectors.shape[0]
    out = np.empty((n, m), dtype=np.int64)
    chunk = max(1, CHUNK_CELLS // max(centroids.shape[0], 1))
    for start in range(0, n, chunk):
        dist = 1.0 - vectors[start:start + chunk] @ centroids.T
        idx = np.broadcast_to(np.arange(centroids.shape[0], dtype=np.int64), dist.shape)
        out[start:start + chunk] = _sorted_rows(idx, dist, m)[0]
    return out
