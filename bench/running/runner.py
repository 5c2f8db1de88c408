"""`bench run`: plan the trials, execute them, track them in MLflow, report from MLflow.

Everything a user typed is validated in :func:`plan` before anything starts:
no trial runs and no MLflow run is created for a request with a mistake in it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import removal_bench.datasets as dataset_registry
import removal_bench.methods as method_registry
from removal_bench.core.disk import DISK_FULL_KEY, DISK_FULL_WHAT_KEY, DiskFull, SigtermWatchdog, is_disk_full, termination_deferred
from removal_bench.core.errors import UserError
from removal_bench.core.recipes import check_source
# the name parsing and request checks that need no registry (torch) live where the command line reaches them
# before importing this module (removal_bench.running.names, .preflight); re-exported for the modules that import them here
from removal_bench.running.names import parse_dataset, split_names  # noqa: F401
from removal_bench.running.preflight import validate_request  # noqa: F401
from removal_bench.running.trial import IDENTITY_KEYS, config_hash, make_config

DEFAULT_EXPERIMENT = "default"
DISK_FULL_HINT = ("finished trials are kept in MLflow; free space, then run the same command again "
                  "(bench sweep and bench reproduce skip the trials already complete)")
# What one trial adds to the free space needed, in bytes (measured: docs/DEVELOPING.md, "Full disks"):
# its rows in the tracking store, and its files where --log-models / --save-embeddings keep them.
STORE_BYTES_PER_TRIAL = 200_000
MODEL_BYTES_PER_TRIAL = 5_000_000
EMBEDDING_BYTES_PER_TRIAL = 5_000_000


@dataclass
class RunRequest:
    methods: list[str] | None = None  # None: every registered method
    datasets: list[str] | None = None  # None: every dataset that needs no download
    seeds: int = 3
    epochs: int | None = None
    batch_size: int | None = None
    encoder: str | None = None
    sets: list[str] = field(default_factory=list)
    recipe: str = "dataset"  # whose training recipe: the dataset's reference, or each method's paper's (removal_bench.core.recipes)
    train: list[str] = field(default_factory=list)  # --train [METHOD.]FIELD=VALUE[,VALUE...] recipe overrides
    executor: str = "ray"
    address: str | None = None
    cpus_per_trial: float = 1.0
    memory_per_trial: float | None = None  # MB a trial may take (removal_bench.running.trial.memory_limit); None: no limit
    gpus_per_trial: float | None = None  # None: the dataset's gpu_share on a CUDA machine, else 0
    max_concurrent: int | None = None
    storage_path: str | None = None
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    data_root: str | None = None
    save_embeddings: bool = False
    log_models: bool = False  # each trial logs model.pt (removal_bench.running.artifacts)
    quiet: bool = False  # no progress lines and no tables (files are still written)
    json_output: bool = False  # the report as one JSON document on stdout (removal_bench.reporting.documents)
    device: str = "auto"
    results_dir: str | None = None  # None: results/<experiment>
    offline_dir: str | None = None  # --executor offline: where the plan and the results are (removal_bench.running.offline)


@dataclass
class PlannedTrial:
    config: dict[str, Any]
    key: str  # the trial's identity (config hash)
    config_key: str  # the configuration's identity: everything but the seed
    label: str


@dataclass
class Finished:
    """What a driver hands to the report: the runs read back from MLflow, where, and the exit status."""

    frame: Any
    tracking_uri: str
    parent_id: str | None
    status: int


class Discard:
    """A text stream that drops what it is given (progress lines under ``--quiet``)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def parse_sets(sets: list[str], methods: list[str]) -> dict[str, dict[str, list[str]]]:
    """``irene.gamma=0.2,1`` -> {"irene": {"gamma": ["0.2", "1"]}} (a list runs each value)."""
    out: dict[str, dict[str, list[str]]] = {}
    for item in sets:
        target, sep, value = item.partition("=")
        method, dot, name = target.partition(".")
        if not sep or not dot or not method.strip() or not name.strip() or not value.strip():
            raise UserError(f"malformed --set {item!r}: expected METHOD.HYPERPARAMETER=VALUE[,VALUE...]")
        method, name = method.strip(), name.strip()
        method_registry.get_method(method)
        if method not in methods:
            raise UserError(f"--set {item!r} names method {method!r}, which is not among the methods run ({', '.join(methods)})")
        values = [v.strip() for v in value.split(",")]
        if any(not v for v in values):
            raise UserError(f"malformed --set {item!r}: empty value")
        out.setdefault(method, {})[name] = values
    return out


