"""The fast CPU path for image encoders, ReBias's colour counts, serial trials' threads.

The fast path (recipe ``precision``: bf16 autocast where the CPU has native bf16, channels_last, the fused
optimiser step) changes the arithmetic, so it may only become a recipe's default when its figures agree with
fp32's within seed noise: checked here on ``colored_digits`` over several seeds, and on real Biased-MNIST
in docs/BIASED_MNIST.md. Speed is a benchmark's figure (``python -m removal_bench.benchmarks cpu-paths``),
never asserted here.
"""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np
import pytest
import torch

from removal_bench.core.recipes import CPU_CONVERGED_BIASED_MNIST, Recipe, apply_overrides
from removal_bench.datasets.biased_mnist import NUM_COLOURS, rebias_colours
from removal_bench.running.trial import compute_path, config_hash, make_config, run_trial

# MNIST's training digits per class (LeCun et al.)
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
CPU = torch.device("cpu")


@pytest.mark.parametrize("rho", [0.99, 0.995, 0.997, 0.999])
def test_reference_split_deals_rebias_exact_counts_per_digit(rho):
    digits = np.repeat(np.arange(10), TRAIN_COUNTS)
    np.random.default_rng(5).shuffle(digits)
    conflicting = []
    for seed in (0, 1):
        colours = rebias_colours(digits, rho, np.random.default_rng(seed))
        for digit, n in enumerate(TRAIN_COUNTS):
            mine = colours[digits == digit]
            aligned = int(n * rho)  # ReBias: n_correlated_samples = int(n_samples * rho)
            assert (mine == digit).sum() == aligned
            rest = n - aligned
            block = int(np.ceil(rest / (NUM_COLOURS - 1)))
            per_colour = np.bincount(mine[mine != digit], minlength=NUM_COLOURS)
            # consecutive blocks of `block` images, one colour each: all full but the last, and no colour twice
            taken = sorted(int(c) for c in per_colour if c)
            assert sum(taken) == rest and len(taken) == -(-rest // block)
            assert taken.count(block) >= len(taken) - 1 and max(taken) == block
        conflicting.append(int((colours != digits).sum()))
    # the same number of bias-conflicting images whatever the seed: the draw decides which, never how many
    assert conflicting[0] == conflicting[1] == sum(n - int(n * rho) for n in TRAIN_COUNTS)


def test_which_colours_take_the_conflicting_blocks_changes_with_the_seed():
    digits = np.repeat(np.arange(10), TRAIN_COUNTS)
    a, b = (rebias_colours(digits, 0.99, np.random.default_rng(seed)) for seed in (0, 1))
    assert (a != b).any()
    assert np.array_equal(a, rebias_colours(digits, 0.99, np.random.default_rng(0)))


def test_the_path_follows_the_recipe_and_the_cpu(monkeypatch):
    image, table = (3, 28, 28), (12,)
    fp32 = Recipe()
    assert compute_path(fp32, CPU, image, "lenet") == compute_path(fp32, CPU, image, "lenet")
    path = compute_path(fp32, CPU, image, "lenet")
    assert not path.bf16 and not path.channels_last and path.label == "cpu fp32"

    auto = CPU_CONVERGED_BIASED_MNIST
    assert auto.precision == "auto"
    monkeypatch.setenv("BENCH_CPU_BF16", "0")  # forced: fp32, channels_last, fused step, without timing
    path = compute_path(auto, CPU, image, "lenet")
    assert not path.bf16 and path.channels_last and not path.measure and "BENCH_CPU_BF16=0" in path.label
    monkeypatch.delenv("BENCH_CPU_BF16")  # otherwise the trial times its candidates (tests/test_cpu_path_choice.py)
    assert compute_path(auto, CPU, image, "lenet").measure
    monkeypatch.setenv("BENCH_CPU_BF16", "1")
    path = compute_path(auto, CPU, image, "lenet")
    assert path.bf16 and path.channels_last and "bf16 autocast" in path.label
    assert not compute_path(auto, CPU, table, "mlp").bf16  # tabular inputs stay fp32
    monkeypatch.setenv("BENCH_CPU_BF16", "0")  # asked for by name, bf16 runs even where the CPU lacks it
    assert compute_path(apply_overrides(fp32, {"precision": "bf16"}), CPU, image, "lenet").bf16


def test_precision_is_part_of_a_trials_identity_only_when_not_fp32():
    options = {"rho": 0.99, "split": "reference"}
    auto = make_config("vanilla", "biased_mnist", options, recipe="cpu-converged")
    fp32 = make_config("vanilla", "biased_mnist", options, recipe="cpu-converged", train={"precision": "fp32"})
    assert auto["recipe"]["precision"] == "auto" and config_hash(auto) != config_hash(fp32)
    # every configuration from before the field keeps its hash (precision fp32 is left out of the identity)
    old = make_config("vanilla", "biased_mnist", options, recipe="cpu")
    without = {**old, "recipe": {k: v for k, v in old["recipe"].items() if k != "precision"}}
    assert config_hash(old) == config_hash(without)
    assert dataclasses.replace(CPU_CONVERGED_BIASED_MNIST, precision="fp32").build_optimizer(
        [torch.nn.Parameter(torch.zeros(2))]).defaults["fused"] is None
    assert CPU_CONVERGED_BIASED_MNIST.build_optimizer([torch.nn.Parameter(torch.zeros(2))]).defaults["fused"]


def test_a_trial_logs_its_path_and_hardware_fingerprint():
    config = make_config("vanilla", "synthetic", {"n_train": 200, "n_eval": 200}, seed=0, epochs=1, threads=1)
    result = run_trial(config)
    assert result["compute_path"] == "cpu fp32" and result["torch_threads"] == 1
    for key in ("fingerprint.cpu", "fingerprint.isa", "fingerprint.bf16", "fingerprint.math"):
        assert isinstance(result[key], str) and result[key]
    assert result["fingerprint.threads"] == "1"


def _figures(precision: str, seeds: range) -> list[tuple[float, float]]:
    figures = []
    for seed in seeds:
        config = make_config("vanilla", "colored_digits", seed=seed, threads=1, train={"precision": precision, "epochs": 10})
        result = run_trial(config)
        figures.append((result["accuracy"], result["leakage"]))
    return figures


def test_bf16_training_agrees_with_fp32_within_seed_noise():
    """Four seeds of vanilla on colored_digits (small_cnn, 10 epochs) under each path: the means of task accuracy
    and leakage agree within margins several times the seeds' standard error of the difference, and bf16 does
    train (far above chance). ``precision=bf16`` forces bf16 on any CPU, so this checks the arithmetic everywhere."""
    seeds = range(4)
    fp32, bf16 = _figures("fp32", seeds), _figures("bf16", seeds)
    for index, (name, margin) in enumerate((("accuracy", 0.06), ("leakage", 0.08))):
        a, b = [f[index] for f in fp32], [f[index] for f in bf16]
        assert abs(statistics.mean(a) - statistics.mean(b)) < margin, (name, a, b)
    assert statistics.mean(f[0] for f in bf16) > 0.2  # ten digits, unbiased test images: chance is 0.1


def test_the_cpu_estimate_uses_the_fast_rate_only_where_the_recipe_and_the_cpu_allow(monkeypatch):
    from types import SimpleNamespace

    from removal_bench.running.estimate import CPU_RATES, estimate_cpu

    def spec_and_size(config):
        return SimpleNamespace(epochs=80, encoder="biased_mnist_cnn"), 60_000

    options = {"rho": 0.99, "split": "reference"}
    converged = [make_config("vanilla", "biased_mnist", options, seed=seed, recipe="cpu-converged") for seed in range(2)]
    fp32 = [make_config("vanilla", "biased_mnist", options, seed=seed, recipe="cpu-converged",
                        train={"precision": "fp32"}) for seed in range(2)]
    images = 2 * 12 * 60_000

    def minutes(lines):
        return float(lines[0].split("about ")[1].split(" min")[0])

    monkeypatch.setenv("BENCH_CPU_BF16", "1")
    fast, slow = estimate_cpu(converged, spec_and_size), estimate_cpu(fp32, spec_and_size)
    assert f"{images:,} images" in fast[0] and "has native bf16" in fast[0]
    assert abs(minutes(fast) - images / CPU_RATES["lenet"][1] / 60) <= 0.5
    assert abs(minutes(slow) - images / CPU_RATES["lenet"][0] / 60) <= 0.5
    monkeypatch.setenv("BENCH_CPU_BF16", "0")  # no native bf16: the fp32 rate, whatever the recipe asks
    assert minutes(estimate_cpu(converged, spec_and_size)) == minutes(slow)
    two = estimate_cpu(converged, spec_and_size, concurrent=2)[0]
    assert "with 2 at a time" in two
    unknown = make_config("vanilla", "biased_mnist", options, recipe="cpu", encoder="mlp")
    assert "mlp not estimated" in estimate_cpu([unknown], spec_and_size)[-1]


def test_lenet_pooling_before_relu_is_the_same_function_and_gradient_as_after():
    """1956a69 moved lenet's max-pooling before its ReLU (a quarter of the activations through the ReLU): the
    outputs and every gradient equal those of the order before, in fp32, so its earlier results keep their meaning."""
    from torch import nn

    from removal_bench.core.encoders import LeNetStyle

    torch.manual_seed(3)
    new = LeNetStyle((3, 28, 28))
    old = LeNetStyle((3, 28, 28))
    old.features = nn.Sequential(old.features[0], nn.ReLU(), nn.MaxPool2d(2), old.features[3], nn.ReLU(), nn.MaxPool2d(2))
    old.load_state_dict(new.state_dict())  # the convolutions keep their indices (0 and 3): the same state dict
    x = torch.randn(32, 3, 28, 28)
    a, b = new(x), old(x)
    assert torch.equal(a, b)
    (a * torch.arange(a.shape[1])).sum().backward()
    (b * torch.arange(b.shape[1])).sum().backward()
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(new.parameters(), old.parameters()))
