"""The triage report as one self-contained HTML page: small pandas frames and
dicts in, one HTML string out. Charts are inline SVG drawn here, images are
data URIs, the CSS is inline: the file opens anywhere, offline, and can be
mailed or attached to an MLflow run as it is. No Spark here (jobs/report.py
gathers the data)."""
from __future__ import annotations

import base64
import html
import math
import re
from typing import Iterable, Mapping

import pandas as pd
import yaml

from dicom_triage.jobs.redaction import redact

DECISION_COLORS = {"include": "#2e7d32", "review": "#ef8f00", "exclude": "#c62828"}
MISSING_COLOR = "#9e9e9e"
# Categorical palette (Tableau 20 order): distinguishable, print-friendly.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
           "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]
BAR_COLOR = "#3f6fb5"

# Which command writes each table: what to run when a section's input is missing.
TABLE_STAGE = {"instances": "ingest", "ingest_errors": "ingest", "pixel_stats": "pixels",
               "series": "pixels", "embeddings": "embed", "anatomy": "embed",
               "neighbors": "neighbors", "duplicates": "neighbors", "clusters": "neighbors",
               "inclusion": "curate", "review_queue": "curate"}

SECTIONS = [("what-ran", "What ran"), ("overview", "Overview"), ("decisions", "Decisions"),
            ("embedding-map", "Embedding map"), ("galleries", "Galleries"), ("configuration", "Configuration")]


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def label_text(value, missing: str = "(missing)") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return missing
    return str(value)


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{int(value):,}"


def size_text(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    return ""


def empty_note(text: str = "No values.") -> str:
    return f'<p class="empty">{esc(text)}</p>'


def missing_note(tables: Iterable[str]) -> str:
    """What a section needs and which command writes it."""
    tables = list(tables)
    pipeline = list(dict.fromkeys(TABLE_STAGE.values()))
    stages = sorted({TABLE_STAGE[t] for t in tables if t in TABLE_STAGE}, key=pipeline.index)
    commands = ", ".join(f"<code>triage {esc(s)}</code>" for s in stages)
    names = ", ".join(f"<code>{esc(t)}</code>" for t in tables)
    run = f" Run {commands} first." if commands else ""
    return f'<p class="missing">Not available: the output has no table {names} yet.{run}</p>'


# ---------------------------------------------------------------- charts


def svg(width: int, height: int, body: str, title: str) -> str:
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
            f"<title>{esc(title)}</title>{body}</svg>")


def bar_chart(frame: pd.DataFrame | None, label: str, value: str = "count", title: str = "",
              width: int = 440) -> str:
    """Horizontal bars, one per row of `frame`, in the frame's order."""
    if frame is None or frame.empty:
        return figure(title, empty_note())
    rows = [(label_text(r[label]), float(r[value] or 0)) for _, r in frame.iterrows()]
    top = max(v for _, v in rows) or 1.0
    row_h, label_w, count_w = 18, 150, 60
    bar_w = width - label_w - count_w
    marks = []
    for i, (name, count) in enumerate(rows):
        y = i * row_h
        length = max(1.0, bar_w * count / top) if count > 0 else 0
        marks.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" class="lbl">{esc(short(name, 24))}'
            f"<title>{esc(name)}</title></text>"
            f'<rect class="mark" x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row_h - 6}" '
            f'fill="{BAR_COLOR}"><title>{esc(name)}: {number(count)}</title></rect>'
            f'<text x="{label_w + length + 4:.1f}" y="{y + 13}" class="num">{number(count)}</text>')
    return figure(title, svg(width, len(rows) * row_h + 4, "".join(marks), title))


