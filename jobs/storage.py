"""Object storage through fsspec: one way to name, list and open files everywhere.

Paths are kept as full URIs (`file:///...`, `s3://bucket/...`, `gs://...`,
`abfs://...`); Databricks volumes (`/Volumes/...`) are local paths there.
Listing runs on the driver and returns size and modification time / ETag,
which make a file's identity for incremental runs.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import posixpath
from dataclasses import dataclass
from typing import Callable

from fsspec.core import url_to_fs

from dicom_triage.jobs.config import ConfigError


@dataclass(frozen=True)
class Listed:
    path: str
    relative_path: str
    size_bytes: int
    modified_at: dt.datetime | None
    etag: str | None


def filesystem(uri: str, storage_options: dict | None = None):
    """(fsspec filesystem, path without protocol) for a URI or local path."""
    options = dict(storage_options or {}) if _is_remote(uri) else {}
    if uri.startswith("s3://") or uri.startswith("s3a://"):
        options = s3_options(options)
        uri = "s3://" + uri.split("://", 1)[1]
    try:
        return url_to_fs(uri, **options)
    except (ImportError, ValueError) as exc:  # e.g. gs:// without gcsfs, unknown protocol
        raise ConfigError(f"cannot open {uri}: {exc}") from None


def s3_options(options: dict) -> dict:
    """Accept the common spelling `endpoint_url` at top level (s3fs wants it in client_kwargs)."""
    options = dict(options)
    endpoint = options.pop("endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options.setdefault("client_kwargs", {})
        options["client_kwargs"] = {**options["client_kwargs"], "endpoint_url": endpoint}
    return options


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def full_uri(fs, path: str) -> str:
    return fs.unstrip_protocol(path)


def join(base: str, *parts: str) -> str:
    if "://" in base:
        scheme, rest = base.split("://", 1)
        return f"{scheme}://" + posixpath.join(rest.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def list_objects(root: str, storage_options: dict | None = None, ignore_names=(),
                 ignore_prefixes=()) -> list[Listed]:
    """Every object under `root` (recursively), with size and modification time.

    Names in `ignore_names` and path components starting with one of
    `ignore_prefixes` (e.g. `_ground_truth.csv`, `.DS_Store`, `_delta_log`) are
    skipped. A missing or unreachable root raises ConfigError naming `input`.
    """
    fs, base = filesystem(root, storage_options)
    try:
        if fs.isfile(base):
            found = {base: fs.info(base)}
        else:
            found = fs.find(base, detail=True, withdirs=False)
            if not found and not fs.exists(base):
                raise ConfigError(f"setting 'input': {root} does not exist")
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"setting 'input': {root} does not exist") from None
    except PermissionError as exc:
        raise ConfigError(f"setting 'input': no permission to list {root}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"setting 'input': cannot list {root}: {exc}") from None
    base_dir = base.rstrip("/") if not fs.isfile(base) else posixpath.dirname(base)
    out = []
    for path, info in sorted(found.items()):
        if info.get("type", "file") != "file":
            if not _link_to_file(fs, info):
                continue
            target = os.stat(info["name"])  # the file's own size and time, not the link's
            info = {**info, "size": target.st_size, "mtime": target.st_mtime}
        path = _utf8_name(path)
        relative = posixpath.relpath(path, _utf8_name(base_dir)) if base_dir else path
        parts = relative.split("/")
        if parts[-1] in ignore_names or any(p.startswith(tuple(ignore_prefixes)) for p in parts if ignore_prefixes):
            continue
        out.append(Listed(full_uri(fs, path), relative, int(info.get("size") or 0),
                          _modified(info), _etag(info)))
    return out


def _utf8_name(path: str) -> str:
    """A local name whose bytes are not UTF-8 (Python holds them as surrogates)
    with those bytes written as \\xNN: storable in a table, and visibly so. Such an
    object cannot be read back by this name; ingest says so on its error row."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def _link_to_file(fs, info: dict) -> bool:
    """A local symbolic link whose target is a regular file (read as that file,
    with its size and time). Links to folders, FIFOs and devices stay unlisted."""
    return bool(info.get("islink")) and "file" in fs.protocol and os.path.isfile(info["name"])


def _modified(info: dict) -> dt.datetime | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
            except ValueError:
                continue
    return None


def _etag(info: dict) -> str | None:
    value = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    return str(value).strip('"') if value else None


def read_bytes(path: str, storage_options: dict | None = None) -> bytes:
    """The whole object."""
    fs, stripped = filesystem(path, storage_options)
    return fs.cat_file(stripped)


def whole_object_reader(storage_options: dict) -> Callable[[str], bytes]:
    """path -> the object's bytes; picklable, for the executors' batch functions."""
    return functools.partial(read_bytes, storage_options=storage_options)


def range_reader(storage_options: dict) -> Callable[[str], Callable[[int, int], bytes]]:
    """path -> fetch(start, end); picklable, for the executors' batch functions."""
    return functools.partial(fetcher, storage_options=storage_options)


def fetcher(path: str, storage_options: dict | None = None):
    """A `fetch(start, end) -> bytes` for one object, for `udfs.object_reader.BlockReader`."""
    fs, stripped = filesystem(path, storage_options)

    def fetch(start: int, end: int) -> bytes:
        return fs.cat_file(stripped, start=start, end=end)

    return fetch


def read_text(uri: str, storage_options: dict | None = None) -> str:
    fs, path = filesystem(uri, storage_options)
    with fs.open(path, "rb") as handle:
        return handle.read().decode("utf-8")


def open_url(uri: str, mode: str = "rb", storage_options: dict | None = None):
    fs, path = filesystem(uri, storage_options)
    return fs.open(path, mode)

