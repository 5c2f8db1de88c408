"""`bench sweep` without Ray: what it draws, what it does with failures, Ctrl-C and resume, and the report commands."""

import mlflow
import pytest

from removal_bench import methods
from removal_bench.commands.cli import main
from removal_bench.core.params import LogUniform, Param
from removal_bench.running.sweep import SweepRequest, plan_sweep
from removal_bench.methods.vanilla import Vanilla

SMALL = "synthetic:n_train=300:n_eval=200"


def planned_hparams(**kwargs):
    request = SweepRequest(datasets=[SMALL], seeds=1, **kwargs)
    return [(p.config["method"], p.config["hparams"]) for p in plan_sweep(request)]


def test_the_same_sweep_seed_draws_the_same_configurations():
    first = planned_hparams(methods=["irene,grl"], samples=5, sweep_seed=3)
    assert first == planned_hparams(methods=["irene,grl"], samples=5, sweep_seed=3)
    assert len({repr(h) for _, h in first}) == 10  # five distinct draws per method
    assert first != planned_hparams(methods=["irene,grl"], samples=5, sweep_seed=4)
    irene = [h for m, h in first if m == "irene"]
    assert all(0.01 <= h["gamma"] <= 10 and 0.01 <= h["head_lr"] <= 0.5 for h in irene)  # from irene's declared spaces


def test_adding_a_hyperparameter_or_a_method_leaves_the_other_draws_unchanged(monkeypatch):
    before = planned_hparams(methods=["irene,grl"], samples=4)
    monkeypatch.setattr(methods.REGISTRY["irene"], "hparams",
                        {**methods.REGISTRY["irene"].hparams, "extra": Param(1.0, space=LogUniform(0.1, 10.0))})
    after = planned_hparams(methods=["irene,grl"], samples=4)
    for (method, old), (same_method, new) in zip(before, after):
        assert method == same_method
        assert {k: v for k, v in new.items() if k != "extra"} == old
    assert len({h["extra"] for m, h in after if m == "irene"}) == 4  # the new one is drawn too
    alone = planned_hparams(methods=["grl"], samples=4)
    assert alone == [(m, h) for m, h in after if m == "grl"]  # grl's draws do not depend on irene's presence


def test_grid_takes_every_point_and_set_fixes_or_lists_values():
    grid = planned_hparams(methods=["irene"], grid=True, grid_points=2)
    assert len(grid) == 2 ** 2  # gamma and head_lr have spaces; alpha and variant are fixed (lr is the recipe's)
    assert sorted({h["gamma"] for _, h in grid}) == pytest.approx([0.01, 10.0])
    fixed = planned_hparams(methods=["irene"], grid=True, grid_points=2, sets=["irene.gamma=0.5"])
    assert len(fixed) == 2 and {h["gamma"] for _, h in fixed} == {0.5}
    listed = planned_hparams(methods=["irene"], grid=True, grid_points=2, sets=["irene.gamma=0.1,1"])
    assert len(listed) == 4 and {h["gamma"] for _, h in listed} == {0.1, 1.0}
    drawn = planned_hparams(methods=["irene"], samples=6, sets=["irene.gamma=0.1,1"])
    assert {h["gamma"] for _, h in drawn} == {0.1, 1.0}


BAD_SWEEPS = [
    (["--samples", "2", "--grid"], "give one of them"),
    (["--scheduler", "asha", "--executor", "serial"], "needs --executor ray"),
    (["--max-leakage", "1.5"], "between 0 and 1"),
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--methods", "irene", "--set", "irene.gamma=abc"], "expected a float"),
    (["--methods", "irene", "--set", "irene.delta=1,2"], "irene has no option 'delta'"),
    (["--format", "pdf"], "unknown --format 'pdf'"),
    (["--samples", "0"], "must be at least 1"),
]


