"""Adversarial debiasing, Learning Not to Learn, EnD and the HSIC penalty.

Each one's core piece must hold its guarantee on hand-made inputs (that each
removes ``s`` at its defaults, over several seeds, is tests/test_removal.py): the
projected update has no component along the adversary's gradient beyond -alpha h, HSIC is ~0 exactly when z and s are
independent, EnD's disentangling term is 1 for shared directions and 0 for
orthogonal ones. No method may produce NaN on a batch that lacks a private class.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from removal_bench.core.params import resolve
from removal_bench.methods import get_method
from removal_bench.methods.adv_debias import projected_update
from removal_bench.core.encoders import MLP
from removal_bench.methods.end import disentangling_term, entangling_term
from removal_bench.methods.hsic import delta_kernel, gaussian_kernel, hsic, normalized_hsic

def build(name: str, num_private: int = 2, **overrides):
    cls = get_method(name)
    return cls(MLP((6,), 16, 8), 2, num_private, resolve(name, cls.hparams, overrides), epochs=2)


# ----------------------------------------------------------------------------- adversarial debiasing


def test_projected_update_has_no_component_along_h_but_minus_alpha_h():
    generator = torch.Generator().manual_seed(0)
    for alpha in (0.0, 0.1, 3.0):
        g = torch.randn(1000, generator=generator, dtype=torch.float64)
        h = torch.randn(1000, generator=generator, dtype=torch.float64) + 0.3 * g
        update = projected_update(g, h, alpha)
        assert abs((update + alpha * h) @ h) < 1e-9 * g.norm() * h.norm()
        # what is left of g is its part orthogonal to h, untouched
        orthogonal = g - (g @ h) / (h @ h) * h
        assert torch.allclose(update + alpha * h, orthogonal)


def test_projected_update_is_the_task_gradient_when_the_adversary_has_none():
    g = torch.randn(50)
    assert torch.allclose(projected_update(g, torch.zeros(50), 1.0), g)


@pytest.mark.parametrize("equalized_odds", [False, True])
def test_predictor_step_of_a_real_model_is_projected_off_the_adversary_gradient(equalized_odds):
    torch.manual_seed(0)
    method = build("adv_debias", alpha=0.5, equalized_odds=equalized_odds)
    x, y, s = torch.randn(32, 6), torch.randint(0, 2, (32,)), torch.randint(0, 2, (32,))

    reference = copy.deepcopy(method)
    logits = reference.classifier(reference.encoder(x))
    one_hot = F.one_hot(y, 2).float() if equalized_odds else None
    adversary_loss = F.cross_entropy(reference.adversary_logits(logits, one_hot), s)
    h = torch.cat([t.flatten() for t in torch.autograd.grad(adversary_loss, reference.model_parameters())])
    task_loss = F.cross_entropy(reference.classifier(reference.encoder(x)), y)
    g = torch.cat([t.flatten() for t in torch.autograd.grad(task_loss, reference.model_parameters())])

    method.update(x, y, s)
    direction = torch.cat([p.grad.flatten() for p in method.model_parameters()])
    assert abs(float((direction + 0.5 * h) @ h)) < 1e-4 * float(g.norm() * h.norm())
    # the step differs from plain descent on the task: the adversary had a say
    assert not torch.allclose(direction, g, atol=1e-6)
    assert torch.allclose(direction, projected_update(g, h, 0.5), atol=1e-6)


def test_adversary_is_trained_to_predict_s_from_the_task_output():
    torch.manual_seed(0)
    method = build("adv_debias", alpha=0.0)
    before = [p.detach().clone() for p in method.adversary_parameters()]
    method.update(torch.randn(32, 6), torch.randint(0, 2, (32,)), torch.randint(0, 2, (32,)))
    assert any(not torch.equal(b, p) for b, p in zip(before, method.adversary_parameters()))
    assert method.private_logits(torch.randn(5, 8)).shape == (5, 2)


# ----------------------------------------------------------------------------- HSIC


def test_hsic_is_near_zero_for_independent_z_and_clearly_positive_when_z_holds_s():
    generator = torch.Generator().manual_seed(0)
    s = torch.randint(0, 2, (200,), generator=generator)
    independent = torch.randn(200, 8, generator=generator)
    dependent = independent.clone()
    dependent[:, 0] += 3.0 * s
    labels = delta_kernel(s)
    low, high = hsic(gaussian_kernel(independent), labels), hsic(gaussian_kernel(dependent), labels)
    assert low < 0.003 < 0.02 < high
    assert high > 10 * low
    assert normalized_hsic(gaussian_kernel(independent), labels) < 0.05
    assert normalized_hsic(gaussian_kernel(dependent), labels) > 0.4


def test_hsic_matches_the_trace_formula():
    generator = torch.Generator().manual_seed(1)
    k, l = torch.rand(7, 7, generator=generator), torch.rand(7, 7, generator=generator)
    k, l = k + k.T, l + l.T
    centring = torch.eye(7) - 1 / 7
    assert torch.allclose(hsic(k, l), torch.trace(k @ centring @ l @ centring) / 36)


# ----------------------------------------------------------------------------- EnD


def test_disentangling_term_is_one_for_shared_directions_and_zero_for_orthogonal_ones():
    s = torch.tensor([0, 0, 0, 1, 1, 1])
    shared = torch.zeros(6, 4)
    shared[:3, 0] = torch.tensor([1.0, 2.0, 0.5])  # s = 0: one direction, different lengths
    shared[3:, 1] = torch.tensor([3.0, 1.0, 0.1])  # s = 1: another
    assert disentangling_term(shared, s) == pytest.approx(1.0, abs=1e-6)
    # opposite directions count as aligned: the term is absolute
    shared[1, 0] = -2.0
    assert disentangling_term(shared, s) == pytest.approx(1.0, abs=1e-6)
    assert disentangling_term(torch.eye(6), s) == pytest.approx(0.0, abs=1e-6)


def test_entangling_term_is_one_for_aligned_pairs_and_half_for_orthogonal_ones():
    y, s = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    aligned = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    assert entangling_term(aligned, y, s) == pytest.approx(1.0, abs=1e-6)
    assert entangling_term(torch.eye(4), y, s) == pytest.approx(0.5, abs=1e-6)


def test_end_terms_are_zero_when_a_batch_has_no_pair():
    z = torch.randn(4, 3)
    assert disentangling_term(z, torch.tensor([0, 1, 2, 3])) == 0.0
    assert entangling_term(z, torch.tensor([0, 0, 0, 0]), torch.tensor([1, 1, 1, 1])) == 0.0


# ----------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("adv_debias", {}),
        ("adv_debias", {"equalized_odds": True}),
        ("lnl", {}),
        ("end", {}),
        ("hsic", {}),
        ("hsic", {"normalized": True}),
    ],
)
def test_no_nan_on_batches_that_lack_a_private_class(name, overrides):
    torch.manual_seed(0)
    method = build(name, num_private=3, **overrides)
    x = torch.randn(16, 6)
    batches = [
        (torch.randint(0, 2, (16,)), torch.zeros(16, dtype=torch.long)),  # one private class of three
        (torch.ones(16, dtype=torch.long), torch.randint(1, 3, (16,))),  # one target class, two of three private
    ]
    for y, s in batches * 2:
        terms = method.update(x, y, s)
        assert all(torch.isfinite(value) for value in terms.values()), terms
    assert all(torch.isfinite(p).all() for p in method.parameters())
    head = method.private_logits(method.embed(x))
    assert head is None or torch.isfinite(head).all()


def test_rebias_unbiased_hsic_with_rbf_label_kernel_is_the_delta_kernels_scaled_and_centred_on_zero():
    import math

    from removal_bench.methods.hsic import delta_kernel, gaussian_kernel, rbf_label_kernel, unbiased_hsic

    generator = torch.Generator().manual_seed(0)
    independent, dependent = [], []
    for _ in range(20):
        z = torch.randn(64, 5, generator=generator)
        s = torch.randint(0, 2, (64,), generator=generator)
        k = gaussian_kernel(z)
        rbf = unbiased_hsic(k, rbf_label_kernel(s, 2))
        assert rbf.item() == pytest.approx((1 - math.exp(-1)) * unbiased_hsic(k, delta_kernel(s)).item(), abs=1e-6)
        independent.append(rbf.item())
        dependent.append(unbiased_hsic(gaussian_kernel(z + 2.0 * s[:, None]), rbf_label_kernel(s, 2)).item())
    # unbiased: over 20 independent batches the mean is near 0 (the biased estimator's is positive)
    assert abs(sum(independent) / 20) < 0.2 * min(dependent)


def test_end_cosines_are_float32_under_bf16_autocast():
    from removal_bench.methods.end import cosine_matrix

    z = torch.randn(32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = cosine_matrix(z)
    assert under.dtype == torch.float32
    assert torch.allclose(under, cosine_matrix(z), atol=1e-6)
