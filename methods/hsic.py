"""HSIC penalty: a Hilbert-Schmidt independence criterion between ``z`` and ``s``.

HSIC (Gretton, Bousquet, Smola and Schoelkopf, ALT 2005) penalised during
training, as ReBias does (Bahng et al., ICML 2020; clovaai/rebias@79d1d1d
criterions/hsic.py, ``RbfHSIC`` with ``algorithm='unbiased'``, the estimator of
its paper):

    loss = CE(task_head(z), y) + lambda * HSIC_1(K, L)
    HSIC_1 = [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n (n-3))   (Song et al., JMLR 2012)

with K~, L~ the kernel matrices with their diagonals set to zero, RBF kernels
on both sides: K_ij = exp(-|z_i - z_j|^2 / (2 sigma^2)) and L_ij =
exp(-|e(s_i) - e(s_j)|^2 / 2) on the one-hot private labels (ReBias's
``rbf_sigma_y`` 1). On one-hot labels that RBF kernel is 0.37 + 0.63 * 1[s_i =
s_j], an affine function of the delta kernel, and HSIC ignores the constant:
this is the delta kernel's HSIC times 0.63. ``estimator=biased`` gives the
biased tr(K H L H) / (n - 1)^2 instead.

What differs from ReBias on purpose: ReBias measures the dependence between
two networks' features (the biased network ``g`` stands in for the bias); here
the private label is known, so ``L`` is built on ``s`` itself. ``sigma`` on
``z`` is the median pairwise distance in the batch (the median heuristic, one
of ReBias's options; its Biased-MNIST default is a fixed 1), detached so that
the encoder cannot shrink the penalty by moving the bandwidth. ReBias zeroes the
diagonal by subtracting ``diag(K)`` row-wise, which for an RBF kernel (unit diagonal) only
shifts K~ by a constant; here the diagonal is zeroed exactly. Kernels and
estimator run in float32 with autocast off.
With ``normalized`` the penalty is HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).
The default lambda 10 was chosen by measurement on ``synthetic`` (seeds 0 to
2) with the biased estimator and the delta kernel (lambda 1 removes little, 10
and 30 lower leakage at unchanged accuracy, 100 costs 10 to 15 points of
accuracy); the unbiased RBF estimator is about 0.63 times that scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from removal_bench.core.params import LogUniform, Param
from removal_bench.core.recipes import REBIAS_BIASED_MNIST
from removal_bench.methods.base import COMMON, Method, float32, full_precision, register

EPSILON = 1e-12


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1)
    squared_norms = (x * x).sum(dim=1)
    return (squared_norms[:, None] + squared_norms[None, :] - 2 * x @ x.T).clamp(min=0.0)


def gaussian_kernel(z: torch.Tensor) -> torch.Tensor:
    """exp(-d^2 / (2 sigma^2)) with sigma the (detached) median distance between distinct samples."""
    with full_precision(z):
        (z,) = float32(z)
        squared = squared_distances(z)
        n = len(z)
        with torch.no_grad():
            upper = torch.triu_indices(n, n, offset=1, device=z.device)
            sigma = squared[upper[0], upper[1]].sqrt().median().clamp(min=1e-6)
        return torch.exp(-squared / (2 * sigma**2))


def rbf_label_kernel(labels: torch.Tensor, num_classes: int, sigma: float = 1.0) -> torch.Tensor:
    """ReBias's RBF kernel on one-hot labels: exp(-|e_i - e_j|^2 / (2 sigma^2))."""
    one_hot = F.one_hot(labels, num_classes).float()
    return torch.exp(-squared_distances(one_hot) / (2 * sigma**2))


def delta_kernel(labels: torch.Tensor) -> torch.Tensor:
    return (labels[:, None] == labels[None, :]).float()


def hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased estimator tr(K H L H) / (n - 1)^2 of two n x n kernel matrices."""
    with full_precision(k):
        k, l = float32(k, l)
        n = k.shape[0]
        centred = k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()  # H K H
        # tr(K H L H) = tr(H K H L) = sum_ij (H K H)_ij L_ij for symmetric L
        return (centred * l).sum() / (n - 1) ** 2


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Song et al.'s unbiased estimator HSIC_1 of two n x n kernel matrices (n >= 4)."""
    with full_precision(k):
        k, l = float32(k, l)
        n = k.shape[0]
        off_diagonal = 1.0 - torch.eye(n, device=k.device)
        k, l = k * off_diagonal, l * off_diagonal
        value = (
            (k * l).sum()  # tr(K~ L~) for symmetric matrices
            + k.sum() * l.sum() / ((n - 1) * (n - 2))
            - 2.0 * (k.sum(dim=0) * l.sum(dim=0)).sum() / (n - 2)
        )
        return value / (n * (n - 3))


def normalized(estimator, k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    return estimator(k, l) / (estimator(k, k) * estimator(l, l)).clamp(min=EPSILON).sqrt()


def normalized_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    return normalized(hsic, k, l)


@register
class HsicPenalty(Method):
    name = "hsic"
    description = "HSIC between z and s (RBF kernels, ReBias's unbiased estimator) as a penalty (Bahng et al. 2020)"
    hparams = {
        **COMMON,
        "lambda": Param(10.0, "weight of the HSIC penalty", space=LogUniform(0.1, 300.0), low=0.0),
        "normalized": Param(False, "penalise HSIC(K,L) / sqrt(HSIC(K,K) HSIC(L,L)) instead"),
        "estimator": Param("unbiased", "unbiased: Song et al.'s HSIC_1 (ReBias); biased: tr(KHLH)/(n-1)^2",
                           choices=("unbiased", "biased")),
    }
    strength = {"lambda": (0.01, 1000.0)}
    reference_recipes = {"biased_mnist": REBIAS_BIASED_MNIST}

    def update(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        task = self.task_loss(z, y)
        estimator = unbiased_hsic if self.hp["estimator"] == "unbiased" else hsic
        k, l = gaussian_kernel(z), rbf_label_kernel(s, self.num_private)
        dependence = normalized(estimator, k, l) if self.hp["normalized"] else estimator(k, l)
        loss = task + self.hp["lambda"] * dependence
        self.step(self.optimizer, loss)
        return {"loss": loss.detach(), "task_loss": task.detach(), "hsic": dependence.detach()}