def train_overrides(items: list[str], methods: list[str]) -> dict[str, dict[str, list[str]]]:
    """``--train lr=0.01,0.1 --train grl.epochs=5`` -> per method, recipe field -> values (a list runs each).

    A field without a method applies to every method; ``METHOD.FIELD`` to that one (and wins).
    """
    from removal_bench.core.recipes import parse_train

    everyone: list[str] = []
    scoped: dict[str, list[str]] = {}
    for item in items:
        target = item.partition("=")[0]
        method, dot, _ = target.partition(".")
        if dot:
            method_registry.get_method(method.strip())
            if method.strip() not in methods:
                raise UserError(f"--train {item!r} names method {method.strip()!r}, which is not among the methods run "
                                f"({', '.join(methods)})")
            scoped.setdefault(method.strip(), []).append(item.partition(".")[2])
        else:
            everyone.append(item)
    common = parse_train(everyone)
    return {method: {**common, **parse_train(scoped.get(method, []))} for method in methods}


def configuration_key(config: dict[str, Any]) -> str:
    identity = {key: config.get(key) for key in IDENTITY_KEYS if key != "seed"}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def label_for(method: str, hparams: dict[str, Any], recipe_changes: dict[str, Any] | None = None) -> str:
    """``irene`` at its defaults, ``irene(gamma=1)`` otherwise; ``--train`` fields too (``irene(lr=0.01)``)."""
    from removal_bench.core.recipes import parse_field

    declared = method_registry.get_method(method).hparams

    def text(name: str, value: Any) -> str:
        if isinstance(value, tuple):
            value = "/".join(str(v) for v in value)
        return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"

    changed = [text(k, v) for k, v in hparams.items() if v != declared[k].default]
    for name, raw in (recipe_changes or {}).items():  # a recipe field named like a hyperparameter says so
        changed.append(text(f"recipe.{name}" if name in declared else name, parse_field(name, raw)))
    return f"{method}({', '.join(changed)})" if changed else method


def default_datasets() -> list[str]:
    return [name for name, cls in sorted(dataset_registry.REGISTRY.items()) if not cls.needs_data()]


def plugin_names(request) -> tuple[list[str], list[str]]:
    """The request's method names and dataset texts, with installed plugins loaded (entry points) and
    import paths (``pkg.module:Class``) replaced by the names of the classes they load
    (:mod:`removal_bench.running.plugins`); a bad plugin or an unknown name is a UserError."""
    from removal_bench.running import plugins

    plugins.load_entry_points()
    methods = split_names(request.methods) if request.methods else sorted(method_registry.REGISTRY)
    if methods == ["all"]:
        methods = sorted(method_registry.REGISTRY)
    methods = plugins.resolve_methods(methods)
    for name in methods:
        method_registry.get_method(name)
    texts = split_names(request.datasets) if request.datasets else default_datasets()
    return methods, [plugins.resolve_dataset_text(text) for text in texts]


def plan(request: RunRequest) -> list[PlannedTrial]:
    """Every (method, configuration, dataset, seed) of the request, validated."""
    methods, dataset_texts = plugin_names(request)
    validate_request(request)
    overrides = parse_sets(request.sets, methods)
    check_source(request.recipe)
    training = train_overrides(request.train, methods)
    data_root = request.data_root or str(dataset_registry.default_data_root())

    planned: list[PlannedTrial] = []
    for dataset_text in dataset_texts:
        dataset, options = parse_dataset(dataset_text)
        for method in methods:
            grid = overrides.get(method, {})
            names = list(grid)
            recipe_grid = training.get(method, {})
            fields = list(recipe_grid)
            for values in itertools.product(*(grid[n] for n in names)) if names else [()]:
                for recipe_values in itertools.product(*(recipe_grid[f] for f in fields)) if fields else [()]:
                    changes = dict(zip(fields, recipe_values))
                    planned += seeded_trials(request, method, dataset, options, dict(zip(names, values)), changes,
                                             data_root)
    return unique(planned, "the request names the same trial twice (a repeated method, dataset or --set value)")


