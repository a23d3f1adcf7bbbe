"""`triage annotate import`: parsing and per-row checks (pure), the checks
against the tables (Spark), and the command on the demo pipeline with a
folder of CSV, JSON and COCO files."""
from __future__ import annotations

import datetime
import json

import pytest

from dicom_triage.udfs.labels import (BAD_BOX, MISSING_FIELD, UNKNOWN_INSTANCE, UNKNOWN_LABEL, UnreadableLabels,
                         box_outside, check_labels, parse_box, parse_bytes)

SECRET = "demo-pipeline-test-secret-0123456789"

CSV = b"""annotator,instance,label,x,y,width,height,box_label
ana,a.dcm,head,,,,,
ana,b.dcm,head,10,10,20,20,lesion
ana,b.dcm,head,50,50,10,10,lesion
ana,c.dcm,head,1,2,,4,
,d.dcm,head,,,,,
ana,e.dcm,,,,,,
ben,f.dcm,chest,1,2,-3,4,
ben,g.dcm,chest,x,2,3,4,
"""


def _by_row(records):
    return {r["source_row"]: r for r in records}


def test_csv_rows_become_annotations_with_boxes_merged():
    records = _by_row(parse_bytes(CSV, "labels.csv"))
    assert set(records) == {"2", "3", "5", "6", "7", "8", "9"}      # line 4 is a second box of line 3
    assert records["2"]["boxes"] is None and records["2"]["label"] == "head" and records["2"]["error"] is None
    assert [b["x"] for b in records["3"]["boxes"]] == [10.0, 50.0]
    assert records["3"]["boxes"][0] == {"x": 10.0, "y": 10.0, "width": 20.0, "height": 20.0, "label": "lesion"}
    assert records["5"]["error"] == BAD_BOX and "x, y, width and height" in records["5"]["detail"]
    assert records["6"]["error"] == MISSING_FIELD and "annotator" in records["6"]["detail"]
    assert records["7"]["error"] == MISSING_FIELD and "label" in records["7"]["detail"]
    assert records["8"]["error"] == BAD_BOX and "> 0" in records["8"]["detail"]
    assert records["9"]["error"] == BAD_BOX and "numbers" in records["9"]["detail"]
    assert [r["seq"] for r in parse_bytes(CSV, "labels.csv")] == sorted(r["seq"] for r in records.values())


def test_one_bad_box_rejects_the_whole_annotation():
    """Boxes are one annotation: keeping the good ones of a set with a bad one
    would skew IoU and size bias."""
    rows = b"""annotator,instance,label,x,y,width,height
ana,b.dcm,head,10,10,20,20
ana,b.dcm,head,1,2,-3,4
ana,b.dcm,head,50,50,10,10
ben,b.dcm,head,10,10,20,20
"""
    records = parse_bytes(rows, "labels.csv")
    assert [(r["annotator"], r["error"]) for r in records] == [("ana", BAD_BOX), ("ana", BAD_BOX), ("ben", None)]
    assert "another box" in records[0]["detail"]


def test_json_records_with_list_and_object_boxes():
    data = [{"annotator": "ana", "path": "a.dcm", "label": "head", "boxes": [[1, 2, 3, 4, "x"],
                                                                               {"x": 5, "y": 6, "w": 7, "h": 8}]},
            {"annotator": "ben", "sop_instance_uid": "1.2.3", "boxes": []},
            {"annotator": "ben", "instance": "a.dcm", "label": "head", "boxes": [[1, 2, 3]]},
            "not a record"]
    records = parse_bytes(json.dumps(data).encode(), "labels.json")
    assert records[0]["error"] is None and records[0]["instance"] == "a.dcm"
    assert [(b["x"], b["width"], b["label"]) for b in records[0]["boxes"]] == [(1, 3, "x"), (5, 7, None)]
    assert records[1]["error"] is None and records[1]["boxes"] == [] and records[1]["instance"] == "1.2.3"
    assert records[2]["error"] == BAD_BOX and records[3]["error"] == MISSING_FIELD


