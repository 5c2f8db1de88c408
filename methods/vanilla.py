"""Vanilla: the task alone, no removal. The baseline every method is measured against.

Loss: CE(task_head(z), y).
"""

from __future__ import annotations

import torch

from removal_bench.core.recipes import REBIAS_BIASED_MNIST
from removal_bench.methods.base import Method, register


@register
class Vanilla(Method):
    name = "vanilla"
    description = "cross-entropy only; no removal (the baseline)"
    # ReBias's Table 1 vanilla rows (the published baseline on Biased-MNIST) train this way.
    reference_recipes = {"biased_mnist": REBIAS_BIASED_MNIST}
    trains_as = "vanilla"  # LEACE and INLP (removal_bench.methods.posthoc) train exactly so; tests/test_reuse.py

    def update(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = self.task_loss(self.encoder(x), y)
        self.step(self.optimizer, loss)
        return {"loss": loss.detach()}
