"""Where each method stands on one dataset, with the confidence the seeds allow.

:func:`standings` turns one dataset's configuration rows (:func:`removal_bench.reporting.summaries.summarise`)
into a :class:`DatasetStanding`: per method, its hypervolume with a 95% bootstrap
interval, its rank with an interval and a tied rank (methods whose hypervolume
intervals overlap share a rank), the probability that it beats each other method,
the best test accuracy at each leakage budget (selected on validation), and its
selected configuration's leakage per attacker family and probe size; per dataset,
how far vanilla's leakage is from chance (and from the floor), flagged when it
barely leaks. The arithmetic is :mod:`removal_bench.reporting.statistics`; this module only picks
the figures out of the rows. The Markdown leaderboard, the HTML page and
``--json`` read these objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from removal_bench.reporting import statistics
from removal_bench.reporting.summaries import MethodSummary, Row, methods_of
from removal_bench.reporting.statistics import NAN_INTERVAL, Interval

CAPACITY_MARGIN = 0.02  # as removal_bench.measuring.attack.CAPACITY_MARGIN (reporting does not import measuring)
DEFAULT_BUDGETS = (0.1, 0.25, 0.5)  # normalised leakage on validation
# Selected configuration's normalised test leakage per attacker family, then per share of probe.
ATTACK_FIGURES = {
    "linear": "leak_linear_norm", "mlp": "leak_mlp_norm", "gbdt": "leak_gbdt_norm",
    "probe 25%": "leak_probe25_norm", "probe 50%": "leak_probe50_norm", "probe 100%": "leakage_norm",
}
BARELY_LEAKS = 0.1  # vanilla's normalised leakage below this: removal has little to remove
LITTLE_HEADROOM = 0.05  # vanilla within this of the floor: no good task model can leak much less
LITTLE_TASK = 0.02  # vanilla's test accuracy within this of the majority-class rate: little task to keep


@dataclass
class BudgetCell:
    budget: float
    row: Row | None  # the configuration selected on validation; None: none meets the budget there
    accuracy: Interval  # its test task accuracy, reselected in each bootstrap replicate
    qualified: float  # share of replicates in which some configuration met the budget


@dataclass
class MethodStanding:
    method: str
    summary: MethodSummary  # hypervolume estimate, model selection, trials, commits
    hypervolume: Interval
    rank: int | None  # tied rank: 1 + methods whose interval lies wholly above this one's
    rank_interval: Interval  # rank at the estimate, and its 95% interval over replicates
    beats: dict[str, float] = field(default_factory=dict)  # other method -> P(this hypervolume > that one)
    budgets: list[BudgetCell] = field(default_factory=list)
    attack: dict[str, Interval] = field(default_factory=dict)  # ATTACK_FIGURES key -> selected row's figure
    seeds: int = 0  # most finished seeds of any of its configurations
    # the capacity check on the selected configuration, where measured (bench attack --attacker mlp_wide): the wider
    # MLP's normalised leakage, and its gain over the trial's leakage (balanced accuracy); NaN where not measured
    wide: Interval = NAN_INTERVAL
    capacity_gain: Interval = NAN_INTERVAL


@dataclass
class Reliability:
    vanilla: Interval  # vanilla's normalised test leakage (selected configuration)
    floor: Interval  # the same for the floor attacker (task probabilities only)
    flags: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


@dataclass
class DatasetStanding:
    dataset: str
    methods: list[MethodStanding]  # by tied rank, then hypervolume
    reliability: Reliability
    budgets: tuple[float, ...]
    replicates: int


def seed_matrix(row: Row, metrics: tuple[str, ...]) -> np.ndarray:
    """(seeds, metrics): the row's FINISHED seeds that have every one of ``metrics``."""
    columns = [row.per_seed.get(metric, {}) for metric in metrics]
    seeds = [seed for seed in columns[0] if all(seed in column for column in columns[1:])] if columns else []
    return np.array([[column[seed] for column in columns] for seed in seeds], dtype=float).reshape(-1, len(metrics))


