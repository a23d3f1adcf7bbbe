"""Ingest from an inventory (a listing prepared in advance) instead of a live
listing: the same rows, on local disk and on the S3 server on loopback."""
from __future__ import annotations

import datetime as dt
import io
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dicom_triage.jobs.cli import main as triage
from dicom_triage.jobs.tables import TableStore
from dicom_triage.udfs.inventory import missing_columns, read_inventory

SECRET = "inventory-test-secret-0123456789"
FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm"]


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", SECRET)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    """Four real DICOM files in two site folders, one ignored name."""
    import pydicom
    source = Path(pydicom.__file__).parent / "data" / "test_files"
    root = tmp_path_factory.mktemp("inventory") / "delivery"
    for i, name in enumerate(FILES):
        folder = root / ("site_a" if i % 2 else "site_b") / "series"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, folder / name)
    (root / "site_a" / "_ground_truth.csv").write_text("not an object of the delivery\n")
    return root


def file_rows(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            rows.append({"path": path.resolve().as_uri(), "size_bytes": stat.st_size,
                         "modified_at": dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc)})
    return rows


def ingested(spark, output: str, options=None) -> dict[str, tuple]:
    store = TableStore(spark, output, storage_options=options)
    rows = store.read("instances").select("path", "relative_path", "site", "size_bytes").collect()
    return {r.path: (r.relative_path, r.site, r.size_bytes) for r in rows}


def test_read_inventory_accepts_both_conventions_and_names_what_is_missing():
    s3_csv = (b"bucket,key,size,last_modified_date,e_tag\n"
              b"b,delivery/site_a/x%2By+z.dcm,12,2026-11-30T10:00:00.000Z,abc\n")
    table = read_inventory(io.BytesIO(s3_csv), "report.csv").to_pylist()
    assert table == [{"path": "s3://b/delivery/site_a/x+y z.dcm", "size_bytes": 12,
                      "modified_at": dt.datetime(2026, 11, 30, 10, tzinfo=dt.timezone.utc), "etag": "abc"}]
    own = io.BytesIO()
    pq.write_table(pa.table({"path": ["file:///d/a.dcm"], "size_bytes": [3],
                             "modified_at": pa.array([dt.datetime(2026, 1, 1)], pa.timestamp("ms"))}), own)
    own.seek(0)
    row = read_inventory(own, "part-0.parquet").to_pylist()[0]
    assert row["etag"] is None and row["modified_at"].tzinfo is not None
    assert missing_columns(["key", "size", "last_modified_date"]) == ["path (or bucket and key)"]
    assert missing_columns(["path", "size"]) == ["modified_at"]


def test_inventory_gives_the_rows_a_live_listing_gives(spark, delivery, tmp_path):
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    rows = file_rows(delivery)
    outside = {"path": "file:///elsewhere/site_z/other.dcm", "size_bytes": 1,
               "modified_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
    # two report files, Parquet and gzipped CSV; the first object listed twice (overlapping reports)
    pq.write_table(pa.Table.from_pylist(rows[:3] + [outside]), inventory / "part-0.parquet")
    pd.DataFrame(rows[:1] + rows[3:]).to_csv(inventory / "part-1.csv.gz", index=False)
    (inventory / "manifest.json").write_text("{}")  # not an inventory file: ignored

    args = ["ingest", "--input", str(delivery), "--set", "mlflow.enabled=false"]
    assert triage([*args, "--output", str(tmp_path / "live")]) == 0
    assert triage([*args, "--output", str(tmp_path / "inv"), "--set", f"ingest.inventory={inventory}"]) == 0
    live, from_inventory = ingested(spark, str(tmp_path / "live")), ingested(spark, str(tmp_path / "inv"))
    assert len(live) == len(FILES)
    assert from_inventory == live
    # a second run from the same inventory adds nothing
    assert triage([*args, "--output", str(tmp_path / "inv"), "--set", f"ingest.inventory={inventory}"]) == 0
    assert TableStore(spark, str(tmp_path / "inv")).read("instances").count() == len(FILES)


def test_s3_inventory_report_on_s3(spark, s3_server, delivery, tmp_path):
    import s3fs
    bucket = s3_server.create_bucket("inventory-delivery")
    options = {"endpoint_url": s3_server.endpoint_url}
    fs = s3fs.S3FileSystem(client_kwargs=options)
    fs.put(str(delivery), f"{bucket}/delivery", recursive=True)
    lines = ["bucket,key,size,last_modified_date,e_tag"]
    for key, info in fs.find(f"{bucket}/delivery", detail=True).items():
        modified = info["LastModified"].astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        lines.append(f"{bucket},{key.split('/', 1)[1]},{info['size']},{modified},{info['ETag'].strip(chr(34))}")
    fs.pipe(f"{bucket}/inventory/data/report.csv", ("\n".join(lines) + "\n").encode())
    conf = tmp_path / "s3.yaml"
    conf.write_text(f"storage:\n  options:\n    endpoint_url: {s3_server.endpoint_url}\n")
    output = f"s3://{bucket}/tables"
    assert triage(["ingest", "--conf", str(conf), "--input", f"s3://{bucket}/delivery", "--output", output,
                   "--set", "mlflow.enabled=false", "--set", f"ingest.inventory=s3://{bucket}/inventory/"]) == 0
    got = ingested(spark, output, options)
    assert {p.rsplit("/", 1)[1] for p in got} == set(FILES)
    assert all(p.startswith(f"s3://{bucket}/delivery/site_") for p in got)


def test_bad_inventory_stops_naming_the_setting(spark, delivery, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("key,size\nx,1\n")
    code = triage(["ingest", "--input", str(delivery), "--output", str(tmp_path / "out"),
                   "--set", "mlflow.enabled=false", "--set", f"ingest.inventory={bad}"])
    assert code == 2
    message = capsys.readouterr().err
    assert "ingest.inventory" in message and "lacks the column(s)" in message
    assert not os.path.exists(tmp_path / "out" / "instances")