def histogram(frame: pd.DataFrame | None, title: str = "", unit: str = "", width: int = 440) -> str:
    """Vertical bars from pre-binned counts: columns `lo`, `hi`, `count`."""
    if frame is None or frame.empty or not frame["count"].sum():
        return figure(title, empty_note())
    frame = frame.sort_values("lo")
    height, left, bottom, top_pad = 170, 44, 30, 8
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    tallest = float(frame["count"].max())
    bin_w = plot_w / len(frame)
    marks = [f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" class="axis"/>',
             f'<text x="{left - 4}" y="{top_pad + 9}" text-anchor="end" class="num">{number(tallest)}</text>',
             f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end" class="num">0</text>']
    for i, row in enumerate(frame.itertuples(index=False)):
        h = plot_h * float(row.count) / tallest
        h = max(h, 1.0) if row.count else 0.0
        marks.append(f'<rect class="mark" x="{left + i * bin_w + 0.5:.1f}" y="{top_pad + plot_h - h:.1f}" '
                     f'width="{max(bin_w - 1, 0.5):.1f}" height="{h:.1f}" fill="{BAR_COLOR}">'
                     f"<title>{number(row.lo)}–{number(row.hi)} {esc(unit)}: {number(row.count)}</title></rect>")
    lo, hi = float(frame["lo"].iloc[0]), float(frame["hi"].iloc[-1])
    axis_y = top_pad + plot_h + 16
    marks.append(f'<text x="{left}" y="{axis_y}" class="num">{number(lo)}</text>')
    marks.append(f'<text x="{left + plot_w}" y="{axis_y}" text-anchor="end" class="num">{number(hi)} {esc(unit)}</text>')
    return figure(title, svg(width, height, "".join(marks), title))


def distribution(frame: pd.DataFrame | None, title: str = "", unit: str = "") -> str:
    """Counts per value (frame `value`, `count`, in value order) as bars, or a
    histogram (frame `lo`, `hi`, `count`)."""
    if frame is not None and "value" in frame.columns:
        labelled = frame.assign(value=[f"{number(v)} {unit}".strip() for v in frame["value"]])
        return bar_chart(labelled, label="value", title=title)
    return histogram(frame, title=title, unit=unit)


def stacked_bars(frame: pd.DataFrame | None, label: str, part: str, value: str = "count",
                 colors: Mapping[str, str] | None = None, title: str = "", width: int = 520) -> str:
    """One horizontal bar per `label`, split by `part`, with a legend."""
    if frame is None or frame.empty:
        return figure(title, empty_note())
    frame = frame.assign(**{label: frame[label].map(label_text), part: frame[part].map(label_text)})
    parts = list(dict.fromkeys(frame[part]))
    if colors:
        parts = [p for p in colors if p in parts] + [p for p in parts if p not in colors]
    color = {p: (colors or {}).get(p) or PALETTE[i % len(PALETTE)] for i, p in enumerate(parts)}
    totals = frame.groupby(label, sort=False)[value].sum()
    top = float(totals.max()) or 1.0
    row_h, label_w, count_w = 20, 150, 60
    bar_w = width - label_w - count_w
    marks = []
    for i, (name, total) in enumerate(totals.items()):
        y, x = i * row_h, float(label_w)
        marks.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" class="lbl">'
                     f"{esc(short(name, 24))}<title>{esc(name)}</title></text>")
        cells = frame[frame[label] == name].set_index(part)[value]
        for p in parts:
            count = float(cells.get(p, 0) or 0)
            if count <= 0:
                continue
            length = bar_w * count / top
            marks.append(f'<rect class="mark" x="{x:.1f}" y="{y + 3}" width="{max(length, 1):.1f}" '
                         f'height="{row_h - 6}" fill="{color[p]}"><title>{esc(name)} · {esc(p)}: '
                         f"{number(count)}</title></rect>")
            x += length
        marks.append(f'<text x="{x + 4:.1f}" y="{y + 14}" class="num">{number(total)}</text>')
    chart = svg(width, len(totals) * row_h + 4, "".join(marks), title)
    return figure(title, legend(color) + chart)


