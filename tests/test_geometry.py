"""Series geometry, localizer rules and projections: hand-made stacks with known
answers, one real volume (nilearn's MNI152 T1), synthetic projections."""
from __future__ import annotations

import io
import math
import os
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dicom_triage.schemas.reasons import ALL_CODES
from dicom_triage.udfs.geometry import (GEOMETRY_KEYS, GeometryRules, series_geometry)
from dicom_triage.udfs.projections import PROJECTION_KEYS, series_projections

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]


def series(positions, iop=AXIAL, *, instance_numbers=None, modality="CT",
           image_type=("ORIGINAL", "PRIMARY", "AXIAL"), description="CT CHEST 2.5mm",
           protocol="CHEST", iops=None, frames=None):
    """One series as the ingest table would give it: one row per instance."""
    n = len(positions)
    instance_numbers = instance_numbers or list(range(1, n + 1))
    return pd.DataFrame({
        "sop_instance_uid": [f"1.2.826.0.1.{k}" for k in instance_numbers],
        "instance_number": instance_numbers,
        "image_position_patient": [None if p is None else list(map(float, p)) for p in positions],
        "image_orientation_patient": iops if iops is not None else [list(iop)] * n,
        "pixel_spacing": [[0.7, 0.7]] * n,
        "slice_thickness": [2.5] * n,
        "spacing_between_slices": [None] * n,
        "rows": [512] * n,
        "columns": [512] * n,
        "number_of_frames": [frames] * n,
        "image_type": [list(image_type)] * n,
        "series_description": [description] * n,
        "protocol_name": [protocol] * n,
        "modality": [modality] * n,
        "manufacturer": ["ACME"] * n,
    })


def axial_stack(n=20, step=2.5, z0=-100.0):
    return [(-250.0, -250.0, z0 + i * step) for i in range(n)]


def check_types(result):
    assert set(result) == set(GEOMETRY_KEYS)
    for key, kind in GEOMETRY_KEYS.items():
        value = result[key]
        if value is None:
            assert kind.endswith("?"), key
            continue
        base = kind.rstrip("?")
        expected = {"long": int, "double": float, "bool": bool, "str": str,
                    "str[]": list, "double[]": list}[base]
        assert isinstance(value, expected) and (base != "long" or not isinstance(value, bool)), key
        if base == "str[]":
            assert all(isinstance(v, str) for v in value), key
        if base == "double[]":
            assert all(isinstance(v, float) for v in value), key
    assert set(result["findings"]) <= ALL_CODES


# --------------------------------------------------------------------------- hand-made

def test_perfect_axial_stack():
    r = series_geometry(series(axial_stack()))
    check_types(r)
    assert r["findings"] == []
    assert r["num_instances"] == 20 and r["num_frames"] == 20
    assert r["rows"] == 512 and r["columns"] == 512 and r["dims_consistent"]
    assert r["pixel_spacing_row"] == pytest.approx(0.7)
    assert r["slice_thickness"] == pytest.approx(2.5)
    assert r["slice_spacing"] == pytest.approx(2.5)
    assert r["slice_spacing_min"] == pytest.approx(2.5) and r["slice_spacing_max"] == pytest.approx(2.5)
    assert r["spacing_regular"] is True and r["max_spacing_deviation_mm"] == pytest.approx(0, abs=1e-9)
    assert r["orientation_consistent"] is True and r["num_orientations"] == 1
    assert r["missing_slices"] == 0 and r["instance_number_gaps"] == 0
    assert r["duplicate_positions"] == 0 and r["all_one_position"] is False
    assert r["gantry_tilt_deg"] == pytest.approx(0, abs=1e-6) and r["non_orthogonal"] is False
    assert r["is_volume"] and not r["too_few_slices"] and not r["is_localizer"]
    assert r["slice_normal"] == pytest.approx([0, 0, 1])
    assert r["slice_order"] == [f"1.2.826.0.1.{k}" for k in range(1, 21)]


