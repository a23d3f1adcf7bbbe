"""The Databricks Asset Bundle (databricks.yml + resources/*.yml) against the project.

No workspace and no Databricks CLI are needed: the bundle's variables are
resolved here the way the CLI does for plain `${var.name}` / `${bundle.*}`
references, the job is checked against the bundle's own job models (the
`databricks-bundles` package, generated from the bundle schema; unknown
fields and bad enum values raise), and every task's parameters are parsed by
the project's own CLI with the job parameters filled in.
"""
from __future__ import annotations

import copy
import glob
import os
import re

import pytest
import yaml

from dicom_triage.jobs.cli import STAGE_NAMES, build_parser, settings_from
from dicom_triage.jobs.config import default_settings, load_settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE_FILE = os.path.join(ROOT, "databricks.yml")
JOB_KEY = "triage"
# Top-level keys of a bundle configuration (the bundle schema's root properties).
BUNDLE_KEYS = {"bundle", "include", "artifacts", "variables", "targets", "workspace", "resources",
               "permissions", "run_as", "sync", "presets", "experimental", "python", "scripts", "git"}
TARGET_KEYS = {"mode", "default", "workspace", "run_as", "permissions", "variables", "resources",
               "artifacts", "bundle", "git", "presets", "sync", "cluster_id", "compute_id"}
# Example values for the job parameters, as a run would pass them.
EXAMPLE_PARAMETERS = {
    "input": "/Volumes/main/raw/dicom/delivery",
    "output": "main.triage",
    "conf": os.path.join(ROOT, "conf", "databricks.yaml"),  # stands for its copy on a volume
}
VAR_REF = re.compile(r"\$\{var\.([A-Za-z_][\w-]*)\}")
BUNDLE_REF = re.compile(r"\$\{(bundle\.name|bundle\.target)\}")
JOB_PARAM_REF = re.compile(r"\{\{\s*job\.parameters\.([A-Za-z_][\w-]*)\s*\}\}")
SECRET_REF = re.compile(r"^\{\{secrets/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+\}\}$")


def load_bundle() -> dict:
    """databricks.yml with the files of `include` merged in (resources only)."""
    with open(BUNDLE_FILE, encoding="utf-8") as handle:
        bundle = yaml.safe_load(handle)
    for pattern in bundle.get("include", []):
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            with open(path, encoding="utf-8") as handle:
                part = yaml.safe_load(handle) or {}
            for kind, items in (part.get("resources") or {}).items():
                bucket = bundle.setdefault("resources", {}).setdefault(kind, {})
                duplicate = set(bucket) & set(items)
                assert not duplicate, f"{path}: {kind} {duplicate} defined twice"
                bucket.update(items)
    return bundle


def variables_for(bundle: dict, target: str) -> dict:
    values = {name: spec.get("default") for name, spec in bundle.get("variables", {}).items()}
    values.update((bundle["targets"][target] or {}).get("variables") or {})
    return values


def resolve(value, variables: dict, bundle: dict, target: str):
    """Substitute ${var.x}, ${bundle.name} and ${bundle.target}; a whole-value
    reference keeps the variable's type (lists for complex variables)."""
    if isinstance(value, dict):
        return {k: resolve(v, variables, bundle, target) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, variables, bundle, target) for v in value]
    if not isinstance(value, str):
        return value
    whole = VAR_REF.fullmatch(value)
    if whole:
        return copy.deepcopy(variables[whole.group(1)])
    value = VAR_REF.sub(lambda m: str(variables[m.group(1)]), value)
    return BUNDLE_REF.sub(lambda m: bundle["bundle"]["name"] if m.group(1) == "bundle.name" else target,
                          value)


def job(bundle: dict, target: str | None = None) -> dict:
    raw = bundle["resources"]["jobs"][JOB_KEY]
    if target is None:
        return raw
    return resolve(raw, variables_for(bundle, target), bundle, target)


def quartz_field_ok(text: str, low: int, high: int, names: tuple[str, ...] = (), question: bool = False) -> bool:
    """One field of a Quartz cron expression: *, ?, lists, ranges, steps, names, L / W / #."""
    if question and text == "?":
        return True
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            return False
        if base in ("*",) or (question and re.fullmatch(r"(\d+)?L(-\d+)?W?|\d+W|LW|\d#[1-5]|\dL", base)):
            continue
        for bound in base.split("-", 1):
            if bound.upper() in names:
                continue
            if not bound.isdigit() or not low <= int(bound) <= high:
                return False
    return True


def valid_quartz(expression: str) -> bool:
    fields = expression.split()
    if len(fields) not in (6, 7):
        return False
    days = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
    months = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    checks = [quartz_field_ok(fields[0], 0, 59), quartz_field_ok(fields[1], 0, 59),
              quartz_field_ok(fields[2], 0, 23), quartz_field_ok(fields[3], 1, 31, question=True),
              quartz_field_ok(fields[4], 1, 12, months), quartz_field_ok(fields[5], 1, 7, days, question=True)]
    if len(fields) == 7:
        checks.append(quartz_field_ok(fields[6], 1970, 2199))
    # Quartz needs exactly one of day-of-month and day-of-week to be '?'.
    return all(checks) and (fields[3] == "?") != (fields[5] == "?")


