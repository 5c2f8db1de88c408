"""Adversarial debiasing's projections, ours and fairlearn's (docs/METHODS.md, "Adversarial debiasing beside
fairlearn's"): each step checked against the gradients it was built from, and the side-by-side harness."""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import pytest
import torch

from removal_bench.core.encoders import build_encoder
from removal_bench.core.params import resolve
from removal_bench.core.recipes import Recipe
from removal_bench.methods.adv_debias import AdversarialDebiasing, projected_update, projected_update_per_tensor

pytest.importorskip("fairlearn")


def _gradients(method, x, y, s):
    """The task gradient g and the adversary's h on the predictor's parameters, as the method computes them."""
    import torch.nn.functional as F

    predictor = method.model_parameters()
    logits = method.classifier(method.encoder(x))
    task = F.cross_entropy(logits, y)
    adversary = F.cross_entropy(method.adversary_logits(logits, None), s)
    g = torch.autograd.grad(task, predictor, retain_graph=True)
    h = torch.autograd.grad(adversary, predictor)
    return g, h


@pytest.mark.parametrize("projection", ["flat", "per_tensor"])
def test_the_predictor_step_is_orthogonal_to_what_it_projects_off(projection):
    torch.manual_seed(0)
    hparams = resolve("adv_debias", AdversarialDebiasing.hparams, {"alpha": 0.0, "projection": projection})
    recipe = Recipe(lr=1.0, momentum=0.0, weight_decay=0.0)  # the step is then minus the direction
    method = AdversarialDebiasing(build_encoder("mlp", (6,)), 2, 2, hparams, epochs=1, recipe=recipe).eval()
    x, y, s = torch.randn(64, 6), torch.randint(0, 2, (64,)), torch.randint(0, 2, (64,))
    g, h = _gradients(method, x, y, s)
    before = [p.detach().clone() for p in method.model_parameters()]
    method.update(x, y, s)
    steps = [b - p.detach() for b, p in zip(before, method.model_parameters())]
    # each tensor's step along its part of h, relative to |g_i| |h_i| (a step near zero has no direction to speak of)
    per_tensor = [float((step * hi).sum()) / (float(hi.norm() * gi.norm()) + 1e-12) for step, gi, hi in zip(steps, g, h)]
    whole = float(sum((step * hi).sum() for step, hi in zip(steps, h)))
    assert abs(whole) / (float(torch.cat([t.reshape(-1) for t in h]).norm()) + 1e-12) < 1e-4  # both: orthogonal to h
    if projection == "per_tensor":
        assert max(abs(c) for c in per_tensor) < 1e-4  # and to each tensor's part of h
    else:
        assert max(abs(c) for c in per_tensor) > 1e-3  # the flat step is not, tensor by tensor


def test_the_per_tensor_update_removes_at_least_as_much_of_g():
    torch.manual_seed(1)
    g = tuple(torch.randn(4, 3) for _ in range(3))
    h = tuple(torch.randn(4, 3) for _ in range(3))
    flat = projected_update(torch.cat([t.reshape(-1) for t in g]), torch.cat([t.reshape(-1) for t in h]), 0.0)
    per_tensor = projected_update_per_tensor(g, h, 0.0)
    assert float(per_tensor.norm()) <= float(flat.norm()) + 1e-6


def test_fairlearns_inner_is_not_the_projection_for_weight_matrices():
    """fairlearn 0.15's step takes ``torch.sum(torch.inner(unit, g))``: the dot product for vectors, another number
    for matrices; so its step keeps a component along the adversary's gradient."""
    torch.manual_seed(2)
    u, g = torch.randn(5, 4), torch.randn(5, 4)
    assert torch.isclose(torch.sum(torch.inner(u[0], g[0])), (u[0] * g[0]).sum())
    assert not torch.isclose(torch.sum(torch.inner(u, g)), (u * g).sum(), atol=1e-3)


def _fairlearn_step(corrected: bool):
    """One step of fairlearn's torch engine (or the corrected one) at alpha 0 with plain SGD at rate 1 on a
    network without batch norm: (the step per parameter, the adversary's gradient per parameter)."""
    from fairlearn.adversarial import AdversarialFairnessClassifier
    from torch import nn

    from removal_bench.benchmarks.effects import _corrected_engine

    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y, a = (x[:, 0] > 0).astype(int), (x[:, 1] + 0.5 * x[:, 0] > 0).astype(int)
    predictor = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid())
    adversary = nn.Sequential(nn.Linear(1, 1), nn.Sigmoid())
    model = AdversarialFairnessClassifier(
        backend=_corrected_engine() if corrected else "torch", predictor_model=predictor, adversary_model=adversary,
        predictor_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=1.0),
        adversary_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.0), alpha=0.0, epochs=1, batch_size=64,
        random_state=0)
    model.fit(x, y, sensitive_features=a)  # one step: builds the engine
    engine = model.backendEngine_
    X, Y, A = torch.from_numpy(x), torch.from_numpy(y).float().reshape(-1, 1), torch.from_numpy(a).float().reshape(-1, 1)
    parameters = list(engine.predictor_model.parameters())
    h = torch.autograd.grad(engine.adversary_loss(engine.adversary_model(engine.predictor_model(X)), A), parameters)
    before = [p.detach().clone() for p in parameters]
    engine.train_step(X, Y, A)
    return [b - p.detach() for b, p in zip(before, parameters)], h


def test_fairlearns_step_keeps_a_component_along_the_adversary_and_the_corrected_one_does_not():
    for corrected in (False, True):
        steps, h = _fairlearn_step(corrected)
        cosines = [abs(float((s * hi).sum())) / (float(s.norm() * hi.norm()) + 1e-6) for s, hi in zip(steps, h)]
        weight_matrices = [c for c, s in zip(cosines, steps) if s.dim() == 2]
        if corrected:
            assert max(cosines) < 1e-4
        else:
            assert max(weight_matrices) > 1e-3


def test_side_by_side_on_synthetic_the_corrected_fairlearn_trains_as_ours():
    """The harness of ``python -m removal_bench.benchmarks fairlearn-adv``, small: at alpha 0 (the projection
    alone) fairlearn with its projection corrected reaches our per-tensor projection's accuracy, mean of 3 seeds."""
    from removal_bench.benchmarks.effects import fairlearn_adv

    figures = fairlearn_adv(argparse.Namespace(
        alpha=[0.0], seeds=3, epochs=5, batch_size=None, adversary_lr=0.05, threads=1, data_root=None,
        tracking_uri=None, experiment="adv-fairlearn", output=None, dataset="synthetic", options={},
        return_figures=True))
    mean = {label: statistics.mean(r["accuracy"] for r in results) for (label, _), results in figures.items()}
    assert len(mean) == 4 and all(len(results) == 3 for results in figures.values())
    ours, corrected = mean["ours, per-tensor projection"], mean["fairlearn 0.15, projection corrected"]
    assert ours > 0.8 and abs(ours - corrected) < 0.04
