"""``python -m removal_bench.benchmarks mnist-curve``: a method's unbiased accuracy per rho on Biased-MNIST, from MLflow.

The measurement of the CPU setting (``--recipe cpu``, docs/BIASED_MNIST.md): for every finished trial of ``--method`` on
``biased_mnist`` with encoder ``--encoder`` in ``--experiment``, grouped by rho: the seeds, the unbiased
test accuracy (mean, sample standard deviation over seeds, min..max), the unbiased validation accuracy
after each epoch (mean over seeds; with ``split=reference`` validation is half of the test images
recoloured, so the curve shows what fewer epochs would have given, not a selection), the colour's
leakage and the training seconds and img/s that the trials logged. Every figure is read from the
runs (``mlflow.search_runs`` and each run's metric history), so it is traceable to their run ids.

For the converged setting (``--recipe cpu-converged``): ``--epochs`` and ``--precision`` keep only the
trials of one recipe (a trial logged before the ``precision`` field counts as fp32); each method
configuration (``hp.*``, e.g. EnD's alpha and beta) gets its own line; ``last-3`` is the validation accuracy
gained over the last three epochs (last epoch minus the third-last but one: the convergence criterion).

``python -m removal_bench.benchmarks adv-projection --rho 0.997``: how much of the task gradient adversarial
debiasing's projection removes (docs/BIASED_MNIST.md, the converged section). One epoch of ``adv_debias`` per
rho through :func:`removal_bench.running.trial.run_trial` (``--recipe cpu-converged``, one thread), recording at
every step cos^2 of the angle between the task gradient g and the adversary's h, the share of |g|^2 that
``g - proj_h(g)`` drops; it prints the median and mean per stretch of steps and the validation accuracy after
the epoch. Where y and s agree on almost every image the adversary's loss falls as the task's does, h runs along
g and the step keeps almost nothing of the task.
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


def adv_projection(arguments: argparse.Namespace) -> None:
    import numpy as np
    import torch

    import removal_bench.methods.adv_debias as adv_debias
    from removal_bench.running.trial import make_config, run_trial

    torch.set_num_threads(arguments.threads)
    shares: list[float] = []
    original = adv_debias.projected_update

    def recording(g, h, alpha, eps=adv_debias.EPSILON):
        gg, hh, gh = float(g @ g), float(h @ h), float(g @ h)
        shares.append(gh * gh / (gg * hh + 1e-30))  # cos^2(g, h): the share of |g|^2 the projection removes
        return original(g, h, alpha, eps)

    adv_debias.projected_update = recording
    try:
        print(f"adv_debias (alpha {arguments.alpha}), biased_mnist split=ours, --recipe cpu-converged, "
              f"{arguments.epochs} epoch(s), seed {arguments.seed}, {arguments.threads} thread(s): cos^2(g, h) per step")
        print("| rho | steps 1-10 | 11-50 | 51-200 | 201-end | val acc after the epoch(s) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for rho in arguments.rho:
            shares.clear()
            config = make_config("adv_debias", "biased_mnist", {"rho": rho}, {"alpha": arguments.alpha},
                                 seed=arguments.seed, epochs=arguments.epochs, data_root=arguments.data_root,
                                 recipe="cpu-converged")
            result = run_trial(config)
            values = np.array(shares)
            cells = [f"{np.median(part):.3f} ({part.mean():.3f})" if len(part) else "-"
                     for part in (values[:10], values[10:50], values[50:200], values[200:])]
            print(f"| {rho} | {' | '.join(cells)} | {result['val_accuracy']:.3f} |", flush=True)
        print("cells: median (mean) of cos^2 over those steps")
    finally:
        adv_debias.projected_update = original


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
    projection = commands.add_parser("adv-projection", help="the share of the task gradient adversarial debiasing's "
                                     "projection removes on Biased-MNIST, per rho (one epoch each)")
    projection.add_argument("--rho", type=float, action="append", help="repeatable (default: 0.9, 0.99, 0.997)")
    projection.add_argument("--alpha", type=float, default=0.003, help="the curve's weakest strength")
    projection.add_argument("--epochs", type=int, default=1)
    projection.add_argument("--seed", type=int, default=0)
    projection.add_argument("--threads", type=int, default=1)
    projection.add_argument("--data-root", default="../shared/data")
    projection.set_defaults(handler=lambda arguments: adv_projection(
        argparse.Namespace(**{**vars(arguments), "rho": arguments.rho or [0.9, 0.99, 0.997]})))
