"""`bench attack RUN_ID`: re-attack a logged trial, with the protocol's attackers or a classifier of one's own.

A trial run with ``--log-models`` holds ``model.pt`` (:mod:`removal_bench.running.artifacts`):
the encoder and heads are rebuilt from it, the trial's dataset is loaded with
the same options, and ``probe``, ``val`` and ``test`` are embedded. A run with
``--save-embeddings`` holds those bottlenecks in ``embeddings.npz`` already.
Then each attacker learns ``s`` from ``z`` on ``probe`` and is scored on
``val`` and ``test``, as PROTOCOL.md fixes it (:func:`removal_bench.measuring.attackers.measure_leakage`,
with the trial's seed): the attacker best on ``val`` sets ``leakage``. With the
protocol's attackers (the default) on a logged model this gives the trial's
own figures back. Any scikit-learn classifier may join, named by import path
with keyword arguments (``sklearn.svm.SVC:C=10:gamma=scale``); like the
protocol's linear and MLP attackers it sees standardised ``z``.

The figures are printed and logged to the same run as ``attack.<attacker>.leakage``
(its ``test`` balanced accuracy), ``attack.<attacker>.val_leakage``, and
``attack.leakage`` / ``attack.val_leakage`` / ``attack.leakage_norm`` /
``attack.mi_bits`` for the best one, with the tag ``attack.leakage_attacker``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from removal_bench.core.errors import UserError

# numpy, scikit-learn (removal_bench.measuring), torch and MLflow are imported by the functions that use them:
# `bench --help` and a mistyped option answer without them (tests/test_startup.py).


def add_commands(subparsers) -> None:
    from removal_bench.commands.arguments import comma_names

    attack = subparsers.add_parser(
        "attack", help="re-attack a logged trial with the protocol's attackers or any scikit-learn classifier",
        description="Rebuild a trial's model from its MLflow run (logged with --log-models), or read its "
                    "embeddings.npz (--save-embeddings), embed probe, val and test, run the attackers, print "
                    "leakage the protocol's way and log it to the same run as attack.<attacker>.leakage.",
    )
    attack.add_argument("run_ids", metavar="RUN_ID", nargs="*", help="the MLflow run id of a trial (several: each)")
    attack.add_argument("--selected", metavar="EXPERIMENT",
                        help="instead of run ids: every seed's run of each method's selected configuration on each "
                             "dataset of this experiment (the leaderboard's model selection); e.g. with --attacker "
                             "mlp_wide, the capacity check the leaderboard's attacker table shows")
    attack.add_argument("--datasets", action="extend", type=comma_names,
                        help="with --selected: only these datasets, each NAME or NAME:OPTION=VALUE (one setting of a "
                             "dataset whose trials ran at several, e.g. biased_mnist:rho=0.99), comma-separated")
    attack.add_argument("--attacker", dest="attackers", action="append", default=[],
                        metavar="NAME|MODULE.CLASS[:ARG=VALUE...]",
                        help="linear, mlp, gbdt (the protocol's, the default: all three), mlp_wide (the capacity "
                             "check: the MLP four times wider, twice the patience) or a scikit-learn classifier by "
                             "import path, e.g. sklearn.svm.SVC:C=10; repeatable or comma-separated")
    attack.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    attack.add_argument("--data-root", help="folder holding dataset folders, to rebuild the splits "
                                            "(default $BENCH_DATA_ROOT or ~/.cache/removal-bench)")
    attack.add_argument("--device", default="cpu", help="where the rebuilt encoder embeds the splits (default cpu)")
    attack.add_argument("--from", dest="source", choices=("auto", "model", "embeddings"), default="auto",
                        help="auto: the model if the run logged one, else its embeddings (default)")
    attack.add_argument("--no-log", dest="log", action="store_false", help="print only; log nothing to the run")
    attack.add_argument("--json", dest="json_output", action="store_true", help="print one JSON document instead")
    attack.set_defaults(handler=command_attack)


def command_attack(args: argparse.Namespace) -> int:
    if bool(args.run_ids) == bool(args.selected):
        raise UserError("give RUN_ID(s) or --selected EXPERIMENT (one of them)")
    request = AttackRequest(
        run_id="", attackers=args.attackers, tracking_uri=args.tracking_uri, data_root=args.data_root,
        device=args.device, source=args.source, log=args.log, json_output=args.json_output,
    )
    run_ids = list(args.run_ids)
    if args.datasets and not args.selected:
        raise UserError("--datasets goes with --selected EXPERIMENT")
    if args.selected:
        run_ids = selected_runs(request, args.selected, args.datasets)
    if len(run_ids) == 1:
        return execute_attack(replace(request, run_id=run_ids[0]))
    if args.json_output:
        import io
        import json

        from removal_bench.reporting.documents import print_json

        documents = []
        for run_id in run_ids:
            buffer = io.StringIO()
            execute_attack(replace(request, run_id=run_id), buffer)
            documents.append(json.loads(buffer.getvalue()))
        print_json({"runs": documents}, sys.stdout)
        return 0
    for index, run_id in enumerate(run_ids):
        if index:
            print(file=sys.stdout)
        execute_attack(replace(request, run_id=run_id))
    return 0


def selected_runs(request: "AttackRequest", experiment: str, datasets: list[str] | None = None) -> list[str]:
    """Every seed's run of each method's selected configuration (per dataset) in ``experiment``, checked to hold
    a model or embeddings before anything is attacked."""
    from removal_bench.reporting.leaderboard import selected_run_ids
    from removal_bench.running import preflight

    uri = preflight.tracking_uri(request.tracking_uri, write=False)
    found = selected_run_ids(uri, experiment, datasets=datasets)
    if not found:
        raise UserError(f"experiment {experiment!r} at {uri} has no finished trial to select from")
    from mlflow import MlflowClient

    from removal_bench.measuring.attack import EMBEDDINGS_FILE
    from removal_bench.running.artifacts import MODEL_FILE
    from removal_bench.running.tracking import Retrying

    client, call = MlflowClient(uri), Retrying(uri)
    bare = [run_id for run_id, _ in found
            if not {item.path for item in call(client.list_artifacts, run_id)} & {MODEL_FILE, EMBEDDINGS_FILE}]
    if bare:
        labels = sorted({label for run_id, label in found if run_id in bare})
        raise UserError(f"{len(bare)} of the {len(found)} selected runs of {experiment!r} hold neither {MODEL_FILE} nor "
                        f"{EMBEDDINGS_FILE} ({', '.join(labels[:3])}{', ...' if len(labels) > 3 else ''}): run those "
                        "configurations again into the same experiment with bench run ... --save-embeddings (a trial's "
                        "newest FINISHED run is the one counted), then this command")
    return [run_id for run_id, _ in found]


# --------------------------------------------------------------------------- what to attack


@dataclass
class Bottlenecks:
    z: dict[str, np.ndarray]
    s: dict[str, np.ndarray]
    num_private: int
    seed: int
    source: str  # "model" or "embeddings"
    config: dict[str, Any] = field(default_factory=dict)


def open_run(tracking_uri: str, run_id: str):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from removal_bench.running.tracking import Retrying, TrackingUnavailable, _quiet_mlflow

    _quiet_mlflow()
    client = MlflowClient(tracking_uri)
    try:
        run = Retrying(tracking_uri)(client.get_run, run_id)
    except TrackingUnavailable:
        raise
    except (MlflowException, UserError):  # the store answered: it has no such run
        raise UserError(f"no run {run_id!r} at {tracking_uri}") from None
    if run.data.tags.get("bench.kind") != "trial":
        raise UserError(f"run {run_id} is not a bench trial (a parent run?): give the run id of one trial")
    return client, run


def fetch(client, run, folder: Path, source: str) -> tuple[str, Path]:
    """Download the run's model file (preferred) or embeddings; UserError when it has neither."""
    from removal_bench.measuring.attack import EMBEDDINGS_FILE
    from removal_bench.running.artifacts import MODEL_FILE

    names = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    wanted = {"auto": (MODEL_FILE, EMBEDDINGS_FILE), "model": (MODEL_FILE,), "embeddings": (EMBEDDINGS_FILE,)}[source]
    for name in wanted:
        if name in names:
            return name, Path(client.download_artifacts(run.info.run_id, name, str(folder)))
    have = ", ".join(sorted(names)) or "no artefacts"
    raise UserError(
        f"run {run.info.run_id} has no {' or '.join(wanted)} (it has {have}): run the trial again with "
        "--log-models (or --save-embeddings)"
    )


