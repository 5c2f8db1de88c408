"""`bench sweep` on a real Ray cluster (token authentication on) with a real MLflow server, as a user runs them.

The cluster is one head node started with ``ray start --head --block`` on a
loopback address, 2 CPUs and a temporary folder; the MLflow server has a SQLite
backend. Both are stopped in teardown by signalling the processes this module
started (``ray stop`` would stop every Ray on the machine, other users' too).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from removal_bench.running.executors import schedule_score
from removal_bench.running.sweep import SweepRequest, plan_sweep
from tests.conftest import bench_command, quiet_env

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent  # the virtual environment's ray and mlflow
SMALL = "synthetic:n_train=300:n_eval=200"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(process: subprocess.Popen, group: bool = False) -> None:
    if process.poll() is not None:
        return
    (os.killpg if group else os.kill)(process.pid, signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        (os.killpg if group else os.kill)(process.pid, signal.SIGKILL)
        process.wait(30)


@pytest.fixture(scope="module")
def services():
    """A Ray head node with token authentication and an MLflow server, started side by side."""
    folder = Path(tempfile.mkdtemp(prefix="rbc"))  # short: Ray's socket paths live under it
    home = folder / "home"
    # As a user would: generate a token once, then give every node and driver the same token.
    generated = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env={**quiet_env(), "HOME": str(home)},
                               capture_output=True, text=True, timeout=120)
    assert generated.returncode == 0, generated.stderr
    token = home / ".ray" / "auth_token"
    assert token.read_text().strip() == generated.stdout.strip()
    env = {**quiet_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_AUTH_TOKEN", None)

    ray_port, mlflow_port = free_port(), free_port()
    head_log = folder / "head.log"
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--port", str(ray_port), "--node-ip-address", "127.0.0.1",
         "--num-cpus", "2", "--temp-dir", str(folder / "ray"), "--include-dashboard", "false", "--disable-usage-stats"],
        env=env, stdout=head_log.open("w"), stderr=subprocess.STDOUT,
    )
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(mlflow_port),
         "--workers", "1"],
        env=quiet_env(), cwd=folder, stdout=(folder / "mlflow.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{mlflow_port}"

    def healthy():
        try:
            return urllib.request.urlopen(uri + "/health", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(lambda: "Ray runtime started" in head_log.read_text() or head.poll() is not None, 180, "ray start")
        assert head.poll() is None, head_log.read_text()[-3000:]
        wait_for(healthy, 180, "mlflow server")
        yield {"address": f"127.0.0.1:{ray_port}", "uri": uri, "env": env, "folder": folder}
    finally:
        stop(head)  # SIGTERM: the blocking `ray start` stops the processes of its node
        stop(server, group=True)
        for pid in leftovers(folder):  # anything of this node that outlived it
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(folder, ignore_errors=True)


def leftovers(folder: Path) -> list[int]:
    """Processes whose command line names ``folder`` (only this module's cluster uses it)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if str(folder) in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            pass
    return [pid for pid in found if pid != os.getpid()]


SWEEP = ["--methods", "vanilla,irene", "--datasets", SMALL, "--samples", "3", "--seeds", "2", "--epochs", "1",
         "--train", "vanilla.lr=1e30"]


def trial_runs(uri: str, experiment: str) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`bench.kind` = 'trial'")


@pytest.fixture(scope="module")
def killed_and_resumed(services, tmp_path_factory):
    """The sweep's driver SIGKILLed after two trials finished, then the same command run again."""
    folder = tmp_path_factory.mktemp("sweep")
    command = bench_command() + ["sweep", *SWEEP, "--address", services["address"], "--tracking-uri", services["uri"],
                                 "--experiment", "cluster", "--storage-path", str(folder / "ray_results")]
    client = MlflowClient(services["uri"])
    with (folder / "first.err").open("w") as errors:
        driver = subprocess.Popen(command, cwd=folder, env=services["env"], stdout=subprocess.DEVNULL, stderr=errors)

        def two_finished():
            if driver.poll() is not None:
                pytest.fail("the first sweep ended by itself:\n" + (folder / "first.err").read_text()[-3000:])
            found = client.get_experiment_by_name("cluster")
            if found is None:
                return False
            done = client.search_runs([found.experiment_id], "tags.`bench.kind` = 'trial' and attributes.status = 'FINISHED'")
            return len(done) >= 2

        wait_for(two_finished, 300, "two FINISHED trials", interval=0.25)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)
    time.sleep(1)  # let the server finish a request the driver sent just before it died
    at_kill = trial_runs(services["uri"], "cluster")
    second = subprocess.run(command, cwd=folder, env=services["env"], capture_output=True, text=True, timeout=500)
    assert second.returncode == 0, second.stderr[-3000:]
    after = trial_runs(services["uri"], "cluster")
    planned = {p.key for p in plan_sweep(SweepRequest(methods=[SWEEP[1]], datasets=[SMALL], samples=3, seeds=2,
                                                      epochs=1, train=["vanilla.lr=1e30"]))}
    return {"folder": folder, "at_kill": at_kill, "after": after, "second": second, "planned": planned,
            "command": command}


