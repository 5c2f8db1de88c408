"""`bench sweep --curve --refine K`: each round bisects, in log space, the neighbouring strengths across
which the seed-mean validation point moves most, is planned only from complete rounds, and is marked in the
reports and in the protocol fingerprint."""

import math
import random

import mlflow
import pytest

from removal_bench.commands.cli import main
from removal_bench.core.errors import UserError
from removal_bench.running.sweep import Bisection, SweepRequest, choose_bisection, midpoint, plan_curves

SMALL = "synthetic:n_train=300:n_eval=300"


def records(curve: dict, seeds=(0, 1), status="FINISHED", name="lam", private=2):
    """Hand-made trial records: strength -> (val accuracy, val leakage) per seed (the same on every seed unless a
    list of per-seed pairs is given)."""
    out = []
    for strength, figures in curve.items():
        for index, seed in enumerate(seeds):
            accuracy, leakage = figures[index] if isinstance(figures, list) else figures
            out.append({"strengths": {name: strength}, "seed": seed, "status": status,
                        "val_accuracy": accuracy, "val_leakage": leakage, "num_private": private})
    return out


def test_the_pair_whose_seed_mean_validation_point_moves_most_is_bisected_in_log_space():
    # accuracy moves most between 0.1 and 1 (0.3), normalised leakage most between 1 and 10 (0.9 -> 0.1 raw:
    # 0.8 normalised, against 0.6 raw 0.3): the largest of both decides
    curve = {0.01: (0.90, 0.95), 0.1: (0.88, 0.90), 1.0: (0.58, 0.85), 10.0: (0.50, 0.45)}
    choice = choose_bisection(records(curve))
    assert choice.point == {"lam": 3.16}  # sqrt(1 * 10), three digits as the log-spaced strengths
    assert choice.between == ({"lam": 1.0}, {"lam": 10.0})
    assert choice.move == pytest.approx(0.8)  # |0.45 - 0.85| / (1 - 1/2)
    assert choice.waiting == 0
    # per seed means: seed 1 alone would move most between 0.01 and 0.1; the mean over seeds decides
    noisy = {0.01: [(0.9, 0.9), (0.9, 0.9)], 0.1: [(0.9, 0.9), (0.1, 0.9)], 1.0: [(0.05, 0.9), (0.05, 0.9)]}
    assert choose_bisection(records(noisy)).between == ({"lam": 0.1}, {"lam": 1.0})  # 0.5 -> 0.05 against 0.9 -> 0.5


def test_the_choice_ignores_record_order_and_test_figures_and_breaks_ties_towards_the_weaker_pair():
    curve = {0.001: (0.9, 0.9), 0.01: (0.7, 0.9), 0.1: (0.5, 0.9), 1.0: (0.3, 0.9)}  # every pair moves 0.2
    mine = records(curve)
    expected = choose_bisection(mine)
    assert expected.between == ({"lam": 0.001}, {"lam": 0.01}) and expected.point == {"lam": 0.00316}
    for trial in range(5):
        shuffled = [dict(r, accuracy=random.Random(trial).random(), leakage=random.Random(-trial).random())
                    for r in mine]  # test figures present, and nonsense: never read
        random.Random(trial).shuffle(shuffled)
        assert choose_bisection(shuffled) == expected
    # a figure missing on one side of a pair: the other figure decides; none at all: the pair comes last
    gaps = records({1.0: (0.9, math.nan), 10.0: (0.1, math.nan), 100.0: (math.nan, math.nan)})
    assert choose_bisection(gaps).between == ({"lam": 1.0}, {"lam": 10.0})


def test_nothing_is_chosen_until_every_trial_of_the_curve_has_finished():
    curve = {0.1: (0.9, 0.9), 1.0: (0.5, 0.5), 10.0: (0.1, 0.5)}
    for status in ("FAILED", "RUNNING", "KILLED", "MISSING"):
        mine = records(curve)
        mine[3] = dict(mine[3], status=status)
        assert choose_bisection(mine) == Bisection(None, waiting=1)
    assert choose_bisection([]) == Bisection(None)


