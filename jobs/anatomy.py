"""Anatomy stage: does each image show what the delivery is expected to hold?

Reads `instances` and `embeddings` (and `pixel_stats` when present); writes
`anatomy`, one row per embedded instance: the region its header names, whether
the header claims expected content, the content check's score and fence
(udfs/relevance.py) and, when a region model is at hand, its prediction, its
uncertainty and the model's findings. `triage train-anatomy` trains and
registers a region model.

The stage never stops the run for want of a model. The region model is the
configured one (`anatomy.model_uri`), else the registry's latest, else one
trained now from the labels; when none can be had (a delivery of one region
has nothing to tell apart) the stage says why in `run_notes` and the content
check and the header rules (curate) still judge relevance.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window, functions as F
from pyspark.sql.types import BooleanType, StringType, StructField, StructType

from dicom_triage.jobs.config import ConfigError
from dicom_triage.jobs.progress import counts_text
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.schemas.embedding import ANATOMY
from dicom_triage.udfs.relevance import ACQUISITION_COLUMNS, PIXEL_DEFECTS

STAGE = "anatomy"
ANATOMY_TABLE = "anatomy"
MODEL_ARTIFACT = "anatomy_model"
HEADER_TEXT = ["body_part_examined", "study_description", "series_description", "protocol_name"]
HEADER_CLAIM = StructType([StructField("header_region", StringType()),
                           StructField("claims_expected", BooleanType())])


def header_claim_udf(expected_modalities: list[str], expected_regions: list[str]):
    """The series' region and whether the header claims expected content; an
    image whose acquisition attributes contradict its Modality claims nothing
    (curate reports it from the header: udfs.relevance.foreign_acquisition)."""
    @F.pandas_udf(HEADER_CLAIM)
    def claim(modality: pd.Series, body_part: pd.Series, study: pd.Series, series: pd.Series,
              protocol: pd.Series, *acquisition: pd.Series) -> pd.DataFrame:
        from dicom_triage.udfs.relevance import claims_expected, foreign_acquisition, series_region

        return pd.DataFrame({
            "header_region": [series_region(b, d, p) for b, d, p in zip(body_part, series, protocol)],
            "claims_expected": [claims_expected(m, b, d, p, expected_modalities, expected_regions)
                                and not foreign_acquisition(m, *a)
                                for m, b, d, p, *a in zip(modality, body_part, series, protocol, *acquisition)]})
    return claim


@F.pandas_udf(StringType())
def weak_label_udf(body_part: pd.Series, study: pd.Series, series: pd.Series, protocol: pd.Series) -> pd.Series:
    """The region the headers name, the study description included (udfs.anatomy.header_region)."""
    from dicom_triage.udfs.anatomy import header_region
    return pd.Series([header_region(b, s, d, p) for b, s, d, p in zip(body_part, study, series, protocol)])


def with_header_claim(instances: DataFrame, settings) -> DataFrame:
    from dicom_triage.udfs.relevance import normalised_regions

    modalities = [m.upper() for m in settings.expect.modalities]
    claim = header_claim_udf(modalities, normalised_regions(settings.anatomy.expected_regions))(
        F.col("modality"), *[F.col(c) for c in HEADER_TEXT], *[F.col(c) for c in ACQUISITION_COLUMNS])
    return (instances.withColumn("_claim", claim)
            .withColumn("header_region", F.col("_claim.header_region"))
            .withColumn("claims_expected", F.col("_claim.claims_expected")).drop("_claim"))


# -- the stage --------------------------------------------------------------------

def run(ctx: RunContext, tracker, say=print) -> dict:
    started = time.monotonic()
    store, settings = ctx.store, ctx.settings
    for table in ("instances", "embeddings"):
        if not store.exists(table):
            ctx.note(STAGE, "missing_table", f"skipped: no `{table}` table (did the earlier stage run?); "
                     "curate judges relevance from the headers alone", say=say)
            return {}
    rows = embedded_rows(ctx)
    reference = content_reference(ctx, rows)
    content = settings.anatomy.content
    if len(reference["groups"]) < content.min_reference:
        ctx.note(STAGE, "content_check", f"content check not run: {len(reference['groups'])} images claim "
                 f"the expected content, fewer than anatomy.content.min_reference ({content.min_reference})",
                 say=say)
        reference = None
    model, uri = region_model(ctx, tracker, say)
    scored = score(ctx, rows, reference, model, uri).persist()
    try:
        table = with_findings(scored, settings, checked=reference is not None)
        store.write(ctx.stamp(table, ANATOMY), ANATOMY_TABLE, mode="overwrite")
    finally:
        scored.unpersist()
    counts = {r.code: r["count"] for r in store.read(ANATOMY_TABLE)
              .select(F.explode("findings.code").alias("code")).groupBy("code").count().collect()}
    say(f"anatomy: wrote {ANATOMY_TABLE} ({time.monotonic() - started:.1f} s); findings: {counts_text(counts) or 'none'}")
    counts = {f"anatomy.{code}": n for code, n in counts.items()}
    counts["seconds"] = round(time.monotonic() - started, 2)
    tracker.metrics({k if k.startswith("anatomy.") else f"anatomy.{k}": v for k, v in counts.items()})
    return counts


def embedded_rows(ctx: RunContext) -> DataFrame:
    """Embedded instances with their header claim and whether something other
    than their content explains how they look (`explained_looks`)."""
    store = ctx.store
    instances = store.read("instances").select("path", "modality", "image_type", "burned_in_annotation",
                                               *HEADER_TEXT, *ACQUISITION_COLUMNS)
    headers = with_header_claim(instances, ctx.settings)
    rows = (store.read("embeddings").filter(F.col("embedding").isNotNull())
            .select("path", "sop_instance_uid", "series_instance_uid", "site", "embedding")
            .join(headers.select("path", "modality", "header_region", "claims_expected"), "path", "left")
            .join(explained_looks(store, instances), "path", "left"))
    return (rows.withColumn("looks_explained", F.coalesce("explained", F.lit(False))).drop("explained")
            .withColumn("claims_expected", F.coalesce("claims_expected", F.lit(False))))


def explained_looks(store, instances: DataFrame) -> DataFrame:
    """path, explained: whether something other than its content explains why
    an image looks unlike its peers, so that relevance is not judged on its
    looks: a pixel finding of PIXEL_DEFECTS, a localizer series (a scout looks
    like a projection radiograph, whatever its series claims), or a display
    capture (a secondary image with text burned in, by its header or pixels:
    a viewer's screen save; its overlays and windowing set its distance, and
    it is reported as BURNED_IN_ANNOTATION). `instances` has path, image_type
    and burned_in_annotation."""
    header_text = F.upper(F.coalesce("burned_in_annotation", F.lit(""))) == "YES"
    secondary = F.coalesce(F.array_contains("image_type", "SECONDARY"), F.lit(False))
    rows = instances.select("path", secondary.alias("_secondary"), header_text.alias("_text"))
    defect, text = F.lit(False), F.col("_text")
    if store.exists("pixel_stats"):
        pixel = store.read("pixel_stats").select(
            "path", "series_instance_uid",
            F.exists("findings", lambda f: f["code"].isin(*PIXEL_DEFECTS)).alias("_defect"),
            F.exists("findings", lambda f: f["code"] == "BURNED_IN_ANNOTATION").alias("_pixel_text"))
        if store.exists("series"):
            scouts = (store.read("series").filter(F.exists("findings", lambda f: f["code"] == "LOCALIZER"))
                      .select("series_instance_uid", F.lit(True).alias("_scout")))
            pixel = pixel.join(scouts, "series_instance_uid", "left").withColumn(
                "_defect", F.col("_defect") | F.coalesce("_scout", F.lit(False)))
        rows = rows.join(pixel.select("path", "_defect", "_pixel_text"), "path", "left")
        defect = F.coalesce(F.col("_defect"), F.lit(False))
        text = text | F.coalesce(F.col("_pixel_text"), F.lit(False))
    return rows.select("path", (defect | (F.col("_secondary") & text)).alias("explained"))


def content_reference(ctx: RunContext, rows: DataFrame) -> dict:
    """A bounded sample of the images that claim the expected content, spread
    evenly over sites and claimed kinds (modality, region; each stratum's
    share chosen by a seeded hash of the path, so the same tables give the
    same sample): {vectors, groups (series), modality, region}."""
    size = ctx.settings.anatomy.content.reference_size
    strata = ["site", "modality", "header_region"]
    candidates = rows.filter(F.col("claims_expected") & ~F.col("looks_explained"))
    count = max(1, candidates.select(*strata).distinct().count())
    chosen = (candidates.withColumn("_rank", F.row_number().over(
        Window.partitionBy(*strata).orderBy(F.xxhash64(F.lit(11), "path"), "path")))
        .filter(F.col("_rank") <= int(np.ceil(size / count)))
        .select("path", F.coalesce("series_instance_uid", "path").alias("group"), "modality",
                "header_region", "embedding")
        .toPandas().sort_values("path", kind="stable"))
    vectors = (np.stack(chosen["embedding"].to_numpy()).astype(np.float32) if len(chosen)
               else np.zeros((0, 1), dtype=np.float32))
    return {"vectors": vectors, "groups": chosen["group"].astype(str).to_numpy(dtype=object),
            "modality": chosen["modality"].to_numpy(dtype=object),
            "region": chosen["header_region"].to_numpy(dtype=object)}


def score(ctx: RunContext, rows: DataFrame, reference: dict | None, model, uri: str | None) -> DataFrame:
    """Per image: the content check's score and, with a model, the prediction,
    its uncertainty and the model's findings (for images that claim expected content)."""
    settings = ctx.settings.anatomy
    k = settings.content.k
    expected = list(settings.expected_regions)
    min_confidence = settings.min_confidence
    out_schema = StructType([f for f in ANATOMY.fields if f.name not in ("irrelevance_threshold",
                                                                          "fence_group", "findings",
                                                                          "run_id", "computed_at")]
                            + [StructField("looks_explained", BooleanType()),
                               StructField("model_findings", ANATOMY["findings"].dataType)])

    def predict(batches):
        from dicom_triage.udfs.anatomy import model_findings, predict_proba, uncertainty
        from dicom_triage.udfs.relevance import content_scores, l2_normalise

        for batch in batches:
            if batch.empty:
                continue
            vectors = l2_normalise(np.stack(batch["embedding"].to_numpy()))
            out = batch.drop(columns=["embedding"]).copy()
            groups = batch["series_instance_uid"].fillna(batch["path"]).astype(str).to_numpy(dtype=object)
            if reference is None:
                out["irrelevance"], out["resembles"], out["resembles_distance"] = np.nan, None, np.nan
            else:
                content = content_scores(vectors, groups, batch["modality"].to_numpy(dtype=object),
                                         batch["header_region"].to_numpy(dtype=object), reference, k)
                out["irrelevance"] = content["score"].astype(float)
                out["resembles"] = content["resembles"]
                out["resembles_distance"] = content["resembles_distance"].astype(float)
            if model is None:
                for key in ("predicted_region", "probabilities", "confidence", "least_confidence", "margin",
                            "entropy", "model"):
                    out[key] = None
                out["model_findings"] = [[] for _ in range(len(out))]
            else:
                probs = predict_proba(model, vectors, keys=list(batch["path"]))
                scores = uncertainty(probs)
                classes = list(model.classes)
                out["predicted_region"] = [classes[i] for i in probs.argmax(axis=1)]
                out["probabilities"] = [dict(zip(classes, map(float, p))) for p in probs]
                for key in ("confidence", "least_confidence", "margin", "entropy"):
                    out[key] = scores[key].astype(float)
                out["model"] = uri
                out["model_findings"] = [
                    model_findings(p, c, h if isinstance(h, str) else None, expected, min_confidence,
                                   classes=classes) if claims and not defect else []
                    for p, c, h, claims, defect in zip(out["predicted_region"], out["confidence"],
                                                       out["header_region"], out["claims_expected"],
                                                       out["looks_explained"])]
            yield out[out_schema.fieldNames()]

    return rows.mapInPandas(predict, out_schema)


