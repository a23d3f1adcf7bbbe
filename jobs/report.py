"""The report stage: one self-contained HTML page about the delivery and the
decisions on it, at <output>/report/triage-report.html and in the MLflow run.

Everything is aggregated or sampled in Spark and only small results reach the
driver: top-N counts, pre-binned histograms, a capped random sample of map
points, a few thumbnails per exclusion reason (row_number per reason) and the
head of the review queue. A delivery of 10^7 files gives a report of the same
size as one of 10^3. Rendering is in jobs/report_html.py.
"""
from __future__ import annotations

import datetime as dt
import os
import posixpath
import tempfile
import time

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from dicom_triage.jobs import report_html, storage
from dicom_triage.jobs.summary import TABLES

REPORT_NAME = "triage-report.html"
MISSING = "(missing)"
# A distribution with at most this many distinct values gets one bar per value
# (dimensions, slice thickness usually), else a histogram.
MAX_VALUE_BARS = 12

# Overview bar charts: title -> SQL expression on instances.
CATEGORIES = {"Modality": "modality", "Site": "site", "Manufacturer": "manufacturer",
              "Protocol": "protocol_name", "Body part examined": "body_part_examined",
              "Image size (rows × columns)": "concat(`rows`, ' × ', `columns`)"}
# Overview distributions: title -> (SQL expression on instances, unit).
DISTRIBUTIONS = {
    "Rows": ("`rows`", "px"),
    "Columns": ("`columns`", "px"),
    "Pixel spacing (row)": ("element_at(pixel_spacing, 1)", "mm"),
    "Slice thickness": ("slice_thickness", "mm"),
}


