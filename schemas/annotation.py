"""Schemas of the annotation tools (`triage annotate ...`): who labels what
(`annotation_assignments`), what came back (`labels`, `label_errors`), how
well annotators agree (`annotation_agreement`, `annotator_drift`), the
consensus ground truth (`consensus`), and what to label next (`label_next`,
`accept_predictions`). The first three are fixed here because every
annotation command reads them; the others are defined by their command."""
from __future__ import annotations

from pyspark.sql.types import (ArrayType, BooleanType, DoubleType, IntegerType, StringType, StructField,
                               StructType)

from dicom_triage.schemas.pixels import RUN_FIELDS

# A box in image pixel coordinates: x, y of the top-left corner, width, height
# (COCO's [x, y, w, h]), with its own class label when boxes carry classes.
BOX = StructType([
    StructField("x", DoubleType(), False),
    StructField("y", DoubleType(), False),
    StructField("width", DoubleType(), False),
    StructField("height", DoubleType(), False),
    StructField("label", StringType(), True),
])

# One row per (batch, annotator, instance): what each annotator is asked to label.
ASSIGNMENTS = StructType([
    StructField("batch_id", IntegerType(), False),       # 0, 1, ... in labelling order
    StructField("annotator", StringType(), False),
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("overlap", BooleanType(), False),        # every annotator of the batch labels it
    StructField("stratum", StringType(), True),          # site / cluster mix it was drawn from
    StructField("position", IntegerType(), False),       # order within the annotator's sub-batch
] + RUN_FIELDS)

# One row per accepted (annotator, instance) annotation.
LABELS = StructType([
    StructField("annotator", StringType(), False),
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("batch_id", IntegerType(), True),        # from the assignments; null when unassigned
    StructField("label", StringType(), True),            # class or grade as text ("0".."4" for grades)
    StructField("grade", DoubleType(), True),            # the label as a number when it is one
    StructField("boxes", ArrayType(BOX), True),          # null: no boxes given; []: "nothing to box"
    StructField("source", StringType(), False),          # file or table it came from
    StructField("source_row", StringType(), True),       # row number / annotation id there
] + RUN_FIELDS)

# One row per rejected input row, with what is wrong with it.
LABEL_ERRORS = StructType([
    StructField("source", StringType(), False),
    StructField("source_row", StringType(), True),
    StructField("annotator", StringType(), True),
    StructField("instance", StringType(), True),         # path or SOP instance UID as given
    StructField("error", StringType(), False),           # UNKNOWN_INSTANCE | UNKNOWN_LABEL | BOX_OUTSIDE_IMAGE | ...
    StructField("detail", StringType(), True),
] + RUN_FIELDS)

# `triage annotate next`: the instances to label next, in order (most unsure
# first, then always the candidate farthest from those already chosen).
LABEL_NEXT = StructType([
    StructField("rank", IntegerType(), False),               # 1 = label first
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("site", StringType(), True),
    StructField("cluster", IntegerType(), True),
    StructField("uncertainty", DoubleType(), False),         # the measure of annotate.next.uncertainty, higher = more unsure
    StructField("uncertainty_kind", StringType(), False),    # least_confidence | margin (as 1 - margin) | entropy
    StructField("least_confidence", DoubleType(), True),     # 1 - max p
    StructField("margin", DoubleType(), True),               # p(1) - p(2)
    StructField("entropy", DoubleType(), True),              # normalised by log K, 0..1
    StructField("predicted_label", StringType(), True),      # the most probable class
    StructField("confidence", DoubleType(), True),           # its probability
    StructField("pool_rank", IntegerType(), False),          # place in the candidate pool by uncertainty (1 = most unsure)
    StructField("distance", DoubleType(), True),             # to the nearest earlier choice when chosen (embedding, Euclidean); null for rank 1
] + RUN_FIELDS)

# `triage annotate next`: included, unlabelled instances whose prediction is
# confident enough (annotate.next.accept_confidence) to accept without a person.
ACCEPT_PREDICTIONS = StructType([
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("site", StringType(), True),
    StructField("cluster", IntegerType(), True),
    StructField("predicted_label", StringType(), True),
    StructField("confidence", DoubleType(), False),          # max p
] + RUN_FIELDS)
