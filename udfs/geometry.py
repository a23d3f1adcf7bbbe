"""Series geometry and localizer rules: one series' instances in, one dict out.

`series_geometry(instances)` takes one series as a pandas frame (one row per
instance, the snake_case columns of `schemas.ingest`) and returns plain Python
values: slice spacing and its regularity, missing and duplicate positions,
orientation groups, gantry tilt, localizer detection, the order in which to
stack the slices, and the reason codes (`schemas.reasons`) that apply.

The rules and their sources are in docs/methods.md ("Series geometry"):
dcm2niix (nii_dicom_batch.cpp), dicom2nifti (common.py) and highdicom
(spatial.py). Where a tolerance differs from theirs, `GeometryRules` says so.

Conventions
-----------
* Slice normal n = row cosines x column cosines (ImageOrientationPatient
  (0020,0037) values 1-3 and 4-6), normalised. A slice's coordinate along the
  stack is z = ImagePositionPatient (0020,0032) . n; slices are sorted by z
  (ascending), which is the order returned in `slice_order`.
* Geometry rules (spacing, missing, duplicates, orientation, tilt) run on
  tomographic series only: Modality CT / MR / PT / NM (or Modality missing)
  with at least one instance carrying both IPP and IOP. Other modalities (CR,
  DX, MG, US, OT, SC, ...) get the descriptive fields but no geometry findings.
* Spacing, missing and duplicate rules use the largest orientation group (the
  "main" group); other groups are only counted.
* Multi-frame objects (NumberOfFrames > 1 on any instance, e.g. enhanced CT/MR
  or NM tomo) are not unpacked: their per-frame positions live in the
  functional groups, which this function does not see. Such a series is a
  volume when it is tomographic and its frames add up to `min_slices`; it gets
  no spacing / missing / TOO_FEW_SLICES findings. Limitation: gaps or
  irregular spacing *inside* a multi-frame object are not detected.
* Missing or malformed values never raise: they become nulls and the rules
  that need them are skipped.

Everything is vectorised numpy after one pass that parses the array columns;
duplicates are found by sort-then-diff, so a 1,000-slice series costs
milliseconds.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

INCONSISTENT_ORIENTATION = "INCONSISTENT_ORIENTATION"
IRREGULAR_SPACING = "IRREGULAR_SPACING"
MISSING_SLICES = "MISSING_SLICES"
TOO_FEW_SLICES = "TOO_FEW_SLICES"
LOCALIZER = "LOCALIZER"


@dataclass(frozen=True)
class GeometryRules:
    """Tolerances of the geometry and localizer rules (defaults and their sources)."""

    # Two ImageOrientationPatient vectors are the same orientation when every one
    # of the 6 direction cosines differs by <= this. dicom2nifti
    # validate_orientation uses allclose(rtol=1e-3, atol=1e-3).
    orientation_tol: float = 1e-3

    # Slice-spacing regularity. A step dz is regular when |dz - median dz| <= tol,
    #     tol = min(spacing_tol_abs_mm, max(spacing_tol_rel * median, spacing_tol_floor_mm)).
    # i.e. a step is irregular when it breaks EITHER the absolute rule or the
    # relative rule, the stricter one wins (docs/methods.md):
    #  - absolute 0.2 mm: dcm2niix, isSameFloatT(dx, dx_i, 0.2) against the first
    #    step (we compare to the median, which one odd first step cannot skew).
    #  - relative 1 %: the usual relative tolerance of volume builders; highdicom's own
    #    get_volume_positions default is an absolute 1e-4 mm against the mean
    #    step (_DEFAULT_SPACING_TOLERANCE), far stricter than either.
    #  - floor 0.02 mm (ours): positions written as DS with 2 decimals carry up to
    #    0.01 mm rounding per step; without a floor, 1 % of a 0.625 mm step
    #    (0.006 mm) would flag rounding noise as irregular spacing.
    spacing_tol_abs_mm: float = 0.2
    spacing_tol_rel: float = 0.01
    spacing_tol_floor_mm: float = 0.02

    # Two slices are at the same position when their coordinates along the
    # normal differ by <= this (ours): 10x below the thinnest clinical steps
    # (~0.1 mm, dental CBCT voxels 0.075 mm are still 7x larger) and 10x above
    # DS rounding of identical positions written by different software.
    duplicate_tol_mm: float = 0.01

    # Stack is non-orthogonal (gantry tilt, sheared stack) when the first->last
    # position vector leaves the slice normal by sin(angle) > this, ~2.87 deg.
    # dicom2nifti is_orthogonal: allclose(normal, unit span, rtol=0.05, atol=0.05),
    # whose dominant term for an axis-aligned tilt is |sin(angle)| <= 0.05.
    # highdicom uses |n . span - 1| < 1e-4 (~0.8 deg), stricter.
    non_orthogonal_tol: float = 0.05

    # A series is a volume with at least this many distinct slice positions (or
    # frames, for multi-frame objects). Ours; dicom2nifti refuses <= 3 slices
    # ("TOO_FEW_SLICES/LOCALIZER"), i.e. needs 4.
    min_slices: int = 3
    # TOO_FEW_SLICES when a tomographic series has fewer distinct positions than
    # this (2 or fewer by default). Configurable separately from min_slices.
    too_few_slices: int = 3

    # Localizer names (SeriesDescription (0008,103E), ProtocolName (0018,1030)),
    # case-insensitive substrings. Vendor names: Siemens
    # "AAHScout"/"localizer", Philips MR "Survey", GE "3-Plane Loc"/"Tri-Pilot"/
    # "scout". Ours: Siemens CT "Topogram", Philips CT "Surview", Canon
    # "Scanogram".
    localizer_patterns: tuple[str, ...] = (
        "scout", "localizer", "localiser", "survey", "aahscout", "3-plane",
        "3 plane", "tri-pilot", "pilot", "topogram", "surview", "scanogram")
    # Matched as whole words only (letters/digits around them break the match,
    # "_" and "-" do not): "3pl loc", "LOC_T2" yes, "block", "local" no.
    localizer_words: tuple[str, ...] = ("loc",)
    # Several orientations in one series, every group with <= this many slices:
    # a multi-plane localizer ("a group of <= 3 slices", docs/methods.md).
    localizer_max_slices_per_group: int = 3

    # Modalities whose series are meant to be cross-sectional stacks.
    volume_modalities: frozenset[str] = frozenset({"CT", "MR", "PT", "NM"})


DEFAULT_RULES = GeometryRules()


# --------------------------------------------------------------------------
# Parsing helpers: tolerate None, NaN, lists, numpy arrays, "a\\b\\c" strings.

def _column(df: pd.DataFrame, name: str) -> list:
    if name not in df.columns:
        return [None] * len(df)
    return list(df[name])


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        return bool(pd.isna(value)) if np.ndim(value) == 0 else False
    except (TypeError, ValueError):
        return False


def _vectors(values: Iterable, length: int) -> np.ndarray:
    """(n, length) float array; a row of NaN where a value is missing or malformed."""
    values = list(values)
    out = np.full((len(values), length), np.nan)
    for i, value in enumerate(values):
        if _is_null(value):
            continue
        if isinstance(value, (str, bytes)):
            value = (value.decode() if isinstance(value, bytes) else value).split("\\")
        try:
            arr = np.asarray(value, dtype=float).ravel()
        except (TypeError, ValueError):
            continue
        if arr.shape == (length,) and np.all(np.isfinite(arr)):
            out[i] = arr
    return out


def _numbers(values: Iterable) -> np.ndarray:
    return pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)


def _strings(values: Iterable) -> list[str | None]:
    return [None if _is_null(v) else str(v).strip() for v in values]


def _string_list(value: Any) -> list[str]:
    """ImageType as upper-case tokens: list/array of str or one backslash-joined str."""
    if _is_null(value):
        return []
    if isinstance(value, (str, bytes)):
        value = (value.decode() if isinstance(value, bytes) else value).split("\\")
    try:
        return [str(v).strip().upper() for v in value if not _is_null(v)]
    except TypeError:
        return []


def _mode(values: Iterable) -> Any:
    """Most common non-null value; ties go to the smallest, so row order never matters."""
    counts = Counter(v.item() if isinstance(v, np.generic) else v
                     for v in values if not _is_null(v))
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[0]


def _median(arr: np.ndarray) -> float | None:
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if arr.size else None


def _int_or_none(value: Any) -> int | None:
    return None if _is_null(value) else int(value)


# --------------------------------------------------------------------------
# Rules

def orientation_groups(iop: np.ndarray, tol: float) -> tuple[np.ndarray, bool | None]:
    """Group ImageOrientationPatient (0020,0037) vectors that agree within `tol`.

    Greedy, in the given row order: the first ungrouped IOP opens a group and
    takes every ungrouped IOP whose 6 cosines all differ from it by <= tol
    (GeometryRules.orientation_tol, 1e-3, as dicom2nifti). Rows
    without a valid IOP get group -1. Returns (group per row, consistent) where
    consistent = every valid IOP equals the first valid one within tol (None
    when no row has an IOP). Cost O(n x groups), vectorised per group.
    """
    n = len(iop)
    groups = np.full(n, -1, dtype=int)
    valid = np.all(np.isfinite(iop), axis=1)
    if not valid.any():
        return groups, None
    first = iop[np.argmax(valid)]
    consistent = bool(np.all(np.abs(iop[valid] - first) <= tol))
    next_id = 0
    while True:
        todo = np.flatnonzero(valid & (groups < 0))
        if todo.size == 0:
            break
        rep = iop[todo[0]]
        members = todo[np.all(np.abs(iop[todo] - rep) <= tol, axis=1)]
        groups[members] = next_id
        next_id += 1
    return groups, consistent


def slice_normal(iop: np.ndarray) -> np.ndarray | None:
    """Unit normal = cross(row cosines, column cosines) of the mean IOP of a group.

    Reads ImageOrientationPatient (0020,0037). None when the cosines are
    degenerate (zero or parallel vectors).
    """
    mean = iop.mean(axis=0)
    normal = np.cross(mean[:3], mean[3:])
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 1e-6 else None


def spacing_rules(z_sorted: np.ndarray, rules: GeometryRules) -> dict:
    """Spacing, duplicates and missing slices from sorted slice coordinates.

    `z_sorted` is ImagePositionPatient (0020,0032) projected on the slice
    normal, ascending. Steps dz <= duplicate_tol_mm (0.01 mm, ours) are
    duplicate positions; spacing statistics use the other steps ("distinct
    steps"). With m = median distinct step and tol as in GeometryRules
    (min(0.2 mm dcm2niix, max(1 % relative, 0.02 mm floor)), docs/methods.md):

    * regular step: |dz - m| <= tol;
    * missing slices: dz ~ k*m for an integer k >= 2 (|dz - k*m| <= k*tol):
      k - 1 slices missing;
    * irregular step: neither of the above (IRREGULAR_SPACING).
    """
    steps = np.diff(z_sorted)
    is_dup = steps <= rules.duplicate_tol_mm
    distinct = steps[~is_dup]
    out: dict[str, Any] = {
        "num_distinct_positions": int(len(z_sorted) - is_dup.sum()) if len(z_sorted) else 0,
        "duplicate_positions": int(is_dup.sum()),
        "all_one_position": bool(len(z_sorted) >= 2 and is_dup.all()),
        "slice_spacing": None, "slice_spacing_min": None, "slice_spacing_max": None,
        "spacing_tolerance_mm": None, "spacing_regular": None,
        "max_spacing_deviation_mm": None, "num_irregular_steps": 0,
        "missing_slices_by_position": 0,
    }
    if distinct.size == 0:
        return out
    median = float(np.median(distinct))
    tol = min(rules.spacing_tol_abs_mm,
              max(rules.spacing_tol_rel * median, rules.spacing_tol_floor_mm))
    deviation = np.abs(distinct - median)
    regular = deviation <= tol
    k = np.rint(distinct / median)
    missing = (~regular) & (k >= 2) & (np.abs(distinct - k * median) <= k * tol)
    out.update(
        slice_spacing=median,
        slice_spacing_min=float(distinct.min()),
        slice_spacing_max=float(distinct.max()),
        spacing_tolerance_mm=float(tol),
        spacing_regular=bool(regular.all()),
        max_spacing_deviation_mm=float(deviation.max()),
        num_irregular_steps=int((~regular & ~missing).sum()),
        missing_slices_by_position=int((k[missing] - 1).sum()),
    )
    return out


def tilt_rule(first: np.ndarray, last: np.ndarray, normal: np.ndarray,
              tol: float) -> tuple[float | None, bool]:
    """Angle between the slice normal and the first->last ImagePositionPatient vector.

    Reads IPP (0020,0032) of the first and last slice along the normal and the
    normal from IOP (0020,0037). Non-orthogonal (gantry tilt / sheared stack)
    when sin(angle) > tol (0.05 ~ 2.87 deg, dicom2nifti is_orthogonal). Returns
    (angle in degrees, non_orthogonal); (None, False) when first == last.
    """
    span = last - first
    length = np.linalg.norm(span)
    if length <= 1e-9:
        return None, False
    cos = min(1.0, abs(float(span @ normal)) / length)
    angle = math.degrees(math.acos(cos))
    return angle, bool(math.sin(math.radians(angle)) > tol)


def instance_number_gaps(numbers: np.ndarray) -> int | None:
    """InstanceNumber (0020,0013) range + 1 minus distinct count (dcm2niix "Missing images?").

    Counts numbers missing between the lowest and highest InstanceNumber of the
    series; duplicated numbers are counted once. None when no instance has one.
    """
    present = numbers[np.isfinite(numbers)]
    if present.size == 0:
        return None
    distinct = np.unique(present)
    return int(max(0, distinct.max() - distinct.min() + 1 - distinct.size))


def _localizer_regex(rules: GeometryRules) -> re.Pattern:
    parts = [re.escape(p.lower()) for p in rules.localizer_patterns]
    parts += [rf"(?<![a-z0-9]){re.escape(w.lower())}(?![a-z0-9])" for w in rules.localizer_words]
    return re.compile("|".join(parts))


def localizer_reasons(*, image_types: list[list[str]], modality: str | None,
                      names: Iterable[str | None], tomographic_modality: bool,
                      group_sizes: list[int], rules: GeometryRules) -> list[str]:
    """Why a series is a scout / localizer (docs/methods.md "Localizer"); empty when it is not.

    * "image_type": ImageType (0008,0008) contains LOCALIZER on more than half
      of the instances that carry ImageType (a series with one stray scout
      image among 200 axial slices is not itself a localizer).
    * "ct_projection": Modality (0008,0060) CT and ImageType contains
      "PROJECTION IMAGE" or "PROJECTION" (same majority).
    * "name": SeriesDescription (0008,103E) or ProtocolName (0018,1030) matches
      GeometryRules.localizer_patterns / localizer_words, case-insensitive.
      Only for CT/MR/PT/NM or unknown modality: "skeletal survey" is a real CR
      exam.
    * "multi_orientation": >= 2 orientation groups (IOP within 1e-3) and every
      group has <= localizer_max_slices_per_group (3) slices.
    """
    reasons = []
    typed = [t for t in image_types if t]
    if typed:
        loc = sum("LOCALIZER" in t for t in typed)
        if loc * 2 > len(typed):
            reasons.append("image_type")
        proj = sum(("PROJECTION IMAGE" in t) or ("PROJECTION" in t) for t in typed)
        if modality == "CT" and proj * 2 > len(typed):
            reasons.append("ct_projection")
    if tomographic_modality or modality is None:
        regex = _localizer_regex(rules)
        if any(n and regex.search(n.lower()) for n in names):
            reasons.append("name")
    if len(group_sizes) >= 2 and max(group_sizes) <= rules.localizer_max_slices_per_group:
        reasons.append("multi_orientation")
    return reasons


# --------------------------------------------------------------------------

def series_geometry(instances: pd.DataFrame, rules: GeometryRules | None = None) -> dict:
    """Geometry, localizer rules and findings of one series (see the module docstring).

    Reads the columns sop_instance_uid, instance_number, image_position_patient,
    image_orientation_patient, pixel_spacing, slice_thickness,
    spacing_between_slices, rows, columns, number_of_frames, image_type,
    series_description, protocol_name, modality (manufacturer is accepted but
    no rule uses it yet); any column may be absent and any value null. Returns a dict of plain Python values; `GEOMETRY_KEYS`
    lists every key with its type.
    """
    rules = rules or DEFAULT_RULES
    df = instances.reset_index(drop=True) if instances is not None else pd.DataFrame()
    n = len(df)

    uids = _strings(_column(df, "sop_instance_uid"))
    inst_no = _numbers(_column(df, "instance_number"))
    ipp = _vectors(_column(df, "image_position_patient"), 3)
    iop = _vectors(_column(df, "image_orientation_patient"), 6)
    spacing = _vectors(_column(df, "pixel_spacing"), 2)
    frames = _numbers(_column(df, "number_of_frames"))
    rows = _numbers(_column(df, "rows"))
    cols = _numbers(_column(df, "columns"))
    modality = _mode(m.upper() for m in _strings(_column(df, "modality")) if m)
    image_types = [_string_list(v) for v in _column(df, "image_type")]
    names = set(_strings(_column(df, "series_description"))) | set(
        _strings(_column(df, "protocol_name")))

    # Canonical order (InstanceNumber, then SOPInstanceUID; nulls last) so that
    # results do not depend on the order the rows arrive in.
    uid_key = np.array([u if u is not None else "\uffff" for u in uids], dtype=object)
    uid_rank = np.unique(uid_key, return_inverse=True)[1] if n else np.zeros(0, int)
    canon = np.lexsort((uid_rank, np.where(np.isfinite(inst_no), inst_no, np.inf))) if n \
        else np.zeros(0, int)

    frames_filled = np.where(np.isfinite(frames) & (frames >= 1), frames, 1)
    is_multiframe = bool(n and np.any(frames_filled > 1))
    rows_mode, cols_mode = _mode(rows[np.isfinite(rows)]), _mode(cols[np.isfinite(cols)])
    dims_present = np.isfinite(rows) & np.isfinite(cols)
    dims_consistent = bool(np.unique(np.stack([rows[dims_present], cols[dims_present]], 1),
                                     axis=0).shape[0] <= 1) if dims_present.any() else True

    tomographic_modality = modality in rules.volume_modalities
    has_geom = np.all(np.isfinite(ipp), axis=1) & np.all(np.isfinite(iop), axis=1)
    tomographic = bool((tomographic_modality or modality is None) and has_geom.any())

    result: dict[str, Any] = {
        "num_instances": n,
        "num_frames": int(frames_filled.sum()) if n else 0,
        "is_multiframe": is_multiframe,
        "modality": modality,
        "rows": _int_or_none(rows_mode),
        "columns": _int_or_none(cols_mode),
        "dims_consistent": dims_consistent,
        "pixel_spacing_row": _median(spacing[:, 0]),
        "pixel_spacing_col": _median(spacing[:, 1]),
        "slice_thickness": _median(_numbers(_column(df, "slice_thickness"))),
        "header_spacing_between_slices": _median(_numbers(_column(df, "spacing_between_slices"))),
        "num_with_geometry": int(has_geom.sum()),
        "is_tomographic": tomographic,
        "orientation_consistent": None,
        "num_orientations": 0,
        "num_slices_main_orientation": 0,
        "slice_normal": None,
        "num_distinct_positions": 0,
        "slice_spacing": None,
        "slice_spacing_min": None,
        "slice_spacing_max": None,
        "spacing_tolerance_mm": None,
        "spacing_regular": None,
        "max_spacing_deviation_mm": None,
        "num_irregular_steps": 0,
        "missing_slices": None,
        "missing_slices_by_position": None,
        "instance_number_gaps": instance_number_gaps(inst_no),
        "duplicate_positions": None,
        "all_one_position": False,
        "gantry_tilt_deg": None,
        "non_orthogonal": False,
        "is_volume": False,
        "too_few_slices": False,
        "is_localizer": False,
        "localizer_reasons": [],
        "slice_order": [],
        "findings": [],
    }

    # Orientation groups in canonical order; the main group is the largest.
    groups_c, consistent = orientation_groups(iop[canon], rules.orientation_tol)
    groups = np.empty(n, dtype=int)
    groups[canon] = groups_c
    group_ids, group_sizes = np.unique(groups[groups >= 0], return_counts=True)
    result["orientation_consistent"] = consistent
    result["num_orientations"] = int(group_ids.size)

    # Slice order: each orientation group (largest first) sorted along its own
    # normal (ties: InstanceNumber, UID); instances without geometry last, by
    # InstanceNumber.
    order_parts: list[np.ndarray] = []
    main_info = None
    for gid in group_ids[np.argsort(-group_sizes, kind="stable")]:
        members = canon[(groups[canon] == gid) & has_geom[canon]]  # order-independent
        normal = slice_normal(iop[members]) if members.size else None
        if normal is None:
            continue
        z = ipp[members] @ normal
        key_in = np.where(np.isfinite(inst_no[members]), inst_no[members], np.inf)
        sort = np.lexsort((uid_rank[members], key_in, z))
        order_parts.append(members[sort])
        if main_info is None:
            main_info = (members[sort], z[sort], normal)
    placed = np.concatenate(order_parts) if order_parts else np.zeros(0, int)
    rest = canon[~np.isin(canon, placed)]
    full_order = np.concatenate([placed, rest]).astype(int)
    result["slice_order"] = [uids[i] for i in full_order if uids[i] is not None]

    geometry_rules_apply = tomographic and main_info is not None
    if geometry_rules_apply:
        members, z_sorted, normal = main_info
        result["num_slices_main_orientation"] = int(len(members))
        result["slice_normal"] = [float(v) for v in normal]
        if not is_multiframe:
            result.update(spacing_rules(z_sorted, rules))
            result["missing_slices"] = result["missing_slices_by_position"]
            tilt, non_ortho = tilt_rule(ipp[members[0]], ipp[members[-1]], normal,
                                        rules.non_orthogonal_tol)
            result["gantry_tilt_deg"], result["non_orthogonal"] = tilt, non_ortho

    # Volume / too few slices (geometric facts; policy is applied in findings).
    if tomographic_modality or tomographic:
        if is_multiframe:
            result["is_volume"] = bool(result["num_frames"] >= rules.min_slices
                                       and consistent is not False)
        elif geometry_rules_apply:
            result["is_volume"] = bool(
                result["num_distinct_positions"] >= rules.min_slices
                and consistent is True and result["duplicate_positions"] == 0)
            result["too_few_slices"] = bool(
                result["num_distinct_positions"] < rules.too_few_slices)

    sizes_for_localizer = [] if is_multiframe else [int(s) for s in group_sizes]
    reasons = localizer_reasons(
        image_types=image_types, modality=modality, names=names,
        tomographic_modality=tomographic_modality, group_sizes=sizes_for_localizer,
        rules=rules)
    result["is_localizer"] = bool(reasons)
    result["localizer_reasons"] = reasons

    result["findings"] = _findings(result, geometry_rules_apply)
    return result


def _findings(r: dict, geometry_rules_apply: bool) -> list[str]:
    """Reason codes. A localizer gets LOCALIZER only: its odd geometry is expected.

    Geometry findings only for tomographic series with positions; multi-frame
    series only get INCONSISTENT_ORIENTATION (across instances). MISSING_SLICES
    when positions show integer-multiple gaps OR InstanceNumber has gaps
    (either signal is enough).
    """
    if r["is_localizer"]:
        return [LOCALIZER]
    if not geometry_rules_apply:
        return []
    findings = []
    if r["orientation_consistent"] is False:
        findings.append(INCONSISTENT_ORIENTATION)
    if r["is_multiframe"]:
        return findings
    if r["num_irregular_steps"] > 0:
        findings.append(IRREGULAR_SPACING)
    if (r["missing_slices_by_position"] or 0) > 0 or (r["instance_number_gaps"] or 0) > 0:
        findings.append(MISSING_SLICES)
    if r["too_few_slices"]:
        findings.append(TOO_FEW_SLICES)
    return findings


# Keys of the returned dict and their types (for the Spark schema). "?" = nullable.
GEOMETRY_KEYS: dict[str, str] = {
    "num_instances": "long",
    "num_frames": "long",
    "is_multiframe": "bool",
    "modality": "str?",
    "rows": "long?",
    "columns": "long?",
    "dims_consistent": "bool",
    "pixel_spacing_row": "double?",
    "pixel_spacing_col": "double?",
    "slice_thickness": "double?",
    "header_spacing_between_slices": "double?",
    "num_with_geometry": "long",
    "is_tomographic": "bool",
    "orientation_consistent": "bool?",
    "num_orientations": "long",
    "num_slices_main_orientation": "long",
    "slice_normal": "double[]?",
    "num_distinct_positions": "long",
    "slice_spacing": "double?",
    "slice_spacing_min": "double?",
    "slice_spacing_max": "double?",
    "spacing_tolerance_mm": "double?",
    "spacing_regular": "bool?",
    "max_spacing_deviation_mm": "double?",
    "num_irregular_steps": "long",
    "missing_slices": "long?",
    "missing_slices_by_position": "long?",
    "instance_number_gaps": "long?",
    "duplicate_positions": "long?",
    "all_one_position": "bool",
    "gantry_tilt_deg": "double?",
    "non_orthogonal": "bool",
    "is_volume": "bool",
    "too_few_slices": "bool",
    "is_localizer": "bool",
    "localizer_reasons": "str[]",
    "slice_order": "str[]",
    "findings": "str[]",
}
