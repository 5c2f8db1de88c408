"""The faster attackers (f2f30b3) are at least as strong as the previous ones on the same embeddings.

The previous attackers (removal_bench.benchmarks.cpu.PREVIOUS_FITTERS, the code at 1d047c6) and the
current ones attack the same saved bottlenecks and predicted probabilities of several trials;
leakage may differ by seed noise (an MLP's early stop moves it by about 0.01) but not fall.
"""

import numpy as np
import pytest

import removal_bench.running.trial as trial
from removal_bench.measuring.attackers import measure_leakage
from removal_bench.benchmarks.cpu import PREVIOUS_FITTERS


@pytest.fixture(scope="module")
def saved_embeddings(tmp_path_factory):
    """Bottlenecks (``z``, via run_trial's embeddings_path) and predicted probabilities (``p``) of four trials."""
    folder = tmp_path_factory.mktemp("embeddings")
    saved = []
    for method, seed in (("vanilla", 0), ("vanilla", 1), ("irene", 2), ("grl", 3)):
        captured = []
        original = trial.embed_split

        def spy(model, split):
            captured.append(original(model, split))
            return captured[-1]

        trial.embed_split = spy
        try:
            path = folder / f"{method}-{seed}.npz"
            config = trial.make_config(method, "synthetic", {"s_nonlinear": 0.5}, seed=seed, epochs=3, threads=1)
            config["embeddings_path"] = str(path)
            trial.run_trial(config)
        finally:
            trial.embed_split = original
        arrays = dict(np.load(path))
        for name, embedded in zip(("val", "probe", "test"), captured[-3:]):
            arrays[f"p_{name}"] = embedded.probabilities
        saved.append(arrays)
    return saved


def leakage(arrays, prefix, fitters=None):
    return measure_leakage(arrays[f"{prefix}_probe"], arrays["s_probe"], arrays[f"{prefix}_val"], arrays["s_val"],
                           arrays[f"{prefix}_test"], arrays["s_test"], int(arrays["num_private"]), seed=0,
                           fitters=fitters)


@pytest.fixture(scope="module")
def reports(saved_embeddings):
    """(previous, current) leakage reports per embedding and feature set (z: bottleneck, p: probabilities)."""
    return [(prefix, leakage(arrays, prefix, PREVIOUS_FITTERS), leakage(arrays, prefix))
            for arrays in saved_embeddings for prefix in ("z", "p")]


def test_current_attackers_reach_the_previous_leakage_on_saved_embeddings(reports):
    differences = [current.leakage - previous.leakage for _, previous, current in reports]
    for (prefix, previous, current), difference in zip(reports, differences):
        assert difference >= -0.03, (prefix, previous, current)
    assert np.mean(differences) >= -0.01, differences


def test_each_current_attacker_is_not_weaker_than_its_previous_self(reports):
    for name in PREVIOUS_FITTERS:
        differences = [current.attackers[name].val_balanced_accuracy - previous.attackers[name].val_balanced_accuracy
                       for prefix, previous, current in reports if prefix == "z"]
        assert np.mean(differences) >= -0.015, (name, differences)
