"""python -m tests.deliveries SHAPE OUT [--seed N] [--scale N]"""
from __future__ import annotations

import argparse
import sys

from . import SHAPES, generate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deliveries",
                                     description="Write an evaluation delivery with ground truth.")
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1, help="multiplies the number of patients")
    args = parser.parse_args(argv)
    doc = generate(args.shape, args.out, seed=args.seed, scale=args.scale)
    counts = doc["counts"]
    print(f"{args.shape}: {counts['objects']} objects, {counts['defective']} with a defect "
          f"({counts['defective'] / max(counts['objects'], 1):.0%}), {doc['seconds']} s -> {args.out}")
    for code, n in counts["per_reason"].items():
        print(f"  {code:26s} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