def scatter(frame: pd.DataFrame | None, x: str, y: str, category: str,
            colors: Mapping[str, str] | None = None, title: str = "", size: int = 460) -> str:
    """Points coloured by `category`; the axes are the map's own units."""
    if frame is None or frame.empty:
        return figure(title, empty_note())
    frame = frame.dropna(subset=[x, y])
    if frame.empty:
        return figure(title, empty_note("No points with map coordinates."))
    names = frame[category].map(lambda v: label_text(v, "(none)"))
    order = sorted(set(names), key=_natural_key)
    if colors:
        order = [c for c in colors if c in set(order)] + [c for c in order if c not in colors]
    color = {c: (colors or {}).get(c) or (MISSING_COLOR if c == "(none)" else PALETTE[i % len(PALETTE)])
             for i, c in enumerate(order)}
    pad = 10
    xs, ys = frame[x].astype(float), frame[y].astype(float)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    # One scale for both axes: distances on the map keep their meaning.
    scale = (size - 2 * pad) / (max(x1 - x0, y1 - y0) or 1.0)
    left = pad + ((size - 2 * pad) - (x1 - x0) * scale) / 2
    bottom = size - pad - ((size - 2 * pad) - (y1 - y0) * scale) / 2
    marks = [f'<rect x="0.5" y="0.5" width="{size - 1}" height="{size - 1}" class="frame"/>']
    for c in order:  # one group per category: a smaller file, and styles per group
        chosen = names == c
        dots = "".join(f'<circle cx="{left + (px - x0) * scale:.1f}" cy="{bottom - (py - y0) * scale:.1f}" r="2.4"/>'
                       for px, py in zip(xs[chosen], ys[chosen]))
        marks.append(f'<g class="mark" fill="{color[c]}" fill-opacity="0.75"><title>{esc(c)}</title>{dots}</g>')
    return figure(title, legend(color) + svg(size, size, "".join(marks), title))


def _natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def legend(colors: Mapping[str, str], limit: int = 40) -> str:
    items = list(colors.items())
    shown = "".join(f'<span class="key"><i style="background:{c}"></i>{esc(short(name, 30))}</span>'
                    for name, c in items[:limit])
    more = f'<span class="key">… {len(items) - limit} more</span>' if len(items) > limit else ""
    return f'<div class="legend">{shown}{more}</div>'


def heat_table(frame: pd.DataFrame | None, row: str, column: str, value: str = "count",
               extra: pd.DataFrame | None = None, title: str = "") -> str:
    """A table of counts (`row` x `column`), each cell shaded by its value;
    `extra` adds columns (indexed by `row`) after the total."""
    if frame is None or frame.empty:
        return figure(title, empty_note())
    frame = frame.assign(**{row: frame[row].map(label_text), column: frame[column].map(label_text)})
    grid = frame.pivot_table(index=row, columns=column, values=value, aggfunc="sum", fill_value=0)
    grid = grid.loc[grid.sum(axis=1).sort_values(ascending=False).index]
    grid = grid[sorted(grid.columns, key=_natural_key)]
    top = float(grid.to_numpy().max()) or 1.0
    head = "".join(f"<th>{esc(c)}</th>" for c in grid.columns)
    extra_cols = list(extra.columns) if extra is not None else []
    head += "<th>total</th>" + "".join(f"<th>{esc(c)}</th>" for c in extra_cols)
    body = []
    for name, cells in grid.iterrows():
        tds = []
        for count in cells:
            alpha = 0.08 + 0.77 * count / top if count else 0
            text_color = "#fff" if alpha > 0.5 else "#222"
            tds.append(f'<td style="background:rgba(198,40,40,{alpha:.2f});color:{text_color}">'
                       f"{number(count) if count else ''}</td>")
        tds.append(f"<td class=\"total\">{number(cells.sum())}</td>")
        for c in extra_cols:
            tds.append(f"<td>{number(extra[c].get(name, 0))}</td>")
        body.append(f'<tr><th class="rowname">{esc(name)}</th>{"".join(tds)}</tr>')
    table = (f'<table class="heat"><thead><tr><th></th>{head}</tr></thead>'
             f'<tbody>{"".join(body)}</tbody></table>')
    return figure(title, f'<div class="scroll">{table}</div>')


