"""Method effects measured beside a reference: EnD's gain per cell, adversarial debiasing beside fairlearn's.

``python -m removal_bench.benchmarks end-effects``: EnD's unbiased accuracy gain over vanilla on Biased-MNIST,
per rho, model form and training-set size, from the runs of ``sh results/end-effects.sh`` (MLflow experiments
``end-effects`` and ``reproduce``; every figure is read from the runs, so it is traceable to their run ids). A
cell is (rho, form, data): form ``common`` (the recipe's encoder as declared, linear task head) or ``authors``
(``recipe.bottleneck=bounded`` and ``recipe.head=normalised``: EnD's model around its loss); data ``full`` (all
training images) or ``subsample=F``. In each cell vanilla's figures, then EnD's at every alpha = beta present,
the one with the best mean validation accuracy chosen (``edge`` where it is the grid's lowest or highest point,
``the only point run`` where the cell has one),
and its gain over the cell's vanilla beside the paper's (EnD Table 1 against ReBias's vanilla).

``python -m removal_bench.benchmarks fairlearn-adv``: adversarial debiasing on Adult (private sex), ours under
both projections (``adv_debias.projection`` flat and per_tensor) beside fairlearn's
``AdversarialFairnessClassifier(backend="torch")``, with what can be the same made the same: the splits (this
benchmark's ``adult``: train / val / probe / test), the predictor network (``mlp``, its 64-d bottleneck and a
linear head; fairlearn's binary head is one sigmoid unit, ours a two-way softmax, the same family of
functions), the adversary's input (the predicted probability of y = 1, through a linear layer), SGD with the
recipe's rate 0.05, momentum 0.9 and weight decay 1e-4 for the predictor and the adversary alike, 10 epochs,
batch 256, shuffled each epoch. What stays different by construction: our adversary reads
softmax((1 + |c|) logits) with AIF360's learnt temperature c; fairlearn projects with ``torch.inner`` (its
``train_step``), which for a weight matrix sums row-by-row products instead of the elementwise product; our
trial's last batch of one row is dropped (batch norm). Test accuracy, the demographic-parity gap and the
protocol's leakage (fresh attackers on the frozen 64-d bottleneck, docs/PROTOCOL.md) for each, per alpha, mean
+- standard error over seeds; every row is logged to MLflow (experiment ``adv-fairlearn``) with its run id.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

# EnD Table 1 and ReBias Table 1 (published.toml): EnD's and vanilla's unbiased accuracy in %.
PAPER = {0.99: (96.02, 89.1), 0.995: (93.92, 72.1), 0.997: (83.70, 33.4), 0.999: (52.30, 10.4)}


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, se


def _emit(text: str, output: str | None) -> str:
    """Print a table, and write it to ``output`` where given."""
    print(text)
    if output:
        Path(output).write_text(text + "\n")
    return text


def _cell(row) -> tuple[float, str, str]:
    """(rho, form, data) of a run's row."""
    bottleneck = row.get("params.recipe.bottleneck")
    head = row.get("params.recipe.head")
    authors = bottleneck == "bounded" and head == "normalised"
    mixed = (bottleneck == "bounded") != (head == "normalised")
    form = "authors" if authors else ("mixed" if mixed else "common")
    subsample = row.get("params.data.subsample")
    data = "full" if subsample in (None, "1.0", "1") or (isinstance(subsample, float) and math.isnan(subsample)) \
        else f"subsample={subsample}"
    return float(row["params.data.rho"]), form, data