def seeded_trials(request: RunRequest, method: str, dataset: str, options: dict[str, Any], hparams: dict[str, Any],
                  changes: dict[str, Any], data_root: str) -> list[PlannedTrial]:
    """One configuration on every seed of the request (``bench run`` and ``bench sweep`` plan through this)."""
    trials = []
    for seed in range(request.seeds):
        config = make_config(
            method, dataset, options, hparams, seed=seed, epochs=request.epochs, batch_size=request.batch_size,
            encoder=request.encoder, device=request.device, data_root=data_root, recipe=request.recipe, train=changes,
        )
        trials.append(PlannedTrial(config, config_hash(config), configuration_key(config),
                                   label_for(method, config["hparams"], changes)))
    return trials


def unique(planned: list[PlannedTrial], message: str) -> list[PlannedTrial]:
    """``planned``, refused with ``message`` when it holds a trial twice."""
    keys = [p.key for p in planned]
    if len(set(keys)) != len(keys):
        raise UserError(message)
    return planned


def prepare_data(planned: list[PlannedTrial]) -> None:
    """Check (and download) every dataset's files, and load each once, before any trial starts."""
    from removal_bench.running.trial import load_data

    seen = set()
    for trial in planned:
        config = trial.config
        marker = (config["dataset"], json.dumps(config["dataset_options"], sort_keys=True))
        if marker in seen:
            continue
        seen.add(marker)
        dataset_registry.get_dataset(config["dataset"]).prepare_for_run(Path(config["data_root"]), config["dataset_options"])
        load_data(config)


class DriverListener:
    """Receives trial events in the driver, writes them to MLflow, shows progress."""

    def __init__(self, tracker, planned: list[PlannedTrial], artifacts: dict[str, list[Path]], stream: TextIO = sys.stderr):
        self.tracker = tracker
        self.by_key = {p.key: p for p in planned}
        self.artifacts = artifacts  # per trial, files its run logs when it ends
        self.stream = stream
        self.run_ids: dict[str, str] = {}
        self.started_at: dict[str, float] = {}
        self.done: dict[str, str] = {}
        self.planned_offline: list[str] = []  # --executor offline: the trials planned, not run (no run of their own)

    @termination_deferred  # SIGTERM waits for the run's record to be consistent (then: KILLED by abandon)
    def started(self, key: str) -> None:
        if key in self.run_ids:  # a retried trial keeps its run
            return
        trial = self.by_key[key]
        self.run_ids[key] = self.tracker.start_child(trial.config, key, trial.config_key, trial.label)
        self.started_at[key] = time.perf_counter()

    @termination_deferred
    def epoch(self, key: str, metrics: dict[str, Any]) -> None:
        if key not in self.run_ids:
            self.started(key)
        self.tracker.log_epoch(self.run_ids[key], metrics)

    @termination_deferred
    def finished(self, key: str, result: dict[str, Any]) -> None:
        if key in self.done:
            return
        if key not in self.run_ids:
            self.started(key)
        artifacts = list(self.artifacts.get(key, []))
        self.tracker.finish_child(self.run_ids[key], result, artifacts)
        self.done[key] = result.get("status", "FAILED")
        if result.get(DISK_FULL_KEY):  # every later trial would fail the same way: stop the driver
            raise DiskFull(result[DISK_FULL_KEY], result.get(DISK_FULL_WHAT_KEY, "a trial's files"))
        trial = self.by_key[key]
        seconds = time.perf_counter() - self.started_at.get(key, time.perf_counter())
        where = f"{trial.label} on {trial.config['dataset']}, seed {trial.config['seed']}"
        if self.done[key] == "FINISHED":
            summary = f"task acc {result['accuracy']:.3f}, leakage {result['leakage']:.3f} ({result['leakage_attacker']})"
        else:
            summary = f"FAILED: {result.get('error', 'unknown error')[:200]}"
        print(f"[{len(self.done):>3}/{len(self.by_key)}] {where}: {summary}  [{seconds:.1f} s]", file=self.stream, flush=True)

    @termination_deferred
    def stopped(self, key: str, reason: str) -> None:
        """The scheduler ended the trial early: a decision, so a resumed sweep does not rerun it."""
        if key in self.done:
            return
        if key not in self.run_ids:
            self.started(key)
        self.tracker.stop_child(self.run_ids[key], reason)
        self.done[key] = "STOPPED"
        trial = self.by_key[key]
        where = f"{trial.label} on {trial.config['dataset']}, seed {trial.config['seed']}"
        print(f"[{len(self.done):>3}/{len(self.by_key)}] {where}: {reason}", file=self.stream, flush=True)

    def retried(self, key: str, failures: int, limit: int) -> None:
        """The trial's Ray worker died (killed, preempted, out of memory) and Ray Tune runs it again from the
        start, in the same MLflow run: one line, where Tune printed a traceback."""
        trial = self.by_key[key]
        where = f"{trial.label} on {trial.config['dataset']}, seed {trial.config['seed']}"
        print(f"[retry] {where}: its Ray worker died; running it again from the start "
              f"(failure {failures} of at most {limit} retried)", file=self.stream, flush=True)

    def abandon(self, status: str = "KILLED") -> None:
        """Close the runs of trials that never reported an end (interrupted invocation)."""
        for key, run_id in self.run_ids.items():
            if key not in self.done:
                self.tracker.terminate(run_id, status)


