"""Delta table I/O for the pipeline's output tables.

Two backends behind one interface: Delta Lake's own Spark writer ("delta-spark")
where its JVM classes are on the classpath (Databricks, --packages
io.delta:delta-spark_2.13), else delta-rs through the Python data source in
jobs/delta_rs_source.py, which needs nothing beyond the Python packages.
"""
from __future__ import annotations

import json
import os
import re
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from dicom_triage.jobs.delta_rs_source import NAME as DELTA_RS_SOURCE
from dicom_triage.jobs.delta_rs_source import DeltaRsDataSource, open_table, spark_schema

BACKENDS = ("auto", "delta-spark", "delta-rs")
CATALOG_OUTPUT = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # s3://, file:, dbfs:/ ...
WRITE_MODES = ("append", "overwrite")


class TableNotFoundError(LookupError):
    """read() of a table that does not exist, without a schema for an empty result."""


def delta_classes_present(spark: SparkSession) -> bool:
    """Whether Delta Lake's Spark classes can be used in this session."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return True
    if "DeltaSparkSessionExtension" in (spark.conf.get("spark.sql.extensions", None) or ""):
        return True
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")
        return True
    except Exception:  # no JVM access (Spark Connect) or class not found
        return False


def resolve_backend(requested: str, output: str, delta_classes: bool) -> str:
    """"delta-spark" or "delta-rs" for the `tables.backend` setting; clear errors for what cannot work."""
    if requested not in BACKENDS:
        raise ValueError(f"tables.backend={requested!r}: must be one of {', '.join(BACKENDS)}")
    backend = requested if requested != "auto" else ("delta-spark" if delta_classes else "delta-rs")
    if backend == "delta-spark" and not delta_classes:
        raise ValueError("tables.backend=delta-spark, but Delta Lake's classes are not on the Spark "
                         "classpath (add --packages io.delta:delta-spark_2.13:<version>, or use delta-rs)")
    if backend == "delta-rs" and CATALOG_OUTPUT.match(output):
        raise ValueError(f"output={output!r} names catalog tables (catalog.schema), which need Delta "
                         "Lake's Spark classes (tables.backend delta-spark, e.g. on Databricks); "
                         "with delta-rs set output to a folder or bucket URI")
    return backend


class TableStore:
    """The output's Delta tables, by name."""

    def __init__(self, spark: SparkSession, output: str, backend: str = "auto",
                 storage_options: dict | None = None):
        self.spark = spark
        self.catalog = bool(CATALOG_OUTPUT.match(output))
        # Local paths absolute: Python workers need not share the driver's working directory.
        self.output = output if self.catalog or URI.match(output) else os.path.abspath(output)
        self.storage_options = dict(storage_options or {})
        self.backend = resolve_backend(
            backend, output, backend != "delta-rs" and delta_classes_present(spark))
        if self.backend == "delta-rs":
            spark.dataSource.register(DeltaRsDataSource)

    def location(self, name: str) -> str:
        if self.catalog:
            return f"{self.output}.{name}"
        return f"{self.output.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        if self.backend == "delta-rs":
            return self._delta_rs_table(name) is not None
        if self.catalog:
            return self.spark.catalog.tableExists(self.location(name))
        from delta.tables import DeltaTable
        return DeltaTable.isDeltaTable(self.spark, self.location(name))

    def read(self, name: str, schema: StructType | None = None) -> DataFrame:
        """The table's current rows. `schema` only serves a missing table (empty result)."""
        location = self.location(name)
        if self.backend == "delta-spark":
            if not self.exists(name):
                return self._missing(name, schema)
            return self.spark.table(location) if self.catalog else \
                self.spark.read.format("delta").load(location)
        table = self._delta_rs_table(name)
        if table is None:
            return self._missing(name, schema)
        files, table_schema = table.file_uris(), spark_schema(table)
        if not files:
            return self.spark.createDataFrame([], table_schema)
        if not URI.match(location) or location.startswith("file:"):
            return self.spark.read.schema(table_schema).parquet(*files)
        # The JVM cannot reach object stores without extra jars: read in Python (fsspec).
        return (self.spark.read.format(DELTA_RS_SOURCE).schema(table_schema)
                .option("files", json.dumps(files))
                .option("secret_storage_options", json.dumps(self.storage_options))
                .load())

    def write(self, df: DataFrame, name: str, mode: str = "append",
              txn: tuple[str, int] | None = None) -> int | None:
        """Append or overwrite in one commit, creating the table if absent. An
        overwrite may change the columns (the table takes the new ones); an
        append must match the table's columns.

        txn=(app_id, version) makes the write idempotent: skipped when the table
        already recorded that app_id at this version or later. Returns the version
        the write committed, None when it was skipped.
        """
        if mode not in WRITE_MODES:
            raise ValueError(f"write mode {mode!r}: must be one of {', '.join(WRITE_MODES)}")
        tag = uuid.uuid4().hex  # finds this write's commit in the history, whatever else committed
        if self.backend == "delta-spark":
            before = self.version(name)
            writer = df.write.format("delta").mode(mode).option("userMetadata", tag)
            if mode == "overwrite":  # a newer release may add columns to a rewritten table
                writer = writer.option("overwriteSchema", "true")
            if txn:
                writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
            if self.catalog:
                writer.saveAsTable(self.location(name))
            else:
                writer.save(self.location(name))
        else:
            table = self._delta_rs_table(name)
            before = None if table is None else table.version()
            if txn and table is not None and (table.transaction_version(txn[0]) or -1) >= txn[1]:
                return None
            writer = (df.write.format(DELTA_RS_SOURCE).mode(mode).option("tag", tag)
                      .option("secret_storage_options", json.dumps(self.storage_options)))
            if txn:
                writer = writer.option("txn_app_id", txn[0]).option("txn_version", txn[1])
            writer.save(self.location(name))
        return self._tagged_version(name, tag, since=-1 if before is None else before)

    def delete_where_in(self, name: str, column: str, values: list) -> None:
        """Delete the rows whose `column` is one of `values` (a short list)."""
        if not values:
            return
        if self.backend == "delta-spark":
            if self.exists(name):
                self._delta_spark_table(name).delete(F.col(column).isin(list(values)))
            return
        table = self._delta_rs_table(name)
        if table is not None:
            literals = ", ".join(_sql_literal(value) for value in values)
            quoted = '"' + column.replace('"', '""') + '"'
            table.delete(f"{quoted} IN ({literals})")

    def version(self, name: str) -> int | None:
        if self.backend == "delta-rs":
            table = self._delta_rs_table(name)
            return None if table is None else table.version()
        if not self.exists(name):
            return None
        return self._delta_spark_table(name).history(1).first()["version"]

    def _tagged_version(self, name: str, tag: str, since: int) -> int | None:
        """Version of the commit carrying `tag` among those after version `since`."""
        latest = self.version(name)
        if latest is None or latest <= since:
            return None
        if self.backend == "delta-rs":
            history = self._delta_rs_table(name).history(latest - since)
            return next((c["version"] for c in history if c.get("userMetadata") == tag), None)
        row = (self._delta_spark_table(name).history(latest - since)
               .where(F.col("userMetadata") == tag).select("version").first())
        return None if row is None else row["version"]

    def _missing(self, name: str, schema: StructType | None) -> DataFrame:
        if schema is None:
            raise TableNotFoundError(f"no Delta table {name!r} at {self.location(name)}")
        return self.spark.createDataFrame([], schema)

    def _delta_rs_table(self, name: str):
        return open_table(self.location(name), self.storage_options)

    def _delta_spark_table(self, name: str):
        from delta.tables import DeltaTable
        if self.catalog:
            return DeltaTable.forName(self.spark, self.location(name))
        return DeltaTable.forPath(self.spark, self.location(name))


def _sql_literal(value) -> str:
    """A SQL literal for delta-rs predicates (exact types only: strings, integers, booleans)."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"delete_where_in: unsupported value {value!r} ({type(value).__name__})")
