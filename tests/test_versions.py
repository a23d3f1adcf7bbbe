"""jobs/versions.py: `triage --version` and the start-up check of the pyspark and Python versions."""
from __future__ import annotations

import subprocess
import sys

import pytest

from dicom_triage.jobs import versions


def test_major_minor():
    assert versions.major_minor("4.1.1") == (4, 1)
    assert versions.major_minor("4.0.0.dev1") == (4, 0)
    assert versions.major_minor("nonsense") is None


@pytest.mark.parametrize("version, ok", [("4.0.1", True), ("4.1.1", True), ("4.2.0", True), ("4.3.0", True),
                                          ("3.5.3", False), ("4.4.0", False), ("5.0.0", False)])
def test_pyspark_lines(monkeypatch, version, ok):
    monkeypatch.setattr(versions, "pyspark_version", lambda: version)
    problem = versions.unsupported()
    assert (problem is None) == ok
    if not ok:
        assert problem.startswith(f"pyspark {version} is not supported") and "4.0 to 4.3" in problem


def test_unsupported_pyspark_stops_the_job_with_one_line(monkeypatch, tmp_path, capsys):
    from dicom_triage.jobs.cli import main
    monkeypatch.setattr(versions, "pyspark_version", lambda: "3.5.3")
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", "version-test-secret-0123456789")
    assert main(["pixels", "--output", str(tmp_path)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["triage: pyspark 3.5.3 is not supported; dicom-triage runs on pyspark 4.0 to 4.3 "
                   "(Databricks Runtime 17.3 LTS and later)"]


def test_version_command_names_what_runs():
    out = subprocess.run([sys.executable, "-m", "dicom_triage.jobs", "--version"], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("dicom-triage ")
    assert lines[1] == f"python {sys.version.split()[0]}"
    assert lines[2].startswith("pyspark 4.") and "supported" in lines[2]
    assert lines[3].startswith("delta-spark ") and lines[4].startswith("deltalake ")
