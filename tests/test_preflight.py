"""A delivery that cannot be read, an output that cannot be written, wrong
credentials and a missing Java each stop the job at start with one line that
names the problem (real loopback S3 servers, a real read-only filesystem)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from dicom_triage.jobs.cli import main as triage
from dicom_triage.jobs.config import ConfigError
from dicom_triage.jobs.preflight import check_apart, check_input, check_output
from tests.conftest import MOTO_SERVER

FAST_S3 = {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_names_the_input(aws_test_env):
    options = {**FAST_S3, "endpoint_url": f"http://127.0.0.1:{closed_port()}"}
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"setting 'input': cannot list s3://delivery/x: .*Connect"):
        check_input("s3://delivery/x", options)
    assert time.monotonic() - started < 30


def test_missing_bucket_and_folder(s3_server):
    options = {"endpoint_url": s3_server.endpoint_url}
    with pytest.raises(ConfigError, match="setting 'input': s3://no-such-bucket/d does not exist"):
        check_input("s3://no-such-bucket/d", options)
    with pytest.raises(ConfigError, match="setting 'output': cannot write to s3://no-such-bucket/out"):
        check_output("s3://no-such-bucket/out", options)


def test_writable_outputs_keep_no_probe(s3_server, tmp_path):
    check_output(str(tmp_path / "out"), {})
    assert os.listdir(tmp_path / "out") == []
    bucket = s3_server.create_bucket("preflight-ok")
    check_output(f"s3://{bucket}/triage", {"endpoint_url": s3_server.endpoint_url})


def test_read_only_output_stops_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", "preflight-test-secret-0123456789")
    (tmp_path / "delivery").mkdir()
    assert triage(["ingest", "--input", str(tmp_path / "delivery"), "--output", "/proc/triage-output",
                   "--set", "mlflow.enabled=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("triage: configuration error: setting 'output': cannot write")


@pytest.fixture
def authenticating_s3(aws_test_env):
    """A second loopback S3 server that checks access keys (moto's IAM mode)."""
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    process = subprocess.Popen([sys.executable, "-c", MOTO_SERVER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env)
    yield f"http://127.0.0.1:{int(process.stdout.readline())}"
    process.stdin.close()
    process.wait(timeout=30)


def test_wrong_credentials_name_the_input(authenticating_s3):
    options = {**FAST_S3, "endpoint_url": authenticating_s3, "key": "AKIAWRONGWRONGWRONG0",
               "secret": "wrong-secret"}
    with pytest.raises(ConfigError, match=r"setting 'input': cannot list s3://delivery: PermissionError: The AWS Access Key Id"):
        check_input("s3://delivery", options)


def test_missing_java_is_one_clear_line(tmp_path):
    triage_bin = shutil.which("triage", path=os.path.dirname(sys.executable))
    (tmp_path / "delivery").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(PATH=os.path.dirname(sys.executable), TRIAGE_HMAC_SECRET="preflight-test-secret-0123456789")
    result = subprocess.run([triage_bin, "ingest", "--input", str(tmp_path / "delivery"),
                             "--output", str(tmp_path / "out"), "--set", "mlflow.enabled=false"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3
    assert result.stderr.strip().startswith("triage: Java is not installed")
    assert "Traceback" not in result.stderr


def test_an_output_inside_the_delivery_is_refused(tmp_path, monkeypatch):
    """Otherwise each re-run ingests its own Parquet files as NOT_DICOM objects."""
    (tmp_path / "delivery").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "delivery")
    refused = [(tmp_path / "delivery", tmp_path / "delivery" / "out"),
               (tmp_path / "delivery", tmp_path / "link" / "out"),  # the same folder by another name
               (tmp_path / "delivery", tmp_path / "delivery"),
               ("s3a://bucket/delivery/", "s3://bucket/delivery/triage")]
    for delivery, output in refused:
        with pytest.raises(ConfigError, match="setting 'output': .* lies inside the delivery"):
            check_apart(str(delivery), str(output))
    with pytest.raises(ConfigError, match="setting 'input': .* lies inside the output"):
        check_apart(str(tmp_path / "out" / "delivery"), str(tmp_path / "out"))
    for delivery, output in [(tmp_path / "delivery", tmp_path / "delivery-out"), ("s3://b/d", "s3://b/d2"),
                             ("s3://b/d", "main.triage")]:
        check_apart(str(delivery), str(output))


def test_an_output_inside_the_delivery_stops_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", "preflight-test-secret-0123456789")
    (tmp_path / "delivery").mkdir()
    assert triage(["ingest", "--input", str(tmp_path / "delivery"), "--output", str(tmp_path / "delivery" / "out"),
                   "--set", "mlflow.enabled=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("triage: configuration error: setting 'output': ")
    assert not (tmp_path / "delivery" / "out").exists()


def test_a_master_spark_cannot_use_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", "preflight-test-secret-0123456789")
    (tmp_path / "delivery").mkdir()
    assert triage(["ingest", "--input", str(tmp_path / "delivery"), "--output", str(tmp_path / "out"),
                   "--set", "spark.master=bogus://x", "--set", "mlflow.enabled=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["triage: configuration error: setting 'spark.master': 'bogus://x' is not a Spark master URL "
                   "(local[*], local[N], spark://host:port, yarn, k8s://https://host:port)"]


def test_a_failed_spark_start_is_told_in_its_own_words():
    from dicom_triage.jobs.session import java_message
    py4j = ("An error occurred while calling None.org.apache.spark.api.java.JavaSparkContext.\n"
            ": org.apache.spark.SparkException: Could not parse Master URL: 'spark:/x'\n"
            "\tat org.apache.spark.SparkContext$.createTaskScheduler(SparkContext.scala:3217)\n")
    assert java_message(Exception(py4j)) == "Could not parse Master URL: 'spark:/x'"
    assert java_message(RuntimeError("[JAVA_GATEWAY_EXITED] Java gateway process exited")) == \
        "[JAVA_GATEWAY_EXITED] Java gateway process exited"


def test_a_mistyped_setting_names_the_one_meant():
    from dicom_triage.jobs.config import load_settings
    with pytest.raises(ConfigError, match=r"unknown setting 'neighbors\.kk' \(from --set\); did you mean 'neighbors\.k'\?"):
        load_settings(overrides=["neighbors.kk=3"])
    with pytest.raises(ConfigError, match=r"unknown setting 'pixles' .*did you mean 'pixels'\?"):
        load_settings(overrides=["pixles.timeout_seconds=3"])
    with pytest.raises(ConfigError, match=r"unknown setting 'zzz'[^;]*$"):  # nothing close: no guess
        load_settings(overrides=["zzz=1"])
