"""MLflow tracking: one parent run per invocation, one child run per trial.

Only the driver writes (the trials report to it), which is what a local SQLite
store needs. Reports are built from what the store holds
(:func:`load_runs`), never from the driver's memory.

Child runs carry:
- params: method, dataset, seed, epochs, batch_size, encoder, ``hp.<name>``, ``data.<name>``;
- tags: ``bench.config_hash`` (the trial's identity), ``bench.config_key`` (its
  configuration: the identity without the seed), ``bench.label``, ``bench.method``,
  ``bench.dataset``, ``bench.seed``, package versions, git commit when known,
  ``bench.error`` for a FAILED trial, ``bench.stopped_early`` for a trial that a
  sweep's scheduler ended early (status KILLED);
- metrics: per epoch (step = epoch) and final; ``train_reused`` 1 when the trial loaded an
  identical training kept earlier in the invocation (``removal_bench.running.trial.reuse_path``: vanilla, LEACE
  and INLP share one per dataset, recipe and seed), its ``train_seconds`` that training's.

A trial is *complete* when it has a FINISHED run or one stopped early by the
scheduler: a resumed sweep skips exactly those (:func:`completed_hashes`).
Runs left RUNNING by a killed driver, or KILLED by an interrupted one, are not.

Runs left RUNNING (a driver killed with SIGKILL or by the machine's end, a store too full to close
them) are closed by the next command that opens the experiment (:func:`close_orphans`: ``bench run``,
``sweep``, ``reproduce``, ``report``, ``leaderboard``, ``export``, ``import``), KILLED with the reason in
``bench.closed_reason``, in one line on stderr, when their driver is gone: the invocation run names
its driver (``bench.driver.host``, ``.pid``, ``.started``: boot id and start time, so that a reused pid
is not taken for it; ``.pidns``, the pid namespace); on this machine the driver is gone when that
process no longer exists. A driver elsewhere (another host, another container) cannot be asked: its
runs are closed only when nothing of the invocation was written for ``BENCH_ORPHAN_HOURS`` (default
24; ``inf``: never), and until then a line says they are left alone.

When the store stops answering (a server restarted mid-sweep, a locked SQLite
file), every read and write is retried for ``BENCH_TRACKING_RETRY_SECONDS``
(default 120) and MLflow's own HTTP retries are turned off, so that the wait is
bounded by that figure; past it the command stops with one line
(:class:`TrackingUnavailable`) saying how to resume. A full store (SQLite's "database or disk is
full", or ``ENOSPC`` while an artefact is copied) is not retried: it raises
:class:`removal_bench.core.disk.DiskFull` at once, naming the file, and MLflow's own log of it
(with its SQLAlchemy traceback) is kept off the terminal (:data:`STORE_LOG`, :func:`save_store_log`).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from removal_bench.core.disk import (
    DiskFull, Terminated, full_disk_error, is_disk_full, remove_quietly, termination_pending,
)
from removal_bench.core.errors import UserError

PACKAGES = ("torch", "numpy", "scikit-learn", "ray", "mlflow", "concept-erasure")
RETRY_SECONDS_VARIABLE = "BENCH_TRACKING_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0
# MLflow errors that another try cannot fix (anything else is taken for an outage).
PERMANENT_ERRORS = {
    "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST",
    "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED", "FEATURE_DISABLED", "NOT_IMPLEMENTED",
    "ENDPOINT_NOT_FOUND",
}


class TrackingUnavailable(UserError):
    """The tracking store did not answer within the retry window."""


def retry_seconds() -> float:
    text = os.environ.get(RETRY_SECONDS_VARIABLE)
    if text is None:
        return DEFAULT_RETRY_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{RETRY_SECONDS_VARIABLE} must be a number of seconds, at least 0, got {text!r}")
    return value


def is_transient(error: Exception, tracking_uri: str = "") -> bool:
    """Whether ``error`` looks like an outage of the store (worth another try) rather than a refusal.

    A local SQLite file is out only while another writer holds its lock; a server
    is out while it does not answer or answers with an error of its own.
    """
    from mlflow.exceptions import MlflowException

    if tracking_uri.startswith("sqlite:"):
        text = str(error).lower()
        return "database is locked" in text or "database is busy" in text
    if isinstance(error, MlflowException):
        return error.error_code not in PERMANENT_ERRORS
    module = type(error).__module__ or ""
    return isinstance(error, OSError) or module.startswith(("requests", "urllib3", "sqlalchemy", "sqlite3"))


class Retrying:
    """Calls into MLflow, retried while the store is out, for at most the retry window per outage."""

    def __init__(self, tracking_uri: str, resume: str = "run the same command again once MLflow answers"):
        self.tracking_uri = tracking_uri
        self.resume = resume
        self.window = retry_seconds()
        self.unavailable = False  # set once a call gave up: later calls fail at once

    def __call__(self, function, *args, **kwargs):
        from mlflow.exceptions import MlflowException

        deadline, delay = None, 0.5
        while True:
            try:
                return function(*args, **kwargs)
            except Exception as error:
                if is_disk_full(error):  # no other try can help until someone frees space
                    raise self.full(error, function) from None
                if not is_transient(error, self.tracking_uri):
                    if isinstance(error, MlflowException):
                        raise UserError(f"MLflow at {self.tracking_uri} refused a request: {_one_line(error)}") from None
                    raise
                reason = _one_line(error)
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.window
                if not self.unavailable and self.window > 0:
                    print(f"bench: MLflow at {self.tracking_uri} does not answer ({reason[:160]}); "
                          f"retrying for up to {self.window:g} s ({RETRY_SECONDS_VARIABLE})", file=sys.stderr, flush=True)
            if self.unavailable or now >= deadline:
                self.unavailable = True
                raise TrackingUnavailable(
                    f"MLflow at {self.tracking_uri} did not answer for {self.window:g} s ({reason[:200]}); {self.resume}"
                )
            try:
                if termination_pending():  # SIGTERM during an outage: stop waiting now, not after the window
                    raise Terminated()
                time.sleep(min(delay, max(deadline - now, 0.0)))
                if termination_pending():
                    raise Terminated()
            except KeyboardInterrupt:
                self.unavailable = True  # Ctrl-C during an outage: no more waiting to close runs
                raise
            delay = min(delay * 2, 5.0)


    def full(self, error: BaseException, function) -> DiskFull:
        """The one line for a store or artefact folder that is full: which file, which request."""
        name = getattr(function, "__name__", "a request")
        request = name.replace("_", " ")
        if isinstance(error, OSError) and (getattr(error, "filename2", None) or getattr(error, "filename", None)):
            # shutil's copy names its source in filename and the file it could not write in filename2
            return full_disk_error(error, error.filename2 or error.filename,
                                   f"an MLflow artifact, {request}, tracking URI {self.tracking_uri}")
        if name.startswith("log_") and name not in ("log_batch", "log_metric", "log_param", "log_inputs"):
            import tempfile  # an artefact: MLflow stages it in the temporary folder, then copies it to the run's folder

            return full_disk_error(error, None, f"an MLflow artifact, {request}, staged in {tempfile.gettempdir()} "
                                   f"or copied to the run's artifact folder (tracking URI {self.tracking_uri})")
        if self.tracking_uri.startswith("sqlite:///"):
            return full_disk_error(error, self.tracking_uri[len("sqlite:///"):], f"the MLflow store, {request}")
        return full_disk_error(error, None, f"the MLflow store at {self.tracking_uri} is full, {request}")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


def default_tracking_uri() -> str:
    """A SQLite file ``mlflow.db`` in the working directory, as an absolute URI."""
    return sqlite_uri(Path.cwd() / "mlflow.db")


def sqlite_uri(path: Path) -> str:
    return "sqlite:///" + str(Path(path).resolve())


def normalise_tracking_uri(uri: str | None) -> str:
    """Absolute URIs only: a relative SQLite path would change meaning with the working directory."""
    if not uri:
        return default_tracking_uri()
    if uri.startswith("sqlite:///"):
        return sqlite_uri(Path(uri[len("sqlite:///") :]))
    if uri.startswith(("http://", "https://", "databricks", "postgresql", "mysql")):
        return uri
    if uri.startswith("file:") or "://" not in uri:
        raise UserError(
            f"tracking URI {uri!r} is a file store, which MLflow no longer accepts; "
            "use sqlite:///path/to/mlflow.db or http://host:port"
        )
    return uri


def trial_tags(config: dict[str, Any]) -> dict[str, str]:
    """A trial's own provenance: its protocol fingerprint and identity (``removal_bench.running.protocol``) and
    its plugins' package, version and source hash (``removal_bench.running.plugins``)."""
    from removal_bench.running import plugins, protocol

    return {**protocol.tags(config), **plugins.tags(config)}


