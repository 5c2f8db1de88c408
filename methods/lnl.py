"""Learning Not to Learn (Kim, Kim, Kim, Kim and Kim, CVPR 2019), as in the authors' code.

A bias predictor (one hidden layer) on the bottleneck. This is not the authors'
design: their predictors (one per colour channel) read an early 32-channel
convolutional feature map of their network (feidfoe/learning-not-to-learn@0e19ab6,
trainer.py ``models.Predictor(input_ch=32)``), while here the predictor reads
``z``, the representation the benchmark evaluates, so that any encoder can be
used. Each step has two parts:
the encoder and task head minimise the task loss plus the predictor's negative
entropy, which makes the predictor uncertain; then the predictor learns ``s``
while a gradient reversal layer sends the opposite gradient, scaled by mu, into
the encoder:

    encoder, task head: CE(task_head(z), y) + lambda * mean_i sum_k p_ik log p_ik, p = softmax(predictor(z));  predictor: CE(predictor(GRL_mu(z)), s)

As in the authors' code (feidfoe/learning-not-to-learn, trainer.py), the first
part does not update the predictor, and the second part recomputes ``z`` after
the first update and steps both the encoder and the predictor. Defaults from
that code: lambda 0.01 (``_lambda``) and mu 0.1 (its reversal layer returns
``grad_output.neg() * 0.1``). As there, the predictor has an optimiser of its
own with the encoder's settings and schedule (here: the recipe's). The authors'
own recipe (SGD 0.01, momentum 0.9, weight decay 5e-4, batch 128, x0.1 every 40
of 100 epochs; option.py) is for their coloured MNIST (colour noise
``color_var``), a different protocol from Biased-MNIST, so no dataset here
takes it as its reference (removal_bench.core.recipes.LNL_COLORED_MNIST holds it).
On ``synthetic``, mu 1 or more removes less than 0.1 does (the encoder flips
``s`` instead of erasing it); the entropy weight lambda is the strength to sweep.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from removal_bench.core.params import LogUniform, Param
from removal_bench.methods.base import COMMON, Method, float32, full_precision, register, reverse_gradient


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of sum_k p_k log p_k of softmax(logits): -log K when uniform, 0 when certain."""
    log_probabilities = F.log_softmax(logits, dim=1)
    return (log_probabilities.exp() * log_probabilities).sum(dim=1).mean()


@register
class LearningNotToLearn(Method):
    name = "lnl"
    description = "bias predictor on z, made uncertain (entropy) and reversed into the encoder (Kim et al. 2019)"
    hparams = {
        **COMMON,
        "lambda": Param(0.01, "weight of the bias predictor's negative entropy", space=LogUniform(0.001, 3.0), low=0.0),
        "mu": Param(0.1, "scale of the reversed gradient into the encoder", space=LogUniform(0.01, 3.0), low=0.0),
        "predictor_hidden": Param(64, "width of the bias predictor's hidden layer", low=1),
    }
    # The entropy weight and the reversal's scale in step: with mu held at the reference 0.1 the weakest point
    # already removed most of what the curve removes (synthetic). Even at lambda = mu = 0 LNL is not vanilla:
    # the second part steps the encoder again (momentum, weight decay) as the authors' code does.
    strength = {"lambda": (1e-4, 10.0), "mu": (1e-3, 1.0)}
    curve_note = ("each step updates the encoder twice, as the authors' code does (the bias predictor's step "
                  "applies momentum and weight decay even with nothing to reverse): at lambda = mu = 0 it learns "
                  "faster than vanilla")

    def build(self) -> None:
        hidden = self.hp["predictor_hidden"]
        self.bias_predictor = nn.Sequential(
            nn.Linear(self.bottleneck_dim, hidden), nn.ReLU(), nn.Linear(hidden, self.num_private)
        )
        self.predictor_optimizer = self.recipe.build_optimizer(self.bias_predictor.parameters())

    def scheduled_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer, self.predictor_optimizer]  # the authors schedule both alike

    def update(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        task = self.task_loss(z, y)
        with full_precision(z):
            entropy_term = negative_entropy(self.bias_predictor(*float32(z)))
        loss = task + self.hp["lambda"] * entropy_term
        self.step(self.optimizer, loss)

        reversed_z = reverse_gradient(self.encoder(x), self.hp["mu"])
        with full_precision(reversed_z):
            bias_loss = F.cross_entropy(self.bias_predictor(*float32(reversed_z)), s)
        self.optimizer.zero_grad(set_to_none=True)
        self.predictor_optimizer.zero_grad(set_to_none=True)
        bias_loss.backward()
        self.optimizer.step()
        self.predictor_optimizer.step()
        return {
            "loss": loss.detach(),
            "task_loss": task.detach(),
            "negative_entropy": entropy_term.detach(),
            "bias_loss": bias_loss.detach(),
        }

    def private_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.bias_predictor(z)
