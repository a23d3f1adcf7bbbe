"""The SparkSession factory: one place that knows the three ways this job runs.

- Databricks / spark-submit: a session (or its master) already exists; use it.
- Embedded default: no master given anywhere, so start `local[*]` on loopback.
Python workers must run the same interpreter as the driver (PYSPARK_PYTHON),
or they will not find the project's packages.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from importlib import resources

from dicom_triage.jobs.config import ConfigError, Settings


class EnvironmentProblem(RuntimeError):
    """The machine lacks something the job needs (e.g. Java)."""


# Spark's log for the embedded default: WARN, without lines that say nothing to a user.
QUIET_LOG4J = str(resources.files("dicom_triage.conf").joinpath("log4j2.properties"))

# The master URLs spark-submit accepts (anything else exits the gateway with a Java trace).
MASTER_URL = re.compile(r"^(local(\[\s*(\*|\d+)\s*(,\s*\d+\s*)?\])?|local-cluster\[[\d,\s]+\]|spark://\S+|yarn|k8s://\S+)$")


def check_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.path.exists(os.path.join(java_home, "bin", "java")):
        return
    if shutil.which("java"):
        return
    raise EnvironmentProblem(
        "Java is not installed: Spark needs Java 17 or 21 (e.g. `apt-get install openjdk-17-jre-headless`), "
        "or set JAVA_HOME")


def configured_master(settings: Settings) -> str | None:
    """The Spark master this run will use, known before the session starts (None:
    the embedded local default). Cheap: under spark-submit the driver asks the
    JVM that spark-submit already started; otherwise no JVM is started."""
    from pyspark import SparkConf, SparkContext

    active = SparkContext._active_spark_context
    if active is not None:  # get_spark() reuses it whatever the settings say
        return active.master
    if settings.spark.master:
        return settings.spark.master
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # spark-submit: its settings live in its JVM
        SparkContext._ensure_initialized()
        return SparkConf().get("spark.master", None)
    args = shlex.split(os.environ.get("PYSPARK_SUBMIT_ARGS", ""))
    if "--master" in args[:-1]:
        return args[args.index("--master") + 1]
    return None


def cluster_master(settings: Settings) -> str | None:
    """The cluster this run is a job on (spark://, yarn, k8s://, Databricks), None on one machine."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return "Databricks"
    master = configured_master(settings)
    return master if master and not master.startswith("local") else None


def get_spark(settings: Settings):
    from pyspark.sql import SparkSession

    from dicom_triage.jobs.versions import unsupported

    problem = unsupported()
    if problem:
        raise EnvironmentProblem(problem)
    if settings.spark.master and not MASTER_URL.match(settings.spark.master):
        raise ConfigError(f"setting 'spark.master': {settings.spark.master!r} is not a Spark master URL "
                          "(local[*], local[N], spark://host:port, yarn, k8s://https://host:port)")
    active = SparkSession.getActiveSession()
    if active is not None:  # Databricks notebooks/jobs, tests, a second stage in one process
        return active
    check_java()
    # spark-submit and Databricks set the master themselves; never override it with local[*]
    launched_by_submit = any(name in os.environ for name in
                             ("PYSPARK_GATEWAY_PORT", "SPARK_SUBMIT", "DATABRICKS_RUNTIME_VERSION"))
    master = settings.spark.master or (None if launched_by_submit else "local[*]")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master and master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(settings.spark.app_name)
    if master:
        builder = builder.master(master)
    conf = settings.spark.conf
    if not isinstance(conf, dict):
        raise ConfigError("setting 'spark.conf' must be a mapping of Spark settings")
    for key, value in conf.items():
        builder = builder.config(key, str(value))
    if master and master.startswith("local"):
        builder = builder.config("spark.ui.enabled", conf.get("spark.ui.enabled", "false"))
    if not launched_by_submit and not settings.verbose:  # this process starts the JVM: its log is ours to set
        java_options = str(conf.get("spark.driver.extraJavaOptions", ""))
        if "log4j2.configurationFile" not in java_options:
            builder = builder.config("spark.driver.extraJavaOptions",
                                     f"{java_options} -Dlog4j2.configurationFile={QUIET_LOG4J}".strip())
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # a master it cannot reach, a setting it rejects, a JVM that died: one line
        if settings.spark.master:
            raise ConfigError(f"setting 'spark.master': Spark did not start: {java_message(exc)}") from None
        raise EnvironmentProblem(f"Spark did not start: {java_message(exc)}") from None
    spark.sparkContext.setLogLevel(settings.spark.log_level)
    _ship_wheels(spark.sparkContext)
    return spark


def java_message(exc: BaseException) -> str:
    """The cause's own words from a Py4J error ("...SparkException: Could not
    parse Master URL: 'x'"), without the Java class names and stack."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        match = re.match(r"^:?\s*(?:[\w$]+\.)+\w*(?:Exception|Error): (.+)$", line)
        if match:
            return match.group(1)[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _ship_wheels(sc) -> None:
    """`spark-submit --py-files x.whl` copies the wheel to every executor, but PySpark
    puts only .zip/.egg/.jar files on the executors' Python path; a pure-Python
    wheel is a zip archive, so put it there too (the driver already has it)."""
    for path in (sc.getConf().get("spark.submit.pyFiles", None) or "").split(","):
        name = os.path.basename(path)
        if name.lower().endswith(".whl") and name not in sc._python_includes:
            sc._python_includes.append(name)
