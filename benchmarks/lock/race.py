"""Stale-lock takeover race: of several runs that start together on an output
whose lock a dead run left, how often do two hold it at once?

Each trial writes a dead process's lock, forks `--contenders` processes that
wait on one barrier and then call `OutputLock.acquire`; a winner holds the
lock for `--hold` seconds. A trial fails when two holds overlap in time (a
contender that acquires after the winner released is not a failure). Local
disk; the S3 path (conditional PUT) is tested in tests/test_output_lock.py.

    .venv/bin/python benchmarks/lock/race.py --trials 1000 --contenders 4
    # the same against another implementation of the module, e.g. before the guard:
    git show 14c28c8:jobs/output_lock.py > /tmp/unguarded_lock.py
    .venv/bin/python benchmarks/lock/race.py --trials 1000 --implementation /tmp/unguarded_lock.py
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dicom_triage.jobs import output_lock  # noqa: E402


def load_implementation(path: str):
    spec = importlib.util.spec_from_file_location("lock_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def contender(module, output: str, run_id: str, barrier, hold: float, held) -> None:
    lock = module.OutputLock(output, {}, run_id)
    barrier.wait()
    try:
        lock.acquire()
    except module.OutputBusy:
        return
    started = time.monotonic()
    time.sleep(hold)
    held.put((run_id, started, time.monotonic()))
    lock.release()


def dead_pid() -> int:
    child = mp.get_context("fork").Process(target=lambda: None)
    child.start()
    child.join()
    return child.pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--contenders", type=int, default=4)
    parser.add_argument("--hold", type=float, default=0.2)
    parser.add_argument("--implementation", default=None,
                        help="a file defining OutputLock and OutputBusy to test instead of jobs/output_lock.py")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    context = mp.get_context("fork")
    module = load_implementation(args.implementation) if args.implementation else output_lock
    gone = dead_pid()
    overlapping, winners_per_trial = 0, []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as root:
        for trial in range(args.trials):
            output = os.path.join(root, f"trial-{trial}")
            os.mkdir(output)
            record = {"run_id": "dead", "host": socket.gethostname(), "pid": gone,
                      "started_at": "2020-01-01T00:00:00+00:00", "heartbeat_at": "2020-01-01T00:00:00+00:00"}
            Path(output, output_lock.LOCK_NAME).write_text(json.dumps(record))
            barrier, held = context.Barrier(args.contenders), context.Queue()
            runs = [context.Process(target=contender, args=(module, output, f"run-{n}", barrier, args.hold, held))
                    for n in range(args.contenders)]
            for run in runs:
                run.start()
            for run in runs:
                run.join(60)
            holds = sorted(held.get(timeout=5) for _ in range(held.qsize()))
            holds = sorted(holds, key=lambda h: h[1])
            winners_per_trial.append(len(holds))
            if any(later[1] < earlier[2] for earlier, later in zip(holds, holds[1:])):
                overlapping += 1
    result = {"benchmark": "stale-lock takeover race (local disk)",
              "implementation": args.implementation or "jobs/output_lock.py",
              "command": "benchmarks/lock/race.py " + " ".join(sys.argv[1:]),
              "trials": args.trials, "contenders": args.contenders, "hold_seconds": args.hold,
              "trials_with_two_holders_at_once": overlapping,
              "trials_with_no_holder": winners_per_trial.count(0),
              "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if overlapping else 0


if __name__ == "__main__":
    sys.exit(main())
