"""Ingest on a real local Spark session: the demo delivery from local disk and
from an S3-compatible server on loopback, read back from the Delta tables."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dicom_triage.jobs.cli import main as triage
from dicom_triage.jobs.config import load_settings
from dicom_triage.jobs.demo_data import generate_delivery
from dicom_triage.jobs.tables import TableStore

pytestmark = pytest.mark.spark
SECRET = "integration-test-secret-0123456789"


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("delivery")
    generate_delivery(str(root), seed=11)
    return root


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", SECRET)


def ground_truth(root: Path) -> dict[str, dict]:
    with open(root / "_ground_truth.csv", newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def ingest(input_uri: str, output: str, *extra: str) -> None:
    args = ["ingest", "--input", input_uri, "--output", output, "--set", "mlflow.enabled=false"]
    for item in extra:
        args += ["--set", item]
    assert triage(args) == 0


def tables(spark, output: str, storage_options=None):
    store = TableStore(spark, output, storage_options=storage_options)
    return store.read("instances"), store.read("ingest_errors"), store


def test_local_delivery_accounting_and_error_classes(spark, delivery, tmp_path):
    output = str(tmp_path / "out")
    ingest(str(delivery), output)
    instances, errors, _ = tables(spark, output)
    truth = ground_truth(delivery)

    n_inst, n_err = instances.count(), errors.count()
    assert n_inst + n_err == len(truth)
    paths = [r.relative_path for r in instances.select("relative_path").collect()] + \
            [r.relative_path for r in errors.select("relative_path").collect()]
    assert sorted(paths) == sorted(truth), "every listed object lands in exactly one table"

    found = {r.relative_path: r.error_code for r in errors.select("relative_path", "error_code").collect()}
    expected = {p: t["ingest_error"] for p, t in truth.items() if t["ingest_error"]}
    per_class = {}
    for path, code in expected.items():
        hit = found.get(path) == code
        per_class.setdefault(code, []).append(hit)
    print("ingest error recall per class:", {c: f"{sum(h)}/{len(h)}" for c, h in per_class.items()})
    assert found == expected, "error classes must match the ground truth exactly"

    row = instances.filter("modality = 'MR'").first()
    assert row.site and row.sop_instance_uid and row.rows > 0
    assert row.patient_key.startswith("hmac:")
    assert row.size_bytes > 0 and row.modified_at is not None
    assert row.header_bytes_read < row.size_bytes
    assert set(r.site for r in instances.select("site").distinct().collect()) >= {
        t["site"] for t in truth.values() if t["site"]} - {""}


def test_no_planted_identifier_in_instances(spark, delivery, tmp_path):
    import json
    output = str(tmp_path / "out")
    ingest(str(delivery), output)
    instances, errors, _ = tables(spark, output)
    planted = json.loads((delivery / "_ground_truth.json").read_text())["planted_identifiers"]
    assert planted
    text_columns = [f.name for f in instances.schema.fields if f.dataType.simpleString() == "string"]
    for value in planted:
        hits = instances.filter(" OR ".join(f"instr({c}, '{value}') > 0" for c in text_columns)).count()
        assert hits == 0, f"identifier {value!r} reached the instances table"


def test_rerun_adds_nothing_and_new_files_are_processed_alone(spark, delivery, tmp_path, capsys):
    work = tmp_path / "delivery"
    shutil.copytree(delivery, work)
    output = str(tmp_path / "out")
    # Every run under one run id, as a scheduler that passes its job's id does: new objects
    # must still be written (the write's retry marker must not hide them).
    same_run = "run_id=scheduled-job-17"
    ingest(str(work), output, same_run)
    instances, errors, store = tables(spark, output)
    before = (instances.count(), errors.count())
    versions = (store.version("instances"), store.version("ingest_errors"))

    ingest(str(work), output, same_run)
    instances, errors, _ = tables(spark, output)
    assert (instances.count(), errors.count()) == before
    assert (store.version("instances"), store.version("ingest_errors")) == versions
    assert "0 parsed this run" in capsys.readouterr().out

    # New files arrive: two good copies under new names and one empty object.
    good = next(p for p, t in ground_truth(work).items() if t["category"] == "good")
    new_dir = work / "site_new" / "late"
    new_dir.mkdir(parents=True)
    shutil.copy(work / good, new_dir / "a.dcm")
    shutil.copy(work / good, new_dir / "b.dcm")
    (new_dir / "empty.dcm").write_bytes(b"")
    ingest(str(work), output, same_run)
    assert "3 parsed this run" in capsys.readouterr().out
    instances, errors, _ = tables(spark, output)
    assert (instances.count(), errors.count()) == (before[0] + 2, before[1] + 1)
    assert errors.filter("relative_path = 'site_new/late/empty.dcm' AND error_code = 'EMPTY_FILE'").count() == 1

    # A file changes: a good file is cut short. Its instance row is replaced by an error row.
    data = (work / good).read_bytes()
    (work / good).write_bytes(data[: len(data) // 2])
    ingest(str(work), output, same_run)
    instances, errors, _ = tables(spark, output)
    assert instances.filter(f"relative_path = '{good}'").count() == 0
    assert errors.filter(f"relative_path = '{good}' AND error_code = 'TRUNCATED'").count() == 1
    assert instances.count() + errors.count() == before[0] + before[1] + 3
    assert not store.exists("removed_objects")

    # Objects leave the delivery (a good one and an error row's); a link to a file outside
    # it arrives (read as that file), and a link to a folder (not followed: no loops).
    (work / "site_new" / "late" / "a.dcm").unlink()
    (work / "site_new" / "late" / "empty.dcm").unlink()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(delivery / good, outside / "linked.dcm")
    (new_dir / "link.dcm").symlink_to(outside / "linked.dcm")
    (new_dir / "loop").symlink_to(work)
    ingest(str(work), output, "run_id=noticed-it")
    assert "2 objects of earlier runs are gone" in capsys.readouterr().out
    instances, errors, _ = tables(spark, output)
    assert instances.filter("relative_path LIKE 'site_new/late/a.dcm'").count() == 0
    assert errors.filter("relative_path = 'site_new/late/empty.dcm'").count() == 0
    linked = instances.filter("relative_path = 'site_new/late/link.dcm'").collect()
    assert len(linked) == 1 and linked[0].size_bytes == (outside / "linked.dcm").stat().st_size
    assert instances.filter("relative_path LIKE 'site_new/late/loop/%'").count() == 0
    assert instances.count() + errors.count() == before[0] + before[1] + 3 - 2 + 1
    removed = store.read("removed_objects").collect()
    assert sorted(r.path.rsplit("/", 1)[-1] for r in removed) == ["a.dcm", "empty.dcm"]
    assert {r.run_id for r in removed} == {"noticed-it"}


def test_full_refresh_overwrites_and_readers_see_only_new_rows(spark, delivery, tmp_path):
    output = str(tmp_path / "out")
    ingest(str(delivery), output)
    ingest(str(delivery), output, "ingest.full_refresh=true", "run_id=second")
    instances, errors, _ = tables(spark, output)
    assert instances.count() + errors.count() == len(ground_truth(delivery))
    assert {r.run_id for r in instances.select("run_id").distinct().collect()} == {"second"}
    parquet_on_disk = list(Path(output, "instances").glob("*.parquet"))
    assert len(parquet_on_disk) > 1, "the overwritten files stay on disk; readers must not see them"


def test_s3_delivery_and_s3_output(spark, s3_server, tmp_path):
    bucket = s3_server.create_bucket("hospital-delivery")
    options = {"endpoint_url": s3_server.endpoint_url}
    generate_delivery(f"s3://{bucket}/delivery", seed=11, storage_options=options)
    conf = tmp_path / "s3.yaml"
    conf.write_text(f"storage:\n  options:\n    endpoint_url: {s3_server.endpoint_url}\n")
    output = f"s3://{bucket}/tables"
    args = ["ingest", "--conf", str(conf), "--input", f"s3://{bucket}/delivery", "--output", output,
            "--set", "mlflow.enabled=false"]
    assert triage(args) == 0
    instances, errors, _ = tables(spark, output, options)
    import s3fs
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server.endpoint_url})
    with fs.open(f"{bucket}/delivery/_ground_truth.csv", "r") as handle:
        truth = {row["path"]: row for row in csv.DictReader(handle)}
    assert instances.count() + errors.count() == len(truth)
    found = {r.relative_path: r.error_code for r in errors.collect()}
    assert found == {p: t["ingest_error"] for p, t in truth.items() if t["ingest_error"]}
    assert instances.first().path.startswith(f"s3://{bucket}/delivery/")
    # Header reads over HTTP fetch a small part of each object.
    stats = instances.selectExpr("sum(header_bytes_read) AS read", "sum(size_bytes) AS size").first()
    assert stats.read < stats.size / 5


def test_mlflow_run_records_config_and_counts(spark, delivery, tmp_path):
    import mlflow
    output = str(tmp_path / "out")
    assert triage(["ingest", "--input", str(delivery), "--output", output]) == 0
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/out/_mlflow/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["dicom-triage"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["ingest.files_per_partition"] == "200"
    assert run.data.metrics["ingest.listed"] == len(ground_truth(delivery))
    assert run.data.metrics["ingest.errors.EMPTY_FILE"] >= 1
    assert SECRET not in str(run.data.params)


def test_bad_settings_stop_before_work(spark, delivery, tmp_path, capsys, monkeypatch):
    assert triage(["ingest", "--input", str(tmp_path), "--set", "ingest.files_per_partition=0"]) == 2
    assert "ingest.files_per_partition" in capsys.readouterr().err
    assert triage(["ingest", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o"),
                   "--set", "mlflow.enabled=false"]) == 2
    assert "setting 'input'" in capsys.readouterr().err
    # catalog tables need Delta Lake's own Spark classes, absent here
    assert triage(["ingest", "--input", str(delivery), "--output", "main.triage",
                   "--set", "mlflow.enabled=false"]) == 2
    assert "catalog" in capsys.readouterr().err
    monkeypatch.delenv("TRIAGE_HMAC_SECRET")
    assert triage(["ingest", "--input", str(tmp_path)]) == 2
    assert "TRIAGE_HMAC_SECRET" in capsys.readouterr().err


def test_spark_submit_runs_the_ingest_stage(delivery, tmp_path):
    import pyspark
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    output = tmp_path / "out"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1", "TRIAGE_HMAC_SECRET": SECRET}
    entry = Path(__file__).resolve().parents[1] / "jobs" / "__main__.py"
    result = subprocess.run(
        [str(submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false", str(entry),
         "ingest", "--input", str(delivery), "--output", str(output), "--set", "mlflow.enabled=false"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "new instances" in result.stdout
    store_settings = load_settings(overrides=[f"output={output}"])
    from deltalake import DeltaTable
    total = sum(DeltaTable(str(output / name)).to_pyarrow_dataset().count_rows()
                for name in ("instances", "ingest_errors"))
    assert total == len(ground_truth(delivery))
    assert store_settings.output == str(output)


def test_a_file_name_that_is_not_utf8_is_a_row_that_says_so(delivery, tmp_path):
    """Latin-1 names from an old archive: listed (visibly escaped, storable), and
    its error row tells the user what to do instead of a bare 'file not found'."""
    import datetime as dt

    from dicom_triage.jobs.runtime import header_policy
    from dicom_triage.jobs.storage import list_objects, range_reader
    from dicom_triage.udfs.ingest_batch import parse_rows

    folder = tmp_path / "delivery"
    folder.mkdir()
    good = next(p for p, t in ground_truth(delivery).items() if t["category"] == "good")
    latin1 = os.fsdecode(str(folder).encode() + b"/M\xfcller.dcm")
    shutil.copy(delivery / good, latin1)
    shutil.copy(delivery / good, folder / "plain.dcm")
    listed = {o.relative_path: o for o in list_objects(str(folder))}
    assert set(listed) == {"M\\xfcller.dcm", "plain.dcm"}
    for item in listed.values():
        item.path.encode("utf-8")  # storable: no lone surrogates left
    policy = header_policy(load_settings(), b"any-secret-0123456789")
    rows = {row["relative_path"]: row for row in parse_rows(
        [{"path": o.path, "relative_path": o.relative_path, "size_bytes": o.size_bytes} for o in listed.values()],
        policy, range_reader({}), "r", dt.datetime(2026, 1, 1))}
    assert rows["plain.dcm"]["error_code"] is None
    assert rows["M\\xfcller.dcm"]["error_code"] == "IO_ERROR"
    assert "not valid UTF-8" in rows["M\\xfcller.dcm"]["error_message"]
    assert "rename" in rows["M\\xfcller.dcm"]["error_message"]
