"""The ingest stage's per-batch work: listing rows in, parsed rows out (Arrow).

Runs inside Spark's Python workers via `mapInArrow`; also callable directly on
a pyarrow batch in tests. Each object's header is read through fsspec with a
bounded, growing block size; every object yields exactly one row, either
parsed attributes or an error class.
"""
from __future__ import annotations

import datetime as dt
import logging
import warnings
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from dicom_triage.udfs.headers import HeaderPolicy, error_row, parse_object, read_error_message

logging.getLogger("pydicom").setLevel(logging.ERROR)


def parse_rows(rows: Iterable[dict], policy: HeaderPolicy,
               open_fetch: Callable[[str], Callable[[int, int], bytes]],
               run_id: str, ingested_at: dt.datetime) -> Iterator[dict]:
    """One output row per listing row; never raises for a bad object."""
    for listed in rows:
        try:
            fetch = open_fetch(listed["path"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = parse_object(fetch, int(listed["size_bytes"]), policy, listed["path"])
        except Exception as exc:  # storage errors: the object is reported, the batch goes on
            parsed = error_row("IO_ERROR", read_error_message(listed["path"], exc))
        yield {**listed, **parsed, "run_id": run_id, "ingested_at": ingested_at}


def make_batch_parser(policy: HeaderPolicy, open_fetch: Callable[[str], Callable[[int, int], bytes]], run_id: str,
                      ingested_at: dt.datetime, arrow_schema: pa.Schema):
    """A `mapInArrow` function: RecordBatches of listings → RecordBatches of PARSED rows.
    `open_fetch(path)` gives the object's fetch(start, end) (jobs/storage.py range_reader)."""

    def parse_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = list(parse_rows(batch.to_pylist(), policy, open_fetch, run_id, ingested_at))
            yield pa.RecordBatch.from_pylist(
                [{name: row.get(name) for name in arrow_schema.names} for row in rows],
                schema=arrow_schema)

    return parse_batches