def with_findings(scored: DataFrame, settings, checked: bool) -> DataFrame:
    """Fences and findings. An image that claims expected content and lies
    beyond its group's fence is ANATOMY_HEADER_MISMATCH when it sits within the
    fence of another region's images (`resembles`: mislabelled), else
    IRRELEVANT_CONTENT; an image with nothing comparable of its own kind that
    sits within another region's fence is ANATOMY_HEADER_MISMATCH too. Either
    is reported alone (the predicted anatomy of a photograph means nothing);
    otherwise the region model's findings stand."""
    content = settings.anatomy.content
    nan_to_null = {c: F.when(~F.isnan(c), F.col(c)) for c in ("irrelevance", "resembles_distance")}
    scored = with_series_agreement(scored.withColumns(nan_to_null))   # NaN (nothing comparable): not judged
    if not checked:
        return (scored.withColumn("irrelevance_threshold", F.lit(None).cast("double"))
                .withColumn("fence_group", F.lit(None).cast("string"))
                .withColumn("findings", F.col("model_findings")))
    judgeable = F.col("claims_expected") & ~F.col("looks_explained")
    judged = judgeable & F.col("irrelevance").isNotNull()
    table = with_fences(scored, judged, list(content.group_by), content.min_group_size, content.iqr_fence,
                        content.min_distance)
    # each named region's fence over the delivery (all modalities), for `resembles`
    kinds = (scored.filter(judged & F.col("header_region").isNotNull())
             .groupBy(F.col("header_region").alias("resembles"))
             .agg(F.percentile_approx("irrelevance", [0.25, 0.75], 10000).alias("_kq")))
    kind_fence = F.greatest(F.lit(float(content.min_distance)),
                            F.col("_kq")[1] + F.lit(float(content.iqr_fence)) * (F.col("_kq")[1] - F.col("_kq")[0]))
    table = (table.join(F.broadcast(kinds), "resembles", "left")
             .withColumn("_kind_fence", kind_fence).drop("_kq"))
    unlike = judged & (F.col("irrelevance") > F.col("irrelevance_threshold"))
    like_other = judgeable & (F.col("resembles_distance") <= F.col("_kind_fence"))
    mismatch = F.struct(
        F.lit("ANATOMY_HEADER_MISMATCH").alias("code"), F.col("resembles_distance").alias("score"),
        F.col("_kind_fence").alias("threshold"),
        F.format_string("the header names region '%s', but the image is like the delivery's images of "
                        "region '%s' (mean cosine distance %.3f, fence %.3f)%s", F.col("header_region"),
                        F.col("resembles"), F.col("resembles_distance"), F.col("_kind_fence"),
                        F.when(F.col("irrelevance").isNotNull(), F.format_string(
                            " and unlike those of its own kind (%.3f, fence %.3f)", F.col("irrelevance"),
                            F.col("irrelevance_threshold"))).otherwise(F.lit(""))).alias("detail"))
    irrelevant = F.struct(
        F.lit("IRRELEVANT_CONTENT").alias("code"), F.col("irrelevance").alias("score"),
        F.col("irrelevance_threshold").alias("threshold"),
        F.format_string("mean cosine distance %.3f to the nearest images of the delivery's expected content "
                        "(other series) is above the fence %.3f of %s", F.col("irrelevance"),
                        F.col("irrelevance_threshold"), F.col("fence_group")).alias("detail"))
    findings = (F.when(like_other & (unlike | F.col("irrelevance").isNull()), F.array(mismatch))
                .when(unlike, F.array(irrelevant)).otherwise(F.col("model_findings")))
    return table.withColumn("findings", findings).drop("_kind_fence")


