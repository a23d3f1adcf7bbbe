"""Scoring a run against verified answers (`triage evaluate`): reading the
truth file's rows. Pure pandas; the counting is Spark (jobs/evaluate.py).

A truth file has one row per verified object, named by `path` (absolute, or
relative to the delivery's root) or `sop_instance_uid`, and what is true of
it: `reasons` (the reason codes that apply, separated by ';' or ','; empty
for a clean object) and/or `decision` (include, exclude or review; `keep` and
`drop` are read as include and exclude).
"""
from __future__ import annotations

import re

import pandas as pd

KEY_COLUMNS = ("path", "sop_instance_uid")
CODE_COLUMNS = ("reasons", "codes", "expected_codes")
DECISIONS = {"include": "include", "keep": "include", "exclude": "exclude", "drop": "exclude",
             "review": "review"}


class TruthError(ValueError):
    """The truth file cannot be read as verified answers."""


def split_codes(value) -> list[str]:
    """'NOISY; BLURRY' -> ['BLURRY', 'NOISY'] (upper case, sorted, unique)."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    return sorted({c.strip().upper() for c in re.split(r"[;,|]", str(value)) if c.strip()})


def normalise_truth(frame: pd.DataFrame, known_codes: frozenset[str]) -> pd.DataFrame:
    """[key, key_kind, codes (list or None), decision (or None)] from a truth
    file's rows. Raises TruthError naming what is missing or unknown."""
    columns = {c.lower().strip(): c for c in frame.columns}
    key = next((k for k in KEY_COLUMNS if k in columns), None)
    if key is None:
        raise TruthError(f"needs a column named {' or '.join(KEY_COLUMNS)}; has {list(frame.columns)}")
    codes_column = next((columns[c] for c in CODE_COLUMNS if c in columns), None)
    decision_column = columns.get("decision")
    if codes_column is None and decision_column is None:
        raise TruthError(f"needs a '{CODE_COLUMNS[0]}' column (reason codes) or a 'decision' column")
    out = pd.DataFrame({"key": frame[columns[key]].astype(str).str.strip(), "key_kind": key})
    out["codes"] = (frame[codes_column].map(split_codes) if codes_column is not None else None)
    if codes_column is not None:
        unknown = sorted({c for codes in out["codes"] for c in codes} - set(known_codes))
        if unknown:
            raise TruthError(f"unknown reason codes {unknown}; known: schemas/reasons.py")
    if decision_column is not None:
        raw = frame[decision_column].map(lambda v: None if pd.isna(v) else str(v).strip().lower())
        bad = sorted({v for v in raw if v is not None and v not in DECISIONS})
        if bad:
            raise TruthError(f"unknown decisions {bad}; use include, exclude or review")
        out["decision"] = raw.map(lambda v: DECISIONS.get(v) if v else None)
    else:
        out["decision"] = None
    out = out[out["key"] != ""]
    duplicated = out["key"].duplicated(keep=False)
    if duplicated.any():
        raise TruthError(f"{int(duplicated.sum())} rows name an object twice, e.g. {out['key'][duplicated].iloc[0]}")
    return out.reset_index(drop=True)


def expected_decision(codes: list[str] | None, severity: dict[str, str]) -> str | None:
    """The decision the codes call for under `severity` (curate.severity):
    exclude if any excludes, else review if any asks for it, else include."""
    if codes is None:
        return None
    levels = {severity.get(code, "review") for code in codes}
    return "exclude" if "exclude" in levels else "review" if "review" in levels else "include"