def test_coco_annotator_from_contributor_or_annotation():
    coco = {"info": {"contributor": "chen"},
            "images": [{"id": 1, "file_name": "a.dcm"}, {"id": 2, "file_name": "b.dcm"},
                       {"id": 3, "file_name": "c.dcm", "sop_instance_uid": "1.2.3"}],
            "categories": [{"id": 1, "name": "lesion"}, {"id": 2, "name": "head"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
                            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [20, 20, 5, 5]},
                            {"id": 12, "image_id": 1, "category_id": 2},                  # image-level label
                            {"id": 13, "image_id": 3, "category_id": 1, "bbox": [1, 1, 10, 10],
                             "annotator": "dan"},
                            {"id": 14, "image_id": 9, "category_id": 1, "bbox": [1, 1, 1, 1]},
                            {"id": 15, "image_id": 3, "category_id": 7, "bbox": [1, 1, 1, 1]},
                            {"id": 16, "image_id": 2, "category_id": 1, "bbox": [1, 1, 0, 1],
                             "annotator": "eve"}]}
    records = parse_bytes(json.dumps(coco).encode(), "coco.json")
    by = {(r["annotator"], r["instance"]): r for r in records}
    a = by[("chen", "a.dcm")]
    assert a["error"] is None and a["label"] == "head" and a["source_row"] == "annotation 10"
    assert [(b["x"], b["label"]) for b in a["boxes"]] == [(1, "lesion"), (20, "lesion")]
    assert by[("dan", "1.2.3")]["error"] is None and len(by[("dan", "1.2.3")]["boxes"]) == 1
    assert by[("chen", "b.dcm")]["boxes"] == [] and by[("chen", "b.dcm")]["error"] is None  # nothing to box
    assert by[("chen", "1.2.3")]["error"] == UNKNOWN_LABEL                       # category 7
    assert by[("chen", "image_id 9")]["error"] == UNKNOWN_INSTANCE
    assert by[("eve", "b.dcm")]["error"] == BAD_BOX
    without = dict(coco, info={})
    records = parse_bytes(json.dumps(without).encode(), "coco.json")
    # image 9 does not exist (UNKNOWN_INSTANCE); the rest have no annotator
    assert {r["error"] for r in records if r["annotator"] is None} == {MISSING_FIELD, UNKNOWN_INSTANCE}
    assert not any(r["instance"] == "b.dcm" and r["annotator"] is None and r["error"] is None for r in records)


def test_label_checks_nominal_and_ordinal():
    def rec(label):
        return {"label": label, "error": None, "detail": None, "grade": None, "boxes": None}
    nominal = check_labels([rec("head"), rec("knee"), rec("3")], "nominal", ["head", "chest", 3])
    assert [r["error"] for r in nominal] == [None, UNKNOWN_LABEL, None] and nominal[2]["grade"] == 3.0
    anything = check_labels([rec("whatever")], "nominal", [])
    assert anything[0]["error"] is None and anything[0]["grade"] is None
    ordinal = check_labels([rec("2"), rec("2.0"), rec("severe"), rec("7")], "ordinal", [0, 1, 2, 3, 4])
    assert [r["error"] for r in ordinal] == [None, None, UNKNOWN_LABEL, UNKNOWN_LABEL]
    assert ordinal[1]["label"] == "2" and ordinal[1]["grade"] == 2.0
    assert check_labels([rec("2.5")], "ordinal", [])[0]["grade"] == 2.5


def test_boxes_and_unreadable_input():
    assert parse_box([0, 0, 1, 1])[1] is None
    assert parse_box([0, 0, 0, 1])[1] and parse_box([0, 0, True, 1])[1] and parse_box("1,2,3,4")[1]
    assert parse_box([0, 0, float("nan"), 1])[1]
    assert box_outside({"x": 0, "y": 0, "width": 128, "height": 128}, 128, 128) is None
    assert "outside" in box_outside({"x": 1, "y": 0, "width": 128, "height": 10}, 128, 128)
    assert "outside" in box_outside({"x": -1, "y": 0, "width": 2, "height": 2}, 128, 128)
    with pytest.raises(UnreadableLabels):
        parse_bytes(b"{not json", "labels.json")
    with pytest.raises(UnreadableLabels):
        parse_bytes(b"a,b", "labels.txt")


def test_missing_or_unreadable_labels_name_the_setting(tmp_path):
    from types import SimpleNamespace
    from dicom_triage.jobs.annotate_import import read_records
    from dicom_triage.jobs.config import ConfigError
    ctx = SimpleNamespace(storage_options={}, store=None)
    (tmp_path / "broken.json").write_text("[{")
    (tmp_path / "empty").mkdir()
    for location in (tmp_path / "missing.csv", tmp_path / "broken.json", tmp_path / "empty"):
        with pytest.raises(ConfigError, match="annotate.labels"):
            read_records(ctx, str(location))