def runs_here(request: RunRequest) -> bool:
    """Whether every trial runs on this machine: the serial executor, or Ray started locally (offline: elsewhere)."""
    if request.executor == "offline":
        return False
    return request.executor == "serial" or not (request.address or os.environ.get("RAY_ADDRESS"))


def check_where(request: RunRequest, planned: list[PlannedTrial] = ()) -> tuple[str, float | None]:
    """The absolute tracking URI and the GPUs per trial, or UserError; writes nothing.

    Every check that needs no data: the device, the resources, the results folder,
    then the servers (the tracking store answers, Ray listens at ``--address``),
    each within seconds (:mod:`removal_bench.running.preflight`).
    """
    from removal_bench.running import preflight

    validate_request(request)
    local = runs_here(request)
    preflight.device(request.device, local=local)
    gpus = request.gpus_per_trial
    if gpus is None:
        import torch

        # None on a CUDA machine: each trial asks for its dataset's gpu_share (removal_bench.running.executors.trial_resources).
        gpus = None if torch.cuda.is_available() and request.device in ("auto", "cuda") else 0.0
    if request.executor == "ray" and local:
        preflight.local_resources(request.cpus_per_trial, 1.0 if gpus is None else gpus)
    preflight.writable_folder(results_folder(request), "--results-dir")
    if request.executor == "offline":
        preflight.writable_folder(request.offline_dir, "--offline-dir")
    if request.data_root:
        preflight.readable_folder(request.data_root, "--data-root")
    if request.storage_path and "://" not in request.storage_path:
        preflight.writable_folder(request.storage_path, "--storage-path")
    tracking_uri = preflight.tracking_uri(request.tracking_uri, write=True)
    check_free_space(request, tracking_uri, planned)
    if request.executor == "ray":
        preflight.ray_address(request.address)
    return tracking_uri, gpus


