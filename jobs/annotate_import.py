"""`triage annotate import [LABELS]`: read and validate returned annotations.

`annotate.labels` is a CSV, JSON, COCO JSON or Parquet file, a folder of
them (every such file in it, in name order), as a local path or any fsspec
URI, or the name of a table under the output. Files are parsed on the
driver (udfs/labels.py: annotation files are small next to the images);
the checks against the tables are Spark joins:

* UNKNOWN_INSTANCE: the instance (path, relative path or SOP instance UID)
  is not in `instances`;
* BOX_OUTSIDE_IMAGE: a box reaches beyond the image's `columns` x `rows`;
* DUPLICATE: the same annotator and instance again (the first in input order
  is kept);

besides MISSING_FIELD, BAD_BOX and UNKNOWN_LABEL found while parsing. Every
rejected row becomes a `label_errors` row; the rest become `labels`, with
their `batch_id` from `annotation_assignments` when that table exists.
Both tables are rewritten from the whole input each time: point
`annotate.labels` at the folder that holds everything returned so far.
"""
from __future__ import annotations

import time

from pyspark.sql import DataFrame, Window, functions as F
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

from dicom_triage.jobs.config import ConfigError
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.schemas.annotation import BOX, LABEL_ERRORS, LABELS
from dicom_triage.udfs.labels import (BOX_OUTSIDE_IMAGE, DUPLICATE, UNKNOWN_INSTANCE, UnreadableLabels, check_labels,
                         format_of, parse_bytes, records_from_rows)

RECORD = StructType([
    StructField("source", StringType(), False),
    StructField("source_row", StringType(), True),
    StructField("seq", LongType(), False),
    StructField("annotator", StringType(), True),
    StructField("instance", StringType(), True),
    StructField("label", StringType(), True),
    StructField("grade", DoubleType(), True),
    StructField("boxes", ArrayType(BOX), True),
    StructField("error", StringType(), True),
    StructField("detail", StringType(), True),
])
SETTING = "annotate.labels"


def run(ctx: RunContext, tracker, say=print) -> dict:
    started = time.monotonic()
    settings = ctx.settings
    location = settings[SETTING]
    if location in (None, ""):
        raise ConfigError(f"setting '{SETTING}' is required: the returned annotations (CSV, JSON, COCO JSON "
                          "or Parquet file or folder, or a table name), e.g. `triage annotate import labels.csv`")
    records = read_records(ctx, str(location))
    records = check_labels(records, settings["annotate.label_kind"], settings["annotate.allowed_labels"])
    say(f"annotate import: {len(records)} annotations read from {location}")
    parsed = ctx.spark.createDataFrame(_rows(records), RECORD)
    assignments = ctx.store.read("annotation_assignments") if ctx.store.exists("annotation_assignments") else None
    good, bad = validate(parsed, ctx.store.read("instances"), assignments)
    ctx.store.write(ctx.stamp(good, LABELS), "labels", mode="overwrite")
    ctx.store.write(ctx.stamp(bad, LABEL_ERRORS), "label_errors", mode="overwrite")
    counts = {"read": len(records), "labels": ctx.store.read("labels").count()}
    errors = {row["error"]: row["n"] for row in
              ctx.store.read("label_errors").groupBy("error").agg(F.count(F.lit(1)).alias("n")).collect()}
    counts["errors"] = sum(errors.values())
    counts.update({f"errors.{code}": n for code, n in sorted(errors.items())})
    counts["seconds"] = round(time.monotonic() - started, 2)
    detail = ", ".join(f"{code} {n}" for code, n in sorted(errors.items()))
    say(f"annotate import: {counts['labels']} labels accepted, {counts['errors']} rejected"
        f"{' (' + detail + ')' if detail else ''}; tables labels, label_errors ({counts['seconds']} s)")
    tracker.metrics({f"annotate.import.{k}": v for k, v in counts.items()})
    return counts


# -- reading -------------------------------------------------------------------

def read_records(ctx: RunContext, location: str) -> list[dict]:
    """Records from a file, a folder of files, or (when no such file exists) a
    table under the output."""
    from dicom_triage.jobs.storage import filesystem, full_uri
    try:
        fs, path = filesystem(location, ctx.storage_options)
        if fs.isdir(path):
            files = sorted(p for p in fs.find(path) if format_of(p) and not _hidden(p[len(path):]))
            if not files:
                raise ConfigError(f"setting '{SETTING}': no .csv, .json or .parquet file in {location}")
        elif fs.exists(path):
            files = [path]
        elif _looks_like_table(location) and ctx.store.exists(location):
            return records_from_rows(ctx.store.read(location).toPandas(), f"table {location}")
        else:
            raise ConfigError(f"setting '{SETTING}': {location} does not exist (nor a table of that name)")
        records: list[dict] = []
        for name in files:
            uri = full_uri(fs, name) if len(files) > 1 else location
            next_seq = max((r["seq"] for r in records), default=-1) + 1  # box rows share one seq
            records += parse_bytes(fs.cat_file(name), name, source=uri, first_seq=next_seq)
    except UnreadableLabels as exc:
        raise ConfigError(f"setting '{SETTING}': {exc}") from None
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(f"setting '{SETTING}': cannot read {location}: {exc}") from None
    return records


