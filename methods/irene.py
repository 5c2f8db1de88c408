"""IRENE: Information Removal at the bottleNEck (Tartaglione, BMVC 2022), as in the authors' code.

A linear privacy head on the bottleneck learns ``s`` with cross-entropy on the
*detached* ``z``. The encoder and task head minimise

    loss = alpha * CE(task_head(z), y) + gamma * MI(s; softmax(privacy_head(z))) / log K_s

where MI is estimated from the batch's joint distribution
P(j, k) = mean_i 1[s_i = j] * p_ik. Two versions of the authors' code
(enzotarta/irene) differ in what the MI term does to the head, and both are here
(hyperparameter ``variant``):

- ``paper`` (default; commit c7b74ed, the code released with the paper): one
  backward of ``alpha * CE + CE_priv + gamma * MI``, so the MI gradient also
  moves the privacy head's weights (the head learns ``s`` and, at the same step,
  is pushed towards a prediction independent of ``s``);
- ``split`` (commit aec198c, 2023, "MI not updating PH"): the MI gradient flows
  through the head into the encoder but never changes the head's weights (the
  code zeroes the head's gradients before the head's own backward; here the
  head's weights enter the MI term detached, which is the same thing).

Both versions step the encoder, task head and privacy head once per batch from
the same forward pass. The MI is computed in float32 with autocast off: in bf16
the joint's product rounds a batch MI of 1.8e-5 to 2.8e-3.
Defaults from the reference code (train.py): alpha 0.5, gamma 0.2; the privacy
head's SGD: lr 0.1 (``lr_priv``), momentum 0.9, weight decay 1e-4, not scheduled
(only the main optimiser is). The main optimiser and its schedule are the
training recipe's (removal_bench.core.recipes.IRENE_BIASED_MNIST / IRENE_CELEBA are the
paper's, declared here as its reference recipes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from removal_bench.core.params import LogUniform, Param
from removal_bench.core.recipes import IRENE_BIASED_MNIST, IRENE_CELEBA
from removal_bench.methods.base import COMMON, Method, float32, full_precision, register

EPSILON = 1e-15


def mutual_information(probabilities: torch.Tensor, private: torch.Tensor, num_private: int) -> torch.Tensor:
    """IRENE's normalised MI between true private labels and a head's softmax, on a batch.

    ``probabilities`` is (n, K) (rows sum to one), ``private`` the n labels in [0, K).
    Returns sum_jk P(j,k) log(P(j,k) / (P(j) P(k))) / log K, with P(j,k) the batch mean of
    1[s=j] p_k (clamped at 1e-15 as in the reference code). Always float32, autocast or not.
    """
    with full_precision(probabilities):
        (probabilities,) = float32(probabilities)
        one_hot = F.one_hot(private, num_classes=num_private).to(probabilities.dtype)
        joint = torch.clamp(one_hot.T @ probabilities, min=EPSILON) / len(private)
        marginal_private = joint.sum(dim=1, keepdim=True)
        marginal_head = joint.sum(dim=0, keepdim=True)
        marginals = torch.clamp(marginal_private @ marginal_head, min=EPSILON)
        return (joint * torch.log(joint / marginals)).sum() / math.log(num_private)


@register
class Irene(Method):
    name = "irene"
    description = "privacy head on z; encoder minimises the head's MI with s (Tartaglione 2022)"
    hparams = {
        **COMMON,
        "alpha": Param(0.5, "weight of the task cross-entropy", low=0.0),
        "gamma": Param(0.2, "weight of the mutual information", space=LogUniform(0.01, 10.0), low=0.0),
        "head_lr": Param(0.1, "SGD learning rate of the privacy head", space=LogUniform(0.01, 0.5), low=0.0),
        "variant": Param("paper", "paper: one backward, MI also moves the head (c7b74ed); "
                         "split: the head ignores MI (aec198c)", choices=("paper", "split")),
    }
    reference_recipes = {"biased_mnist": IRENE_BIASED_MNIST, "celeba": IRENE_CELEBA}
    strength = {"gamma": (1e-4, 100.0)}
    # The curve trains the task at full weight: at the paper's alpha 0.5 every strength halves the task's
    # learning rate, and IRENE at gamma 0 is not vanilla (PROTOCOL.md, "Strength curves").
    curve_fixed = {"alpha": 1.0}

    def build(self) -> None:
        self.privacy_head = nn.Linear(self.bottleneck_dim, self.num_private)
        self.head_optimizer = self.sgd(self.privacy_head.parameters(), lr=self.hp["head_lr"], momentum=0.9, weight_decay=1e-4)

    def update(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        task = self.task_loss(z, y)
        paper = self.hp["variant"] == "paper"
        with full_precision(z):
            (z32,) = float32(z)
            weight, bias = self.privacy_head.weight, self.privacy_head.bias
            if not paper:
                weight, bias = weight.detach(), bias.detach()
            mi = mutual_information(F.softmax(F.linear(z32, weight, bias), dim=1), s, self.num_private)
            head_loss = F.cross_entropy(self.privacy_head(z32.detach()), s)
        loss = self.hp["alpha"] * task + self.hp["gamma"] * mi
        self.optimizer.zero_grad(set_to_none=True)
        self.head_optimizer.zero_grad(set_to_none=True)
        (loss + head_loss).backward()  # head_loss reads the detached z: it reaches the head only
        self.optimizer.step()
        self.head_optimizer.step()
        return {"loss": loss.detach(), "task_loss": task.detach(), "mi": mi.detach(), "head_loss": head_loss.detach()}

    def private_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.privacy_head(z)
