"""Agreement between annotators' boxes on one image: IoU, matching, size bias
and a fused consensus box. Plain numpy/scipy, no Spark.

Boxes are COCO-style (x, y of the top-left corner, width, height) in image
pixels, optionally with a class label each (schemas/annotation.py BOX).

* Matching two annotators: the Hungarian assignment
  (`scipy.optimize.linear_sum_assignment`) maximising the summed IoU over the
  pairs with IoU >= `min_iou` (`annotate.box_match_iou`); pairs below it never
  match. Two boxes whose class labels are both given and differ never match.
* Clusters: the pairwise matches of every pair of annotators on an image,
  joined into connected components: one cluster is "one object" as the
  annotators saw it.
* Size bias: for each box of a cluster seen by two or more annotators,
  (log of its area − the median log area of the cluster's boxes) / 2, i.e. the
  log of the linear scale per side against the cluster's median box. The
  median (not the mean of the others) keeps one annotator drawing small boxes
  from making the others look large when three or more annotators saw the
  object; with two annotators the difference is split between them, since
  nothing tells which of the two is off. Negative: smaller boxes.
* Fused box: a cluster drawn by a majority (more than half) of the annotators
  who gave boxes on the image becomes one consensus box, the mean of its
  boxes' corners (weighted box fusion with equal weights: annotators give no
  confidences), labelled with its boxes' most common label.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class Boxes:
    """One annotator's boxes on one image: `xywh` (n, 4) float array and a label per box."""
    xywh: np.ndarray
    labels: tuple = ()

    def __len__(self) -> int:
        return len(self.xywh)

    @property
    def corners(self) -> np.ndarray:
        """(n, 4): x1, y1, x2, y2."""
        x, y, w, h = self.xywh.T
        return np.stack([x, y, x + w, y + h], axis=1)

    @property
    def areas(self) -> np.ndarray:
        return np.clip(self.xywh[:, 2], 0, None) * np.clip(self.xywh[:, 3], 0, None)


def as_boxes(value) -> Boxes | None:
    """Boxes from a `boxes` cell: a list of dicts / Rows / (x, y, w, h[, label]) tuples.
    None (no boxes given) stays None; an empty list means "nothing to box"."""
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    rows, labels = [], []
    for box in list(value):
        if box is None:
            continue
        if hasattr(box, "asDict"):
            box = box.asDict()
        if isinstance(box, dict):
            rows.append([box["x"], box["y"], box["width"], box["height"]])
            labels.append(box.get("label"))
        else:
            rows.append(list(box[:4]))
            labels.append(box[4] if len(box) > 4 else None)
    xywh = np.asarray(rows, dtype=float).reshape(-1, 4)
    return Boxes(xywh, tuple(labels))


def iou_matrix(a: Boxes, b: Boxes) -> np.ndarray:
    """IoU of every box of `a` with every box of `b`, (len(a), len(b))."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    ca, cb = a.corners, b.corners
    x1 = np.maximum(ca[:, None, 0], cb[None, :, 0])
    y1 = np.maximum(ca[:, None, 1], cb[None, :, 1])
    x2 = np.minimum(ca[:, None, 2], cb[None, :, 2])
    y2 = np.minimum(ca[:, None, 3], cb[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a.areas[:, None] + b.areas[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def iou(a, b) -> float:
    """IoU of two single boxes given as (x, y, width, height)."""
    return float(iou_matrix(Boxes(np.asarray([a], float)), Boxes(np.asarray([b], float)))[0, 0])


@dataclass
class PairMatch:
    """Matched pairs (index in a, index in b, IoU) and the boxes left unmatched on each side."""
    pairs: list = field(default_factory=list)
    unmatched_a: int = 0
    unmatched_b: int = 0

    @property
    def ious(self) -> list[float]:
        return [p[2] for p in self.pairs]

    def overlap_score(self, n_a: int, n_b: int) -> float:
        """Summed IoU of the matches / the larger box count: 1 for identical sets
        (and for two empty sets), 0 when nothing matches."""
        if max(n_a, n_b) == 0:
            return 1.0
        return float(sum(self.ious)) / max(n_a, n_b)


def match(a: Boxes, b: Boxes, min_iou: float) -> PairMatch:
    """Hungarian matching of two annotators' boxes at IoU >= `min_iou`."""
    scores = iou_matrix(a, b)
    if scores.size:
        for i, la in enumerate(a.labels or ()):
            for j, lb in enumerate(b.labels or ()):
                if la is not None and lb is not None and la != lb:
                    scores[i, j] = 0.0
        scores[scores < min_iou] = 0.0  # the best assignment among the pairs that may match
    pairs = []
    if scores.size:
        rows, cols = linear_sum_assignment(scores, maximize=True)
        pairs = [(int(i), int(j), float(scores[i, j])) for i, j in zip(rows, cols) if scores[i, j] >= min_iou]
    return PairMatch(pairs, len(a) - len(pairs), len(b) - len(pairs))


