"""`bench leaderboard --format html`: the leaderboard as one self-contained HTML page.

One file, readable offline and without a server: the styles and the plotting
script are inline (about 150 lines of plain JavaScript drawing SVG; no
library, no network request at view time). Per dataset it shows the ranking
(as in ``LEADERBOARD.md``), an interactive Pareto plot of every configuration
(task accuracy against leakage, error bars over seeds, each method's front as a
step line; hovering a point shows its configuration, seeds and the attackers
that set its leakage; clicking a legend entry hides a method) and the
configurations table; then the provenance (experiments, commits, dates,
generator). The figures come from :func:`removal_bench.reporting.documents.datasets_document`, the
same document ``--json`` prints, embedded as JSON.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Iterable

from removal_bench.reporting.cells import _cell, _date, seeds_cell
from removal_bench.reporting import files
from removal_bench.reporting import summaries
from removal_bench.reporting import tables
from removal_bench.core.errors import UserError
from removal_bench.reporting.documents import datasets_document

LEADERBOARD_FORMATS = ("markdown", "html")
DEFAULT_OUTPUTS = {"markdown": Path("results") / "LEADERBOARD.md", "html": Path("results") / "leaderboard.html"}


def parse_leaderboard_formats(text: str | None) -> tuple[str, ...]:
    """``markdown`` (default), ``html`` or ``markdown,html``; anything else is a UserError."""
    names = [name.strip().lower() for name in (text or "markdown").split(",")]
    names = [{"md": "markdown", "htm": "html"}.get(name, name) for name in names]
    unknown = [name for name in names if name not in LEADERBOARD_FORMATS]
    if unknown or not names:
        raise UserError(f"unknown leaderboard --format {unknown[0] if unknown else text!r} (valid: {', '.join(LEADERBOARD_FORMATS)})")
    return tuple(dict.fromkeys(names))


def leaderboard_targets(formats: Iterable[str], output: str | None) -> dict[str, Path]:
    """Where each format goes: ``--output`` names the one file of a single format; else the defaults under results/."""
    formats = list(formats)
    if output and len(formats) > 1:
        raise UserError("--output names one file: give one --format with it (each format has its default path otherwise)")
    return {name: Path(output) if output else DEFAULT_OUTPUTS[name] for name in formats}


def datasets_in_page(page: str) -> list[str]:
    """The datasets a page written by :func:`write_page` ranks (the keys of its embedded data); [] if none."""
    import json
    import re

    found = re.search(r'<script type="application/json" id="bench-data">(.*?)</script>', page, re.S)
    try:
        data = json.loads(found.group(1)) if found else {}
    except ValueError:
        return []
    return sorted(data) if isinstance(data, dict) else []


def _escape(value) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: list[str], body: list[list[str]], numeric_from: int = 0) -> str:
    head = "".join(f"<th>{_escape(h)}</th>" for h in headers)
    rows = []
    for cells in body:
        rows.append("<tr>" + "".join(
            f'<td class="{"num" if index >= numeric_from and numeric_from else ""}">{_escape(cell)}</td>'
            for index, cell in enumerate(cells)
        ) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _standing(standing) -> str:
    """The Markdown leaderboard's statistics as HTML: reliability, tied ranks with intervals, budgets."""
    from removal_bench.reporting import standings

    reliability = standings.reliability_text(standing).replace("**", "")
    return (
        f"<p>{_escape(reliability)}</p>"
        "<h3>Methods, ranked by hypervolume</h3>"
        f"{standings.ranking_table(standing, 'html')}"
        "<h3>Best task accuracy at a leakage budget</h3>"
        f"{standings.budget_table(standing, 'html')}"
        f'<p class="note">{_escape(standings.explain(standing.replicates).replace("`", ""))}</p>'
    )


def _overview(found) -> str:
    """The table that opens the page: methods x datasets, tied rank and hypervolume interval per cell."""
    from removal_bench.reporting import standings

    headers, body = standings.overview(found)
    notes = "".join(f"<li>{_escape(dataset)}: {_escape('; '.join(standing.reliability.flags))}</li>"
                    for dataset, standing in found.items() if standing.reliability.flagged)
    return ('<section id="overview"><h2>Overview</h2><p>Per dataset, each method\'s tied rank and its hypervolume '
            "with the 95% bootstrap interval; methods in order of their mean rank.</p>"
            f"{_table(headers, body)}" + (f'<ul class="note">{notes}</ul>' if notes else "") + "</section>")


