"""`bench attack RUN_ID`: re-attack a logged trial; the protocol's attackers give the trial's leakage back."""

import json
import subprocess

import pytest
from mlflow import MlflowClient

from removal_bench.measuring.attack import parse_attacker
from removal_bench.commands.cli import main
from removal_bench.core.errors import UserError
from tests.conftest import bench_command, quiet_env


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One tiny serial `bench run` with --log-models and --save-embeddings, in this process."""
    folder = tmp_path_factory.mktemp("attack")
    uri = "sqlite:///" + str(folder / "mlflow.db")
    status = main([
        "run", "--methods", "vanilla,irene", "--datasets", "synthetic:n_train=400:n_eval=300:s_nonlinear=1", "--seeds", "1",
        "--epochs", "2", "--executor", "serial", "--experiment", "attack", "--tracking-uri", uri,
        "--results-dir", str(folder / "results"), "--data-root", str(folder), "--log-models", "--save-embeddings", "--quiet",
    ])
    assert status == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("attack").experiment_id
    runs = client.search_runs([experiment])
    trials = {r.data.tags["bench.method"]: r for r in runs if r.data.tags["bench.kind"] == "trial"}
    parent = next(r for r in runs if r.data.tags["bench.kind"] == "invocation")
    bare = client.create_run(experiment, tags={"bench.kind": "trial", "bench.method": "vanilla"}).info.run_id
    client.set_terminated(bare)  # a trial run with neither model nor embeddings
    return folder, uri, client, trials, parent.info.run_id, bare


def attack_json(capsys, store, run_id, *options):
    folder, uri = store[0], store[1]
    assert main(["attack", run_id, "--tracking-uri", uri, "--data-root", str(folder), "--json", *options]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_reproduces_the_trials_leakage_from_its_model(store):
    folder, uri, client, trials, parent, bare = store
    run = trials["irene"]
    done = subprocess.run(bench_command() + ["attack", run.info.run_id, "--tracking-uri", uri, "--data-root", str(folder)],
                          cwd=folder, capture_output=True, text=True, env=quiet_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the rebuilt model" in done.stdout and "difference +0.0000" in done.stdout
    logged = client.get_run(run.info.run_id).data
    assert abs(logged.metrics["attack.leakage"] - run.data.metrics["leakage"]) <= 0.01
    for attacker in ("linear", "mlp", "gbdt"):
        assert abs(logged.metrics[f"attack.{attacker}.leakage"] - run.data.metrics[f"leak_{attacker}"]) <= 0.01
    assert logged.tags["attack.leakage_attacker"] == run.data.tags["leakage_attacker"]
    assert logged.tags["attack.source"] == "model"


@pytest.mark.parametrize("source", ["model", "embeddings"])
def test_both_sources_give_the_logged_figures(capsys, store, source):
    run = store[3]["vanilla"]
    document = attack_json(capsys, store, run.info.run_id, "--from", source, "--no-log")
    assert document["source"] == source
    assert abs(document["leakage"] - run.data.metrics["leakage"]) <= 0.01
    assert abs(document["val_leakage"] - run.data.metrics["val_leakage"]) <= 0.01
    assert abs(document["mi_bits"] - run.data.metrics["mi_bits"]) <= 0.01


def test_any_classifier_joins_by_import_path(capsys, store):
    folder, uri, client, trials, parent, bare = store
    run_id = trials["vanilla"].info.run_id
    document = attack_json(capsys, store, run_id, "--attacker", "linear",
                           "--attacker", "sklearn.dummy.DummyClassifier:strategy=stratified",
                           "--attacker", "sklearn.svm.SVC:C=10")
    dummy, svc = document["attackers"]["DummyClassifier_strategy-stratified"], document["attackers"]["SVC_C-10"]
    # A classifier that ignores z is at chance on both classes: its balanced accuracy stays near 1/2.
    assert abs(dummy["test_balanced_accuracy"] - 0.5) < 0.1
    assert svc["test_cross_entropy"] is None  # no predict_proba: scored on its votes only
    assert document["best"] != "DummyClassifier_strategy-stratified"
    metrics = client.get_run(run_id).data.metrics
    assert metrics["attack.SVC_C-10.leakage"] == pytest.approx(svc["test_balanced_accuracy"])
    assert "attack.DummyClassifier_strategy-stratified.val_leakage" in metrics


@pytest.mark.parametrize("arguments, message", [
    (["--attacker", "sklearn.svm.NoSuchThing"], "has no class NoSuchThing"),
    (["--attacker", "no_such_package.Model"], "cannot import no_such_package"),
    (["--attacker", "sklearn.linear_model.LinearRegression"], "not a scikit-learn classifier"),
    (["--attacker", "sklearn.svm.SVC:C=-1"], "'C' parameter of SVC"),
    (["--attacker", "sklearn.svm.SVC:bogus=1"], "unexpected keyword"),
    (["--attacker", "svm"], "expected one of linear, mlp, gbdt"),
])
def test_bad_attackers_are_one_line_and_log_nothing(capsys, store, arguments, message):
    folder, uri, client, trials, parent, bare = store
    run_id = trials["irene"].info.run_id
    before = client.get_run(run_id).data.metrics
    assert main(["attack", run_id, "--tracking-uri", uri, *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error:") and message in err and err.count("\n") == 1
    assert client.get_run(run_id).data.metrics == before


def test_bad_runs_are_one_line(capsys, store):
    folder, uri, client, trials, parent, bare = store
    for run_id, message in (("0123456789abcdef", "no run '0123456789abcdef'"), (parent, "not a bench trial"),
                            (bare, "has no model.pt or embeddings.npz")):
        assert main(["attack", run_id, "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bench: error:") and message in err and err.count("\n") == 1, err


def test_parse_attacker_reads_keyword_values():
    spec = parse_attacker("sklearn.neighbors.KNeighborsClassifier:n_neighbors=7:weights=distance")
    model = spec.factory()
    assert model.n_neighbors == 7 and model.weights == "distance" and spec.name == "KNeighborsClassifier_n_neighbors-7_weights-distance"
    assert parse_attacker("gbdt").factory is None
    with pytest.raises(UserError):
        parse_attacker("sklearn.svm.SVC:C")