def _figure(row: Row | None, metric: str, rng: np.random.Generator) -> Interval:
    if row is None:
        return NAN_INTERVAL
    return statistics.mean_interval(list(row.per_seed.get(metric, {}).values()), rng)


def reliability(dataset: str, rows: list[Row], summaries: list[MethodSummary]) -> Reliability:
    vanilla = next((s for s in summaries if s.method == "vanilla"), None)
    if vanilla is None:
        return Reliability(NAN_INTERVAL, NAN_INTERVAL, ["no vanilla run: how much there is to remove is unknown"])
    row = vanilla.selected or next(r for r in rows if r.method == "vanilla")
    leak = _figure(row, "leakage_norm", statistics.generator(dataset, "vanilla", "reliability"))
    floor = _figure(row, "floor_leakage_norm", statistics.generator(dataset, "vanilla", "floor"))
    flags = []
    if math.isfinite(leak.estimate) and leak.estimate < BARELY_LEAKS:
        flags.append(f"vanilla barely leaks (normalised {leak.estimate:.3f} < {BARELY_LEAKS:g}): its ranking means little")
    elif math.isfinite(leak.estimate) and math.isfinite(floor.estimate) and leak.estimate - floor.estimate < LITTLE_HEADROOM:
        flags.append(f"vanilla leaks within {LITTLE_HEADROOM:g} of the floor: an accurate model cannot leak much less")
    accuracy = row.mean("accuracy")
    if math.isfinite(accuracy) and math.isfinite(vanilla.chance_accuracy) and accuracy - vanilla.chance_accuracy < LITTLE_TASK:
        flags.append(f"vanilla's task accuracy ({accuracy:.3f}) does not clear always predicting the majority class "
                     f"({vanilla.chance_accuracy:.3f}) by {LITTLE_TASK:g}: every hypervolume is near 0")
    return Reliability(leak, floor, flags)


def standings(
    dataset: str, rows: list[Row], max_leakage: float | None = None,
    budgets: tuple[float, ...] = DEFAULT_BUDGETS, replicates: int = statistics.REPLICATES,
) -> DatasetStanding:
    """The dataset's methods with hypervolume intervals, tied ranks, win probabilities, budgets and
    attacker figures, and the dataset's reliability. Also sets each row's ``selected`` mark."""
    summaries = methods_of(rows, max_leakage)
    intervals, samples, partial = {}, {}, {}
    for summary in summaries:
        mine = [r for r in rows if r.method == summary.method]
        configurations = [seed_matrix(r, ("accuracy", "leakage_norm")) for r in mine]
        volume, drawn = statistics.hypervolume_bootstrap(
            configurations, summary.chance_accuracy, statistics.generator(dataset, summary.method, "hypervolume"),
            replicates)
        intervals[summary.method], samples[summary.method] = volume, drawn
        eligible = [r for r in mine if r.finished > 0 and r.failed == 0]  # as the model selection
        choices = statistics.budget_bootstrap(
            [seed_matrix(r, ("val_accuracy", "val_leakage_norm", "accuracy")) for r in eligible], budgets,
            statistics.generator(dataset, summary.method, "budgets"), replicates)
        cells = [BudgetCell(c.budget, eligible[c.index] if c.index is not None else None, c.accuracy, c.qualified)
                 for c in choices]
        attack = {name: _figure(summary.selected, metric, statistics.generator(dataset, summary.method, metric))
                  for name, metric in ATTACK_FIGURES.items()}
        capacity = tuple(_figure(summary.selected, metric, statistics.generator(dataset, summary.method, metric))
                         for metric in ("leak_wide_norm", "capacity_gain"))
        partial[summary.method] = (summary, cells, attack, max((r.finished for r in mine), default=0), capacity)
    ranks = statistics.tied_ranks(intervals)
    rank_spread = statistics.rank_intervals(samples, {m: i.estimate for m, i in intervals.items()})
    methods = []
    for name, (summary, cells, attack, seeds, capacity) in partial.items():
        beats = {other: statistics.beat_probability(samples[name], samples[other]) for other in samples if other != name}
        methods.append(MethodStanding(name, summary, intervals[name], ranks[name], rank_spread.get(name, NAN_INTERVAL),
                                      beats, cells, attack, seeds, *capacity))
    methods.sort(key=lambda m: (m.rank is None, m.rank or 0,
                                -m.hypervolume.estimate if math.isfinite(m.hypervolume.estimate) else 0, m.method))
    return DatasetStanding(dataset, methods, reliability(dataset, rows, summaries), tuple(budgets), replicates)


