"""INLP: Iterative Nullspace Projection (Ravfogel et al., ACL 2020), post hoc on the bottleneck.

Training is vanilla: loss = CE(task_head(z), y). After training, on the
training split: repeat ``iterations`` times { fit a linear classifier W_i of
``s`` on P z; P = I - B B^T with B an orthonormal basis of the row spaces of
W_1..W_i }, so that z -> P z is the orthogonal projection onto the
intersection of the classifiers' nullspaces; then refit the task head on P z
(:mod:`removal_bench.methods.posthoc`).

As in the paper's code (``src/debias.py``), each classifier is fitted on the
already projected data and the final P projects onto the intersection of all
nullspaces, with the basis orthonormalised (their ``scipy.linalg.orth``; here
an SVD). The classifier (``classifier``) is by default the camera-ready's
linear SVM, sklearn's ``LinearSVC(C=0.1, class_weight="balanced", dual=False)``
(shauli-ravfogel/nullspace_projection@e1edcc1,
``notebooks/debiased_representation.ipynb``; one direction per iteration for a
binary ``s``, one per class, one-vs-rest, otherwise), solved by Newton's method
here (:func:`linear_svc`: the same problem as liblinear's, to a tighter
tolerance, 10-25x faster; before, 64 iterations on Adult's 26,049 x 64
bottleneck took most of an INLP trial). ``classifier=logistic``
is a multinomial logistic regression, the family of the paper's controlled
demographic experiment (``SGDClassifier(loss="log")`` with its default L2
alpha 1e-4, ``src/deepmoji/deepmoji_debias.py``), fitted to convergence by
:func:`removal_bench.methods.posthoc.fit_linear_classifier`; its K rows are centred first (a
softmax is blind to a shared row), leaving the K - 1 directions that separate
the classes.
Unlike the paper there is no stopping on a development accuracy: the number
of iterations is the hyperparameter.

Default ``iterations``: 10, a documented choice, not the paper's: the
paper's deepmoji script removes 50 to 120 directions of a 300-d layer (a
sixth to 40 %); 10 of the 64-d synthetic bottleneck (16 %) is at the low end
of that ratio and already takes a linear classifier of ``s`` on the training
bottleneck to chance when ``s`` and ``y`` are independent in training
(tests/test_methods_posthoc.py). Where training is biased (``s`` predicts
``y``), every direction that carries ``y`` also predicts ``s``: further
iterations remove the task itself (synthetic, corr 0.8: 20 iterations take
task accuracy from 0.89 to 0.57), so more is not free.
"""

from __future__ import annotations

import torch

from removal_bench.core.params import IntUniform, Param
from removal_bench.methods.base import COMMON, register
from removal_bench.methods.posthoc import DEFAULT_L2, HEAD_HPARAMS, PostHocMethod, fit_linear_classifier


# Newton stops when the gradient norm falls below this fraction of its first value, or the objective stops moving
SVM_TOLERANCE = 1e-9
SVM_MAX_ITERATIONS = 100


