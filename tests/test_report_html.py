"""The report's HTML rendering on small hand-made inputs (no Spark)."""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pandas as pd
from PIL import Image

from dicom_triage.jobs import report_html as R
from dicom_triage.jobs.redaction import REDACTED, redact

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


def hostile_settings() -> tuple[dict, dict]:
    """Settings with credentials at every depth, and the environment beside them."""
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
    return settings, environ


SECRETS = ("AKIAEXAMPLE", "wJalrXUtnFEMI", "hunter2", "nested-secret", "from-env-0123456789")


def test_secrets_are_redacted():
    settings, environ = hostile_settings()
    clean = redact(settings, environ)
    options = clean["storage"]["options"]
    assert options["key"] == options["secret"] == options["token"] == REDACTED
    assert options["client_kwargs"]["aws_secret_access_key"] == REDACTED
    assert options["client_kwargs"]["endpoint_url"] == "http://***@minio:9000"
    assert options["anon"] is False
    assert clean["privacy"]["hash_keywords"] == ["PatientID"], "a list of DICOM keywords is no secret"
    assert clean["mlflow"]["tracking_uri"] == "https://mlflow.example/?x=***"
    block = R.settings_block(settings, environ)
    for secret in SECRETS:
        assert secret not in block
    assert "TRIAGE_HMAC_SECRET" in block  # the variable's name is shown, not its value
    assert settings["storage"]["options"]["key"] == "AKIAEXAMPLE", "the input is not changed"


def test_mlflow_params_carry_no_credential_at_any_depth(monkeypatch):
    from dicom_triage.jobs.config import Settings
    from dicom_triage.jobs.tracking import safe_params

    settings, environ = hostile_settings()
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    params = safe_params(Settings(settings))
    for secret in SECRETS:
        assert not [key for key, value in params.items() if secret in value], secret
    assert params["privacy.hash_keywords"] == "['PatientID']"
    assert params["privacy.secret_env"] == "TRIAGE_HMAC_SECRET"


def agreement_data(annotator: str = "ana") -> dict:
    batches = pd.DataFrame({"batch_id": [0, 1, 2], "n_items": [20, 20, 3], "n_annotators": [3, 3, 3],
                            "fleiss_kappa": [0.8, 0.6, None], "krippendorff_alpha": [0.81, 0.62, None],
                            "mean_pairwise_kappa": [0.79, 0.58, None], "mean_box_iou": [0.9, 0.85, None],
                            "tie_items": [1, 2, 0]})
    drift = pd.DataFrame({"annotator": [annotator] * 3 + ["ben"] * 3, "batch_id": [0, 1, 2] * 2,
                          "n_items": [20, 20, 3] * 2, "disagreement": [0.1, 0.4, None, 0.05, 0.1, None],
                          "box_size_bias": [-0.3, -0.28, None, 0.01, 0.0, None], "flagged": [True] * 3 + [False] * 3})
    latest = pd.DataFrame({"annotator": [annotator, "ben"], "batch_id": [1, 1], "disagreement": [0.4, 0.1],
                           "box_size_bias": [-0.28, 0.0], "flagged": [True, False]})
    flagged = [{"annotator": annotator, "batch_id": 1,
                "reasons": ["DISAGREEMENT 0.40 > 0.25 in batch 1", "BOX_SIZE_BIAS -0.28 beyond ±0.15 in batch 1"],
                "worst_items": [{"path": "file:///d/site/a.dcm", "label": annotator, "others_label": None,
                                 "box_agreement": 0.4, "misalignment": 1.6}]}]
    return {"batches": batches, "drift": drift, "latest": latest, "flagged": flagged, "disagreement_max": 0.25,
            "box_size_bias_max": 0.15, "min_items": 5}


def test_agreement_section_only_with_its_tables():
    report = full_report()
    assert 'id="agreement"' not in R.render_page(report)
    report["agreement"] = agreement_data()
    page = R.render_page(report)
    section = re.search(r'<section id="agreement">(.*?)</section>', page).group(1)
    assert page.index('id="galleries"') < page.index('id="agreement"') < page.index('id="configuration"')
    assert '<a href="#agreement">' in page
    assert section.count("<svg") == 5  # agreement, disagreement, bias per batch, bias bars, box IoU
    assert section.count('class="fence"') >= 1 + 2 + 2
    assert "DISAGREEMENT 0.40 &gt; 0.25" in section and "site/a.dcm" in section and "(tie)" in section
    assert "Flagged annotators" in section


def test_agreement_section_escapes_and_handles_empty_inputs():
    report = full_report()
    report["agreement"] = agreement_data(annotator=HOSTILE)
    page = R.render_page(report)
    assert "<script" not in page.lower() and not Tags(page).named("script")
    empty = {"batches": pd.DataFrame(columns=["batch_id", "n_items", "fleiss_kappa", "krippendorff_alpha",
                                              "mean_pairwise_kappa", "mean_box_iou"]),
             "drift": pd.DataFrame(columns=["annotator", "batch_id", "disagreement", "box_size_bias"]),
             "latest": pd.DataFrame(columns=["annotator", "box_size_bias"]), "flagged": [],
             "disagreement_max": 0.25, "box_size_bias_max": 0.15}
    section = R.agreement_section(empty)
    assert "No values" in section and "No annotator is flagged" in section
    assert R.line_chart(pd.DataFrame({"b": [1], "v": [0.5]}), "b", "v").count("<circle") == 1
