"""Delta tables without Delta Lake's JVM jars: a Spark Python data source over delta-rs.

Short name "triage_delta". Each write task puts ONE parquet file (pyarrow, through
fsspec so any object store works) into the table folder; the driver then commits
every file in ONE delta-rs transaction. A failed job leaves no commit, and its files
are deleted again. Readers are handed the table's active files only, so files that
an overwrite removed logically (still on disk) are never read.

Options (keys arrive lower-cased): path, secret_storage_options (JSON, fsspec
spelling; named to match Spark's default redaction pattern wherever options are
shown), txn_app_id +
txn_version (idempotent commit), tag (commit userMetadata), files (reader: JSON
list of file URIs).
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import time
import uuid
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import (AddAction, CommitProperties, Transaction,
                                   create_table_with_add_actions)
from pyspark.sql.datasource import (DataSource, DataSourceArrowWriter, DataSourceReader,
                                    InputPartition, WriterCommitMessage)
from pyspark.sql.types import StructType

from dicom_triage.jobs.arrow_schema import to_arrow_schema

NAME = "triage_delta"
# Longer strings get no min/max stats: exact bounds would bloat the log.
STATS_STRING_MAX_CHARS = 64


def delta_storage_options(options: dict | None) -> dict[str, str]:
    """delta-rs (object_store) keys for fsspec/s3fs storage options.

    Keys left unset fall back to the AWS_* environment variables in delta-rs.
    """
    options = options or {}
    client = options.get("client_kwargs") or {}
    endpoint = options.get("endpoint_url") or client.get("endpoint_url")
    out = {
        "AWS_ACCESS_KEY_ID": options.get("key"),
        "AWS_SECRET_ACCESS_KEY": options.get("secret"),
        "AWS_SESSION_TOKEN": options.get("token"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": options.get("region_name") or client.get("region_name"),
    }
    # object_store refuses plain-http endpoints (local MinIO, moto) unless told.
    if (endpoint or os.environ.get("AWS_ENDPOINT_URL", "")).startswith("http://"):
        out["AWS_ALLOW_HTTP"] = "true"
    return {key: value for key, value in out.items() if value}


def open_table(uri: str, storage_options: dict | None) -> DeltaTable | None:
    """The Delta table at `uri`, or None when there is none (one log read, not two)."""
    try:
        return DeltaTable(uri, storage_options=delta_storage_options(storage_options))
    except TableNotFoundError:
        return None


def spark_schema(table: DeltaTable) -> StructType:
    """The table's schema as Spark sees it (Delta's schemaString is Spark's JSON format)."""
    return StructType.fromJson(json.loads(table.schema().to_json()))


def _relaxed(schema_json: dict) -> dict:
    """Spark/Delta schema JSON with every field, element and map value nullable, no metadata.

    Like Delta Lake's own writer, tables are created nullable so that a later
    DataFrame whose column happens to be nullable can still be appended.
    """
    if isinstance(schema_json, dict):
        out = {key: _relaxed(value) for key, value in schema_json.items()}
        for key in ("nullable", "containsNull", "valueContainsNull"):
            if key in out:
                out[key] = True
        if "metadata" in out:
            out["metadata"] = {}
        return out
    if isinstance(schema_json, list):
        return [_relaxed(item) for item in schema_json]
    return schema_json


def _columns(schema_json: dict) -> dict[str, object]:
    """Column name -> type, ignoring order and nullability: what must match to append."""
    return {field["name"]: field["type"] for field in _relaxed(schema_json)["fields"]}


@dataclass
class DeltaFile(WriterCommitMessage):
    """One written parquet file: the fields of its Delta add action."""
    path: str                # relative to the table root
    size: int
    modification_time: int   # ms since the epoch
    stats: str               # JSON


