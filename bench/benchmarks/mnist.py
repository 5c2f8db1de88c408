"""``python -m removal_bench.benchmarks mnist-curve``: a method's unbiased accuracy per rho on Biased-MNIST, from MLflow.

Issue 19's measurement of the CPU setting (``--recipe cpu``): for every finished trial of ``--method`` on
``biased_mnist`` with encoder ``--encoder`` in ``--experiment``, grouped by rho: the seeds, the unbiased
test accuracy (mean, sample standard deviation over seeds, min..max), the unbiased validation accuracy
after each epoch (mean over seeds; with ``split=reference`` validation is half of the test images
recoloured, so the curve shows what fewer epochs would have given, not a selection), the colour's
leakage and the training seconds and img/s that the trials logged. Every figure is read from the
runs (``mlflow.search_runs`` and each run's metric history), so it is traceable to their run ids.

Issue 26 (the converged setting, ``--recipe cpu-converged``): ``--epochs`` and ``--precision`` keep only the
trials of one recipe (a trial logged before the ``precision`` field counts as fp32); each method
configuration (``hp.*``, e.g. EnD's alpha and beta) gets its own line; ``last-3`` is the validation accuracy
gained over the last three epochs (last epoch minus the third-last but one: the convergence criterion).
"""

from __future__ import annotations

import argparse
import math
import statistics


def mnist_curve(arguments: argparse.Namespace) -> None:
    from mlflow import MlflowClient

    from removal_bench.running.preflight import tracking_uri as absolute_uri
    from removal_bench.running.tracking import load_runs

    uri = absolute_uri(arguments.tracking_uri, write=False)
    frame = load_runs(uri, arguments.experiment)
    if frame.empty:
        raise SystemExit(f"no runs in experiment {arguments.experiment!r} at {uri}")
    keep = (frame.get("params.dataset") == "biased_mnist") & (frame.get("params.method") == arguments.method) & (
        frame.get("params.recipe.encoder") == arguments.encoder) & (frame["status"] == "FINISHED")
    if "params.data.split" in frame:
        keep &= frame["params.data.split"] == arguments.split
    if arguments.epochs is not None:
        keep &= frame.get("params.recipe.epochs").astype(str) == str(arguments.epochs)
    if arguments.precision is not None:
        precision = frame["params.recipe.precision"].fillna("fp32") if "params.recipe.precision" in frame else "fp32"
        keep &= precision == arguments.precision
    runs = frame[keep].drop_duplicates(subset=["tags.bench.config_hash"], keep="first")
    if runs.empty:
        raise SystemExit(f"no finished {arguments.method} runs on biased_mnist with encoder {arguments.encoder}")
    client = MlflowClient(uri)
    first = runs.iloc[0]
    print(f"{arguments.method} on biased_mnist (split={arguments.split}, source={first.get('params.data.source')}, "
          f"subsample={first.get('params.data.subsample')}), encoder {arguments.encoder}, "
          f"{first.get('params.recipe.optimizer')} lr {first.get('params.recipe.lr')}, "
          f"{first.get('params.recipe.epochs')} epochs, batch {first.get('params.recipe.batch_size')}; "
          f"experiment {arguments.experiment!r}")
    hp = sorted(column for column in runs.columns if column.startswith("params.hp."))
    print(f"{'rho':<6} {'hparams':<16} {'seeds':<6} {'test acc mean':>13} {'sd':>6} {'min..max':>13}  "
          f"{'val acc per epoch (mean)':<28} {'last-3':>6} {'leakage':>8} {'train s':>8} {'img/s':>7}  runs")
    keys = ["params.data.rho", *hp]
    for key, group in sorted(runs.groupby(keys, dropna=False), key=lambda item: [float(v) for v in item[0]]):
        rho = key[0]
        label = ",".join(f"{column.removeprefix('params.hp.')}={value}" for column, value in zip(hp, key[1:])
                         if isinstance(value, str)) or "-"  # a method without that hyperparameter: NaN, left out
        accuracy = [float(v) * 100 for v in group["metrics.accuracy"]]
        sd = statistics.stdev(accuracy) if len(accuracy) > 1 else math.nan
        epochs: dict[int, list[float]] = {}
        for run_id in group["run_id"]:
            for point in client.get_metric_history(run_id, "val_accuracy"):
                epochs.setdefault(point.step, []).append(point.value * 100)
        means = [statistics.mean(v) for _, v in sorted(epochs.items())[: int(first.get("params.recipe.epochs") or 99)]]
        per_epoch = " ".join(f"{v:.1f}" for v in means)
        gain = f"{means[-1] - means[-4]:+.1f}" if len(means) >= 4 else "-"
        seeds = ",".join(sorted(str(s) for s in group["params.seed"]))
        print(f"{float(rho):<6g} {label:<16} {seeds:<6} {statistics.mean(accuracy):13.1f} {sd:6.1f} "
              f"{min(accuracy):6.1f}..{max(accuracy):<6.1f}  {per_epoch:<28} {gain:>6} "
              f"{group['metrics.leakage'].astype(float).mean():8.3f} {group['metrics.train_seconds'].astype(float).median():8.0f} "
              f"{group['metrics.samples_per_second'].astype(float).median():7.0f}  "
              f"{' '.join(r[:8] for r in group['run_id'])}", flush=True)


def add_mnist_commands(commands) -> None:
    parser = commands.add_parser("mnist-curve", help="a method's unbiased accuracy per rho on Biased-MNIST, from MLflow")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    parser.add_argument("--experiment", default="reproduce")
    parser.add_argument("--method", default="vanilla")
    parser.add_argument("--encoder", default="lenet")
    parser.add_argument("--split", default="reference")
    parser.add_argument("--epochs", type=int, help="only trials of this many epochs (e.g. 12: --recipe cpu-converged)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), help="only trials of this recipe precision")
    parser.set_defaults(handler=mnist_curve)
