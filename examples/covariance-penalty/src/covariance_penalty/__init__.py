"""A linear decorrelation penalty: the squared cross-covariance between the bottleneck ``z`` and one-hot ``s``.

    loss = CE(task_head(z), y) + lam * || Cov(z, onehot(s)) ||_F^2      (per batch)

At ``lam`` -> 0 it is vanilla; large ``lam`` makes every coordinate of ``z`` uncorrelated with ``s``
(what a linear attacker reads), not independent of it: a non-linear attacker may still recover ``s``.
The benchmark's attackers measure exactly that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from removal_bench.core.params import LogUniform, Param
from removal_bench.methods.base import COMMON, Method, float32, full_precision


class CovariancePenalty(Method):
    name = "cov_penalty"
    description = "penalise the squared cross-covariance between the bottleneck and one-hot s (linear decorrelation)"
    hparams = {
        **COMMON,
        "lam": Param(1.0, "weight of the penalty", space=LogUniform(0.01, 100.0), low=0.0),
    }
    # bench sweep --curve walks lam log-spaced over this range: about no removal to a destroyed task.
    strength = {"lam": (0.01, 1000.0)}

    def update(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        task = self.task_loss(z, y)
        with full_precision(z):
            (zf,) = float32(z)
            onehot = F.one_hot(s, self.num_private).float()
            covariance = (zf - zf.mean(0)).T @ (onehot - onehot.mean(0)) / len(zf)
            penalty = covariance.pow(2).sum()
        loss = task + self.hp["lam"] * penalty
        self.step(self.optimizer, loss)
        return {"loss": loss.detach(), "task_loss": task.detach(), "covariance": penalty.detach()}
