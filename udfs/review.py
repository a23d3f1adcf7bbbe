"""Choosing the review queue from a bounded set of candidates, plain Python.

The curate stage hands over at most `size` best candidates of every embedding
cluster (chosen in Spark), so the work here is bounded by size x clusters,
not by the delivery.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence


def cluster_quota(size: int, max_cluster_share: float) -> int:
    """Most entries one cluster may take while others still have candidates."""
    return max(1, math.ceil(size * max_cluster_share))


def diversified_order(priorities: Sequence[float], clusters: Sequence[Hashable], size: int,
                      max_cluster_share: float) -> list[int]:
    """Indices of the queue, best first: highest priority first, but no cluster
    takes more than its quota while another cluster still has a candidate; the
    remaining places are then filled by priority alone. Ties break on index,
    so the order is deterministic.

    >>> diversified_order([0.9, 0.8, 0.7, 0.1], ["a", "a", "a", "b"], 3, 0.5)
    [0, 1, 3]
    """
    order = sorted(range(len(priorities)), key=lambda i: (-priorities[i], i))
    quota = cluster_quota(size, max_cluster_share)
    taken: list[int] = []
    per_cluster: Counter = Counter()
    skipped: list[int] = []
    for i in order:
        if len(taken) == size:
            break
        if per_cluster[clusters[i]] < quota:
            taken.append(i)
            per_cluster[clusters[i]] += 1
        else:
            skipped.append(i)
    taken += skipped[:size - len(taken)]
    return sorted(taken, key=lambda i: (-priorities[i], i))
