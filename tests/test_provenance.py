"""Commands in provenance are written as a user types them in the repository, never with this machine's paths."""

from __future__ import annotations

import mlflow
import pytest

from removal_bench.commands.cli import main
from removal_bench.running.sweep import portable_command


@pytest.mark.parametrize("words, expected", [
    (["bench", "sweep", "--data-root", "/home/me/shared/data", "--tracking-uri", "sqlite:////home/me/repo/mlflow.db"],
     "bench sweep --data-root ../shared/data --tracking-uri sqlite:///mlflow.db"),
    (["bench", "run", "--results-dir=/home/me/repo/results/x", "--output", "/home/me/repo/a b.md"],
     "bench run --results-dir=results/x --output 'a b.md'"),
    (["bench", "run", "--data-root", "/mnt/elsewhere", "--tracking-uri", "http://host:5000"],
     "bench run --data-root /mnt/elsewhere --tracking-uri http://host:5000"),  # outside: stays as typed
    (["bench", "run", "--data-root", "/home/me/repository2/x"], "bench run --data-root ../repository2/x"),
    (["bench", "run", "--datasets", "biased_mnist:rho=0.99", "--set", "irene.gamma=0.5"],
     "bench run --datasets biased_mnist:rho=0.99 --set irene.gamma=0.5"),
])
def test_portable_command(words, expected):
    assert portable_command(words, cwd="/home/me/repo") == expected
    assert portable_command(" ".join(words) if " " not in "".join(words[1:]) else words, cwd="/home/me/repo") == expected


def test_a_sweep_records_its_command_and_the_leaderboard_prints_it_portably(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path.parent / f"{tmp_path.name}-data"
    data.mkdir()
    status = main(["sweep", "--methods", "vanilla", "--datasets", "synthetic:n_train=200:n_eval=200", "--seeds", "1",
                   "--epochs", "1", "--executor", "serial", "--data-root", str(data), "--quiet",
                   "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--results-dir", str(tmp_path / "r")])
    assert status == 0
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("default")
    parents = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("bench.kind") == "invocation"]
    command = parents[0].data.params["command"]
    assert f"--data-root ../{data.name}" in command and "--tracking-uri sqlite:///mlflow.db" in command
    assert "--results-dir r" in command and str(tmp_path) not in command
    assert main(["leaderboard", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--output", str(tmp_path / "L.md"),
                 "--quiet"]) == 0
    text = (tmp_path / "L.md").read_text()
    assert "--tracking-uri sqlite:///mlflow.db" in text and str(tmp_path) not in text