def _head_figure(dataset: str, image: bytes | None) -> str:
    """The head-versus-attacker picture as an embedded PNG (the page stays one self-contained file)."""
    import base64

    from removal_bench.reporting.plots import HEAD_CAPTION

    if image is None:
        return ""
    encoded = base64.b64encode(image).decode("ascii")
    return (f'<h3>Own head against fresh attackers</h3><figure class="head-plot"><img alt="{_escape(dataset)}: '
            f'each method\'s own head against the fresh attackers" src="data:image/png;base64,{encoded}" '
            f'style="max-width:100%"><figcaption>{_escape(HEAD_CAPTION)}</figcaption></figure>')


def _configurations(rows: list[summaries.Row]) -> str:
    headers = ["", "configuration", "seeds"] + [tables.HEADERS[m] for m in tables.TABLE_METRICS] + ["attackers", "notes"]
    body = []
    for row in rows:
        mark = ("*" if row.pareto else "") + (">" if row.selected else "") + ("r" if row.refined else "")
        attackers = ", ".join(f"{name} x{count}" for name, count in sorted(row.attackers.items()))
        body.append([mark, row.label, seeds_cell(row)]
                    + [_cell(row.stats.get(m)) for m in tables.TABLE_METRICS] + [attackers, tables.notes(row)])
    return _table(headers, body, numeric_from=2)


