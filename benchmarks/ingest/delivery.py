"""A synthetic CT delivery for the ingest benchmark.

512x512 16-bit slices with CT_small.dcm's header (pydicom's test file) as the
template: new UIDs per file, series of ~100 slices with consistent geometry
(ImagePositionPatient steps along z by the slice thickness), HU content from a
per-series phantom plus per-slice noise. Uncompressed Explicit VR Little
Endian, about 519 KiB per file. Layout: <root>/<site>/<study>/<series>/IMnnnn.dcm
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

TEMPLATE = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
SIZE = 512
PADDING = -2000          # stored value outside the circular field of view
SITES = ("site-a", "site-b", "site-c")


def _phantom(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(HU image of one series' body, mask outside the field of view)."""
    y, x = np.mgrid[:SIZE, :SIZE].astype(np.float32) / SIZE - 0.5
    hu = np.full((SIZE, SIZE), -1000.0, dtype=np.float32)
    a, b = rng.uniform(0.36, 0.44), rng.uniform(0.28, 0.36)
    hu[(x / a) ** 2 + (y / b) ** 2 < 1] = 40
    for cx in (-0.17, 0.17):
        hu[((x - cx) / 0.1) ** 2 + (y / 0.16) ** 2 < 1] = -850
    hu[x ** 2 + (y - 0.2) ** 2 < 0.04 ** 2] = 1200
    return hu, x ** 2 + y ** 2 > 0.25


def generate(root: Path, files: int, seed: int = 7, series_size: int = 100) -> list[Path]:
    """Write `files` slices under `root`; return their paths."""
    rng = np.random.default_rng(seed)
    template = pydicom.dcmread(TEMPLATE)
    template.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    template.Rows = template.Columns = SIZE
    template.BitsAllocated, template.BitsStored, template.HighBit = 16, 16, 15
    template.PixelRepresentation = 1
    template.PixelPaddingValue = PADDING
    template.RescaleSlope, template.RescaleIntercept = 1, -1024
    template.WindowCenter, template.WindowWidth = 40, 400
    template.PixelSpacing = [0.703125, 0.703125]
    template.SliceThickness = 2.5
    paths: list[Path] = []
    n_series = max(1, math.ceil(files / series_size))
    per_series = [files // n_series + (1 if i < files % n_series else 0) for i in range(n_series)]
    for s, count in enumerate(per_series):
        ds = template
        if s % 2 == 0:  # two series per study
            study_uid = generate_uid()
            ds.PatientID = f"BENCH{s // 2:05d}"
            ds.PatientName = f"Bench^Patient{s // 2}"
            ds.AccessionNumber = f"ACC{s // 2:06d}"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = generate_uid()
        ds.FrameOfReferenceUID = generate_uid()
        ds.SeriesNumber = s % 2 + 1
        base, outside = _phantom(rng)
        z0 = float(rng.uniform(-200, -50))
        folder = root / SITES[s % len(SITES)] / f"study{s // 2:04d}" / f"series{s:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            z = z0 + i * float(ds.SliceThickness)
            noise = rng.integers(-25, 26, size=(SIZE, SIZE), dtype=np.int16)
            stored = (base + 1024).astype(np.int16) + noise
            stored[outside] = PADDING
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = i + 1
            ds.ImagePositionPatient = [-180.0, -180.0, round(z, 3)]
            ds.SliceLocation = round(z, 3)
            ds.PixelData = stored.tobytes()
            ds["PixelData"].VR = "OW"
            path = folder / f"IM{i + 1:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths
