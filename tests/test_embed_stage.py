"""Embed and anatomy on the demo delivery with a real local Spark session and a
real MLflow store: vectors, the registered model, and the anatomy findings
against the generator's ground truth."""
from __future__ import annotations

import csv
from collections import defaultdict

import mlflow
import numpy as np
import pandas as pd
import pytest

from dicom_triage.jobs.cli import main as triage

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def pipeline(demo_pipeline):
    p = demo_pipeline
    return p.delivery, p.output, p.store, p.args


def truth(delivery) -> dict[str, dict]:
    with open(delivery / "_ground_truth.csv", newline="") as handle:
        return {r["path"]: r for r in csv.DictReader(handle) if not r["ingest_error"]}


def test_one_normalised_vector_per_decodable_instance(pipeline):
    _, _, store, _ = pipeline
    embeddings = store.read("embeddings")
    decodable = store.read("pixel_stats").filter("pixel_error IS NULL").count()
    assert embeddings.count() == decodable
    rows = embeddings.filter("embedding IS NOT NULL").limit(20).collect()
    for row in rows:
        vector = np.asarray(row.embedding)
        assert vector.shape == (1280,) and abs(np.linalg.norm(vector) - 1) < 1e-4
        assert row.encoder.startswith("mobilenetv2-imagenet@")


def test_model_is_registered_with_metrics(pipeline):
    _, output, _, _ = pipeline
    mlflow.set_tracking_uri(f"sqlite:///{output}/_mlflow/mlflow.db")
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name = 'dicom-triage-anatomy'")
    assert versions, "the anatomy model is registered"
    run = client.get_run(versions[0].run_id)
    assert run.data.metrics["anatomy.accuracy"] > 0.8
    assert "anatomy.recall.head" in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "anatomy")]
    assert "anatomy/confusion_matrix.json" in artifacts
    # loadable by any MLflow client, and it predicts: one probability per region for each embedding
    model = mlflow.pyfunc.load_model(f"models:/dicom-triage-anatomy/{versions[0].version}")
    store = pipeline[2]
    vectors = [row.embedding for row in store.read("embeddings").where("embedding IS NOT NULL").limit(5).collect()]
    probabilities = model.predict(pd.DataFrame({"embedding": vectors}))
    assert len(probabilities) == 5 and "head" in probabilities.columns
    assert np.allclose(probabilities.sum(axis=1), 1.0) and ((probabilities >= 0) & (probabilities <= 1)).all().all()


def test_anatomy_findings_against_ground_truth(pipeline):
    delivery, _, store, _ = pipeline
    expected_by_path = {p: set(filter(None, r["reasons"].split(";"))) for p, r in truth(delivery).items()}
    rows = (store.read("anatomy").join(store.read("instances").select("path", "relative_path"), "path")
            .select("relative_path", "findings.code").collect())
    found = defaultdict(set)
    for row in rows:
        found[row.relative_path] |= set(row.code)
    # the content check and the region model (header rules are curate's); the
    # demo's one 64 x 64 brain MR is judged foreign (tests/test_curate_stage.py)
    floors = {"ANATOMY_HEADER_MISMATCH": (1.0, 1.0), "IRRELEVANT_CONTENT": (1.0, 0.6)}
    report, failures = [], []
    for code, (recall_floor, precision_floor) in floors.items():
        expected = {p for p, codes in expected_by_path.items() if code in codes}
        got = {p for p, codes in found.items() if code in codes}
        recall = len(expected & got) / len(expected)
        precision = len(expected & got) / len(got) if got else 0.0
        report.append(f"{code:24s} expected {len(expected)} found {len(got)} "
                      f"recall {recall:.2f} precision {precision:.2f}")
        if recall < recall_floor or precision < precision_floor:
            failures.append(code)
    print("\n" + "\n".join(report))
    assert not failures, failures


def test_uncertainty_columns(pipeline):
    _, _, store, _ = pipeline
    row = store.read("anatomy").first()
    assert 0 <= row.entropy <= 1 and 0 <= row.margin <= 1
    assert abs(row.least_confidence - (1 - row.confidence)) < 1e-9
    assert abs(sum(row.probabilities.values()) - 1) < 1e-6
    assert row.model.startswith("models:/dicom-triage-anatomy/")


def test_train_anatomy_with_verified_labels_and_clear_errors(pipeline, tmp_path, capsys):
    delivery, _, store, args = pipeline
    labels = tmp_path / "labels.csv"
    rows = [(r["sop_instance_uid"], r["true_region"]) for r in truth(delivery).values()
            if r["true_region"] in ("head", "chest") and r["sop_instance_uid"]]
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sop_instance_uid", "region"])
        writer.writerows(rows)
        writer.writerow([rows[0][0], "pelvis"])  # a class with a single label
    assert triage(["train-anatomy", *args, "--set", f"anatomy.labels={labels}"]) == 0
    out = capsys.readouterr().out
    assert "verified labels" in out and "left out (too few labels): pelvis 1" in out
    assert triage(["train-anatomy", *args, "--set", f"anatomy.labels={labels}",
                   "--set", "anatomy.ignore_rare_classes=false"]) == 2
    error = capsys.readouterr().err
    assert "'pelvis' (1)" in error and "anatomy.min_labels_per_class" in error
    assert triage(["train-anatomy", *args, "--set", f"anatomy.labels={tmp_path / 'missing.csv'}"]) == 2
    assert "anatomy.labels" in capsys.readouterr().err