def check_free_space(request: RunRequest, tracking_uri: str, planned: list[PlannedTrial] = ()) -> None:
    """UserError unless the folders this invocation writes have the floor (``BENCH_MIN_FREE_MB``) free,
    plus, for the tracking store's folder (where its artefacts go too) and the temporary folder (where
    trials stage them), an estimate of what the ``planned`` trials add.

    The data root counts only where something may be written to it: a dataset of the plan reads files
    (downloads, caches) and the folder is writable (a read-only shared copy is never written)."""
    from removal_bench.core.disk import nearest_existing, require_free

    trials = len(planned)
    files = (MODEL_BYTES_PER_TRIAL if request.log_models else 0) + (EMBEDDING_BYTES_PER_TRIAL if request.save_embeddings else 0)
    places = [(results_folder(request), "the results folder", 0)]
    if tracking_uri.startswith("sqlite:///"):
        places.append((Path(tracking_uri[len("sqlite:///"):]).parent, "the MLflow store's folder",
                       trials * (STORE_BYTES_PER_TRIAL + files)))
    data_root = Path(request.data_root or dataset_registry.default_data_root()).expanduser()
    reads_files = any(dataset_registry.get_dataset(p.config["dataset"]).needs_data() for p in planned)
    if reads_files and os.access(nearest_existing(data_root), os.W_OK):
        places.append((data_root, "the data root", 0))
    if files:
        places.append((tempfile.gettempdir(), "the temporary folder", trials * files))
    require_free(places)


def results_folder(request: RunRequest) -> Path:
    return Path(request.results_dir or Path("results") / request.experiment).expanduser().resolve()


def drive_executor(request: RunRequest, configs: list[dict[str, Any]], planned: list[PlannedTrial], listener,
                   tracker, gpus: float | None, asha) -> None:
    """Run the configurations on the request's executor (serial, offline or Ray), reporting to ``listener``."""
    from removal_bench.running.executors import RayOptions, run_ray, run_serial
    from removal_bench.running.offline import replay

    if request.executor == "serial":
        run_serial(configs, listener, request.cpus_per_trial)
    elif request.executor == "offline":
        threads = max(1, int(request.cpus_per_trial))
        configs = [{**config, "threads": config.get("threads") or threads} for config in configs]
        listener.planned_offline = replay(configs, [p.key for p in planned], listener, Path(request.offline_dir),
                                          [p.label for p in planned])
    else:
        run_ray(configs, listener, RayOptions(
            address=request.address, cpus_per_trial=request.cpus_per_trial, gpus_per_trial=gpus,
            memory_mb=request.memory_per_trial, max_concurrent=request.max_concurrent, storage_path=request.storage_path,
            name=f"bench-{request.experiment}-{tracker.parent_id[:8]}", asha=asha,
        ))


def drive(planned: list[PlannedTrial], request: RunRequest, tracker, gpus: float | None, asha=None) -> DriverListener:
    """Execute ``planned`` under the tracker's open parent run and close it; returns the listener.

    Every trial ends with a closed run: FINISHED, FAILED, stopped early, or
    (when this process is interrupted) KILLED, after which the interruption propagates.
    """
    from removal_bench.running.artifacts import MODEL_FILE
    from removal_bench.running.executors import SHUTDOWN_WITHIN_S

    artifacts: dict[str, list[Path]] = {}
    staging = Path(tempfile.mkdtemp(prefix="bench-artifacts-")) if request.save_embeddings or request.log_models else None
    for trial in planned if staging else []:
        for wanted, name, config_field in ((request.save_embeddings, "embeddings.npz", "embeddings_path"),
                                           (request.log_models, MODEL_FILE, "model_path")):
            if wanted:
                trial.config[config_field] = str(staging / trial.key / name)
                artifacts.setdefault(trial.key, []).append(staging / trial.key / name)
    # Trainings that methods share (vanilla, LEACE, INLP: removal_bench.running.trial.reuse_path) are kept here for the
    # invocation. Only where every trial runs on this machine: a cluster's nodes would each need the folder.
    reuse = None
    if runs_here(request):
        reuse = Path(tempfile.mkdtemp(prefix="bench-reuse-"))
        for trial in planned:
            trial.config["reuse_dir"] = str(reuse)
    listener = DriverListener(tracker, planned, artifacts, stream=Discard() if request.quiet else sys.stderr)
    configs = [p.config for p in planned]
    if request.memory_per_trial:  # not part of a trial's identity, as its threads are not
        configs = [{**config, "memory_mb": request.memory_per_trial} for config in configs]

    def close_open(status: str) -> None:  # the trials that never reported an end, and the invocation
        if not tracker.unavailable:  # else the store cannot take these writes either: resume reruns those trials
            listener.abandon(status)
            tracker.finish_parent(status)

    def forced_end() -> None:  # a SIGTERM the main thread could not take (SigtermWatchdog): as below, by force
        from removal_bench.running.processes import descendants, end_stragglers

        end_stragglers(descendants(), grace=0)  # Ray's processes, whatever they hang on
        close_open("KILLED")
        for folder in (staging, reuse):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)

    watchdog = SigtermWatchdog(SHUTDOWN_WITHIN_S, forced_end,
                               f"Ray did not stop within {SHUTDOWN_WITHIN_S:g} s and was killed (the command was stuck in a call to it)")
    try:
        with watchdog:
            drive_executor(request, configs, planned, listener, tracker, gpus, asha)
    except BaseException as error:
        full = is_disk_full(error)
        try:  # interrupted (Ctrl-C, SIGTERM): KILLED; a full disk: FAILED
            close_open("FAILED" if full else "KILLED")
        except Exception:
            if not full:
                raise
            # a full store cannot close them either: left RUNNING, the resume reruns those trials
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
        if full and isinstance(error, DiskFull):
            raise error.with_hint(DISK_FULL_HINT) from None
        raise
    finally:
        if reuse:
            shutil.rmtree(reuse, ignore_errors=True)
    try:
        missing = [key for key in listener.by_key if key not in listener.done and key not in listener.planned_offline]
        for key in missing:  # a trial the executor never ran to an end
            listener.finished(key, {"status": "FAILED", "error": "the executor ended without a result"})
        tracker.finish_parent("FINISHED")
    finally:
        if staging:  # logged to MLflow by now, or lost with an interrupted run: either way not left in the temporary folder
            shutil.rmtree(staging, ignore_errors=True)
    return listener


