"""Where the ingest parse's time goes, in one process (no Spark), per file.

    .venv/bin/python benchmarks/ingest/profile_parse.py [--files 300] [--dir DELIVERY] [--top 25]

On the same synthetic CT files as run.py (or an existing delivery folder),
times per file, one core, best of --repeat passes:
  - udfs.headers.parse_object (what each Spark task runs per file), and its
    stages replayed in the same order: header read (BlockReader + dcmread),
    truncation/pixel checks, promoted typed columns + keyed hashes,
    header_json, json.dumps;
  - the whole mapInArrow batch function (make_batch_parser) on one batch, so
    the per-batch Arrow assembly shows as the difference;
  - the whole-file baseline's Python work: read the file, dcmread(BytesIO,
    stop_before_pixels), ds.to_json();
  - pixels-style dcmread(open(path), defer_size=1000, stop_before_pixels) +
    to_json_dict + json.dumps;
  - an experiment: dcmread through io.BufferedReader(BlockReader) instead of
    the bare BlockReader (same bytes fetched, far fewer Python-level reads).
Then cProfile of parse_object over all files (top functions by own time).
Nothing here changes the project; it only calls it.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import pyarrow as pa  # noqa: E402
import pydicom  # noqa: E402

from delivery import generate  # noqa: E402
from dicom_triage.jobs.config import load_settings  # noqa: E402
from dicom_triage.jobs.runtime import header_policy  # noqa: E402
from dicom_triage.jobs.storage import fetcher, full_uri, filesystem, range_reader  # noqa: E402
from dicom_triage.udfs import headers as H  # noqa: E402
from dicom_triage.udfs.identifiers import keyed_hash  # noqa: E402
from dicom_triage.udfs.ingest_batch import make_batch_parser  # noqa: E402
from dicom_triage.udfs.object_reader import BlockReader  # noqa: E402

warnings.simplefilter("ignore")
SECRET = b"benchmark-secret-not-for-real-data"


def staged(path: str, size: int, policy, clock: dict, buffered: bool = False) -> None:
    """parse_object's successful path, stage by stage (same calls, same order)."""
    t0 = time.perf_counter()
    reader = BlockReader(fetcher(path), size, policy.first_block_bytes, policy.max_block_bytes,
                         policy.max_header_bytes)
    head = reader.read(132)
    reader.seek(0)
    source = reader
    if buffered:
        reader.name = None  # BufferedReader.name asks the raw object; pydicom reads it
        source = io.BufferedReader(reader, policy.first_block_bytes)
    ds = pydicom.dcmread(source, stop_before_pixels=True, defer_size=policy.defer_size_bytes,
                         force=head[128:132] != b"DICM")
    stop = source.tell()
    t1 = time.perf_counter()
    assert H._truncation(ds, reader, stop) is None and H._has_pixel_tag(ds, reader, stop)
    t2 = time.perf_counter()
    row = {}
    for keyword, kind in H.PROMOTED:
        row[keyword] = H._typed(ds, keyword, kind)
    ts = ds.file_meta.TransferSyntaxUID
    row["sop_class_name"] = pydicom.uid.UID(row["SOPClassUID"]).name
    row["patient_key"] = keyed_hash(policy.secret, H._text(ds, "PatientID"))
    row["accession_key"] = keyed_hash(policy.secret, H._text(ds, "AccessionNumber"))
    row["identifiers_present"] = sorted(kw for kw in policy.hash_keywords if H._text(ds, kw))
    t3 = time.perf_counter()
    header = H.header_json(ds, policy)
    t4 = time.perf_counter()
    json.dumps(header, separators=(",", ":"), ensure_ascii=False, default=str)
    t5 = time.perf_counter()
    for name, dt_ in (("read header (BlockReader + dcmread)", t1 - t0), ("truncation / pixel checks", t2 - t1),
                      ("promoted typed columns + keyed hashes", t3 - t2), ("header_json", t4 - t3),
                      ("json.dumps", t5 - t4)):
        clock[name] = clock.get(name, 0.0) + dt_
    clock["_bytes"] = clock.get("_bytes", 0) + reader.bytes_fetched
    clock["_requests"] = clock.get("_requests", 0) + reader.requests
    del ts


