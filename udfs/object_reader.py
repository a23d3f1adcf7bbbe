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
import struct
import zlib
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


# -- deflated datasets ------------------------------------------------------------
# pydicom inflates a Deflated Explicit VR Little Endian dataset whole, with no
# bound: a few MiB of deflate stream (ratio up to ~1000:1) become GiBs in
# memory. These helpers inflate with a limit instead.

DEFLATED_TS = "1.2.840.10008.1.2.1.99"
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_PIXEL_GROUP_ELEMENTS = {(tag >> 16, tag & 0xFFFF) for tag in _PIXEL_TAGS}
_INFLATE_CHUNK = 16 * 2**20


class InflateLimitExceeded(ValueError):
    """A deflated dataset inflates to more bytes than allowed."""


def declared_transfer_syntax(fp) -> str | None:
    """The file meta Transfer Syntax UID of the file object at its start, or None
    (no preamble / meta, or unreadable: dcmread reports those itself). Rewinds."""
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import _read_file_meta_info, read_preamble
    start = fp.tell()
    try:
        if read_preamble(fp, False) is None:
            return None
        return str(_read_file_meta_info(fp).get("TransferSyntaxUID") or "").strip("\0 ") or None
    except (InvalidDicomError, ValueError, TypeError, KeyError, AttributeError, IndexError,
            struct.error, EOFError, NotImplementedError):
        return None   # damaged bytes; time limits and read budgets still propagate
    finally:
        fp.seek(start)


def inflate(compressed: bytes, limit: int, keep: bool = True) -> tuple[bytes, bool]:
    """Inflate a raw deflate stream, at most `limit` bytes: (output, whether the
    whole stream fitted). With `keep=False` only counts (memory: one chunk) and
    returns b"" as output."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    parts, total, pending = [], 0, compressed
    while pending and not inflater.eof:
        part = inflater.decompress(pending, min(_INFLATE_CHUNK, limit + 1 - total))
        pending = inflater.unconsumed_tail
        total += len(part)
        if keep:
            parts.append(part)
        if total > limit:
            return b"".join(parts)[:limit], False
        if not part and pending:    # no progress: the stream is damaged
            break
    if not inflater.eof and total < limit:
        tail = inflater.flush()
        total += len(tail)
        if keep:
            parts.append(tail)
        if total > limit:
            return b"".join(parts)[:limit], False
    return b"".join(parts), True


def read_deflated(fp, limit: int, stop_before_pixels: bool = False, defer_size: int | None = None):
    """dcmread of a deflated file with the inflated dataset bounded by `limit` bytes.

    Returns (FileDataset, at_pixels): at_pixels tells whether reading stopped at
    a pixel data element (only with `stop_before_pixels`). With
    `stop_before_pixels` the dataset may be longer than `limit` as long as the
    elements before the pixel data fit; otherwise InflateLimitExceeded."""
    from pydicom.dataset import FileDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
    preamble = read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    compressed = fp.read()
    if not stop_before_pixels and not inflate(compressed, limit, keep=False)[1]:
        raise InflateLimitExceeded(f"deflated dataset inflates to more than {limit} bytes")
    inflated, whole = inflate(compressed, limit)
    buffer = DicomBytesIO(inflated)
    stop = (lambda tag, vr, length: tag in _PIXEL_TAGS) if stop_before_pixels else None
    try:
        dataset = read_dataset(buffer, False, True, stop_when=stop, defer_size=defer_size)
    except Exception:
        if not whole:   # the cut at the limit, not the data, broke the parse
            raise InflateLimitExceeded(f"deflated header inflates to more than {limit} bytes") from None
        raise
    head = inflated[buffer.tell():buffer.tell() + 4]   # read_dataset rewinds to the stopping tag
    at_pixels = len(head) == 4 and struct.unpack("<HH", head) in _PIXEL_GROUP_ELEMENTS
    if not whole and not at_pixels:
        raise InflateLimitExceeded(f"deflated header inflates to more than {limit} bytes")
    return FileDataset(fp, dataset, preamble, meta, is_implicit_VR=False, is_little_endian=True), at_pixels
