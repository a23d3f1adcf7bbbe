"""Smoke runs on each supported pyspark line: python -m tests.versions.smoke

For each line not covered by `make test` (pyspark 4.0, 4.2 and 4.3, spread over
Python 3.10 … 3.12; the suite runs 4.1 on 3.11 from the lock): a fresh
venv with the built wheel, that pyspark and everything else resolved from the
package's own ranges (no lock); `triage --version`; `triage run` on one small
demo delivery, from a folder outside the repository so that only the wheel is
importable; then the Delta tables read back with delta-rs and checked.

Installs run two at a time (they mostly wait on the network and disk), the
runs one at a time. Pythons come from PATH or pyenv; a missing one fails the
line (it is not skipped). torch is pinned to the CPU build 2.13.0 on Python
3.11, whose wheel the CI machine keeps on disk; other Pythons take PyPI's.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# (pyspark line, Python): Databricks Runtime 17.3 LTS is Spark 4.0 on Python 3.12;
# pyspark 4.3 needs Python >= 3.11. Line 4.1 on 3.11 is what `make test` runs (the lock),
# so it has no smoke run of its own.
LINES = (("4.0", "3.12"), ("4.2", "3.10"), ("4.3", "3.11"))
CPU_TORCH = {"3.11": "torch==2.13.0"}
SECRET = "smoke-run-secret-0123456789abcdef"
TABLES = ("instances", "pixel_stats", "series", "embeddings", "anatomy", "neighbors", "clusters", "inclusion",
          "review_queue", "run_notes")
STAGES = ("ingest", "pixels", "embed", "anatomy", "neighbors", "curate", "report")

# Runs in the smoke venv: the tables as delta-rs reads them back, checked.
CHECK = r'''
import json, sys
from deltalake import DeltaTable
output, objects = sys.argv[1], int(sys.argv[2])
tables, stages = json.loads(sys.argv[3]), json.loads(sys.argv[4])
read = {name: DeltaTable(f"{output}/{name}").to_pyarrow_table() for name in tables}
problems = [f"{name} is empty" for name, t in read.items() if t.num_rows == 0]
errors = DeltaTable(f"{output}/ingest_errors").to_pyarrow_table().num_rows
if read["instances"].num_rows + errors != objects:
    problems.append(f"{read['instances'].num_rows} instances + {errors} ingest errors != {objects} objects")
decisions = set(read["inclusion"].column("decision").to_pylist())
if not {"include", "exclude"} <= decisions:
    problems.append(f"decisions {sorted(decisions)}: expected include and exclude")
notes = read["run_notes"].to_pylist()
done = {n["stage"] for n in notes if n["topic"] == "completed"}
problems += [f"stage {s} did not complete" for s in stages if s not in done]
problems += [f"{n['stage']}: {n['message']}" for n in notes if n["level"] == "error"]
print(json.dumps({"rows": {n: t.num_rows for n, t in read.items()}, "decisions": sorted(decisions),
                  "problems": problems}))
sys.exit(1 if problems else 0)
'''


def find_python(version: str) -> str | None:
    """A python3.X that runs: from pyenv's versions, else from PATH (a pyenv
    shim on PATH fails unless that version is active, so each is tried)."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"), reverse=True)
    candidates += [found] if (found := shutil.which(f"python{version}")) else []
    for candidate in candidates:
        if subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0:
            return candidate
    return None


def run(args: list[str], log: Path, **kwargs) -> subprocess.CompletedProcess:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(map(str, args))}\n")
        out.flush()
        return subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, text=True, **kwargs)


def install(line: str, python_version: str, wheel: Path, work: Path) -> dict:
    """A fresh venv with the wheel and pyspark `line`.*; {venv, seconds, problem}."""
    venv, log = work / f"venv-{line}", work / f"install-{line}.log"
    started = time.monotonic()
    python = find_python(python_version)
    if python is None:
        return {"venv": venv, "seconds": 0.0, "problem": f"no Python {python_version} on PATH or in pyenv"}
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
    steps = [[python, "-m", "venv", str(venv)],
             [*pip, "--upgrade", "pip"],
             [*pip, "--no-cache-dir", f"{wheel}[spark]", f"pyspark=={line}.*",
              *([CPU_TORCH[python_version]] if python_version in CPU_TORCH else [])]]
    for step in steps:
        if run(step, log).returncode != 0:
            return {"venv": venv, "seconds": time.monotonic() - started, "problem": f"install failed: see {log}"}
    return {"venv": venv, "seconds": time.monotonic() - started, "problem": None}


