"""bench.statistics: bootstrap coverage, win probabilities, tied ranks and budget selection."""

import math

import numpy as np
import pytest

from removal_bench.reporting import statistics
from removal_bench.measuring.pareto import front_hypervolume
from removal_bench.reporting.statistics import Interval

# Two configurations of one method: a weak and a strong removal, (task accuracy, normalised leakage).
TRUE_MEANS = np.array([[0.90, 0.60], [0.80, 0.20]])
SPREAD = np.array([0.02, 0.05])  # per-seed standard deviation of each figure
CHANCE = 0.5


def test_the_hypervolume_interval_covers_the_truth_about_95_percent_of_the_time():
    truth = front_hypervolume(TRUE_MEANS[:, 0], TRUE_MEANS[:, 1], CHANCE)
    world = np.random.default_rng(7)
    covered, widths, draws = 0, [], 200
    for draw in range(draws):
        configurations = [mean + SPREAD * world.standard_normal((8, 2)) for mean in TRUE_MEANS]  # 8 seeds each
        found, samples = statistics.hypervolume_bootstrap(configurations, CHANCE, statistics.generator("coverage", draw), 400)
        covered += found.low <= truth <= found.high
        widths.append(found.high - found.low)
        assert found.estimate == pytest.approx(front_hypervolume(*np.mean(configurations, axis=1).T, CHANCE))
    # A percentile bootstrap with 8 seeds under-covers a little (0.89-0.93 over other world seeds); 0.82 leaves room.
    assert 0.82 <= covered / draws <= 0.99
    # And it is not covering by being wide: the interval is a few standard errors, not the whole plane.
    assert np.median(widths) < 0.1


def test_the_mean_interval_covers_the_truth_and_narrows_with_more_seeds():
    world = np.random.default_rng(11)
    covered = sum(_covers(world, draw) for draw in range(200))  # 10 seeds of N(0.3, 0.1) each time
    assert 0.85 <= covered / 200 <= 0.99
    few = statistics.mean_interval(list(0.1 * world.standard_normal(5)), statistics.generator("few"))
    many = statistics.mean_interval(list(0.1 * world.standard_normal(80)), statistics.generator("many"))
    assert (many.high - many.low) < (few.high - few.low) / 2


def _covers(world, draw):
    found = statistics.mean_interval(list(0.3 + 0.1 * world.standard_normal(10)), statistics.generator("mean", draw), 400)
    return found.low <= 0.3 <= found.high


def test_the_same_inputs_give_the_same_interval_and_a_single_seed_has_no_spread():
    configurations = [np.array([[0.9, 0.5], [0.88, 0.55], [0.91, 0.45]])]
    first, _ = statistics.hypervolume_bootstrap(configurations, CHANCE, statistics.generator("toy", "irene"))
    second, _ = statistics.hypervolume_bootstrap(configurations, CHANCE, statistics.generator("toy", "irene"))
    assert first == second
    single, _ = statistics.hypervolume_bootstrap([np.array([[0.9, 0.5]])], CHANCE, statistics.generator("one"))
    assert single.low == single.high == pytest.approx(0.4 * 0.5)


def test_beat_probability_and_rank_intervals_follow_the_replicates():
    rng = np.random.default_rng(0)
    high, low = 0.5 + 0.01 * rng.standard_normal(1000), 0.3 + 0.01 * rng.standard_normal(1000)
    assert statistics.beat_probability(high, low) == 1.0
    assert statistics.beat_probability(low, high) == 0.0
    same = 0.4 + 0.01 * rng.standard_normal(1000)
    assert 0.45 < statistics.beat_probability(same, same[::-1]) < 0.55
    ranks = statistics.rank_intervals({"a": high, "b": low, "c": same}, {"a": 0.5, "b": 0.3, "c": 0.4})
    assert (ranks["a"].estimate, ranks["c"].estimate, ranks["b"].estimate) == (1, 2, 3)
    assert ranks["a"].low == ranks["a"].high == 1


