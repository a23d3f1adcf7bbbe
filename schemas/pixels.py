"""Schemas of the pixels stage's tables: `pixel_stats` (one row per instance)
and `series` (one row per series). Units: see udfs/pixel_stats.py (`units`
column: HU, modality or luminance) and udfs/geometry.py (mm, degrees)."""
from __future__ import annotations

from pyspark.sql.types import (ArrayType, BinaryType, BooleanType, DoubleType, LongType, StringType,
                               StructField, StructType, TimestampType)

from dicom_triage.udfs.geometry import GEOMETRY_KEYS
from dicom_triage.udfs.pixel_stats import PERCENTILE_KEYS

FINDING = StructType([
    StructField("code", StringType(), False),      # schemas.reasons code
    StructField("score", DoubleType(), True),      # the measured value the rule compared
    StructField("threshold", DoubleType(), True),  # the limit it was compared with
    StructField("detail", StringType(), True),     # what was compared, in words
])
FINDINGS = ArrayType(FINDING)

FRAME_STAT = StructType([StructField("index", LongType())] + [
    StructField(name, DoubleType()) for name in ("min", "max", "mean", "std", "p50")])

KEY_FIELDS = [
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("series_instance_uid", StringType(), True),
    StructField("site", StringType(), True),
    StructField("modality", StringType(), True),
    StructField("protocol_name", StringType(), True),
]

_DOUBLES = ["min", "max", "mean", "std", *PERCENTILE_KEYS, "dynamic_range", "value_range",
            "frac_at_min", "frac_at_max", "entropy_bits", "hist_min", "hist_max",
            "foreground_fraction", "snr", "noise_sigma", "laplacian_var", "efc", "blurry_score",
            "burned_in_text_score", "padded_fraction"]

MEASURES = [
    StructField("rows", LongType()), StructField("columns", LongType()), StructField("frames", LongType()),
    StructField("samples_per_pixel", LongType()), StructField("photometric_interpretation", StringType()),
    StructField("is_color", BooleanType()), StructField("units", StringType()),
    StructField("valid_pixels", LongType()), StructField("stats_exact", BooleanType()),
    StructField("distinct_values", LongType()), StructField("histogram", ArrayType(LongType())),
    *[StructField(name, DoubleType()) for name in _DOUBLES],
    StructField("thumbnail_png", BinaryType()), StructField("preview", BinaryType()),
    StructField("pixel_hash", StringType()), StructField("frame_stats", ArrayType(FRAME_STAT)),
    StructField("pixel_error", StringType()), StructField("pixel_error_message", StringType()),
    StructField("bytes_read", LongType()),
]

# What the executors compute per instance, before dataset-level findings.
PIXEL_MEASURES = StructType(KEY_FIELDS + MEASURES)

RUN_FIELDS = [StructField("run_id", StringType(), False),
              StructField("computed_at", TimestampType(), False)]

PIXEL_STATS = StructType(KEY_FIELDS + MEASURES + [StructField("findings", FINDINGS)] + RUN_FIELDS)

_GEOMETRY_TYPES = {"long": LongType(), "double": DoubleType(), "bool": BooleanType(),
                   "str": StringType(), "str[]": ArrayType(StringType()),
                   "double[]": ArrayType(DoubleType())}

SERIES = StructType(
    [StructField("series_instance_uid", StringType(), False),
     StructField("study_instance_uid", StringType(), True),
     StructField("site", StringType(), True),
     StructField("protocol_name", StringType(), True),
     StructField("series_description", StringType(), True)]
    + [StructField(name, _GEOMETRY_TYPES[kind.rstrip("?")], True)
       for name, kind in GEOMETRY_KEYS.items() if name != "findings"]
    + [StructField(name, BinaryType(), True)
       for name in ("mip_png", "mean_png", "side_mip_png", "side_mean_png")]
    + [StructField("findings", FINDINGS)]
    + RUN_FIELDS
)
