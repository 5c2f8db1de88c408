"""Tables and plots from the runs MLflow holds.

:func:`summarise` turns the trial runs of a DataFrame from
``mlflow.search_runs`` into one :class:`Row` per configuration and dataset:
mean and standard error over seeds, FAILED runs counted with their reasons,
and a Pareto mark. A trial that ran more than once (a resumed sweep) is
counted once: its latest FINISHED run, else its latest run.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.pareto import pareto_mask

TABLE_METRICS = ("accuracy", "leakage", "leakage_norm", "mi_bits", "floor_leakage", "head_acc")
CSV_METRICS = (
    "accuracy", "balanced_accuracy", "val_accuracy", "leakage", "leakage_norm", "mi_bits", "val_leakage",
    "leak_linear", "leak_mlp", "leak_gbdt", "floor_leakage", "head_acc", "dp_gap", "eo_gap",
    "train_seconds", "samples_per_second",
)
HEADERS = {
    "accuracy": "task acc",
    "leakage": "leakage",
    "leakage_norm": "leak norm",
    "mi_bits": "MI bits",
    "floor_leakage": "floor",
    "head_acc": "head acc",
}


@dataclass
class Row:
    dataset: str
    label: str
    method: str
    config_key: str
    seeds: list[str] = field(default_factory=list)
    finished: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (mean, standard error)
    attackers: dict[str, str] = field(default_factory=dict)
    pareto: bool = False

    def mean(self, metric: str) -> float:
        return self.stats.get(metric, (math.nan, math.nan))[0]


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


def deduplicate(frame):
    """One run per trial (config hash): the latest FINISHED one, else the latest one."""
    if frame.empty:
        return frame
    frame = frame.copy()
    frame["_finished"] = (frame["status"] == "FINISHED").astype(int)
    frame = frame.sort_values(["_finished", "start_time"])
    return frame.drop_duplicates("tags.bench.config_hash", keep="last").drop(columns="_finished")


def summarise(frame) -> dict[str, list[Row]]:
    """Rows per dataset, ordered by method name then label, with Pareto marks."""
    by_dataset: dict[str, list[Row]] = {}
    if frame is None or frame.empty:
        return by_dataset
    frame = deduplicate(frame)
    for (dataset, key), group in frame.groupby(["tags.bench.dataset", "tags.bench.config_key"]):
        first = group.iloc[0]
        row = Row(
            dataset=dataset,
            label=first["tags.bench.label"],
            method=first["tags.bench.method"],
            config_key=key,
            seeds=sorted(group["tags.bench.seed"].astype(str), key=lambda s: int(s) if s.isdigit() else s),
        )
        finished = group[group["status"] == "FINISHED"]
        row.finished = len(finished)
        failed = group[group["status"] != "FINISHED"]
        row.failed = len(failed)
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
        by_dataset.setdefault(dataset, []).append(row)
    for dataset, rows in by_dataset.items():
        rows.sort(key=lambda r: (r.method != "vanilla", r.method, r.label))
        for row, optimal in zip(rows, pareto_mask([r.mean("accuracy") for r in rows], [r.mean("leakage") for r in rows])):
            row.pareto = optimal
    return by_dataset


def _cell(stat: tuple[float, float] | None) -> str:
    if stat is None or not math.isfinite(stat[0]):
        return "-"
    mean, error = stat
    return f"{mean:.3f}" if not math.isfinite(error) else f"{mean:.3f} ± {error:.3f}"


def table(rows: list[Row], tablefmt: str = "simple_outline") -> str:
    """A table of one dataset's rows; ``*`` marks the Pareto-optimal ones."""
    from tabulate import tabulate

    headers = ["", "method", "seeds"] + [HEADERS[m] for m in TABLE_METRICS] + ["notes"]
    body = []
    for row in rows:
        seeds = f"{row.finished}/{row.finished + row.failed}"
        notes = ""
        if row.failed:
            notes = f"FAILED {row.failed}: " + "; ".join(e[:80] for e in row.errors)
        body.append(
            ["*" if row.pareto else "", row.label, seeds]
            + [_cell(row.stats.get(metric)) for metric in TABLE_METRICS]
            + [notes]
        )
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def explain() -> str:
    return (
        "task acc: test accuracy; leakage: test balanced accuracy of the best fresh attacker "
        "(chosen on val) on the frozen bottleneck; floor: the same from the task's predicted "
        "probabilities only; head acc: the method's own training-time head (not leakage); "
        "mean ± standard error over seeds; * Pareto-optimal (higher accuracy, lower leakage)."
    )


def write_text(path: Path, text: str) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(temporary, path)


def csv_text(rows: list[Row]) -> str:
    import csv
    import io

    stream = io.StringIO()
    writer = csv.writer(stream)
    header = ["dataset", "label", "method", "config_key", "finished", "failed", "pareto"]
    for metric in CSV_METRICS:
        header += [f"{metric}_mean", f"{metric}_se"]
    header.append("errors")
    writer.writerow(header)
    for row in rows:
        line = [row.dataset, row.label, row.method, row.config_key, row.finished, row.failed, int(row.pareto)]
        for metric in CSV_METRICS:
            mean, error = row.stats.get(metric, (math.nan, math.nan))
            line += ["" if not math.isfinite(mean) else f"{mean:.6g}", "" if not math.isfinite(error) else f"{error:.6g}"]
        line.append(" | ".join(row.errors))
        writer.writerow(line)
    return stream.getvalue()


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Pareto scatter: task accuracy against leakage, error bars over seeds, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = sorted({r.method for r in rows})
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
        )
        axes.annotate(row.label, (leak, acc), textcoords="offset points", xytext=(5, 4), fontsize=8)
        floor = row.mean("floor_leakage")
        if math.isfinite(floor) and row.method == "vanilla":
            axes.axvline(floor, color="grey", linestyle=":", linewidth=1)
    front = sorted((r.mean("leakage"), r.mean("accuracy")) for r in rows if r.pareto)
    if len(front) > 1:
        axes.plot([p[0] for p in front], [p[1] for p in front], color="black", linewidth=1, alpha=0.5)
    axes.set_xlabel("leakage (balanced accuracy of the best fresh attacker; lower is better)")
    axes.set_ylabel("task accuracy (test)")
    axes.set_title(title + "  (filled: Pareto-optimal; dotted: vanilla's floor)", fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(handle)
    figure.savefig(temporary)
    plt.close(figure)
    os.replace(temporary, path)


def write_results(by_dataset: dict[str, list[Row]], folder: Path, title: str) -> list[Path]:
    """Markdown, CSV and a Pareto plot per dataset under ``folder``; returns the paths written."""
    written = []
    for dataset, rows in sorted(by_dataset.items()):
        markdown = f"# {title}: {dataset}\n\n{table(rows, 'github')}\n\n{explain()}\n"
        for path, text in ((folder / f"{dataset}.md", markdown), (folder / f"{dataset}.csv", csv_text(rows))):
            write_text(path, text)
            written.append(path)
        plot(rows, folder / f"{dataset}.png", f"{title}: {dataset}")
        written.append(folder / f"{dataset}.png")
    return written
