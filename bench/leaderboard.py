"""`bench report` and `bench leaderboard`: tables, plots and the leaderboard from what MLflow holds.

Both read the trial runs back with ``mlflow.search_runs`` (never from a
driver's memory), count each trial once (:func:`bench.report.deduplicate`) and
name every seed that is missing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from bench import report
from bench.errors import UserError


def parse_formats(text: str | None) -> tuple[str, ...]:
    """``markdown,latex`` -> ("markdown", "latex"); unknown names are a UserError."""
    if not text:
        return ("markdown", "csv")
    names = [name.strip().lower() for name in text.split(",")]
    aliases = {"md": "markdown", "tex": "latex"}
    names = [aliases.get(name, name) for name in names]
    unknown = [name for name in names if name not in report.FORMATS]
    if unknown or not names:
        raise UserError(f"unknown --format {unknown[0] if unknown else text!r} (valid: {', '.join(report.FORMATS)})")
    return tuple(dict.fromkeys(names))


def declared_seeds(tracking_uri: str, experiments: list[str]) -> dict[str, list[str]]:
    """Per dataset, the seeds 0..N-1 that the invocations (parent runs) running it asked for."""
    from bench.tracking import load_runs

    parents = load_runs(tracking_uri, experiments, kind="invocation")
    seeds: dict[str, set[str]] = {}
    if parents.empty or "params.datasets" not in parents.columns or "params.seeds" not in parents.columns:
        return {}
    for datasets, count in zip(parents["params.datasets"], parents["params.seeds"]):
        try:
            number = int(count)
        except (TypeError, ValueError):
            continue
        for dataset in str(datasets).split(","):
            seeds.setdefault(dataset, set()).update(str(s) for s in range(number))
    return {dataset: sorted(values) for dataset, values in seeds.items()}


def check_max_leakage(value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise UserError(f"--max-leakage is a balanced accuracy between 0 and 1, got {value}")


def execute_report(
    experiment: str,
    tracking_uri: str | None = None,
    max_leakage: float | None = None,
    formats: tuple[str, ...] = ("markdown", "csv"),
    results_dir: str | None = None,
    stream: TextIO | None = None,
) -> int:
    from bench.tracking import load_runs, normalise_tracking_uri, require_experiment

    stream = stream or sys.stdout
    check_max_leakage(max_leakage)
    uri = normalise_tracking_uri(tracking_uri)
    require_experiment(uri, experiment)
    frame = load_runs(uri, experiment)
    if frame.empty:
        raise UserError(f"experiment {experiment!r} at {uri} holds no trial runs")
    by_dataset = report.summarise(frame, expected_seeds=declared_seeds(uri, [experiment]))
    report.print_report(by_dataset, stream, max_leakage)
    folder = Path(results_dir or Path("results") / experiment).resolve()
    written = report.write_results(by_dataset, folder, experiment, formats, max_leakage)
    print(f"\nwrote {len(written)} files to {folder}", file=stream)
    return 0


def bench_experiments(tracking_uri: str) -> list[str]:
    """Active experiments of the store that hold at least one bench trial run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    names = []
    for found in client.search_experiments():
        if client.search_runs([found.experiment_id], "tags.`bench.kind` = 'trial'", max_results=1):
            names.append(found.name)
    return sorted(names)


def execute_leaderboard(
    experiments: list[str] | None = None,
    tracking_uri: str | None = None,
    max_leakage: float | None = None,
    output: str | None = None,
    stream: TextIO | None = None,
) -> int:
    from bench.tracking import _quiet_mlflow, load_runs, normalise_tracking_uri, require_experiment

    stream = stream or sys.stdout
    check_max_leakage(max_leakage)
    uri = normalise_tracking_uri(tracking_uri)
    _quiet_mlflow()
    if experiments:
        for name in experiments:
            require_experiment(uri, name)
    else:
        experiments = bench_experiments(uri)
        if not experiments:
            raise UserError(f"MLflow at {uri} holds no bench trial runs")
    frame = load_runs(uri, experiments)
    if frame.empty:
        raise UserError(f"experiment(s) {', '.join(experiments)} at {uri} hold no trial runs")
    by_dataset = report.summarise(frame, expected_seeds=declared_seeds(uri, experiments))
    text = report.leaderboard_text(by_dataset, experiments, max_leakage, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    path = Path(output or Path("results") / "LEADERBOARD.md").resolve()
    report.write_text(path, text)
    print(text, file=stream)
    print(f"wrote {path}", file=stream)
    return 0
