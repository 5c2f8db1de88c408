"""`bench sweep`: draw configurations from each method's search space, run each on every seed, resume.

Configurations
    Random search (default): the ``i``-th configuration of a method takes each
    hyperparameter from a generator seeded by (sweep seed, method, hyperparameter
    name, ``i``) (:func:`removal_bench.core.params.sample`), so the same sweep seed gives the
    same configurations, and adding a hyperparameter or a method leaves every
    other draw unchanged. ``--grid``: the product of each space's
    ``grid(points)``. ``--set METHOD.NAME=VALUE`` fixes a hyperparameter;
    ``--set METHOD.NAME=V1,V2`` makes it a choice among those values (drawn, or
    a grid axis). Hyperparameters without a space keep their default.

Strength curves (``--curve``)
    Each method declares the hyperparameter(s) that set how hard it removes
    ``s`` (``Method.strength``: name -> (low, high), from about "no removal" to
    "task destroyed"). ``--curve --strengths N`` takes N log-spaced values of
    that range (several strength hyperparameters move in step: the i-th point
    takes each one's i-th value), every other hyperparameter at its default
    (``--set`` fixes it, or with several values adds a grid axis), the training
    recipe at the dataset's. A method without a strength (vanilla, LEACE) is one
    configuration. :func:`strength_values`.

Resume
    Before running, the driver asks MLflow which trials of the experiment are
    complete (a FINISHED run, or one stopped early by the scheduler; by config
    hash) and runs only the others, under a new parent run. ``--restart`` runs
    everything again. The report reads the experiment's runs of the planned
    trials and keeps one run per trial (:func:`removal_bench.running.tracking.deduplicate`).

Early stopping (``--scheduler asha``, Ray only)
    ASHA on ``bench_score`` per epoch (:func:`removal_bench.running.executors.schedule_score`):
    ``val_accuracy``, or, with ``--max-leakage E``, ``val_accuracy`` if a cheap
    linear probe's validation leakage after that epoch (``val_leakage_epoch``,
    :func:`removal_bench.running.trial.epoch_leakage`) is at most E, else 0. A trial stopped by
    ASHA ends KILLED with ``bench.stopped_early`` and counts as complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import removal_bench.datasets as dataset_registry
import removal_bench.methods as method_registry
from removal_bench.core.errors import UserError
from removal_bench.core.params import Choice, Param, resolve, sample
from removal_bench.core.recipes import check_source
from removal_bench.running.runner import (
    Discard,
    Finished,
    PlannedTrial,
    RunRequest,
    check_where,
    drive,
    invocation_params,
    parse_dataset,
    parse_sets,
    plugin_names,
    prepare_data,
    seeded_trials,
    train_overrides,
    unique,
    validate_request,
    where_text,
)

DEFAULT_SAMPLES = 20
DEFAULT_STRENGTHS = 8


@dataclass
class SweepRequest(RunRequest):
    samples: int | None = None  # None: DEFAULT_SAMPLES (random search); not with grid
    grid: bool = False
    grid_points: int = 3
    curve: bool = False  # strength curves instead of a search
    strengths: int = DEFAULT_STRENGTHS
    command: str = ""  # the command line, kept on the parent run for the leaderboard's provenance
    sweep_seed: int = 0
    scheduler: str = "none"  # "none" or "asha"
    max_leakage: float | None = None
    grace_period: int = 1
    reduction_factor: float = 3.0
    restart: bool = False
    formats: tuple[str, ...] = ("markdown", "csv")


def search_space(method: str, overrides: dict[str, list[str]]) -> dict[str, Param]:
    """The method's declared hyperparameters with ``--set`` applied: one value fixes it, several make a choice."""
    declared = dict(method_registry.get_method(method).hparams)
    for name, raw_values in overrides.items():
        values = [resolve(method, declared, {name: raw})[name] for raw in raw_values]  # validates name and value
        if len(values) == 1:
            declared[name] = dataclasses.replace(declared[name], default=values[0], space=None)
        else:
            declared[name] = dataclasses.replace(declared[name], space=Choice(tuple(values)))
    return declared


