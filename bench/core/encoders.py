"""Encoders shared by all methods: input -> bottleneck ``z``.

Every encoder exposes ``out_dim`` (the bottleneck's width). A linear task head
reads ``z``; methods add their own heads on ``z`` too.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from removal_bench.core.errors import UserError


class MLP(nn.Module):
    """Two hidden layers with batch norm; the second one's activations are ``z``."""

    def __init__(self, input_shape: tuple[int, ...], hidden: int = 128, out_dim: int = 64):
        super().__init__()
        (in_dim,) = input_shape
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_dim),
            nn.BatchNorm1d(out_dim),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_block(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SimpleConvNet(nn.Module):
    """The Biased-MNIST SimpleConvNet of ReBias (clovaai/rebias@79d1d1d, models/mnist_models.py), layer by layer.

    Four 7x7 convolutions (3 -> 16 -> 32 -> 64 -> 128 channels, padding 3, with
    bias), each followed by batch norm and an activation: ReLU after the first
    three; after the fourth, Tanh in IRENE's and EnD's copies
    (enzotarta/irene@aec198c datasets/biased_mnist.py, EIDOSLAB/entangling-disentangling-bias@b095648
    src/models.py) and ReLU in ReBias's own. Then global average pooling to the
    128-d bottleneck ``z`` (the references' ``post`` features; their ``fc`` is our
    task head). Initialisation as theirs: Kaiming-normal fan-out convolution
    weights (the convolution biases keep torch's default), batch-norm weight 1 and bias 0.
    The parameter count without ``fc`` is 529,920 (both variants).
    """

    def __init__(self, input_shape: tuple[int, ...], last_activation: str = "tanh"):
        super().__init__()
        channels = input_shape[0]
        layers: list[nn.Module] = []
        widths = (16, 32, 64, 128)
        for index, (cin, cout) in enumerate(zip((channels, *widths[:-1]), widths)):
            last = index == len(widths) - 1
            activation = nn.Tanh() if last and last_activation == "tanh" else nn.ReLU(inplace=True)
            layers += [nn.Conv2d(cin, cout, 7, padding=3), nn.BatchNorm2d(cout), activation]
        self.extracter = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 128
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.extracter(x)).flatten(1)


class BiasedMnistCNN(SimpleConvNet):
    """IRENE's and EnD's SimpleConvNet (last activation Tanh): the encoder of the Biased-MNIST recipe (IRENE's)."""

    def __init__(self, input_shape: tuple[int, ...]):
        super().__init__(input_shape, last_activation="tanh")


class ReBiasCNN(SimpleConvNet):
    """ReBias's SimpleConvNet (last activation ReLU): the encoder behind ReBias's published vanilla numbers."""

    def __init__(self, input_shape: tuple[int, ...]):
        super().__init__(input_shape, last_activation="relu")