def _looks_like_table(location: str) -> bool:
    return "/" not in location and "\\" not in location and format_of(location) is None


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def _rows(records: list[dict]) -> list[tuple]:
    columns = RECORD.fieldNames()
    return [tuple(r.get(c) for c in columns) for r in records]


# -- checks against the tables ---------------------------------------------------

def instance_keys(instances: DataFrame) -> DataFrame:
    """DataFrame[key, path, sop_instance_uid, rows, columns]: every way an
    annotation may name an instance. A key naming several instances (the same
    SOP instance UID twice) takes the first path."""
    base = instances.select("path", "relative_path", "sop_instance_uid",
                            F.col("rows").cast("double").alias("rows"),
                            F.col("columns").cast("double").alias("columns"))
    keyed = None
    for rank, column in enumerate(("path", "relative_path", "sop_instance_uid")):
        part = base.filter(F.col(column).isNotNull()).select(
            F.col(column).alias("key"), F.lit(rank).alias("_kind"), "path", "sop_instance_uid", "rows", "columns")
        keyed = part if keyed is None else keyed.unionByName(part)
    best = Window.partitionBy("key").orderBy("_kind", "path")
    return keyed.withColumn("_n", F.row_number().over(best)).filter(F.col("_n") == 1).drop("_n", "_kind")


def validate(parsed: DataFrame, instances: DataFrame, assignments: DataFrame | None) -> tuple[DataFrame, DataFrame]:
    """(labels, label_errors) as DataFrames in LABELS' / LABEL_ERRORS' columns
    (without the run columns)."""
    early = parsed.filter(F.col("error").isNotNull())
    resolved = parsed.filter(F.col("error").isNull()).join(
        instance_keys(instances),
        F.col("instance") == F.col("key"), "left")
    outside = F.filter("boxes", lambda b: (b.x < 0) | (b.y < 0) | (b.x + b.width > F.col("columns"))
                       | (b.y + b.height > F.col("rows")))
    first_out = F.element_at(outside, 1)
    checked = resolved.withColumn(
        "error",
        F.when(F.col("key").isNull(), F.lit(UNKNOWN_INSTANCE))
         .when(F.col("rows").isNotNull() & F.col("columns").isNotNull() & (F.size(outside) > 0),
               F.lit(BOX_OUTSIDE_IMAGE))).withColumn(
        "detail",
        F.when(F.col("error") == UNKNOWN_INSTANCE,
               F.lit("no instance has this path, relative path or SOP instance UID"))
         .when(F.col("error") == BOX_OUTSIDE_IMAGE,
               F.format_string("box [%s, %s, %s, %s] is outside the %d x %d image",
                               first_out.x, first_out.y, first_out.width, first_out.height,
                               F.col("columns").cast("long"), F.col("rows").cast("long"))))
    fine = checked.filter(F.col("error").isNull())
    first = Window.partitionBy("annotator", "path").orderBy("seq")
    fine = fine.withColumn("_n", F.row_number().over(first)) \
        .withColumn("_first_row", F.first("source_row").over(first)) \
        .withColumn("_first_source", F.first("source").over(first))
    duplicates = fine.filter(F.col("_n") > 1).withColumn("error", F.lit(DUPLICATE)).withColumn(
        "detail", F.concat(F.lit("annotator already labelled this instance (row "),
                           F.coalesce(F.col("_first_row"), F.lit("?")),
                           F.when(F.col("_first_source") != F.col("source"),
                                  F.concat(F.lit(" of "), F.col("_first_source"))).otherwise(F.lit("")),
                           F.lit(" is kept)")))
    accepted = fine.filter(F.col("_n") == 1)
    if assignments is not None:
        batches = assignments.groupBy("annotator", "path").agg(F.min("batch_id").alias("batch_id"))
        accepted = accepted.join(batches, ["annotator", "path"], "left")
    else:
        accepted = accepted.withColumn("batch_id", F.lit(None).cast("int"))
    labels = accepted.select("annotator", "path", "sop_instance_uid", F.col("batch_id").cast("int"), "label",
                             "grade", "boxes", "source", "source_row")
    error_columns = ["source", "source_row", "annotator", "instance", "error", "detail"]
    errors = (early.select(*error_columns)
              .unionByName(checked.filter(F.col("error").isNotNull()).select(*error_columns))
              .unionByName(duplicates.select(*error_columns)))
    return labels, errors
