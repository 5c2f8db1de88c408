"""Fresh attackers on the frozen bottleneck, and the leakage they establish.

PROTOCOL.md, "Leakage: fresh attackers on the frozen bottleneck": attackers
never seen by the method learn ``s`` from ``z`` on ``probe`` (their own
regularisation or early stopping uses an inner hold-out of ``probe``), are
scored on ``val`` and ``test``, and the one best on ``val`` sets ``leakage``.
A removal method is only as good as the strongest attacker that cannot undo it,
so three model families are tried: linear, a small MLP and boosted trees.

These functions run after every trial, often beside other trials on a small
CPU: every attacker runs on one thread (BLAS and OpenMP threads competing for
two busy cores made the same fits 20 to 100 times slower) and takes about a
second or less on a few thousand rows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from bench.metrics import balanced_accuracy, entropy_bits

ATTACKERS = ("linear", "mlp", "gbdt")

# Floor on predicted probabilities before the cross-entropy: one confident
# mistake must not make the MI bound -infinity.
PROBABILITY_FLOOR = 1e-7
LINEAR_C_GRID = (0.01, 0.1, 1.0, 10.0)
INNER_HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class AttackerScore:
    name: str
    val_balanced_accuracy: float
    test_balanced_accuracy: float
    val_cross_entropy: float  # nats
    test_cross_entropy: float  # nats


@dataclass(frozen=True)
class LeakageReport:
    attackers: dict[str, AttackerScore] = field(hash=False)
    best: str
    leakage: float
    leakage_norm: float
    mi_bits: float
    val_leakage: float

    def as_metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat metric names of PROTOCOL.md; ``prefix`` tells apart e.g. the ``floor_`` attacker."""
        metrics = {
            f"leak_{name}": score.test_balanced_accuracy for name, score in self.attackers.items()
        }
        metrics.update(
            leakage=self.leakage,
            leakage_norm=self.leakage_norm,
            mi_bits=self.mi_bits,
            val_leakage=self.val_leakage,
        )
        return {prefix + key: float(value) for key, value in metrics.items()}


# --------------------------------------------------------------------------- inputs


def _features(z: np.ndarray, split: str) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2:
        raise ValueError(f"z_{split} must be a 2-D (samples, features) array, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        # A NaN bottleneck is a diverged model, not a private one: refuse rather
        # than report it as "at chance".
        raise ValueError(f"z_{split} contains NaN or infinite values")
    if z.shape[1] == 0:
        # No features at all is the limit of a collapsed bottleneck.
        z = np.zeros((z.shape[0], 1))
    return z


def _labels(s: np.ndarray, num_private: int, split: str, samples: int) -> np.ndarray:
    s = np.asarray(s).reshape(-1)
    if s.size != samples:
        raise ValueError(f"s_{split} has {s.size} labels but z_{split} has {samples} rows")
    if s.size == 0:
        raise ValueError(f"s_{split} is empty")
    if not np.all(np.equal(np.mod(s, 1), 0)) or s.min() < 0 or s.max() >= num_private:
        raise ValueError(
            f"s_{split} must hold integer labels in [0, {num_private}), "
            f"got values in [{s.min()}, {s.max()}]"
        )
    return s.astype(np.int64)


def _stratified_subset(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of about ``size`` rows keeping class proportions, sorted.

    Each row's key is its random rank within its class divided by the class
    size, so taking the smallest keys takes the same fraction of every class.
    """
    order = rng.permutation(labels.size)
    shuffled = labels[order]
    rank_within_class = np.empty(labels.size)
    for label in np.unique(shuffled):
        members = np.flatnonzero(shuffled == label)
        rank_within_class[members] = (np.arange(members.size) + 0.5) / members.size
    keep = order[np.argsort(rank_within_class, kind="stable")[:size]]
    return np.sort(keep)


def _inner_split(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A stratified (fit, hold-out) split of ``probe``; singleton classes stay in fit."""
    fit_rows, holdout_rows = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held = int(round(INNER_HOLDOUT_FRACTION * members.size))
        holdout_rows.append(members[:held])
        fit_rows.append(members[held:])
    return np.sort(np.concatenate(fit_rows)), np.sort(np.concatenate(holdout_rows))


def _sklearn_holdout_possible(labels: np.ndarray) -> bool:
    """Whether sklearn's own stratified early-stopping split can be drawn.

    It needs two rows of every class and at least one row per class on both
    sides; tiny or nearly single-class probes fall back to no early stopping.
    """
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    held = math.ceil(INNER_HOLDOUT_FRACTION * labels.size)
    return bool(
        counts.min() >= 2 and held >= counts.size and labels.size - held >= counts.size
    )


# --------------------------------------------------------------------------- attackers


def _full_probabilities(
    classifier_probabilities: np.ndarray, classes: np.ndarray, num_private: int
) -> np.ndarray:
    """Probabilities over all K labels in label order, floored and renormalised.

    A probe that lacks a class still yields K columns, so cross-entropy is
    defined (and large) on a test row of that class.
    """
    full = np.zeros((classifier_probabilities.shape[0], num_private))
    full[:, classes] = classifier_probabilities
    full = np.clip(full, PROBABILITY_FLOOR, 1.0)
    return full / full.sum(axis=1, keepdims=True)


def _cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(probabilities[np.arange(labels.size), labels])))


