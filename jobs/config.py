"""Configuration: conf/default.yaml, then --conf FILE, then --set key=value.

Every setting must exist in the defaults (a typo is an error, not a silent
no-op) and keep the type of its default. Range rules for settings that have
them live in RULES. Any problem raises ConfigError naming the setting, before
Spark starts.
"""
from __future__ import annotations

import copy
import re
from importlib import resources
from typing import Any, Callable

import yaml

from dicom_triage.schemas.reasons import ALL_CODES, IO_ERROR, TIMEOUT


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


class Settings:
    """Read-only attribute access to a nested settings dict: `conf.ingest.header_block_bytes`."""

    def __init__(self, data: dict, prefix: str = ""):
        self._data = data
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(f"no setting {self._prefix}{name}") from None
        if isinstance(value, dict) and not _is_free_mapping(self._prefix + name):
            return Settings(value, f"{self._prefix}{name}.")
        return value

    def __getitem__(self, dotted: str) -> Any:
        value: Any = self._data
        for part in dotted.split("."):
            value = value[part]
        return value

    def to_dict(self) -> dict:
        return copy.deepcopy(self._data)

    def flat(self) -> dict[str, Any]:
        """`{"ingest.header_block_bytes": 65536, ...}`: for MLflow params and reports."""
        return dict(_flatten(self._data))

    def __getstate__(self):
        return {"_data": self._data, "_prefix": self._prefix}

    def __setstate__(self, state):
        self.__dict__.update(state)


# Mappings whose keys are free (not validated against the defaults).
FREE_MAPPINGS = ("spark.conf", "storage.options")


def _is_free_mapping(dotted: str) -> bool:
    return dotted in FREE_MAPPINGS


def _flatten(data: dict, prefix: str = ""):
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and not _is_free_mapping(dotted):
            yield from _flatten(value, dotted + ".")
        else:
            yield dotted, value


def _positive(value) -> str | None:
    return None if value > 0 else "must be > 0"


def _one_of(*choices) -> Callable[[Any], str | None]:
    def check(value):
        return None if value in choices else f"must be one of {', '.join(map(str, choices))}"
    return check


def _env_name(value) -> str | None:
    return None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value or "") else "must be an environment variable name"


RULES: dict[str, Callable[[Any], str | None]] = {
    "tables.backend": _one_of("auto", "delta-spark", "delta-rs"),
    "progress_seconds": lambda v: None if v >= 0 else "must be >= 0",
    "concurrency.stale_after_seconds": lambda v: None if v >= 10 else "must be >= 10",
    "ingest.header_first_block_bytes": lambda v: None if 256 <= v <= 64 * 2**20 else "must be between 256 and 67108864",
    "ingest.header_max_block_bytes": lambda v: None if 1024 <= v <= 64 * 2**20 else "must be between 1024 and 67108864",
    "ingest.site_from": _one_of("folder", "institution"),
    "ingest.max_header_bytes": _positive,
    "ingest.defer_size_bytes": _positive,
    "ingest.parse_timeout_seconds": _positive,
    "ingest.files_per_partition": _positive,
    "privacy.secret_env": _env_name,
    "pixels.files_per_partition": _positive,
    "pixels.max_frame_bytes": _positive,
    "pixels.max_decoded_bytes": _positive,
    "pixels.max_object_bytes": _positive,
    "embed.device": _one_of("auto", "cpu", "cuda"),
    "embed.frame": _one_of("middle", "first"),
    "embed.batch_size": _positive,
    "embed.arrow_batch_rows": _positive,
    "embed.files_per_partition": _positive,
    "embed.cpu_threads": lambda v: None if v >= 0 else "must be >= 0",
    "neighbors.k": lambda v: None if 1 <= v <= 1000 else "must be between 1 and 1000",
    "clusters.map": _one_of("auto", "pca", "umap"),
    "clusters.map_sample": lambda v: None if v >= 10 else "must be >= 10",
    "clusters.fit_sample": lambda v: None if v >= 10 else "must be >= 10",
    "clusters.umap_epochs": _positive,
    "neighbors.max_block": _positive,
    "neighbors.exact_below": lambda v: None if v >= 0 else "must be >= 0",
    "neighbors.outlier_min_group": lambda v: None if v >= 2 else "must be >= 2",
    "neighbors.near_duplicate_max_distance": lambda v: None if 0 <= v <= 2 else "must be between 0 and 2",
    "anatomy.min_labels_per_class": lambda v: None if v >= 2 else "must be >= 2",
    "anatomy.holdout_fraction": lambda v: None if 0 < v < 1 else "must be between 0 and 1",
    "anatomy.min_confidence": lambda v: None if 0 <= v <= 1 else "must be between 0 and 1",
    "anatomy.content.k": lambda v: None if 1 <= v <= 100 else "must be between 1 and 100",
    "anatomy.content.reference_size": lambda v: None if v >= 10 else "must be >= 10",
    "anatomy.content.min_reference": _positive,
    "anatomy.content.min_group_size": _positive,
    "anatomy.content.iqr_fence": lambda v: None if v >= 0 else "must be >= 0",
    "anatomy.content.min_distance": lambda v: None if 0 <= v <= 2 else "must be between 0 and 2",
    "quality.burned_in_text_min_score": lambda v: None if 0 <= v < 1 else "must be >= 0 and < 1",
    "curate.series_exclude_fraction": lambda v: None if 0 < v <= 1 else "must be > 0 and <= 1",
    "review_queue.size": lambda v: None if v >= 0 else "must be >= 0",
    "review_queue.weights.uncertainty": lambda v: None if v >= 0 else "must be >= 0",
    "review_queue.weights.outlier": lambda v: None if v >= 0 else "must be >= 0",
    "review_queue.weights.severity": lambda v: None if v >= 0 else "must be >= 0",
    "review_queue.uncertain_include_min": lambda v: None if 0 <= v <= 1 else "must be between 0 and 1",
    "review_queue.max_cluster_share": lambda v: None if 0 < v <= 1 else "must be > 0 and <= 1",
    "evaluate.max_cases_per_code": lambda v: None if v >= 0 else "must be >= 0",
    "annotate.batch_size": _positive,
    "annotate.overlap_fraction": lambda v: None if 0 <= v <= 1 else "must be between 0 and 1",
    "annotate.label_kind": _one_of("nominal", "ordinal"),
    "annotate.kappa_weights": _one_of("none", "linear", "quadratic"),
    "annotate.box_match_iou": lambda v: None if 0 < v <= 1 else "must be > 0 and <= 1",
    "annotate.drift.disagreement_max": lambda v: None if 0 <= v <= 1 else "must be between 0 and 1",
    "annotate.drift.box_size_bias_max": lambda v: None if v >= 0 else "must be >= 0",
    "annotate.drift.min_items": _positive,
    "annotate.drift.worst_items": lambda v: None if v >= 0 else "must be >= 0",
    "annotate.next.size": _positive,
    "annotate.next.uncertainty": _one_of("least_confidence", "margin", "entropy"),
    "annotate.next.candidate_pool": _positive,
    "annotate.next.accept_confidence": lambda v: None if 0 < v <= 1 else "must be > 0 and <= 1",
}
# What a reason does to an object's decision.
RULES.update({f"curate.severity.{code}": _one_of("exclude", "review", "annotate")
              for code in sorted(ALL_CODES | {IO_ERROR, TIMEOUT})})


