"""Enhanced CT Image Storage (multi-frame) objects, laid out as PS3.3 A.38:
shared functional groups (pixel measures, plane orientation, frame type, HU
transformation, VOI window, reconstruction and X-ray details) and per-frame
groups (frame content with a stack dimension, plane position)."""
from __future__ import annotations

import numpy as np

from . import ids, modules
from .delivery import Delivery, record_from
from .encoders import encode_pixels
from .layout import SeriesRef, instance_path
from .mr import Plane
from .sites import Site
from .truth import Record, pixel_key
from .writer import format_ds

STACK_ID = 0x00209056
IN_STACK_POSITION = 0x00209057
FRAME_CONTENT = 0x00209111


def write_enhanced_ct(d: Delivery, ref: SeriesRef, site: Site, model: str, frames: np.ndarray,
                      planes: list[Plane], spacing: float, thickness: float, ts: str,
                      bits: int, signed: bool, intercept: float, window: tuple[float, float],
                      kernel: str, body_part: str, protocol: str, *, true_region: str,
                      hard_negative: str = "", note: str = "", codes=(),
                      ct_params: dict | None = None) -> Record:
    """One multi-frame object holding a whole reconstruction (frames, rows, cols)."""
    study = ref.study
    sop = d.uid(site.uid_root, "enhanced-sop", ref.uid)
    time_s = study.time + 100.0 * ref.number
    dim_uid = d.uid(site.uid_root, "dimension", ref.uid)
    p = ct_params or {}
    h = {}
    h.update(modules.sop_common(modules.ENHANCED_CT, sop, study, time_s))
    h.update(modules.patient_study(study))
    h.update(modules.series_module(study, modality="CT", series_uid=ref.uid, number=ref.number,
                                   description=ref.description, protocol=protocol,
                                   body_part=body_part, time_s=time_s))
    h.update(modules.equipment(site, model))
    h["DeviceSerialNumber"] = site.params.get("serial", "00000")
    h.update({
        "FrameOfReferenceUID": study.frame_uid, "PositionReferenceIndicator": "",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"],
        "InstanceNumber": 1, "AcquisitionNumber": 1,
        "ContentDate": study.date, "ContentTime": ids.format_time(time_s, fraction=True),
        "AcquisitionDateTime": study.date + ids.format_time(time_s - 30, fraction=True),
        "AcquisitionDuration": 4.2, "ContentQualification": "PRODUCT",
        "PixelPresentation": "MONOCHROME", "VolumetricProperties": "VOLUME",
        "VolumeBasedCalculationTechnique": "NONE", "BurnedInAnnotation": "NO",
        "LossyImageCompression": "00", "PresentationLUTShape": "IDENTITY",
        "NumberOfFrames": len(frames), "AcquisitionContextSequence": [],
        "DimensionOrganizationSequence": [{"DimensionOrganizationUID": dim_uid}],
        "DimensionIndexSequence": [
            {"DimensionOrganizationUID": dim_uid, "DimensionIndexPointer": STACK_ID,
             "FunctionalGroupPointer": FRAME_CONTENT},
            {"DimensionOrganizationUID": dim_uid, "DimensionIndexPointer": IN_STACK_POSITION,
             "FunctionalGroupPointer": FRAME_CONTENT}],
    })
    h.update(modules.image_pixel(frames.shape[1], frames.shape[2], bits, signed))
    iop = [format_ds(round(float(v), 10)) for v in list(planes[0].row) + list(planes[0].col)]
    h["SharedFunctionalGroupsSequence"] = [{
        "PixelMeasuresSequence": [{"PixelSpacing": [format_ds(spacing), format_ds(spacing)],
                                   "SliceThickness": format_ds(thickness),
                                   "SpacingBetweenSlices": format_ds(thickness)}],
        "PlaneOrientationSequence": [{"ImageOrientationPatient": iop}],
        "CTImageFrameTypeSequence": [{"FrameType": ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"],
                                      "PixelPresentation": "MONOCHROME",
                                      "VolumetricProperties": "VOLUME",
                                      "VolumeBasedCalculationTechnique": "NONE"}],
        "PixelValueTransformationSequence": [{"RescaleIntercept": format_ds(intercept),
                                              "RescaleSlope": "1", "RescaleType": "HU"}],
        "FrameVOILUTSequence": [{"WindowCenter": format_ds(window[0]),
                                 "WindowWidth": format_ds(window[1])}],
        "CTReconstructionSequence": [{"ConvolutionKernel": kernel,
                                      "ReconstructionDiameter": format_ds(spacing * frames.shape[2]),
                                      "ReconstructionAlgorithm": "ITERATIVE"}],
        "CTXRayDetailsSequence": [{"KVP": format_ds(p.get("KVP", 120)), "FocalSpots": ["1.2"],
                                   "FilterType": "FLAT"}],
        "CTAcquisitionTypeSequence": [{"AcquisitionType": "SPIRAL", "TubeAngle": 0.0,
                                       "ConstantVolumeFlag": "NO", "FluoroscopyFlag": "NO"}],
    }]
    per_frame = []
    for k, plane in enumerate(planes):
        per_frame.append({
            "FrameContentSequence": [{"StackID": "1", "InStackPositionNumber": k + 1,
                                      "DimensionIndexValues": [1, k + 1]}],
            "PlanePositionSequence": [{"ImagePositionPatient": [format_ds(v) for v in plane.origin]}],
        })
    h["PerFrameFunctionalGroupsSequence"] = per_frame
    h["PixelData"] = encode_pixels(frames, ts, bits, offset_table=True)
    enc = d.encode(h, ts, site)
    rec = record_from(h, site=site.folder, patient=study.patient.pseudonym, true_modality="CT",
                      true_region=true_region, source="torso phantom", note=note)
    rec.add(*codes)
    rec.primary = codes[0] if codes else ""
    rec.pixel_key = pixel_key(frames)
    if not codes:
        rec.hard_negative = hard_negative
    return d.put(instance_path(ref, 1, 0, sop), enc.data, rec)