def _fit_linear(z: np.ndarray, s: np.ndarray, seed: int):
    """Logistic regression with C chosen on an inner hold-out of probe, then refit on all of it.

    Ties in hold-out balanced accuracy go to the lower cross-entropy, since the
    calibration of the chosen model is what bounds ``mi_bits``.
    """
    scaled = StandardScaler().fit(z)
    z_scaled = scaled.transform(z)
    fit_rows, holdout_rows = _inner_split(s, np.random.default_rng([seed, 1]))
    chosen_c = 1.0
    if holdout_rows.size and np.unique(s[fit_rows]).size >= 2:
        best_key = None
        for c in LINEAR_C_GRID:
            model = LogisticRegression(C=c, max_iter=500).fit(z_scaled[fit_rows], s[fit_rows])
            probabilities = _full_probabilities(
                model.predict_proba(z_scaled[holdout_rows]), model.classes_, int(s.max()) + 1
            )
            key = (
                balanced_accuracy(s[holdout_rows], np.argmax(probabilities, axis=1)),
                -_cross_entropy(probabilities, s[holdout_rows]),
            )
            if best_key is None or key > best_key:
                best_key, chosen_c = key, c
    model = LogisticRegression(C=chosen_c, max_iter=500).fit(z_scaled, s)
    return make_pipeline(scaled, model)


def _fit_mlp(z: np.ndarray, s: np.ndarray, seed: int):
    early_stopping = _sklearn_holdout_possible(s)
    model = MLPClassifier(
        hidden_layer_sizes=(128, 64),
        early_stopping=early_stopping,
        validation_fraction=INNER_HOLDOUT_FRACTION,
        max_iter=200,
        random_state=seed,
    )
    return make_pipeline(StandardScaler(), model).fit(z, s)


def _fit_gbdt(z: np.ndarray, s: np.ndarray, seed: int):
    model = HistGradientBoostingClassifier(
        early_stopping=_sklearn_holdout_possible(s),
        validation_fraction=INNER_HOLDOUT_FRACTION,
        max_iter=200,
        random_state=seed,
    )
    return model.fit(z, s)


_FITTERS = {"linear": _fit_linear, "mlp": _fit_mlp, "gbdt": _fit_gbdt}


