"""Benchmark: pixel decoding vs. decoding + all statistics vs. a naive numpy version.

    .venv/bin/python benchmarks/pixels/run.py [--files 200] [--frames 500] [--repeat 3]
                                              [--syntaxes explicit,rle,jpegls,j2k]

Writes synthetic 512x512 16-bit CT files (CT_small.dcm's header as template, a
noisy phantom in HU, padding outside the field of view) to a temp dir, then in
one run times, per image:
  (a) decode only: dcmread + every frame (pydicom iter_pixels);
  (b) udfs.pixel_stats.measure_file: decode + all statistics + thumbnail;
  (c) a straightforward numpy version of the value statistics: pixel_array,
      apply_modality_lut, padding removed, 9 separate np.percentile calls,
      mean/std/min/max, np.histogram, entropy of the windowed 256-bin histogram.
and checks (b)'s percentiles equal (c)'s. The same images are timed again in
each lossless compressed transfer syntax pydicom can encode here (RLE Lossless
with pydicom's own encoder; JPEG-LS and JPEG 2000 lossless when the pyjpegls /
pylibjpeg-openjpeg encoders are installed; a syntax without an encoder is
skipped with a note). Then, in a subprocess, the peak memory of measure_file on
one uncompressed 500-frame 512x512 16-bit object.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import encoders, iter_pixels
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless,
                         generate_uid)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from dicom_triage.udfs.pixel_stats import PERCENTILES, measure_file  # noqa: E402

TEMPLATE = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
PADDING = -2000          # stored value outside the field of view (CT_small's PixelPaddingValue)
# --syntaxes name: (transfer syntax, encoder or None for the uncompressed files as written)
SYNTAXES = {
    "explicit": (ExplicitVRLittleEndian, None),
    "rle": (RLELossless, encoders.RLELosslessEncoder),
    "jpegls": (JPEGLSLossless, encoders.JPEGLSLosslessEncoder),
    "j2k": (JPEG2000Lossless, encoders.JPEG2000LosslessEncoder),
}


def phantom(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """HU image: air, a water body with fat/lung/bone inserts, Gaussian noise,
    and the corners outside a circular field of view set to NaN (padding)."""
    y, x = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    a, b = rng.uniform(0.36, 0.44), rng.uniform(0.28, 0.36)
    body = (x / a) ** 2 + (y / b) ** 2 < 1
    hu[body] = 40
    hu[((x / a) ** 2 + (y / b) ** 2 < 1) & ((x / (a - 0.03)) ** 2 + (y / (b - 0.03)) ** 2 >= 1)] = -90
    for cx in (-0.17, 0.17):
        hu[((x - cx) / 0.1) ** 2 + (y / 0.16) ** 2 < 1] = -850
    hu[(x ** 2 + (y - 0.2) ** 2 < 0.04 ** 2)] = 1200
    hu += rng.normal(0, rng.uniform(8, 20), hu.shape).astype(np.float32)
    hu[x ** 2 + y ** 2 > 0.5 ** 2] = np.nan
    return hu


def write_ct(path: Path, hu: np.ndarray, frames: int = 1) -> None:
    ds = pydicom.dcmread(TEMPLATE)
    stored = np.where(np.isnan(hu), PADDING, np.rint(hu) + 1024).astype(np.int16)
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelPaddingValue = PADDING
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if frames > 1:
        ds.NumberOfFrames = frames
        shifts = np.arange(frames) % 7 - 3
        ds.PixelData = b"".join(np.roll(stored, int(s), axis=1).tobytes() for s in shifts)
    else:
        ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


def encode(blob: bytes, ts) -> bytes:
    """The uncompressed file `blob` re-encoded in the lossless syntax `ts`."""
    ds = pydicom.dcmread(io.BytesIO(blob))
    ds.compress(ts, generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def decode_only(data: bytes) -> int:
    ds = pydicom.dcmread(io.BytesIO(data))
    return sum(frame.size for frame in iter_pixels(ds))


def naive(data: bytes) -> dict:
    ds = pydicom.dcmread(io.BytesIO(data))
    stored = ds.pixel_array
    hu = apply_modality_lut(stored, ds)
    values = hu[stored != ds.PixelPaddingValue]
    out = {f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES}
    out.update(min=float(values.min()), max=float(values.max()),
               mean=float(values.mean()), std=float(values.std()))
    out["histogram"] = np.histogram(np.clip(values, -1024, 3072), 64, range=(-1024, 3072))[0]
    lo, hi = out["p0.5"], out["p99.5"]
    counts = np.histogram(np.clip(values, lo, hi), 256, range=(lo, hi))[0]
    p = counts[counts > 0] / counts.sum()
    out["entropy_bits"] = float(-(p * np.log2(p)).sum())
    return out


def phase_breakdown(blob: bytes, repeat: int = 200) -> dict[str, float]:
    """ms per call of measure_file's main phases on one image (each timed alone)."""
    import hashlib

    from dicom_triage.udfs import pixel_stats as ps
    from dicom_triage.udfs.pixels import describe, iter_stored_frames, padding_mask
    ds = pydicom.dcmread(io.BytesIO(blob), defer_size=ps.DEFER_BYTES)
    info = describe(ds)
    frame = next(iter_stored_frames(ds, blob, info))
    hist = ps._Histogram(frame, info)
    counts = hist.add(frame)
    dist = hist.distribution()
    mask = padding_mask(frame, info)
    phases = {
        "dcmread": lambda: pydicom.dcmread(io.BytesIO(blob), defer_size=ps.DEFER_BYTES),
        "describe + decode": lambda: list(iter_stored_frames(
            pydicom.dcmread(io.BytesIO(blob), defer_size=ps.DEFER_BYTES), blob)),
        "sha256 of the pixels": lambda: hashlib.sha256(ps.canonical_bytes(frame)).hexdigest(),
        "np.bincount": lambda: hist.add(frame),
        "distribution + value stats": lambda: ps.value_stats(hist.distribution(counts), "HU"),
        "image measures + thumbnail": lambda: ps._image_measures(   # (it fills padding in place)
            info, dist, dist, frame, frame.copy(), mask, 128),
    }
    out = {}
    for name, func in phases.items():
        func()
        t0 = time.perf_counter()
        for _ in range(repeat):
            func()
        out[name] = (time.perf_counter() - t0) / repeat * 1e3
    out["describe + decode"] -= out["dcmread"]
    return out


