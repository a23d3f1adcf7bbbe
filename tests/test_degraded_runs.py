"""A stage that fails or a table that is missing never takes the decisions
with it: curate, the review queue and the report work from whatever tables
exist and say what is missing (run_notes, the summary, the report). Real Spark,
real Delta tables: each case copies the demo output and removes a table."""
from __future__ import annotations

import shutil

import pytest

from dicom_triage.jobs.cli import main as triage
from dicom_triage.jobs.curate import CONTRIBUTIONS
from dicom_triage.jobs.tables import TableStore

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def secret():
    patch = pytest.MonkeyPatch()
    patch.setenv("TRIAGE_HMAC_SECRET", "degraded-runs-test-secret-0123456789")
    yield
    patch.undo()


def without(source, target, *tables):
    shutil.copytree(source, target)
    for table in tables:
        shutil.rmtree(target / table)
    return target


def notes_of(store, stage: str) -> str:
    return " ".join(r.message for r in store.read("run_notes").filter(f"stage = '{stage}'").collect())


@pytest.mark.parametrize("table", sorted(CONTRIBUTIONS))
def test_curate_decides_without_each_earlier_table(full_pipeline, tmp_path, secret, spark, table):
    output = without(full_pipeline.output, tmp_path / "out", table)
    listed = full_pipeline.store.read("inclusion").count()
    errors = full_pipeline.store.read("ingest_errors").count()
    assert triage(["curate", "--output", str(output), *full_pipeline.args[4:]]) == 0
    store = TableStore(spark, str(output))
    inclusion = store.read("inclusion")
    assert inclusion.count() == listed - (errors if table == "ingest_errors" else 0)
    assert store.read("review_queue").count() > 0
    assert f"decided without `{table}`" in notes_of(store, "curate")
    if table == "anatomy":
        # only the header's acquisition evidence says IRRELEVANT_CONTENT: no content check ran
        irrelevant = [e.detail for r in inclusion.select("evidence").collect() for e in r.evidence
                      if e.code == "IRRELEVANT_CONTENT"]
        assert all("acquisition attributes" in d or "PhotometricInterpretation" in d for d in irrelevant), \
            irrelevant
        # the header rules need no model: the demo's unexpected modalities and regions are still found
        assert inclusion.filter("array_contains(reasons, 'UNEXPECTED_ANATOMY')").count() > 0


def test_report_from_a_partial_output(full_pipeline, tmp_path, secret, spark):
    output = without(full_pipeline.output, tmp_path / "out", "anatomy", "clusters", "duplicates", "neighbors")
    assert triage(["curate", "--output", str(output), *full_pipeline.args[4:]]) == 0
    assert triage(["report", "--output", str(output), *full_pipeline.args[4:]]) == 0
    page = (output / "report" / "triage-report.html").read_text()
    assert "What ran" in page and "decided without" in page and "`anatomy`" in page


def test_a_failed_stage_leaves_the_decisions(full_pipeline, tmp_path, secret, spark, capsys):
    """`triage run` goes on after a stage fails: the later stages use what
    exists, the failure is a note and the exit code is 1."""
    delivery = tmp_path / "delivery"
    for path in sorted(full_pipeline.delivery.glob("site_a/pat_0001/**/*.dcm"))[:24]:
        target = delivery / path.relative_to(full_pipeline.delivery)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    output = tmp_path / "out"
    code = triage(["run", "--input", str(delivery), "--output", str(output), "--set", "clusters.map=pca",
                   "--set", f"embed.encoder=torchscript:{tmp_path / 'missing.pt'}"])
    printed = capsys.readouterr()
    assert code == 1
    store = TableStore(spark, str(output))
    assert store.read("inclusion").count() == 24
    assert "embed: failed" in printed.out and "missing.pt" in printed.out
    assert "anatomy: skipped: no `embeddings` table" in printed.out
    assert "neighbors: skipped" in printed.out
    notes = {(r.stage, r.level) for r in store.read("run_notes").collect()}
    assert ("embed", "error") in notes and ("curate", "info") in notes and ("report", "info") in notes