def whole_file(path: str) -> None:
    with open(path, "rb") as handle:
        content = handle.read()
    ds = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
    ds.to_json()


def pixels_style(path: str) -> None:
    with pydicom.dcmread(open(path, "rb"), defer_size=1000, stop_before_pixels=True) as ds:
        js = ds.to_json_dict()
        js.pop("7FE00010", None)
        json.dumps(js)


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--dir", help="an existing delivery folder (default: generate --files into a temp folder)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    tmp = None
    if args.dir:
        root = Path(args.dir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-ingest-profile-")
        root = Path(tmp.name) / "delivery"
        generate(root, args.files)
    paths = sorted(str(p) for p in root.rglob("*.dcm"))[: args.files]
    sizes = {p: os.path.getsize(p) for p in paths}
    uris = {p: full_uri(filesystem(p)[0], p) for p in paths}
    n = len(paths)
    policy = header_policy(load_settings(), SECRET)

    def run_parse():
        for p in paths:
            row = H.parse_object(fetcher(uris[p]), sizes[p], policy)
            assert row["error_code"] is None, row

    for p in paths[:20]:  # warm imports and pydicom's dictionaries
        H.parse_object(fetcher(uris[p]), sizes[p], policy)
        whole_file(p)
        pixels_style(p)

    per = {}
    per["parse_object (a, per file)"] = best_of(args.repeat, run_parse)

    listing = pa.RecordBatch.from_pylist([
        {"path": uris[p], "relative_path": p, "site": None, "size_bytes": sizes[p], "modified_at": None,
         "etag": None} for p in paths])
    from pyspark.sql.pandas.types import to_arrow_schema
    from dicom_triage.schemas.ingest import PARSED
    batch_fn = make_batch_parser(policy, range_reader({}), "bench", __import__("datetime").datetime.now(), to_arrow_schema(PARSED))
    per["make_batch_parser batch (a incl. Arrow rows)"] = best_of(args.repeat, lambda: list(batch_fn([listing])))
    per["whole file: read + dcmread(BytesIO) + to_json (b)"] = best_of(
        args.repeat, lambda: [whole_file(p) for p in paths])
    per["pixels-style dcmread(open(path)) + to_json_dict (c)"] = best_of(
        args.repeat, lambda: [pixels_style(p) for p in paths])

    stages: dict = {}
    best_total = float("inf")
    for _ in range(args.repeat):
        clock: dict = {}
        for p in paths:
            staged(uris[p], sizes[p], policy, clock)
        total = sum(v for k, v in clock.items() if not k.startswith("_"))
        if total < best_total:
            best_total, stages = total, clock
    buffered: dict = {}
    best_buffered = float("inf")
    for _ in range(args.repeat):
        clock = {}
        for p in paths:
            staged(uris[p], sizes[p], policy, clock, buffered=True)
        total = sum(v for k, v in clock.items() if not k.startswith("_"))
        if total < best_buffered:
            best_buffered, buffered = total, clock

    print(f"{n} files, one process, best of {args.repeat}; ms per file\n")
    for name, seconds in per.items():
        print(f"  {seconds / n * 1000:7.2f}  {name}")
    print(f"\nparse_object's stages (replayed, same order), ms per file "
          f"(header: {stages['_bytes'] / n:.0f} bytes in {stages['_requests'] / n:.1f} requests per file):")
    for name, seconds in stages.items():
        if not name.startswith("_"):
            print(f"  {seconds / n * 1000:7.2f}  {seconds / best_total:5.0%}  {name}")
    name = "read header (BlockReader + dcmread)"
    print(f"\nexperiment: dcmread through io.BufferedReader(BlockReader): {buffered[name] / n * 1000:.2f} ms "
          f"vs {stages[name] / n * 1000:.2f} ms per file for the header read "
          f"(bytes fetched {buffered['_bytes'] / n:.0f} vs {stages['_bytes'] / n:.0f})")

    profile = cProfile.Profile()
    profile.enable()
    run_parse()
    profile.disable()
    print(f"\ncProfile of parse_object over {n} files, top {args.top} by own time:")
    pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(args.top)
    print(f"top {args.top} by cumulative time:")
    pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(args.top)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
