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
    "leak_linear", "leak_mlp", "leak_gbdt", "leak_probe25", "leak_probe50", "floor_leakage", "head_acc", "dp_gap", "eo_gap",
    "train_seconds", "samples_per_second", "num_classes", "num_private", "majority_accuracy",
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
    # metric -> seed -> value, FINISHED seeds only; the bootstrap (bench.statistics) resamples these.
    # Leakage figures also come normalised per seed as ``<metric>_norm`` (0 at chance, 1 at full recovery).
    per_seed: dict[str, dict[str, float]] = field(default_factory=dict)
    hparams: dict[str, str] = field(default_factory=dict)  # the method's hyperparameters (MLflow ``hp.<name>``)
    # What the dataset was and how it was trained: MLflow's ``data.<option>`` and SETTING_RECIPE params.
    setting: dict[str, str] = field(default_factory=dict)

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


NORMALISED = ("val_leakage", "leak_linear", "leak_mlp", "leak_gbdt", "leak_probe25", "leak_probe50", "floor_leakage")


def per_seed_values(finished) -> dict[str, dict[str, float]]:
    """metric -> seed -> value of FINISHED runs, with the leakage figures also normalised (``*_norm``)."""
    from bench.statistics import normalise_leakage

    out: dict[str, dict[str, float]] = {}
    seeds = list(finished["_seed"])
    for metric in CSV_METRICS:
        column = _column(finished, f"metrics.{metric}")
        if column is None:
            continue
        values = {seed: float(v) for seed, v in zip(seeds, column) if v == v}
        if values:
            out[metric] = values
    private = out.get("num_private", {})
    for metric in NORMALISED:
        values = {seed: normalise_leakage(v, private.get(seed, math.nan)) for seed, v in out.get(metric, {}).items()}
        values = {seed: v for seed, v in values.items() if math.isfinite(v)}
        if values:
            out[metric + "_norm"] = values
    return out


SETTING_RECIPE = ("recipe.optimizer", "recipe.lr", "recipe.schedule", "recipe.epochs", "recipe.batch_size", "recipe.encoder")


def dataset_setting(dataset: str, rows: list[Row]) -> tuple[str, bool]:
    """What the runs of ``dataset`` trained on, as one Markdown line, and whether it is **reduced**.

    Reduced: a configuration run with a ``subsample`` below 1, or with epochs, batch size or encoder
    other than the dataset's own recipe for its options (``--train epochs=5``): figures that are not
    the dataset's full protocol. Where the runs disagree on a value, every value is listed.
    """
    from datasets import get_dataset

    values: dict[str, list[str]] = {}
    reasons: list[str] = []
    declared: dict[tuple, object] = {}
    for row in rows:
        for key, value in row.setting.items():
            if value not in values.setdefault(key, []):
                values[key].append(value)
        options = {key[len("data."):]: value for key, value in row.setting.items() if key.startswith("data.")}
        found = [f"subsample {options['subsample']}"] if _as_float(options.get("subsample", "1")) < 1 else []
        key = tuple(sorted(options.items()))
        if key not in declared:
            try:
                declared[key] = get_dataset(dataset).recipe_for(options)
            except Exception:  # a dataset this install does not register, or options it no longer reads
                declared[key] = None
        for name in ("epochs", "batch_size", "encoder"):
            want, have = getattr(declared[key], name, None), row.setting.get(f"recipe.{name}")
            if want is not None and have is not None and have != str(want):
                found.append(f"{name.replace('_', ' ')} {have} (recipe: {want})")
        reasons += [reason for reason in found if reason not in reasons]
    data = ", ".join(f"{k[len('data.'):]}={'/'.join(v)}" for k, v in sorted(values.items()) if k.startswith("data."))
    recipe = ", ".join(f"{key[len('recipe.'):].replace('_', ' ')} {'/'.join(values[key])}"
                       for key in SETTING_RECIPE if key in values)
    text = f"Setting: options {data or 'defaults'}; recipe {recipe or 'unknown'}."
    if reasons:
        text = f"**Reduced** ({'; '.join(reasons)}): not the dataset's full protocol. " + text
    return text, bool(reasons)


def _row_order(row: Row) -> tuple:
    """vanilla first, then by method; within a method by its hyperparameters' values, numerically where
    they are numbers (lambda=3.14 before lambda=10), then by label."""
    values = []
    for name, value in sorted(row.hparams.items()):
        number = _as_float(value)
        values.append((name, 0, number, "") if math.isfinite(number) else (name, 1, 0.0, value))
    return (row.method != "vanilla", row.method, tuple(values), row.label)


