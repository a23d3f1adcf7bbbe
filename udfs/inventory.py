"""Reading a listing prepared in advance (an inventory) instead of listing
the delivery live: plain pyarrow on one inventory file, no Spark.

Two column conventions are accepted:

* this project's: `path` (full URI), `size_bytes`, `modified_at` [, `etag`];
* an S3 Inventory report (Parquet, or CSV with a header row):
  `bucket`, `key`, `size`, `last_modified_date` [, `e_tag`].
"""
from __future__ import annotations

import posixpath
from urllib.parse import unquote_plus

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

INVENTORY_SCHEMA = pa.schema([
    ("path", pa.string()),
    ("size_bytes", pa.int64()),
    ("modified_at", pa.timestamp("us", tz="UTC")),
    ("etag", pa.string()),
])
# accepted names of each column, in order of preference
ALIASES = {
    "path": ("path",),
    "size_bytes": ("size_bytes", "size"),
    "modified_at": ("modified_at", "last_modified_date", "last_modified"),
    "etag": ("etag", "e_tag"),
}
SUFFIXES = (".parquet", ".csv", ".csv.gz")


def is_inventory_file(name: str) -> bool:
    return posixpath.basename(name).lower().endswith(SUFFIXES)


def missing_columns(names) -> list[str]:
    """What an inventory with these columns lacks (empty: usable)."""
    names = set(names)
    missing = [c for c in ("size_bytes", "modified_at") if not names & set(ALIASES[c])]
    if "path" not in names and not {"bucket", "key"} <= names:
        missing.insert(0, "path (or bucket and key)")
    return missing


def column_names(handle, name: str) -> list[str]:
    """The columns of an inventory file, reading only its metadata / first block."""
    if name.lower().endswith(".parquet"):
        return pq.read_schema(handle).names
    return pa_csv.open_csv(handle, read_options=pa_csv.ReadOptions(block_size=1 << 16)).schema.names


def read_inventory(handle, name: str) -> pa.Table:
    """One inventory file as a table of INVENTORY_SCHEMA."""
    if name.lower().endswith(".parquet"):
        table = pq.read_table(handle)
    else:
        table = pa_csv.read_csv(handle, convert_options=pa_csv.ConvertOptions(
            column_types={"size": pa.int64(), "size_bytes": pa.int64(), "key": pa.string()}))
        if "key" in table.column_names:  # S3 Inventory CSV reports URL-encode the keys
            keys = [None if k is None else unquote_plus(k) for k in table.column("key").to_pylist()]
            table = table.set_column(table.column_names.index("key"), "key", pa.array(keys, pa.string()))
    return normalise(table)


def normalise(table: pa.Table) -> pa.Table:
    missing = missing_columns(table.column_names)
    if missing:
        raise ValueError(f"inventory lacks the column(s) {', '.join(missing)}")
    if "path" in table.column_names:
        path = table.column("path").cast(pa.string())
    else:  # S3 Inventory: bucket + key
        path = pc.binary_join_element_wise("s3://", table.column("bucket").cast(pa.string()), "/",
                                           table.column("key").cast(pa.string()), "")
    columns = {"path": path}
    for target in ("size_bytes", "modified_at", "etag"):
        source = next((c for c in ALIASES[target] if c in table.column_names), None)
        if source is None:
            columns[target] = pa.nulls(table.num_rows, INVENTORY_SCHEMA.field(target).type)
        else:
            columns[target] = _cast(table.column(source), INVENTORY_SCHEMA.field(target).type)
    return pa.table(columns, schema=INVENTORY_SCHEMA)


def _cast(column, target):
    if pa.types.is_timestamp(target):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = pc.strptime(pc.utf8_slice_codeunits(column, 0, 19), format="%Y-%m-%dT%H:%M:%S", unit="us")
        if column.type.tz is None:
            column = pc.assume_timezone(column, "UTC")
    return column.cast(target)
