"""`bench reproduce`: run the settings of published tables and set our numbers beside theirs.

The published numbers live in ``bench/running/published.toml`` as data: per table its
exact source, the method and dataset options of its setting, how many runs the
authors averaged; per row its published figures (metric, value, spread). The
command plans the matching trials through the ordinary run path
(:func:`removal_bench.running.trial.make_config`, :func:`removal_bench.running.runner.drive`: any executor,
``--address``, MLflow experiment ``reproduce`` by default), skips the trials the
experiment already holds complete (by config hash, as ``bench sweep`` resumes),
and writes ``results/REPRODUCTION.md`` from what MLflow holds.

Per published number the file gives ours (mean +- standard error over seeds,
and the seeds), the difference, and a verdict (:func:`verdict`): "agrees" when
the difference is within the published spread plus our standard error, else
"differs"; then the table's known reasons for a difference. A row whose data is
absent says so and gives the command that fetches it. ``--epochs``,
``--seeds``, ``--encoder``, ``--batch-size``, ``--option`` and ``--train``
change a row's setting, and the file says so next to the row.
"""

from __future__ import annotations

import math
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

from removal_bench.core.disk import DiskFull, write_atomic
from removal_bench.core.errors import UserError
from removal_bench.core.params import same_value

PUBLISHED = Path(__file__).with_name("published.toml")
DEFAULT_EXPERIMENT = "reproduce"
DEFAULT_OUTPUT = Path("results") / "REPRODUCTION.md"
AGREES, DIFFERS = "agrees", "differs"


@dataclass(frozen=True)
class Number:
    metric: str  # our MLflow metric
    value: float | None  # published, in the table's unit; None: nothing published
    spread: float = 0.0  # published standard deviation (0 when none was published)


@dataclass(frozen=True)
class Row:
    label: str
    dataset: str
    options: dict[str, Any]
    numbers: tuple[Number, ...]
    # hyperparameter points to choose from on validation, as the paper chose (EnD: alpha and beta per rho);
    # empty: the table's hparams alone. The chosen point is the one with the highest mean of the table's
    # ``select`` metric over its seeds (validation, never test), among points with every seed finished.
    grid: tuple[dict[str, Any], ...] = ()
    # the dataset options that tell this row from the table's others (rho for ReBias's rows): ``--option`` on one
    # of them chooses rows, it never runs a row at another value than the one its published figure belongs to
    own: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    source: str
    method: str
    published_runs: str
    seeds: int
    seed_mode: str  # "training", or "data_seed": seed i also draws split i
    scale: float
    unit: str
    gpu: bool
    reasons: tuple[str, ...]
    rows: tuple[Row, ...]
    hparams: dict[str, Any] = field(default_factory=dict)
    select: str = "val_accuracy"  # what a row's grid is chosen on


