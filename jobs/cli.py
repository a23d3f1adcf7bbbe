"""`triage`: the command line of every stage, the whole run, the demo and SQL.

Global options (--conf, --set, --input, --output) go before or after the
command. Configuration is loaded and checked before Spark starts, so a bad
setting costs nothing and names itself.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import traceback

from dicom_triage.jobs.config import ConfigError, load_settings, require
from dicom_triage.jobs.output_lock import OutputBusy
from dicom_triage.jobs.session import EnvironmentProblem
from dicom_triage.jobs.sql_guard import SqlRefused

# The stages in pipeline order: (command, what it does). Each is `jobs/<command>.py`'s
# run(ctx, tracker), imported only when it runs.
STAGES: list[tuple[str, str]] = [
    ("ingest", "headers into `instances` and `ingest_errors`"),
    ("pixels", "pixel statistics, series geometry, duplicates"),
    ("embed", "image embeddings"),
    ("anatomy", "relevance: header rules, the content check, body-region predictions"),
    ("neighbors", "nearest neighbours, near duplicates, clusters"),
    ("curate", "inclusion decisions and review queue"),
    ("report", "HTML report"),
]
STAGE_NAMES = [name for name, _ in STAGES]
# What each stage reads and writes (Delta tables under --output), and an example, for its --help.
STAGE_HELP: dict[str, tuple[str, str, str]] = {
    "ingest": ("the delivery (--input): object listing and headers",
               "instances, ingest_errors, removed_objects",
               "triage ingest --input s3://bucket/delivery --output s3://bucket/triage"),
    "pixels": ("instances, and each object's pixel data", "pixel_stats, series",
               "triage pixels --output ./triage-output --set pixels.timeout_seconds=300"),
    "embed": ("instances, pixel_stats, and each decodable object", "embeddings",
              "triage embed --output ./triage-output --set embed.device=cuda --set embed.batch_size=256"),
    "anatomy": ("instances, embeddings; the registered region model, if any", "anatomy",
                "triage anatomy --output ./triage-output --set 'anatomy.expected_regions=[head]'"),
    "neighbors": ("embeddings, instances", "neighbors, duplicates, clusters, cluster_makeup",
                  "triage neighbors --output ./triage-output --set neighbors.k=20"),
    "curate": ("every table above that exists", "inclusion, review_queue",
               "triage curate --output ./triage-output --set curate.severity.BLURRY=exclude"),
    "report": ("the result tables", "report/triage-report.html under --output",
               "triage report --output ./triage-output"),
}
DEFAULT_DEMO_DELIVERY = "demo-delivery"
# `triage annotate ACTION`: each is jobs/annotate_<action>.py's run().
ANNOTATE_ACTIONS = {
    "plan": "split the included instances into annotator batches with an overlap share "
            "(table annotation_assignments)",
    "import": "read and validate returned annotations (tables labels, label_errors)",
    "agreement": "agreement per batch, annotator pair and annotator; drift; consensus",
    "next": "choose the next instances to label (uncertainty with diversity) and list "
            "predictions safe to accept",
}


class VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from dicom_triage.jobs.versions import version_lines
        print("\n".join(version_lines()))
        parser.exit()


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", action="append", default=argparse.SUPPRESS, metavar="FILE",
                        help="YAML settings file (local path or URI); may repeat")
    parser.add_argument("--set", dest="overrides", action="append", default=argparse.SUPPRESS,
                        metavar="KEY=VALUE", help="override one setting, e.g. --set ingest.files_per_partition=500")
    parser.add_argument("--input", default=argparse.SUPPRESS, help="delivery folder or URI (setting `input`)")
    parser.add_argument("--output", default=argparse.SUPPRESS, help="where tables go (setting `output`)")
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show Spark's, MLflow's and other libraries' messages too (setting `verbose`)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description="Triage a DICOM delivery on Spark.")
    parser.add_argument("--version", action=VersionAction,
                        help="print the package, Python, pyspark and Delta writer versions and exit")
    _common(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in STAGES:
        reads, writes, example = STAGE_HELP[name]
        _common(commands.add_parser(
            name, help=summary, formatter_class=argparse.RawDescriptionHelpFormatter,
            description=f"{summary[0].upper()}{summary[1:]}.\n\nreads:  {reads}\nwrites: {writes}",
            epilog=f"example:\n  {example}"))
    _common(commands.add_parser("run", help="every stage in order"))
    demo = commands.add_parser("demo", help="generate a demo delivery (if absent) and run everything on it")
    _common(demo)
    demo.add_argument("--delivery", default=DEFAULT_DEMO_DELIVERY, help="where the demo delivery is/goes")
    data = commands.add_parser("demo-data", help="write a demo delivery with ground truth to OUT")
    _common(data)
    data.add_argument("out", help="local folder or s3:// URI")
    data.add_argument("--seed", type=int, default=7)
    data.add_argument("--scale", type=int, default=1, help="multiplies patients and series")
    _common(commands.add_parser("train-anatomy", help="train the anatomy classifier on the embeddings "
                                "(verified labels from anatomy.labels, else weak labels from headers) "
                                "and register it in MLflow"))
    annotate = commands.add_parser("annotate", help="annotation tools: plan batches, import labels, "
                                   "measure agreement and drift, choose what to label next")
    _common(annotate)
    actions = annotate.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, summary in ANNOTATE_ACTIONS.items():
        sub = actions.add_parser(action, help=summary)
        _common(sub)
        if action == "import":
            sub.add_argument("labels", nargs="?", default=None,
                             help="annotations to import (setting `annotate.labels`)")
    evaluate = commands.add_parser("evaluate", help="score the decisions against verified answers "
                                   "(tables evaluation, evaluation_decisions, evaluation_cases)")
    _common(evaluate)
    evaluate.add_argument("--truth", default=None, metavar="FILE",
                          help="verified answers: CSV or Parquet with path or sop_instance_uid, and reasons "
                               "and/or decision (setting `evaluate.truth`)")
    sql = commands.add_parser("sql", help="run Spark SQL with every result table registered by name")
    _common(sql)
    sql.add_argument("query")
    sql.add_argument("--limit", type=int, default=50, help="rows to print")
    return parser


def settings_from(args: argparse.Namespace, extra: list[str] | None = None):
    overrides = list(getattr(args, "overrides", []) or [])
    for key in ("input", "output"):
        if getattr(args, key, None) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    if getattr(args, "verbose", False):
        overrides.append("verbose=true")
    if getattr(args, "labels", None) is not None:
        overrides.append(f"annotate.labels={args.labels}")
    if getattr(args, "truth", None) is not None:
        overrides.append(f"evaluate.truth={args.truth}")
    overrides += extra or []
    conf_files = getattr(args, "conf", []) or []
    return load_settings(conf_files, overrides, read_text=_read_conf)


def _read_conf(uri: str) -> str:
    from dicom_triage.jobs.storage import read_text
    try:
        return read_text(uri)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--conf {uri}: cannot read: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"triage: configuration error: {exc}", file=sys.stderr)
        return 2
    except (EnvironmentProblem, OutputBusy) as exc:
        print(f"triage: {exc}", file=sys.stderr)
        return 3
    except SqlRefused as exc:
        print(f"triage sql: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo-data":
        from dicom_triage.jobs.demo_data import generate_delivery
        settings = settings_from(args)
        summary = generate_delivery(args.out, seed=args.seed, scale=args.scale,
                                    storage_options=settings.storage.options)
        print(f"demo delivery written to {args.out}: {summary}")
        return 0
    from dicom_triage.jobs.versions import unsupported
    problem = unsupported()
    if problem:  # before any work: the lock, MLflow and Spark all come later
        raise EnvironmentProblem(problem)
    if args.command == "demo":
        return _demo(args)
    settings = settings_from(args)
    if args.command == "sql":
        return _sql(settings, args.query, args.limit)
    if args.command == "train-anatomy":
        return _train_anatomy(settings)
    if args.command == "annotate":
        return _annotate(settings, args.action)
    if args.command == "evaluate":
        return _evaluate(settings)
    if args.command == "run":
        return _run_stages(settings, STAGE_NAMES, "run")
    return _run_stages(settings, [args.command], args.command)


def _demo(args: argparse.Namespace) -> int:
    from dicom_triage.jobs.demo_data import generate_delivery
    delivery = os.path.abspath(args.delivery)
    if not os.path.isdir(delivery) or not os.listdir(delivery):
        print(f"demo: generating a demo delivery in {delivery} ...")
        generate_delivery(delivery)
    extra = [f"input={delivery}", "privacy.allow_generated_secret=true", *demo_expectations(delivery)]
    settings = settings_from(args, extra)
    return _run_stages(settings, STAGE_NAMES, "demo")


def demo_expectations(delivery: str) -> list[str]:
    """The demo delivery says what it was meant to contain; expect exactly that."""
    import json
    with open(os.path.join(delivery, "_ground_truth.json"), encoding="utf-8") as handle:
        expected = json.load(handle).get("expectations", {})
    overrides = []
    if expected.get("modalities"):
        overrides.append(f"expect.modalities={json.dumps(expected['modalities'])}")
    if expected.get("body_regions"):
        overrides.append(f"anatomy.expected_regions={json.dumps(expected['body_regions'])}")
    return overrides


def _run_stages(settings, names: list[str], command: str) -> int:
    from dicom_triage.jobs import notes, preflight, progress
    from dicom_triage.jobs.runtime import RunContext
    from dicom_triage.jobs.tracking import tracked_run

    if "ingest" in names:
        require(settings, "input", "the delivery to read, e.g. --input s3://bucket/delivery")
        preflight.check_apart(settings.input, settings.output)
    ctx = RunContext.create(settings)
    if "ingest" in names:
        preflight.check_input(settings.input, settings.storage.options)
    preflight.check_output(settings.output, settings.storage.options)
    started = time.monotonic()
    results, failed = {}, []
    with _output_lock(settings, ctx.run_id), tracked_run(settings, ctx.run_id, command) as tracker:
        for name in (stage for stage in STAGE_NAMES if stage in names):
            stage_started = time.monotonic()
            try:
                with progress.shown(ctx.spark, name, every=settings.progress_seconds):
                    results[name] = _stage_runner(name)(ctx, tracker)
            except (ConfigError, EnvironmentProblem, OutputBusy):
                raise
            except Exception as exc:  # the later stages decide with what exists
                if len(names) == 1:
                    raise
                failed.append(name)
                ctx.note(name, "stage_failed", f"failed: {type(exc).__name__}: {_first_line(exc)}; the "
                         "stages after it use the tables that exist", level="error")
                traceback.print_exc(file=sys.stderr)
            else:
                ctx.note(name, "completed", f"completed in {time.monotonic() - stage_started:.1f} s",
                         level="info", say=lambda _: None)
            notes.flush(ctx)
        tracker.metrics({"seconds_total": time.monotonic() - started})
    _print_summary(ctx, results)
    return 1 if failed else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _output_lock(settings, run_id: str):
    """One run at a time per output (jobs/output_lock.py); catalog outputs rely
    on the scheduler (a Databricks job allows one concurrent run)."""
    import contextlib
    from dicom_triage.jobs.output_lock import held
    from dicom_triage.jobs.tables import CATALOG_OUTPUT

    if not settings.concurrency.lock or CATALOG_OUTPUT.match(settings.output):
        return contextlib.nullcontext()
    return held(settings.output, settings.storage.options, run_id, settings.concurrency.stale_after_seconds)


def _stage_runner(name: str):
    return importlib.import_module(f"dicom_triage.jobs.{name}").run


def _train_anatomy(settings) -> int:
    from dicom_triage.jobs import anatomy
    from dicom_triage.jobs.runtime import RunContext
    from dicom_triage.jobs.tracking import tracked_run

    from dicom_triage.udfs.anatomy import InsufficientLabels

    ctx = RunContext.create(settings)
    with tracked_run(settings, ctx.run_id, "train-anatomy") as tracker:
        try:
            _, uri = anatomy.train(ctx, tracker)
        except InsufficientLabels as exc:
            raise ConfigError(str(exc)) from None
    print(f"train-anatomy: model {uri or 'not registered (mlflow.enabled is false)'}")
    return 0


def _evaluate(settings) -> int:
    from dicom_triage.jobs import evaluate, preflight
    from dicom_triage.jobs.runtime import RunContext
    from dicom_triage.jobs.tracking import tracked_run

    require(settings, "evaluate.truth", "the verified answers, e.g. --truth verified.csv")
    ctx = RunContext.create(settings)
    preflight.check_output(settings.output, settings.storage.options)
    with _output_lock(settings, ctx.run_id), tracked_run(settings, ctx.run_id, "evaluate") as tracker:
        evaluate.run(ctx, tracker)
    return 0


def _annotate(settings, action: str) -> int:
    import importlib
    from dicom_triage.jobs.runtime import RunContext
    from dicom_triage.jobs.tracking import tracked_run

    module = importlib.import_module(f"dicom_triage.jobs.annotate_{action}")
    from dicom_triage.jobs import preflight
    ctx = RunContext.create(settings)
    preflight.check_output(settings.output, settings.storage.options)
    with _output_lock(settings, ctx.run_id), tracked_run(settings, ctx.run_id, f"annotate {action}") as tracker:
        module.run(ctx, tracker)
    return 0


def _print_summary(ctx, results: dict) -> None:
    from dicom_triage.jobs.summary import summary_lines
    for line in summary_lines(ctx, results):
        print(line)


def _sql(settings, query: str, limit: int) -> int:
    from dicom_triage.jobs.runtime import RunContext
    from dicom_triage.jobs.summary import register_tables, show

    settings_for_sql = settings
    ctx = RunContext(settings=settings_for_sql, run_id="sql", secret=b"")
    from pyspark.errors import AnalysisException

    from dicom_triage.jobs.sql_guard import SqlRefused, check

    names = register_tables(ctx)
    if not names:
        raise ConfigError(f"setting 'output': no tables found under {settings.output}")
    check(ctx.spark, query, names)
    # PySpark logs a failed query's error as JSON before raising it; the one line below says it
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    try:
        result = ctx.spark.sql(query)
    except AnalysisException as exc:  # an unknown table or column: one line, and what there is
        raise SqlRefused(f"{str(exc).splitlines()[0][:300]}. Tables: {', '.join(names)}") from None
    show(result, limit)
    return 0


def console_main() -> None:
    """The `triage` entry point: exits with main()'s code, also where the caller
    ignores a return value (a Databricks wheel task calls the function)."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
