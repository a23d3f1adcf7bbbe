"""Ingest stage: list the delivery, parse new or changed headers on the
executors, append to `instances` and `ingest_errors`.

Identity of an object is (path, size_bytes, modified_at). Objects already in
either table with the same identity are skipped, so a re-run adds nothing and
a run after new files arrive parses only those. A changed object (same path,
new size or time) has its old row deleted first, then is parsed again: if the
job dies in between, the next run sees the object as new and heals itself.
An object gone from the delivery leaves both tables and is recorded in
`removed_objects` with the run that noticed it; every later stage rebuilds
from `instances`, so it leaves the inclusion table too.
"""
from __future__ import annotations

import math
import time

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, functions as F
from pyspark.sql.types import StructType

from dicom_triage.jobs.arrow_schema import to_arrow_schema
from dicom_triage.jobs.config import require
from dicom_triage.jobs.runtime import RunContext, header_policy
from dicom_triage.jobs.storage import Listed, list_objects, range_reader
from dicom_triage.schemas.ingest import INGEST_ERRORS, INSTANCES, OBJECT_FIELDS, PARSED
from dicom_triage.udfs.ingest_batch import make_batch_parser

INSTANCES_TABLE = "instances"
ERRORS_TABLE = "ingest_errors"
REMOVED_TABLE = "removed_objects"

LISTING = StructType(OBJECT_FIELDS)  # what the driver's listing knows of each object
IDENTITY = ["path", "size_bytes", "modified_at"]


def site_of(relative_path: str) -> str | None:
    """The first folder of the object's path under the input root."""
    parts = relative_path.split("/")
    return parts[0] if len(parts) > 1 else None


def listing_frame(spark, listed: list[Listed]) -> DataFrame:
    frame = pd.DataFrame({
        "path": [o.path for o in listed],
        "relative_path": [o.relative_path for o in listed],
        "site": [site_of(o.relative_path) for o in listed],
        "size_bytes": pd.Series([o.size_bytes for o in listed], dtype="int64"),
        "modified_at": pd.to_datetime([o.modified_at for o in listed], utc=True),
        "etag": [o.etag for o in listed],
    })
    return spark.createDataFrame(frame, schema=LISTING)


def _listing(ctx: RunContext, root: str) -> DataFrame:
    """What is in the delivery: from the inventory when one is configured
    (read by the executors), else listed live on the driver."""
    storage = ctx.settings.storage
    if ctx.settings.ingest.inventory:
        from dicom_triage.jobs.inventory import inventory_listing
        return inventory_listing(ctx.spark, ctx.settings.ingest.inventory, root, ctx.storage_options,
                                 storage.ignore_names, storage.ignore_prefixes)
    listed = list_objects(root, ctx.storage_options, storage.ignore_names, storage.ignore_prefixes)
    return listing_frame(ctx.spark, listed)


def already_ingested(ctx: RunContext) -> DataFrame | None:
    frames = [ctx.store.read(name).select(*IDENTITY)
              for name in (INSTANCES_TABLE, ERRORS_TABLE) if ctx.store.exists(name)]
    if not frames:
        return None
    return frames[0].unionByName(frames[1]) if len(frames) == 2 else frames[0]


def new_or_changed(listing: DataFrame, seen: DataFrame | None) -> tuple[DataFrame, DataFrame]:
    """(objects to parse, paths whose earlier row must go first)."""
    if seen is None:
        return listing, listing.limit(0).select("path")
    same = (listing.path == seen.path) & (listing.size_bytes == seen.size_bytes) & \
        listing.modified_at.eqNullSafe(seen.modified_at)
    todo = listing.join(seen, same, "left_anti")
    changed = todo.join(seen.select("path").distinct(), "path", "left_semi").select("path")
    return todo, changed


def objects_digest(objects: DataFrame) -> str:
    """A short fingerprint of a set of listed objects (path, size, modification
    time), whatever their order or partitioning: an aggregate, nothing collected."""
    row = objects.agg(F.count("*").alias("n"), F.sum(
        F.xxhash64("path", "size_bytes", "modified_at").cast("decimal(38,0)")).alias("h")).first()
    return f"{row['n']}-{row['h'] or 0}"