def default_settings() -> dict:
    text = resources.files("dicom_triage.conf").joinpath("default.yaml").read_text()
    return yaml.safe_load(text)


def load_settings(conf_files: list[str] | None = None, overrides: list[str] | None = None,
                  read_text: Callable[[str], str] | None = None) -> Settings:
    """Merge defaults, configuration files and `key=value` overrides, then validate."""
    defaults = default_settings()
    merged = copy.deepcopy(defaults)
    for conf_file in conf_files or []:
        text = (read_text or _read_local)(conf_file)
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"--conf {conf_file}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--conf {conf_file}: must hold a mapping of settings")
        _merge(merged, data, defaults, source=conf_file)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set ingest.files_per_partition=500")
        _merge(merged, _nest(key.strip(), yaml.safe_load(raw) if raw.strip() else None), defaults,
               source="--set")
    validate(merged, defaults)
    return Settings(merged)


def _read_local(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(f"--conf {path}: cannot read: {exc.strerror or exc}") from None


def _nest(dotted: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _did_you_mean(key: str, defaults: Any, prefix: str) -> str:
    """'; did you mean 'neighbors.k'?' for the closest known setting at that level."""
    import difflib
    known = list(defaults) if isinstance(defaults, dict) else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


def _merge(target: dict, update: dict, defaults: dict, source: str, prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if not isinstance(defaults, dict) or key not in defaults:
            raise ConfigError(f"unknown setting '{dotted}' (from {source}){_did_you_mean(key, defaults, prefix)}")
        if isinstance(defaults[key], dict) and not _is_free_mapping(dotted):
            if not isinstance(value, dict):
                raise ConfigError(f"setting '{dotted}' must be a mapping (from {source})")
            _merge(target[key], value, defaults[key], source, dotted + ".")
        else:
            target[key] = value


def validate(settings: dict, defaults: dict, prefix: str = "") -> None:
    for key, default in defaults.items():
        dotted = f"{prefix}{key}"
        value = settings.get(key)
        if isinstance(default, dict) and not _is_free_mapping(dotted):
            validate(value, default, dotted + ".")
            continue
        if default is not None and value is not None and not _same_kind(value, default):
            raise ConfigError(
                f"setting '{dotted}' must be {_kind_name(default)}, got {value!r}")
        if value is None and isinstance(default, (bool, int, float, list)):
            raise ConfigError(f"setting '{dotted}' must not be empty")
        rule = RULES.get(dotted)
        if rule and value is not None:
            problem = rule(value)
            if problem:
                raise ConfigError(f"setting '{dotted}' {problem}, got {value!r}")


def _same_kind(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _kind_name(default) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text",
            list: "a list", dict: "a mapping"}.get(type(default), type(default).__name__)


def require(settings: Settings, dotted: str, hint: str) -> Any:
    value = settings[dotted]
    if value in (None, ""):
        raise ConfigError(f"setting '{dotted}' is required: {hint}")
    return value
