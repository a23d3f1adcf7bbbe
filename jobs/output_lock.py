"""One run at a time per output: a lock object next to the tables.

Delta commits are atomic, but two runs of the same stage on one output would
each decide what is new from the same state and both append it. So a run takes
`<output>/_triage_lock.json` with an exclusive create (O_EXCL on local disks,
a conditional PUT `If-None-Match: *` on S3), refreshes its heartbeat while it
runs and removes it at the end. A second run stops at start with a message
that says who holds the output. A lock left by a run that died is taken over:
on the same host when its process is gone, elsewhere once its heartbeat is
older than `stale_after_seconds`; the takeover is itself guarded by an
exclusive `<lock>.takeover`, so of several runs that find the same dead lock
only one replaces it. On local disks the lock appears whole
(written aside, then hard-linked / renamed into place), so a reader never sees
a half-written one; a lock that cannot be read counts as held until its file
is older than `stale_after_seconds`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
import uuid

from dicom_triage.jobs.storage import filesystem, join

LOCK_NAME = "_triage_lock.json"


class OutputBusy(RuntimeError):
    """Another live run holds the output."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: dict, stale_after_seconds: float, now: dt.datetime | None = None) -> bool:
    """True when the holder is certainly gone: its process is dead on this
    host, or its heartbeat is older than the limit."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _pid_alive(holder["pid"]):
            return True
    try:
        heartbeat = dt.datetime.fromisoformat(holder["heartbeat_at"])
    except (KeyError, TypeError, ValueError):
        return True  # unreadable lock: nobody can be refreshing it
    return ((now or _now()) - heartbeat).total_seconds() > stale_after_seconds


class OutputLock:
    def __init__(self, output: str, storage_options: dict, run_id: str, stale_after_seconds: float = 300):
        self.uri = join(output, LOCK_NAME)
        self.fs, self.path = filesystem(self.uri, storage_options)
        self.local = "file" in self.fs.protocol
        self.run_id = run_id
        self.stale_after = float(stale_after_seconds)
        self.started_at = _now().isoformat()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "started_at": self.started_at, "heartbeat_at": _now().isoformat()}).encode()

    def _write_aside(self) -> str:
        """The record in a file of its own next to the lock (local disks)."""
        self.fs.makedirs(os.path.dirname(self.path), exist_ok=True)
        aside = f"{self.path}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        with open(aside, "wb") as handle:
            handle.write(self._record())
        return aside

    def _create_local(self, path: str) -> None:
        aside = self._write_aside()
        try:
            os.link(aside, path)  # atomic, and fails when the lock exists
        except FileExistsError:
            raise
        except OSError:  # no hard links here (some FUSE mounts): create exclusively, then write
            with open(path, "xb") as handle:
                handle.write(self._record())
        finally:
            os.unlink(aside)

    def _create(self, path: str | None = None) -> bool:
        """Exclusive create of the lock (or of `path`); False when it exists."""
        path = path or self.path
        try:
            if self.local:
                self._create_local(path)
            else:
                self.fs.pipe_file(path, self._record(), mode="create")
        except FileExistsError:
            return False
        except OSError as exc:  # S3 answers 412 Precondition Failed when the key exists
            if "PreconditionFailed" in str(exc) or "412" in str(exc):
                return False
            raise
        return True

    def holder(self) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self.path))
        except FileNotFoundError:
            return None
        except ValueError:
            return {}

    def acquire(self) -> None:
        for _ in range(3):
            if self._create():
                self._start_heartbeat()
                return
            holder = self.holder()
            if holder is None:
                continue  # released meanwhile: try again
            if not (is_stale(holder, self.stale_after) if holder else self._older_than_stale_limit()):
                raise OutputBusy(
                    f"output is in use by run {holder.get('run_id')} (host {holder.get('host')}, "
                    f"pid {holder.get('pid')}, started {holder.get('started_at')}, last heartbeat "
                    f"{holder.get('heartbeat_at')}). Wait for it to finish; if that run is dead, the lock "
                    f"expires {self.stale_after:.0f} s after its last heartbeat, or remove {self.uri}")
            self.take_over(holder)
        raise OutputBusy(f"could not take the output lock {self.uri}: other runs keep taking it")

    def take_over(self, seen: dict) -> None:
        """Remove a dead run's lock, the one judged stale as `seen`, unless another
        run took it over meanwhile. Two runs that both judged it stale must not
        both remove it (the second would remove the first's new lock): the check
        and the removal happen under a second exclusive lock, `<lock>.takeover`."""
        guard = f"{self.path}.takeover"
        if not self._create(guard):
            with contextlib.suppress(FileNotFoundError):
                if self._age_seconds(guard) > self.stale_after:  # a run died while taking over
                    self.fs.rm(guard)
            return  # another run is taking over; the caller tries again
        try:
            if self.holder() == seen:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(guard)

    def _older_than_stale_limit(self) -> bool:
        """For a lock that cannot be read: whether its file is older than the limit."""
        try:
            return self._age_seconds(self.path) > self.stale_after
        except FileNotFoundError:
            return True

    def _age_seconds(self, path: str) -> float:
        """Seconds since `path` was written (infinite when the store does not say)."""
        info = self.fs.info(path)
        modified = info.get("mtime") or info.get("LastModified")
        if isinstance(modified, dt.datetime):
            modified = modified.timestamp()
        return float("inf") if modified is None else time.time() - float(modified)

    def _start_heartbeat(self) -> None:
        def beat():
            while not self._stop.wait(self.stale_after / 5):
                current = self.holder()
                if current and current.get("run_id") == self.run_id:
                    if self.local:  # replace whole, never truncate in place
                        os.replace(self._write_aside(), self.path)
                    else:
                        self.fs.pipe_file(self.path, self._record())
        self._thread = threading.Thread(target=beat, name="output-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        current = self.holder()
        if current is not None and current.get("run_id") == self.run_id:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.path)


@contextlib.contextmanager
def held(output: str, storage_options: dict, run_id: str, stale_after_seconds: float):
    lock = OutputLock(output, storage_options, run_id, stale_after_seconds)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
