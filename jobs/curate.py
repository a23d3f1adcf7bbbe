"""Curate stage: one decision per listed object, with the evidence behind it,
and the review queue.

Reads the tables of every earlier stage (those that exist) and nothing else,
so changing `curate.*` or `review_queue.*` and running `triage curate` again
needs no earlier stage. Writes:

* `inclusion`: one row per listed object (instances and ingest errors):
  every finding becomes an evidence struct (code, severity from
  `curate.severity`, scope, source table, score, threshold); series findings
  land on every instance of the series; a series with more than
  `curate.series_exclude_fraction` of its instances excluded is excluded
  whole. decision = exclude if any evidence excludes, else review if any asks
  for review, else include.
* `review_queue`: the `review_queue.size` instances to look at first, ordered
  by review_priority and diversified over embedding clusters
  (udfs/review.py), each with its thumbnail.
"""
from __future__ import annotations

import time

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window, functions as F

from dicom_triage.jobs.anatomy import explained_looks
from dicom_triage.jobs.progress import counts_text
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.schemas.curate import INCLUSION, REVIEW_QUEUE
from dicom_triage.schemas.pixels import FINDINGS
from dicom_triage.udfs.review import diversified_order

SEVERITY_WEIGHT = {"exclude": 1.0, "review": 0.5, "annotate": 0.1}
OBJECT_COLUMNS = ["path", "sop_instance_uid", "series_instance_uid", "study_instance_uid", "patient_key",
                  "site", "modality", "manufacturer", "body_part_examined", "size_bytes"]


STAGE = "curate"
# What each earlier table adds to the decisions; a missing one is named in run_notes.
CONTRIBUTIONS = {
    "ingest_errors": "the objects that could not be read",
    "pixel_stats": "pixel quality, decoding and exact-duplicate findings",
    "series": "series geometry and localizer findings",
    "anatomy": "the content check (IRRELEVANT_CONTENT), the region model's findings and uncertainty",
    "duplicates": "near duplicates (NEAR_DUPLICATE)",
    "clusters": "embedding outliers and the outlier score",
}


def run(ctx: RunContext, tracker, say=print) -> dict:
    started = time.monotonic()
    store = ctx.store
    if not store.exists("instances"):
        ctx.note(STAGE, "missing_table", "skipped: no `instances` table; run `triage ingest` first",
                 level="error", say=say)
        return {}
    missing = [name for name in CONTRIBUTIONS if not store.exists(name)]
    if missing:
        ctx.note(STAGE, "missing_table", "decided without " + "; ".join(
            f"`{name}` ({CONTRIBUTIONS[name]})" for name in missing), say=say)
    objects = listed_objects(store).persist(StorageLevel.MEMORY_AND_DISK)
    # read once, used twice (the series rule and the decisions)
    found = with_severity(all_evidence(ctx, objects), ctx.settings["curate.severity"]) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    try:
        evidence = found.unionByName(series_exclusions(objects, found, ctx.settings.curate))
        inclusion = decide(objects, evidence, instance_scores(store), ctx.settings.review_queue)
        store.write(ctx.stamp(inclusion, INCLUSION), "inclusion", mode="overwrite")
    finally:
        found.unpersist()
        objects.unpersist()
    say(f"curate: wrote inclusion ({time.monotonic() - started:.1f} s)")
    queue = review_queue(ctx, store.read("inclusion"))
    store.write(ctx.stamp(queue, REVIEW_QUEUE), "review_queue", mode="overwrite")
    counts = decision_counts(store.read("inclusion"))
    counts["review_queue"] = store.read("review_queue").count()
    counts["seconds"] = round(time.monotonic() - started, 2)
    say(f"curate: done in {counts['seconds']:.0f} s: {counts_text(counts)}")
    tracker.metrics({f"curate.{k}": v for k, v in counts.items()})
    return counts


# -- what was listed ----------------------------------------------------------

