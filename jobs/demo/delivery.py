"""The delivery being built: objects with their ground truth, and the roster helpers.

`Delivery` hands out deterministic randomness (`rng(*key)` depends only on the
seed and the key, not on the order of calls), UIDs, patients, studies and
series, and collects `Item`s: the bytes of each object and its ground-truth
row. The ground-truth files are rendered from it here as well.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from dicom_triage.jobs.demo import dicom as dcm
from dicom_triage.jobs.demo.roster import SITE, Patient, Scanner, make_patient, study_date

GROUND_TRUTH_CSV = "_ground_truth.csv"
GROUND_TRUTH_JSON = "_ground_truth.json"
GROUND_TRUTH_COLUMNS = (
    "path", "category", "ingest_error", "reasons", "site", "patient_key", "study_uid",
    "series_uid", "sop_instance_uid", "modality", "body_part", "true_region", "size_bytes",
    "duplicate_of", "source", "note",
)

# What the labels assume the delivery should contain (keys as in conf `expect:`);
# a job configured otherwise will disagree on UNEXPECTED_MODALITY /
# UNEXPECTED_ANATOMY / TOO_FEW_SLICES. No object falls outside the ranges.
EXPECTATIONS = {
    "modalities": ["CT", "MR", "CR", "DX"],
    "body_regions": ["head", "chest", "extremity"],
    "min_slices": 3,
    "pixel_spacing_mm": [0.05, 5.0],
    "slice_thickness_mm": [0.1, 12.0],
    "rows_columns": [64, 8192],
}

CONVENTIONS = {
    "category": "'good' or the main defect's reason code (schemas.reasons); "
                "`reasons` lists every code a triage job should report for the object",
    "ingest_errors": "an object that cannot be read lists only its ingest error",
    "series_findings": "LOCALIZER and geometry findings are listed on every instance of the series",
    "duplicates": "of two objects with the same pixels or SOPInstanceUID, the one whose path "
                  "sorts later carries EXACT_DUPLICATE / DUPLICATE_SOP_UID; duplicate_of names "
                  "the earlier one",
    "near_duplicates": "NEAR_DUPLICATE marks an image exported again with new UIDs in another "
                       "series and slightly changed pixels (lossy JPEG, crop, resize, rescale, "
                       "light noise); duplicate_of names the original",
    "no_pixel_data": "objects without pixel data (SR, raw data) list only NO_PIXEL_DATA",
    "unexpected": "UNEXPECTED_MODALITY is listed on every image whose Modality is not in "
                  "expectations.modalities; UNEXPECTED_ANATOMY on every image whose series header "
                  "(BodyPartExamined, SeriesDescription, ProtocolName) names a region outside "
                  "expectations.body_regions; IRRELEVANT_CONTENT and ANATOMY_HEADER_MISMATCH only "
                  "on images whose header claims expected content",
    "single_slices": "a CT/MR Image Storage object alone in its series with a position "
                     "also lists TOO_FEW_SLICES",
    "true_region": "head, neck, chest, abdomen, pelvis, extremity, whole_body, or none "
                   "(photographs, test patterns, random bytes)",
    "planted_identifiers": "every planted identifier occurs in some header (PN, LO, DA values, a "
                           "private copy of the patient ID, SR text); none occurs in a path or a "
                           "UID (UIDs never hold a date-like digit run), so outputs can be searched "
                           "for them as plain substrings",
    "not_planted": "EMBEDDING_OUTLIER, CLUSTER_OUTLIER, PHI_PRESENT and the *_OUT_OF_RANGE "
                   "codes are not planted; each patient's anatomy is the source image (template "
                   "brain, CT slice, radiograph) deformed, scaled and posed its own way, so "
                   "different patients are not near duplicates; a screen capture with burned-in "
                   "text is not labelled a near duplicate of its slice",
}

# Header attributes whose values are planted identifiers (schema: privacy.hash_keywords).
PLANTED_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "PatientAddress",
    "AccessionNumber", "ReferringPhysicianName", "OperatorsName", "InstitutionAddress", "StudyID",
)

MNI = "nilearn:MNI152 2009a T1/GM/WM"
STUDY_TITLES = {
    ("A", "MR"): "MRT Schaedel nativ", ("A", "CT"): "CCT nativ",
    ("B", "MR"): "MRI BRAIN W/O CONTRAST", ("B", "CT"): "CT HEAD W/O CONTRAST",
    ("B", "NM"): "NM BONE SCAN WHOLE BODY",
    ("C", "MR"): "IRM ENCEPHALE", ("C", "CT"): "TDM THORAX", ("C", "CT-ABD"): "TDM ABDOMEN",
    ("A", "MR-ABD"): "MRT Abdomen",
    ("D", "CR"): "XR CHEST 2 VIEWS", ("D", "DX"): "XR CHEST PORTABLE",
    ("D", "CR-LEG"): "XR TIBIA FIBULA RIGHT", ("D", "US"): "US NECK / OB",
}


@dataclass
class Item:
    """One object of the delivery: its bytes and its ground-truth row."""

    path: str
    data: bytes
    category: str = "good"
    reasons: tuple[str, ...] = ()
    ingest_error: str = ""
    site: str = ""
    patient_key: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    modality: str = ""
    body_part: str = ""
    true_region: str = ""
    duplicate_of: str = ""
    source: str = ""
    note: str = ""
    dataset: Dataset | None = field(default=None, repr=False)   # kept for copies
    intact: bytes | None = field(default=None, repr=False)       # valid original of a broken object

    def row(self) -> dict:
        return {
            "path": self.path, "category": self.category, "ingest_error": self.ingest_error,
            "reasons": ";".join(self.reasons), "site": self.site, "patient_key": self.patient_key,
            "study_uid": self.study_uid, "series_uid": self.series_uid,
            "sop_instance_uid": self.sop_instance_uid, "modality": self.modality,
            "body_part": self.body_part, "true_region": self.true_region,
            "size_bytes": len(self.data), "duplicate_of": self.duplicate_of,
            "source": self.source, "note": self.note,
        }


class Delivery:
    """Collects objects and planted identifiers; hands out deterministic randomness,
    UIDs, patients, studies and series."""

    def __init__(self, seed: int, scale: int):
        self.seed, self.scale = seed, scale
        self.uid = dcm.Uids(seed)
        self.items: list[Item] = []        # objects of the replica being built (or all)
        self.rows: list[dict] = []         # ground-truth rows of finished replicas
        self.identifiers: dict[str, set[str]] = {k: set() for k in PLANTED_KEYWORDS}
        self.series_by_uid: dict[str, dcm.Series] = {}
        self._patients = 0
        self._studies: Counter = Counter()
        self._series: Counter = Counter()
        self._instances: Counter = Counter()

    def rng(self, *key) -> np.random.Generator:
        """Randomness that depends only on the seed and `key` (not on the order of calls)."""
        digest = hashlib.sha256("/".join(map(str, key)).encode()).digest()
        return np.random.default_rng([self.seed, int.from_bytes(digest[:16], "little")])

    # -- roster -------------------------------------------------------------
    def patient(self, site_code: str) -> Patient:
        self._patients += 1
        site = SITE[site_code]
        return make_patient(site, self._patients, self.rng("patient", self._patients))

    def study(self, patient: Patient, kind: str) -> dcm.Study:
        self._studies[patient.folder] += 1
        number = self._studies[patient.folder]
        rng = self.rng("study", patient.folder, number)
        site = patient.site
        code = f"{rng.integers(10**6, 10**7)}"
        return dcm.Study(
            patient=patient, folder=f"study_{number:02d}",
            uid=self.uid("study", patient.folder, number),
            accession=f"{site.id_prefix[:2]}{code[:3]}{patient.name[-3:]}{code[3:]}",
            study_id=f"E{code[-4:]}{patient.name[-3:]}",
            when=study_date(rng), description=STUDY_TITLES[(site.code, kind)],
            referring=str(rng.choice(site.referring)), operator=str(rng.choice(site.operators)))

    def series(self, study: dcm.Study, modality: str, description: str, scanner: Scanner,
               body_part: str = "", protocol: str = "", number: int | None = None,
               folder: str | None = None) -> dcm.Series:
        key = f"{study.patient.folder}/{study.folder}"
        self._series[key] += 1
        number = number or self._series[key]
        minutes = 4 * self._series[key]
        series = dcm.Series(
            study=study, folder=folder or f"se_{number:03d}",
            uid=self.uid("series", key, number, folder or ""), number=number, modality=modality,
            description=description, protocol=protocol, scanner=scanner, body_part=body_part,
            frame_uid=self.uid("frame", key), when=study.when + dt.timedelta(minutes=minutes))
        self.series_by_uid[series.uid] = series
        return series

    def sop_uid(self, series: dcm.Series, number: int) -> str:
        return self.uid("sop", series.uid, number)

    def path(self, series: dcm.Series, number: int) -> str:
        study, patient = series.study, series.study.patient
        return f"{patient.site.folder}/{patient.folder}/{study.folder}/{series.folder}/im_{number:04d}.dcm"

    def next_number(self, series: dcm.Series) -> int:
        """An instance number after every one used in `series` so far."""
        self._instances[series.uid] += 1
        return self._instances[series.uid]

    # -- adding objects -----------------------------------------------------
    def add_dicom(self, ds: Dataset, series: dcm.Series, number: int, *, true_region: str,
                  source: str, category: str = "good", reasons: tuple[str, ...] = (),
                  encoding: str | None = None, note: str = "") -> Item:
        data = dcm.encode(ds, encoding)
        self._plant(ds)
        self._instances[series.uid] = max(self._instances[series.uid], number)
        item = Item(
            path=self.path(series, number), data=data, category=category,
            reasons=tuple(reasons), site=series.study.site.folder,
            patient_key=str(ds.get("PatientID", "")), study_uid=str(ds.get("StudyInstanceUID", "")),
            series_uid=str(ds.get("SeriesInstanceUID", "")),
            sop_instance_uid=str(ds.get("SOPInstanceUID", "")), modality=str(ds.get("Modality", "")),
            body_part=str(ds.get("BodyPartExamined", "")), true_region=true_region,
            source=source, note=note, dataset=ds)
        self.items.append(item)
        return item

    def add_raw(self, series: dcm.Series, data: bytes, *, ingest_error: str, true_region: str,
                source: str, note: str) -> Item:
        """A file that is not readable DICOM, dropped into the folder of `series`."""
        item = Item(path=self.path(series, self.next_number(series) + 900), data=data,
                    category=ingest_error, reasons=(ingest_error,), ingest_error=ingest_error,
                    site=series.study.site.folder, patient_key=series.study.patient.patient_id,
                    true_region=true_region, source=source, note=note)
        self.items.append(item)
        return item

    def _plant(self, ds: Dataset) -> None:
        for keyword in PLANTED_KEYWORDS:
            value = ds.get(keyword)
            if value not in (None, ""):
                values = value if isinstance(value, pydicom.multival.MultiValue) else [value]
                self.identifiers[keyword].update(str(v) for v in values if str(v))


def planted_identifiers(d: Delivery) -> list[str]:
    return sorted(set().union(*d.identifiers.values()))


def summary_of(d: Delivery) -> dict:
    """Counts over the finished rows (`Delivery.rows`)."""
    rows = d.rows
    reasons = Counter(code for r in rows for code in r["reasons"].split(";") if code)
    return {
        "seed": d.seed,
        "scale": d.scale,
        "files": len(rows),
        "bytes": sum(r["size_bytes"] for r in rows),
        "categories": dict(sorted(Counter(r["category"] for r in rows).items())),
        "ingest_errors": dict(sorted(Counter(r["ingest_error"] for r in rows if r["ingest_error"]).items())),
        "reasons": dict(sorted(reasons.items())),
        "sites": dict(sorted(Counter(r["site"] for r in rows).items())),
    }


def ground_truth_json(d: Delivery) -> dict:
    return {
        **summary_of(d),
        "planted_identifiers": planted_identifiers(d),
        "planted_identifiers_by_keyword": {k: sorted(v) for k, v in d.identifiers.items()},
        "expectations": EXPECTATIONS,
        "conventions": CONVENTIONS,
        "sources": sorted({r["source"] for r in d.rows if r["source"]}),
        "generator": "dicom_triage.jobs.demo_data.generate_delivery",
    }


def ground_truth_csv(d: Delivery) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=GROUND_TRUTH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(d.rows, key=lambda r: r["path"]):
        writer.writerow(row)
    return buffer.getvalue().encode("utf-8")
