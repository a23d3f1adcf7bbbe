"""Neighbors stage: all-pairs approximate k-NN over the embeddings, outlier
scores, near- and exact-duplicate groups, clusters and a 2-D map.

Reads `embeddings`, `instances` and `pixel_stats`; writes `neighbors`,
`duplicates`, `clusters` and `cluster_makeup`. Everything runs as DataFrame
operations: the k-NN in IVF partitions (jobs/knn.py), duplicate groups by
label propagation (jobs/graph.py), k-means and PCA with Spark ML, UMAP fitted
on a sample and applied with mapInPandas (jobs/clusters.py).
"""
from __future__ import annotations

import time

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window, functions as F

from dicom_triage.jobs.clusters import cluster_embeddings, makeup_by_dimension, umap_map, use_umap
from dicom_triage.jobs.config import ConfigError
from dicom_triage.jobs.graph import connected_components
from dicom_triage.jobs.knn import all_pairs_knn
from dicom_triage.jobs.progress import counts_text
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.schemas.neighbors import CLUSTER_MAKEUP, CLUSTERS, DUPLICATES, NEIGHBORS


def run(ctx: RunContext, tracker, say=print) -> dict:
    started = time.monotonic()
    settings = ctx.settings.neighbors
    for table in ("instances", "embeddings", "pixel_stats"):
        if not ctx.store.exists(table):
            ctx.note("neighbors", "missing_table", f"skipped: no `{table}` table (did the earlier stage run?); "
                     "no near duplicates, outliers or clusters", say=say)
            return {}
    try:
        with_umap = use_umap(ctx.settings.clusters.map)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    instances = ctx.store.read("instances").select("path", "series_instance_uid", "modified_at", "site", "modality",
                                                   "manufacturer")
    vectors = (ctx.store.read("embeddings").filter(F.col("embedding").isNotNull())
               # a non-negative 63-bit id per path (the k-NN pads with -1)
               .select(F.xxhash64("path").bitwiseAND(0x7FFFFFFFFFFFFFFF).alias("id"), "path", "sop_instance_uid",
                       F.col("embedding").alias("vector"))
               .join(instances, "path", "left")
               .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        count = vectors.count()
        say(f"neighbors: k-NN over {count} embeddings")
        knn = all_pairs_knn(vectors.select("id", "vector"), k=settings.k, lists=settings.lists,
                            overlap=settings.overlap, max_block=settings.max_block, exact=settings.exact,
                            exact_below=settings.exact_below)
        pairs = with_paths(knn, vectors).persist(StorageLevel.MEMORY_AND_DISK)
        ctx.store.write(ctx.stamp(pairs, NEIGHBORS), "neighbors", mode="overwrite")
        say(f"neighbors: wrote neighbors ({time.monotonic() - started:.1f} s)")
        ctx.store.write(ctx.stamp(duplicate_groups(ctx, pairs, vectors), DUPLICATES),
                        "duplicates", mode="overwrite")
        scored = outlier_scores(pairs, vectors, settings.outlier_iqr_fence, settings.outlier_min_group)
        clustered = cluster_embeddings(scored, k=ctx.settings.clusters.k, fit_sample=ctx.settings.clusters.fit_sample)
        mapped = (umap_map(clustered, ctx.settings.clusters.map_sample, epochs=ctx.settings.clusters.umap_epochs)
                  if with_umap else clustered.withColumn("umap_x", F.lit(None).cast("double"))
                  .withColumn("umap_y", F.lit(None).cast("double")))
        ctx.store.write(ctx.stamp(with_findings(mapped, ctx.settings), CLUSTERS),
                        "clusters", mode="overwrite")
        say(f"neighbors: wrote clusters, map {'PCA and UMAP' if with_umap else 'PCA'} "
            f"({time.monotonic() - started:.1f} s)")
        ctx.store.write(ctx.stamp(makeup_by_dimension(clustered), CLUSTER_MAKEUP),
                        "cluster_makeup", mode="overwrite")
        clustered.unpersist()
        pairs.unpersist()
    finally:
        vectors.unpersist()
    counts = {r.code: r["count"] for r in ctx.store.read("clusters")
              .select(F.explode("findings.code").alias("code")).groupBy("code").count().collect()}
    counts["duplicate_groups"] = ctx.store.read("duplicates").select("group_id").distinct().count()
    counts["seconds"] = round(time.monotonic() - started, 2)
    say(f"neighbors: done in {counts['seconds']:.0f} s: {counts_text(counts)}")
    tracker.metrics({f"neighbors.{k}": v for k, v in counts.items()})
    return counts



def with_paths(knn: DataFrame, vectors: DataFrame) -> DataFrame:
    """id pairs → path pairs, with whether both belong to one series."""
    me = vectors.select("id", "path", "sop_instance_uid", "series_instance_uid")
    other = vectors.select(F.col("id").alias("neighbor_id"), F.col("path").alias("neighbor_path"),
                           F.col("sop_instance_uid").alias("neighbor_sop_instance_uid"),
                           F.col("series_instance_uid").alias("neighbor_series"))
    return (knn.join(me, "id").join(other, "neighbor_id")
            .withColumn("same_series", F.col("series_instance_uid").eqNullSafe(F.col("neighbor_series")))
            .withColumn("rank", F.col("rank").cast("int")))


def duplicate_groups(ctx: RunContext, pairs: DataFrame, vectors: DataFrame) -> DataFrame:
    """Exact groups (same decoded pixels, from pixel_stats) and near groups
    (connected components of near-duplicate pairs).

    A near pair is two instances within the distance limit that the headers
    say may be one acquisition saved twice (`same_acquisition`) and that are
    each other's nearest instance in the other's series. A copy
    matches one image of a series: without that rule, adjacent slices (often
    within the limit of each other's copies) chain a re-sent series, or an
    exported slice and its neighbours, into one group. Identical pixels are
    an exact group, not a near one. Blank frames (CONSTANT_IMAGE) join no near
    group: two blanks look alike whatever they were meant to show, and they
    are excluded for being blank already."""
    limit = ctx.settings.neighbors.near_duplicate_max_distance
    info = ctx.store.read("instances").select("path", "sop_instance_uid", "modified_at")
    saved_twice = same_acquisition(ctx.store.read("instances").join(vectors.select("id", "path"), "path"))
    stats = ctx.store.read("pixel_stats")
    blank = (stats.filter(F.exists("findings", lambda f: f["code"] == "CONSTANT_IMAGE"))
             .join(vectors.select("id", "path"), "path").select("id"))
    hashes = stats.select("path", "pixel_hash").join(vectors.select("id", "path"), "path")
    same_pixels = F.coalesce(F.col("_h") == F.col("_nh"), F.lit(False))   # a missing hash: not the same
    close = (pairs.filter(F.col("distance") <= limit)
             .select("id", "neighbor_id", "distance", F.col("series_instance_uid").alias("series"),
                     F.col("neighbor_series")))
    # both directions: a k-NN list may hold b for a but not a for b
    close = (close.unionByName(close.select(
        F.col("neighbor_id").alias("id"), F.col("id").alias("neighbor_id"), "distance",
        F.col("neighbor_series").alias("series"), F.col("series").alias("neighbor_series")))
        .dropDuplicates(["id", "neighbor_id"])
        .join(blank, "id", "left_anti")
        .join(blank.withColumnRenamed("id", "neighbor_id"), "neighbor_id", "left_anti")
        .transform(saved_twice))
    in_series = Window.partitionBy("id", "neighbor_series").orderBy("distance", "neighbor_id")
    best = (close.withColumn("_r", F.row_number().over(in_series)).filter("_r = 1")
            .select("id", "neighbor_id"))
    mutual = best.alias("a").join(best.alias("b"), (F.col("a.id") == F.col("b.neighbor_id"))
                                  & (F.col("a.neighbor_id") == F.col("b.id")))
    edges = (mutual.select(F.col("a.id").alias("src"), F.col("a.neighbor_id").alias("dst"))
             .filter(F.col("src") < F.col("dst"))
             # after the matching, so an exact copy's twin still keeps it from others
             .join(hashes.select(F.col("id").alias("src"), F.col("pixel_hash").alias("_h")), "src", "left")
             .join(hashes.select(F.col("id").alias("dst"), F.col("pixel_hash").alias("_nh")), "dst", "left")
             .filter(~same_pixels)
             .select("src", "dst")
             # a short plan: label propagation nests it in every round's plan
             .localCheckpoint(eager=True))
    components = connected_components(edges, edges.select(F.col("src").alias("id"))
                                      .union(edges.select("dst")).distinct())
    near = (components.join(vectors.select("id", "path"), "id")
            .select("path", F.concat(F.lit("near-"), F.col("component").cast("string")).alias("group"),
                    F.lit("near").alias("kind")))
    exact = (stats.filter(F.col("pixel_hash").isNotNull())
             .select("path", F.concat(F.lit("exact-"), F.substring("pixel_hash", 1, 16)).alias("group"),
                     F.lit("exact").alias("kind")))
    members = near.unionByName(exact).join(info, "path")
    by_group = Window.partitionBy("group")
    ordered = by_group.orderBy(F.col("modified_at").asc_nulls_last(), "path")
    return (members.withColumn("group_size", F.count("*").over(by_group))
            .filter(F.col("group_size") > 1)
            .withColumn("original_path", F.first("path").over(ordered.rowsBetween(
                Window.unboundedPreceding, Window.unboundedFollowing)))
            .withColumn("is_original", F.col("path") == F.col("original_path"))
            .withColumn("group_id", F.concat_ws(":", "kind", F.substring(F.sha2("original_path", 256), 1, 16))))


def same_acquisition(instances: DataFrame):
    """A filter of (id, neighbor_id) pairs, keeping those whose headers allow
    one acquisition saved twice: the same patient, and either one series
    holding both at the same slice position, or two series of which one is a
    derived copy (ImageType DERIVED or SECONDARY: an export, a key image) or
    which share their SeriesTime (a series sent twice). Images of two
    patients, adjacent slices and a repeated acquisition (pre- and
    post-contrast T1: two original series at other times) look alike but are
    not duplicates. `instances` has `id`."""
    types = F.transform(F.coalesce("image_type", F.array().cast("array<string>")), lambda t: F.upper(F.trim(t)))
    side = instances.select(
        "id", "patient_key", "series_instance_uid", "series_time",
        F.col("image_position_patient").alias("position"),
        F.arrays_overlap(types, F.array(F.lit("DERIVED"), F.lit("SECONDARY"))).alias("derived"))
    a = side.select(*[F.col(c).alias(f"a_{c}") for c in side.columns])
    b = side.select(*[F.col(c).alias(f"b_{c}") for c in side.columns])
    gap = F.aggregate(F.zip_with("a_position", "b_position", lambda x, y: F.abs(x - y)), F.lit(0.0),
                      lambda acc, v: F.greatest(acc, F.coalesce(v, F.lit(1e9))))
    same_position = (F.size("a_position") == 3) & (F.size("b_position") == 3) & (gap <= 0.01)
    one_series = F.col("a_series_instance_uid").eqNullSafe(F.col("b_series_instance_uid"))
    copy_of = (F.coalesce(F.col("a_derived"), F.lit(False)) | F.coalesce(F.col("b_derived"), F.lit(False))
               | F.coalesce(F.col("a_series_time") == F.col("b_series_time"), F.lit(False)))
    allowed = (F.coalesce(F.col("a_patient_key") == F.col("b_patient_key"), F.lit(False))
               & F.when(one_series, F.coalesce(same_position, F.lit(False))).otherwise(copy_of))

    def keep(pairs: DataFrame) -> DataFrame:
        return (pairs.join(a, F.col("id") == F.col("a_id")).join(b, F.col("neighbor_id") == F.col("b_id"))
                .filter(allowed).select(*pairs.columns))
    return keep


def outlier_scores(pairs: DataFrame, vectors: DataFrame, fence: float, min_group: int) -> DataFrame:
    """cleanlab's k-NN outlier score and Datalab's fence, within each modality.
    A modality with fewer than `min_group` instances is measured against the
    whole delivery: two secondary captures are each other's "typical" case,
    and a fence needs more points than that."""
    per_instance = pairs.groupBy("id").agg(F.avg("distance").alias("knn_mean_distance"),
                                          F.min("distance").alias("nearest_distance"))
    scored = vectors.join(per_instance, "id", "left")
    modality = F.coalesce("modality", F.lit(""))
    quartiles = F.percentile_approx("knn_mean_distance", [0.25, 0.5, 0.75], 10000)
    by_modality = scored.groupBy(modality.alias("_m")).agg(quartiles.alias("_mq"), F.count("*").alias("_n"))
    overall = scored.agg(quartiles.alias("_aq"))
    q = F.when(F.col("_n") >= min_group, F.col("_mq")).otherwise(F.col("_aq"))
    return (scored.join(by_modality, modality == F.col("_m"), "left").crossJoin(F.broadcast(overall))
            .withColumn("_q", q)
            .withColumn("outlier_score", F.exp(-F.col("knn_mean_distance") / F.greatest(F.col("_q")[1], F.lit(1e-9))))
            .withColumn("outlier_fence", F.col("_q")[2] + fence * (F.col("_q")[2] - F.col("_q")[0]))
            .drop("_m", "_mq", "_n", "_aq", "_q"))


def with_findings(clustered: DataFrame, settings) -> DataFrame:
    z = settings.clusters.outlier_z
    embedding_outlier = F.when(
        F.col("knn_mean_distance") > F.col("outlier_fence"),
        F.struct(F.lit("EMBEDDING_OUTLIER").alias("code"), F.col("knn_mean_distance").alias("score"),
                 F.col("outlier_fence").alias("threshold"),
                 F.lit("mean distance to the k nearest above Q3 + fence x IQR of the modality "
                       "(of the delivery for rare modalities)").alias("detail")))
    cluster_outlier = F.when(
        F.col("cluster_z") > z,
        F.struct(F.lit("CLUSTER_OUTLIER").alias("code"), F.col("cluster_z").alias("score"),
                 F.lit(float(z)).alias("threshold"),
                 F.lit("robust z of the distance to its cluster centre").alias("detail")))
    return clustered.withColumn("findings", F.filter(F.array(embedding_outlier, cluster_outlier),
                                                     lambda f: f.isNotNull()))
