"""Benchmark: all-pairs k-NN (jobs/knn.py IVF) vs Spark ML BucketedRandomProjectionLSH.

    .venv/bin/python benchmarks/knn/run.py [--n 200000] [--dim 256] [--clusters 500]
                                           [--scaling 50000,100000] [--lsh-factor 3] [--no-lsh] [--json PATH]

Synthetic L2-normalised vectors with cluster structure (Gaussian clusters
around random centres). In one Spark session (local[2]):
  (c) ground truth: numpy brute force for 1,000 sampled queries;
  (a) all_pairs_knn (defaults), result written to parquet (time = full run);
  (b) BucketedRandomProjectionLSH approxSimilarityJoin (Euclidean; on unit
      vectors ||a-b||^2 = 2 * cosine distance) with the threshold at the 95th
      percentile of the true 10th-neighbour distance, a few bucketLength /
      numHashTables settings, each cancelled after lsh-factor x (a)'s time;
      top-10 per id by window, written to parquet;
then (a) again at the --scaling sizes. Reports recall@10 on the 1,000
queries, seconds, fraction of brute-force distance computations (n^2) and
peak memory (driver JVM + Python workers RSS sampled every 0.2 s, and the
per-task estimate for (a)). Prints markdown tables (and JSON with --json PATH).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def make_data(n, dim, clusters, spread, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    sizes = rng.zipf(1.5, clusters).astype(float)  # skewed cluster sizes
    p = np.minimum(sizes, 50) / np.minimum(sizes, 50).sum()
    labels = rng.choice(clusters, n, p=p)
    x = centers[labels] + spread * rng.normal(size=(n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_parquet(x, path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    n, d = x.shape
    vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), d).cast(pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": pa.array(np.arange(n, dtype=np.int64)), "vector": vec}), path,
                   row_group_size=20000)


def ground_truth(x, q_idx, k):
    d = 1.0 - x[q_idx] @ x.T
    d[np.arange(len(q_idx)), q_idx] = np.inf
    order = np.argsort(d, axis=1)[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


def recall(result_path, spark, q_idx, truth, k):
    from pyspark.sql import functions as F
    got = (spark.read.parquet(result_path).filter(F.col("id").isin([int(i) for i in q_idx]))
           .toPandas())
    found = {i: set(g.sort_values("distance")["neighbor_id"].head(k)) for i, g in got.groupby("id")}
    hits = sum(len(found.get(int(i), set()) & set(truth[r])) for r, i in enumerate(q_idx))
    return hits / (len(q_idx) * k)


class RssSampler:
    """Peak summed RSS of the JVM and all its descendant processes (Python workers)."""

    def __init__(self, root_pid):
        self.root, self.peak, self._stop = root_pid, 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _tree_rss(self):
        parents = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        parents[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    pass
        tree, frontier = {self.root}, [self.root]
        while frontier:
            p = frontier.pop()
            kids = [c for c, pp in parents.items() if pp == p and c not in tree]
            tree.update(kids)
            frontier += kids
        total = 0
        for pid in tree:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            time.sleep(0.2)

    def reset(self):
        self.peak = self._tree_rss()


def run_ivf(spark, path, out, k, sampler):
    from jobs.knn import all_pairs_knn
    df = spark.read.parquet(path).cache()
    df.count()
    sampler.reset()
    stats = {}
    t0 = time.monotonic()
    all_pairs_knn(df, k=k, stats=stats).write.mode("overwrite").parquet(out)
    seconds = time.monotonic() - t0
    df.unpersist()
    d = len(spark.read.parquet(path).first()["vector"])
    # one task: its queries + database rows as float32 (x3 for arrow/pandas/stack copies)
    # plus one distance chunk (<= CHUNK_CELLS floats or queries x base)
    from udfs.knn import CHUNK_CELLS
    task_bytes = 3 * 4 * d * (stats["max_task_queries"] + stats["max_task_base"]) + 4 * min(
        CHUNK_CELLS, stats["max_task_queries"] * stats["max_task_base"])
    return seconds, stats, sampler.peak, task_bytes


def run_lsh(spark, path, out, k, threshold, bucket, tables, timeout, sampler):
    from pyspark import InheritableThread
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import Window, functions as F

    df = spark.read.parquet(path).select("id", array_to_vector("vector").alias("features")).cache()
    df.count()
    sampler.reset()
    box, group = {}, f"lsh-{bucket}-{tables}"

    def body():
        try:
            spark.sparkContext.setJobGroup(group, group, interruptOnCancel=True)
            t0 = time.monotonic()
            model = BucketedRandomProjectionLSH(inputCol="features", outputCol="hashes", bucketLength=bucket,
                                                numHashTables=tables, seed=0).fit(df)
            pairs = (model.approxSimilarityJoin(df, df, threshold, distCol="e")
                     .select(F.col("datasetA.id").alias("id"), F.col("datasetB.id").alias("neighbor_id"), "e")
                     .filter("id != neighbor_id"))
            w = Window.partitionBy("id").orderBy("e")
            (pairs.withColumn("rank", F.row_number().over(w)).filter(F.col("rank") <= k)
             .select("id", "neighbor_id", (F.col("e") ** 2 / 2).alias("distance"), "rank")
             .write.mode("overwrite").parquet(out))
            box["seconds"] = time.monotonic() - t0
            # candidate pairs examined: pairs sharing a bucket in some table (upper bound, dupes counted)
            h = (model.transform(df).select(F.posexplode("hashes").alias("t", "h"))
                 .select("t", F.col("h").cast("string").alias("h")).groupBy("t", "h").count())
            box["candidates"] = h.select(F.sum(F.col("count") * F.col("count"))).first()[0]
        except Exception as exc:  # cancelled
            box["error"] = type(exc).__name__

    t = InheritableThread(target=body)
    t.start()
    t.join(timeout)
    if t.is_alive():
        spark.sparkContext.cancelJobGroup(group)
        t.join()
        box = {"timeout": True}
    df.unpersist()
    return box, sampler.peak


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--clusters", type=int, default=500)
    ap.add_argument("--spread", type=float, default=0.6)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--scaling", default="50000,100000")
    ap.add_argument("--lsh-factor", type=float, default=3.0)
    ap.add_argument("--no-lsh", action="store_true")
    ap.add_argument("--json", help="also write the full report (with job stats) to this path")
    args = ap.parse_args(argv)

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[2]").appName("knn-bench")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "8g")
             .config("spark.sql.shuffle.partitions", "16").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    jvm_pid = spark.sparkContext._jvm.ProcessHandle.current().pid()
    sampler = RssSampler(jvm_pid)
    tmp = tempfile.mkdtemp(prefix="knn-bench-")
    report = {"args": vars(args), "main": {}, "lsh": [], "scaling": []}
    k = args.k

    def one_size(n, with_lsh):
        x = make_data(n, args.dim, args.clusters, args.spread, seed=0)
        path = f"{tmp}/vec{n}.parquet"
        write_parquet(x, path)
        rng = np.random.default_rng(1)
        q_idx = rng.choice(n, args.queries, replace=False)
        t0 = time.monotonic()
        truth, tdist = ground_truth(x, q_idx, k)
        gt_seconds = time.monotonic() - t0
        seconds, stats, peak, task_bytes = run_ivf(spark, path, f"{tmp}/ivf{n}", k, sampler)
        row = {"n": n, "seconds": seconds, "recall": recall(f"{tmp}/ivf{n}", spark, q_idx, truth, k),
               "work_fraction": stats["work_fraction"], "peak_rss_gb": peak / 2**30,
               "task_estimate_mb": task_bytes / 2**20, "stats": stats}
        print(json.dumps({k_: v for k_, v in row.items() if k_ != "stats"}), flush=True)
        if not with_lsh:
            return row
        report["main"] = dict(row, ground_truth_seconds=gt_seconds,
                              ground_truth_fraction=args.queries / n)
        e10 = np.sqrt(2 * np.maximum(tdist[:, -1], 0))
        threshold = float(np.quantile(e10, 0.95))
        for scale, tables in [(1.0, 4), (2.0, 4), (2.0, 8)]:
            bucket = scale * threshold
            box, lpeak = run_lsh(spark, path, f"{tmp}/lsh{n}", k, threshold, bucket, tables,
                                 args.lsh_factor * seconds, sampler)
            entry = {"bucketLength": bucket, "numHashTables": tables, "threshold": threshold,
                     "peak_rss_gb": lpeak / 2**30, **box}
            if "seconds" in box:
                entry["recall"] = recall(f"{tmp}/lsh{n}", spark, q_idx, truth, k)
                entry["work_fraction"] = box.get("candidates", 0) / n ** 2
            print(json.dumps(entry), flush=True)
            report["lsh"].append(entry)
        return row

    report["scaling"].append(one_size(args.n, not args.no_lsh))
    for n in [int(s) for s in args.scaling.split(",") if s]:
        report["scaling"].append(one_size(n, False))
    report["scaling"].sort(key=lambda r: r["n"])

    m = report["main"]
    print(f"\n## n = {args.n}, d = {args.dim}, k = {k}, 2 cores local[2]\n")
    print("| method | recall@10 | seconds | brute-force work | peak RSS (JVM+workers) |")
    print("|---|---|---|---|---|")
    if m:
        print(f"| IVF all_pairs_knn (lists={m['stats']['lists']}, overlap={m['stats']['overlap']}) "
              f"| {m['recall']:.3f} | {m['seconds']:.0f} | {m['work_fraction']:.1%} | {m['peak_rss_gb']:.1f} GB |")
        for e in report["lsh"]:
            name = f"BRP LSH bucket={e['bucketLength']:.2f} tables={e['numHashTables']}"
            if "recall" in e:
                print(f"| {name} | {e['recall']:.3f} | {e['seconds']:.0f} | {e['work_fraction']:.1%} "
                      f"| {e['peak_rss_gb']:.1f} GB |")
            else:
                print(f"| {name} | - | > {args.lsh_factor * m['seconds']:.0f} (cancelled) | - "
                      f"| {e['peak_rss_gb']:.1f} GB |")
        print(f"| numpy brute force, {args.queries} queries (ground truth) | 1 | {m['ground_truth_seconds']:.1f} "
              f"| {args.queries / args.n:.1%} | - |")
    print("\n| n | lists | seconds | recall@10 | brute-force work | per-task estimate |")
    print("|---|---|---|---|---|---|")
    for r in report["scaling"]:
        print(f"| {r['n']} | {r['stats']['lists']} | {r['seconds']:.0f} | {r['recall']:.3f} "
              f"| {r['work_fraction']:.1%} | {r['task_estimate_mb']:.0f} MB |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    spark.stop()


if __name__ == "__main__":
    main()