def test_missing_slice_from_the_middle():
    pos = axial_stack()
    del pos[10]
    numbers = [k for k in range(1, 21) if k != 11]
    r = series_geometry(series(pos, instance_numbers=numbers))
    check_types(r)
    assert r["missing_slices"] == 1 and r["missing_slices_by_position"] == 1
    assert r["instance_number_gaps"] == 1
    assert r["findings"] == ["MISSING_SLICES"]
    assert r["slice_spacing"] == pytest.approx(2.5)
    assert r["spacing_regular"] is False  # raw steps: one step is 5 mm
    assert r["num_irregular_steps"] == 0  # ...but it is explained by a missing slice


def test_two_missing_slices_in_one_gap_and_renumbered_instances():
    pos = axial_stack()
    del pos[10:12]
    r = series_geometry(series(pos))  # instance numbers 1..18: no second signal
    assert r["missing_slices_by_position"] == 2 and r["instance_number_gaps"] == 0
    assert "MISSING_SLICES" in r["findings"]


def test_instance_number_gap_alone_is_missing_slices():
    numbers = list(range(1, 20)) + [25]  # positions complete, numbering has a hole
    r = series_geometry(series(axial_stack(), instance_numbers=numbers))
    assert r["missing_slices_by_position"] == 0 and r["instance_number_gaps"] == 5
    assert r["findings"] == ["MISSING_SLICES"]


def test_jittered_gap_is_irregular_spacing():
    z = [0, 2.5, 5.0, 8.1, 10.6, 13.1, 15.6, 18.1]
    r = series_geometry(series([(0, 0, v) for v in z]))
    check_types(r)
    assert r["findings"] == ["IRREGULAR_SPACING"]
    assert r["spacing_regular"] is False and r["num_irregular_steps"] == 1
    assert r["max_spacing_deviation_mm"] == pytest.approx(0.6)
    assert r["slice_spacing_max"] == pytest.approx(3.1)
    assert r["missing_slices"] == 0


def test_spacing_tolerance_combines_absolute_and_relative():
    # 2.5 mm: tol = min(0.2, max(1 % * 2.5, 0.02)) = 0.025 mm
    z = [0, 2.5, 5.0, 7.52, 10.02]
    assert series_geometry(series([(0, 0, v) for v in z]))["findings"] == []
    z = [0, 2.5, 5.0, 7.55, 10.05]
    assert series_geometry(series([(0, 0, v) for v in z]))["findings"] == ["IRREGULAR_SPACING"]
    # 30 mm steps: 1 % would be 0.3 mm, the 0.2 mm absolute rule wins.
    z = [0, 30, 60, 90.25, 120.25]
    r = series_geometry(series([(0, 0, v) for v in z]))
    assert r["spacing_tolerance_mm"] == pytest.approx(0.2)
    assert r["findings"] == ["IRREGULAR_SPACING"]
    # Custom rules loosen it.
    loose = GeometryRules(spacing_tol_abs_mm=0.5, spacing_tol_rel=0.05)
    assert series_geometry(series([(0, 0, v) for v in z]), loose)["findings"] == []


def test_one_slice_with_another_orientation():
    tilted = [1.0, 0.0, 0.0, 0.0, 0.9, 0.43589]
    iops = [AXIAL] * 20
    iops[7] = tilted
    r = series_geometry(series(axial_stack(), iops=iops))
    check_types(r)
    assert r["orientation_consistent"] is False and r["num_orientations"] == 2
    assert "INCONSISTENT_ORIENTATION" in r["findings"] and not r["is_localizer"]
    assert r["num_slices_main_orientation"] == 19
    assert not r["is_volume"]
    # Spacing is measured on the main group (19 slices, one position now empty).
    assert r["slice_spacing"] == pytest.approx(2.5) and r["missing_slices_by_position"] == 1
    assert len(r["slice_order"]) == 20 and r["slice_order"][-1] == "1.2.826.0.1.8"


def test_orientation_within_tolerance_is_consistent():
    iops = [[1.0, 0.0, 0.0, 0.0, 1.0, 0.0005 * (i % 2)] for i in range(20)]
    r = series_geometry(series(axial_stack(), iops=iops))
    assert r["orientation_consistent"] is True and r["findings"] == []


