"""Render: configuration and method tables (terminal, Markdown, CSV, LaTeX) and the leaderboard's text."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from removal_bench.reporting import standings
from removal_bench.reporting.cells import _cell, _date, _number, seeds_cell
from removal_bench.reporting.summaries import CSV_METRICS, MethodSummary, Row, dataset_setting

REFINED_MARK = ("r: a strength added by refinement (bench sweep --refine: the log-space midpoint of the neighbouring "
                "strengths whose validation figures differ most, docs/PROTOCOL.md); ")
TABLE_METRICS = ("accuracy", "leakage", "leakage_norm", "mi_bits", "floor_leakage", "head_acc", "head_predicts_y")


HEADERS = {
    "accuracy": "task acc",
    "leakage": "leakage",
    "leakage_norm": "leak norm",
    "mi_bits": "MI bits",
    "floor_leakage": "floor",
    "head_acc": "head acc",
    "head_predicts_y": "head=y",
    "val_accuracy": "val acc",
    "val_leakage": "val leakage",
}


FORMATS = ("markdown", "csv", "latex")


def notes(row: Row, width: int = 80) -> str:
    parts = []
    if row.failed:
        parts.append(f"FAILED {row.failed}: " + "; ".join(e[:width] for e in row.errors))
    if row.stopped:
        parts.append(f"stopped early {row.stopped}")
    if row.missing:
        parts.append("missing: " + ", ".join(row.missing))
    return "; ".join(parts)


def table(rows: list[Row], tablefmt: str = "simple_outline") -> str:
    """A table of one dataset's rows; ``*`` marks the Pareto-optimal ones, ``>`` each method's selection."""
    from tabulate import tabulate

    headers = ["", "method", "seeds"] + [HEADERS[m] for m in TABLE_METRICS] + ["notes"]
    body = []
    for row in rows:
        mark = ("*" if row.pareto else "") + (">" if row.selected else "") + ("r" if row.refined else "")
        body.append(
            [mark, row.label, seeds_cell(row)]
            + [_cell(row.stats.get(metric)) for metric in TABLE_METRICS]
            + [notes(row)]
        )
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def methods_table(summaries: list[MethodSummary], tablefmt: str = "simple_outline", pm: str = "±") -> str:
    """Per method: hypervolume, and the selected configuration with its validation and test figures."""
    from tabulate import tabulate

    headers = ["method", "hypervolume", "configs", "trials", "selected", "val acc", "val leakage",
               "task acc", "leakage", "leak norm"]
    body = []
    for s in summaries:
        row = s.selected
        figures = (
            [row.label] + [_cell(row.stats.get(m), pm) for m in ("val_accuracy", "val_leakage", "accuracy", "leakage", "leakage_norm")]
            if row else ["none qualifies", "-", "-", "-", "-", "-"]
        )
        body.append([s.method, _number(s.hypervolume), str(s.configurations), str(s.trials)] + figures)
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def explain(max_leakage: float | None = None, refined: bool = False) -> str:
    bound = f"validation leakage <= {max_leakage:g}" if max_leakage is not None else "no bound on validation leakage"
    return (
        "task acc: test accuracy; leakage: test balanced accuracy of the best fresh attacker "
        "(chosen on val) on the frozen bottleneck; floor: the same from the task's predicted "
        "probabilities only; head acc: the method's own training-time head (not leakage); "
        "mean ± standard error over seeds; seeds: finished/expected; * Pareto-optimal (higher accuracy, "
        "lower leakage); > the method's selected configuration: best mean validation task accuracy with "
        f"{bound}, among configurations with no FAILED seed (test figures reported); "
        + (REFINED_MARK if refined else "") + "hypervolume: area "
        "dominated by the method's configurations in the (task accuracy, 1 - leak norm) plane above "
        "(majority-class accuracy, 0)."
    )


def csv_text(rows: list[Row], summaries: list[MethodSummary] | None = None) -> str:
    import csv
    import io

    volumes = {s.method: s.hypervolume for s in summaries or []}
    stream = io.StringIO()
    writer = csv.writer(stream)
    header = ["dataset", "label", "method", "config_key", "expected_seeds", "finished", "failed", "stopped",
              "missing_seeds", "pareto", "selected", "method_hypervolume", "refined"]
    for metric in CSV_METRICS:
        header += [f"{metric}_mean", f"{metric}_se"]
    header.append("errors")
    writer.writerow(header)
    for row in rows:
        volume = volumes.get(row.method, math.nan)
        line = [row.dataset, row.label, row.method, row.config_key, len(row.expected), row.finished, row.failed,
                row.stopped, " ".join(row.missing), int(row.pareto), int(row.selected),
                "" if not math.isfinite(volume) else f"{volume:.6g}", row.refined]
        for metric in CSV_METRICS:
            mean, error = row.stats.get(metric, (math.nan, math.nan))
            line += ["" if not math.isfinite(mean) else f"{mean:.6g}", "" if not math.isfinite(error) else f"{error:.6g}"]
        line.append(" | ".join(row.errors))
        writer.writerow(line)
    return stream.getvalue()


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX.get(char, char) for char in text)


def latex_text(rows: list[Row], summaries: list[MethodSummary], caption: str) -> str:
    """Two booktabs tables: configurations (Pareto-marked) and methods (hypervolume, selection)."""

    def tabular(headers: list[str], body: list[list[str]], align: str) -> str:
        lines = [r"\begin{tabular}{" + align + "}", r"\toprule", " & ".join(headers) + r" \\", r"\midrule"]
        lines += [" & ".join(cells) + r" \\" for cells in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)

    pm = r"$\pm$"
    config_body = [
        [("$^*$" if r.pareto else "") + ("$^\\dagger$" if r.selected else "") + ("$^r$" if r.refined else ""),
         _latex_escape(r.label), seeds_cell(r)]
        + [_cell(r.stats.get(m), pm) for m in TABLE_METRICS]
        + [_latex_escape(notes(r, 40))]
        for r in rows
    ]
    config_headers = ["", "method", "seeds"] + [HEADERS[m] for m in TABLE_METRICS] + ["notes"]
    method_body = []
    for s in summaries:
        row = s.selected
        figures = (
            [_latex_escape(row.label)] + [_cell(row.stats.get(m), pm) for m in ("val_accuracy", "val_leakage", "accuracy", "leakage", "leakage_norm")]
            if row else ["none qualifies", "-", "-", "-", "-", "-"]
        )
        method_body.append([_latex_escape(s.method), _number(s.hypervolume), str(s.configurations), str(s.trials)] + figures)
    method_headers = ["method", "hypervolume", "configs", "trials", "selected", "val acc", "val leakage",
                      "task acc", "leakage", "leak norm"]
    return (
        "% " + explain().replace("\n", " ") + "\n"
        + r"\begin{table}[t]" + "\n" + r"\centering\small" + "\n"
        + tabular(config_headers, config_body, "ll" + "r" * (1 + len(TABLE_METRICS)) + "l") + "\n"
        + r"\caption{" + _latex_escape(caption) + r": configurations, mean $\pm$ standard error over seeds; "
        + r"$^*$ Pareto-optimal, $^\dagger$ selected.}" + "\n" + r"\end{table}" + "\n\n"
        + r"\begin{table}[t]" + "\n" + r"\centering\small" + "\n"
        + tabular(method_headers, method_body, "lrrrl" + "r" * 5) + "\n"
        + r"\caption{" + _latex_escape(caption) + r": methods ranked by hypervolume, with the selected configuration's figures.}"
        + "\n" + r"\end{table}" + "\n"
    )


def hypervolume_notes(standing) -> dict[str, str]:
    """Legend text per method: its hypervolume and interval."""
    return {m.method: f"HV {standings._figure_cell(m.hypervolume)}" for m in standing.methods if math.isfinite(m.hypervolume.estimate)}


def markdown_text(rows: list[Row], summaries: list[MethodSummary], title: str, max_leakage: float | None,
                  standing=None) -> str:

    text = (f"# {title}\n\n{table(rows, 'github')}\n\n## Methods\n\n{methods_table(summaries, 'github')}\n\n"
            f"{explain(max_leakage, any(r.refined for r in rows))}\n")
    if standing is not None:
        text += f"\n## Confidence\n\n{standings.standing_markdown(standing)}\n\n{standings.explain(standing.replicates)}\n"
    return text


@dataclass
class Provenance:
    """What stands behind a leaderboard: the commands, trials, wall time and commits of its runs."""

    commands: list[str] = field(default_factory=list)  # distinct command lines of the invocations
    invocations: int = 0
    trials: int = 0  # trial runs after deduplication (one per configuration and seed)
    wall_seconds: float = math.nan  # sum over invocations of MLflow end time - start time
    trial_seconds: float = math.nan  # sum over trial runs of end - start
    commits: list[str] = field(default_factory=list)
    first_start: float = math.nan  # ms since the epoch
    last_end: float = math.nan
    report_command: str = ""  # the command that wrote this file
    plugins: list[str] = field(default_factory=list)  # methods and datasets from other packages, with their provenance
    merged: list[str] = field(default_factory=list)  # runs seen twice and trials run twice (export.Merged), when any


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def provenance_text(found: Provenance) -> str:
    lines = [
        f"- Trials: {found.trials} (one run per configuration and seed), from {found.invocations} invocation(s).",
        f"- Wall time: {_duration(found.wall_seconds)} (sum over the invocations of their MLflow start to end); "
        f"trial time {_duration(found.trial_seconds)} (sum over the trial runs).",
        f"- Runs from {_date(found.first_start)} to {_date(found.last_end)}; commit(s) "
        + (", ".join(c[:10] for c in found.commits) or "unknown") + ".",
    ]
    if found.plugins:
        lines.append("- Plugins (methods and datasets from other packages, as their trials recorded them): "
                     + "; ".join(found.plugins) + ".")
    if found.merged:
        shown = found.merged[:12]
        lines.append("- Merged sources: " + "; ".join(shown)
                     + (f"; and {len(found.merged) - len(shown)} more (bench export --from lists every one)."
                        if len(found.merged) > len(shown) else "."))
    if found.report_command:
        lines.append(f"- This file: `{found.report_command}`.")
    if found.commands:
        lines.append("- Commands:\n\n" + "\n".join(f"  ```sh\n  {command}\n  ```" for command in found.commands))
    return "\n".join(lines)


def source_text(experiments: list[str], from_files: list[str] | None = None, with_files: list[str] | None = None) -> str:
    """Where a leaderboard's runs were read: MLflow, or the trial tables (``bench export``) it was built ``--from``,
    and the tables it ranks ``--with``; table paths as the user gave them."""
    text = f"MLflow experiment(s) {', '.join(experiments)}"
    if from_files:
        text = f"the trial table(s) {', '.join(from_files)} (runs of {text})"
    if with_files:
        text += f", ranked with the trial table(s) {', '.join(with_files)}"
    return text


def leaderboard_text(by_dataset: dict[str, list[Row]], experiments: list[str], max_leakage: float | None, generated: str,
                     provenance: Provenance | None = None, plots: dict[str, str] | None = None,
                     found: dict | None = None, head_plots: dict[str, str] | None = None, source: str | None = None) -> str:
    """``results/LEADERBOARD.md``: per dataset, the reliability line, the plot (``plots``: dataset -> relative
    path), methods ranked by hypervolume with intervals and tied ranks, the budget table, attacker strength,
    pairwise win probabilities and every configuration; first the provenance and a summary of the datasets."""
    from tabulate import tabulate


    bound = f"validation leakage <= {max_leakage:g}" if max_leakage is not None else "no bound on validation leakage"
    found = found if found is not None else standings.of_datasets(by_dataset, max_leakage)
    settings = {dataset: dataset_setting(dataset, rows) for dataset, rows in by_dataset.items()}  # (line, reduced)
    lines = [
        "# Leaderboard",
        "",
        f"Generated {generated} from {source or source_text(experiments)}. Methods are ranked by the "
        "hypervolume of their front in the (task accuracy, 1 - leak norm) plane above (majority-class accuracy, 0) "
        "(docs/PROTOCOL.md), with 95% bootstrap intervals over seeds; methods whose intervals overlap share a rank. "
        "The selected configuration of a method: best mean "
        f"validation task accuracy with {bound}, among configurations with no FAILED seed; test figures are "
        "mean ± standard error over its seeds. `trials` counts every run behind the row (all configurations "
        "and seeds of the method on the dataset); `commit` and `date` are those of these runs.",
    ]
    lines += ["", "## Overview", "",
              "Per dataset (columns), each method's tied rank and its hypervolume with the 95% bootstrap interval; "
              "methods in order of their mean rank. Sections below give each dataset's setting, budgets, attackers "
              "and every configuration.", "", standings.overview_table(found)]
    if provenance is not None:
        lines += ["", "## Provenance", "", provenance_text(provenance)]
    summary = []
    for dataset, standing in found.items():
        reliability = standing.reliability
        methods = [m for m in standing.methods]
        configs = max((m.summary.configurations for m in methods), default=0)
        seeds = max((m.seeds for m in methods), default=0)
        top = [m.method for m in methods if m.rank == 1]
        summary.append([dataset + (" (reduced)" if settings[dataset][1] else ""), str(len(methods)), str(configs),
                        str(seeds), str(sum(m.summary.trials for m in methods)),
                        standings._figure_cell(reliability.vanilla), standings._figure_cell(reliability.floor),
                        "; ".join(reliability.flags) or "-", ", ".join(top) or "-"])
    lines += ["", "## Datasets", "", tabulate(
        summary, headers=["dataset", "methods", "most configs", "most seeds", "trials", "vanilla leak norm [95%]",
                          "floor [95%]", "flag", "rank 1 (tied)"], tablefmt="github", disable_numparse=True)]
    replicates = standings.statistics.REPLICATES
    for dataset, standing in found.items():
        replicates = standing.replicates
        rows = by_dataset[dataset]
        lines += ["", f"## {dataset}", "", settings[dataset][0], ""]
        if plots and dataset in plots:
            lines += [f"![{dataset}: fronts per method]({plots[dataset]})", "",
                      "*" + _plot_caption() + "*", ""]
        notes = curve_notes(rows)
        if notes:
            lines += ["*Curves that do not start at vanilla, by the method's design (docs/PROTOCOL.md): "
                      + "; ".join(f"{method}: {note}" for method, note in notes.items()) + ".*", ""]
        if head_plots and dataset in head_plots:
            lines += [f"![{dataset}: each method's own head against the fresh attackers]({head_plots[dataset]})", "",
                      "*" + _head_caption() + "*", ""]
        reading = heads_reading_y(rows)
        if reading:
            lines += [reading, ""]
        lines += [standings.standing_markdown(standing), "",
                  f"<details><summary>Every configuration ({len(rows)})</summary>\n\n{table(rows, 'github')}\n\n</details>"]
    lines += ["", "## Reading it", "", standings.explain(replicates), "",
              explain(max_leakage, any(r.refined for rows in by_dataset.values() for r in rows))]
    return "\n".join(lines) + "\n"


def curve_notes(rows: list[Row]) -> dict[str, str]:
    """Per method among ``rows`` that declares one: why its curve's weakest point is not vanilla."""
    from removal_bench.methods import REGISTRY

    return {method: REGISTRY[method].curve_note for method in sorted({r.method for r in rows})
            if getattr(REGISTRY.get(method), "curve_note", "")}


