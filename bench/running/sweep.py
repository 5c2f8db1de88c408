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

Refined curves (``--curve --refine K``)
    After the log-spaced strengths, K rounds add one strength per curve each: the log-space midpoint of the
    neighbouring pair across which the seed-mean validation point moves most (:func:`choose_bisection`,
    :func:`refine_round`). A round is planned only from complete rounds, so a rerun runs the same points.

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
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

import removal_bench.datasets as dataset_registry
import removal_bench.methods as method_registry
from removal_bench.core.errors import UserError
from removal_bench.core.params import sample
from removal_bench.core.recipes import check_source
from removal_bench.running.search import (
    DEFAULT_PROPOSALS,
    DEFAULT_SAMPLES,
    RECIPE_PREFIX,
    figure,
    finite_mean,
    normalised,
    search_space,
    split_drawn,
    with_recipe_fields,
)
from removal_bench.running.runner import (
    Discard,
    Finished,
    PlannedTrial,
    RunRequest,
    check_where,
    drive,
    invocation_params,
    offline_note,
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

DEFAULT_STRENGTHS = 8


@dataclass
class SweepRequest(RunRequest):
    samples: int | None = None  # None: DEFAULT_SAMPLES (random search); not with grid
    grid: bool = False
    grid_points: int = 3
    curve: bool = False  # strength curves instead of a search
    strengths: int = DEFAULT_STRENGTHS
    refine: int = 0  # with curve: rounds of bisection after the log-spaced strengths (choose_bisection)
    search: str = "random"  # random (or --grid / --curve), or optuna: rounds of a multi-objective search (search.py)
    proposals: int = DEFAULT_PROPOSALS  # optuna: configurations a round proposes per method after the first
    command: str = ""  # the command line, kept on the parent run for the leaderboard's provenance
    sweep_seed: int = 0
    scheduler: str = "none"  # "none" or "asha"
    max_leakage: float | None = None
    grace_period: int = 1
    reduction_factor: float = 3.0
    restart: bool = False
    formats: tuple[str, ...] = ("markdown", "csv")


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


# --------------------------------------------------------------------------- refined curves

# In a refined trial's protocol fingerprint (removal_bench.running.protocol): bump it when the choice below changes,
# so that curves refined by different rules never rank together.
REFINE_RULE = "bisect-largest-val-move/1"


@dataclass(frozen=True)
class Bisection:
    """One refinement round's choice on one curve (:func:`choose_bisection`)."""

    point: dict[str, Any] | None  # the new strength values; None: nothing chosen
    between: tuple[dict[str, Any], dict[str, Any]] | None = None  # the neighbouring pair it bisects
    move: float = math.nan  # how far the seed-mean validation point moves across that pair
    waiting: int = 0  # trials of the curve without a FINISHED run: nothing is chosen until they have one


def midpoint(low: dict[str, Any], high: dict[str, Any], integers: Iterable[str] = ()) -> dict[str, Any]:
    """The log-space midpoint of two strength points, each hyperparameter sqrt(low * high), rounded as the
    log-spaced strengths are (3 significant digits; integer hyperparameters to the nearest integer)."""
    integers = set(integers)
    out = {}
    for name in low:
        value = math.sqrt(float(low[name]) * float(high[name]))
        out[name] = int(round(value)) if name in integers else float(f"{value:.3g}")
    return out


def choose_bisection(records: Iterable[dict[str, Any]], integers: Iterable[str] = ()) -> Bisection:
    """The next strength of one curve, from the records of every trial planned on it so far.

    A record is one planned trial: ``strengths`` (its strength hyperparameters' values), ``status`` (its
    run's: ``FINISHED``, ``FAILED``, ..., or ``MISSING`` when it has none), and its run's *validation*
    figures ``val_accuracy``, ``val_leakage`` and ``num_private``. Test figures are never read.

    What it chooses from: the curve's points (its log-spaced strengths and the points earlier rounds
    added), each summarised by its seed-mean validation point (mean ``val_accuracy``, mean normalised
    ``val_leakage``). Across each neighbouring pair (points ordered by strength) the point moves by
    max(|change in val_accuracy|, |change in normalised val_leakage|); the pair with the largest move is
    bisected in log space (:func:`midpoint`). Ties go to the weaker pair (lower strength); a pair whose
    midpoint rounds onto an existing point (neighbouring integers, or 3-digit values that close) cannot be
    bisected, and the next pair in that order is taken. A pair with no finite figure moves by -inf.

    Why it is deterministic: it reads only figures of FINISHED runs of the trials already planned, and
    only when *every* one of them is FINISHED (else ``waiting`` counts the others and nothing is chosen),
    so the choice is a function of those trials' figures, which a rerun reads back unchanged; the
    order of the records does not matter (points are sorted by strength, seeds summed in a sorted order).
    """
    records = list(records)
    waiting = sum(1 for record in records if record.get("status") != "FINISHED")
    if waiting or not records:
        return Bisection(None, waiting=waiting)
    by_point: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        by_point.setdefault(tuple(sorted(record["strengths"].items())), []).append(record)
    ordered = sorted(by_point, key=lambda marker: tuple(float(value) for _, value in marker))
    figures = []
    for marker in ordered:
        mine = sorted(by_point[marker], key=lambda r: str(r.get("seed")))
        accuracy = finite_mean([figure(r, "val_accuracy") for r in mine])
        leakage = finite_mean([normalised(figure(r, "val_leakage"), figure(r, "num_private")) for r in mine])
        figures.append((accuracy, leakage))
    pairs = []
    for index in range(len(ordered) - 1):
        changes = [abs(b - a) for a, b in zip(figures[index], figures[index + 1]) if math.isfinite(a) and math.isfinite(b)]
        pairs.append((-(max(changes) if changes else -math.inf), index))
    existing = set(ordered)
    for negative_move, index in sorted(pairs):  # largest move first; ties: the lower index, the weaker pair
        low, high = dict(ordered[index]), dict(ordered[index + 1])
        point = midpoint(low, high, integers)
        if tuple(sorted(point.items())) not in existing:
            return Bisection(point, (low, high), -negative_move)
    return Bisection(None)


@dataclass
class Curve:
    """One strength curve of a sweep: a method on a dataset with every hyperparameter but its strengths fixed."""

    dataset: str
    options: dict[str, Any]  # as parsed from the dataset text
    method: str
    drawn: dict[str, Any]  # the configuration without its strengths (``recipe.<field>`` keys included)
    integers: tuple[str, ...]  # strength hyperparameters of integer type
    data_root: str
    points: list[tuple[dict[str, Any], list[PlannedTrial]]] = dataclasses.field(default_factory=list)
    settled: str = ""  # why no further round refines it (waiting for trials, nothing left to bisect)

    def name(self) -> str:
        fixed = ", ".join(f"{k}={v}" for k, v in sorted(self.drawn.items())
                          if v != _default(self.method, k))
        return f"{self.method}{f'({fixed})' if fixed else ''} on {self.dataset}"


def _default(method: str, name: str) -> Any:
    if name.startswith(RECIPE_PREFIX):
        return None
    cls = method_registry.get_method(method)
    return getattr(cls, "curve_fixed", {}).get(name, cls.hparams[name].default)


def curve_records(curve: Curve, runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`choose_bisection`'s records of ``curve``: one per planned trial, from ``runs`` (config hash -> the
    trial's deduplicated run as a row of ``mlflow.search_runs``)."""
    records = []
    for strengths, trials in curve.points:
        for trial in trials:
            run = runs.get(trial.key)
            record = {"strengths": strengths, "seed": trial.config["seed"],
                      "status": run.get("status", "MISSING") if run is not None else "MISSING"}
            for name in ("val_accuracy", "val_leakage", "num_private"):
                record[name] = run.get(f"metrics.{name}") if run is not None else None
            records.append(record)
    return records


def refined_trials(request: SweepRequest, curve: Curve, strengths: dict[str, Any], round_: int) -> list[PlannedTrial]:
    """The trials (every seed) of a refined point; their config carries ``curve_refine``, which the protocol
    fingerprint and the ``bench.refined`` tag read (not the identity: the config hash is the point's)."""
    drawn = {**curve.drawn, **strengths}
    hparams, changes = split_drawn(drawn)
    trials = seeded_trials(request, curve.method, curve.dataset, curve.options, hparams, changes, curve.data_root)
    for trial in trials:
        trial.config["curve_refine"] = {"round": round_, "base_strengths": request.strengths, "rule": REFINE_RULE}
        trial.config["search"] = {"name": "refine", "round": round_}
    return trials


def refine_round(request: SweepRequest, curves: list[Curve], runs: dict[str, dict[str, Any]],
                 round_: int) -> tuple[list[PlannedTrial], list[str]]:
    """Round ``round_`` of every curve not yet settled: the new trials, and a line per curve saying what was
    chosen (or why nothing was). Each curve's choice reads only its own points so far (base and rounds before)."""
    new, lines = [], []
    for curve in curves:
        if curve.settled:
            continue
        choice = choose_bisection(curve_records(curve, runs), curve.integers)
        if choice.waiting:
            curve.settled = (f"{curve.name()}: refinement waits for {choice.waiting} trial(s) without a FINISHED run; "
                             "the same command continues it once they finish")
            lines.append(curve.settled)
            continue
        if choice.point is None:
            curve.settled = f"{curve.name()}: no neighbouring strengths left to bisect"
            lines.append(curve.settled)
            continue
        trials = refined_trials(request, curve, choice.point, round_)
        curve.points.append((choice.point, trials))
        new += trials
        low, high = choice.between

        def text(point):
            return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())

        lines.append(f"{curve.name()}: {text(choice.point)} (between {text(low)} and {text(high)}, "
                     f"validation point moves {choice.move:.3f})")
    return new, lines


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
    space = with_recipe_fields(search_space(method, overrides), recipe_overrides)
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
    if request.search not in ("random", "optuna"):
        raise UserError(f"unknown search {request.search!r} (valid: random, optuna)")
    if request.search == "optuna":
        for given, flag in ((request.grid, "--grid"), (request.curve, "--curve"), (request.refine, "--refine")):
            if given:
                raise UserError(f"--search optuna proposes its own configurations; {flag} is another search: "
                                "give one of them")
        if request.scheduler == "asha":
            raise UserError("--search optuna is told finished trials' validation figures; --scheduler asha stops "
                            "trials early: give one of them")
    if request.proposals < 1:
        raise UserError(f"--proposals must be at least 1, got {request.proposals}")
    if request.refine < 0:
        raise UserError(f"--refine must not be negative, got {request.refine}")
    if request.refine and not request.curve:
        raise UserError("--refine bisects strength curves: give it with --curve")
    if request.refine and request.scheduler == "asha":
        raise UserError("--refine chooses from finished trials' validation figures; --scheduler asha stops trials "
                        "early: give one of them")
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
    return plan_curves(request)[0]


def plan_curves(request: SweepRequest) -> tuple[list[PlannedTrial], list]:
    """:func:`plan_sweep`'s trials and, with ``--curve``, the strength curves they make up (methods without a
    strength make none), in plan order: what ``--refine`` bisects. With ``--search optuna``: the first round's
    trials and the studies (:class:`removal_bench.running.search.Study`) whose later rounds the sweep plans."""
    validate(request)
    methods, dataset_texts = plugin_names(request)  # installed plugins and import paths (removal_bench.running.plugins)
    if len(set(methods)) != len(methods):
        raise UserError("--methods names a method twice")
    overrides = parse_sets(request.sets, methods)
    check_source(request.recipe)
    training = train_overrides(request.train, methods)
    data_root = request.data_root or str(dataset_registry.default_data_root())
    if request.search == "optuna":
        from removal_bench.running.search import plan_studies

        planned, studies = plan_studies(request, methods, overrides, training, dataset_texts, data_root)
        return unique(planned, "the sweep names the same trial twice (a repeated dataset?)"), studies
    samples = DEFAULT_SAMPLES if request.samples is None else request.samples
    by_method = {
        method: (curve_configurations(method, overrides.get(method, {}), request.strengths, training.get(method, {}))
                 if request.curve else
                 configurations(method, overrides.get(method, {}), samples, request.sweep_seed,
                                request.grid_points if request.grid else None, training.get(method, {})))
        for method in methods
    }
    planned: list[PlannedTrial] = []
    curves: dict[tuple, Curve] = {}
    for dataset_text in dataset_texts:
        dataset, options = parse_dataset(dataset_text)
        for method in methods:
            cls = method_registry.get_method(method)
            strengths = getattr(cls, "strength", {}) if request.curve else {}
            for drawn in by_method[method]:
                hparams, changes = split_drawn(drawn)
                trials = seeded_trials(request, method, dataset, options, hparams, changes, data_root)
                for trial in trials:
                    trial.config["search"] = {"name": "curve" if request.curve else "grid" if request.grid else "random"}
                planned += trials
                if strengths:
                    rest = {k: v for k, v in drawn.items() if k not in strengths}
                    curve = curves.setdefault((dataset_text, method, repr(sorted(rest.items()))), Curve(
                        dataset, options, method, rest, tuple(n for n in strengths if cls.hparams[n].type is int),
                        data_root))
                    curve.points.append(({k: drawn[k] for k in strengths}, trials))
    return unique(planned, "the sweep names the same trial twice (a repeated dataset?)"), list(curves.values())


def search_text(request: SweepRequest) -> str:
    if request.search == "optuna":
        return f"optuna({request.samples or DEFAULT_SAMPLES},proposals={request.proposals})"
    if request.curve:
        return f"curve({request.strengths})" + (f"+refine({request.refine})" if request.refine else "")
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
    """Plan, skip what the experiment already holds, run the rest; with ``--refine``, then each refinement round
    (:func:`refine_round`) the same way under a parent run of its own; every planned trial's runs for the report
    (``reporting.publish.publish_report``), and exit status 0 when at least one trial finished."""
    from removal_bench.running.tracking import Tracker, completed_hashes, deduplicate, load_runs

    planned, curves = plan_curves(request)
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
    stream = Discard() if request.quiet else sys.stderr
    started = time.strftime('%Y%m%d-%H%M%S')
    parent = tracker.start_parent(
        f"sweep-{started}",
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
        file=stream, flush=True,
    )
    optuna = request.search == "optuna"
    rounds = (max((len(study.sizes) for study in curves), default=1) - 1 if optuna
              else request.refine if curves else 0)
    if optuna:
        print(f"search round 1 of {rounds + 1}: each method's random start ({search_text(request)}, sweep seed "
              f"{request.sweep_seed})", file=stream, flush=True)
    planned_offline: list[str] = []  # --executor offline: planned, not run (removal_bench.running.offline)
    if todo:
        planned_offline += drive(todo, request, tracker, gpus, asha).planned_offline
    else:
        tracker.finish_parent("FINISHED")

    for round_ in range(1, rounds + 1):
        runs = load_runs(tracking_uri, request.experiment)
        runs = {} if runs.empty else {row["tags.bench.config_hash"]: row for row in deduplicate(runs).to_dict("records")}
        if optuna:
            from removal_bench.running.search import search_round

            new, lines = search_round(request, curves, runs, round_ + 1)
        else:
            new, lines = refine_round(request, curves, runs, round_)
        if not new and not lines:
            break
        planned = unique(planned + new, "a refined strength repeats a planned trial")
        complete = {} if request.restart else completed_hashes(tracking_uri, request.experiment)
        todo = [p for p in new if p.key not in complete]
        if optuna:
            print(f"search round {round_ + 1} of {rounds + 1}: {len(new) // max(request.seeds, 1)} new configurations "
                  f"x {request.seeds} seeds = {len(new)} trials; {len(new) - len(todo)} already complete; running "
                  f"{len(todo)}", file=stream, flush=True)
        else:
            print(f"refinement round {round_} of {request.refine}: {len(new) // max(request.seeds, 1)} strengths x "
                  f"{request.seeds} seeds = {len(new)} trials; {len(new) - len(todo)} already complete; running "
                  f"{len(todo)}", file=stream, flush=True)
        for line in lines:
            print(f"  {line}", file=stream, flush=True)
        if not todo:
            continue
        parent = tracker.start_parent(
            f"sweep-{started}-{'round' if optuna else 'refine'}{round_ + optuna}",
            {
                **invocation_params(todo, request),
                "trials": len(todo), "planned": len(new), "already_complete": len(new) - len(todo),
                "configurations": len({(p.config["dataset"], p.config_key) for p in new}),
                "search": search_text(request), ("search_round" if optuna else "refine_round"): round_ + optuna,
                "command": request.command or command_text(),
                "sweep_seed": request.sweep_seed, "scheduler": request.scheduler,
                "max_leakage": request.max_leakage if request.max_leakage is not None else "none",
                "restart": request.restart, "sweep_id": identity,
            },
        )
        tracker.call(tracker.client.set_tag, parent, "bench.sweep_id", identity)
        planned_offline += drive(todo, request, tracker, gpus, None).planned_offline

    offline_note(request, planned_offline)
    frame = load_runs(tracking_uri, request.experiment)
    keys = {p.key for p in planned}
    if not frame.empty:
        frame = frame[frame["tags.bench.config_hash"].isin(keys)]
    finished = 0 if frame.empty else int((deduplicate(frame)["status"] == "FINISHED").sum())
    return Finished(frame, tracking_uri, parent, 0 if finished or planned_offline else 1)