def line_chart(frame: pd.DataFrame | None, x: str, y: str, series: str | None = None, title: str = "",
               fences: Iterable[tuple[float, str]] = (), y_range: tuple[float, float] | None = None,
               x_name: str = "batch", width: int = 520) -> str:
    """One line per value of `series` (or one line of `y`) over `x` (numbers, e.g. batch ids);
    null values break the line. `fences` are dashed horizontal lines (value, label);
    `y_range` is widened to the data and fences when they fall outside."""
    if frame is None or frame.empty or frame[y].dropna().empty:
        return figure(title, empty_note())
    frame = frame.dropna(subset=[x]).sort_values(x)
    names = frame[series].map(label_text) if series else pd.Series([y] * len(frame), index=frame.index)
    order = sorted(set(names), key=_natural_key)
    color = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(order)}
    fences = [(float(v), text) for v, text in fences]
    values = [float(v) for v in frame[y].dropna()] + [v for v, _ in fences]
    lo, hi = min(values), max(values)
    if y_range:
        lo, hi = min(lo, y_range[0]), max(hi, y_range[1])
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    height, left, right, bottom, top_pad = 200, 46, 12, 30, 8
    plot_w, plot_h = width - left - right, height - bottom - top_pad
    xs = sorted({float(v) for v in frame[x]})
    x0, x1 = xs[0], xs[-1]

    def px(value: float) -> float:
        return left + (plot_w / 2 if x1 == x0 else plot_w * (value - x0) / (x1 - x0))

    def py(value: float) -> float:
        return top_pad + plot_h * (hi - value) / (hi - lo)

    marks = [f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" class="axis"/>',
             f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" class="axis"/>',
             f'<text x="{left - 4}" y="{top_pad + 9}" text-anchor="end" class="num">{number(hi)}</text>',
             f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end" class="num">{number(lo)}</text>']
    if lo < 0 < hi:
        marks.append(f'<line x1="{left}" y1="{py(0):.1f}" x2="{left + plot_w}" y2="{py(0):.1f}" class="zero"/>')
    for value, text in fences:
        marks.append(f'<line x1="{left}" y1="{py(value):.1f}" x2="{left + plot_w}" y2="{py(value):.1f}" '
                     f'class="fence"><title>{esc(text)}</title></line>'
                     f'<text x="{left + plot_w - 2}" y="{py(value) + (11 if py(value) < top_pad + 12 else -3):.1f}" '
                     f'text-anchor="end" class="fence-label">'
                     f"{esc(text)}</text>")
    for name in order:
        mine = frame[names == name]
        segments, current, dots = [], [], []
        for xv, yv in zip(mine[x], mine[y]):
            if yv is None or (isinstance(yv, float) and math.isnan(yv)):
                if current:
                    segments.append(current)
                current = []
                continue
            point = (px(float(xv)), py(float(yv)))
            current.append(point)
            dots.append(f'<circle cx="{point[0]:.1f}" cy="{point[1]:.1f}" r="2.6">'
                        f"<title>{esc(name)} · {esc(x_name)} {number(xv)}: {number(float(yv))}</title></circle>")
        if current:
            segments.append(current)
        lines = "".join('<polyline fill="none" stroke-width="1.6" points="'
                        + " ".join(f"{a:.1f},{b:.1f}" for a, b in seg) + '"/>' for seg in segments if len(seg) > 1)
        marks.append(f'<g class="mark" stroke="{color[name]}" fill="{color[name]}"><title>{esc(name)}</title>'
                     f"{lines}{''.join(dots)}</g>")
    axis_y = top_pad + plot_h + 16
    ticks = xs if len(xs) <= 12 else xs[::math.ceil(len(xs) / 12)]
    marks += [f'<text x="{px(t):.1f}" y="{axis_y}" text-anchor="middle" class="num">{number(t)}</text>'
              for t in ticks]
    chart = svg(width, height, "".join(marks), title)
    return figure(title, (legend(color) if series else "") + chart)


def diverging_bars(frame: pd.DataFrame | None, label: str, value: str, fence: float | None = None,
                   title: str = "", width: int = 460) -> str:
    """Horizontal bars left (negative) or right (positive) of zero, one per row; bars
    beyond ±`fence` (dashed lines) in red."""
    if frame is None or frame.empty or frame[value].dropna().empty:
        return figure(title, empty_note())
    rows = [(label_text(r[label]), r[value]) for _, r in frame.iterrows()]
    extent = max([abs(float(v)) for _, v in rows if v is not None and not math.isnan(float(v))]
                 + [abs(fence or 0)]) * 1.15 or 1.0
    row_h, label_w, pad = 18, 150, 50
    half = (width - label_w - 2 * pad) / 2
    zero = label_w + pad + half
    marks = [f'<line x1="{zero:.1f}" y1="0" x2="{zero:.1f}" y2="{len(rows) * row_h + 4}" class="axis"/>']
    if fence:
        for side in (-1, 1):
            fx = zero + side * half * fence / extent
            marks.append(f'<line x1="{fx:.1f}" y1="0" x2="{fx:.1f}" y2="{len(rows) * row_h + 4}" class="fence">'
                         f"<title>fence {side * fence:+g}</title></line>")
    for i, (name, v) in enumerate(rows):
        y = i * row_h
        marks.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" class="lbl">{esc(short(name, 24))}'
                     f"<title>{esc(name)}</title></text>")
        if v is None or math.isnan(float(v)):
            marks.append(f'<text x="{zero + 4:.1f}" y="{y + 13}" class="num">–</text>')
            continue
        v = float(v)
        length = max(1.0, half * abs(v) / extent)
        x = zero if v >= 0 else zero - length
        over = fence is not None and abs(v) > fence
        marks.append(f'<rect class="mark" x="{x:.1f}" y="{y + 3}" width="{length:.1f}" height="{row_h - 6}" '
                     f'fill="{DECISION_COLORS["exclude"] if over else BAR_COLOR}"><title>{esc(name)}: '
                     f"{v:+.3f}</title></rect>")
        tx = x + length + 4 if v >= 0 else x - 4
        anchor = "start" if v >= 0 else "end"
        marks.append(f'<text x="{tx:.1f}" y="{y + 13}" text-anchor="{anchor}" class="num">{v:+.3f}</text>')
    return figure(title, svg(width, len(rows) * row_h + 4, "".join(marks), title))


