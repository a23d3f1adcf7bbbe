"""All-pairs approximate k-NN on Spark: IVF with overlapping lists.

    all_pairs_knn(df[id long, vector array<float>], k=10) -> DataFrame[id, neighbor_id, distance, rank]

1. Coarse centroids: scikit-learn KMeans on a driver sample of at most
   `sample_size` vectors (`df.sample().limit()`, never the whole table),
   re-normalised (spherical k-means), shipped to the executors in the closure.
2. Assignment (`mapInPandas`): every vector is a DATABASE member of its
   `overlap` nearest lists and a QUERY of its single nearest list. A true
   neighbour x of q is found when q's nearest list is among x's `overlap`
   nearest lists, which holds for almost all close pairs. Each query lives in
   exactly one list, so an unsplit list needs no cross-list merge.
3. Blocks: a list's queries are split into ceil(queries / max_block) query
   blocks and its database part into ceil(database / max_block) database
   blocks, both by hash of id. One task is one group (list, query block,
   database block), so it holds about `max_block` queries and `max_block`
   database vectors at most: the hash split adds binomial noise (about
   +-3 * sqrt(max_block), 2 % at 20000); `stats` reports the measured maxima.
   Inside a task `udfs.knn.topk_block` chunks the queries so the distance
   matrix stays below ~80M floats.
4. `groupBy("list", "qblock", "dbblock").applyInPandas` computes exact k-NN
   in each group. Only for lists split on the database side, the partial
   top-k of the database blocks are merged per query (a window over id); the
   common path costs no extra shuffle.

Defaults: lists = round(sqrt(n)) clamped to [1, 1024], overlap = 6 (each
vector stored 6x; work ~ overlap / lists of brute force plus list size
imbalance, so the work fraction falls as n grows); max_block = 20000 bounds
task memory, not accuracy, so it does not depend on n. On the benchmark's
diffuse clustered data (benchmarks/knn, 256-d, 500 clusters) a numpy
simulation of this assignment gave recall@10 0.971 / 0.983 / 0.987 / 0.998 at
4.4 / 2.9 / 2.1 / 1.6 % of brute-force work for n = 20k / 50k / 100k / 200k,
against 0.93-0.97 with sqrt(n) / 2 lists at overlap 5. Part of that gain is
the data: with more lists the lists come closer to the 500 true clusters. On
data with a few large clusters each one is cut into several lists and recall
rests on the overlap. `exact=True`, lists=1 or overlap >= lists gives one list
holding everything: exact brute force (equal to numpy's), still split into
blocks.

Pass `stats={}` to receive n, lists, overlap, the block and task counts, the
number of distance computations (sum over lists of queries x database size,
counted on the driver from the list sizes), its fraction of brute force
(n^2) and the largest task (measured with one more pass over the ids).
"""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window, functions as F
from pyspark.sql.types import (ArrayType, DoubleType, FloatType, IntegerType, LongType, StructField,
                               StructType)

KNN_SCHEMA = StructType([StructField("id", LongType(), False),
                         StructField("neighbor_id", LongType(), False),
                         StructField("distance", DoubleType(), False),
                         StructField("rank", IntegerType(), False)])

ASSIGNED_SCHEMA = StructType([StructField("id", LongType()),
                              StructField("vector", ArrayType(FloatType())),
                              StructField("qlist", IntegerType()),
                              StructField("dblists", ArrayType(IntegerType()))])


def default_lists(n: int) -> int:
    return int(min(1024, max(1, round(math.sqrt(max(n, 1))))))


# Lists each vector joins. Constant: with sqrt(n) lists the work fraction
# (~ overlap / lists) already shrinks as n grows.
DEFAULT_OVERLAP = 6


