"""Which search finds a method's front in fewer trials: ``bench sweep --search optuna`` against random search and
refined strength curves, at equal trial budgets.

    python -m removal_bench.benchmarks searches --datasets synthetic,adult --data-root ../shared/data \\
        --output results/search        # runs what the store lacks, then writes README-ready tables and a figure

For each dataset, each method (default irene, grl, adv_debias) and each search, a sweep of ``--budget`` B
configurations a method (each on ``--seeds`` seeds) runs into its own MLflow experiment (``search-<search>-seed<k>``):

- ``optuna``: ``--search optuna --samples B --proposals P --sweep-seed k``: rounds of max(P, min(10, B/2)), then P;
- ``random``: ``--samples B --sweep-seed k``;
- ``curve``: ``--curve --strengths B/2 --refine B - B/2`` (deterministic: one sweep stands for every sweep seed).

The figure of merit is the leaderboard's: the hypervolume of the method's front on *test* (task accuracy against
1 - normalised leakage, above the majority-class accuracy; ``removal_bench.reporting.statistics``), of the first b
configurations in the order the sweep ran them (their first trial's start), at the budgets where every search has
a whole round: b = B/2, B/2 + P, ..., B. A row gives, per method and search, the mean over sweep seeds and their
range; ``reach`` is the trials a search needed before its front held 95 % of the largest hypervolume any search
found for that method (mean over sweep seeds; ``-`` where it never did). The figure averages, over methods, each
search's hypervolume as a share of that largest one. Every sweep is resumable (the same command runs only what the
store lacks), so the benchmark can be stopped and continued; ``--report-only`` reads the store and runs nothing.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

SEARCHES = ("optuna", "random", "curve")


def experiment(search: str, sweep_seed: int) -> str:
    return "search-curve" if search == "curve" else f"search-{search}-seed{sweep_seed}"


def sweep_arguments(arguments: argparse.Namespace, search: str, dataset: str, sweep_seed: int) -> list[str]:
    budget, half = arguments.budget, arguments.budget // 2
    words = ["sweep", "--methods", arguments.methods, "--datasets", dataset, "--seeds", str(arguments.seeds),
             "--executor", arguments.executor, "--tracking-uri", arguments.tracking_uri,
             "--experiment", experiment(search, sweep_seed), "--quiet",
             "--results-dir", str(Path(arguments.scratch) / experiment(search, sweep_seed))]
    if arguments.data_root:
        words += ["--data-root", arguments.data_root]
    if search == "optuna":
        return words + ["--search", "optuna", "--samples", str(budget), "--proposals", str(arguments.proposals),
                        "--sweep-seed", str(sweep_seed)]
    if search == "random":
        return words + ["--samples", str(budget), "--sweep-seed", str(sweep_seed)]
    return words + ["--curve", "--strengths", str(half), "--refine", str(budget - half)]


def budgets(arguments: argparse.Namespace) -> list[int]:
    from removal_bench.running.search import round_sizes

    sizes = round_sizes(arguments.budget, arguments.proposals)
    out, total = [], 0
    for size in sizes:
        total += size
        out.append(total)
    if out[0] != arguments.budget // 2:
        raise SystemExit(f"--budget {arguments.budget} and --proposals {arguments.proposals}: the search's first "
                         f"round ({out[0]}) is not the curve's {arguments.budget // 2} strengths; take an even budget "
                         "of at most 20")
    return out


def fronts(arguments: argparse.Namespace, dataset: str) -> dict[tuple[str, str, int], list]:
    """(method, search, sweep seed) -> the method's rows of that sweep, in the order they ran."""
    import mlflow

    from removal_bench.reporting.summaries import summarise

    mlflow.set_tracking_uri(arguments.tracking_uri)
    out = {}
    for search in SEARCHES:
        for sweep_seed in arguments.sweep_seeds:
            name = experiment(search, sweep_seed)
            frame = mlflow.search_runs(experiment_names=[name], max_results=100000,
                                       filter_string=f"tags.`bench.kind` = 'trial' and tags.`bench.dataset` = '{dataset.split(':')[0]}'")
            if frame.empty:
                continue
            rows = summarise(frame).get(dataset.split(":")[0], [])
            for method in arguments.methods.split(","):
                mine = sorted((r for r in rows if r.method == method), key=lambda r: r.first_start)
                if mine:
                    out[(method, search, sweep_seed)] = mine
    return out


def volume(rows: list, chance: float, rng) -> tuple[float, tuple[float, float]]:
    import numpy as np

    from removal_bench.reporting.statistics import hypervolume_bootstrap

    configurations = []
    for row in rows:
        seeds = sorted(set(row.per_seed.get("accuracy", {})) & set(row.per_seed.get("leakage_norm", {})))
        configurations.append(np.array([[row.per_seed["accuracy"][s], row.per_seed["leakage_norm"][s]] for s in seeds]))
    found, _ = hypervolume_bootstrap(configurations, chance, rng, replicates=500)
    return found.estimate, (found.low, found.high)


