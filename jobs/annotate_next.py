"""`triage annotate next`: what to label next, and what need not be labelled.

From the class probabilities of a predictions table (`annotate.next.predictions`,
default `anatomy`: a `path` and a `probabilities` map class -> p), over the
included instances that have no label yet (`labels`):

* `label_next`: uncertainty (`annotate.next.uncertainty`: least confidence,
  margin or normalised entropy; udfs/active_learning.py) computed in Spark;
  the `annotate.next.candidate_pool` most unsure instances with an embedding
  come to the driver (a bounded top-k), and k-center greedy on their
  embeddings picks `annotate.next.size` of them: the most unsure first, then
  always the candidate farthest from everything chosen, so the list covers
  different kinds of images instead of many near-copies of one.
* `accept_predictions`: instances whose top probability is at least
  `annotate.next.accept_confidence`, with the predicted label (a Spark filter).
"""
from __future__ import annotations

import math
import time

import numpy as np
from pyspark.sql import Column, DataFrame, functions as F

from dicom_triage.jobs.config import ConfigError
from dicom_triage.jobs.runtime import RunContext
from dicom_triage.schemas.annotation import ACCEPT_PREDICTIONS, LABEL_NEXT
from dicom_triage.udfs.active_learning import k_center_greedy

SETTING = "annotate.next.predictions"


def run(ctx: RunContext, tracker, say=print) -> dict:
    started = time.monotonic()
    settings, store = ctx.settings, ctx.store
    conf = settings.annotate.next
    for table in ("inclusion", "embeddings"):
        if not store.exists(table):
            raise ConfigError(f"setting 'output': no {table} table under {settings.output}; run the triage first")
    predictions = read_predictions(ctx, conf.predictions)
    labelled = store.read("labels").select("path") if store.exists("labels") else None
    scored = scored_candidates(store.read("inclusion"), predictions, labelled, conf.uncertainty)

    accept = scored.filter(F.col("confidence") >= float(conf.accept_confidence)).select(
        *ACCEPT_PREDICTIONS.fieldNames()[:-2])
    store.write(ctx.stamp(accept, ACCEPT_PREDICTIONS), "accept_predictions", mode="overwrite")

    pool = candidate_pool(scored, store.read("embeddings"), conf.candidate_pool)
    chosen = choose(pool, conf.size, conf.uncertainty)
    rows = ctx.spark.createDataFrame(chosen, _without_run(LABEL_NEXT))
    store.write(ctx.stamp(rows, LABEL_NEXT), "label_next", mode="overwrite")

    counts = {"candidates": scored.count(), "pool": len(pool), "chosen": len(chosen),
              "accept": store.read("accept_predictions").count()}
    counts["seconds"] = round(time.monotonic() - started, 2)
    say(f"annotate next: {counts['chosen']} of {counts['candidates']} unlabelled included instances chosen "
        f"(k-center greedy over the {counts['pool']} most unsure by {conf.uncertainty}), table label_next; "
        f"{counts['accept']} predictions at confidence >= {conf.accept_confidence}, table accept_predictions "
        f"({counts['seconds']} s)")
    tracker.metrics({f"annotate.next.{k}": v for k, v in counts.items()})
    return counts


def _without_run(schema):
    from pyspark.sql.types import StructType
    return StructType([f for f in schema.fields if f.name not in ("run_id", "computed_at")])


def read_predictions(ctx: RunContext, location: str) -> DataFrame:
    """A table under the output, else a Parquet file or folder; needs `path` and `probabilities`."""
    if not location:
        raise ConfigError(f"setting '{SETTING}' is required: a table or Parquet file of class probabilities")
    location = str(location)
    if ctx.store.exists(location):
        df = ctx.store.read(location)
    else:
        try:
            df = ctx.spark.read.parquet(location)
        except Exception as exc:  # AnalysisException: path missing, not Parquet
            raise ConfigError(f"setting '{SETTING}': {location} is neither a table under the output nor a "
                              f"readable Parquet file ({str(exc).splitlines()[0][:200]})") from None
    missing = [c for c in ("path", "probabilities") if c not in df.columns]
    if missing:
        raise ConfigError(f"setting '{SETTING}': {location} has no column {', '.join(missing)} "
                          "(needs path and probabilities, a map class -> probability)")
    return df.select("path", "probabilities")


