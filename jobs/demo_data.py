"""A realistic demo delivery of DICOM files with ground truth: `generate_delivery`.

It imitates what a medical-imaging team receives from four hospitals for a
neuro-imaging project (brain MR and head CT, plus chest and extremity
radiographs): mostly good series, and known shares of what goes wrong in real
deliveries. Every image is made from real images that ship inside installed
packages (see `jobs.demo.sources`): the MNI152 brain (nilearn) for 3-D MR
series, a real head CT slice and a chest CT slice (pydicom-data, pydicom) for
CT stacks, real CR/DX radiographs, ultrasound, nuclear medicine, photographs
of cookies and a cat radiograph (deid-data), several kept in their original
compressed encodings.

Layout: ``OUT/<site>/<patient>/<study>/<series>/<instance>.dcm`` with sites
``site_a`` (Siemens), ``site_b`` (GE), ``site_c`` (Philips), ``site_d``
(radiography and ultrasound). Next to them:

* ``OUT/_ground_truth.csv``: one row per written object (GROUND_TRUTH_COLUMNS):
  its category ("good" or the defect's reason code), ingest error, the reason
  codes a triage job should report for it, header facts and what the image
  really shows (`true_region`).
* ``OUT/_ground_truth.json``: counts per category / ingest error / reason, every
  planted identifier string, the expectations the labels assume, conventions,
  seed and scale.

The same seed gives the same bytes. `scale` repeats the four hospitals' rosters
with new patients (and the same shares of defects).
"""
from __future__ import annotations

import json
import os
import time
from typing import Iterator

from dicom_triage.jobs.demo import dicom as dcm
from dicom_triage.jobs.demo.delivery import (EXPECTATIONS, GROUND_TRUTH_COLUMNS, GROUND_TRUTH_CSV,
                                GROUND_TRUTH_JSON, Delivery, Item, ground_truth_csv, ground_truth_json,
                                planted_identifiers, summary_of)
from dicom_triage.jobs.demo.faults import (byte_copy, corrupt_charset, corrupt_deflated, corrupt_nested_charset,
                              empty_file, near_duplicate, png_file, random_file, reexport, resend_series,
                              reuse_sop_uid, text_file, truncate_header, truncate_pixels, zip_file)
from dicom_triage.jobs.demo.imaging import HeadPose
from dicom_triage.jobs.demo.objects import (cat_radiograph, chest_cr_original_j2k, chest_labelled_head_mr,
                               cookie_labelled_head_mr, cookie_photo, ct_raw_data, ct_screenshot,
                               dose_sr, enhanced_ct_abdomen, mr_abdomen_slice, mr_key_image,
                               nm_bone_scan, radiograph, report_sr, smiley_labelled_ct_head,
                               qa_pattern, tibia_labelled_skull, ultrasound_cine, ultrasound_still)
from dicom_triage.jobs.demo.roster import SITE
from dicom_triage.jobs.demo.series import (ct_chest, ct_head, ct_head_irregular_spacing, enhanced_mr, localizer,
                              mr_brain, mr_missing_slices, mr_mixed_orientation, mr_too_few_slices)

__all__ = ["generate_delivery", "build_delivery", "delivery_files", "write_files", "Delivery", "Item",
           "GROUND_TRUTH_CSV", "GROUND_TRUTH_JSON", "GROUND_TRUTH_COLUMNS", "planted_identifiers"]


# --------------------------------------------------------------------------
# The four hospitals

def _mr_patient(d: Delivery, site: str, kind: str = "MR"):
    patient = d.patient(site)
    study = d.study(patient, kind)
    pose = HeadPose.random(d.rng("pose", patient.folder))
    return patient, study, pose


def site_a(d: Delivery) -> None:
    """Siemens MR and CT; uncompressed."""
    _, study, pose = _mr_patient(d, "A")
    localizer(d, study, pose)
    t1 = mr_brain(d, study, pose, "t1")
    t2 = mr_brain(d, study, pose, "t2")
    mr_brain(d, study, pose, "flair")
    mr_key_image(d, study, pose)
    report_sr(d, study)
    series_of_t2 = _series_of(d, t2[0])
    empty_file(d, series_of_t2)
    text_file(d, series_of_t2)
    near_duplicate(d, t1[7], study, "jpeg")

    _, study, pose = _mr_patient(d, "A")
    t1 = mr_brain(d, study, pose, "t1", quality={4: "CONSTANT_IMAGE"})
    mr_missing_slices(d, study, pose, "t2")
    corrupt_charset(d, t1[-1])

    patient = d.patient("A")
    study = d.study(patient, "CT")
    ct = ct_head(d, study, quality={1: "CONSTANT_IMAGE"})
    ct_screenshot(d, study, ct[5])
    ct_raw_data(d, study)
    smiley_labelled_ct_head(d, study)
    near_duplicate(d, ct[7], d.study(patient, "CT"), "rescale")

    patient, study, pose = _mr_patient(d, "A")
    mr_brain(d, study, pose, "t1")
    mr_brain(d, study, pose, "t2", quality={9: "LOW_DYNAMIC_RANGE"})
    qa_pattern(d, study)
    mr_abdomen_slice(d, d.study(patient, "MR-ABD"))


