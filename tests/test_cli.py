"""Bad input: one line on stderr, exit status 2, nothing started and nothing written."""

import subprocess

import pytest

from bench.cli import main
from tests.conftest import bench_command, quiet_env

BAD_RUNS = [
    (["--methods", "irene,nope"], "unknown method 'nope'"),
    (["--datasets", "mnistt"], "unknown dataset 'mnistt'"),
    (["--datasets", "colored_digits:rhoo=0.9"], "colored_digits has no option 'rhoo'"),
    (["--datasets", "colored_digits:rho=abc"], "expected a float"),
    (["--datasets", "colored_digits:rho"], "malformed option"),
    (["--methods", "irene", "--set", "irene.delta=1"], "irene has no option 'delta'"),
    (["--methods", "irene", "--set", "irene.gamma"], "malformed --set"),
    (["--methods", "irene", "--set", "gamma=1"], "malformed --set"),
    (["--methods", "irene", "--set", "grl.lambda=1"], "not among the methods run"),
    (["--seeds", "0"], "must be at least 1"),
    (["--epochs", "-1"], "must not be negative"),
    (["--executor", "spark"], "invalid choice"),
    (["--methods", "vanilla", "--datasets", "adult"], "adult: missing adult.data"),
]


@pytest.mark.parametrize("arguments, fragment", BAD_RUNS)
def test_bad_run_input_is_one_line_exit_2_and_writes_nothing(arguments, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    status = main(["run", "--data-root", str(tmp_path / "data"), *arguments])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], captured.err
    assert lines[0].startswith("bench: error:")
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no results, no data folder


def test_missing_data_file_names_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    assert main(["run", "--methods", "vanilla", "--datasets", "adult", "--data-root", str(tmp_path / "root")]) == 2
    assert str(tmp_path / "root" / "adult") in capsys.readouterr().err


def test_console_script_bad_input_prints_no_traceback(tmp_path):
    done = subprocess.run(bench_command() + ["run", "--methods", "nope"], cwd=tmp_path, capture_output=True,
                          text=True, env=quiet_env(), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "bench: error: unknown method 'nope' (valid: " + ", ".join(sorted(__import__("methods").REGISTRY)) + ")"
    ]
    assert not (tmp_path / "mlflow.db").exists()


def test_list_shows_every_method_and_dataset_with_options(capsys):
    import datasets
    import methods

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, cls in methods.REGISTRY.items():
        assert f"  {name} " in out
        for hp, param in cls.hparams.items():
            assert hp in out
    assert "gamma" in out and "default 0.2" in out
    for name, cls in datasets.REGISTRY.items():
        assert f"  {name} " in out
        for option in cls.options:
            assert option in out
