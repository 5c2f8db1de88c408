"""Two holes in fault handling: a trial's own files on a full disk, and runs left RUNNING by a driver that is gone.

With real faults, as in ``tests/test_full_disk_and_sigterm.py`` (whose helpers these tests share): a tmpfs
of a few megabytes filled with zeros, pointed at by the folder under test (``TMPDIR`` for the staged
``model.pt`` / ``embeddings.npz`` and the shared training folder ``reuse_dir``, the experiment's artifact
location for what MLflow copies, the data root for CelebA's image cache); a real ``SIGKILL`` to a real
driver's process group. Every full-disk test checks the exit status and the one line naming the file,
the MLflow statuses and reasons, that nothing half-written is left, and that the same command, run
again once there is room, completes without rerunning a finished trial.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from removal_bench.running import tracking
from removal_bench.running.tracking import Tracker, sqlite_uri
from tests.conftest import BenchProcess as Bench
from tests.test_full_disk_and_sigterm import (  # noqa: F401  (small_fs is a fixture)
    assert_one_error_line, fill, finished_per_hash, leftovers, planned, run_bench, runs, small_fs, sweep_arguments,
    trial_statuses,
)

pytestmark = pytest.mark.timeout(900)


def files_on(folder: Path, but: Path | None = None) -> list[str]:
    """Every regular file under ``folder`` but ``but`` (the filler): what a failed writer left there."""
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p != but)


def ours(folder: Path) -> list[str]:
    """Our folders in a temporary folder (torch leaves an empty ``torchinductor_<user>`` there: not ours)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("bench-"))


def trials(uri: str, experiment: str):
    frame = runs(uri, experiment)
    return frame[frame["tags.bench.kind"] == "trial"]


# --- a trial's own files on a full disk -----------------------------------------------------------------

def test_log_models_onto_a_full_temporary_folder_mid_sweep(small_fs, tmp_path):
    """``model.pt`` is staged in the temporary folder (``TMPDIR``) before MLflow copies it: torch.save's
    "file write failed" there is a full disk, named in one line; the trial is FAILED, the driver stops."""
    disk = small_fs("12m")  # the pre-flight wants 5 MB per trial of --log-models in the temporary folder
    uri, results = sqlite_uri(tmp_path / "mlflow.db"), tmp_path / "results"
    arguments = sweep_arguments("irene", 2, uri, "models", results) + ["--log-models"]  # irene keeps no training
    env = {"TMPDIR": str(disk), "BENCH_MIN_FREE_MB": "0"}
    first = Bench(arguments, tmp_path, env)
    first.wait_for_line("[  1/2]")
    filler = fill(disk)  # the temporary folder fills while the second trial trains
    first.finish()
    line = assert_one_error_line(first, 2, f"cannot write {disk}/bench-artifacts-", "model.pt",
                                 "irene on synthetic, seed 1", "free space, then run the same command again")
    frame = trials(uri, "models")
    assert sorted(frame["status"]) == ["FAILED", "FINISHED"], line
    failed = frame[frame["status"] == "FAILED"].iloc[0]
    assert "no space left on device" in failed["tags.bench.error"] and "model.pt" in failed["tags.bench.error"]
    assert files_on(disk, filler) == [] and ours(disk) == []  # the staging folder went, partial file and all

    filler.unlink()
    again = run_bench(arguments, tmp_path, env)
    assert again.process.returncode == 0, again.text[-3000:]
    assert "1 already complete in experiment 'models'; running 1" in again.text
    assert finished_per_hash(uri, "models") == {key: 1 for key in planned("irene", 2)}
    done = trials(uri, "models")
    for run_id in done[done["status"] == "FINISHED"]["run_id"]:
        assert [a.path for a in MlflowClient(uri).list_artifacts(run_id)] == ["model.pt"]
    assert files_on(disk) == [] and ours(disk) == []


