"""Real images that ship inside installed packages, read straight from their folders.

pydicom's `get_testdata_files` is not used: it tries to download missing files
and hangs for ~15 s without internet. The folders are found with
`importlib.util.find_spec`, which does not import (or run) the data packages.

| label          | package (import name)     | folder                         |
|----------------|---------------------------|--------------------------------|
| `pydicom`      | pydicom                   | pydicom/data/test_files        |
| `pydicom-data` | pydicom-data (data_store) | data_store/data                |
| `deid-data`    | deid-data (deid_data)     | deid_data/data                 |
| `nilearn`      | nilearn                   | nilearn/datasets/data          |
"""
from __future__ import annotations

import functools
import importlib.util
import io
from pathlib import Path

import numpy as np
import pydicom

PACKAGES = {
    "pydicom": ("pydicom", "data/test_files"),
    "pydicom-data": ("data_store", "data"),
    "deid-data": ("deid_data", "data"),
    "nilearn": ("nilearn", "datasets/data"),
}

MNI_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
MNI_GM = "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
MNI_WM = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"


class SourceMissing(RuntimeError):
    """A package that holds demo source images is not installed."""


def source_path(label: str, name: str) -> Path:
    """Path of file `name` inside the data folder of package `label` (see the table above)."""
    module, sub = PACKAGES[label]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"package {module!r} is not installed; "
                            "install the demo extra: pip install 'dicom-triage[demo]'")
    path = Path(list(spec.submodule_search_locations)[0]) / sub / name
    if not path.is_file():
        raise SourceMissing(f"{label}: {sub}/{name} not found at {path}")
    return path


@functools.lru_cache(maxsize=None)
def source_bytes(label: str, name: str) -> bytes:
    return source_path(label, name).read_bytes()


def read_source(label: str, name: str, stop_before_pixels: bool = False) -> pydicom.Dataset:
    """A fresh Dataset of a source file (callers may change it)."""
    return pydicom.dcmread(io.BytesIO(source_bytes(label, name)),
                           stop_before_pixels=stop_before_pixels)


@functools.lru_cache(maxsize=None)
def source_pixels(label: str, name: str) -> np.ndarray:
    """Decoded stored values of a source file (read-only, cached)."""
    array = read_source(label, name).pixel_array
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=1)
def mni_maps() -> dict[str, np.ndarray]:
    """MNI152 2009a T1 template and its grey / white matter maps, float32, 1 mm voxels.

    Voxel (i, j, k) sits at RAS millimetres (i - 98, j - 134, k - 72). The T1 is
    brain only (no skull or scalp), values 0-255; the tissue maps are
    probabilities scaled to 0-255.
    """
    import nibabel  # demo extra (via nilearn)

    maps = {}
    for key, name in (("t1", MNI_T1), ("gm", MNI_GM), ("wm", MNI_WM)):
        image = nibabel.load(str(source_path("nilearn", name)))
        maps[key] = np.asarray(image.dataobj, dtype=np.float32)
        maps["affine"] = np.asarray(image.affine, dtype=float)
    return maps


def jpeg_photo_grey(label: str, name: str, reduce: int = 4) -> np.ndarray:
    """Grey pixels of a single-frame JPEG baseline source (e.g. a photo) at 1/`reduce`
    size, decoded by Pillow's JPEG draft mode (only the DCT scale needed is decoded)."""
    from PIL import Image
    from pydicom.encaps import generate_frames

    ds = read_source(label, name)
    fragment = next(generate_frames(ds.PixelData, number_of_frames=1))
    image = Image.open(io.BytesIO(fragment))
    image.draft("L", (ds.Columns // reduce, ds.Rows // reduce))
    return np.asarray(image.convert("L"))
