"""Faults while a sweep runs: the MLflow server stops mid-sweep and comes back.

A real ``mlflow server`` (SQLite backend in a temporary folder, a free loopback
port) is killed while a serial sweep runs in a subprocess, then restarted on the
same port and backend. Within the retry window the sweep waits and ends as if
nothing happened; past it, it stops with one line saying how to resume, and the
same command run again completes the sweep. Either way every planned trial ends
with exactly one FINISHED run.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from removal_bench.running.sweep import SweepRequest, plan_sweep
from removal_bench.running.tracking import Tracker, sqlite_uri
from tests.conftest import BenchProcess, quiet_env

pytestmark = pytest.mark.timeout(900)

BIN = Path(sys.executable).parent
DATASET = "synthetic:n_train=300:n_eval=200"
EXPERIMENT = "faults"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``mlflow server`` on one port and backend, stopped by killing its process group, started again at will."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.backend = sqlite_uri(folder / "mlflow.db")
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process = None
        Tracker(self.backend, EXPERIMENT)  # the schema exists before the server starts: restarts do not migrate

    def start(self) -> None:
        log = (self.folder / "server.log").open("a")
        self.process = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", self.backend, "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1", "--artifacts-destination", str(self.folder / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, env=quiet_env(), start_new_session=True,
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        pytest.fail("the MLflow server did not start within 240 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # as a crash: no graceful shutdown
            self.process.wait(30)


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path)
    running.start()
    yield running
    running.stop()


def sweep_process(arguments: list[str], folder: Path, retry_seconds: float) -> BenchProcess:
    """A ``bench sweep`` subprocess whose progress lines (stderr) can be waited for."""
    return BenchProcess(arguments, folder, {"BENCH_TRACKING_RETRY_SECONDS": str(retry_seconds)})


def sweep_arguments(server: Server, seeds: int, results: Path) -> list[str]:
    return ["sweep", "--methods", "vanilla,grl", "--datasets", DATASET, "--epochs", "1", "--samples", "1",
            "--seeds", str(seeds), "--executor", "serial", "--tracking-uri", server.uri, "--experiment", EXPERIMENT,
            "--results-dir", str(results)]


def planned_hashes(seeds: int) -> set[str]:
    request = SweepRequest(methods=["vanilla,grl"], datasets=[DATASET], epochs=1, samples=1, seeds=seeds)
    return {trial.key for trial in plan_sweep(request)}


def finished_runs_per_hash(server: Server) -> dict[str, int]:
    client = MlflowClient(server.backend)  # the backend file itself: what the server wrote
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], "tags.`bench.kind` = 'trial'", max_results=10000)
    counts: dict[str, int] = {}
    for run in runs:
        if run.info.status == "FINISHED":
            key = run.data.tags["bench.config_hash"]
            counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.slow
def test_server_stopped_mid_sweep_loses_no_trial_and_the_same_command_resumes(server, tmp_path):
    results = tmp_path / "results"

    # 1. The server is down for a while, well within the retry window: the sweep waits and ends normally.
    first = sweep_process(sweep_arguments(server, 2, results), tmp_path, retry_seconds=600)
    first.wait_for_line("[  2/4]")
    server.stop()
    time.sleep(2)
    server.start()
    assert first.finish(600) == 0, "\n".join(first.lines[-30:])
    assert any("does not answer" in line and "retrying" in line for line in first.lines), "\n".join(first.lines)
    assert finished_runs_per_hash(server) == {key: 1 for key in planned_hashes(2)}

    # 2. Down for longer than the window: the driver stops with one line saying how to resume.
    arguments = sweep_arguments(server, 4, results)  # 8 trials, the 4 of step 1 already complete
    second = sweep_process(arguments, tmp_path, retry_seconds=1)
    second.wait_for_line("[  1/4]")
    server.stop()
    assert second.finish(600) == 2, "\n".join(second.lines[-30:])
    errors = [line for line in second.lines if line.startswith("bench: error:")]
    assert len(errors) == 1 and errors == second.lines[-1:], "\n".join(second.lines[-30:])
    assert "did not answer for 1 s" in errors[0] and "the same bench sweep command resumes" in errors[0]
    assert not any("Traceback" in line for line in second.lines)

    # The same command, once the server is back, runs only what is not complete, and every trial is there once.
    server.start()
    third = sweep_process(arguments, tmp_path, retry_seconds=600)
    assert third.finish(600) == 0, "\n".join(third.lines[-30:])
    summary = next(line for line in third.lines if line.startswith("sweep "))
    counts = re.search(r"= 8 trials; (\d+) already complete .*; running (\d+) ", summary)
    assert counts and int(counts[1]) >= 5 and int(counts[2]) == 8 - int(counts[1]), summary
    assert finished_runs_per_hash(server) == {key: 1 for key in planned_hashes(4)}


class Outage:
    """A store call that fails like a server that is down for ``failures`` calls, then answers."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0

    def __call__(self):
        from mlflow.exceptions import MlflowException

        self.calls += 1
        if self.calls <= self.failures:
            raise MlflowException("API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed: Connection refused")
        return "answered"


