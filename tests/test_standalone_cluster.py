"""The pipeline on a real multi-node Spark cluster, unchanged: a standalone
master and two workers (one core each) on loopback, the project shipped only as
its wheel (`spark-submit --py-files`), the delivery, the output and the
configuration file in S3 (moto on loopback). The tables it writes must equal
those of the same run on local Spark, and tasks must have run on both workers.
A spark-submit to the cluster without the identifier secret must be refused at
start, even in demo mode.

Nothing is skipped: without Java the daemons do not start and the test fails."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.standalone_cluster import StandaloneCluster, interpreter_without_project

from dicom_triage.jobs.demo_data import generate_delivery
from dicom_triage.jobs.summary import TABLES

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SECRET = "standalone-cluster-test-secret-0123456789"
PIPELINE_TABLES = ["instances", "ingest_errors", "pixel_stats", "series", "embeddings", "anatomy", "neighbors",
                   "duplicates", "clusters", "cluster_makeup", "inclusion", "review_queue"]
# Columns that differ between two runs by design: the run's id and its start
# and ingest times.
RUN_SPECIFIC = {"run_id", "computed_at", "ingested_at"}
# Two JVMs and two sets of Python workers may round differently in the last bits.
# Embeddings are float32 sums whose order depends on each process's thread count: ~1e-6 apart.
# A cosine distance is 1 - a float32 dot product: its error is absolute (~sqrt(dim) * 6e-8,
# seen 4e-7 on a distance of 0.03), however small the distance.
REL_TOL, ABS_TOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def world(tmp_path_factory, s3_server):
    """The S3 bucket with a small delivery and the configuration file, the wheel,
    a Python without the project, and the running cluster."""
    import s3fs

    root = tmp_path_factory.mktemp("standalone")
    delivery = root / "delivery"
    generate_delivery(str(delivery), seed=7)
    for site in ("site_b", "site_c"):  # keep it small: two sites, about 150 objects
        shutil.rmtree(delivery / site)
    bucket = s3_server.create_bucket("cluster-delivery")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server.endpoint_url})
    fs.put(str(delivery) + "/", f"{bucket}/delivery", recursive=True)
    expected = json.loads((delivery / "_ground_truth.json").read_text())["expectations"]
    conf = {
        "storage": {"options": {"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": "testing"}},
        "neighbors": {"exact": True},
        "clusters": {"map": "pca"},
        "expect": {"modalities": expected["modalities"]},
        "anatomy": {"expected_regions": expected["body_regions"]},
    }
    fs.pipe(f"{bucket}/conf/triage.yaml", yaml.safe_dump(conf).encode())

    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel, = dist.glob("dicom_triage-*.whl")
    python = interpreter_without_project(root)
    probe = subprocess.run([python, "-c", "import dicom_triage"], capture_output=True, text=True, cwd=root,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert probe.returncode != 0 and "No module named 'dicom_triage'" in probe.stderr, "the project must come only from the wheel"

    # The daemons (and so the executors) get neither the secret nor object-store credentials.
    daemon_env = {k: v for k, v in os.environ.items()
                  if not k.startswith("AWS_") and k not in ("TRIAGE_HMAC_SECRET", "PYTHONPATH")}
    cluster = StandaloneCluster(root / "cluster", workers=2, cores=1, memory="2g", env=daemon_env)
    with cluster:
        yield {"root": root, "bucket": bucket, "endpoint": s3_server.endpoint_url, "wheel": str(wheel),
               "python": python, "cluster": cluster, "options": conf["storage"]["options"]}


def driver_env(world, secret: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRIAGE_HMAC_SECRET", "PYTHONPATH")}
    env["AWS_ENDPOINT_URL"] = world["endpoint"]  # to read --conf s3://... before storage.options are known
    if secret:
        env["TRIAGE_HMAC_SECRET"] = secret
    return env


def submit(world, output: str, secret: str | None, extra: list[str] = ()) -> subprocess.CompletedProcess:
    python, bucket = world["python"], world["bucket"]
    args = ["--conf", f"spark.pyspark.python={python}", "--conf", f"spark.pyspark.driver.python={python}",
            "--conf", "spark.executor.memory=1g", "--conf", "spark.ui.enabled=false",
            "--py-files", world["wheel"]]
    if secret:
        args += ["--conf", f"spark.executorEnv.TRIAGE_HMAC_SECRET={secret}"]
    args += [str(REPO / "jobs" / "__main__.py"), "run", "--input", f"s3://{bucket}/delivery", "--output", output,
             "--conf", f"s3://{bucket}/conf/triage.yaml", *extra]
    cwd = world["root"] / f"driver-{output.rsplit('/', 1)[-1]}"
    cwd.mkdir()
    return world["cluster"].submit(args, driver_env(world, secret), cwd=cwd)


def s3_keys(world, prefix: str) -> list[str]:
    import s3fs
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": world["endpoint"]}, skip_instance_cache=True)
    return fs.find(f"{world['bucket']}/{prefix}")


def read_tables(world, output: str) -> dict[str, list[dict]]:
    """Every result table under `output`: its rows in key order, without what may differ between runs."""
    from deltalake import DeltaTable
    from dicom_triage.jobs.delta_rs_source import delta_storage_options, open_table
    found = {}
    for name in TABLES:
        if open_table(f"{output}/{name}", world["options"]) is None:
            continue
        rows = DeltaTable(f"{output}/{name}", storage_options=delta_storage_options(world["options"])) \
            .to_pyarrow_table().to_pylist()
        rows = [{k: v for k, v in row.items() if k not in RUN_SPECIFIC} for row in rows]
        if name == "run_notes":  # how long a stage took is not a result
            rows = [{**row, "message": "completed"} if row["topic"] == "completed" else row for row in rows]
        found[name] = sorted(rows, key=sort_key)
    return found


KEY_COLUMNS = ("path", "rank", "kind", "series_instance_uid", "site", "dimension", "value")


def sort_key(row: dict) -> tuple:
    """Rows in a canonical order: by the table's identifying columns, then every exact scalar column."""
    return (tuple(str(row.get(k)) for k in KEY_COLUMNS)
            + tuple(str(v) for _, v in sorted(row.items()) if isinstance(v, (str, int, bool)) or v is None))