def fit_centroids(df: DataFrame, n: int, lists: int, sample_size: int, seed: int) -> np.ndarray:
    """Spherical k-means centroids [lists, d] from a driver sample of <= sample_size rows."""
    from sklearn.cluster import KMeans

    fraction = min(1.0, 1.2 * sample_size / max(n, 1))
    sample = df.select("vector").sample(False, fraction, seed).limit(sample_size).toPandas()
    x = np.stack(sample["vector"].to_numpy()).astype(np.float32)
    lists = min(lists, len(x))
    km = KMeans(n_clusters=lists, n_init=1, max_iter=30, random_state=seed).fit(x)
    c = km.cluster_centers_.astype(np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def _assigner(centroids: np.ndarray | None, overlap: int):
    def assign(batches):
        from dicom_triage.udfs.knn import assign_lists
        for pdf in batches:
            if centroids is None:
                near = np.zeros((len(pdf), 1), dtype=np.int64)
            else:
                near = assign_lists(np.stack(pdf["vector"].to_numpy()), centroids, overlap)
            yield pd.DataFrame({"id": pdf["id"], "vector": pdf["vector"],
                                "qlist": near[:, 0].astype(np.int32),
                                "dblists": list(near.astype(np.int32))})
    return assign


def _searcher(k: int):
    def search(pdf: pd.DataFrame) -> pd.DataFrame:
        from dicom_triage.udfs.knn import topk_block
        q = pdf[pdf["role"] == 0]
        b = pdf[pdf["role"] == 1]
        if q.empty or b.empty:
            return pd.DataFrame({"id": [], "neighbor_id": [], "distance": [], "rank": []}).astype(
                {"id": "int64", "neighbor_id": "int64", "distance": "float64", "rank": "int32"})
        ids, dist = topk_block(np.stack(q["vector"].to_numpy()), q["id"].to_numpy(),
                               np.stack(b["vector"].to_numpy()), b["id"].to_numpy(), k)
        keep = ids >= 0
        rows, cols = np.nonzero(keep)
        return pd.DataFrame({"id": q["id"].to_numpy()[rows].astype(np.int64),
                             "neighbor_id": ids[keep], "distance": dist[keep].astype(np.float64),
                             "rank": (cols + 1).astype(np.int32)})
    return search


def _block_counts(counts: dict, lists: int, max_block: int) -> list[int]:
    """Blocks per list: ceil(count / max_block), 0 for an empty list."""
    return [math.ceil(counts.get(i, 0) / max_block) for i in range(lists)]


def _per_list(values: list[int]):
    """Column: values[list] (a literal array indexed by the list number)."""
    return F.element_at(F.array(*[F.lit(v) for v in values]), F.col("list") + 1)


def _largest_blocks(queries: DataFrame, base: DataFrame) -> dict:
    """Measured sizes of the largest query and database block (one more pass
    over the assignment; only when stats are asked for)."""
    sizes = (queries.filter("dbblock = 0").select("role", "list", F.col("qblock").alias("block"))
             .unionByName(base.filter("qblock = 0").select("role", "list", F.col("dbblock").alias("block")))
             .groupBy("role", "list", "block").count().groupBy("role").agg(F.max("count").alias("m")))
    largest = {r["role"]: int(r["m"]) for r in sizes.collect()}
    return {"max_task_queries": largest.get(0, 0), "max_task_base": largest.get(1, 0)}


def all_pairs_knn(df: DataFrame, k: int = 10, lists: int | None = None, overlap: int | None = None,
                  max_block: int = 20000, sample_size: int = 20000, seed: int = 0,
                  exact: bool = False, exact_below: int = 0, stats: dict | None = None) -> DataFrame:
    """k nearest neighbours (cosine distance, self excluded) of every row of
    df[id long, vector array<float> L2-normalised]: DataFrame[id, neighbor_id,
    distance, rank 1..k]. Fewer than k rows for an id when its list holds
    fewer candidates. With `lists` unset, n <= `exact_below` runs exact. See
    the module docstring for the method and bounds."""
    started = time.monotonic()
    df = df.select(F.col("id").cast("long"), F.col("vector").cast(ArrayType(FloatType())))
    n = df.count()
    if lists is None and n <= exact_below:  # brute force is cheaper than fitting lists
        exact = True
    lists = default_lists(n) if lists is None else max(1, int(lists))
    overlap = DEFAULT_OVERLAP if overlap is None else max(1, int(overlap))
    max_block = max(1, int(max_block))
    centroids = None
    if exact or lists == 1 or overlap >= lists:
        lists, overlap = 1, 1
    else:
        centroids = fit_centroids(df, n, lists, sample_size, seed)
        lists = centroids.shape[0]
        overlap = min(overlap, lists)
    fitted = time.monotonic()

    assigned = df.mapInPandas(_assigner(centroids, overlap), ASSIGNED_SCHEMA)
    # one pass for both sides: dblists[0] is the query list (nearest first)
    counts = (assigned.select(F.posexplode("dblists").alias("pos", "l")).groupBy("l")
              .agg(F.sum((F.col("pos") == 0).cast("long")).alias("q"), F.count("*").alias("db")).collect())
    q_counts = {r["l"]: r["q"] for r in counts if r["q"]}
    db_counts = {r["l"]: r["db"] for r in counts}
    q_blocks = _block_counts(q_counts, lists, max_block)
    db_blocks = [b if q_blocks[i] else 0 for i, b in enumerate(_block_counts(db_counts, lists, max_block))]
    split = [i for i in range(lists) if db_blocks[i] > 1]

    # Every query block of a list meets every database block of it: queries
    # are copied once per database block, database rows once per query block.
    queries = (assigned.select(F.col("qlist").alias("list"), "id", "vector")
               .withColumn("qblock", F.pmod(F.xxhash64("id"), _per_list(q_blocks)).cast("int"))
               .withColumn("dbblock", F.explode(F.sequence(F.lit(0), _per_list(db_blocks) - 1)))
               .withColumn("role", F.lit(0)))
    base = (assigned.select(F.explode("dblists").alias("list"), "id", "vector")
            .filter(_per_list(q_blocks) > 0)  # lists without queries need no search
            .withColumn("dbblock", F.pmod(F.xxhash64("id"), _per_list(db_blocks)).cast("int"))
            .withColumn("qblock", F.explode(F.sequence(F.lit(0), _per_list(q_blocks) - 1)))
            .withColumn("role", F.lit(1)))
    rows = queries.unionByName(base)
    is_split = _per_list([int(b > 1) for b in db_blocks]) == 1

    if stats is not None:
        work = sum(q_counts.get(i, 0) * db_counts.get(i, 0) for i in range(lists))
        stats.update(n=n, lists=lists, overlap=overlap, exact=lists == 1, max_block=max_block,
                     query_blocks=sum(q_blocks), db_blocks=sum(db_blocks), split_lists=len(split),
                     tasks=sum(q * b for q, b in zip(q_blocks, db_blocks)),
                     distance_computations=int(work), brute_force=int(n) * int(n),
                     work_fraction=work / max(n * n, 1),
                     max_list_queries=max(q_counts.values() or [0]),
                     max_list_base=max(db_counts.values() or [0]),
                     **_largest_blocks(queries, base),
                     fit_seconds=fitted - started)

    key = ["list", "qblock", "dbblock"]
    whole = rows.filter(~is_split).groupBy(*key).applyInPandas(_searcher(k), KNN_SCHEMA)
    if not split:
        return whole
    # Split lists: each database block gives a partial top-k per query; keep the
    # k best over the blocks. A database row sits in one block, so no duplicates.
    partial = rows.filter(is_split).groupBy(*key).applyInPandas(_searcher(k), KNN_SCHEMA)
    best = Window.partitionBy("id").orderBy("distance", "neighbor_id")
    merged = (partial.withColumn("rank", F.row_number().over(best)).filter(F.col("rank") <= k)
              .select("id", "neighbor_id", "distance", F.col("rank").cast("int")))
    return whole.unionByName(merged)