def provenance_tags() -> dict[str, str]:
    """Package versions and the git commit, computed once per process (they do not change during a run)."""
    if not _PROVENANCE:
        _PROVENANCE.update({f"version.{k}": v for k, v in package_versions().items()})
        commit = git_commit()
        if commit:
            _PROVENANCE["bench.git_commit"] = commit
    return dict(_PROVENANCE)


_PROVENANCE: dict[str, str] = {}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # MLflow's own retries wait minutes on a server that is down; Retrying bounds the wait instead.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    import mlflow  # noqa: F401  (configures its loggers on import; quieten them after)

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow's store logs every database error with its 40-line traceback before raising it; the driver
    # turns the exception into one line (Retrying), so those records are kept off the terminal, in memory
    # (STORE_LOG), and saved to a file that the line names (save_store_log).
    for name in ("mlflow.store", "alembic", "sqlalchemy"):
        logger = logging.getLogger(name)
        if STORE_LOG not in logger.handlers:
            logger.addHandler(STORE_LOG)
        logger.propagate = False


class _Remembered(logging.Handler):
    """The last records of MLflow's store, kept in memory for :func:`save_store_log`."""

    def __init__(self, keep: int = 50):
        super().__init__(logging.DEBUG)
        import collections

        self.records = collections.deque(maxlen=keep)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(self.format(record))
        except Exception:  # a record that cannot be formatted is dropped, never printed
            pass