def listed_objects(store) -> DataFrame:
    """Every listed object once: its instance row, or its ingest error row."""
    instances = store.read("instances").select(*OBJECT_COLUMNS)
    if not store.exists("ingest_errors"):
        return instances
    errors = store.read("ingest_errors").select(
        "path", *[F.lit(None).cast("string").alias(c) for c in OBJECT_COLUMNS[1:5]], "site",
        *[F.lit(None).cast("string").alias(c) for c in OBJECT_COLUMNS[6:9]], "size_bytes")
    return instances.unionByName(errors.join(instances.select("path"), "path", "left_anti"))


# -- evidence -----------------------------------------------------------------

def _evidence(df: DataFrame, code: Column, scope: str, source: str, score: Column, threshold: Column,
              detail: Column) -> DataFrame:
    return df.select("path", code.alias("code"), F.lit(scope).alias("scope"), F.lit(source).alias("source"),
                     score.cast("double").alias("score"), threshold.cast("double").alias("threshold"),
                     detail.cast("string").alias("detail"))


def _findings(df: DataFrame, source: str, scope: str = "instance") -> DataFrame:
    """Evidence rows from a table's `findings` array."""
    exploded = df.select("path", F.explode("findings").alias("f"))
    return _evidence(exploded, F.col("f.code"), scope, source, F.col("f.score"), F.col("f.threshold"),
                     F.col("f.detail"))


def all_evidence(ctx: RunContext, objects: DataFrame) -> DataFrame:
    """DataFrame[path, code, scope, source, score, threshold, detail] from every table present."""
    store, settings = ctx.store, ctx.settings
    instances = store.read("instances")
    parts = [header_evidence(instances, settings, explained_looks(store, instances))]
    if store.exists("ingest_errors"):
        errors = store.read("ingest_errors")
        parts.append(_evidence(errors, F.col("error_code"), "instance", "ingest_errors", F.lit(None),
                               F.lit(None), F.substring(F.col("error_message"), 1, 300)))
    for table in ("pixel_stats", "anatomy", "clusters"):
        if store.exists(table):
            parts.append(_findings(store.read(table), table))
    if store.exists("series"):
        series = store.read("series").select("series_instance_uid", F.explode("findings").alias("f"))
        members = objects.filter(F.col("series_instance_uid").isNotNull()).select("path", "series_instance_uid")
        on_instances = series.join(members, "series_instance_uid")
        parts.append(_evidence(on_instances, F.col("f.code"), "series", "series", F.col("f.score"),
                               F.col("f.threshold"), F.col("f.detail")))
    if store.exists("duplicates"):
        near = store.read("duplicates").filter((F.col("kind") == "near") & ~F.col("is_original"))
        parts.append(_evidence(near, F.lit("NEAR_DUPLICATE"), "instance", "duplicates",
                               F.col("group_size"), F.lit(settings.neighbors.near_duplicate_max_distance),
                               F.concat(F.lit("embedding within the near-duplicate distance of "),
                                        F.col("original_path"), F.lit(" (kept as the original)"))))
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def relevance_udf(expected_modalities: list[str], expected_regions: list[str]):
    @F.pandas_udf(FINDINGS)
    def findings(modality: pd.Series, body_part: pd.Series, study: pd.Series, series: pd.Series,
                 protocol: pd.Series, looks_explained: pd.Series, photometric: pd.Series, kvp: pd.Series,
                 rescale_type: pd.Series, field_strength: pd.Series, echo_time: pd.Series) -> pd.Series:
        from dicom_triage.udfs.relevance import header_findings
        acquisitions = (None if explained else dict(photometric=p, kvp=k, rescale_type=r, field_strength=f,
                                                 echo_time=e)
                        for explained, p, k, r, f, e in zip(looks_explained, photometric, kvp, rescale_type,
                                                         field_strength, echo_time))
        return pd.Series([header_findings(*values, expected_modalities, expected_regions, acquisition)
                          for *values, acquisition in zip(modality, body_part, study, series, protocol,
                                                          acquisitions)])
    return findings


