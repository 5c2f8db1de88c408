"""``python -m removal_bench.benchmarks table-scale``: how the reports scale with the trial table.

Writes synthetic compact tables (``bench export``'s format, docs/RESULTS_TABLE.md) of about 1,000, 10,000 and
100,000 trials and times, each in a fresh process, ``bench leaderboard --from TABLE --format markdown,html``
and ``bench report --from TABLE``: wall seconds, CPU seconds and peak resident memory (``os.wait4``'s rusage of
that process alone; on a shared machine the CPU seconds are the figure that other work does not inflate). Prints one line per size and command; figures only, no assert (the target, 100,000 trials in
under 60 s and 4 GB on two cores, is read off them; docs/RESULTS_TABLE.md has the curve).

The tables grow as a results repository that many users add seeds to would: the committed table's
configurations (``results/curves/trials.jsonl.gz``: 6 datasets, 9 methods; 327 configurations when the figures in docs/RESULTS_TABLE.md were measured, 432 since the refined curves) with
``round(size / 327)`` seeds each (981, 10,137 and 100,062 trials). Seed ``k`` of a configuration copies one of its committed seeds (``k`` modulo
their number) with its own run id, config hash, seed, identity, run name and times, and every figure moved by
Gaussian noise of 0.01 (clipped to [0, 1] where the figure is a rate), so seeds differ as real ones do. The
invocations declare the new seed count, so no seed is reported missing.

    python -m removal_bench.benchmarks table-scale                       # 1k, 10k, 100k (about 5 min on 2 cores)
    python -m removal_bench.benchmarks table-scale --sizes 1000 --keep /tmp/tables   # one size, tables kept
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2] / "results" / "curves" / "trials.jsonl.gz"
RATES = ("accuracy", "balanced_accuracy", "val_accuracy", "leakage", "val_leakage", "leak_linear", "leak_mlp",
         "leak_gbdt", "leak_probe25", "leak_probe50", "floor_leakage", "head_acc", "head_predicts_y", "leakage_norm",
         "floor_leakage_norm", "dp_gap", "eo_gap")


def _hex(*parts, length: int = 32) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:length]


def synthetic_records(template: list[dict], size: int, seed: int = 0) -> list[dict]:
    """Schema-1 records (core fields) of about ``size`` trials grown from ``template``'s configurations."""
    import numpy as np

    rng = np.random.default_rng(seed)
    trials = [r for r in template if r["kind"] == "trial" and r["status"] == "FINISHED"]
    groups: dict[tuple, list[dict]] = {}
    for record in trials:
        groups.setdefault((record["tags"]["bench.dataset"], record["tags"]["bench.config_key"]), []).append(record)
    seeds = max(1, round(size / len(groups)))
    out = []
    for invocation in (r for r in template if r["kind"] == "invocation"):
        params = {**invocation["params"], "seeds": str(seeds)}
        out.append({**invocation, "params": params, "run_id": _hex("invocation", invocation["run_id"], size)})
    parents = {r["run_id"]: _hex("invocation", r["run_id"], size) for r in template if r["kind"] == "invocation"}
    for (dataset, key), members in sorted(groups.items()):
        members = sorted(members, key=lambda r: int(r["tags"]["bench.seed"]))
        for k in range(seeds):
            base = members[k % len(members)]
            tags, params = dict(base["tags"]), dict(base["params"])
            config_hash = _hex("config", dataset, key, k, length=16)
            tags.update({"bench.seed": str(k), "bench.config_hash": config_hash,
                         "mlflow.runName": f"{tags['bench.label']}/{dataset}/seed{k}"})
            if tags.get("mlflow.parentRunId") in parents:
                tags["mlflow.parentRunId"] = parents[tags["mlflow.parentRunId"]]
            identity = json.loads(tags["bench.identity"]) if "bench.identity" in tags else None
            if identity is not None:
                identity["seed"] = k
                tags["bench.identity"] = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
            params["seed"] = str(k)
            metrics = dict(base["metrics"])
            for name in RATES:
                if name in metrics:
                    metrics[name] = float(min(1.0, max(0.0, metrics[name] + rng.normal(0.0, 0.01))))
            start = (base["start_time"] or 0) + 1000 * k
            out.append({"kind": "trial", "schema": 1, "experiment": base["experiment"],
                        "run_id": _hex("trial", dataset, key, k, size), "parent_run_id": tags.get("mlflow.parentRunId"),
                        "status": "FINISHED", "start_time": start,
                        "end_time": start + ((base["end_time"] or 0) - (base["start_time"] or 0)),
                        "params": params, "tags": tags, "metrics": metrics})
    return out


def timed(command: list[str], cwd: Path) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds (user + system), peak resident MB, exit status) of ``command`` in a fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        print(process.stderr.read().decode()[-2000:], file=sys.stderr)
    process.stderr.close()
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode


def table_scale(arguments: argparse.Namespace) -> None:
    from removal_bench.reporting import compact, export

    sizes = [int(s) for s in arguments.sizes.split(",")]
    template = export.read_lines([arguments.template])
    bench = [str(Path(sys.executable).with_name("bench"))]
    if not Path(bench[0]).exists():
        bench = [sys.executable, "-m", "removal_bench.commands.cli"]
    folder = Path(arguments.keep or tempfile.mkdtemp(prefix="bench-table-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"template {arguments.template}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'trials':>8} {'table':>10} {'B/trial':>8} {'write s':>8}  {'command':<20} {'wall s':>8} {'CPU s':>8} "
          f"{'peak MB':>8}  (load: 1-min average after the command)")
    try:
        for size in sizes:
            start = time.perf_counter()
            records = synthetic_records(template, size)
            path = folder / f"trials-{size}.jsonl.gz"
            path.write_bytes(compact.compress(compact.encode(records)))
            written = time.perf_counter() - start
            trials = sum(r["kind"] == "trial" for r in records)
            del records
            work = folder / f"work-{size}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            commands = {
                "leaderboard --from": ["leaderboard", "--from", str(path), "--format", "markdown,html", "--quiet"],
                "report --from": ["report", "--from", str(path), "--results-dir", str(work / "report"), "--quiet"],
            }
            for name, args in commands.items():
                seconds, cpu, peak, status = timed(bench + args, work)
                print(f"{trials:>8,} {path.stat().st_size:>10,} {path.stat().st_size / trials:>8.0f} {written:>8.1f}  "
                      f"{name:<20} {seconds:>8.1f} {cpu:>8.1f} {peak:>8.0f}  load {os.getloadavg()[0]:.1f}"
                      f"{'' if status == 0 else f'  (exit {status})'}", flush=True)
    finally:
        if not arguments.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def add_table_commands(commands) -> None:
    parser = commands.add_parser("table-scale", help="bench leaderboard/report --from on synthetic tables of 1k-100k trials")
    parser.add_argument("--sizes", default="1000,10000,100000", help="trials per table, comma-separated")
    parser.add_argument("--template", default=str(TEMPLATE), help="the table whose configurations are grown")
    parser.add_argument("--keep", help="write the tables and reports to this folder and keep them")
    parser.set_defaults(handler=table_scale)