STORE_LOG = _Remembered()


def save_store_log() -> str | None:
    """Write what MLflow's store logged to a file in the temporary folder; its path, or None (nothing, or no room)."""
    if not STORE_LOG.records:
        return None
    import tempfile

    try:
        handle, path = tempfile.mkstemp(prefix="bench-mlflow-", suffix=".log")
        with os.fdopen(handle, "w") as stream:
            stream.write("\n".join(STORE_LOG.records) + "\n")
    except OSError:
        try:
            os.unlink(path)
        except (OSError, UnboundLocalError):
            pass
        return None
    STORE_LOG.records.clear()
    return path


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


def recipe_params(config: dict[str, Any]) -> dict[str, Any]:
    """The trial's training recipe as ``recipe.<field>`` params (removal_bench.core.recipes)."""
    from removal_bench.core.recipes import Recipe

    return Recipe.from_dict(config["recipe"]).as_params() if config.get("recipe") else {}


def create_store_whole(tracking_uri: str) -> None:
    """A new SQLite store comes into being whole or not at all (found by tests/test_chaos.py).

    MLflow builds a new store's tables on first use, in place, through Alembic migrations: a SIGKILL in those
    seconds left a half-built file, and every later command failed on it ("table _alembic_tmp_experiments
    already exists", a traceback). So where the file does not exist yet, the tables are built in a temporary
    file beside it (named with this process's pid), which is then renamed into place; if another process made
    the store meanwhile, ours is dropped. A SIGKILL now leaves at most a stray ``.creating-PID`` file, never a
    half-built store. Other URIs (a server) are the server's business."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    db = Path(tracking_uri[len("sqlite:///"):])
    if db.exists() or not db.parent.is_dir():
        return  # a missing folder is the pre-flight's to report
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    partial = db.with_name(f".{db.name}.creating-{os.getpid()}")
    try:
        store = SqlAlchemyStore("sqlite:///" + str(partial), (db.parent / "mlartifacts").as_uri())
        store.engine.dispose()
        if not db.exists():
            os.replace(partial, db)
    except BaseException as error:
        if is_disk_full(error):
            raise full_disk_error(error, str(db), "the MLflow store, its tables") from None
        raise
    finally:
        partial.unlink(missing_ok=True)


class Tracker:
    """The driver's handle on MLflow for one invocation."""

    def __init__(self, tracking_uri: str, experiment: str, resume: str = "run the same command again once MLflow answers"):
        _quiet_mlflow()
        import mlflow
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.call = Retrying(tracking_uri, resume)
        create_store_whole(tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        found = self.call(self.client.get_experiment_by_name, experiment)
        if found is None:
            artifact_location = None
            if tracking_uri.startswith("sqlite:///"):
                db = Path(tracking_uri[len("sqlite:///") :])
                artifact_location = (db.parent / "mlartifacts" / experiment).as_uri()
            self.experiment_id = self.call(self.client.create_experiment, experiment, artifact_location=artifact_location)
        else:
            if found.lifecycle_stage != "active":
                raise UserError(f"MLflow experiment {experiment!r} is deleted; restore it or pick another --experiment")
            self.experiment_id = found.experiment_id
            close_orphans(tracking_uri, found.experiment_id, experiment, self.call)
        self.experiment = experiment
        self.parent_id: str | None = None
        self.recorded = 0  # trials whose end is in the store

    @property
    def unavailable(self) -> bool:
        return self.call.unavailable

    def terminate(self, run_id: str, status: str) -> None:
        self.call(self.client.set_terminated, run_id, status=status)

    def start_parent(self, name: str, params: dict[str, Any]) -> str:
        tags = {"bench.kind": "invocation", **provenance_tags(), **driver_tags()}
        run = self.call(self.client.create_run, self.experiment_id, tags=tags, run_name=name)
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)
        return self.parent_id

    def finish_parent(self, status: str = "FINISHED") -> None:
        if self.parent_id:
            self.terminate(self.parent_id, status)

    def start_child(self, config: dict[str, Any], config_hash: str, config_key: str, label: str) -> str:
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "bench.kind": "trial",
            "bench.config_hash": config_hash,
            "bench.config_key": config_key,
            "bench.label": label,
            "bench.method": config["method"],
            "bench.dataset": config["dataset"],
            "bench.seed": str(config["seed"]),
            **provenance_tags(),
            **trial_tags(config),
        }
        run_name = f"{label}/{config['dataset']}/seed{config['seed']}"
        run = self.call(self.client.create_run, self.experiment_id, tags=tags, run_name=run_name)
        params = {
            "method": config["method"],
            "dataset": config["dataset"],
            "seed": config["seed"],
            "epochs": config["epochs"] if config["epochs"] is not None else "default",
            "batch_size": config["batch_size"] if config["batch_size"] is not None else "default",
            "encoder": config["encoder"] or "default",
            **{f"hp.{k}": v for k, v in config["hparams"].items()},
            **{f"data.{k}": v for k, v in config["dataset_options"].items()},
            **recipe_params(config),
        }
        self._log(run.info.run_id, params=params)
        from removal_bench.running.artifacts import dataset_input  # the UI's "Datasets used": name, options, file checksums

        self.call(self.client.log_inputs, run.info.run_id, datasets=[dataset_input(config)])
        return run.info.run_id

    def log_epoch(self, run_id: str, metrics: dict[str, Any]) -> None:
        step = int(metrics.get("epoch", 0))
        values = {k: v for k, v in _numeric(metrics).items() if k != "epoch"}
        self._log(run_id, metrics=values, step=step)

    def finish_child(self, run_id: str, result: dict[str, Any], artifacts: list[Path] = ()) -> None:
        status = result.get("status", "FAILED")
        final_step = int(result.get("epochs", 0) or 0)
        self._log(run_id, metrics=_numeric({k: v for k, v in result.items() if k != "status"}), step=final_step)
        tags = {k: str(v) for k, v in result.items() if isinstance(v, str) and k not in ("status", "traceback")}
        if "error" in result:
            tags["bench.error"] = result["error"][:4000]
            tags.pop("error", None)
        self._log(run_id, tags=tags)
        if result.get("traceback"):
            self.call(self.client.log_text, run_id, result["traceback"], "traceback.txt")
        for path in artifacts:
            if Path(path).exists():
                self.log_artifact(run_id, Path(path))
        self.terminate(run_id, status)
        self.recorded += 1

    def log_artifact(self, run_id: str, path: Path) -> None:
        """Copy a trial's file into its run's artifact folder. A full one is :class:`DiskFull` naming the copy,
        which is removed (MLflow copies in place); the run is closed FAILED with the reason in ``bench.error``
        where the store still takes it (else it stays RUNNING until :func:`close_orphans` closes it)."""
        try:
            self.call(self.client.log_artifact, run_id, str(path))
        except DiskFull as error:
            destination = self.artifact_file(run_id, path.name)
            if destination is not None:
                remove_quietly(destination)
            full = DiskFull(destination or error.path, f"an MLflow artifact, {path.name} of run {run_id}", error.detail)
            try:
                self._log(run_id, tags={"bench.error": f"DiskFull: {full}"})
                self.terminate(run_id, "FAILED")
            except Exception:
                pass
            raise full from None

    def artifact_file(self, run_id: str, name: str) -> Path | None:
        """Where a local artifact store keeps the run's file ``name`` (None: not a local folder, or unknown)."""
        from urllib.parse import unquote, urlparse

        try:
            uri = self.client.get_run(run_id).info.artifact_uri
        except Exception:
            return None
        if uri.startswith("file:"):
            return Path(unquote(urlparse(uri).path)) / name
        return Path(uri) / name if uri.startswith("/") else None

    def stop_child(self, run_id: str, reason: str) -> None:
        """A trial that the scheduler ended early: KILLED, with the reason in ``bench.stopped_early``."""
        self._log(run_id, tags={"bench.stopped_early": reason})
        self.terminate(run_id, "KILLED")
        self.recorded += 1

    def _log(self, run_id: str, metrics=None, params=None, tags=None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.call(
            self.client.log_batch,
            run_id,
            metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )


# --------------------------------------------------------------------------- runs whose driver is gone

ORPHAN_HOURS_VARIABLE = "BENCH_ORPHAN_HOURS"
DEFAULT_ORPHAN_HOURS = 24.0  # a driver elsewhere writes at least every epoch; a day of silence is no live sweep
CLOSED_REASON_TAG = "bench.closed_reason"
ORPHAN_CLOSED = "closed KILLED: left RUNNING"  # how that reason begins for a run closed by close_orphans
ENDED = ("FINISHED", "FAILED", "KILLED")
DRIVER_HOST, DRIVER_PID, DRIVER_STARTED, DRIVER_PIDNS = (
    "bench.driver.host", "bench.driver.pid", "bench.driver.started", "bench.driver.pidns")
_CLOSED_CHECKED: set[tuple[str, str]] = set()  # (tracking URI, experiment id) already looked at by this process


def orphan_hours() -> float:
    text = os.environ.get(ORPHAN_HOURS_VARIABLE)
    if text is None:
        return DEFAULT_ORPHAN_HOURS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise UserError(f"{ORPHAN_HOURS_VARIABLE} must be a number of hours, at least 0 (inf: never), got {text!r}")
    return value


def process_start(pid: int) -> str | None:
    """``<boot id>:<start time in clock ticks>`` of process ``pid`` (Linux's /proc), None where unknown.

    A pid is reused once its process is gone; the pair names one process of one boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = stat[stat.rindex(")") + 2 :].split()[19]  # field 22, starttime
    except (OSError, ValueError, IndexError):
        return None
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    return f"{boot}:{ticks}"


def pid_namespace() -> str:
    """The pid namespace of this process (``pid:[4026531836]``), "" where unknown: containers on one host share
    its name but not its pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def driver_tags() -> dict[str, str]:
    """What names this driver on its invocation run, for :func:`close_orphans` of a later command."""
    import socket

    return {DRIVER_HOST: socket.gethostname(), DRIVER_PID: str(os.getpid()),
            DRIVER_STARTED: process_start(os.getpid()) or "", DRIVER_PIDNS: pid_namespace()}


def _process_exists(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there; driver_gone never asks on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


def driver_gone(tags: dict[str, str], last_write_ms: int | None, now_ms: int | None = None) -> tuple[bool | None, str]:
    """Whether the driver named by an invocation's ``tags`` is gone: True (with why), False (alive, on this
    machine), or None (elsewhere or unnamed, and written to within ``BENCH_ORPHAN_HOURS``: left alone)."""
    import socket

    host, pid_text = tags.get(DRIVER_HOST), tags.get(DRIVER_PID, "")
    here = (os.name != "nt" and host == socket.gethostname() and pid_text.isdigit()
            and (tags.get(DRIVER_PIDNS, "") == pid_namespace() or not tags.get(DRIVER_PIDNS)))
    if here:
        pid, started = int(pid_text), tags.get(DRIVER_STARTED, "")
        if not _process_exists(pid):
            return True, f"its driver, pid {pid} on {host}, is no longer running"
        now_started = process_start(pid)
        if started and now_started and now_started != started:
            return True, f"its driver, pid {pid} on {host}, is no longer running (the pid is another process's now)"
        return False, ""
    hours = orphan_hours()
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    idle = (now_ms - last_write_ms) / 3.6e6 if last_write_ms else math.inf
    who = f"its driver on {host} (pid {pid_text})" if host else "its driver (unnamed: written before bench 0.1 named it)"
    if idle >= hours:
        return True, f"{who} wrote nothing for {idle:.1f} h ({ORPHAN_HOURS_VARIABLE}={hours:g})"
    return None, f"{who} wrote {idle:.1f} h ago"


def close_orphans(tracking_uri: str, experiment_id: str, experiment: str, call: Retrying | None = None,
                  stream=None) -> int:
    """Close (KILLED, reason in ``bench.closed_reason``) the runs of the experiment left RUNNING by a driver that
    is gone (:func:`driver_gone`), and say so in one line; a line too for runs left alone because their driver
    is elsewhere. Once per store and experiment per process; returns how many runs it closed."""
    from mlflow import MlflowClient

    if (tracking_uri, experiment_id) in _CLOSED_CHECKED:
        return 0
    _CLOSED_CHECKED.add((tracking_uri, experiment_id))
    stream = stream or sys.stderr
    call = call or Retrying(tracking_uri)
    client = MlflowClient(tracking_uri)
    running = call(client.search_runs, [experiment_id], filter_string="attributes.status = 'RUNNING'",
                   max_results=50000)
    running = [run for run in running if SOURCE_RUN_TAG not in run.data.tags]  # an import keeps them as they were
    if not running:
        return 0
    by_invocation: dict[str, list] = {}
    for run in running:
        tags = run.data.tags
        key = run.info.run_id if tags.get("bench.kind") == "invocation" else tags.get("mlflow.parentRunId", run.info.run_id)
        by_invocation.setdefault(key, []).append(run)
    closed, left, reasons, waiting, failure = 0, 0, [], [], None
    for invocation_id, members in by_invocation.items():
        try:
            invocation = next((r for r in members if r.info.run_id == invocation_id), None) or call(client.get_run, invocation_id)
            children = call(client.search_runs, [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{invocation_id}'",
                            max_results=50000)
        except Exception:  # a trial without its invocation run: judged by its own times only
            invocation, children = None, []
        last = 0
        for run in [*members, *([invocation] if invocation else []), *children]:
            last = max(last, run.info.start_time or 0, run.info.end_time or 0,
                       *(metric.timestamp or 0 for metric in getattr(run.data, "_metric_objs", [])))
        gone, why = driver_gone(invocation.data.tags if invocation else {}, last)
        if gone is None:
            left += len(members)
            waiting.append(why)
        if not gone:
            continue
        try:
            for run in sorted(members, key=lambda r: r.data.tags.get("bench.kind") == "invocation"):  # trials first
                call(client.set_tag, run.info.run_id, CLOSED_REASON_TAG, f"{ORPHAN_CLOSED}; {why}")
                call(client.set_terminated, run.info.run_id, status="KILLED")
                closed += 1
        except DiskFull:
            raise
        except UserError as error:  # a store this command may not write (read-only): say so and go on
            failure = str(error)
            break
        if why not in reasons:
            reasons.append(why)
    plural = lambda n: f"{n} run{'s' if n != 1 else ''}"  # noqa: E731
    parts = []
    if closed:
        parts.append(f"closed {plural(closed)} of experiment {experiment!r} left RUNNING by a driver that is gone "
                     f"(status KILLED, reason in tag {CLOSED_REASON_TAG}): {'; '.join(reasons[:3])}")
    if failure:
        parts.append(f"could not close the runs of experiment {experiment!r} left RUNNING by a driver that is gone ({failure[:200]})")
    if left:
        parts.append(f"{plural(left)} of experiment {experiment!r} RUNNING under a driver elsewhere, left as they are "
                     f"({'; '.join(waiting[:2])}; closed after {orphan_hours():g} h without a write, {ORPHAN_HOURS_VARIABLE})")
    if parts:
        print("bench: " + "; ".join(parts), file=stream, flush=True)
    return closed


def load_runs(tracking_uri: str, experiment: str | list[str], parent_id: str | None = None, kind: str = "trial"):
    """Runs of one or more experiments, as a DataFrame: trial runs (``kind="trial"``) or invocations
    (``kind="invocation"``), of one invocation when ``parent_id`` is given."""
    _quiet_mlflow()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    filters = [f"tags.`bench.kind` = '{kind}'"]
    if parent_id:
        filters.append(f"tags.`mlflow.parentRunId` = '{parent_id}'")
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    return Retrying(tracking_uri)(
        mlflow.search_runs, experiment_names=names, filter_string=" and ".join(filters), max_results=100000
    )


def require_experiment(tracking_uri: str, experiment: str) -> None:
    """UserError unless the store holds an active experiment of that name."""
    _quiet_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        found = Retrying(tracking_uri)(MlflowClient(tracking_uri).get_experiment_by_name, experiment)
    except MlflowException as error:
        raise UserError(f"cannot read MLflow at {tracking_uri}: {' '.join(str(error).split())[:300]}") from None
    if found is None or found.lifecycle_stage != "active":
        raise UserError(f"MLflow at {tracking_uri} has no experiment {experiment!r}")
    close_orphans(tracking_uri, found.experiment_id, experiment)


def is_complete(frame):
    """Per run: FINISHED, or ended early by a sweep's scheduler (a decision, not an accident)."""
    stopped = frame["tags.bench.stopped_early"].notna() if "tags.bench.stopped_early" in frame.columns else False
    return (frame["status"] == "FINISHED") | ((frame["status"] == "KILLED") & stopped)


def completed_hashes(tracking_uri: str, experiment: str) -> dict[str, str]:
    """Config hash -> run id of every trial of the experiment that is complete (see :func:`is_complete`)."""
    _quiet_mlflow()
    from mlflow import MlflowClient

    if Retrying(tracking_uri)(MlflowClient(tracking_uri).get_experiment_by_name, experiment) is None:
        return {}
    frame = load_runs(tracking_uri, experiment)
    if frame.empty:
        return {}
    done = frame[is_complete(frame)].sort_values("start_time")
    return dict(zip(done["tags.bench.config_hash"], done["run_id"]))


# --------------------------------------------------------------------------- one run per trial

# Preference when a trial has several runs: a result beats a decision to stop,
# which beats a failure, which beats a run that never ended (RUNNING after a
# killed driver, KILLED by an interrupted one).
_FINISHED, _STOPPED, _FAILED, _UNFINISHED = 3, 2, 1, 0



def _column(frame, name):
    return frame[name] if name in frame.columns else None



def outcome(frame):
    """Per run: 3 FINISHED, 2 stopped early by the scheduler, 1 FAILED, 0 never ended."""
    stopped = _column(frame, "tags.bench.stopped_early")
    is_stopped = (frame["status"] == "KILLED") & (stopped.notna() if stopped is not None else False)
    values = np.where(frame["status"] == "FINISHED", _FINISHED,
                      np.where(is_stopped, _STOPPED, np.where(frame["status"] == "FAILED", _FAILED, _UNFINISHED)))
    return values



def run_key(frame):
    """Per run, the run it is: its source's id for a run written by ``bench import``, else its own."""
    column = f"tags.{SOURCE_RUN_TAG}"
    if column not in frame.columns:
        return frame["run_id"]
    return frame[column].where(frame[column].map(lambda v: isinstance(v, str)), frame["run_id"])


def deduplicate(frame):
    """One run per trial (config hash): FINISHED over stopped over FAILED over unfinished, then the latest."""
    if frame.empty:
        return frame
    frame = frame.copy()
    frame["_outcome"] = outcome(frame)
    frame = frame.sort_values(["_outcome", "start_time"])
    return frame.drop_duplicates("tags.bench.config_hash", keep="last").drop(columns="_outcome")


# --------------------------------------------------------------------------- the parent run's report


def log_report(tracking_uri: str, parent_id: str, paths: list[Path], folder: str = "report") -> None:
    """Attach the report's files (tables and plots) to the invocation's parent run, under ``folder/``."""
    from mlflow import MlflowClient

    client, call = MlflowClient(tracking_uri), Retrying(tracking_uri)
    for path in paths:
        if Path(path).is_file():
            call(client.log_artifact, parent_id, str(path), folder)


# --------------------------------------------------------------------------- a trial table back into a store

SOURCE_RUN_TAG = "bench.source_run_id"  # an imported run: the id of the run whose trial it is (bench import)
# An imported run being written: set when it is created, removed once its params, metrics and status are in.
IMPORT_PENDING_TAG = "bench.import_pending"


def import_records(tracking_uri: str, experiment: str, records: list[dict[str, Any]],
                   progress=None) -> tuple[int, int]:
    """Write a trial table's lines (``bench export``) into ``experiment``: each invocation and each trial as
    a run with the same status, start and end times, params, tags and final metrics, tagged with the id of
    the run it came from (:data:`SOURCE_RUN_TAG`); trials point to their imported invocation. A line whose
    source run (or an import of it) is already in the experiment is skipped, so importing twice adds
    nothing. ``bench sweep`` then counts the imported trials as complete (by config hash) and ``bench export``
    gives back the source run ids. A run imported before its
    source ended (RUNNING in a table exported mid-sweep, or closed KILLED since as left RUNNING by a driver that
    is gone) is brought up to date in place by a line of the same run that has ended: its status, end time, tags,
    final metrics and the params it lacked. Returns (runs written, runs brought up to date, lines skipped).
    ``progress(done, total)``, if given, is called after each line (``bench import`` prints from it)."""
    tracker = Tracker(tracking_uri, experiment, resume="the same bench import command skips what it already wrote")
    present, parents = set(), {}  # source run ids in the store; source invocation id -> its run here
    # source run id -> (its import here, the params it holds, whether it was closed as an orphan): not ended there
    unended: dict[str, tuple[str, set[str], bool]] = {}
    for kind in ("invocation", "trial"):
        frame = load_runs(tracking_uri, experiment, kind=kind)
        if frame.empty:
            continue
        pending = frame.get(f"tags.{IMPORT_PENDING_TAG}")
        if pending is not None:
            # A run an earlier import was writing when it was stopped (SIGKILL, SIGTERM, a full store): its source
            # tag was there, so it used to be skipped for good, RUNNING, without its metrics (found by
            # tests/test_chaos.py). It is deleted here and written again, whole, below.
            for run_id in frame.loc[pending.notna(), "run_id"]:
                tracker.call(tracker.client.delete_run, run_id)
            frame = frame[pending.isna()]
        present |= set(frame["run_id"])
        params = [column for column in frame.columns if column.startswith("params.")]
        for _, row in frame.iterrows():
            run_id, source = row["run_id"], row.get(f"tags.{SOURCE_RUN_TAG}")
            imported = isinstance(source, str)
            source = source if imported else run_id
            present.add(source)
            if kind == "invocation":
                parents[source] = run_id
            reason = row.get(f"tags.{CLOSED_REASON_TAG}")
            closed = isinstance(reason, str) and reason.startswith(ORPHAN_CLOSED)
            if imported and (row["status"] == "RUNNING" or closed):
                unended[source] = (run_id, {column[len("params."):] for column in params if isinstance(row[column], str)},
                                   closed)
    written, updated, skipped = 0, 0, 0
    ordered = sorted(records, key=lambda r: (r["kind"] != "invocation", r.get("start_time") or 0, r["run_id"]))
    for done, record in enumerate(ordered):
        if progress is not None:
            progress(done, len(ordered))
        source = record["run_id"]
        if source in unended and record.get("status") in ENDED:
            run_id, logged, closed = unended.pop(source)
            tags = {key: value for key, value in record.get("tags", {}).items() if key != "mlflow.parentRunId"}
            metrics = record.get("metrics", {})
            tracker._log(run_id, params={k: v for k, v in record.get("params", {}).items() if k not in logged},
                         metrics=metrics, tags=tags, step=int(metrics.get("epochs", 0) or 0))
            if closed:
                tracker.call(tracker.client.delete_tag, run_id, CLOSED_REASON_TAG)  # it ended there: not an orphan
            tracker.call(tracker.client.set_terminated, run_id, status=record["status"], end_time=record.get("end_time"))
            updated += 1
            continue
        if source in present:
            skipped += 1
            continue
        tags = {**record.get("tags", {}), SOURCE_RUN_TAG: source, IMPORT_PENDING_TAG: "1"}
        parent = tags.get("mlflow.parentRunId")
        if parent:
            tags["mlflow.parentRunId"] = parents.get(parent, parent)
        run = tracker.call(tracker.client.create_run, tracker.experiment_id, start_time=record.get("start_time"),
                           tags=tags, run_name=tags.get("mlflow.runName"))
        run_id = run.info.run_id
        metrics = record.get("metrics", {})
        tracker._log(run_id, params=record.get("params", {}), metrics=metrics, step=int(metrics.get("epochs", 0) or 0))
        if record.get("status") in ENDED:  # one that never ended stays RUNNING, as it was (a later table ends it)
            tracker.call(tracker.client.set_terminated, run_id, status=record["status"], end_time=record.get("end_time"))
        tracker.call(tracker.client.delete_tag, run_id, IMPORT_PENDING_TAG)  # whole now
        if record["kind"] == "invocation":
            parents[source] = run_id
        present.add(source)
        written += 1
    return written, updated, skipped