def of_datasets(by_dataset: dict[str, list[Row]], max_leakage: float | None = None) -> dict[str, DatasetStanding]:
    """Every dataset's standing, computed once per report and handed to each writer (text, files, plots,
    HTML, JSON): the bootstrap is a report's costly part (about 2 s a dataset on the leaderboard's runs)."""
    return {dataset: standings(dataset, rows, max_leakage) for dataset, rows in sorted(by_dataset.items())}


# --------------------------------------------------------------------------- text


def _span(value: Interval, digits: int = 3) -> str:
    if not value.finite:
        return "-"
    return f"[{value.low:.{digits}f}, {value.high:.{digits}f}]"


def _figure_cell(value: Interval, digits: int = 3) -> str:
    if not math.isfinite(value.estimate):
        return "-"
    return f"{value.estimate:.{digits}f} {_span(value, digits)}" if value.finite else f"{value.estimate:.{digits}f}"


def rank_cells(standing: DatasetStanding) -> dict[str, str]:
    """Per method its tied rank, with ``=`` where another method shares it."""
    counts: dict[int, int] = {}
    for method in standing.methods:
        if method.rank is not None:
            counts[method.rank] = counts.get(method.rank, 0) + 1
    return {m.method: "-" if m.rank is None else f"{m.rank}{'=' if counts[m.rank] > 1 else ''}" for m in standing.methods}


def overview(found: dict[str, DatasetStanding]) -> tuple[list[str], list[list[str]]]:
    """Methods as rows, datasets as columns: each cell the tied rank and the hypervolume's 95% interval; each
    dataset's header carries its reliability flag. Methods in order of their mean rank over the datasets where
    they ran (a method missing from a dataset gets ``-`` there); methods tied on it in order of their mean place
    in the datasets' ranking tables (which list tied methods by hypervolume), so that one order holds for tied
    methods everywhere; the name last."""
    datasets = list(found)
    ranks = {dataset: rank_cells(standing) for dataset, standing in found.items()}
    cells: dict[str, dict[str, str]] = {}
    order: dict[str, list[int]] = {}
    places: dict[str, list[int]] = {}
    for dataset, standing in found.items():
        for place, method in enumerate(standing.methods):
            cells.setdefault(method.method, {})[dataset] = (
                f"{ranks[dataset][method.method]} · {_figure_cell(method.hypervolume, 3)}")
            places.setdefault(method.method, []).append(place)
            if method.rank is not None:
                order.setdefault(method.method, []).append(method.rank)

    def mean(values: list[int]) -> float:
        return sum(values) / len(values)

    methods = sorted(cells, key=lambda m: (mean(order.get(m, [99])), mean(places[m]), m))
    headers = ["method"] + [dataset + (" (flagged)" if found[dataset].reliability.flagged else "") for dataset in datasets]
    body = [[method] + [cells[method].get(dataset, "-") for dataset in datasets] for method in methods]
    return headers, body


def overview_table(found: dict[str, DatasetStanding], tablefmt: str = "github") -> str:
    from tabulate import tabulate

    headers, body = overview(found)
    notes = [f"- {dataset} (flagged): {'; '.join(standing.reliability.flags)}."
             for dataset, standing in found.items() if standing.reliability.flagged]
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True) + (
        "\n\n" + "\n".join(notes) if notes else "")


