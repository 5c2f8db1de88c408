"""Confidence for the leaderboard: bootstrap intervals, win probabilities, tied ranks, budgets.

Pure functions of arrays (numpy only). The unit of resampling is the seed: each
configuration's seeds are drawn with replacement, independently of every other
configuration's, its figures are re-averaged, and the statistic (a method's
hypervolume, a budget's selection) is computed again on the re-averaged
configurations. Over ``replicates`` draws this gives the statistic's sampling
distribution under seed noise; the 95% interval is its 2.5th and 97.5th
percentiles (Efron's percentile bootstrap). A configuration with one seed has no
spread to resample: it enters every replicate at its value, so its interval is
too narrow, not too wide; the reports say how many seeds stand behind each row.

Every generator is seeded by :func:`generator` from fixed parts (a constant,
the dataset, the method, what is computed), so a report built twice from the
same runs prints the same intervals, and adding a method changes no other
method's draws.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from removal_bench.measuring.pareto import hypervolume

CONFIDENCE = 0.95
REPLICATES = 2000
SEED = 20240531  # fixed: reports are reproducible


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval (NaN where there is nothing to estimate)."""

    estimate: float
    low: float
    high: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.estimate) and math.isfinite(self.low) and math.isfinite(self.high)

    def overlaps(self, other: "Interval") -> bool:
        return self.finite and other.finite and self.low <= other.high and other.low <= self.high


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan)