def header_evidence(instances: DataFrame, settings, explained: DataFrame | None = None) -> DataFrame:
    """Rules on header values alone: UNEXPECTED_MODALITY, UNEXPECTED_ANATOMY,
    ANATOMY_HEADER_MISMATCH and, unless `explained` says something other than
    its content explains the image, IRRELEVANT_CONTENT by acquisition attributes, on image objects
    (udfs/relevance.py); PHI_PRESENT; BURNED_IN_ANNOTATION."""
    from dicom_triage.udfs.relevance import ACQUISITION_COLUMNS, normalised_regions

    curate = settings.curate
    relevance = relevance_udf([m.upper() for m in settings.expect.modalities],
                              normalised_regions(settings.anatomy.expected_regions))
    images = instances.filter(F.coalesce("has_pixel_data", F.lit(True)))
    if explained is not None:   # jobs.anatomy.explained_looks
        images = images.join(explained.withColumnRenamed("explained", "looks_explained"), "path", "left")
    else:
        images = images.withColumn("looks_explained", F.lit(False))
    parts = [_findings(images.select("path", relevance(
        "modality", "body_part_examined", "study_description", "series_description", "protocol_name",
        F.coalesce("looks_explained", F.lit(False)), *ACQUISITION_COLUMNS).alias("findings")), "instances")]
    modality = F.upper(F.trim(F.coalesce("modality", F.lit(""))))
    if settings.privacy.declared_deidentified:
        # real identifiers, not pseudonyms (udfs/phi.py); tables ingested before
        # `phi_evidence` existed fall back to any identifier value
        column = "phi_evidence" if "phi_evidence" in instances.columns else "identifiers_present"
        phi = instances.filter(F.size(F.coalesce(column, F.array())) > 0)
        parts.append(_evidence(phi, F.lit("PHI_PRESENT"), "instance", "instances",
                               F.size(column), F.lit(0.0),
                               F.concat(F.lit("identifiers in a delivery declared de-identified: "),
                                        F.array_join(column, "; "))))
    if "conformance" in instances.columns:  # tables ingested before the check existed have no column
        broken = instances.filter(F.size(F.coalesce("conformance", F.array())) > 0)
        parts.append(_evidence(broken, F.lit("NON_CONFORMANT"), "instance", "instances", F.size("conformance"),
                               F.lit(0.0), F.array_join("conformance", "; ")))
    image_types = F.transform(F.coalesce("image_type", F.array().cast("array<string>")),
                              lambda t: F.upper(F.trim(t)))
    typed = F.arrays_overlap(image_types, F.array(*[F.lit(t.upper()) for t in curate.burned_in_image_types]))
    declared = F.upper(F.trim(F.coalesce("burned_in_annotation", F.lit(""))))
    on_modality = modality.isin([m.upper() for m in curate.burned_in_modalities])
    # the header's own flag wins; the image type is the hint only where the flag is absent
    burned = instances.filter((declared == "YES")
                              | ((declared == "") & on_modality & F.coalesce(typed, F.lit(False))))
    parts.append(_evidence(burned, F.lit("BURNED_IN_ANNOTATION"), "instance", "instances", F.lit(None),
                           F.lit(None),
                           F.when(declared == "YES", F.lit("header BurnedInAnnotation = YES"))
                           .otherwise(F.concat(F.lit("image type "), F.array_join("image_type", "\\"),
                                               F.lit(" on this modality usually carries burned-in text")))))
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def with_severity(evidence: DataFrame, severity) -> DataFrame:
    """Add `severity` from the configuration (an unknown code asks for review)."""
    mapping = F.create_map(*[F.lit(x) for code, level in severity.items() for x in (code, level)])
    return evidence.withColumn("severity", F.coalesce(mapping[F.col("code")], F.lit("review")))


