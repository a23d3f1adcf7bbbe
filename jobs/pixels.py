"""Pixels stage: decode and measure every instance on the executors, then
decide findings with dataset-level context, and describe every series.

Reads `instances`; writes `pixel_stats` (one row per instance, with its
findings) and `series` (one row per series: geometry, localizer, projections,
findings). Both are rewritten on each run: quality fences depend on the whole
delivery, so a new file can move another file's verdict.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window, functions as F

from dicom_triage.jobs.arrow_schema import to_arrow_schema
from dicom_triage.jobs.fences import with_robust_z
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.jobs.storage import whole_object_reader
from dicom_triage.schemas.pixels import PIXEL_MEASURES, PIXEL_STATS, SERIES
from dicom_triage.udfs.geometry import GeometryRules, series_geometry
from dicom_triage.udfs.pixel_batch import make_pixel_measurer
from dicom_triage.udfs.projections import series_projections

PIXEL_STATS_TABLE = "pixel_stats"
SERIES_TABLE = "series"
INPUT_COLUMNS = ["path", "sop_instance_uid", "series_instance_uid", "site", "modality",
                 "protocol_name", "has_preamble", "size_bytes"]


def run(ctx: RunContext, tracker, say=print) -> dict:
    started = time.monotonic()
    settings = ctx.settings
    if not ctx.store.exists("instances"):
        ctx.note("pixels", "missing_table", "skipped: no `instances` table; run `triage ingest` first",
                 level="error", say=say)
        return {}
    instances = ctx.store.read("instances")
    count = instances.count()
    say(f"pixels: measuring {count} instances")
    measured = measure(ctx, instances, count).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats = with_findings(measured, instances, settings)
        stats = ctx.stamp(stats, PIXEL_STATS)
        ctx.store.write(stats, PIXEL_STATS_TABLE, mode="overwrite")
        say(f"pixels: wrote {PIXEL_STATS_TABLE} ({time.monotonic() - started:.1f} s); describing series")
        series = series_table(ctx, instances, ctx.store.read(PIXEL_STATS_TABLE))
        ctx.store.write(series, SERIES_TABLE, mode="overwrite")
        say(f"pixels: wrote {SERIES_TABLE} ({time.monotonic() - started:.1f} s)")
    finally:
        measured.unpersist()
    counts = finding_counts(ctx)
    counts["seconds"] = round(time.monotonic() - started, 2)
    tracker.metrics({f"pixels.{k}": v for k, v in counts.items()})
    return counts


def measure(ctx: RunContext, instances: DataFrame, count: int) -> DataFrame:
    settings = ctx.settings.pixels
    partitions = max(1, math.ceil(count / settings.files_per_partition))
    measurer = make_pixel_measurer(whole_object_reader(ctx.storage_options), to_arrow_schema(PIXEL_MEASURES),
                                   settings.timeout_seconds, settings.thumbnail_px, settings.histogram_bins,
                                   settings.max_frame_bytes, settings.max_decoded_bytes, settings.max_object_bytes)
    return (instances.select(*INPUT_COLUMNS).repartition(partitions, "path")
            .mapInArrow(measurer, PIXEL_MEASURES))


# -- findings -------------------------------------------------------------------

def finding(code: str, condition: Column, score: Column, threshold: float | Column | None,
            detail: str) -> Column:
    """One finding struct when `condition` holds, else null (dropped later)."""
    value = F.struct(F.lit(code).alias("code"), score.cast("double").alias("score"),
                     (threshold if isinstance(threshold, Column) else F.lit(threshold)).cast("double")
                     .alias("threshold"), F.lit(detail).alias("detail"))
    return F.when(condition, value)


def with_findings(measured: DataFrame, instances: DataFrame, settings) -> DataFrame:
    q, expect = settings.quality, settings.expect
    extra = instances.select("path", "pixel_spacing", "modified_at",
                             F.col("rows").alias("_header_rows"), F.col("columns").alias("_header_cols"))
    df = measured.join(extra, "path", "left")
    df = df.withColumn("_rel_noise", F.when(F.col("dynamic_range") > 0,
                                            F.col("noise_sigma") / F.col("dynamic_range")))
    df = df.withColumn("_log_sharp", F.log10(F.greatest(F.col("laplacian_var"), F.lit(1e-12))))
    df = with_robust_z(df, "_rel_noise", list(q.group_by), q.min_group_size)
    df = with_robust_z(df, "_log_sharp", list(q.group_by), q.min_group_size)

    by_hash = Window.partitionBy("pixel_hash").orderBy(F.col("modified_at").asc_nulls_last(), "path")
    by_uid = Window.partitionBy("sop_instance_uid").orderBy(F.col("modified_at").asc_nulls_last(), "path")
    df = (df.withColumn("_hash_rank", F.when(F.col("pixel_hash").isNotNull(), F.row_number().over(by_hash)))
            .withColumn("_hash_first", F.first("path").over(by_hash))
            .withColumn("_uid_rank", F.when(F.col("sop_instance_uid").isNotNull(), F.row_number().over(by_uid)))
            .withColumn("_uid_first", F.first("path").over(by_uid)))

    ok = F.col("pixel_error").isNull()
    not_constant = F.col("distinct_values") > q.constant_max_distinct
    small_group = F.col("_rel_noise_z").isNull()  # too few peers: the absolute floor alone decides
    spacing_lo, spacing_hi = expect.pixel_spacing_mm
    size_lo, size_hi = expect.rows_columns
    rows = F.coalesce("rows", "_header_rows")
    cols = F.coalesce("columns", "_header_cols")
    smallest_spacing = F.array_min("pixel_spacing")
    largest_spacing = F.array_max("pixel_spacing")
    rules = [
        finding("NO_PIXEL_DATA", F.col("pixel_error") == "NO_PIXEL_DATA", F.lit(None), None,
                "object carries no pixel data"),
        finding("UNREADABLE_PIXELS", F.col("pixel_error") == "UNREADABLE_PIXELS", F.lit(None), None,
                "pixel data cannot be decoded"),
        finding("CONSTANT_IMAGE", ok & ~not_constant, F.col("distinct_values"), q.constant_max_distinct,
                "distinct stored values <= threshold"),
        finding("LOW_DYNAMIC_RANGE", ok & not_constant & (
            (F.col("distinct_values") < q.low_range_max_distinct)
            | (F.col("entropy_bits") < q.low_range_max_entropy_bits)),
            F.col("entropy_bits"), q.low_range_max_entropy_bits,
            f"entropy (bits) below threshold or fewer than {q.low_range_max_distinct} distinct values"),
        finding("SATURATED", ok & not_constant & (F.col("frac_at_max") >= q.saturated_min_fraction),
                F.col("frac_at_max"), q.saturated_min_fraction, "share of pixels at the maximum value"),
        finding("NOISY", ok & not_constant & (F.col("_rel_noise") > q.noisy_min_relative_noise)
                & (small_group | (F.col("_rel_noise_z") > q.robust_z)),
                F.col("_rel_noise"), q.noisy_min_relative_noise,
                f"noise sigma / p0.5-p99.5 range above floor and group robust z > {q.robust_z}"),
        finding("BLURRY", ok & not_constant & (F.col("laplacian_var") < q.blurry_max_laplacian_var)
                & (F.col("_log_sharp_z").isNull() | (F.col("_log_sharp_z") < -q.robust_z)),  # as NOISY
                F.col("laplacian_var"), q.blurry_max_laplacian_var,
                f"Laplacian variance below ceiling and group robust z < -{q.robust_z}"),
        finding("INTENSITY_OUT_OF_RANGE", ok & (F.col("units") == "HU") & (F.col("p0_5") < q.ct_min_hu),
                F.col("p0_5"), q.ct_min_hu, "CT p0.5 below the plausible HU minimum"),
        finding("INTENSITY_OUT_OF_RANGE", ok & (F.col("units") == "HU") & (F.col("p99_5") > q.ct_max_hu),
                F.col("p99_5"), q.ct_max_hu, "CT p99.5 above the plausible HU maximum"),
        finding("RESOLUTION_OUT_OF_RANGE", F.least(rows, cols) < size_lo, F.least(rows, cols), size_lo,
                "rows or columns below the expected minimum"),
        finding("RESOLUTION_OUT_OF_RANGE", F.greatest(rows, cols) > size_hi, F.greatest(rows, cols), size_hi,
                "rows or columns above the expected maximum"),
        finding("SPACING_OUT_OF_RANGE", smallest_spacing < spacing_lo, smallest_spacing, spacing_lo,
                "pixel spacing (mm) below the expected minimum"),
        finding("SPACING_OUT_OF_RANGE", largest_spacing > spacing_hi, largest_spacing, spacing_hi,
                "pixel spacing (mm) above the expected maximum"),
        finding("BURNED_IN_ANNOTATION", F.lit(q.burned_in_pixel_check) & ok
                & (F.col("burned_in_text_score") > q.burned_in_text_min_score),
                F.col("burned_in_text_score"), q.burned_in_text_min_score,
                "rows of text-like marks in an image corner (pixels)"),
        finding("EXACT_DUPLICATE", F.col("_hash_rank") > 1, F.col("_hash_rank"), 1.0,
                "same decoded pixels as an earlier object (the first seen is the original)"),
        finding("DUPLICATE_SOP_UID", F.col("_uid_rank") > 1, F.col("_uid_rank"), 1.0,
                "SOPInstanceUID already used by an earlier object"),
    ]
    return df.withColumn("findings", F.filter(F.array(*rules), lambda item: item.isNotNull()))


# -- series ---------------------------------------------------------------------

SERIES_INPUT = ["series_instance_uid", "study_instance_uid", "site", "sop_instance_uid", "instance_number",
                "image_position_patient", "image_orientation_patient", "pixel_spacing", "slice_thickness",
                "spacing_between_slices", "rows", "columns", "number_of_frames", "image_type",
                "series_description", "protocol_name", "modality", "manufacturer"]


def series_table(ctx: RunContext, instances: DataFrame, stats: DataFrame) -> DataFrame:
    settings = ctx.settings
    rules = geometry_rules(settings)
    thickness_range = tuple(settings.expect.slice_thickness_mm)
    projection_px = settings.pixels.projection_px
    run_id, computed_at = ctx.run_id, ctx.started_at
    previews = stats.select("path", "preview")
    grouped = (instances.filter(F.col("series_instance_uid").isNotNull())
               .select("path", *SERIES_INPUT).join(previews, "path", "left").drop("path"))

    def describe(pdf: pd.DataFrame) -> pd.DataFrame:
        row = describe_series(pdf, rules, thickness_range, projection_px)
        row.update(run_id=run_id, computed_at=computed_at)
        return pd.DataFrame([{name: row.get(name) for name in SERIES.fieldNames()}])

    return grouped.groupBy("series_instance_uid").applyInPandas(describe, SERIES)


def geometry_rules(settings) -> GeometryRules:
    g = settings.geometry
    return GeometryRules(orientation_tol=g.orientation_tol, spacing_tol_abs_mm=g.spacing_tol_abs_mm,
                         spacing_tol_rel=g.spacing_tol_rel, min_slices=g.min_slices,
                         too_few_slices=g.too_few_slices)


def describe_series(pdf: pd.DataFrame, rules: GeometryRules, thickness_range: tuple[float, float],
                    projection_px: int) -> dict:
    """One series: geometry, findings with evidence, projections for volumes."""
    geometry = series_geometry(pdf, rules)
    first = pdf.iloc[0]
    row = {key: value for key, value in geometry.items() if key != "findings"}
    row.update(series_instance_uid=first["series_instance_uid"], study_instance_uid=first["study_instance_uid"],
               site=first["site"], protocol_name=first["protocol_name"],
               series_description=first["series_description"])
    findings = [geometry_finding(code, geometry) for code in geometry["findings"]]
    thickness = geometry.get("slice_thickness")
    if geometry.get("is_tomographic") and thickness is not None:
        low, high = thickness_range
        if thickness < low or thickness > high:
            findings.append({"code": "SPACING_OUT_OF_RANGE", "score": thickness,
                             "threshold": low if thickness < low else high,
                             "detail": "slice thickness (mm) outside the expected range"})
    row["findings"] = findings
    if geometry.get("is_volume") and not geometry.get("is_multiframe"):
        row.update(projections(pdf, geometry, projection_px))
    return row


def geometry_finding(code: str, g: dict) -> dict:
    evidence = {
        "IRREGULAR_SPACING": (g.get("max_spacing_deviation_mm"), g.get("spacing_tolerance_mm"),
                              "largest |slice step - median step| (mm) above tolerance"),
        "MISSING_SLICES": (g.get("missing_slices"), 0, "slices missing by position or instance number"),
        "TOO_FEW_SLICES": (g.get("num_distinct_positions"), None, "fewer distinct slice positions than a volume needs"),
        "INCONSISTENT_ORIENTATION": (g.get("num_orientations"), 1, "distinct orientations in the series"),
        "LOCALIZER": (None, None, "localizer: " + ", ".join(g.get("localizer_reasons") or [])),
    }
    score, threshold, detail = evidence.get(code, (None, None, code))
    return {"code": code, "score": None if score is None else float(score),
            "threshold": None if threshold is None else float(threshold), "detail": detail}


def projections(pdf: pd.DataFrame, geometry: dict, max_side: int) -> dict:
    order = {uid: i for i, uid in enumerate(geometry.get("slice_order") or [])}
    normal = geometry.get("slice_normal")
    slices = []
    for _, item in pdf.iterrows():
        preview, position = item["preview"], item["image_position_patient"]
        if preview is None or item["sop_instance_uid"] not in order or position is None or normal is None:
            continue
        z = float(np.dot(np.asarray(position, dtype=float), np.asarray(normal, dtype=float)))
        image = np.frombuffer(preview, dtype=np.uint8).reshape(64, 64)
        slices.append((order[item["sop_instance_uid"]], z, image))
    slices.sort(key=lambda s: s[0])
    if len(slices) < 2:
        return {}
    first = pdf.iloc[0]
    shape = (first["rows"], first["columns"]) if pd.notna(first["rows"]) else None
    return series_projections([s[2] for s in slices], max_side,
                              slice_positions=[s[1] for s in slices],
                              slice_spacing=geometry.get("slice_spacing"),
                              pixel_spacing=first["pixel_spacing"] if first["pixel_spacing"] is not None else None,
                              image_shape=shape)


def finding_counts(ctx: RunContext) -> dict:
    counts = {}
    for table in (PIXEL_STATS_TABLE, SERIES_TABLE):
        rows = (ctx.store.read(table).select(F.explode("findings").alias("f"))
                .groupBy("f.code").count().collect())
        counts.update({f"{table}.{r.code}": r["count"] for r in rows})
    return counts
