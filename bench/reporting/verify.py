"""``bench verify FILE``: re-run a sample of a trial table's trials from their identity and compare the figures.

Each sampled trial is rebuilt from its ``identity`` (the tag ``bench.identity``: method, dataset and
options, hyperparameters, seed, recipe; :mod:`removal_bench.running.protocol`); the rebuilt config must
hash to the row's ``config_hash``, else the row is reported as not rebuildable. A plugin's class is
loaded as the row's ``plugins`` record says (entry point or import path: it must be installed here).
The trial then runs in this process (:func:`removal_bench.running.trial.execute_trial`, no MLflow,
nothing written) on the row's torch thread count (``torch_threads``, 1 when the row predates it) and
every figure of :data:`FIGURES` that the row has is compared.

Tolerance: on the same machine, the same thread count and the same package versions a trial is
deterministic (``tests/test_determinism.py``), so the default tolerance is 0: bit-identical figures.
On another machine or BLAS, floating-point sums reassociate and figures move; ``--tolerance T``
accepts an absolute difference up to T on each figure (a few thousandths is seed-to-seed noise's
order on the small datasets, far below it on the large ones). Times are never compared.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from removal_bench.core.errors import UserError

FIGURES = (
    "accuracy", "balanced_accuracy", "val_accuracy", "leakage", "leakage_norm", "mi_bits", "val_leakage",
    "leak_linear", "leak_mlp", "leak_gbdt", "leak_probe25", "leak_probe50", "floor_leakage", "head_acc",
    "dp_gap", "eo_gap", "majority_accuracy",
)


@dataclass
class Checked:
    run_id: str
    where: str
    verdict: str  # identical, within, differs, failed, not rebuildable
    differences: list[str] = field(default_factory=list)
    largest: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. a plugin whose source is not the one the row ran


def rebuild(record: dict[str, Any], data_root: str | None, device: str) -> dict[str, Any]:
    """The trial's config from its identity; UserError-free: raises ValueError with the reason."""
    from removal_bench.running import plugins
    from removal_bench.running.trial import config_hash, make_config

    identity = record.get("identity")
    if not isinstance(identity, dict):
        raise ValueError("no identity recorded (bench.identity: trials logged before trial tables came in)")
    plugins.ensure_loaded({"plugins": _plugin_records(record)})
    recipe = dict(identity["recipe"])
    config = make_config(identity["method"], identity["dataset"], identity["dataset_options"], identity["hparams"],
                         seed=identity["seed"], device=device, data_root=data_root)
    config["recipe"] = recipe
    config["epochs"], config["batch_size"], config["encoder"] = recipe.get("epochs"), recipe.get("batch_size"), recipe.get("encoder")
    config["threads"] = int(record.get("metrics", {}).get("torch_threads", 1) or 1)
    if config_hash(config) != record.get("config_hash"):
        raise ValueError(f"its identity hashes to {config_hash(config)}, not to its config hash {record.get('config_hash')}")
    return config


def _plugin_records(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    out = {}
    for kind, fields in (record.get("plugins") or {}).items():
        name = record.get("method") if kind == "method" else record.get("dataset")
        out[kind] = {"kind": kind, "name": name, "path": "", **fields}
    return out


def check(record: dict[str, Any], data_root: str | None, device: str, tolerance: float) -> Checked:
    from removal_bench.running.trial import execute_trial

    where = f"{record.get('label')} on {record.get('dataset')}, seed {record.get('seed')}"
    try:
        config = rebuild(record, data_root, device)
    except (ValueError, KeyError, TypeError, UserError) as error:
        return Checked(record["run_id"], where, "not rebuildable", [str(error)])
    from removal_bench.running.plugins import record_of

    notes = []
    for kind, fields in (record.get("plugins") or {}).items():
        here = record_of(kind, record.get(kind)) or {}
        if fields.get("source_sha256") and here.get("source_sha256") != fields["source_sha256"]:
            notes.append(f"the {kind} plugin's source here is not the one the trial ran (SHA-256 "
                         f"{here.get('source_sha256', '?')[:12]} against {fields['source_sha256'][:12]})")
    result = execute_trial(config)
    if result.get("status") != "FINISHED":
        return Checked(record["run_id"], where, "failed", [str(result.get("error", "?"))[:300]], notes=notes)
    found = Checked(record["run_id"], where, "identical", notes=notes)
    for name in FIGURES:
        old, new = record.get("metrics", {}).get(name), result.get(name)
        if old is None or not isinstance(new, (int, float)):
            continue
        gap = abs(float(new) - float(old)) if math.isfinite(new) else math.inf
        if gap > 0:
            found.largest = max(found.largest, gap)
            found.differences.append(f"{name} {old!r} -> {float(new)!r}")
    if found.differences:
        found.verdict = "within" if found.largest <= tolerance else "differs"
    return found


def execute_verify(paths: list[str], sample: int, sample_seed: int, tolerance: float, data_root: str | None,
                   device: str = "cpu", stream: TextIO | None = None, quiet: bool = False) -> int:
    """Check ``sample`` FINISHED trials of the tables drawn with ``sample_seed``; 0 when all come back within
    ``tolerance``, 1 otherwise."""
    import numpy as np

    from removal_bench.reporting.export import read_lines
    from removal_bench.running import preflight

    stream = stream or sys.stdout
    if not math.isfinite(tolerance) or tolerance < 0:
        raise UserError(f"--tolerance must be a number >= 0, got {tolerance}")
    if data_root:
        preflight.readable_folder(data_root, "--data-root")
    preflight.device(device, local=True)
    records = [r for r in read_lines(paths) if r["kind"] == "trial" and r.get("status") == "FINISHED"]
    if not records:
        raise UserError("the trial table holds no FINISHED trials to verify")
    order = np.random.default_rng(sample_seed).permutation(len(records))[: min(sample, len(records))]
    chosen = [records[i] for i in sorted(order)]
    results = []
    for record in chosen:
        found = check(record, data_root, device, tolerance)
        results.append(found)
        if not quiet:
            if found.verdict in ("within", "differs"):
                detail = f" (largest difference {found.largest:.3g}): " + "; ".join(found.differences[:4])
            elif found.differences:
                detail = f": {found.differences[0]}"
            else:
                detail = ""
            print(f"{found.verdict:>15}  {found.where}  [run {found.run_id}]{detail}", file=stream, flush=True)
            for note in found.notes:
                print(f"{'note':>15}  {note}", file=stream, flush=True)
    good = sum(r.verdict in ("identical", "within") for r in results)
    if not quiet:
        print(f"{good} of {len(results)} sampled trials came back within tolerance {tolerance:g} "
              f"({sum(r.verdict == 'identical' for r in results)} bit-identical)", file=stream)
    return 0 if good == len(results) else 1
