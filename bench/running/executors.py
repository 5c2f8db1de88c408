"""Executors run a list of trial configs and tell the driver what happens.

Both call :func:`removal_bench.running.trial.execute_trial`, so a trial means the same thing
with or without Ray. The driver's :class:`Listener` receives every event in the
driver process (with Ray, from a Tune callback), which is what lets only the
driver write to MLflow.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from removal_bench.core.disk import Terminated, abandon, reinstall_sigterm, terminate_as_interrupt, termination_deferred
from removal_bench.core.errors import UserError
from removal_bench.running.trial import config_hash, execute_trial


class Listener(Protocol):
    def started(self, key: str) -> None: ...
    def epoch(self, key: str, metrics: dict[str, Any]) -> None: ...
    def finished(self, key: str, result: dict[str, Any]) -> None: ...
    def stopped(self, key: str, reason: str) -> None: ...  # a scheduler ended the trial early
    # Optional: ``retried(key, failures, limit)``, a trial's worker died and Ray Tune runs it again (run_ray).


SCORE = "bench_score"


def schedule_score(metrics: dict[str, Any], max_leakage: float | None) -> float:
    """What an early-stopping scheduler maximises: validation task accuracy, unless it was bought with leakage.

    ``val_accuracy`` when there is no guard (``max_leakage`` None); with a guard,
    ``val_accuracy`` if the leakage measured at that point (``val_leakage_epoch``
    after an epoch, the protocol's ``val_leakage`` in the final result) is at
    most ``max_leakage``, else 0. A result with neither (a post-hoc method's
    epochs: their bottleneck is only erased after training) is scored on
    accuracy alone. A missing or non-finite accuracy or leakage scores 0.
    """
    accuracy = metrics.get("val_accuracy")
    if not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
        return 0.0
    if max_leakage is None:
        return float(accuracy)
    leakage = metrics.get("val_leakage_epoch", metrics.get("val_leakage"))
    if leakage is None:
        return float(accuracy)
    if not isinstance(leakage, (int, float)) or not math.isfinite(leakage) or leakage > max_leakage:
        return 0.0
    return float(accuracy)


def run_serial(configs: list[dict[str, Any]], listener: Listener, cpus_per_trial: float = 1.0) -> None:
    """Run the trials one after another in this process, without Ray.

    Each trial computes on ``cpus_per_trial`` torch threads (at least one), as a Ray trial does: without
    it a serial trial took every core torch found; it logs the count (``torch_threads``).
    """
    threads = max(1, int(cpus_per_trial))
    for config in configs:
        config = {**config, "threads": config.get("threads") or threads}
        key = config_hash(config)
        listener.started(key)
        result = execute_trial(config, report=lambda metrics, key=key: listener.epoch(key, metrics))
        listener.finished(key, result)


@dataclass
class RayOptions:
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = 0.0  # None: each trial asks for its dataset's gpu_share
    memory_mb: float | None = None  # Ray's "memory" resource per trial (and the trial's own limit); None: none
    max_concurrent: int | None = None
    storage_path: str | None = None
    max_failures: int = 2
    name: str | None = None
    asha: AshaOptions | None = None


@dataclass
class AshaOptions:
    """ASHA (Li et al., 2020) on :func:`schedule_score`, one rung per ``grace_period * reduction_factor**k`` epochs."""

    max_epochs: int
    grace_period: int = 1
    reduction_factor: float = 3.0
    max_leakage: float | None = None


def _ray_trainable(param_config: dict[str, Any]) -> None:
    from ray import tune

    config = dict(param_config["trial"])
    guard = param_config.get("max_leakage")

    def report(metrics: dict[str, Any], final: int) -> None:
        tune.report({**metrics, SCORE: schedule_score(metrics, guard), "bench_final": final})

    result = execute_trial(config, report=lambda metrics: report(metrics, 0))
    report(result, 1)


def run_ray(configs: list[dict[str, Any]], listener: Listener, options: RayOptions) -> None:
    """Run every trial as a Ray Tune trial on a local Ray (started here) or the cluster at ``address``."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ctrl-C raises KeyboardInterrupt here (as in the serial executor) instead of
    # Tune's graceful stop, so the driver closes the open runs as KILLED.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # A trial's worker that dies (killed, preempted, out of memory) is retried by Tune up to max_failures
    # times, from the start: the trial is seeded, so the retry gives the figures an uninterrupted run gives
    # (tests/test_chaos.py). Tune logged each such death with a 30-line traceback of its own internals on
    # the driver's stderr (found by the chaos test); the listener's ``retried`` prints one line
    # instead, and a trial that fails max_failures + 1 times is recorded FAILED with Ray's message.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    # Ray's C++ core worker installs its own SIGTERM handler (a stack dump) and, in ray.shutdown, resets SIGTERM
    # to the default action behind Python's back: a SIGTERM in the seconds after that ended the command with
    # exit -15 and no word (strace; the chaos soak). Off, SIGTERM stays bench's (Terminated, exit 143).
    # Ray's processes inherit it: a crashing worker loses that C++ stack dump, not its Python error.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    # Ray starts its workers at niceness 15: beside any other work at the default 0 (a test suite, a second
    # sweep, a serial benchmark) a trial got 6-15% of a core instead of half the machine (measured on the 2-core
    # development machine: a 12-epoch Biased-MNIST trial at 3 epochs after 40 minutes). The trials are the work a
    # sweep is run for, so a local Ray started here runs them at the default priority; a cluster keeps its own.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Ray's task events feed its dashboard's task list (off here: include_dashboard=False) and nothing of bench's;
    # on, ray.shutdown waited 5 s to flush them to a GCS that a SIGTERM to the process group had already ended
    # (measured: the group's SIGTERM to exit 8.5 s with them, 3.5 s without).
    os.environ.setdefault("RAY_task_events_report_interval_ms", "0")
    import ray
    from ray import tune

    started_here = False
    try:
        if not ray.is_initialized():
            try:
                ray.init(
                    address=options.address,
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
            except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as error:
                where = options.address or "a local Ray"
                reason = " ".join(str(error).split())  # one line on stderr, even for Ray's multi-line messages
                if options.address and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
                    # Ray never turns token authentication on by itself for an explicit address.
                    reason += " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token here)"
                raise UserError(f"cannot start or reach Ray at {where}: {reason}") from None
            started_here = True
        # ray.init makes SIGTERM call sys.exit(15); a scheduler's SIGTERM must do what Ctrl-C does instead
        # (KeyboardInterrupt out of fit(): open runs closed KILLED, Ray shut down below, exit status 143).
        terminate_as_interrupt()
    except SystemExit as stop:
        # A SIGTERM while ray.init starts Ray (15-50 s on a loaded 2-core machine) met Ray's handler: the
        # command exited with status 15 and no word (found by tests/test_chaos.py and the soak run).
        # It is the same preemption as one a second later: Terminated, so one line and exit status 143.
        if stop.code != signal.SIGTERM:
            raise
        terminate_as_interrupt()
        try:
            shutdown_ray()
        except Exception:
            pass
        raise Terminated() from None

    failures: list[BaseException] = []  # what the listener raised (MLflow out for too long): fit() re-raises it

    def forwarding(method):
        def call(self, *args, **kwargs):
            if failures:
                raise failures[0]
            try:
                return method(self, *args, **kwargs)
            except Exception as error:
                failures.append(error)
                raise
        return call

    class Forward(tune.Callback):
        @forwarding
        def on_trial_start(self, iteration, trials, trial, **info):
            listener.started(trial.config["trial"]["trial_key"])

        @forwarding
        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = trial.config["trial"]["trial_key"]
            clean = {k: v for k, v in result.items() if k not in RAY_KEYS and (scheduler is not None or k != SCORE)}
            if clean.get("bench_final") == 1:
                clean.pop("bench_final")
                clean.pop(SCORE, None)  # the scheduler reads epochs only; a final score would overwrite the last epoch's
                listener.finished(key, clean)
            else:
                clean.pop("bench_final", None)
                listener.epoch(key, clean)

        @forwarding
        def on_trial_recover(self, iteration, trials, trial, **info):
            retried = getattr(listener, "retried", None)
            if retried is not None:
                retried(trial.config["trial"]["trial_key"], trial.num_failures, options.max_failures)

        @forwarding
        def on_trial_error(self, iteration, trials, trial, **info):
            listener.finished(trial.config["trial"]["trial_key"],
                              {"status": "FAILED", "error": worker_death(trial, options.max_failures)})

        @forwarding
        def on_trial_complete(self, iteration, trials, trial, **info):
            if scheduler is not None and trial.trial_id in scheduler.stopped:
                epoch = (trial.last_result or {}).get("epoch", "?")
                listener.stopped(trial.config["trial"]["trial_key"], f"stopped by ASHA after epoch {epoch}")

    scheduler = _recording_asha(options.asha) if options.asha else None

    resources = trial_resources(options.cpus_per_trial, options.gpus_per_trial, options.memory_mb)
    threads = max(1, int(options.cpus_per_trial))
    space = [
        {**config, "threads": config.get("threads") or threads, "trial_key": config_hash(config)}
        for config in configs
    ]
    tuner = tune.Tuner(
        tune.with_resources(_ray_trainable, resources),
        param_space={"trial": tune.grid_search(space), "max_leakage": options.asha.max_leakage if options.asha else None},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=options.max_concurrent, reuse_actors=True, scheduler=scheduler,
        ),
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
    except Exception:
        if failures:
            raise failures[0] from None
        raise
    finally:
        if started_here:
            # whole: a SIGTERM that cut ray.shutdown in two once left Ray's core worker to abort the interpreter's
            # exit (exit -6 after bench's own line, CI); one that arrives inside it is raised when it returns.
            # Bounded: after a SIGTERM to the whole process group it waits on Ray's dead or stopped processes
            termination_deferred(shutdown_ray)()
    if failures:
        raise failures[0]


def worker_death(trial, max_failures: int) -> str:
    """The one line a trial whose worker died ``max_failures + 1`` times is recorded FAILED with: what Ray says
    (its error file), and, as Ray cannot tell a kill for memory from another (the kernel's OOM killer and
    ``ray stop --force`` both SIGKILL the worker), what to change if it was memory."""
    from removal_bench.running.trial import OUT_OF_MEMORY_ADVICE

    text = getattr(trial, "error_msg", None)
    path = getattr(trial, "error_file", None)
    if not text and path:
        try:
            text = open(path, encoding="utf-8", errors="replace").read()
        except OSError:
            text = None
    text = " ".join(str(text or "").split())
    attempts = f"the trial's worker died {max_failures + 1} times"
    if "OutOfMemoryError" in text or "low on memory" in text:
        return f"out of memory: {attempts}, killed by Ray's memory monitor; {OUT_OF_MEMORY_ADVICE}"
    if "worker process has died" in text or "actor died" in text.lower() or not text:
        return f"{attempts} (killed for memory, by ray stop --force, or a crash); if memory: {OUT_OF_MEMORY_ADVICE}"
    return text[-2000:]


SHUTDOWN_WITHIN_S = 30.0  # ray.shutdown takes 1-9 s here, SIGTERM or not; past this, Ray is not answering


def shutdown_ray(within: float = SHUTDOWN_WITHIN_S) -> None:
    """``ray.shutdown``, then bench's SIGTERM handler again: Ray's core worker resets SIGTERM to the default
    action as it shuts down, which would leave the rest of the command (its report, MLflow's parent run) to
    end at exit -15 with no word on a SIGTERM.

    ``within`` seconds at most: ``ray.shutdown`` waits on Ray's GCS and raylet, and where they no longer answer
    (stopped, or a process group's SIGTERM that ended them while a reply was due) it waited for ever (a stopped
    GCS: still waiting after 150 s) or until Ray's core worker aborted the process 60 s on (exit 1 and no word,
    in CI). So it runs in a thread of its own; if it has not returned in time, this process's Ray processes are
    killed, the command goes on to close its runs and end, and ``abandon`` makes its exit skip the exit handlers,
    Ray's among them, that would wait on the stuck shutdown (tests/test_full_disk_and_sigterm.py)."""
    import ray

    from removal_bench.running.processes import descendants, end_stragglers

    started = descendants()  # Ray's node processes and workers, all below this driver while Ray runs
    failed: list[BaseException] = []
    done = threading.Event()

    def stop() -> None:
        try:
            ray.shutdown()
        except BaseException as error:  # noqa: BLE001 - carried to the caller's thread
            failed.append(error)
        finally:
            done.set()

    threading.Thread(target=stop, name="ray-shutdown", daemon=True).start()
    if not done.wait(within):
        end_stragglers(started, grace=0)
        abandon(f"Ray did not stop within {within:g} s and was killed")
        return
    if failed:
        raise failed[0]
    reinstall_sigterm()
    end_stragglers(started)  # what ray.shutdown left running a few seconds on (docs/USAGE.md, "No Ray process outlives the command")


def dataset_gpu_share(dataset: str) -> float:
    """The GPU fraction a trial on ``dataset`` asks for by default (the dataset's ``gpu_share``)."""
    import removal_bench.datasets as dataset_registry

    return float(dataset_registry.get_dataset(dataset).gpu_share)


def trial_resources(cpus_per_trial: float, gpus_per_trial: float | None, memory_mb: float | None = None):
    """Tune's resource request: fixed, or (``gpus_per_trial`` None) each trial's dataset's GPU share; with
    ``memory_mb``, Ray's ``memory`` resource too (bytes), so a node runs no more trials than its memory holds.

    Fractional GPUs let Ray pack several small trials on one GPU: at 0.25, four
    tabular trials train side by side where one would leave the GPU mostly idle.
    """
    memory = {"memory": int(memory_mb * 2**20)} if memory_mb else {}
    if gpus_per_trial is not None:
        return {"cpu": cpus_per_trial, "gpu": gpus_per_trial, **memory}
    from ray.tune import PlacementGroupFactory

    def per_trial(param_config: dict[str, Any]):
        return PlacementGroupFactory([{"CPU": cpus_per_trial, "GPU": dataset_gpu_share(param_config["trial"]["dataset"]),
                                       **memory}])

    return per_trial


def _recording_asha(options: AshaOptions):
    """An ASHA scheduler that remembers which trials it stopped (only those count as stopped early)."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.stopped: set[str] = set()

        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP:
                self.stopped.add(trial.trial_id)
            return decision

    # time_attr "epoch" is absent from the final result, which ASHA then ignores;
    # stop_last_trials=False: reaching the last epoch must not stop a trial before its evaluation.
    return RecordingASHA(
        time_attr="epoch", metric=SCORE, mode="max", max_t=max(options.max_epochs, options.grace_period),
        grace_period=options.grace_period, reduction_factor=options.reduction_factor, stop_last_trials=False,
    )


RAY_KEYS = {
    "done", "training_iteration", "trial_id", "date", "timestamp", "time_this_iter_s", "time_total_s",
    "pid", "hostname", "node_ip", "config", "time_since_restore", "iterations_since_restore",
    "checkpoint_dir_name", "experiment_tag", "should_checkpoint",
}