def test_embeddings_and_models_onto_a_full_artifact_store(small_fs, tmp_path):
    """MLflow copies ``embeddings.npz`` and ``model.pt`` into the experiment's artifact location: a full one is
    one line naming the file, the trial is FAILED with the reason, and no half-copied file stays there."""
    disk = small_fs("1m")
    uri, results = sqlite_uri(tmp_path / "mlflow.db"), tmp_path / "results"
    store = disk / "mlartifacts"
    store.mkdir()
    experiment = "artefacts"
    tracking._quiet_mlflow()
    MlflowClient(uri).create_experiment(experiment, artifact_location=store.as_uri())  # its artefacts on the small disk
    filler = fill(disk)
    arguments = sweep_arguments("vanilla", 2, uri, experiment, results) + ["--save-embeddings", "--log-models"]
    env = {"BENCH_MIN_FREE_MB": "0"}
    first = run_bench(arguments, tmp_path, env)
    line = assert_one_error_line(first, 2, f"cannot write {store}", "an MLflow artifact",
                                 "free space, then run the same command again")
    frame = trials(uri, experiment)
    assert list(frame["status"]) == ["FAILED"], line  # the first trial; the driver stopped before the second
    assert "no space left on device" in frame["tags.bench.error"].iloc[0]
    assert files_on(disk, filler) == []  # no half-copied artefact

    filler.unlink()
    again = run_bench(arguments, tmp_path, env)
    assert again.process.returncode == 0, again.text[-3000:]
    assert f"0 already complete in experiment '{experiment}'; running 2" in again.text
    assert finished_per_hash(uri, experiment) == {key: 1 for key in planned("vanilla", 2)}
    done = trials(uri, experiment)
    for run_id in done[done["status"] == "FINISHED"]["run_id"]:
        assert sorted(a.path for a in MlflowClient(uri).list_artifacts(run_id)) == ["embeddings.npz", "model.pt"]


def test_the_shared_training_folder_on_a_full_temporary_folder(small_fs, tmp_path):
    """The first trial of a dataset, recipe and seed keeps its training in ``reuse_dir`` (under ``TMPDIR``)
    for the others: a full one is one line naming the file, and the trial is FAILED. (A ``TMPDIR`` full
    before the command starts is not a fault: Python's tempfile then picks ``/tmp``.)"""
    disk = small_fs("1m")
    uri, results = sqlite_uri(tmp_path / "mlflow.db"), tmp_path / "results"
    arguments = sweep_arguments("vanilla", 2, uri, "reuse", results)
    env = {"TMPDIR": str(disk), "BENCH_MIN_FREE_MB": "0"}
    first = Bench(arguments, tmp_path, env)
    first.wait_for_line("[  1/2]")  # seed 0's training is kept; seed 1's will not fit
    filler = fill(disk)
    first.finish()
    line = assert_one_error_line(first, 2, f"cannot write {disk}/bench-reuse-", "the training kept for",
                                 "free space, then run the same command again")
    frame = trials(uri, "reuse")
    assert sorted(frame["status"]) == ["FAILED", "FINISHED"], line
    failed = frame[frame["status"] == "FAILED"].iloc[0]
    assert "no space left on device" in failed["tags.bench.error"]
    assert files_on(disk, filler) == [] and ours(disk) == []  # the reuse folder went, partial file and all

    filler.unlink()
    again = run_bench(arguments, tmp_path, env)
    assert again.process.returncode == 0, again.text[-3000:]
    assert "1 already complete in experiment 'reuse'; running 1" in again.text
    assert finished_per_hash(uri, "reuse") == {key: 1 for key in planned("vanilla", 2)}
    assert files_on(disk) == [] and ours(disk) == []


def test_the_celeba_cache_onto_a_full_data_root(small_fs, tmp_path):
    """CelebA's image cache is a memory-mapped file written in place: on a disk with some room but not enough,
    writing its pages would be a SIGBUS; it is one line naming the cache, and the same command then completes."""
    from tests.test_datasets_field import write_celeba

    root = small_fs("2m")
    folder = write_celeba(root)
    filler = fill(root)
    os.truncate(filler, filler.stat().st_size - (64 << 10))  # 64 kB of room: less than the cache's 320 kB
    uri, results = sqlite_uri(tmp_path / "mlflow.db"), tmp_path / "results"
    arguments = ["sweep", "--methods", "vanilla", "--datasets", "celeba:resolution=64:val=plain", "--encoder", "small_cnn",
                 "--epochs", "1", "--samples", "1", "--seeds", "1", "--executor", "serial", "--data-root", str(root),
                 "--tracking-uri", uri, "--experiment", "faces", "--results-dir", str(results)]
    env = {"BENCH_MIN_FREE_MB": "0"}
    first = run_bench(arguments, tmp_path, env)
    assert_one_error_line(first, 2, f"no space left on device: cannot write {folder / 'images-squash-64.npy'}",
                          "the CelebA image cache", "cache_dir")
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.startswith("images-")]

    filler.unlink()
    again = run_bench(arguments, tmp_path, env)
    assert again.process.returncode == 0, again.text[-3000:]
    assert list(trials(uri, "faces")["status"]) == ["FINISHED"]
    assert (folder / "images-squash-64.npy").stat().st_size > 26 * 3 * 64 * 64


