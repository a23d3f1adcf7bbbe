"""The delivery's listing from an inventory (`ingest.inventory`) instead of a
live listing: for 10^6–10^7 objects, where listing on the driver takes long
and holds every path in driver memory.

The driver only finds the inventory's files (an S3 Inventory report of 10^7
objects is tens of files) and checks the first one's columns; the executors
read them (udfs/inventory.py) and Spark keeps the objects under `input`, with
the same columns as a live listing (jobs/ingest.py LISTING).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from dicom_triage.jobs.config import ConfigError
from dicom_triage.jobs.storage import filesystem, full_uri
from dicom_triage.udfs.inventory import column_names, is_inventory_file, missing_columns, read_inventory

SETTING = "ingest.inventory"
# INVENTORY_SCHEMA as Spark sees it (a timestamp with a zone is a Spark TIMESTAMP)
INVENTORY_SPARK_SCHEMA = StructType([
    StructField("path", StringType()), StructField("size_bytes", LongType()),
    StructField("modified_at", TimestampType()), StructField("etag", StringType())])


def inventory_files(uri: str, storage_options: dict) -> list[str]:
    fs, base = filesystem(uri, storage_options)
    try:
        paths = [base] if fs.isfile(base) else sorted(p for p in fs.find(base) if is_inventory_file(p))
    except OSError as exc:
        raise ConfigError(f"setting '{SETTING}': cannot list {uri}: {exc}") from None
    if not paths:
        raise ConfigError(f"setting '{SETTING}': no .parquet or .csv files under {uri}")
    first = paths[0]
    try:
        with fs.open(first, "rb", compression="infer") as handle:
            names = column_names(handle, first)
    except Exception as exc:  # pyarrow / fsspec raise many kinds
        raise ConfigError(f"setting '{SETTING}': cannot read {full_uri(fs, first)}: {exc}") from None
    missing = missing_columns(names)
    if missing:
        raise ConfigError(f"setting '{SETTING}': {full_uri(fs, first)} lacks the column(s) {', '.join(missing)}; "
                          "expected path, size_bytes, modified_at [, etag] or an S3 Inventory's "
                          "bucket, key, size, last_modified_date [, e_tag]")
    return [full_uri(fs, p) for p in paths]


def _reader(storage_options: dict):
    def read(batches):
        import pyarrow as pa
        from dicom_triage.jobs.storage import filesystem
        for batch in batches:
            for uri in batch.column("file").to_pylist():
                fs, path = filesystem(uri, storage_options)
                with fs.open(path, "rb", compression="infer") as handle:
                    table = read_inventory(handle, path)
                yield from pa.Table.from_batches(table.to_batches(max_chunksize=65536),
                                                 schema=table.schema).to_batches()
    return read


def root_prefix(root: str, storage_options: dict) -> str:
    """`input` as the URI prefix its objects' paths start with."""
    fs, base = filesystem(root, storage_options)
    return full_uri(fs, base).rstrip("/") + "/"


def inventory_listing(spark, uri: str, root: str, storage_options: dict, ignore_names,
                      ignore_prefixes) -> DataFrame:
    """Objects under `root` from the inventory at `uri`, as a live listing would give them."""
    files = inventory_files(uri, storage_options)
    prefix = root_prefix(root, storage_options)
    read = (spark.createDataFrame([(f,) for f in files], "file string").repartition(len(files))
            .mapInArrow(_reader(dict(storage_options or {})), INVENTORY_SPARK_SCHEMA))
    parts = F.split(F.col("relative_path"), "/")
    listing = (read.filter(F.col("path").startswith(prefix) & F.col("size_bytes").isNotNull())
               .withColumn("relative_path", F.expr(f"substring(path, {len(prefix) + 1})"))
               .filter(_kept(parts, ignore_names, ignore_prefixes))
               .withColumn("site", F.when(F.size(parts) > 1, parts[0])))
    # an inventory may list an object twice (overlapping reports): keep its latest state
    latest = F.max_by(F.struct("relative_path", "site", "size_bytes", "modified_at", "etag"), "modified_at")
    return (listing.groupBy("path").agg(latest.alias("o"))
            .select("path", "o.relative_path", "o.site", "o.size_bytes", "o.modified_at", "o.etag"))


def _starts_with(prefix: str):
    return lambda part: part.startswith(prefix)


def _kept(parts: Column, ignore_names, ignore_prefixes) -> Column:
    keep = F.lit(True)
    if ignore_names:
        keep = keep & ~F.element_at(parts, -1).isin(list(ignore_names))
    for prefix in ignore_prefixes or ():
        keep = keep & ~F.exists(parts, _starts_with(prefix))
    return keep & (F.col("relative_path") != "") & ~F.col("relative_path").endswith("/")
