"""What a person sees at the end of a run, and the SQL entry point's helpers.
Everything is aggregated in Spark; only small result sets reach the driver."""
from __future__ import annotations

from pyspark.sql import DataFrame, functions as F

# The output contract's table names (README "Tables"), in pipeline order.
TABLES = ["instances", "ingest_errors", "removed_objects", "pixel_stats", "series", "embeddings", "anatomy",
          "neighbors", "duplicates", "clusters", "cluster_makeup", "inclusion", "review_queue", "run_notes",
          "evaluation", "evaluation_decisions", "evaluation_cases",
          # written by `triage annotate ...`
          "annotation_assignments", "labels", "label_errors", "annotation_agreement", "annotator_agreement",
          "annotator_drift", "consensus", "label_next", "accept_predictions"]


def register_tables(ctx) -> list[str]:
    """Register every existing result table as a temporary view named after it."""
    found = []
    for name in TABLES:
        if ctx.store.exists(name):
            ctx.store.read(name).createOrReplaceTempView(name)
            found.append(name)
    return found


def format_table(columns: list[str], rows: list[list]) -> list[str]:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return out


def show(df: DataFrame, limit: int = 50) -> None:
    rows = df.limit(limit + 1).collect()
    for line in format_table(df.columns, [list(r) for r in rows[:limit]]):
        print(line)
    if len(rows) > limit:
        print(f"... (first {limit} rows; use --limit)")


def summary_lines(ctx, results: dict) -> list[str]:
    lines = ["", f"== run {ctx.run_id}"]
    ingest = results.get("ingest")
    if ingest:
        lines.append(
            f"ingest: {ingest['listed']} objects listed, {ingest['parsed']} parsed this run "
            f"({ingest['skipped_already_ingested']} already ingested), "
            f"{ingest['instances']} new instances, {ingest['errors']} new errors, {ingest['seconds']} s")
        store = ctx.store
        if store.exists("instances"):
            per_site = (store.read("instances").groupBy("site", "modality").count()
                        .orderBy("site", "modality").collect())
            lines.append("instances by site and modality (all runs):")
            lines += ["  " + l for l in format_table(["site", "modality", "count"],
                                                      [[r.site, r.modality, r["count"]] for r in per_site])]
        if store.exists("ingest_errors"):
            errors = (store.read("ingest_errors").groupBy("error_code").count()
                      .orderBy(F.desc("count")).collect())
            if errors:
                lines.append("ingest errors (all runs):")
                lines += ["  " + l for l in format_table(["error_code", "count"],
                                                          [[r.error_code, r["count"]] for r in errors])]
    if results.get("curate"):
        lines += decision_lines(ctx.store, results["curate"])
    elif results.get("pixels") or results.get("embed") or results.get("neighbors"):
        lines += findings_lines(ctx.store)
    said = [(stage, message) for stage, level, _, message in ctx.notes if level != "info"]
    if said:
        lines.append("what did not run, or ran with less (table run_notes):")
        lines += [f"  {stage}: {message}" for stage, message in said]
    if results.get("report"):
        lines.append(f"report: {results['report']['path']}")
    lines.append(f"tables: {ctx.settings.output}  "
                 f"(query: {command_name()} sql \"SELECT modality, count(*) FROM instances GROUP BY modality\" "
                 f"--output {ctx.settings.output})")
    return lines


def command_name() -> str:
    """How to call this tool again from here: `triage` when that is on PATH and is
    the one running; else the script's own path (`.venv/bin/triage` after
    `make demo`, whose venv is not activated); `python -m dicom_triage.jobs`
    when started that way."""
    import os
    import shutil
    import sys
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(script) != "triage":
        return "triage" if shutil.which("triage") else "python -m dicom_triage.jobs"
    on_path = shutil.which("triage")
    if on_path and os.path.samefile(on_path, script):
        return "triage"
    relative = os.path.relpath(script)
    return script if relative.startswith("..") else relative


def findings_lines(store) -> list[str]:
    """Findings per code: instances flagged (pixels, anatomy) and series flagged."""
    rows = []
    for table, unit in (("pixel_stats", "instances"), ("series", "series"), ("anatomy", "instances"),
                        ("clusters", "instances")):
        if not store.exists(table):
            continue
        counts = (store.read(table).select(F.explode(F.array_distinct("findings.code")).alias("code"))
                  .groupBy("code").count().orderBy(F.desc("count")).collect())
        rows += [[r.code, r["count"], unit] for r in counts]
    if store.exists("duplicates"):
        groups = (store.read("duplicates").filter("NOT is_original").groupBy("kind").count().collect())
        rows += [[f"{r.kind} duplicates (beyond the original)", r["count"], "instances"] for r in groups]
    if not rows:
        return ["no findings"]
    return ["findings:"] + ["  " + l for l in format_table(["code", "count", "of"], rows)]


def decision_lines(store, counts: dict) -> list[str]:
    """Kept / excluded / to review, the top reasons, and the review queue."""
    from dicom_triage.jobs.curate import top_reasons

    total = sum(counts.get(d, 0) for d in ("include", "exclude", "review")) or 1
    lines = [f"decisions: {counts.get('include', 0)} kept ({counts.get('include', 0) / total:.0%}), "
             f"{counts.get('exclude', 0)} excluded, {counts.get('review', 0)} to review "
             f"(review queue: {counts.get('review_queue', 0)} entries, table review_queue)"]
    reasons = top_reasons(store.read("inclusion"))
    if reasons:
        lines.append("top reasons (objects excluded or sent to review):")
        lines += ["  " + l for l in format_table(["reason", "objects"], [list(r) for r in reasons])]
    return lines