def series_exclusions(objects: DataFrame, evidence: DataFrame, curate) -> DataFrame:
    """Evidence that excludes the rest of a series whose excluded share passes
    `curate.series_exclude_fraction`; its code is the series' most frequent
    excluding code, its score the excluded share."""
    limit = float(curate.series_exclude_fraction)
    members = objects.filter(F.col("series_instance_uid").isNotNull()).select("path", "series_instance_uid")
    excluding = evidence.filter(F.col("severity") == "exclude").select("path", "code")
    excluded = excluding.select("path").distinct().withColumn("_excluded", F.lit(1))
    shares = (members.join(excluded, "path", "left").groupBy("series_instance_uid")
              .agg(F.count("*").alias("_n"), F.sum(F.coalesce("_excluded", F.lit(0))).alias("_x"))
              .withColumn("_share", F.col("_x") / F.col("_n"))
              .filter((F.col("_share") > limit) & (F.col("_x") < F.col("_n"))))
    top_code = (excluding.join(members, "path").groupBy("series_instance_uid", "code").count()
                .withColumn("_r", F.row_number().over(Window.partitionBy("series_instance_uid")
                                                      .orderBy(F.desc("count"), "code")))
                .filter("_r = 1").select("series_instance_uid", F.col("code").alias("_code")))
    rest = (members.join(shares, "series_instance_uid").join(top_code, "series_instance_uid")
            .join(excluded, "path", "left_anti"))
    return _evidence(rest, F.col("_code"), "series", "inclusion", F.col("_share"), F.lit(limit),
                     F.concat(F.col("_x").cast("string"), F.lit(" of "), F.col("_n").cast("string"),
                              F.lit(" instances of the series are excluded (most for "), F.col("_code"),
                              F.lit("): the series is excluded whole"))).withColumn("severity", F.lit("exclude"))


# -- decisions and priority ---------------------------------------------------

SCORE_COLUMNS = {"uncertainty": "double", "outlier": "double", "predicted_region": "string", "cluster": "int"}


def instance_scores(store) -> DataFrame | None:
    """DataFrame[path, uncertainty, outlier, predicted_region, cluster] from anatomy
    and clusters, whichever exist (the other columns null); None without both."""
    parts = []
    if store.exists("anatomy"):
        parts.append(store.read("anatomy").select("path", F.col("entropy").alias("uncertainty"),
                                                  "predicted_region"))
    if store.exists("clusters"):
        parts.append(store.read("clusters").select(
            "path", (F.lit(1.0) - F.col("outlier_score")).alias("outlier"), "cluster"))
    if not parts:
        return None
    scores = parts[0] if len(parts) == 1 else parts[0].join(parts[1], "path", "full")
    for name, kind in SCORE_COLUMNS.items():
        if name not in scores.columns:
            scores = scores.withColumn(name, F.lit(None).cast(kind))
    return scores


def decide(objects: DataFrame, evidence: DataFrame, scores: DataFrame | None, queue_settings) -> DataFrame:
    struct = F.struct("code", "severity", "scope", "source", "score", "threshold", "detail")
    weights = F.create_map(*[F.lit(x) for level, w in SEVERITY_WEIGHT.items() for x in (level, w)])
    per_object = evidence.groupBy("path").agg(
        F.array_sort(F.collect_list(struct)).alias("evidence"),
        F.array_sort(F.collect_set("code")).alias("reasons"),
        F.array_sort(F.collect_set(F.when(F.col("severity") == "exclude", F.col("code")))).alias("excluded_by"),
        F.max(F.when(F.col("severity") == "review", 1).otherwise(0)).alias("_review"),
        # noisy-or of the findings' weights: several findings weigh more than one
        F.aggregate(F.collect_list(F.lit(1.0) - weights[F.col("severity")]), F.lit(1.0),
                    lambda acc, x: acc * x).alias("_keep_all"),
    )
    df = objects.join(per_object, "path", "left")
    if scores is None:
        df = (df.withColumn("uncertainty", F.lit(None).cast("double")).withColumn("outlier", F.lit(None).cast("double"))
              .withColumn("predicted_region", F.lit(None).cast("string")).withColumn("cluster", F.lit(None).cast("int")))
    else:
        df = df.join(scores, "path", "left")
    w = queue_settings.weights
    total = max(w.uncertainty + w.outlier + w.severity, 1e-9)
    df = (df.withColumn("evidence", F.coalesce("evidence", F.array().cast(INCLUSION["evidence"].dataType)))
          .withColumn("reasons", F.coalesce("reasons", F.array().cast("array<string>")))
          .withColumn("excluded_by", F.coalesce("excluded_by", F.array().cast("array<string>")))
          .withColumn("severity", F.lit(1.0) - F.coalesce("_keep_all", F.lit(1.0)))
          .withColumn("decision", F.when(F.size("excluded_by") > 0, "exclude")
                      .when(F.coalesce("_review", F.lit(0)) > 0, "review").otherwise("include"))
          .withColumn("review_priority", F.when(
              F.col("sop_instance_uid").isNotNull() | F.col("series_instance_uid").isNotNull(),
              (w.uncertainty * F.coalesce("uncertainty", F.lit(0.0)) + w.outlier * F.coalesce("outlier", F.lit(0.0))
               + w.severity * F.col("severity")) / total)))
    return df.withColumn("cluster", F.col("cluster").cast("int"))


