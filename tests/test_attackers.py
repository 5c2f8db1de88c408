"""The fresh attackers and the leakage figures of PROTOCOL.md.

Each test builds features whose information about ``s`` is known by
construction (none, linear, only non-linear) and checks that the attackers find
exactly what is there.
"""

import math

import numpy as np
import pytest

from removal_bench.measuring.attackers import (
    ATTACKERS,
    AttackerScore,
    LeakageReport,
    _stratified_subset,
    attack,
    measure_leakage,
)


def independent_features(rng, samples, num_private, class_weights=None):
    s = rng.choice(num_private, size=samples, p=class_weights)
    return rng.normal(size=(samples, 6)), s


def linear_features(rng, samples, num_private, class_weights=None):
    """Class means 5 standard deviations from the origin along one-hot directions."""
    s = rng.choice(num_private, size=samples, p=class_weights)
    z = rng.normal(size=(samples, num_private + 2))
    z[:, :num_private] += 5.0 * np.eye(num_private)[s]
    return z, s


def xor_features(rng, samples, num_private=2):
    """s is the sign of x0 * x1: each feature alone, and any linear map, is independent of s."""
    z = rng.normal(size=(samples, 4))
    return z, (z[:, 0] * z[:, 1] > 0).astype(int)


def variance_features(rng, samples, num_private=2):
    """s only scales the spread of the first two features; every mean is 0 in both classes."""
    s = rng.integers(0, 2, samples)
    z = rng.normal(size=(samples, 4))
    z[:, :2] *= np.where(s == 1, 4.0, 1.0)[:, None]
    return z, s


def splits(make, seed, num_private, probe=1200, val=800, test=1500, **options):
    """(z_probe, s_probe, z_val, s_val, z_test, s_test) drawn independently."""
    rng = np.random.default_rng(seed)
    arrays = []
    for samples in (probe, val, test):
        arrays.extend(make(rng, samples, num_private, **options))
    return arrays


# ----------------------------------------------------------------------------- attack


@pytest.mark.parametrize("name", ATTACKERS)
@pytest.mark.parametrize(
    "num_private, class_weights", [(2, None), (4, None), (2, [0.8, 0.2])]
)
def test_attacker_is_at_chance_on_features_independent_of_s(name, num_private, class_weights):
    data = splits(independent_features, 1, num_private, class_weights=class_weights)
    score = attack(name, *data, num_private=num_private, seed=0)
    # With an 80/20 split, predicting the majority scores 0.8 accuracy but 0.5
    # balanced accuracy: chance must be 1/K whatever the balance.
    assert abs(score.test_balanced_accuracy - 1 / num_private) < 0.05
    assert abs(score.val_balanced_accuracy - 1 / num_private) < 0.06


@pytest.mark.parametrize("name", ATTACKERS)
def test_attacker_recovers_s_written_linearly(name):
    data = splits(linear_features, 2, 4)
    score = attack(name, *data, num_private=4, seed=0)
    assert score.test_balanced_accuracy > 0.95
    assert score.val_balanced_accuracy > 0.95
    # Better than the prior's log K; the MLP stops on accuracy, so it is
    # accurate long before it is confident.
    assert score.test_cross_entropy < 0.6 * math.log(4)


def test_only_nonlinear_attackers_recover_s_written_as_xor():
    data = splits(xor_features, 3, 2)
    scores = {name: attack(name, *data, num_private=2, seed=0) for name in ATTACKERS}
    # Every class mean is 0, so logistic regression learns noise; the margin
    # allows for a half-space off the origin (x0 + x1 > t holds more s = 1 rows),
    # which balanced accuracy credits a little.
    assert abs(scores["linear"].test_balanced_accuracy - 0.5) < 0.08
    assert scores["mlp"].test_balanced_accuracy > 0.9
    assert scores["gbdt"].test_balanced_accuracy > 0.9


def test_nonlinear_attackers_recover_s_written_in_a_variance():
    data = splits(variance_features, 3, 2)
    scores = {name: attack(name, *data, num_private=2, seed=0) for name in ATTACKERS}
    # A half-space far from the origin holds mostly wide-spread rows, so a
    # linear attacker gets a little above chance here, but only a little.
    assert scores["linear"].test_balanced_accuracy < 0.65
    assert scores["mlp"].test_balanced_accuracy > 0.85
    assert scores["gbdt"].test_balanced_accuracy > 0.85


