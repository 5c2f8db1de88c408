"""Tables, plots and the leaderboard from the runs MLflow holds.

:func:`summarise` turns the trial runs of a DataFrame from
``mlflow.search_runs`` into one :class:`Row` per configuration and dataset:
mean and standard error over seeds, FAILED runs counted with their reasons,
seeds stopped early by a sweep's scheduler, missing seeds named, and a Pareto
mark. A trial that ran more than once (a resumed or restarted sweep) is counted
once (:func:`deduplicate`).

:func:`methods_of` adds, per method and dataset, the hypervolume of its front
and PROTOCOL.md's model selection (best validation task accuracy with
validation leakage at most epsilon), whose *test* figures are reported.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from bench.pareto import constrained_best, front_hypervolume, pareto_mask

TABLE_METRICS = ("accuracy", "leakage", "leakage_norm", "mi_bits", "floor_leakage", "head_acc")
CSV_METRICS = (
    "accuracy", "balanced_accuracy", "val_accuracy", "leakage", "leakage_norm", "mi_bits", "val_leakage",
    "leak_linear", "leak_mlp", "leak_gbdt", "floor_leakage", "head_acc", "dp_gap", "eo_gap",
    "train_seconds", "samples_per_second", "num_classes",
)
HEADERS = {
    "accuracy": "task acc",
    "leakage": "leakage",
    "leakage_norm": "leak norm",
    "mi_bits": "MI bits",
    "floor_leakage": "floor",
    "head_acc": "head acc",
    "val_accuracy": "val acc",
    "val_leakage": "val leakage",
}
FORMATS = ("markdown", "csv", "latex")

# Preference when a trial has several runs: a result beats a decision to stop,
# which beats a failure, which beats a run that never ended (RUNNING after a
# killed driver, KILLED by an interrupted one).
_FINISHED, _STOPPED, _FAILED, _UNFINISHED = 3, 2, 1, 0


@dataclass
class Row:
    dataset: str
    label: str
    method: str
    config_key: str
    seeds: list[str] = field(default_factory=list)  # seeds with a run, whatever its outcome
    expected: list[str] = field(default_factory=list)  # seeds this configuration should have
    finished: int = 0
    failed: int = 0
    stopped: int = 0  # ended early by a sweep's scheduler
    missing: list[str] = field(default_factory=list)  # expected seeds with no FINISHED, FAILED or stopped run
    errors: list[str] = field(default_factory=list)
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (mean, standard error)
    attackers: dict[str, str] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    first_start: float = math.nan  # ms since the epoch
    last_start: float = math.nan
    pareto: bool = False
    selected: bool = False  # its method's model selection on this dataset

    def mean(self, metric: str) -> float:
        return self.stats.get(metric, (math.nan, math.nan))[0]

    @property
    def trials(self) -> int:
        return self.finished + self.failed + self.stopped


@dataclass
class MethodSummary:
    """One method on one dataset: its front's hypervolume and its selected configuration."""

    dataset: str
    method: str
    configurations: int
    trials: int  # runs behind the figures (one per configuration and seed)
    finished: int
    failed: int
    hypervolume: float
    chance_accuracy: float
    selected: Row | None
    commits: list[str]
    last_start: float


def mean_and_error(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    if len(finite) == 1:
        return finite[0], math.nan
    array = np.asarray(finite)
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(len(array)))


def _column(frame, name):
    return frame[name] if name in frame.columns else None


def outcome(frame):
    """Per run: 3 FINISHED, 2 stopped early by the scheduler, 1 FAILED, 0 never ended."""
    stopped = _column(frame, "tags.bench.stopped_early")
    is_stopped = (frame["status"] == "KILLED") & (stopped.notna() if stopped is not None else False)
    values = np.where(frame["status"] == "FINISHED", _FINISHED,
                      np.where(is_stopped, _STOPPED, np.where(frame["status"] == "FAILED", _FAILED, _UNFINISHED)))
    return values


def deduplicate(frame):
    """One run per trial (config hash): FINISHED over stopped over FAILED over unfinished, then the latest."""
    if frame.empty:
        return frame
    frame = frame.copy()
    frame["_outcome"] = outcome(frame)
    frame = frame.sort_values(["_outcome", "start_time"])
    return frame.drop_duplicates("tags.bench.config_hash", keep="last").drop(columns="_outcome")


def _seed_order(seed: str):
    return (0, int(seed), "") if seed.isdigit() else (1, 0, seed)


