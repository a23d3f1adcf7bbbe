"""Series geometry defects, applied to a `SeriesPlan` before it is written.

The pixels are rendered at the planes the header states, so content and geometry
agree (a removed slice is really absent, a re-angled slice shows the anatomy of
its own plane). Distances are mm, angles degrees.
"""
from __future__ import annotations

import numpy as np

from . import mr
from .series import SeriesPlan


def missing_slice(plan: SeriesPlan, k: int) -> SeriesPlan:
    """Drop slice `k` (not an end slice): one gap of twice the step and a gap in
    InstanceNumber."""
    assert 0 < k < len(plan.planes) - 1
    del plan.planes[k]
    del plan.instance_numbers[k]
    plan.series_codes.append("MISSING_SLICES")
    plan.note = f"instance {k + 1} missing"
    return plan


def irregular_gap(plan: SeriesPlan, k: int, factor: float = 1.5) -> SeriesPlan:
    """Slices after `k` moved so that the gap k -> k+1 is `factor` times the step."""
    step = np.linalg.norm(plan.planes[1].origin - plan.planes[0].origin)
    for p in plan.planes[k + 1:]:
        p.origin = np.round(p.origin + p.normal * step * (factor - 1.0), 6)
    plan.series_codes.append("IRREGULAR_SPACING")
    plan.note = f"gap after instance {k + 1} is {factor:g} x the step"
    return plan


def reangled(plan: SeriesPlan, start: int, degrees: float) -> SeriesPlan:
    """Slices from `start` on acquired with another angulation (a second stack
    planned differently), each turned about its own centre."""
    rows, cols = plan.matrix
    a = np.radians(degrees)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    for p in plan.planes[start:]:
        centre = (p.origin + p.row * plan.spacing[1] * (cols - 1) / 2
                  + p.col * plan.spacing[0] * (rows - 1) / 2)
        row, col = rot @ p.row, rot @ p.col
        p.row, p.col = row, col
        p.origin = np.round(centre - row * plan.spacing[1] * (cols - 1) / 2
                            - col * plan.spacing[0] * (rows - 1) / 2, 6)
    plan.series_codes.append("INCONSISTENT_ORIENTATION")
    plan.note = f"instances {start + 1}.. tilted {degrees:g} degrees"
    return plan


def keep_middle(plan: SeriesPlan, count: int) -> SeriesPlan:
    """An acquisition stopped after `count` slices (1 or 2)."""
    mid = len(plan.planes) // 2
    plan.planes = plan.planes[mid:mid + count]
    plan.instance_numbers = list(range(1, count + 1))
    plan.series_codes.append("TOO_FEW_SLICES")
    plan.note = f"acquisition stopped after {count} slice(s)"
    return plan


def spacing_in_cm(plan: SeriesPlan) -> SeriesPlan:
    """PixelSpacing written in centimetres by a converter (pixels unchanged)."""
    plan.header_spacing = (round(plan.spacing[0] / 10, 6), round(plan.spacing[1] / 10, 6))
    plan.series_codes.append("SPACING_OUT_OF_RANGE")
    plan.note = "PixelSpacing in cm"
    return plan


def thick_slab(plan: SeriesPlan) -> SeriesPlan:
    """Marks a slab series whose SliceThickness is beyond the tomographic range."""
    plan.series_codes.append("SPACING_OUT_OF_RANGE")
    plan.note = f"slab thickness {plan.thickness:g} mm"
    return plan


def low_matrix(plan: SeriesPlan) -> SeriesPlan:
    plan.series_codes.append("RESOLUTION_OUT_OF_RANGE")
    plan.note = f"matrix {plan.matrix[0]} x {plan.matrix[1]}"
    return plan


def copy_planes(planes: list[mr.Plane]) -> list[mr.Plane]:
    return [mr.Plane(p.origin.copy(), p.row.copy(), p.col.copy()) for p in planes]
