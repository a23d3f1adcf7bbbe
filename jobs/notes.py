"""`run_notes`: the notes stages record with `RunContext.note`, appended to a
table so the summary, the report and SQL can tell what a run could not do."""
from __future__ import annotations

from pyspark.sql import functions as F

from dicom_triage.schemas.notes import RUN_NOTES

TABLE = "run_notes"


def flush(ctx, written: int = 0) -> int:
    """Append `ctx.notes[written:]` to the table; returns how many are written now."""
    new = ctx.notes[written:]
    if new:
        rows = [(ctx.run_id, stage, level, topic, message, ctx.started_at)
                for stage, level, topic, message in new]
        ctx.store.write(ctx.spark.createDataFrame(rows, RUN_NOTES), TABLE, mode="append")
    return len(ctx.notes)


def latest(store):
    """The notes of each stage's latest run (a stage re-run alone replaces its own)."""
    if not store.exists(TABLE):
        return None
    notes = store.read(TABLE)
    last = notes.groupBy("stage").agg(F.max("computed_at").alias("computed_at"))
    return notes.join(last, ["stage", "computed_at"]).orderBy("computed_at", "stage")
