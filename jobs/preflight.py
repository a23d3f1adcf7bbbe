"""Checks before any work: can the delivery be read and the output written?

An unreachable bucket, wrong credentials or a read-only output otherwise
surface as a stack trace from deep inside a stage, minutes in. Here they stop
the job at start with one line that names the setting.
"""
from __future__ import annotations

import os
import uuid

from dicom_triage.jobs.config import ConfigError
from dicom_triage.jobs.storage import filesystem, join
from dicom_triage.jobs.tables import CATALOG_OUTPUT

PROBE_FOLDER = "_triage_write_check"


def describe(exc: BaseException) -> str:
    """One line: the exception's kind and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_input(uri: str, storage_options: dict) -> None:
    """The delivery exists and can be listed with these credentials."""
    fs, root = filesystem(uri, storage_options)
    try:
        fs.ls(root, detail=False)
    except FileNotFoundError:
        raise ConfigError(f"setting 'input': {uri} does not exist") from None
    except Exception as exc:  # every backend raises its own kinds: credentials, network, permissions
        raise ConfigError(f"setting 'input': cannot list {uri}: {describe(exc)}") from None


def check_apart(input_uri: str, output_uri: str) -> None:
    """Neither folder holds the other: an output inside the delivery would be
    read back by the next run's listing as objects of the delivery (a run's own
    tables ingested as NOT_DICOM), and a delivery inside the output could be
    overwritten by a table."""
    if CATALOG_OUTPUT.match(output_uri):
        return
    delivery, output = _location(input_uri), _location(output_uri)
    if _within(output, delivery):
        raise ConfigError(f"setting 'output': {output_uri} lies inside the delivery {input_uri}; "
                          "choose an output outside it")
    if _within(delivery, output):
        raise ConfigError(f"setting 'input': {input_uri} lies inside the output {output_uri}; "
                          "choose an output outside the delivery")


def _location(uri: str) -> str:
    """A comparable form: scheme://bucket/key for object stores (s3a/s3n are s3),
    the real absolute path (symbolic links followed) for local folders."""
    if "://" in uri and not uri.startswith("file://"):
        scheme, rest = uri.split("://", 1)
        scheme = "s3" if scheme in ("s3a", "s3n") else scheme
        return f"{scheme}://{rest.rstrip('/')}"
    return os.path.realpath(uri.removeprefix("file://"))


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def check_output(uri: str, storage_options: dict) -> None:
    """A small file can be written under the output and removed again."""
    if CATALOG_OUTPUT.match(uri):
        return  # catalog tables: the catalog's permissions are checked by the first write
    fs, root = filesystem(uri, storage_options)
    _, probe_path = filesystem(join(uri, PROBE_FOLDER, uuid.uuid4().hex), storage_options)
    try:
        if "file" in fs.protocol:  # object stores have no folders to make
            fs.makedirs(join(root, PROBE_FOLDER), exist_ok=True)
        with fs.open(probe_path, "wb") as handle:
            handle.write(b"ok")
        fs.rm(probe_path)
    except Exception as exc:
        raise ConfigError(f"setting 'output': cannot write to {uri}: {describe(exc)}") from None
    try:
        if "file" in fs.protocol:
            fs.rmdir(join(root, PROBE_FOLDER))
    except OSError:
        pass  # another run's probe is still there
