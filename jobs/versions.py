"""Which versions the job runs with: `triage --version`, and the check at
start that stops an unsupported pyspark with one line."""
from __future__ import annotations

import re
import sys
from importlib import metadata

# The pyspark lines the smoke runs of .ci/run cover (README: tested versions).
SUPPORTED_PYSPARK = ((4, 0), (4, 3))
SUPPORTED_PYTHON = ((3, 10), (3, 12))


def installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def major_minor(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _span(bounds: tuple[tuple[int, int], tuple[int, int]]) -> str:
    (a, b), (c, d) = bounds
    return f"{a}.{b} to {c}.{d}"


def pyspark_version() -> str | None:
    try:
        import pyspark
    except ImportError:
        return None
    return pyspark.__version__


def unsupported() -> str | None:
    """One line naming what is not supported here, or None."""
    python = sys.version_info[:2]
    if not SUPPORTED_PYTHON[0] <= python <= SUPPORTED_PYTHON[1]:
        return (f"Python {python[0]}.{python[1]} is not supported; "
                f"dicom-triage runs on Python {_span(SUPPORTED_PYTHON)}")
    version = pyspark_version()
    if version is None:
        return ("pyspark is not installed: install the cluster's Spark, or "
                "`pip install 'dicom-triage[spark]'` on one machine")
    line = major_minor(version)
    if line is None or not SUPPORTED_PYSPARK[0] <= line <= SUPPORTED_PYSPARK[1]:
        return (f"pyspark {version} is not supported; dicom-triage runs on pyspark "
                f"{_span(SUPPORTED_PYSPARK)} (Databricks Runtime 17.3 LTS and later)")
    return None


def version_lines() -> list[str]:
    spark = pyspark_version()
    delta_spark, deltalake = installed("delta-spark"), installed("deltalake")
    problem = unsupported()
    return [
        f"dicom-triage {installed('dicom-triage') or 'unknown (not installed)'}",
        f"python {sys.version.split()[0]}",
        f"pyspark {spark or 'not installed'}"
        + ("" if problem else f" (supported: {_span(SUPPORTED_PYSPARK)})"),
        f"delta-spark {delta_spark or 'not installed'} (Delta writer where Delta Lake's classes are on "
        "Spark's classpath: Databricks, --packages)",
        f"deltalake {deltalake or 'not installed'} (delta-rs: Delta writer otherwise; setting tables.backend)",
    ] + ([f"not supported: {problem}"] if problem else [])
