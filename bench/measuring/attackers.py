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

Speed (since f2f30b3): evaluation was 45-65% of a trial. The linear attacker walks
its C grid upwards with warm starts; the MLP trains in float32 with batches of
256 at twice sklearn's default rate and stops after 5 epochs without hold-out
gain (was 200 rows, 1e-3, 10 epochs); the boosted trees take steps of 0.2 for
at most 100 rounds on 63 bins (was 0.1 for 200 rounds on 255 bins: the same
total shrinkage, which 10-class probes used up to the last round). On embeddings saved by the previous code
(synthetic, colored_digits, adult; ``python -m removal_bench.benchmarks attackers``)
the leakage is as high as before within seed noise and evaluation is about 3x
faster; ``tests/test_attacker_strength.py`` holds the previous attackers as the
reference.
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

from removal_bench.measuring.metrics import balanced_accuracy, entropy_bits

ATTACKERS = ("linear", "mlp", "gbdt")

# Floor on predicted probabilities before the cross-entropy: one confident
# mistake must not make the MI bound -infinity.
PROBABILITY_FLOOR = 1e-7
LINEAR_C_GRID = (0.01, 0.1, 1.0, 10.0)
INNER_HOLDOUT_FRACTION = 0.2
MLP_BATCH = 256
MLP_LEARNING_RATE = 2e-3
MLP_PATIENCE = 5  # epochs without hold-out gain before the MLP stops (its best epoch's weights are kept)
GBDT_LEARNING_RATE = 0.2
GBDT_MAX_ROUNDS = 100
GBDT_BINS = 63  # histogram bins per feature: split finding over 255 bins dominated small probes


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
    calibration of the chosen model is what bounds ``mi_bits``. The grid is
    walked from strong to weak regularisation, each fit starting from the last
    one's weights, and the refit starts from the chosen fit's: the same optima
    (the problem is convex) in fewer iterations.
    """
    scaled = StandardScaler().fit(z)
    z_scaled = scaled.transform(z)
    fit_rows, holdout_rows = _inner_split(s, np.random.default_rng([seed, 1]))
    chosen_c, start = 1.0, None
    if holdout_rows.size and np.unique(s[fit_rows]).size == np.unique(s).size >= 2:
        best_key = None
        model = LogisticRegression(max_iter=500, warm_start=True)
        for c in sorted(LINEAR_C_GRID):
            model.set_params(C=c).fit(z_scaled[fit_rows], s[fit_rows])
            probabilities = _full_probabilities(
                model.predict_proba(z_scaled[holdout_rows]), model.classes_, int(s.max()) + 1
            )
            key = (
                balanced_accuracy(s[holdout_rows], np.argmax(probabilities, axis=1)),
                -_cross_entropy(probabilities, s[holdout_rows]),
            )
            if best_key is None or key > best_key:
                best_key, chosen_c, start = key, c, (model.coef_.copy(), model.intercept_.copy())
    model = LogisticRegression(C=chosen_c, max_iter=500, warm_start=start is not None)
    if start is not None:
        model.coef_, model.intercept_ = start
    model.fit(z_scaled, s)
    return make_pipeline(scaled, model)


class _Float32Standardised:
    """A classifier fed standardised float32 features (half the arithmetic of float64 in sklearn's MLP)."""

    def __init__(self, model):
        self.model = model

    def fit(self, z: np.ndarray, s: np.ndarray):
        self.scaler = StandardScaler().fit(z)
        self.model.fit(self._prepare(z), s)
        self.classes_ = self.model.classes_
        return self

    def _prepare(self, z: np.ndarray) -> np.ndarray:
        return self.scaler.transform(z).astype(np.float32)

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(self._prepare(z)).astype(np.float64)

    def predict(self, z: np.ndarray) -> np.ndarray:
        return self.model.predict(self._prepare(z))


def _fit_mlp(z: np.ndarray, s: np.ndarray, seed: int):
    early_stopping = _sklearn_holdout_possible(s)
    fit_rows = s.size - math.ceil(INNER_HOLDOUT_FRACTION * s.size) if early_stopping else s.size
    model = MLPClassifier(
        hidden_layer_sizes=(128, 64),
        batch_size=max(1, min(MLP_BATCH, fit_rows)),
        learning_rate_init=MLP_LEARNING_RATE,
        early_stopping=early_stopping,
        validation_fraction=INNER_HOLDOUT_FRACTION,
        n_iter_no_change=MLP_PATIENCE,
        max_iter=200,
        random_state=seed,
    )
    return _Float32Standardised(model).fit(z, s)


def _fit_gbdt(z: np.ndarray, s: np.ndarray, seed: int):
    model = HistGradientBoostingClassifier(
        learning_rate=GBDT_LEARNING_RATE,
        max_iter=GBDT_MAX_ROUNDS,
        max_bins=GBDT_BINS,
        early_stopping=_sklearn_holdout_possible(s),
        validation_fraction=INNER_HOLDOUT_FRACTION,
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
    fit=None,
) -> AttackerScore:
    """Fit one fresh attacker on ``probe`` and score it on ``val`` and ``test``.

    A collapsed (constant) ``z`` gives an attacker at chance, not an error: it
    is a legitimate, if useless, outcome of removal. ``fit(z, s, seed)`` (a fitted
    classifier with ``classes_`` and ``predict_proba``) replaces the named
    attacker's own fit: ``bench attack`` runs a user's classifier through the
    same subsampling, threading and scoring.
    """
    if fit is None and name not in _FITTERS:
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
            name, z_probe, s_probe, z_val, s_val, z_test, s_test, num_private, seed, fit
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
    fit=None,
) -> AttackerScore:
    present = np.unique(s_probe)
    if present.size == 1:
        # Nothing to learn: the only label seen is predicted with certainty.
        def probabilities_of(z: np.ndarray) -> np.ndarray:
            return _full_probabilities(np.ones((z.shape[0], 1)), present, num_private)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier = (fit or _FITTERS[name])(z_probe, s_probe, seed)
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
    fitters: dict | None = None,
) -> LeakageReport:
    """Run every attacker and report the leakage figures of PROTOCOL.md.

    The best attacker is picked on ``val`` (ties to the first in ``attackers``)
    and only its ``test`` scores are reported, so no choice looks at ``test``.
    ``fitters`` maps names in ``attackers`` to fit functions of other classifiers (see :func:`attack`).
    """
    if not attackers:
        raise ValueError("measure_leakage needs at least one attacker, got none")
    scores = {
        name: attack(
            name, z_probe, s_probe, z_val, s_val, z_test, s_test, num_private, seed=seed,
            fit=(fitters or {}).get(name),
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