def site_b(d: Delivery) -> None:
    """GE MR and CT; uncompressed, one deflated object."""
    _, study, pose = _mr_patient(d, "B")
    localizer(d, study, pose)
    t1 = mr_brain(d, study, pose, "t1")
    t2 = mr_brain(d, study, pose, "t2", quality={6: "NOISY", 7: "NOISY", 8: "NOISY"})
    corrupt_deflated(t1[-1])
    empty_file(d, _series_of(d, t2[0]))
    png_file(d, _series_of(d, t2[0]), t2[3].dataset.pixel_array, "head")

    _, study, pose = _mr_patient(d, "B")
    mr_mixed_orientation(d, study, pose, "t1ax")
    t2 = mr_brain(d, study, pose, "t2")
    truncate_header(t2[-1])

    patient = d.patient("B")
    study = d.study(patient, "CT")
    ct_head_irregular_spacing(d, study)
    dose_sr(d, study)

    patient = d.patient("B")
    study = d.study(patient, "CT")
    ct = ct_head(d, study)
    resend_series(d, study, ct)

    patient, study, pose = _mr_patient(d, "B")
    mr_brain(d, study, pose, "t1")
    t2 = mr_brain(d, study, pose, "t2")
    chest_labelled_head_mr(d, study)
    cookie_labelled_head_mr(d, study)
    nm_bone_scan(d, d.study(patient, "NM"))
    near_duplicate(d, t2[8], d.study(patient, "MR"), "noise")


def site_c(d: Delivery) -> None:
    """Philips MR and CT stored compressed (JPEG 2000 lossless; the scout and one
    series RLE lossless); Latin-1 character set."""
    _, study, pose = _mr_patient(d, "C")
    localizer(d, study, pose, encoding="rle")
    mr_brain(d, study, pose, "t1", quality={5: "BLURRY", 6: "BLURRY", 7: "BLURRY"}, encoding="rle")
    t2 = mr_brain(d, study, pose, "t2", encoding="j2k")
    cookie_photo(d, study, "image1.dcm", SITE["C"].scanners["MR"])
    empty_file(d, _series_of(d, t2[0]))
    random_file(d, _series_of(d, t2[0]))

    _, study, pose = _mr_patient(d, "C")
    t1 = mr_brain(d, study, pose, "t1", encoding="j2k")
    mr_too_few_slices(d, study, pose, "flair", encoding="j2k")
    enhanced_mr(d, study)
    t2 = mr_brain(d, study, pose, "t2", encoding="j2k")
    corrupt_nested_charset(d, t2[-1])
    near_duplicate(d, t1[6], study, "crop")

    patient = d.patient("C")
    study = d.study(patient, "CT")
    chest = ct_chest(d, study, quality={3: "LOW_DYNAMIC_RANGE", 8: "LOW_DYNAMIC_RANGE"}, encoding="j2k")
    truncate_pixels(chest[-1], 0.5)
    enhanced_ct_abdomen(d, d.study(patient, "CT-ABD"))

    _, study, pose = _mr_patient(d, "C")
    t1 = mr_brain(d, study, pose, "t1", encoding="j2k")
    mr_brain(d, study, pose, "t2", quality={10: "SATURATED"}, encoding="j2k")
    corrupt_charset(d, t1[-1])


def site_d(d: Delivery) -> None:
    """Fujifilm CR, Carestream DX, GE ultrasound; a community hospital's PACS
    with duplicate exports and reused UIDs."""
    patient = d.patient("D")
    study = d.study(patient, "CR")
    chest = chest_cr_original_j2k(d, study)
    tibia = radiograph(d, study, "tibia", "CR")
    byte_copy(d, chest, "se_901")
    reexport(d, tibia, d.study(patient, "CR-LEG"))

    patient = d.patient("D")
    study = d.study(patient, "DX")
    dx = radiograph(d, study, "chest", "DX")
    reuse_sop_uid(d, radiograph(d, d.study(patient, "CR-LEG"), "tibia", "CR"), chest)
    tibia_labelled_skull(d, study)
    byte_copy(d, dx, "se_901")
    zip_file(d, _series_of(d, dx))

    patient = d.patient("D")
    study = d.study(patient, "CR")
    radiograph(d, study, "chest", "CR", defect="SATURATED")
    radiograph(d, study, "chest", "DX", burned_in=["PORTABLE AP", "ERECT  14:05"],
               reasons=("BURNED_IN_ANNOTATION",), description="CHEST AP PORTABLE")
    us_study = d.study(patient, "US")
    ultrasound_still(d, us_study)
    ultrasound_cine(d, us_study)
    cat_radiograph(d, study)
    truncate_pixels(radiograph(d, d.study(patient, "CR-LEG"), "tibia", "CR"), 0.6)

    patient = d.patient("D")
    study = d.study(patient, "CR")
    good_chest = radiograph(d, study, "chest", "CR")
    donor = radiograph(d, study, "chest", "DX")
    leg = d.study(patient, "CR-LEG")
    radiograph(d, leg, "tibia", "CR", defect="SATURATED")
    radiograph(d, leg, "tibia", "CR", defect="CONSTANT_IMAGE", note="blank exposure")
    truncate_header(radiograph(d, leg, "tibia", "CR"))
    byte_copy(d, good_chest, "se_901")
    reuse_sop_uid(d, radiograph(d, leg, "tibia", "DX"), donor)
    near_duplicate(d, donor, d.study(patient, "DX"), "resize")