class DeltaRsDataSource(DataSource):
    """Registered by TableStore; not meant to be used directly (see the module docstring)."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def writer(self, schema: StructType, overwrite: bool) -> DeltaRsWriter:
        return DeltaRsWriter(self.options, schema, overwrite)

    def reader(self, schema: StructType) -> DeltaRsReader:
        return DeltaRsReader(self.options, schema)


class DeltaRsWriter(DataSourceArrowWriter):
    """Built on the driver (schema check happens here, before any task runs), then pickled to tasks."""

    def __init__(self, options: dict, schema: StructType, overwrite: bool):
        self.uri = options["path"].rstrip("/")
        self.storage_options = json.loads(options.get("secret_storage_options") or "{}")
        self.mode = "overwrite" if overwrite else "append"
        self.txn = (options["txn_app_id"], int(options["txn_version"])) if options.get("txn_app_id") else None
        self.tag = options.get("tag")
        schema_json = _relaxed(schema.jsonValue())
        self.delta_schema = json.dumps(schema_json)
        self.arrow_schema = to_arrow_schema(StructType.fromJson(schema_json))
        table = open_table(self.uri, self.storage_options)
        if (table is not None and not overwrite
                and _columns(json.loads(table.schema().to_json())) != _columns(schema_json)):
            raise ValueError(
                f"cannot {self.mode} to {self.uri}: the DataFrame's columns "
                f"{schema.simpleString()} differ from the table's {spark_schema(table).simpleString()} "
                "(schema changes are not supported)")

    def write(self, iterator) -> WriterCommitMessage:
        batches = (batch for batch in iterator if batch.num_rows)
        first = next(batches, None)
        if first is None:
            return WriterCommitMessage()  # no rows, no file (Spark refuses None here)
        fs, root = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        if "file" in fs.protocol:  # object stores need no folders (and may not allow the check)
            fs.makedirs(root, exist_ok=True)
        name = f"part-{uuid.uuid4()}.parquet"
        path = f"{root}/{name}"
        stats = _Stats(self.arrow_schema)
        try:
            with fs.open(path, "wb") as sink:
                with pq.ParquetWriter(sink, self.arrow_schema, compression="zstd") as out:
                    for batch in itertools.chain([first], batches):
                        batch = batch.cast(self.arrow_schema)
                        out.write_batch(batch)
                        stats.add(batch)
                size = sink.tell()
        except BaseException:
            try:
                fs.rm(path)  # a failed task leaves no partial file behind
            except FileNotFoundError:
                pass
            raise
        return DeltaFile(name, size, int(time.time() * 1000), stats.json())

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        actions = [AddAction(m.path, m.size, {}, m.modification_time, True, m.stats)
                   for m in messages if isinstance(m, DeltaFile)]
        properties = CommitProperties(
            custom_metadata={"userMetadata": self.tag} if self.tag else None,
            app_transactions=[Transaction(*self.txn)] if self.txn else None)
        schema = Schema.from_json(self.delta_schema)
        table = open_table(self.uri, self.storage_options)
        if table is None:
            try:
                create_table_with_add_actions(
                    self.uri, schema, actions, mode="error",
                    storage_options=delta_storage_options(self.storage_options),
                    commit_properties=properties)
                return
            except DeltaError:
                # Another writer created the table meanwhile: commit to it below.
                table = open_table(self.uri, self.storage_options)
                if table is None:
                    raise
        if self.txn and (table.transaction_version(self.txn[0]) or -1) >= self.txn[1]:
            self.abort(messages)  # a concurrent writer already committed this transaction
            return
        table.create_write_transaction(actions, mode=self.mode, schema=schema,
                                       commit_properties=properties)

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        """Delete the job's files, sparing any a (partly failed) commit made active."""
        names = {m.path for m in messages if isinstance(m, DeltaFile)}
        table = open_table(self.uri, self.storage_options)
        if table is not None:
            names -= {uri.rsplit("/", 1)[-1] for uri in table.file_uris()}
        fs, root = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        for name in names:
            fs.rm(f"{root}/{name}")


class DeltaRsReader(DataSourceReader):
    """Reads the given active files, one partition each (for stores the JVM cannot reach)."""

    def __init__(self, options: dict, schema: StructType):
        self.files = json.loads(options["files"])
        self.storage_options = json.loads(options.get("secret_storage_options") or "{}")
        self.arrow_schema = to_arrow_schema(schema)

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(uri) for uri in self.files]

    def read(self, partition: InputPartition):
        with fsspec.open(partition.value, "rb", **self.storage_options) as source:
            for batch in pq.ParquetFile(source).iter_batches(columns=self.arrow_schema.names):
                yield batch.cast(self.arrow_schema)


class _Stats:
    """Delta per-file statistics for top-level primitive columns (data skipping).

    min/max only where the bound is exact in JSON: integers, dates, UTC timestamps
    (widened to whole milliseconds, Delta's precision) and short strings. Floats
    are left out because Arrow's min/max skips NaN.
    """

    def __init__(self, schema: pa.Schema):
        self.rows = 0
        self.nulls = {f.name: 0 for f in schema if not pa.types.is_nested(f.type)}
        self.types = {f.name: f.type for f in schema if _bounded(f.type)}
        self.bounds: dict[str, tuple] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name in self.nulls:
            column = batch.column(name)
            self.nulls[name] += column.null_count
            if name not in self.types or column.null_count == len(column):
                continue
            if pa.types.is_timestamp(column.type):
                column = column.cast(pa.int64())
            result = pc.min_max(column)
            low, high = result["min"].as_py(), result["max"].as_py()
            if name in self.bounds:
                low, high = min(low, self.bounds[name][0]), max(high, self.bounds[name][1])
            self.bounds[name] = (low, high)

    def json(self) -> str:
        bounds = {name: (_stat_value(self.types[name], low, False),
                         _stat_value(self.types[name], high, True))
                  for name, (low, high) in self.bounds.items()}
        bounds = {name: pair for name, pair in bounds.items() if None not in pair}
        return json.dumps({
            "numRecords": self.rows,
            "minValues": {name: low for name, (low, _) in bounds.items()},
            "maxValues": {name: high for name, (_, high) in bounds.items()},
            "nullCount": self.nulls,
        })


def _bounded(type_: pa.DataType) -> bool:
    return (pa.types.is_integer(type_) or pa.types.is_date32(type_) or pa.types.is_string(type_)
            or (pa.types.is_timestamp(type_) and type_.tz is not None))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _stat_value(type_: pa.DataType, value, upper: bool):
    """JSON form of a bound (timestamps arrive as epoch microseconds); None: no exact bound."""
    if pa.types.is_timestamp(type_):
        millis = -(-value // 1000) if upper else value // 1000
        return (_EPOCH + dt.timedelta(milliseconds=millis)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if pa.types.is_date32(type_):
        return value.isoformat()
    if pa.types.is_string(type_) and len(value) > STATS_STRING_MAX_CHARS:
        return None
    return value
