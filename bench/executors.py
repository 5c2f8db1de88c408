"""Executors run a list of trial configs and tell the driver what happens.

Both call :func:`bench.trial.execute_trial`, so a trial means the same thing
with or without Ray. The driver's :class:`Listener` receives every event in the
driver process (with Ray, from a Tune callback), which is what lets only the
driver write to MLflow.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

from bench.errors import UserError
from bench.trial import config_hash, execute_trial


class Listener(Protocol):
    def started(self, key: str) -> None: ...
    def epoch(self, key: str, metrics: dict[str, Any]) -> None: ...
    def finished(self, key: str, result: dict[str, Any]) -> None: ...


def run_serial(configs: list[dict[str, Any]], listener: Listener) -> None:
    """Run the trials one after another in this process, without Ray."""
    for config in configs:
        key = config_hash(config)
        listener.started(key)
        result = execute_trial(config, report=lambda metrics, key=key: listener.epoch(key, metrics))
        listener.finished(key, result)


@dataclass
class RayOptions:
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    storage_path: str | None = None
    max_failures: int = 2
    name: str | None = None


def _ray_trainable(param_config: dict[str, Any]) -> None:
    from ray import tune

    config = dict(param_config["trial"])
    result = execute_trial(config, report=lambda metrics: tune.report({**metrics, "bench_final": 0}))
    tune.report({**result, "bench_final": 1})


def run_ray(configs: list[dict[str, Any]], listener: Listener, options: RayOptions) -> None:
    """Run every trial as a Ray Tune trial on a local Ray (started here) or the cluster at ``address``."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray
    from ray import tune

    started_here = False
    if not ray.is_initialized():
        try:
            ray.init(
                address=options.address,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
        except (ConnectionError, ValueError, RuntimeError) as error:
            where = options.address or "a local Ray"
            raise UserError(f"cannot start or reach Ray at {where}: {error}") from None
        started_here = True

    class Forward(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            listener.started(trial.config["trial"]["trial_key"])

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = trial.config["trial"]["trial_key"]
            clean = {k: v for k, v in result.items() if k not in RAY_KEYS}
            if clean.get("bench_final") == 1:
                clean.pop("bench_final")
                listener.finished(key, clean)
            else:
                clean.pop("bench_final", None)
                listener.epoch(key, clean)

        def on_trial_error(self, iteration, trials, trial, **info):
            error = getattr(trial, "error_msg", None) or "the trial's worker failed"
            listener.finished(trial.config["trial"]["trial_key"], {"status": "FAILED", "error": str(error)[-2000:]})

    resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
    threads = max(1, int(options.cpus_per_trial))
    space = [
        {**config, "threads": config.get("threads") or threads, "trial_key": config_hash(config)}
        for config in configs
    ]
    tuner = tune.Tuner(
        tune.with_resources(_ray_trainable, resources),
        param_space={"trial": tune.grid_search(space)},
        tune_config=tune.TuneConfig(max_concurrent_trials=options.max_concurrent, reuse_actors=False),
        run_config=tune.RunConfig(
            name=options.name,
            storage_path=options.storage_path,
            verbose=0,
            callbacks=[Forward()],
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
        ),
    )
    try:
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()


RAY_KEYS = {
    "done", "training_iteration", "trial_id", "date", "timestamp", "time_this_iter_s", "time_total_s",
    "pid", "hostname", "node_ip", "config", "time_since_restore", "iterations_since_restore",
    "checkpoint_dir_name", "experiment_tag", "should_checkpoint",
}
