"""Where each included instance goes in the annotation plan: pure arithmetic
on its place in the stratified deal, vectorised with numpy so that Spark can
apply it per Arrow batch (jobs/annotate_plan.py) and tests can check it
without Spark.

The deal. Instances are ordered stratum after stratum (site, cluster, ...),
inside each stratum by a seeded hash; `k` is the place in that order (0..N-1).

* batch: instances are dealt round-robin over the `ceil(N / batch_size)`
  batches (batch = k mod batches), so every stratum spreads over the batches
  with at most one item difference and batch sizes differ by at most one.
* overlap: inside a batch (its items in deal order, `j` = k div batches),
  `round(overlap_fraction * m)` of the `m` items are labelled by every
  annotator, spaced evenly (item j is overlap when floor((j+1) o / m) >
  floor(j o / m)), so the overlap set has the batch's mix as well.
* sub-batches: the remaining items are dealt round-robin to the annotators
  in the same order, so every annotator's sub-batch gets each stratum's share
  within one item and the sub-batch sizes differ by at most one. With a
  single annotator there is no overlap.

`position` is the order within an annotator's list for the batch: overlap and
own items interleaved in deal order (overlap items are not bunched at the
start, where annotators are freshest).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def batch_count(total: int, batch_size: int) -> int:
    return max(1, math.ceil(total / batch_size)) if total > 0 else 0


def deal(k: np.ndarray, total: int, batch_size: int, overlap_fraction: float, annotators: int) -> pd.DataFrame:
    """Per deal place `k` (0..total-1): batch_id, overlap flag, the annotators'
    indices (all of them for overlap items, one otherwise) and the positions
    in their lists, as parallel lists."""
    k = np.asarray(k, dtype=np.int64)
    if annotators < 1:
        raise ValueError("at least one annotator is needed")
    batches = batch_count(total, batch_size)
    batch = k % batches
    j = k // batches                                   # place inside the batch
    m = (total - batch - 1) // batches + 1             # items in the batch
    # one annotator: nobody to agree with, no overlap
    o = np.floor(overlap_fraction * m + 0.5).astype(np.int64) if annotators > 1 else np.zeros_like(m)
    before = (j * o) // m                              # overlap items before place j
    overlap = ((j + 1) * o) // m > before
    q = j - before                                     # own items before place j (all annotators)
    annotator_lists, position_lists = [], []
    all_annotators = np.arange(annotators)
    for idx in range(len(k)):
        if overlap[idx]:
            # For annotator a: own items dealt to a before this place = #{q' < q: q' mod A == a}.
            own_before = np.maximum(0, (q[idx] - all_annotators + annotators - 1) // annotators)
            annotator_lists.append(all_annotators.tolist())
            position_lists.append((before[idx] + own_before).tolist())
        else:
            annotator_lists.append([int(q[idx] % annotators)])
            position_lists.append([int(before[idx] + q[idx] // annotators)])
    return pd.DataFrame({"batch_id": batch.astype(np.int32), "overlap": overlap,
                         "annotators": annotator_lists, "positions": position_lists})

