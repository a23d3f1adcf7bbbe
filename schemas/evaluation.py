"""Schemas of `triage evaluate`'s tables: a run scored against verified answers."""
from __future__ import annotations

from pyspark.sql.types import ArrayType, BooleanType, DoubleType, LongType, StringType, StructField, StructType

from dicom_triage.schemas.pixels import RUN_FIELDS

EVALUATION = StructType([
    StructField("code", StringType(), False),
    StructField("in_truth", BooleanType(), False),      # the truth names the code at least once: scored
    StructField("planted", LongType(), False),          # verified objects the code applies to
    StructField("flagged", LongType(), False),          # verified objects the run gave the code
    StructField("true_positives", LongType(), False),
    StructField("recall", DoubleType(), True),          # null when nothing is planted
    StructField("precision", DoubleType(), True),       # null when nothing is flagged or not in the truth
    StructField("truth", StringType(), False),          # the truth file
] + RUN_FIELDS)

EVALUATION_DECISIONS = StructType([
    StructField("expected", StringType(), False),       # from the truth: include | exclude | review
    StructField("decision", StringType(), False),       # the run's (missing: not in the output)
    StructField("objects", LongType(), False),
] + RUN_FIELDS)

EVALUATION_CASES = StructType([
    StructField("kind", StringType(), False),           # missed | false_alarm
    StructField("code", StringType(), False),
    StructField("path", StringType(), False),
    StructField("truth_codes", ArrayType(StringType()), True),
    StructField("reasons", ArrayType(StringType()), True),
    StructField("decision", StringType(), True),
    StructField("evidence", StringType(), True),        # the run's evidence for the object, in words
] + RUN_FIELDS)
