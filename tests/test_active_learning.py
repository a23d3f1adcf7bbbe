"""`triage annotate next`: uncertainty formulas (numpy and Spark), k-center
greedy, and the command on the demo pipeline."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dicom_triage.udfs.active_learning import entropy, k_center_greedy, least_confidence, margin, uncertainty_score

SECRET = "demo-pipeline-test-secret-0123456789"
PROBS = [[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]
# by hand: entropy of [0.7, 0.2, 0.1] = -(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1) / ln 3
H0 = (0.7 * math.log(1 / 0.7) + 0.2 * math.log(5) + 0.1 * math.log(10)) / math.log(3)
H1 = (0.8 * math.log(2.5) + 0.2 * math.log(5)) / math.log(3)


def test_uncertainty_formulas_by_hand():
    assert least_confidence(PROBS) == pytest.approx([0.3, 0.6, 0.0, 2 / 3])
    assert margin(PROBS) == pytest.approx([0.5, 0.0, 1.0, 0.0])
    assert entropy(PROBS) == pytest.approx([H0, H1, 0.0, 1.0])
    assert H0 == pytest.approx(0.7298, abs=1e-4)
    assert uncertainty_score(PROBS, "margin") == pytest.approx([0.5, 1.0, 0.0, 1.0])
    assert margin([[1.0]]) == pytest.approx([1.0]) and entropy([[1.0]]) == pytest.approx([0.0])
    with pytest.raises(ValueError):
        uncertainty_score(PROBS, "variance")


def test_uncertainty_in_spark_matches(spark):
    from dicom_triage.jobs.annotate_next import uncertainty_columns
    from pyspark.sql import functions as F
    rows = [(i, dict(zip(["a", "b", "c"], p))) for i, p in enumerate(PROBS)] + [(9, {"only": 1.0})]
    df = spark.createDataFrame(rows, "i int, p map<string,double>")
    out = df.select("i", *[c.alias(n) for n, c in uncertainty_columns(F.col("p")).items()]).orderBy("i").collect()
    assert [r.least_confidence for r in out] == pytest.approx([0.3, 0.6, 0.0, 2 / 3, 0.0])
    assert [r.margin for r in out] == pytest.approx([0.5, 0.0, 1.0, 0.0, 1.0])
    assert [r.entropy for r in out] == pytest.approx([H0, H1, 0.0, 1.0, 0.0])
    assert [r.predicted_label for r in out][0::2] == ["a", "a", "only"]
    assert [r.confidence for r in out] == pytest.approx([0.7, 0.4, 1.0, 1 / 3, 1.0])


def test_k_center_greedy_spreads_over_clusters():
    # three tight clusters; the candidates come most unsure first, and the first
    # four are near-copies in the cluster at the origin
    rng = np.random.default_rng(0)
    origin = rng.normal(0, 0.01, (4, 2))
    far = rng.normal([10, 0], 0.01, (3, 2))
    up = rng.normal([0, 6], 0.01, (3, 2))
    X = np.vstack([origin, far, up])
    chosen, distances = k_center_greedy(X, 3)
    assert chosen[0] == 0 and chosen[1] in range(4, 7) and chosen[2] in range(7, 10)      # farthest first: (10, 0) then (0, 6)
    assert distances[0] is None and distances[1] == pytest.approx(10, abs=0.1)
    assert distances[2] == pytest.approx(6, abs=0.1)
    # a hand-made line: 0, 1, 2, 10 -> 0, then 10 (distance 10), then 2 (2 from 0), then 1
    line = np.array([[0.0, 0], [1, 0], [2, 0], [10, 0]])
    assert k_center_greedy(line, 4) == ([0, 3, 2, 1], [None, 10.0, 2.0, 1.0])
    # ties go to the lower index (the more unsure), copies come last, size beyond the pool is capped
    dup = np.array([[0.0, 0], [0, 0], [1, 0], [-1, 0]])
    assert k_center_greedy(dup, 10)[0] == [0, 2, 3, 1]
    assert k_center_greedy(dup, 0) == ([], [])


def test_next_command_on_the_demo(full_pipeline, monkeypatch, capsys):
    from dicom_triage.jobs.annotate_next import candidate_pool, scored_candidates
    from dicom_triage.jobs.cli import main as triage
    from dicom_triage.schemas.annotation import LABELS
    from pyspark.sql import functions as F
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", SECRET)
    store = full_pipeline.store
    inclusion, anatomy = store.read("inclusion"), store.read("anatomy")
    ranked = scored_candidates(inclusion, anatomy, None, "margin").orderBy(F.desc("uncertainty"), "path")
    top = [r.path for r in ranked.limit(3).collect()]
    # label the three most unsure instances: they must not come back
    labelled = store.spark.createDataFrame([("ana", path, "head", "test.csv") for path in top],
                                           "annotator string, path string, label string, source string")
    labelled = labelled.select(*[F.col(f.name) if f.name in labelled.columns else
                                 F.lit(None).cast(f.dataType).alias(f.name) for f in LABELS.fields[:-2]])
    stamped = labelled.withColumn("run_id", F.lit("t")).withColumn("computed_at", F.current_timestamp())
    store.write(stamped.select(*LABELS.fieldNames()), "labels", mode="overwrite")
    assert triage(["annotate", "next", *full_pipeline.args, "--set", "annotate.next.size=8",
                   "--set", "annotate.next.candidate_pool=40", "--set", "annotate.next.uncertainty=margin",
                   "--set", "annotate.next.accept_confidence=0.999"]) == 0
    assert "label_next" in capsys.readouterr().out
    chosen = store.read("label_next").orderBy("rank").toPandas()
    unlabelled = scored_candidates(inclusion, anatomy, store.read("labels").select("path"), "margin")
    pool = pd.DataFrame([r.asDict() for r in candidate_pool(unlabelled, store.read("embeddings"), 40)])
    assert list(chosen["rank"]) == list(range(1, 9)) and not set(chosen.path) & set(top)
    assert set(chosen.path) <= set(pool.path)                          # from the most unsure
    assert chosen.path[0] == pool.path[0] and chosen.pool_rank[0] == 1    # starting with the most unsure
    assert chosen.uncertainty_kind.unique().tolist() == ["margin"]
    assert chosen.uncertainty.tolist()[0] == pytest.approx(1 - chosen.margin[0])
    dist = chosen.distance[1:].to_numpy()
    assert (dist > 0).all() and (np.diff(dist) <= 1e-9).all()           # farthest first, never a copy
    included = set(inclusion.filter("decision = 'include'").toPandas().path)
    assert set(chosen.path) <= included

    accept = store.read("accept_predictions").toPandas()
    assert (accept.confidence >= 0.999).all() and set(accept.path) <= included and not set(accept.path) & set(top)
    expected = anatomy.join(inclusion.filter("decision = 'include'"), "path") \
        .filter(F.col("confidence") >= 0.999).filter(~F.col("path").isin(top)).count()
    assert len(accept) == expected > 0