def ranking_table(standing: DatasetStanding, tablefmt: str = "github") -> str:
    from tabulate import tabulate

    from removal_bench.reporting.cells import _cell, _date, seeds_cell

    ranks = rank_cells(standing)
    headers = ["rank", "method", "hypervolume [95%]", "rank range", "P(beats next)", "configs", "trials",
               "selected", "seeds", "task acc", "leak norm", "commit", "date"]
    body = []
    for position, method in enumerate(standing.methods):
        following = standing.methods[position + 1].method if position + 1 < len(standing.methods) else None
        beats = method.beats.get(following, math.nan) if following else math.nan
        spread = method.rank_interval
        rank_range = "-" if not spread.finite else (
            f"{spread.low:.0f}" if spread.low == spread.high else f"{spread.low:.0f}-{spread.high:.0f}")
        row, summary = method.summary.selected, method.summary
        figures = ([row.label, seeds_cell(row), _cell(row.stats.get("accuracy")), _cell(row.stats.get("leakage_norm"))]
                   if row else ["none qualifies", "-", "-", "-"])
        trials = f"{summary.trials} ({summary.failed} failed)" if summary.failed else str(summary.trials)
        body.append([ranks[method.method], method.method, _figure_cell(method.hypervolume, 4), rank_range,
                     f"{beats:.2f}" if math.isfinite(beats) else "-", str(summary.configurations), trials]
                    + figures + [", ".join(c[:10] for c in summary.commits) or "unknown", _date(summary.last_start)])
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def budget_table(standing: DatasetStanding, tablefmt: str = "github") -> str:
    from tabulate import tabulate

    headers = ["method"] + [f"leak norm <= {b:g} (val)" for b in standing.budgets]
    body = []
    for method in standing.methods:
        cells = []
        for cell in method.budgets:
            cells.append("none" if cell.row is None else f"{_figure_cell(cell.accuracy)} {cell.row.label}")
        body.append([method.method] + cells)
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def attack_table(standing: DatasetStanding, tablefmt: str = "github") -> str:
    from tabulate import tabulate

    checked = any(math.isfinite(m.capacity_gain.estimate) for m in standing.methods)
    headers = ["method", "selected"] + list(ATTACK_FIGURES) + (["wide MLP", "capacity"] if checked else [])
    body = []
    for method in standing.methods:
        row = method.summary.selected
        body.append([method.method, row.label if row else "none qualifies"]
                    + [_figure_cell(method.attack.get(name, NAN_INTERVAL)) for name in ATTACK_FIGURES]
                    + ([_figure_cell(method.wide), capacity_cell(method.capacity_gain)] if checked else []))
    table = tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)
    if checked:
        table += ("\n\nwide MLP: the capacity check (`bench attack --selected EXPERIMENT --attacker mlp_wide`: the "
                  "protocol's MLP four times wider, twice the patience), normalised test leakage; capacity: its gain over "
                  f"the selected configuration's leakage in balanced accuracy, saturated where at most {CAPACITY_MARGIN:g} "
                  "(at the margin: above it with its 95% interval reaching it); - where not measured.")
        if any(m.summary.selected is not None and m.summary.selected.capacity_from for m in standing.methods):
            table += (" Measured on reruns of the selected configuration with embeddings (`python -m "
                      "removal_bench.benchmarks capacity`, `--capacity FILE`), both MLPs on the rerun's own `z`: its "
                      "gain is over the rerun's leakage, not over the columns before it.")
    return table


def capacity_verdict(gain: Interval) -> str:
    """The capacity check's verdict on the wide MLP's gain: saturated where it is at most CAPACITY_MARGIN, at the
    margin where it is above it but its interval reaches it (the seeds do not tell), else not saturated."""
    if not math.isfinite(gain.estimate):
        return "-"
    if gain.estimate <= CAPACITY_MARGIN:
        return "saturated"
    return "at the margin" if math.isfinite(gain.low) and gain.low <= CAPACITY_MARGIN else "not saturated"


def capacity_cell(gain: Interval) -> str:
    verdict = capacity_verdict(gain)
    return verdict if verdict == "-" else f"{verdict} ({gain.estimate:+.3f})"


