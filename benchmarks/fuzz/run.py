"""Fuzz run: mutated real DICOM files through the header, pixel and embedding paths.

    .venv/bin/python benchmarks/fuzz/run.py [--count 3000] [--seed 1] [--time-bound 20]
                                            [--memory-cap-mib 3072] [--workers 2]
                                            [--kinds bitflip,truncate,...] [--json PATH]
                                            [--readme PATH]

Seeds: pydicom's own test files and the demo delivery (`generate_delivery(...,
seed=7)`, written to a temporary folder). Mutations and the worker harness:
tests/fuzzing.py. Every input runs in a worker process whose address space is
capped (RLIMIT_AS) through what the stages run per object: the ingest batch
parser, the pixels stage's per-row measure (both with `--time-bound` as their
own time limit), and the embed stage's decode of one frame. Outcomes:
`row` (every path gave a data or error row), `exceeded_time` (a path ran past
the bound, or the harness killed the worker at 3 x bound + grace),
`exceeded_memory` (MemoryError, or peak RSS over the cap), `crashed` (a path
raised, or the worker died).

Writes benchmarks/results/fuzz.json and the outcome table into
benchmarks/fuzz/README.md (between the RESULTS markers).
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import fuzzing as fz  # noqa: E402

OUTCOMES = ("row", "exceeded_time", "exceeded_memory", "crashed")
BEGIN, END = "<!-- RESULTS BEGIN -->", "<!-- RESULTS END -->"


def code_of(kind_value: tuple[str, str | None]) -> str:
    """'data' or the error code of one path's row."""
    kind, value = kind_value
    if kind == "row":
        return "data"
    match = re.match(r"([A-Z_]{4,})", str(value))
    return match.group(1) if match else "error"


def summarise(results: list[dict], limits: fz.Limits) -> dict:
    kinds: dict[str, dict] = {}
    for kind in sorted({r["kind"] for r in results}, key=fz.KINDS.index):
        rows = [r for r in results if r["kind"] == kind]
        outcomes = collections.Counter(r["outcome"] for r in rows)
        paths = {p: dict(collections.Counter(code_of(r["paths"][p]) for r in rows if r["paths"]))
                 for p in ("header", "pixels", "embed")}
        kinds[kind] = {"inputs": len(rows), "outcomes": {o: outcomes.get(o, 0) for o in OUTCOMES},
                       "rows_by_code": paths}
    slowest = max(results, key=lambda r: max(r["path_seconds"].values(), default=r["seconds"]))
    peak = max(results, key=lambda r: r["peak_rss"] or 0)
    return {
        "per_kind": kinds,
        "total": {o: sum(k["outcomes"][o] for k in kinds.values()) for o in OUTCOMES},
        "slowest_path_seconds": max(slowest["path_seconds"].values(), default=slowest["seconds"]),
        "slowest_input": {k: slowest[k] for k in ("kind", "seed", "detail", "seconds", "path_seconds")},
        "peak_rss_bytes": peak["peak_rss"],
        "peak_rss_input": {k: peak[k] for k in ("kind", "seed", "detail")},
        "failures": [{k: r.get(k) for k in ("kind", "seed", "detail", "outcome", "message", "seconds")}
                     for r in results if r["outcome"] != "row"],
    }


def table(summary: dict, command: str, limits: fz.Limits, seconds: float, inputs: int) -> str:
    lines = [f"`{command}`", "",
             f"{inputs} inputs in {seconds:.0f} s; time bound {limits.time_bound:g} s per path, "
             f"memory cap {limits.memory_cap // 2**20} MiB per worker.", "",
             "| kind | inputs | row | exceeded time | exceeded memory | crashed | header rows | pixel rows | embed rows |",
             "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for kind, k in summary["per_kind"].items():
        o = k["outcomes"]
        cells = []
        for p in ("header", "pixels", "embed"):
            codes = sorted(k["rows_by_code"][p].items(), key=lambda kv: -kv[1])
            cells.append(", ".join(f"{c} {n}" for c, n in codes))
        lines.append(f"| {kind} | {k['inputs']} | {o['row']} | {o['exceeded_time']} | {o['exceeded_memory']} "
                     f"| {o['crashed']} | {cells[0]} | {cells[1]} | {cells[2]} |")
    t = summary["total"]
    lines.append(f"| **all** | {inputs} | {t['row']} | {t['exceeded_time']} | {t['exceeded_memory']} "
                 f"| {t['crashed']} | | | |")
    s = summary["slowest_input"]
    p = summary["peak_rss_input"]
    lines += ["",
              f"Slowest path: {summary['slowest_path_seconds']:.2f} s ({s['kind']}, {s['seed']}: {s['detail']}).",
              f"Peak RSS of a worker: {summary['peak_rss_bytes'] / 2**20:.0f} MiB "
              f"({p['kind']}, {p['seed']}: {p['detail']})."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=3000, help="mutated inputs (kinds in turn)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-bound", type=float, default=20.0, help="seconds per path and input")
    ap.add_argument("--memory-cap-mib", type=int, default=3072, help="RLIMIT_AS of each worker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kinds", default=",".join(fz.KINDS))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"))
    ap.add_argument("--readme", default=str(ROOT / "benchmarks" / "fuzz" / "README.md"))
    args = ap.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(fz.KINDS)
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}; choose from {fz.KINDS}")
    limits = fz.Limits(time_bound=args.time_bound, grace=10.0, memory_cap=args.memory_cap_mib * 2**20)
    command = ".venv/bin/python benchmarks/fuzz/run.py " + " ".join(sys.argv[1:])

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        seeds = fz.pydicom_seeds() + fz.demo_seeds(tmp, seed=7)
    print(f"{len(seeds)} seed files; generating {args.count} mutants", flush=True)
    items = list(fz.mutants(seeds, args.count, args.seed, kinds))
    started = time.perf_counter()

    def progress(done: int) -> None:
        if done % 250 == 0 or done == len(items):
            print(f"  {done}/{len(items)} in {time.perf_counter() - started:.0f} s", flush=True)

    results = fz.run_all(items, limits, args.workers, progress)
    seconds = time.perf_counter() - started
    summary = summarise(results, limits)
    report = {
        "benchmark": "fuzz: mutated DICOM files through header, pixel and embedding paths",
        "command": command,
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "pydicom": __import__("pydicom").__version__,
                    "load_average_at_start": [round(v, 2) for v in load_start],
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        "settings": {"count": args.count, "seed": args.seed, "kinds": list(kinds),
                     "time_bound_seconds": limits.time_bound, "memory_cap_bytes": limits.memory_cap,
                     "workers": args.workers, "seed_files": len(seeds)},
        "seconds": round(seconds, 1),
        **summary,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = table(summary, command, limits, seconds, len(items))
    print(text)
    readme = Path(args.readme)
    if readme.exists() and BEGIN in readme.read_text():
        before, rest = readme.read_text().split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        readme.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")
    return 0 if summary["total"]["row"] == len(items) else 1


if __name__ == "__main__":
    sys.exit(main())
