"""Anatomy: train a region classifier on the embeddings (`triage train-anatomy`),
register it in MLflow, and infer the `anatomy` table with its findings.

Labels are a team's verified labels (setting `anatomy.labels`) or, when none
exist, weak labels from the headers (BodyPartExamined, descriptions). Only a
capped sample per class reaches the driver for training; inference runs on
the executors with the model shipped in the task closure.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window, functions as F
from pyspark.sql.types import StringType

from jobs.config import ConfigError
from jobs.runtime import RunContext
from schemas.embedding import ANATOMY

ANATOMY_TABLE = "anatomy"
MODEL_ARTIFACT = "anatomy_model"
HEADER_TEXT = ["body_part_examined", "study_description", "series_description", "protocol_name"]


@F.pandas_udf(StringType())
def header_region_udf(body_part: pd.Series, study: pd.Series, series: pd.Series,
                      protocol: pd.Series) -> pd.Series:
    from udfs.anatomy import header_region
    return pd.Series([header_region(b, s, d, p) for b, s, d, p in zip(body_part, study, series, protocol)])


def with_header_region(instances: DataFrame) -> DataFrame:
    return instances.withColumn("header_region", header_region_udf(*[F.col(c) for c in HEADER_TEXT]))


# -- labels -----------------------------------------------------------------------

def labels_frame(ctx: RunContext) -> tuple[DataFrame, str]:
    """(DataFrame of path, region; label source)."""
    source = ctx.settings.anatomy.labels
    instances = ctx.store.read("instances")
    if not source:
        weak = with_header_region(instances).select("path", F.col("header_region").alias("region"))
        return weak.filter(F.col("region").isNotNull()), "weak"
    if ctx.store.exists(source):
        labels = ctx.store.read(source)
    else:
        labels = ctx.spark.createDataFrame(_read_label_file(source, ctx.storage_options))
    if "region" not in labels.columns:
        raise ConfigError(f"setting 'anatomy.labels': {source} has no 'region' column")
    if "path" not in labels.columns:
        if "sop_instance_uid" not in labels.columns:
            raise ConfigError(f"setting 'anatomy.labels': {source} needs a 'path' or 'sop_instance_uid' column")
        labels = labels.join(instances.select("path", "sop_instance_uid"), "sop_instance_uid")
    return labels.select("path", F.lower(F.trim("region")).alias("region")).dropna(), "verified"


def _read_label_file(uri: str, storage_options: dict) -> pd.DataFrame:
    from jobs.storage import open_url
    try:
        with open_url(uri, "rb", storage_options) as handle:
            return pd.read_parquet(handle) if uri.endswith(".parquet") else pd.read_csv(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"setting 'anatomy.labels': cannot read {uri}: {exc}") from None


def training_sample(labels: DataFrame, embeddings: DataFrame, cap: int, seed: int = 0) -> pd.DataFrame:
    """At most `cap` labelled vectors per region, chosen by a seeded hash of the
    path in Spark and ordered by path, so the same tables train the same model
    whatever the partitioning."""
    vectors = embeddings.filter(F.col("embedding").isNotNull()).select("path", "series_instance_uid", "embedding")
    ranked = labels.join(vectors, "path").withColumn("_rank", F.row_number().over(
        Window.partitionBy("region").orderBy(F.xxhash64(F.lit(seed), "path"), "path")))
    return (ranked.filter(F.col("_rank") <= cap)
            .select("path", "region", "series_instance_uid", "embedding").toPandas()
            .sort_values("path", kind="stable").reset_index(drop=True))


# -- training ---------------------------------------------------------------------

def train(ctx: RunContext, tracker, say=print):
    """Train, evaluate on a hold-out, log to MLflow and register. Returns (model, model_uri)."""
    from udfs.anatomy import InsufficientLabels, train_region_classifier

    settings = ctx.settings.anatomy
    if not ctx.store.exists("embeddings"):
        raise ConfigError("setting 'output': no `embeddings` table yet; run `triage embed` first")
    labels, source = labels_frame(ctx)
    sample = training_sample(labels, ctx.store.read("embeddings"), settings.max_per_class)
    counts = sample["region"].value_counts().to_dict()
    say(f"train-anatomy: {len(sample)} {source} labels {counts}")
    try:
        model = train_region_classifier(
            np.stack(sample["embedding"].to_numpy()) if len(sample) else np.zeros((0, 1)),
            list(sample["region"]), min_per_class=settings.min_labels_per_class,
            ignore_rare_classes=settings.ignore_rare_classes, test_fraction=settings.holdout_fraction,
            max_per_class=settings.max_per_class, label_source=source,
            # slices of one series stay on one side of the hold-out split
            groups=list(sample["series_instance_uid"].fillna("")), keys=list(sample["path"]))
    except InsufficientLabels as exc:
        raise ConfigError(str(exc)) from None
    metrics = model.metrics
    say(f"train-anatomy: hold-out accuracy {metrics['accuracy']:.3f}, balanced {metrics['balanced_accuracy']:.3f}; "
        f"classes {list(model.classes)}" + (f", left out (too few labels): {model.dropped_classes}"
                                             if model.dropped_classes else ""))
    uri = log_model(ctx, tracker, model)
    return model, uri


def log_model(ctx: RunContext, tracker, model) -> str | None:
    """Metrics, confusion matrix and the model itself to MLflow; register it."""
    from udfs.anatomy import save_model

    if not tracker.active:
        return None
    import mlflow

    metrics = model.metrics
    flat = {"anatomy.accuracy": metrics["accuracy"], "anatomy.balanced_accuracy": metrics["balanced_accuracy"]}
    for region, values in metrics["per_class"].items():
        flat[f"anatomy.precision.{region}"] = values["precision"]
        flat[f"anatomy.recall.{region}"] = values["recall"]
    tracker.metrics(flat)
    mlflow.log_dict({"classes": list(metrics["confusion_matrix_labels"]),
                     "matrix": np.asarray(metrics["confusion_matrix"]).tolist()},
                    "anatomy/confusion_matrix.json")
    mlflow.log_dict(_jsonable(metrics), "anatomy/metrics.json")
    from jobs.anatomy_pyfunc import AnatomyModel

    with tempfile.TemporaryDirectory() as folder:
        save_model(model, folder)
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT, python_model=AnatomyModel(), artifacts={"bundle": folder},
            registered_model_name=ctx.settings.anatomy.registered_model_name)
    version = getattr(info, "registered_model_version", None)
    name = ctx.settings.anatomy.registered_model_name
    return f"models:/{name}/{version}" if version else info.model_uri


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def load_registered(uri: str):
    """The model bundle behind an MLflow model URI (downloaded, then loaded)."""
    import mlflow
    from udfs.anatomy import load_model

    folder = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    return load_model(os.path.join(folder, "artifacts", "bundle"))


def resolve_model(ctx: RunContext, tracker, say):
    """The configured model, else the latest registered version, else train now."""
    settings = ctx.settings.anatomy
    if settings.model_uri:
        return load_registered(settings.model_uri), settings.model_uri
    if tracker.active:
        from mlflow import MlflowClient
        try:
            versions = MlflowClient().search_model_versions(f"name = '{settings.registered_model_name}'")
        except Exception:  # no registry behind this tracking URI
            versions = []
        if versions:
            latest = max(versions, key=lambda v: int(v.version))
            uri = f"models:/{settings.registered_model_name}/{latest.version}"
            say(f"anatomy: using registered model {uri}")
            return load_registered(uri), uri
    say("anatomy: no trained model yet; training one now")
    model, uri = train(ctx, tracker, say)
    return model, uri or "trained-in-run"


# -- inference --------------------------------------------------------------------

def infer(ctx: RunContext, tracker, embeddings: DataFrame, say=print) -> dict:
    started = time.monotonic()
    settings = ctx.settings.anatomy
    model, uri = resolve_model(ctx, tracker, say)
    expected = list(settings.expected_regions)
    min_confidence = settings.mismatch_min_confidence
    run_id, computed_at = ctx.run_id, ctx.started_at
    headers = with_header_region(ctx.store.read("instances").select("path", *HEADER_TEXT)).select(
        "path", "header_region")
    rows = (embeddings.filter(F.col("embedding").isNotNull())
            .select("path", "sop_instance_uid", "series_instance_uid", "site", "modality", "embedding")
            .join(headers, "path", "left"))

    def predict(batches):
        from udfs.anatomy import anatomy_findings, irrelevance_score, predict_proba, uncertainty
        for batch in batches:
            if batch.empty:
                continue
            vectors = np.stack(batch["embedding"].to_numpy()).astype(np.float32)
            probs = predict_proba(model, vectors, keys=list(batch["path"]))
            scores = uncertainty(probs)
            irrelevance = irrelevance_score(model, vectors, groups=list(batch["series_instance_uid"].fillna("")))
            classes = list(model.classes)
            predicted = [classes[i] for i in probs.argmax(axis=1)]
            out = batch.drop(columns=["embedding"]).copy()
            out["predicted_region"] = predicted
            out["probabilities"] = [dict(zip(classes, map(float, p))) for p in probs]
            for key in ("confidence", "least_confidence", "margin", "entropy"):
                out[key] = scores[key].astype(float)
            out["irrelevance"] = irrelevance.astype(float)
            out["irrelevance_threshold"] = [model.threshold_for(p) for p in predicted]
            out["model"] = uri
            out["findings"] = [
                anatomy_findings(p, c, h if isinstance(h, str) else None, i, t, expected, min_confidence,
                                 classes=classes)
                for p, c, h, i, t in zip(predicted, out["confidence"], out["header_region"], out["irrelevance"],
                                         out["irrelevance_threshold"])]
            out["run_id"] = run_id
            out["computed_at"] = computed_at
            yield out[ANATOMY.fieldNames()]

    ctx.store.write(rows.mapInPandas(predict, ANATOMY), ANATOMY_TABLE, mode="overwrite")
    counts = {r.code: r["count"] for r in ctx.store.read(ANATOMY_TABLE)
              .select(F.explode("findings.code").alias("code")).groupBy("code").count().collect()}
    say(f"anatomy: wrote {ANATOMY_TABLE} ({time.monotonic() - started:.1f} s) findings {counts}")
    return {f"anatomy.{code}": n for code, n in counts.items()}