def smoke(line: str, installed: dict, delivery: Path, settings: list[str], work: Path) -> dict:
    """`triage --version`, `triage run` and the check, in the line's venv."""
    venv, log = installed["venv"], work / f"run-{line}.log"
    result = {"line": line, "install_s": round(installed["seconds"]), "run_s": 0, "versions": "", "rows": {}}
    if installed["problem"]:
        return {**result, "problem": installed["problem"]}
    cwd = Path(tempfile.mkdtemp(prefix=f"smoke-{line}-", dir=work))   # outside the repository
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1")  # short JVMs: see tests/conftest.py
    env.update(TRIAGE_HMAC_SECRET=SECRET, PYSPARK_PYTHON=str(venv / "bin/python"),
               PYSPARK_DRIVER_PYTHON=str(venv / "bin/python"), PATH=f"{venv / 'bin'}:{env['PATH']}")
    triage = str(venv / "bin/triage")
    version = subprocess.run([triage, "--version"], capture_output=True, text=True, cwd=cwd, env=env)
    result["versions"] = " | ".join(version.stdout.splitlines()[:3])
    if version.returncode != 0 or f"pyspark {line}." not in version.stdout:
        return {**result, "problem": f"triage --version: {version.stdout}{version.stderr}"[-600:]}
    output = work / f"out-{line}"
    started = time.monotonic()
    ran = run([triage, "run", "--input", str(delivery), "--output", str(output), *settings], log, cwd=cwd, env=env)
    result["run_s"] = round(time.monotonic() - started)
    if ran.returncode != 0:
        return {**result, "problem": f"triage run exited {ran.returncode}: see {log.name}"}
    objects = sum(1 for p in delivery.rglob("*") if p.is_file() and not p.name.startswith("_"))
    check = subprocess.run([str(venv / "bin/python"), "-c", CHECK, str(output), str(objects),
                            json.dumps(TABLES), json.dumps(STAGES)],
                           capture_output=True, text=True, cwd=cwd, env=env)
    try:
        checked = json.loads(check.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {**result, "problem": f"table check failed: {check.stderr[-600:]}"}
    return {**result, "rows": checked["rows"], "problem": "; ".join(checked["problems"]) or None}


def small_delivery(root: Path) -> tuple[Path, list[str]]:
    """The demo delivery's first site (about 150 objects) and what it expects, as --set arguments."""
    from dicom_triage.jobs.cli import demo_expectations
    from dicom_triage.jobs.demo_data import generate_delivery

    delivery = root / "delivery"
    generate_delivery(str(delivery), seed=7)
    for site in ("site_b", "site_c"):
        shutil.rmtree(delivery / site)
    settings = [a for o in demo_expectations(str(delivery)) for a in ("--set", o)]
    return delivery, settings + ["--set", "neighbors.exact=true", "--set", "clusters.map=pca"]


def report(results: list[dict], work: Path, seconds: float) -> None:
    for r in results:
        if r["problem"]:
            for log in (work / f"install-{r['line']}.log", work / f"run-{r['line']}.log"):
                if log.exists():
                    print(f"--- last lines of {log.name}")
                    print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    print(f"\nsmoke runs ({seconds:.0f} s in all)")
    print(f"{'pyspark':8s} {'python':7s} {'install':>8s} {'run':>6s}  result")
    for r in results:
        print(f"{r['line']:8s} {r['python']:7s} {r['install_s']:7d}s {r['run_s']:5d}s  "
              f"{'ok' if not r['problem'] else 'FAILED: ' + r['problem']}")
        print(f"{'':8s} {r['versions']}")
        if r["rows"]:
            print(f"{'':8s} rows: {r['rows']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.versions.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default=",".join(f"{line}@{py}" for line, py in LINES),
                        help="pyspark line @ Python, comma-separated (default: %(default)s)")
    parser.add_argument("--work", help="working folder, kept (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    lines = [tuple(item.split("@")) for item in args.lines.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="triage-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = []
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"),
                        str(REPO)], check=True)
        wheel, = (work / "dist").glob("dicom_triage-*.whl")
        delivery, settings = small_delivery(work)
        with ThreadPoolExecutor(max_workers=2) as pool:
            installs = {line: pool.submit(install, line, py, wheel, work) for line, py in lines}
            for line, py in lines:       # each run once its install is done, one at a time
                results.append({**smoke(line, installs[line].result(), delivery, settings, work), "python": py})
                shutil.rmtree(installs[line].result()["venv"], ignore_errors=True)   # CUDA torch: ~7 GB
        report(results, work, time.monotonic() - started)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if not results or any(r["problem"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