@pytest.mark.parametrize("arguments, fragment", BAD_SWEEPS)
def test_bad_sweep_input_is_one_line_exit_2_and_writes_nothing(arguments, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(["sweep", "--datasets", SMALL, "--data-root", str(tmp_path / "data"), *arguments])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("bench: error:") and fragment in lines[0], lines
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arguments, fragment", [
    (["report", "--experiment", "nothing"], "no MLflow store at"),  # and none is created (test_bad_input.py)
    (["leaderboard"], "no MLflow store at"),
    (["report", "--tracking-uri", "file:///tmp/store"], "file store"),
])
def test_report_commands_refuse_what_is_not_there(arguments, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(arguments) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines


class Exploding(Vanilla):
    name = "exploding"
    description = "test only: raises in its first step"
    hparams = {"knob": Param(1.0, "test only: searched, unused", space=LogUniform(0.1, 10.0))}

    def update(self, x, y, s):
        raise RuntimeError("boom in update")


class Interrupting(Vanilla):
    """Test only: vanilla, but its first step raises KeyboardInterrupt (a Ctrl-C) while ``armed``."""

    name = "interrupting"
    description = "test only"
    hparams = {"knob": Param(1.0, "test only: searched, unused", space=LogUniform(0.1, 10.0))}
    armed = True

    def update(self, x, y, s):
        if Interrupting.armed:
            raise KeyboardInterrupt
        return super().update(x, y, s)


@pytest.fixture
def test_methods(monkeypatch):
    monkeypatch.setitem(methods.REGISTRY, "exploding", Exploding)
    monkeypatch.setitem(methods.REGISTRY, "interrupting", Interrupting)
    monkeypatch.setattr(Interrupting, "armed", True)


def trial_runs(uri, experiment):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`bench.kind` = 'trial'")


def sweep(tmp_path, experiment, *arguments):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    return main(["sweep", "--datasets", SMALL, "--epochs", "1", "--executor", "serial", "--tracking-uri", uri,
                 "--experiment", experiment, "--results-dir", str(tmp_path / "results"), *arguments]), uri


def test_a_trial_that_raises_and_one_that_diverges_fail_with_their_reason_and_the_others_finish(
        test_methods, tmp_path, capsys):
    status, uri = sweep(tmp_path, "failures", "--methods", "vanilla,exploding", "--samples", "2", "--seeds", "1",
                        "--train", "vanilla.lr=0.01,1e30")
    assert status == 0
    runs = trial_runs(uri, "failures")
    assert set(runs["params.recipe.lr"][runs["tags.bench.method"] == "vanilla"]) == {"0.01", "1e+30"}
    outcome = {(m, lr): (s, e) for m, lr, s, e in
               zip(runs["tags.bench.method"], runs["params.recipe.lr"], runs["status"], runs["tags.bench.error"])}
    assert outcome[("vanilla", "0.01")][0] == "FINISHED"
    assert outcome[("vanilla", "1e+30")][0] == "FAILED" and "diverged" in outcome[("vanilla", "1e+30")][1]
    exploding = runs[runs["tags.bench.method"] == "exploding"]
    assert len(exploding) == 2 and set(exploding["status"]) == {"FAILED"}
    assert all("RuntimeError: boom in update" in error for error in exploding["tags.bench.error"])
    out = capsys.readouterr().out
    assert "FAILED 1: RuntimeError: boom in update" in out and "FAILED 1: diverged" in out


def test_ctrl_c_then_the_same_command_runs_only_what_is_missing_and_restart_runs_all(
        test_methods, tmp_path, capsys):
    arguments = ("--methods", "vanilla,interrupting", "--samples", "1", "--seeds", "2")
    status, uri = sweep(tmp_path, "resume", *arguments)
    assert status == 130  # interrupted at the first interrupting trial, after vanilla's two seeds
    first = trial_runs(uri, "resume")
    assert sorted(zip(first["tags.bench.method"], first["status"])) == [
        ("interrupting", "KILLED"), ("vanilla", "FINISHED"), ("vanilla", "FINISHED")]
    finished_ids = set(first.loc[first["status"] == "FINISHED", "run_id"])

    Interrupting.armed = False
    status, _ = sweep(tmp_path, "resume", *arguments)
    assert status == 0
    second = trial_runs(uri, "resume")
    assert finished_ids <= set(second["run_id"])  # the finished trials were not run again
    newest_parent = second.sort_values("start_time")["tags.mlflow.parentRunId"].iloc[-1]
    children = second[second["tags.mlflow.parentRunId"] == newest_parent]
    assert sorted(children["tags.bench.method"]) == ["interrupting", "interrupting"]
    assert set(children["status"]) == {"FINISHED"}
    err = capsys.readouterr().err
    assert "2 already complete in experiment 'resume'; running 2" in err

    assert main(["report", "--experiment", "resume", "--tracking-uri", uri, "--format", "markdown,csv,latex",
                 "--results-dir", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "│" in line and ("vanilla" in line or "interrupting" in line)]
    assert any(" interrupting(" in line and " 2/2 " in line for line in lines)
    assert not any("missing" in line or "FAILED" in line for line in lines)  # the KILLED run is superseded
    assert sorted(p.name for p in (tmp_path / "report").iterdir() if not p.name.startswith(".")) == [
        "synthetic.csv", "synthetic.md", "synthetic.png", "synthetic.tex"]

    status, _ = sweep(tmp_path, "resume", *arguments, "--restart")
    assert status == 0
    third = trial_runs(uri, "resume")
    assert len(third) == len(second) + 4  # every trial again, under a new parent run
    assert "(ignored: --restart); running 4" in capsys.readouterr().err

    board = tmp_path / "LEADERBOARD.md"
    assert main(["leaderboard", "--tracking-uri", uri, "--experiment", "resume", "--output", str(board)]) == 0
    text = board.read_text()
    ranking = text.split("### Ranking by hypervolume", 1)[1]
    vanilla = next(line for line in ranking.splitlines() if line.startswith("| ") and "| vanilla " in line)
    cells = [cell.strip() for cell in vanilla.strip("|").split("|")]
    assert cells[8] == "2/2" and cells[6] == "2"  # two seeds, two trials: each counted once after a restart


def test_the_leakage_guard_probe_is_reported_per_epoch_and_changes_no_figure():
    from removal_bench.running.trial import make_config, run_trial

    options = {"n_train": 300, "n_eval": 200}
    plain = make_config("irene", "synthetic", options, seed=1, epochs=2)
    guarded = dict(plain, epoch_leakage=True)
    epochs = []
    with_probe, without = run_trial(guarded, report=epochs.append), run_trial(plain)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(0.0 <= e["val_leakage_epoch"] <= 1.0 for e in epochs)
    for key in ("accuracy", "val_accuracy", "leakage", "leak_linear", "head_acc"):
        assert with_probe[key] == without[key], key
    leace_epochs = []
    run_trial(dict(make_config("leace", "synthetic", options, seed=1, epochs=1), epoch_leakage=True),
              report=leace_epochs.append)
    assert "val_leakage_epoch" not in leace_epochs[0]  # post-hoc: erased only after training


@pytest.mark.parametrize("metrics, bound, expected", [
    ({"val_accuracy": 0.8, "val_leakage_epoch": 0.9}, None, 0.8),  # no guard: accuracy
    ({"val_accuracy": 0.8, "val_leakage_epoch": 0.6}, 0.7, 0.8),  # within the bound
    ({"val_accuracy": 0.8, "val_leakage_epoch": 0.7}, 0.7, 0.8),  # at the bound
    ({"val_accuracy": 0.8, "val_leakage_epoch": 0.71}, 0.7, 0.0),  # bought with leakage
    ({"val_accuracy": 0.8, "val_leakage_epoch": float("nan")}, 0.7, 0.0),
    ({"val_accuracy": 0.8}, 0.7, 0.8),  # a post-hoc method's epoch
    ({"val_accuracy": 0.8, "val_leakage": 0.9}, 0.7, 0.0),  # a final result: the protocol's val_leakage
    ({"status": "FAILED"}, 0.7, 0.0),
])
def test_schedule_score(metrics, bound, expected):
    from removal_bench.running.executors import schedule_score

    assert schedule_score(metrics, bound) == expected