def test_import_command_on_the_demo(full_pipeline, tmp_path, monkeypatch, capsys):
    from dicom_triage.jobs.cli import main as triage
    monkeypatch.setenv("TRIAGE_HMAC_SECRET", SECRET)
    store = full_pipeline.store
    inst = store.read("instances").select("path", "relative_path", "sop_instance_uid", "rows", "columns") \
        .filter("rows IS NOT NULL").orderBy("path").limit(6).toPandas()
    p, rel, uid = inst.path, inst.relative_path, inst.sop_instance_uid
    cols, rows = int(inst["columns"][1]), int(inst["rows"][1])
    cols2, rows2 = int(inst["columns"][2]), int(inst["rows"][2])
    folder = tmp_path / "returned"
    folder.mkdir()
    (folder / "ana.csv").write_text(
        "annotator,instance,label,x,y,width,height\n"
        f"ana,{rel[0]},head,,,,\n"                              # good, by relative path
        f"ana,{uid[1]},head,1,1,{cols - 1},{rows - 1}\n"        # good, by UID, box touches the border
        f"ana,{rel[2]},head,{cols2 - 5},0,10,10\n"              # BOX_OUTSIDE_IMAGE
        f"ana,{rel[0]},chest,,,,\n"                             # DUPLICATE
        "ana,no/such/file.dcm,head,,,,\n"                       # UNKNOWN_INSTANCE
        f"ana,{rel[3]},banana,,,,\n"                            # UNKNOWN_LABEL
        f",{rel[3]},head,,,,\n"                                 # MISSING_FIELD
        f"ana,{rel[4]},head,1,1,0,5\n")                         # BAD_BOX
    (folder / "ben.json").write_text(json.dumps([{"annotator": "ben", "path": p[0], "label": "head",
                                                  "boxes": [[1, 1, 5, 5]]}]))
    (folder / "chen.json").write_text(json.dumps({
        "info": {"contributor": "chen"}, "categories": [{"id": 1, "name": "lesion"}],
        "images": [{"id": 1, "file_name": rel[0]}, {"id": 2, "file_name": rel[5]}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4]}]}))
    # an assignment: its batch joins ana's label of p[0]; the other labels stay unassigned
    from dicom_triage.schemas.annotation import ASSIGNMENTS
    assignment = store.spark.createDataFrame(
        [(4, "ana", p[0], uid[0], False, "site=x", 0, "t", datetime.datetime(2026, 1, 1))], ASSIGNMENTS)
    store.write(assignment, "annotation_assignments", mode="overwrite")
    assert triage(["annotate", "import", str(folder), *full_pipeline.args,
                   "--set", "annotate.allowed_labels=[head,chest]"]) == 0
    assert "labels accepted" in capsys.readouterr().out
    labels = store.read("labels").toPandas()
    errors = store.read("label_errors").toPandas()
    assert sorted(errors.error) == sorted(["BOX_OUTSIDE_IMAGE", "DUPLICATE", "UNKNOWN_INSTANCE", "UNKNOWN_LABEL",
                                           "MISSING_FIELD", "BAD_BOX"])
    assert errors.set_index("error").source_row.to_dict()["DUPLICATE"] == "5"
    got = {(r.annotator, r.path): r for r in labels.itertuples()}
    assert set(got) == {("ana", p[0]), ("ana", p[1]), ("ben", p[0]), ("chen", p[0]), ("chen", p[5])}
    assert got[("ana", p[1])].sop_instance_uid == uid[1] and len(got[("ana", p[1])].boxes) == 1
    assert got[("ana", p[0])].batch_id == 4 and labels.batch_id.isna().sum() == 4
    detail = errors.set_index("error").detail.to_dict()
    assert f"{cols2} x {rows2}" in detail["BOX_OUTSIDE_IMAGE"] and "row 2 " in detail["DUPLICATE"]
    assert got[("chen", p[0])].boxes[0]["label"] == "lesion" and len(got[("chen", p[5])].boxes) == 0
    assert got[("ana", p[0])].boxes is None and labels.source.str.endswith(("ana.csv", "ben.json", "chen.json")).all()