def with_series_agreement(scored: DataFrame) -> DataFrame:
    """The region model's findings stand for an image only when at least half
    of its series is predicted the same region. The header names one region
    for the whole series, so a header/model contradiction is the series';
    one confident slice alone (a skull base taken for the neck) is the
    model's error. Measured on a CT delivery of heads and chests: three such
    slices in head series were flagged, none of them mislabelled."""
    series = F.coalesce("series_instance_uid", "path")
    same = Window.partitionBy(series, "predicted_region")
    share = F.count(F.lit(1)).over(same) / F.count(F.lit(1)).over(Window.partitionBy(series))
    agreed = F.col("predicted_region").isNull() | (share >= 0.5)
    return scored.withColumn("model_findings", F.when(agreed, F.col("model_findings"))
                             .otherwise(F.array().cast(scored.schema["model_findings"].dataType)))


def with_fences(scored: DataFrame, judged: Column, group_by: list[str], min_group: int, iqr_fence: float,
                floor: float) -> DataFrame:
    """`irrelevance_threshold` and `fence_group` for every row: Tukey's fence of
    the judged scores of its group (`group_by`), else of its first grouping
    column alone, else of the delivery, whichever first has `min_group` judged
    images; never below `floor`."""
    levels = [group_by[:n] for n in range(len(group_by), -1, -1)]
    levels = [cols for i, cols in enumerate(levels) if cols not in levels[:i]]
    population = scored.filter(judged)
    out, fences, names = scored, [], []
    for i, cols in enumerate(levels):
        def key(c):
            return F.coalesce(F.col(c).cast("string"), F.lit(""))
        stats = population.groupBy(*[key(c).alias(f"_k{i}_{c}") for c in cols]).agg(
            F.percentile_approx("irrelevance", [0.25, 0.75], 10000).alias(f"_q{i}"),
            F.count("*").alias(f"_n{i}"))
        if cols:
            out = out.join(F.broadcast(stats), [key(c) == F.col(f"_k{i}_{c}") for c in cols], "left")
        else:
            out = out.crossJoin(F.broadcast(stats))
        q = F.col(f"_q{i}")
        fence = F.greatest(F.lit(float(floor)), q[1] + F.lit(float(iqr_fence)) * (q[1] - q[0]))
        name = (F.concat_ws(", ", *[F.concat(F.lit(f"{c} '"), key(c), F.lit("'")) for c in cols])
                if cols else F.lit("the delivery"))
        enough = F.coalesce(F.col(f"_n{i}"), F.lit(0)) >= min_group
        last = i == len(levels) - 1
        fences.append(fence if last else F.when(enough, fence))
        names.append(name if last else F.when(enough, name))
    drop = [c for c in out.columns if c[:2] in ("_k", "_q", "_n")]
    return (out.withColumn("irrelevance_threshold", F.coalesce(*fences).cast("double"))
            .withColumn("fence_group", F.coalesce(*names)).drop(*drop))


