"""Factories of per-instance `Op`s: quality defects, burned-in text, identifiers
left in the header, non-conformant encodings, undecodable pixel data, missing
pixel data and damaged files. Shared by all shapes."""
from __future__ import annotations

import numpy as np

from . import file_defects as fd
from . import image_defects as imd
from .delivery import Delivery
from .encoders import encode_pixels, j2k_frame, rle_frame
from .series import Op
from .writer import EXPLICIT_LE, IMPLICIT_LE, J2K_LOSSLESS, RLE_LOSSLESS, Encapsulated, V


# --- quality -------------------------------------------------------------------------

def constant(value: int | None = None) -> Op:
    """Every pixel one value (a blank frame): `value`, else the image's median."""
    def stored(s, maxval, value=value):
        v = int(np.median(s)) if value is None else value
        return np.full_like(s, v)
    return Op("CONSTANT_IMAGE", stored=stored, note="blank frame")


def requantised(levels: int) -> Op:
    return Op("LOW_DYNAMIC_RANGE", pixels=lambda img, r: imd.requantise(img, levels),
              note=f"requantised to {levels} grey levels")


def squeezed(width: float) -> Op:
    """Stored values squeezed into `width` levels around the image median."""
    def stored(s, maxval):
        out = imd.squeeze(s.astype(np.float64), width, float(np.median(s)) + width)
        return np.clip(np.round(out), 0, maxval).astype(s.dtype)
    return Op("LOW_DYNAMIC_RANGE", stored=stored, note=f"intensities squeezed into {width:g} levels")


def saturated(share: float, gain: float = 3.0) -> Op:
    """Overflow: `gain` times the values, clipped so that about `share` of all
    pixels sit at the maximum."""
    def stored(s, maxval):
        x = s.astype(np.float64) * gain
        level = min(float(np.percentile(x, 100 * (1 - share))), float(maxval))
        return np.round(np.minimum(x, level)).astype(s.dtype)
    return Op("SATURATED", stored=stored, note=f"clipped, about {share:.0%} of pixels at the maximum")


def noisy_rf(amplitude: float) -> Op:
    return Op("NOISY", pixels=lambda img, r: imd.rf_interference(img, amplitude, r),
              note="RF interference: broadband noise and a zipper line")


def noisy_gaussian(sigma: float) -> Op:
    return Op("NOISY", pixels=lambda img, r: imd.gaussian_noise(img, sigma, r),
              note=f"strong noise (sigma {sigma:g})")


def blurred(sigma: float) -> Op:
    return Op("BLURRY", pixels=lambda img, r: imd.gaussian_blur(img, sigma),
              note=f"smoothed (Gaussian sigma {sigma:g} px)")


def motion(length: int, angle: float) -> Op:
    return Op("BLURRY", pixels=lambda img, r: imd.motion_blur(img, length, angle),
              note=f"motion blur over {length} px")


def burned_in(d: Delivery, lines: list[str], corner: str, size: int) -> Op:
    """Text written into the pixels at the image's brightest value."""
    d.truth.burned_in_text.extend(lines)

    def stored(s, maxval):
        value = max(int(np.percentile(s, 99.9)), 1)
        mask = imd.text_mask(s.shape, lines, corner, size)
        return np.round(s * (1 - mask) + value * mask).astype(s.dtype)
    return Op("BURNED_IN_ANNOTATION", stored=stored, note="text burned into the pixels: "
              + " | ".join(lines))


# --- privacy ----------------------------------------------------------------------------

def phi(d: Delivery, fields: dict[str, str], note: str) -> Op:
    """Header identifiers left by the de-identification (values are recorded)."""
    for value in fields.values():
        if isinstance(value, str):
            d.truth.plant_identifier(value)

    def header(h, fields=fields):
        h.update(fields)
        if "PatientName" in fields or "PatientID" in fields:
            h["PatientIdentityRemoved"] = "NO"
            for k in ("DeidentificationMethod", "DeidentificationMethodCodeSequence"):
                h.pop(k, None)
    return Op("PHI_PRESENT", header=header, note=note)


# --- conformance ----------------------------------------------------------------------