def test_integer_strengths_skip_pairs_with_no_integer_between_and_in_step_strengths_move_together():
    curve = {1: (0.9, 0.9), 2: (0.1, 0.1), 8: (0.1, 0.1)}  # 1 -> 2 moves most, but sqrt(2) rounds onto 1
    choice = choose_bisection(records(curve, name="iterations"), integers=["iterations"])
    assert choice.point == {"iterations": 4} and choice.between == ({"iterations": 2}, {"iterations": 8})
    assert choose_bisection(records({1: (0.9, 0.9), 2: (0.1, 0.1)}, name="iterations"), ["iterations"]) == Bisection(None)
    assert midpoint({"alpha": 0.001, "beta": 0.01}, {"alpha": 0.1, "beta": 1.0}) == {"alpha": 0.01, "beta": 0.1}
    assert midpoint({"n": 3}, {"n": 8}, ["n"]) == {"n": 5}  # sqrt(24) = 4.9


def test_the_plan_knows_each_curve_and_its_strengths():
    planned, curves = plan_curves(SweepRequest(methods=["vanilla,grl,inlp"], datasets=[SMALL], seeds=2, curve=True,
                                               strengths=3, refine=2, sets=["grl.ramp=true,false"]))
    assert len(planned) == 2 + 3 * 2 * 2 + 3 * 2  # vanilla (no curve), GRL crossed with --set, INLP
    names = sorted((c.method, str(c.drawn.get("ramp"))) for c in curves)
    assert names == [("grl", "False"), ("grl", "True"), ("inlp", "None")]
    inlp = next(c for c in curves if c.method == "inlp")
    assert inlp.integers == ("iterations",) and [p for p, _ in inlp.points] == [{"iterations": v} for v in (1, 8, 64)]
    assert all(len(trials) == 2 for c in curves for _, trials in c.points)


@pytest.mark.parametrize("fields, message", [
    ({"refine": 2}, "--refine bisects strength curves: give it with --curve"),
    ({"refine": -1, "curve": True}, "--refine must not be negative"),
    ({"refine": 1, "curve": True, "scheduler": "asha"}, "--scheduler asha stops trials early"),
])
def test_contradictory_refinements_are_refused_when_planned(fields, message):
    with pytest.raises(UserError, match=message):
        plan_curves(SweepRequest(methods=["grl"], datasets=[SMALL], seeds=1, **fields))


@pytest.mark.parametrize("arguments, message", [
    (["--refine", "2"], "--refine bisects strength curves: give it with --curve"),
    (["--curve", "--refine", "-1"], "must not be negative"),
    (["--curve", "--refine", "x"], "--refine"),
    (["--curve", "--refine", "1", "--scheduler", "asha"], "--scheduler asha stops trials early"),
])
def test_bad_refinements_exit_2_with_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    status = main(["sweep", "--methods", "grl", "--datasets", SMALL, "--executor", "ray"] + arguments)
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("bench: error:") and message in error and len(error.strip().splitlines()) == 1, error
    assert list(tmp_path.iterdir()) == []


def largest_move(frame, rounds, strength="iterations"):
    """From the runs (one per trial), per strength of the runs with refinement round < ``rounds``: the seed-mean
    (val accuracy, normalised val leakage); the neighbouring pair with the largest move."""
    private = frame["metrics.num_private"]
    frame = frame.assign(_leak=(frame["metrics.val_leakage"] - 1 / private) / (1 - 1 / private),
                         _round=frame["tags.bench.refined"].fillna("0").astype(int),
                         _strength=frame[f"params.hp.{strength}"].astype(float))
    means = frame[frame["_round"] < rounds].groupby("_strength")[["metrics.val_accuracy", "_leak"]].mean().sort_index()
    moves = means.diff().abs().max(axis=1).iloc[1:]
    upper = moves.idxmax()
    lower = means.index[list(means.index).index(upper) - 1]
    return lower, upper, moves.max()


