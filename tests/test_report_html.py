"""The report's HTML rendering on small hand-made inputs (no Spark)."""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pandas as pd
from PIL import Image

from jobs import report_html as R

HOSTILE = '<script>alert("x")</script>'


def png(size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("L", (size, size), 128).save(out, format="PNG")
    return out.getvalue()


class Tags(HTMLParser):
    """Every start tag with its attributes, and whether any <script> appears."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def named(self, tag: str) -> list[dict]:
        return [attrs for name, attrs in self.tags if name == tag]


def full_report(site: str = "site-a") -> dict:
    categories = {"Modality": pd.DataFrame({"value": ["CT", "MR"], "count": [30, 12]}),
                  "Site": pd.DataFrame({"value": [site, "(2 other values)"], "count": [40, 2]})}
    histogram = pd.DataFrame({"lo": [0.5, 1.0, 1.5], "hi": [1.0, 1.5, 2.0], "count": [3, 0, 9]})
    by_site = pd.DataFrame({"site": [site, site, "b"], "decision": ["include", "exclude", "review"],
                            "count": [20, 5, 3]})
    reasons = pd.DataFrame({"reason": ["BLURRY", "LOCALIZER"], "site": [site, "b"], "count": [4, 2]})
    points = pd.DataFrame({"map_x": [0.0, 1.0, 2.0], "map_y": [1.0, 0.0, 2.0],
                           "cluster": ["cluster 0", "cluster 1", None], "decision": ["include", "exclude", None]})
    return {
        "title": "Triage report", "subtitle": "run r1",
        "overview": {"counts": {"instances": 42}, "categories": categories,
                     "distributions": {"Slice thickness": (histogram, "mm"),
                                       "Rows": (pd.DataFrame({"value": [256.0, 512.0], "count": [4, 38]}), "px")}},
        "decisions": {"by_decision": by_site.groupby("decision", as_index=False)["count"].sum(),
                      "by_site": by_site, "reasons_by_site": reasons,
                      "reason_totals": pd.DataFrame({"excludes": [4, 0]}, index=["BLURRY", "LOCALIZER"])},
        "map": {"points": points, "total": 3},
        "galleries": {"exclusions": {"BLURRY": {"total": 4, "items": [
                          {"png": png(), "caption": ["BLURRY", f"{site} · CT", "a/b.dcm"]},
                          {"png": None, "caption": ["BLURRY"]}]}},
                      "review": [{"png": png(), "caption": ["#1", "NEAR_DUPLICATE"]}]},
        "settings": {"output": "s3://bucket/out", "storage": {"options": {"key": "AKIA123", "secret": "s3cr3t"}}},
        "environ": {},
        "tables": {"instances": True, "inclusion": True, "clusters": True},
    }


def test_full_page_has_every_section_chart_and_image():
    page = R.render_page(full_report())
    tags = Tags(page)
    ids = {attrs.get("id") for _, attrs in tags.tags}
    assert {"overview", "decisions", "embedding-map", "galleries", "configuration"} <= ids
    assert len(tags.named("svg")) >= 6  # 3 bars, 1 histogram, 1 stacked, 2 scatter
    assert "512 px" in page
    assert len(tags.named("circle")) == 6  # 3 points in each of the two maps
    images = tags.named("img")
    assert len(images) == 2 and all(i["src"].startswith("data:image/png;base64,") for i in images)
    assert Image.open(io.BytesIO(base64.b64decode(images[0]["src"].split(",", 1)[1]))).size == (8, 8)
    assert "no image" in page  # the object without a thumbnail
    assert not tags.named("script") and not tags.named("link")
    assert not re.search(r'(src|href)="(https?:)?//', page), "nothing may be fetched"


def test_empty_inputs_render_notes_not_errors():
    empty = pd.DataFrame(columns=["value", "count"])
    assert "No values" in R.bar_chart(empty, label="value", title="Modality")
    assert "No values" in R.bar_chart(None, label="value")
    assert "No values" in R.histogram(pd.DataFrame(columns=["lo", "hi", "count"]), title="Rows")
    assert "No values" in R.stacked_bars(pd.DataFrame(columns=["site", "decision", "count"]),
                                         label="site", part="decision")
    assert "No values" in R.heat_table(pd.DataFrame(columns=["reason", "site", "count"]), "reason", "site")
    points = pd.DataFrame({"map_x": [None], "map_y": [None], "cluster": [None]})
    assert "No points" in R.scatter(points, "map_x", "map_y", "cluster")
    assert "Nothing here" in R.gallery([])
    page = R.render_page({"tables": {}})  # nothing at all yet
    for section in ("overview", "decisions", "embedding-map", "galleries"):
        assert re.search(rf'<section id="{section}">.*?class="missing"', page), section


def test_missing_tables_name_the_command_to_run():
    report = full_report()
    report["map"] = {"missing": ["clusters"]}
    report["galleries"]["review_missing"] = ["review_queue"]
    page = R.render_page(report)
    section = re.search(r'<section id="embedding-map">(.*?)</section>', page).group(1)
    assert "clusters" in section and "triage neighbors" in section
    assert "triage curate" in page
    assert "Run" not in R.missing_note(["a_table_of_a_later_version"])


def test_single_value_histogram_and_constant_map():
    one = pd.DataFrame({"lo": [5.0], "hi": [6.0], "count": [10]})
    assert "<rect" in R.histogram(one)
    same = pd.DataFrame({"map_x": [1.0, 1.0], "map_y": [2.0, 2.0], "cluster": ["a", "a"]})
    assert R.scatter(same, "map_x", "map_y", "cluster").count("<circle") == 2


def test_hostile_strings_are_escaped_everywhere():
    report = full_report(site=HOSTILE)
    report["galleries"]["exclusions"][HOSTILE] = {"total": 1, "items": [{"png": png(), "caption": [HOSTILE]}]}
    report["map"]["points"]["cluster"] = [HOSTILE, "b", "c"]
    report["settings"]["run_id"] = HOSTILE
    page = R.render_page(report)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    assert not Tags(page).named("script")


def test_secrets_are_redacted():
    settings = {
        "output": "s3://bucket/out",
        "storage": {"options": {"key": "AKIAEXAMPLE", "secret": "wJalrXUtnFEMI", "token": "tok",
                                "client_kwargs": {"endpoint_url": "http://user:hunter2@minio:9000",
                                                  "aws_secret_access_key": "nested-secret"},
                                "anon": False}},
        "privacy": {"secret_env": "TRIAGE_HMAC_SECRET", "hash_keywords": ["PatientID"]},
        "mlflow": {"tracking_uri": "https://mlflow.example/?x=from-env-0123456789"},
    }
    environ = {"TRIAGE_HMAC_SECRET": "from-env-0123456789", "HOME": "/root", "SHORT_TOKEN": "ab"}
    clean = R.redact(settings, environ)
    options = clean["storage"]["options"]
    assert options["key"] == options["secret"] == options["token"] == R.REDACTED
    assert options["client_kwargs"]["aws_secret_access_key"] == R.REDACTED
    assert options["client_kwargs"]["endpoint_url"] == "http://***@minio:9000"
    assert options["anon"] is False
    assert clean["privacy"]["hash_keywords"] == ["PatientID"], "a list of DICOM keywords is no secret"
    assert clean["mlflow"]["tracking_uri"] == "https://mlflow.example/?x=***"
    block = R.settings_block(settings, environ)
    for secret in ("AKIAEXAMPLE", "wJalrXUtnFEMI", "hunter2", "nested-secret", "from-env-0123456789"):
        assert secret not in block
    assert "TRIAGE_HMAC_SECRET" in block  # the variable's name is shown, not its value
    assert settings["storage"]["options"]["key"] == "AKIAEXAMPLE", "the input is not changed"