@pytest.fixture(scope="module")
def bundle() -> dict:
    return load_bundle()


@pytest.fixture(scope="module")
def pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)


def test_bundle_layout(bundle):
    assert set(bundle) <= BUNDLE_KEYS, f"unknown top-level keys {set(bundle) - BUNDLE_KEYS}"
    assert bundle["bundle"]["name"]
    assert "resources/*.yml" in bundle["include"]
    assert set(bundle["targets"]) == {"dev", "prod"}
    for name, target in bundle["targets"].items():
        assert set(target) <= TARGET_KEYS, f"target {name}: unknown keys {set(target) - TARGET_KEYS}"
    assert bundle["targets"]["dev"]["mode"] == "development"
    assert bundle["targets"]["prod"]["mode"] == "production"
    prod = bundle["targets"]["prod"]
    assert prod.get("run_as") and prod.get("permissions"), "prod needs run_as and permissions"
    assert list(bundle["resources"]["jobs"]) == [JOB_KEY], "one job"


def test_every_variable_reference_is_declared(bundle):
    declared = set(bundle["variables"])
    used = set(VAR_REF.findall(yaml.safe_dump(bundle)))
    assert used <= declared, f"undeclared variables {used - declared}"
    for name, target in bundle["targets"].items():
        overridden = set((target or {}).get("variables") or {})
        assert overridden <= declared, f"target {name} sets undeclared variables {overridden - declared}"


def test_artifact_builds_the_wheel_the_tasks_install(bundle):
    [(_, artifact)] = bundle["artifacts"].items()
    assert artifact["type"] == "whl" and artifact["path"] == "."
    assert "-w dist" in artifact["build"] or "--outdir dist" in artifact["build"] or \
        "python -m build --wheel" in artifact["build"]
    resources_dir = os.path.join(ROOT, "resources")
    for task in job(bundle)["tasks"]:
        wheels = [lib["whl"] for lib in task.get("libraries", []) if "whl" in lib]
        assert len(wheels) == 1, f"task {task['task_key']}: install the project wheel once"
        assert os.path.normpath(os.path.join(resources_dir, wheels[0])) == os.path.join(ROOT, "dist", "*.whl")


def test_one_task_per_stage_in_pipeline_order(bundle):
    tasks = job(bundle)["tasks"]
    assert [t["task_key"] for t in tasks] == STAGE_NAMES
    for previous, task in zip([None] + tasks[:-1], tasks):
        wanted = [] if previous is None else [{"task_key": previous["task_key"]}]
        assert task.get("depends_on", []) == wanted, f"task {task['task_key']}: depends_on {task.get('depends_on')}"


def test_tasks_call_the_triage_command(bundle, pyproject):
    scripts = pyproject["project"]["scripts"]
    project = re.sub(r"[-_.]+", "-", pyproject["project"]["name"]).lower()
    for task in job(bundle)["tasks"]:
        wheel_task = task["python_wheel_task"]
        assert wheel_task["entry_point"] in scripts, f"task {task['task_key']}: no such entry point"
        assert scripts[wheel_task["entry_point"]] == "dicom_triage.jobs.cli:console_main"
        assert re.sub(r"[-_.]+", "-", wheel_task["package_name"]).lower() == project


def test_task_parameters_parse_with_the_cli_and_settings_load(bundle):
    spec = job(bundle, "dev")
    defined = {p["name"] for p in spec["parameters"]}
    assert defined == set(EXAMPLE_PARAMETERS), "job parameters: input, output, conf"
    parser = build_parser()
    for task in spec["tasks"]:
        params = task["python_wheel_task"]["parameters"]
        referenced = set(JOB_PARAM_REF.findall(" ".join(params)))
        assert referenced <= defined, f"task {task['task_key']}: undefined job parameters {referenced - defined}"
        assert referenced == defined, f"task {task['task_key']}: should pass input, output and conf"
        argv = [JOB_PARAM_REF.sub(lambda m: EXAMPLE_PARAMETERS[m.group(1)], p) for p in params]
        args = parser.parse_args(argv)
        assert args.command == task["task_key"]
        settings = settings_from(args)  # every --set names an existing setting, the conf file loads
        assert settings.output == EXAMPLE_PARAMETERS["output"]
        assert settings.input == EXAMPLE_PARAMETERS["input"]
        assert settings.mlflow.tracking_uri == "databricks", "MLflow on the workspace tracking server"
        assert settings.mlflow.experiment.startswith("/"), "Databricks experiment names are absolute paths"


def test_schedule_is_quartz_and_paused_in_dev(bundle):
    for target in ("dev", "prod"):
        schedule = job(bundle, target)["schedule"]
        assert valid_quartz(schedule["quartz_cron_expression"]), schedule["quartz_cron_expression"]
        assert schedule["timezone_id"]
    assert job(bundle, "dev")["schedule"]["pause_status"] == "PAUSED"
    assert job(bundle, "prod")["schedule"]["pause_status"] == "UNPAUSED"