RECIPE_PREFIX = "recipe."


def strength_values(method: str, points: int) -> list[dict[str, Any]]:
    """The method's strength curve: ``points`` log-spaced values of each declared strength
    hyperparameter, in step, weakest first; integer hyperparameters are rounded and repeats
    dropped. An empty list when the method declares no strength."""
    cls = method_registry.get_method(method)
    axes = {}
    for name, (low, high) in getattr(cls, "strength", {}).items():
        values = [float(f"{v:.3g}") for v in np.geomspace(low, high, points)]  # readable labels
        if cls.hparams[name].type is int:
            values = [int(round(v)) for v in values]
        axes[name] = values
    curve, seen = [], set()
    for index in range(points if axes else 0):
        point = {name: values[index] for name, values in axes.items()}
        marker = tuple(sorted(point.items()))
        if marker not in seen:
            seen.add(marker)
            curve.append(point)
    return curve


def curve_configurations(
    method: str, overrides: dict[str, list[str]], points: int, recipe_overrides: dict[str, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """The method's strength curve crossed with the axes ``--set`` (several values) and ``--train`` add; the
    other hyperparameters at their defaults, or at the method's ``curve_fixed`` values (IRENE: alpha 1)."""
    strengths = getattr(method_registry.get_method(method), "strength", {})
    clash = sorted(set(overrides) & set(strengths))
    if clash:
        raise UserError(f"--curve sets {method}.{clash[0]} itself (its strength); do not --set it")
    space = search_space(method, overrides)
    fixed = getattr(method_registry.get_method(method), "curve_fixed", {})
    axes: dict[str, list[Any]] = {}
    for name, param in space.items():
        several = name in overrides and len(overrides[name]) > 1
        default = fixed[name] if name in fixed and name not in overrides else param.default
        axes[name] = list(param.space.values) if several else [default]
    for name, values in (recipe_overrides or {}).items():
        axes[RECIPE_PREFIX + name] = list(values)
    curve = strength_values(method, points) or [{}]
    names = list(axes)
    return [{**dict(zip(names, values)), **point} for point in curve for values in itertools.product(*axes.values())]


def configurations(
    method: str, overrides: dict[str, list[str]], samples: int, sweep_seed: int, grid_points: int | None = None,
    recipe_overrides: dict[str, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """The method's hyperparameter configurations, without repeats, in draw order.

    Random search when ``grid_points`` is None (``samples`` draws), else the grid.
    ``recipe_overrides`` (``--train`` field -> values, checked) join the search as
    ``recipe.<field>`` keys: one value fixes the field, several are drawn (or all
    taken, on a grid) like a hyperparameter's choice.
    """
    space = search_space(method, overrides)
    for name, values in (recipe_overrides or {}).items():
        space[RECIPE_PREFIX + name] = (Param(values[0]) if len(values) == 1
                                       else Param(values[0], space=Choice(tuple(values))))
    if grid_points is None:
        drawn = [sample(space, method, sweep_seed, index) for index in range(samples)]
    else:
        names = list(space)
        axes = [space[n].space.grid(grid_points) if space[n].space is not None else [space[n].default] for n in names]
        drawn = [dict(zip(names, values)) for values in itertools.product(*axes)]
    unique, seen = [], set()
    for values in drawn:
        marker = repr(sorted(values.items()))
        if marker not in seen:
            seen.add(marker)
            unique.append(values)
    return unique


def validate(request: SweepRequest) -> None:
    validate_request(request)
    if request.grid and request.samples is not None:
        raise UserError("--samples draws a random search; --grid takes every point of the grid: give one of them")
    if request.samples is not None and request.samples < 1:
        raise UserError(f"--samples must be at least 1, got {request.samples}")
    if request.curve and (request.grid or request.samples is not None):
        raise UserError("--curve runs each method's strength curve: give it without --grid or --samples")
    if request.strengths < 2:
        raise UserError(f"--strengths must be at least 2, got {request.strengths}")
    if request.grid_points < 2:
        raise UserError(f"--grid-points must be at least 2, got {request.grid_points}")
    if request.scheduler not in ("none", "asha"):
        raise UserError(f"unknown scheduler {request.scheduler!r} (valid: none, asha)")
    if request.scheduler == "asha" and request.executor != "ray":
        raise UserError("--scheduler asha needs --executor ray")
    if request.max_leakage is not None and not 0.0 <= request.max_leakage <= 1.0:
        raise UserError(f"--max-leakage is a balanced accuracy between 0 and 1, got {request.max_leakage}")
    from removal_bench.running import preflight

    preflight.finite(request.grace_period, "--grace-period", minimum=1)
    preflight.finite(request.reduction_factor, "--reduction-factor", minimum=1, strict=True)


def plan_sweep(request: SweepRequest) -> list[PlannedTrial]:
    """Every (dataset, method, configuration, seed) of the sweep, validated, without repeats."""
    validate(request)
    methods, dataset_texts = plugin_names(request)  # installed plugins and import paths (removal_bench.running.plugins)
    if len(set(methods)) != len(methods):
        raise UserError("--methods names a method twice")
    overrides = parse_sets(request.sets, methods)
    check_source(request.recipe)
    training = train_overrides(request.train, methods)
    samples = DEFAULT_SAMPLES if request.samples is None else request.samples
    by_method = {
        method: (curve_configurations(method, overrides.get(method, {}), request.strengths, training.get(method, {}))
                 if request.curve else
                 configurations(method, overrides.get(method, {}), samples, request.sweep_seed,
                                request.grid_points if request.grid else None, training.get(method, {})))
        for method in methods
    }
    data_root = request.data_root or str(dataset_registry.default_data_root())
    planned: list[PlannedTrial] = []
    for dataset_text in dataset_texts:
        dataset, options = parse_dataset(dataset_text)
        for method in methods:
            for drawn in by_method[method]:
                hparams = {k: v for k, v in drawn.items() if not k.startswith(RECIPE_PREFIX)}
                changes = {k[len(RECIPE_PREFIX):]: v for k, v in drawn.items() if k.startswith(RECIPE_PREFIX)}
                planned += seeded_trials(request, method, dataset, options, hparams, changes, data_root)
    return unique(planned, "the sweep names the same trial twice (a repeated dataset?)")


def search_text(request: SweepRequest) -> str:
    if request.curve:
        return f"curve({request.strengths})"
    return f"grid({request.grid_points})" if request.grid else f"random({request.samples or DEFAULT_SAMPLES})"


def _portable_path(text: str, cwd: str) -> str:
    """An absolute path inside the working directory (or its parent) as the relative path a user types there."""
    if not os.path.isabs(text):
        return text
    path = os.path.normpath(text)
    for base, prefix in ((cwd, ""), (os.path.dirname(cwd), "..")):
        if base != os.sep and (path == base or path.startswith(base + os.sep)):
            rest = os.path.relpath(path, base)
            return os.path.join(prefix, rest) if prefix else rest
    return text


def _portable_word(word: str, cwd: str) -> str:
    if word.startswith("sqlite:///"):
        path = word[len("sqlite:///"):]
        return "sqlite:///" + _portable_path(path, cwd) if os.path.isabs(path) else word
    if word.startswith("-") and "=" in word:  # --data-root=/abs/path
        option, _, value = word.partition("=")
        return f"{option}={_portable_word(value, cwd)}"
    return _portable_path(word, cwd)


def portable_command(command: str | list[str], cwd: str | Path | None = None) -> str:
    """A command line as a user types it in the repository: absolute paths inside the working directory, or
    beside it (the data root ``../shared/data``), become relative, and so does a SQLite URI's file (a relative
    ``sqlite:///mlflow.db`` is read from the working directory). Other absolute paths stay. Provenance
    (MLflow's ``command`` param, LEADERBOARD.md, REPRODUCTION.md) never carries this machine's layout."""
    import shlex

    cwd = os.path.normpath(str(cwd or Path.cwd()))
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError:  # not a shell word list: leave it as it is
            return command
    return shlex.join(_portable_word(word, cwd) for word in command)


def command_text(words: list[str] | None = None) -> str:
    """A command line (default: this process's), for the leaderboard's provenance (MLflow caps a param at 6000),
    with its paths as a user types them in the working directory (:func:`portable_command`)."""
    if words is None:
        words = [Path(sys.argv[0]).name] + sys.argv[1:] if sys.argv and sys.argv[0] else ["bench"]
    return portable_command(words)[:6000]


def sweep_id(planned: list[PlannedTrial]) -> str:
    """The plan's identity: the same command gives the same id, so a resumed sweep can be recognised."""
    return hashlib.sha256("\n".join(sorted(p.key for p in planned)).encode()).hexdigest()[:16]


def asha_options(request: SweepRequest, planned: list[PlannedTrial]):
    from removal_bench.running.executors import AshaOptions
    from removal_bench.running.trial import load_data

    epochs = max((p.config["epochs"] if p.config["epochs"] is not None else load_data(p.config).spec.epochs)
                 for p in planned)
    return AshaOptions(max_epochs=max(epochs, 1), grace_period=request.grace_period,
                       reduction_factor=request.reduction_factor, max_leakage=request.max_leakage)


def execute_sweep(request: SweepRequest) -> Finished:
    """Plan, skip what the experiment already holds, run the rest; every planned trial's runs for the report
    (``reporting.publish.publish_report``), and exit status 0 when at least one trial finished."""
    from removal_bench.running.tracking import Tracker, completed_hashes, deduplicate, load_runs

    planned = plan_sweep(request)
    tracking_uri, gpus = check_where(request, planned)
    prepare_data(planned)
    asha = asha_options(request, planned) if request.scheduler == "asha" else None
    if asha is not None and asha.max_leakage is not None:
        for trial in planned:
            trial.config["epoch_leakage"] = True  # not part of the identity: it changes no figure

    tracker = Tracker(tracking_uri, request.experiment, resume=(
        "the same bench sweep command resumes once MLflow answers: it skips the trials already complete"))
    complete = {} if request.restart else completed_hashes(tracking_uri, request.experiment)
    todo = [p for p in planned if p.key not in complete]
    identity = sweep_id(planned)
    configs = len({(p.config["dataset"], p.config_key) for p in planned})
    parent = tracker.start_parent(
        f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
        {
            **invocation_params(planned, request),
            "trials": len(todo), "planned": len(planned),
            "already_complete": len(planned) - len(todo), "configurations": configs,
            "search": search_text(request),
            "command": request.command or command_text(),
            "sweep_seed": request.sweep_seed, "scheduler": request.scheduler,
            "max_leakage": request.max_leakage if request.max_leakage is not None else "none",
            "restart": request.restart, "sweep_id": identity,
        },
    )
    tracker.call(tracker.client.set_tag, parent, "bench.sweep_id", identity)
    print(
        f"sweep {identity}: {configs} configurations x {request.seeds} seeds = {len(planned)} trials; "
        f"{len(planned) - len(todo)} already complete in experiment {request.experiment!r}"
        f"{' (ignored: --restart)' if request.restart else ''}; running {len(todo)} {where_text(request)}; "
        f"MLflow {tracking_uri}, run {parent}",
        file=Discard() if request.quiet else sys.stderr, flush=True,
    )
    if todo:
        drive(todo, request, tracker, gpus, asha)
    else:
        tracker.finish_parent("FINISHED")

    frame = load_runs(tracking_uri, request.experiment)
    keys = {p.key for p in planned}
    if not frame.empty:
        frame = frame[frame["tags.bench.config_hash"].isin(keys)]
    finished = 0 if frame.empty else int((deduplicate(frame)["status"] == "FINISHED").sum())
    return Finished(frame, tracking_uri, parent, 0 if finished else 1)
