"""Where a site's export puts each object (relative paths, '/' separated).

- horos:    SITE/<pseudonym>/<study description>_<date>/<series description>_<n>/IM-<n>-<i>.dcm
- ge_media: SITE/DICOM/PA<p>/ST<s>/SE<k>/IM<i>   (no extension, zero-based counters)
- uid_flat: SITE/<pseudonym>/<StudyInstanceUID>/<MODALITY>.<SOPInstanceUID>.dcm
- accession: SITE/<accession or pseudonym>/<series number>/<instance>.dcm
- plain:    SITE/<pseudonym>/<study date>/<series uid tail>/<i>.dcm
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .modules import Study


@dataclass
class SeriesRef:
    study: Study
    number: int
    description: str
    uid: str
    order: int          # position of the series in the study's export
    modality: str


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "series"


def study_folder(study: Study) -> str:
    p = study.patient
    site = p.site
    if site.naming == "horos":
        return f"{site.folder}/{p.pseudonym}/{_clean(study.description)}_{study.date}"
    if site.naming == "ge_media":
        return f"{site.folder}/DICOM/PA{p.n - 1:06d}/ST{study.extra.get('index', 0):06d}"
    if site.naming == "uid_flat":
        return f"{site.folder}/{p.pseudonym}/{study.uid}"
    if site.naming == "accession":
        return f"{site.folder}/{study.accession or p.pseudonym}"
    return f"{site.folder}/{p.pseudonym}/{study.date}"


def instance_path(series: SeriesRef, instance: int, index: int, sop_uid: str) -> str:
    """Path of the `index`-th object (zero-based) written in `series`."""
    site = series.study.patient.site
    base = study_folder(series.study)
    if site.naming == "horos":
        return (f"{base}/{_clean(series.description)}_{series.number}/"
                f"IM-{series.number:04d}-{instance:04d}.dcm")
    if site.naming == "ge_media":
        return f"{base}/SE{series.order:06d}/IM{index:06d}"
    if site.naming == "uid_flat":
        return f"{base}/{series.modality}.{sop_uid}.dcm"
    if site.naming == "accession":
        return f"{base}/{series.number:03d}/{instance:05d}.dcm"
    return f"{base}/{series.uid.rsplit('.', 1)[-1][-8:]}/{instance:04d}.dcm"


def extra_path(study: Study, folder: str, name: str) -> str:
    """A file outside the regular export tree of `study` (re-sent copies, logs, ...)."""
    site = study.patient.site
    if site.naming == "ge_media":
        return f"{site.folder}/{folder}/PA{study.patient.n - 1:06d}/{name}"
    return f"{site.folder}/{study.patient.pseudonym}/{folder}/{name}"
