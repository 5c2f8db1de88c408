"""`bench sweep --curve`: strength curves planned from each method's declaration, resumed, and the leaderboard on them."""

import mlflow
import numpy as np
import pytest

from removal_bench import methods
from removal_bench.commands.cli import main
from removal_bench.core.errors import UserError
from removal_bench.running.sweep import SweepRequest, curve_configurations, plan_sweep, strength_values

SMALL = "synthetic:n_train=300:n_eval=200"


@pytest.mark.parametrize("name", sorted(methods.REGISTRY))
def test_every_strength_curve_is_log_spaced_from_weak_to_strong(name):
    declared = methods.REGISTRY[name].strength
    curve = strength_values(name, 8)
    if not declared:
        assert curve == [] and len(curve_configurations(name, {}, 8)) == 1  # vanilla, LEACE: one point
        return
    assert len(curve) >= 8
    for hparam, (low, high) in declared.items():
        values = np.array([point[hparam] for point in curve], dtype=float)
        assert values[0] == pytest.approx(low, rel=1e-2) and values[-1] == pytest.approx(high, rel=1e-2)
        assert np.all(np.diff(values) > 0)
        if methods.REGISTRY[name].hparams[hparam].type is float:  # equal ratios: log-spaced (3 digits kept)
            ratios = values[1:] / values[:-1]
            assert ratios == pytest.approx(np.full(len(ratios), (high / low) ** (1 / 7)), rel=1e-2)
            assert high / low >= 100  # two decades at least: from about no removal to a destroyed task
        else:  # INLP's iterations: from one direction removed to as many as the 64-d bottlenecks have
            assert (low, high) == (1, 64)


def test_the_curve_plan_holds_each_strength_on_every_seed_with_the_rest_at_defaults():
    planned = plan_sweep(SweepRequest(methods=["irene,end,vanilla"], datasets=[SMALL], seeds=3, curve=True, strengths=8))
    by_method = {}
    for trial in planned:
        by_method.setdefault(trial.config["method"], []).append(trial.config)
    assert len(by_method["irene"]) == 8 * 3 and len(by_method["end"]) == 8 * 3 and len(by_method["vanilla"]) == 3
    defaults = {name: param.default for name, param in methods.REGISTRY["irene"].hparams.items()}
    for config in by_method["irene"]:
        assert {k: v for k, v in config["hparams"].items() if k != "gamma"} == {k: v for k, v in defaults.items() if k != "gamma"}
    assert len({c["hparams"]["gamma"] for c in by_method["irene"]}) == 8
    assert all(c["hparams"]["alpha"] == c["hparams"]["beta"] for c in by_method["end"])  # EnD's two weights in step
    assert sorted({c["seed"] for c in by_method["irene"]}) == [0, 1, 2]
    # --set with several values adds an axis; --train fields too
    crossed = plan_sweep(SweepRequest(methods=["irene"], datasets=[SMALL], seeds=1, curve=True, strengths=3,
                                      sets=["irene.variant=paper,split"], train=["irene.lr=0.01,0.1"]))
    assert len(crossed) == 3 * 2 * 2


@pytest.mark.parametrize("fields, message", [
    ({"grid": True}, "without --grid or --samples"),
    ({"samples": 3}, "without --grid or --samples"),
    ({"strengths": 1}, "--strengths must be at least 2"),
    ({"sets": ["irene.gamma=0.5"]}, "--curve sets irene.gamma itself"),
])
def test_contradictory_curve_requests_are_refused(fields, message):
    with pytest.raises(UserError, match=message):
        plan_sweep(SweepRequest(methods=["irene"], datasets=[SMALL], seeds=1, curve=True, **fields))


def test_a_curve_sweep_resumes_to_nothing_and_the_leaderboard_has_every_section(tmp_path, capsys):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    command = ["sweep", "--curve", "--strengths", "2", "--methods", "vanilla,inlp", "--datasets", SMALL, "--seeds", "2",
               "--epochs", "1", "--executor", "serial", "--tracking-uri", uri, "--experiment", "curve",
               "--results-dir", str(tmp_path / "results")]
    assert main(command) == 0
    assert "= 6 trials; 0 already complete in experiment 'curve'; running 6" in capsys.readouterr().err
    assert main(command) == 0
    assert "= 6 trials; 6 already complete in experiment 'curve'; running 0" in capsys.readouterr().err
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["curve"], filter_string="tags.`bench.kind` = 'trial'")
    assert len(runs) == 6  # nothing ran twice
    finished = runs[runs["status"] == "FINISHED"]
    assert finished["metrics.leak_probe25"].notna().all() and finished["metrics.leak_probe50"].notna().all()

    board = tmp_path / "board" / "LEADERBOARD.md"
    assert main(["leaderboard", "--tracking-uri", uri, "--experiment", "curve", "--output", str(board)]) == 0
    text = board.read_text()
    for section in ("## Provenance", "## Datasets", "## synthetic", "### Ranking by hypervolume",
                    "### Best task accuracy at a leakage budget", "### Attacker strength", "Reliability: vanilla's",
                    "## Reading it", "bench sweep --curve --strengths 2", "Wall time: ", "Trials: 6"):
        assert section in text, section
    assert "![synthetic: fronts per method](leaderboard-plots/synthetic.png)" in text
    assert (board.parent / "leaderboard-plots" / "synthetic.png").read_bytes()[:4] == b"\x89PNG"
    wall = text.split("Wall time: ", 1)[1].split(" (", 1)[0]
    assert wall != "unknown" and ("s" in wall or "min" in wall)
