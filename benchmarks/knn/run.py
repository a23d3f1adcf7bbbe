"""Benchmark: all-pairs k-NN (jobs/knn.py IVF) vs Spark ML BucketedRandomProjectionLSH.

    .venv/bin/python benchmarks/knn/run.py [--n 200000] [--scaling 50000,100000] [--small 10000]
        [--budget-factor 10] [--max-budget 600] [--lsh-at-n 1] [--json benchmarks/results/knn.json]

Synthetic L2-normalised 256-d vectors in 500 Gaussian clusters with skewed
sizes. For every size: (c) ground truth by numpy brute force for 1,000
sampled queries; (a) all_pairs_knn with its defaults. At the --small sizes
and at --n also (b) BucketedRandomProjectionLSH approxSimilarityJoin
(Euclidean; on unit vectors ||a-b||^2 = 2 * cosine distance) with the
threshold at the 95th percentile of the true 10th-neighbour distance and a
few bucketLength / numHashTables settings, top-10 per id by a window.

Every Spark measurement runs in its own subprocess (own JVM, local[2],
driver memory 8g), so its peak memory is its own: the summed RSS of the
subprocess, its JVM and the Python workers, sampled every 0.2 s. An LSH
setting gets budget-factor x the IVF time at the same n (capped at
--max-budget seconds) plus the IVF run's start-up time; past that its process
group is killed and the setting is recorded as over budget. The JSON report
is rewritten after every measurement, so a cut-off run keeps what it has.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# (bucketLength as a multiple of the threshold, numHashTables); wider buckets
# and more tables raise recall and cost. The first three run at --small sizes.
LSH_SETTINGS = [(1.0, 4), (2.0, 4), (2.0, 8), (4.0, 4)]


def make_data(n, dim, clusters, spread, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    sizes = rng.zipf(1.5, clusters).astype(float)  # skewed cluster sizes
    p = np.minimum(sizes, 50) / np.minimum(sizes, 50).sum()
    labels = rng.choice(clusters, n, p=p)
    x = centers[labels] + spread * rng.normal(size=(n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def load_embeddings(uri):
    """The `embedding` column of an embeddings Delta table (e.g. the demo's), L2-normalised
    as the neighbors stage does."""
    from deltalake import DeltaTable
    import pyarrow as pa
    table = pa.table(DeltaTable(uri).to_pyarrow_table(columns=["embedding"]))
    x = np.array([v for v in table.column("embedding").to_pylist() if v is not None], dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


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


def recall(result_path, q_idx, truth, k):
    """recall@k on the sampled queries; reads only their rows of the result."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    got = ds.dataset(result_path).to_table(filter=pc.field("id").isin(q_idx.astype(np.int64)),
                                           columns=["id", "neighbor_id", "distance"]).to_pandas()
    found = {i: set(g.sort_values("distance")["neighbor_id"].head(k)) for i, g in got.groupby("id")}
    hits = sum(len(found.get(int(i), set()) & set(truth[r])) for r, i in enumerate(q_idx))
    return hits / (len(q_idx) * k)


# ---------------------------------------------------------------- subprocess side

def spark_session():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[2]").appName("knn-bench")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "8g")
             .config("spark.sql.shuffle.partitions", "16").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def say(**fields):
    print(json.dumps(fields, default=float), flush=True)


def worker_ivf(data, out, k, exact=False):
    from dicom_triage.jobs.knn import all_pairs_knn
    spark = spark_session()
    df = spark.read.parquet(data).cache()
    df.count()
    stats = {}
    t0 = time.monotonic()
    all_pairs_knn(df, k=k, exact=exact, stats=stats).write.mode("overwrite").parquet(out)
    say(seconds=time.monotonic() - t0, stats=stats)


def worker_lsh(data, out, k, threshold, bucket, tables):
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import Window, functions as F
    spark = spark_session()
    df = spark.read.parquet(data).select("id", array_to_vector("vector").alias("features")).cache()
    df.count()
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
    say(seconds=time.monotonic() - t0)
    # candidate pairs examined: pairs sharing a bucket in some table (dupes across tables counted)
    h = (model.transform(df).select(F.posexplode("hashes").alias("t", "h"))
         .select("t", F.col("h").cast("string").alias("h")).groupBy("t", "h").count())
    say(candidates=h.select(F.sum(F.col("count") * F.col("count"))).first()[0])


# ---------------------------------------------------------------- parent side