def _series_of(d: Delivery, item: Item) -> dcm.Series:
    return d.series_by_uid[item.series_uid]


SITE_PLANS = (site_a, site_b, site_c, site_d)


# --------------------------------------------------------------------------
# Building, checking and writing

def replicas(seed: int = 7, scale: int = 1) -> Iterator[tuple[Delivery, list[Item]]]:
    """Build the delivery one replica (the four hospitals' rosters) at a time.

    Yields the Delivery and the new replica's Items; their ground-truth rows are
    already in `Delivery.rows`. A caller that writes the Items may drop them
    (`delivery.items.clear()`), so memory stays at one replica at any scale.
    """
    if scale < 1:
        raise ValueError("scale must be >= 1")
    delivery = Delivery(seed, scale)
    for _ in range(scale):
        start = len(delivery.items)
        for plan in SITE_PLANS:
            plan(delivery)
        new = delivery.items[start:]
        _check(new)
        for item in new:
            item.dataset = None          # only needed while the replica is built
        delivery.rows.extend(item.row() for item in new)
        yield delivery, new


def build_delivery(seed: int = 7, scale: int = 1) -> Delivery:
    """The whole delivery in memory: Items (with the intact originals of broken
    objects) and ground-truth rows."""
    delivery = None
    for delivery, _ in replicas(seed, scale):
        pass
    return delivery


def _check(items: list[Item]) -> None:
    """Labels that follow from conventions, checked: unique paths, duplicates after
    their originals, UNEXPECTED_MODALITY exactly on images of unexpected modalities."""
    paths = [i.path for i in items]
    if len(paths) != len(set(paths)):
        raise AssertionError("two objects share a path")
    expected = set(EXPECTATIONS["modalities"])
    for item in items:
        if item.duplicate_of and not item.duplicate_of < item.path:
            raise AssertionError(f"{item.path}: a duplicate must sort after {item.duplicate_of}")
        image = not item.ingest_error and "NO_PIXEL_DATA" not in item.reasons
        if image and (item.modality not in expected) != ("UNEXPECTED_MODALITY" in item.reasons):
            raise AssertionError(f"{item.path}: UNEXPECTED_MODALITY label disagrees with {expected}")


def _target(out: str, storage_options: dict | None):
    """(fsspec filesystem or None for local, root path)."""
    if "://" not in out or out.startswith("file://"):
        return None, out[len("file://"):] if out.startswith("file://") else out
    from fsspec.core import url_to_fs

    options = dict(storage_options or {})
    if out.startswith(("s3://", "s3a://")):
        endpoint = options.pop("endpoint_url", None)
        if endpoint:
            options["client_kwargs"] = {**options.get("client_kwargs", {}), "endpoint_url": endpoint}
        out = "s3://" + out.split("://", 1)[1]
    fs, root = url_to_fs(out, **options)
    return fs, root.rstrip("/")


def write_files(out: str, files: dict[str, bytes], storage_options: dict | None = None) -> None:
    """Write {relative path: bytes} under `out` (local folder, file:// or any fsspec URI)."""
    fs, root = _target(out, storage_options)
    if fs is None:
        for rel, data in files.items():
            path = os.path.join(root, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
        return
    fs.pipe({f"{root}/{rel}": data for rel, data in files.items()})


def ground_truth_files(d: Delivery) -> dict[str, bytes]:
    return {GROUND_TRUTH_CSV: ground_truth_csv(d),
            GROUND_TRUTH_JSON: (json.dumps(ground_truth_json(d), indent=2) + "\n").encode()}


def delivery_files(d: Delivery) -> dict[str, bytes]:
    """{relative path: bytes} of every object of a built delivery plus the ground truth."""
    return {**{item.path: item.data for item in d.items}, **ground_truth_files(d)}


def generate_delivery(out: str, seed: int = 7, scale: int = 1,
                      storage_options: dict | None = None) -> dict:
    """Write the demo delivery and its ground truth under `out`; return the summary.

    `out` is a local folder, a file:// URI or an fsspec URI such as
    s3://bucket/prefix (with `storage_options`, e.g. {"endpoint_url": ...}).
    Existing files are overwritten, others left alone. Deterministic for a
    seed; `scale` multiplies patients and series. The summary holds the counts
    per category, ingest error and site, files, bytes and seconds taken.
    """
    started = time.perf_counter()
    for d, items in replicas(seed, scale):
        write_files(out, {item.path: item.data for item in items}, storage_options)
        d.items.clear()
    write_files(out, ground_truth_files(d), storage_options)
    summary = summary_of(d)
    summary.pop("reasons")
    return {"out": out, **summary, "seconds": round(time.perf_counter() - started, 2)}