def heads_reading_y(rows: list[Row]) -> str:
    """Where heads predict ``y`` instead of ``s`` (``head_predicts_y``, logged where ``s`` and ``y`` share their
    classes): per method, its configuration with the highest rate, beside its head's accuracy on ``s``, task
    accuracy and normalised leakage; "" where no row has the figure (a head trained on biased batches
    can learn ``s`` through ``y``, so its chance-level accuracy on unbiased data is not removal)."""
    best: dict[str, Row] = {}
    for row in rows:
        value = row.mean("head_predicts_y")
        if math.isfinite(value) and (row.method not in best or value > best[row.method].mean("head_predicts_y")):
            best[row.method] = row
    if not best:
        return ""
    classes = [row.mean("num_classes") for row in best.values() if math.isfinite(row.mean("num_classes"))]
    chance = f"about {1 / max(classes):.2f} for a head that ignored y" if classes else "chance for a head that ignored y"
    parts = [f"{method} {_number(row.mean('head_predicts_y'), 2)} at {row.label} (head acc {_number(row.mean('head_acc'), 2)}, "
             f"task acc {_number(row.mean('accuracy'), 2)}, leak norm {_number(row.mean('leakage_norm'), 2)})"
             for method, row in sorted(best.items())]
    return ("Heads that answer y: how often each method's own head (or adversary), asked for s on the test images, "
            f"answers the task label y instead (head=y; {chance}), at its configuration where that is highest: "
            + "; ".join(parts) + ". A head at chance on s that answers y has not removed s: the fresh attackers' "
            "leak norm says what is left, and a penalty on such a head takes information the task needs.")


def _head_caption() -> str:
    from removal_bench.reporting.plots import HEAD_CAPTION

    return HEAD_CAPTION


def _plot_caption() -> str:
    from removal_bench.reporting.plots import CAPTION

    return CAPTION