def test_two_slices_too_few():
    r = series_geometry(series(axial_stack(2)))
    check_types(r)
    assert r["too_few_slices"] and r["findings"] == ["TOO_FEW_SLICES"]
    assert not r["is_volume"] and r["slice_spacing"] == pytest.approx(2.5)


def test_three_slices_is_a_volume():
    r = series_geometry(series(axial_stack(3)))
    assert r["is_volume"] and r["findings"] == []


def test_all_the_same_position():
    r = series_geometry(series([(0.0, 0.0, 12.5)] * 10))
    check_types(r)
    assert r["all_one_position"] is True
    assert r["duplicate_positions"] == 9 and r["num_distinct_positions"] == 1
    assert r["slice_spacing"] is None and r["spacing_regular"] is None
    assert r["gantry_tilt_deg"] is None and not r["is_volume"]
    assert r["findings"] == ["TOO_FEW_SLICES"]  # one distinct position


def test_duplicated_position():
    pos = axial_stack()
    pos.insert(5, pos[5])
    r = series_geometry(series(pos))
    check_types(r)
    assert r["duplicate_positions"] == 1 and r["num_distinct_positions"] == 20
    assert r["slice_spacing"] == pytest.approx(2.5)
    assert r["all_one_position"] is False and not r["is_volume"]
    assert r["findings"] == []


@pytest.mark.parametrize("shift", [0.1, 0.5, 1.0])
def test_gantry_tilt(shift):
    pos = [(0.0, -100.0 + i * shift, i * 2.5) for i in range(30)]
    r = series_geometry(series(pos))
    expected = math.degrees(math.atan(shift / 2.5))
    assert r["gantry_tilt_deg"] == pytest.approx(expected, abs=0.1)
    assert r["non_orthogonal"] is (math.sin(math.radians(expected)) > 0.05)
    assert r["slice_spacing"] == pytest.approx(2.5)  # projected on the normal
    assert r["findings"] == []


@pytest.mark.parametrize("iop, axis, normal", [
    (SAGITTAL, 0, [-1, 0, 0]),
    (CORONAL, 1, [0, 1, 0]),
])
def test_sagittal_and_coronal(iop, axis, normal):
    pos = []
    for i in range(24):
        p = [10.0, 20.0, 30.0]
        p[axis] += 1.2 * i
        pos.append(tuple(p))
    r = series_geometry(series(pos, iop, modality="MR"))
    check_types(r)
    assert r["slice_normal"] == pytest.approx(normal)
    assert r["slice_spacing"] == pytest.approx(1.2)
    assert r["findings"] == [] and r["is_volume"]
    z = [np.dot(p, normal) for p in pos]
    expected = [f"1.2.826.0.1.{k + 1}" for k in np.argsort(z)]
    assert r["slice_order"] == expected


def test_random_order_gives_same_result():
    pos = axial_stack(40)
    del pos[17]
    df = series(pos)
    ref = series_geometry(df)
    rng = np.random.default_rng(0)
    for _ in range(5):
        shuffled = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
        assert series_geometry(shuffled) == ref
    z = [p[2] for p in pos]
    assert ref["slice_order"] == [df["sop_instance_uid"][i] for i in np.argsort(z)]


def test_three_plane_localizer():
    pos = [(0, 0, 0), (0, 0, 0), (0, 0, 0)]
    r = series_geometry(series(pos, iops=[AXIAL, SAGITTAL, CORONAL], modality="MR",
                               description="t1 se", protocol="t1 se"))
    check_types(r)
    assert r["is_localizer"] and r["localizer_reasons"] == ["multi_orientation"]
    assert r["findings"] == ["LOCALIZER"]
    assert r["num_orientations"] == 3