def test_every_trial_lands_in_mlflow_with_params_and_metrics(killed_and_resumed, services):
    after, planned = killed_and_resumed["after"], killed_and_resumed["planned"]
    assert len(planned) == 8  # vanilla: one configuration (lr fixed) x 2 seeds; irene: 3 draws x 2 seeds
    ended = after[after["status"].isin(["FINISHED", "FAILED"])]
    assert set(ended["tags.bench.config_hash"]) == planned
    irene = ended[ended["tags.bench.method"] == "irene"]
    assert len(irene) == 6 and set(irene["status"]) == {"FINISHED"}
    assert irene["params.hp.gamma"].nunique() == 3 and set(irene["params.seed"]) == {"0", "1"}
    assert set(irene["params.data.n_train"]) == {"300"} and set(irene["params.epochs"]) == {"1"}
    for metric in ("accuracy", "leakage", "leakage_norm", "val_leakage", "leak_gbdt", "mi_bits", "floor_leakage"):
        assert irene[f"metrics.{metric}"].notna().all(), metric
    assert set(irene["metrics.num_classes"]) == {2.0}
    history = MlflowClient(services["uri"]).get_metric_history(irene.iloc[0]["run_id"], "val_accuracy")
    assert {m.step for m in history} == {1}  # the epoch and the final value
    vanilla = ended[ended["tags.bench.method"] == "vanilla"]
    assert set(vanilla["status"]) == {"FAILED"}  # its loss goes NaN: FAILED with the reason, the sweep goes on
    assert all("diverged" in error for error in vanilla["tags.bench.error"])
    assert any((killed_and_resumed["folder"] / "ray_results").iterdir())  # Tune's results on the storage path


def test_a_killed_driver_resumes_without_rerunning_finished_trials(killed_and_resumed):
    at_kill, after = killed_and_resumed["at_kill"], killed_and_resumed["after"]
    planned = killed_and_resumed["planned"]
    finished = at_kill[at_kill["status"] == "FINISHED"]
    assert 2 <= len(finished) < len(planned), "the driver must be killed mid-sweep"
    for key, run_id in zip(finished["tags.bench.config_hash"], finished["run_id"]):
        same = after[after["tags.bench.config_hash"] == key]
        assert list(same["run_id"]) == [run_id]  # not run again, same run
    first_parent = set(at_kill["tags.mlflow.parentRunId"])
    assert len(first_parent) == 1
    resumed = after[~after["tags.mlflow.parentRunId"].isin(first_parent)]
    assert resumed["tags.mlflow.parentRunId"].nunique() == 1
    assert sorted(resumed["tags.bench.config_hash"]) == sorted(planned - set(finished["tags.bench.config_hash"]))
    assert f"{len(finished)} already complete in experiment 'cluster'; running {len(planned) - len(finished)}" \
        in killed_and_resumed["second"].stderr