# --- runs left RUNNING by a driver that is gone -----------------------------------------------------------

def fake_invocation(client: MlflowClient, experiment_id: str, host: str, hours_ago: float, pid: str = "4242") -> list[str]:
    """An invocation with one trial, RUNNING, named as a driver on ``host`` names it, last written ``hours_ago``."""
    start = int((time.time() - hours_ago * 3600) * 1000)
    tags = {"bench.kind": "invocation", tracking.DRIVER_HOST: host, tracking.DRIVER_PID: pid,
            tracking.DRIVER_STARTED: "another-boot:1", tracking.DRIVER_PIDNS: "pid:[1]"}
    parent = client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
    child = client.create_run(experiment_id, start_time=start, tags={"bench.kind": "trial", "mlflow.parentRunId": parent,
                                                                      "bench.config_hash": f"fake{hours_ago}"})
    return [parent, child.info.run_id]


def test_runs_of_a_killed_driver_are_closed_by_the_next_command_and_a_live_drivers_are_not(tmp_path):
    """A real SIGKILL to a sweep's process group mid-sweep; then ``bench report`` on the same store, while this
    test process holds an invocation open (a live driver on this machine) and the store holds the runs of
    drivers on another host, one written to 2 hours ago and one 30 hours ago."""
    uri, results = sqlite_uri(tmp_path / "mlflow.db"), tmp_path / "results"
    arguments = sweep_arguments("vanilla", 3, uri, "orphans", results)
    arguments[arguments.index("--epochs") + 1] = "30"  # a second trial long enough to be caught running
    first = Bench(arguments, tmp_path, new_session=True)
    first.wait_for_line("[  1/3]")
    deadline = time.monotonic() + 120
    with sqlite3.connect(tmp_path / "mlflow.db", timeout=30) as store:
        while store.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0] < 2:
            assert time.monotonic() < deadline and first.process.poll() is None, first.text[-3000:]
            time.sleep(0.05)  # the invocation, and the second trial's run
    os.killpg(first.process.pid, signal.SIGKILL)  # no handler runs: the runs stay RUNNING
    assert first.finish(60) == -signal.SIGKILL
    before = runs(uri, "orphans")
    killed = set(before[before["status"] == "RUNNING"]["run_id"])
    invocation = before[before["tags.bench.kind"] == "invocation"].iloc[0]
    assert invocation["run_id"] in killed and len(killed) == 2, before[["status", "tags.bench.kind"]]  # and trial 2
    assert invocation[f"tags.{tracking.DRIVER_PID}"] == str(first.process.pid)
    assert invocation[f"tags.{tracking.DRIVER_HOST}"] == socket.gethostname()

    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("orphans").experiment_id
    # This process: a live driver with an open invocation and trial, named as Tracker.start_parent names it.
    held = [client.create_run(experiment_id, tags={"bench.kind": "invocation", **tracking.driver_tags()}).info.run_id]
    held.append(client.create_run(experiment_id, tags={"bench.kind": "trial", "mlflow.parentRunId": held[0]}).info.run_id)
    recent = fake_invocation(client, experiment_id, "elsewhere.example", 2)
    stale = fake_invocation(client, experiment_id, "elsewhere.example", 30)

    report = run_bench(["report", "--experiment", "orphans", "--tracking-uri", uri, "--results-dir", str(results)], tmp_path)
    assert report.process.returncode == 0, report.text[-3000:]
    lines = [line for line in report.lines if "RUNNING" in line]
    assert len(lines) == 1 and lines[0].startswith("bench: closed 4 runs of experiment 'orphans' left RUNNING"), report.text
    assert f"pid {first.process.pid} on {socket.gethostname()}, is no longer running" in lines[0]
    assert "2 runs of experiment 'orphans' RUNNING under a driver elsewhere, left as they are" in lines[0]
    assert "BENCH_ORPHAN_HOURS" in lines[0] and "Traceback" not in report.text

    after = runs(uri, "orphans").set_index("run_id")
    for run_id in killed | set(stale):
        assert after.loc[run_id, "status"] == "KILLED", run_id
        assert after.loc[run_id, f"tags.{tracking.CLOSED_REASON_TAG}"].startswith("closed KILLED: left RUNNING; its driver")
    for run_id in held + recent:
        assert after.loc[run_id, "status"] == "RUNNING", run_id
    assert "wrote nothing for 30.0 h" in after.loc[stale[0], f"tags.{tracking.CLOSED_REASON_TAG}"]

    again = run_bench(["report", "--experiment", "orphans", "--tracking-uri", uri, "--results-dir", str(results),
                       "--quiet"], tmp_path, env={"BENCH_ORPHAN_HOURS": "1"})  # 2 h without a write is past 1 h
    assert again.process.returncode == 0, again.text[-3000:]
    assert [line for line in again.lines if line.startswith("bench: ")] == [
        "bench: closed 2 runs of experiment 'orphans' left RUNNING by a driver that is gone (status KILLED, reason in "
        "tag bench.closed_reason): its driver on elsewhere.example (pid 4242) wrote nothing for 2.0 h (BENCH_ORPHAN_HOURS=1)"]
    after = runs(uri, "orphans").set_index("run_id")
    assert list(after.loc[held, "status"]) == ["RUNNING", "RUNNING"]  # still ours, still open
    for run_id in held:
        client.set_terminated(run_id, "FINISHED")