def test_retrying_waits_out_a_short_outage_and_gives_up_after_the_window(monkeypatch, capsys):
    from removal_bench.running.tracking import Retrying, TrackingUnavailable

    monkeypatch.setenv("BENCH_TRACKING_RETRY_SECONDS", "30")
    short = Outage(failures=2)
    assert Retrying("http://127.0.0.1:1")(short) == "answered" and short.calls == 3
    assert "retrying for up to 30 s" in capsys.readouterr().err

    monkeypatch.setenv("BENCH_TRACKING_RETRY_SECONDS", "1")
    call, endless = Retrying("http://127.0.0.1:1", resume="run it again"), Outage(failures=10**6)
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=r"did not answer for 1 s .*; run it again"):
        call(endless)
    assert time.monotonic() - started < 10
    with pytest.raises(TrackingUnavailable):  # once given up, the next call fails at its first refusal
        call(Outage(failures=1))
    assert call(Outage(failures=0)) == "answered"  # and a store that is back is used again


def test_a_refusal_is_not_retried(monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    from removal_bench.core.errors import UserError
    from removal_bench.running.tracking import Retrying

    monkeypatch.setenv("BENCH_TRACKING_RETRY_SECONDS", "600")

    def refuse():
        raise MlflowException("Changing param values is not allowed", error_code=INVALID_PARAMETER_VALUE)

    started = time.monotonic()
    with pytest.raises(UserError, match="refused a request: Changing param values"):
        Retrying("http://127.0.0.1:1")(refuse)
    assert time.monotonic() - started < 5


def test_a_store_whose_writer_was_sigkilled_mid_transaction_is_accepted_and_rolled_back(tmp_path):
    """A writer SIGKILLed inside a transaction leaves a hot journal beside the store. The pre-flight check read
    the store read-only, which cannot roll a hot journal back ("attempt to write a readonly database"), so every
    later command refused a whole store, and a sweep could never resume (tests/test_chaos.py, once). A real
    SIGKILL of a real writer: the check passes, the journal is rolled back, the committed rows are all there."""
    from removal_bench.running.preflight import sqlite_file

    store = tmp_path / "mlflow.db"
    writer = """
import os, signal, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY, name TEXT)")
connection.executemany("INSERT INTO experiments (name) VALUES (?)", [("committed %d" % i,) for i in range(2000)])
connection.execute("PRAGMA cache_size = 1")  # the transaction below spills to the file: the journal is hot
connection.execute("BEGIN IMMEDIATE")
connection.execute("UPDATE experiments SET name = name || ' half-written'")
connection.execute("INSERT INTO experiments (name) VALUES (?)", ("x" * 100000,))
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", writer, str(store)], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    journal = tmp_path / "mlflow.db-journal"
    assert journal.exists() and journal.stat().st_size > 0
    import sqlite3

    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # what the check met before
        sqlite3.connect(f"file:{store}?mode=ro", uri=True).execute("SELECT count(*) FROM experiments").fetchone()
    sqlite_file(store, f"sqlite:///{store}")
    rows = sqlite3.connect(store).execute("SELECT count(*), sum(name LIKE '%half-written') FROM experiments").fetchone()
    assert rows == (2000, 0) and not journal.exists()