def figure(title: str, content: str) -> str:
    caption = f"<figcaption>{esc(title)}</figcaption>" if title else ""
    return f'<figure class="panel">{caption}{content}</figure>'


# ---------------------------------------------------------------- galleries


def data_uri(png: bytes | None) -> str | None:
    if not png:
        return None
    return "data:image/png;base64," + base64.b64encode(bytes(png)).decode("ascii")


def gallery(items: list[dict], empty: str = "Nothing here.") -> str:
    """Thumbnails with captions. Each item: `png` (bytes or None) and `caption` (list of lines)."""
    if not items:
        return empty_note(empty)
    tiles = []
    for item in items:
        uri = data_uri(item.get("png"))
        lines = [label_text(line, "") for line in item.get("caption", [])]
        alt = " · ".join(l for l in lines if l)
        picture = (f'<img src="{uri}" alt="{esc(alt)}" loading="eager">' if uri
                   else '<div class="noimg">no image</div>')
        caption = "".join(f"<span>{esc(l)}</span>" for l in lines if l)
        tiles.append(f'<figure class="thumb">{picture}<figcaption>{caption}</figcaption></figure>')
    return f'<div class="gallery">{"".join(tiles)}</div>'


# ---------------------------------------------------------------- configuration


def settings_block(settings: Mapping, environ: Mapping[str, str] | None = None) -> str:
    text = yaml.safe_dump(redact(dict(settings), environ), sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=100)
    return f'<pre class="config">{esc(text)}</pre>'


# ---------------------------------------------------------------- sections