def test_three_plane_localizer_with_three_slices_per_plane():
    pos = [(0, 0, z) for z in (-5, 0, 5)] + [(x, 0, 0) for x in (-5, 0, 5)] + \
          [(0, y, 0) for y in (-5, 0, 5)]
    iops = [AXIAL] * 3 + [SAGITTAL] * 3 + [CORONAL] * 3
    r = series_geometry(series(pos, iops=iops, modality="MR", description="3pl"))
    assert r["localizer_reasons"] == ["multi_orientation"]
    # Four per plane is no longer a localizer by orientation: inconsistent series.
    pos4 = pos[:3] + [(0, 0, 10)] + pos[3:]
    r4 = series_geometry(series(pos4, iops=[AXIAL] * 4 + iops[3:], modality="MR",
                                description="mixed"))
    assert not r4["is_localizer"] and "INCONSISTENT_ORIENTATION" in r4["findings"]


def test_image_type_localizer():
    r = series_geometry(series(axial_stack(1), image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                               description="Chest"))
    assert r["localizer_reasons"] == ["image_type"] and r["findings"] == ["LOCALIZER"]


def test_image_type_as_backslash_string():
    df = series(axial_stack(1), description="x")
    df["image_type"] = ["ORIGINAL\\PRIMARY\\LOCALIZER"]
    assert series_geometry(df)["localizer_reasons"] == ["image_type"]


def test_ct_projection_image():
    r = series_geometry(series([None], image_type=("ORIGINAL", "PRIMARY", "PROJECTION IMAGE"),
                               description="x", protocol=None))
    assert r["localizer_reasons"] == ["ct_projection"] and r["findings"] == ["LOCALIZER"]


@pytest.mark.parametrize("name, hit", [
    ("AAHScout", True), ("AAHead_Scout_64ch-head-coil", True), ("SURVEY", True),
    ("3-Plane Loc", True), ("3pl loc_fgre", True), ("Tri-Pilot", True), ("localiser", True),
    ("Topogram 0.6 T20s", True), ("LOC", True),
    ("t1_mprage_sag", False), ("Blocked DWI", False), ("local", False),
])
def test_name_patterns(name, hit):
    r = series_geometry(series(axial_stack(1), modality="MR", description=name, protocol=None))
    assert ("name" in r["localizer_reasons"]) is hit


def test_name_rule_skips_radiographs():
    df = series([None], modality="CR", image_type=("ORIGINAL", "PRIMARY"),
                description="SKELETAL SURVEY", protocol=None)
    r = series_geometry(df)
    assert r["findings"] == [] and not r["is_localizer"]


def test_cr_single_image_has_no_findings():
    df = series([None], iops=[None], modality="CR", image_type=("ORIGINAL", "PRIMARY"),
                description="CHEST PA", protocol="CHEST")
    r = series_geometry(df)
    check_types(r)
    assert r["findings"] == [] and not r["is_tomographic"] and not r["too_few_slices"]
    assert r["slice_spacing"] is None and r["missing_slices"] is None
    assert r["slice_order"] == ["1.2.826.0.1.1"]


def test_none_everywhere():
    cols = list(series(axial_stack(3)).columns)
    df = pd.DataFrame({c: [None, None, None] for c in cols})
    r = series_geometry(df)
    check_types(r)
    assert r["findings"] == [] and r["num_instances"] == 3 and r["rows"] is None
    assert series_geometry(pd.DataFrame())["num_instances"] == 0
    assert series_geometry(pd.DataFrame({"modality": ["CT", None]}))["findings"] == []


def test_malformed_values_are_nulls():
    df = series(axial_stack(5))
    df.at[0, "image_position_patient"] = "abc"
    df.at[1, "image_orientation_patient"] = [1.0, 0.0]
    df.at[2, "pixel_spacing"] = np.array([np.nan, 1.0])
    df["instance_number"] = df["instance_number"].astype(object)
    df.loc[3, "instance_number"] = None
    r = series_geometry(df)
    check_types(r)
    assert r["num_with_geometry"] == 3
    assert len(r["slice_order"]) == 5


def test_ct_without_positions_gets_no_geometry_findings():
    df = series([None] * 2)
    r = series_geometry(df)
    assert r["findings"] == [] and r["slice_spacing"] is None and not r["too_few_slices"]


