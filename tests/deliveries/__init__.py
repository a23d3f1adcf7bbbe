"""Evaluation deliveries with ground truth, independent of the demo generator.

`generate(shape, out, seed=0, scale=1)` writes a delivery of DICOM files under
`out` plus `_ground_truth.csv` and `_ground_truth.json`, and returns the JSON
document (expectations, counts per category / reason / site, planted
identifiers, conventions). The same shape, seed and scale give the same bytes.

Shapes: `brain-mr`, `ct`, `chest-xray` (see `SHAPES`). Command line:
`python -m tests.deliveries SHAPE OUT [--seed N] [--scale N]`; checking a
written delivery against its truth: `python -m tests.deliveries.verify OUT`.

Modules:
- writing: `writer` (Part 10 bytes with element spans), `encoders` and
  `jpeg_lossless` (pixel encodings), `modules` (DICOM modules), `layout` (paths),
  `sites` (vendors and de-identification schemes), `ids` (seeded randomness, UIDs)
- anatomy: `head` (MNI152-based head phantom), `mr` (MR contrast, coils, noise),
  `torso` (chest / abdomen phantom in HU), `ct_images`, `xray`, `enhanced`
  (Enhanced CT multi-frame), `foreign` (real files from installed packages)
- defects: `image_defects`, `file_defects`, `geometry_defects`, `ops`, `extras`
- rosters: `brain_mr`, `ct`, `chest_xray` (with `series`, `mr_protocols`, `common`)
- truth: `truth`, `delivery`; checks: `verify`
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

SHAPES = {"brain-mr": "brain_mr", "ct": "ct", "chest-xray": "chest_xray"}


def generate(shape: str, out, seed: int = 0, scale: int = 1, sites=None) -> dict:
    """Write the delivery and its truth files; return the truth JSON document.

    `sites` (folder names such as "SITE_A") writes only those sites' objects,
    byte for byte as a full run writes them (sites do not share state); tests use
    it to check determinism cheaply."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; one of {sorted(SHAPES)}")
    if scale < 1:
        raise ValueError("scale must be at least 1")
    module = importlib.import_module(f"{__name__}.{SHAPES[shape]}")
    started = time.monotonic()
    delivery = module.generate(Path(out), seed=seed, scale=scale, sites=sites)
    meta = {"shape": shape, "seed": int(seed), "scale": int(scale),
            "expectations": module.EXPECTATIONS}
    doc = delivery.truth.write(Path(out), meta)
    doc["seconds"] = round(time.monotonic() - started, 1)
    return doc