@pytest.mark.parametrize("name", ATTACKERS)
def test_constant_bottleneck_gives_chance_without_error(name):
    z_probe, s_probe, z_val, s_val, z_test, s_test = splits(linear_features, 4, 3)
    zeros = [np.zeros_like(z) for z in (z_probe, z_val, z_test)]
    score = attack(name, zeros[0], s_probe, zeros[1], s_val, zeros[2], s_test, num_private=3)
    # A constant input yields one prediction for every row: recall 1 on one
    # class and 0 on the others, exactly 1/K.
    assert score.test_balanced_accuracy == pytest.approx(1 / 3)
    assert score.val_balanced_accuracy == pytest.approx(1 / 3)


def test_bottleneck_without_features_gives_chance():
    z_probe, s_probe, z_val, s_val, z_test, s_test = splits(linear_features, 4, 2)
    empty = [np.empty((z.shape[0], 0)) for z in (z_probe, z_val, z_test)]
    score = attack("linear", empty[0], s_probe, empty[1], s_val, empty[2], s_test, num_private=2)
    assert score.test_balanced_accuracy == pytest.approx(0.5)


@pytest.mark.parametrize("name", ATTACKERS)
def test_probe_lacking_a_class_still_scores_all_classes(name):
    z_probe, s_probe, z_val, s_val, z_test, s_test = splits(linear_features, 5, 3)
    seen = s_probe != 2
    score = attack(
        name, z_probe[seen], s_probe[seen], z_val, s_val, z_test, s_test, num_private=3
    )
    # Classes 0 and 1 are recovered, class 2 can never be predicted.
    assert score.test_balanced_accuracy == pytest.approx(2 / 3, abs=0.03)
    # Class 2 rows get a probability near the floor: a finite but large cross-entropy.
    assert math.isfinite(score.test_cross_entropy)
    assert score.test_cross_entropy > 0.25 * -math.log(1e-7)


@pytest.mark.parametrize("name", ATTACKERS)
def test_single_class_probe_predicts_that_class_with_certainty(name):
    z_probe, s_probe, z_val, s_val, z_test, s_test = splits(linear_features, 6, 2)
    s_probe = np.ones_like(s_probe)
    score = attack(name, z_probe, s_probe, z_val, s_val, z_test, s_test, num_private=2)
    assert score.test_balanced_accuracy == pytest.approx(0.5)
    # Probability 1 floored to 1e-7 for the unseen class, then renormalised.
    total = 1.0 + 1e-7
    expected = np.where(s_test == 1, -math.log(1.0 / total), -math.log(1e-7 / total)).mean()
    assert score.test_cross_entropy == pytest.approx(expected)


@pytest.mark.parametrize("name", ["mlp", "gbdt"])
def test_probe_too_small_for_an_inner_hold_out_does_not_crash(name):
    # Two rows per class: a 20% stratified hold-out cannot hold every class.
    rng = np.random.default_rng(7)
    s_probe = np.array([0, 0, 1, 1, 2, 2])
    z_probe = rng.normal(size=(6, 3)) + 3.0 * np.eye(3)[s_probe]
    z_test, s_test = linear_features(rng, 300, 3)
    z_test = z_test[:, :3]
    score = attack(name, z_probe, s_probe, z_test, s_test, z_test, s_test, num_private=3)
    assert 0.0 <= score.test_balanced_accuracy <= 1.0


def test_same_seed_gives_same_score_and_subsampling_keeps_strength():
    data = splits(linear_features, 8, 4, probe=1500)
    first = attack("mlp", *data, num_private=4, seed=3, max_probe=400)
    second = attack("mlp", *data, num_private=4, seed=3, max_probe=400)
    assert first == second
    assert first.test_balanced_accuracy > 0.9


def test_stratified_subset_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    subset = _stratified_subset(labels, 200, np.random.default_rng(0))
    assert subset.size == 200
    assert np.unique(subset).size == 200
    np.testing.assert_allclose(np.bincount(labels[subset]), [120, 60, 20], atol=1)


def test_unknown_attacker_is_refused():
    data = splits(independent_features, 0, 2, probe=50, val=20, test=20)
    with pytest.raises(ValueError, match="unknown attacker 'svm'"):
        attack("svm", *data, num_private=2)


def test_non_finite_bottleneck_is_refused():
    z_probe, s_probe, z_val, s_val, z_test, s_test = splits(
        independent_features, 0, 2, probe=50, val=20, test=20
    )
    z_test[3, 1] = np.nan
    with pytest.raises(ValueError, match="z_test contains NaN"):
        attack("linear", z_probe, s_probe, z_val, s_val, z_test, s_test, num_private=2)


def test_labels_outside_num_private_are_refused():
    data = splits(independent_features, 0, 3, probe=50, val=20, test=20)
    with pytest.raises(ValueError, match=r"s_probe must hold integer labels in \[0, 2\)"):
        attack("linear", *data, num_private=2)


