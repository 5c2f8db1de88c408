"""Does removal remove? On `synthetic` (s written linearly into x, biased train, unbiased test)."""

import pytest

from bench.trial import make_config, run_trial

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def vanilla():
    return {seed: run_trial(make_config("vanilla", "synthetic", seed=seed)) for seed in SEEDS}


@pytest.mark.parametrize("method", ["irene", "grl"])
def test_method_at_defaults_leaks_less_than_vanilla_at_the_same_seeds(method, vanilla):
    gaps = []
    for seed in SEEDS:
        result = run_trial(make_config(method, "synthetic", seed=seed))
        assert result["leakage"] < vanilla[seed]["leakage"], (seed, result["leakage"], vanilla[seed]["leakage"])
        gaps.append(vanilla[seed]["leakage"] - result["leakage"])
        # removal must not be bought by giving up the task
        assert result["accuracy"] > 0.8
    assert sum(gaps) / len(gaps) > 0.03, gaps


def test_vanilla_leaks_well_above_chance_on_synthetic(vanilla):
    assert all(result["leakage"] > 0.7 for result in vanilla.values())
