"""CPU benchmark commands of ``python -m removal_bench.benchmarks``: figures, never test asserts.

``attackers FOLDER``: the current attackers against the previous ones (:data:`PREVIOUS_FITTERS`,
bench/measuring/attackers.py at 1d047c6) on saved embeddings (``.npz`` with ``z_probe``, ``s_probe``,
``z_val``, ``s_val``, ``z_test``, ``s_test``, ``num_private`` and optionally ``p_*``, the predicted
probabilities the floor attacker reads): leakage of each and the time ratio.

``overhead``: the per-trial cost of the Ray executor and MLflow: zero-epoch trials of a tiny
``synthetic`` through ``bench run`` (Ray, SQLite MLflow) at two trial counts, the slope per
trial, against the same trial through :func:`removal_bench.running.trial.run_trial`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


# --------------------------------------------------------------------------- previous attackers

def _previous_linear(z, s, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from removal_bench.measuring.attackers import LINEAR_C_GRID, _cross_entropy, _full_probabilities, _inner_split
    from removal_bench.measuring.metrics import balanced_accuracy

    scaled = StandardScaler().fit(z)
    z_scaled = scaled.transform(z)
    fit_rows, holdout_rows = _inner_split(s, np.random.default_rng([seed, 1]))
    chosen_c = 1.0
    if holdout_rows.size and np.unique(s[fit_rows]).size >= 2:
        best_key = None
        for c in LINEAR_C_GRID:
            model = LogisticRegression(C=c, max_iter=500).fit(z_scaled[fit_rows], s[fit_rows])
            probabilities = _full_probabilities(model.predict_proba(z_scaled[holdout_rows]), model.classes_, int(s.max()) + 1)
            key = (balanced_accuracy(s[holdout_rows], np.argmax(probabilities, axis=1)),
                   -_cross_entropy(probabilities, s[holdout_rows]))
            if best_key is None or key > best_key:
                best_key, chosen_c = key, c
    return make_pipeline(scaled, LogisticRegression(C=chosen_c, max_iter=500).fit(z_scaled, s))


def _previous_mlp(z, s, seed):
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from removal_bench.measuring.attackers import INNER_HOLDOUT_FRACTION, _sklearn_holdout_possible

    model = MLPClassifier(hidden_layer_sizes=(128, 64), early_stopping=_sklearn_holdout_possible(s),
                          validation_fraction=INNER_HOLDOUT_FRACTION, max_iter=200, random_state=seed)
    return make_pipeline(StandardScaler(), model).fit(z, s)


def _previous_gbdt(z, s, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from removal_bench.measuring.attackers import INNER_HOLDOUT_FRACTION, _sklearn_holdout_possible

    return HistGradientBoostingClassifier(early_stopping=_sklearn_holdout_possible(s), validation_fraction=INNER_HOLDOUT_FRACTION,
                                          max_iter=200, random_state=seed).fit(z, s)


# The attackers as they were at commit 1d047c6, before f2f30b3 made them faster: the strength reference.
PREVIOUS_FITTERS = {"linear": _previous_linear, "mlp": _previous_mlp, "gbdt": _previous_gbdt}


def compare_attackers(arrays: dict, prefix: str, seed: int = 0) -> dict:
    """Leakage and seconds of the current and the previous attackers on one set of features."""
    from removal_bench.measuring.attackers import measure_leakage

    inputs = [arrays[f"{prefix}_probe"], arrays["s_probe"], arrays[f"{prefix}_val"], arrays["s_val"],
              arrays[f"{prefix}_test"], arrays["s_test"], int(arrays["num_private"])]
    figures = {}
    for name, fitters in (("previous", PREVIOUS_FITTERS), ("current", None)):
        start = time.perf_counter()
        report = measure_leakage(*inputs, seed=seed, fitters=fitters)
        figures[name] = {"leakage": report.leakage, "val_leakage": report.val_leakage, "best": report.best,
                         "seconds": time.perf_counter() - start,
                         **{f"leak_{k}": v.test_balanced_accuracy for k, v in report.attackers.items()}}
    return figures


def attackers(arguments: argparse.Namespace) -> None:
    files = sorted(Path(arguments.folder).glob("*.npz"))
    if not files:
        sys.exit(f"bench: error: no .npz files in {arguments.folder}")
    differences, previous_seconds, current_seconds = [], 0.0, 0.0
    print(f"{'embedding':<36} {'features':<8} {'previous':>9} {'current':>9} {'diff':>7} {'time ratio':>10}")
    for path in files:
        arrays = dict(np.load(path))
        for prefix in ("z", "p"):
            if f"{prefix}_probe" not in arrays:
                continue
            figures = compare_attackers(arrays, prefix)
            old, new = figures["previous"], figures["current"]
            differences.append(new["leakage"] - old["leakage"])
            previous_seconds += old["seconds"]
            current_seconds += new["seconds"]
            print(f"{path.stem:<36} {prefix:<8} {old['leakage']:>9.3f} {new['leakage']:>9.3f} "
                  f"{differences[-1]:>+7.3f} {old['seconds'] / new['seconds']:>9.1f}x", flush=True)
    print(f"mean leakage difference {statistics.mean(differences):+.4f} (min {min(differences):+.3f}) over "
          f"{len(differences)}; attackers {previous_seconds:.1f} s -> {current_seconds:.1f} s "
          f"({previous_seconds / current_seconds:.1f}x faster)")


# --------------------------------------------------------------------------- Ray + MLflow overhead

def _bench_run(trials: int, folder: Path, executor: str, concurrent: int) -> float:
    command = [sys.executable, "-m", "removal_bench.commands.cli", "run", "--methods", "vanilla",
               "--datasets", "synthetic:n_train=100:n_eval=100", "--seeds", str(trials), "--epochs", "0",
               "--executor", executor, "--tracking-uri", f"sqlite:///{folder}/mlflow-{executor}-{trials}.db",
               "--experiment", "overhead", "--results-dir", str(folder / f"results-{executor}-{trials}"), "--quiet"]
    if executor == "ray":
        command += ["--max-concurrent", str(concurrent)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def overhead(arguments: argparse.Namespace) -> None:
    from removal_bench.running.trial import make_config, run_trial

    configs = [make_config("vanilla", "synthetic", {"n_train": 100, "n_eval": 100}, seed=seed, epochs=0, threads=1)
               for seed in range(arguments.trials)]
    run_trial(configs[0])  # imports and the data cache, as a reused Ray worker has them
    start = time.perf_counter()
    for config in configs:
        run_trial(config)
    direct = (time.perf_counter() - start) / len(configs)
    print(f"run_trial, zero epochs, tiny synthetic: {direct:.3f} s per trial", flush=True)
    small, large = arguments.base, arguments.base + arguments.trials
    with tempfile.TemporaryDirectory() as folder:
        for executor in arguments.executors:
            slopes = []
            for _ in range(arguments.repeats):
                t_small = _bench_run(small, Path(folder), executor, 1)
                t_large = _bench_run(large, Path(folder), executor, 1)
                slopes.append((t_large - t_small) / (large - small))
            slope = statistics.median(slopes)
            print(f"bench run --executor {executor}, one trial at a time: {slope:.3f} s per trial "
                  f"(median of {len(slopes)}; {small} vs {large} trials) -> overhead {slope - direct:.3f} s per trial "
                  f"over run_trial; whole run of {large}: {t_large:.1f} s", flush=True)


# --------------------------------------------------------------------------- old tree beside new

_ONE_TRIAL = """
import json, sys, time
try:  # a tree from before the one namespace (bench/trial.py, on PYTHONPATH)
    from bench.trial import make_config, run_trial
