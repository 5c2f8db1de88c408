"""`--executor offline` (removal_bench.running.offline): trials planned into a folder, run by a separate process
that has neither MLflow nor Ray, and logged by the same bench command once their results are back; refined
curves round by round; a killed runner loses only its trial in flight; a FAILED result is logged once."""

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

from removal_bench.commands.cli import main
from removal_bench.running.offline import PLAN, RESULTS, read_lines

from .conftest import quiet_env

SMALL = "synthetic:n_train=300:n_eval=300"


def runner(folder, *extra, wait=True):
    """``python -m removal_bench.running.offline`` as its own process, with MLflow and Ray unimportable (as on a
    machine that lacks them)."""
    blocker = folder.parent / "blocked"
    blocker.mkdir(exist_ok=True)
    for name in ("mlflow", "ray"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('{name} is not installed on this machine')\n")
    env = {**quiet_env(), "PYTHONPATH": str(blocker)}
    command = [sys.executable, "-m", "removal_bench.running.offline", str(folder), *extra]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def trial_runs(uri, experiment):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`bench.kind` = 'trial'")


def test_planned_run_elsewhere_and_logged_by_the_same_command_round_by_round(tmp_path, capsys):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    folder = tmp_path / "offline"
    command = ["sweep", "--curve", "--strengths", "3", "--refine", "1", "--methods", "inlp", "--datasets", SMALL,
               "--seeds", "2", "--epochs", "1", "--executor", "offline", "--offline-dir", str(folder),
               "--tracking-uri", uri, "--experiment", "off", "--results-dir", str(tmp_path / "results")]
    # 1. nothing runs here: the 6 log-spaced trials are planned, no trial run is opened, the refinement waits
    assert main(command) == 0
    err = capsys.readouterr().err
    assert f"6 trial(s) planned in {folder / PLAN}" in err and "refinement waits for 6 trial(s)" in err
    assert len(read_lines(folder / PLAN)) == 6
    assert trial_runs(uri, "off").empty

    # 2. the runner, without MLflow or Ray, runs them; 3. the same command logs them and plans round 1
    done = runner(folder, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert len(read_lines(folder / RESULTS)) == 6
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "refinement round 1 of 1: 1 strengths x 2 seeds = 2 trials; 0 already complete; running 2" in err
    runs = trial_runs(uri, "off")
    assert len(runs) == 6 and (runs["status"] == "FINISHED").all()
    assert runs["tags.offline.host"].notna().all() and runs["tags.offline.started"].notna().all()
    logged = {row["tags.bench.config_hash"]: row for _, row in runs.iterrows()}
    for record in read_lines(folder / RESULTS):  # the runner's figures, as they were: nothing recomputed here
        row = logged[record["key"]]
        assert row["metrics.accuracy"] == pytest.approx(record["result"]["accuracy"], abs=1e-12)
        assert row["metrics.leakage"] == pytest.approx(record["result"]["leakage"], abs=1e-12)
    planned = [entry for entry in read_lines(folder / PLAN) if entry["key"] not in logged]
    assert len(planned) == 2 and all(entry["config"]["curve_refine"]["round"] == 1 for entry in planned)

    # round 1 the same way; then a rerun of either program adds nothing
    assert runner(folder).returncode == 0
    assert main(command) == 0
    capsys.readouterr()
    runs = trial_runs(uri, "off")
    assert len(runs) == 8 and sorted(runs["tags.bench.refined"].fillna("0")) == ["0"] * 6 + ["1"] * 2
    again = runner(folder)
    assert again.returncode == 0 and "0 planned trial(s) to run" in again.stderr
    assert main(command) == 0
    assert "planned in" not in capsys.readouterr().err
    assert len(trial_runs(uri, "off")) == 8

    # the serial executor computes the same figures for the same trial (same seed, one thread)
    serial = [*command[:command.index("--executor")], "--executor", "serial", "--tracking-uri", uri,
              "--experiment", "here", "--results-dir", str(tmp_path / "here")]
    serial[serial.index("--refine") + 1] = "0"
    assert main(serial) == 0
    here = trial_runs(uri, "here").set_index("tags.bench.config_hash")
    there = runs.set_index("tags.bench.config_hash").loc[here.index]
    assert (here["metrics.accuracy"] - there["metrics.accuracy"]).abs().max() < 1e-9
    assert (here["metrics.val_leakage"] - there["metrics.val_leakage"]).abs().max() < 1e-9


def test_a_killed_runner_loses_only_its_trial_in_flight_and_a_failure_is_logged_once(tmp_path, capsys):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    folder = tmp_path / "offline"
    command = ["run", "--methods", "vanilla,grl", "--datasets", SMALL, "--seeds", "3", "--epochs", "3",
               "--executor", "offline", "--offline-dir", str(folder), "--tracking-uri", uri, "--experiment", "kill",
               "--results-dir", str(tmp_path / "results"), "--quiet"]
    assert main(command) == 0
    assert len(read_lines(folder / PLAN)) == 6
    process = runner(folder, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and len(read_lines(folder / RESULTS)) < 2:
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    before = read_lines(folder / RESULTS)
    assert 2 <= len(before) < 6
    with open(folder / RESULTS, "a") as stream:  # and a line torn by the kill
        stream.write('{"key": "' + before[0]["key"][:5])
    rest = runner(folder)
    assert rest.returncode == 0, rest.stderr
    assert f"{6 - len(before)} planned trial(s) to run" in rest.stderr
    keys = [record["key"] for record in read_lines(folder / RESULTS)]
    assert len(keys) == 6 == len(set(keys))  # every trial once: none run twice, none lost

    # a FAILED result (here: one line rewritten so) is logged once as FAILED and planned again
    lines = (folder / RESULTS).read_text().splitlines()
    failed = json.loads(lines[0])
    (folder / RESULTS).write_text("\n".join(lines[1:]) + "\n")
    (folder / "results-other-machine.jsonl").write_text(json.dumps(
        {**failed, "id": "f1", "result": {"status": "FAILED", "error": "CUDA out of memory"}}) + "\n")
    for _ in range(2):
        assert main(command) == 0
    runs = trial_runs(uri, "kill")
    assert sorted(runs["status"]) == ["FAILED"] + ["FINISHED"] * 5
    assert runs.loc[runs["status"] == "FAILED", "tags.bench.error"].item() == "CUDA out of memory"
    assert [entry["key"] for entry in read_lines(folder / PLAN) if entry["key"] == failed["key"]] == [failed["key"]]
    assert runner(folder).returncode == 0  # run again: now it finishes and is logged FINISHED
    assert main(command) == 0
    runs = trial_runs(uri, "kill")
    assert sorted(runs["status"]) == ["FAILED"] + ["FINISHED"] * 6


@pytest.mark.parametrize("arguments, message", [
    (["--executor", "offline"], "--executor offline plans the trials into a folder: give --offline-dir DIR"),
    (["--offline-dir", "x"], "--offline-dir is for --executor offline"),
    (["--executor", "offline", "--offline-dir", "x", "--max-concurrent", "2"], "--max-concurrent is for Ray"),
    (["--executor", "offline", "--offline-dir", "x", "--log-models"], "--log-models logs files the trial writes"),
])
def test_bad_offline_options_get_one_line_and_status_2(tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    status = main(["run", "--methods", "vanilla", "--datasets", SMALL, "--tracking-uri",
                   "sqlite:///" + str(tmp_path / "m.db"), *arguments])
    error = capsys.readouterr().err
    assert status == 2 and message in error and len(error.strip().splitlines()) == 1, error
    assert list(tmp_path.iterdir()) == []


def test_the_runner_refuses_a_folder_without_a_plan_in_one_line(tmp_path):
    done = runner(tmp_path / "empty")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "is not a folder" in done.stderr
    (tmp_path / "empty").mkdir()
    done = runner(tmp_path / "empty")
    assert done.returncode == 2 and "plan.jsonl does not exist" in done.stderr and done.stderr.strip().count("\n") == 0
