"""`triage annotate plan`: split the included instances into annotator batches.

Reads `inclusion` and writes `annotation_assignments` (one row per batch,
annotator and instance). Every included instance lands in exactly one batch;
inside a batch an `annotate.overlap_fraction` share is labelled by every
annotator (for agreement), the rest goes to exactly one annotator. Batches,
overlap sets and every annotator's sub-batch get the same mix of the
`annotate.stratify_by` columns (within one item per stratum); the deal is in
udfs/annotation_plan.py. The same inclusion table and `annotate.seed` give
the same plan.

All in Spark: a window per stratum ranks its instances by a seeded hash, the
table of stratum sizes (one row per stratum, the only thing collected) gives
each stratum's offset, and the deal arithmetic runs per Arrow batch.
"""
from __future__ import annotations

import time

import pandas as pd
from pyspark.sql import DataFrame, Window, functions as F
from pyspark.sql.types import ArrayType, BooleanType, IntegerType, StructField, StructType

from dicom_triage.jobs.config import ConfigError
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.schemas.annotation import ASSIGNMENTS
from dicom_triage.udfs.annotation_plan import deal

DEALT = StructType([
    StructField("batch_id", IntegerType(), False),
    StructField("overlap", BooleanType(), False),
    StructField("annotators", ArrayType(IntegerType()), False),
    StructField("positions", ArrayType(IntegerType()), False),
])


def annotators_from(settings) -> list[str]:
    names = settings["annotate.annotators"]
    if not names:
        raise ConfigError("setting 'annotate.annotators' is required: the names of the annotators, "
                          "e.g. --set annotate.annotators=[ana,ben,chen]")
    names = [str(name).strip() for name in names]
    if any(not name for name in names):
        raise ConfigError("setting 'annotate.annotators' holds an empty name")
    if len(set(names)) != len(names):
        raise ConfigError(f"setting 'annotate.annotators' names an annotator twice: {names}")
    return names


def run(ctx: RunContext, tracker, say=print) -> dict:
    started = time.monotonic()
    settings = ctx.settings
    names = annotators_from(settings)
    if not ctx.store.exists("inclusion"):
        raise ConfigError(f"setting 'output': no inclusion table under {settings.output}; "
                          "run `triage curate` first")
    included = included_instances(ctx.store.read("inclusion"), settings["annotate.stratify_by"])
    plan = assignments(included, names, settings["annotate.batch_size"], settings["annotate.overlap_fraction"],
                       settings["annotate.seed"])
    ctx.store.write(ctx.stamp(plan, ASSIGNMENTS), "annotation_assignments", mode="overwrite")
    written = ctx.store.read("annotation_assignments")
    lists = write_lists(ctx.store, written)
    counts = plan_counts(written)
    counts["seconds"] = round(time.monotonic() - started, 2)
    say(f"annotate plan: {counts['instances']} included instances in {counts['batches']} batches for "
        f"{len(names)} annotators ({counts['overlap_instances']} labelled by all), "
        f"table annotation_assignments ({counts['seconds']} s)")
    say(f"annotate plan: one CSV list per annotator in {lists}/annotator=NAME/" if lists else
        "annotate plan: per-annotator CSV lists are written for local outputs only; query the table")
    tracker.metrics({f"annotate.plan.{k}": v for k, v in counts.items()})
    return counts


def included_instances(inclusion: DataFrame, stratify_by: list) -> DataFrame:
    """DataFrame[path, sop_instance_uid, stratum] of the included instances."""
    columns = [str(c) for c in (stratify_by or [])]
    missing = [c for c in columns if c not in inclusion.columns]
    if missing:
        raise ConfigError(f"setting 'annotate.stratify_by': no column {', '.join(missing)} in the inclusion "
                          f"table (columns: {', '.join(inclusion.columns)})")
    if columns:
        stratum = F.concat_ws("|", *[F.concat(F.lit(f"{c}="), F.coalesce(F.col(c).cast("string"), F.lit("")))
                                     for c in columns])
    else:
        stratum = F.lit("all")
    return (inclusion.filter((F.col("decision") == "include") & F.col("sop_instance_uid").isNotNull())
            .select("path", "sop_instance_uid", stratum.alias("stratum")))


