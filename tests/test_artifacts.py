"""What `bench run` leaves in MLflow besides metrics: report artefacts, model files, dataset inputs; --json/--quiet."""

import json
import subprocess

import numpy as np
import pytest
from mlflow import MlflowClient

from removal_bench.running.artifacts import dataset_description, dataset_input, load_model
from removal_bench.commands.cli import main
from removal_bench.running.trial import embed_split, load_data, make_config
from tests.conftest import bench_command, quiet_env


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("artifacts")
    command = bench_command() + [
        "run", "--methods", "vanilla,leace,inlp", "--datasets", "synthetic:n_train=400:n_eval=300", "--seeds", "1",
        "--epochs", "2", "--executor", "serial", "--experiment", "art", "--log-models", "--save-embeddings", "--json",
    ]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=quiet_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    uri = "sqlite:///" + str(folder / "mlflow.db")
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("art").experiment_id])
    parent = next(r for r in runs if r.data.tags["bench.kind"] == "invocation")
    trials = {r.data.tags["bench.method"]: r for r in runs if r.data.tags["bench.kind"] == "trial"}
    return folder, done, client, parent, trials


def test_parent_run_carries_the_report(logged_run):
    folder, done, client, parent, trials = logged_run
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert names == {"report/synthetic.md", "report/synthetic.csv", "report/synthetic.png"}
    downloaded = client.download_artifacts(parent.info.run_id, "report/synthetic.md", str(folder / "download"))
    assert open(downloaded).read() == (folder / "results" / "art" / "synthetic.md").read_text()


def test_each_trial_logs_its_model_and_dataset(logged_run):
    folder, done, client, parent, trials = logged_run
    assert set(trials) == {"vanilla", "leace", "inlp"}
    for method, run in trials.items():
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"model.pt", "embeddings.npz"}, method
        (logged,) = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert logged.dataset.name == "synthetic"
        assert {tag.key: tag.value for tag in logged.tags} == {"mlflow.data.context": "training"}
        profile = json.loads(logged.dataset.profile)
        assert profile["options"]["n_train"] == 400 and profile["options"]["n_eval"] == 300
    digests = {client.get_run(run.info.run_id).inputs.dataset_inputs[0].dataset.digest for run in trials.values()}
    assert len(digests) == 1  # the same data, the same digest


@pytest.mark.parametrize("method", ["vanilla", "leace", "inlp"])
def test_logged_model_rebuilds_the_trial_bottleneck(logged_run, method):
    """LEACE's eraser is a plain dataclass attribute and INLP's projection a buffer registered as None: both must come back."""
    folder, done, client, parent, trials = logged_run
    run_id = trials[method].info.run_id
    target = folder / "download" / method
    model_path = client.download_artifacts(run_id, "model.pt", str(target))
    embeddings = np.load(client.download_artifacts(run_id, "embeddings.npz", str(target)))
    rebuilt, config = load_model(model_path)
    assert config["method"] == method and config["dataset_options"]["n_train"] == 400 and "device" not in config
    data = load_data({**config, "data_root": str(folder)})
    for split in ("probe", "val", "test"):
        np.testing.assert_array_equal(embed_split(rebuilt, getattr(data, split)).z, embeddings[f"z_{split}"])


def test_json_output_is_one_document_with_the_rows(logged_run):
    folder, done, client, parent, trials = logged_run
    document = json.loads(done.stdout)  # nothing else on stdout
    assert document["parent_run_id"] == parent.info.run_id
    rows = {row["method"]: row for row in document["datasets"]["synthetic"]["configurations"]}
    for method, run in trials.items():
        assert rows[method]["metrics"]["leakage"]["mean"] == pytest.approx(run.data.metrics["leakage"])
        assert rows[method]["seeds"]["finished"] == 1
    assert [m["rank"] for m in document["datasets"]["synthetic"]["methods"]] == [1, 2, 3]
    standing = document["datasets"]["synthetic"]["standing"]  # LEADERBOARD.md's statistics, in the JSON too
    assert {m["method"] for m in standing["methods"]} == set(trials)
    for method in standing["methods"]:  # one seed each: an interval that is a point, or none at all
        volume = method["hypervolume"]
        assert volume["estimate"] is None or volume["low"] <= volume["estimate"] <= volume["high"]
    assert standing["reliability"]["vanilla_leakage_norm"]["estimate"] is not None
    assert "[  3/3]" in done.stderr  # the progress lines stay, on stderr


def test_report_quiet_and_json(logged_run, capsys, tmp_path):
    folder, done, client, parent, trials = logged_run
    uri = "sqlite:///" + str(folder / "mlflow.db")
    assert main(["report", "--experiment", "art", "--tracking-uri", uri, "--results-dir", str(tmp_path / "q"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "" and (tmp_path / "q" / "synthetic.md").exists()
    assert main(["report", "--experiment", "art", "--tracking-uri", uri, "--results-dir", str(tmp_path / "j"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {row["label"] for row in document["datasets"]["synthetic"]["configurations"]} == {"vanilla", "leace", "inlp"}
    assert main(["leaderboard", "--tracking-uri", uri, "--output", str(tmp_path / "board.md"), "--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["files"] == [str(tmp_path / "board.md")] and (tmp_path / "board.md").exists()
    assert board["datasets"]["synthetic"]["standing"]["replicates"] > 0


def test_dataset_input_names_file_checksums():
    description = dataset_description(make_config("vanilla", "compas"))
    assert description["files"] and all(len(item["sha256"]) == 64 for item in description["files"])
    changed = dataset_input(make_config("vanilla", "synthetic", {"corr": 0.9})).dataset.digest
    assert changed != dataset_input(make_config("vanilla", "synthetic")).dataset.digest
