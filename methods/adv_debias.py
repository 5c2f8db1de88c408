"""Adversarial debiasing (Zhang, Lemoine and Mitchell, AIES 2018), as in AIF360's implementation.

An adversary learns ``s`` from the task head's output (for the equalised-odds
variant, from its outer product with the one-hot true ``y``); the predictor
(encoder and task head) steps along the task gradient with its component along
the adversary's gradient removed, and then against the adversary:

    predictor step: g - proj_h(g) - alpha * h,  g = grad L_P, h = grad L_A, L_P = CE(task_head(z), y), L_A = CE(adversary(task_head(z)), s)

The adversary reads softmax((1 + |c|) * task logits) with a learnt temperature
``c`` (AIF360's sigmoid((1 + |c|) * logit), generalised to several classes);
with ``equalized_odds`` it reads that vector's outer product with one-hot(y),
which for two classes spans AIF360's [p, p * y, p * (1 - y)]. The adversary is
linear on these features and minimises L_A at the same step, from the same
forward pass.

The projection (``projection``) is by default over the flattened
concatenation of every predictor parameter (``flat``), as the paper writes its
update for the weight vector W. ``per_tensor`` projects each parameter
tensor's gradient off that tensor's part of h, as AIF360 does
(Trusted-AI/AIF360 aif360/algorithms/inprocessing/adversarial_debiasing.py:
``grad -= tf.reduce_sum(grad * unit_adversary_grad) * unit_adversary_grad`` per
variable) and as fairlearn means to (fairlearn 0.15.0
adversarial/_pytorch_engine.py ``train_step``; its ``torch.inner`` of two
matrices sums a matrix of row products instead of the elementwise product, so
for weight matrices it removes another vector than the projection: see
docs/METHODS.md). A per-tensor step is orthogonal to each tensor's part of h,
hence to the whole h, and removes at least as much of g as the flat one.
Defaults:
alpha 0.1 is AIF360's ``adversary_loss_weight`` (the paper gives no single
value); the adversary's learning rate defaults to 0.05, the predictor's rate
under this benchmark's cheap recipe (AIF360 uses one rate for both); the
adversary's loss is computed in float32 under autocast;
AIF360 initialises ``c`` at 1. Measured on ``synthetic`` (SGD with momentum):
alpha 0.01 to 0.1 works, alpha 0.3 to 1 oscillates (the predictor flips the
adversary, head_acc below chance, leakage above vanilla's) and alpha 10 gives
up the task. The method constrains the task head's output, not ``z``: it
brings the prediction-only leakage (``floor_leakage``) to chance and lowers a
fresh attacker's leakage on ``z`` only a little.

``head_acc`` needs the adversary without the true label: with
``equalized_odds`` its features take y drawn from the task head's own
prediction, and since the adversary is linear in its features, averaging over
that draw is the same as feeding p outer p.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from removal_bench.core.params import LogUniform, Param
from removal_bench.methods.base import COMMON, Method, float32, full_precision, register

EPSILON = 1e-12


def projected_update(g: torch.Tensor, h: torch.Tensor, alpha: float, eps: float = EPSILON) -> torch.Tensor:
    """g - (g.h / (h.h + eps)) h - alpha h for flat vectors g (task gradient) and h (adversary's gradient)."""
    return g - (g @ h) / (h @ h + eps) * h - alpha * h


def projected_update_per_tensor(g: tuple[torch.Tensor, ...], h: tuple[torch.Tensor, ...], alpha: float) -> torch.Tensor:
    """:func:`projected_update` on each parameter tensor's part of g and h (AIF360's step), flattened and joined."""
    return torch.cat([projected_update(gi.reshape(-1), hi.reshape(-1), alpha) for gi, hi in zip(g, h)])


@register
class AdversarialDebiasing(Method):
    name = "adv_debias"
    description = "adversary on the task output; predictor gradient projected off the adversary's (Zhang et al. 2018)"
    hparams = {
        **COMMON,
        "alpha": Param(0.1, "weight of the step against the adversary", space=LogUniform(0.003, 3.0), low=0.0),
        "adversary_lr": Param(0.05, "SGD learning rate of the adversary", space=LogUniform(0.005, 0.5), low=0.0),
        "equalized_odds": Param(False, "the adversary also sees the true y (equalised odds)"),
        "projection": Param("flat", "flat: the task gradient projected off the adversary's over all predictor "
                            "parameters at once (the paper's W); per_tensor: off each parameter tensor's part "
                            "(AIF360's, fairlearn's)", choices=("flat", "per_tensor"), late=True),
    }
    strength = {"alpha": (0.003, 10.0)}
    curve_note = ("the predictor's step drops its component along the adversary's gradient at every alpha, "
                  "alpha 0 included: the projection changes the training whatever the strength")

    def build(self) -> None:
        features = self.num_classes * (self.num_classes if self.hp["equalized_odds"] else 1)
        self.adversary = nn.Linear(features, self.num_private)
        self.temperature = nn.Parameter(torch.ones(()))
        # AIF360 gives the adversary the predictor's optimiser settings: here the recipe's momentum and
        # weight decay, with a rate of its own.
        self.adversary_optimizer = self.sgd(self.adversary_parameters(), lr=self.hp["adversary_lr"],
                                            momentum=self.recipe.momentum, weight_decay=self.recipe.weight_decay)

    def adversary_parameters(self) -> list[nn.Parameter]:
        return list(self.adversary.parameters()) + [self.temperature]

    def adversary_logits(self, task_logits: torch.Tensor, y_distribution: torch.Tensor | None) -> torch.Tensor:
        """The adversary on the task logits; ``y_distribution`` (n, K): one-hot y, or None without equalised odds."""
        probabilities = F.softmax((1 + self.temperature.abs()) * task_logits, dim=1)
        if self.hp["equalized_odds"]:
            probabilities = (probabilities.unsqueeze(2) * y_distribution.unsqueeze(1)).flatten(1)
        return self.adversary(probabilities)

    def update(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        predictor = self.model_parameters()
        adversary = self.adversary_parameters()
        task_logits = self.classifier(self.encoder(x))
        task = F.cross_entropy(task_logits, y)
        with full_precision(task_logits):
            (logits32,) = float32(task_logits)
            one_hot = F.one_hot(y, self.num_classes).float() if self.hp["equalized_odds"] else None
            adversary_loss = F.cross_entropy(self.adversary_logits(logits32, one_hot), s)

        g = torch.autograd.grad(task, predictor, retain_graph=True)
        h_all = torch.autograd.grad(adversary_loss, predictor + adversary)
        h, adversary_grads = h_all[: len(predictor)], h_all[len(predictor) :]
        if self.hp["projection"] == "per_tensor":
            direction = projected_update_per_tensor(g, h, self.hp["alpha"])
        else:
            direction = projected_update(flatten(g), flatten(h), self.hp["alpha"])

        self.optimizer.zero_grad(set_to_none=True)
        offset = 0
        for parameter in predictor:
            size = parameter.numel()
            # empty_like keeps the parameter's memory format (channels_last for ResNets)
            parameter.grad = torch.empty_like(parameter).copy_(direction[offset : offset + size].view_as(parameter))
            offset += size
        self.optimizer.step()

        self.adversary_optimizer.zero_grad(set_to_none=True)
        for parameter, grad in zip(adversary, adversary_grads):
            parameter.grad = grad
        self.adversary_optimizer.step()
        return {"loss": task.detach(), "adversary_loss": adversary_loss.detach()}

    def private_logits(self, z: torch.Tensor) -> torch.Tensor:
        task_logits = self.task_logits(z)
        predicted = F.softmax(task_logits, dim=1) if self.hp["equalized_odds"] else None
        return self.adversary_logits(task_logits, predicted)


def flatten(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])
