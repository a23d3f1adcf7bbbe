"""`triage evaluate --truth FILE`: the run's decisions scored against a team's
verified answers (udfs/evaluation.py reads the file).

Reads `inclusion` (and `instances`, `ingest_errors` for relative paths);
writes `evaluation` (recall and precision per reason code), `evaluation_decisions`
(expected against actual decisions) and `evaluation_cases` (the misses and
false alarms, a bounded number per code, with the run's evidence). Only the
verified objects count: a team that checked 5,000 of 150,000 images scores
the run on those 5,000. Everything is counted in Spark.
"""
from __future__ import annotations

import io
import time

import pandas as pd
from pyspark.sql import DataFrame, Window, functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from dicom_triage.jobs.config import ConfigError, require
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.schemas.evaluation import EVALUATION, EVALUATION_CASES, EVALUATION_DECISIONS
from dicom_triage.schemas.reasons import ALL_CODES, IO_ERROR, TIMEOUT

STAGE = "evaluate"
TRUTH = StructType([StructField("key", StringType(), False), StructField("key_kind", StringType(), False),
                    StructField("truth_codes", ArrayType(StringType()), True),
                    StructField("truth_decision", StringType(), True)])


def run(ctx: RunContext, tracker, say=print) -> dict:
    from dicom_triage.udfs.evaluation import TruthError, normalise_truth

    started = time.monotonic()
    settings = ctx.settings.evaluate
    uri = require(ctx.settings, "evaluate.truth", "the verified answers, e.g. --truth verified.csv")
    if not ctx.store.exists("inclusion"):
        raise ConfigError("setting 'output': no `inclusion` table to evaluate; run `triage curate` first")
    try:
        truth = normalise_truth(read_truth(uri, ctx.storage_options), ALL_CODES | {IO_ERROR, TIMEOUT})
    except TruthError as exc:
        raise ConfigError(f"setting 'evaluate.truth': {uri}: {exc}") from None
    rows = [(k, kind, None if codes is None else list(codes), decision)
            for k, kind, codes, decision in truth[["key", "key_kind", "codes", "decision"]].itertuples(index=False)]
    truth_df = ctx.spark.createDataFrame(rows, TRUTH)
    matched = match(truth_df, objects(ctx.store)).persist()
    try:
        severity = ctx.settings["curate.severity"]
        scored = with_expected_decision(matched, severity)
        codes = per_code(scored, truth_df, uri)
        decisions = decision_matrix(scored)
        cases = worst_cases(scored, codes, settings.max_cases_per_code)
        ctx.store.write(ctx.stamp(codes, EVALUATION), "evaluation", mode="overwrite")
        ctx.store.write(ctx.stamp(decisions, EVALUATION_DECISIONS), "evaluation_decisions", mode="overwrite")
        ctx.store.write(ctx.stamp(cases, EVALUATION_CASES), "evaluation_cases", mode="overwrite")
        summary = clean_flagged(scored)
        unmatched = matched.filter(F.col("path").isNull()).count()
    finally:
        matched.unpersist()
    table = ctx.store.read("evaluation").orderBy(F.desc("in_truth"), "code").collect()
    for line in scorecard(table):
        say(line)
    say(f"evaluate: {len(truth)} verified objects, {unmatched} not in the output; "
        f"clean objects sent to review or excluded: {summary['clean_flagged']} of {summary['clean']}"
        + (f" ({summary['clean_flagged'] / summary['clean']:.1%})" if summary["clean"] else ""))
    metrics = {"evaluate.verified": len(truth), "evaluate.unmatched": unmatched,
               "evaluate.clean_flagged_share": summary["clean_flagged"] / max(summary["clean"], 1)}
    for row in table:
        if row.in_truth and row.recall is not None:
            metrics[f"evaluate.recall.{row.code}"] = row.recall
        if row.in_truth and row.precision is not None:
            metrics[f"evaluate.precision.{row.code}"] = row.precision
    tracker.metrics(metrics)
    say(f"evaluate: wrote evaluation, evaluation_decisions, evaluation_cases ({time.monotonic() - started:.1f} s)")
    return {"verified": len(truth), "unmatched": unmatched, **summary}


def read_truth(uri: str, storage_options: dict) -> pd.DataFrame:
    from dicom_triage.jobs.storage import open_url
    try:
        with open_url(uri, "rb", storage_options) as handle:
            data = handle.read()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"setting 'evaluate.truth': cannot read {uri}: {exc}") from None
    try:
        if uri.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except ValueError as exc:
        raise ConfigError(f"setting 'evaluate.truth': {uri} is not CSV or Parquet: {exc}") from None


def objects(store) -> DataFrame:
    """Every decided object with the keys a truth file may name it by."""
    inclusion = store.read("inclusion").select("path", "sop_instance_uid", "reasons", "decision", "evidence")
    relative = None
    for table in ("instances", "ingest_errors"):
        if store.exists(table):
            part = store.read(table).select("path", "relative_path")
            relative = part if relative is None else relative.unionByName(part)
    if relative is not None:
        inclusion = inclusion.join(relative.dropDuplicates(["path"]), "path", "left")
    else:
        inclusion = inclusion.withColumn("relative_path", F.lit(None).cast("string"))
    return inclusion


