"""Schemas of the embed and anatomy stages' tables: `embeddings` and `anatomy`."""
from __future__ import annotations

from pyspark.sql.types import ArrayType, BooleanType, DoubleType, FloatType, MapType, StringType, StructField, StructType

from dicom_triage.schemas.pixels import FINDINGS, KEY_FIELDS as PIXEL_KEY_FIELDS, RUN_FIELDS

KEY_FIELDS = [f for f in PIXEL_KEY_FIELDS if f.name != "protocol_name"]

# What the executors return per instance.
EMBEDDED = StructType([
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("embedding", ArrayType(FloatType()), True),   # L2-normalised
    StructField("encoder", StringType(), True),               # which encoder produced it
    StructField("embedding_error", StringType(), True),
])

EMBEDDINGS = StructType(KEY_FIELDS + [f for f in EMBEDDED.fields if f.name not in ("path", "sop_instance_uid")]
                        + RUN_FIELDS)

ANATOMY = StructType(KEY_FIELDS + [
    # the region the series' header names (BodyPartExamined, SeriesDescription, ProtocolName)
    StructField("header_region", StringType(), True),
    StructField("claims_expected", BooleanType(), True),     # header: expected modality, region expected or unnamed
    # the region model's prediction; null without a region model (run_notes says why)
    StructField("predicted_region", StringType(), True),
    StructField("probabilities", MapType(StringType(), DoubleType()), True),
    StructField("confidence", DoubleType(), True),           # max p
    StructField("least_confidence", DoubleType(), True),     # 1 - max p
    StructField("margin", DoubleType(), True),               # p(1) - p(2)
    StructField("entropy", DoubleType(), True),              # normalised by log K, 0..1
    # the content check: mean cosine distance to the k nearest images of the
    # delivery's expected content outside the image's own series, and the fence
    # of its group (null when the check did not run)
    StructField("irrelevance", DoubleType(), True),
    StructField("irrelevance_threshold", DoubleType(), True),
    StructField("fence_group", StringType(), True),
    # of the regions the delivery's headers name that contradict this image's,
    # the one whose images it is closest to, and that distance
    StructField("resembles", StringType(), True),
    StructField("resembles_distance", DoubleType(), True),
    StructField("model", StringType(), True),                # MLflow model URI used; null without one
    StructField("findings", FINDINGS, True),
] + RUN_FIELDS)