# -- the region model -------------------------------------------------------------

def region_model(ctx: RunContext, tracker, say=print):
    """(model, uri): the configured model, else the registry's latest, else one
    trained now; (None, None) with a note when there is none to be had."""
    from dicom_triage.udfs.anatomy import InsufficientLabels

    settings = ctx.settings.anatomy
    if settings.model_uri:
        try:
            return load_registered(settings.model_uri), settings.model_uri
        except Exception as exc:  # a model that cannot be loaded is a finding, not a crash
            ctx.note(STAGE, "region_model", f"no region predictions: anatomy.model_uri {settings.model_uri} "
                     f"could not be loaded ({type(exc).__name__}: {_short(exc)})", say=say)
            return None, None
    latest = latest_registered(ctx, tracker, say)
    if latest is not None:
        return latest
    say("anatomy: no region model registered yet; training one from the labels")
    try:
        model, uri = train(ctx, tracker, say)
    except InsufficientLabels as exc:
        reason = _short(exc).removeprefix("anatomy: ")
        ctx.note(STAGE, "region_model", f"no region model: {reason}. Relevance comes from the header rules "
                 "and the content check; for region predictions, train a model on a multi-region delivery "
                 "(`triage train-anatomy`) and set anatomy.model_uri", say=say)
        return None, None
    except ConfigError:
        raise
    except Exception as exc:
        ctx.note(STAGE, "region_model", f"no region predictions: training failed ({type(exc).__name__}: "
                 f"{_short(exc)})", level="error", say=say)
        return None, None
    return model, uri or "trained-in-run"