def squared_hinge_svm(x: torch.Tensor, target: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """argmin_w 0.5 ||w||^2 + sum_i cost_i max(0, 1 - target_i w.x_i)^2 (liblinear's L2R_L2LOSS_SVC primal).

    ``target`` is +-1. Newton's method on the (once differentiable, strictly convex)
    objective: its Hessian on the rows inside the margin, ``I + 2 X_A^T diag(cost_A) X_A``,
    is d x d, so each step is one pass over the rows and one small solve; a backtracking
    (Armijo) line search keeps every step a descent. It usually ends in under 10 steps.
    """
    weight = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    identity = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)

    def objective(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        margin = x @ w
        slack = torch.clamp(1 - target * margin, min=0)
        return 0.5 * (w @ w) + (cost * slack * slack).sum(), margin

    value, margin = objective(weight)
    first_norm = None
    for _ in range(SVM_MAX_ITERATIONS):
        active = target * margin < 1
        rows, row_cost = x[active], cost[active]
        gradient = weight + 2 * rows.T @ (row_cost * (margin[active] - target[active]))
        norm = float(gradient.norm())
        first_norm = norm if first_norm is None else first_norm
        if norm <= SVM_TOLERANCE * first_norm or norm == 0.0:
            break
        hessian = identity + 2 * (rows.T * row_cost) @ rows
        step = -torch.linalg.solve(hessian, gradient)
        slope, size = float(gradient @ step), 1.0
        for _ in range(30):
            candidate, candidate_margin = objective(weight + size * step)
            if candidate <= value + 1e-4 * size * slope:
                break
            size /= 2
        else:  # no descent left along Newton's direction: at the optimum to rounding
            break
        progress = float(value - candidate)
        weight, value, margin = weight + size * step, candidate, candidate_margin
        if progress <= 1e-14 * abs(float(value)):  # the objective no longer moves in float64
            break
    return weight


def linear_svc(z: torch.Tensor, s: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``coef_`` and ``intercept_`` of sklearn's ``LinearSVC(C=c, class_weight="balanced", dual=False)`` fitted on (z, s).

    One row for a binary ``s`` (the larger label is the positive class), one per
    class (one-vs-rest) otherwise: each row is a direction to remove. The same
    estimator as sklearn's (liblinear's primal squared-hinge SVM, the intercept a
    penalised feature of value 1, balanced class weights ``n / (K n_k)``; in
    one-vs-rest the positive class's C is weighted and the rest's is plain ``c``,
    as liblinear does), solved here by :func:`squared_hinge_svm` instead of
    liblinear's trust-region Newton: 10-25x faster on 20,000 x 64 rows (2 to 5
    classes; ``python -m removal_bench.benchmarks inlp``), and converged to a 1e-9
    relative gradient where liblinear stops at 1e-4, so the rows agree with
    sklearn's to liblinear's tolerance (``tests/test_methods_posthoc.py``).
    """
    x = z.detach().double()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)  # intercept_scaling = 1
    classes, counts = torch.unique(s, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"INLP's classifier needs at least 2 classes of s, got {len(classes)}")
    balanced = len(s) / (len(classes) * counts.double())
    per_row = balanced[torch.searchsorted(classes, s)] * c
    rows = []
    for index in [1] if len(classes) == 2 else range(len(classes)):
        positive = s == classes[index]
        target = torch.where(positive, 1.0, -1.0).to(x.dtype)
        cost = per_row if len(classes) == 2 else torch.where(positive, per_row, torch.full_like(per_row, c))
        rows.append(squared_hinge_svm(x, target, cost))
    solution = torch.stack(rows)
    return solution[:, :-1], solution[:, -1]


def svm_directions(z: torch.Tensor, s: torch.Tensor, c: float) -> torch.Tensor:
    """The weight rows of :func:`linear_svc`: the directions one INLP iteration removes."""
    return linear_svc(z, s, c)[0]


def nullspace_projection(
    z: torch.Tensor, s: torch.Tensor, num_private: int, iterations: int, l2: float,
    classifier: str = "logistic", svm_c: float = 0.1,
) -> torch.Tensor:
    """INLP's projection matrix (d x d, symmetric, idempotent) fitted on (z, s)."""
    dimension = z.shape[1]
    z = z.double()
    identity = torch.eye(dimension, dtype=z.dtype, device=z.device)
    basis = torch.zeros(dimension, 0, dtype=z.dtype, device=z.device)
    projection = identity
    for _ in range(iterations):
        if classifier == "svm":
            directions = svm_directions(z @ projection, s, svm_c).T
        else:
            weight = fit_linear_classifier((z @ projection).float(), s, num_private, l2).weight.double()
            directions = (weight - weight.mean(dim=0)).T
        # Already in the nullspace up to rounding; removing what is left keeps the basis orthonormal.
        scale = float(directions.norm(dim=0).max())
        residual = directions - basis @ (basis.T @ directions)
        vectors, singular, _ = torch.linalg.svd(residual, full_matrices=False)
        # New directions are those the fitted classifiers hold beyond rounding. Judged against the classifiers'
        # own size, not the residual's: once the basis spans z's space the residual is rounding alone, and
        # adding it would leave a basis of more than d columns and P = I - B B^T no projection at all.
        keep = singular > scale * max(residual.shape) * torch.finfo(torch.float32).eps
        if not bool(keep.any()):
            break
        basis = torch.cat([basis, vectors[:, keep]], dim=1)[:, :dimension]
        if basis.shape[1] == dimension:  # everything removed: exactly zero, not I - B B^T's rounding, which a
            return torch.zeros_like(identity)  # standardising attacker would scale back up into all of z
        projection = identity - basis @ basis.T
    return projection


@register
class Inlp(PostHocMethod):
    name = "inlp"
    description = "vanilla training, then iterative nullspace projection of z and a refit head (Ravfogel et al. 2020)"
    hparams = {
        **COMMON,
        **HEAD_HPARAMS,
        "iterations": Param(
            10, "linear classifiers of s whose nullspaces z is projected onto", space=IntUniform(1, 32), low=1
        ),
        "classifier": Param("svm", "INLP's classifiers of s: svm (LinearSVC, C svm_c, balanced classes; the "
                            "camera-ready's) or logistic (multinomial, L2 classifier_l2)", choices=("svm", "logistic")),
        "svm_c": Param(0.1, "C of the LinearSVC classifiers", low=1e-9),
        "classifier_l2": Param(DEFAULT_L2, "L2 penalty of the logistic classifiers: mean CE + l2 ||W||^2 / 2", low=0.0),
    }
    # One direction per binary classifier, one per class otherwise: 64 empties the 64-d bottlenecks for a
    # binary s, 7 for a 10-class one (nullspace_projection then returns exactly zero).
    strength = {"iterations": (1, 64)}

    trains_as = "vanilla"  # build only adds an empty buffer: vanilla's training (removal_bench.methods.base.training_identity)

    def build(self) -> None:
        super().build()
        self.register_buffer("projection", None)

    def fit_eraser(self, z: torch.Tensor, s: torch.Tensor) -> None:
        projection = nullspace_projection(z, s, self.num_private, self.hp["iterations"], self.hp["classifier_l2"],
                                          self.hp["classifier"], self.hp["svm_c"])
        self.projection = projection.float()

    def erase(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.projection
