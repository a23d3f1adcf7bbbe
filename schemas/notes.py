"""Schema of `run_notes`: what a stage could not do in a run, and why.

A stage that degrades instead of failing (no region model, a missing earlier
table, a step that failed) writes a note; the summary and the report show
them, so a decision made without some check says so."""
from __future__ import annotations

from pyspark.sql.types import StringType, StructField, StructType, TimestampType

LEVELS = ("info", "warning", "error")

RUN_NOTES = StructType([
    StructField("run_id", StringType(), False),
    StructField("stage", StringType(), False),      # ingest, pixels, embed, anatomy, neighbors, curate, report
    StructField("level", StringType(), False),      # info | warning | error
    StructField("topic", StringType(), False),      # e.g. region_model, missing_table, stage_failed
    StructField("message", StringType(), False),
    StructField("computed_at", TimestampType(), False),
])
