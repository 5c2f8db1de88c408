"""`bench run` through a real local Ray and a real SQLite MLflow store, as a user runs it."""

import subprocess

import mlflow
import pytest
from mlflow import MlflowClient

from tests.conftest import bench_command, quiet_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    command = bench_command() + [
        "run", "--methods", "vanilla,irene,grl", "--datasets", "synthetic:n_train=800:n_eval=400",
        "--seeds", "2", "--epochs", "3", "--train", "grl.lr=1e30", "--experiment", "e2e", "--save-embeddings",
    ]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=quiet_env(), timeout=600)
    return folder, done


def test_exit_status_and_printed_table(finished_run):
    folder, done = finished_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    out = done.stdout
    assert "synthetic" in out
    table_lines = [line for line in out.splitlines() if "│" in line or "|" in line]
    vanilla = next(line for line in table_lines if " vanilla " in line)
    irene = next(line for line in table_lines if " irene " in line)
    grl = next(line for line in table_lines if "grl(lr=1e+30)" in line)
    assert "2/2" in vanilla and "2/2" in irene and "±" in irene
    assert "0/2" in grl and "FAILED 2" in grl and "diverged" in grl
    assert "[  6/6]" in done.stderr  # the progress display saw every trial end


def test_runs_params_and_metrics_land_in_sqlite(finished_run):
    folder, done = finished_run
    uri = "sqlite:///" + str(folder / "mlflow.db")
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["e2e"])
    parents = runs[runs["tags.bench.kind"] == "invocation"]
    trials = runs[runs["tags.bench.kind"] == "trial"]
    assert len(parents) == 1 and len(trials) == 6
    assert set(trials["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    assert trials["tags.bench.config_hash"].nunique() == 6
    finished = trials[trials["status"] == "FINISHED"]
    failed = trials[trials["status"] == "FAILED"]
    assert sorted(finished["tags.bench.method"]) == ["irene", "irene", "vanilla", "vanilla"]
    assert list(failed["tags.bench.method"]) == ["grl", "grl"]
    assert all("diverged" in error for error in failed["tags.bench.error"])
    for column in ("metrics.accuracy", "metrics.leakage", "metrics.mi_bits", "metrics.floor_leakage", "metrics.leak_gbdt"):
        assert finished[column].notna().all(), column
    irene = finished[finished["tags.bench.method"] == "irene"]
    assert set(irene["params.hp.gamma"]) == {"0.2"} and irene["metrics.head_acc"].notna().all()
    assert set(finished["params.data.n_train"]) == {"800"}
    assert finished["tags.version.torch"].notna().all()

    client = MlflowClient(uri)
    run_id = irene.iloc[0]["run_id"]
    history = client.get_metric_history(run_id, "val_accuracy")
    assert {m.step for m in history} == {1, 2, 3}  # one per epoch; the final value at the last epoch
    artifacts = [a.path for a in client.list_artifacts(run_id)]
    assert "embeddings.npz" in artifacts


def test_results_written_as_markdown_csv_and_plot(finished_run):
    folder, done = finished_run
    results = folder / "results" / "e2e"
    assert {p.name for p in results.iterdir() if not p.name.startswith(".")} == {"synthetic.md", "synthetic.csv", "synthetic.png"}
    markdown = (results / "synthetic.md").read_text()
    assert "| vanilla" in markdown and "FAILED 2" in markdown
    assert (results / "synthetic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