def from_model(path: Path, data_root: str | None, device: str) -> Bottlenecks:
    import removal_bench.datasets as dataset_registry
    from removal_bench.measuring.attack import SPLITS
    from removal_bench.running.artifacts import ModelFileError, load_model
    from removal_bench.running.trial import embed_split, load_data, resolve_device

    torch_device = resolve_device(device)
    try:
        method, config = load_model(path, torch_device)
    except (ModelFileError, KeyError) as error:
        raise UserError(f"cannot rebuild the logged model: {error}") from None
    root = Path(data_root).expanduser().resolve() if data_root else dataset_registry.default_data_root()
    dataset_cls = dataset_registry.get_dataset(config["dataset"])
    dataset_cls.prepare_for_run(root, config["dataset_options"])
    data = load_data({**config, "data_root": str(root)})
    splits = {name: embed_split(method, getattr(data, name).to(torch_device)) for name in SPLITS}
    return Bottlenecks(
        z={name: part.z for name, part in splits.items()}, s={name: part.s for name, part in splits.items()},
        num_private=data.spec.num_private, seed=int(config["seed"]), source="model", config=config,
    )


def from_embeddings(path: Path, run) -> Bottlenecks:
    import numpy as np

    from removal_bench.measuring.attack import EMBEDDINGS_FILE, SPLITS

    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files}
    missing = [f"z_{name}" for name in SPLITS if f"z_{name}" not in arrays]
    if missing:
        raise UserError(
            f"{EMBEDDINGS_FILE} of run {run.info.run_id} lacks {', '.join(missing)} (written before val was saved): "
            "the protocol picks its attacker on val; run the trial again with --log-models or --save-embeddings"
        )
    logged = run.data.metrics.get("num_private")
    if "num_private" in arrays:
        num_private = int(arrays["num_private"])
    elif logged is not None:
        num_private = int(logged)
    else:
        num_private = int(max(arrays[f"s_{name}"].max() for name in SPLITS)) + 1
    seed = int(arrays["seed"]) if "seed" in arrays else int(run.data.params.get("seed", 0))
    return Bottlenecks(
        z={name: arrays[f"z_{name}"] for name in SPLITS}, s={name: arrays[f"s_{name}"] for name in SPLITS},
        num_private=num_private, seed=seed, source="embeddings",
    )