def tree_rss(root):
    """Summed RSS (bytes) of root and all its descendants."""
    parents = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    parents[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    children = {}
    for c, p in parents.items():
        children.setdefault(p, []).append(c)
    tree, frontier = [root], [root]
    while frontier:
        kids = children.get(frontier.pop(), [])
        tree += kids
        frontier += kids
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def measure(args, timeout):
    """Run this script as a worker subprocess: (JSON fields it printed, wall
    seconds, peak tree RSS in GB, timed_out)."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", *args], stdout=out,
                                stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
        peak, timed_out = 0, False
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            if time.monotonic() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker's own process group
                proc.wait()
                timed_out = True
                break
            time.sleep(0.2)
        out.seek(0)
        fields = {}
        for line in out:
            if line.startswith("{"):
                fields.update(json.loads(line))
    return fields, time.monotonic() - started, peak / 2**30, timed_out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--scaling", default="50000,100000", help="IVF alone at these sizes")
    ap.add_argument("--small", default="10000", help="IVF and LSH at these sizes")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--clusters", type=int, default=500)
    ap.add_argument("--spread", type=float, default=0.6)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--budget-factor", type=float, default=10.0)
    ap.add_argument("--max-budget", type=float, default=600.0, help="cap on one LSH setting's budget (s)")
    ap.add_argument("--lsh-at-n", default="1", help="indices into LSH_SETTINGS to try at --n")
    ap.add_argument("--exact-at", default="", help="also run the exact mode (one list) at these sizes")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/knn.json"))
    ap.add_argument("--embeddings", help="an embeddings Delta table to use instead of synthetic data "
                    "(--n becomes its size; use with --scaling '' --small '')")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        if kind in ("ivf", "exact"):
            worker_ivf(rest[0], rest[1], int(rest[2]), exact=kind == "exact")
        else:
            worker_lsh(rest[0], rest[1], int(rest[2]), float(rest[3]), float(rest[4]), int(rest[5]))
        return

    real = load_embeddings(args.embeddings) if args.embeddings else None
    if real is not None:
        args.n, args.dim = real.shape
        args.queries = min(args.queries, args.n)
    tmp = tempfile.mkdtemp(prefix="knn-bench-")
    k = args.k
    report = {"command": "benchmarks/knn/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "args": vars(args), "cpu_count": os.cpu_count(), "sizes": []}

    def save():
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))

    prepared = {}

    def prepare(n):
        """Data as parquet and numpy ground truth for the sampled queries (c)."""
        if n not in prepared:
            x = real if real is not None else make_data(n, args.dim, args.clusters, args.spread, seed=0)
            data = f"{tmp}/vec{n}.parquet"
            write_parquet(x, data)
            q_idx = np.random.default_rng(1).choice(n, args.queries, replace=False)
            t0 = time.monotonic()
            truth, tdist = ground_truth(x, q_idx, k)
            entry = {"n": n, "ground_truth": {"queries": args.queries, "seconds": time.monotonic() - t0}}
            report["sizes"].append(entry)
            prepared[n] = (data, q_idx, truth, tdist, entry)
        return prepared[n]

    def ivf(n, mode="ivf"):
        data, q_idx, truth, _, entry = prepare(n)
        fields, wall, peak, _ = measure([mode, data, f"{tmp}/{mode}{n}", str(k)], timeout=7200)
        entry[mode] = dict(fields, wall_seconds=wall, peak_rss_gb=peak,
                            recall=recall(f"{tmp}/{mode}{n}", q_idx, truth, k),
                            work_fraction=fields["stats"]["work_fraction"])
        print(json.dumps({"n": n, mode: {f: v for f, v in entry[mode].items() if f != "stats"}},
                         default=float), flush=True)
        save()

    def lsh(n, settings):
        data, q_idx, truth, tdist, entry = prepare(n)
        # Euclidean threshold covering the true 10th neighbour of 95 % of the queries
        threshold = float(np.quantile(np.sqrt(2 * np.maximum(tdist[:, -1], 0)), 0.95))
        budget = min(args.budget_factor * entry["ivf"]["seconds"], args.max_budget)
        startup = entry["ivf"]["wall_seconds"] - entry["ivf"]["seconds"]
        entry["lsh_budget_seconds"] = budget
        entry.setdefault("lsh", [])
        for scale, tables in settings:
            out = f"{tmp}/lsh{n}-{scale}-{tables}"
            fields, wall, peak, _ = measure(
                ["lsh", data, out, str(k), str(threshold), str(scale * threshold), str(tables)],
                timeout=budget + startup)
            row = {"bucketLength": scale * threshold, "numHashTables": tables, "threshold": threshold,
                   "wall_seconds": wall, "peak_rss_gb": peak, "over_budget": "seconds" not in fields,
                   **fields}
            if "seconds" in fields:
                row["recall"] = recall(out, q_idx, truth, k)
                if fields.get("candidates") is not None:
                    row["work_fraction"] = fields["candidates"] / n ** 2
            entry["lsh"].append(row)
            print(json.dumps({"n": n, "lsh": row}, default=float), flush=True)
            save()

    # IVF growth first, then LSH at full size, then LSH where it can finish
    for n in sorted({int(s) for s in args.scaling.split(",") if s} | {args.n}):
        ivf(n)
    lsh(args.n, [LSH_SETTINGS[int(i)] for i in args.lsh_at_n.split(",") if i])
    for n in [int(s) for s in args.small.split(",") if s]:
        ivf(n)
        lsh(n, LSH_SETTINGS[:3])
    # the same k-NN in exact mode (one list): recall 1 against LSH's best where LSH finishes
    for n in [int(s) for s in args.exact_at.split(",") if s]:
        ivf(n, "exact")
    report["sizes"].sort(key=lambda e: e["n"])
    save()


if __name__ == "__main__":
    main()