def assignments(included: DataFrame, names: list[str], batch_size: int, overlap_fraction: float,
                seed: int) -> DataFrame:
    """The plan, in ASSIGNMENTS' columns (without the run columns)."""
    spark = included.sparkSession
    ranked = included.withColumn("_hash", F.xxhash64(F.lit(int(seed)), F.col("path")))
    ranked = ranked.withColumn(
        "_rank", F.row_number().over(Window.partitionBy("stratum").orderBy("_hash", "path")) - 1)
    # Stratum offsets from the table of stratum sizes (one small row per stratum, the
    # only thing collected), strata in a seeded order.
    sizes = included.groupBy("stratum").agg(F.count(F.lit(1)).alias("size"),
                                            F.first(F.xxhash64(F.lit(int(seed)), F.col("stratum"))).alias("order"))
    offsets, total = {}, 0
    for row in sorted(sizes.collect(), key=lambda r: (r["order"], r["stratum"])):
        offsets[row["stratum"]] = total
        total += row["size"]
    if total == 0:
        return spark.createDataFrame([], _without_run(ASSIGNMENTS))
    offset_of = F.create_map(*[F.lit(v) for item in offsets.items() for v in item])
    placed = ranked.withColumn("_k", F.element_at(offset_of, F.col("stratum")) + F.col("_rank"))
    n_annotators = len(names)

    @F.pandas_udf(DEALT)
    def dealt(k: pd.Series) -> pd.DataFrame:
        return deal(k.to_numpy(), total, batch_size, overlap_fraction, n_annotators)

    names_column = F.array(*[F.lit(name) for name in names])
    out = (placed.withColumn("_d", dealt(F.col("_k")))
           .select("path", "sop_instance_uid", "stratum", "_d.batch_id", "_d.overlap",
                   F.col("_d.annotators").alias("who"), F.col("_d.positions").alias("where"))
           .select("path", "sop_instance_uid", "stratum", "batch_id", "overlap",
                   F.explode(F.arrays_zip("who", "where")).alias("_a"))
           .select("batch_id", F.element_at(names_column, F.col("_a.who") + 1).alias("annotator"),
                   "path", "sop_instance_uid", "overlap", "stratum",
                   F.col("_a.where").cast("int").alias("position")))
    return out


def write_lists(store, plan: DataFrame) -> str | None:
    """One CSV per annotator (batch, position, path, ...) under
    <output>/annotation_assignments_csv/annotator=NAME/, for outputs on local
    disk (Spark's own writer cannot reach object stores here). None otherwise."""
    output = store.output
    if store.catalog or ("://" in output and not output.startswith("file:")):
        return None
    folder = output.rstrip("/") + "/annotation_assignments_csv"
    (plan.select("annotator", "batch_id", "position", "path", "sop_instance_uid", "overlap", "stratum")
     .repartition("annotator").sortWithinPartitions("annotator", "batch_id", "position")
     .write.mode("overwrite").partitionBy("annotator").option("header", True).csv(folder))
    return folder


def _without_run(schema: StructType) -> StructType:
    return StructType([f for f in schema.fields if f.name not in ("run_id", "computed_at")])


def plan_counts(plan: DataFrame) -> dict:
    row = plan.agg(F.countDistinct("path").alias("instances"), F.countDistinct("batch_id").alias("batches"),
                   F.countDistinct(F.when(F.col("overlap"), F.col("path"))).alias("overlap_instances"),
                   F.count(F.lit(1)).alias("assignments")).first()
    return {key: int(row[key] or 0) for key in ("instances", "batches", "overlap_instances", "assignments")}