def end_effects(arguments: argparse.Namespace) -> str:
    import pandas as pd

    from removal_bench.running.preflight import tracking_uri as absolute_uri
    from removal_bench.running.tracking import load_runs

    uri = absolute_uri(arguments.tracking_uri, write=False)
    frames = [load_runs(uri, name) for name in arguments.experiment]
    frame = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) else None
    if frame is None:
        raise SystemExit(f"no runs in experiments {', '.join(arguments.experiment)} at {uri}")
    keep = (frame.get("params.dataset") == "biased_mnist") & (frame["status"] == "FINISHED") & (
        frame.get("params.method").isin(["vanilla", "end"])) & (frame.get("params.data.split") == "reference") & (
        frame.get("params.recipe.epochs").astype(str) == str(arguments.epochs)) & (
        frame.get("params.recipe.encoder") == arguments.encoder)
    precision = frame["params.recipe.precision"].fillna("fp32") if "params.recipe.precision" in frame else "fp32"
    keep &= precision == arguments.precision  # the recipe's own (cpu-converged: auto), not the fp32 check beside it
    runs = frame[keep].drop_duplicates(subset=["tags.bench.config_hash"], keep="first")
    rows: dict[tuple, dict] = {}
    for _, run in runs.iterrows():
        rho, form, data = _cell(run)
        if rho not in arguments.rho or form == "mixed":
            continue
        alpha = None if run["params.method"] == "vanilla" else float(run["params.hp.alpha"])
        if alpha is not None and float(run["params.hp.beta"]) != alpha:
            continue  # the tables tie alpha = beta
        entry = rows.setdefault((rho, form, data), {}).setdefault(alpha, {"test": [], "val": [], "leak": [], "runs": []})
        entry["test"].append(float(run["metrics.accuracy"]) * 100)
        entry["val"].append(float(run["metrics.val_accuracy"]) * 100)
        entry["leak"].append(float(run["metrics.leakage"]))
        entry["runs"].append(str(run["run_id"])[:8])
    lines = [
        f"EnD beside vanilla on Biased-MNIST, split=reference, encoder {arguments.encoder}, {arguments.epochs} epochs "
        f"(--recipe cpu-converged; reduced), experiments {', '.join(arguments.experiment)}; unbiased test accuracy in %, "
        "mean +- standard error over seeds; alpha = beta chosen per cell on validation (mean over seeds).", "",
        "| rho | form | data | vanilla | EnD (chosen alpha = beta) | gain | paper's gain | leakage: vanilla / EnD | EnD per alpha: val / test | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = {"common": 0, "authors": 1}
    for (rho, form, data) in sorted(rows, key=lambda k: (k[0], k[2] != "full", k[2], order[k[1]])):
        cell = rows[(rho, form, data)]
        vanilla = cell.get(None)
        grid = sorted(alpha for alpha in cell if alpha is not None)
        seeds = ",".join(str(len(cell[a]["test"])) for a in [None, *grid] if a in cell)
        van_text = "-" if vanilla is None else "%.1f +- %.1f" % _mean_se(vanilla["test"])
        per_alpha = "; ".join(f"{a:g}: {statistics.mean(cell[a]['val']):.1f} / {statistics.mean(cell[a]['test']):.1f}"
                              for a in grid) or "-"
        if grid:
            chosen = max(grid, key=lambda a: statistics.mean(cell[a]["val"]))
            edge = (", the only point run" if len(grid) == 1
                    else ", edge" if chosen in (grid[0], grid[-1]) else "")
            end_mean, end_se = _mean_se(cell[chosen]["test"])
            end_text = f"{end_mean:.1f} +- {end_se:.1f} (alpha {chosen:g}{edge})"
            if vanilla is not None:
                van_mean = statistics.mean(vanilla["test"])
                n = min(len(vanilla["test"]), len(cell[chosen]["test"]))
                se = math.sqrt(statistics.variance(vanilla["test"]) / len(vanilla["test"])
                               + statistics.variance(cell[chosen]["test"]) / len(cell[chosen]["test"])) if n > 1 else math.nan
                gain = f"{end_mean - van_mean:+.1f} +- {se:.1f}"
            else:
                gain = "-"
        else:
            end_text, gain, chosen = "-", "-", None
        paper = PAPER.get(rho)
        paper_text = f"{paper[0] - paper[1]:+.1f}" if paper else "-"
        leak = " / ".join("-" if entry is None else f"{statistics.mean(entry['leak']):.3f}"
                          for entry in (vanilla, cell.get(chosen) if chosen is not None else None))
        lines.append(f"| {rho:g} | {form} | {data} | {van_text} | {end_text} | {gain} | {paper_text} | {leak} | {per_alpha} | {seeds} |")
    lines += ["", "gain: EnD's chosen mean minus the cell's vanilla mean, +- the standard error of that difference; "
              "paper's gain: EnD Table 1 minus ReBias Table 1's vanilla (SimpleConvNet, 80 epochs); leakage: the colour's "
              "balanced accuracy for the protocol's best fresh attacker on z (mean over seeds; chance 0.1); seeds: runs "
              "finished for vanilla, then each alpha in order."]
    return _emit("\n".join(lines), arguments.output)


# ------------------------------------------------------------------------------------ the bounded bottleneck

STRENGTH = {"irene": "gamma", "grl": "lambda"}


def bounded_form(arguments: argparse.Namespace) -> str:
    """IRENE and GRL on converged Biased-MNIST in the ReLU form (the leaderboard's curve) and the bounded form
    (``--train bottleneck=bounded``), at the strengths both hold: task accuracy, the method's own head (its
    accuracy on the colour, and how often it answers the digit), and the fresh attackers' leakage per family."""
    import pandas as pd

    from removal_bench.running.preflight import tracking_uri as absolute_uri
    from removal_bench.running.tracking import load_runs

    uri = absolute_uri(arguments.tracking_uri, write=False)
    frames = [load_runs(uri, name) for name in arguments.experiment]
    frames = [f for f in frames if not f.empty]
    if not frames:
        raise SystemExit(f"no runs in experiments {', '.join(arguments.experiment)} at {uri}")
    frame = pd.concat(frames, ignore_index=True)
    keep = (frame.get("params.dataset") == "biased_mnist") & (frame["status"] == "FINISHED") & (
        frame.get("params.data.rho").astype(str) == str(arguments.rho)) & (frame.get("params.data.split") == "ours")
    runs = frame[keep].drop_duplicates(subset=["tags.bench.config_hash"], keep="first")
    form = runs.get("params.recipe.bottleneck", pd.Series(index=runs.index, dtype=object)).fillna("relu").replace(
        {"default": "relu"})
    cells: dict[tuple, list] = {}
    for index, run in runs.iterrows():
        method = run["params.method"]
        if method not in (*STRENGTH, "vanilla"):
            continue
        if method == "irene" and str(run.get("params.hp.alpha")) not in ("1.0", "1"):
            continue
        strength = float(run[f"params.hp.{STRENGTH[method]}"]) if method in STRENGTH else math.nan
        cells.setdefault((method, strength, form[index]), []).append(run)
    both = {(m, s) for (m, s, f) in cells if f == "bounded"}
    lines = [f"IRENE and GRL on Biased-MNIST, rho {arguments.rho}, split=ours, --recipe cpu-converged (reduced: LeNet-style CNN, "
             f"12 epochs), experiments {', '.join(arguments.experiment)}: the ReLU bottleneck (relu) beside BatchNorm + Tanh "
             "at its end (bounded); mean +- standard error over seeds.", "",
             "| method | strength | form | seeds | task acc | head acc (colour) | head=y | leakage | linear / mlp / gbdt | wide MLP |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def fmt(values):
        mean, se = _mean_se(values)
        return f"{mean:.3f}" + (f" +- {se:.3f}" if math.isfinite(se) else "")

    for (method, strength, name) in sorted(cells, key=lambda k: (k[0] != "vanilla", k[0], k[1], k[2] != "relu")):
        if method != "vanilla" and (method, strength) not in both:
            continue
        mine = cells[(method, strength, name)]
        figure = lambda metric: [float(r[f"metrics.{metric}"]) for r in mine if f"metrics.{metric}" in r and r[f"metrics.{metric}"] == r[f"metrics.{metric}"]]
        head = figure("head_acc")
        checked = figure("attack.mlp_wide.leakage")
        wide = f"{fmt(checked)} ({len(checked)})" if checked else "-"
        label = "-" if method == "vanilla" else f"{STRENGTH[method]} {strength:g}"
        families = " / ".join(f"{statistics.mean(figure(f'leak_{family}')):.3f}" if figure(f"leak_{family}") else "-"
                              for family in ("linear", "mlp", "gbdt"))
        lines.append(f"| {method} | {label} | {name} | {len(mine)} | {fmt(figure('accuracy'))} | "
                     f"{fmt(head) if head else '-'} | {fmt(figure('head_predicts_y')) if figure('head_predicts_y') else '-'} | "
                     f"{fmt(figure('leakage'))} | {families} | {wide} |")
    lines += ["", "head acc: the method's own head (IRENE's privacy head, GRL's adversary) on the colour, test split "
              "(chance 0.1); head=y: how often that head's answer is the digit; leakage: the colour's balanced accuracy "
              "for the protocol's best fresh attacker on z (chance 0.1); wide MLP: the capacity check (`bench attack RUN_ID "
              "--attacker mlp_wide`: the protocol's MLP four times wider, twice the patience), test balanced accuracy, "
              "with the number of seeds checked."]
    return _emit("\n".join(lines), arguments.output)


# ------------------------------------------------------------------------------------ fairlearn's beside ours

def _corrected_engine():
    """fairlearn's torch engine whose ``train_step`` projects each parameter's task gradient off its part of the
    adversary's gradient with the elementwise dot product (AIF360's formula; ours with ``per_tensor``) in place of
    fairlearn's ``torch.inner``: the one change that tells whether fairlearn's projection is the cause. fairlearn
    takes a ``BackendEngine`` subclass as ``backend``."""
    import torch
    from fairlearn.adversarial._pytorch_engine import PytorchEngine

    class CorrectedProjection(PytorchEngine):
        def train_step(self, X, Y, A):
            self.predictor_model.train()
            self.adversary_model.train()
            parameters = list(self.predictor_model.parameters())
            y_hat = self.predictor_model(X)
            task = self.predictor_loss(y_hat, Y)
            adversary_loss = self.adversary_loss(self.adversary_model(y_hat), A)
            g = torch.autograd.grad(task, parameters, retain_graph=True)
            h = torch.autograd.grad(adversary_loss, parameters, retain_graph=True)
            self.adversary_optimizer.zero_grad()
            adversary_loss.backward()  # the adversary's own gradients; the predictor's are set below
            for parameter, gi, hi in zip(parameters, g, h):
                unit = hi / (hi.norm() + torch.finfo(torch.float32).tiny)
                parameter.grad = gi - (gi * unit).sum() * unit - self.base.alpha * hi
            self.predictor_optimizer.step()
            self.adversary_optimizer.step()
            return task.item(), adversary_loss.item()

    return CorrectedProjection


def _fairlearn_trial(data, alpha: float, seed: int, epochs: int, batch_size: int, recipe: dict, adversary_lr: float,
                     threads: int, corrected: bool = False) -> dict[str, float]:
    """fairlearn's AdversarialFairnessClassifier on our splits with our predictor network; its figures. With
    ``corrected``, its training step projects with the elementwise dot product (:func:`_corrected_engine`)."""
    import numpy as np
    import torch
    from fairlearn.adversarial import AdversarialFairnessClassifier
    from torch import nn

    from removal_bench.core.encoders import build_encoder
    from removal_bench.measuring.attackers import measure_leakage
    from removal_bench.measuring.metrics import task_metrics

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    encoder = build_encoder("mlp", data.spec.input_shape)
    predictor = nn.Sequential(encoder, nn.Linear(encoder.out_dim, 1), nn.Sigmoid())
    adversary = nn.Sequential(nn.Linear(1, 1), nn.Sigmoid())

    def sgd(rate):  # the recipe's SGD, as our trial's predictor and adversary have it
        return lambda model: torch.optim.SGD(model.parameters(), lr=rate, momentum=recipe["momentum"],
                                             weight_decay=recipe["weight_decay"])

    model = AdversarialFairnessClassifier(
        backend=_corrected_engine() if corrected else "torch", predictor_model=predictor, adversary_model=adversary,
        predictor_optimizer=sgd(recipe["lr"]), adversary_optimizer=sgd(adversary_lr), alpha=alpha, epochs=epochs,
        batch_size=batch_size, shuffle=True, random_state=seed, constraints="demographic_parity", progress_updates=None,
    )
    x, y, s = (t.numpy() for t in (data.train.x, data.train.y, data.train.s))
    model.fit(x.astype(np.float32), y, sensitive_features=s)
    net = model.backendEngine_.predictor_model.eval()

    def embed(split):
        with torch.no_grad():
            z = net[0](split.x.float())
            p = net[2](net[1](z)).reshape(-1)
        return z.numpy(), torch.stack([1 - p, p], dim=1).numpy()

    (z_probe, _), (z_val, p_val), (z_test, p_test) = embed(data.probe), embed(data.val), embed(data.test)
    figures = task_metrics(p_test, data.test.y.numpy(), data.test.s.numpy()).as_metrics()
    leakage = measure_leakage(z_probe, data.probe.s.numpy(), z_val, data.val.s.numpy(), z_test, data.test.s.numpy(),
                              data.spec.num_private, seed=seed)
    figures.update(leakage.as_metrics())
    figures["val_accuracy"] = float((p_val.argmax(1) == data.val.y.numpy()).mean())
    return figures


def fairlearn_adv(arguments: argparse.Namespace) -> str:
    import torch

    from removal_bench.running.trial import load_data, make_config, run_trial

    torch.set_num_threads(arguments.threads)
    options = dict(arguments.options)
    figures: dict[tuple[str, float], list[dict]] = {}
    tracking = None
    if arguments.tracking_uri:
        import mlflow

        from removal_bench.running.preflight import tracking_uri as absolute_uri
        from removal_bench.running.tracking import git_commit

        mlflow.set_tracking_uri(absolute_uri(arguments.tracking_uri, write=True))
        mlflow.set_experiment(arguments.experiment)
        tracking = (mlflow, git_commit())
    rows = [("ours, flat projection", "flat"), ("ours, per-tensor projection", "per_tensor"),
            ("fairlearn 0.15 (torch)", None), ("fairlearn 0.15, projection corrected", "corrected")]
    run_ids: dict[str, list[str]] = {}
    for alpha in arguments.alpha:
        for seed in range(arguments.seeds):
            for label, projection in rows:
                if projection in (None, "corrected"):
                    config = make_config("vanilla", arguments.dataset, options, seed=seed, data_root=arguments.data_root,
                                         epochs=arguments.epochs, batch_size=arguments.batch_size)
                    result = _fairlearn_trial(load_data(config), alpha, seed, config["epochs"], config["batch_size"],
                                              config["recipe"], arguments.adversary_lr, arguments.threads,
                                              projection == "corrected")
                else:
                    config = make_config("adv_debias", arguments.dataset, options,
                                         {"alpha": alpha, "projection": projection, "adversary_lr": arguments.adversary_lr},
                                         seed=seed, data_root=arguments.data_root, threads=arguments.threads,
                                         epochs=arguments.epochs, batch_size=arguments.batch_size)
                    result = run_trial(config)
                figures.setdefault((label, alpha), []).append(result)
                if tracking:
                    mlflow, commit = tracking
                    with mlflow.start_run(run_name=f"{label}, alpha {alpha:g}, seed {seed}") as run:
                        mlflow.log_params({"implementation": label, "alpha": alpha, "seed": seed,
                                           "projection": projection or "fairlearn's", "dataset": arguments.dataset,
                                           **{f"data.{k}": v for k, v in options.items()},
                                           "epochs": config["epochs"], "batch_size": config["batch_size"],
                                           "adversary_lr": arguments.adversary_lr})
                        mlflow.log_metrics({k: float(result[k]) for k in ("accuracy", "dp_gap", "leakage", "val_accuracy")})
                        mlflow.set_tag("bench.git_commit", commit or "unknown")
                    run_ids.setdefault(label, []).append(run.info.run_id[:8])
                print(f"  {label}, alpha {alpha:g}, seed {seed}: accuracy {result['accuracy']:.4f}, "
                      f"dp gap {result['dp_gap']:.4f}, leakage {result['leakage']:.4f}", flush=True)
    lines = [
        f"Adversarial debiasing on {arguments.dataset} ({', '.join(f'{k}={v}' for k, v in options.items()) or 'defaults'}), "
        f"ours beside fairlearn's, {arguments.seeds} seeds, {config['epochs']} epochs, batch {config['batch_size']}, "
        f"SGD {config['recipe']['lr']:g} (adversary {arguments.adversary_lr:g}), test figures, mean +- standard error "
        "over seeds:", "",
        "| alpha | implementation | accuracy | DP gap | leakage (fresh attackers on z) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for alpha in arguments.alpha:
        for label, _ in rows:
            results = figures[(label, alpha)]
            cells = ["%.4f +- %.4f" % _mean_se([float(r[k]) for r in results]) for k in ("accuracy", "dp_gap", "leakage")]
            lines.append(f"| {alpha:g} | {label} | {' | '.join(cells)} |")
    if run_ids:
        lines += ["", "MLflow runs (experiment " + arguments.experiment + "): "
                  + "; ".join(f"{label}: {' '.join(ids)}" for label, ids in run_ids.items())]
    text = "\n".join(lines)
    print(text)
    if arguments.output:
        Path(arguments.output).write_text(text + "\n")
    return text if not arguments.return_figures else figures


def add_effects_commands(commands) -> None:
    end = commands.add_parser("end-effects", help="EnD's gain over vanilla per rho, form and data size, from MLflow")
    end.add_argument("--tracking-uri", default="sqlite:///mlflow-effects.db")
    end.add_argument("--experiment", action="append", help="repeatable (default: end-effects and reproduce)")
    end.add_argument("--rho", type=float, action="append", help="repeatable (default: 0.99 and 0.997)")
    end.add_argument("--encoder", default="lenet")
    end.add_argument("--epochs", type=int, default=12)
    end.add_argument("--precision", default="auto", help="only trials of this recipe precision (default auto: "
                     "--recipe cpu-converged's)")
    end.add_argument("--output", help="also write the table to this file")
    end.set_defaults(handler=lambda a: end_effects(argparse.Namespace(**{
        **vars(a), "experiment": a.experiment or ["end-effects", "reproduce"], "rho": a.rho or [0.99, 0.997]})))
    bounded = commands.add_parser("bounded-form", help="IRENE and GRL on converged Biased-MNIST: the ReLU bottleneck "
                                  "beside the bounded one (BatchNorm + Tanh), from MLflow")
    bounded.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    bounded.add_argument("--experiment", action="append", help="repeatable (default: curves-converged and bounded-converged)")
    bounded.add_argument("--rho", type=float, default=0.997)
    bounded.add_argument("--output", help="also write the table to this file")
    bounded.set_defaults(handler=lambda a: bounded_form(argparse.Namespace(**{
        **vars(a), "experiment": a.experiment or ["curves-converged", "bounded-converged"]})))
    fair = commands.add_parser("fairlearn-adv", help="adversarial debiasing on Adult: ours (both projections) beside "
                               "fairlearn's AdversarialFairnessClassifier")
    fair.add_argument("--alpha", type=float, action="append", help="repeatable (default: 0, 0.1, 1)")
    fair.add_argument("--seeds", type=int, default=3)
    fair.add_argument("--dataset", default="adult", help="a dataset with a binary target (default adult)")
    fair.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                      help="a dataset option (default: private=sex on adult)")
    fair.add_argument("--epochs", type=int, help="default: the dataset's recipe (adult: 10)")
    fair.add_argument("--batch-size", type=int, help="default: the dataset's recipe (adult: 256)")
    fair.add_argument("--adversary-lr", type=float, default=0.05)
    fair.add_argument("--threads", type=int, default=1)
    fair.add_argument("--data-root", help="folder holding dataset folders (default $BENCH_DATA_ROOT or ~/.cache/removal-bench)")
    fair.add_argument("--tracking-uri", help="log each row as an MLflow run (default: none)")
    fair.add_argument("--experiment", default="adv-fairlearn")
    fair.add_argument("--output", help="also write the table to this file")
    fair.set_defaults(handler=lambda a: fairlearn_adv(argparse.Namespace(**{
        **vars(a), "alpha": a.alpha or [0.0, 0.1, 1.0], "return_figures": False,
        "options": dict(o.split("=", 1) for o in a.option) or ({"private": "sex"} if a.dataset == "adult" else {})})))
