"""Read the beginning of an object in growing blocks, counting every byte fetched.

A DICOM header sits at the start of the file; the pixel data, usually almost
all of the bytes, follows it. `BlockReader` is a seekable file object over a
`fetch(start, end)` callable (fsspec's `cat_file` works for local disk and
every object store) that fetches aligned blocks on demand: the first block is
small, each further one doubles up to a maximum, so a header costs about one
or two requests and never much more than its own size. A hard byte budget
cuts off files that would make the parser read on and on.
"""
from __future__ import annotations

import io
from typing import Callable


class ReadBudgetExceeded(IOError):
    """The parser asked for more bytes than the configured header budget."""


class BlockReader(io.RawIOBase):
    def __init__(self, fetch: Callable[[int, int], bytes], size: int, first_block: int = 4096,
                 max_block: int = 65536, budget: int = 16 * 2**20):
        self._fetch = fetch
        self._size = size
        self._next_block = first_block
        self._max_block = max_block
        self._budget = budget
        self._start = 0                 # the fetched window is [_start, _start + len(_window))
        self._window = bytearray()
        self._pos = 0
        self.bytes_fetched = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        end = min(self._pos + n, self._size)
        if end <= self._pos:
            return b""
        self._ensure(self._pos, end)
        data = bytes(self._window[self._pos - self._start:end - self._start])
        self._pos = end
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, start: int, length: int) -> bytes:
        """A small read anywhere (e.g. the file's tail) that leaves the window alone."""
        start = max(0, start)
        end = min(self._size, start + length)
        window_end = self._start + len(self._window)
        if self._start <= start and end <= window_end:
            return bytes(self._window[start - self._start:end - self._start])
        self._charge(end - start)
        return self._fetch(start, end)

    def _ensure(self, start: int, end: int) -> None:
        """Make [start, end) available. Reading on extends the window; a jump
        (the parser skipping a long value) starts a new window there, so skipped
        bytes are never fetched."""
        window_end = self._start + len(self._window)
        if self._start <= start and end <= window_end:
            return
        if not (self._start <= start <= window_end):
            self._start, self._window = start, bytearray()
            window_end = start
        stop = min(self._size, max(end, window_end + self._next_block))
        self._charge(stop - window_end)
        chunk = self._fetch(window_end, stop)
        if len(chunk) < min(end, self._size) - window_end:
            raise EOFError(f"object shorter than listed ({window_end + len(chunk)} of {self._size} bytes)")
        self._window += chunk
        self._next_block = min(self._next_block * 2, self._max_block)

    def _charge(self, nbytes: int) -> None:
        self.bytes_fetched += nbytes
        self.requests += 1
        if self.bytes_fetched > self._budget:
            raise ReadBudgetExceeded(
                f"header needs more than {self._budget} bytes (ingest.max_header_bytes)")
