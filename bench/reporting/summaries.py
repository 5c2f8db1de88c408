"""Load runs -> summarise: one :class:`Row` per configuration and dataset from MLflow's trial runs.

:func:`summarise` turns the trial runs of a DataFrame from
``mlflow.search_runs`` into one :class:`Row` per configuration and dataset:
mean and standard error over seeds, FAILED runs counted with their reasons,
seeds stopped early by a sweep's scheduler, missing seeds named, and a Pareto
mark. A trial that ran more than once (a resumed or restarted sweep) is counted
once (:func:`deduplicate`).

:func:`methods_of` adds, per method and dataset, the hypervolume of its front
and PROTOCOL.md's model selection (best validation task accuracy with
validation leakage at most epsilon), whose *test* figures are reported.

The report flow goes one way: runs (``running.tracking.load_runs``) -> this module -> ``standings`` ->
the renderers (``tables``, ``plots``, ``html``, ``documents``) -> ``publish`` (files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from removal_bench.measuring.pareto import constrained_best, front_hypervolume, pareto_mask
from removal_bench.running.tracking import _FAILED, _FINISHED, _STOPPED, _UNFINISHED, deduplicate, outcome

CSV_METRICS = (
    "accuracy", "balanced_accuracy", "val_accuracy", "leakage", "leakage_norm", "mi_bits", "val_leakage",
    "leak_linear", "leak_mlp", "leak_gbdt", "leak_probe25", "leak_probe50", "floor_leakage", "head_acc", "head_predicts_y", "dp_gap", "eo_gap",
    "train_seconds", "samples_per_second", "num_classes", "num_private", "majority_accuracy",
)


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
    refined: int = 0  # a refined curve's point: its round (bench sweep --refine; tag bench.refined), else 0
    # metric -> seed -> value, FINISHED seeds only; the bootstrap (bench.statistics) resamples these.
    # Leakage figures also come normalised per seed as ``<metric>_norm`` (0 at chance, 1 at full recovery).
    per_seed: dict[str, dict[str, float]] = field(default_factory=dict)
    hparams: dict[str, str] = field(default_factory=dict)  # the method's hyperparameters (MLflow ``hp.<name>``)
    # What the dataset was and how it was trained: MLflow's ``data.<option>`` and SETTING_RECIPE params.
    setting: dict[str, str] = field(default_factory=dict)
    # where leak_wide / capacity_gain come from: "" its own runs (bench attack), else the rerun tables that gave them
    # (bench leaderboard --capacity: python -m removal_bench.benchmarks capacity's reruns of this configuration)
    capacity_from: str = ""

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


NORMALISED = ("val_leakage", "leak_linear", "leak_mlp", "leak_gbdt", "leak_probe25", "leak_probe50", "floor_leakage",
              "leak_wide")
CAPACITY_METRIC = "attack.mlp_wide.leakage"  # bench attack --attacker mlp_wide (removal_bench.measuring.attack)


def per_seed_values(finished) -> dict[str, dict[str, float]]:
    """metric -> seed -> value of FINISHED runs, with the leakage figures also normalised (``*_norm``)."""
    from removal_bench.reporting.statistics import normalise_leakage

    out: dict[str, dict[str, float]] = {}
    seeds = list(finished["_seed"])
    for metric in CSV_METRICS:
        column = _column(finished, f"metrics.{metric}")
        if column is None:
            continue
        values = {seed: float(v) for seed, v in zip(seeds, column) if v == v}
        if values:
            out[metric] = values
    # The capacity check, where `bench attack --attacker mlp_wide` logged it (docs/PROTOCOL.md): the wider MLP's
    # test balanced accuracy, and its gain over the trial's leakage. Not in CSV_METRICS: a report's columns stay.
    wide = _column(finished, f"metrics.{CAPACITY_METRIC}")
    if wide is not None:
        values = {seed: float(v) for seed, v in zip(seeds, wide) if v == v}
        if values:
            out["leak_wide"] = values
            leakage = out.get("leakage", {})
            out["capacity_gain"] = {seed: v - leakage[seed] for seed, v in values.items() if seed in leakage}
    private = out.get("num_private", {})
    for metric in NORMALISED:
        values = {seed: normalise_leakage(v, private.get(seed, math.nan)) for seed, v in out.get(metric, {}).items()}
        values = {seed: v for seed, v in values.items() if math.isfinite(v)}
        if values:
            out[metric + "_norm"] = values
    return out


SETTING_RECIPE = ("recipe.optimizer", "recipe.lr", "recipe.schedule", "recipe.epochs", "recipe.batch_size", "recipe.encoder",
                  "recipe.bottleneck", "recipe.head")  # the last two: the model form, logged since docs/METHODS.md's options


def dataset_setting(dataset: str, rows: list[Row]) -> tuple[str, bool]:
    """What the runs of ``dataset`` trained on, as one Markdown line, and whether it is **reduced**.

    Reduced: a configuration run with a ``subsample`` below 1, or with epochs, batch size or encoder
    other than the dataset's own recipe for its options (``--train epochs=5``): figures that are not
    the dataset's full protocol. Where the runs disagree on a value, every value is listed.
    """
    from removal_bench.datasets import get_dataset

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
                declared[key] = get_dataset(dataset.split(":", 1)[0]).recipe_for(options)  # name:setting: a section
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


UNREAD_TAGS = ("tags.bench.identity", "tags.bench.protocol_parts")  # long texts no summary reads


def _read_here(name: str) -> bool:
    """Whether :func:`summarise` reads the frame's column ``name`` (the run's fields, its bench tags but the
    long ones, the attacker, hyperparameters, dataset options, recipe and metrics)."""
    return (not name.startswith(("params.", "tags.", "metrics.")) or name.startswith(("metrics.", "params.hp.", "params.data."))
            or name.startswith("params.") and name[len("params."):] in SETTING_RECIPE
            or name.startswith("tags.bench.") and name not in UNREAD_TAGS or name == "tags.leakage_attacker")


def varying_options(runs) -> list[str]:
    """The dataset-option columns (``params.data.*``, the data seed aside) whose values differ among ``runs``, one
    dataset's trials; an option a run does not record (one added to the dataset after it ran) is not a second setting."""
    columns = [c for c in runs.columns if c.startswith("params.data.") and c != "params.data.data_seed"]
    return [c for c in columns if runs[c].dropna().astype(str).nunique() > 1]


