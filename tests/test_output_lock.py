"""One run at a time per output: the lock itself on local disk and on a
loopback S3 server, and two real `triage ingest` processes started together
on one output (local and S3): one runs, the other stops cleanly, and the
tables hold every object exactly once."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from deltalake import DeltaTable

from dicom_triage.jobs.demo_data import generate_delivery
from dicom_triage.jobs.output_lock import LOCK_NAME, OutputBusy, OutputLock, is_stale
from dicom_triage.jobs.storage import filesystem

SECRET = "output-lock-test-secret-0123456789"


def lock_record(pid: int, host: str, age_seconds: float) -> dict:
    beat = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age_seconds)
    return {"run_id": "other-run", "host": host, "pid": pid, "started_at": beat.isoformat(),
            "heartbeat_at": beat.isoformat()}


def test_second_run_is_refused_then_allowed_after_release(tmp_path):
    first = OutputLock(str(tmp_path), {}, "run-1")
    first.acquire()
    second = OutputLock(str(tmp_path), {}, "run-2")
    with pytest.raises(OutputBusy, match="output is in use by run run-1 .*remove .*_triage_lock.json"):
        second.acquire()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    second.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["run_id"] == "run-2"
    second.release()


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / LOCK_NAME).write_text(json.dumps(lock_record(int(gone), socket.gethostname(), 0)))
    lock = OutputLock(str(tmp_path), {}, "resumed")
    lock.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["run_id"] == "resumed"
    lock.release()


def test_staleness_rules():
    assert not is_stale(lock_record(1, "elsewhere", 10), 300)
    assert is_stale(lock_record(1, "elsewhere", 301), 300)
    assert not is_stale(lock_record(os.getpid(), socket.gethostname(), 0), 300)
    assert is_stale({"run_id": "x"}, 300)  # unreadable heartbeat


def test_unreadable_lock_is_held_until_its_file_is_old(tmp_path):
    """A lock that cannot be read (e.g. caught while another run wrote it) is
    not a dead run's: taking it over let two runs ingest the same delivery."""
    path = tmp_path / LOCK_NAME
    path.write_bytes(b"")
    with pytest.raises(OutputBusy):
        OutputLock(str(tmp_path), {}, "second", stale_after_seconds=60).acquire()
    os.utime(path, (time.time() - 120, time.time() - 120))
    lock = OutputLock(str(tmp_path), {}, "after-a-crash", stale_after_seconds=60)
    lock.acquire()
    assert json.loads(path.read_text())["run_id"] == "after-a-crash"
    lock.release()
    assert not list(tmp_path.glob("*.tmp"))  # the records written aside are gone


def test_live_lock_elsewhere_is_respected(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps(lock_record(1, "another-host", 5)))
    with pytest.raises(OutputBusy, match="host another-host"):
        OutputLock(str(tmp_path), {}, "mine").acquire()


def test_heartbeat_is_refreshed(tmp_path):
    lock = OutputLock(str(tmp_path), {}, "beating", stale_after_seconds=0.5)
    lock.acquire()
    first = json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat_at"]
    time.sleep(0.4)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat_at"] > first
    lock.release()


def test_exclusive_create_on_s3(s3_server):
    bucket = s3_server.create_bucket("lock-bucket")
    options = {"endpoint_url": s3_server.endpoint_url}
    first = OutputLock(f"s3://{bucket}/out", options, "s3-run-1")
    first.acquire()
    with pytest.raises(OutputBusy, match="s3-run-1"):
        OutputLock(f"s3://{bucket}/out", options, "s3-run-2").acquire()
    first.release()
    fs, path = filesystem(f"s3://{bucket}/out/{LOCK_NAME}", options)
    assert not fs.exists(path)


def _ingest_twice_at_once(input_uri: str, output: str, extra: list[str]) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "TRIAGE_HMAC_SECRET": SECRET}
    args = [sys.executable, "-m", "dicom_triage.jobs", "ingest", "--input", input_uri, "--output", output,
            "--set", "mlflow.enabled=false", "--set", "progress_seconds=0", *extra]
    runs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    return [subprocess.CompletedProcess(r.args, r.wait(timeout=900), *r.communicate()) for r in runs]