def test_the_report_counts_each_configuration_and_seed_once(killed_and_resumed, services):
    folder = killed_and_resumed["folder"]
    done = subprocess.run(bench_command() + ["report", "--experiment", "cluster", "--tracking-uri", services["uri"],
                                             "--results-dir", str(folder / "report"), "--format", "markdown,csv,latex"],
                          cwd=folder, env=services["env"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pd.read_csv(folder / "report" / "synthetic.csv", dtype={"missing_seeds": str})
    irene, vanilla = rows[rows["method"] == "irene"], rows[rows["method"] == "vanilla"]
    assert len(irene) == 3 and list(irene["finished"]) == [2, 2, 2] and list(irene["failed"]) == [0, 0, 0]
    assert list(vanilla["finished"]) == [0] and list(vanilla["failed"]) == [2]
    assert rows["missing_seeds"].isna().all() and set(rows["expected_seeds"]) == {2}
    assert (folder / "report" / "synthetic.tex").exists() and (folder / "report" / "synthetic.png").exists()


def test_asha_with_a_leakage_guard_scores_epochs_as_documented_and_resumes(services, tmp_path):
    command = bench_command() + [
        "sweep", "--methods", "irene", "--datasets", SMALL, "--samples", "4", "--seeds", "1", "--epochs", "3",
        "--scheduler", "asha", "--max-leakage", "0.75", "--reduction-factor", "2", "--address", services["address"],
        "--tracking-uri", services["uri"], "--experiment", "asha",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=services["env"], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = trial_runs(services["uri"], "asha")
    assert len(runs) == 4
    stopped = runs["tags.bench.stopped_early"].notna() if "tags.bench.stopped_early" in runs else pd.Series(False, runs.index)
    assert set(runs.loc[stopped, "status"]) <= {"KILLED"} and set(runs.loc[~stopped, "status"]) == {"FINISHED"}
    client = MlflowClient(services["uri"])
    for run_id, was_stopped in zip(runs["run_id"], stopped):
        accuracy = {m.step: m.value for m in client.get_metric_history(run_id, "val_accuracy")}
        leakage = {m.step: m.value for m in client.get_metric_history(run_id, "val_leakage_epoch")}
        score = {m.step: m.value for m in client.get_metric_history(run_id, "bench_score")}
        epochs = sorted(leakage)
        assert epochs == sorted(score) and (epochs == [1, 2, 3] or was_stopped and epochs[-1] < 3)
        for step in epochs:
            expected = schedule_score({"val_accuracy": accuracy[step], "val_leakage_epoch": leakage[step]}, 0.75)
            assert score[step] == pytest.approx(expected)
            assert score[step] == (pytest.approx(accuracy[step]) if leakage[step] <= 0.75 else 0.0)
    again = subprocess.run(command, cwd=tmp_path, env=services["env"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 already complete in experiment 'asha'; running 0" in again.stderr  # stopped early counts as complete


def test_a_driver_without_the_cluster_token_is_refused(services, tmp_path):
    env = {**services["env"], "RAY_AUTH_TOKEN": "0" * 64}
    env.pop("RAY_AUTH_TOKEN_PATH")
    done = subprocess.run(bench_command() + ["sweep", "--methods", "vanilla", "--datasets", SMALL, "--samples", "1",
                                             "--seeds", "1", "--epochs", "0", "--address", services["address"],
                                             "--tracking-uri", services["uri"], "--experiment", "refused"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bench: error: cannot start or reach Ray at {services['address']}")
    assert "Traceback" not in done.stderr


def test_a_searched_sweep_on_the_cluster_proposes_what_it_proposes_here_and_resumes(services, tmp_path):
    """`--search optuna` through `--address`: the rounds' proposals are those of a serial sweep on this machine
    (the same history and seeds), and the same command again runs nothing."""
    search = ["sweep", "--search", "optuna", "--samples", "4", "--proposals", "1", "--methods", "irene",
              "--datasets", SMALL, "--seeds", "1", "--epochs", "1", "--experiment", "search"]
    cluster = bench_command() + [*search, "--address", services["address"], "--tracking-uri", services["uri"]]
    done = subprocess.run(cluster, cwd=tmp_path, env=services["env"], capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "search round 3 of 3: 1 new configurations x 1 seeds = 1 trials; 0 already complete; running 1" in done.stderr
    local_uri = f"sqlite:///{tmp_path / 'local.db'}"
    here = subprocess.run(bench_command() + [*search, "--executor", "serial", "--tracking-uri", local_uri],
                          cwd=tmp_path, env=quiet_env(), capture_output=True, text=True, timeout=500)
    assert here.returncode == 0, here.stderr[-3000:]
    on_cluster, local = trial_runs(services["uri"], "search"), trial_runs(local_uri, "search")
    assert len(on_cluster) == 4 and set(on_cluster["status"]) == {"FINISHED"}
    assert sorted(on_cluster["tags.bench.config_hash"]) == sorted(local["tags.bench.config_hash"])
    assert sorted(on_cluster["tags.bench.search_round"]) == ["1", "1", "2", "3"]
    again = subprocess.run(cluster, cwd=tmp_path, env=services["env"], capture_output=True, text=True, timeout=500)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 already complete in experiment 'search'; running 0" in again.stderr
    assert again.stderr.count("1 already complete; running 0") == 2
    assert len(trial_runs(services["uri"], "search")) == 4
