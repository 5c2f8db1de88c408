"""``python -m removal_bench.benchmarks curve-start``: where each strength curve starts, against vanilla.

Runs, in this process and one thread per trial, vanilla and the weakest point of every in-training method's
curve (``bench sweep --curve``'s first point, ``curve_fixed`` applied) on the same seeds, and prints per method
the difference of the means in task accuracy and normalised leakage with its standard error, and the mean
accuracy of the method's own head (``head_acc``) and how often it predicts ``y`` (``head_predicts_y``, where
``s`` and ``y`` share a label space). ``--zero`` adds each method's point with its strength at 0. Figures
only, no assert: ``tests/test_curves.py`` holds the claims (docs/PROTOCOL.md, "A curve starts at vanilla").
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

IN_TRAINING = ("irene", "grl", "adv_debias", "lnl", "end", "hsic")


def _figures(method: str, dataset: str, options: dict, hparams: dict, seeds: int, data_root: str | None) -> np.ndarray:
    from removal_bench.running.trial import make_config, run_trial

    rows = []
    for seed in range(seeds):
        metrics = run_trial(make_config(method, dataset, options, hparams, seed=seed, threads=1, data_root=data_root))
        k = metrics["num_private"]
        rows.append((metrics["accuracy"], (metrics["leakage"] - 1 / k) / (1 - 1 / k),
                     metrics.get("head_acc", math.nan), metrics.get("head_predicts_y", math.nan)))
    return np.array(rows)


def curve_start(arguments: argparse.Namespace) -> None:
    from removal_bench import methods
    from removal_bench.running.sweep import curve_configurations

    options = json.loads(arguments.options)
    base = _figures("vanilla", arguments.dataset, options, {}, arguments.seeds, arguments.data_root)
    n = arguments.seeds

    def error(a: np.ndarray, b: np.ndarray) -> float:
        return math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if n > 1 else math.nan

    print(f"{arguments.dataset} {options or ''}, {n} seeds; vanilla task accuracy {base[:, 0].mean():.3f}, "
          f"normalised leakage {base[:, 1].mean():.3f}")
    print(f"{'method':<11} {'point':<34} {'d acc':>7} {'(se)':>7} {'d leak':>7} {'(se)':>7} {'head':>6} {'head=y':>6}")
    for name in arguments.methods.split(","):
        weakest = curve_configurations(name, {}, arguments.strengths)[0]
        points = [("weakest", weakest)]
        if arguments.zero:
            points.append(("zero", {**weakest, **{k: 0.0 for k in methods.REGISTRY[name].strength}}))
        for label, hparams in points:
            ours = _figures(name, arguments.dataset, options, hparams, n, arguments.data_root)
            shown = ", ".join(f"{k} {hparams[k]:g}" for k in methods.REGISTRY[name].strength)
            print(f"{name:<11} {label + ': ' + shown:<34} {ours[:, 0].mean() - base[:, 0].mean():>+7.3f} "
                  f"{error(ours[:, 0], base[:, 0]):>7.3f} {ours[:, 1].mean() - base[:, 1].mean():>+7.3f} "
                  f"{error(ours[:, 1], base[:, 1]):>7.3f} {np.nanmean(ours[:, 2]) if np.isfinite(ours[:, 2]).any() else math.nan:>6.3f} "
                  f"{np.nanmean(ours[:, 3]) if np.isfinite(ours[:, 3]).any() else math.nan:>6.3f}", flush=True)


def add_curve_commands(commands) -> None:
    parser = commands.add_parser("curve-start", help="each strength curve's weakest point against vanilla")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--options", default="{}", help='dataset options as JSON, e.g. {"n_train": 1500}')
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--strengths", type=int, default=8)
    parser.add_argument("--methods", default=",".join(IN_TRAINING))
    parser.add_argument("--zero", action="store_true", help="also each method at strength 0")
    parser.add_argument("--data-root", default=None)
    parser.set_defaults(handler=curve_start)
