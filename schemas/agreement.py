"""Schemas of `triage annotate agreement` (jobs/annotate_agreement.py): how well
annotators agree per batch (`annotation_agreement`), per annotator pair and
per annotator against the others' majority (`annotator_agreement`), how each
annotator drifts batch after batch (`annotator_drift`), and the majority-vote
ground truth per item (`consensus`).

Overlap items of a batch are the instances (keyed by `path`) that two or more
annotators labelled in it. Measures that cannot be computed (one class only,
too few items) are null, with the reason in `notes` / `kappa_note`."""
from __future__ import annotations

from pyspark.sql.types import (ArrayType, BooleanType, DoubleType, IntegerType, LongType, StringType, StructField,
                               StructType)

from dicom_triage.schemas.annotation import BOX
from dicom_triage.schemas.pixels import RUN_FIELDS

# A consensus box: the mean corners of a cluster of matched boxes drawn by a
# majority of the annotators who gave boxes on the image (udfs/boxes.py).
FUSED_BOX = StructType(BOX.fields + [
    StructField("n_annotators", IntegerType(), False),   # annotators whose boxes were fused
    StructField("mean_iou", DoubleType(), False),        # of those boxes with the fused box
])

# An overlap item on which an annotator departs most from the others.
WORST_ITEM = StructType([
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("label", StringType(), True),            # the annotator's label
    StructField("others_label", StringType(), True),     # the others' majority (null: they tied)
    StructField("box_agreement", DoubleType(), True),    # matched IoU sum / larger box count, mean over the others
    StructField("misalignment", DoubleType(), False),    # label part (0..1) + box part (1 - box_agreement)
])

# One row per batch.
ANNOTATION_AGREEMENT_FIELDS = [
    StructField("batch_id", IntegerType(), True),        # null: labels not assigned to a batch
    StructField("n_items", LongType(), False),           # overlap items (labelled by >= 2 annotators)
    StructField("n_labelled_items", LongType(), False),  # every item labelled in the batch
    StructField("n_annotators", IntegerType(), False),   # annotators of the overlap items
    StructField("annotators", ArrayType(StringType()), False),
    StructField("label_kind", StringType(), False),      # nominal | ordinal
    StructField("fleiss_kappa", DoubleType(), True),
    StructField("fleiss_items", LongType(), True),       # overlap items with the most common rater count
    StructField("krippendorff_alpha", DoubleType(), True),
    StructField("krippendorff_level", StringType(), False),   # nominal | ordinal
    StructField("mean_pairwise_kappa", DoubleType(), True),   # mean of the defined Cohen's kappas
    StructField("kappa_weights", StringType(), False),   # none | linear | quadratic
    StructField("mean_box_iou", DoubleType(), True),     # of the matched box pairs of every annotator pair
    StructField("matched_boxes", LongType(), False),     # matched pairs, over every annotator pair
    StructField("unmatched_boxes", LongType(), False),   # boxes without a match, counted per annotator pair
    StructField("consensus_items", LongType(), False),   # overlap items with a consensus label
    StructField("tie_items", LongType(), False),         # overlap items whose vote tied
    StructField("notes", ArrayType(StringType()), False),  # why a measure is null
]
ANNOTATION_AGREEMENT = StructType(ANNOTATION_AGREEMENT_FIELDS + RUN_FIELDS)

