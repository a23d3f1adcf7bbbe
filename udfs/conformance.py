"""NON_CONFORMANT: an object pydicom reads leniently but a strict reader
downstream may refuse, because it breaks DICOM PS3.10 (file meta) or PS3.5
(value representations). Checked on the raw elements of the file meta and the
top-level dataset, before any value is converted:

* a Type 1 file meta element missing or empty (MediaStorageSOPClassUID,
  MediaStorageSOPInstanceUID, TransferSyntaxUID);
* an explicit VR that is not the data dictionary's for a standard tag
  (MagneticFieldStrength written as FD instead of DS);
* a UID that is not dot-separated numbers without leading zeros, or longer
  than 64 characters (PS3.5 9.1);
* a decimal string (DS) or integer string (IS) that is not a number in
  PS3.5's form: a decimal comma, letters, too long.

Nested sequence items are not checked. Pure Python; used by udfs/headers.py.
"""
from __future__ import annotations

import re

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement

META_TYPE_1 = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
INTEGER = re.compile(r"[+-]?\d+")
MAX_LENGTH = {"UI": 64, "DS": 16, "IS": 12}
MAX_PROBLEMS = 10  # one object's list stays short; the first ones say enough


def conformance_problems(ds) -> list[str]:
    """What in `ds` (read with pydicom, values not yet converted) breaks the
    standard, one short line each; empty when nothing does."""
    problems = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None and len(meta):  # a Part 10 file: its meta group has Type 1 elements
        problems += [f"file meta {keyword} missing (Type 1)" for keyword in META_TYPE_1
                     if not str(meta.get(keyword, "") or "").strip("\0 ")]
        problems += _element_problems(meta)
    problems += _element_problems(ds)
    return problems[:MAX_PROBLEMS]


def _element_problems(ds) -> list[str]:
    problems = []
    for tag in list(ds.keys()):
        if tag.is_private or tag.element == 0:  # private and group-length elements: no dictionary entry
            continue
        try:
            problems += _problems_of(tag, ds.get_item(tag))
        except Exception:  # an element too broken to check: the header parse reports it
            continue
    return problems


def _problems_of(tag, raw) -> list[str]:
    try:
        standard = dictionary_VR(tag)
    except KeyError:  # not in the dictionary: nothing to compare with
        return []
    name = keyword_for_tag(tag) or str(tag)
    vr = raw.VR
    if vr and vr != "UN" and vr not in standard.split(" or "):
        return [f"{name} written as {vr}; the standard says {standard}"]
    vr = vr if vr in MAX_LENGTH else (standard if standard in MAX_LENGTH else None)
    if not vr:
        return []
    return [problem for value in _values(raw) if (problem := _value_problem(name, vr, value))]


def _values(raw) -> list[str]:
    value = raw.value
    if isinstance(raw, RawDataElement) or isinstance(value, bytes):
        if not value:
            return []
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        return text.split("\\")
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]


def _value_problem(name: str, vr: str, value: str) -> str | None:
    text = value.strip("\0 ")
    if not text:
        return None
    if vr == "UI" and (len(text) > MAX_LENGTH["UI"] or not UID.fullmatch(text)):
        return f"{name} is not a valid UID"
    if vr == "DS" and not DECIMAL.fullmatch(text):
        return f"{name} {text[:20]!r}: a decimal comma" if "," in text else f"{name} {text[:20]!r} is not a decimal string"
    if vr == "IS" and not INTEGER.fullmatch(text):
        return f"{name} {text[:20]!r} is not an integer string"
    if len(value.rstrip("\0 ")) > MAX_LENGTH[vr]:
        return f"{name} longer than {MAX_LENGTH[vr]} characters"
    return None