def nonconformant(kind: str) -> Op:
    """A readable object that breaks PS3.5 / PS3.10:
    ds_comma (decimal comma in a DS), is_letters (letters in an IS), vr_mismatch
    (MagneticFieldStrength written as FD instead of DS), uid_leading_zero,
    uid_letters, uid_too_long (SOPInstanceUID), no_sop_class_meta (File Meta
    without MediaStorageSOPClassUID)."""
    meta = None
    note = {"ds_comma": "RepetitionTime with a decimal comma",
            "ds_comma_kvp": "KVP with a decimal comma",
            "is_letters": "EchoTrainLength '17A' in an IS",
            "vr_mismatch": "MagneticFieldStrength encoded as FD",
            "uid_leading_zero": "SOPInstanceUID component with a leading zero",
            "uid_letters": "SOPInstanceUID with letters",
            "uid_too_long": "SOPInstanceUID longer than 64 characters",
            "no_sop_class_meta": "File Meta without MediaStorageSOPClassUID"}[kind]
    if kind == "ds_comma":
        def header(h):
            tr = str(h.get("RepetitionTime", "4500")).replace(".", ",")
            h["RepetitionTime"] = V("DS", tr if "," in tr else tr + ",0")
    elif kind == "ds_comma_kvp":
        def header(h):
            h["KVP"] = V("DS", f"{h.get('KVP', 120)},0")
    elif kind == "is_letters":
        def header(h):
            h["EchoTrainLength"] = V("IS", "17A")
    elif kind == "vr_mismatch":
        def header(h):
            h["MagneticFieldStrength"] = V("FD", float(h.get("MagneticFieldStrength", 3.0)))
    elif kind.startswith("uid_"):
        def header(h, kind=kind):
            uid = h["SOPInstanceUID"]
            root, tail = uid.rsplit(".", 1)
            if kind == "uid_leading_zero":
                h["SOPInstanceUID"] = f"{root}.0{tail[:12]}.{tail[12:] or '7'}"
            elif kind == "uid_letters":
                h["SOPInstanceUID"] = f"{root}.{tail[:6]}a{tail[7:]}"
            else:
                h["SOPInstanceUID"] = (uid + "." + tail * 4)[:80]
    else:  # no_sop_class_meta
        header = None
        meta = {"MediaStorageSOPClassUID": ...}
    return Op("NON_CONFORMANT", header=header, meta=meta, note=note)


# --- pixel data -------------------------------------------------------------------------

def unreadable(kind: str) -> Op:
    """PixelData present, consistent element lengths, but not decodable:
    j2k_cut (codestream cut to a third), j2k_cod (coding style segment
    overwritten), rle_segments (wrong segment count), native_short (half the bytes)."""
    if kind == "j2k_cut":
        def pixel_data(frames, ts, bits):
            return Encapsulated([[fd.cut_codestream(j2k_frame(f, bits), 0.33)] for f in frames]), False
        return Op("UNREADABLE_PIXELS", pixel_data=pixel_data, ts=J2K_LOSSLESS,
                  note="JPEG 2000 codestream cut to a third")
    if kind == "j2k_cod":
        def pixel_data(frames, ts, bits):
            return Encapsulated([[fd.scramble_j2k_cod(j2k_frame(f, bits))] for f in frames]), False
        return Op("UNREADABLE_PIXELS", pixel_data=pixel_data, ts=J2K_LOSSLESS,
                  note="JPEG 2000 COD segment overwritten")
    if kind == "rle_segments":
        def pixel_data(frames, ts, bits):
            return Encapsulated([[fd.rle_bad_segments(rle_frame(f), 3)] for f in frames]), False
        return Op("UNREADABLE_PIXELS", pixel_data=pixel_data, ts=RLE_LOSSLESS,
                  note="RLE header announces 3 segments")
    if kind == "native_short":
        def pixel_data(frames, ts, bits):
            value = encode_pixels(frames, ts, bits)
            raw = value.value
            return V(value.vr, raw[:len(raw) // 2]), False
        return Op("UNREADABLE_PIXELS", pixel_data=pixel_data, ts=EXPLICIT_LE,
                  note="PixelData holds half of rows x columns x 16 bits")
    raise ValueError(kind)


def no_pixel_data() -> Op:
    def header(h):
        h.pop("PixelData", None)
    return Op("NO_PIXEL_DATA", header=header, note="image object without PixelData")


def other_sop_uid(uid: str) -> Op:
    """Carries the SOPInstanceUID of another object (an anonymiser collision)."""
    def header(h, uid=uid):
        h["SOPInstanceUID"] = uid
    return Op("", header=header, note="SOPInstanceUID of another object")


# --- damaged files (ingest errors) -----------------------------------------------------

def damaged(kind: str, fraction: float = 0.5) -> Op:
    """The file itself is damaged: truncated_pixels, truncated_header, garbage_vr,
    junk_bytes, bad_length."""
    code = "TRUNCATED" if kind.startswith("truncated") else "CORRUPT_HEADER"

    def file(enc, r, kind=kind, fraction=fraction):
        return damage(enc, kind, r, fraction)
    return Op("", file=file, ingest_error=code, note=DAMAGE_NOTES[kind])


DAMAGE_NOTES = {
    "truncated_pixels": "file ends inside PixelData",
    "truncated_header": "file ends inside a header element",
    "garbage_vr": "VR bytes of SeriesDescription overwritten with non-letters",
    "junk_bytes": "binary junk between two header elements",
    "bad_length": "a header element length points into the next element",
}


def damage(enc, kind: str, r: np.random.Generator, fraction: float = 0.5) -> bytes:
    implicit = enc.transfer_syntax == IMPLICIT_LE
    if kind == "truncated_pixels":
        return fd.truncate_in_pixel_data(enc, fraction)
    if kind == "truncated_header":
        return fd.truncate_in_header(enc, r)
    if kind == "garbage_vr":
        if implicit:
            return fd.insert_junk(enc, 0x0008103E, b"\x07\x9c\x00\x00\xff\xfe\x13\x37")
        return fd.garbage_vr(enc, 0x0008103E)
    if kind == "junk_bytes":
        return fd.insert_junk(enc, 0x00100020, b"\xde\xad\xbe\xef\x13\x37\x00\x00")
    if kind == "bad_length":
        return fd.bad_length(enc, 0x0008103E, 5, implicit=implicit)
    raise ValueError(kind)