def difference(a, b, where: str = "") -> str | None:
    """Where `a` and `b` differ (floats within tolerance are equal), or None."""
    if isinstance(a, float) and isinstance(b, float):
        if (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            return None
        return f"{where}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where}: columns {sorted(a)} != {sorted(b)}"
        return next((d for k in a if (d := difference(a[k], b[k], f"{where}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := difference(x, y, f"{where}[{i}]"))), None)
    return None if a == b else f"{where}: {a!r} != {b!r}"[:500]


def test_cluster_refuses_a_made_up_secret(world):
    """Demo mode's made-up secret is refused on a cluster: exit 2, naming the setting, nothing written."""
    started = time.monotonic()
    result = submit(world, f"s3://{world['bucket']}/out-refused", secret=None,
                    extra=["--set", "privacy.allow_generated_secret=true"])
    # spark-submit hands the Python driver's stderr on as its own stdout
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "configuration error: setting 'privacy.secret_env'" in output and "on a cluster" in output, output
    assert "Traceback" not in output
    assert s3_keys(world, "out-refused") == []
    print(f"\nrefused in {time.monotonic() - started:.0f} s")


def test_pipeline_on_two_workers_equals_local_run(world):
    bucket, root = world["bucket"], world["root"]
    started = time.monotonic()
    # The same run on local Spark, meanwhile: the plain command line, from the source tree.
    local_env = driver_env(world, SECRET)
    local_env["PYSPARK_PYTHON"] = sys.executable
    local = subprocess.Popen(
        [sys.executable, "-m", "dicom_triage.jobs", "run", "--input", f"s3://{bucket}/delivery",
         "--output", f"s3://{bucket}/out-local", "--conf", f"s3://{bucket}/conf/triage.yaml",
         "--set", "spark.master=local[2]", "--set", f"mlflow.tracking_uri=sqlite:///{root}/mlflow-local.db"],
        cwd=REPO, env=local_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        on_cluster = submit(world, f"s3://{bucket}/out-cluster", SECRET,
                            extra=["--set", f"mlflow.tracking_uri=sqlite:///{root}/mlflow-cluster.db"])
        local_log, _ = local.communicate(timeout=1800)
    finally:
        if local.poll() is None:
            local.kill()
            local.wait()
    print(f"\ncluster and local runs took {time.monotonic() - started:.0f} s")
    assert on_cluster.returncode == 0, on_cluster.stderr[-5000:]
    assert local.returncode == 0, local_log[-5000:]
    assert "decisions:" in on_cluster.stdout and "report:" in on_cluster.stdout

    # Tasks ran on both workers: each worker's work dir holds an executor log of this app with tasks in it.
    cluster = world["cluster"]
    apps = [app for app in cluster.state()["completedapps"] if app["name"] == "dicom-triage"]
    assert len(apps) == 1, apps
    for work_dir in cluster.work_dirs:
        logs = list(work_dir.glob(f"{apps[0]['id']}/*/stderr"))
        assert logs and any("Finished task" in log.read_text(errors="replace") for log in logs), work_dir

    cluster_tables = read_tables(world, f"s3://{bucket}/out-cluster")
    local_tables = read_tables(world, f"s3://{bucket}/out-local")
    assert set(PIPELINE_TABLES) <= set(local_tables)
    assert sorted(cluster_tables) == sorted(local_tables)
    differences = {}
    for name, local_rows in local_tables.items():
        cluster_rows = cluster_tables[name]
        assert len(cluster_rows) == len(local_rows), name
        assert local_rows, name
        for column in local_rows[0]:  # every differing column, with its first difference
            problem = difference([row.get(column) for row in cluster_rows], [row[column] for row in local_rows],
                                 f"{name}.{column}")
            if problem:
                differences[f"{name}.{column}"] = problem
    assert differences == {}
    assert len(local_tables["inclusion"]) > 100  # the whole small delivery went through
