"""`triage annotate agreement`: how well annotators agree, who drifts, and the
consensus labels, from the `labels` table (`triage annotate import`).

Labels are grouped by `batch_id` and each batch is analysed in one pandas call
(groupBy().applyInPandas: a batch is a few hundred rows) by
udfs/agreement.py; the annotator-level drift flag is a second small
applyInPandas per annotator over the per-batch figures (udfs/annotator_drift.py).
Nothing collects the labels to the driver. Writes (schemas/agreement.py):

* `annotation_agreement`: one row per batch: overlap items (labelled by two or
  more annotators), Fleiss' kappa, Krippendorff's alpha, mean pairwise Cohen's
  kappa, mean IoU of matched boxes, ties;
* `annotator_agreement`: per batch, one row per annotator pair (level `pair`)
  and per annotator against the majority of the others (level `majority`);
* `annotator_drift`: per annotator and batch: disagreement with the others'
  majority, box size bias, the fences crossed, the trend, the flag and the
  most misaligned items;
* `consensus`: per item and batch: the majority label, its agreement level,
  the fused consensus boxes.
"""
from __future__ import annotations

import time

from pyspark import StorageLevel
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from dicom_triage.jobs.config import ConfigError
from dicom_triage.schemas.agreement import (AGREEMENT_RECORDS, ANNOTATION_AGREEMENT, ANNOTATOR_AGREEMENT, ANNOTATOR_DRIFT,
                               ANNOTATOR_DRIFT_FIELDS, CONSENSUS, DRIFT_BATCH_FIELDS)
from dicom_triage.udfs.agreement import Params, batch_records
from dicom_triage.udfs.annotator_drift import flag_annotator

INPUT_COLUMNS = ["annotator", "path", "sop_instance_uid", "batch_id", "label", "grade", "boxes", "source",
                 "source_row"]
DRIFT_INPUT = StructType(DRIFT_BATCH_FIELDS)
DRIFT_OUTPUT = StructType(ANNOTATOR_DRIFT_FIELDS)


def run(ctx, tracker, say=print) -> dict:
    started = time.monotonic()
    store, conf = ctx.store, ctx.settings.annotate
    if not store.exists("labels"):
        raise ConfigError(f"setting 'annotate.labels': no `labels` table under {ctx.settings.output} yet; "
                          "run `triage annotate import` first")
    params = Params.from_settings(conf)
    labels = store.read("labels")
    present = [c for c in INPUT_COLUMNS if c in labels.columns]
    columns = AGREEMENT_RECORDS.fieldNames()

    def analyse(frame):
        return batch_records(frame, params, columns)

    limits = (float(conf.drift.disagreement_max), float(conf.drift.box_size_bias_max))

    def flag(frame):
        return flag_annotator(frame, *limits)[DRIFT_OUTPUT.fieldNames()]

    records = (labels.select(*present).groupBy("batch_id").applyInPandas(analyse, AGREEMENT_RECORDS)
               .persist(StorageLevel.MEMORY_AND_DISK))
    drift = None
    try:
        records.count()  # analyse the batches in parallel before coalesce(1) narrows the small writes
        kind = F.col("kind")
        # one row per batch / per batch and annotator (pair): small, one file each
        store.write(ctx.stamp(records.where(kind == "batch").coalesce(1), ANNOTATION_AGREEMENT),
                    "annotation_agreement", mode="overwrite")
        store.write(ctx.stamp(records.where(kind.isin("pair", "majority")).coalesce(1), ANNOTATOR_AGREEMENT),
                    "annotator_agreement", mode="overwrite")
        store.write(ctx.stamp(records.where(kind == "consensus"), CONSENSUS), "consensus", mode="overwrite")
        per_batch = records.where(kind == "drift").select(*DRIFT_INPUT.fieldNames())
        drift = (per_batch.groupBy("annotator").applyInPandas(flag, DRIFT_OUTPUT).coalesce(1)
                 .persist(StorageLevel.MEMORY_AND_DISK))
        store.write(ctx.stamp(drift, ANNOTATOR_DRIFT), "annotator_drift", mode="overwrite")
        counts = summary(records, drift)
    finally:
        records.unpersist()
        if drift is not None:
            drift.unpersist()
    counts["seconds"] = round(time.monotonic() - started, 2)
    tracker.metrics({f"annotate.agreement.{k}": v for k, v in counts.items() if v is not None})
    say(f"annotate agreement: {counts['batches']} batches, {counts['overlap_items']} overlap items, "
        f"mean Fleiss' kappa {_fmt(counts.get('mean_fleiss_kappa'))}, {counts['flagged_annotators']} "
        f"annotator(s) flagged for drift ({counts['seconds']} s); tables annotation_agreement, "
        "annotator_agreement, annotator_drift, consensus")
    return counts


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def summary(records, drift) -> dict:
    """Small aggregates of what was written (metrics and the closing line): one
    pass over the persisted records, one over the drift rows."""
    batch, kind = F.col("kind") == "batch", F.col("kind")
    row = records.agg(
        F.sum(batch.cast("long")).alias("batches"),
        F.sum(F.when(batch, F.col("n_items"))).alias("overlap_items"),
        F.avg(F.when(batch, F.col("fleiss_kappa"))).alias("mean_fleiss_kappa"),
        F.avg(F.when(batch, F.col("krippendorff_alpha"))).alias("mean_krippendorff_alpha"),
        F.avg(F.when(batch, F.col("mean_box_iou"))).alias("mean_box_iou"),
        F.sum((kind == "consensus").cast("long")).alias("consensus_items"),
        F.sum(F.when(kind == "consensus", F.col("tie").cast("long"))).alias("tie_items"),
    ).first().asDict()
    people = drift.agg(F.countDistinct("annotator").alias("annotators"),
                       F.countDistinct(F.when(F.col("flagged"), F.col("annotator"))).alias("flagged_annotators")
                       ).first().asDict()
    out = {**row, **people}
    for name in ("batches", "overlap_items", "consensus_items", "tie_items"):
        out[name] = int(out[name] or 0)
    return out
