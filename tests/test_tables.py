"""The Delta table layer on a real local Spark session, delta-rs backend: a local
folder and a bucket on an S3-compatible server (moto) on loopback."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import fsspec
import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, DateType, IntegerType, LongType, MapType, StringType,
                               StructField, StructType, TimestampType)

from dicom_triage.jobs.delta_rs_source import delta_storage_options
from dicom_triage.jobs.tables import TableNotFoundError, TableStore, resolve_backend

pytestmark = pytest.mark.spark

SCHEMA = StructType([
    StructField("id", LongType(), nullable=False),
    StructField("name", StringType()),
    StructField("tags", ArrayType(StringType())),
    StructField("day", DateType()),
    StructField("at", TimestampType()),
    StructField("attrs", MapType(StringType(), IntegerType())),
    StructField("point", StructType([StructField("x", IntegerType()), StructField("label", StringType())])),
])
UTC = dt.timezone.utc


def rows(ids):
    return [(i, f"name-{i}" if i % 3 else None, [f"t{i}", None] if i % 2 else None,
             dt.date(2024, 1, 1) + dt.timedelta(days=i),
             dt.datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC) + dt.timedelta(seconds=i),
             {"k": i} if i % 2 else None, (i, f"p{i}") if i % 4 else None)
            for i in ids]


def frame(spark, ids, partitions=2):
    return spark.createDataFrame(rows(ids), SCHEMA).repartition(partitions)


def by_id(df):
    return sorted(df.collect(), key=lambda row: row.id)


def parquet_on_disk(store: TableStore, name: str) -> list[str]:
    """Every parquet file in the table's folder, active or not."""
    fs, root = fsspec.core.url_to_fs(store.location(name), **store.storage_options)
    fs.invalidate_cache()
    return fs.glob(f"{root}/*.parquet")


@pytest.fixture(params=["local", "s3"])
def store(request, spark, tmp_path):
    if request.param == "local":
        return TableStore(spark, str(tmp_path / "out"))
    server = request.getfixturevalue("s3_server")
    bucket = server.create_bucket(f"tables-{uuid.uuid4().hex[:12]}")
    return TableStore(spark, f"s3://{bucket}/out", storage_options={"endpoint_url": server.endpoint_url})


def test_auto_backend_is_delta_rs_without_delta_jars(spark, tmp_path):
    assert TableStore(spark, str(tmp_path)).backend == "delta-rs"


def test_backend_resolution_rules():
    assert resolve_backend("auto", "/data/out", delta_classes=True) == "delta-spark"
    assert resolve_backend("auto", "/data/out", delta_classes=False) == "delta-rs"
    assert resolve_backend("auto", "main.triage", delta_classes=True) == "delta-spark"
    assert resolve_backend("delta-rs", "s3://bucket/out", delta_classes=True) == "delta-rs"
    with pytest.raises(ValueError, match="not on the Spark classpath"):
        resolve_backend("delta-spark", "/data/out", delta_classes=False)
    with pytest.raises(ValueError, match="tables.backend"):
        resolve_backend("parquet", "/data/out", delta_classes=False)


def test_catalog_output_with_delta_rs_is_a_clear_error(spark):
    for backend in ("auto", "delta-rs"):
        with pytest.raises(ValueError, match=r"output='main\.triage'.*catalog"):
            TableStore(spark, "main.triage", backend=backend)


def test_location_joins_output_and_name(spark, tmp_path):
    assert TableStore(spark, "s3://bucket/out/").location("instances") == "s3://bucket/out/instances"
    assert TableStore(spark, str(tmp_path)).location("instances") == f"{tmp_path}/instances"