def latest_registered(ctx: RunContext, tracker, say):
    """(model, uri) of the registry's latest version, or None."""
    if not tracker.active:
        return None
    from mlflow import MlflowClient

    name = ctx.settings.anatomy.registered_model_name
    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}'")
    except Exception:  # no registry behind this tracking URI
        return None
    if not versions:
        return None
    uri = f"models:/{name}/{max(int(v.version) for v in versions)}"
    try:
        model = load_registered(uri)
    except Exception as exc:
        ctx.note(STAGE, "region_model", f"registered model {uri} could not be loaded "
                 f"({type(exc).__name__}: {_short(exc)}); training a new one", say=say)
        return None
    say(f"anatomy: using registered model {uri}")
    return model, uri


def load_registered(uri: str):
    """The model behind an MLflow model URI (models:/NAME/VERSION, runs:/..., a path)."""
    import mlflow
    from dicom_triage.udfs.anatomy import find_bundle, load_model

    return load_model(find_bundle(mlflow.artifacts.download_artifacts(artifact_uri=uri)))


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- labels and training ----------------------------------------------------------

def labels_frame(ctx: RunContext) -> tuple[DataFrame, str]:
    """(DataFrame of path, region; label source)."""
    source = ctx.settings.anatomy.labels
    instances = ctx.store.read("instances")
    if not source:
        weak = instances.select("path", weak_label_udf(*[F.col(c) for c in HEADER_TEXT]).alias("region"))
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
    from dicom_triage.jobs.storage import open_url
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


