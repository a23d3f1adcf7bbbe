"""Returned annotations: parse CSV, JSON, COCO JSON and Parquet into one
record per (annotator, instance) annotation, and check what can be checked
without the tables (jobs/annotate_import.py adds the checks that need
`instances` and the duplicate check, as Spark joins).

A record is a dict with `source`, `source_row`, `seq` (input order), `annotator`,
`instance` (path, relative path or SOP instance UID as given), `label`,
`grade`, `boxes` (None: no boxes given; []: nothing to box; else dicts
x, y, width, height, label), and `error` / `detail` when it is rejected.

Formats:

* CSV / Parquet: columns `annotator`, `instance` (or `path`,
  `sop_instance_uid`, `file_name`), `label`, optional `x`, `y`, `width`, `height`
  (or `w`, `h`) and `box_label`, one row per box; rows of the same annotator
  and instance that each carry a box and the same label are one annotation.
  Parquet may instead hold a `boxes` column (list of [x, y, w, h] or structs).
* JSON: a list of records (or `{"annotations": [...]}`) with the same fields,
  `boxes` a list of [x, y, w, h] (optionally a fifth item, the box label) or
  of objects {x, y, width, height, label}.
* COCO JSON (an object with `images` and `annotations`): the instance is the
  image's `sop_instance_uid`, else its `path`, else its `file_name`; every
  annotation with a `bbox` is a box labelled with its category's name; an
  annotation without `bbox` gives the image-level label (classification).
  The annotator is the annotation's own `annotator` field, else the file's
  `info.contributor` (one file per annotator, COCO's own field for who made
  it). With `info.contributor`, images without any annotation are recorded as
  "nothing to box" (boxes []); without it they cannot be attributed and are
  skipped.

A bad box rejects that annotator's whole annotation of the instance (a
partial set of boxes would skew agreement).
"""
from __future__ import annotations

import io
import json
import math
from typing import Any, Iterable

import pandas as pd

UNKNOWN_INSTANCE = "UNKNOWN_INSTANCE"
UNKNOWN_LABEL = "UNKNOWN_LABEL"
BOX_OUTSIDE_IMAGE = "BOX_OUTSIDE_IMAGE"
BAD_BOX = "BAD_BOX"
MISSING_FIELD = "MISSING_FIELD"
DUPLICATE = "DUPLICATE"

FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
INSTANCE_FIELDS = ("instance", "path", "sop_instance_uid", "file_name")


class UnreadableLabels(ValueError):
    """The whole input cannot be parsed (not one bad row: those become error records)."""


def format_of(name: str) -> str | None:
    lower = name.lower()
    return next((kind for ext, kind in FORMATS.items() if lower.endswith(ext)), None)


def parse_bytes(data: bytes, name: str, source: str | None = None, first_seq: int = 0) -> list[dict]:
    """Records from one file's bytes; the format follows the name's extension."""
    kind = format_of(name)
    source = source or name
    try:
        if kind == "csv":
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True)
            return records_from_rows(frame, source, first_seq, first_line=2)
        if kind == "parquet":
            return records_from_rows(pd.read_parquet(io.BytesIO(data)), source, first_seq)
        if kind == "json":
            return records_from_json(json.loads(data.decode("utf-8-sig")), source, first_seq)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise UnreadableLabels(f"{name}: cannot parse as {kind}: {exc}") from None
    raise UnreadableLabels(f"{name}: unknown format (expected {', '.join(sorted(FORMATS))})")


# -- values -------------------------------------------------------------------

