"""Shared fixtures: one local Spark session and one S3-compatible server (moto) per test run."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

# Every JVM the tests start (the shared session, each command-line run, the
# standalone cluster) lives seconds to minutes on small data: the quick C1 JIT
# alone spends less CPU compiling than it saves (one curate stage of 150 objects,
# four alternating runs: 86 s and 82 s without, 76 s and 63 s with; not a benchmark).
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1")

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def aws_test_env():
    """Fake AWS credentials, so no test can reach a real account.

    Spark needs them before it starts: its Python workers inherit the JVM's
    environment, which is fixed at launch.
    """
    patch = pytest.MonkeyPatch()
    for key, value in AWS_TEST_ENV.items():
        patch.setenv(key, value)
    yield AWS_TEST_ENV
    patch.undo()


@pytest.fixture(scope="session")
def spark(aws_test_env):
    from pyspark.sql import SparkSession

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers must import the project's packages
    session = (SparkSession.builder.master("local[2]").appName("dicom-triage-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.session.timeZone", "UTC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# Started in its own process: some delta-rs calls (DeltaTable.history, is_deltatable)
# hold the GIL while they wait for the network, which stalls a server thread in
# this process until the request times out.
MOTO_SERVER = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the test session closes our stdin
server.stop()
"""


@pytest.fixture(scope="session")
def s3_server(aws_test_env):
    """moto's S3 on loopback: `.endpoint_url`, `.create_bucket(name) -> name`."""
    import boto3

    process = subprocess.Popen([sys.executable, "-c", MOTO_SERVER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    endpoint_url = f"http://127.0.0.1:{int(process.stdout.readline())}"
    client = boto3.client("s3", endpoint_url=endpoint_url)

    def create_bucket(name: str) -> str:
        client.create_bucket(Bucket=name)
        return name

    yield SimpleNamespace(endpoint_url=endpoint_url, create_bucket=create_bucket)
    process.stdin.close()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def demo_pipeline(spark, tmp_path_factory):
    """The demo delivery run through ingest, pixels and embed once per test run
    (with MLflow on, as a user runs it): `.delivery`, `.output`, `.store`, `.args`."""
    from dicom_triage.jobs.cli import demo_expectations, main as triage
    from dicom_triage.jobs.demo_data import generate_delivery
    from dicom_triage.jobs.tables import TableStore

    root = tmp_path_factory.mktemp("demo-pipeline")
    delivery, output = root / "delivery", root / "out"
    generate_delivery(str(delivery), seed=7)
    args = ["--input", str(delivery), "--output", str(output)]
    for item in demo_expectations(str(delivery)):
        args += ["--set", item]
    patch = pytest.MonkeyPatch()
    patch.setenv("TRIAGE_HMAC_SECRET", "demo-pipeline-test-secret-0123456789")
    for stage in ("ingest", "pixels", "embed", "anatomy"):
        assert triage([stage, *args]) == 0, stage
    yield SimpleNamespace(delivery=delivery, output=output, store=TableStore(spark, str(output)), args=args)
    patch.undo()


@pytest.fixture(scope="session")
def full_pipeline(demo_pipeline):
    """`demo_pipeline` carried through neighbors (exact k-NN, so results equal
    brute force) and curate, once per test run. Same attributes."""
    from dicom_triage.jobs.cli import main as triage

    patch = pytest.MonkeyPatch()
    patch.setenv("TRIAGE_HMAC_SECRET", "demo-pipeline-test-secret-0123456789")
    for stage in ("neighbors", "curate"):
        assert triage([stage, *demo_pipeline.args, "--set", "neighbors.exact=true"]) == 0, stage
    yield demo_pipeline
    patch.undo()
