"""Connected components of an undirected graph by min-label propagation,
entirely as DataFrame operations (no driver-side graph, no GraphFrames).

Every vertex starts with its own id as label; each round it takes the smallest
label among itself and its neighbours (edges count in both directions). When a
round changes no label, each vertex's label is the smallest id of its
component. A path of length L needs about L rounds, so `max_iterations` bounds
the component diameter the job accepts; exceeding it raises instead of
returning a half-propagated answer.
"""
from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame, functions as F


class ComponentsDidNotConverge(RuntimeError):
    """Label propagation still changed labels after `max_iterations` rounds."""


def connected_components(edges: DataFrame, vertices: DataFrame | None = None, max_iterations: int = 50,
                         checkpoint_every: int = 4) -> DataFrame:
    """`edges[src long, dst long]` (+ optional `vertices[id long]`) →
    `[id long, component long]`, component = the smallest id in the component.

    The vertex set is the union of `vertices.id` and every edge endpoint, so a
    vertex without edges is its own component. Self-loops and duplicate edges
    are harmless. Labels are persisted each round and local-checkpointed every
    `checkpoint_every` rounds to keep the plan short. Raises
    `ComponentsDidNotConverge` if labels still change after `max_iterations`
    rounds (a component's diameter is larger than that).
    """
    if max_iterations < 1:
        raise ValueError("max_iterations must be >= 1")
    e = edges.select(F.col("src").cast("long").alias("src"), F.col("dst").cast("long").alias("dst")) \
        .filter(F.col("src").isNotNull() & F.col("dst").isNotNull())
    both = (e.union(e.select(F.col("dst").alias("src"), F.col("src").alias("dst")))
            .filter(F.col("src") != F.col("dst")).distinct()
            .persist(StorageLevel.MEMORY_AND_DISK))
    ids = e.select(F.col("src").alias("id")).union(e.select(F.col("dst").alias("id")))
    if vertices is not None:
        ids = ids.union(vertices.select(F.col("id").cast("long").alias("id")))
    labels = (ids.filter(F.col("id").isNotNull()).distinct()
              .select("id", F.col("id").alias("component"))
              .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        for iteration in range(1, max_iterations + 1):
            incoming = (both.join(labels.select(F.col("id").alias("dst"), F.col("component").alias("_label")), "dst")
                        .groupBy("src").agg(F.min("_label").alias("_incoming")))
            step = (labels.join(incoming, labels["id"] == incoming["src"], "left")
                    .select("id",
                            F.least("component", F.coalesce("_incoming", "component")).alias("component"),
                            F.coalesce(F.col("_incoming") < F.col("component"), F.lit(False)).alias("_changed")))
            if iteration % checkpoint_every == 0:
                step = step.localCheckpoint(eager=True)
            else:
                step = step.persist(StorageLevel.MEMORY_AND_DISK)
            changed = step.filter("_changed").count()
            labels.unpersist()
            labels = step
            if changed == 0:
                return labels.drop("_changed")
            labels = labels.drop("_changed")
        raise ComponentsDidNotConverge(
            f"connected_components: labels still changing after max_iterations={max_iterations} rounds "
            f"({changed} changed in the last); a component's diameter exceeds it: raise max_iterations")
    finally:
        both.unpersist()