def section_name(name: str, options: dict[str, str]) -> str:
    """The section of one setting of a dataset ranked at several: ``biased_mnist:rho=0.99``."""
    return ":".join([name, *(f"{key}={value}" for key, value in options.items())])


def split_settings(frame):
    """``frame`` with each dataset whose trials ran at several settings (``bench report`` of an experiment holding
    Biased-MNIST at rho 0.99 and 0.997) split into a section per setting, named by :func:`section_name` from the
    options that differ (``biased_mnist:rho=0.99``), so that no table, curve or selection mixes two settings."""
    if frame is None or frame.empty:
        return frame
    labels = frame["tags.bench.dataset"].copy()
    for dataset, runs in frame.groupby("tags.bench.dataset"):
        varying = varying_options(runs)
        if not varying:
            continue
        for index, trial in runs[varying].iterrows():
            labels[index] = section_name(dataset, {c[len("params.data."):]: str(v) for c, v in trial.items() if isinstance(v, str)})
    return frame.assign(**{"tags.bench.dataset": labels})


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
    frame = frame[[name for name in frame.columns if _read_here(name)]]  # 100,000 trials: copy and group only these
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
            rounds = _column(group, "tags.bench.refined")
            if rounds is not None:
                row.refined = min((int(r) for r in rounds if isinstance(r, str) and r.isdigit()), default=0)
            commits = _column(group, "tags.bench.git_commit")
            if commits is not None:
                row.commits = sorted({str(c) for c in commits if isinstance(c, str) and c})
            if "start_time" in group.columns:  # the earliest and latest start (a time's order is its number's)
                first, last = _milliseconds(group["start_time"].min()), _milliseconds(group["start_time"].max())
                if math.isfinite(first) and math.isfinite(last):
                    row.first_start, row.last_start = first, last
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