def _milliseconds(value) -> float:
    if value is None:
        return math.nan
    if hasattr(value, "timestamp"):
        try:
            return float(value.timestamp() * 1000)
        except (ValueError, OverflowError):
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def summarise(frame, expected_seeds: dict[str, Iterable[str]] | Iterable[str] | None = None) -> dict[str, list[Row]]:
    """Rows per dataset, ordered by method name then label, with Pareto marks.

    ``expected_seeds`` (all datasets, or per dataset) are the seeds every
    configuration should have; the seeds seen on a dataset are always expected
    too, so a configuration that lacks a seed that others have shows it missing.
    """
    by_dataset: dict[str, list[Row]] = {}
    if frame is None or frame.empty:
        return by_dataset
    frame = deduplicate(frame)
    frame = frame.assign(_outcome=outcome(frame), _seed=frame["tags.bench.seed"].astype(str))
    for dataset, runs in frame.groupby("tags.bench.dataset"):
        declared = expected_seeds.get(dataset, ()) if isinstance(expected_seeds, dict) else (expected_seeds or ())
        expected = sorted(set(runs["_seed"]) | {str(s) for s in declared}, key=_seed_order)
        for key, group in runs.groupby("tags.bench.config_key"):
            first = group.iloc[0]
            row = Row(
                dataset=dataset,
                label=first["tags.bench.label"],
                method=first["tags.bench.method"],
                config_key=key,
                seeds=sorted(group["_seed"], key=_seed_order),
                expected=expected,
            )
            finished = group[group["_outcome"] == _FINISHED]
            failed = group[group["_outcome"] == _FAILED]
            row.finished, row.failed = len(finished), len(failed)
            row.stopped = int((group["_outcome"] == _STOPPED).sum())
            ended = set(group.loc[group["_outcome"] > _UNFINISHED, "_seed"])
            row.missing = [seed for seed in expected if seed not in ended]
            errors = _column(failed, "tags.bench.error")
            if errors is not None:
                row.errors = sorted({str(e) for e in errors if isinstance(e, str) and e})
            for metric in CSV_METRICS:
                column = _column(finished, f"metrics.{metric}")
                if column is not None:
                    row.stats[metric] = mean_and_error([float(v) for v in column if v == v])
            attackers = _column(finished, "tags.leakage_attacker")
            if attackers is not None:
                counts = attackers.value_counts()
                row.attackers = {str(k): str(v) for k, v in counts.items()}
            commits = _column(group, "tags.bench.git_commit")
            if commits is not None:
                row.commits = sorted({str(c) for c in commits if isinstance(c, str) and c})
            starts = [_milliseconds(v) for v in group["start_time"]] if "start_time" in group.columns else []
            starts = [s for s in starts if math.isfinite(s)]
            if starts:
                row.first_start, row.last_start = min(starts), max(starts)
            by_dataset.setdefault(dataset, []).append(row)
    for dataset, rows in by_dataset.items():
        rows.sort(key=lambda r: (r.method != "vanilla", r.method, r.label))
        for row, optimal in zip(rows, pareto_mask([r.mean("accuracy") for r in rows], [r.mean("leakage") for r in rows])):
            row.pareto = optimal
    return by_dataset


def select(rows: list[Row], max_leakage: float | None = None) -> Row | None:
    """PROTOCOL.md's model selection among ``rows``: the best mean validation task accuracy with
    mean validation leakage at most ``max_leakage``.

    Only configurations with at least one FINISHED seed and no FAILED seed
    compete: a configuration that diverges on some seeds is not chosen on its lucky ones.
    """
    eligible = [row for row in rows if row.finished > 0 and row.failed == 0]
    index = constrained_best(
        [r.mean("val_accuracy") for r in eligible], [r.mean("val_leakage") for r in eligible], max_leakage
    )
    return None if index is None else eligible[index]


def methods_of(rows: list[Row], max_leakage: float | None = None) -> list[MethodSummary]:
    """Per method of one dataset's rows: hypervolume and selection, best hypervolume first.

    The chance task accuracy is 1 / ``num_classes``, which each trial logs; runs
    from before it was logged give a NaN hypervolume rather than a guess.
    """
    summaries = []
    for row in rows:
        row.selected = False
    for method in sorted({r.method for r in rows}):
        mine = [r for r in rows if r.method == method]
        classes = [r.mean("num_classes") for r in rows if math.isfinite(r.mean("num_classes"))]
        chance = 1.0 / float(np.median(classes)) if classes else math.nan
        volume = (
            front_hypervolume([r.mean("accuracy") for r in mine], [r.mean("leakage_norm") for r in mine], chance)
            if math.isfinite(chance) else math.nan
        )
        chosen = select(mine, max_leakage)
        if chosen is not None:
            chosen.selected = True
        starts = [r.last_start for r in mine if math.isfinite(r.last_start)]
        summaries.append(MethodSummary(
            dataset=mine[0].dataset, method=method, configurations=len(mine),
            trials=sum(r.trials for r in mine), finished=sum(r.finished for r in mine),
            failed=sum(r.failed for r in mine), hypervolume=volume, chance_accuracy=chance, selected=chosen,
            commits=sorted({c for r in mine for c in r.commits}), last_start=max(starts) if starts else math.nan,
        ))
    summaries.sort(key=lambda s: (not math.isfinite(s.hypervolume), -s.hypervolume if math.isfinite(s.hypervolume) else 0, s.method))
    return summaries