except ImportError:  # this tree: removal_bench (bench/running/trial.py), installed
    from removal_bench.running.trial import make_config, run_trial
config = make_config(sys.argv[4], sys.argv[1], seed=int(sys.argv[2]), data_root=sys.argv[3] or None, threads=1)
warm = {**config, "epochs": 0}
if "recipe" in config:  # trees from before the recipes (1d047c6 and older) have none
    warm["recipe"] = {**config["recipe"], "epochs": 0}
run_trial(warm)  # imports, data cache: a reused Ray worker has them
start = time.perf_counter()
metrics = run_trial(config)
print(json.dumps({"seconds": time.perf_counter() - start, "train": metrics["train_seconds"],
                  "eval": metrics["eval_seconds"], "leakage": metrics["leakage"], "floor": metrics["floor_leakage"]}))
"""


def cpu_compare(arguments: argparse.Namespace) -> None:
    """The same trials on the old tree (``--old``, e.g. a git worktree of the previous commit) and this one.

    Runs alternate old/new per trial and repeat (other work on the machine hits both alike);
    medians per workload, ratios old/new, and trials per minute of the three workloads in turn.
    """
    import json
    import os

    trees = {"old": str(Path(arguments.old).resolve()), "new": str(Path(__file__).resolve().parents[2])}
    workloads = [f"{dataset}/{method}" for dataset in arguments.workloads for method in arguments.methods]
    results = {(tree, workload): [] for tree in trees for workload in workloads}
    for repeat in range(arguments.repeats):
        for workload in workloads:
            for tree in (("old", "new") if repeat % 2 == 0 else ("new", "old")):
                environment = {**os.environ, "PYTHONPATH": trees[tree]}
                dataset, method = workload.split("/")
                completed = subprocess.run([sys.executable, "-c", _ONE_TRIAL, dataset, str(repeat), arguments.data_root, method],
                                           cwd=trees[tree], env=environment, capture_output=True, text=True, check=True)
                figures = json.loads(completed.stdout.strip().splitlines()[-1])
                results[(tree, workload)].append(figures)
                print(f"# repeat {repeat} {workload:<24} {tree}: {figures['seconds']:.2f} s "
                      f"(train {figures['train']:.2f}, eval {figures['eval']:.2f}, leakage {figures['leakage']:.3f})", flush=True)
    print(f"{'workload (1 thread)':<30} {'old s':>7} {'new s':>7} {'ratio':>6} {'old eval':>9} {'new eval':>9} {'ratio':>6}")
    totals = {"old": 0.0, "new": 0.0}
    for workload in workloads:
        median = {tree: {key: statistics.median(r[key] for r in results[(tree, workload)]) for key in ("seconds", "eval")}
                  for tree in trees}
        for tree in trees:
            totals[tree] += median[tree]["seconds"]
        print(f"{workload:<30} {median['old']['seconds']:>7.2f} {median['new']['seconds']:>7.2f} "
              f"{median['old']['seconds'] / median['new']['seconds']:>5.2f}x {median['old']['eval']:>9.2f} "
              f"{median['new']['eval']:>9.2f} {median['old']['eval'] / median['new']['eval']:>5.2f}x")
    per_minute = {tree: 60 * len(workloads) / totals[tree] for tree in trees}
    print(f"trials per minute (one each, one thread): old {per_minute['old']:.1f}, new {per_minute['new']:.1f} "
          f"({per_minute['new'] / per_minute['old']:.2f}x); medians of {arguments.repeats} interleaved repeats")


def inlp_svm(arguments: argparse.Namespace) -> None:
    """INLP's classifier: sklearn's LinearSVC (liblinear) against :func:`removal_bench.methods.inlp.svm_directions` on the same rows.

    Gaussian rows whose mean moves with the class (unequal class sizes, unequal
    feature scales); prints seconds of each, the ratio, the worst cosine between
    matching rows and the worst relative difference of the weights.
    """
    import warnings

    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    from removal_bench.methods.inlp import svm_directions

    torch.set_num_threads(1)
    print(f"{'rows x dims':<14} {'classes':>7} {'sklearn s':>10} {'ours s':>8} {'ratio':>7} {'min cos':>10} {'max rel diff':>13}")
    for classes in arguments.classes:
        rng = np.random.default_rng(classes)
        sizes = np.linspace(1, 2, classes)
        s = rng.choice(classes, arguments.rows, p=sizes / sizes.sum())
        z = (rng.normal(size=(arguments.rows, arguments.dims)) * rng.uniform(0.1, 3, arguments.dims)
             + s[:, None] * rng.normal(size=arguments.dims) * 0.3 + 1.0)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reference = LinearSVC(C=arguments.c, class_weight="balanced", dual=False, max_iter=10000).fit(z, s).coef_
        sklearn_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ours = svm_directions(torch.from_numpy(z), torch.from_numpy(s), arguments.c).numpy()
        our_seconds = time.perf_counter() - start
        cosine = min(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(reference, ours))
        difference = float(np.abs(reference - ours).max() / np.abs(reference).max())
        print(f"{arguments.rows} x {arguments.dims:<6} {classes:>7} {sklearn_seconds:>10.3f} {our_seconds:>8.3f} "
              f"{sklearn_seconds / our_seconds:>6.1f}x {cosine:>10.6f} {difference:>13.2e}", flush=True)
    if arguments.data_root:
        inlp_on_adult(arguments)


def _sklearn_directions(z, s, c):
    """INLP's classifier as it was before the Newton solver: sklearn's LinearSVC (liblinear)."""
    import warnings

    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LinearSVC(C=c, class_weight="balanced", dual=False, max_iter=10000).fit(z.cpu().numpy(), s.cpu().numpy())
    return torch.as_tensor(model.coef_, dtype=torch.float64, device=z.device)


def inlp_on_adult(arguments: argparse.Namespace) -> None:
    """INLP's whole projection on Adult's training bottleneck (a vanilla MLP, 3 epochs), liblinear against ours."""
    import torch

    import removal_bench.methods.inlp as inlp
    from removal_bench.running.trial import load_data, make_config, run_trial
    from removal_bench.methods.posthoc import encode

    config = make_config("vanilla", "adult", data_root=arguments.data_root, device="cpu", epochs=3, threads=1)
    config["model_path"] = str(Path(tempfile.mkdtemp(prefix="bench-inlp-")) / "model.pt")
    run_trial(config)
    from removal_bench.running.artifacts import load_model

    method = load_model(config["model_path"])[0].eval()
    train = load_data(config).train
    z = encode(method.encoder, train.x)
    print(f"INLP on adult's training bottleneck ({z.shape[0]} x {z.shape[1]}, binary s), seconds:")
    print(f"{'iterations':>10} {'liblinear':>10} {'ours':>8} {'ratio':>7} {'removed (ours)':>15}")
    ours = inlp.svm_directions
    for iterations in arguments.iterations:
        seconds = {}
        for name, directions in (("liblinear", _sklearn_directions), ("ours", ours)):
            inlp.svm_directions = directions
            try:
                start = time.perf_counter()
                projection = inlp.nullspace_projection(z, train.s, 2, iterations, 1e-4, "svm", 0.1)
                seconds[name] = time.perf_counter() - start
            finally:
                inlp.svm_directions = ours
        removed = z.shape[1] - float(torch.trace(projection))
        print(f"{iterations:>10} {seconds['liblinear']:>10.2f} {seconds['ours']:>8.2f} "
              f"{seconds['liblinear'] / seconds['ours']:>6.1f}x {removed:>15.1f}", flush=True)


def interleaved_rates(steps: dict[Any, Callable[[], Any]], images_per_call: int, repeats: int, *,
                      seconds: float | None = None, calls: int | None = None, warmup: int = 0,
                      before: Callable[[Any], Any] | None = None) -> dict[Any, list[float]]:
    """Img/s samples of each step function, timed in turn: ``repeats`` rounds over ``steps`` (key -> callable).

    Each timing runs one step ``calls`` times, or as many times as fit in ``seconds``, and gives one
    sample, calls x ``images_per_call`` / elapsed seconds; ``before(key)`` and ``warmup`` untimed calls come
    first. Interleaved, other work on the machine slows every step alike: ratios of medians stay fair.
    """
    if (seconds is None) == (calls is None):
        raise ValueError("interleaved_rates: give one of seconds and calls")
    samples = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            if before is not None:
                before(key)
            for _ in range(warmup):
                step()
            start, count = time.perf_counter(), 0
            if calls is not None:
                for _ in range(calls):
                    step()
                count = calls
            else:
                while time.perf_counter() - start < seconds:
                    step()
                    count += 1
            samples[key].append(count * images_per_call / (time.perf_counter() - start))
    return samples


def cpu_step(arguments: argparse.Namespace) -> None:
    """One training step of an encoder on one CPU thread: fp32, channels_last and bf16 autocast side by side.

    ``small_cnn`` on a batch of 100 3 x 8 x 8 images by default (colored_digits' recipe), SGD with
    momentum. bf16 autocast uses the CPU's bf16 dot products where it has them (avx512_bf16,
    AMX): the speed a trial would gain, and the arithmetic it would change, which is why trials stay fp32.
    """
    import torch
    import torch.nn.functional as F

    from removal_bench.core.encoders import build_encoder

    torch.set_num_threads(1)
    shape = tuple(arguments.shape)
    x, y = torch.randn(arguments.batch, *shape), torch.randint(0, 10, (arguments.batch,))
    print(f"{arguments.encoder}, batch {arguments.batch} of {shape}, one thread: ms per step "
          f"(median of {arguments.repeats} interleaved repeats)")

    def variant(channels_last: bool, bf16: bool):
        torch.manual_seed(0)
        encoder = build_encoder(arguments.encoder, shape)
        head = torch.nn.Linear(encoder.out_dim, 10)
        optimizer = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.01, momentum=0.9)
        batch = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        if channels_last:
            encoder = encoder.to(memory_format=torch.channels_last)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(head(encoder(batch)).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(5):
            step()
        return step

    steps = {"fp32": variant(False, False), "channels_last": variant(True, False), "bf16 autocast": variant(False, True)}
    rates = interleaved_rates(steps, 1, arguments.repeats, calls=arguments.steps)  # steps per second
    samples = {name: [1e3 / rate for rate in values] for name, values in rates.items()}  # ms per step
    timings = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in timings.items():
        print(f"{name:<14} {value:7.2f} ms  ({timings['fp32'] / value:.2f}x fp32)", flush=True)


def encoder_rates(arguments: argparse.Namespace) -> None:
    """Training img/s of each encoder on 3 x 28 x 28 images (Biased-MNIST's shape), per torch thread count.

    One step = encoder + linear 10-way head, cross-entropy, backward, Adam 1e-3 (the CPU recipe's
    optimiser; the step's cost is the network's, the optimiser's is small), fp32, random data. Every
    (encoder, threads) pair is timed ``--repeats`` times, interleaved, and the median is printed with the
    ratio to ``lenet`` at the same thread count: ratios measured side by side in one run. The
    choice of the CPU setting of Biased-MNIST (``--recipe cpu``) rests on these figures.
    """
    import torch
    import torch.nn.functional as F

    from removal_bench.core.encoders import build_encoder

    shape = (3, 28, 28)
    x, y = torch.randn(arguments.batch, *shape), torch.randint(0, 10, (arguments.batch,))

    def make(name: str):
        torch.manual_seed(0)
        encoder = build_encoder(name, shape)
        head = torch.nn.Linear(encoder.out_dim, 10)
        optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)

        def step():
            loss = F.cross_entropy(head(encoder(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    steps = {name: make(name) for name in arguments.encoders}
    # per repeat, each thread count in turn and every encoder at it, after two warm-up steps at that count
    samples: dict[tuple[str, int], list[float]] = interleaved_rates(
        {(name, threads): step for threads in arguments.threads for name, step in steps.items()},
        arguments.batch, arguments.repeats, seconds=arguments.seconds, warmup=2,
        before=lambda key: torch.set_num_threads(key[1]))
    print(f"training img/s, batch {arguments.batch} of 3x28x28, fp32, Adam; median of {arguments.repeats} "
          f"interleaved repeats of {arguments.seconds:g} s (torch {torch.__version__}, {os.cpu_count()} CPUs here, "
          f"load average {os.getloadavg()[0]:.1f} at the end)")
    print(f"{'encoder':<18}" + "".join(f"{f'{t} thread' + ('s' if t > 1 else ''):>22}" for t in arguments.threads))
    for name in arguments.encoders:
        cells = []
        for threads in arguments.threads:
            rate = statistics.median(samples[(name, threads)])
            base = statistics.median(samples[("lenet", threads)]) if ("lenet", threads) in samples else rate
            cells.append(f"{rate:9.0f} ({rate / base:4.2f}x lenet)")
        print(f"{name:<18}" + "".join(f"{cell:>22}" for cell in cells), flush=True)
        epoch = 60_000 / statistics.median(samples[(name, arguments.threads[0])])
        print(f"{'':<18}one epoch of 60,000 images at {arguments.threads[0]} thread(s): {epoch:.0f} s", flush=True)


def _gemm_peak(dtype, seconds: float) -> float:
    """The best GFLOP/s of square matrix products (1024 to 4096) on this thread: the core's practical peak in ``dtype``.

    The best of several sizes, each timed in short rounds: a measured ceiling, which a convolution
    kernel may still pass by a little (oneDNN's direct kernels block differently from MKL's GEMM).
    """
    import torch

    best = 0.0
    for side in (1024, 2048, 4096):
        a, b = torch.randn(side, side).to(dtype), torch.randn(side, side).to(dtype)
        a @ b
        for _ in range(3):
            start, count = time.perf_counter(), 0
            while time.perf_counter() - start < seconds / 9:
                a @ b
                count += 1
            best = max(best, count * 2 * side**3 / (time.perf_counter() - start) / 1e9)
    return best


def training_flops(encoder: str, shape: tuple[int, ...] = (3, 28, 28), classes: int = 10) -> float:
    """FLOPs of one training image through ``encoder`` and a linear head: forward and backward (torch's flop counter)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from removal_bench.core.encoders import build_encoder

    net = build_encoder(encoder, shape)
    head = torch.nn.Linear(net.out_dim, classes)
    x, y = torch.randn(8, *shape), torch.randint(0, classes, (8,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(head(net(x)), y).backward()
    return counter.get_total_flops() / len(x)


def cpu_paths(arguments: argparse.Namespace) -> None:
    """Training img/s of the image encoders on this CPU: today's fp32 path against the fast path, side by side.

    Each step is a trial's own step (:func:`removal_bench.running.trial.compute_path`, the vanilla method's
    ``update`` under the recipe's optimiser: Adam 1e-3 wd 1e-4 as ``--recipe cpu-converged``) on batches
    gathered from a random training split of 3 x 28 x 28 images (Biased-MNIST's shape), as
    :func:`removal_bench.running.trial.train_method` gathers them. ``fp32`` is the path of every trial before
    1956a69 (recipe ``precision=fp32``); ``fast`` is ``precision=auto``: channels_last and the fused optimiser
    step, with bf16 autocast where this CPU has native bf16 and the timing of the trial's own step finds it faster
    (:func:`removal_bench.running.trial.choose_by_timing`): so both fast variants are timed here where the CPU has
    native bf16 (``fast fp32``, ``fast bf16``) and ``fast`` is the faster, the one a trial takes. Variants are timed interleaved,
    ``--repeats`` times, on ``--threads`` torch threads; the median is printed with the ratio. Then each
    encoder's FLOPs per training image (torch's flop counter, forward and backward) and the share of this
    core's practical peak it reaches (the best square matrix product in fp32 and bf16, timed here).
    """
    import dataclasses

    import torch

    import removal_bench.methods as method_registry
    from removal_bench.core.encoders import build_encoder
    from removal_bench.core.hardware import cpu_info, native_bf16
    from removal_bench.core.recipes import CPU_CONVERGED_BIASED_MNIST

    torch.set_num_threads(arguments.threads)
    shape, n = (3, 28, 28), arguments.images
    generator = torch.Generator().manual_seed(0)
    data_x = torch.rand(n, *shape, generator=generator) * 2 - 1
    data_y = torch.randint(0, 10, (n,), generator=generator)
    device = torch.device("cpu")

    from removal_bench.running.trial import CANDIDATES, LABELS, ComputePath, as_path

    def make(encoder_name: str, precision: str):
        torch.manual_seed(0)
        name, bf16, channels_last, fused = next(c for c in CANDIDATES if c[0] == precision)
        recipe = dataclasses.replace(CPU_CONVERGED_BIASED_MNIST, encoder=encoder_name)
        path = ComputePath(bf16, channels_last, LABELS[name], fused=fused)
        method = method_registry.get_method("vanilla")(build_encoder(encoder_name, shape), 10, 10, {}, 12, recipe=recipe)
        method, x = as_path(method, recipe, path, data_x)  # as a trial that took this path
        method.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
        state = {"at": 0}

        def step():
            start = state["at"] * arguments.batch
            if start + arguments.batch > n:
                state["at"], start = 0, 0
            index = order[start:start + arguments.batch]
            state["at"] += 1
            with path.autocast(device):
                method.update(x[index], data_y[index], data_y[index])
        for _ in range(3):
            step()
        return step, path.label

    bf16 = native_bf16()
    kinds = ("fp32", "fast-fp32", "bf16") if bf16 else ("fp32", "fast-fp32")  # the candidates a trial times
    variants = {(name, precision): make(name, precision) for name in arguments.encoders for precision in kinds}
    samples = interleaved_rates({key: step for key, (step, _) in variants.items()}, arguments.batch, arguments.repeats,
                                seconds=arguments.seconds)
    # bf16's peak only where the core has bf16 dot products: emulated, a 4096-wide product takes minutes
    peaks = {"fp32": _gemm_peak(torch.float32, arguments.seconds),
             "bf16": _gemm_peak(torch.bfloat16, arguments.seconds) if bf16 not in (None, "forced") else float("nan")}
    model, _ = cpu_info()
    print(f"training img/s, batch {arguments.batch} of 3x28x28, Adam, {arguments.threads} thread(s); median of "
          f"{arguments.repeats} interleaved repeats of {arguments.seconds:g} s; CPU {model}, native bf16: "
          f"{native_bf16() or 'none'}, torch {torch.__version__}, ISA {torch.backends.cpu.get_cpu_capability()}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"practical peak of this core (best square matrix product, 1024-4096): fp32 {peaks['fp32']:.0f} GFLOP/s, "
          + (f"bf16 {peaks['bf16']:.0f} GFLOP/s" if bf16 not in (None, "forced") else "bf16 not native (not measured)"))
    print(f"{'encoder':<18}{'MFLOP/img':>10}{'fp32 img/s':>12}{'fast img/s':>12}{'ratio':>7}"
          f"{'fp32 % peak':>13}{'fast % peak':>13}  fast path")
    for name in arguments.encoders:
        flops = training_flops(name)
        rates = {kind: statistics.median(samples[(name, kind)]) for kind in kinds}
        old = rates["fp32"]
        chosen = max(kinds, key=lambda kind: (rates[kind], -kinds.index(kind)))  # what a trial takes: the fastest
        new, label = rates[chosen], variants[(name, chosen)][1]
        print(f"{name:<18} " + ", ".join(f"{kind} {rate:.0f} img/s ({rate / old:.2f}x)" for kind, rate in rates.items())
              + f": the trial's path is {chosen}", flush=True)
        fast_peak = peaks["bf16"] if "bf16 autocast" in label else peaks["fp32"]
        print(f"{name:<18}{flops / 1e6:>10.1f}{old:>12.0f}{new:>12.0f}{new / old:>6.2f}x"
              f"{100 * old * flops / 1e9 / peaks['fp32']:>12.0f}%{100 * new * flops / 1e9 / fast_peak:>12.0f}%  {label}",
              flush=True)


def add_cpu_commands(commands) -> None:
    parser = commands.add_parser("cpu-paths", help="image training img/s on this CPU: fp32 against the fast path")
    parser.add_argument("--encoders", type=lambda text: text.split(","),
                        default=["lenet", "small_cnn", "biased_mnist_cnn", "rebias_cnn"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--images", type=int, default=10000, help="size of the random training split batches are gathered from")
    parser.add_argument("--seconds", type=float, default=3.0, help="per (encoder, path, repeat)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.set_defaults(handler=cpu_paths)
    parser = commands.add_parser("cpu-compare", help="the same trials on an old tree and this one, side by side")
    parser.add_argument("--old", required=True, help="the old tree (git worktree add /tmp/old-bench COMMIT)")
    parser.add_argument("--workloads", type=lambda text: text.split(","), default=["synthetic", "colored_digits", "adult"])
    parser.add_argument("--methods", type=lambda text: text.split(","), default=["vanilla"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", default="", help="folder with adult/ (e.g. ../shared/data)")
    parser.set_defaults(handler=cpu_compare)
    parser = commands.add_parser("attackers", help="current vs previous attackers on saved embeddings")
    parser.add_argument("folder", help="folder of .npz embeddings")
    parser.set_defaults(handler=attackers)
    parser = commands.add_parser("overhead", help="per-trial cost of the Ray executor and MLflow")
    parser.add_argument("--trials", type=int, default=16, help="extra trials in the larger run (default 16)")
    parser.add_argument("--base", type=int, default=2, help="trials in the smaller run (default 2)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--executors", type=lambda text: text.split(","), default=["ray", "serial"])
    parser.set_defaults(handler=overhead)
    parser = commands.add_parser("inlp", help="INLP's linear SVM: sklearn's LinearSVC vs removal_bench.methods.inlp.svm_directions")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--classes", type=lambda text: [int(k) for k in text.split(",")], default=[2, 3, 5])
    parser.add_argument("--c", type=float, default=0.1)
    parser.add_argument("--data-root", default="", help="also time INLP's whole projection on adult's bottleneck")
    parser.add_argument("--iterations", type=lambda text: [int(k) for k in text.split(",")], default=[10, 64])
    parser.set_defaults(handler=inlp_svm)
    parser = commands.add_parser("cpu-step", help="one training step on one CPU thread: fp32, channels_last, bf16")
    parser.add_argument("--encoder", default="small_cnn")
    parser.add_argument("--shape", type=int, nargs="+", default=[3, 8, 8])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.set_defaults(handler=cpu_step)
    parser = commands.add_parser("encoders", help="training img/s of each encoder on 28x28 images, per thread count")
    parser.add_argument("--encoders", type=lambda text: text.split(","),
                        default=["small_cnn", "lenet", "biased_mnist_cnn", "rebias_cnn"])
    parser.add_argument("--threads", type=lambda text: [int(k) for k in text.split(",")], default=[1, 2])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=4.0, help="per (encoder, threads, repeat)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.set_defaults(handler=encoder_rates)
