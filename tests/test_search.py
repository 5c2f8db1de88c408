"""`bench sweep --search optuna`: a multi-objective Bayesian search in rounds, whose proposals are a function of
the history the MLflow store holds and the sweep seed, so a killed sweep resumes to the points an uninterrupted one
proposed."""

from __future__ import annotations

import gzip
import json
import math
import random
import signal
import statistics
import time

import mlflow
import pytest

from removal_bench.commands.cli import main
from removal_bench.core.params import Choice, IntUniform, LogUniform, Param
from removal_bench.running.search import distributions, propose, round_seed, round_sizes
from removal_bench.running.tracking import sqlite_uri

SMALL = "synthetic:n_train=300:n_eval=300"
SPACE = {"gamma": Param(0.2, space=LogUniform(0.001, 1000.0)), "width": Param(8, space=IntUniform(1, 64)),
         "variant": Param("a", space=Choice(("a", "b"))), "fixed": Param(0.5)}


def objective(point: dict) -> tuple[float, float]:
    """A made-up front: accuracy peaks at gamma = 1, leakage falls with it."""
    return 1.0 - abs(math.log10(point["gamma"])) / 3.0, 1.0 / (1.0 + point["gamma"])


def search(seed: int, rounds: list[int], fail=lambda point: False) -> list[list[dict]]:
    searched, _ = distributions(SPACE)
    history, out = [], []
    for index, count in enumerate(rounds, start=1):
        points = propose(searched, history, count, round_seed(seed, "d", "m", index), rounds[0])
        out.append(points)
        history += [(p, None if fail(p) else objective(p)) for p in points]
    return out


def test_rounds_start_with_a_random_start_then_take_proposals_until_the_budget():
    assert round_sizes(20, 4) == [10, 4, 4, 2]
    assert round_sizes(8, 2) == [4, 2, 2]
    assert round_sizes(3, 4) == [3]
    assert round_sizes(1, 1) == [1]
    assert sum(round_sizes(37, 5)) == 37


def test_the_searched_names_are_the_spaces_and_proposals_are_rounded_inside_them():
    searched, fixed = distributions(SPACE)
    assert set(searched) == {"gamma", "width", "variant"} and fixed == {"fixed": 0.5}
    points = [p for round_ in search(0, [6, 3, 3]) for p in round_]
    assert len(points) == 12
    for point in points:
        assert 0.001 <= point["gamma"] <= 1000.0 and float(f"{point['gamma']:.4g}") == point["gamma"]
        assert isinstance(point["width"], int) and 1 <= point["width"] <= 64
        assert point["variant"] in ("a", "b")


def test_proposals_are_a_function_of_the_history_and_the_seed():
    assert search(3, [4, 2, 2]) == search(3, [4, 2, 2])
    assert search(3, [4, 2, 2]) != search(4, [4, 2, 2])
    # a failed configuration is told as failed; the search goes on and stays deterministic
    failing = search(3, [4, 2, 2], fail=lambda p: p["variant"] == "b")
    assert failing == search(3, [4, 2, 2], fail=lambda p: p["variant"] == "b")
    assert failing[0] == search(3, [4, 2, 2])[0]  # the random start does not depend on what follows


def test_after_the_random_start_the_proposals_move_towards_the_front():
    # The made-up front is gamma >= 1 (below 1, a larger gamma is better in both objectives), half of the
    # log-uniform range: about half the random start lands there, and more of the model's proposals, over seeds.
    started = modelled = wins = 0
    for seed in range(8):
        rounds = search(seed, [10] + [2] * 10)
        share_started = sum(p["gamma"] >= 1 for p in rounds[0]) / 10
        share_modelled = sum(p["gamma"] >= 1 for r in rounds[1:] for p in r) / 20
        started, modelled, wins = started + share_started, modelled + share_modelled, wins + (share_modelled >= share_started)
    assert modelled / 8 > started / 8 + 0.15 and wins >= 6, (started / 8, modelled / 8, wins)


@pytest.mark.parametrize("arguments, message", [
    (["--grid"], "--search optuna proposes its own configurations; --grid is another search"),
    (["--curve"], "--search optuna proposes its own configurations; --curve is another search"),
    (["--scheduler", "asha"], "--scheduler asha stops trials early"),
])
def test_contradictory_searches_exit_2_with_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, arguments,
                                                                      message):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--search", "optuna", "--methods", "irene", "--datasets", SMALL, *arguments]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def trial_runs(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`bench.kind` = 'trial'")


