"""The post-hoc methods (methods/posthoc.py, methods/leace.py, methods/inlp.py).

Each test asserts a guarantee or its limit, on the synthetic data set whose
generative process is known: LEACE leaves no *linear* information about ``s``
on the distribution it was fitted on, but non-linear attackers still find
``s``; INLP's projection is an orthogonal projection after which a fresh
linear classifier of ``s`` is at chance on the training bottleneck; both keep
the task when ``s`` and ``y`` are independent.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from removal_bench import methods
from removal_bench.measuring.attackers import attack
from removal_bench.core.params import resolve
from removal_bench.running.trial import make_config, run_trial
from removal_bench.core.encoders import build_encoder
from removal_bench.methods.inlp import Inlp

SEED = 0
POST_HOC = ("leace", "inlp")
# Train and evaluation distributions equal (corr = eval_corr), s also written
# into the variance (non-linear only), and enough training rows that LEACE's
# finite-sample error leaves the linear attacker within noise of chance.
SAME_DISTRIBUTION = {"corr": 0.5, "eval_corr": 0.5, "s_nonlinear": 1.0, "n_train": 16000}
CHANCE = 0.5
# Balanced accuracy on 2,000 test rows has a standard error of about 0.011.
LINEAR_CHANCE_TOLERANCE = 0.035


def trial(method: str, options: dict) -> dict:
    return run_trial(make_config(method, "synthetic", options, seed=SEED, device="cpu"))


@pytest.fixture(scope="module")
def default_runs() -> dict[str, dict]:
    return {method: trial(method, {}) for method in ("vanilla", *POST_HOC)}


@pytest.fixture(scope="module")
def same_distribution_runs() -> dict[str, dict]:
    """Metrics of vanilla, LEACE and INLP; INLP's trained method and training split are kept too."""
    captured: dict = {}
    original = Inlp.fit_post_hoc

    def recording(self, x, y, s):
        original(self, x, y, s)
        captured.update(method=self, x=x, s=s)

    runs = {method: trial(method, SAME_DISTRIBUTION) for method in ("vanilla", "leace")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Inlp, "fit_post_hoc", recording)
        runs["inlp"] = trial("inlp", SAME_DISTRIBUTION)
    runs["inlp_fitted"] = captured
    return runs


def untrained(name: str) -> methods.Method:
    cls = methods.get_method(name)
    method = cls(build_encoder("mlp", (32,)), 2, 2, resolve(name, cls.hparams, {}), epochs=1)
    return method.eval()


# -- at the synthetic defaults (biased training, unbiased evaluation) ------------


@pytest.mark.parametrize("name", POST_HOC)
def test_linear_leakage_falls_below_vanilla(default_runs, name):
    assert default_runs[name]["leak_linear"] < default_runs["vanilla"]["leak_linear"] - 0.1


def test_leace_guarantee_does_not_survive_the_shift_to_unbiased_evaluation(default_runs):
    """Fitted where s predicts y (corr 0.8), the erasure leaves linear information on unbiased test data."""
    assert default_runs["leace"]["leak_linear"] > CHANCE + 3 * LINEAR_CHANCE_TOLERANCE


# -- train and evaluation from the same distribution ----------------------------


def test_leace_blinds_linear_attackers_but_not_non_linear_ones(same_distribution_runs):
    leace = same_distribution_runs["leace"]
    assert abs(leace["leak_linear"] - CHANCE) < LINEAR_CHANCE_TOLERANCE
    assert leace["leak_mlp"] > CHANCE + 0.15
    assert leace["leak_gbdt"] > CHANCE + 0.15
    assert leace["leakage"] > CHANCE + 0.15


@pytest.mark.parametrize("name", POST_HOC)
def test_refit_head_keeps_vanillas_accuracy(same_distribution_runs, name):
    assert abs(same_distribution_runs[name]["accuracy"] - same_distribution_runs["vanilla"]["accuracy"]) < 0.05


def test_inlp_projection_leaves_training_bottleneck_linearly_at_chance(same_distribution_runs):
    fitted = same_distribution_runs["inlp_fitted"]
    method, s = fitted["method"], fitted["s"].numpy()
    with torch.no_grad():
        z = method.embed(fitted["x"]).numpy()
    half = len(z) // 2
    score = attack("linear", z[:half], s[:half], z[half:], s[half:], z[half:], s[half:], 2, seed=SEED)
    assert abs(score.test_balanced_accuracy - CHANCE) < LINEAR_CHANCE_TOLERANCE

    projection = method.projection.double()
    assert torch.allclose(projection @ projection, projection, atol=1e-5)
    assert torch.allclose(projection, projection.T, atol=1e-6)
    # A binary s gives one direction per iteration.
    removed = len(projection) - torch.trace(projection).item()
    assert removed == pytest.approx(method.hp["iterations"], abs=1e-4)


# -- the method interface ----------------------------------------------------------


@pytest.mark.parametrize("name", POST_HOC)
def test_embed_is_raw_before_and_erased_after_fit_post_hoc(name):
    torch.manual_seed(SEED)
    method = untrained(name)
    x = torch.randn(600, 32)
    s = (x[:, 0] > 0).long()
    y = (x[:, 1] > 0).long()
    with torch.no_grad():
        raw = method.encoder(x)
        assert torch.equal(method.embed(x), raw)
        method.fit_post_hoc(x, y, s)
        erased = method.embed(x)
    assert not torch.allclose(erased, raw, atol=1e-3)
    assert method.private_logits(erased) is None