def train(ctx: RunContext, tracker, say=print):
    """Train, evaluate on a hold-out, log to MLflow and register. Returns
    (model, model_uri); raises InsufficientLabels when the labels cannot train one."""
    from dicom_triage.udfs.anatomy import train_region_classifier

    settings = ctx.settings.anatomy
    if not ctx.store.exists("embeddings"):
        raise ConfigError("setting 'output': no `embeddings` table yet; run `triage embed` first")
    labels, source = labels_frame(ctx)
    sample = training_sample(labels, ctx.store.read("embeddings"), settings.max_per_class)
    counts = sample["region"].value_counts().to_dict()
    say(f"train-anatomy: {len(sample)} {source} labels: {counts_text(counts)}")
    model = train_region_classifier(
        np.stack(sample["embedding"].to_numpy()) if len(sample) else np.zeros((0, 1)),
        list(sample["region"]), min_per_class=settings.min_labels_per_class,
        ignore_rare_classes=settings.ignore_rare_classes, test_fraction=settings.holdout_fraction,
        max_per_class=settings.max_per_class, label_source=source,
        # slices of one series stay on one side of the hold-out split
        groups=list(sample["series_instance_uid"].fillna("")), keys=list(sample["path"]))
    metrics = model.metrics
    say(f"train-anatomy: hold-out accuracy {metrics['accuracy']:.3f}, balanced {metrics['balanced_accuracy']:.3f}; "
        f"classes {list(model.classes)}" + (f", left out (too few labels): {counts_text(model.dropped_classes)}"
                                             if model.dropped_classes else ""))
    uri = log_model(ctx, tracker, model)
    if uri:
        say(f"train-anatomy: registered as {uri}")
    return model, uri


def log_model(ctx: RunContext, tracker, model) -> str | None:
    """Metrics, confusion matrix and the model itself to MLflow; register it."""
    import tempfile

    from dicom_triage.udfs.anatomy import save_model

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
    from dicom_triage.jobs.anatomy_pyfunc import AnatomyModel

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
