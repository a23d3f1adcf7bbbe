"""The evaluation delivery generator (tests/deliveries), without Spark.

Each shape is written once at scale 1, and one of its sites a second time on
its own: sites share no state, so the second run must reproduce that site's
files and truth rows byte for byte (determinism). The written files are then
checked against their truth (tests/deliveries/verify.py) on a sample: every
reason code's objects and some clean ones.
"""
from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from dicom_triage.schemas.reasons import ALL_CODES
from tests.deliveries import verify

SEED = 3
SHAPES = ("brain-mr", "ct", "chest-xray")
AGAIN = {"brain-mr": "SITE_A", "ct": "SITE_E", "chest-xray": "SITE_U"}
NOT_PLANTED = {"EMBEDDING_OUTLIER", "CLUSTER_OUTLIER"}
DOES_NOT_APPLY = {
    "brain-mr": {"INTENSITY_OUT_OF_RANGE"},
    "ct": set(),
    "chest-xray": {"INCONSISTENT_ORIENTATION", "IRREGULAR_SPACING", "MISSING_SLICES",
                   "TOO_FEW_SLICES", "INTENSITY_OUT_OF_RANGE"},
}
KNOWN = set(ALL_CODES) | {"NON_CONFORMANT"}
# Codes a shape plants fewer than three times at scale 1 (default three). The
# ct shape's other objects with an unexpected modality are dose reports, which
# have no pixel data and so list NO_PIXEL_DATA alone.
AT_LEAST = {"ct": {"UNEXPECTED_MODALITY": 2}}


def _generate(job):
    """Write one delivery; check a full one against its truth in the same worker."""
    shape, out, sites = job
    from tests.deliveries import generate

    doc = generate(shape, out, seed=SEED, scale=1, sites=sites)
    problems = [] if sites else verify.check(out, sample=25, seed=SEED, per_code=3)
    return doc, problems


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval-deliveries")
    jobs = [(shape, str(base / shape), None) for shape in SHAPES]
    jobs += [(shape, str(base / f"{shape}-again"), [AGAIN[shape]]) for shape in SHAPES]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_generate, jobs))
    names = [j[0] + ("-again" if j[2] else "") for j in jobs]
    return base, dict(zip(names, results))


def _rows(out: Path) -> list[dict]:
    with open(out / "_ground_truth.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("shape", SHAPES)
def test_same_seed_same_bytes(written, shape):
    base, _ = written
    full, again = base / shape, base / f"{shape}-again"
    site = AGAIN[shape]
    again_rows = _rows(again)
    assert again_rows, "the second run wrote nothing"
    full_rows = [r for r in _rows(full) if r["path"].startswith(site + "/")]
    assert again_rows == full_rows
    for row in again_rows:
        assert _digest(again / row["path"]) == _digest(full / row["path"]), row["path"]


@pytest.mark.parametrize("shape", SHAPES)
def test_truth_lists_every_file_once(written, shape):
    base, docs = written
    out = base / shape
    rows = _rows(out)
    files = sorted(str(p.relative_to(out)).replace("\\", "/") for p in out.rglob("*")
                   if p.is_file() and not p.name.startswith("_"))
    assert sorted(r["path"] for r in rows) == files
    assert len({r["path"] for r in rows}) == len(rows)
    doc = json.loads((out / "_ground_truth.json").read_text())
    assert doc["counts"]["objects"] == len(rows) == docs[shape][0]["counts"]["objects"]
    assert 300 <= len(rows) <= 650
    assert doc["expectations"]["declared_deidentified"] is True
    for row in rows:
        assert int(row["size_bytes"]) == (out / row["path"]).stat().st_size


@pytest.mark.parametrize("shape", SHAPES)
def test_codes_known_and_planted(written, shape):
    base, _ = written
    rows = _rows(base / shape)
    counts: dict[str, int] = {}
    for row in rows:
        codes = [c for c in row["reasons"].split(";") if c]
        assert set(codes) <= KNOWN, row
        assert row["category"] == ("good" if not codes else row["category"])
        assert not codes or row["category"] in codes, row
        if row["ingest_error"]:
            assert codes == [row["ingest_error"]], row
        if "NO_PIXEL_DATA" in codes:
            assert codes == ["NO_PIXEL_DATA"] and row["category"] == "NO_PIXEL_DATA", row
        assert not {"IRRELEVANT_CONTENT", "ANATOMY_HEADER_MISMATCH"} <= set(codes), row
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
    claimed = KNOWN - NOT_PLANTED - DOES_NOT_APPLY[shape]
    floor = AT_LEAST.get(shape, {})
    missing = {code: counts.get(code, 0) for code in claimed
               if counts.get(code, 0) < floor.get(code, 3)}
    assert not missing, f"codes planted fewer times than required: {missing}"
    assert not (set(counts) & NOT_PLANTED)
    share = sum(1 for r in rows if r["reasons"]) / len(rows)
    assert 0.15 <= share <= 0.35, share
    assert sum(1 for r in rows if r["hard_negative"]) >= 20


@pytest.mark.parametrize("shape", SHAPES)
def test_files_are_what_the_truth_says(written, shape):
    """Every code's objects (3 per code) and 25 clean ones read back as the truth
    says: clean ones strictly conformant and decodable, series geometry exact,
    damaged files damaged where claimed, duplicates equal or close, quality
    defects measurable against peers (tests/deliveries/verify.py)."""
    _, results = written
    problems = results[shape][1]
    assert not problems, "\n".join(problems[:20])