def _as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def summarise(frame, expected_seeds: dict[str, Iterable[str]] | Iterable[str] | None = None) -> dict[str, list[Row]]:
    """Rows per dataset, ordered by method name then by hyperparameter values (numbers as numbers, so a
    strength curve reads from weak to strong), with Pareto marks.

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
            row.per_seed = per_seed_values(finished)
            row.hparams = {name[len("params.hp."):]: str(first[name]) for name in group.columns
                           if name.startswith("params.hp.") and isinstance(first[name], str)}
            row.setting = {name[len("params."):]: str(first[name]) for name in group.columns
                           if (name.startswith("params.data.") or name[len("params."):] in SETTING_RECIPE)
                           and isinstance(first[name], str)}
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
        rows.sort(key=_row_order)
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


def reference_accuracy(rows: list[Row]) -> float:
    """A dataset's no-information task accuracy: the majority class's rate, else 1 / classes, else NaN."""
    majority = [r.mean("majority_accuracy") for r in rows if math.isfinite(r.mean("majority_accuracy"))]
    if majority:
        return float(np.median(majority))
    classes = [r.mean("num_classes") for r in rows if math.isfinite(r.mean("num_classes"))]
    return 1.0 / float(np.median(classes)) if classes else math.nan


def methods_of(rows: list[Row], max_leakage: float | None = None) -> list[MethodSummary]:
    """Per method of one dataset's rows: hypervolume and selection, best hypervolume first.

    The hypervolume's reference accuracy (``chance_accuracy``) is what a model without
    information about its input scores: always predicting the test split's most frequent
    class (``majority_accuracy``, which each trial logs; the same for every run of a
    dataset). Runs from before that was logged fall back to 1 / ``num_classes``, which on an
    imbalanced task (Adult: 0.5 against 0.76) credits a constant prediction with a large
    hypervolume; runs that log neither give a NaN hypervolume rather than a guess.
    """
    summaries = []
    for row in rows:
        row.selected = False
    chance = reference_accuracy(rows)
    for method in sorted({r.method for r in rows}):
        mine = [r for r in rows if r.method == method]
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
        "(majority-class accuracy, 0)."
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


def plot(rows: list[Row], path: Path, title: str, legend_notes: dict[str, str] | None = None) -> None:
    """The dataset's trade-off plot (:func:`bench.plots.front_plot`): fronts, seed error bars, the floor."""
    from bench.plots import front_plot

    front_plot(rows, path, title, legend_notes)


def hypervolume_notes(standing) -> dict[str, str]:
    """Legend text per method: its hypervolume and interval."""
    from bench.standings import _figure_cell

    return {m.method: f"HV {_figure_cell(m.hypervolume)}" for m in standing.methods if math.isfinite(m.hypervolume.estimate)}


def markdown_text(rows: list[Row], summaries: list[MethodSummary], title: str, max_leakage: float | None,
                  standing=None) -> str:
    from bench import standings

    text = f"# {title}\n\n{table(rows, 'github')}\n\n## Methods\n\n{methods_table(summaries, 'github')}\n\n{explain(max_leakage)}\n"
    if standing is not None:
        text += f"\n## Confidence\n\n{standings.standing_markdown(standing)}\n\n{standings.explain(standing.replicates)}\n"
    return text


def write_results(
    by_dataset: dict[str, list[Row]],
    folder: Path,
    title: str,
    formats: Iterable[str] = ("markdown", "csv"),
    max_leakage: float | None = None,
    found: dict | None = None,
) -> list[Path]:
    """Per dataset under ``folder``: ``NAME.md``, ``NAME.csv``, ``NAME.tex`` (as ``formats`` ask) and
    the Pareto plot ``NAME.png``; returns the paths written. ``found``: the standings of
    :func:`bench.standings.of_datasets` when the caller has them already."""
    formats = list(formats)
    written = []
    from bench.standings import of_datasets

    found = found if found is not None else of_datasets(by_dataset, max_leakage)
    for dataset, rows in sorted(by_dataset.items()):
        standing = found[dataset]
        summaries = [m.summary for m in standing.methods]
        texts = {
            "markdown": (folder / f"{dataset}.md",
                         lambda: markdown_text(rows, summaries, f"{title}: {dataset}", max_leakage, standing)),
            "csv": (folder / f"{dataset}.csv", lambda: csv_text(rows, summaries)),
            "latex": (folder / f"{dataset}.tex", lambda: latex_text(rows, summaries, f"{title}: {dataset}")),
        }
        for name in formats:
            path, render = texts[name]
            write_text(path, render())
            written.append(path)
        plot(rows, folder / f"{dataset}.png", f"{title}: {dataset}", hypervolume_notes(standing))
        written.append(folder / f"{dataset}.png")
    return written


