"""The curate stage on the demo delivery (real local Spark, real Delta tables):
decisions against the ground truth, evidence, the series rule, re-running with
another configuration, the review queue and `triage sql`."""
from __future__ import annotations

import csv
import json
import math
import os

import pytest
from pyspark.sql import functions as F

from dicom_triage.jobs.cli import main as triage
from dicom_triage.jobs.config import load_settings

pytestmark = pytest.mark.spark

# Per-code floors on the demo delivery (measured: see the printed table).
RECALL_FLOORS: dict[str, float] = {}
# Extra flags that are right although the ground truth does not list them or
# are known weak spots: the demo's one 64 x 64 multi-frame brain MR (a real
# scanner's test file, unlike every other brain of the delivery) is judged
# foreign by the content check; an ultrasound's burned-in text trips the
# low-range rule.
PRECISION_FLOORS = {"IRRELEVANT_CONTENT": 0.6, "LOW_DYNAMIC_RANGE": 0.8, "BURNED_IN_ANNOTATION": 0.8}


def ground_truth(delivery) -> tuple[dict[str, set[str]], dict[str, str], set[str]]:
    with open(delivery / "_ground_truth.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    notes = json.loads((delivery / "_ground_truth.json").read_text())
    not_planted = {code.strip() for code in notes["conventions"]["not_planted"].split(" and the")[0].split(",")}
    not_planted |= {code.split()[-1] for code in list(not_planted) if " " in code}
    reasons = {r["path"]: {c for c in r["reasons"].split(";") if c} for r in rows}
    return reasons, {r["path"]: r["category"] for r in rows}, not_planted


@pytest.fixture(scope="module")
def inclusion(full_pipeline):
    return full_pipeline.store.read("inclusion").toPandas()


def test_one_row_per_listed_object(full_pipeline, inclusion):
    truth, _, _ = ground_truth(full_pipeline.delivery)
    assert len(inclusion) == inclusion["path"].nunique() == len(truth)
    assert set(inclusion["path"].map(lambda p: p.split("/delivery/", 1)[1])) == set(truth)
    assert set(inclusion["decision"]) <= {"include", "exclude", "review"}


def _relative(path: str) -> str:
    return path.split("/delivery/", 1)[1]


def test_reasons_against_ground_truth(full_pipeline, inclusion):
    truth, _, not_planted = ground_truth(full_pipeline.delivery)
    found = {_relative(p): set(r) for p, r in zip(inclusion["path"], inclusion["reasons"])}
    codes = sorted({c for r in truth.values() for c in r} - not_planted)
    print(f"\n{'code':26} recall precision  planted flagged")
    failures = []
    for code in codes:
        planted = {p for p, r in truth.items() if code in r}
        flagged = {p for p, r in found.items() if code in r}
        recall = len(planted & flagged) / len(planted)
        precision = len(planted & flagged) / len(flagged) if flagged else 1.0
        print(f"{code:26} {recall:6.2f} {precision:9.2f} {len(planted):8} {len(flagged):7}")
        if recall < RECALL_FLOORS.get(code, 1.0) or precision < PRECISION_FLOORS.get(code, 1.0):
            failures.append((code, recall, precision))
    assert not failures


def test_decisions_against_ground_truth(full_pipeline, inclusion):
    truth, category, _ = ground_truth(full_pipeline.delivery)
    decision = {_relative(p): d for p, d in zip(inclusion["path"], inclusion["decision"])}
    good = [p for p, c in category.items() if c == "good"]
    defects = [p for p, c in category.items() if c != "good"]
    kept_good = sum(decision[p] == "include" for p in good) / len(good)
    caught = sum(decision[p] != "include" for p in defects) / len(defects)
    print(f"\ngood objects included: {kept_good:.2f}; planted defects not included: {caught:.2f}")
    # the one object only a better reference set would catch (IRRELEVANT_CONTENT)
    assert caught >= 0.98
    assert kept_good >= 0.9


def test_decision_follows_the_evidence(inclusion):
    for row in inclusion.itertuples():
        severities = {e["severity"] for e in row.evidence}
        assert sorted({e["code"] for e in row.evidence}) == list(row.reasons)
        assert sorted({e["code"] for e in row.evidence if e["severity"] == "exclude"}) == list(row.excluded_by)
        expected = ("exclude" if "exclude" in severities else "review" if "review" in severities else "include")
        assert row.decision == expected, row.path
    errors = inclusion[inclusion["sop_instance_uid"].isna() & inclusion["series_instance_uid"].isna()]
    assert len(errors) > 0 and (errors["decision"] == "exclude").all()
    assert errors["review_priority"].isna().all()


def test_series_findings_reach_every_instance_and_half_excluded_series_go_whole(full_pipeline, inclusion):
    store = full_pipeline.store
    localizers = {r.series_instance_uid for r in store.read("series")
                  .filter(F.array_contains("findings.code", "LOCALIZER")).select("series_instance_uid").collect()}
    assert localizers
    rows = inclusion[inclusion["series_instance_uid"].isin(localizers)]
    assert all("LOCALIZER" in r for r in rows["reasons"]) and (rows["decision"] == "exclude").all()
    limit = 0.5
    for _, series in inclusion.dropna(subset=["series_instance_uid"]).groupby("series_instance_uid"):
        own = series["evidence"].map(lambda ev: any(e["severity"] == "exclude" and e["source"] != "inclusion"
                                                    for e in ev))
        if own.mean() > limit:
            assert (series["decision"] == "exclude").all()


def test_recurate_with_other_settings_needs_no_earlier_stage(full_pipeline, inclusion):
    store = full_pipeline.store
    earlier = ["instances", "pixel_stats", "series", "embeddings", "anatomy", "clusters"]
    versions = {name: store.version(name) for name in earlier}
    noisy = inclusion[inclusion["excluded_by"].map(lambda codes: list(codes) == ["NOISY"])]
    assert len(noisy) > 0
    try:
        assert triage(["curate", *full_pipeline.args, "--set", "curate.severity.NOISY=annotate",
                       "--set", "mlflow.enabled=false"]) == 0
        again = store.read("inclusion").filter(F.col("path").isin(list(noisy["path"]))).toPandas()
        assert set(again["decision"]) <= {"include", "review"}
        assert {name: store.version(name) for name in earlier} == versions
    finally:
        assert triage(["curate", *full_pipeline.args, "--set", "mlflow.enabled=false"]) == 0


def test_phi_present_when_the_delivery_is_declared_deidentified(full_pipeline, inclusion):
    store = full_pipeline.store
    assert not any("PHI_PRESENT" in r for r in inclusion["reasons"])  # not declared: no finding
    carrying = {r.path for r in store.read("instances").filter(F.size("phi_evidence") > 0)
                .select("path").collect()}
    assert carrying
    try:
        assert triage(["curate", *full_pipeline.args, "--set", "privacy.declared_deidentified=true",
                       "--set", "mlflow.enabled=false"]) == 0
        declared = store.read("inclusion").toPandas()
        flagged = {p for p, r in zip(declared["path"], declared["reasons"]) if "PHI_PRESENT" in r}
        assert flagged == carrying
        assert (declared[declared["path"].isin(flagged)]["decision"] == "exclude").all()
        evidence = [e for ev in declared["evidence"] for e in ev if e["code"] == "PHI_PRESENT"]
        # the evidence names the attributes, never their values
        keywords = set(load_settings().privacy.hash_keywords) | {"PatientIdentityRemoved"}
        prefix = "identifiers in a delivery declared de-identified: "
        assert evidence
        for item in evidence:
            assert item["detail"].startswith(prefix)
            assert {line.split()[0] for line in item["detail"][len(prefix):].split("; ")} <= keywords
    finally:
        assert triage(["curate", *full_pipeline.args, "--set", "mlflow.enabled=false"]) == 0


def test_review_queue_order_diversity_and_thumbnails(full_pipeline, inclusion):
    queue = full_pipeline.store.read("review_queue").orderBy("queue_rank").toPandas()
    size, share = 100, 0.25
    assert 0 < len(queue) <= size
    assert list(queue["queue_rank"]) == list(range(1, len(queue) + 1))
    decided = dict(zip(inclusion["path"], inclusion["decision"]))
    assert set(queue["path"].map(decided)) <= {"review", "include"}
    assert (queue["decision"] != "exclude").all()
    # every review decision is a candidate: the queue holds the best of them
    candidates = inclusion[inclusion["decision"] == "review"]
    if len(candidates) <= len(queue):
        assert set(candidates["path"]) <= set(queue["path"])
    assert all(bytes(t[:8]) == b"\x89PNG\r\n\x1a\n" for t in queue["thumbnail_png"])
    # no cluster above its quota while a cluster with candidates left out exists
    quota = math.ceil(size * share)
    counts = queue["cluster"].value_counts(dropna=False)
    left_out = set(candidates["cluster"].dropna()) - set(queue["cluster"].dropna())
    if left_out:
        assert counts.max() <= quota
    assert counts.max() <= max(quota, len(queue) - quota * (counts.size - 1))
    priorities = list(queue["review_priority"])
    assert priorities == sorted(priorities, reverse=True)


def test_triage_sql_on_the_result_tables(full_pipeline, capsys):
    query = ("SELECT i.site, round(avg(CASE WHEN c.decision = 'exclude' THEN 1.0 ELSE 0.0 END), 2) AS excluded "
             "FROM inclusion c JOIN instances i USING (path) GROUP BY i.site ORDER BY i.site")
    assert triage(["sql", query, *full_pipeline.args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["site", "excluded"]
    assert [line.split()[0] for line in out[2:]] == ["site_a", "site_b", "site_c", "site_d"]
    assert triage(["sql", "SELECT count(*) AS n FROM review_queue", *full_pipeline.args]) == 0
    assert int(capsys.readouterr().out.splitlines()[2]) > 0


# Statements `triage sql` must refuse: each read a secret or a file, wrote, or changed the session.
HOSTILE_SQL = [
    "SELECT reflect('java.lang.System', 'getenv', 'TRIAGE_HMAC_SECRET')",
    "SELECT `java_method`('java.lang.System', 'getenv', 'HOME')",
    "SELECT * FROM text.`/etc/hostname`",
    "SELECT (SELECT count(*) FROM parquet.`/tmp`) AS n",
    "INSERT OVERWRITE DIRECTORY '/tmp/triage-sql-x' USING parquet SELECT 1 AS x",
    "FROM instances INSERT OVERWRITE DIRECTORY '/tmp/triage-sql-y' SELECT *",
    "WITH a AS (SELECT 1 AS x) INSERT INTO instances SELECT * FROM a",
    "DELETE FROM instances",
    "SET spark.sql.shuffle.partitions=1",
    "CACHE TABLE instances",
    "CREATE TEMPORARY VIEW v AS SELECT 1",
    "ADD JAR /tmp/x.jar",
    "SELECT * FROM read_files('/etc/hostname')",
]


def test_triage_sql_runs_only_queries_over_the_tables(full_pipeline, capsys):
    version = full_pipeline.store.version("instances")
    for statement in HOSTILE_SQL:
        assert triage(["sql", statement, *full_pipeline.args]) == 2, statement
        error = capsys.readouterr().err.strip()
        assert error.startswith("triage sql: ") and "\n" not in error, (statement, error)
        assert "instances" in error.split("Tables: ")[-1]
    assert full_pipeline.store.version("instances") == version
    assert not os.path.exists("/tmp/triage-sql-x") and not os.path.exists("/tmp/triage-sql-y")
    # a query the README shows still runs; a wrong table name is one line that lists the tables
    assert triage(["sql", "SELECT f.code, count(*) AS n FROM pixel_stats LATERAL VIEW explode(findings) t AS f "
                   "GROUP BY f.code ORDER BY n DESC", *full_pipeline.args]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["code", "n"]
    assert triage(["sql", "SELECT * FROM instance", *full_pipeline.args]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "instances" in error
    assert triage(["sql", "SHOW TABLES", *full_pipeline.args]) == 0
