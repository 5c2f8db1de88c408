"""The capacity check: `bench attack --selected EXPERIMENT --attacker mlp_wide` re-attacks each method's selected
configuration from its saved embeddings with the protocol's MLP four times wider, logs it to the runs, and the
leaderboard's attacker table shows whether the leakage is saturated in capacity; where nothing was checked, the
table is as before."""

from __future__ import annotations

import json
import statistics

import mlflow
import pytest

from removal_bench.commands.cli import main
from removal_bench.measuring.attack import CAPACITY_SPEC
from removal_bench.running.tracking import sqlite_uri

SMALL = "synthetic:n_train=400:n_eval=300"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("capacity")
    uri = sqlite_uri(folder / "mlflow.db")
    common = ["--datasets", SMALL, "--seeds", "2", "--epochs", "2", "--executor", "serial", "--tracking-uri", uri,
              "--quiet"]
    assert main(["run", "--methods", "vanilla,grl", "--set", "grl.lambda=0.01,3", "--save-embeddings", *common,
                 "--experiment", "cap", "--results-dir", str(folder / "cap")]) == 0
    assert main(["run", "--methods", "vanilla", *common, "--experiment", "plain", "--results-dir",
                 str(folder / "plain")]) == 0
    return folder, uri


def runs(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`bench.kind` = 'trial'")


def test_the_selected_configurations_are_re_attacked_and_the_table_says_whether_they_are_saturated(store, capsys):
    folder, uri = store
    assert main(["attack", "--selected", "cap", "--attacker", "mlp_wide", "--tracking-uri", uri]) == 0
    found = runs(uri, "cap")
    checked = found[found["metrics.attack.mlp_wide.leakage"].notna()]
    # every seed of vanilla's one configuration and of GRL's selected one, nothing else
    assert sorted(checked["tags.bench.method"]) == ["grl", "grl", "vanilla", "vanilla"]
    assert checked.groupby("tags.bench.method")["tags.bench.config_key"].nunique().to_dict() == {"grl": 1, "vanilla": 1}
    assert set(checked["tags.attack.mlp_wide.spec"]) == {CAPACITY_SPEC}
    assert ((checked["metrics.attack.mlp_wide.leakage"] >= 0) & (checked["metrics.attack.mlp_wide.leakage"] <= 1)).all()

    capsys.readouterr()
    output = folder / "lb.md"
    assert main(["leaderboard", "--experiment", "cap", "--tracking-uri", uri, "--output", str(output), "--quiet"]) == 0
    text = output.read_text()
    header = next(line for line in text.splitlines() if "probe 100%" in line)
    assert [cell.strip() for cell in header.split("|")[-3:-1]] == ["wide MLP", "capacity"], header
    assert text.count("saturated (") + text.count("at the margin (") >= 2  # a verdict for each method
    assert main(["leaderboard", "--experiment", "cap", "--tracking-uri", uri, "--output", str(folder / "lb.json.md"),
                 "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    standing = document["datasets"]["synthetic"]["standing"]
    for method in standing["methods"]:
        mine = checked[checked["tags.bench.method"] == method["method"]]
        gain = statistics.mean(mine["metrics.attack.mlp_wide.leakage"] - mine["metrics.leakage"])
        assert method["capacity"]["gain"]["estimate"] == pytest.approx(gain)
        assert method["capacity"]["saturated"] == (gain <= 0.02)


def test_without_a_capacity_check_the_attacker_table_is_unchanged(store):
    folder, uri = store
    output = folder / "plain.md"
    assert main(["leaderboard", "--experiment", "plain", "--tracking-uri", uri, "--output", str(output), "--quiet"]) == 0
    text = output.read_text()
    assert "probe 100%" in text and "wide MLP" not in text and "saturated" not in text


@pytest.mark.parametrize("arguments, message", [
    (["--selected", "plain", "--attacker", "mlp_wide"], "hold neither model.pt nor embeddings.npz"),
    (["--attacker", "mlp_wide"], "give RUN_ID(s) or --selected EXPERIMENT"),
])
def test_a_capacity_check_that_cannot_run_says_why_in_one_line(store, capsys, arguments, message):
    _, uri = store
    before = runs(uri, "plain")
    assert main(["attack", *arguments, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert "metrics.attack.mlp_wide.leakage" not in runs(uri, "plain").columns and len(runs(uri, "plain")) == len(before)


def test_a_dataset_at_two_settings_is_checked_one_setting_at_a_time(store, capsys):
    """An experiment that holds one dataset at two settings (Biased-MNIST's sections at rho 0.99 and 0.997 share
    one): --selected alone would pick one configuration over both, so it is refused in one line naming the
    choice; --datasets NAME:OPTION=VALUE re-attacks that setting's selected runs and no other."""
    folder, uri = store
    for n_eval in (300, 200):
        assert main(["run", "--methods", "vanilla", "--datasets", f"synthetic:n_train=400:n_eval={n_eval}", "--seeds", "2",
                     "--epochs", "2", "--executor", "serial", "--tracking-uri", uri, "--quiet", "--save-embeddings",
                     "--experiment", "two", "--results-dir", str(folder / "two")]) == 0
    capsys.readouterr()
    assert main(["attack", "--selected", "two", "--attacker", "mlp_wide", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 settings" in err[0] and "--datasets synthetic:n_eval=" in err[0], err
    assert "metrics.attack.mlp_wide.leakage" not in runs(uri, "two").columns
    assert main(["attack", "--selected", "two", "--datasets", "synthetic:n_eval=200", "--attacker", "mlp_wide",
                 "--tracking-uri", uri]) == 0
    found = runs(uri, "two")
    checked = found[found["metrics.attack.mlp_wide.leakage"].notna()]
    assert len(checked) == 2 and set(checked["params.data.n_eval"]) == {"200"}


def test_the_leaderboard_takes_the_capacity_check_from_rerun_tables(store, capsys):
    """`bench leaderboard --capacity FILE`: runs without embeddings (experiment plain) rank with the wide MLP's
    figures of reruns of the same configuration (experiment cap's table): the gain is the reruns' own, per seed,
    and the table says where it comes from; a table of another dataset is refused in one line."""
    folder, uri = store
    assert main(["attack", "--selected", "cap", "--attacker", "mlp_wide", "--tracking-uri", uri]) == 0
    table = folder / "cap.jsonl.gz"
    assert main(["export", "--experiment", "cap", "--tracking-uri", uri, "--output", str(table), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--experiment", "plain", "--tracking-uri", uri, "--capacity", str(table), "--json",
                 "--output", str(folder / "plain-capacity.md")]) == 0
    document = json.loads(capsys.readouterr().out)
    (vanilla,) = document["datasets"]["synthetic"]["standing"]["methods"]
    reruns = runs(uri, "cap")
    reruns = reruns[(reruns["tags.bench.method"] == "vanilla") & reruns["metrics.attack.mlp_wide.leakage"].notna()]
    newest = reruns.sort_values("start_time").groupby("tags.bench.seed").tail(1)
    gain = statistics.mean(newest["metrics.attack.mlp_wide.leakage"] - newest["metrics.leakage"])
    assert vanilla["capacity"]["gain"]["estimate"] == pytest.approx(gain)
    text = (folder / "plain-capacity.md").read_text()
    assert "Measured on reruns of the selected configuration" in text and "wide MLP" in text
    other = folder / "other.jsonl.gz"
    assert main(["run", "--methods", "vanilla", "--datasets", "colored_digits:colourings=1", "--seeds", "1",
                 "--epochs", "1", "--executor", "serial", "--tracking-uri", uri, "--quiet", "--experiment", "other",
                 "--results-dir", str(folder / "other")]) == 0
    assert main(["export", "--experiment", "other", "--tracking-uri", uri, "--output", str(other), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--experiment", "plain", "--tracking-uri", uri, "--capacity", str(other),
                 "--output", str(folder / "refused.md"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--capacity" in err[0], err
    assert not (folder / "refused.md").exists()