def offline_note(request: RunRequest, planned_offline: list[str]) -> None:
    """What to do next with the trials ``--executor offline`` planned (stderr, unless quiet)."""
    if planned_offline and not request.quiet:
        from removal_bench.running.offline import PLAN

        folder = request.offline_dir
        print(f"{len(planned_offline)} trial(s) planned in {Path(folder) / PLAN}, not run: run "
              f"`python -m removal_bench.running.offline {folder}` where they should run (torch only; --workers, "
              f"--device, --data-root), bring its results*.jsonl back into {folder}, then run this command again",
              file=sys.stderr, flush=True)


def invocation_params(planned: list[PlannedTrial], request: RunRequest) -> dict[str, Any]:
    return {
        "methods": ",".join(sorted({p.config["method"] for p in planned})),
        "datasets": ",".join(sorted({p.config["dataset"] for p in planned})),
        "seeds": request.seeds, "trials": len(planned), "executor": request.executor,
    }


def where_text(request: RunRequest) -> str:
    if request.executor == "offline":
        return f"offline (the results in {request.offline_dir} logged, the rest planned there)"
    return "in this process" if request.executor == "serial" else f"on Ray ({request.address or 'local'})"




def execute(request: RunRequest) -> Finished:
    """Run the request's trials; the report is the caller's (``reporting.publish.publish_report``)."""
    from removal_bench.running.tracking import Tracker, completed_hashes, load_runs

    planned = plan(request)
    tracking_uri, gpus = check_where(request, planned)
    if request.executor == "offline":  # a result brought back is logged once, not at every run of the command
        complete = completed_hashes(tracking_uri, request.experiment)
        planned = [p for p in planned if p.key not in complete]
    prepare_data(planned)

    tracker = Tracker(tracking_uri, request.experiment,
                      resume="run the same command again once MLflow answers (bench run reruns every trial)")
    parent = tracker.start_parent(f"run-{time.strftime('%Y%m%d-%H%M%S')}", invocation_params(planned, request))
    if not request.quiet:
        print(f"{len(planned)} trials {where_text(request)}; MLflow {tracking_uri}, experiment {request.experiment!r}, run {parent}",
              file=sys.stderr, flush=True)
    listener = drive(planned, request, tracker, gpus)
    offline_note(request, listener.planned_offline)

    statuses = list(listener.done.values())
    return Finished(load_runs(tracking_uri, request.experiment, parent_id=parent), tracking_uri, parent,
                    0 if any(status == "FINISHED" for status in statuses) or listener.planned_offline else 1)
