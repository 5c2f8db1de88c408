import copy
import math

import pytest
import torch

from removal_bench.core.encoders import MLP
from removal_bench.methods.irene import Irene, mutual_information


def test_mutual_information_is_one_for_a_perfect_binary_head():
    probabilities = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    private = torch.tensor([0, 1, 0, 1])
    assert mutual_information(probabilities, private, 2).item() == pytest.approx(1.0, abs=1e-6)


def test_mutual_information_is_zero_for_an_uninformative_head():
    probabilities = torch.full((6, 3), 1 / 3)
    private = torch.tensor([0, 1, 2, 0, 1, 2])
    assert mutual_information(probabilities, private, 3).item() == pytest.approx(0.0, abs=1e-6)


def test_mutual_information_matches_a_hand_computed_joint():
    probabilities = torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    private = torch.tensor([0, 0, 1, 1])
    # P(j,k) = mean_i 1[s_i=j] p_ik: rows s=0 -> (1.4, 0.6)/4, s=1 -> (0.4, 1.6)/4
    joint = {(0, 0): 0.35, (0, 1): 0.15, (1, 0): 0.10, (1, 1): 0.40}
    p_private = {0: 0.5, 1: 0.5}
    p_head = {0: 0.45, 1: 0.55}
    expected = sum(v * math.log(v / (p_private[j] * p_head[k])) for (j, k), v in joint.items()) / math.log(2)
    assert expected == pytest.approx(0.1912, abs=1e-3)
    assert mutual_information(probabilities, private, 2).item() == pytest.approx(expected, abs=1e-6)


def test_mutual_information_with_four_private_classes_is_normalised_by_log_k():
    probabilities = torch.eye(4)
    private = torch.arange(4)
    assert mutual_information(probabilities, private, 4).item() == pytest.approx(1.0, abs=1e-6)


def _irene(gamma: float, variant: str = "split") -> Irene:
    torch.manual_seed(0)
    return Irene(MLP((6,), hidden=16, out_dim=8), 2, 2,
                 {**{k: p.default for k, p in Irene.hparams.items()}, "gamma": gamma, "variant": variant}, epochs=1)


def test_the_paper_variant_is_the_default():
    assert Irene.hparams["variant"].default == "paper"


@pytest.mark.parametrize("variant", ["split", "paper"])
def test_the_head_ignores_the_mutual_information_term_only_in_the_split_variant(variant):
    """aec198c: the head learns from CE_priv alone; c7b74ed (the paper's): one backward, MI moves the head too."""
    torch.manual_seed(1)
    x, y, s = torch.randn(32, 6), torch.randint(0, 2, (32,)), torch.randint(0, 2, (32,))
    without_mi, with_mi = _irene(0.0, variant), _irene(5.0, variant)
    with_mi.load_state_dict(copy.deepcopy(without_mi.state_dict()))
    for method in (without_mi, with_mi):
        method.update(x, y, s)
    same_head = all(torch.equal(a, b) for a, b in zip(without_mi.privacy_head.parameters(),
                                                        with_mi.privacy_head.parameters()))
    assert same_head == (variant == "split")
    # ... while the MI term does change the encoder
    changed = [not torch.equal(a, b) for a, b in zip(without_mi.encoder.parameters(), with_mi.encoder.parameters())]
    assert any(changed)


def test_mutual_information_gradient_reaches_the_encoder_but_not_the_head():
    method = _irene(1.0)
    x, s = torch.randn(16, 6), torch.randint(0, 2, (16,))
    z = method.encoder(x)
    attached = torch.nn.functional.linear(z, method.privacy_head.weight.detach(), method.privacy_head.bias.detach())
    mutual_information(torch.softmax(attached, 1), s, 2).backward()
    assert method.privacy_head.weight.grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.encoder.parameters())


def test_mutual_information_is_the_same_with_and_without_bf16_autocast():
    """Regularisers run in float32: bf16 would round the joint's product (about 160x off on a small MI)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(256, 10, generator=generator) * 0.05  # a head close to uninformative: a small MI
    private = torch.randint(0, 10, (256,), generator=generator)
    probabilities = torch.softmax(logits, dim=1)
    plain = mutual_information(probabilities, private, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = mutual_information(probabilities, private, 10)
        # without the guard, the same product in bf16 is far off: the test would notice a regression
        rounded = (torch.nn.functional.one_hot(private, 10).float().T @ probabilities)
    assert rounded.dtype == torch.bfloat16
    assert under_autocast.dtype == torch.float32
    assert abs(under_autocast.item() - plain.item()) <= 1e-6
    assert plain.item() < 1e-2


def test_irene_update_under_autocast_keeps_the_mutual_information_in_float32():
    method = _irene(1.0, "paper")
    x, y, s = torch.randn(64, 6), torch.randint(0, 2, (64,)), torch.randint(0, 2, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = method.update(x, y, s)
    assert terms["mi"].dtype == torch.float32 and torch.isfinite(terms["mi"])
