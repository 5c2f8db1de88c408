"""Attackers of the command line: the protocol's by name, or any scikit-learn classifier by import path
(``sklearn.svm.SVC:C=10:gamma=scale``), each fitted on standardised ``z`` like the protocol's linear and MLP
attackers. ``bench attack`` (:mod:`removal_bench.commands.attack`) uses them to re-attack a logged trial."""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from removal_bench.measuring.attackers import ATTACKERS
from removal_bench.core.errors import UserError

EMBEDDINGS_FILE = "embeddings.npz"
SPLITS = ("probe", "val", "test")


@dataclass(frozen=True)
class AttackerSpec:
    """One attacker of the command line: a protocol attacker's name, or a classifier's import path."""

    text: str
    name: str  # metric-safe: attack.<name>.leakage
    factory: Callable[[], Any] | None = None  # None: the protocol's attacker ``name``

    @property
    def probabilistic(self) -> bool:
        return self.factory is None or hasattr(self.factory(), "predict_proba")


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a string (kernel=rbf)


def metric_name(text: str) -> str:
    return re.sub(r"[^\w.\-]+", "-", text).strip("-.") or "attacker"


# The capacity check (docs/PROTOCOL.md, "Is the attacker strong enough?"): the protocol's MLP widened four-fold,
# with twice its patience and the same inner hold-out, on standardised z. It is not one of the protocol's
# families (it sets no trial's leakage, so it lives here, outside the attackers' fingerprint); ``bench attack
# --attacker mlp_wide`` logs it as ``attack.mlp_wide.leakage``, and the leaderboard's attacker table shows how
# much it adds to the selected configuration's leakage where it was measured.
CAPACITY_ATTACKER = "mlp_wide"
CAPACITY_SPEC = ("sklearn.neural_network.MLPClassifier:hidden_layer_sizes=(512, 256):batch_size=256:"
                 "learning_rate_init=0.002:early_stopping=True:validation_fraction=0.2:n_iter_no_change=10:max_iter=500")
CAPACITY_MARGIN = 0.02  # a wider attacker that gains more than this (balanced accuracy) says the default is not saturated


def parse_attacker(text: str) -> AttackerSpec:
    """``linear`` (a protocol attacker), ``mlp_wide`` (the capacity check) or ``package.module.Class[:NAME=VALUE...]``,
    checked to build a classifier."""
    text = text.strip()
    if text in ATTACKERS:
        return AttackerSpec(text, text)
    if text == CAPACITY_ATTACKER:
        spec = parse_attacker(CAPACITY_SPEC)
        return AttackerSpec(CAPACITY_SPEC, CAPACITY_ATTACKER, spec.factory)
    path, *assignments = text.split(":")
    module_name, _, class_name = path.strip().rpartition(".")
    if not module_name or not class_name:
        raise UserError(
            f"--attacker {text!r}: expected one of {', '.join(ATTACKERS)} or an import path such as sklearn.svm.SVC:C=10"
        )
    keywords = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UserError(f"--attacker {text!r}: malformed keyword argument {assignment!r} (expected NAME=VALUE)")
        keywords[key.strip()] = _value(value.strip())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"--attacker {text!r}: cannot import {module_name} ({error})") from None
    target = getattr(module, class_name, None)
    if not isinstance(target, type):
        raise UserError(f"--attacker {text!r}: {module_name} has no class {class_name}")
    try:
        prototype = target(**keywords)
    except Exception as error:  # a wrong keyword: the constructor's own words
        raise UserError(f"--attacker {text!r}: {class_name}({keywords}) fails: {error}") from None
    from sklearn.base import clone, is_classifier

    if not (is_classifier(prototype) and hasattr(prototype, "fit") and hasattr(prototype, "predict")):
        raise UserError(f"--attacker {text!r}: {path} is not a scikit-learn classifier (is_classifier is False)")
    if hasattr(prototype, "_validate_params"):  # scikit-learn checks parameter values only in fit: check them now
        try:
            prototype._validate_params()
        except Exception as error:
            raise UserError(f"--attacker {text!r}: {error}") from None
    suffix = "".join(f"_{key}-{value}" for key, value in keywords.items())
    return AttackerSpec(text, metric_name(class_name + suffix), lambda: clone(prototype))


class HardVotes:
    """A classifier without ``predict_proba`` (an SVC without probability=True), read as certain of its votes."""

    def __init__(self, model):
        self.model = model
        self.classes_ = model.classes_

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        predicted = self.model.predict(z)
        return (predicted[:, None] == self.classes_[None, :]).astype(float)


def fitter(spec: AttackerSpec) -> Callable[[np.ndarray, np.ndarray, int], Any]:
    """Fit a fresh copy of the user's classifier on standardised ``z`` (seeded by the trial's seed if it takes one)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(z: np.ndarray, s: np.ndarray, seed: int):
        estimator = spec.factory()
        if "random_state" in estimator.get_params() and estimator.get_params()["random_state"] is None:
            estimator.set_params(random_state=seed)
        try:
            model = make_pipeline(StandardScaler(), estimator).fit(z, s)
        except Exception as error:  # the user's classifier refused these data: say which and why
            raise UserError(f"--attacker {spec.text!r} failed to fit: {' '.join(str(error).split())[:300]}") from None
        return model if hasattr(model, "predict_proba") else HardVotes(model)

    return fit