# ----------------------------------------------------------------------------- measure_leakage


def linear_and_xor_features(rng, samples, num_private=2, flip_xor=False):
    """A noisy linear signal in x0 and a clean XOR signal in (x1, x2).

    Flipping the XOR on one split turns the non-linear attackers (which learnt
    the XOR) from the best into the worst, while the linear one is unaffected.
    """
    s = rng.integers(0, 2, samples)
    sign = 2 * s - 1
    noisy_linear = rng.normal(size=samples) + 0.8 * sign
    first = rng.normal(size=samples)
    second = np.abs(rng.normal(size=samples)) * np.sign(first) * sign
    if flip_xor:
        second = -second
    return np.column_stack([noisy_linear, first, second, rng.normal(size=(samples, 2))]), s


def test_best_attacker_is_chosen_on_val_not_on_test():
    rng = np.random.default_rng(9)
    report = measure_leakage(
        *linear_and_xor_features(rng, 1500),
        *linear_and_xor_features(rng, 1000),
        *linear_and_xor_features(rng, 1000, flip_xor=True),
        num_private=2,
    )
    val = {name: score.val_balanced_accuracy for name, score in report.attackers.items()}
    test = {name: score.test_balanced_accuracy for name, score in report.attackers.items()}
    # The construction makes val and test disagree on which attacker is best.
    assert max(val, key=val.get) != max(test, key=test.get)
    assert report.best == max(val, key=val.get)
    assert report.best in ("mlp", "gbdt")
    assert report.leakage == test[report.best]
    assert report.val_leakage == val[report.best]
    assert report.leakage < test["linear"]


@pytest.mark.parametrize("attackers", [ATTACKERS, ("gbdt", "linear")])
def test_ties_on_val_go_to_the_first_attacker(attackers):
    z_probe, s_probe, z_val, s_val, z_test, s_test = splits(independent_features, 10, 2)
    zeros = [np.zeros_like(z) for z in (z_probe, z_val, z_test)]
    report = measure_leakage(
        zeros[0], s_probe, zeros[1], s_val, zeros[2], s_test, num_private=2, attackers=attackers
    )
    assert report.best == attackers[0]
    assert report.leakage_norm == pytest.approx(0.0)
    # The cross-entropy of a constant prediction is at least H(s): nothing is learnt.
    assert report.mi_bits == 0.0


def empirical_entropy_bits(labels):
    frequencies = np.unique(labels, return_counts=True)[1] / labels.size
    return float(-(frequencies * np.log2(frequencies)).sum())


def test_leakage_norm_and_mi_bits_follow_their_formulas():
    weights = [0.4, 0.3, 0.2, 0.1]
    data = splits(linear_features, 11, 4, class_weights=weights)
    report = measure_leakage(*data, num_private=4, attackers=("linear", "gbdt"))
    best = report.attackers[report.best]
    assert report.leakage_norm == pytest.approx((report.leakage - 0.25) / 0.75)
    entropy = empirical_entropy_bits(data[5])
    assert report.mi_bits == pytest.approx(entropy - best.test_cross_entropy / math.log(2))
    # s is fully recoverable: the bound approaches H(s), which is below 2 bits here.
    assert entropy < 1.9
    assert report.mi_bits > 0.85 * entropy
    assert report.leakage_norm > 0.93


def test_mi_bits_is_zero_on_independent_features():
    data = splits(independent_features, 12, 4, class_weights=[0.4, 0.3, 0.2, 0.1])
    report = measure_leakage(*data, num_private=4)
    assert report.mi_bits < 0.01
    assert abs(report.leakage_norm) < 0.07


def test_as_metrics_names_every_figure_with_the_prefix():
    score = AttackerScore("linear", 0.6, 0.55, 0.65, 0.68)
    report = LeakageReport(
        attackers={"linear": score, "mlp": AttackerScore("mlp", 0.5, 0.7, 0.7, 0.7)},
        best="linear",
        leakage=0.55,
        leakage_norm=0.1,
        mi_bits=0.02,
        val_leakage=0.6,
    )
    assert report.as_metrics(prefix="floor_") == {
        "floor_leak_linear": 0.55,
        "floor_leak_mlp": 0.7,
        "floor_leakage": 0.55,
        "floor_leakage_norm": 0.1,
        "floor_mi_bits": 0.02,
        "floor_val_leakage": 0.6,
    }
    assert set(report.as_metrics()) == {
        "leak_linear", "leak_mlp", "leakage", "leakage_norm", "mi_bits", "val_leakage"
    }
