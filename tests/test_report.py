"""The report stage on real local Spark, opened in a real headless Chromium:
every section shows, every image decodes, the charts have marks and the page
logs no error. On hand-made tables (all present, most missing, output in S3)
and on the demo delivery carried through the whole pipeline."""
from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import shutil

import pytest
from PIL import Image

from dicom_triage.jobs import report
from dicom_triage.jobs.config import load_settings
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.jobs.tables import TableStore
from dicom_triage.jobs.tracking import Tracker, tracking_uri
from dicom_triage.schemas.curate import INCLUSION, REVIEW_QUEUE
from dicom_triage.schemas.ingest import INGEST_ERRORS, INSTANCES
from dicom_triage.schemas.neighbors import CLUSTERS
from dicom_triage.schemas.pixels import PIXEL_STATS, SERIES

pytestmark = pytest.mark.spark

SECTIONS = ["overview", "decisions", "embedding-map", "galleries", "configuration"]
# Injected through a site name: the page must show it as text, never run it.
HOSTILE_SITE = "<script>window.injected = 1</script>"
SECRET = "report-test-secret-0123456789"
NOW = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------- the browser


def chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "needs Debian's chromium package (apt-get install chromium; .ci/run installs it)"
    return path


def open_in_browser(html_path: str) -> dict:
    """Load the page in headless Chromium; what a person would see, as numbers.
    Saves a full-page screenshot next to the report."""
    from playwright.sync_api import sync_playwright

    screenshot = os.path.join(os.path.dirname(html_path), "triage-report.png")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto("file://" + html_path, wait_until="load")
            seen = page.evaluate("""() => ({
                visible: Object.fromEntries(%s.map(id => {
                    const el = document.getElementById(id);
                    const box = el && el.getBoundingClientRect();
                    return [id, !!el && box.height > 0 && box.width > 0
                                && getComputedStyle(el).visibility === 'visible'];
                })),
                images: Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth})),
                charts: document.querySelectorAll('svg.chart').length,
                marks: document.querySelectorAll('svg.chart .mark').length,
                mapPoints: document.querySelectorAll('#embedding-map svg circle').length,
                injected: window.injected === 1,
                text: document.body.innerText,
            })""" % json.dumps(SECTIONS))
            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    return {**seen, "errors": errors, "requests": requests, "screenshot": screenshot}


def assert_renders(seen: dict, images: int = 1, map_points: int = 1) -> None:
    assert seen["errors"] == [], seen["errors"]
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), "nothing fetched from outside"
    assert seen["visible"] == dict.fromkeys(SECTIONS, True)
    assert len(seen["images"]) >= images
    assert all(i["complete"] and i["width"] > 0 for i in seen["images"]), "an image did not decode"
    assert seen["charts"] >= 5 and seen["marks"] >= 10
    assert seen["mapPoints"] >= map_points
    assert not seen["injected"]
    with Image.open(seen["screenshot"]) as shot:
        assert shot.format == "PNG" and shot.width >= 1000 and shot.height >= 900
        colours = shot.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50, "the screenshot is blank"


# ---------------------------------------------------------------- hand-made tables


