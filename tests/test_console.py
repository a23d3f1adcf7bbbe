"""What a user sees: a whole run prints this tool's lines only (Spark's log
banner and warnings that say nothing to a user, MLflow's and other libraries'
messages are filtered unless `--verbose`), and no Python dicts.

A real stage in its own process, as a user starts it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# A line of ours: "stage: ...", "what did not run, or ran with less (...):", "== run ...",
# or an indented line of the summary's tables.
OURS = re.compile(r"^(== run |[a-z][a-z ,-]*[a-z]( \([^)]*\))?: |[a-z][a-z ,-]*[a-z]( \([^)]*\))?:$|\s)")
# Printed by the JVM itself for the vector module Spark 4 loads; no switch turns it off.
JVM_NOTICE = "WARNING: Using incubator modules: jdk.incubator.vector"


def test_a_stage_prints_only_its_own_lines(full_pipeline, tmp_path):
    """A Spark start, a stage and the summary: curate on a copy of the demo's output."""
    output = tmp_path / "out"
    shutil.copytree(full_pipeline.output, output)
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_TOOL_OPTIONS", "PYSPARK_PYTHON")}
    env["TRIAGE_HMAC_SECRET"] = "demo-pipeline-test-secret-0123456789"
    result = subprocess.run([sys.executable, "-m", "dicom_triage.jobs", "curate", "--output", str(output),
                             *full_pipeline.args[4:], "--set", "progress_seconds=5"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    foreign = [line for line in lines if not OURS.match(line) and line != JVM_NOTICE]
    assert foreign == [], "\n".join(foreign[:20])
    assert not [line for line in lines if re.search(r"\{'[a-z_A-Z]+': ", line)], "a Python dict was printed"
    assert any(line.startswith("curate: done in ") for line in lines)
    assert any(line.startswith("decisions: ") for line in lines)


def test_the_line_rule_tells_ours_from_theirs():
    ours = ["ingest: listed 30 objects under /x (0.9 s)", "== run 20261203T065432Z-1cbb95",
            "what did not run, or ran with less (table run_notes):", "  site_a  MR  30",
            "train-anatomy: 549 weak labels: head 277, chest 265", "top reasons (objects excluded or sent to review):"]
    theirs = ["26/12/03 06:53:29 WARN NativeCodeLoader: Unable to load native-hadoop library",
              "Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties",
              "Setting default log level to \"WARN\".", "Downloading artifacts: 100%|##########| 2/2",
              "2026/12/03 07:05:01 WARNING mlflow.pyfunc: Passing a Python object", "[Stage 3:>   (0 + 2) / 2]",
              "Successfully registered model 'dicom-triage-anatomy'.", "Traceback (most recent call last):"]
    assert all(OURS.match(line) for line in ours)
    assert not any(OURS.match(line) for line in theirs)


def test_every_stage_help_says_what_it_reads_and_writes_with_an_example_that_works(capsys):
    import shlex

    from dicom_triage.jobs.cli import STAGE_HELP, STAGE_NAMES, build_parser, settings_from

    for name in STAGE_NAMES:
        with pytest.raises(SystemExit):
            build_parser().parse_args([name, "--help"])
        page = capsys.readouterr().out
        assert "reads:" in page and "writes:" in page and f"example:\n  triage {name} " in page, page
        example = shlex.split(STAGE_HELP[name][2])
        settings_from(build_parser().parse_args(example[1:]))  # each --set names a real setting, validly
