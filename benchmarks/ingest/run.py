"""Benchmark: the ingest header parse vs. reading whole files, on the same delivery.

    .venv/bin/python benchmarks/ingest/run.py [--files 2000] [--repeat 3] [--out DIR]
                                              [--no-s3] [--no-pixels-path] [--json PATH]

Writes a synthetic CT delivery (512x512 16-bit slices, CT_small.dcm's header as
template, series of ~100 slices, ~519 KiB per file; see delivery.py) and then,
in one run, on one local Spark session (local[2]), times over the same files:

  (a) this project's ingest parse: list_objects -> listing_frame -> repartition
      -> mapInArrow(make_batch_parser(...), PARSED), written to the `noop` sink.
      Bytes read per file: mean `header_bytes_read`.
  (b) whole files: spark.read.format("binaryFile") (recursiveFileLookup) ->
      mapInPandas that runs pydicom.dcmread(BytesIO(content), stop_before_pixels)
      and returns SOPInstanceUID, Modality, Rows, Columns, PixelSpacing and the
      header as DICOM JSON (ds.to_json()), written to `noop`. Bytes read per
      file: the file size (binaryFile reads every byte into `content`).
  (c) extra, for context (--no-pixels-path to skip): what the pixels
      accelerator's code does today (dbx.pixels Catalog + DicomMetaExtractor):
      binaryFile listing with `content` dropped, then per path
      dcmread(open(path), defer_size=1000, stop_before_pixels=True) and
      to_json_dict minus pixel/overlay data. Bytes read: counted at the file
      object (local) or by the HTTP counter (S3).

Each variant runs once as warm-up (that pass also collects the byte counts and
checks that all variants read the same SOPInstanceUIDs), then --repeat timed
passes alternating a/b(/c). Reported: median files/s, bytes read per file and
the ratios. With --s3 (default) the files are also uploaded to a moto S3 server
on loopback and (a) and (c) are timed there; (b) cannot run there (Spark's
binaryFile has no s3:// filesystem without hadoop-aws; the error is recorded).
Bytes over HTTP are counted by a byte-counting TCP proxy in a separate,
untimed pass.

Results: a table on stdout, JSON at benchmarks/results/ingest.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

# Before anything starts the JVM or a boto client: loopback Spark, the same
# interpreter for workers, test credentials for the moto server.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ["AWS_ACCESS_KEY_ID"] = "test"
os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

from delivery import generate  # noqa: E402

RUN_ID = "bench-ingest"
INGESTED_AT = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
SECRET = b"benchmark-secret-not-for-real-data"

WHOLE_SCHEMA = ("path string, sop_instance_uid string, modality string, rows long, columns long, "
                "pixel_spacing array<double>, header_json string, error string")
PIXELS_SCHEMA = "path string, meta string, bytes_read long"


# -- (b) whole files -------------------------------------------------------------

def parse_whole_files(batches):
    """mapInPandas: binaryFile rows (path, content, ...) -> a few attributes + DICOM JSON."""
    import io
    import warnings

    import pandas as pd
    import pydicom
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

    for frame in batches:
        out = []
        for path, content in zip(frame["path"], frame["content"]):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
                    spacing = ds.get("PixelSpacing")
                    out.append({
                        "path": path,
                        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")) or None,
                        "modality": ds.get("Modality"),
                        "rows": ds.get("Rows"),
                        "columns": ds.get("Columns"),
                        "pixel_spacing": [float(v) for v in spacing] if spacing else None,
                        "header_json": ds.to_json(),
                        "error": None,
                    })
            except Exception as exc:  # one bad file must not fail the batch
                out.append({"path": path, "error": f"{type(exc).__name__}: {exc}"})
        yield pd.DataFrame(out, columns=["path", "sop_instance_uid", "modality", "rows", "columns",
                                         "pixel_spacing", "header_json", "error"])


# -- (c) pixels as shipped: dcmread on the path --------------------------------------

def make_pixels_parser(endpoint_url: str | None):
    """mapInPandas: paths -> dbx.pixels-style metadata JSON (dicom_meta_udf's body)."""

    def parse_paths(batches):
        import io
        import json as _json
        import os as _os
        import warnings

        import pandas as pd
        import pydicom
        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

        class CountingFileIO(io.FileIO):
            count = 0

            def readinto(self, buffer):
                n = super().readinto(buffer)
                self.count += n or 0
                return n

        def cloud_open(path):
            if path.startswith("s3://"):
                import s3fs
                fs = s3fs.S3FileSystem(anon=False, client_kwargs={"endpoint_url": endpoint_url})
                fp = fs.open(path)
                return fp, lambda: getattr(fp.cache, "total_requested_bytes", None)
            local = path[len("file:"):] if path.startswith("file:") else path
            raw = CountingFileIO(local, "rb")
            block = _os.fstat(raw.fileno()).st_blksize  # what open() picks as buffer size
            fp = io.BufferedReader(raw, block if block > 1 else io.DEFAULT_BUFFER_SIZE)
            return fp, lambda: raw.count

        for frame in batches:
            out = []
            for path in frame["path"]:
                try:
                    fp, counted = cloud_open(path)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        with pydicom.dcmread(fp, defer_size=1000, stop_before_pixels=True) as ds:
                            js = ds.to_json_dict()
                            js.pop("60003000", None)
                            js.pop("7FE00010", None)
                            meta = _json.dumps(js)
                    nbytes = counted()
                    fp.close()
                except Exception as exc:
                    meta, nbytes = _json.dumps({"error": f"{type(exc).__name__}: {exc}"}), None
                out.append({"path": path, "meta": meta, "bytes_read": nbytes})
            yield pd.DataFrame(out, columns=["path", "meta", "bytes_read"])

    return parse_paths


# -- a byte-counting TCP proxy (bytes over HTTP) -----------------------------------

class CountingProxy:
    """Forwards loopback TCP connections to `target_port`, counting the bytes each way."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.to_client = 0
        self.to_server = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)
        self.port = self._sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self._lock:
            self.to_client = self.to_server = self.connections = 0

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        t = threading.Thread(target=self._pump, args=(client, server, "to_server"), daemon=True)
        t.start()
        self._pump(server, client, "to_client")
        t.join()
        for s in (client, server):
            s.close()

    def _pump(self, src, dst, counter):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
                with self._lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self._closed = True
        self._sock.close()


# -- Spark -------------------------------------------------------------------------

def make_spark(settings):
    from pyspark.sql import SparkSession
    builder = (SparkSession.builder.master("local[2]").appName("bench-ingest")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.memory", "2g"))
    for key, value in (settings.spark.conf or {}).items():  # the job's own session settings
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class Bench:
    def __init__(self, spark, settings):
        from pyspark.sql.pandas.types import to_arrow_schema

        from dicom_triage.jobs.runtime import header_policy
        from dicom_triage.schemas.ingest import PARSED
        self.spark = spark
        self.settings = settings
        self.policy = header_policy(settings, SECRET)
        self.arrow_schema = to_arrow_schema(PARSED)
        self.PARSED = PARSED

    # (a) ------------------------------------------------------------------------
    def ingest_frame(self, root: str, storage_options: dict, list_options: dict | None = None):
        """This project's parse, as jobs.ingest._parse_and_write builds it. Returns
        (DataFrame, seconds spent listing on the driver)."""
        from dicom_triage.jobs.ingest import listing_frame
        from dicom_triage.jobs.storage import filesystem, list_objects, range_reader
        from dicom_triage.udfs.ingest_batch import make_batch_parser
        list_options = storage_options if list_options is None else list_options
        if "://" in root and not root.startswith("file://"):
            filesystem(root, list_options)[0].invalidate_cache()  # a job lists once, uncached
        started = time.perf_counter()
        listed = list_objects(root, list_options, self.settings.storage.ignore_names,
                              self.settings.storage.ignore_prefixes)
        listing_seconds = time.perf_counter() - started
        todo = listing_frame(self.spark, listed)
        partitions = max(1, math.ceil(len(listed) / self.settings.ingest.files_per_partition))
        parser = make_batch_parser(self.policy, range_reader(storage_options), RUN_ID, INGESTED_AT, self.arrow_schema)
        return todo.repartition(partitions, "path").mapInArrow(parser, self.PARSED), listing_seconds

    def time_ingest(self, root, storage_options):
        started = time.perf_counter()
        frame, listing = self.ingest_frame(root, storage_options)
        frame.write.format("noop").mode("overwrite").save()
        return time.perf_counter() - started, listing

    def stats_ingest(self, root, storage_options, list_options=None):
        frame, _ = self.ingest_frame(root, storage_options, list_options)
        rows = frame.select("sop_instance_uid", "error_code", "error_message", "header_bytes_read",
                            "pixel_data_offset", "size_bytes").collect()
        ok = [r for r in rows if r.error_code is None]
        return {
            "files": len(rows),
            "errors": len(rows) - len(ok),
            "first_error": next((f"{r.error_code}: {r.error_message}" for r in rows if r.error_code), None),
            "bytes_read_per_file": statistics.fmean(r.header_bytes_read for r in ok) if ok else None,
            "header_bytes_per_file": statistics.fmean(r.pixel_data_offset + 12 for r in ok) if ok else None,
            "file_bytes_per_file": statistics.fmean(r.size_bytes for r in rows),
            "uids": {r.sop_instance_uid for r in ok},
        }

    # (b) ------------------------------------------------------------------------
    def whole_file_frame(self, root: str):
        return (self.spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(root)
                .mapInPandas(parse_whole_files, WHOLE_SCHEMA))

    def time_whole(self, root):
        started = time.perf_counter()
        self.whole_file_frame(root).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - started

    def stats_whole(self, root):
        raw = self.spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(root)
        lengths = [r.length for r in raw.select("length").collect()]
        rows = self.whole_file_frame(root).select("sop_instance_uid", "error").collect()
        ok = [r for r in rows if r.error is None]
        return {"files": len(rows), "errors": len(rows) - len(ok),
                "first_error": next((r.error for r in rows if r.error), None),
                "bytes_read_per_file": statistics.fmean(lengths),
                "uids": {r.sop_instance_uid for r in ok}}

    # (c) ------------------------------------------------------------------------
    def pixels_frame(self, root: str, endpoint_url: str | None = None, storage_options=None):
        if root.startswith("s3://"):  # binaryFile cannot list s3:// here: use the same listing as (a)
            from dicom_triage.jobs.ingest import listing_frame
            from dicom_triage.jobs.storage import filesystem, list_objects
            filesystem(root, storage_options)[0].invalidate_cache()
            paths = listing_frame(self.spark, list_objects(root, storage_options)).select("path")
        else:
            paths = (self.spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                     .load(root).drop("content").select("path"))
        return paths.mapInPandas(make_pixels_parser(endpoint_url), PIXELS_SCHEMA)

    def time_pixels(self, root, endpoint_url=None, storage_options=None):
        started = time.perf_counter()
        self.pixels_frame(root, endpoint_url, storage_options).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - started

    def stats_pixels(self, root, endpoint_url=None, storage_options=None):
        rows = self.pixels_frame(root, endpoint_url, storage_options).collect()
        metas = [json.loads(r.meta) for r in rows]
        ok = [(r, m) for r, m in zip(rows, metas) if isinstance(m, dict) and "error" not in m]
        counted = [r.bytes_read for r, _ in ok if r.bytes_read is not None]
        return {"files": len(rows), "errors": len(rows) - len(ok),
                "first_error": next((m.get("error") for m in metas if isinstance(m, dict) and "error" in m), None),
                "bytes_read_per_file": statistics.fmean(counted) if counted else None,
                "uids": {m.get("00080018", {}).get("Value", [None])[0] for _, m in ok}}


# -- reporting ---------------------------------------------------------------------

def summary(times: list[float], files: int, stats: dict, **extra) -> dict:
    median = statistics.median(times)
    out = {"seconds": [round(t, 3) for t in times], "median_seconds": round(median, 3),
           "files_per_second": round(files / median, 1),
           "bytes_read_per_file": round(stats["bytes_read_per_file"], 1) if stats.get("bytes_read_per_file") else None,
           "errors": stats["errors"]}
    out.update(extra)
    return out


def paired(a_times: list[float], other_times: list[float]) -> list[float]:
    """files/s ratio a/other within each pass (the two ran back to back, under the same load)."""
    return [round(o / a, 2) for a, o in zip(a_times, other_times)]


def check_same_files(name: str, stats: dict, reference: dict, files: int) -> None:
    if stats["files"] != files or stats["errors"]:
        raise SystemExit(f"{name}: {stats['files']} rows, {stats['errors']} errors "
                         f"(first: {stats['first_error']}); expected {files} parsed files")
    if stats["uids"] != reference["uids"]:
        raise SystemExit(f"{name}: parsed SOPInstanceUIDs differ from (a)'s")


def fmt_bytes(n) -> str:
    return "-" if n is None else (f"{n / 1024:.1f} KiB" if n < 2**20 else f"{n / 2**20:.2f} MiB")


def print_table(results: dict) -> None:
    rows = []
    for where in ("local", "s3"):
        section = results.get(where) or {}
        for key, label in (("a", "(a) ingest parse (ranged header reads)"),
                           ("b", "(b) binaryFile whole file + dcmread"),
                           ("c", "(c) pixels-style dcmread(open(path))")):
            m = section.get(key)
            if not m:
                continue
            if m.get("not_measured"):
                rows.append((where, label, "n/a", "n/a", "not measurable: " + m["not_measured"][:60]))
                continue
            wire = m.get("http_bytes_per_file")
            rows.append((where, label, f"{m['files_per_second']:.0f}", fmt_bytes(m["bytes_read_per_file"]),
                         f"median {m['median_seconds']:.2f} s of {m['seconds']}"
                         + (f"; over HTTP {fmt_bytes(wire)}/file" if wire else "")))
    widths = [max(len(r[i]) for r in rows + [("where", "variant", "files/s", "read/file", "")])
              for i in range(4)]
    head = ("where", "variant", "files/s", "read/file", "notes")
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths + [0])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", help="write the delivery here and keep it (default: a temp folder, removed)")
    ap.add_argument("--s3", action=argparse.BooleanOptionalAction, default=True,
                    help="also time (a) (and c) against a moto S3 server on loopback")
    ap.add_argument("--pixels-path", action=argparse.BooleanOptionalAction, default=True,
                    help="also time (c), the pixels accelerator's current path-based reader")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "ingest.json"))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    wall = time.perf_counter()

    from dicom_triage.jobs.config import load_settings
    settings = load_settings()

    tmp = None
    if args.out:
        base = Path(args.out).resolve()
        if base.exists() and any(base.iterdir()):
            raise SystemExit(f"--out {base} is not empty")
    else:
        tmp = tempfile.mkdtemp(prefix="bench-ingest-")
        base = Path(tmp)
    delivery = base / "delivery"
    started = time.perf_counter()
    paths = generate(delivery, args.files, seed=args.seed)
    sizes = [p.stat().st_size for p in paths]
    print(f"generated {len(paths)} files, {sum(sizes) / 2**20:.0f} MiB, mean {statistics.fmean(sizes) / 1024:.1f} KiB, "
          f"in {time.perf_counter() - started:.1f} s -> {delivery}", flush=True)
    n = len(paths)

    results: dict = {
        "benchmark": "ingest header parse vs whole-file read",
        "command": " ".join([".venv/bin/python benchmarks/ingest/run.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "spark_master": "local[2]",
        "files": n, "repeat": args.repeat,
        "file_bytes_per_file": round(statistics.fmean(sizes), 1),
        "settings": {k: settings[f"ingest.{k}"] for k in
                     ("header_first_block_bytes", "header_max_block_bytes", "defer_size_bytes",
                      "files_per_partition")},
    }
    spark = make_spark(settings)
    import pydicom
    import pyspark
    results["machine"].update(pyspark=pyspark.__version__, pydicom=pydicom.__version__)
    bench = Bench(spark, settings)
    local_root = str(delivery)
    try:
        # ---- local disk ----
        print("local: warm-up passes (and byte counts, same-files check)", flush=True)
        sa = bench.stats_ingest(local_root, {})
        check_same_files("(a)", sa, sa, n)
        sb = bench.stats_whole(local_root)
        check_same_files("(b)", sb, sa, n)
        sc = None
        if args.pixels_path:
            sc = bench.stats_pixels(local_root)
            check_same_files("(c)", sc, sa, n)
        times = {"a": [], "b": [], "c": []}
        listing = []
        for i in range(args.repeat):
            ta, tl = bench.time_ingest(local_root, {})
            times["a"].append(ta)
            listing.append(tl)
            times["b"].append(bench.time_whole(local_root))
            if sc:
                times["c"].append(bench.time_pixels(local_root))
            print(f"  pass {i + 1}: " + "  ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v), flush=True)
        header = sa["header_bytes_per_file"]
        local = {
            "header_bytes_per_file": round(header, 1),
            "a": summary(times["a"], n, sa, driver_listing_seconds=[round(t, 3) for t in listing]),
            "b": summary(times["b"], n, sb),
        }
        if sc:
            local["c"] = summary(times["c"], n, sc)
        local["ratios"] = {
            "files_per_second_a_over_b": round(local["a"]["files_per_second"] / local["b"]["files_per_second"], 2),
            "bytes_read_b_over_a": round(sb["bytes_read_per_file"] / sa["bytes_read_per_file"], 1),
            "bytes_read_a_over_header": round(sa["bytes_read_per_file"] / header, 2),
        }
        local["ratios"]["paired_a_over_b_per_pass"] = paired(times["a"], times["b"])
        if sc:
            local["ratios"]["files_per_second_a_over_c"] = round(
                local["a"]["files_per_second"] / local["c"]["files_per_second"], 2)
            local["ratios"]["paired_a_over_c_per_pass"] = paired(times["a"], times["c"])
        local["targets"] = {
            "bytes_read_within_2x_of_header": local["ratios"]["bytes_read_a_over_header"] <= 2.0,
            "files_per_second_at_least_2x_whole_file": local["ratios"]["files_per_second_a_over_b"] >= 2.0,
        }
        results["local"] = local
        if args.s3:
            results["s3"] = run_s3(bench, spark, delivery, n, args, sa)
    finally:
        spark.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    results["total_seconds"] = round(time.perf_counter() - wall, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    print()
    print_table(results)
    print()
    for where in ("local", "s3"):
        if where in results:
            print(f"{where} ratios: {json.dumps(results[where].get('ratios'))}")
            if "targets" in results[where]:
                print(f"{where} targets: {json.dumps(results[where]['targets'])}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out} ({results['total_seconds']} s in all)")


def run_s3(bench: Bench, spark, delivery: Path, n: int, args, local_stats: dict) -> dict:
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    proxy = None
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        options = {"endpoint_url": endpoint}
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
        fs.mkdir("bench")
        started = time.perf_counter()
        fs.put(str(delivery) + "/", "bench/delivery/", recursive=True)
        root = "s3://bench/delivery"
        uploaded = len(fs.find("bench/delivery"))
        print(f"s3: uploaded {uploaded} objects to moto at {endpoint} in {time.perf_counter() - started:.1f} s",
              flush=True)
        if uploaded != n:
            raise SystemExit(f"s3: {uploaded} objects uploaded, expected {n}")

        # (b): try it, record why it cannot run
        try:
            spark.read.format("binaryFile").option("recursiveFileLookup", "true").load("s3a://bench/delivery").count()
            b_problem = None
        except Exception as exc:  # no S3A filesystem on the classpath
            lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
            text = next((l for l in lines if "FileSystem" in l or "ClassNotFound" in l), lines[0] if lines else "")
            b_problem = ("Spark's binaryFile needs a Hadoop filesystem for s3a:// (hadoop-aws + AWS SDK jars), "
                         f"not on this classpath: {text[:200]}")

        # warm-up + byte counts through the counting proxy (untimed)
        proxy = CountingProxy(port)
        via_proxy = {"endpoint_url": f"http://127.0.0.1:{proxy.port}"}
        print("s3: warm-up passes through the byte-counting proxy", flush=True)
        proxy.reset()
        sa = bench.stats_ingest(root, via_proxy, list_options=options)
        wire_a = proxy.to_client / n
        conns_a = proxy.connections
        check_same_files("(a) on S3", sa, local_stats, n)
        sc = wire_c = None
        if args.pixels_path:
            proxy.reset()
            sc = bench.stats_pixels(root, via_proxy["endpoint_url"], options)
            wire_c = proxy.to_client / n
            check_same_files("(c) on S3", sc, local_stats, n)

        times = {"a": [], "c": []}
        listing = []
        for i in range(args.repeat):
            ta, tl = bench.time_ingest(root, options)
            times["a"].append(ta)
            listing.append(tl)
            if sc:
                times["c"].append(bench.time_pixels(root, endpoint, options))
            print(f"  pass {i + 1}: " + "  ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v), flush=True)
        s3 = {
            "server": "moto ThreadedMotoServer on 127.0.0.1 (in the driver process)",
            "header_bytes_per_file": round(sa["header_bytes_per_file"], 1),
            "a": summary(times["a"], n, sa, http_bytes_per_file=round(wire_a, 1),
                         proxy_connections=conns_a, driver_listing_seconds=[round(t, 3) for t in listing]),
            "b": {"not_measured": b_problem or "binaryFile read s3a:// unexpectedly; not timed"},
        }
        if sc:
            s3["c"] = summary(times["c"], n, sc, http_bytes_per_file=round(wire_c, 1))
        s3["ratios"] = {"bytes_read_a_over_header": round(sa["bytes_read_per_file"] / sa["header_bytes_per_file"], 2),
                        "http_bytes_a_over_header": round(wire_a / sa["header_bytes_per_file"], 2)}
        if sc:
            s3["ratios"]["files_per_second_a_over_c"] = round(
                s3["a"]["files_per_second"] / s3["c"]["files_per_second"], 2)
            s3["ratios"]["paired_a_over_c_per_pass"] = paired(times["a"], times["c"])
            s3["ratios"]["http_bytes_c_over_a"] = round(wire_c / wire_a, 1)
        return s3
    finally:
        if proxy:
            proxy.close()
        server.stop()


if __name__ == "__main__":
    main()
