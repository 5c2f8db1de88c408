"""The interface every removal method implements, and the method registry.

A method is an ``nn.Module`` holding an encoder (input -> bottleneck ``z``), a
linear task head on ``z``, whatever heads of its own it needs, and its
optimiser(s). The trial loop (``bench.trial``) only calls:

- ``update(x, y, s)``: one training step on a batch, including the optimiser
  step; returns detached scalar tensors to log (no host synchronisation);
- ``end_epoch(epoch)``: learning-rate schedules and the like;
- ``fit_post_hoc(train)``: after training, for post-hoc methods (LEACE, INLP);
- ``embed(x)``: the evaluated bottleneck ``z`` (after erasure, if any);
- ``task_logits(z)``: the task head on ``z``;
- ``private_logits(z)``: the training-time privacy head or adversary, if any
  (logged as ``head_acc``, never called leakage).

Each method declares its hyperparameters in ``hparams`` (a dict of
:class:`bench.params.Param`, with defaults and a search space), starting from
:data:`COMMON`. Methods never import Ray or MLflow.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import Registry
from bench.params import LogUniform, Param

COMMON: dict[str, Param] = {
    "lr": Param(0.05, "SGD learning rate of encoder and task head", space=LogUniform(0.005, 0.2), low=0.0),
    "momentum": Param(0.9, "SGD momentum", low=0.0, high=1.0),
    "weight_decay": Param(1e-4, "SGD weight decay", low=0.0),
}


class Method(nn.Module):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    hparams: ClassVar[dict[str, Param]] = COMMON

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        num_private: int,
        hparams: dict[str, Any],
        epochs: int,
    ):
        super().__init__()
        self.encoder = encoder
        self.bottleneck_dim: int = encoder.out_dim
        self.num_classes = num_classes
        self.num_private = num_private
        self.hp = dict(hparams)
        self.epochs = epochs
        self.classifier = nn.Linear(self.bottleneck_dim, num_classes)
        self.build()
        self.optimizer = self.sgd(self.model_parameters())

    # -- construction hooks -------------------------------------------------
    def build(self) -> None:
        """Add the method's own modules (heads, adversaries)."""

    def model_parameters(self) -> list[nn.Parameter]:
        """Parameters of encoder and task head: what the main optimiser updates."""
        return list(self.encoder.parameters()) + list(self.classifier.parameters())

    def sgd(self, params, lr: float | None = None) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            params,
            lr=self.hp["lr"] if lr is None else lr,
            momentum=self.hp["momentum"],
            weight_decay=self.hp["weight_decay"],
        )

    # -- what the trial loop calls -----------------------------------------
    def update(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        """Called after each epoch (0-based)."""

    def fit_post_hoc(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> None:
        """Called once after training with the whole training split."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def task_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)

    def private_logits(self, z: torch.Tensor) -> torch.Tensor | None:
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task_logits(self.embed(x))

    # -- helpers for subclasses ---------------------------------------------
    @staticmethod
    def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def task_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.classifier(z), y)


REGISTRY: Registry[Method] = Registry("method")
register = REGISTRY.register
get_method = REGISTRY.lookup


class GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``-scale`` backward (Ganin and Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    return GradientReversal.apply(x, scale)