def match(truth: DataFrame, decided: DataFrame) -> DataFrame:
    """Each truth row with the object it names (null columns when none):
    a `path` key matches the full path or the path relative to the delivery."""
    def keyed(column: str, kind: str, rank: int) -> DataFrame:
        return decided.filter(F.col(column).isNotNull()).select(
            F.regexp_replace(F.col(column), "^\\./", "").alias("key"), F.lit(kind).alias("key_kind"),
            F.lit(rank).alias("_rank"), "path", "reasons", "decision", "evidence")
    keys = keyed("path", "path", 0).unionByName(keyed("relative_path", "path", 1)) \
        .unionByName(keyed("sop_instance_uid", "sop_instance_uid", 2))
    first = Window.partitionBy("key", "key_kind").orderBy("_rank", "path")
    keys = keys.withColumn("_n", F.row_number().over(first)).filter("_n = 1").drop("_n", "_rank")
    truth = truth.withColumn("key", F.regexp_replace("key", "^\\./", ""))
    return truth.join(keys, ["key", "key_kind"], "left")


def with_expected_decision(matched: DataFrame, severity) -> DataFrame:
    levels = F.create_map(*[F.lit(x) for code, level in severity.items() for x in (code, level)])
    found = F.transform("truth_codes", lambda c: F.coalesce(levels[c], F.lit("review")))
    derived = (F.when(F.col("truth_codes").isNull(), F.lit(None))
               .when(F.array_contains(found, "exclude"), "exclude")
               .when(F.array_contains(found, "review"), "review").otherwise("include"))
    return matched.withColumn("expected", F.coalesce("truth_decision", derived))


def per_code(scored: DataFrame, truth: DataFrame, uri: str) -> DataFrame:
    """Recall and precision per code over the verified objects found in the output."""
    found = scored.filter(F.col("path").isNotNull() & F.col("truth_codes").isNotNull())
    planted = found.select(F.explode("truth_codes").alias("code")).groupBy("code").agg(F.count("*").alias("planted"))
    flagged = found.select(F.explode("reasons").alias("code")).groupBy("code").agg(F.count("*").alias("flagged"))
    hits = found.select(F.explode(F.array_intersect("truth_codes", "reasons")).alias("code")) \
        .groupBy("code").agg(F.count("*").alias("true_positives"))
    named = truth.filter(F.col("truth_codes").isNotNull()).select(F.explode("truth_codes").alias("code")) \
        .distinct().withColumn("in_truth", F.lit(True))
    zero = F.lit(0).cast("long")
    return (planted.join(flagged, "code", "full").join(hits, "code", "full").join(named, "code", "full")
            .select("code", F.coalesce("in_truth", F.lit(False)).alias("in_truth"),
                    F.coalesce("planted", zero).alias("planted"), F.coalesce("flagged", zero).alias("flagged"),
                    F.coalesce("true_positives", zero).alias("true_positives"))
            .withColumn("recall", F.when(F.col("planted") > 0, F.col("true_positives") / F.col("planted")))
            .withColumn("precision", F.when(F.col("in_truth") & (F.col("flagged") > 0),
                                            F.col("true_positives") / F.col("flagged")))
            .withColumn("truth", F.lit(uri)))


def decision_matrix(scored: DataFrame) -> DataFrame:
    return (scored.filter(F.col("expected").isNotNull())
            .groupBy("expected", F.coalesce("decision", F.lit("missing")).alias("decision"))
            .agg(F.count("*").alias("objects")))


def worst_cases(scored: DataFrame, codes: DataFrame, per_code_limit: int) -> DataFrame:
    """Misses (a verified code the run did not give) and false alarms (a code
    the truth names somewhere, given where it does not apply), at most
    `per_code_limit` of each per code, with the run's evidence."""
    found = scored.filter(F.col("path").isNotNull() & F.col("truth_codes").isNotNull())
    missed = found.select(F.lit("missed").alias("kind"), F.explode(F.array_except("truth_codes", "reasons"))
                          .alias("code"), "path", "truth_codes", "reasons", "decision", "evidence")
    false_alarm = found.select(F.lit("false_alarm").alias("kind"),
                               F.explode(F.array_except("reasons", "truth_codes")).alias("code"),
                               "path", "truth_codes", "reasons", "decision", "evidence") \
        .join(codes.filter("in_truth").select("code"), "code", "left_semi")
    cases = missed.unionByName(false_alarm)
    first = Window.partitionBy("kind", "code").orderBy("path")
    said = F.array_join(F.transform("evidence", lambda e: F.concat_ws(": ", e["code"], e["detail"])), "; ")
    return (cases.withColumn("_n", F.row_number().over(first)).filter(F.col("_n") <= per_code_limit)
            .withColumn("evidence", said).drop("_n"))


def clean_flagged(scored: DataFrame) -> dict:
    """Verified-clean objects (the truth expects them kept) and how many the run did not keep."""
    clean = scored.filter((F.col("expected") == "include") & F.col("path").isNotNull())
    row = clean.agg(F.count("*").alias("clean"),
                    F.sum(F.when(F.col("decision") != "include", 1).otherwise(0)).alias("flagged")).first()
    return {"clean": int(row["clean"] or 0), "clean_flagged": int(row["flagged"] or 0)}


def scorecard(rows) -> list[str]:
    from dicom_triage.jobs.summary import format_table

    def ratio(value):
        return "" if value is None else f"{value:.2f}"
    body = [[r.code, r.planted, r.flagged, r.true_positives, ratio(r.recall), ratio(r.precision)]
            for r in rows if r.in_truth]
    extra = [[r.code, "-", r.flagged, "-", "", ""] for r in rows if not r.in_truth]
    lines = ["evaluate: per reason code, on the verified objects"]
    lines += ["  " + line for line in format_table(
        ["code", "planted", "flagged", "found", "recall", "precision"], body + extra)]
    if extra:
        lines.append("  (codes marked '-' are not in the truth file: flagged, not scored)")
    return lines