def test_leace_leaves_no_linear_correlation_on_its_fitting_data():
    """LEACE's guarantee is exact (INLP's, after a fixed number of iterations, is not)."""
    torch.manual_seed(SEED)
    method = untrained("leace")
    x = torch.randn(600, 32)
    s = (x[:, 0] > 0).long()
    with torch.no_grad():
        method.fit_post_hoc(x, (x[:, 1] > 0).long(), s)
        raw, erased = method.encoder(x).double(), method.embed(x).double()
    one_hot = F.one_hot(s, 2).double()

    def cross_covariance(z):
        return ((z - z.mean(0)).T @ (one_hot - one_hot.mean(0)) / len(x)).abs().max().item()

    assert cross_covariance(erased) < 1e-4 * cross_covariance(raw)


def test_refit_head_is_deterministic():
    heads = []
    for _ in range(2):
        torch.manual_seed(SEED)
        method = untrained("leace")
        x = torch.randn(400, 32)
        torch.manual_seed(SEED + len(heads))  # a different global state must not matter
        with torch.no_grad():
            method.fit_post_hoc(x, (x[:, 1] > 0).long(), (x[:, 0] > 0).long())
        heads.append(method.classifier.weight.clone())
    assert torch.equal(heads[0], heads[1])
    assert np.isfinite(heads[0].numpy()).all()


# -- INLP's linear SVM: the same estimator as sklearn's LinearSVC -----------------


def svm_objective(z: np.ndarray, s: np.ndarray, rows: np.ndarray, intercepts: np.ndarray, c: float) -> list[float]:
    """liblinear's primal (intercept penalised, balanced C; one-vs-rest: only the positive class weighted)."""
    classes, counts = np.unique(s, return_counts=True)
    balanced = len(s) / (len(classes) * counts)
    positives = [classes[1]] if len(classes) == 2 else list(classes)
    values = []
    for positive, w, b in zip(positives, rows, intercepts):
        target = np.where(s == positive, 1.0, -1.0)
        cost = c * balanced[np.searchsorted(classes, s)]
        if len(classes) > 2:
            cost = np.where(s == positive, cost, c)
        slack = np.clip(1 - target * (z @ w + b), 0, None)
        values.append(0.5 * (w @ w + b * b) + (cost * slack**2).sum())
    return values


@pytest.mark.parametrize("classes", [2, 3, 4])
def test_inlp_svm_solves_liblinears_problem_at_least_as_well_as_sklearn(classes):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    from removal_bench.methods.inlp import linear_svc

    rng = np.random.default_rng(classes)
    sizes = np.arange(1, classes + 1, dtype=float)
    s = rng.choice(classes, 3000, p=sizes / sizes.sum())  # unequal classes: the class weights matter
    z = rng.normal(size=(3000, 16)) * rng.uniform(0.2, 3, 16) + np.outer(s, rng.normal(size=16)) * 0.4 + 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = LinearSVC(C=0.1, class_weight="balanced", dual=False, max_iter=10000).fit(z, s)
    coef, intercept = (part.numpy() for part in linear_svc(torch.from_numpy(z), torch.from_numpy(s), 0.1))
    assert coef.shape == reference.coef_.shape and intercept.shape == reference.intercept_.shape
    for theirs, mine in zip(reference.coef_, coef):
        assert theirs @ mine / np.linalg.norm(theirs) / np.linalg.norm(mine) > 0.9999
    # Ours is the better minimiser of the same objective (liblinear stops at a 1e-4 relative gradient).
    mine = svm_objective(z, s, coef, intercept, 0.1)
    theirs = svm_objective(z, s, reference.coef_, reference.intercept_, 0.1)
    for value_mine, value_theirs in zip(mine, theirs):
        assert value_mine <= value_theirs * (1 + 1e-12)
        assert value_mine >= value_theirs * (1 - 1e-3)  # and the same problem: not a different, lower one


@pytest.mark.parametrize("classes, iterations", [(5, 1), (5, 10), (2, 12), (2, 30)])
def test_inlp_projection_stays_a_projection_when_iterations_outnumber_dimensions(classes, iterations):
    """One-vs-rest removes a direction per class and iteration; past d of them the bottleneck is gone, exactly."""
    from removal_bench.methods.inlp import nullspace_projection

    generator = torch.Generator().manual_seed(classes)
    s = torch.randint(0, classes, (2000,), generator=generator)
    z = torch.randn(2000, 12, generator=generator) + 0.5 * F.one_hot(s, classes).float() @ torch.randn(classes, 12, generator=generator)
    projection = nullspace_projection(z, s, classes, iterations, 1e-4, "svm", 0.1)
    directions = classes if classes > 2 else 1
    removed = min(12, directions * iterations)
    if removed == 12:
        assert torch.count_nonzero(projection) == 0  # not I - B B^T's rounding, which standardising recovers
    else:
        assert torch.allclose(projection @ projection, projection, atol=1e-6)
        assert len(projection) - torch.trace(projection).item() == pytest.approx(removed, abs=1e-4)


def test_inlp_that_removes_every_direction_leaves_attackers_at_chance():
    """Before the fix, 64 iterations on the 64-d bottleneck left rounding that standardised attackers read (0.8)."""
    metrics = run_trial(make_config("inlp", "synthetic", {"n_train": 2000}, {"iterations": 64}, seed=SEED, device="cpu", epochs=3))
    for attacker in ("linear", "mlp", "gbdt"):
        assert abs(metrics[f"leak_{attacker}"] - CHANCE) < LINEAR_CHANCE_TOLERANCE