def compare(arguments: argparse.Namespace) -> str:
    from removal_bench.commands.cli import main as bench
    from removal_bench.reporting.statistics import generator
    from removal_bench.reporting.summaries import reference_accuracy

    arguments.sweep_seeds = [int(k) for k in str(arguments.sweep_seeds).split(",")]
    points = budgets(arguments)
    datasets = arguments.datasets.split(",")
    if not arguments.report_only:
        for dataset in datasets:
            for search in SEARCHES:
                for sweep_seed in (arguments.sweep_seeds[:1] if search == "curve" else arguments.sweep_seeds):
                    words = sweep_arguments(arguments, search, dataset, sweep_seed)
                    print("bench " + " ".join(words), flush=True)
                    status = bench(words)
                    if status not in (0, None):
                        raise SystemExit(f"the sweep above ended with status {status}")
    lines, curves = [], {}
    for dataset in datasets:
        found = fronts(arguments, dataset)
        if not found:
            lines.append(f"## {dataset}\n\nno runs in {arguments.tracking_uri}\n")
            continue
        chance = reference_accuracy([row for rows in found.values() for row in rows])
        table = {}  # (method, search) -> budget -> [hypervolume per sweep seed]
        intervals = {}
        for (method, search, sweep_seed), rows in sorted(found.items()):
            seeds = arguments.sweep_seeds if search != "curve" else arguments.sweep_seeds[:1]
            if sweep_seed not in seeds:
                continue
            for budget in points:
                if len(rows) < budget:
                    continue
                estimate, bounds = volume(rows[:budget], chance, generator(dataset, method, search, sweep_seed, budget))
                table.setdefault((method, search), {}).setdefault(budget, []).append(estimate)
                if budget == points[-1] and sweep_seed == seeds[0]:
                    intervals[(method, search)] = (estimate, bounds)
        lines.append(f"## {dataset}\n")
        lines.append(f"Hypervolume of the first b configurations (each on {arguments.seeds} seeds: "
                     f"{arguments.seeds} x b trials): mean over sweep seeds {', '.join(map(str, arguments.sweep_seeds))} (their range); "
                     f"majority-class accuracy {chance:.3f}. Last column: the {points[-1]}-configuration front of "
                     f"sweep seed {arguments.sweep_seeds[0]} with its 95% bootstrap interval.\n")
        header = ["method", "search", *[f"b = {b}" for b in points], "reach (trials)", f"b = {points[-1]} [95%]"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + " --- |" * len(header))
        for method in arguments.methods.split(","):
            best = max((v for (m, _), by in table.items() if m == method for vs in by.values() for v in vs
                        if math.isfinite(v)), default=math.nan)
            for search in SEARCHES:
                by = table.get((method, search))
                if not by:
                    continue
                cells = []
                for budget in points:
                    values = by.get(budget, [])
                    cells.append("-" if not values else f"{statistics.mean(values):.4f}" + (
                        f" ({min(values):.4f}-{max(values):.4f})" if len(values) > 1 else ""))
                reach = []
                for index in range(len(arguments.sweep_seeds if search != "curve" else [0])):
                    hit = [b for b in points if index < len(by.get(b, [])) and by[b][index] >= 0.95 * best]
                    reach.append(hit[0] * arguments.seeds if hit else math.inf)
                finite = [r for r in reach if math.isfinite(r)]
                reached = (f"{statistics.mean(finite):.0f}" + ("" if len(finite) == len(reach) else
                                                                f" ({len(finite)} of {len(reach)})")) if finite else "-"
                estimate, (low, high) = intervals.get((method, search), (math.nan, (math.nan, math.nan)))
                lines.append(f"| {method} | {search} | " + " | ".join(cells) + f" | {reached} | "
                             f"{estimate:.4f} [{low:.4f}, {high:.4f}] |")
                for budget in points:
                    values = by.get(budget, [])
                    if values and math.isfinite(best) and best > 0:
                        curves.setdefault((dataset, search), {}).setdefault(budget, []).append(
                            statistics.mean(values) / best)
        lines.append("")
    text = "\n".join(lines)
    if arguments.output:
        folder = Path(arguments.output)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "TABLE.md").write_text(text + "\n")
        figure(curves, datasets, arguments.seeds, folder / "hypervolume.png")
    return text


def figure(curves: dict, datasets: list[str], seeds: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [d for d in datasets if any((d, s) in curves for s in SEARCHES)]
    if not shown:
        return
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    for axis, dataset in zip(axes[0], shown):
        for search in SEARCHES:
            by = curves.get((dataset, search))
            if by:
                xs = sorted(by)
                axis.plot([x * seeds for x in xs], [statistics.mean(by[x]) for x in xs], marker="o", label=search)
        axis.set_title(f"{dataset.split(':')[0]} (mean over methods)")
        axis.set_xlabel("trials")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of the best hypervolume")
    axes[0][-1].legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def add_search_commands(commands) -> None:
    parser = commands.add_parser("searches", help="--search optuna against random search and refined curves: "
                                 "hypervolume against trials at equal budgets")
    parser.add_argument("--datasets", default="synthetic,colored_digits,adult")
    parser.add_argument("--methods", default="irene,grl,adv_debias")
    parser.add_argument("--budget", type=int, default=12, help="configurations a method per sweep (default 12)")
    parser.add_argument("--proposals", type=int, default=2, help="--search optuna's round size (default 2)")
    parser.add_argument("--seeds", type=int, default=2, help="trial seeds per configuration (default 2)")
    parser.add_argument("--sweep-seeds", default="0,1,2")
    parser.add_argument("--executor", default="serial", choices=("serial", "ray"))
    parser.add_argument("--data-root")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow-search.db")
    parser.add_argument("--scratch", default="/tmp/search-reports", help="where each sweep's own report goes")
    parser.add_argument("--report-only", action="store_true", help="read the store, run nothing")
    parser.add_argument("--output", help="write TABLE.md and hypervolume.png into this folder")
    parser.set_defaults(handler=lambda a: print(compare(a)))