def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _text(value: Any) -> str | None:
    if _blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(value: Any) -> float | None:
    """A finite number, else None (booleans are not numbers)."""
    if isinstance(value, bool) or _blank(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_box(value: Any, label: Any = None) -> tuple[dict | None, str | None]:
    """(box, None) or (None, what is wrong). Accepts [x, y, w, h(, label)] or
    {x, y, width|w, height|h(, label)}."""
    if isinstance(value, dict):
        parts = [value.get("x"), value.get("y"), value.get("width", value.get("w")),
                 value.get("height", value.get("h"))]
        label = value.get("label", value.get("box_label", label))
    elif isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        parts = list(value.tolist() if hasattr(value, "tolist") else value)
        if len(parts) == 5:
            parts, label = parts[:4], parts[4]
        if len(parts) != 4:
            return None, f"a box needs 4 numbers [x, y, width, height], got {len(parts)} values"
    else:
        return None, f"a box must be [x, y, width, height] or an object, got {value!r}"
    numbers = [_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None, f"box values must be numbers, got {parts}"
    x, y, width, height = numbers
    if width <= 0 or height <= 0:
        return None, f"box width and height must be > 0, got width {width:g}, height {height:g}"
    return {"x": x, "y": y, "width": width, "height": height, "label": _text(label)}, None


def parse_boxes(value: Any) -> tuple[list[dict] | None, str | None]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    if isinstance(value, str):
        if not value.strip():
            return None, None
        try:
            value = json.loads(value)
        except ValueError:
            return None, f"boxes must be a JSON list, got {value[:80]!r}"
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return None, f"boxes must be a list, got {value!r}"
    boxes = []
    for item in value:
        box, problem = parse_box(item)
        if problem:
            return None, problem
        boxes.append(box)
    return boxes, None


def _record(source: str, row: Any, seq: int, annotator: Any, instance: Any, label: Any,
            boxes: list | None = None) -> dict:
    return {"source": source, "source_row": None if row is None else str(row), "seq": seq,
            "annotator": _text(annotator), "instance": _text(instance), "label": _text(label),
            "grade": None, "boxes": boxes, "error": None, "detail": None}


def _reject(record: dict, error: str, detail: str) -> dict:
    if record["error"] is None:
        record["error"], record["detail"] = error, detail
    return record


def _missing(record: dict) -> dict:
    for field in ("annotator", "instance"):
        if record[field] is None:
            return _reject(record, MISSING_FIELD, f"no {field}")
    if record["label"] is None and record["boxes"] is None:
        return _reject(record, MISSING_FIELD, "no label and no boxes")
    return record


# -- tabular (CSV, Parquet, a table) -------------------------------------------

def _column(frame: pd.DataFrame, *names: str) -> str | None:
    return next((name for name in names if name in frame.columns), None)


def records_from_rows(frame: pd.DataFrame, source: str, first_seq: int = 0, first_line: int = 1) -> list[dict]:
    """One row per annotation, or per box (rows of one annotator and instance
    with a box each and the same label are merged). `source_row` is the line
    number for CSV (header = line 1), the row number otherwise."""
    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    instance_col = _column(frame, *INSTANCE_FIELDS)
    box_cols = [_column(frame, "x"), _column(frame, "y"), _column(frame, "width", "w"),
                _column(frame, "height", "h")]
    boxes_col, box_label_col = _column(frame, "boxes"), _column(frame, "box_label")
    records: list[dict] = []
    open_records: dict[tuple, dict] = {}   # (annotator, instance) -> its record that collects boxes
    bad_boxes: set[tuple] = set()          # (annotator, instance) with a bad box row
    for offset, row in enumerate(frame.to_dict("records")):
        line = first_line + offset
        record = _record(source, line, first_seq + offset, row.get("annotator"),
                         row.get(instance_col) if instance_col else None, row.get("label"))
        box_given = any(c is not None and not _blank(row.get(c)) for c in box_cols)
        if box_given:
            if any(c is None or _blank(row.get(c)) for c in box_cols):
                bad_boxes.add((record["annotator"], record["instance"]))
                records.append(_reject(record, BAD_BOX, "a box needs x, y, width and height"))
                continue
            box, problem = parse_box([row[c] for c in box_cols], row.get(box_label_col) if box_label_col else None)
            if problem:
                bad_boxes.add((record["annotator"], record["instance"]))
                records.append(_reject(record, BAD_BOX, problem))
                continue
            record["boxes"] = [box]
        elif boxes_col is not None:
            record["boxes"], problem = parse_boxes(row.get(boxes_col))
            if problem:
                records.append(_reject(record, BAD_BOX, problem))
                continue
        _missing(record)
        if record["error"]:
            records.append(record)
            continue
        key = (record["annotator"], record["instance"])
        earlier = open_records.get(key)
        if box_given and earlier is not None and earlier["label"] == record["label"]:
            earlier["boxes"].append(record["boxes"][0])  # another box of the same annotation
            continue
        if box_given and earlier is None:
            open_records[key] = record
        records.append(record)
    # a partial set of boxes would skew agreement: one bad box rejects the annotation
    for record in records:
        if record["error"] is None and (record["annotator"], record["instance"]) in bad_boxes:
            _reject(record, BAD_BOX, "another box of this annotation is bad")
    return records


# -- JSON ---------------------------------------------------------------------

def records_from_json(data: Any, source: str, first_seq: int = 0) -> list[dict]:
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return records_from_coco(data, source, first_seq)
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise ValueError("expected a list of annotation records, {\"annotations\": [...]} or a COCO file")
    records = []
    for index, item in enumerate(data):
        seq = first_seq + index
        if not isinstance(item, dict):
            records.append(_reject(_record(source, index, seq, None, None, None), MISSING_FIELD,
                                   f"record {index} is not an object"))
            continue
        instance = next((item[f] for f in INSTANCE_FIELDS if not _blank(item.get(f))), None)
        record = _record(source, index, seq, item.get("annotator"), instance, item.get("label"))
        record["boxes"], problem = parse_boxes(item.get("boxes"))
        if problem:
            _reject(record, BAD_BOX, problem)
        records.append(_missing(record))
    return records


def records_from_coco(data: dict, source: str, first_seq: int = 0) -> list[dict]:
    """One record per (annotator, image); see the module notes for the conventions."""
    images = {}
    for image in data.get("images") or []:
        if isinstance(image, dict) and "id" in image:
            images[image["id"]] = image
    categories = {c.get("id"): c.get("name") for c in data.get("categories") or [] if isinstance(c, dict)}
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    contributor = _text(info.get("contributor"))

    def instance_of(image: dict):
        return next((image[f] for f in ("sop_instance_uid", "path", "file_name") if not _blank(image.get(f))), None)

    records: list[dict] = []
    by_key: dict[tuple, dict] = {}
    seq = first_seq
    for index, ann in enumerate(data.get("annotations") or []):
        if not isinstance(ann, dict):
            records.append(_reject(_record(source, f"annotation #{index}", seq, None, None, None),
                                   MISSING_FIELD, "annotation is not an object"))
            seq += 1
            continue
        row = f"annotation {ann.get('id', '#' + str(index))}"
        annotator = _text(ann.get("annotator")) or contributor
        image = images.get(ann.get("image_id"))
        if image is None:
            record = _record(source, row, seq, annotator, None, None)
            seq += 1
            if ann.get("image_id") is None:
                records.append(_reject(record, MISSING_FIELD, "no image_id"))
            else:
                record["instance"] = f"image_id {ann.get('image_id')}"
                records.append(_reject(record, UNKNOWN_INSTANCE,
                                       f"image_id {ann.get('image_id')!r} is not among the file's images"))
            continue
        if annotator is None:
            records.append(_reject(_record(source, row, seq, None, instance_of(image), None), MISSING_FIELD,
                                   "no annotator (neither `annotator` on the annotation nor info.contributor)"))
            seq += 1
            continue
        key = (annotator, image["id"])
        record = by_key.get(key)
        if record is None:
            record = _record(source, row, seq, annotator, instance_of(image), None, boxes=[])
            seq += 1
            by_key[key] = record
            records.append(record)
        if record["error"]:
            continue
        category = ann.get("category_id")
        name = categories.get(category) if category is not None else None
        if category is not None and name is None:
            _reject(record, UNKNOWN_LABEL, f"{row}: category_id {category!r} is not among the categories")
            continue
        if ann.get("bbox") is None:           # image-level label (classification)
            if name is None:
                _reject(record, MISSING_FIELD, f"{row}: neither bbox nor category_id")
            elif record["label"] is not None and record["label"] != _text(name):
                _reject(record, DUPLICATE, f"{row}: a second image-level label {name!r} "
                                           f"(first {record['label']!r})")
            else:
                record["label"] = _text(name)
            continue
        box, problem = parse_box(ann["bbox"], name)
        if problem:
            _reject(record, BAD_BOX, f"{row}: {problem}")
            continue
        record["boxes"].append(box)
    if contributor is not None:
        for image_id, image in images.items():
            if (contributor, image_id) not in by_key:
                records.append(_record(source, f"image {image_id}", seq, contributor, instance_of(image), None,
                                       boxes=[]))
                seq += 1
    for record in records:
        _missing(record)
    return records


# -- label checks ---------------------------------------------------------------

def check_label(record: dict, label_kind: str = "nominal", allowed_labels: Iterable | None = None) -> dict:
    """Sets `grade` (the label as a number, when it is one) and rejects labels
    outside `allowed_labels` (when non-empty) and, for ordinal labels,
    non-numeric grades. Ordinal labels are written as numbers ("2", "2.5")."""
    if record["error"] is not None or record["label"] is None:
        return record
    label = record["label"]
    grade = _number(label)
    allowed = [a for a in (allowed_labels or []) if not _blank(a)]
    if label_kind == "ordinal":
        if grade is None:
            return _reject(record, UNKNOWN_LABEL, f"grade {label!r} is not a number (annotate.label_kind ordinal)")
        record["label"] = str(int(grade)) if grade.is_integer() else repr(grade)
        if allowed and grade not in {_number(a) for a in allowed}:
            return _reject(record, UNKNOWN_LABEL, f"grade {label!r} is not one of {list(allowed)} "
                                                  "(annotate.allowed_labels)")
    elif allowed and label not in {_text(a) for a in allowed}:
        return _reject(record, UNKNOWN_LABEL, f"label {label!r} is not one of {list(allowed)} "
                                              "(annotate.allowed_labels)")
    record["grade"] = grade
    return record


def check_labels(records: list[dict], label_kind: str = "nominal", allowed_labels: Iterable | None = None) -> list[dict]:
    allowed = list(allowed_labels or [])
    return [check_label(r, label_kind, allowed) for r in records]


def box_outside(box: dict, rows: float | None, columns: float | None) -> str | None:
    """What is wrong when `box` does not fit a `columns` x `rows` image (None
    when it fits or the size is unknown). Pixel coordinates: 0 <= x and
    x + width <= columns."""
    if rows is None or columns is None:
        return None
    if box["x"] < 0 or box["y"] < 0 or box["x"] + box["width"] > columns or box["y"] + box["height"] > rows:
        return (f"box [{box['x']:g}, {box['y']:g}, {box['width']:g}, {box['height']:g}] is outside the "
                f"{int(columns)} x {int(rows)} image")
    return None