def run(ctx, tracker, say=print) -> dict:
    started = time.monotonic()
    conf = ctx.settings.report
    store = ctx.store
    present = {name: store.exists(name) for name in TABLES}
    tables = {name: store.read(name) for name, ok in present.items() if ok}

    report = {
        "title": "DICOM delivery triage report",
        "notes": stage_notes(store),
        "subtitle": (f"run {ctx.run_id} · output {ctx.settings.output} · generated "
                     f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"),
        "overview": overview(tables, conf),
        "decisions": decisions(tables, conf),
        "map": embedding_map(tables, conf),
        "galleries": galleries(tables, conf),
        "agreement": annotation_agreement(tables, ctx.settings.annotate),
        "settings": ctx.settings.to_dict(),
        "environ": dict(os.environ),  # values of secret-looking variables are redacted wherever they appear
        "tables": present,
    }
    page = report_html.render_page(report).encode("utf-8")
    path = report_path(ctx.settings, store)
    write_report(path, page, ctx.storage_options, tracker)
    seconds = round(time.monotonic() - started, 1)
    tracker.metrics({"report.bytes": len(page), "report.seconds": seconds})
    say(f"report: {path} ({len(page) / 1e6:.1f} MB, {seconds} s)")
    return {"path": path, "bytes": len(page), "seconds": seconds}


def stage_notes(store) -> pd.DataFrame | None:
    """Each stage's latest run notes (a few rows per stage)."""
    from dicom_triage.jobs.notes import latest

    notes = latest(store)
    if notes is None:
        return None
    return notes.select("stage", "level", "topic", "message", "run_id").toPandas()


def report_path(settings, store) -> str:
    if settings.report.path:
        return settings.report.path
    if store.catalog:  # catalog.schema has no folder: write next to where the job runs
        return os.path.abspath(os.path.join("triage-report", REPORT_NAME))
    return storage.join(store.output, "report", REPORT_NAME)


def write_report(path: str, page: bytes, storage_options: dict, tracker) -> None:
    fs, stripped = storage.filesystem(path, storage_options)
    local = "file" in fs.protocol
    if local:
        fs.makedirs(posixpath.dirname(stripped), exist_ok=True)
    with fs.open(stripped, "wb") as handle:
        handle.write(page)
    if not tracker.active:
        return
    if local:
        tracker.artifact(stripped, "report")
        return
    with tempfile.TemporaryDirectory() as folder:  # MLflow logs local files
        copy = os.path.join(folder, REPORT_NAME)
        with open(copy, "wb") as handle:
            handle.write(page)
        tracker.artifact(copy, "report")


# ---------------------------------------------------------------- overview


def overview(tables: dict[str, DataFrame], conf) -> dict:
    if "instances" not in tables:
        return {"missing": ["instances"]}
    instances = tables["instances"]
    row = instances.agg(
        F.count(F.lit(1)).alias("instances"),
        F.countDistinct("series_instance_uid").alias("series"),
        F.countDistinct("study_instance_uid").alias("studies"),
        F.countDistinct("patient_key").alias("patients"),
        F.countDistinct("site").alias("sites"),
        F.sum("size_bytes").alias("bytes"),
    ).first()
    errors = tables["ingest_errors"].count() if "ingest_errors" in tables else 0
    counts = {"objects listed": row["instances"] + errors, "DICOM instances": row["instances"],
              "unreadable objects": errors, "series": row["series"], "studies": row["studies"],
              "patients": row["patients"], "sites": row["sites"],
              "in DICOM instances": report_html.size_text(row["bytes"] or 0)}
    categories = top_values(instances, CATEGORIES, conf.top_values)
    if "ingest_errors" in tables:
        categories.update(top_values(tables["ingest_errors"], {"Unreadable objects by error": "error_code"},
                                     conf.top_values))
    shapes = {title: (frame, DISTRIBUTIONS[title][1])
              for title, frame in distributions(instances, DISTRIBUTIONS, conf.histogram_bins).items()}
    return {"counts": counts, "categories": categories, "distributions": shapes}


def top_values(df: DataFrame, columns: dict[str, str], top: int) -> dict[str, pd.DataFrame]:
    """The `top` most frequent values of each expression (nulls as "(missing)"), the
    rest summed into one "(N other values)" bar. One pass over `df`."""
    pairs = F.array(*[F.struct(F.lit(title).alias("chart"),
                               F.coalesce(F.expr(expr).cast("string"), F.lit(MISSING)).alias("value"))
                      for title, expr in columns.items()])
    counted = df.select(F.explode(pairs).alias("p")).groupBy("p.chart", "p.value").count()
    ranked = counted.withColumn(
        "rank", F.row_number().over(Window.partitionBy("chart").orderBy(F.desc("count"), "value")))
    kept = F.col("rank") <= top
    rows = (ranked.groupBy("chart", F.when(kept, F.col("value")).alias("value"))
            .agg(F.sum("count").alias("count"), F.count(F.lit(1)).alias("values"), F.min("rank").alias("rank"))
            .collect())
    out = {}
    for title in columns:
        mine = sorted((r for r in rows if r.chart == title), key=lambda r: r["rank"])
        out[title] = pd.DataFrame(
            [{"value": r.value if r.value is not None else f"({r['values']} other values)", "count": r["count"]}
             for r in mine], columns=["value", "count"])
    return out


def distributions(df: DataFrame, columns: dict, bins: int) -> dict[str, pd.DataFrame]:
    """Per expression: counts per value when it has at most MAX_VALUE_BARS distinct
    values (frame `value`, `count`), else an
    equal-width histogram between its min and max (frame `lo`, `hi`, `count`).
    Two passes over `df`."""
    values = df.select(*[F.expr(expr).cast("double").alias(f"v{i}")
                         for i, (expr, _) in enumerate(columns.values())])
    names, n = values.columns, len(columns)
    stats = values.agg(*[F.min(c) for c in names], *[F.max(c) for c in names],
                       *[F.approx_count_distinct(c) for c in names]).first()
    keys, widths = [], {}  # widths: title -> bin width (None: counted per value)
    for i, title in enumerate(columns):
        lo, hi, distinct = stats[i], stats[n + i], stats[2 * n + i]
        if lo is None:
            continue
        value = F.col(names[i])
        if distinct <= MAX_VALUE_BARS:
            key, widths[title] = value, None
        else:
            widths[title] = (hi - lo) / bins
            key = F.least(F.floor((value - F.lit(lo)) / F.lit(widths[title])), F.lit(bins - 1))
        keys.append(F.struct(F.lit(title).alias("chart"), key.cast("double").alias("key")))
    rows = []
    if keys:
        rows = (values.select(F.explode(F.array(*keys)).alias("k")).where("k.key IS NOT NULL")
                .groupBy("k.chart", "k.key").count().collect())
    frames = {}
    for i, title in enumerate(columns):
        found = sorted((r.key, r["count"]) for r in rows if r.chart == title)
        if title not in widths:
            frames[title] = pd.DataFrame(columns=["value", "count"])
        elif widths[title] is None:
            frames[title] = pd.DataFrame(found, columns=["value", "count"])
        else:
            lo, width, counts = stats[i], widths[title], dict(found)
            frames[title] = pd.DataFrame({"lo": [lo + b * width for b in range(bins)],
                                          "hi": [lo + (b + 1) * width for b in range(bins)],
                                          "count": [counts.get(float(b), 0) for b in range(bins)]})
    return frames


# ---------------------------------------------------------------- decisions


def capped_sites(inclusion: DataFrame, limit: int):
    """A column naming the site, or "(other sites)" beyond the `limit` largest."""
    top = [r.site for r in inclusion.groupBy("site").count()
           .orderBy(F.desc("count"), "site").limit(limit).collect()]
    site = F.coalesce(F.col("site"), F.lit(MISSING))
    listed = [s if s is not None else MISSING for s in top]
    return F.when(site.isin(listed), site).otherwise(F.lit("(other sites)")).alias("site")


def decisions(tables: dict[str, DataFrame], conf) -> dict:
    if "inclusion" not in tables:
        return {"missing": ["inclusion"]}
    inclusion = tables["inclusion"]
    site = capped_sites(inclusion, conf.max_sites)
    by_site = inclusion.groupBy(site, "decision").count().toPandas()
    by_decision = by_site.groupby("decision", as_index=False)["count"].sum()
    per_reason = (inclusion.select(site, "excluded_by", F.explode("reasons").alias("reason"))
                  .groupBy("reason", "site")
                  .agg(F.count(F.lit(1)).alias("count"),
                       F.sum(F.array_contains("excluded_by", F.col("reason")).cast("long")).alias("excludes"))
                  .toPandas())
    reason_totals = per_reason.groupby("reason")[["excludes"]].sum()
    order = by_site.groupby("site")["count"].sum().sort_values(ascending=False).index
    by_site = by_site.set_index("site").loc[order].reset_index()
    return {"by_decision": by_decision, "by_site": by_site,
            "reasons_by_site": per_reason[["reason", "site", "count"]], "reason_totals": reason_totals}


# ---------------------------------------------------------------- embedding map


def embedding_map(tables: dict[str, DataFrame], conf) -> dict:
    if "clusters" not in tables:
        return {"missing": ["clusters"]}
    clusters = tables["clusters"]
    # UMAP keeps neighbourhoods apart where PCA overlaps them: use it when it was computed
    method = "PCA"
    if "umap_x" in clusters.columns and clusters.where(F.col("umap_x").isNotNull()).limit(1).count():
        clusters = clusters.withColumn("map_x", F.col("umap_x")).withColumn("map_y", F.col("umap_y"))
        method = "UMAP"
    points = clusters.where(F.col("map_x").isNotNull() & F.col("map_y").isNotNull())
    total = points.count()
    # A global top-k on a random key: an unbiased sample of at most `map_points` rows.
    frame = (points.select("path", "map_x", "map_y", "cluster")
             .orderBy(F.rand(conf.seed)).limit(conf.map_points).toPandas())
    frame["cluster"] = frame["cluster"].map(lambda c: None if pd.isna(c) else f"cluster {int(c)}")
    out = {"total": total, "method": method}
    if "inclusion" in tables:
        decided = rows_for(tables["inclusion"], "path", set(frame["path"]), ["decision"])
        frame["decision"] = frame["path"].map(lambda p: decided.get(p, {}).get("decision"))
    else:
        frame["decision"] = None
        out["decisions_missing"] = ["inclusion"]
    out["points"] = frame.drop(columns="path")
    return out


def rows_for(df: DataFrame, key: str, keys: set, columns: list[str]) -> dict[str, dict]:
    """`columns` of the rows of `df` whose `key` is one of `keys` (a few thousand at
    most): the keys are broadcast, so `df` is scanned but not shuffled."""
    keys = sorted(k for k in keys if k is not None)
    if not keys:
        return {}
    wanted = df.sparkSession.createDataFrame([(k,) for k in keys], f"{key} string")
    found = df.join(F.broadcast(wanted), key, "left_semi").select(key, *columns).collect()
    return {r[key]: r.asDict() for r in found}


# ---------------------------------------------------------------- galleries


def galleries(tables: dict[str, DataFrame], conf) -> dict:
    if "inclusion" not in tables:
        return {"missing": ["inclusion"]}
    out = {"per_reason_note": f"Up to {conf.gallery_per_reason} randomly chosen objects per reason "
                              "that excludes them; series-level reasons show the series' maximum "
                              "intensity projection where there is one."}
    excluded = (tables["inclusion"].where(F.col("decision") == "exclude")
                .select("path", "series_instance_uid", "site", "modality", "reasons", "evidence",
                        F.explode("excluded_by").alias("reason")))
    totals = {r.reason: r["count"] for r in excluded.groupBy("reason").count().collect()}
    pick = Window.partitionBy("reason").orderBy(F.rand(conf.seed))
    sample = (excluded.withColumn("pick", F.row_number().over(pick))
              .where(F.col("pick") <= conf.gallery_per_reason)
              .withColumn("series_scope", F.exists(
                  "evidence", lambda e: (e["code"] == F.col("reason")) & (e["scope"] == "series")))
              .drop("evidence"))
    rows = sample.collect()
    thumbs = mips = {}
    if "pixel_stats" in tables:
        thumbs = rows_for(tables["pixel_stats"], "path", {r.path for r in rows}, ["thumbnail_png"])
    if "series" in tables:
        mips = rows_for(tables["series"], "series_instance_uid", {r.series_instance_uid for r in rows},
                        ["mip_png"])
    exclusions = {}
    for reason in sorted(totals, key=lambda r: (-totals[r], r)):
        mine = sorted((r for r in rows if r.reason == reason), key=lambda r: r.pick)
        items = [{"png": image_for(r, thumbs, mips),
                  "caption": [", ".join(r.reasons), f"{r.site or MISSING} · {r.modality or MISSING}",
                              file_name(r.path)]} for r in mine]
        exclusions[reason] = {"total": totals[reason], "items": items}
    out["exclusions"] = exclusions
    if "review_queue" not in tables:
        out["review_missing"] = ["review_queue"]
        return out
    queue = tables["review_queue"]
    size = queue.count()
    head = queue.orderBy("queue_rank").limit(conf.review_thumbnails).collect()
    out["review_note"] = (f"The first {len(head)} of {size} entries, in queue order "
                          "(highest review priority first).")
    out["review"] = [{"png": r.thumbnail_png,
                      "caption": [f"#{r.queue_rank} · priority {r.review_priority or 0:.2f}",
                                  ", ".join(r.reasons) or "(no reason: uncertain)",
                                  f"{r.site or MISSING} · {r.modality or MISSING}", file_name(r.path)]}
                     for r in head]
    return out


def image_for(row, thumbs: dict, mips: dict) -> bytes | None:
    """The series' MIP for a series-level reason when there is one, else the instance's thumbnail."""
    thumb = thumbs.get(row.path, {}).get("thumbnail_png")
    mip = mips.get(row.series_instance_uid, {}).get("mip_png")
    if row.series_scope and mip:
        return mip
    return thumb or mip


def file_name(path: str) -> str:
    """The last two parts of a path: enough to find the file, short enough for a caption."""
    parts = (path or "").rstrip("/").split("/")
    return "/".join(parts[-2:])


# ---------------------------------------------------------------- annotation agreement

AGREEMENT_BATCHES = 100     # the latest batches shown in the agreement charts
FLAGGED_SHOWN = 20          # flagged annotators listed with their worst items


def annotation_agreement(tables: dict[str, DataFrame], annotate) -> dict | None:
    """The `triage annotate agreement` tables, when they exist: agreement per batch,
    drift per annotator and batch, and the flagged annotators' worst items.
    None (no section) without them. Small by construction: one row per batch, per
    annotator and batch, capped at the latest AGREEMENT_BATCHES batches."""
    if "annotation_agreement" not in tables or "annotator_drift" not in tables:
        return None
    batches = (tables["annotation_agreement"].where(F.col("batch_id").isNotNull())
               .select("batch_id", "n_items", "n_annotators", "fleiss_kappa", "krippendorff_alpha",
                       "mean_pairwise_kappa", "mean_box_iou", "tie_items")
               .orderBy(F.desc("batch_id")).limit(AGREEMENT_BATCHES).toPandas().sort_values("batch_id"))
    drift = tables["annotator_drift"].where(F.col("batch_id").isNotNull())
    if len(batches):
        drift = drift.where(F.col("batch_id") >= int(batches["batch_id"].min()))
    per_batch = drift.select("annotator", "batch_id", "n_items", "disagreement", "box_size_bias",
                             "flagged").toPandas()
    latest = (tables["annotator_drift"].where(F.col("latest"))
              .select("annotator", "batch_id", "disagreement", "box_size_bias", "flagged", "flag_reasons",
                      "disagreement_slope", "box_size_bias_slope")
              .toPandas().sort_values("annotator"))
    flagged = (tables["annotator_drift"].where(F.col("flagged") & F.col("latest"))
               .select("annotator", "batch_id", "flag_reasons", "worst_items")
               .orderBy("annotator").limit(FLAGGED_SHOWN).collect())
    return {"batches": batches, "drift": per_batch, "latest": latest,
            "flagged": [{"annotator": r.annotator, "batch_id": r.batch_id, "reasons": list(r.flag_reasons or []),
                         "worst_items": [w.asDict() for w in (r.worst_items or [])]} for r in flagged],
            "disagreement_max": float(annotate.drift.disagreement_max),
            "box_size_bias_max": float(annotate.drift.box_size_bias_max),
            "min_items": int(annotate.drift.min_items)}