def test_methods_whose_intervals_overlap_share_a_rank():
    ranks = statistics.tied_ranks({
        "a": Interval(0.50, 0.45, 0.55),
        "b": Interval(0.47, 0.42, 0.52),  # overlaps a: tied with it
        "c": Interval(0.30, 0.28, 0.32),  # below both
        "d": Interval(0.29, 0.27, 0.31),  # overlaps c only
        "e": Interval(math.nan, math.nan, math.nan),
    })
    assert ranks == {"a": 1, "b": 1, "c": 3, "d": 3, "e": None}
    assert Interval(0.5, 0.45, 0.55).overlaps(Interval(0.47, 0.42, 0.52))
    assert not Interval(0.5, 0.45, 0.55).overlaps(Interval(0.3, 0.28, 0.32))


def rows_of(val_accuracy, val_leakage, test_accuracy, seeds=3):
    """A configuration whose every seed gives the same figures (no spread)."""
    return np.tile([val_accuracy, val_leakage, test_accuracy], (seeds, 1))


def test_budget_selection_picks_the_best_validation_accuracy_within_each_budget():
    configurations = [
        rows_of(0.60, 0.05, 0.61),  # meets every budget
        rows_of(0.70, 0.20, 0.72),
        rows_of(0.90, 0.40, 0.88),
        rows_of(0.95, 0.80, 0.97),  # best accuracy, meets none of them
        rows_of(0.70, 0.15, 0.69),  # ties the second on validation accuracy, leaks less: preferred
    ]
    choices = statistics.budget_bootstrap(configurations, (0.01, 0.1, 0.25, 0.5), statistics.generator("budgets"), 200)
    assert [c.index for c in choices] == [None, 0, 4, 2]
    assert choices[0].qualified == 0.0 and math.isnan(choices[0].accuracy.estimate)
    assert choices[1].accuracy == Interval(0.61, 0.61, 0.61)  # selected on validation, reported on test
    assert choices[3].accuracy.estimate == pytest.approx(0.88)


def test_the_budget_interval_includes_the_uncertainty_of_the_selection_itself():
    # Two configurations straddle the budget on validation across seeds: the replicates pick either.
    noisy = np.array([[0.9, 0.08, 0.90], [0.9, 0.14, 0.90], [0.9, 0.09, 0.90], [0.9, 0.13, 0.90]])
    safe = rows_of(0.6, 0.02, 0.60, seeds=4)
    (choice,) = statistics.budget_bootstrap([noisy, safe], (0.1,), statistics.generator("straddle"), 1000)
    assert choice.index == 1  # the mean validation leakage of noisy is 0.11 > 0.1
    assert choice.accuracy.low == pytest.approx(0.60) and choice.accuracy.high == pytest.approx(0.90)


def test_the_overview_lists_tied_methods_in_the_ranking_tables_order_not_alphabetically():
    """One order for tied methods everywhere. Two datasets where ``zeta`` and ``alpha`` tie on rank
    (1= on both) but ``zeta`` has the higher hypervolume, so each ranking table lists it first: the overview
    must too (it sorted ties by name before)."""
    from removal_bench.reporting.standings import DatasetStanding, MethodStanding, Reliability, overview
    from removal_bench.reporting.statistics import Interval

    def standing(dataset: str, figures: list[tuple[str, float, int]]) -> DatasetStanding:
        methods = [MethodStanding(method=name, summary=None, hypervolume=Interval(hv, hv - 0.05, hv + 0.05),
                                  rank=rank, rank_interval=Interval(rank, rank, rank))
                   for name, hv, rank in figures]  # already in the ranking table's order: tied rank, then hypervolume
        nothing = Interval(math.nan, math.nan, math.nan)
        return DatasetStanding(dataset=dataset, methods=methods, reliability=Reliability(nothing, nothing),
                               budgets=(), replicates=0)

    found = {"one": standing("one", [("zeta", 0.62, 1), ("alpha", 0.60, 1), ("mid", 0.40, 3)]),
             "two": standing("two", [("zeta", 0.55, 1), ("alpha", 0.54, 1), ("mid", 0.30, 3)])}
    headers, body = overview(found)
    assert headers == ["method", "one", "two"]
    assert [row[0] for row in body] == ["zeta", "alpha", "mid"]
    assert body[0][1].startswith("1= · 0.620")
    # a tie on mean rank and on mean place falls back to the name, so the order never depends on dict order
    found = {"one": standing("one", [("zeta", 0.62, 1), ("alpha", 0.60, 1)]),
             "two": standing("two", [("alpha", 0.55, 1), ("zeta", 0.54, 1)])}
    assert [row[0] for row in overview(found)[1]] == ["alpha", "zeta"]
