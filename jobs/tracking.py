"""MLflow: every run of the job is an MLflow run, with the configuration as
params and the stage counts as metrics. Local SQLite store by default."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from pathlib import Path

from dicom_triage.jobs.config import Settings

MAX_PARAM_CHARS = 6000


def tracking_uri(settings: Settings) -> str:
    if settings.mlflow.tracking_uri:
        return settings.mlflow.tracking_uri
    return f"sqlite:///{(_local_store(settings) / 'mlflow.db').resolve()}"


def _local_store(settings: Settings) -> Path:
    """The folder of the default store: <output>/_mlflow, or the working
    directory for bucket and catalog outputs."""
    output = settings.output or "."
    local = not ("://" in output and not output.startswith("file://")) and "." not in _catalog_part(output)
    folder = Path(output.removeprefix("file://")) / "_mlflow" if local else Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _use_experiment(settings: Settings) -> None:
    """Select the experiment; with the default store, a new experiment keeps its
    artifacts (models, the report copy) beside the store, not in the working
    directory where the command happened to start."""
    import mlflow

    name = settings.mlflow.experiment
    if not settings.mlflow.tracking_uri and mlflow.get_experiment_by_name(name) is None:
        location = (_local_store(settings) / "artifacts").resolve().as_uri()
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # created meanwhile by another run
            pass
    mlflow.set_experiment(name)


def _catalog_part(output: str) -> str:
    """'catalog.schema' outputs (Databricks) have no folder for a local store."""
    return output if re.fullmatch(r"[A-Za-z_]\w*\.[A-Za-z_]\w*", output) else ""


def safe_params(settings: Settings) -> dict[str, str]:
    """Flattened settings without credentials (jobs/redaction.py), each cut to MLflow's size."""
    from dicom_triage.jobs.redaction import redact

    params = {}
    for key, value in redact(settings.flat(), os.environ).items():
        text = str(value)
        params[key] = text if len(text) <= MAX_PARAM_CHARS else text[:MAX_PARAM_CHARS - 3] + "..."
    return params


class Tracker:
    def __init__(self, active: bool):
        self.active = active

    def metrics(self, values: dict[str, float], step: int | None = None) -> None:
        if self.active:
            import mlflow
            mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=step)

    def artifact(self, path: str, folder: str | None = None) -> None:
        if self.active:
            import mlflow
            mlflow.log_artifact(path, folder)

    def tags(self, values: dict[str, str]) -> None:
        if self.active:
            import mlflow
            mlflow.set_tags(values)


@contextlib.contextmanager
def tracked_run(settings: Settings, run_id: str, command: str):
    if not settings.mlflow.enabled:
        yield Tracker(False)
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if not settings.verbose:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    for name in ("mlflow", "alembic"):  # after import: mlflow sets its own levels
        logging.getLogger(name).setLevel(logging.INFO if settings.verbose else logging.ERROR)
    if not settings.verbose:
        from mlflow.utils.logging_utils import disable_logging
        disable_logging()  # "Successfully registered model ..." and MLflow's other event lines
        # the pyfunc works on any DataFrame by design; MLflow's nudge towards type hints is not for users
        warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method", category=UserWarning)
    mlflow.set_tracking_uri(tracking_uri(settings))
    _use_experiment(settings)
    with mlflow.start_run(run_name=f"{command}-{run_id}"):
        mlflow.log_params(safe_params(settings))
        mlflow.set_tags({"triage.run_id": run_id, "triage.command": command})
        yield Tracker(True)
