"""Demo mode's made-up identifier secret is for one machine only: on a cluster
(spark://, yarn, k8s://, Databricks) the job refuses to start without a
configured secret. The spark-submit to a real standalone cluster is in
tests/test_standalone_cluster.py; here, how the master is found before the
session starts."""
from __future__ import annotations

import pytest
from pyspark import SparkContext

from dicom_triage.jobs.config import ConfigError, load_settings
from dicom_triage.jobs.runtime import RunContext, resolve_secret
from dicom_triage.jobs.session import configured_master

DEMO = ["privacy.allow_generated_secret=true"]


@pytest.fixture(autouse=True)
def no_secret_no_session(monkeypatch):
    monkeypatch.delenv("TRIAGE_HMAC_SECRET", raising=False)
    for name in ("DATABRICKS_RUNTIME_VERSION", "PYSPARK_SUBMIT_ARGS", "PYSPARK_GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)
    # as at the start of a run: no Spark session yet (another test's may be active)
    monkeypatch.setattr(SparkContext, "_active_spark_context", None)


@pytest.mark.parametrize("master", ["spark://10.0.0.5:7077", "yarn", "k8s://https://k8s.example:6443"])
def test_made_up_secret_refused_on_a_cluster(master):
    settings = load_settings(overrides=DEMO + [f"spark.master={master}"])
    assert configured_master(settings) == master
    with pytest.raises(ConfigError, match=r"setting 'privacy.secret_env'.*on a cluster"):
        resolve_secret(settings)


def test_master_from_spark_submit_args_and_databricks(monkeypatch):
    settings = load_settings(overrides=DEMO)
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--master yarn --deploy-mode client pyspark-shell")
    assert configured_master(settings) == "yarn"
    with pytest.raises(ConfigError, match="privacy.secret_env"):
        resolve_secret(settings)
    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS")
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    with pytest.raises(ConfigError, match="privacy.secret_env"):
        RunContext.create(settings)


@pytest.mark.parametrize("master", [None, "local[2]", "local-cluster[2,1,1024]"])
def test_made_up_secret_still_allowed_on_one_machine(master, capsys):
    overrides = DEMO + ([f"spark.master={master}"] if master else [])
    ctx = RunContext.create(load_settings(overrides=overrides))
    assert ctx.secret_generated and len(ctx.secret) == 32
    assert "demo mode" in capsys.readouterr().err


def test_configured_secret_is_used_on_a_cluster(monkeypatch):
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", "cluster-secret-0123456789abcdef")
    secret, generated = resolve_secret(load_settings(overrides=DEMO + ["spark.master=yarn"]))
    assert secret == b"cluster-secret-0123456789abcdef" and not generated


def test_without_demo_mode_the_secret_is_required_everywhere():
    with pytest.raises(ConfigError, match="is not set"):
        resolve_secret(load_settings(overrides=["spark.master=local[2]"]))
