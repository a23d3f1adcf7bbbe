"""What every stage needs, resolved once at start: settings, run id, the
identifier secret, the Spark session and the table store. Problems with any
of them stop the job here, before work starts, with the setting's name."""
from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
from dataclasses import dataclass, field
from functools import cached_property

from dicom_triage.jobs.config import ConfigError, Settings
from dicom_triage.udfs.headers import HeaderPolicy

SECRET_MIN_BYTES = 16


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def resolve_secret(settings: Settings) -> tuple[bytes, bool]:
    """(secret, made_up). The secret keys identifier hashes; without it the job
    refuses to start, unless demo mode allows a made-up one."""
    name = settings.privacy.secret_env
    value = os.environ.get(name, "")
    if value:
        if len(value.encode()) < SECRET_MIN_BYTES:
            raise ConfigError(
                f"setting 'privacy.secret_env': ${name} is shorter than {SECRET_MIN_BYTES} bytes; "
                "use a long random value (e.g. `openssl rand -hex 32`)")
        return value.encode(), False
    if settings.privacy.allow_generated_secret:
        from dicom_triage.jobs.session import cluster_master
        master = cluster_master(settings)
        if master:
            raise ConfigError(
                f"setting 'privacy.secret_env': environment variable {name} is not set, and a made-up "
                f"secret is refused on a cluster ({master}): "
                "patient keys would match no other run. Give the driver and executors the secret "
                f"(e.g. spark.executorEnv.{name}, spark.yarn.appMasterEnv.{name}, a Kubernetes secret)")
        return secrets.token_bytes(32), True
    raise ConfigError(
        f"setting 'privacy.secret_env': environment variable {name} is not set. Identifiers are "
        f"stored as keyed hashes and need a secret: export {name}=$(openssl rand -hex 32) "
        "(keep it: the same secret keeps patient keys comparable across runs), or run "
        "`triage demo` / --set privacy.allow_generated_secret=true on demo data only")


def header_policy(settings: Settings, secret: bytes) -> HeaderPolicy:
    ingest, privacy = settings.ingest, settings.privacy
    return HeaderPolicy(
        secret=secret,
        hash_keywords=frozenset(privacy.hash_keywords),
        drop_keywords=frozenset(privacy.drop_keywords),
        keep_private_values=privacy.keep_private_values,
        first_block_bytes=ingest.header_first_block_bytes,
        max_block_bytes=ingest.header_max_block_bytes,
        max_header_bytes=ingest.max_header_bytes,
        defer_size_bytes=ingest.defer_size_bytes,
        timeout_seconds=ingest.parse_timeout_seconds,
        accept_missing_preamble=ingest.accept_missing_preamble,
    )


@dataclass
class RunContext:
    settings: Settings
    run_id: str
    secret: bytes
    secret_generated: bool = False
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    # (stage, level, topic, message): what a stage could not do; jobs/notes.py writes them
    notes: list = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings) -> "RunContext":
        secret, generated = resolve_secret(settings)
        if generated:
            print("demo mode: no identifier secret set, made up one for this run "
                  f"(patient keys will not match other runs; set {settings.privacy.secret_env} for real data)",
                  file=sys.stderr)
        return cls(settings=settings, run_id=settings.run_id or new_run_id(), secret=secret,
                   secret_generated=generated)

    @cached_property
    def spark(self):
        from dicom_triage.jobs.session import get_spark
        return get_spark(self.settings)

    @cached_property
    def store(self):
        from dicom_triage.jobs.tables import TableStore
        try:
            return TableStore(self.spark, self.settings.output, backend=self.settings.tables.backend,
                              storage_options=self.settings.storage.options)
        except ValueError as exc:  # backend / output combinations that cannot work
            raise ConfigError(str(exc)) from None

    def stamp(self, df, schema):
        """`df` with this run's `run_id` and `computed_at`, in the columns of `schema`."""
        from pyspark.sql import functions as F
        return (df.withColumn("run_id", F.lit(self.run_id)).withColumn("computed_at", F.lit(self.started_at))
                .select(*schema.fieldNames()))

    def note(self, stage: str, topic: str, message: str, level: str = "warning", say=print) -> None:
        """Record what `stage` could not do and why (schemas/notes.py), and say it."""
        self.notes.append((stage, level, topic, message))
        say(f"{stage}: {message}")

    @property
    def storage_options(self) -> dict:
        return dict(self.settings.storage.options or {})