def timed(func, blobs: list[bytes], repeat: int) -> float:
    """Best-of-`repeat` seconds per image over all blobs."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for blob in blobs:
            func(blob)
        best = min(best, time.perf_counter() - t0)
    return best / len(blobs)


MEMORY_PROBE = r"""
import io, json, sys, tracemalloc, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[2])
import pydicom
from dicom_triage.udfs.pixel_stats import measure_file, measure_pixels

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

data = open(sys.argv[1], "rb").read()
measure_file(data[:4096])                   # imports and first-call set-up outside the measure
run = {"measure_file": lambda: measure_file(data),
       "dcmread_no_defer": lambda: measure_pixels(pydicom.dcmread(io.BytesIO(data)))}[sys.argv[3]]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                            # reset the peak RSS (VmHWM) to the current RSS
rss_before = status("VmRSS:")
tracemalloc.start()
result = run()
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"file_bytes": len(data), "tracemalloc_peak": peak,
                  "rss_peak_delta": status("VmHWM:") - rss_before, "frames": result.get("frames"),
                  "error": result.get("pixel_error_message")}))
"""


def memory_probe(path: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(ROOT), mode],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--frames", type=int, default=500, help="frames of the memory-probe object")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--syntaxes", default=",".join(SYNTAXES),
                        help=f"comma-separated, of {', '.join(SYNTAXES)} (default: all; "
                             "those without an encoder here are skipped)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.files):
            paths.append(Path(tmp) / f"ct_{i:04d}.dcm")
            write_ct(paths[-1], phantom(rng))
        blobs = [p.read_bytes() for p in paths]

        print(f"files: {args.files} x 512x512 int16 CT (same phantoms in every syntax), "
              f"best of {args.repeat} runs, one process, OPENBLAS_CORETYPE="
              f"{os.environ.get('OPENBLAS_CORETYPE', '')!r}")
        reference = pydicom.dcmread(io.BytesIO(blobs[0])).pixel_array
        rows = []
        for name in args.syntaxes.split(","):
            ts, encoder = SYNTAXES[name]
            if encoder is not None and not encoder.is_available:
                print(f"{ts.name}: SKIPPED, no encoder available here "
                      f"({'; '.join(encoder.missing_dependencies)})")
                continue
            t0 = time.perf_counter()
            ts_blobs = blobs if encoder is None else [encode(b, ts) for b in blobs]
            t_encode = time.perf_counter() - t0
            # lossless: decoded pixels equal the uncompressed ones
            assert np.array_equal(pydicom.dcmread(io.BytesIO(ts_blobs[0])).pixel_array, reference), ts.name
            # correctness guard: the fast path equals the naive one
            fast, slow = measure_file(ts_blobs[0]), naive(ts_blobs[0])
            assert "pixel_error" not in fast, (ts.name, fast)
            for q, key in zip(PERCENTILES, ("p0_5", "p1", "p5", "p25", "p50", "p75", "p95", "p99", "p99_5")):
                assert np.isclose(fast[key], slow[f"p{q}"], rtol=0, atol=1e-9), (ts.name, key, fast[key], slow[f"p{q}"])
            assert fast["histogram"] == slow["histogram"].tolist(), ts.name
            assert np.isclose(fast["entropy_bits"], slow["entropy_bits"]), ts.name

            t_a = timed(decode_only, ts_blobs, args.repeat)
            t_b = timed(measure_file, ts_blobs, args.repeat)
            t_c = timed(naive, ts_blobs, args.repeat)
            size = sum(map(len, ts_blobs)) / len(ts_blobs)
            rows.append((ts.name, size, t_a, t_b, t_c))
            print(f"{ts.name}: {size / 1e6:.3f} MB/file on average"
                  + (f" (encoded in {t_encode:.1f} s, not timed below)" if encoder else ""))
            for label, t in (("(a) decode only", t_a), ("(b) measure_file", t_b),
                             ("(c) naive numpy stats", t_c)):
                print(f"  {label:24s} {t * 1e3:7.2f} ms/image  {1 / t:8.1f} images/s")
            print(f"  (b)/(a) = {t_b / t_a:.2f}   target <= 1.3")
            print(f"  (c)/(b) = {t_c / t_b:.2f}   target >= 5")
            if encoder is None:
                print("  phases of (b), each timed alone on one image (ms):")
                for phase, ms in phase_breakdown(blobs[0]).items():
                    print(f"    {phase:28s} {ms:6.3f}")
            del ts_blobs

        print("\n| transfer syntax | MB/file | (a) ms | (b) ms | (c) ms | (b)/(a) | (c)/(b) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, size, t_a, t_b, t_c in rows:
            print(f"| {name} | {size / 1e6:.3f} | {t_a * 1e3:.2f} | {t_b * 1e3:.2f} | "
                  f"{t_c * 1e3:.2f} | {t_b / t_a:.2f} | {t_c / t_b:.2f} |")
        print()

        big = Path(tmp) / "multiframe.dcm"
        write_ct(big, phantom(rng), frames=args.frames)
        big_blob = big.read_bytes()
        t_a_big, t_b_big = timed(decode_only, [big_blob], 1), timed(measure_file, [big_blob], 1)
        print(f"{args.frames}-frame object: (a) {t_a_big:.2f} s, (b) {t_b_big:.2f} s, "
              f"(b)/(a) = {t_b_big / t_a_big:.2f}, (b) {t_b_big / args.frames * 1e3:.2f} ms/frame")
        del big_blob
        print(f"memory on one {args.frames}-frame 512x512 int16 object "
              f"({big.stat().st_size / 2**20:.1f} MiB file; its bytes already in memory), "
              "peak above the start:")
        for mode, label in (("measure_file", "measure_file (pixel element deferred)"),
                            ("dcmread_no_defer", "dcmread without defer + measure_pixels")):
            mem = memory_probe(big, mode)
            print(f"  {label:40s} tracemalloc {mem['tracemalloc_peak'] / 2**20:7.1f} MiB "
                  f"({mem['tracemalloc_peak'] / mem['file_bytes']:.3f} x file)   RSS "
                  f"{mem['rss_peak_delta'] / 2**20:7.1f} MiB "
                  f"({mem['rss_peak_delta'] / mem['file_bytes']:.3f} x file)"
                  + (f"  ERROR {mem['error']}" if mem["error"] else ""))


if __name__ == "__main__":
    main()
