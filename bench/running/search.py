"""`bench sweep --search optuna`: a multi-objective Bayesian search of each method's hyperparameters, in rounds.

What it searches
    Each method's declared search space (the ``space`` of its ``hparams``, ``bench list`` shows them), with
    ``--set`` applied (one value fixes a hyperparameter, several make it a choice), and the recipe fields a user
    opens with ``--train FIELD=V1,V2`` (a choice). A hyperparameter without a space keeps its default. A method
    with nothing to search (vanilla, LEACE) is one configuration.

What it optimises
    Two objectives, both on *validation* (test figures are never read): the mean over seeds of the validation
    task accuracy (maximised) and of the normalised validation leakage, (balanced accuracy - 1/K) / (1 - 1/K)
    (minimised). Every proposed configuration runs on every seed; a configuration with a FAILED seed is told to
    the searcher as failed.

How it proposes
    Ray Tune's ``OptunaSearch`` (``ray.tune.search.optuna``) with Optuna's ``TPESampler`` (multi-objective TPE;
    random for its first ``startup`` configurations), one study per method and dataset. The search runs in
    rounds: round 1 proposes ``startup`` configurations, each later round ``--proposals`` more, until
    ``--samples`` configurations a method (:func:`round_sizes`). A round is planned only from the complete
    rounds before it (every trial FINISHED or FAILED), as ``--refine`` is (:mod:`removal_bench.running.sweep`).

Why rounds, and why resume proposes the same points
    Each round builds a fresh searcher: the configurations of the rounds before it are fed back in plan order
    (``points_to_evaluate``, each then told its objectives through ``on_trial_complete``), and the sampler is
    seeded by (``--sweep-seed``, dataset, method, round) (:func:`round_seed`). A round's proposals are therefore
    a function of that history and those seeds alone: the same command after an interruption reads the
    finished trials back from the MLflow store (figures as logged, to the last digit), rebuilds each round's
    searcher and proposes exactly the points an uninterrupted sweep proposed, and runs only the trials
    without a FINISHED run. Asking for a proposal whenever a slot frees (Ray Tune's own loop) would make the
    proposals depend on which trial happened to finish first; rounds trade some of that adaptivity for a
    sweep that can be killed, resumed and re-run to the same figures. ``--proposals`` sets the trade (with
    ``--max-concurrent``: a round runs ``proposals x seeds`` trials at once at most).

Values
    Continuous proposals are rounded to 4 significant digits (readable labels, a finite set of trials) and
    kept inside their range; the rounded value is what runs and what the searcher is told. A proposal that
    repeats an earlier configuration plans no new trial and counts against the budget.

Each trial records the search that proposed it: tags ``bench.search`` (``optuna``) and ``bench.search_round``
(they travel in the trial table). The search is not in the protocol fingerprint: a searched trial is
measured as any other and ranks with them.
"""

from __future__ import annotations

import hashlib
import math
import warnings
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import removal_bench.methods as method_registry
from removal_bench.core.params import Choice, IntUniform, LogUniform, Param, Uniform, resolve

RULE = "optuna-tpe-rounds/1"  # bump when how a round proposes changes
STARTUP = 10  # Optuna's default number of random configurations before TPE models the front
DEFAULT_PROPOSALS = 4
OBJECTIVES = ("val_accuracy", "val_leakage_norm")
MODES = ("max", "min")
DEFAULT_SAMPLES = 20  # configurations a method, random search and --search optuna alike
RECIPE_PREFIX = "recipe."  # a recipe field searched beside the hyperparameters (--train FIELD=V1,V2)


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


def with_recipe_fields(space: dict[str, Param], recipe_overrides: dict[str, list[Any]] | None) -> dict[str, Param]:
    """``space`` with the ``--train`` fields as ``recipe.<field>`` keys: one value fixes the field, several make a
    choice, as a hyperparameter's ``--set`` does."""
    for name, values in (recipe_overrides or {}).items():
        space[RECIPE_PREFIX + name] = (Param(values[0]) if len(values) == 1
                                       else Param(values[0], space=Choice(tuple(values))))
    return space


