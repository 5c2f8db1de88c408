"""Trials run on a machine without MLflow or Ray, and brought back into the store (``--executor offline``).

A GPU box, an air-gapped node or a batch queue may have torch and this package but not the tracking store
or Ray. ``bench run`` / ``bench sweep --executor offline --offline-dir DIR`` then plans instead of running:

1. every trial of the invocation that the experiment does not hold complete, and that ``DIR`` has no result
   for, is written to ``DIR/plan.jsonl`` (one trial a line: its key, the config hash, and the whole
   :func:`removal_bench.running.trial.make_config` dict; merged with the plan already there, so several
   sweeps may share one folder); no MLflow run is opened for it;
2. ``python -m removal_bench.running.offline DIR`` (torch, numpy and scikit-learn only; no MLflow, no Ray)
   runs the plan through :func:`removal_bench.running.trial.execute_trial`, the one definition of a trial,
   in ``--workers`` processes, and appends one line a finished trial to ``DIR/results.jsonl`` (or
   ``--results FILE``): the result, the metrics of every epoch, when and where it ran. Each line is
   written whole and synced before the next trial's, so a killed runner loses only the trials in flight,
   and running it again runs only the trials without a FINISHED line;
3. the same ``bench`` command again, with every ``results*.jsonl`` of ``DIR`` in place, logs each result as
   the trial's MLflow run (epochs as steps, the result's metrics and tags, ``offline.*`` tags naming
   the machine and the times it ran), exactly as the serial or Ray executor would have logged it; the
   report, the leaderboard and ``--refine`` then read them like any other run. A refined sweep plans
   round by round: each round's points are chosen from the finished trials, so each needs a trip.

A FAILED result is logged once as a FAILED run (its record id goes to ``DIR/failures-logged.txt``) and the
trial is planned again, as a resumed sweep reruns its failed trials. Trials that share a training
(``trains_as``, :func:`removal_bench.running.trial.reuse_path`) are trained separately here: the same
figures, only slower.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from removal_bench.core.disk import write_atomic
from removal_bench.core.errors import UserError

PLAN = "plan.jsonl"
RESULTS = "results.jsonl"
FAILURES_LOGGED = "failures-logged.txt"


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; a line that does not parse (the last one, torn by a kill) is skipped."""
    records = []
    if not path.is_file():
        return records
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "key" in record:
                records.append(record)
    return records


def result_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("results*.jsonl"))


def read_results(folder: Path) -> dict[str, dict[str, Any]]:
    """Per trial key its result record: a FINISHED one where any file has it, else the latest."""
    chosen: dict[str, dict[str, Any]] = {}

    def rank(record: dict[str, Any]) -> tuple[bool, str]:
        return record.get("result", {}).get("status") == "FINISHED", str(record.get("ended", ""))

    for path in result_files(folder):
        for record in read_lines(path):
            held = chosen.get(record["key"])
            if held is None or rank(record) > rank(held):
                chosen[record["key"]] = record
    return chosen


def logged_failures(folder: Path) -> set[str]:
    path = folder / FAILURES_LOGGED
    return set(path.read_text().split()) if path.is_file() else set()


def write_plan(folder: Path, configs: list[dict[str, Any]], keys: list[str], labels: list[str] | None = None) -> Path:
    """``DIR/plan.jsonl`` holding these trials and those of the plan already there, less the trials with a
    FINISHED result; written whole or not at all."""
    path = folder / PLAN
    finished = {key for key, record in read_results(folder).items() if record["result"].get("status") == "FINISHED"}
    entries = {record["key"]: record for record in read_lines(path) if record["key"] not in finished}
    for index, (key, config) in enumerate(zip(keys, configs)):
        entries[key] = {"key": key, "config": config,
                        "label": f"{labels[index] if labels else config['method']} on {config['dataset']}, seed {config['seed']}"}
    text = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries.values())
    write_atomic(path, text, "the offline plan")
    return path


def replay(configs: list[dict[str, Any]], keys: list[str], listener, folder: Path,
           labels: list[str] | None = None) -> list[str]:
    """Log the results ``folder`` holds for these trials through ``listener`` (started, each epoch, finished);
    plan the others. Returns the keys planned (they get no run)."""
    folder = Path(folder)
    results = read_results(folder)
    failures = logged_failures(folder)
    pending_configs, pending, pending_labels = [], [], []
    newly_failed = []
    for index, (config, key) in enumerate(zip(configs, keys)):
        record = results.get(key)
        if record is not None and (record["result"].get("status") == "FINISHED" or record.get("id") not in failures):
            result = {**record["result"], **{f"offline.{name}": str(record[name])
                                               for name in ("host", "device", "started", "ended") if name in record}}
            listener.started(key)
            for metrics in record.get("epochs", []):
                listener.epoch(key, metrics)
            listener.finished(key, result)
            if result.get("status") == "FINISHED":
                continue
            newly_failed.append(str(record.get("id")))
        pending_configs.append(config)
        pending.append(key)
        pending_labels.append(labels[index] if labels else config["method"])
    if newly_failed:
        with open(folder / FAILURES_LOGGED, "a", encoding="utf-8") as stream:
            stream.write("".join(f"{identifier}\n" for identifier in newly_failed))
    if pending:
        write_plan(folder, pending_configs, pending, pending_labels)
    return pending