def test_a_refined_sweep_bisects_where_the_curve_moves_most_and_a_rerun_adds_nothing(tmp_path, capsys):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    # INLP: its curve moves on synthetic after one epoch, and it trains once per seed (shared with vanilla's training)
    command = ["sweep", "--curve", "--strengths", "3", "--refine", "2", "--methods", "inlp", "--datasets", SMALL,
               "--seeds", "2", "--epochs", "1", "--executor", "serial", "--tracking-uri", uri, "--experiment", "refine",
               "--results-dir", str(tmp_path / "results")]
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "= 6 trials; 0 already complete in experiment 'refine'; running 6" in err
    assert "refinement round 1 of 2: 1 strengths x 2 seeds = 2 trials; 0 already complete; running 2" in err
    assert "refinement round 2 of 2: 1 strengths x 2 seeds = 2 trials; 0 already complete; running 2" in err
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["refine"], filter_string="tags.`bench.kind` = 'trial'")
    assert len(runs) == 10 and (runs["status"] == "FINISHED").all()
    rounds = runs["tags.bench.refined"].fillna("0").astype(int)
    assert sorted(rounds) == [0] * 6 + [1] * 2 + [2] * 2
    strengths = runs["params.hp.iterations"].astype(int)
    assert sorted(set(strengths[rounds == 0])) == [1, 8, 64]
    for round_ in (1, 2):  # each refined strength lies inside the interval where the curve, as it then was, moved most
        lower, upper, move = largest_move(runs, round_)
        (added,) = set(strengths[rounds == round_])
        assert lower < added < upper
        assert added == round(math.sqrt(lower * upper))  # the log-space midpoint, an integer
        assert f"validation point moves {move:.3f}" in err
    # the refinement is in the refined points' protocol fingerprint, not in the log-spaced points'
    protocols = runs.groupby(rounds > 0)["tags.bench.protocol"].unique()
    assert len(protocols[False]) == 1 and len(protocols[True]) == 1 and protocols[False][0] != protocols[True][0]
    assert "refinement" in runs.loc[rounds > 0, "tags.bench.protocol_parts"].iloc[0]
    assert "refinement" not in runs.loc[rounds == 0, "tags.bench.protocol_parts"].iloc[0]
    # marked in the report: the CSV's refined column and the table's r
    csv = (tmp_path / "results" / "synthetic.csv").read_text().splitlines()
    column = csv[0].split(",").index("refined")
    assert sorted(line.split(",")[column] for line in csv[1:]) == ["0", "0", "0", "1", "2"]
    markdown = (tmp_path / "results" / "synthetic.md").read_text()
    table = [line.split("|") for line in markdown.split("## Methods")[0].splitlines() if line.startswith("| ")]
    marked = {cells[2].strip() for cells in table if "r" in cells[1]}
    assert marked == {f"inlp(iterations={v})" for v in set(strengths[rounds > 0])}
    assert "r: a strength added by refinement" in markdown

    # the same command again: the same points, nothing to run
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "= 6 trials; 6 already complete" in err and err.count("2 already complete; running 0") == 2
    again = mlflow.search_runs(experiment_names=["refine"], filter_string="tags.`bench.kind` = 'trial'")
    assert len(again) == 10

    # interrupted: round 2 lost and one seed of round 1 lost; the rerun runs exactly those trials again
    lost = runs[(rounds == 2) | ((rounds == 1) & (runs["tags.bench.seed"] == "0"))]
    client = mlflow.MlflowClient(uri)
    for run_id in lost["run_id"]:
        client.delete_run(run_id)
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "refinement round 1 of 2: 1 strengths x 2 seeds = 2 trials; 1 already complete; running 1" in err
    assert "refinement round 2 of 2: 1 strengths x 2 seeds = 2 trials; 0 already complete; running 2" in err
    rerun = mlflow.search_runs(experiment_names=["refine"], filter_string="tags.`bench.kind` = 'trial'")
    assert len(rerun) == 10
    assert sorted(rerun["tags.bench.config_hash"]) == sorted(runs["tags.bench.config_hash"])  # the same points


def test_with_refuses_to_rank_a_plain_curve_against_refined_ones_and_says_why():
    import pandas as pd

    from removal_bench.reporting.export import comparable
    from removal_bench.running import protocol
    from removal_bench.running.trial import make_config

    def frame(refined: bool):
        rows = []
        points = [0.0001, 0.0316, 10.0] + ([0.562] if refined else [])
        for index, strength in enumerate(points):
            config = make_config("grl", "synthetic", {}, {"lambda": strength}, seed=0, epochs=1)
            if index == 3:
                config["curve_refine"] = {"round": 1, "base_strengths": 3, "rule": "bisect-largest-val-move/1"}
            tags = protocol.tags(config)
            rows.append({"run_id": f"r{index}{refined}", "status": "FINISHED", "start_time": index,
                         "tags.bench.dataset": "synthetic", "tags.bench.method": "grl", "tags.bench.seed": "0",
                         "tags.bench.config_hash": f"h{strength}", "tags.bench.config_key": f"k{strength}",
                         "tags.bench.protocol": tags["bench.protocol"],
                         "tags.bench.protocol_parts": tags["bench.protocol_parts"]})
        return pd.DataFrame(rows)

    comparable(frame(True), frame(True))
    comparable(frame(False), frame(False))
    with pytest.raises(UserError, match="protocol differs: refinement"):
        comparable(frame(False), frame(True))