def test_multiframe_single_instance_is_a_volume():
    df = series([(0, 0, 0)], frames=120, modality="MR", description="3D T1")
    r = series_geometry(df)
    check_types(r)
    assert r["is_multiframe"] and r["num_frames"] == 120
    assert r["is_volume"] and r["findings"] == []
    assert r["slice_spacing"] is None


def test_thousand_slices_fast():
    pos = axial_stack(1000, step=0.625)
    df = series(pos)
    df = df.iloc[np.random.default_rng(1).permutation(1000)].reset_index(drop=True)
    start = time.perf_counter()
    r = series_geometry(df)
    elapsed = time.perf_counter() - start
    assert r["findings"] == [] and r["slice_spacing"] == pytest.approx(0.625)
    assert elapsed < 1.0, elapsed


# --------------------------------------------------------------------------- real volume

def _mni_path():
    nilearn = pytest.importorskip("nilearn")
    path = os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data",
                        "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    if not os.path.exists(path):
        pytest.skip("MNI152 template not shipped with this nilearn")
    return path


def test_mni152_axial_slices_as_a_dicom_writer_would():
    nib = pytest.importorskip("nibabel")
    img = nib.load(_mni_path())
    affine = img.affine
    nz = img.shape[2]
    zooms = [float(v) for v in img.header.get_zooms()[:3]]
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    # Axial slice k: pixel (row r, column c) = voxel (i=c, j=r, k).
    # Row direction (along a row, increasing column index) = voxel axis i,
    # column direction = voxel axis j; IPP = centre of voxel (0, 0, k).
    row_cos = ras_to_lps @ affine[:3, 0] / np.linalg.norm(affine[:3, 0])
    col_cos = ras_to_lps @ affine[:3, 1] / np.linalg.norm(affine[:3, 1])
    iop = list(row_cos) + list(col_cos)
    positions = [tuple(ras_to_lps @ (affine @ [0, 0, k, 1])[:3]) for k in range(nz)]
    df = series(positions, iop, modality="MR", description="T1 MNI152")
    df["pixel_spacing"] = [[zooms[1], zooms[0]]] * nz
    df["rows"], df["columns"] = img.shape[1], img.shape[0]
    r = series_geometry(df)
    check_types(r)
    assert r["findings"] == []
    assert r["slice_spacing"] == pytest.approx(zooms[2])
    assert r["spacing_regular"] and r["missing_slices"] == 0 and r["is_volume"]
    assert r["pixel_spacing_row"] == pytest.approx(zooms[1])
    assert r["gantry_tilt_deg"] == pytest.approx(0, abs=1e-6)
    assert r["num_instances"] == nz == 189

    # Projections of the real volume: previews in slice order, a missing slice shows.
    data = np.asarray(img.dataobj)
    order = {uid: k for k, uid in enumerate(df["sop_instance_uid"])}
    previews = [np.ascontiguousarray(data[::3, ::3, order[uid]].T) for uid in r["slice_order"]]
    out = series_projections(previews, slice_spacing=r["slice_spacing"],
                             pixel_spacing=(r["pixel_spacing_row"], r["pixel_spacing_col"]),
                             image_shape=(r["rows"], r["columns"]))
    # Previews are 3 mm per pixel, slices 1 mm apart: 189 slices -> 63 rows.
    side = _decode(out["side_mip_png"])
    assert side.shape == (63, previews[0].shape[1])
    enface = _decode(out["mip_png"])
    assert enface.shape == previews[0].shape and enface.max() == 255
    # Remove slice 100 (inside the head): one black line at its place.
    z = np.asarray(positions)[[order[u] for u in r["slice_order"]], 2]
    keep = [k for k in range(nz) if k != 100]
    out = series_projections([previews[k] for k in keep], slice_positions=z[keep].tolist())
    side = _decode(out["side_mip_png"])
    assert side.shape == (nz, previews[0].shape[1])
    assert side[100].max() == 0 and side[99].max() > 0 and side[101].max() > 0


# --------------------------------------------------------------------------- projections

