"""The layers' promises, checked from the source: the per-record work in `udfs/`
runs without Spark and without the stages (so it is testable, and shippable to
executors, on its own); `schemas/` declares tables and nothing runs there."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def offending_imports(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    offending = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        bad = sorted(m for m in imported_modules(path) if m.startswith(forbidden))
        if bad:
            offending[str(path.relative_to(REPO))] = bad
    return offending


def test_udfs_import_neither_spark_nor_the_stages():
    assert offending_imports("udfs", ("pyspark", "dicom_triage.jobs")) == {}


def test_schemas_import_no_stage():
    assert offending_imports("schemas", ("dicom_triage.jobs",)) == {}


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from dicom_triage.jobs.storage import filesystem\n    import pyspark.sql\n")
    assert imported_modules(sample) >= {"dicom_triage.jobs.storage", "pyspark.sql"}
