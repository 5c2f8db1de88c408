"""The reference encoders, layer by layer as their authors' code builds them."""

import torch
from torch import nn

from removal_bench.core.encoders import build_encoder


def conv_parameters(cin: int, cout: int, kernel: int = 7) -> int:
    return cin * cout * kernel * kernel + cout  # the references' convolutions keep their bias


def test_biased_mnist_cnn_is_irenes_simple_conv_net_layer_by_layer():
    """enzotarta/irene@aec198c datasets/biased_mnist.py (and EnD's copy): Conv-BN-ReLU x3, Conv-BN-Tanh, GAP."""
    encoder = build_encoder("biased_mnist_cnn", (3, 28, 28))
    layers = list(encoder.extracter)
    kinds = [type(layer) for layer in layers]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 3 + [nn.Conv2d, nn.BatchNorm2d, nn.Tanh]
    convolutions = [layer for layer in layers if isinstance(layer, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convolutions] == [
        (3, 16, (7, 7), (3, 3)), (16, 32, (7, 7), (3, 3)), (32, 64, (7, 7), (3, 3)), (64, 128, (7, 7), (3, 3))]
    assert all(c.bias is not None for c in convolutions)
    widths = [(3, 16), (16, 32), (32, 64), (64, 128)]
    expected = sum(conv_parameters(a, b) for a, b in widths) + sum(2 * b for _, b in widths)
    assert sum(p.numel() for p in encoder.parameters()) == expected == 529_920
    assert encoder(torch.randn(4, 3, 28, 28)).shape == (4, 128)


def test_rebias_cnn_differs_only_in_its_last_activation():
    rebias = build_encoder("rebias_cnn", (3, 28, 28))
    assert isinstance(list(rebias.extracter)[-1], nn.ReLU)
    irene = build_encoder("biased_mnist_cnn", (3, 28, 28))
    assert [p.shape for p in rebias.parameters()] == [p.shape for p in irene.parameters()]


def test_convolutions_use_kaiming_normal_fan_out_and_batch_norm_starts_at_identity():
    torch.manual_seed(0)
    encoder = build_encoder("biased_mnist_cnn", (3, 28, 28))
    last = [layer for layer in encoder.extracter if isinstance(layer, nn.Conv2d)][-1]
    fan_out = last.out_channels * 7 * 7
    expected_std = (2.0 / fan_out) ** 0.5  # kaiming_normal_(mode="fan_out", nonlinearity="relu")
    assert abs(last.weight.std().item() / expected_std - 1) < 0.05  # 401,408 draws: the std is within 1%
    norms = [layer for layer in encoder.extracter if isinstance(layer, nn.BatchNorm2d)]
    assert all(torch.all(n.weight == 1) and torch.all(n.bias == 0) for n in norms)
