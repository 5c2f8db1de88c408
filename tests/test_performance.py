"""The benchmark scripts run and print every figure; the per-dataset GPU share.

Speed itself is never asserted here (it depends on the machine): the scripts print figures.
"""

import subprocess
import sys

import pytest

import removal_bench.datasets as dataset_registry
from removal_bench.running.executors import trial_resources

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def run_benchmark(*arguments: str, timeout: float = 240) -> str:
    completed = subprocess.run([sys.executable, "-m", "removal_bench.benchmarks", *arguments], cwd=ROOT,
                               capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_gpu_script_prints_every_workload_row_at_tiny_sizes():
    out = run_benchmark("gpu", "--tiny", "--device", "cpu", "--no-compile", "--seconds", "0.05", "--warmup", "1")
    rows = [line for line in out.splitlines() if not line.startswith("#")]
    expected = [
        *(f"simple_conv batch 4 {m}" for m in ("vanilla", "irene", "grl")),
        "irene biased_mnist 100 epochs, eager",
        "simple_conv batch 4 irene compiled reduce-overhead",
        "irene biased_mnist 100 epochs, reduce-overhead",
        *(f"resnet18 {side}px batch 8 fp32 {m}" for side in (32, 40) for m in ("vanilla", "irene", "grl")),
        *(f"adult mlp batch 128 {m}" for m in ("vanilla", "irene", "grl")),
        "share: 1 process(es) adult mlp vanilla",
        "share: 2 process(es) adult mlp vanilla",
        "cache: uint8 32px gather + to cpu batch 8",
    ]
    for name in expected:
        matching = [line for line in rows if line.startswith(name)]
        assert matching, f"no row {name!r} in:\n{out}"
    measured = [line for line in rows if "img/s" in line or "samples/s" in line]
    assert len(measured) == 15, out  # 3 SimpleConvNet, 6 ResNet-18, 3 Adult, 2 share, 1 cache
    for line in measured:  # every measured row has a positive figure
        figure = float(line.split("/s")[0].split()[-2].replace(",", ""))
        assert figure > 0, line
    assert "of anchor 30,500" in out and "of anchor 2,070,000" in out


def test_overhead_script_measures_run_trial_and_the_serial_executor(tmp_path):
    out = run_benchmark("overhead", "--trials", "2", "--base", "1", "--executors", "serial")
    assert "run_trial, zero epochs, tiny synthetic:" in out
    assert "bench run --executor serial" in out and "overhead" in out


def test_cache_read_script_prints_a_rate():
    out = run_benchmark("cache-read", "--device", "cpu", "--sides", "16", "--images", "64", "--batch-size", "8",
                        "--seconds", "0.1")
    assert "cache 16px x 64 on cpu" in out and "img/s" in out


@pytest.mark.parametrize("name", ["adult", "compas", "german", "synthetic", "colored_digits"])
def test_small_datasets_share_a_gpu_four_ways(name):
    assert dataset_registry.get_dataset(name).gpu_share == 0.25


@pytest.mark.parametrize("name", ["celeba", "biased_mnist"])
def test_image_datasets_take_a_whole_gpu(name):
    assert dataset_registry.get_dataset(name).gpu_share == 1.0


def test_without_gpus_per_trial_each_trial_asks_for_its_datasets_share():
    request = trial_resources(1.0, None)
    for dataset, share in (("adult", 0.25), ("celeba", 1.0)):
        bundles = request({"trial": {"dataset": dataset}}).bundles
        assert bundles == [{"CPU": 1.0, "GPU": share}]


def test_an_explicit_gpus_per_trial_applies_to_every_trial():
    assert trial_resources(2.0, 0.5) == {"cpu": 2.0, "gpu": 0.5}
