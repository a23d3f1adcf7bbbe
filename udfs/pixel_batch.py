"""The pixels stage's per-batch work: instance rows in, pixel measures out (Arrow).

Each object is fetched whole in one request (pixels are most of its bytes),
decoded frame by frame and measured by `udfs.pixel_stats.measure_file`.
Every input row yields one output row: measures, or `pixel_error`. An object
larger than `pixels.max_object_bytes` (its listed size) is never read, and the
read itself counts against `pixels.timeout_seconds`. The embed stage reads only
objects this stage decoded, so the same bounds hold there.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from dicom_triage.udfs.headers import ParseTimeout, time_limit
from dicom_triage.udfs.pixel_stats import RESULT_KEYS, measure_file
from dicom_triage.udfs.pixels import MAX_DECODED_BYTES, MAX_FRAME_BYTES

MAX_OBJECT_BYTES = 2**30

logging.getLogger("pydicom").setLevel(logging.ERROR)

KEYS = ("path", "sop_instance_uid", "series_instance_uid", "site", "modality", "protocol_name")


def measure_rows(rows: Iterable[dict], read_object: Callable[[str], bytes], timeout_seconds: float,
                 thumbnail_px: int = 128, hist_bins: int = 64, max_frame_bytes: int = MAX_FRAME_BYTES,
                 max_decoded_bytes: int = MAX_DECODED_BYTES,
                 max_object_bytes: int = MAX_OBJECT_BYTES) -> Iterator[dict]:
    for row in rows:
        out = {key: row.get(key) for key in KEYS}
        size = row.get("size_bytes")
        try:
            if size is not None and size > max_object_bytes:
                raise ObjectTooLarge(f"object is {size} bytes, over the {max_object_bytes} of "
                                     "pixels.max_object_bytes; not read")
            with time_limit(timeout_seconds, "reading and measuring the pixels", "pixels.timeout_seconds"):
                data = read_object(row["path"])
                out["bytes_read"] = len(data)
                measured = measure_file(data, force=not row.get("has_preamble", True),
                                        thumbnail_px=thumbnail_px, hist_bins=hist_bins,
                                        max_frame_bytes=max_frame_bytes,
                                        max_decoded_bytes=max_decoded_bytes)
        except (ParseTimeout, ObjectTooLarge) as exc:
            measured = {"pixel_error": "UNREADABLE_PIXELS", "pixel_error_message": str(exc)}
        except Exception as exc:  # storage errors: reported on the row, the batch goes on
            measured = {"pixel_error": "UNREADABLE_PIXELS",
                        "pixel_error_message": f"cannot read object: {type(exc).__name__}: {exc}"}
        out.update({key: measured.get(key) for key in RESULT_KEYS})
        out["pixel_error"] = measured.get("pixel_error")
        out["pixel_error_message"] = measured.get("pixel_error_message")
        yield out


class ObjectTooLarge(Exception):
    pass


def make_pixel_measurer(read_object: Callable[[str], bytes], arrow_schema: pa.Schema, timeout_seconds: float,
                        thumbnail_px: int, hist_bins: int, max_frame_bytes: int = MAX_FRAME_BYTES,
                        max_decoded_bytes: int = MAX_DECODED_BYTES, max_object_bytes: int = MAX_OBJECT_BYTES):
    """A `mapInArrow` function over instance rows; `read_object(path)` gives the
    whole object (jobs/storage.py whole_object_reader)."""

    def measure_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = measure_rows(batch.to_pylist(), read_object, timeout_seconds, thumbnail_px, hist_bins,
                                max_frame_bytes, max_decoded_bytes, max_object_bytes)
            yield pa.RecordBatch.from_pylist(
                [{name: row.get(name) for name in arrow_schema.names} for row in rows],
                schema=arrow_schema)

    return measure_batches
