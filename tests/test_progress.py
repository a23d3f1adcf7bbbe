"""Progress lines of a long stage, from a real local Spark job."""
from __future__ import annotations

import time

import pytest

from dicom_triage.jobs.progress import progress_line, shown

pytestmark = pytest.mark.spark


def _slow():
    # built inside a function so it pickles by value (workers cannot import tests/)
    def slow(batches):
        import time
        for batch in batches:
            time.sleep(1.0)
            yield batch
    return slow


def test_progress_is_shown_while_a_job_runs_and_stops_after(spark):
    lines: list[str] = []
    with shown(spark, "slow-stage", say=lines.append, every=0.3):
        assert spark.range(0, 6, numPartitions=6).mapInPandas(_slow(), "id long").count() == 6
    assert lines, "no progress line while the job ran"
    assert all(line.startswith("  slow-stage: ") and "tasks done" in line for line in lines)
    seen = len(lines)
    time.sleep(0.8)
    assert len(lines) == seen  # the watcher stopped with the stage


def test_silent_when_disabled(spark):
    lines: list[str] = []
    with shown(spark, "quiet", say=lines.append, every=0):
        spark.range(0, 2, numPartitions=2).mapInPandas(_slow(), "id long").count()
    assert lines == []


def test_progress_line_format():
    assert progress_line("pixels", (3, 8, 2), 61.4) == "  pixels: 3/8 tasks done, 2 running (61 s)"


def test_stage_counts_are_written_for_people():
    from dicom_triage.jobs.progress import counts_text
    assert counts_text({"include": 428, "exclude": 95, "review_queue": 63, "seconds": 55.28}) == \
        "include 428, exclude 95, review queue 63"
    assert counts_text({"EMBEDDING_OUTLIER": 41, "duplicate_groups": 6}) == "EMBEDDING_OUTLIER 41, duplicate groups 6"