def generator(*parts) -> np.random.Generator:
    """A generator whose stream depends only on ``parts`` (and :data:`SEED`)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in (SEED, *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def interval(estimate: float, samples: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Percentile interval of the finite ``samples`` around ``estimate``."""
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0 or not math.isfinite(estimate):
        return Interval(float(estimate), math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(float(estimate), float(low), float(high))


def resample_means(values: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, metrics): the means of ``values`` (seeds, metrics) over seeds drawn with replacement."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if values.shape[0] == 0:
        return np.full((replicates, values.shape[1]), math.nan)
    draws = rng.integers(0, values.shape[0], size=(replicates, values.shape[0]))
    if values.shape[1] == 1:
        return values[draws].mean(axis=1)
    # Several metrics: ``values[draws].mean(axis=1)`` sums each (replicate, metric) over the drawn seeds in draw
    # order (the reduced axis is not the innermost). One metric at a time, seeds as rows, gives the very same
    # sums (np.add.reduce over axis 0 adds whole rows in order) without the strided (replicates, seeds, metrics)
    # gather: 5x faster at 300 seeds, every bit the same (tests/test_table_scale.py).
    order = np.ascontiguousarray(draws.T)
    out = np.empty((replicates, values.shape[1]))
    for metric in range(values.shape[1]):
        out[:, metric] = np.add.reduce(values[:, metric][order], axis=0) / values.shape[0]
    return out


def mean_interval(values: Sequence[float], rng: np.random.Generator, replicates: int = REPLICATES) -> Interval:
    """The mean of the finite ``values`` with its bootstrap interval."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return NAN_INTERVAL
    return interval(float(finite.mean()), resample_means(finite, replicates, rng)[:, 0])


def _front_volume(accuracy: np.ndarray, retained: np.ndarray, chance: float) -> float:
    keep = np.isfinite(accuracy) & np.isfinite(retained)
    return hypervolume(list(zip(accuracy[keep], retained[keep])), (chance, 0.0))


def hypervolume_bootstrap(
    configurations: Sequence[np.ndarray], chance_accuracy: float, rng: np.random.Generator,
    replicates: int = REPLICATES,
) -> tuple[Interval, np.ndarray]:
    """A method's hypervolume (PROTOCOL.md) with its interval, and the replicates' hypervolumes.

    ``configurations``: one (seeds, 2) array per configuration, columns task
    accuracy and normalised leakage, one row per finished seed. The estimate is
    the hypervolume of the configurations' means, as the tables report it.
    """
    usable = [np.asarray(c, dtype=float).reshape(-1, 2) for c in configurations]
    usable = [c for c in usable if c.shape[0] > 0]
    if not usable or not math.isfinite(chance_accuracy):
        return NAN_INTERVAL, np.full(replicates, math.nan)
    means = np.array([c.mean(axis=0) for c in usable])
    estimate = _front_volume(means[:, 0], 1.0 - means[:, 1], chance_accuracy)
    drawn = np.stack([resample_means(c, replicates, rng) for c in usable], axis=1)  # (replicates, configs, 2)
    samples = np.array([_front_volume(d[:, 0], 1.0 - d[:, 1], chance_accuracy) for d in drawn])
    return interval(estimate, samples), samples


def beat_probability(mine: np.ndarray, theirs: np.ndarray) -> float:
    """P(my hypervolume > theirs) over paired replicates (independent draws), ties counting half."""
    mine, theirs = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    both = np.isfinite(mine) & np.isfinite(theirs)
    if not both.any():
        return math.nan
    mine, theirs = mine[both], theirs[both]
    return float(np.mean(mine > theirs) + 0.5 * np.mean(mine == theirs))


def rank_intervals(samples: Mapping[str, np.ndarray], estimates: Mapping[str, float]) -> dict[str, Interval]:
    """Per name, its rank by hypervolume (1 = largest) at the estimate and the interval of its rank
    over the replicates; tied values share the better rank."""
    names = [n for n in samples if math.isfinite(estimates.get(n, math.nan))]
    if not names:
        return {}
    table = np.stack([np.asarray(samples[n], dtype=float) for n in names])  # (names, replicates)
    table = np.where(np.isfinite(table), table, -np.inf)
    ranks = 1 + (table[None, :, :] > table[:, None, :]).sum(axis=1)  # others strictly above, per replicate
    point = np.array([estimates[n] for n in names])
    out = {}
    for index, name in enumerate(names):
        estimate = 1 + int((point > point[index]).sum())
        out[name] = interval(float(estimate), ranks[index].astype(float))
    return out


def tied_ranks(intervals: Mapping[str, Interval]) -> dict[str, int | None]:
    """Rank 1 + the number of names whose interval lies wholly above this one's.

    Names whose intervals overlap can share a rank: nothing in the data orders
    them. A name without a finite interval gets None.
    """
    out: dict[str, int | None] = {}
    for name, mine in intervals.items():
        if not mine.finite:
            out[name] = None
            continue
        out[name] = 1 + sum(1 for other_name, other in intervals.items()
                            if other_name != name and other.finite and other.low > mine.high)
    return out


def select_under_budget(val_accuracy: np.ndarray, val_leakage: np.ndarray, budget: float) -> np.ndarray:
    """Per row of (replicates, configurations) arrays: the index of the best validation accuracy
    among configurations with validation leakage at most ``budget`` (ties to the lower leakage,
    then the first), or -1 where none qualifies. NaN figures never qualify."""
    accuracy = np.atleast_2d(np.asarray(val_accuracy, dtype=float))
    leakage = np.atleast_2d(np.asarray(val_leakage, dtype=float))
    ok = np.isfinite(accuracy) & np.isfinite(leakage) & (leakage <= budget)
    score = np.where(ok, accuracy, -np.inf)
    best = np.full(accuracy.shape[0], -1)
    for row in range(accuracy.shape[0]):
        if not ok[row].any():
            continue
        top = np.flatnonzero(ok[row] & (score[row] == score[row].max()))
        best[row] = top[np.argmin(leakage[row, top])]  # argmin takes the first of equal leakages
    return best


@dataclass(frozen=True)
class BudgetChoice:
    """The configuration chosen on validation under one budget, and its test accuracy."""

    budget: float
    index: int | None  # into the configurations given; None: none meets the budget on validation
    accuracy: Interval  # test task accuracy of the chosen configuration (reselected in each replicate)
    qualified: float  # share of replicates in which some configuration met the budget


def budget_bootstrap(
    configurations: Sequence[np.ndarray], budgets: Sequence[float], rng: np.random.Generator,
    replicates: int = REPLICATES,
) -> list[BudgetChoice]:
    """Best test accuracy at each leakage budget, selection on validation, with intervals.

    ``configurations``: one (seeds, 3) array per configuration, columns
    validation task accuracy, validation normalised leakage, test task accuracy.
    The estimate selects on the configurations' means; each replicate re-averages
    resampled seeds and selects again, so the interval holds the selection's own
    uncertainty. A replicate where nothing qualifies adds nothing to the interval.
    """
    usable = [np.asarray(c, dtype=float).reshape(-1, 3) for c in configurations]
    if not usable or all(c.shape[0] == 0 for c in usable):
        return [BudgetChoice(b, None, NAN_INTERVAL, 0.0) for b in budgets]
    means = np.array([c.mean(axis=0) if c.shape[0] else np.full(3, math.nan) for c in usable])  # (configs, 3)
    drawn = np.stack([resample_means(c, replicates, rng) for c in usable], axis=1)  # (replicates, configs, 3)
    out = []
    for budget in budgets:
        chosen = int(select_under_budget(means[None, :, 0], means[None, :, 1], budget)[0])
        picks = select_under_budget(drawn[:, :, 0], drawn[:, :, 1], budget)
        accuracy = np.where(picks >= 0, drawn[np.arange(replicates), np.maximum(picks, 0), 2], math.nan)
        if chosen < 0:
            out.append(BudgetChoice(budget, None, NAN_INTERVAL, float(np.mean(picks >= 0))))
        else:
            out.append(BudgetChoice(budget, chosen, interval(float(means[chosen, 2]), accuracy), float(np.mean(picks >= 0))))
    return out


def normalise_leakage(balanced_accuracy: float, num_private: float) -> float:
    """(leakage - 1/K) / (1 - 1/K): 0 at chance, 1 at full recovery (PROTOCOL.md)."""
    if not (math.isfinite(balanced_accuracy) and math.isfinite(num_private)) or num_private < 2:
        return math.nan
    chance = 1.0 / num_private
    return (balanced_accuracy - chance) / (1.0 - chance)