def pairwise_matches(boxes: dict, min_iou: float) -> dict:
    """{(annotator_a, annotator_b): PairMatch} for every pair (a < b) of annotators who gave boxes."""
    names = sorted(k for k, v in boxes.items() if v is not None)
    return {(a, b): match(boxes[a], boxes[b], min_iou)
            for i, a in enumerate(names) for b in names[i + 1:]}


def clusters(boxes: dict, matches: dict) -> list[list[tuple]]:
    """Connected components of the pairwise matches: lists of (annotator, box index).
    Boxes no other annotator matched form clusters of one."""
    parent: dict = {}

    def find(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for name, mine in boxes.items():
        if mine is not None:
            for i in range(len(mine)):
                parent[(name, i)] = (name, i)
    for (a, b), found in matches.items():
        for i, j, _ in found.pairs:
            ra, rb = find((a, i)), find((b, j))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict = {}
    for node in sorted(parent):
        groups.setdefault(find(node), []).append(node)
    return list(groups.values())


def size_bias_terms(boxes: dict, groups: list[list[tuple]]) -> dict[str, list[float]]:
    """{annotator: [(log area − median log area of the cluster) / 2, ...]} over the
    clusters seen by at least two annotators (one term per annotator and cluster)."""
    out: dict[str, list[float]] = {}
    for group in groups:
        per: dict[str, list[float]] = {}
        for name, i in group:
            area = float(boxes[name].areas[i])
            if area > 0:
                per.setdefault(name, []).append(np.log(area))
        if len(per) < 2:
            continue
        logs = {name: float(np.mean(v)) for name, v in per.items()}
        median = float(np.median(list(logs.values())))
        for name, value in logs.items():
            out.setdefault(name, []).append((value - median) / 2)
    return out


def fuse(boxes: dict, groups: list[list[tuple]]) -> list[dict]:
    """Consensus boxes: each cluster drawn by more than half of the annotators who
    gave boxes becomes the mean of its boxes' corners, with its most common label,
    the number of annotators behind it and their boxes' mean IoU with the fused box."""
    voters = sum(1 for v in boxes.values() if v is not None)
    fused = []
    for group in groups:
        names = {name for name, _ in group}
        if voters == 0 or len(names) * 2 <= voters:
            continue
        corners = np.array([boxes[name].corners[i] for name, i in group])
        x1, y1, x2, y2 = corners.mean(axis=0)
        labels = [boxes[name].labels[i] for name, i in group if boxes[name].labels
                  and boxes[name].labels[i] is not None]
        label = _most_common(labels)
        box = Boxes(np.array([[x1, y1, x2 - x1, y2 - y1]]))
        members = Boxes(np.array([boxes[name].xywh[i] for name, i in group]))
        fused.append({"x": float(x1), "y": float(y1), "width": float(x2 - x1), "height": float(y2 - y1),
                      "label": label, "n_annotators": len(names),
                      "mean_iou": float(iou_matrix(members, box).mean())})
    fused.sort(key=lambda b: (b["y"], b["x"]))
    return fused


def _most_common(values: list):
    """The most frequent value; on a tie the smallest of the tied values (deterministic)."""
    if not values:
        return None
    counts = Counter(values)
    top = max(counts.values())
    return sorted(v for v, c in counts.items() if c == top)[0]
