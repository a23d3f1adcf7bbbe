"""`triage annotate agreement` on real local Spark and Delta tables: the four
tables from a simulated `labels` table, the same figures as the pure
functions, and the message when there are no labels yet."""
from __future__ import annotations

import datetime as dt

import pytest

from dicom_triage.jobs import annotate_agreement
from dicom_triage.jobs.config import ConfigError, load_settings
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.jobs.tables import TableStore
from dicom_triage.jobs.tracking import Tracker
from dicom_triage.schemas.agreement import ANNOTATION_AGREEMENT, ANNOTATOR_AGREEMENT, ANNOTATOR_DRIFT, CONSENSUS
from dicom_triage.schemas.annotation import LABELS
from tests.test_annotator_drift import drift_rows, simulate_labels

pytestmark = pytest.mark.spark

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def context(output: str, *overrides: str) -> RunContext:
    settings = load_settings(overrides=[f"output={output}", "mlflow.enabled=false",
                                        "annotate.drift.worst_items=5", *overrides])
    return RunContext(settings=settings, run_id="agreement-test", secret=b"agreement-test-secret-0123456789")


def write_labels(spark, output: str, frame) -> None:
    rows = []
    for r in frame.to_dict("records"):
        rows.append(tuple({**r, "run_id": "import-1", "computed_at": NOW}.get(f.name) for f in LABELS.fields))
    TableStore(spark, output).write(spark.createDataFrame(rows, LABELS), "labels", mode="overwrite")


@pytest.fixture(scope="module")
def agreed(spark, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("agreement") / "out")
    labels = simulate_labels(batches=8, items=30)
    write_labels(spark, output, labels)
    said = []
    counts = annotate_agreement.run(context(output), Tracker(False), say=said.append)
    store = TableStore(spark, output)
    tables = {name: store.read(name).toPandas()
              for name in ("annotation_agreement", "annotator_agreement", "annotator_drift", "consensus")}
    return {"labels": labels, "counts": counts, "said": said, "tables": tables, "store": store}


def test_tables_and_schemas(agreed):
    store = agreed["store"]
    for name, schema in (("annotation_agreement", ANNOTATION_AGREEMENT), ("annotator_agreement", ANNOTATOR_AGREEMENT),
                         ("annotator_drift", ANNOTATOR_DRIFT), ("consensus", CONSENSUS)):
        assert store.read(name).columns == schema.fieldNames(), name
        assert (agreed["tables"][name]["run_id"] == "agreement-test").all()
    batches = agreed["tables"]["annotation_agreement"].sort_values("batch_id")
    assert batches["batch_id"].tolist() == list(range(8))
    assert (batches["n_items"] == 30).all() and (batches["n_annotators"] == 4).all()
    assert batches["fleiss_kappa"].between(0.3, 1).all() and batches["krippendorff_alpha"].between(0.3, 1).all()
    # the drifting annotator pulls agreement down batch after batch
    assert batches["fleiss_kappa"].iloc[-1] < batches["fleiss_kappa"].iloc[0]
    assert batches["mean_box_iou"].between(0.6, 1).all()
    pairs = agreed["tables"]["annotator_agreement"]
    assert len(pairs) == 8 * (6 + 4)  # 6 pairs and 4 annotators against the majority per batch
    assert set(pairs["level"]) == {"pair", "majority"}
    consensus = agreed["tables"]["consensus"]
    assert len(consensus) == 8 * 30 and consensus["path"].is_unique
    assert consensus["n_annotators"].eq(4).all()
    assert consensus["boxes"].map(len).ge(1).all()
    assert agreed["counts"]["batches"] == 8 and agreed["counts"]["flagged_annotators"] == 2
    assert "2 annotator(s) flagged" in agreed["said"][0]


def test_same_figures_as_the_pure_functions(agreed):
    drift = agreed["tables"]["annotator_drift"].sort_values(["annotator", "batch_id"]).reset_index(drop=True)
    expected = drift_rows(agreed["labels"]).sort_values(["annotator", "batch_id"]).reset_index(drop=True)
    for column in ("disagreement", "box_size_bias", "disagreement_slope", "box_size_bias_slope"):
        assert drift[column].tolist() == pytest.approx(expected[column].tolist()), column
    for column in ("annotator", "batch_id", "flagged", "over_fence", "latest", "n_items"):
        assert drift[column].tolist() == expected[column].tolist(), column
    flagged = drift[drift["flagged"] & drift["latest"]].set_index("annotator")
    assert sorted(flagged.index) == ["drifter", "small"]
    assert list(flagged.loc["drifter", "flag_reasons"])[0].startswith("DISAGREEMENT")
    worst = flagged.loc["drifter", "worst_items"]
    assert 0 < len(worst) <= 5 and all(w["path"].startswith("file:///delivery/b7/") for w in worst)


def test_without_labels_names_the_setting(spark, tmp_path):
    with pytest.raises(ConfigError, match=r"annotate\.labels.*triage annotate import"):
        annotate_agreement.run(context(str(tmp_path / "out")), Tracker(False), say=lambda _: None)


def test_report_shows_the_agreement_section(agreed, tmp_path):
    from dicom_triage.jobs import report

    output = agreed["store"].output
    result = report.run(context(output, f"report.path={tmp_path}/report.html"), Tracker(False), say=lambda _: None)
    page = open(result["path"], encoding="utf-8").read()
    section = page.split('<section id="agreement">', 1)[1].split("</section>", 1)[0]
    assert "Agreement per batch" in section and section.count("<svg") == 5
    assert "DISAGREEMENT" in section and "BOX_SIZE_BIAS" in section
    assert section.count("<h4>") == 2  # drifter and small, with their worst items
    assert 'id="overview"' in page and "Not available" in page  # the other sections still render
