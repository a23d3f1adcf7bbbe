"""Schemas of the curate stage: `inclusion` (one row per listed object, with
its decision and the evidence behind every reason) and `review_queue` (the
instances a person should look at first, in order)."""
from __future__ import annotations

from pyspark.sql.types import (ArrayType, BinaryType, DoubleType, IntegerType, LongType, StringType,
                               StructField, StructType)

from dicom_triage.schemas.pixels import RUN_FIELDS

EVIDENCE = StructType([
    StructField("code", StringType(), False),       # schemas.reasons code (or IO_ERROR / TIMEOUT)
    StructField("severity", StringType(), False),   # exclude | review | annotate
    StructField("scope", StringType(), False),      # instance | series (a series finding on each instance)
    StructField("source", StringType(), False),     # the table the finding comes from
    StructField("score", DoubleType(), True),       # the measured value
    StructField("threshold", DoubleType(), True),   # the limit it was compared with
    StructField("detail", StringType(), True),
])

INCLUSION = StructType([
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),     # null for objects that failed to ingest
    StructField("series_instance_uid", StringType(), True),
    StructField("study_instance_uid", StringType(), True),
    StructField("patient_key", StringType(), True),          # keyed hash, never the raw ID
    StructField("site", StringType(), True),
    StructField("modality", StringType(), True),
    StructField("manufacturer", StringType(), True),
    StructField("body_part_examined", StringType(), True),
    StructField("predicted_region", StringType(), True),
    StructField("cluster", IntegerType(), True),
    StructField("decision", StringType(), False),            # include | exclude | review
    StructField("reasons", ArrayType(StringType()), False),  # every code, sorted; [] when clean
    StructField("excluded_by", ArrayType(StringType()), False),  # the codes whose severity is exclude
    StructField("evidence", ArrayType(EVIDENCE), False),
    StructField("review_priority", DoubleType(), True),      # higher = look first; null for ingest errors
    StructField("uncertainty", DoubleType(), True),          # anatomy model: normalised entropy, 0..1
    StructField("outlier", DoubleType(), True),              # 1 - cleanlab outlier score, 0..1
    StructField("severity", DoubleType(), True),             # of the findings: 1 - prod(1 - weight), 0..1
    StructField("size_bytes", LongType(), True),
] + RUN_FIELDS)

REVIEW_QUEUE = StructType([
    StructField("queue_rank", IntegerType(), False),         # 1 = look at first
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("series_instance_uid", StringType(), True),
    StructField("site", StringType(), True),
    StructField("modality", StringType(), True),
    StructField("decision", StringType(), False),
    StructField("reasons", ArrayType(StringType()), False),
    StructField("review_priority", DoubleType(), False),
    StructField("uncertainty", DoubleType(), True),          # anatomy model: normalised entropy, 0..1
    StructField("outlier", DoubleType(), True),              # 1 - cleanlab outlier score, 0..1
    StructField("severity", DoubleType(), True),             # of the open findings, 0..1
    StructField("cluster", IntegerType(), True),
    StructField("predicted_region", StringType(), True),
    StructField("thumbnail_png", BinaryType(), True),        # the instance's thumbnail, or its series' MIP
] + RUN_FIELDS)
