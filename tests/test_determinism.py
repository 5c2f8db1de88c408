"""The same trial twice on one machine gives identical figures: accuracy, leakage, every attacker's score.

Serially, :func:`removal_bench.running.trial.run_trial` runs twice in one process (the second time with the data loaded
afresh, so a loader that shuffles without its seed would show); through Ray, ``bench run --executor ray``
runs twice into two experiments of one store and the MLflow metrics are compared. Only wall-clock figures
may differ. (Figures are identical for the same number of torch threads; a different number changes float
rounding in training, and with it ``mi_bits`` in the eighth digit.)
"""

import subprocess

import mlflow
import pytest

from removal_bench.running.trial import _load, execute_trial, make_config
from tests.conftest import bench_command, quiet_env

SMALL = {"n_train": "600", "n_eval": "400"}


def is_timing(name: str) -> bool:
    """Wall-clock figures (``train_seconds``, ``samples_per_second``, ...): the only ones allowed to differ."""
    return name.endswith(("_seconds", "_per_second"))


def figures(result: dict) -> dict:
    return {key: value for key, value in result.items() if not is_timing(key)}


@pytest.mark.parametrize("method", ["vanilla", "grl", "irene", "adv_debias", "inlp"])
def test_same_trial_twice_in_one_process_gives_identical_figures(method):
    config = make_config(method, "synthetic", SMALL, seed=3, epochs=2)
    epochs_first, epochs_second = [], []
    first = execute_trial(dict(config), report=epochs_first.append)
    _load.cache_clear()  # load the data again: its splits must not depend on anything but their seeds
    second = execute_trial(dict(config), report=epochs_second.append)
    assert first["status"] == "FINISHED", first.get("error")
    assert {"accuracy", "leakage", "leak_linear", "leak_mlp", "leak_gbdt", "mi_bits", "floor_leakage"} <= set(first)
    assert figures(first) == figures(second)
    assert epochs_first == epochs_second  # every per-epoch loss and validation accuracy


def test_other_seed_gives_other_figures():
    """The comparison above can fail: a different seed changes the figures."""
    results = [execute_trial(make_config("grl", "synthetic", SMALL, seed=seed, epochs=2)) for seed in (3, 4)]
    assert figures(results[0]) != figures(results[1])


@pytest.mark.slow
def test_same_trials_twice_through_ray_give_identical_mlflow_metrics(tmp_path):
    command = bench_command() + [
        "run", "--methods", "vanilla,grl", "--datasets", "synthetic:n_train=400:n_eval=300", "--seeds", "2",
        "--epochs", "2", "--executor", "ray",
    ]
    for experiment in ("first", "second"):
        done = subprocess.run(command + ["--experiment", experiment], cwd=tmp_path, capture_output=True, text=True,
                              env=quiet_env(), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    mlflow.set_tracking_uri("sqlite:///" + str(tmp_path / "mlflow.db"))
    by_experiment = {}
    for experiment in ("first", "second"):
        runs = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`bench.kind` = 'trial'")
        assert len(runs) == 4 and set(runs["status"]) == {"FINISHED"}
        metrics = [c for c in runs.columns if c.startswith("metrics.") and not is_timing(c)]
        by_experiment[experiment] = runs.set_index("tags.bench.config_hash")[metrics].sort_index()
    first, second = by_experiment["first"], by_experiment["second"]
    assert list(first.index) == list(second.index)
    assert {"metrics.accuracy", "metrics.leakage", "metrics.leak_gbdt", "metrics.mi_bits"} <= set(first.columns)
    assert first.equals(second), (first.compare(second) if first.columns.equals(second.columns) else first.columns)
