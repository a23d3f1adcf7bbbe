"""Crash and resume, then privacy: the driver is killed (SIGKILL of its whole
process group, JVM included) while it writes, once on each way a table is
written: the first commit of ingest's incremental append, a rewrite of the
three tables of the neighbour stage, and a rewrite of the inclusion table.
Readers still see only committed versions, and running again leaves every table
complete and consistent: no duplicated rows, no lost objects. (Every stage
writes through the same TableStore.write, so one kill per way of writing
covers them; each further kill point costs two process starts.) The same
run (MLflow on, report written, logs kept) is then searched for the
identifiers the demo delivery planted in its headers: none may appear.

Real processes, real Delta tables, a part of the demo delivery (two sites)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from deltalake import DeltaTable

from tests.privacy_scan import scan_output

from dicom_triage.jobs.cli import demo_expectations
from dicom_triage.jobs.demo_data import generate_delivery

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# (stage, the table whose write is interrupted) in order; after the first kill,
# `run` carries the delivery through every stage and the report.
KILLS = [("ingest", "instances"), ("neighbors", "neighbors"), ("curate", "inclusion")]
TABLES = ["instances", "ingest_errors", "pixel_stats", "series", "embeddings", "anatomy",
          "neighbors", "duplicates", "clusters", "inclusion", "review_queue"]
LOGS: dict[str, str] = {}
SECRET = "crash-resume-test-secret-0123456789"


def table_files(folder) -> set[str]:
    return {name for name in os.listdir(folder) if name.endswith(".parquet")} if os.path.isdir(folder) else set()


def committed_version(folder) -> int | None:
    return DeltaTable(str(folder)).version() if os.path.isdir(os.path.join(folder, "_delta_log")) else None


def committed_rows(folder) -> int:
    return DeltaTable(str(folder)).to_pyarrow_dataset().count_rows()


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    generate_delivery(str(root / "delivery"), seed=7)
    for site in ("site_b", "site_c"):  # keep it small: two sites, about 150 objects
        shutil.rmtree(root / "delivery" / site)
    return root


def command(root, stage: str) -> list[str]:
    args = [sys.executable, "-m", "dicom_triage.jobs", stage, "--input", str(root / "delivery"), "--output", str(root / "out"),
            "--set", "neighbors.exact=true", "--set", "clusters.map=pca", "--set", "progress_seconds=1"]
    for item in demo_expectations(str(root / "delivery")):
        args += ["--set", item]
    return args


def run_until_write_then_kill(root, stage: str, table: str) -> dict:
    """Start the stage; SIGKILL its process group as soon as a new data file
    of `table` appears (a task is writing). Returns what readers saw."""
    folder = root / "out" / table
    before_files, before_version = table_files(folder), committed_version(folder)
    env = {**os.environ, "TRIAGE_HMAC_SECRET": SECRET}
    process = subprocess.Popen(command(root, stage), env=env, cwd=os.getcwd(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not (table_files(folder) - before_files):
        assert process.poll() is None, f"{stage} ended before it wrote {table}"
        assert time.monotonic() < deadline, f"{stage} wrote nothing to {table} in time"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    return {"before": before_version, "after": committed_version(folder)}


def run_stage(root, stage: str) -> None:
    env = {**os.environ, "TRIAGE_HMAC_SECRET": SECRET}
    result = subprocess.run(command(root, stage), env=env, capture_output=True, text=True, timeout=900)
    LOGS[f"log of {stage}"] = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def resumed(delivery):
    """Each kill point hit once and its stage run again; after the first, the
    whole pipeline and the report."""
    root = delivery
    outcomes = []
    for stage, table in KILLS:
        rows = committed_rows(root / "out" / table) if committed_version(root / "out" / table) is not None else None
        seen = run_until_write_then_kill(root, stage, table)
        if rows is not None:
            assert committed_rows(root / "out" / table) == rows
        outcomes.append((stage, table, seen))
        run_stage(root, "run" if stage == "ingest" else stage)
        for name in TABLES if stage == "ingest" else [table]:
            assert committed_version(root / "out" / name) is not None, (stage, name)
    print("\nkill points (stage, table, committed version before/after the kill):", outcomes)
    return root, outcomes


def test_kill_during_writes_then_resume(resumed):
    root, outcomes = resumed
    for stage, table, seen in outcomes:
        # a reader sees the last committed version, never part of the killed write
        assert seen["after"] == seen["before"], (stage, table, seen)
    assert outcomes[0][2]["before"] is None  # the first kill hit the first write of a table
    assert all(seen["before"] is not None for _, _, seen in outcomes[1:])  # the others a rewrite
    listed = sorted(str(p) for p in (root / "delivery").rglob("*") if p.is_file() and not p.name.startswith("_"))
    out = root / "out"
    instances = DeltaTable(str(out / "instances")).to_pandas(columns=["path"])
    errors = DeltaTable(str(out / "ingest_errors")).to_pandas(columns=["path"])
    paths = list(instances["path"]) + list(errors["path"])
    assert len(paths) == len(set(paths)), "an object landed twice"
    assert sorted(p.removeprefix("file://") for p in paths) == listed, "an object was lost"
    assert committed_rows(out / "pixel_stats") == len(instances)
    embeddings = DeltaTable(str(out / "embeddings")).to_pandas(columns=["path", "embedding"])
    pixel_stats = DeltaTable(str(out / "pixel_stats")).to_pandas(columns=["path", "pixel_error"])
    decodable = set(pixel_stats.loc[pixel_stats["pixel_error"].isna(), "path"])
    assert embeddings["path"].is_unique and set(embeddings["path"]) == decodable  # embed skips the undecodable
    embedded = int(embeddings["embedding"].notna().sum())
    neighbors = DeltaTable(str(out / "neighbors")).to_pandas(columns=["path", "rank"])
    assert len(neighbors) == embedded * 10 and not neighbors.duplicated().any()
    assert committed_rows(out / "clusters") == embedded
    inclusion = DeltaTable(str(out / "inclusion")).to_pandas(columns=["path"])
    assert inclusion["path"].is_unique and len(inclusion) == len(listed)
    assert not (out / "_triage_lock.json").exists()


def test_no_planted_identifier_in_any_output(resumed):
    root, _ = resumed
    planted = json.loads((root / "delivery" / "_ground_truth.json").read_text())["planted_identifiers"]
    assert len(planted) > 50
    out = root / "out"
    assert (out / "report" / "triage-report.html").exists() and (out / "_mlflow").is_dir()
    assert set(LOGS) == {"log of run", "log of neighbors", "log of curate"}
    assert scan_output(str(out), planted, LOGS) == {}


def test_the_scan_finds_what_is_there(spark, tmp_path):
    """The scanner itself: an identifier hidden in a nested struct, in a PNG's
    text chunk, in a file and in a log line is found; numbers are not mistaken."""
    from dicom_triage.jobs.tables import TableStore

    store = TableStore(spark, str(tmp_path))
    frame = spark.createDataFrame([("a", [{"detail": "seen BRAMDANE^TOBIAS"}], b"\x89PNG tEXt 1936-11-14", 0.1936111450)],
                                  "path string, findings array<struct<detail:string>>, png binary, x double")
    store.write(frame, "t")
    (tmp_path / "report.html").write_text("<p>Marrowby</p>")
    leaks = scan_output(str(tmp_path), ["BRAMDANE^TOBIAS", "19361114", "19361114", "Marrowby", "ZZZZZZ"],
                        {"log": "patient TOBIAS seen"})
    assert leaks == {"table t": {"BRAMDANE", "BRAMDANE^TOBIAS", "TOBIAS", "1936-11-14"},
                     "file report.html": {"Marrowby"}, "log": {"TOBIAS"}}