@pytest.mark.parametrize("expression,ok", [
    ("0 0 2 * * ?", True), ("0 30 6 ? * MON-FRI", True), ("0 0/15 * * * ? 2027", True),
    ("0 0 2 * * *", False), ("0 0 2 * *", False), ("0 61 2 * * ?", False), ("0 0 2 ? * ?", False),
])
def test_quartz_check(expression, ok):
    assert valid_quartz(expression) is ok


def test_identifier_secret_comes_from_a_secret_scope(bundle):
    secret_env = default_settings()["privacy"]["secret_env"]
    for target in ("dev", "prod"):
        clusters = job(bundle, target)["job_clusters"]
        for cluster in clusters:
            env = cluster["new_cluster"].get("spark_env_vars", {})
            value = env.get(secret_env)
            assert value, f"cluster {cluster['job_cluster_key']}: {secret_env} is not set"
            assert SECRET_REF.match(value), f"cluster {cluster['job_cluster_key']}: {secret_env} must be " \
                f"a secret reference {{{{secrets/<scope>/<key>}}}}, got {value!r}"
    # Nowhere a literal value: the only mentions are secret references.
    text = yaml.safe_dump(bundle)
    for line in text.splitlines():
        if secret_env in line:
            assert "secrets/" in line, line


def test_clusters(bundle):
    spec = job(bundle, "dev")
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in spec["job_clusters"]}
    used = {t["job_cluster_key"] for t in spec["tasks"]}
    assert used == set(clusters), "every task on a job cluster of the job, every job cluster used"
    for key, cluster in clusters.items():
        runtime = re.match(r"(\d+)\.(\d+)\.x-(?:[a-z-]+-)?scala(\d\.\d+)$", cluster["spark_version"])
        assert runtime and int(runtime.group(1)) >= 17 and runtime.group(3) == "2.13", \
            f"cluster {key}: {cluster['spark_version']} is not a Spark 4 runtime"
        assert cluster["node_type_id"]
        assert cluster.get("data_security_mode") in ("SINGLE_USER", "DATA_SECURITY_MODE_DEDICATED",
                                                     "USER_ISOLATION", "DATA_SECURITY_MODE_STANDARD"), \
            f"cluster {key}: needs a Unity Catalog access mode"
    embed_cluster = clusters[next(t for t in spec["tasks"] if t["task_key"] == "embed")["job_cluster_key"]]
    if "gpu" in embed_cluster["spark_version"]:
        fraction = float(embed_cluster["spark_conf"]["spark.task.resource.gpu.amount"])
        assert 0 < fraction <= 1 and (fraction == 1 or (1 / fraction).is_integer())
    assert spec["max_concurrent_runs"] == 1


def test_conf_example_loads():
    settings = load_settings([os.path.join(ROOT, "conf", "databricks.yaml")])
    assert settings.mlflow.tracking_uri == "databricks"
    assert settings.tables.backend in ("auto", "delta-spark")
    assert re.fullmatch(r"[A-Za-z_]\w*\.[A-Za-z_]\w*", settings.output), "a catalog.schema output"


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_job_matches_the_bundle_job_schema(bundle, target):
    """The bundle's own job models reject unknown fields, wrong types and bad enum values."""
    from databricks.bundles.jobs import Job, JobPermission, JobRunAs

    Job.from_dict(copy.deepcopy(job(bundle)))  # as written, with ${var.*} references
    resolved = Job.from_dict(job(bundle, target))
    assert [t.task_key for t in resolved.tasks] == STAGE_NAMES
    variables = variables_for(bundle, target)
    settings = bundle["targets"][target]
    if settings.get("run_as"):
        JobRunAs.from_dict(resolve(settings["run_as"], variables, bundle, target))
    for permission in settings.get("permissions", []):
        JobPermission.from_dict(resolve(permission, variables, bundle, target))


def test_schema_check_catches_mistakes(bundle):
    """The model check is not a no-op: a misspelt field or enum value is rejected."""
    from databricks.bundles.jobs import Job

    wrong = job(bundle, "dev")
    wrong["tasks"][0]["python_wheel_task"]["entrypoint"] = wrong["tasks"][0]["python_wheel_task"].pop("entry_point")
    with pytest.raises(ValueError, match="entrypoint"):
        Job.from_dict(wrong)
    wrong = job(bundle, "dev")
    wrong["schedule"]["pause_status"] = "STOPPED"
    with pytest.raises(ValueError):
        Job.from_dict(wrong)


def test_the_entry_point_exits_with_the_command_s_code(monkeypatch):
    """A wheel task calls the entry point function: a configuration error must
    end the process with a non-zero code, not return it to a caller that drops it."""
    from dicom_triage.jobs.cli import console_main
    monkeypatch.setattr("sys.argv", ["triage", "ingest", "--set", "no_such_setting=1"])
    with pytest.raises(SystemExit) as stopped:
        console_main()
    assert stopped.value.code == 2