def counts_block(counts: Mapping[str, object]) -> str:
    cells = "".join(f'<div class="count"><b>{esc(v) if isinstance(v, str) else number(v)}</b>'
                    f"<span>{esc(k)}</span></div>" for k, v in counts.items())
    return f'<div class="counts">{cells}</div>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def what_ran_section(notes: pd.DataFrame | None) -> str:
    """Each stage's latest run: completed or failed, and what it could not do and why."""
    if notes is None or notes.empty:
        return note("No stage has recorded its run (an output written before run notes existed).")
    rows = []
    for row in notes.itertuples():
        css = {"error": "bad", "warning": "warn"}.get(row.level, "")
        rows.append(f'<tr class="{css}"><th class="rowname">{esc(row.stage)}</th><td>{esc(row.level)}</td>'
                    f'<td class="message">{esc(row.message)}</td><td>{esc(row.run_id)}</td></tr>')
    return ('<table class="notes"><thead><tr><th>stage</th><th>level</th><th>what happened</th>'
            f'<th>run</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def overview_section(data: Mapping | None) -> str:
    if not data or data.get("missing"):
        return missing_note((data or {}).get("missing") or ["instances"])
    parts = [counts_block(data["counts"])]
    if data.get("note"):
        parts.append(note(data["note"]))
    charts = [bar_chart(frame, label="value", title=name) for name, frame in data.get("categories", {}).items()]
    charts += [distribution(frame, title=name, unit=unit)
               for name, (frame, unit) in data.get("distributions", {}).items()]
    parts.append(f'<div class="grid">{"".join(charts)}</div>')
    return "".join(parts)


def decisions_section(data: Mapping | None) -> str:
    if not data or data.get("missing"):
        return missing_note((data or {}).get("missing") or ["inclusion"])
    totals = data["by_decision"]
    total = int(totals["count"].sum()) if not totals.empty else 0
    counts = {"objects decided": total}
    for decision in DECISION_COLORS:
        n = int(totals.loc[totals["decision"] == decision, "count"].sum()) if total else 0
        share = f" ({100 * n / total:.1f} %)" if total else ""
        counts[f"{decision}{share}"] = n
    parts = [counts_block(counts),
             stacked_bars(data.get("by_site"), label="site", part="decision", colors=DECISION_COLORS,
                          title="Decision by site"),
             heat_table(data.get("reasons_by_site"), row="reason", column="site", extra=data.get("reason_totals"),
                        title="Objects per reason and site (an object can have several reasons; "
                              "'excludes' counts those the reason excludes)")]
    return "".join(parts)


def map_section(data: Mapping | None) -> str:
    if not data or data.get("missing"):
        return missing_note((data or {}).get("missing") or ["clusters"])
    points = data["points"]
    text = (f"{number(len(points))} of {number(data['total'])} embedded instances shown"
            + (" (a random sample)" if len(points) < data["total"] else "")
            + f", placed by {data.get('method', 'PCA')} of the image embeddings: close points look alike.")
    plots = [scatter(points, "map_x", "map_y", "cluster", title="Coloured by cluster")]
    if data.get("decisions_missing"):
        plots.append(figure("Coloured by decision", missing_note(data["decisions_missing"])))
    else:
        plots.append(scatter(points, "map_x", "map_y", "decision", colors=DECISION_COLORS,
                             title="Coloured by decision"))
    return note(text) + f'<div class="grid">{"".join(plots)}</div>'


def galleries_section(data: Mapping | None) -> str:
    if not data or data.get("missing"):
        return missing_note((data or {}).get("missing") or ["inclusion"])
    parts = ["<h3>Excluded, by reason</h3>"]
    if data.get("per_reason_note"):
        parts.append(note(data["per_reason_note"]))
    reasons = data.get("exclusions") or {}
    if not reasons:
        parts.append(empty_note("No object was excluded."))
    for reason, entry in reasons.items():
        parts.append(f'<h4 id="reason-{esc(reason)}">{esc(reason)} '
                     f'<small>{number(entry["total"])} excluded</small></h4>')
        parts.append(gallery(entry["items"]))
    parts.append('<h3 id="review-queue">Review queue</h3>')
    if data.get("review_missing"):
        parts.append(missing_note(data["review_missing"]))
    else:
        if data.get("review_note"):
            parts.append(note(data["review_note"]))
        parts.append(gallery(data.get("review") or [], empty="The review queue is empty."))
    return "".join(parts)


def agreement_section(data: Mapping) -> str:
    """`triage annotate agreement`: agreement per batch, drift per annotator, flags."""
    batches, drift, latest = data.get("batches"), data.get("drift"), data.get("latest")
    fence_d, fence_s = data.get("disagreement_max"), data.get("box_size_bias_max")
    parts = []
    if batches is not None and not batches.empty:
        parts.append(counts_block({"batches": len(batches), "overlap items": int(batches["n_items"].sum()),
                                   "annotators": 0 if drift is None or drift.empty else drift["annotator"].nunique(),
                                   "flagged for drift": len(data.get("flagged") or [])}))
    parts.append(note("Overlap items are those two or more annotators labelled in a batch. Disagreement: the "
                      "share of an annotator's overlap items where their label differs from the majority of the "
                      "other annotators. Box size bias: log of their boxes' size per side against the median box "
                      "of the same object (negative: smaller). A batch with fewer than "
                      f"{data.get('min_items', '?')} overlap items gives no figure; an annotator is flagged when "
                      "their latest figure crosses the dashed fence."))
    long = pd.DataFrame(columns=["batch_id", "measure", "value"])
    if batches is not None and not batches.empty:
        measures = {"fleiss_kappa": "Fleiss' kappa", "krippendorff_alpha": "Krippendorff's alpha",
                    "mean_pairwise_kappa": "mean pairwise Cohen's kappa"}
        long = batches.melt(id_vars=["batch_id"], value_vars=list(measures), var_name="measure")
        long["measure"] = long["measure"].map(measures)
        long["value"] = long["value"].astype(float)
    charts = [line_chart(long, "batch_id", "value", series="measure", y_range=(0.0, 1.0),
                         title="Agreement per batch"),
              line_chart(drift, "batch_id", "disagreement", series="annotator", y_range=(0.0, 0.0),
                         fences=[(fence_d, f"fence {fence_d:g}")] if fence_d is not None else (),
                         title="Disagreement with the others' majority, per annotator and batch"),
              line_chart(drift, "batch_id", "box_size_bias", series="annotator",
                         fences=[(fence_s, f"+{fence_s:g}"), (-fence_s, f"-{fence_s:g}")] if fence_s else (),
                         title="Box size bias per annotator and batch (negative: smaller boxes)"),
              diverging_bars(latest, "annotator", "box_size_bias", fence=fence_s,
                             title="Box size bias per annotator, latest batch")]
    if batches is not None and not batches.empty and batches["mean_box_iou"].notna().any():
        charts.append(line_chart(batches.assign(measure="mean IoU of matched boxes"), "batch_id", "mean_box_iou",
                                 series="measure", y_range=(0.0, 1.0), title="Mean box IoU per batch"))
    parts.append(f'<div class="grid">{"".join(charts)}</div>')
    parts.append("<h3>Flagged annotators</h3>")
    flagged = data.get("flagged") or []
    if not flagged:
        parts.append(empty_note("No annotator is flagged for drift."))
    for entry in flagged:
        reasons = "".join(f"<li>{esc(r)}</li>" for r in entry.get("reasons") or [])
        rows = "".join(
            f"<tr><td class=\"path\" title=\"{esc(w.get('path'))}\">{esc(short(file_name(w.get('path')), 60))}</td>"
            f"<td>{esc(label_text(w.get('label'), '–'))}</td><td>{esc(label_text(w.get('others_label'), '(tie)'))}</td>"
            f"<td>{number(w.get('box_agreement'))}</td><td>{number(w.get('misalignment'))}</td></tr>"
            for w in entry.get("worst_items") or [])
        table = (f'<table class="heat"><thead><tr><th>item</th><th>their label</th><th>others\' majority</th>'
                 f"<th>box agreement</th><th>misalignment</th></tr></thead><tbody>{rows}</tbody></table>"
                 if rows else empty_note("No misaligned item listed."))
        parts.append(f'<h4>{esc(entry.get("annotator"))} <small>latest batch {esc(entry.get("batch_id"))}</small></h4>'
                     f'<ul class="reasons">{reasons}</ul><div class="scroll">{table}</div>')
    return "".join(parts)


def file_name(path) -> str:
    """The last two parts of a path."""
    parts = (path or "").rstrip("/").split("/")
    return "/".join(parts[-2:])


def configuration_section(settings: Mapping, environ: Mapping[str, str] | None,
                          tables: Mapping[str, bool]) -> str:
    present = ", ".join(f"<code>{esc(t)}</code>" for t, ok in tables.items() if ok) or "none"
    absent = ", ".join(f"<code>{esc(t)}</code>" for t, ok in tables.items() if not ok) or "none"
    return (f"<p>Tables found: {present}.<br>Tables not found: {absent}.</p>"
            "<p>Settings of this run (credentials redacted):</p>" + settings_block(settings, environ))


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1d2b3a;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c9d3de}
nav{padding:8px 28px;background:#fff;border-bottom:1px solid #dde2e8;position:sticky;top:0;z-index:1}
nav a{margin-right:18px;color:#1d4f91;text-decoration:none}
main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;margin:18px 0;padding:8px 20px 16px}
h2{font-size:18px;margin:10px 0}
h3{font-size:15px;margin:18px 0 6px}
h4{font-size:13px;margin:14px 0 6px;font-family:ui-monospace,monospace}
h4 small{font-family:system-ui,sans-serif;font-weight:normal;color:#666;margin-left:6px}
.counts{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.count{border:1px solid #dde2e8;border-radius:6px;padding:6px 12px;min-width:110px}
.count b{display:block;font-size:20px}
.count span{color:#555;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure.panel{margin:8px 0;padding:6px 8px;border:1px solid #eceff3;border-radius:4px}
figure.panel figcaption{font-weight:600;margin-bottom:4px;max-width:540px}
svg.chart text{font-size:11px;fill:#333}
svg.chart .num{fill:#555}
svg.chart .axis{stroke:#999}
svg.chart .frame{fill:none;stroke:#ddd}
.legend{display:flex;flex-wrap:wrap;gap:4px 12px;max-width:520px;font-size:12px;margin-bottom:4px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px;vertical-align:middle}
.scroll{overflow-x:auto}
table.heat{border-collapse:collapse;font-size:12px}
table.heat th,table.heat td{border:1px solid #e3e6ea;padding:3px 7px;text-align:right}
table.heat th.rowname{text-align:left;font-family:ui-monospace,monospace;font-weight:normal}
table.heat td.total{font-weight:600}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure.thumb{margin:0;width:138px;font-size:11px;color:#444}
figure.thumb img,figure.thumb .noimg{width:128px;height:128px;object-fit:contain;background:#000;display:block;
  border-radius:3px}
figure.thumb .noimg{color:#bbb;display:flex;align-items:center;justify-content:center}
figure.thumb figcaption span{display:block;overflow-wrap:anywhere}
.empty,.missing,.note{color:#555}
.missing{background:#fff6e0;border:1px solid #f0d9a0;padding:6px 10px;border-radius:4px}
pre.config{background:#f3f4f6;padding:10px;border-radius:4px;overflow:auto;max-height:520px;font-size:12px}
code{font-family:ui-monospace,monospace}
svg.chart .fence{stroke:#c62828;stroke-dasharray:5 3}
svg.chart .fence-label{fill:#c62828}
svg.chart .zero{stroke:#ccc}
ul.reasons{margin:2px 0 6px;color:#8a1c1c}
table.notes{border-collapse:collapse;margin:6px 0}
table.notes td,table.notes th{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}
table.notes tr.warn td{background:#fff6e0}
table.notes tr.bad td{background:#fde8e8}
table.heat td.path{text-align:left;font-family:ui-monospace,monospace}
"""


def render_page(report: Mapping) -> str:
    """The whole page. `report` holds `title`, `subtitle`, the data of each section
    (see jobs/report.py), `settings`, `environ` and `tables` (name -> present)."""
    bodies = {
        "what-ran": what_ran_section(report.get("notes")),
        "overview": overview_section(report.get("overview")),
        "decisions": decisions_section(report.get("decisions")),
        "embedding-map": map_section(report.get("map")),
        "galleries": galleries_section(report.get("galleries")),
        "configuration": configuration_section(report.get("settings") or {}, report.get("environ"),
                                               report.get("tables") or {}),
    }
    shown = list(SECTIONS)
    if report.get("agreement"):  # only after `triage annotate agreement`
        bodies["agreement"] = agreement_section(report["agreement"])
        shown.insert(len(shown) - 1, ("agreement", "Annotation agreement"))
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title in shown)
    sections = "".join(f'<section id="{sid}"><h2>{esc(title)}</h2>{bodies[sid]}</section>'
                       for sid, title in shown)
    title = report.get("title") or "Triage report"
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            # Nothing may be fetched: data URIs only, no scripts.
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            f"img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(report.get('subtitle', ''))}</p></header>"
            f"<nav>{nav}</nav><main>{sections}</main></body></html>\n")