def test_a_searched_sweep_runs_its_rounds_records_them_and_resumes_to_the_same_points(tmp_path, capsys):
    uri = sqlite_uri(tmp_path / "mlflow.db")
    command = ["sweep", "--search", "optuna", "--samples", "6", "--proposals", "2", "--methods", "irene,vanilla",
               "--datasets", SMALL, "--seeds", "2", "--epochs", "1", "--executor", "serial", "--tracking-uri", uri,
               "--experiment", "search", "--results-dir", str(tmp_path / "results")]
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "search round 1 of 3" in err
    assert "search round 2 of 3: 2 new configurations x 2 seeds = 4 trials; 0 already complete; running 4" in err
    assert "search round 3 of 3: 1 new configurations x 2 seeds = 2 trials; 0 already complete; running 2" in err
    runs = trial_runs(uri, "search")
    assert len(runs) == (6 + 1) * 2 and (runs["status"] == "FINISHED").all()  # irene's 6 and vanilla's 1, 2 seeds
    assert set(runs["tags.bench.search"]) == {"optuna"}
    irene = runs[runs["params.method"] == "irene"]
    assert sorted(irene.groupby("tags.bench.search_round")["tags.bench.config_key"].nunique().items()) == [
        ("1", 3), ("2", 2), ("3", 1)]
    assert irene["params.hp.gamma"].nunique() == 6  # six configurations, each on both seeds
    # measured like any trial: the protocol fingerprint of a plain run of the same dataset
    assert main(["run", "--methods", "vanilla", "--datasets", SMALL, "--seeds", "1", "--epochs", "1", "--executor",
                 "serial", "--tracking-uri", uri, "--experiment", "plain", "--results-dir", str(tmp_path / "plain")]) == 0
    assert set(runs["tags.bench.protocol"]) == set(trial_runs(uri, "plain")["tags.bench.protocol"])

    # the trial table records the search and its round
    table = tmp_path / "t.jsonl.gz"
    assert main(["export", "--experiment", "search", "--tracking-uri", uri, "--output", str(table), "--quiet"]) == 0
    lines = [json.loads(line) for line in gzip.open(table, "rt")]
    assert {(line["tags.bench.search"], line.get("tags.bench.search_round")) for line in lines
            if line.get("kind") == "trial" and line["method"] == "irene"} == {("optuna", "1"), ("optuna", "2"), ("optuna", "3")}

    # the same command again: the same points, nothing to run
    capsys.readouterr()
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "already complete in experiment 'search'; running 0" in err and err.count("already complete; running 0") == 2
    assert len(trial_runs(uri, "search")) == len(runs)

    # interrupted: round 3 lost and one seed of round 2; the rerun proposes the same points and runs only those
    lost = irene[(irene["tags.bench.search_round"] == "3")
                 | ((irene["tags.bench.search_round"] == "2") & (irene["tags.bench.seed"] == "0"))]
    client = mlflow.MlflowClient(uri)
    for run_id in lost["run_id"]:
        client.delete_run(run_id)
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "search round 2 of 3: 2 new configurations x 2 seeds = 4 trials; 2 already complete; running 2" in err
    assert "search round 3 of 3: 1 new configurations x 2 seeds = 2 trials; 0 already complete; running 2" in err
    rerun = trial_runs(uri, "search")
    assert sorted(rerun["tags.bench.config_hash"]) == sorted(runs["tags.bench.config_hash"])
    # another sweep seed proposes other points
    assert main([*command[:-6], "--tracking-uri", uri, "--experiment", "other", "--sweep-seed", "1", "--quiet",
                 "--results-dir", str(tmp_path / "other")]) == 0
    other = trial_runs(uri, "other")
    assert set(other.loc[other["params.method"] == "irene", "params.hp.gamma"]) != set(irene["params.hp.gamma"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_ray_search_killed_mid_round_resumes_to_the_uninterrupted_proposals_and_figures(tmp_path):
    from removal_bench.benchmarks.soak import Chaos, judge, trial_figures

    def arguments(uri: str, executor: str) -> list[str]:
        ray = ["--max-concurrent", "2", "--storage-path", str(tmp_path / "ray")] if executor == "ray" else []
        return ["sweep", "--search", "optuna", "--samples", "5", "--proposals", "2", "--methods", "irene",
                "--datasets", "synthetic:n_train=2000:n_eval=500", "--seeds", "2", "--epochs", "3", "--executor",
                executor, *ray, "--tracking-uri", uri, "--experiment", "s", "--results-dir", str(tmp_path / executor)]

    chaos = Chaos(tmp_path, random.Random(7))
    reference_uri, uri = sqlite_uri(tmp_path / "reference.db"), sqlite_uri(tmp_path / "mlflow.db")
    first = chaos.start(arguments(reference_uri, "serial"))
    assert chaos.end(first, timeout=600) == 0, first.text[-3000:]
    counts, figures = trial_figures(reference_uri, "s")
    assert len(counts) == 10 and set(counts.values()) == {1}

    rng = random.Random(7)
    for _ in range(2):  # killed twice, once the second round has started, at a random moment of it
        attempt = chaos.start(arguments(uri, "ray"))
        deadline = time.monotonic() + 600
        while "search round 2 of" not in attempt.text:
            assert attempt.alive and time.monotonic() < deadline, attempt.text[-3000:]
            time.sleep(0.1)
        if attempt.wait(rng.uniform(1.0, 8.0)) is None:
            attempt.fault = "sigkill"
            attempt.kill_group(signal.SIGKILL)
        chaos.end(attempt, timeout=120)
    assert any(attempt.fault == "sigkill" for attempt in chaos.attempts), "no attempt was killed: shorten the wait"
    last = chaos.start(arguments(uri, "ray"))
    assert chaos.end(last, timeout=600) == 0, last.text[-3000:]
    assert not chaos.tracebacks, chaos.tracebacks
    verdict = judge(uri, "s", set(counts), figures)
    assert verdict.clean, verdict  # the same configurations, each FINISHED once, with the uninterrupted figures
    assert trial_figures(uri, "s")[0].keys() == counts.keys()