def test_a_driver_on_this_machine_is_gone_when_its_pid_is_not_the_process_it_was():
    """A pid is reused: the process start time (with the boot id) tells the new process from the driver."""
    host = socket.gethostname()
    ours = tracking.driver_tags()
    assert ours[tracking.DRIVER_STARTED] and tracking.driver_gone(ours, None) == (False, "")
    assert tracking.driver_gone({**ours, tracking.DRIVER_STARTED: "another-boot:1"}, None)[0] is True
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone, why = tracking.driver_gone({**ours, tracking.DRIVER_PID: done.stdout.strip()}, None)
    assert gone is True and why == f"its driver, pid {done.stdout.strip()} on {host}, is no longer running"
    # Another container on this host (its own pid namespace) cannot be asked: as another host, by time only.
    elsewhere = {**ours, tracking.DRIVER_PIDNS: "pid:[1]"}
    now = int(time.time() * 1000)
    assert tracking.driver_gone(elsewhere, now - 3600_000)[0] is None
    assert tracking.driver_gone(elsewhere, now - 25 * 3600_000)[0] is True
    assert tracking.driver_gone({}, now - 3600_000)[0] is None  # runs of a driver that named nothing: by time too


def test_save_atomic_names_the_file_and_leaves_nothing_on_a_full_disk(small_fs):
    """The writers of a trial's own files (torch.save, np.savez_compressed) on a full disk, in this process."""
    import numpy as np
    import torch

    from removal_bench.core.disk import DiskFull, save_atomic

    disk = small_fs("1m")
    (disk / "model.pt").write_bytes(b"the previous file")
    filler = fill(disk)
    for name, write in (("model.pt", lambda stream: torch.save({"w": torch.zeros(50_000)}, stream)),
                        ("embeddings.npz", lambda stream: np.savez_compressed(stream, z=np.random.rand(50_000)))):
        with pytest.raises(DiskFull) as caught:
            save_atomic(disk / name, write, "a trial's file")
        assert str(caught.value) == f"no space left on device: cannot write {disk / name} (a trial's file)"
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "model.pt"]
    assert (disk / "model.pt").read_bytes() == b"the previous file"
    filler.unlink()
    save_atomic(disk / "model.pt", lambda stream: torch.save({"w": torch.ones(3)}, stream), "a trial's file")
    assert torch.equal(torch.load(disk / "model.pt")["w"], torch.ones(3))
