"""`triage annotate plan`: the stratified deal (pure), the Spark plan on a
synthetic inclusion table, and the command on the demo pipeline."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from dicom_triage.udfs.annotation_plan import batch_count, deal

SECRET = "demo-pipeline-test-secret-0123456789"


# -- the deal, without Spark ---------------------------------------------------------

def _expanded(frame):
    """[(batch, annotator, position, k, overlap)] one per assignment."""
    out = []
    for k, (batch, overlap, who, where) in enumerate(zip(frame.batch_id, frame.overlap, frame.annotators,
                                                         frame.positions)):
        out += [(batch, a, p, k, overlap) for a, p in zip(who, where)]
    return out


@pytest.mark.parametrize("total,batch_size,fraction,annotators", [
    (1037, 200, 0.1, 3), (10, 200, 0.5, 2), (401, 100, 0.0, 4), (57, 10, 1.0, 3), (33, 5, 0.3, 1)])
def test_deal_covers_everything_once_with_positions_in_order(total, batch_size, fraction, annotators):
    frame = deal(np.arange(total), total, batch_size, fraction, annotators)
    assert len(frame) == total
    batches = batch_count(total, batch_size)
    sizes = Counter(frame.batch_id)
    assert set(sizes) == set(range(batches)) and max(sizes.values()) <= batch_size
    assert max(sizes.values()) - min(sizes.values()) <= 1
    for batch, m in sizes.items():
        overlap = frame.overlap[frame.batch_id == batch].sum()
        assert overlap == (0 if annotators == 1 else int(np.floor(fraction * m + 0.5)))
    rows = _expanded(frame)
    for batch, overlap, who in zip(frame.batch_id, frame.overlap, frame.annotators):
        assert sorted(who) == (list(range(annotators)) if overlap else who) and (overlap or len(who) == 1)
    # every annotator's list in a batch is numbered 0..n-1, in deal order
    lists: dict = {}
    for batch, a, p, k, _ in rows:
        lists.setdefault((batch, a), []).append((k, p))
    for items in lists.values():
        items.sort()
        assert [p for _, p in items] == list(range(len(items)))
    own = Counter((b, a) for b, a, _, _, overlap in rows if not overlap)
    for batch in range(batches):
        counts = [own[(batch, a)] for a in range(annotators)]
        assert max(counts) - min(counts) <= 1


def test_deal_gives_every_sub_batch_the_same_mix():
    # strata are contiguous runs in deal order: 500 of A, 300 of B, 137 of C, 63 of D
    sizes = {"A": 500, "B": 300, "C": 137, "D": 63}
    stratum = np.concatenate([[name] * n for name, n in sizes.items()])
    total = len(stratum)
    frame = deal(np.arange(total), total, 200, 0.1, 3)
    per_batch, per_annotator, per_overlap = Counter(), Counter(), Counter()
    for k, (batch, overlap, who) in enumerate(zip(frame.batch_id, frame.overlap, frame.annotators)):
        per_batch[(batch, stratum[k])] += 1
        if overlap:
            per_overlap[(batch, stratum[k])] += 1
        else:
            per_annotator[(batch, who[0], stratum[k])] += 1
    for name in sizes:
        in_batches = [per_batch[(b, name)] for b in range(5)]
        assert max(in_batches) - min(in_batches) <= 1, (name, in_batches)
        for b in range(5):
            shares = [per_annotator[(b, a, name)] for a in range(3)]
            assert max(shares) - min(shares) <= 1, (name, b, shares)
            expected_overlap = per_batch[(b, name)] * 20 / 200
            assert abs(per_overlap[(b, name)] - expected_overlap) <= 1


# -- the plan in Spark ----------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_inclusion(spark):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(900):
        site = str(rng.choice(["north", "south", "east"], p=[0.6, 0.3, 0.1]))
        cluster = int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1]))
        decision = "include" if i % 10 else ("exclude" if i % 20 else "review")
        rows.append((f"/d/{site}/{i:04d}.dcm", f"1.2.{i}", site, cluster, decision))
    frame = pd.DataFrame(rows, columns=["path", "sop_instance_uid", "site", "cluster", "decision"])
    return spark.createDataFrame(frame, "path string, sop_instance_uid string, site string, cluster int, "
                                        "decision string")


def _plan(inclusion, seed=17, names=("ana", "ben", "chen"), batch_size=200, fraction=0.1):
    from dicom_triage.jobs.annotate_plan import assignments, included_instances
    return assignments(included_instances(inclusion, ["site", "cluster"]), list(names), batch_size, fraction,
                       seed).toPandas()


def test_plan_is_stratified_complete_and_seeded(synthetic_inclusion):
    from pyspark.sql import functions as F
    plan = _plan(synthetic_inclusion)
    included = {r.path for r in synthetic_inclusion.collect() if r.decision == "include"}
    assert set(plan.path) == included and len(included) == 810
    overlap = plan[plan.overlap]
    own = plan[~plan.overlap]
    assert (overlap.groupby("path").annotator.nunique() == 3).all()      # every annotator labels the overlap
    assert own.path.is_unique and not set(own.path) & set(overlap.path)   # the rest exactly once
    assert plan.groupby("path").batch_id.nunique().max() == 1
    assert not plan.duplicated(["batch_id", "annotator", "position"]).any()
    assert plan.batch_id.nunique() == 5 and 0.08 < overlap.path.nunique() / 810 < 0.12
    # each stratum's share per annotator sub-batch within one item, in every batch
    mix = own.groupby(["batch_id", "stratum", "annotator"]).size().unstack(fill_value=0)
    assert mix.shape[1] == 3 and ((mix.max(axis=1) - mix.min(axis=1)) <= 1).all()
    per_batch = plan.drop_duplicates("path").groupby(["stratum", "batch_id"]).size().unstack(fill_value=0)
    assert ((per_batch.max(axis=1) - per_batch.min(axis=1)) <= 1).all()
    assert set(plan.stratum) >= {"site=north|cluster=0", "site=east|cluster=3"}

    key = ["batch_id", "annotator", "position"]
    # the same rows in another order and partitioning: the same plan
    again = _plan(synthetic_inclusion.orderBy(F.desc("path")).repartition(3))
    assert plan.sort_values(key).reset_index(drop=True).equals(again.sort_values(key).reset_index(drop=True))
    other = _plan(synthetic_inclusion, seed=18).sort_values(key).reset_index(drop=True)
    assert not other.path.equals(plan.sort_values(key).reset_index(drop=True).path)


def test_plan_command_on_the_demo(full_pipeline, monkeypatch, capsys):
    from dicom_triage.jobs.cli import main as triage
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", SECRET)
    assert triage(["annotate", "plan", *full_pipeline.args, "--set", "annotate.annotators=[a,b,c]",
                   "--set", "annotate.batch_size=50", "--set", "annotate.overlap_fraction=0.2"]) == 0
    store = full_pipeline.store
    plan = store.read("annotation_assignments").toPandas()
    inclusion = store.read("inclusion").toPandas()
    included = set(inclusion.path[inclusion.decision == "include"])
    assert included and set(plan.path) == included
    assert set(plan.annotator) == {"a", "b", "c"} and plan.run_id.nunique() == 1
    assert (plan[plan.overlap].groupby("path").annotator.nunique() == 3).all()
    assert plan[~plan.overlap].path.is_unique
    out = capsys.readouterr().out
    assert "annotation_assignments" in out and "one CSV list per annotator" in out
    lists = full_pipeline.output / "annotation_assignments_csv"
    ana = pd.concat([pd.read_csv(f) for f in sorted((lists / "annotator=a").glob("*.csv"))])
    assert sorted(ana.path) == sorted(plan.path[plan.annotator == "a"])


def test_annotators_are_required():
    from dicom_triage.jobs.annotate_plan import annotators_from
    from dicom_triage.jobs.config import ConfigError, load_settings
    for value in ("[]", "null", "[a, a]"):
        with pytest.raises(ConfigError, match="annotate.annotators"):
            annotators_from(load_settings([], [f"annotate.annotators={value}"]))
    assert annotators_from(load_settings([], ["annotate.annotators=[ana, 7]"])) == ["ana", "7"]