# -- review queue -------------------------------------------------------------

def review_queue(ctx: RunContext, inclusion: DataFrame) -> DataFrame:
    """The queue: candidates are `review` decisions and included instances at
    least `uncertain_include_min` uncertain; Spark keeps the best `size` of
    each cluster, udfs.review.diversified_order picks and orders them."""
    settings = ctx.settings.review_queue
    size = int(settings.size)
    spark = inclusion.sparkSession
    candidates = inclusion.filter(
        F.col("review_priority").isNotNull()
        & ((F.col("decision") == "review")
           | ((F.col("decision") == "include") & (F.col("uncertainty") >= settings.uncertain_include_min))))
    best = (candidates.withColumn("_r", F.row_number().over(
        Window.partitionBy("cluster").orderBy(F.desc("review_priority"), "path")))
        .filter(F.col("_r") <= size)
        .select("path", "cluster", "review_priority").collect() if size > 0 else [])
    order = diversified_order([r.review_priority for r in best], [r.cluster for r in best], size,
                              settings.max_cluster_share)
    ranks = spark.createDataFrame([(best[i].path, rank) for rank, i in enumerate(order, start=1)],
                                  "path string, queue_rank int")
    chosen = F.broadcast(ranks).join(inclusion, "path")
    return with_thumbnails(ctx.store, chosen).orderBy("queue_rank")


def with_thumbnails(store, queue: DataFrame) -> DataFrame:
    """The instance's thumbnail, else its series' maximum intensity projection."""
    thumb = F.lit(None).cast("binary")
    if store.exists("pixel_stats"):
        queue = queue.join(store.read("pixel_stats").select("path", F.col("thumbnail_png").alias("_thumb")),
                           "path", "left")
        thumb = F.col("_thumb")
    if store.exists("series"):
        queue = queue.join(store.read("series").select("series_instance_uid", F.col("mip_png").alias("_mip")),
                           "series_instance_uid", "left")
        thumb = F.coalesce(thumb, F.col("_mip"))
    return queue.withColumn("thumbnail_png", thumb)


def decision_counts(inclusion: DataFrame) -> dict:
    counts = {r.decision: r["count"] for r in inclusion.groupBy("decision").count().collect()}
    return {d: counts.get(d, 0) for d in ("include", "exclude", "review")}


def top_reasons(inclusion: DataFrame, limit: int = 5) -> list[tuple[str, int]]:
    """The codes that most often decided against keeping an object (severity
    exclude or review; annotations left out): [(code, objects)]."""
    deciding = (inclusion.filter(F.col("decision") != "include")
                .select("path", F.explode("evidence").alias("e"))
                .filter(F.col("e.severity") != "annotate")
                .select("path", F.col("e.code").alias("code")).distinct())
    rows = deciding.groupBy("code").count().orderBy(F.desc("count"), "code").limit(limit).collect()
    return [(r.code, r["count"]) for r in rows]