def load_tables(path: Path = PUBLISHED) -> list[Table]:
    """The published tables, validated enough that a typo in the file fails loudly."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UserError(f"cannot read the published tables in {path}: {error}") from None
    tables = []
    for entry in document.get("table", []):
        rows = tuple(
            Row(
                label=row["label"],
                dataset=row.get("dataset", entry["dataset"]),
                options={**entry.get("options", {}), **row.get("options", {})},
                numbers=tuple(Number(n["metric"], n.get("value"), float(n.get("spread", 0.0))) for n in row["numbers"]),
                grid=tuple(dict(point) for point in row.get("grid", ())),
                own=frozenset(row.get("options", {})),
            )
            for row in entry["row"]
        )
        tables.append(Table(
            id=entry["id"], title=entry["title"], source=entry["source"], method=entry["method"],
            published_runs=entry["published_runs"], seeds=int(entry["seeds"]), seed_mode=entry["seed_mode"],
            scale=float(entry.get("scale", 1.0)), unit=entry.get("unit", ""), gpu=bool(entry.get("gpu", False)),
            reasons=tuple(entry.get("reasons", ())), rows=rows, hparams=dict(entry.get("hparams", {})),
            select=entry.get("select", "val_accuracy"),
        ))
    return tables


def select_tables(names: Sequence[str], tables: list[Table]) -> list[Table]:
    """Tables named by id (or an id's prefix, e.g. ``ffb``); every table when none is named."""
    if not names:
        return tables
    chosen: list[Table] = []
    for name in names:
        matches = [t for t in tables if t.id == name] or [t for t in tables if t.id.startswith(name)]
        if not matches:
            raise UserError(f"no published table {name!r} (known: {', '.join(t.id for t in tables)})")
        chosen.extend(t for t in matches if t not in chosen)
    return chosen


def verdict(published: float | None, spread: float, mean: float | None, standard_error: float | None) -> str:
    """"agrees" when |ours - published| <= published spread + our standard error, else "differs"."""
    if published is None:
        return "no published figure"
    if mean is None:
        return "not run"
    tolerance = (spread or 0.0) + (standard_error or 0.0)
    return AGREES if abs(mean - published) <= tolerance + 1e-9 else DIFFERS


def mean_and_error(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and standard error (sample standard deviation / sqrt(n)); no error for fewer than two values."""
    if not values:
        return None, None
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def missing_data(dataset: str, options: dict[str, Any], data_root: Path) -> list[str]:
    """Files the row needs that are not present and intact under ``data_root`` (empty: ready)."""
    import removal_bench.datasets as registry
    from removal_bench.datasets.download import PRESENT, file_status

    cls = registry.get_dataset(dataset)
    if not cls.needs_data():
        return []
    custom = getattr(cls, "file_statuses", None)  # files beyond a list (CelebA's image folder)
    statuses = custom(data_root) if custom is not None else file_status(cls.folder(data_root), cls.files_for(options))
    return [f.name for f, status in statuses if status != PRESENT]


@dataclass
class ReproduceRequest:
    tables: list[str] = field(default_factory=list)
    seeds: int | None = None  # None: the table's
    epochs: int | None = None
    batch_size: int | None = None
    encoder: str | None = None
    # whose recipe the rows start from (removal_bench.core.recipes.SOURCES): one for every table, or
    # [TABLE:]SOURCE items (the last that applies wins), e.g. ["rebias-table1:cpu", "end-table1:cpu"]
    recipe: str | list[str] = "dataset"
    options: list[str] = field(default_factory=list)  # NAME=VALUE, applied to rows whose dataset has NAME
    train: list[str] = field(default_factory=list)  # recipe overrides, FIELD=VALUE
    executor: str = "ray"
    offline_dir: str | None = None  # --executor offline (removal_bench.running.offline)
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    storage_path: str | None = None
    device: str = "auto"
    data_root: str | None = None
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    output: str | None = None  # None: results/REPRODUCTION.md
    restart: bool = False
    report_only: bool = False  # write the file from the runs the experiment holds, run nothing
    command: str = "bench reproduce"  # the command line, written into the file


@dataclass
class PlannedRow:
    table: Table
    row: Row
    trials: list = field(default_factory=list)  # removal_bench.running.runner.PlannedTrial
    missing: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # how this row departs from the published setting
    options: dict[str, Any] = field(default_factory=dict)  # the dataset options its trials run with
    skipped: str = ""  # why it is not run (another row is the one --option chose)
    candidates: list[tuple[dict[str, Any], list]] = field(default_factory=list)  # (grid point, its trials)


def scoped(items: Sequence[str], tables: list[Table], flag: str) -> dict[str, list[str]]:
    """Per table id, the ``[TABLE:]NAME=VALUE`` items that apply to it (no TABLE: every table)."""
    ids = {table.id for table in tables}
    out: dict[str, list[str]] = {table.id: [] for table in tables}
    for item in items:
        target, colon, rest = item.partition(":")
        if colon and "=" not in target:
            if target not in ids:
                raise UserError(f"{flag} {item!r}: {target!r} is not among the chosen tables ({', '.join(sorted(ids))})")
            out[target].append(rest)
        else:
            for table_id in out:
                out[table_id].append(item)
    return out


def _option_overrides(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UserError(f"malformed --option {item!r}: expected [TABLE:]NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def chosen_rows(table: Table, extra: dict[str, str]) -> dict[str, str]:
    """Per row label, why ``--option`` leaves the row out: an option a row is told apart by (rho) chooses the
    rows published at that value; a table with no such row is refused rather than compared at another value."""
    skipped = {}
    for name, value in extra.items():
        rows = [row for row in table.rows if name in row.own]
        if not rows:
            continue
        keep = [row for row in rows if same_value(value, row.options[name])]
        if not keep:
            values = ", ".join(str(row.options[name]) for row in rows)
            raise UserError(f"--option {name}={value}: no row of {table.id} is published at {name}={value} (its "
                            f"rows: {values}); {name} chooses rows there, omit it to run them all")
        for row in rows:
            if row not in keep:
                skipped[row.label] = f"not chosen: --option {name}={value} runs row {', '.join(r.label for r in keep)}"
    return skipped


def plan_rows(request: ReproduceRequest, tables: list[Table]) -> list[PlannedRow]:
    """Every row of the chosen tables with its trials (or the files it lacks), validated."""
    import removal_bench.datasets as registry
    from removal_bench.core.recipes import parse_train
    from removal_bench.running.runner import PlannedTrial, configuration_key, label_for
    from removal_bench.running.trial import config_hash, make_config

    if request.seeds is not None and request.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {request.seeds}")
    option_items, train_items = scoped(request.options, tables, "--option"), scoped(request.train, tables, "--train")
    recipe_items = scoped([request.recipe] if isinstance(request.recipe, str) else list(request.recipe), tables, "--recipe")
    for name in {name for items in option_items.values() for name in _option_overrides(items)}:
        if not any(name in registry.get_dataset(row.dataset).options for table in tables for row in table.rows):
            raise UserError(f"--option {name}: no dataset of the chosen tables has that option")
    data_root = Path(request.data_root or registry.default_data_root()).expanduser()
    planned = []
    for table in tables:
        extra = _option_overrides(option_items[table.id])
        parsed = parse_train(train_items[table.id])
        if any(len(values) > 1 for values in parsed.values()):
            raise UserError("--train takes one value per field in bench reproduce (a row is one setting)")
        training = {name: values[0] for name, values in parsed.items()}
        recipe = recipe_items[table.id][-1] if recipe_items[table.id] else "dataset"
        from removal_bench.core.recipes import SOURCES

        if recipe not in SOURCES:
            raise UserError(f"--recipe {recipe!r}: expected [TABLE:]SOURCE with SOURCE one of {', '.join(SOURCES)}")
        seeds = request.seeds or table.seeds
        skipped = chosen_rows(table, extra)
        for row in table.rows:
            cls = registry.get_dataset(row.dataset)
            changed = {k: v for k, v in extra.items()
                       if k in cls.options and not (k in row.options and same_value(v, row.options[k]))}
            entry = PlannedRow(table, row, options=row.options)
            if row.label in skipped:
                entry.skipped = skipped[row.label]
                planned.append(entry)
                continue
            options = entry.options = {**row.options, **changed}
            entry.changes = [f"{k}={v}" for k, v in changed.items()]
            if request.seeds is not None and request.seeds != table.seeds:
                entry.changes.insert(0, f"{seeds} seeds (published setting: {table.seeds})")
            for flag, value in (("epochs", request.epochs), ("batch size", request.batch_size),
                                ("encoder", request.encoder)):
                if value is not None:
                    entry.changes.append(f"{flag} {value}")
            if recipe != "dataset":
                entry.changes.append(f"recipe {recipe}")
            entry.changes += [f"recipe {k}={v}" for k, v in training.items()]
            for point in row.grid or ({},):
                hparams = {**table.hparams, **point}
                trials = []
                for seed in range(seeds):
                    seeded = {**options, "data_seed": seed} if table.seed_mode == "data_seed" else options
                    config = make_config(
                        table.method, row.dataset, seeded, hparams, seed=seed, epochs=request.epochs,
                        batch_size=request.batch_size, encoder=request.encoder, device=request.device,
                        data_root=str(data_root), train=training, recipe=recipe,
                    )
                    trials.append(PlannedTrial(config, config_hash(config), configuration_key(config),
                                               label_for(table.method, config["hparams"], training)))
                entry.candidates.append((point, trials))
                entry.trials.extend(trials)
            entry.missing = missing_data(row.dataset, options, data_root)
            planned.append(entry)
    return planned


def run_request(request: ReproduceRequest):
    from removal_bench.running.runner import RunRequest

    return RunRequest(
        seeds=request.seeds or 1, executor=request.executor, offline_dir=request.offline_dir, address=request.address,
        cpus_per_trial=request.cpus_per_trial, gpus_per_trial=request.gpus_per_trial,
        max_concurrent=request.max_concurrent, storage_path=request.storage_path, device=request.device,
        data_root=request.data_root, tracking_uri=request.tracking_uri, experiment=request.experiment,
        results_dir=str(Path(request.output or DEFAULT_OUTPUT).expanduser().resolve().parent),
    )


def execute_reproduce(request: ReproduceRequest, stream: TextIO | None = None) -> int:
    """Plan, run what the experiment lacks, write the file; exit status 0 unless nothing could be compared."""
    from removal_bench.running.runner import check_where, drive, offline_note, prepare_data
    from removal_bench.running.tracking import Tracker, completed_hashes, load_runs

    stream = stream or sys.stdout
    tables = select_tables(request.tables, load_tables())
    rows = plan_rows(request, tables)
    run = run_request(request)
    # grid points in rounds: every row's first point, then every row's second, ...: an interrupted run has whole
    # rows at the first points (for EnD, the authors' default strength) before it has any row's whole grid
    rounds = max((len(row.candidates) for row in rows), default=0)
    runnable = [trial for index in range(rounds) for row in rows
                if not (row.missing or row.skipped) and index < len(row.candidates)
                for trial in row.candidates[index][1]]
    unique = list({trial.key: trial for trial in runnable}.values())
    tracking_uri, gpus = check_where(run, unique)
    started = time.perf_counter()
    if unique and request.report_only:  # write the file from what the experiment holds; run nothing
        from removal_bench.running.tracking import require_experiment

        require_experiment(tracking_uri, request.experiment)
        frame = load_runs(tracking_uri, request.experiment)
    elif unique:
        prepare_data(unique)
        complete = {} if request.restart else completed_hashes(tracking_uri, request.experiment)
        todo = [trial for trial in unique if trial.key not in complete]
        tracker = Tracker(tracking_uri, request.experiment)
        parent = tracker.start_parent(
            f"reproduce-{time.strftime('%Y%m%d-%H%M%S')}",
            {"tables": ",".join(t.id for t in tables), "trials": len(todo), "planned": len(unique),
             "already_complete": len(unique) - len(todo), "executor": request.executor},
        )
        print(f"reproduce: {len(unique)} trials, {len(unique) - len(todo)} already complete in experiment "
              f"{request.experiment!r}; running {len(todo)}; MLflow {tracking_uri}, run {parent}", file=sys.stderr, flush=True)
        if todo and on_gpu(request.device, gpus):
            from removal_bench.running.estimate import estimate, loaded_size

            for line in estimate([trial.config for trial in todo], loaded_size).lines():
                print(f"reproduce: {line}", file=sys.stderr, flush=True)
        elif todo:
            import os

            from removal_bench.running.estimate import estimate_cpu, loaded_size

            at_once = request.max_concurrent or max(1, int((os.cpu_count() or 1) // max(request.cpus_per_trial, 1)))
            for line in estimate_cpu([trial.config for trial in todo], loaded_size, at_once if request.executor == "ray" else 1):
                print(f"reproduce: {line}", file=sys.stderr, flush=True)
        if todo:
            offline_note(run, drive(todo, run, tracker, gpus).planned_offline)
        else:
            tracker.finish_parent("FINISHED")
        frame = load_runs(tracking_uri, request.experiment)
    else:
        import pandas as pd

        frame = pd.DataFrame()
    seconds = time.perf_counter() - started
    output = Path(request.output or DEFAULT_OUTPUT).expanduser()
    text = render(rows, frame, request, tracking_uri, seconds)
    try:  # whole or not at all: a full disk or SIGTERM leaves the previous file (or none), never half of one
        write_atomic(output, text, "the reproduction report")
    except DiskFull as error:
        raise error.with_hint(f"the runs are in MLflow; free space and run the same command again "
                              f"(it runs nothing already complete) to write {output.name}") from None
    print(f"wrote {output}", file=stream)
    return 0 if unique else 1


def on_gpu(device: str, gpus_per_trial: float | None) -> bool:
    """Whether the trials will train on CUDA (``--device cuda``, or ``auto`` where a GPU is used)."""
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch

    return torch.cuda.is_available() and gpus_per_trial != 0.0


def finished_values(trials, frame, metric: str, scale: float) -> tuple[list[float], list[str], list[str]]:
    """Per finished trial of ``trials``: the metric times ``scale``; the run ids (an imported run's source id, which
    ``bench export`` writes, so that every id is one the trial table holds); notes on failed or missing seeds."""
    from removal_bench.running.tracking import SOURCE_RUN_TAG, deduplicate

    if frame.empty or "tags.bench.config_hash" not in frame.columns:
        return [], [], [f"missing: {len(trials)} seeds"]
    runs = deduplicate(frame[frame["tags.bench.config_hash"].isin({t.key for t in trials})])
    by_key = {row["tags.bench.config_hash"]: row for _, row in runs.iterrows()}
    values, run_ids, notes = [], [], []
    column = f"metrics.{metric}"
    for trial in trials:
        found = by_key.get(trial.key)
        if found is None:
            notes.append(f"seed {trial.config['seed']} missing")
        elif found["status"] != "FINISHED" or column not in found or not math.isfinite(found[column]):
            notes.append(f"seed {trial.config['seed']} {found['status']}")
        else:
            values.append(float(found[column]) * scale)
            source = found.get(f"tags.{SOURCE_RUN_TAG}")  # an imported run: the id the committed trial table keeps
            run_ids.append(source if isinstance(source, str) and source else found["run_id"])
    return values, run_ids, notes


def choose(entry: PlannedRow, frame, select: str) -> tuple[dict[str, Any], list, str]:
    """The row's grid point chosen on ``select`` (validation), its trials, and a note naming the grid and the choice.

    Without a grid: the row's only point, its trials, no note. With one: the point whose seeds' mean of
    ``select`` is highest among the points with every seed finished (ties: the first in the file's order);
    until one is complete, the first point, and the note says the choice is pending.
    """
    if len(entry.candidates) <= 1:
        point, trials = entry.candidates[0] if entry.candidates else ({}, entry.trials)
        return point, trials, ""
    scored = []
    for index, (point, trials) in enumerate(entry.candidates):
        values, _, notes = finished_values(trials, frame, select, 1.0)
        if not notes and values:
            scored.append((sum(values) / len(values), -index, point, trials))
    def text(point: dict[str, Any], between: str) -> str:
        return between.join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())

    grid = "; ".join(text(point, ",") for point, _ in entry.candidates)
    if not scored:
        point, trials = entry.candidates[0]
        return point, trials, f"grid {{{grid}}}: no point complete yet, choice on {select} pending"
    score, _, point, trials = max(scored, key=lambda item: item[:2])
    return point, trials, (f"**{text(point, ', ')}** chosen on {select} ({score:.4f}, mean over seeds) from the grid {{{grid}}} "
                           f"({len(scored)} of {len(entry.candidates)} points complete)")


def trial_seconds(frame, run_ids: set[str]) -> float:
    """Training plus evaluation seconds that the runs logged. ``run_ids`` are the ids ``finished_values`` gives
    (an imported run's source id): a run is found by its ``run_key``, and counted once."""
    from removal_bench.running.tracking import run_key

    key = run_key(frame)
    runs = frame[key.isin(run_ids) & ~key.duplicated()]
    return float(sum(runs[column].fillna(0).sum() for column in ("metrics.train_seconds", "metrics.eval_seconds")
                     if column in runs.columns))


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(rows: list[PlannedRow], frame, request: ReproduceRequest, tracking_uri: str, seconds: float) -> str:
    """REPRODUCTION.md from the planned rows and the runs MLflow holds."""
    from removal_bench.running.tracking import git_commit

    data_root = request.data_root or "the default data root"
    lines = [
        "# Published numbers beside ours",
        "",
        f"Written by `{request.command}` on {time.strftime('%Y-%m-%d')} at git commit "
        f"{(git_commit() or 'unknown')[:12]}; trials in MLflow experiment `{request.experiment}` "
        f"({tracking_uri.split('/')[-1] if tracking_uri.startswith('sqlite') else tracking_uri}), this invocation "
        f"{seconds:.0f} s wall time (trials the experiment already held complete were not run again).",
        "Verdict: **agrees** when |ours - published| <= the published standard deviation + our standard error, "
        "else **differs**. Ours: mean +- standard error over seeds (n = seeds finished / planned).",
        "",
    ]
    appendix = ["## Runs behind each figure", "", "| table | row | MLflow run ids |", "| --- | --- | --- |"]
    by_table: dict[str, list[PlannedRow]] = {}
    for row in rows:
        by_table.setdefault(row.table.id, []).append(row)
    for table_id, table_rows in by_table.items():
        table = table_rows[0].table
        lines += [
            f"## {table.title} (`{table.id}`)", "",
            f"Source: {table.source}.", "",
            f"Setting: method `{table.method}`"
            + (f" ({', '.join(f'{k}={v}' for k, v in table.hparams.items())})" if table.hparams else "")
            + f"; published: {table.published_runs}; ours: {request.seeds or table.seeds} seeds"
            + (" (seed i also draws data split i)" if table.seed_mode == "data_seed" else "") + ".",
            "",
            f"| row | dataset options | metric | published ({table.unit}) | ours ({table.unit}) | n | difference | verdict | notes |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        table_runs: set[str] = set()
        for entry in table_rows:
            row = entry.row
            options = ":".join(f"{k}={v}" for k, v in (entry.options or row.options).items())
            # the grid point chosen on validation: one choice per row, shared by each of its published numbers
            _, trials, choice = ((None, [], "") if entry.skipped or entry.missing
                                 else choose(entry, frame, table.select))
            for number in row.numbers:
                published = "-" if number.value is None else (
                    f"{number.value:.2f}" + (f" +- {number.spread:.2f}" if number.spread else ""))
                if entry.skipped:
                    lines.append(f"| {row.label} | {row.dataset}:{options} | {number.metric} | {published} | - | - | - | "
                                 f"not run | {entry.skipped} |")
                    continue
                if entry.missing:
                    fetch = f"bench data fetch {row.dataset} --data-root {data_root}"
                    lines.append(
                        f"| {row.label} | {row.dataset}:{options} | {number.metric} | {published} | data absent | - | - | "
                        f"not run | needs {', '.join(entry.missing)}: `{fetch}`"
                        + ("; a GPU for the full setting" if table.gpu else "") + " |"
                    )
                    continue
                values, run_ids, notes = finished_values(trials, frame, number.metric, table.scale)
                notes = ([choice] if choice else []) + notes
                mean, error = mean_and_error(values)
                ours = "-" if mean is None else f"{mean:.2f}" + (f" +- {error:.2f}" if error is not None else "")
                difference = "-" if mean is None or number.value is None else f"{mean - number.value:+.2f}"
                outcome = verdict(number.value, number.spread, mean, error)
                remarks = ["**reduced: " + ", ".join(entry.changes) + "**"] if entry.changes else []
                lines.append(
                    f"| {row.label} | {row.dataset}:{options} | {number.metric} | {published} | {ours} | "
                    f"{len(values)}/{len(trials)} | {difference} | {outcome} | {'; '.join(remarks + notes)} |"
                )
                if number is row.numbers[0] and run_ids:
                    appendix.append(f"| {table.id} | {row.label} | {', '.join(run_ids)} |")
                    table_runs.update(run_ids)
                if number is row.numbers[0] and len(entry.candidates) > 1:  # the grid's cost counts too
                    table_runs.update(finished_values(entry.trials, frame, table.select, 1.0)[1])
        if table_runs:
            lines += ["", f"Trial time: {trial_seconds(frame, table_runs):.0f} s over {len(table_runs)} runs "
                          "(their logged training and evaluation seconds)."]
        if table.reasons:
            lines += ["", "Known reasons for a difference:"] + [f"- {reason}" for reason in table.reasons]
        lines.append("")
    return "\n".join(lines + appendix) + "\n"
