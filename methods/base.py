"""The interface every removal method implements, and the method registry.

A method is an ``nn.Module`` holding an encoder (input -> bottleneck ``z``), a
linear task head on ``z``, whatever heads of its own it needs, and its
optimiser(s). The trial loop (``removal_bench.running.trial``) only calls:

- ``update(x, y, s)``: one training step on a batch, including the optimiser
  step; returns detached scalar tensors to log (no host synchronisation);
- ``end_epoch(epoch)``: learning-rate schedules and the like;
- ``fit_post_hoc(train)``: after training, for post-hoc methods (LEACE, INLP);
- ``embed(x)``: the evaluated bottleneck ``z`` (after erasure, if any);
- ``task_logits(z)``: the task head on ``z``;
- ``private_logits(z)``: the training-time privacy head or adversary, if any
  (logged as ``head_acc``, never called leakage).

Each method declares its hyperparameters in ``hparams`` (a dict of
:class:`removal_bench.core.params.Param`, with defaults and a search space), starting from
:data:`COMMON`. Methods never import Ray or MLflow.

The main optimiser (encoder and task head) and its learning-rate schedule are
not hyperparameters of a method: they belong to the training recipe
(:mod:`removal_bench.core.recipes`), by default the one of the dataset's reference, so that
methods are compared under equal training. A method keeps as hyperparameters
only what its authors set for its own parts (a head's learning rate, ...), and
may declare its paper's recipe per dataset in ``reference_recipes``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from removal_bench.core.registry import Registry
from removal_bench.core.params import Param, with_defaults
from removal_bench.core.recipes import Recipe

# What every method shares as hyperparameters: nothing since the training recipe
# (removal_bench.core.recipes) owns the optimiser; kept so that methods spell ``{**COMMON, ...}``.
COMMON: dict[str, Param] = {}


class Method(nn.Module):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    hparams: ClassVar[dict[str, Param]] = COMMON
    # The method's own paper's recipe per dataset name (used with ``--recipe reference``).
    reference_recipes: ClassVar[dict[str, Recipe]] = {}
    # The hyperparameter(s) that set how hard the method removes ``s``, each with a range from about
    # "no removal" to "task destroyed": ``bench sweep --curve`` walks them log-spaced, several in step.
    # Empty: the method has no strength (vanilla, LEACE) and its curve is one point.
    strength: ClassVar[dict[str, tuple[float, float]]] = {}
    # Hyperparameters a strength curve holds at other values than the defaults, so that its weakest point
    # trains like vanilla (IRENE: the task at full weight, alpha 1; its paper's alpha 0.5 halves the task's
    # learning rate at every strength). ``--set`` still overrides them. PROTOCOL.md, "Strength curves".
    curve_fixed: ClassVar[dict[str, Any]] = {}
    # Why the curve's weakest point does not train like vanilla, where it does not by the method's design
    # (the leaderboard prints it beside the curves); empty: it does, within seed noise (tests/test_curves.py).
    curve_note: ClassVar[str] = ""
    # Methods whose training does not depend on their hyperparameters and is the same as another's name it
    # (vanilla, LEACE, INLP: "vanilla"): within one invocation a training is then run once per dataset,
    # recipe and seed and reused (removal_bench.running.trial.reuse_path). None: every trial trains. It holds only for
    # the class that declares it and subclasses that override none of TRAINING_HOOKS (see training_identity).
    trains_as: ClassVar[str | None] = None

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        num_private: int,
        hparams: dict[str, Any],
        epochs: int,
        recipe: Recipe | None = None,
        steps_per_epoch: int = 1,
    ):
        super().__init__()
        self.encoder = encoder
        self.bottleneck_dim: int = encoder.out_dim
        self.num_classes = num_classes
        self.num_private = num_private
        self.hp = with_defaults(self.hparams, hparams)
        self.epochs = epochs
        self.recipe = recipe or Recipe()
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        head = NormalisedLinear if self.recipe.head == "normalised" else nn.Linear
        self.classifier = head(self.bottleneck_dim, num_classes)
        self.build()
        self.optimizer = self.recipe.build_optimizer(self.model_parameters())

    # -- construction hooks -------------------------------------------------
    def build(self) -> None:
        """Add the method's own modules (heads, adversaries)."""

    def model_parameters(self) -> list[nn.Parameter]:
        """Parameters of encoder and task head: what the main optimiser updates."""
        return list(self.encoder.parameters()) + list(self.classifier.parameters())

    @staticmethod
    def sgd(params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
        """An auxiliary optimiser (a head, an adversary), with the settings its authors give it."""
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def scheduled_optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimisers the recipe's schedule drives: the main one (the references schedule only it)."""
        return [self.optimizer]

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


class NormalisedLinear(nn.Linear):
    """A linear layer on the L2-normalised input (``recipe.head=normalised``): EnD's task head, which reads the
    pooled features through ``pattern_norm`` (EIDOSLAB/entangling-disentangling-bias@b095648 src/EnD.py l. 5-15,
    src/models.py ``simple_convnet``). Its state dict is a linear layer's."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(F.normalize(z, dim=1, eps=1e-12))


def float32(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors as float32, for a regulariser computed with autocast off.

    Under bf16 autocast (the ResNet-18 path on CUDA) a matrix product rounds to
    8 bits of mantissa: IRENE's joint ``one_hot.T @ p`` then turns a batch MI of
    1.8e-5 into 2.8e-3. Every regulariser (MI, HSIC kernels, EnD's cosines, the
    adversaries' losses) runs inside ``with full_precision(x):`` on these.
    """
    return tuple(t.float() if t.is_floating_point() else t for t in tensors)


def full_precision(reference: torch.Tensor):
    """A context that turns autocast off on ``reference``'s device type."""
    return torch.autocast(device_type=reference.device.type, enabled=False)


# What decides a training besides the recipe: a subclass that overrides one of these trains its own way.
TRAINING_HOOKS = ("build", "update", "end_epoch", "model_parameters", "scheduled_optimizers", "task_loss",
                  "embed", "task_logits", "forward")


def training_identity(cls: type[Method]) -> str | None:
    """``cls.trains_as`` where it is vouched for: declared by ``cls`` itself, or inherited through
    classes that override none of :data:`TRAINING_HOOKS` (a subclass of Vanilla with its own
    ``update`` does not train as vanilla unless it says so); None otherwise."""
    declarer = next((klass for klass in cls.__mro__ if "trains_as" in vars(klass)), None)
    if declarer is None or not vars(declarer)["trains_as"]:
        return None
    for hook in TRAINING_HOOKS:
        owner = next(klass for klass in cls.__mro__ if hook in vars(klass))
        if owner not in declarer.__mro__:  # defined below the class that vouched for the training
            return None
    return vars(declarer)["trains_as"]


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
