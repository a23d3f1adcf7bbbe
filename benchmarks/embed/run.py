"""Benchmark: images/s of udfs.embedding.embed_rows with the default encoder.

    .venv/bin/python benchmarks/embed/run.py [--files 128] [--batch-sizes 1,16,64]
                                             [--codecs native,j2k] [--threads N]

Writes `--files` synthetic 512x512 int16 CT files (CT_small.dcm's header as
template: a noisy elliptic water phantom with fat rim, lungs and a bone
insert, air outside, a circular field of view with PixelPaddingValue
outside) to a temp dir, once uncompressed ("native") and once re-encoded as
JPEG 2000 Lossless ("j2k", pylibjpeg-openjpeg; encoding not timed), then, in
one process, for every codec x batch size x prefetch on/off, times
`embed_rows` over all files (read through fsspec as make_embedder does,
preprocess, MobileNetV2 forward, L2 normalisation) after one warm-up pass.
Also times the two halves alone: preprocessing only (read + decode + window +
resize, one thread) and the model only (forward on ready inputs, the default
optimised TorchScript module and the eager module) per batch size, to show
which side bounds the pipeline. Prints markdown tables.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.uid import JPEG2000Lossless, generate_uid

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from dicom_triage.udfs.embedding import embed_rows, preprocess  # noqa: E402
from dicom_triage.udfs.encoders import get_encoder, load_encoder  # noqa: E402

TEMPLATE = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
PADDING = -2000


def phantom(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """HU image; NaN outside the circular field of view."""
    y, x = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    x = x + rng.uniform(-0.04, 0.04)
    y = y + rng.uniform(-0.04, 0.04)
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    a, b = rng.uniform(0.34, 0.44), rng.uniform(0.26, 0.36)
    outer = (x / a) ** 2 + (y / b) ** 2 < 1
    hu[outer] = -90                                                   # fat rim
    hu[(x / (a - 0.03)) ** 2 + (y / (b - 0.03)) ** 2 < 1] = 40       # soft tissue
    for cx in (-0.17, 0.17):
        hu[((x - cx) / 0.1) ** 2 + (y / rng.uniform(0.12, 0.18)) ** 2 < 1] = -850   # lungs
    hu[(x ** 2 + (y - 0.2) ** 2 < 0.04 ** 2)] = 1200                 # spine
    hu += rng.normal(0, rng.uniform(8, 20), hu.shape).astype(np.float32)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    hu[xx ** 2 + yy ** 2 > 0.5 ** 2] = np.nan
    return hu


def ct_bytes(hu: np.ndarray) -> bytes:
    ds = pydicom.dcmread(TEMPLATE)
    stored = np.where(np.isnan(hu), PADDING, np.rint(hu) + 1024).astype(np.int16)
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelPaddingValue = PADDING
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OW"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def j2k(blob: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(blob))
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def make_files(folder: Path, count: int, codecs: list[str]) -> dict[str, list[dict]]:
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict]] = {c: [] for c in codecs}
    for i in range(count):
        native = ct_bytes(phantom(rng))
        for codec in codecs:
            path = folder / codec / f"ct_{i:04d}.dcm"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(native if codec == "native" else j2k(native))
            rows[codec].append({"path": str(path), "sop_instance_uid": str(i), "has_preamble": True})
    return rows


def read_object(path: str) -> bytes:
    from dicom_triage.jobs.storage import read_bytes  # what the embed stage's executors read with
    return read_bytes(path, {})


def run_pipeline(rows, encoder, batch_size, prefetch) -> float:
    started = time.perf_counter()
    out = list(embed_rows(rows, read_object, encoder, batch_size, prefetch))
    elapsed = time.perf_counter() - started
    failed = [o for o in out if o["embedding"] is None]
    assert not failed, failed[0]["embedding_error"]
    return len(rows) / elapsed


def preprocess_rate(rows) -> float:
    started = time.perf_counter()
    for row in rows:
        preprocess(read_object(row["path"]))
    return len(rows) / (time.perf_counter() - started)


def model_rate(encoder, inputs: np.ndarray, batch_size: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(inputs), batch_size):
        encoder.embed(inputs[i:i + batch_size])
    return len(inputs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=128)
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--codecs", default="native,j2k")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    codecs = args.codecs.split(",")

    total = time.perf_counter()
    encoder = get_encoder("mobilenetv2-imagenet", "cpu", args.threads or None)
    print(f"# embed benchmark: {args.files} files 512x512 int16 CT, encoder {encoder.name}, "
          f"device {encoder.device}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as tmp:
        started = time.perf_counter()
        rows = make_files(Path(tmp), args.files, codecs)
        print(f"# wrote {args.files} files per codec in {time.perf_counter() - started:.1f} s "
              + ", ".join(f"{c}: {os.path.getsize(rows[c][0]['path']) / 1e6:.2f} MB/file" for c in codecs))

        # the two halves alone
        inputs = np.stack([preprocess(read_object(r["path"])) for r in rows[codecs[0]][:64]])
        model_rate(encoder, inputs[:max(sizes)], max(sizes))        # warm-up (oneDNN primitives)
        print("\n| part | " + " | ".join(f"batch {b}" for b in sizes) + " |")
        print("|---|" + "---:|" * len(sizes))
        print("| model only, optimised (default) (images/s) | " + " | ".join(
            f"{model_rate(encoder, inputs, b):.1f}" for b in sizes) + " |")
        eager = load_encoder("mobilenetv2-imagenet", "cpu", args.threads or None, optimize=False)
        model_rate(eager, inputs[:max(sizes)], max(sizes))
        print("| model only, eager torch (images/s) | " + " | ".join(
            f"{model_rate(eager, inputs, b):.1f}" for b in sizes) + " |")
        del eager
        for codec in codecs:
            rate = preprocess_rate(rows[codec])
            print(f"| read + preprocess only, {codec}, 1 thread (images/s) | {rate:.1f} "
                  + "| " * (len(sizes) - 1) + "|")

        print("\n| codec | batch size | prefetch off (images/s) | prefetch on (images/s) | speed-up |")
        print("|---|---:|---:|---:|---:|")
        for codec in codecs:
            run_pipeline(rows[codec][:16], encoder, 16, True)          # warm-up
            for batch_size in sizes:
                off = run_pipeline(rows[codec], encoder, batch_size, False)
                on = run_pipeline(rows[codec], encoder, batch_size, True)
                print(f"| {codec} | {batch_size} | {off:.1f} | {on:.1f} | {on / off:.2f}x |", flush=True)
    print(f"\n# total {time.perf_counter() - total:.0f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
