"""Progress of a long stage: a background thread that asks Spark's status
tracker every few seconds how many tasks of the running jobs are done and
prints one line, only while something runs and only every `every` seconds."""
from __future__ import annotations

import contextlib
import threading
import time


def task_counts(spark) -> tuple[int, int, int] | None:
    """(done, total, running) over the active stages, or None when idle."""
    tracker = spark.sparkContext.statusTracker()
    done = total = running = 0
    for stage_id in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage_id)
        if info is None:
            continue
        done += info.numCompletedTasks
        total += info.numTasks
        running += info.numActiveTasks
    return (done, total, running) if total else None


def progress_line(label: str, counts: tuple[int, int, int], seconds: float) -> str:
    done, total, running = counts
    return f"  {label}: {done}/{total} tasks done, {running} running ({seconds:.0f} s)"


@contextlib.contextmanager
def shown(spark, label: str, say=print, every: float = 15.0):
    """Print progress lines for `label` while the body runs (every <= 0: silent)."""
    if every <= 0:
        yield
        return
    stop = threading.Event()
    started = time.monotonic()

    def watch():
        while not stop.wait(every):
            try:
                counts = task_counts(spark)
            except Exception:  # the session is stopping: nothing to show
                return
            if counts:
                say(progress_line(label, counts, time.monotonic() - started))

    thread = threading.Thread(target=watch, name=f"progress-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every)


def counts_text(counts: dict) -> str:
    """Stage counts for people: 'include 428, review queue 63, EMBEDDING_OUTLIER 41',
    not a Python dict (reason codes stay as written)."""
    return ", ".join(f"{key if key.isupper() else key.replace('_', ' ')} {value}"
                     for key, value in counts.items() if key != "seconds")
