"""Embed stage: one L2-normalised image embedding per instance, computed in
batches by `mapInPandas` over file paths.

Reads `instances` (and `pixel_stats` when present, to skip objects whose
pixels cannot be decoded); writes `embeddings`. The encoder is
loaded once per Python worker; images are read and preprocessed on a thread
pool while the model runs the previous batch (udfs/embedding.py).
"""
from __future__ import annotations

import math
import time

from pyspark.sql import DataFrame, functions as F

from dicom_triage.jobs.runtime import RunContext
from dicom_triage.schemas.embedding import EMBEDDED, EMBEDDINGS

EMBEDDINGS_TABLE = "embeddings"
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"


def run(ctx: RunContext, tracker, say=print) -> dict:
    started = time.monotonic()
    if not ctx.store.exists("instances"):
        ctx.note("embed", "missing_table", "skipped: no `instances` table; run `triage ingest` first",
                 level="error", say=say)
        return {}
    targets = embeddable(ctx)
    count = targets.count()
    say(f"embed: {count} instances with {ctx.settings.embed.encoder} "
        f"(batch {ctx.settings.embed.batch_size}, device {ctx.settings.embed.device})")
    embedded = embed(ctx, targets, count)
    keys = ctx.store.read("instances").select("path", "series_instance_uid", "site", "modality")
    table = ctx.stamp(embedded.join(keys, "path", "left"), EMBEDDINGS)
    previous = ctx.spark.conf.get(ARROW_BATCH, None)
    ctx.spark.conf.set(ARROW_BATCH, str(ctx.settings.embed.arrow_batch_rows))  # images, not rows of numbers
    try:
        ctx.store.write(table, EMBEDDINGS_TABLE, mode="overwrite")
    finally:
        if previous is None:
            ctx.spark.conf.unset(ARROW_BATCH)
        else:
            ctx.spark.conf.set(ARROW_BATCH, previous)
    stored = ctx.store.read(EMBEDDINGS_TABLE)
    failed = stored.filter(F.col("embedding").isNull()).count()
    say(f"embed: wrote {EMBEDDINGS_TABLE} ({time.monotonic() - started:.1f} s, {failed} without a vector)")
    counts = {"embedded": count - failed, "embedding_errors": failed}
    counts["seconds"] = round(time.monotonic() - started, 2)
    tracker.metrics({f"embed.{k}": v for k, v in counts.items()})
    return counts


def embeddable(ctx: RunContext) -> DataFrame:
    """Instances with pixel data; without those the pixels stage could not decode."""
    instances = ctx.store.read("instances").filter(F.col("has_pixel_data"))
    if ctx.store.exists("pixel_stats"):
        decodable = ctx.store.read("pixel_stats").filter(F.col("pixel_error").isNull()).select("path")
        instances = instances.join(decodable, "path", "left_semi")
    return instances.select("path", "sop_instance_uid", "has_preamble")


def embed(ctx: RunContext, targets: DataFrame, count: int) -> DataFrame:
    from dicom_triage.jobs.storage import whole_object_reader
    from dicom_triage.udfs.embedding import make_embedder

    settings = ctx.settings.embed
    embedder = make_embedder(whole_object_reader(ctx.storage_options), settings.encoder, settings.device,
                             settings.cpu_threads or None, settings.batch_size, settings.prefetch,
                             settings.frame)
    partitions = max(1, math.ceil(count / settings.files_per_partition))
    return targets.repartition(partitions, "path").mapInPandas(embedder, EMBEDDED)
