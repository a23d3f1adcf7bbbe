"""Clusters of the embeddings: spherical k-means and a 2-D PCA map fitted on a
bounded sample and applied on the executors, each row's cosine distance to its
centroid and its robust z within the cluster; `umap_map` adds a UMAP map where
umap-learn is installed; `cluster_makeup` tells how each cluster is composed
(e.g. one hospital or scanner forming its own cluster)."""
from __future__ import annotations

import importlib.util
import math
import warnings
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window, functions as F

from dicom_triage.jobs.fences import with_robust_z

ADDED_COLUMNS = ("cluster", "centroid_distance", "cluster_z", "cluster_outlier", "map_x", "map_y")


def default_k(n: int) -> int:
    """min(20, max(2, round(sqrt(n / 2)))): the classic √(n/2) rule of thumb,
    at least 2 and at most FiftyOne's 20 clusters."""
    return min(20, max(2, round(math.sqrt(n / 2))))


def _dot(a: Column, b: Column) -> Column:
    return F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0), lambda acc, x: acc + x)


def cosine_distance(a: Column, b: Column) -> Column:
    """1 − a·b / (|a| |b|) on two array<double> columns (null for a zero vector)."""
    norms = F.sqrt(_dot(a, a)) * F.sqrt(_dot(b, b))
    return F.when(norms > 0, F.lit(1.0) - _dot(a, b) / norms)


def cluster_embeddings(df: DataFrame, k: int | None = None, seed: int = 0, outlier_z: float = 3.5,
                       fit_sample: int = 20_000) -> DataFrame:
    """`df[id long, vector array<float|double> (non-null, non-zero), ...]` →
    the same rows and columns plus:

    * `cluster` int: spherical k-means (scikit-learn's KMeans on L2-normalised
      vectors, i.e. cosine), k defaulting to `default_k(row count)`, capped
      at the sample size;
    * `centroid_distance` double: cosine distance to its cluster's centre;
    * `cluster_z` double: the robust z of centroid_distance within the
      cluster (jobs/fences.py, the rule for MAD 0 included);
    * `cluster_outlier` bool: cluster_z > `outlier_z` (3.5, Iglewicz-Hoaglin);
    * `map_x`, `map_y` double: the first two principal components.

    k-means and PCA are fitted on the driver on at most `fit_sample` rows
    (chosen by a seeded hash of the id, ordered by id: the same embeddings give
    the same clusters on a laptop and on a cluster, whatever the partitioning),
    then every row is assigned on the executors. Driver memory and fit time are
    bounded by the sample, not by the row count; Spark ML's iterative KMeans
    costs one Spark job per iteration, about a minute even for a few hundred
    rows. The result is persisted (and counted); `.unpersist()` it when done.
    """
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    n = df.count()
    fraction = min(1.0, 1.5 * fit_sample / max(n, 1))
    picked = df if fraction >= 1.0 else df.filter(
        (F.xxhash64(F.lit(seed), "id").bitwiseAND(0x7FFFFFFF) / F.lit(float(0x7FFFFFFF))) < fraction)
    sample = picked.select("id", "vector").orderBy("id").limit(fit_sample).toPandas()
    if sample.empty:
        return _without_clusters(df)
    matrix = _normalised(np.stack(sample["vector"].to_numpy()))
    k = max(1, min(default_k(n) if k is None else int(k), len(matrix)))
    if k >= 2:
        centres = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(matrix).cluster_centers_
    else:
        centres = matrix.mean(axis=0, keepdims=True)
    centres = _normalised(centres)
    pca = PCA(n_components=min(2, matrix.shape[1], len(matrix)), random_state=seed).fit(matrix)

    def assign(frames):
        import pandas as pd

        for frame in frames:
            if frame.empty:
                continue
            vectors = _normalised(np.stack(frame["vector"].to_numpy()))
            distance = 1.0 - vectors @ centres.T
            nearest = distance.argmin(axis=1)
            xy = pca.transform(vectors)
            if xy.shape[1] < 2:
                xy = np.hstack([xy, np.zeros((len(xy), 2 - xy.shape[1]))])
            yield pd.DataFrame({"id": frame["id"], "cluster": nearest.astype("int32"),
                                "centroid_distance": distance[np.arange(len(frame)), nearest].astype(float),
                                "map_x": xy[:, 0].astype(float), "map_y": xy[:, 1].astype(float)})

    assigned = df.select("id", "vector").mapInPandas(
        assign, "id long, cluster int, centroid_distance double, map_x double, map_y double")
    scored = with_robust_z(df.join(assigned, "id"), "centroid_distance", ["cluster"], name="cluster_z")
    result = (scored
              .withColumn("cluster_outlier", F.col("cluster_z") > F.lit(float(outlier_z)))
              .select(*df.columns, *ADDED_COLUMNS)
              .persist(StorageLevel.MEMORY_AND_DISK))
    result.count()
    return result