def print_report(by_dataset: dict[str, list[Row]], stream, max_leakage: float | None = None, found: dict | None = None) -> None:
    """Each dataset's configuration table, methods table, ranking with intervals and budgets, then the legend."""
    from bench import standings

    found = found if found is not None else standings.of_datasets(by_dataset, max_leakage)
    replicates = standings.statistics.REPLICATES
    for dataset, rows in sorted(by_dataset.items()):
        standing = found[dataset]
        replicates = standing.replicates
        print(f"\n{dataset}", file=stream)
        print(table(rows), file=stream)
        print(methods_table([m.summary for m in standing.methods]), file=stream)
        print(standings.reliability_text(standing).replace("**", ""), file=stream)
        print(standings.ranking_table(standing, "simple_outline"), file=stream)
        print(standings.budget_table(standing, "simple_outline"), file=stream)
    print("\n" + explain(max_leakage) + " " + standings.explain(replicates), file=stream)


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
    if found.report_command:
        lines.append(f"- This file: `{found.report_command}`.")
    if found.commands:
        lines.append("- Commands:\n\n" + "\n".join(f"  ```sh\n  {command}\n  ```" for command in found.commands))
    return "\n".join(lines)


def leaderboard_text(by_dataset: dict[str, list[Row]], experiments: list[str], max_leakage: float | None, generated: str,
                     provenance: Provenance | None = None, plots: dict[str, str] | None = None,
                     found: dict | None = None) -> str:
    """``results/LEADERBOARD.md``: per dataset, the reliability line, the plot (``plots``: dataset -> relative
    path), methods ranked by hypervolume with intervals and tied ranks, the budget table, attacker strength,
    pairwise win probabilities and every configuration; first the provenance and a summary of the datasets."""
    from tabulate import tabulate

    from bench import standings

    bound = f"validation leakage <= {max_leakage:g}" if max_leakage is not None else "no bound on validation leakage"
    found = found if found is not None else standings.of_datasets(by_dataset, max_leakage)
    settings = {dataset: dataset_setting(dataset, rows) for dataset, rows in by_dataset.items()}  # (line, reduced)
    lines = [
        "# Leaderboard",
        "",
        f"Generated {generated} from MLflow experiment(s) {', '.join(experiments)}. Methods are ranked by the "
        "hypervolume of their front in the (task accuracy, 1 - leak norm) plane above (majority-class accuracy, 0) "
        "(docs/PROTOCOL.md), with 95% bootstrap intervals over seeds; methods whose intervals overlap share a rank. "
        "The selected configuration of a method: best mean "
        f"validation task accuracy with {bound}, among configurations with no FAILED seed; test figures are "
        "mean ± standard error over its seeds. `trials` counts every run behind the row (all configurations "
        "and seeds of the method on the dataset); `commit` and `date` are those of these runs.",
    ]
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
        lines += [standings.standing_markdown(standing), "",
                  f"<details><summary>Every configuration ({len(rows)})</summary>\n\n{table(rows, 'github')}\n\n</details>"]
    lines += ["", "## Reading it", "", standings.explain(replicates), "", explain(max_leakage)]
    return "\n".join(lines) + "\n"


def _plot_caption() -> str:
    from bench.plots import CAPTION

    return CAPTION


def write_plots(by_dataset: dict[str, list[Row]], folder: Path, max_leakage: float | None = None,
                found: dict | None = None) -> dict[str, Path]:
    """The leaderboard's plots, one PNG per dataset under ``folder``."""
    from bench.standings import of_datasets

    found = found if found is not None else of_datasets(by_dataset, max_leakage)
    written = {}
    for dataset, rows in sorted(by_dataset.items()):
        written[dataset] = folder / f"{dataset}.png"
        plot(rows, written[dataset], dataset, hypervolume_notes(found[dataset]))
    return written