def test_storage_options_translate_to_delta_rs_keys(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert delta_storage_options({"endpoint_url": "http://127.0.0.1:9000", "key": "k", "secret": "s"}) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    assert delta_storage_options({"client_kwargs": {"endpoint_url": "https://s3.example", "region_name": "eu-west-1"}}) == {
        "AWS_ENDPOINT_URL": "https://s3.example", "AWS_REGION": "eu-west-1"}
    assert delta_storage_options({}) == {}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    assert delta_storage_options({}) == {"AWS_ALLOW_HTTP": "true"}


def test_append_round_trips_nested_and_temporal_columns(spark, store):
    first, second = frame(spark, range(0, 10)), frame(spark, range(10, 25))
    assert store.version("t") is None and not store.exists("t")
    assert store.write(first, "t") == 0
    assert store.write(second, "t", mode="append") == 1
    assert store.exists("t") and store.version("t") == 1
    back = store.read("t")
    assert back.schema.fieldNames() == SCHEMA.fieldNames()
    assert dict(back.dtypes) == dict(first.dtypes)
    assert by_id(back) == by_id(first.unionByName(second))
    assert back.where(F.col("at") == F.lit(dt.datetime(2024, 1, 1, 12, 0, 7, 123456, tzinfo=UTC))) \
        .select("id").first().id == 7


def test_overwrite_leaves_readers_only_the_new_rows(spark, store):
    store.write(frame(spark, range(0, 20), partitions=3), "t")
    store.write(frame(spark, range(100, 105)), "t", mode="overwrite")
    assert [row.id for row in by_id(store.read("t"))] == list(range(100, 105))
    active = store._delta_rs_table("t").file_uris()
    assert len(parquet_on_disk(store, "t")) > len(active), "removed files stay on disk until vacuumed"
    with pytest.raises(ValueError, match="mode"):
        store.write(frame(spark, [1]), "t", mode="upsert")


def test_transaction_is_committed_once(spark, store):
    df = frame(spark, range(5))
    assert store.write(df, "t", txn=("run-1/t", 1)) == 0
    assert store.write(df, "t", txn=("run-1/t", 1)) is None
    assert store.write(df, "t", txn=("run-1/t", 0)) is None
    assert store.read("t").count() == 5 and store.version("t") == 0
    assert store.write(df, "t", txn=("run-1/t", 2)) == 1
    assert store.read("t").count() == 10


def test_delete_where_in(spark, store):
    df = spark.createDataFrame([(i, f"p/{i}'s") for i in range(10)], "id long, path string")
    store.write(df.repartition(3), "t")
    store.delete_where_in("t", "path", ["p/1's", "p/2's", "absent"])
    store.delete_where_in("t", "id", [7])
    store.delete_where_in("t", "id", [])
    store.delete_where_in("missing", "id", [1])
    assert sorted(row.id for row in store.read("t").collect()) == [0, 3, 4, 5, 6, 8, 9]
    assert store.version("t") == 2


def test_missing_table(spark, store):
    assert store.read("missing", schema=SCHEMA).count() == 0
    assert store.read("missing", schema=SCHEMA).schema == SCHEMA
    with pytest.raises(TableNotFoundError, match="missing"):
        store.read("missing")


def test_empty_write_creates_the_table(spark, store):
    assert store.write(frame(spark, []), "t") == 0
    assert store.read("t").count() == 0 and store.read("t").schema.fieldNames() == SCHEMA.fieldNames()
    assert parquet_on_disk(store, "t") == []


def test_appending_other_columns_is_refused(spark, store):
    store.write(frame(spark, range(3)), "t")
    files = parquet_on_disk(store, "t")
    with pytest.raises(Exception, match="differ from the table"):
        store.write(spark.createDataFrame([(1, "x")], "id long, other string"), "t")
    assert store.version("t") == 0 and parquet_on_disk(store, "t") == files


def test_overwrite_may_change_the_columns(spark, store):
    store.write(frame(spark, range(3)), "t")
    version = store.write(spark.createDataFrame([(1, "x")], "id long, other string"), "t", mode="overwrite")
    assert version == 1
    assert store.read("t").schema.simpleString() == "struct<id:bigint,other:string>"
    assert [tuple(r) for r in store.read("t").collect()] == [(1, "x")]


def test_failed_job_commits_nothing_and_leaves_no_files(spark, store):
    store.write(frame(spark, range(3), partitions=1), "t")
    before = len(parquet_on_disk(store, "t"))
    location, options = store.location("t"), store.storage_options

    @F.udf("long")
    def fail_on_zero(value):
        if value == 0:
            # Fail once the other task has written its file, so that abort must delete it
            # (a task killed mid-write could leave its file; it would not be active either).
            fs, root = fsspec.core.url_to_fs(location, **options)
            deadline = time.time() + 60
            while len(fs.glob(f"{root}/*.parquet")) == before and time.time() < deadline:
                time.sleep(0.2)
                fs.invalidate_cache()
            time.sleep(1)
            raise RuntimeError("bad row")
        return value

    doomed = frame(spark, range(100)).withColumn("id", fail_on_zero("id"))
    with pytest.raises(Exception, match="bad row"):
        store.write(doomed, "t")
    assert store.version("t") == 0
    assert len(parquet_on_disk(store, "t")) == before
    assert store.read("t").count() == 3


def test_concurrent_appends_both_land(spark, store):
    versions, errors = [], []

    def append(ids):
        try:
            versions.append(store.write(frame(spark, ids), "t"))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(range(start, start + 50),)) for start in (0, 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(versions) == [0, 1]
    assert store.read("t").count() == 100


@pytest.mark.slow
def test_s3_credentials_from_environment_only(s3_server, tmp_path):
    """AWS_* variables alone, storage_options empty: in a fresh Spark, so its workers see them."""
    bucket = s3_server.create_bucket("env-only")
    script = textwrap.dedent(f"""
        from pyspark.sql import SparkSession
        from dicom_triage.jobs.tables import TableStore
        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .getOrCreate())
        store = TableStore(spark, "s3://{bucket}/out")
        store.write(spark.range(7), "t")
        store.write(spark.range(3), "t")
        print("ROWS", store.read("t").count())
    """)
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_server.endpoint_url, "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert "ROWS 10" in done.stdout, done.stderr[-3000:]