def beats_table(standing: DatasetStanding, tablefmt: str = "github") -> str:
    from tabulate import tabulate

    names = [m.method for m in standing.methods]
    body = [[m.method] + ["" if other == m.method else (f"{m.beats[other]:.2f}" if math.isfinite(m.beats.get(other, math.nan)) else "-")
                          for other in names] for m in standing.methods]
    return tabulate(body, headers=["P(row > column)"] + names, tablefmt=tablefmt, disable_numparse=True)


def reliability_text(standing: DatasetStanding) -> str:
    found = standing.reliability
    if not math.isfinite(found.vanilla.estimate):
        return "Reliability: " + "; ".join(found.flags or ["unknown"]) + "."
    text = (f"Reliability: vanilla's normalised leakage is {_figure_cell(found.vanilla)} above chance (0), its floor "
            f"{_figure_cell(found.floor)}.")
    return text + ("  **Flagged: " + "; ".join(found.flags) + ".**" if found.flags else "")


def explain(replicates: int) -> str:
    return (
        f"Intervals are 95% percentile bootstraps ({replicates} replicates, seeds resampled within each configuration, "
        "fixed generator seeds). rank: 1 + the methods whose hypervolume interval lies wholly above; `=` marks ranks "
        "shared by methods whose intervals overlap (nothing in these seeds orders them), so a method with a wide "
        "interval can rank above one with a higher point estimate; rank range: the 95% interval "
        "of the rank over replicates; P(beats next): share of replicates in which the method's hypervolume exceeds "
        "the next row's. Budgets: test task accuracy of the configuration with the best mean validation accuracy "
        "among those whose mean validation normalised leakage is at most the budget (reselected in each replicate); "
        "none: no configuration meets it on validation. Attackers: the selected configuration's normalised test "
        "leakage per attacker family (each fitted on all of probe) and per share of probe (the protocol's best "
        "attacker fitted on 25%, 50%, 100% of probe)."
    )


def standing_markdown(standing: DatasetStanding, level: int = 3) -> str:
    """The dataset's ranking, budgets, attackers and pairwise table as Markdown sections."""
    heading = "#" * level
    return "\n\n".join([
        reliability_text(standing),
        f"{heading} Ranking by hypervolume\n\n{ranking_table(standing)}",
        f"{heading} Best task accuracy at a leakage budget\n\n{budget_table(standing)}",
        f"{heading} Attacker strength (selected configuration, normalised leakage)\n\n{attack_table(standing)}",
        f"<details><summary>P(row's hypervolume > column's)</summary>\n\n{beats_table(standing)}\n\n</details>",
    ])


def _interval_document(value: Interval) -> dict:
    def number(x: float):
        return float(x) if math.isfinite(x) else None

    return {"estimate": number(value.estimate), "low": number(value.low), "high": number(value.high)}


def standing_document(standing: DatasetStanding) -> dict:
    """The standing as plain JSON-ready data (for ``--json`` and the HTML page); NaN is None."""
    ranks = rank_cells(standing)
    return {
        "replicates": standing.replicates,
        "budgets": list(standing.budgets),
        "reliability": {"vanilla_leakage_norm": _interval_document(standing.reliability.vanilla),
                        "floor_leakage_norm": _interval_document(standing.reliability.floor),
                        "flags": list(standing.reliability.flags)},
        "methods": [{
            "method": m.method, "rank": m.rank, "rank_text": ranks[m.method],
            "hypervolume": _interval_document(m.hypervolume), "rank_interval": _interval_document(m.rank_interval),
            "beats": {other: (p if math.isfinite(p) else None) for other, p in m.beats.items()},
            "budgets": [{"budget": c.budget, "selected": c.row.label if c.row else None,
                         "config_key": c.row.config_key if c.row else None,
                         "accuracy": _interval_document(c.accuracy), "qualified": c.qualified} for c in m.budgets],
            "attackers": {name: _interval_document(value) for name, value in m.attack.items()},
            **({"capacity": {"wide_mlp": _interval_document(m.wide), "gain": _interval_document(m.capacity_gain),
                             "saturated": m.capacity_gain.estimate <= CAPACITY_MARGIN}}
               if math.isfinite(m.capacity_gain.estimate) else {}),
            "seeds": m.seeds,
        } for m in standing.methods],
    }