def _normalised(matrix):
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _without_clusters(df: DataFrame) -> DataFrame:
    out = df
    for name, kind in (("cluster", "int"), ("centroid_distance", "double"), ("cluster_z", "double"),
                       ("cluster_outlier", "boolean"), ("map_x", "double"), ("map_y", "double")):
        out = out.withColumn(name, F.lit(None).cast(kind))
    return out


def cluster_makeup(clustered: DataFrame, by: list[str]) -> DataFrame:
    """`[cluster, *by, count, share]`: how many rows of each `by` value
    combination (e.g. site, manufacturer, modality) a cluster holds, and their
    share of the cluster (shares sum to 1 per cluster; null values are a group
    of their own). A share of 1.0 for one site means that site is the whole
    cluster: a hospital forming its own cluster."""
    counts = clustered.groupBy("cluster", *by).count()
    total = F.sum("count").over(Window.partitionBy("cluster"))
    return (counts.withColumn("share", F.col("count") / total)
            .orderBy("cluster", F.desc("count"), *by))


MAKEUP_DIMENSIONS = ("site", "manufacturer", "modality")


def makeup_by_dimension(clustered: DataFrame, dimensions=MAKEUP_DIMENSIONS) -> DataFrame:
    """`[cluster, cluster_size, dimension, value, count, share]`: `cluster_makeup`
    for each dimension on its own, stacked (one table to query: "which site
    dominates cluster 3?"). Shares sum to 1 per cluster and dimension; a null
    value is a group of its own."""
    parts = [cluster_makeup(clustered, [name]).select(
        "cluster", F.lit(name).alias("dimension"), F.col(name).cast("string").alias("value"), "count", "share")
        for name in dimensions]
    stacked = reduce(DataFrame.unionByName, parts)
    size = F.sum("count").over(Window.partitionBy("cluster", "dimension"))
    return stacked.withColumn("cluster_size", size.cast("long"))


MAP_METHODS = ("auto", "pca", "umap")


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def use_umap(method: str) -> bool:
    """Whether `clusters.map` asks for UMAP: auto = when umap-learn is importable."""
    if method not in MAP_METHODS:
        raise ValueError(f"clusters.map must be one of {MAP_METHODS}, got {method!r}")
    if method == "umap" and not umap_available():
        raise ValueError("clusters.map is 'umap' but umap-learn is not installed "
                         "(pip install 'dicom-triage[umap]'), or set clusters.map to auto or pca")
    return method == "umap" or (method == "auto" and umap_available())


def umap_map(df: DataFrame, sample: int, seed: int = 0, epochs: int = 100,
             neighbors: int = 15) -> DataFrame:
    """`df[id, vector, ...]` plus `umap_x`, `umap_y` (double): a UMAP model
    (cosine metric) fitted on the driver on a random sample of at most `sample`
    rows, then applied to every row on the executors (mapInPandas; the fitted
    model travels in the function's closure). Driver memory is bounded by
    `sample`, not by the row count. With fewer than 4 rows the map is null."""
    import numpy as np

    n = df.count()
    fraction = min(1.0, 1.2 * sample / max(n, 1))
    rows = (df.sample(fraction=fraction, seed=seed) if fraction < 1.0 else df) \
        .select("vector").limit(sample).toPandas()
    if len(rows) < 4:
        return df.withColumn("umap_x", F.lit(None).cast("double")).withColumn("umap_y", F.lit(None).cast("double"))
    import umap

    matrix = np.stack(rows["vector"].to_numpy()).astype(np.float32)
    with warnings.catch_warnings():  # "n_jobs value 1 overridden to 1 by setting random_state": seeded on purpose
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        model = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(neighbors, len(matrix) - 1),
                          n_epochs=epochs, random_state=seed, low_memory=True).fit(matrix)

    def project(frames):
        import pandas as pd

        for frame in frames:
            if frame.empty:
                continue
            xy = model.transform(np.stack(frame["vector"].to_numpy()).astype(np.float32))
            yield pd.DataFrame({"id": frame["id"], "umap_x": xy[:, 0].astype(float),
                                "umap_y": xy[:, 1].astype(float)})

    mapped = df.select("id", "vector").mapInPandas(project, "id long, umap_x double, umap_y double")
    return df.join(mapped, "id", "left")
