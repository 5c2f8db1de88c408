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
- metrics: per epoch (step = epoch) and final.

A trial is *complete* when it has a FINISHED run or one stopped early by the
scheduler: a resumed sweep skips exactly those (:func:`completed_hashes`).
Runs left RUNNING by a killed driver, or KILLED by an interrupted one, are not.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.errors import UserError

PACKAGES = ("torch", "numpy", "scikit-learn", "ray", "mlflow", "concept-erasure")


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
    import mlflow  # noqa: F401  (configures its loggers on import; quieten them after)

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


class Tracker:
    """The driver's handle on MLflow for one invocation."""

    def __init__(self, tracking_uri: str, experiment: str):
        _quiet_mlflow()
        import mlflow
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            artifact_location = None
            if tracking_uri.startswith("sqlite:///"):
                db = Path(tracking_uri[len("sqlite:///") :])
                artifact_location = (db.parent / "mlartifacts" / experiment).as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_location)
        else:
            if found.lifecycle_stage != "active":
                raise UserError(f"MLflow experiment {experiment!r} is deleted; restore it or pick another --experiment")
            self.experiment_id = found.experiment_id
        self.experiment = experiment
        self.parent_id: str | None = None

    def start_parent(self, name: str, params: dict[str, Any]) -> str:
        tags = {"bench.kind": "invocation", **provenance_tags()}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)
        return self.parent_id

    def finish_parent(self, status: str = "FINISHED") -> None:
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status=status)

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
        }
        run_name = f"{label}/{config['dataset']}/seed{config['seed']}"
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=run_name)
        params = {
            "method": config["method"],
            "dataset": config["dataset"],
            "seed": config["seed"],
            "epochs": config["epochs"] if config["epochs"] is not None else "default",
            "batch_size": config["batch_size"] if config["batch_size"] is not None else "default",
            "encoder": config["encoder"] or "default",
            **{f"hp.{k}": v for k, v in config["hparams"].items()},
            **{f"data.{k}": v for k, v in config["dataset_options"].items()},
        }
        self._log(run.info.run_id, params=params)
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
            self.client.log_text(run_id, result["traceback"], "traceback.txt")
        for path in artifacts:
            if Path(path).exists():
                self.client.log_artifact(run_id, str(path))
        self.client.set_terminated(run_id, status=status)

    def stop_child(self, run_id: str, reason: str) -> None:
        """A trial that the scheduler ended early: KILLED, with the reason in ``bench.stopped_early``."""
        self._log(run_id, tags={"bench.stopped_early": reason})
        self.client.set_terminated(run_id, status="KILLED")

    def _log(self, run_id: str, metrics=None, params=None, tags=None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )


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
    frame = mlflow.search_runs(experiment_names=names, filter_string=" and ".join(filters), max_results=100000)
    return frame


def require_experiment(tracking_uri: str, experiment: str) -> None:
    """UserError unless the store holds an active experiment of that name."""
    _quiet_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    except MlflowException as error:
        raise UserError(f"cannot read MLflow at {tracking_uri}: {' '.join(str(error).split())[:300]}") from None
    if found is None or found.lifecycle_stage != "active":
        raise UserError(f"MLflow at {tracking_uri} has no experiment {experiment!r}")


def is_complete(frame):
    """Per run: FINISHED, or ended early by a sweep's scheduler (a decision, not an accident)."""
    stopped = frame["tags.bench.stopped_early"].notna() if "tags.bench.stopped_early" in frame.columns else False
    return (frame["status"] == "FINISHED") | ((frame["status"] == "KILLED") & stopped)


def completed_hashes(tracking_uri: str, experiment: str) -> dict[str, str]:
    """Config hash -> run id of every trial of the experiment that is complete (see :func:`is_complete`)."""
    _quiet_mlflow()
    from mlflow import MlflowClient

    if MlflowClient(tracking_uri).get_experiment_by_name(experiment) is None:
        return {}
    frame = load_runs(tracking_uri, experiment)
    if frame.empty:
        return {}
    done = frame[is_complete(frame)].sort_values("start_time")
    return dict(zip(done["tags.bench.config_hash"], done["run_id"]))