# One row per batch and annotator pair (level "pair"), and per batch and
# annotator against the majority of the other annotators (level "majority",
# `other` null): leave-one-out, so no annotator votes on their own reference.
ANNOTATOR_AGREEMENT_FIELDS = [
    StructField("batch_id", IntegerType(), True),
    StructField("level", StringType(), False),           # pair | majority
    StructField("annotator", StringType(), False),
    StructField("other", StringType(), True),            # the other annotator; null for level majority
    StructField("n_items", LongType(), False),           # items both labelled (majority: with a majority)
    StructField("agreement", DoubleType(), True),        # share of those items with the same label
    StructField("kappa", DoubleType(), True),            # Cohen's kappa (weighted for ordinal labels)
    StructField("kappa_note", StringType(), True),       # why kappa is null
    StructField("box_items", LongType(), False),         # items where both sides gave boxes
    StructField("mean_box_iou", DoubleType(), True),
    StructField("matched_boxes", LongType(), False),
    StructField("unmatched_own", LongType(), False),     # the annotator's boxes without a match
    StructField("unmatched_other", LongType(), False),
    StructField("box_size_bias", DoubleType(), True),    # majority level: mean (log area - cluster median) / 2
]
ANNOTATOR_AGREEMENT = StructType(ANNOTATOR_AGREEMENT_FIELDS + RUN_FIELDS)

# One row per annotator and batch they labelled overlap items in.
DRIFT_BATCH_FIELDS = [
    StructField("annotator", StringType(), False),
    StructField("batch_id", IntegerType(), True),
    StructField("n_items", LongType(), False),           # overlap items the annotator labelled
    StructField("disagreement", DoubleType(), True),     # 1 - agreement with the others' majority
    StructField("box_size_bias", DoubleType(), True),    # < 0: smaller boxes than the others
    StructField("box_clusters", LongType(), False),      # matched boxes behind box_size_bias
    StructField("worst_items", ArrayType(WORST_ITEM), False),
]
ANNOTATOR_DRIFT_FIELDS = DRIFT_BATCH_FIELDS[:-1] + [
    StructField("over_fence", BooleanType(), False),     # this batch crosses a drift fence
    StructField("latest", BooleanType(), False),         # the annotator's latest batch with a figure
    StructField("disagreement_slope", DoubleType(), True),   # per batch, least squares over the batches
    StructField("box_size_bias_slope", DoubleType(), True),
    StructField("flagged", BooleanType(), False),        # the annotator's latest figure crosses a fence
    StructField("flag_reasons", ArrayType(StringType()), False),
    DRIFT_BATCH_FIELDS[-1],                              # filled on batches over the fence
]
ANNOTATOR_DRIFT = StructType(ANNOTATOR_DRIFT_FIELDS + RUN_FIELDS)

# One row per item (path) and batch: the majority vote of its annotators.
CONSENSUS_FIELDS = [
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("batch_id", IntegerType(), True),
    StructField("label", StringType(), True),            # null: no label, or an unresolved tie
    StructField("grade", DoubleType(), True),            # ordinal labels: the consensus grade
    StructField("agreement", DoubleType(), True),        # share of its annotators giving that label
    StructField("n_annotators", IntegerType(), False),   # annotators who labelled the item
    StructField("n_votes", IntegerType(), False),        # of them, those giving the consensus label
    StructField("tie", BooleanType(), False),
    StructField("rule", StringType(), False),            # majority | median_of_tie | tie | single_annotator | no_label
    StructField("boxes", ArrayType(FUSED_BOX), True),    # null: nobody gave boxes
]
CONSENSUS = StructType(CONSENSUS_FIELDS + RUN_FIELDS)

# What one batch's computation returns to Spark (one applyInPandas): a `kind`
# (batch, pair, majority, drift, consensus) and the union of the fields above.
def _records() -> StructType:
    fields = {"kind": StructField("kind", StringType(), False)}
    for group in (ANNOTATION_AGREEMENT_FIELDS, ANNOTATOR_AGREEMENT_FIELDS, DRIFT_BATCH_FIELDS, CONSENSUS_FIELDS):
        for f in group:
            known = fields.get(f.name)
            if known is not None and known.dataType != f.dataType:
                raise TypeError(f"field {f.name}: {known.dataType} vs {f.dataType}")
            fields.setdefault(f.name, StructField(f.name, f.dataType, True))
    return StructType(list(fields.values()))


AGREEMENT_RECORDS = _records()
