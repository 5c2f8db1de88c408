"""IRENE: Information Removal at the bottleNEck (Tartaglione, BMVC 2022), as in the authors' code.

A linear privacy head on the bottleneck learns ``s`` with cross-entropy on the
*detached* ``z``. The encoder and task head minimise

    loss = alpha * CE(task_head(z), y) + gamma * MI(s; softmax(privacy_head(z))) / log K_s

where MI is estimated from the batch's joint distribution
P(j, k) = mean_i 1[s_i = j] * p_ik. The MI gradient flows through the privacy
head into the encoder but never changes the head's weights (the reference code
zeroes the head's gradients before the head's own step; here the head's
weights enter the MI term detached, which is the same thing).
Defaults from the reference code: alpha 0.5, gamma 0.2, SGD lr 0.1 for the head,
momentum 0.9, weight decay 1e-4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.params import LogUniform, Param
from methods.base import COMMON, Method, register

EPSILON = 1e-15


def mutual_information(probabilities: torch.Tensor, private: torch.Tensor, num_private: int) -> torch.Tensor:
    """IRENE's normalised MI between true private labels and a head's softmax, on a batch.

    ``probabilities`` is (n, K) (rows sum to one), ``private`` the n labels in [0, K).
    Returns sum_jk P(j,k) log(P(j,k) / (P(j) P(k))) / log K, with P(j,k) the batch mean of
    1[s=j] p_k (clamped at 1e-15 as in the reference code).
    """
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
    }

    def build(self) -> None:
        self.privacy_head = nn.Linear(self.bottleneck_dim, self.num_private)
        self.head_optimizer = self.sgd(self.privacy_head.parameters(), lr=self.hp["head_lr"])

    def update(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        task = self.task_loss(z, y)
        attached = F.linear(z, self.privacy_head.weight.detach(), self.privacy_head.bias.detach())
        mi = mutual_information(F.softmax(attached, dim=1), s, self.num_private)
        loss = self.hp["alpha"] * task + self.hp["gamma"] * mi
        self.step(self.optimizer, loss)

        head_logits = self.privacy_head(z.detach())
        head_loss = F.cross_entropy(head_logits, s)
        self.step(self.head_optimizer, head_loss)
        return {"loss": loss.detach(), "task_loss": task.detach(), "mi": mi.detach(), "head_loss": head_loss.detach()}

    def private_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.privacy_head(z)