# --------------------------------------------------------------------------- the command


@dataclass
class AttackRequest:
    run_id: str
    attackers: list[str] = field(default_factory=list)  # empty: the protocol's
    tracking_uri: str | None = None
    data_root: str | None = None
    device: str = "cpu"
    source: str = "auto"  # auto (model if logged, else embeddings), model, embeddings
    log: bool = True
    json_output: bool = False


def execute_attack(request: AttackRequest, stream: TextIO | None = None) -> int:
    from removal_bench.running import preflight

    stream = stream or sys.stdout
    if request.source not in ("auto", "model", "embeddings"):
        raise UserError(f"--from must be auto, model or embeddings, got {request.source!r}")
    if request.data_root:
        preflight.readable_folder(request.data_root, "--data-root")
    uri = preflight.tracking_uri(request.tracking_uri, write=False)  # the cheap checks first: no scikit-learn, torch, MLflow
    from removal_bench.measuring.attack import EMBEDDINGS_FILE, SPLITS, fitter, parse_attacker
    from removal_bench.measuring.attackers import ATTACKERS, measure_leakage

    texts = [item for text in request.attackers for item in text.split(",") if item.strip()] if request.attackers else list(ATTACKERS)
    specs = [parse_attacker(text) for text in texts]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise UserError(f"--attacker names the same attacker twice ({', '.join(names)})")
    preflight.device(request.device)
    client, run = open_run(uri, request.run_id)
    with tempfile.TemporaryDirectory(prefix="bench-attack-") as folder:
        kind, path = fetch(client, run, Path(folder), request.source)
        bottlenecks = from_model(path, request.data_root, request.device) if kind != EMBEDDINGS_FILE else from_embeddings(path, run)

    fitters = {spec.name: fitter(spec) for spec in specs if spec.factory is not None}
    z, s = bottlenecks.z, bottlenecks.s
    try:
        result = measure_leakage(
            z["probe"], s["probe"], z["val"], s["val"], z["test"], s["test"], bottlenecks.num_private,
            seed=bottlenecks.seed, attackers=tuple(names), fitters=fitters,
        )
    except ValueError as error:  # labels out of range, a NaN bottleneck: the stored data, not a bug here
        raise UserError(f"cannot attack run {request.run_id}: {error}") from None
    probabilistic = {spec.name: spec.probabilistic for spec in specs}
    mi_bits = result.mi_bits if probabilistic[result.best] else math.nan

    metrics = {}
    for name, score in result.attackers.items():
        metrics[f"attack.{name}.leakage"] = score.test_balanced_accuracy
        metrics[f"attack.{name}.val_leakage"] = score.val_balanced_accuracy
    metrics.update({
        "attack.leakage": result.leakage, "attack.val_leakage": result.val_leakage,
        "attack.leakage_norm": result.leakage_norm,
    })
    if math.isfinite(mi_bits):
        metrics["attack.mi_bits"] = mi_bits
    tags = {"attack.leakage_attacker": result.best, "attack.source": bottlenecks.source,
            **{f"attack.{spec.name}.spec": spec.text for spec in specs if spec.factory is not None}}
    if request.log:
        from mlflow.entities import Metric, RunTag

        from removal_bench.running.tracking import Retrying

        now = int(time.time() * 1000)
        Retrying(uri)(client.log_batch, run.info.run_id,
                      metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
                      tags=[RunTag(key, value) for key, value in tags.items()])

    logged = run.data.metrics.get("leakage")
    if request.json_output:
        from removal_bench.reporting.documents import print_json

        print_json({
            "run_id": run.info.run_id, "source": bottlenecks.source, "num_private": bottlenecks.num_private,
            "seed": bottlenecks.seed, "rows": {name: int(len(s[name])) for name in SPLITS},
            "attackers": {
                name: {"val_balanced_accuracy": score.val_balanced_accuracy, "test_balanced_accuracy": score.test_balanced_accuracy,
                       "test_cross_entropy": score.test_cross_entropy if probabilistic[name] else None,
                       "spec": next(spec.text for spec in specs if spec.name == name)}
                for name, score in result.attackers.items()
            },
            "best": result.best, "leakage": result.leakage, "val_leakage": result.val_leakage,
            "leakage_norm": result.leakage_norm, "mi_bits": mi_bits if math.isfinite(mi_bits) else None,
            "trial_leakage": logged, "trial_leakage_attacker": run.data.tags.get("leakage_attacker"),
            "logged_metrics": sorted(metrics) if request.log else [],
        }, stream)
        return 0
    tags_of = run.data.tags
    print(f"run {run.info.run_id}: {tags_of.get('bench.label', tags_of.get('bench.method', '?'))} on "
          f"{tags_of.get('bench.dataset', '?')}, seed {bottlenecks.seed}; bottlenecks from "
          f"{'the rebuilt model' if bottlenecks.source == 'model' else EMBEDDINGS_FILE}; rows probe "
          f"{len(s['probe'])}, val {len(s['val'])}, test {len(s['test'])}; {bottlenecks.num_private} private classes",
          file=stream)
    from tabulate import tabulate

    body = [[("> " if name == result.best else "  ") + name, f"{score.val_balanced_accuracy:.4f}",
             f"{score.test_balanced_accuracy:.4f}",
             f"{score.test_cross_entropy:.4f}" if probabilistic[name] else "-"]
            for name, score in result.attackers.items()]
    print(tabulate(body, headers=["attacker", "val bal acc", "test bal acc", "test CE (nats)"],
                   tablefmt="simple_outline", disable_numparse=True), file=stream)
    mi_text = f"{mi_bits:.4f}" if math.isfinite(mi_bits) else "- (the best attacker gives no probabilities)"
    print(f"leakage {result.leakage:.4f} ({result.best}, best on val; val leakage {result.val_leakage:.4f}); "
          f"leak norm {result.leakage_norm:.4f}; MI bits {mi_text}", file=stream)
    if logged is not None:
        print(f"the trial logged leakage {logged:.4f} ({tags_of.get('leakage_attacker', '?')}): "
              f"difference {result.leakage - logged:+.4f}", file=stream)
    if request.log:
        print(f"logged to run {run.info.run_id}: {', '.join(sorted(metrics))}", file=stream)
    return 0