# --------------------------------------------------------------------------- the runner (no MLflow, no Ray)


def _run_one(job: tuple[str, dict[str, Any], str]) -> dict[str, Any]:
    """One planned trial in a worker process: the record its results line holds."""
    import torch

    from removal_bench.running.trial import execute_trial

    key, config, label = job
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    epochs: list[dict[str, Any]] = []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result = execute_trial(config, report=lambda metrics: epochs.append(dict(metrics)))
    device = config.get("device", "auto")
    if device in ("auto", "cuda") or str(device).startswith("cuda"):
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"key": key, "id": uuid.uuid4().hex, "result": result, "epochs": epochs, "started": started,
            "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": socket.gethostname(),
            "device": device, "label": label}


def _json_safe(value: Any) -> Any:
    """Numbers that JSON cannot hold (NaN, infinities) as strings, as MLflow shows them."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def append_record(stream, record: dict[str, Any]) -> None:
    stream.write(json.dumps(_json_safe(record), sort_keys=True, default=str) + "\n")
    stream.flush()
    os.fsync(stream.fileno())


def pending_jobs(folder: Path, results: Path, data_root: str | None, device: str | None,
                 threads: int | None) -> list[tuple[str, dict[str, Any], str]]:
    plan = folder / PLAN
    if not plan.is_file():
        raise UserError(f"{plan} does not exist: plan trials first with bench run/sweep --executor offline "
                        f"--offline-dir {folder}")
    done = {key for key, record in read_results(folder).items() if record["result"].get("status") == "FINISHED"}
    done |= {record["key"] for record in read_lines(results) if record.get("result", {}).get("status") == "FINISHED"}
    jobs = []
    for entry in read_lines(plan):
        if entry["key"] in done:
            continue
        config = dict(entry["config"])
        for name, value in (("data_root", data_root), ("device", device), ("threads", threads)):
            if value is not None:
                config[name] = value
        jobs.append((entry["key"], config, entry.get("label", entry["key"][:12])))
    return jobs


def run_plan(folder: Path, results: Path, workers: int = 1, data_root: str | None = None, device: str | None = None,
             threads: int | None = None, stream=sys.stderr) -> int:
    """Run every planned trial without a FINISHED result; the number run."""
    jobs = pending_jobs(folder, results, data_root, device, threads)
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} is not a folder")
    results.parent.mkdir(parents=True, exist_ok=True)
    print(f"offline: {len(jobs)} planned trial(s) to run in {folder}, {workers} at a time; results to {results}",
          file=stream, flush=True)
    if not jobs:
        return 0
    start = time.perf_counter()
    torn = results.is_file() and results.stat().st_size and not results.read_bytes().endswith(b"\n")
    with open(results, "a", encoding="utf-8") as out:
        if torn:  # a line cut short by a kill: end it, so that the next record starts a line of its own
            out.write("\n")
        def record(done: int, entry: dict[str, Any]) -> None:
            append_record(out, entry)
            result = entry["result"]
            summary = (f"task acc {result['accuracy']:.3f}, leakage {result['leakage']:.3f}"
                       if result.get("status") == "FINISHED" else f"FAILED: {str(result.get('error'))[:200]}")
            print(f"[{done:>3}/{len(jobs)}] {entry['label']}: {summary}  [{time.perf_counter() - start:.0f} s]",
                  file=stream, flush=True)

        if workers <= 1:
            for done, job in enumerate(jobs, 1):
                record(done, _run_one(job))
        else:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(workers, maxtasksperchild=None) as pool:
                for done, entry in enumerate(pool.imap_unordered(_run_one, jobs), 1):
                    record(done, entry)
    return len(jobs)


def _terminated(signum, frame):  # the pool's workers are ended with it (Pool.__exit__), the lines written stay
    raise SystemExit(128 + signum)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m removal_bench.running.offline",
        description="Run the trials that bench run/sweep --executor offline planned in DIR, without MLflow or "
                    "Ray; then the same bench command again logs their results.")
    parser.add_argument("folder", metavar="DIR", help="the --offline-dir the bench command planned into")
    parser.add_argument("--results", help="where to append the results (default DIR/results.jsonl; bench reads "
                                          "every DIR/results*.jsonl)")
    parser.add_argument("--workers", type=int, default=1, help="trials at once (processes; default 1)")
    parser.add_argument("--data-root", help="this machine's folder of dataset folders (default: the plan's)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the plan's)")
    parser.add_argument("--threads", type=int, help="torch threads per trial (default: the plan's)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        if args.workers < 1:
            raise UserError(f"--workers must be at least 1, got {args.workers}")
        if args.threads is not None and args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        folder = Path(args.folder)
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder")
        results = Path(args.results) if args.results else folder / RESULTS
        run_plan(folder, results, args.workers, args.data_root, args.device, args.threads)
    except UserError as error:
        print(f"offline: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