def rows_of(spark, schema, rows: list[dict]):
    """A DataFrame of `schema`; fields a row does not name are null."""
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def thumbnail(seed: int, size: int = 64) -> bytes:
    image = Image.new("L", (size, size))
    image.putdata([(x * 3 + y * seed * 7) % 256 for y in range(size) for x in range(size)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_tables(spark, output: str, names: set[str]) -> None:
    """A small delivery at three sites (one with a hostile name), with the tables in `names`."""
    sites = ["north", "south", HOSTILE_SITE]
    stamp = {"run_id": "r1", "ingested_at": NOW, "computed_at": NOW}
    instances, pixels, clusters, inclusion = [], [], [], []
    for i in range(60):
        path = f"file:///delivery/{sites[i % 3]}/s{i // 6}/{i}.dcm"
        series = f"1.2.{i // 6}"
        modality = ["CT", "MR", "CR"][i % 3]
        instances.append({**stamp, "path": path, "site": sites[i % 3], "size_bytes": 1000 + i,
                          "sop_instance_uid": f"1.3.{i}", "series_instance_uid": series,
                          "study_instance_uid": f"1.1.{i // 12}", "patient_key": f"p{i // 12}",
                          "modality": modality, "manufacturer": ["GE", "Siemens"][i % 2],
                          "protocol_name": f"protocol {i % 4}", "body_part_examined": ["CHEST", None][i % 2],
                          "rows": [512, 256][i % 2], "columns": 512, "pixel_spacing": [0.5 + i / 100, 0.5],
                          "slice_thickness": 1.0 + (i % 5)})
        pixels.append({**stamp, "path": path, "series_instance_uid": series, "thumbnail_png": thumbnail(i)})
        clusters.append({"path": path, "cluster": i % 3, "map_x": math.cos(i) * (1 + i % 3),
                         "map_y": math.sin(i) * (1 + i % 3), **stamp})
        decision, reasons, excluded = "include", [], []
        if i % 5 == 0:
            decision, reasons, excluded = "exclude", ["BLURRY"], ["BLURRY"]
        elif i // 6 == 9:
            decision, reasons, excluded = "exclude", ["TOO_FEW_SLICES"], ["TOO_FEW_SLICES"]
        elif i % 7 == 0:
            decision, reasons = "review", ["NEAR_DUPLICATE"]
        evidence = [{"code": c, "severity": "exclude" if c in excluded else "review",
                     "scope": "series" if c == "TOO_FEW_SLICES" else "instance",
                     "source": "test", "score": 1.0, "threshold": 0.5, "detail": None} for c in reasons]
        inclusion.append({**stamp, "path": path, "series_instance_uid": series, "site": sites[i % 3],
                          "modality": modality, "decision": decision, "reasons": reasons,
                          "excluded_by": excluded, "evidence": evidence,
                          "review_priority": None if decision == "include" else 0.5})
    errors = [{**stamp, "path": f"file:///delivery/north/bad{i}.dcm", "site": "north", "size_bytes": 10,
               "error_code": "NOT_DICOM"} for i in range(3)]
    inclusion += [{**stamp, "path": e["path"], "site": "north", "decision": "exclude", "reasons": ["NOT_DICOM"],
                   "excluded_by": ["NOT_DICOM"], "evidence": []} for e in errors]
    series = [{**stamp, "series_instance_uid": "1.2.9", "site": "north", "mip_png": thumbnail(99, 96)}]
    queue = [{**stamp, **{k: r[k] for k in ("path", "site", "modality", "decision", "reasons")},
              "queue_rank": rank, "review_priority": 1.0 - rank / 10, "thumbnail_png": thumbnail(rank)}
             for rank, r in enumerate((r for r in inclusion if r["decision"] == "review"), start=1)]
    tables = {"instances": (INSTANCES, instances), "ingest_errors": (INGEST_ERRORS, errors),
              "pixel_stats": (PIXEL_STATS, pixels), "series": (SERIES, series), "clusters": (CLUSTERS, clusters),
              "inclusion": (INCLUSION, inclusion), "review_queue": (REVIEW_QUEUE, queue)}
    store = TableStore(spark, output)
    for name in names:
        schema, rows = tables[name]
        store.write(rows_of(spark, schema, rows), name, mode="overwrite")


ALL_TABLES = {"instances", "ingest_errors", "pixel_stats", "series", "clusters", "inclusion", "review_queue"}


def context(output: str, *overrides: str) -> RunContext:
    settings = load_settings(overrides=[f"output={output}", "mlflow.enabled=false", *overrides])
    return RunContext(settings=settings, run_id="report-test", secret=SECRET.encode())


@pytest.fixture(scope="module")
def handmade(spark, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("report-handmade") / "out")
    write_tables(spark, output, ALL_TABLES)
    return output


def test_report_on_every_table(handmade, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-print-me-1234")
    said = []
    result = report.run(context(handmade, "report.gallery_per_reason=3", "report.map_points=40",
                                "storage.options={token: tok-secret-99}"), Tracker(False), say=said.append)
    assert result["path"] == os.path.join(handmade, "report", "triage-report.html")
    assert result["bytes"] == os.path.getsize(result["path"]) and result["seconds"] >= 0
    assert said and result["path"] in said[0]
    page = open(result["path"], encoding="utf-8").read()
    assert "do-not-print-me-1234" not in page and "tok-secret-99" not in page
    assert "&lt;script&gt;window.injected" in page
    seen = open_in_browser(result["path"])
    # 3 BLURRY + 3 TOO_FEW_SLICES (MIP) thumbnails + the review queue; NOT_DICOM has no image
    assert_renders(seen, images=6 + 3, map_points=2 * 40)
    text = seen["text"]
    for expected in ("BLURRY", "TOO_FEW_SLICES", "NOT_DICOM", "Review queue", "40 of 60 embedded instances",
                     "no image", HOSTILE_SITE):
        assert expected in text, expected


def test_report_samples_are_capped(handmade):
    small = report.run(context(handmade, "report.gallery_per_reason=1", "report.map_points=10",
                               "report.review_thumbnails=1", "report.path=" + handmade + "/small.html"),
                       Tracker(False), say=lambda _: None)
    page = open(small["path"], encoding="utf-8").read()
    assert page.count("<img ") == 3  # one per imaged reason, one of the queue
    assert page.count("<circle") == 2 * 10


def test_report_says_what_is_missing(spark, tmp_path):
    output = str(tmp_path / "out")
    write_tables(spark, output, {"instances", "ingest_errors"})  # as after `triage ingest`
    result = report.run(context(output), Tracker(False), say=lambda _: None)
    seen = open_in_browser(result["path"])
    assert seen["errors"] == [] and seen["visible"] == dict.fromkeys(SECTIONS, True)
    assert seen["charts"] >= 5 and seen["images"] == []
    text = seen["text"]
    assert "triage neighbors" in text and "triage curate" in text
    assert "Not available" in text and "Modality" in text


def test_report_to_s3(spark, handmade, s3_server):
    import s3fs

    bucket = s3_server.create_bucket("report-out")
    uri = f"s3://{bucket}/runs/triage-report.html"
    options = json.dumps({"endpoint_url": s3_server.endpoint_url})
    result = report.run(context(handmade, f"report.path={uri}", f"storage.options={options}"),
                        Tracker(False), say=lambda _: None)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server.endpoint_url}, skip_instance_cache=True)
    assert result["path"] == uri and fs.size(uri) == result["bytes"]
    assert fs.cat_file(uri).startswith(b"<!DOCTYPE html>")


# ---------------------------------------------------------------- the demo delivery


def run_report(output, args: list[str]) -> str:
    """`triage report` on a pipeline's output, with MLflow on: (MLflow client, the run's id)."""
    from dicom_triage.jobs.cli import main as triage

    settings = load_settings(overrides=[f"output={output}"])
    assert triage(["report", *args]) == 0
    import mlflow
    client = mlflow.MlflowClient(tracking_uri(settings))
    experiment = client.get_experiment_by_name(settings.mlflow.experiment).experiment_id
    runs = client.search_runs([experiment], "tags.`triage.command` = 'report'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return client, runs[0].info.run_id


def test_report_on_the_demo_pipeline(full_pipeline, monkeypatch):
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", SECRET)
    client, run_id = run_report(full_pipeline.output, full_pipeline.args)
    path = os.path.join(full_pipeline.output, "report", "triage-report.html")
    assert [a.path for a in client.list_artifacts(run_id, "report")] == ["report/triage-report.html"]
    assert os.path.getsize(path) < 20e6
    seen = open_in_browser(path)
    assert_renders(seen, images=5, map_points=20)
    for expected in ("EXACT_DUPLICATE", "NOT_DICOM", "Review queue", "site_a"):
        assert expected in seen["text"], expected


def test_the_summary_names_the_command_as_it_can_be_typed(tmp_path, monkeypatch):
    """After `make demo` the venv is not activated: `triage` is .venv/bin/triage."""
    from dicom_triage.jobs.summary import command_name

    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    script = venv_bin / "triage"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert command_name() == ".venv/bin/triage"
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert command_name() == "triage"
    monkeypatch.setattr("sys.argv", ["/somewhere/jobs/__main__.py", "run"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert command_name() == "python -m dicom_triage.jobs"
