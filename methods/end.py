"""EnD: Entangling and Disentangling deep representations (Tartaglione, Barbano and Grangetto, CVPR 2021).

On the L2-normalised bottleneck, samples that share the private label are
pushed towards orthogonality (disentangling) and samples that share the target
but not the private label are pulled together (entangling):

    loss = CE(task_head(z), y) + alpha * mean_{i<j, s_i=s_j} |cos(z_i, z_j)| - beta * mean_{i<j, y_i=y_j, s_i!=s_j} (1 + cos(z_i, z_j)) / 2

A term whose set of pairs is empty in a batch is 0. The entangling term is the
authors' similarity (1 + cos) / 2, in [0, 1]: their code minimises
beta * (1 - that mean), which has the same gradient, so their beta carries over
as it is. Differences from the authors' code (EIDOSLAB/entangling-disentangling-bias,
EnD.py and models.py), both documented choices: it takes the absolute value of
each private class's *sum* of cosines rather than of each cosine (the same on a
ReLU bottleneck, whose cosines are never negative); and its task head reads
the normalised features, while here the task head and the attackers read ``z``
itself and only the regulariser sees it normalised.
Defaults from the authors' ``src/configs.py`` (commit b095648): alpha 0.1,
beta 0.1. Their README searches both in [0, 1] for rho <= 0.997 and in [0, 50]
at rho 0.999 (``sweeps/biased_mnist_abs.yaml`` draws uniform(0, 1)); the search
spaces here are log-uniform over [0.01, 50], which reaches both. The cosines are
computed in float32 with autocast off. Their recipe (Adam 1e-3, step decay,
batch 256, 80 epochs) is declared as this method's reference recipe for
``biased_mnist`` (removal_bench.core.recipes.END_BIASED_MNIST). On ``synthetic``, alpha is
the strength to sweep (alpha 1 removes far more than 0.1 at equal accuracy);
beta 1 undoes much of it there (the prediction itself leaks more).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from removal_bench.core.params import LogUniform, Param
from removal_bench.core.recipes import END_BIASED_MNIST
from removal_bench.methods.base import COMMON, Method, float32, full_precision, register


def _pair_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the pairs i < j where ``mask`` holds; 0 where there is none."""
    pairs = torch.triu(mask, diagonal=1).to(values.dtype)
    return (values * pairs).sum() / pairs.sum().clamp(min=1.0)


def cosine_matrix(z: torch.Tensor) -> torch.Tensor:
    """Pairwise cosines of the rows of ``z``, in float32 whatever autocast says."""
    with full_precision(z):
        (z,) = float32(z)
        normalised = F.normalize(z.flatten(1), dim=1)
        return normalised @ normalised.T


def disentangling_term(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Mean |cos(z_i, z_j)| over pairs of distinct samples with the same private label."""
    return _pair_mean(cosine_matrix(z).abs(), s[:, None] == s[None, :])


def entangling_term(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Mean (1 + cos(z_i, z_j)) / 2 over pairs with the same target and different private labels."""
    return _pair_mean((1 + cosine_matrix(z)) / 2, (y[:, None] == y[None, :]) & (s[:, None] != s[None, :]))


@register
class EnD(Method):
    name = "end"
    description = "orthogonalise same-s samples, align same-y different-s samples on z (Tartaglione et al. 2021)"
    hparams = {
        **COMMON,
        "alpha": Param(0.1, "weight of the disentangling term", space=LogUniform(0.01, 50.0), low=0.0),
        "beta": Param(0.1, "weight of the entangling term (maximised)", space=LogUniform(0.01, 50.0), low=0.0),
    }
    strength = {"alpha": (1e-3, 100.0), "beta": (1e-3, 100.0)}  # tied: both terms grow together
    reference_recipes = {"biased_mnist": END_BIASED_MNIST}

    def update(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        task = self.task_loss(z, y)
        disentangle = disentangling_term(z, s)
        entangle = entangling_term(z, y, s)
        loss = task + self.hp["alpha"] * disentangle - self.hp["beta"] * entangle
        self.step(self.optimizer, loss)
        return {
            "loss": loss.detach(),
            "task_loss": task.detach(),
            "disentangle": disentangle.detach(),
            "entangle": entangle.detach(),
        }