class SmallCNN(nn.Module):
    """A cheap CNN for 8x8 inputs on a CPU: three 3x3 convolutions (16, 32, 64), GAP to a 64-d bottleneck.

    Why this size: the default suite (every method on ``colored_digits`` and ``synthetic``, 3 seeds)
    must finish in about 5 minutes on two CPU cores. Measured there, one thread, 20 epochs of
    vanilla on the default ``colored_digits``: this CNN trains in 6.4 s to 0.82 test accuracy;
    at twice the width (32, 64, 128) it took 18.5 s for 0.87; the reference Biased-MNIST CNN
    (``biased_mnist_cnn``) is slower still.
    """

    def __init__(self, input_shape: tuple[int, ...]):
        super().__init__()
        channels = input_shape[0]
        layers: list[nn.Module] = []
        for cin, cout in zip((channels, 16, 32), (16, 32, 64)):
            layers += _conv_block(cin, cout, 3)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class LeNetStyle(nn.Module):
    """A LeNet-style CNN for 28x28 images on a CPU: two 5x5 convolutions (32, 64 channels, padding 2), each
    followed by ReLU and 2x2 max-pooling, then a 128-unit fully connected layer with ReLU: ``z`` (128-d).

    Written for the CPU settings of Biased-MNIST (``--recipe cpu``, ``--recipe cpu-converged``; docs/BIASED_MNIST.md): its receptive field covers a
    digit's strokes after two poolings (16 x 16 pixels), where ``small_cnn``'s three 3x3 convolutions see
    7 x 7 pixels and stay at chance on unbiased Biased-MNIST. Not a reference architecture: the references
    train the SimpleConvNet (``biased_mnist_cnn``, ``rebias_cnn``), about 10x slower per image on a CPU
    (``python -m removal_bench.benchmarks encoders``). Parameters: 454,944 (3 input channels).
    """

    def __init__(self, input_shape: tuple[int, ...], width: int = 128):
        super().__init__()
        channels, height, breadth = input_shape
        # Pooling before ReLU computes the same function and the same gradients as ReLU before pooling (both
        # are monotone; a window with no positive value gives 0 and no gradient either way) on a quarter of
        # the activations: 10-15% of a bf16 training step on one CPU thread (docs/BIASED_MNIST.md). The convolutions keep
        # their indices 0 and 3, so models saved before load unchanged.
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(inplace=True),
        )
        self.fc = nn.Sequential(nn.Linear(64 * (height // 4) * (breadth // 4), width), nn.ReLU(inplace=True))
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 without its classifier: a 512-d bottleneck. No pretrained weights."""

    def __init__(self, input_shape: tuple[int, ...]):
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        if input_shape[0] != 3:
            net.conv1 = nn.Conv2d(input_shape[0], 64, 7, 2, 3, bias=False)
        net.fc = nn.Identity()
        self.net = net
        self.out_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NormalisedInput(nn.Module):
    """uint8 images in, normalised float32 out, then the encoder: per batch, on the device."""

    def __init__(
        self, encoder: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], channels_last: bool = False
    ):
        super().__init__()
        self.encoder = encoder
        self.channels_last = channels_last  # hand the convolutions NHWC batches (CUDA + bf16: faster)
        self.out_dim = encoder.out_dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = (x.float() / 255.0 - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.encoder(x)


def load_weights(encoder: nn.Module, path: str) -> None:
    """Load a torchvision-style state dict (e.g. ``resnet18-f37072fd.pth``) into ``encoder``.

    A classifier's ``fc`` and a ``module.`` prefix (DataParallel) are ignored; anything else that does
    not fit is a UserError.
    """
    from pathlib import Path

    path = Path(path).expanduser()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as error:
        raise UserError(f"cannot read encoder weights from {path}: {' '.join(str(error).split())[:300]}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    target = getattr(encoder, "net", encoder)
    try:
        missing, unexpected = target.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise UserError(f"weights in {path} do not fit the encoder: {' '.join(str(error).split())[:300]}") from None
    if missing or unexpected:
        raise UserError(
            f"weights in {path} do not fit the encoder "
            f"(missing {', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'})"
        )


class FFBMLP(nn.Module):
    """FFB's tabular MLP (Han et al., ICLR 2024; ahxt/fair_fairness_benchmark@394f020 src/networks.py).

    Linear layers of 512, 256 and 64 units, each followed by ReLU and dropout;
    the 64-d output is ``z`` (FFB's ``h``, on which its head reads). No batch norm.
    Dropout is 0.5, the rate FFB's code applies: its ``MLP`` stores
    ``p_dropout=0.2`` (networks.py l. 64, 68) but calls ``F.dropout(x,
    training=self.training)`` without ``p`` (l. 77), so torch's default 0.5 is
    what trains (CHANGELOG.md: before 2026-12-01 this encoder used the stored 0.2).
    """

    def __init__(self, input_shape: tuple[int, ...], widths: tuple[int, ...] = (512, 256, 64), dropout: float = 0.5):
        super().__init__()
        (in_dim,) = input_shape
        layers: list[nn.Module] = []
        for cin, cout in zip((in_dim, *widths[:-1]), widths):
            layers += [nn.Linear(cin, cout), nn.ReLU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*layers)
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ENCODERS: dict[str, Callable[[tuple[int, ...]], nn.Module]] = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "lenet": LeNetStyle,
    "biased_mnist_cnn": BiasedMnistCNN,
    "rebias_cnn": ReBiasCNN,
    "resnet18": ResNet18,
    "ffb_mlp": FFBMLP,
}


BOTTLENECKS = ("default", "bounded")  # recipe field ``bottleneck``: the encoder as declared, or ending in BatchNorm + Tanh


class BoundedOutput(nn.Module):
    """An encoder whose output passes through BatchNorm1d and Tanh: the generic bounded bottleneck."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.out_dim
        self.bound = nn.Sequential(nn.BatchNorm1d(encoder.out_dim), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bound(self.encoder(x))


def bounded(encoder: nn.Module) -> nn.Module:
    """``encoder`` with its bottleneck ending in BatchNorm + Tanh (``recipe.bottleneck=bounded``).

    The SimpleConvNet of IRENE and EnD ends so (BatchNorm2d + Tanh before the pooling: z in [-1, 1]), and
    EnD's and IRENE's losses were designed on it; the benchmark's common encoders end in ReLU. Each encoder
    keeps its weights' names and only its last activation changes: a ReLU after a batch norm becomes Tanh
    (SimpleConvNet's ReLU variant, ``small_cnn``, ``mlp``); a ReLU after a linear layer becomes BatchNorm1d
    + Tanh (``lenet``'s fully connected layer, ``ffb_mlp``'s last layer, its dropout after). Any other encoder
    (``resnet18``, a plugin's) gets BatchNorm1d + Tanh on its output (:class:`BoundedOutput`).
    """
    if isinstance(encoder, SimpleConvNet):
        encoder.extracter[-1] = nn.Tanh()
    elif isinstance(encoder, LeNetStyle):
        encoder.fc = nn.Sequential(encoder.fc[0], nn.BatchNorm1d(encoder.out_dim), nn.Tanh())
    elif isinstance(encoder, MLP):
        encoder.net[-1] = nn.Tanh()
    elif isinstance(encoder, SmallCNN):
        encoder.features[-1] = nn.Tanh()
    elif isinstance(encoder, FFBMLP):
        *body, last, _relu, dropout = encoder.net
        encoder.net = nn.Sequential(*body, last, nn.BatchNorm1d(encoder.out_dim), nn.Tanh(), dropout)
    else:
        return BoundedOutput(encoder)
    return encoder


def build_encoder(name: str, input_shape: tuple[int, ...], bottleneck: str = "default") -> nn.Module:
    try:
        factory = ENCODERS[name]
    except KeyError:
        valid = ", ".join(sorted(ENCODERS))
        raise UserError(f"unknown encoder {name!r} (valid: {valid})") from None
    if bottleneck not in BOTTLENECKS:
        raise UserError(f"unknown bottleneck {bottleneck!r} (valid: {', '.join(BOTTLENECKS)})")
    encoder = factory(tuple(input_shape))
    return bounded(encoder) if bottleneck == "bounded" else encoder
