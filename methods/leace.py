"""LEACE: LEAst-squares Concept Erasure (Belrose et al., NeurIPS 2023), post hoc on the bottleneck.

Training is vanilla: loss = CE(task_head(z), y). After training, the affine
eraser of least squared displacement that makes the bottleneck linearly
uncorrelated with ``s`` on the training split,

    r(z) = z - W^+ P_{W Sigma_zs} W (z - E[z]),  W = Sigma_zz^{-1/2},  so that Cov(r(z), onehot(s)) = 0,

is fitted with EleutherAI's ``concept-erasure`` package (``LeaceFitter``, ``s``
one-hot as the concept), and the task head is refit on r(z)
(:mod:`removal_bench.methods.posthoc`). No linear classifier of ``s`` on r(z) beats a
constant one *on the fitting distribution* (the paper's Theorem); a
non-linear attacker, or a linear one on a shifted evaluation distribution,
may still recover ``s``: the attackers of PROTOCOL.md are there to show it.

Defaults: the package's own (``affine``, covariance ``shrinkage``,
``svd_tol`` 0.01), except ``constrain_cov_trace``, which is switched off: it
caps the variance of the erased features for feeding them back into a frozen
network, by mixing in an orthogonal projection that does not erase exactly,
and here the head is refit anyway. The statistics are accumulated in float64.
``head_l2``: see :mod:`removal_bench.methods.posthoc`.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

with warnings.catch_warnings():  # concept-erasure 0.2 calls torch.jit.script at import, deprecated in torch 2.10+
    warnings.simplefilter("ignore", FutureWarning)
    from concept_erasure import LeaceEraser, LeaceFitter

from removal_bench.methods.base import COMMON, register
from removal_bench.methods.posthoc import HEAD_HPARAMS, PostHocMethod


@register
class Leace(PostHocMethod):
    name = "leace"
    description = "vanilla training, then LEACE on z and a refit head (Belrose et al. 2023)"
    hparams = {**COMMON, **HEAD_HPARAMS}

    def fit_eraser(self, z: torch.Tensor, s: torch.Tensor) -> None:
        concept = F.one_hot(s, num_classes=self.num_private).double()
        fitted = LeaceFitter.fit(z.double(), concept, constrain_cov_trace=False).eraser
        self.eraser = LeaceEraser(
            proj_left=fitted.proj_left.float(),
            proj_right=fitted.proj_right.float(),
            bias=None if fitted.bias is None else fitted.bias.float(),
        )

    def erase(self, z: torch.Tensor) -> torch.Tensor:
        return self.eraser(z)
