"""Schemas of the embed stage's tables: `embeddings` and `anatomy`."""
from __future__ import annotations

from pyspark.sql.types import ArrayType, DoubleType, FloatType, MapType, StringType, StructField, StructType

from schemas.pixels import FINDINGS, KEY_FIELDS as PIXEL_KEY_FIELDS, RUN_FIELDS

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
    StructField("header_region", StringType(), True),        # from BodyPartExamined / descriptions
    StructField("predicted_region", StringType(), True),
    StructField("probabilities", MapType(StringType(), DoubleType()), True),
    StructField("confidence", DoubleType(), True),           # max p
    StructField("least_confidence", DoubleType(), True),     # 1 - max p
    StructField("margin", DoubleType(), True),               # p(1) - p(2)
    StructField("entropy", DoubleType(), True),              # normalised by log K, 0..1
    StructField("irrelevance", DoubleType(), True),          # mean cosine distance to k nearest known images
    StructField("irrelevance_threshold", DoubleType(), True),
    StructField("model", StringType(), True),                # MLflow model URI / version used
    StructField("findings", FINDINGS, True),
] + RUN_FIELDS)