def run(ctx: RunContext, tracker, say=print) -> dict:
    settings = ctx.settings
    root = require(settings, "input", "the folder or bucket URI of the delivery, e.g. --input s3://bucket/delivery")
    started = time.monotonic()
    listing = _listing(ctx, root).persist(StorageLevel.MEMORY_AND_DISK)
    listed_count = listing.count()
    say(f"ingest: listed {listed_count} objects under {root}"
        f"{' from the inventory' if settings.ingest.inventory else ''} ({time.monotonic() - started:.1f} s)")
    full_refresh = settings.ingest.full_refresh
    seen = None if full_refresh else already_ingested(ctx)
    todo, changed = new_or_changed(listing, seen)

    changed_paths = [row.path for row in changed.collect()]  # only objects that changed since their last run
    if changed_paths:
        say(f"ingest: {len(changed_paths)} objects changed since their last run; replacing their rows")
        for name in (INSTANCES_TABLE, ERRORS_TABLE):
            ctx.store.delete_where_in(name, "path", changed_paths)

    removed = 0 if seen is None else mark_removed(ctx, listing, seen)
    if removed:
        say(f"ingest: {removed} objects of earlier runs are gone from the delivery; their rows are "
            f"removed (listed in `{REMOVED_TABLE}`)")
    todo_count = todo.count()
    counts = {"listed": listed_count, "skipped_already_ingested": listed_count - todo_count,
              "changed": len(changed_paths), "removed": removed, "parsed": todo_count,
              "instances": 0, "errors": 0}
    if todo_count or full_refresh:
        counts.update(_parse_and_write(ctx, todo, todo_count, say, "overwrite" if full_refresh else "append"))
    listing.unpersist()
    counts["seconds"] = round(time.monotonic() - started, 2)
    tracker.metrics({f"ingest.{k}": v for k, v in counts.items() if isinstance(v, (int, float))})
    return counts


def mark_removed(ctx: RunContext, listing: DataFrame, seen: DataFrame) -> int:
    """Objects in the tables but no longer listed: recorded in `removed_objects`
    (with this run's id and time), then their rows leave `instances` and
    `ingest_errors` (each table rewritten once, in Spark: nothing collected)."""
    gone = (seen.join(listing.select("path"), "path", "left_anti").dropDuplicates(["path"])
            .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        count = gone.count()
        if count:
            ctx.store.write(gone.withColumn("run_id", F.lit(ctx.run_id))
                            .withColumn("noticed_at", F.lit(ctx.started_at).cast("timestamp")), REMOVED_TABLE)
            for name in (INSTANCES_TABLE, ERRORS_TABLE):
                if ctx.store.exists(name):
                    kept = ctx.store.read(name).join(gone.select("path"), "path", "left_anti")
                    ctx.store.write(kept, name, mode="overwrite")
        return count
    finally:
        gone.unpersist()


def _parse_and_write(ctx: RunContext, todo: DataFrame, todo_count: int, say, mode: str) -> dict:
    settings = ctx.settings
    partitions = max(1, math.ceil(todo_count / settings.ingest.files_per_partition))
    arrow_schema = to_arrow_schema(PARSED)
    parser = make_batch_parser(header_policy(settings, ctx.secret), range_reader(ctx.storage_options), ctx.run_id,
                               ctx.started_at, arrow_schema)
    say(f"ingest: parsing {todo_count} headers in {partitions} tasks")
    parsed = (todo.repartition(partitions, "path")
              .mapInArrow(parser, PARSED)
              .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        by_code = {row["code"]: row["n"] for row in
                   parsed.groupBy(F.coalesce("error_code", F.lit("OK")).alias("code"))
                   .agg(F.count("*").alias("n")).collect()}
        instances = parsed.filter(F.col("error_code").isNull()).select(*INSTANCES.fieldNames())
        if settings.ingest.site_from == "institution":
            instances = instances.withColumn("site", F.coalesce("institution_name", "site"))
        errors = parsed.filter(F.col("error_code").isNotNull()).select(*INGEST_ERRORS.fieldNames())
        # A retried write of the same objects is skipped; keyed on what is written, not only on the
        # run id, so that a run id given again (--set run_id=...) with new objects still writes them.
        txn = f"dicom-triage/{ctx.run_id}/{objects_digest(todo)}"
        ctx.store.write(instances, INSTANCES_TABLE, mode=mode, txn=(f"{txn}/{INSTANCES_TABLE}", 1))
        ctx.store.write(errors, ERRORS_TABLE, mode=mode, txn=(f"{txn}/{ERRORS_TABLE}", 1))
    finally:
        parsed.unpersist()
    result = {"instances": by_code.pop("OK", 0)}
    result["errors"] = sum(by_code.values())
    result.update({f"errors.{code}": n for code, n in sorted(by_code.items())})
    return result