# -- uncertainty in Spark (the formulas of udfs/active_learning.py) ------------------

def uncertainty_columns(probabilities: Column) -> dict[str, Column]:
    """least_confidence, margin, entropy (normalised), confidence, predicted_label of a map class -> p."""
    values = F.map_values(probabilities)
    ordered = F.sort_array(values, asc=False)
    k = F.size(values)
    p1, p2 = F.element_at(ordered, 1), F.element_at(ordered, 2)
    plogp = F.aggregate(values, F.lit(0.0), lambda acc, p: acc + F.when(p > 0, p * F.log(p)).otherwise(0.0))
    entropy = F.when(k < 2, F.lit(0.0)).otherwise(
        F.least(F.lit(1.0), F.greatest(F.lit(0.0), -plogp / F.log(k.cast("double")))))
    best = F.array_max(F.transform(F.map_entries(probabilities),
                                   lambda e: F.struct(e["value"].alias("p"), e["key"].alias("label"))))
    return {"least_confidence": 1.0 - p1,
            "margin": F.when(k < 2, F.lit(1.0)).otherwise(p1 - p2),
            "entropy": entropy,
            "confidence": p1,
            "predicted_label": best["label"]}


def uncertainty_score(columns: dict[str, Column], kind: str) -> Column:
    """Higher = more unsure, for every kind (1 - margin for the margin)."""
    if kind == "margin":
        return 1.0 - columns["margin"]
    return columns[kind]


def scored_candidates(inclusion: DataFrame, predictions: DataFrame, labelled: DataFrame | None,
                      kind: str) -> DataFrame:
    """Included, unlabelled instances with a prediction, with their uncertainty columns."""
    included = inclusion.filter(F.col("decision") == "include").select("path", "sop_instance_uid", "site",
                                                                       F.col("cluster").cast("int"))
    probabilities = predictions.select("path", "probabilities").filter(F.size(F.map_values("probabilities")) > 0)
    candidates = included.join(probabilities, "path")
    if labelled is not None:
        candidates = candidates.join(labelled.distinct(), "path", "left_anti")
    columns = uncertainty_columns(F.col("probabilities"))
    return candidates.select("path", "sop_instance_uid", "site", "cluster",
                             *[column.alias(name) for name, column in columns.items()],
                             uncertainty_score(columns, kind).alias("uncertainty"))


def candidate_pool(scored: DataFrame, embeddings: DataFrame, size: int) -> list:
    """The `size` most unsure candidates with an embedding, most unsure first (a top-k, not a collect)."""
    vectors = embeddings.filter(F.col("embedding").isNotNull() & (F.size("embedding") > 0)) \
        .select("path", "embedding")
    return (scored.join(vectors, "path").orderBy(F.col("uncertainty").desc(), F.col("path"))
            .limit(int(size)).collect())


def choose(pool: list, size: int, kind: str) -> list[tuple]:
    """LABEL_NEXT rows (without the run columns) from the pool by k-center greedy."""
    if not pool:
        return []
    X = np.array([np.asarray(row["embedding"], dtype=np.float64) for row in pool])
    picked, distances = k_center_greedy(X, size, first=0)
    out = []
    for rank, (idx, distance) in enumerate(zip(picked, distances), start=1):
        row = pool[idx]
        out.append((rank, row["path"], row["sop_instance_uid"], row["site"], row["cluster"],
                    float(row["uncertainty"]), kind, _float(row["least_confidence"]), _float(row["margin"]),
                    _float(row["entropy"]), row["predicted_label"], _float(row["confidence"]), idx + 1,
                    distance))
    return out


def _float(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