def _decode(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.mode == "L"
    return np.asarray(img)


def _sphere_previews(n=40, size=64, radius=14):
    zz, yy, xx = np.mgrid[:n, :size, :size]
    c = (n - 1) / 2, (size - 1) / 2, (size - 1) / 2
    dist = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
    vol = np.clip(255 * (1 - dist / radius), 0, 255).astype(np.uint8)
    return [vol[k] for k in range(n)]


def test_sphere_mip_brightest_in_the_centre():
    previews = _sphere_previews()
    out = series_projections(previews)
    assert set(out) == set(PROJECTION_KEYS)
    mip, mean = _decode(out["mip_png"]), _decode(out["mean_png"])
    assert mip.shape == (64, 64) and mean.shape == (64, 64)
    centre = np.unravel_index(np.argmax(mip), mip.shape)
    assert abs(centre[0] - 31.5) <= 1 and abs(centre[1] - 31.5) <= 1
    assert mip[0, 0] == 0 and mip.max() == 255
    assert np.unravel_index(np.argmax(mean), mean.shape) == pytest.approx((31.5, 31.5), abs=1)
    side = _decode(out["side_mip_png"])
    assert side.shape == (40, 64)  # one line per slice without spacing information
    assert np.unravel_index(np.argmax(side), side.shape) == pytest.approx((19.5, 31.5), abs=1)


def test_sizes_follow_physical_aspect_and_max_side():
    previews = _sphere_previews(n=40)
    # Originals 512 x 512 at 0.5 mm -> previews 4 mm / pixel; slices 5 mm apart.
    out = series_projections(previews, slice_spacing=5.0, pixel_spacing=(0.5, 0.5),
                             image_shape=(512, 512))
    assert _decode(out["side_mip_png"]).shape == (50, 64)  # 40 * 5 / 4
    assert _decode(out["side_mean_png"]).shape == (50, 64)
    assert _decode(out["mip_png"]).shape == (64, 64)
    # Non-square pixels stretch the en-face view.
    out = series_projections(previews, pixel_spacing=(1.0, 0.5))
    assert _decode(out["mip_png"]).shape == (128, 64)
    # Longest side capped.
    big = [np.full((300, 400), 100, np.uint8)] * 3
    out = series_projections(big, max_side=256)
    assert _decode(out["mip_png"]).shape == (192, 256)
    assert max(_decode(out["side_mip_png"]).shape) <= 256


def test_missing_slice_is_a_dark_line_in_the_side_view():
    previews = [np.full((32, 32), 200, np.uint8) for _ in range(20)]
    z = [2.5 * k for k in range(20)]
    del previews[8], z[8]
    out = series_projections(previews, slice_positions=z, slice_spacing=2.5)
    side = _decode(out["side_mip_png"])
    assert side.shape == (20, 32)
    assert side[8].max() == 0
    assert side[np.arange(20) != 8].min() == 255
    mean_side = _decode(out["side_mean_png"])
    assert mean_side[8].max() == 0 and mean_side[7].min() > 0
    # Without positions the gap cannot show: one line per preview.
    assert _decode(series_projections(previews)["side_mip_png"]).shape == (19, 32)
    # The spacing can be inferred from the positions.
    assert _decode(series_projections(previews, slice_positions=z)["side_mip_png"])[8].max() == 0


def test_projection_edge_cases():
    assert series_projections([]) == dict.fromkeys(PROJECTION_KEYS)
    assert series_projections([np.zeros((8, 8), np.uint8)]) == dict.fromkeys(PROJECTION_KEYS)
    assert series_projections([None, np.zeros((8, 8), np.uint8)])["mip_png"] is None
    out = series_projections([np.zeros((8, 8), np.uint8)] * 2)
    assert _decode(out["mip_png"]).max() == 0
    rgb = np.zeros((16, 16, 3), np.uint8)
    mixed = [rgb, np.full((8, 8), 50, np.uint8), np.full((16, 16), 100, np.uint8)]
    assert _decode(series_projections(mixed)["mip_png"]).shape == (16, 16)