def page(by_dataset: dict[str, list[summaries.Row]], experiments: list[str], max_leakage: float | None, generated: str,
         generator_commit: str | None = None, found: dict | None = None, heads: dict[str, bytes] | None = None,
         source: str | None = None, plugins: list[str] | None = None) -> str:
    """The whole page as a string. ``source``: where the runs were read (:func:`tables.source_text`);
    ``plugins``: the plugins' provenance lines (:func:`removal_bench.reporting.leaderboard.plugin_lines`). ``found``: :func:`removal_bench.reporting.standings.of_datasets`, and ``heads``:
    :func:`removal_bench.reporting.publish.head_images`, when the caller has them."""
    from removal_bench.reporting.publish import head_images
    from removal_bench.reporting.standings import of_datasets

    found = found if found is not None else of_datasets(by_dataset, max_leakage)
    heads = heads if heads is not None else head_images(by_dataset)
    document = datasets_document(by_dataset, max_leakage, found)  # also marks each method's selected row
    bound = f"validation leakage &le; {max_leakage:g}" if max_leakage is not None else "no bound on validation leakage"
    sections, commits, trials = [], set(), 0
    for dataset, rows in sorted(by_dataset.items()):
        method_summaries = summaries.methods_of(rows, max_leakage)
        commits.update(c for s in method_summaries for c in s.commits)
        trials += sum(s.trials for s in method_summaries)
        anchor = _escape(dataset)
        reading = tables.heads_reading_y(rows)
        sections.append(
            f'<section class="dataset" id="dataset-{anchor}"><h2>{anchor}</h2>'
            f"<p>{_escape(summaries.dataset_setting(dataset, rows)[0].replace('**', ''))}</p>"
            f"{_standing(found[dataset])}"
            f'<h3>Pareto plot</h3><figure class="front-plot" data-dataset="{anchor}"></figure>'
            + "".join(f'<p class="note">{_escape(method)}: curve does not start at vanilla: {_escape(note)}.</p>'
                      for method, note in tables.curve_notes(rows).items())
            + f"{_head_figure(dataset, heads.get(dataset))}"
            + (f'<p class="note">{_escape(reading)}</p>' if reading else "")
            + f"<details><summary>Every configuration ({len(rows)})"
            + ("; r: a strength added by refinement" if any(r.refined for r in rows) else "")
            + f"</summary>{_configurations(rows)}</details></section>"
        )
    starts = [r.first_start for rows in by_dataset.values() for r in rows if math.isfinite(r.first_start)]
    ends = [r.last_start for rows in by_dataset.values() for r in rows if math.isfinite(r.last_start)]
    period = f"{_date(min(starts))} to {_date(max(ends))}" if starts and ends else "unknown"
    source = source or tables.source_text(experiments)
    provenance = (
        "<section id=\"provenance\"><h2>Provenance</h2><ul>"
        f"<li>read from {_escape(source)}</li>"
        f"<li>{trials} trial runs, started {_escape(period)}</li>"
        f"<li>git commit(s) of those runs: {_escape(', '.join(sorted(commits)) or 'unknown')}</li>"
        + "".join(f"<li>plugin {_escape(line)}</li>" for line in plugins or [])
        + f"<li>generated {_escape(generated)} by <code>bench leaderboard --format html</code>"
        f"{' at commit ' + _escape(generator_commit) if generator_commit else ''}</li>"
        "<li>every figure can be re-measured: <code>bench attack RUN_ID</code> on a trial logged with "
        "<code>--log-models</code> (README)</li></ul></section>"
    )
    navigation = " ".join(f'<a href="#dataset-{_escape(d)}">{_escape(d)}</a>' for d in sorted(by_dataset))
    data = json.dumps(document, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>removal-bench leaderboard</title><style>{STYLE}</style></head><body>"
        "<h1>removal-bench leaderboard</h1>"
        f"<p class=\"lead\">Generated {_escape(generated)} from {_escape(source)}. "
        "Methods are ranked by the hypervolume of their front in the (task accuracy, 1 - leak norm) plane above "
        "(majority-class accuracy, 0) (docs/PROTOCOL.md). Each method's figures are those of its selected configuration: "
        f"best mean validation task accuracy with {bound}, among configurations with no FAILED seed; test figures "
        "are mean &plusmn; standard error over seeds. Leakage is the test balanced accuracy of the strongest fresh "
        "attacker (chosen on val) on the frozen bottleneck. In the plots, hover a point for its configuration, "
        "seeds and attackers; click a method in the legend to hide it.</p>"
        f"<nav>{navigation}</nav>"
        + _overview(found) + "".join(sections) + provenance
        + '<div id="tooltip" role="tooltip" hidden></div>'
        f'<script type="application/json" id="bench-data">{data}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_page(path: Path, by_dataset: dict[str, list[summaries.Row]], experiments: list[str], max_leakage: float | None,
               generated: str, found: dict | None = None, heads: dict[str, bytes] | None = None,
               source: str | None = None, plugins: list[str] | None = None) -> Path:
    from removal_bench.running.tracking import git_commit

    files.write_text(path, page(by_dataset, experiments, max_leakage, generated, git_commit(), found, heads, source, plugins),
                     "the leaderboard page")
    return path


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1.05em;margin:1.2em 0 .4em}
.lead{color:#444;max-width:70em}nav a{margin-right:1em}
table{border-collapse:collapse;font-size:12.5px;margin:.3em 0}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
th{background:#f6f6f6}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
figure.front-plot{margin:0}figure.front-plot svg{max-width:100%;height:auto}
.legend{display:flex;flex-wrap:wrap;gap:.4em 1.2em;font-size:12.5px;margin:.3em 0}
.legend span{cursor:pointer;user-select:none}.legend span.off{opacity:.35;text-decoration:line-through}
.legend i{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px}
svg .axis line,svg .axis path{stroke:#888}svg text{font:11px system-ui,sans-serif;fill:#333}
svg .grid line{stroke:#eee}svg .point{cursor:pointer}svg .point:hover{stroke-width:3}
svg .hidden{display:none}
#tooltip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;border-radius:4px;padding:6px 8px;
font-size:12px;box-shadow:0 2px 6px rgba(0,0,0,.2);max-width:28em;z-index:10}#tooltip div:first-child{font-weight:600}
.error{color:#b00}
"""

# Plain JavaScript, no library: reads #bench-data, draws one SVG per figure.front-plot.
SCRIPT = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var data = JSON.parse(document.getElementById("bench-data").textContent);
  var tooltip = document.getElementById("tooltip");

  function el(name, attributes, parent) {
    var node = document.createElementNS(NS, name);
    for (var key in attributes) node.setAttribute(key, attributes[key]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function figure(stat) { return stat && stat.mean !== null ? stat.mean : null; }
  function error(stat) { return stat && stat.se !== null ? stat.se : 0; }
  function fmt(stat) {
    if (!stat || stat.mean === null) return "-";
    return stat.mean.toFixed(3) + (stat.se !== null ? " \u00b1 " + stat.se.toFixed(3) : "");
  }
  function ticks(low, high, count) {
    // Round steps (1, 2 or 5 times a power of ten), as a person would label an axis.
    var raw = (high - low) / count, power = Math.pow(10, Math.floor(Math.log10(raw))), out = [];
    var step = [1, 2, 5, 10].map(function (m) { return m * power; }).filter(function (s) { return s >= raw; })[0];
    for (var v = Math.ceil(low / step - 1e-9) * step; v <= high + 1e-9; v += step) out.push(v);
    return {values: out, digits: Math.max(0, -Math.floor(Math.log10(step) + 1e-9))};
  }
  function front(points) {
    // Each method's front: no other of its points has both higher accuracy and lower leakage.
    return points.filter(function (p) {
      return !points.some(function (q) { return q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y); });
    }).sort(function (a, b) { return a.x - b.x; });
  }
  function describe(row) {
    var seeds = row.seeds, lines = [row.label + "  (" + row.method + ")"];
    lines.push("seeds: " + seeds.finished + "/" + seeds.expected.length + " finished" +
      (seeds.failed ? ", " + seeds.failed + " failed" : "") + (seeds.stopped ? ", " + seeds.stopped + " stopped early" : "") +
      (seeds.missing.length ? ", missing " + seeds.missing.join(" ") : "") +
      (seeds.expected.length ? " (seeds " + seeds.expected.join(", ") + ")" : ""));
    lines.push("task acc " + fmt(row.metrics.accuracy) + ", leakage " + fmt(row.metrics.leakage));
    lines.push("leak norm " + fmt(row.metrics.leakage_norm) + ", MI bits " + fmt(row.metrics.mi_bits) + ", floor " + fmt(row.metrics.floor_leakage));
    var attackers = Object.keys(row.attackers).map(function (name) { return name + " \u00d7" + row.attackers[name]; });
    lines.push("attacker (best on val): " + (attackers.length ? attackers.join(", ") : "-"));
    var marks = [];
    if (row.pareto) marks.push("Pareto-optimal");
    if (row.selected) marks.push("its method's selected configuration");
    if (row.refined) marks.push("a strength added by refinement (round " + row.refined + ")");
    if (marks.length) lines.push(marks.join("; "));
    return lines;
  }
  function show(event, lines) {
    tooltip.textContent = "";
    lines.forEach(function (line) { var div = document.createElement("div"); div.textContent = line; tooltip.appendChild(div); });
    tooltip.hidden = false;
    var x = event.clientX + 14, y = event.clientY + 14;
    var width = tooltip.offsetWidth, height = tooltip.offsetHeight;
    if (x + width > window.innerWidth) x = Math.max(0, event.clientX - width - 14);
    if (y + height > window.innerHeight) y = Math.max(0, event.clientY - height - 14);
    tooltip.style.left = x + "px";
    tooltip.style.top = y + "px";
  }
  function hide() { tooltip.hidden = true; }

  function plot(container, dataset) {
    var rows = dataset.configurations.filter(function (r) {
      return figure(r.metrics.accuracy) !== null && figure(r.metrics.leakage) !== null;
    });
    var methods = [];
    dataset.configurations.forEach(function (r) { if (methods.indexOf(r.method) < 0) methods.push(r.method); });
    methods.sort();
    var W = 720, H = 430, left = 58, right = 16, top = 14, bottom = 46;
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", "class": "pareto-plot",
                         "aria-label": "task accuracy against leakage"}, null);
    var xs = [], ys = [];
    rows.forEach(function (r) {
      var x = figure(r.metrics.leakage), y = figure(r.metrics.accuracy), ex = error(r.metrics.leakage), ey = error(r.metrics.accuracy);
      xs.push(x - ex, x + ex); ys.push(y - ey, y + ey);
    });
    var x0 = Math.max(0, Math.min.apply(null, xs.concat([1])) - 0.02), x1 = Math.min(1, Math.max.apply(null, xs.concat([0])) + 0.02);
    var y0 = Math.max(0, Math.min.apply(null, ys.concat([1])) - 0.02), y1 = Math.min(1, Math.max.apply(null, ys.concat([0])) + 0.02);
    if (x1 - x0 < 0.05) { x0 = Math.max(0, x0 - 0.05); x1 = Math.min(1, x1 + 0.05); }
    if (y1 - y0 < 0.05) { y0 = Math.max(0, y0 - 0.05); y1 = Math.min(1, y1 + 0.05); }
    function sx(v) { return left + (v - x0) / (x1 - x0) * (W - left - right); }
    function sy(v) { return H - bottom - (v - y0) / (y1 - y0) * (H - top - bottom); }
    var grid = el("g", {"class": "grid"}, svg), axis = el("g", {"class": "axis"}, svg);
    var xt = ticks(x0, x1, 6), yt = ticks(y0, y1, 5);
    xt.values.forEach(function (t) {
      el("line", {x1: sx(t), x2: sx(t), y1: top, y2: H - bottom}, grid);
      el("text", {x: sx(t), y: H - bottom + 15, "text-anchor": "middle"}, axis).textContent = t.toFixed(xt.digits);
    });
    yt.values.forEach(function (t) {
      el("line", {x1: left, x2: W - right, y1: sy(t), y2: sy(t)}, grid);
      el("text", {x: left - 6, y: sy(t) + 4, "text-anchor": "end"}, axis).textContent = t.toFixed(yt.digits);
    });
    el("line", {x1: left, x2: W - right, y1: H - bottom, y2: H - bottom}, axis);
    el("line", {x1: left, x2: left, y1: top, y2: H - bottom}, axis);
    el("text", {x: (left + W - right) / 2, y: H - 8, "text-anchor": "middle"}, axis).textContent =
      "leakage (test balanced accuracy of the best fresh attacker; lower is better)";
    el("text", {x: 14, y: (top + H - bottom) / 2, "text-anchor": "middle",
                transform: "rotate(-90 14 " + (top + H - bottom) / 2 + ")"}, axis).textContent = "task accuracy (test)";
    var layers = {};
    methods.forEach(function (method, index) {
      var colour = COLOURS[index % COLOURS.length];
      var layer = layers[method] = el("g", {"class": "method", "data-method": method}, svg);
      var mine = rows.filter(function (r) { return r.method === method; });
      var points = mine.map(function (r) { return {x: figure(r.metrics.leakage), y: figure(r.metrics.accuracy)}; });
      var line = front(points);
      if (line.length > 1) {
        var d = "M" + sx(line[0].x) + "," + sy(line[0].y);
        for (var i = 1; i < line.length; i++) d += " H" + sx(line[i].x) + " V" + sy(line[i].y);
        el("path", {d: d, fill: "none", stroke: colour, "stroke-width": 1.4, opacity: 0.8}, layer);
      }
      mine.forEach(function (r) {
        var x = figure(r.metrics.leakage), y = figure(r.metrics.accuracy), ex = error(r.metrics.leakage), ey = error(r.metrics.accuracy);
        if (ex) el("line", {x1: sx(x - ex), x2: sx(x + ex), y1: sy(y), y2: sy(y), stroke: colour, opacity: 0.6}, layer);
        if (ey) el("line", {x1: sx(x), x2: sx(x), y1: sy(y - ey), y2: sy(y + ey), stroke: colour, opacity: 0.6}, layer);
        var point = el("circle", {cx: sx(x), cy: sy(y), r: r.selected ? 6 : 4.5, "class": "point", stroke: colour,
                                  "stroke-width": 1.6, fill: r.pareto ? colour : "#fff", tabindex: 0,
                                  "data-label": r.label}, layer);
        if (r.refined) point.setAttribute("stroke-dasharray", "2 1.5");  // a strength added by refinement
        var lines = describe(r);
        el("title", {}, point).textContent = lines.join("\n");
        point.addEventListener("mouseenter", function (event) { show(event, lines); });
        point.addEventListener("mousemove", function (event) { show(event, lines); });
        point.addEventListener("mouseleave", hide);
        point.addEventListener("focus", function () {
          var box = point.getBoundingClientRect();
          show({clientX: box.right, clientY: box.bottom}, lines);
        });
        point.addEventListener("blur", hide);
      });
    });
    var legend = document.createElement("div");
    legend.className = "legend";
    methods.forEach(function (method, index) {
      var entry = document.createElement("span"), dot = document.createElement("i");
      dot.style.background = COLOURS[index % COLOURS.length];
      entry.appendChild(dot);
      entry.appendChild(document.createTextNode(method));
      entry.title = "click to hide or show " + method;
      entry.addEventListener("click", function () {
        entry.classList.toggle("off");
        layers[method].classList.toggle("hidden");
      });
      legend.appendChild(entry);
    });
    container.appendChild(legend);
    container.appendChild(svg);
    var caption = document.createElement("figcaption");
    caption.textContent = rows.length + " configurations with results; filled: Pareto-optimal among all methods; " +
      "large: each method's selected configuration; bars: standard error over seeds; lines: each method's front" +
      (rows.some(function (r) { return r.refined; }) ? "; dashed outline: a strength added by refinement." : ".");
    container.appendChild(caption);
  }

  var drawn = 0;
  Array.prototype.forEach.call(document.querySelectorAll("figure.front-plot"), function (container) {
    var dataset = data[container.getAttribute("data-dataset")];
    if (!dataset) throw new Error("no data for dataset " + container.getAttribute("data-dataset"));
    plot(container, dataset);
    drawn += 1;
  });
  document.body.setAttribute("data-plots", String(drawn));
})();
"""
