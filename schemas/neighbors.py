"""Schemas of the neighbors stage: `neighbors` (k nearest per instance),
`duplicates` (exact and near duplicate groups), `clusters` (one row per
embedded instance: cluster, outlier scores, 2-D maps, findings) and
`cluster_makeup` (what each cluster is made of, by site, manufacturer and
modality)."""
from __future__ import annotations

from pyspark.sql.types import (BooleanType, DoubleType, IntegerType, LongType, StringType, StructField,
                               StructType)

from dicom_triage.schemas.pixels import FINDINGS, RUN_FIELDS

NEIGHBORS = StructType([
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("rank", IntegerType(), False),              # 1 = nearest
    StructField("neighbor_path", StringType(), False),
    StructField("neighbor_sop_instance_uid", StringType(), True),
    StructField("distance", DoubleType(), False),           # cosine distance, 0..2
    StructField("same_series", BooleanType(), True),
] + RUN_FIELDS)

DUPLICATES = StructType([
    StructField("group_id", StringType(), False),           # kind + the original's path hash
    StructField("kind", StringType(), False),               # exact (same decoded pixels) | near (embeddings)
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("group_size", LongType(), False),
    StructField("is_original", BooleanType(), False),       # the first seen (modification time, then path)
    StructField("original_path", StringType(), False),
] + RUN_FIELDS)

CLUSTERS = StructType([
    StructField("path", StringType(), False),
    StructField("sop_instance_uid", StringType(), True),
    StructField("site", StringType(), True),
    StructField("modality", StringType(), True),
    StructField("cluster", IntegerType(), True),
    StructField("centroid_distance", DoubleType(), True),
    StructField("cluster_z", DoubleType(), True),
    StructField("knn_mean_distance", DoubleType(), True),   # mean distance to the k nearest
    StructField("nearest_distance", DoubleType(), True),
    StructField("outlier_score", DoubleType(), True),       # cleanlab: exp(-d / median d of the modality)
    StructField("outlier_fence", DoubleType(), True),       # Q3 + fence * IQR of the modality
    StructField("map_x", DoubleType(), True),
    StructField("map_y", DoubleType(), True),
    StructField("umap_x", DoubleType(), True),              # UMAP map; null without umap-learn
    StructField("umap_y", DoubleType(), True),              #   or with clusters.map = pca
    StructField("findings", FINDINGS, True),
] + RUN_FIELDS)

CLUSTER_MAKEUP = StructType([
    StructField("cluster", IntegerType(), True),
    StructField("cluster_size", LongType(), False),         # embedded instances in the cluster
    StructField("dimension", StringType(), False),          # site | manufacturer | modality
    StructField("value", StringType(), True),               # null: the attribute is missing
    StructField("count", LongType(), False),
    StructField("share", DoubleType(), False),              # count / cluster_size; sums to 1 per cluster and dimension
] + RUN_FIELDS)