def split_drawn(drawn: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A drawn configuration as (hyperparameters, recipe changes): the ``recipe.<field>`` keys go to the second."""
    hparams = {k: v for k, v in drawn.items() if not k.startswith(RECIPE_PREFIX)}
    changes = {k[len(RECIPE_PREFIX):]: v for k, v in drawn.items() if k.startswith(RECIPE_PREFIX)}
    return hparams, changes


def normalised(balanced_accuracy: float, num_private: float) -> float:
    """(leakage - 1/K) / (1 - 1/K), as the reports normalise it (removal_bench.reporting.statistics)."""
    if not (math.isfinite(balanced_accuracy) and math.isfinite(num_private)) or num_private < 2:
        return math.nan
    return (balanced_accuracy - 1.0 / num_private) / (1.0 - 1.0 / num_private)


def finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def figure(record: dict[str, Any], name: str) -> float:
    try:
        value = float(record.get(name))
    except (TypeError, ValueError):
        return math.nan
    return value


def round_sizes(samples: int, proposals: int) -> list[int]:
    """Configurations each round proposes: ``startup`` = max(proposals, min(STARTUP, samples // 2)) first (at most
    ``samples``), then ``proposals`` a round until ``samples``."""
    first = min(samples, max(proposals, min(STARTUP, samples // 2)))
    sizes, left = [first], samples - first
    while left > 0:
        sizes.append(min(proposals, left))
        left -= sizes[-1]
    return sizes


def round_seed(sweep_seed: int, dataset_text: str, method: str, round_: int) -> int:
    """The sampler's seed for one round of one study: a function of the sweep seed, the study and the round."""
    digest = hashlib.sha256(f"{sweep_seed}/{dataset_text}/{method}/{round_}".encode()).hexdigest()
    return int(digest[:8], 16)


def distributions(space: dict[str, Param]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optuna distributions of the searched names, and the fixed values of the others."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    searched, fixed = {}, {}
    for name, param in space.items():
        found = param.space
        if isinstance(found, LogUniform):
            searched[name] = FloatDistribution(found.low, found.high, log=True)
        elif isinstance(found, Uniform):
            searched[name] = FloatDistribution(found.low, found.high)
        elif isinstance(found, IntUniform):
            searched[name] = IntDistribution(found.low, found.high)
        elif isinstance(found, Choice):
            searched[name] = CategoricalDistribution(list(found.values))
        else:
            fixed[name] = param.default
    return searched, fixed


def rounded(value: Any, distribution: Any) -> Any:
    """A proposal as it runs: floats to 4 significant digits, inside the distribution's range."""
    from optuna.distributions import FloatDistribution

    if isinstance(distribution, FloatDistribution) and isinstance(value, float) and math.isfinite(value):
        return min(max(float(f"{value:.4g}"), distribution.low), distribution.high)
    return value


def propose(searched: dict[str, Any], history: list[tuple[dict[str, Any], tuple[float, float] | None]],
            count: int, seed: int, startup: int) -> list[dict[str, Any]]:
    """``count`` new configurations of the searched names, from a fresh ``OptunaSearch`` that has been shown
    ``history`` in order (each configuration with its two objectives, or None where it failed)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
        searcher = OptunaSearch(space=dict(searched), metric=list(OBJECTIVES), mode=list(MODES), sampler=sampler,
                                points_to_evaluate=[dict(point) for point, _ in history] or None)
        for index, (point, values) in enumerate(history):
            shown = searcher.suggest(f"history-{index}")
            if shown != point:  # the searcher must be shown exactly what ran
                raise RuntimeError(f"the searcher replayed {shown} for {point}")
            if values is None:
                searcher.on_trial_complete(f"history-{index}", None, error=True)
            else:
                searcher.on_trial_complete(f"history-{index}", dict(zip(OBJECTIVES, values)))
        out = []
        for index in range(count):
            suggestion = searcher.suggest(f"new-{index}")
            out.append({name: rounded(suggestion[name], searched[name]) for name in searched})
        return out


def objectives(records: list[dict[str, Any]]) -> tuple[float, float] | None | str:
    """A configuration's two objectives from its seeds' run records (``status``, ``val_accuracy``, ``val_leakage``,
    ``num_private``): the means when every seed FINISHED with finite figures; None (failed) when every seed has
    ended and one did not finish or has no figure; ``"waiting"`` while a seed has no ended run."""
    if any(r.get("status") not in ("FINISHED", "FAILED") for r in records):
        return "waiting"
    if any(r.get("status") != "FINISHED" for r in records):
        return None
    accuracy = finite_mean([figure(r, "val_accuracy") for r in records])
    leakage = finite_mean([normalised(figure(r, "val_leakage"), figure(r, "num_private")) for r in records])
    if not (math.isfinite(accuracy) and math.isfinite(leakage)):
        return None
    return accuracy, leakage


@dataclass
class Study:
    """One method's search on one dataset: the searched distributions, the fixed values, the rounds so far."""

    dataset_text: str
    dataset: str
    options: dict[str, Any]
    method: str
    searched: dict[str, Any]  # name (hyperparameter, or recipe.<field>) -> Optuna distribution
    fixed: dict[str, Any]
    sizes: list[int]
    data_root: str
    rounds: list[list[tuple[dict[str, Any], list]]] = field(default_factory=list)  # per round: (point, its trials)
    settled: str = ""

    def name(self) -> str:
        return f"{self.method} on {self.dataset}"

    def startup(self) -> int:
        return self.sizes[0]


def history(study: Study, runs: dict[str, dict[str, Any]]) -> tuple[list, int]:
    """(point, objectives or None) of every configuration planned so far, in plan order, and how many of
    them still wait for a trial (``runs``: config hash -> the trial's deduplicated run)."""
    out, waiting = [], 0
    for round_ in study.rounds:
        for point, trials in round_:
            records = []
            for trial in trials:
                run = runs.get(trial.key) or {}
                records.append({"status": run.get("status", "MISSING"),
                                **{name: run.get(f"metrics.{name}") for name in ("val_accuracy", "val_leakage",
                                                                                  "num_private")}})
            values = objectives(records)
            if values == "waiting":
                waiting += 1
            out.append((point, values))
    return out, waiting


def marker(point: dict[str, Any]) -> str:
    return repr(sorted(point.items()))


def plan_studies(request, methods: list[str], overrides: dict, training: dict, dataset_texts: list[str],
                 data_root: str) -> tuple[list, list[Study]]:
    """Round 1 of every study (its random start: it needs no history), the trials it plans, and the studies."""
    from removal_bench.running.runner import parse_dataset

    samples = DEFAULT_SAMPLES if request.samples is None else request.samples
    studies, planned = [], []
    for dataset_text in dataset_texts:
        dataset, options = parse_dataset(dataset_text)
        for method in methods:
            space = with_recipe_fields(search_space(method, overrides.get(method, {})), training.get(method, {}))
            searched, fixed = distributions(space)
            sizes = round_sizes(samples, request.proposals) if searched else [1]
            study = Study(dataset_text, dataset, options, method, searched, fixed, sizes, data_root)
            planned += plan_round(request, study, [], 1)
            studies.append(study)
    return planned, studies


def plan_round(request, study: Study, past: list, round_: int) -> list:
    """Round ``round_`` of ``study`` from ``past`` (its history): its points, appended to the study, and the
    trials not planned before (a repeated point reuses the earlier trials)."""
    from removal_bench.running.runner import seeded_trials

    count = study.sizes[round_ - 1]
    points = (propose(study.searched, past, count, round_seed(request.sweep_seed, study.dataset_text, study.method,
                                                              round_), study.startup())
              if study.searched else [{}])
    known = {marker(point): trials for earlier in study.rounds for point, trials in earlier}
    chosen, new = [], []
    for point in points:
        if marker(point) in known:
            chosen.append((point, known[marker(point)]))
            continue
        drawn = {**study.fixed, **point}
        hparams, changes = split_drawn(drawn)
        trials = seeded_trials(request, study.method, study.dataset, study.options, hparams, changes, study.data_root)
        for trial in trials:
            trial.config["search"] = {"name": "optuna", "round": round_, "rule": RULE}
        known[marker(point)] = trials
        chosen.append((point, trials))
        new += trials
    study.rounds.append(chosen)
    return new


def search_round(request, studies: list[Study], runs: dict[str, dict[str, Any]], round_: int) -> tuple[list, list[str]]:
    """Round ``round_`` of every study not yet settled: the new trials, and a line per study."""
    new, lines = [], []
    for study in studies:
        if study.settled:
            continue
        if round_ > len(study.sizes):
            study.settled = f"{study.name()}: {sum(study.sizes)} configurations proposed (--samples)"
            continue
        past, waiting = history(study, runs)
        if waiting:
            study.settled = (f"{study.name()}: the search waits for {waiting} configuration(s) without ended runs; "
                             "the same command continues it once they finish")
            lines.append(study.settled)
            continue
        trials = plan_round(request, study, past, round_)
        new += trials
        best = [values for _, values in past if values is not None]
        front = ", ".join(f"{a:.3f}/{b:.3f}" for a, b in sorted(set(pareto(best)), reverse=True))
        lines.append(f"{study.name()}: {study.sizes[round_ - 1]} configurations from {len(past)} seen "
                     f"(validation front, accuracy/leakage: {front or 'none yet'})")
    return new, lines


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other beats in both objectives (higher accuracy, lower leakage)."""
    return [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)]
