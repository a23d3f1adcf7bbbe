"""The SparkSession factory: one place that knows the three ways this job runs.

- Databricks / spark-submit: a session (or its master) already exists; use it.
- Embedded default: no master given anywhere, so start `local[*]` on loopback.
Python workers must run the same interpreter as the driver (PYSPARK_PYTHON),
or they will not find the project's packages.
"""
from __future__ import annotations

import os
import shutil
import sys

from jobs.config import ConfigError, Settings


class EnvironmentProblem(RuntimeError):
    """The machine lacks something the job needs (e.g. Java)."""


def check_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.path.exists(os.path.join(java_home, "bin", "java")):
        return
    if shutil.which("java"):
        return
    raise EnvironmentProblem(
        "Java is not installed: Spark needs Java 17 or 21 (e.g. `apt-get install openjdk-17-jre-headless`), "
        "or set JAVA_HOME")


def get_spark(settings: Settings):
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # Databricks notebooks/jobs, tests, a second stage in one process
        return active
    check_java()
    launched_by_submit = "PYSPARK_GATEWAY_PORT" in os.environ or "SPARK_SUBMIT" in os.environ
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
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.spark.log_level)
    return spark
