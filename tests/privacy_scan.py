"""Find planted identifiers anywhere a run leaves something behind: every
value of every Delta table (nested structs, maps, arrays and binary images
included), every other file under the output (report, MLflow store and
artifacts, Delta logs) and captured log text."""
from __future__ import annotations

import os
import re

from deltalake import DeltaTable


def needles(identifiers: list[str]) -> list[str]:
    """The planted strings and the forms they take when reformatted: the
    components of person names (DICOM PN `FAMILY^GIVEN`) and DA dates written
    ISO-style."""
    out = set()
    for value in identifiers:
        value = value.strip()
        if len(value) < 4:
            continue
        out.add(value)
        if "^" in value:  # a person name: its family and given names alone too
            out.update(part for part in value.split("^") if len(part) >= 5)
        if re.fullmatch(r"\d{8}", value):
            out.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
    return sorted(out)


def _found(haystack: str, terms: list[str]) -> set[str]:
    lowered = haystack.lower()
    return {t for t in terms if t.lower() in lowered}


def _strings(value):
    """Every text and binary leaf of a nested value (numbers are not identifiers
    and their digits would match dates by chance)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("latin-1")
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _values_text(table) -> str:
    return "\n".join(_strings(table.to_pylist()))


def scan_output(output: str, identifiers: list[str], texts: dict[str, str] | None = None) -> dict[str, set[str]]:
    """{where: identifiers found}; empty when nothing leaked."""
    terms = needles(identifiers)
    leaks: dict[str, set[str]] = {}
    for root, folders, files in os.walk(output):
        if "_delta_log" in folders:
            table = DeltaTable(root).to_pyarrow_dataset().to_table()
            found = _found(_values_text(table), terms)
            if found:
                leaks[f"table {os.path.relpath(root, output)}"] = found
        for name in files:
            if name.endswith(".parquet"):
                continue  # compressed; their values are read through the tables above
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found = _found(handle.read().decode("latin-1"), terms)
            if found:
                leaks[f"file {os.path.relpath(path, output)}"] = found
    for where, text in (texts or {}).items():
        found = _found(text, terms)
        if found:
            leaks[where] = found
    return leaks