def _check_outcome(results, instances, errors, listed: int):
    """Both ran (the second found nothing new) or one stopped at start; every object once."""
    codes = sorted(r.returncode for r in results)
    assert codes in ([0, 0], [0, 3]), [r.stderr[-2000:] for r in results]
    for refused in (r for r in results if r.returncode == 3):
        lines = refused.stderr.strip().splitlines()
        assert lines[-1].startswith("triage: output is in use by run ") and "Traceback" not in refused.stderr
    paths = list(instances["path"]) + list(errors["path"])
    assert len(paths) == len(set(paths)) == listed
    return codes



@pytest.mark.spark
@pytest.mark.slow
def test_two_runs_at_once_on_local_disk(tmp_path):
    generate_delivery(str(tmp_path / "delivery"), seed=5)
    listed = sum(1 for p in (tmp_path / "delivery").rglob("*") if p.is_file() and not p.name.startswith("_"))
    results = _ingest_twice_at_once(str(tmp_path / "delivery"), str(tmp_path / "out"), [])
    out = tmp_path / "out"
    codes = _check_outcome(results, DeltaTable(str(out / "instances")).to_pandas(columns=["path"]),
                           DeltaTable(str(out / "ingest_errors")).to_pandas(columns=["path"]), listed)
    print("\nlocal outcomes:", codes)
    assert not (out / LOCK_NAME).exists()


@pytest.mark.spark
@pytest.mark.slow
def test_two_runs_at_once_on_s3(s3_server, tmp_path, monkeypatch):
    bucket = s3_server.create_bucket("concurrent-runs")
    options = {"endpoint_url": s3_server.endpoint_url}
    generate_delivery(f"s3://{bucket}/delivery", seed=5, storage_options=options)
    fs, _ = filesystem(f"s3://{bucket}/delivery", options)
    listed = sum(1 for p in fs.find(f"{bucket}/delivery") if not p.rsplit("/", 1)[1].startswith("_"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    results = _ingest_twice_at_once(f"s3://{bucket}/delivery", f"s3://{bucket}/out",
                                    ["--set", f"storage.options.endpoint_url={s3_server.endpoint_url}"])
    storage = {"AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ALLOW_HTTP": "true"}
    codes = _check_outcome(results,
                           DeltaTable(f"s3://{bucket}/out/instances", storage_options=storage).to_pandas(columns=["path"]),
                           DeltaTable(f"s3://{bucket}/out/ingest_errors", storage_options=storage)
                           .to_pandas(columns=["path"]), listed)
    print("\ns3 outcomes:", codes)
    assert not fs.exists(f"{bucket}/out/{LOCK_NAME}")


# Each process waits for the start signal, then tries to take the lock and holds it briefly.
CONTENDER = """
import json, sys, time
from dicom_triage.jobs.output_lock import OutputBusy, OutputLock
output, run_id, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
lock = OutputLock(output, {}, run_id)
time.sleep(max(0.0, start - time.time()))
try:
    lock.acquire()
except OutputBusy:
    print("busy")
    sys.exit(0)
print("held", flush=True)
time.sleep(1.0)
lock.release()
"""


def test_a_dead_runs_lock_is_taken_over_by_one_run_only(tmp_path):
    """Several runs start together on an output whose lock a dead run left:
    exactly one takes it over, in every trial (the takeover is guarded)."""
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip())
    for trial in range(5):
        output = tmp_path / f"trial-{trial}"
        output.mkdir()
        (output / LOCK_NAME).write_text(json.dumps(lock_record(gone, socket.gethostname(), 0)))
        start = time.time() + 1.5  # after every interpreter has started
        runs = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(output), f"run-{n}", str(start)],
                                 stdout=subprocess.PIPE, text=True) for n in range(4)]
        outcomes = sorted(run.communicate(timeout=120)[0].strip() for run in runs)
        assert outcomes == ["busy", "busy", "busy", "held"], (trial, outcomes)
        assert not (output / LOCK_NAME).exists()


def test_a_late_takeover_leaves_the_new_holders_lock(tmp_path):
    """The interleaving that let two runs hold one output: B judges the dead
    run's lock stale, A takes it over first, then B acts on what it saw."""
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip())
    (tmp_path / LOCK_NAME).write_text(json.dumps(lock_record(gone, socket.gethostname(), 0)))
    late = OutputLock(str(tmp_path), {}, "late")
    seen = late.holder()
    assert is_stale(seen, 300)
    first = OutputLock(str(tmp_path), {}, "first")
    first.acquire()
    late.take_over(seen)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["run_id"] == "first"
    with pytest.raises(OutputBusy, match="in use by run first"):
        late.acquire()
    first.release()
