"""Hostile and broken files: mutated real DICOM files through the header path
(ingest), the pixel path (pixels stage) and the embedding decode, each input in
a worker process with a time bound and a memory cap (tests/fuzzing.py); and
one regression test per robustness bug the fuzzing found."""
from __future__ import annotations

import collections
import io
import struct
import time

import pydicom
import pytest

from dicom_triage.jobs.config import load_settings
from dicom_triage.jobs.runtime import header_policy
from tests import fuzzing as fz
from dicom_triage.udfs.embedding import preprocess
from dicom_triage.udfs.headers import parse_object
from dicom_triage.udfs.pixel_stats import measure_file
from dicom_triage.udfs.pixels import UNREADABLE_PIXELS, PixelDecodeError

POLICY = header_policy(load_settings(), b"fuzz-secret-0123456789")
LIMITS = fz.Limits(time_bound=10.0, grace=10.0, memory_cap=3 * 2**30)
PER_KIND = 50


def parse_bytes(data: bytes, policy=POLICY) -> dict:
    return parse_object(lambda start, end: data[start:end], len(data), policy)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[tuple[str, bytes]]:
    demo = fz.demo_seeds(tmp_path_factory.mktemp("demo"), seed=7)
    return fz.pydicom_seeds() + demo[::3]


# ---------------------------------------------------------------- the harness itself
def test_walk_finds_the_elements_pydicom_reads():
    data = (fz.PYDICOM_FILES / "CT_small.dcm").read_bytes()
    elements = fz.walk(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    top = {e.tag: e for e in elements if e.depth == 0 and e.tag >> 16 != 2}
    assert set(top) == {int(tag) for tag in ds.keys()}
    pixel = top[0x7FE00010]
    assert data[pixel.value_start:pixel.end] == ds.PixelData
    assert fz.header_end(data, elements) == pixel.start


def test_walk_enters_nested_sequences_and_fragments():
    for name in ("nested_priv_SQ.dcm", "JPEG2000.dcm"):
        depths = {e.depth for e in fz.walk((fz.PYDICOM_FILES / name).read_bytes())}
        assert max(depths) >= 1, name


def test_mutants_are_deterministic_and_cover_every_kind(seeds):
    first = list(fz.mutants(seeds, 60, seed=11))
    again = list(fz.mutants(seeds, 60, seed=11))
    assert [m.data for m in first] == [m.data for m in again]
    assert collections.Counter(m.kind for m in first) == {kind: 10 for kind in fz.KINDS}
    originals = dict(seeds)
    assert all(m.data != originals[m.seed_name] for m in first)


def test_set_transfer_syntax_keeps_the_meta_readable(tmp_path):
    original = fz.PYDICOM_FILES / "CT_small.dcm"
    data = original.read_bytes()
    (tmp_path / "out.dcm").write_bytes(fz.set_transfer_syntax(data, fz.BIG_ENDIAN))
    meta = pydicom.filereader.read_file_meta_info(tmp_path / "out.dcm")
    assert meta.TransferSyntaxUID == fz.BIG_ENDIAN
    growth = (tmp_path / "out.dcm").stat().st_size - len(data)
    assert meta.FileMetaInformationGroupLength == \
        pydicom.filereader.read_file_meta_info(original).FileMetaInformationGroupLength + growth


def test_nested_sequence_with_defined_lengths_is_consistent():
    blob = fz.nested_sequence(3, True, True, "defined")
    # outer sequence length covers the whole rest of the blob
    assert struct.unpack("<I", blob[8:12])[0] == len(blob) - 12


def test_a_killed_worker_is_reported_and_replaced():
    limits = fz.Limits(time_bound=0.5, grace=0.5, memory_cap=LIMITS.memory_cap)
    worker = fz.Worker(limits)
    try:
        worker.submit((fz.PYDICOM_FILES / "CT_small.dcm").read_bytes())
        worker.proc.kill()
        assert worker.collect()["outcome"] == "crashed"
        worker.submit((fz.PYDICOM_FILES / "CT_small.dcm").read_bytes())
        assert worker.collect()["outcome"] == "row"
    finally:
        worker.close()


# ---------------------------------------------------------------- the fuzz run
def test_every_mutated_input_gives_rows_within_time_and_memory(seeds):
    items = list(fz.mutants(seeds, PER_KIND * len(fz.KINDS), seed=20261201))
    results = fz.run_all(items, LIMITS, workers=2)
    bad = [f"{r['kind']} {r['seed']} ({r['detail']}): {r['outcome']} {r.get('message', '')[:300]}"
           for r in results if r["outcome"] != "row"]
    assert not bad, "\n".join(bad)
    for r in results:
        assert set(r["paths"]) == {"header", "pixels", "embed"}
        assert all(kind in ("row", "error") for kind, _ in r["paths"].values())
        assert max(r["path_seconds"].values()) <= LIMITS.time_bound
        assert r["peak_rss"] < LIMITS.memory_cap
    # the mutations reach the parsers: every kind makes header errors somewhere,
    # and the run also keeps readable objects
    header_errors = {r["kind"] for r in results if r["paths"]["header"][0] == "error"}
    assert header_errors == set(fz.KINDS)
    assert any(r["paths"]["pixels"][0] == "row" for r in results)


# ---------------------------------------------------------------- regressions
def test_deflate_bomb_header_is_cut_at_the_header_budget():
    """Was: pydicom inflated the whole stream (1 GiB of zeros from 1 MiB)."""
    data, _ = _deflated_with_private_element(64)
    policy = POLICY.__class__(**{**POLICY.__dict__, "max_header_bytes": 2**20})
    started = time.perf_counter()
    row = parse_bytes(data, policy)
    assert row["error_code"] == "CORRUPT_HEADER"
    assert "inflates to more than 1048576 bytes" in row["error_message"]
    assert time.perf_counter() - started < 5


def test_deflate_bomb_pixels_are_refused_before_inflating():
    """Was: inflated whole (twice) before anything looked at the dimensions."""
    side = 23170
    element = struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\0\0" + struct.pack("<I", side * side * 2)
    data = fz.minimal_file(fz.DEFLATED, side, side, 1, 16, b"",
                           deflate_body=fz._deflated_body_with_zeros(element, 64))
    result = measure_file(data)
    assert result["pixel_error"] == UNREADABLE_PIXELS
    assert "pixels.max_frame_bytes" in result["pixel_error_message"]
    with pytest.raises(PixelDecodeError, match="max_frame_bytes"):
        preprocess(data)


def test_deflated_dataset_over_the_decoded_bound_is_unreadable():
    # a small image header, then a pixel element of 64 MiB of zeros
    element = struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0" + struct.pack("<I", 64 * 2**20)
    data = fz.minimal_file(fz.DEFLATED, 64, 64, 1, 8, b"",
                           deflate_body=fz._deflated_body_with_zeros(element, 64))
    result = measure_file(data, max_decoded_bytes=32 * 2**20)
    assert result["pixel_error"] == UNREADABLE_PIXELS
    assert "inflates to more than 33554432 bytes" in result["pixel_error_message"]


def test_deflated_image_header_has_pixel_data():
    """Was: has_pixel_data False for every deflated image (offset read in the
    compressed bytes)."""
    row = parse_bytes((fz.PYDICOM_FILES / "image_dfl.dcm").read_bytes())
    assert row["error_code"] is None
    assert row["has_pixel_data"] is True and row["pixel_data_offset"] is None
    assert measure_file((fz.PYDICOM_FILES / "image_dfl.dcm").read_bytes()).get("pixel_error") is None


def test_declared_dimensions_over_the_frame_bound_are_unreadable():
    """Was: the RLE decoder allocated rows x columns (4 GiB) for a 1 KiB frame."""
    data = fz.minimal_file(fz.RLE, 65535, 65535, 1, 8, fz.encapsulated([fz.rle_bomb_fragment(65536)]))
    result = measure_file(data)
    assert result["pixel_error"] == UNREADABLE_PIXELS
    assert "one decoded frame would be 4294836225 bytes" in result["pixel_error_message"]
    small = fz.minimal_file(fz.RLE, 256, 256, 1, 8, fz.encapsulated([fz.rle_bomb_fragment(65536)]))
    assert measure_file(small).get("pixel_error") is None      # the same stream at its true size


def test_all_frames_over_the_decoded_bound_are_unreadable():
    data = fz.minimal_file(fz.RLE, 256, 256, 40000, 8, fz.encapsulated([fz.rle_bomb_fragment(65536)]))
    result = measure_file(data, max_decoded_bytes=2**30)
    assert "pixels.max_decoded_bytes" in result["pixel_error_message"]


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_gdcm.dcm"])
def test_codestream_larger_than_the_header_is_unreadable(name):
    """Was: a JPEG-LS frame whose SOF said 65535 x 65535 took 50 s and 2.6 GB
    in the decoder (out of reach of the time bound)."""
    data = (fz.PYDICOM_FILES / name).read_bytes()
    assert measure_file(data).get("pixel_error") is None
    mutated, detail = fz._blow_up_codestream(data, __import__("random").Random(0), fz.walk(data))
    assert "declares" in detail
    started = time.perf_counter()
    result = measure_file(mutated)
    assert result["pixel_error"] == UNREADABLE_PIXELS
    assert "codestream declares" in result["pixel_error_message"]
    with pytest.raises(PixelDecodeError, match="codestream declares"):
        preprocess(mutated)
    assert time.perf_counter() - started < 5


def test_parse_timeout_is_not_swallowed_by_the_syntax_sniffing():
    """The deflate check reads the file meta first; a time limit hit there must
    still end the parse as TIMEOUT (the shipped test_headers test caught it)."""
    data = (fz.PYDICOM_FILES / "CT_small.dcm").read_bytes()

    def slow(start, end):
        time.sleep(0.3)
        return data[start:end]

    policy = POLICY.__class__(**{**POLICY.__dict__, "first_block_bytes": 256, "max_block_bytes": 256,
                                 "timeout_seconds": 0.2})
    assert parse_object(slow, len(data), policy)["error_code"] == "TIMEOUT"


def _deflated_with_private_element(mib: int) -> tuple[bytes, int]:
    """A deflated 64 x 64 image whose dataset holds a `mib` MiB private OB
    element of zeros before the pixels (the file is about 1 KiB per MiB)."""
    private = struct.pack("<HH", 0x0009, 0x1010) + b"OB\0\0" + struct.pack("<I", mib * 2**20)
    data = fz.minimal_file(fz.DEFLATED, 64, 64, 1, 8, b"",
                           deflate_body=fz._deflated_body_with_zeros(private, mib))
    return data, mib
