"""What the post-hoc methods (LEACE, INLP) share: vanilla training, erasure, a refit head.

A post-hoc method trains like :class:`removal_bench.methods.vanilla.Vanilla` (cross-entropy
only). After training, :meth:`PostHocMethod.fit_post_hoc` computes the frozen
bottleneck on the whole training split, fits an eraser on (z, s), and refits
the linear task head on the erased bottlenecks, because the head trained on
the raw ``z`` reads directions that erasure may have moved. From then on
:meth:`~PostHocMethod.embed` returns the erased bottleneck, which is what the
attackers see (PROTOCOL.md: "for post-hoc methods z is the representation
after erasure").

Every linear classifier here (the refit task head, INLP's classifiers of
``s``) is the same convex fit, :func:`fit_linear_classifier`: multinomial
logistic regression by full-batch L-BFGS from zero weights, on the device and
deterministic without a seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from removal_bench.core.params import Param
from removal_bench.methods.vanilla import Vanilla

ENCODE_BATCH = 4096
LBFGS_ITERATIONS = 500

# sklearn's SGDClassifier default alpha (mean loss + alpha ||w||^2 / 2), which
# Ravfogel et al.'s deepmoji script uses for INLP's classifiers; it is also the
# SGD weight decay of COMMON, so the refit head is regularised like the one it replaces.
DEFAULT_L2 = 1e-4

HEAD_HPARAMS: dict[str, Param] = {
    "head_l2": Param(DEFAULT_L2, "L2 penalty of the refit task head: mean CE + l2 ||W||^2 / 2", low=0.0),
}


@torch.no_grad()
def encode(encoder: nn.Module, x: torch.Tensor, batch: int = ENCODE_BATCH) -> torch.Tensor:
    """The bottleneck of every row of ``x``, in batches, without gradients."""
    return torch.cat([encoder(x[start : start + batch]) for start in range(0, len(x), batch)])


def fit_linear_classifier(z: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float) -> nn.Linear:
    """Multinomial logistic regression of ``labels`` on ``z``: argmin mean CE + l2 ||W||^2 / 2.

    Full-batch L-BFGS with a strong-Wolfe line search from zero weights: the
    problem is convex, so the result does not depend on a seed. The bias is
    not penalised.
    """
    z = z.detach().float()
    head = nn.Linear(z.shape[1], num_classes).to(z.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=LBFGS_ITERATIONS,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(z), labels) + 0.5 * l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return head.requires_grad_(False)


class PostHocMethod(Vanilla):
    """Vanilla training, then an eraser fitted on the training bottleneck and a refit head.

    Subclasses implement :meth:`fit_eraser` (fit on (z, s), return nothing) and
    :meth:`erase` (apply it to a batch of ``z``). Not registered itself.
    """

    name = ""
    description = ""
    # Vanilla's training: build adds no module and embed is the encoder's until fit_post_hoc
    # (tests/test_reuse.py compares the per-epoch figures of vanilla, LEACE and INLP to the last bit).
    trains_as = "vanilla"

    def build(self) -> None:
        self.fitted = False

    def fit_eraser(self, z: torch.Tensor, s: torch.Tensor) -> None:
        raise NotImplementedError

    def erase(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit_post_hoc(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> None:
        z = encode(self.encoder, x)
        self.fit_eraser(z, s)
        self.fitted = True
        self.classifier = fit_linear_classifier(self.erase(z), y, self.num_classes, self.hp["head_l2"])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        return self.erase(z) if self.fitted else z