def attack(
    name: str,
    z_probe: np.ndarray,
    s_probe: np.ndarray,
    z_val: np.ndarray,
    s_val: np.ndarray,
    z_test: np.ndarray,
    s_test: np.ndarray,
    num_private: int,
    seed: int = 0,
    max_probe: int = 20000,
) -> AttackerScore:
    """Fit one fresh attacker on ``probe`` and score it on ``val`` and ``test``.

    A collapsed (constant) ``z`` gives an attacker at chance, not an error: it
    is a legitimate, if useless, outcome of removal.
    """
    if name not in _FITTERS:
        raise ValueError(f"unknown attacker {name!r} (valid: {', '.join(ATTACKERS)})")
    if num_private < 2:
        raise ValueError(f"num_private must be at least 2, got {num_private}")
    if max_probe < 2:
        raise ValueError(f"max_probe must be at least 2, got {max_probe}")
    z_probe, z_val, z_test = (
        _features(z_probe, "probe"), _features(z_val, "val"), _features(z_test, "test")
    )
    if not z_probe.shape[1] == z_val.shape[1] == z_test.shape[1]:
        raise ValueError(
            "z_probe, z_val and z_test must have the same number of features, got "
            f"{z_probe.shape[1]}, {z_val.shape[1]} and {z_test.shape[1]}"
        )
    s_probe = _labels(s_probe, num_private, "probe", z_probe.shape[0])
    s_val = _labels(s_val, num_private, "val", z_val.shape[0])
    s_test = _labels(s_test, num_private, "test", z_test.shape[0])

    if s_probe.size > max_probe:
        keep = _stratified_subset(s_probe, max_probe, np.random.default_rng([seed, 0]))
        z_probe, s_probe = z_probe[keep], s_probe[keep]

    with threadpool_limits(limits=1):
        return _fit_and_score(
            name, z_probe, s_probe, z_val, s_val, z_test, s_test, num_private, seed
        )


def _fit_and_score(
    name: str,
    z_probe: np.ndarray,
    s_probe: np.ndarray,
    z_val: np.ndarray,
    s_val: np.ndarray,
    z_test: np.ndarray,
    s_test: np.ndarray,
    num_private: int,
    seed: int,
) -> AttackerScore:
    present = np.unique(s_probe)
    if present.size == 1:
        # Nothing to learn: the only label seen is predicted with certainty.
        def probabilities_of(z: np.ndarray) -> np.ndarray:
            return _full_probabilities(np.ones((z.shape[0], 1)), present, num_private)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier = _FITTERS[name](z_probe, s_probe, seed)
        classes = classifier.classes_.astype(np.int64)

        def probabilities_of(z: np.ndarray) -> np.ndarray:
            return _full_probabilities(classifier.predict_proba(z), classes, num_private)

    val_probabilities, test_probabilities = probabilities_of(z_val), probabilities_of(z_test)
    return AttackerScore(
        name=name,
        val_balanced_accuracy=balanced_accuracy(s_val, np.argmax(val_probabilities, axis=1)),
        test_balanced_accuracy=balanced_accuracy(s_test, np.argmax(test_probabilities, axis=1)),
        val_cross_entropy=_cross_entropy(val_probabilities, s_val),
        test_cross_entropy=_cross_entropy(test_probabilities, s_test),
    )


def measure_leakage(
    z_probe: np.ndarray,
    s_probe: np.ndarray,
    z_val: np.ndarray,
    s_val: np.ndarray,
    z_test: np.ndarray,
    s_test: np.ndarray,
    num_private: int,
    seed: int = 0,
    attackers: tuple[str, ...] = ATTACKERS,
) -> LeakageReport:
    """Run every attacker and report the leakage figures of PROTOCOL.md.

    The best attacker is picked on ``val`` (ties to the first in ``attackers``)
    and only its ``test`` scores are reported, so no choice looks at ``test``.
    """
    if not attackers:
        raise ValueError("measure_leakage needs at least one attacker, got none")
    scores = {
        name: attack(
            name, z_probe, s_probe, z_val, s_val, z_test, s_test, num_private, seed=seed
        )
        for name in attackers
    }
    best = max(scores, key=lambda name: scores[name].val_balanced_accuracy)  # first of ties
    chance = 1.0 / num_private
    leakage = scores[best].test_balanced_accuracy
    entropy = entropy_bits(np.asarray(s_test).reshape(-1), num_private)
    return LeakageReport(
        attackers=scores,
        best=best,
        leakage=leakage,
        leakage_norm=(leakage - chance) / (1.0 - chance),
        mi_bits=max(0.0, entropy - scores[best].test_cross_entropy / math.log(2)),
        val_leakage=scores[best].val_balanced_accuracy,
    )