def _cell(stat: tuple[float, float] | None, pm: str = "±") -> str:
    if stat is None or not math.isfinite(stat[0]):
        return "-"
    mean, error = stat
    return f"{mean:.3f}" if not math.isfinite(error) else f"{mean:.3f} {pm} {error:.3f}"


def seeds_cell(row: Row) -> str:
    return f"{row.finished}/{len(row.expected) or row.trials}"


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
        mark = ("*" if row.pareto else "") + (">" if row.selected else "")
        body.append(
            [mark, row.label, seeds_cell(row)]
            + [_cell(row.stats.get(metric)) for metric in TABLE_METRICS]
            + [notes(row)]
        )
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _number(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _date(milliseconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d", time.gmtime(milliseconds / 1000)) if math.isfinite(milliseconds) else "-"


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


def explain(max_leakage: float | None = None) -> str:
    bound = f"validation leakage <= {max_leakage:g}" if max_leakage is not None else "no bound on validation leakage"
    return (
        "task acc: test accuracy; leakage: test balanced accuracy of the best fresh attacker "
        "(chosen on val) on the frozen bottleneck; floor: the same from the task's predicted "
        "probabilities only; head acc: the method's own training-time head (not leakage); "
        "mean ± standard error over seeds; seeds: finished/expected; * Pareto-optimal (higher accuracy, "
        "lower leakage); > the method's selected configuration: best mean validation task accuracy with "
        f"{bound}, among configurations with no FAILED seed (test figures reported); hypervolume: area "
        "dominated by the method's configurations in the (task accuracy, 1 - leak norm) plane above "
        "(chance accuracy, 0)."
    )


def publish(temporary: str, path: Path) -> None:
    """Give a finished temporary file the usual permissions (mkstemp makes it 0600) and move it in place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, path)


def write_text(path: Path, text: str) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    publish(temporary, path)


def csv_text(rows: list[Row], summaries: list[MethodSummary] | None = None) -> str:
    import csv
    import io

    volumes = {s.method: s.hypervolume for s in summaries or []}
    stream = io.StringIO()
    writer = csv.writer(stream)
    header = ["dataset", "label", "method", "config_key", "expected_seeds", "finished", "failed", "stopped",
              "missing_seeds", "pareto", "selected", "method_hypervolume"]
    for metric in CSV_METRICS:
        header += [f"{metric}_mean", f"{metric}_se"]
    header.append("errors")
    writer.writerow(header)
    for row in rows:
        volume = volumes.get(row.method, math.nan)
        line = [row.dataset, row.label, row.method, row.config_key, len(row.expected), row.finished, row.failed,
                row.stopped, " ".join(row.missing), int(row.pareto), int(row.selected),
                "" if not math.isfinite(volume) else f"{volume:.6g}"]
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
        [("$^*$" if r.pareto else "") + ("$^\\dagger$" if r.selected else ""), _latex_escape(r.label), seeds_cell(r)]
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


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Pareto scatter: task accuracy against leakage, error bars over seeds, one front per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = sorted({r.method for r in rows})
    annotate = len(rows) <= 24  # a sweep's hundred labels would be unreadable
    for row in rows:
        acc, acc_se = row.stats.get("accuracy", (math.nan, math.nan))
        leak, leak_se = row.stats.get("leakage", (math.nan, math.nan))
        if not (math.isfinite(acc) and math.isfinite(leak)):
            continue
        colour = colours[methods.index(row.method) % len(colours)]
        axes.errorbar(
            leak, acc,
            xerr=leak_se if math.isfinite(leak_se) else None,
            yerr=acc_se if math.isfinite(acc_se) else None,
            fmt="o" if row.pareto else "s", color=colour, mfc=colour if row.pareto else "white", capsize=3,
            alpha=1.0 if row.pareto or annotate else 0.5,
        )
        if annotate or row.pareto:
            axes.annotate(row.label, (leak, acc), textcoords="offset points", xytext=(5, 4), fontsize=7)
        floor = row.mean("floor_leakage")
        if math.isfinite(floor) and row.method == "vanilla":
            axes.axvline(floor, color="grey", linestyle=":", linewidth=1)
    for method in methods:
        mine = [r for r in rows if r.method == method]
        optimal = pareto_mask([r.mean("accuracy") for r in mine], [r.mean("leakage") for r in mine])
        front = sorted((r.mean("leakage"), r.mean("accuracy")) for r, keep in zip(mine, optimal) if keep)
        colour = colours[methods.index(method) % len(colours)]
        axes.plot([p[0] for p in front], [p[1] for p in front], color=colour, linewidth=1.2, alpha=0.8,
                  drawstyle="steps-post" if len(front) > 1 else "default", label=method, marker="" if len(front) > 1 else "o")
    if methods:
        axes.legend(fontsize=8, loc="best")
    axes.set_xlabel("leakage (balanced accuracy of the best fresh attacker; lower is better)")
    axes.set_ylabel("task accuracy (test)")
    axes.set_title(title + "  (lines: each method's front; filled: Pareto-optimal overall; dotted: vanilla's floor)", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(handle)
    figure.savefig(temporary)
    plt.close(figure)
    publish(temporary, path)


def markdown_text(rows: list[Row], summaries: list[MethodSummary], title: str, max_leakage: float | None) -> str:
    return (
        f"# {title}\n\n{table(rows, 'github')}\n\n## Methods\n\n{methods_table(summaries, 'github')}\n\n"
        f"{explain(max_leakage)}\n"
    )


def write_results(
    by_dataset: dict[str, list[Row]],
    folder: Path,
    title: str,
    formats: Iterable[str] = ("markdown", "csv"),
    max_leakage: float | None = None,
) -> list[Path]:
    """Per dataset under ``folder``: ``NAME.md``, ``NAME.csv``, ``NAME.tex`` (as ``formats`` ask) and
    the Pareto plot ``NAME.png``; returns the paths written."""
    formats = list(formats)
    written = []
    for dataset, rows in sorted(by_dataset.items()):
        summaries = methods_of(rows, max_leakage)
        texts = {
            "markdown": (folder / f"{dataset}.md", lambda: markdown_text(rows, summaries, f"{title}: {dataset}", max_leakage)),
            "csv": (folder / f"{dataset}.csv", lambda: csv_text(rows, summaries)),
            "latex": (folder / f"{dataset}.tex", lambda: latex_text(rows, summaries, f"{title}: {dataset}")),
        }
        for name in formats:
            path, render = texts[name]
            write_text(path, render())
            written.append(path)
        plot(rows, folder / f"{dataset}.png", f"{title}: {dataset}")
        written.append(folder / f"{dataset}.png")
    return written


def print_report(by_dataset: dict[str, list[Row]], stream, max_leakage: float | None = None) -> None:
    """Each dataset's configuration table and methods table, then the legend."""
    for dataset, rows in sorted(by_dataset.items()):
        summaries = methods_of(rows, max_leakage)
        print(f"\n{dataset}", file=stream)
        print(table(rows), file=stream)
        print(methods_table(summaries), file=stream)
    print("\n" + explain(max_leakage), file=stream)


def leaderboard_text(by_dataset: dict[str, list[Row]], experiments: list[str], max_leakage: float | None, generated: str) -> str:
    """``results/LEADERBOARD.md``: per dataset, methods ranked by hypervolume, with their selected configuration."""
    from tabulate import tabulate

    bound = f"validation leakage <= {max_leakage:g}" if max_leakage is not None else "no bound on validation leakage"
    lines = [
        "# Leaderboard",
        "",
        f"Generated {generated} from MLflow experiment(s) {', '.join(experiments)}. Methods are ranked by the "
        "hypervolume of their front in the (task accuracy, 1 - leak norm) plane above (chance accuracy, 0) "
        "(docs/PROTOCOL.md). Each row's figures are those of the method's selected configuration: best mean "
        f"validation task accuracy with {bound}, among configurations with no FAILED seed; test figures are "
        "mean ± standard error over its seeds. `trials` counts every run behind the row (all configurations "
        "and seeds of the method on the dataset); `commit` and `date` are those of these runs.",
    ]
    for dataset, rows in sorted(by_dataset.items()):
        summaries = methods_of(rows, max_leakage)
        body = []
        for rank, s in enumerate(summaries, start=1):
            row = s.selected
            figures = (
                [row.label, seeds_cell(row)] + [_cell(row.stats.get(m)) for m in ("accuracy", "leakage", "leakage_norm", "val_accuracy", "val_leakage")]
                if row else ["none qualifies", "-", "-", "-", "-", "-", "-"]
            )
            commits = ", ".join(c[:10] for c in s.commits) or "unknown"
            body.append([str(rank) if math.isfinite(s.hypervolume) else "-", s.method, _number(s.hypervolume)] + figures
                        + [f"{s.trials} ({s.failed} failed)" if s.failed else str(s.trials), str(s.configurations), commits, _date(s.last_start)])
        headers = ["rank", "method", "hypervolume", "selected", "seeds", "task acc", "leakage", "leak norm",
                   "val acc", "val leakage", "trials", "configs", "commit", "date"]
        lines += ["", f"## {dataset}", "", tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)]
    return "\n".join(lines) + "\n"
