"""A portable table of every trial: MLflow's runs as JSON lines, read back into the frame the reports use.

``bench export`` writes one file per experiment (``results/<experiment>/trials.jsonl.gz``): the compact
table (schema 2, :mod:`removal_bench.reporting.compact`: per trial its own fields once, what its invocation
shares once, gzip; docs/RESULTS_TABLE.md), one trial per trial (one run per trial, as the reports count
them: :func:`removal_bench.running.tracking.deduplicate`) and the invocations (the command, seeds and times
that the leaderboard's provenance and expected seeds come from). ``--output NAME.jsonl`` writes schema 1
instead: one whole run a line (``"kind": "trial"`` or ``"invocation"``), every field spelled out, which
:func:`read_lines` reads as well.

Why JSON lines and not CSV: every value keeps its type (a hyperparameter ``"1"`` stays the string
MLflow holds, a figure keeps every bit of its float: ``json`` writes the shortest repr that reads back
to the same double), nested identity (hyperparameters, dataset options, recipe, plugins) stays
nested. ``pandas.read_json(path, lines=True)`` reads either kind as a table.

A trial line carries its identity (method, hyperparameters, dataset and options, recipe, seed, config
hash, the ``bench.identity`` that ``bench verify`` rebuilds the trial from), where it ran (MLflow
run id, experiment, git commit, package versions, torch threads), its plugins' provenance, its
protocol fingerprint, every final metric, and MLflow's params and tags as they were, so that
:func:`read_frames` gives back the frame of ``mlflow.search_runs`` that
:func:`removal_bench.reporting.summaries.summarise` reads: ``bench leaderboard --from FILE`` builds
the same files as from MLflow.

:func:`comparable` is ``bench leaderboard --with FILE``'s check that a user's runs were measured
as the file's were (dataset and options, recipe, attackers and metric definitions: the protocol
fingerprint; seeds; strengths walked), naming the first difference otherwise.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from removal_bench.core.errors import UserError
from removal_bench.running.tracking import SOURCE_RUN_TAG, deduplicate, run_key

SCHEMA = 1
TRIAL_FILE = "trials.jsonl.gz"  # compact (schema 2); a .jsonl --output writes schema 1
# MLflow's own bookkeeping tags that say nothing about a trial (and change with the store).
SKIPPED_TAGS = ("mlflow.log-model.history", "mlflow.user", "mlflow.source.name", "mlflow.source.type")


def _milliseconds(value) -> int | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        try:
            number = value.timestamp() * 1000
        except (ValueError, OverflowError):
            return None
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
    return int(round(number)) if math.isfinite(number) else None


def _present(value) -> bool:
    if value is None:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def _columns(run, prefix: str) -> dict[str, Any]:
    return {name[len(prefix):]: run[name] for name in run.index if name.startswith(prefix) and _present(run[name])}


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None


def trial_line(run, experiment: str) -> dict[str, Any]:
    """One trial run (a row of ``mlflow.search_runs``) as an export line."""
    params = {k: str(v) for k, v in _columns(run, "params.").items()}
    tags = {k: str(v) for k, v in _columns(run, "tags.").items() if k not in SKIPPED_TAGS}
    metrics = {k: float(v) for k, v in _columns(run, "metrics.").items()}
    return trial_record(experiment, run["run_id"], run["status"], _milliseconds(run.get("start_time")),
                        _milliseconds(run.get("end_time")), params, tags, metrics)


def trial_record(experiment: str, run_id: str, status: str, start_time: int | None, end_time: int | None,
                 params: dict[str, str], tags: dict[str, str], metrics: dict[str, float]) -> dict[str, Any]:
    """A schema-1 trial line: the run's params, tags and metrics, and the fields read from them."""
    plugins: dict[str, dict[str, str]] = {}
    for key, value in tags.items():
        if key.startswith("plugin."):
            _, kind, field = key.split(".", 2)
            plugins.setdefault(kind, {})[field] = value
    return {
        "kind": "trial", "schema": SCHEMA, "experiment": experiment,
        "run_id": run_id, "parent_run_id": tags.get("mlflow.parentRunId"), "status": status,
        "start_time": start_time, "end_time": end_time,
        "method": tags.get("bench.method"), "dataset": tags.get("bench.dataset"), "seed": tags.get("bench.seed"),
        "label": tags.get("bench.label"), "config_hash": tags.get("bench.config_hash"),
        "config_key": tags.get("bench.config_key"),
        "hparams": {k[len("hp."):]: v for k, v in params.items() if k.startswith("hp.")},
        "dataset_options": {k[len("data."):]: v for k, v in params.items() if k.startswith("data.")},
        "recipe": {k[len("recipe."):]: v for k, v in params.items() if k.startswith("recipe.")},
        "identity": _json(tags.get("bench.identity")),
        "protocol": tags.get("bench.protocol"), "protocol_parts": _json(tags.get("bench.protocol_parts")),
        "commit": tags.get("bench.git_commit"),
        "versions": {k[len("version."):]: v for k, v in tags.items() if k.startswith("version.")},
        "plugins": plugins,
        "metrics": metrics, "params": params, "tags": tags,
    }


def invocation_line(run, experiment: str) -> dict[str, Any]:
    return {
        "kind": "invocation", "schema": SCHEMA, "experiment": experiment, "run_id": run["run_id"],
        "status": run["status"], "start_time": _milliseconds(run.get("start_time")),
        "end_time": _milliseconds(run.get("end_time")),
        "params": {k: str(v) for k, v in _columns(run, "params.").items()},
        "tags": {k: str(v) for k, v in _columns(run, "tags.").items() if k not in SKIPPED_TAGS},
    }


def _as_source(line: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    """A line of an imported run (``bench import``) as its source wrote it: the source's run id and parent."""
    tags = line["tags"]
    line["run_id"] = tags.pop(SOURCE_RUN_TAG, line["run_id"])
    if tags.get("mlflow.parentRunId") in sources:
        tags["mlflow.parentRunId"] = sources[tags["mlflow.parentRunId"]]
    if line.get("parent_run_id") in sources:
        line["parent_run_id"] = sources[line["parent_run_id"]]
    return line


def export_records(trials, invocations, experiment: str) -> list[dict[str, Any]]:
    """The schema-1 lines of one experiment: its invocations, then one line per trial (by start time, run id).
    Runs written by ``bench import`` keep their source's run ids, so a table read in and written out again
    comes back line for line."""
    lines, sources = [], {}
    column = f"tags.{SOURCE_RUN_TAG}"
    for frame in (invocations, trials):
        if frame is not None and not frame.empty and column in frame.columns:
            sources.update({run: source for run, source in zip(frame["run_id"], frame[column]) if isinstance(source, str)})
    def ordered(group):
        return sorted(group, key=lambda line: (line["start_time"] is None, line["start_time"] or 0, line["run_id"]))

    if invocations is not None and not invocations.empty:
        lines += ordered(_as_source(invocation_line(run, experiment), sources) for _, run in invocations.iterrows())
    if trials is not None and not trials.empty:
        lines += ordered(_as_source(trial_line(run, experiment), sources) for _, run in deduplicate(trials).iterrows())
    return lines


def verbose_text(records: list[dict[str, Any]]) -> str:
    """Schema 1: one whole JSON line per run (every field, params and tags as MLflow holds them)."""
    return "".join(json.dumps(complete(line), sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n"
                   for line in records)


def export_text(trials, invocations, experiment: str) -> str:
    """The schema-1 text of one experiment (see :func:`export_records`)."""
    return verbose_text(export_records(trials, invocations, experiment))


def is_compact(path: str | Path) -> bool:
    """``.gz`` tables are compact (schema 2, :mod:`removal_bench.reporting.compact`); ``.jsonl`` ones schema 1."""
    return str(path).endswith(".gz")


def table_bytes(records: list[dict[str, Any]], path: str | Path) -> bytes:
    """The file of ``records`` for ``path``: compact and gzip-compressed for ``.gz``, schema-1 JSON lines otherwise."""
    from removal_bench.reporting import compact

    return compact.compress(compact.encode(records)) if is_compact(path) else verbose_text(records).encode()


def execute_export(experiments: list[str], tracking_uri: str | None, output: str | None, quiet: bool = False,
                   stream=None, from_files: list[str] | None = None) -> list[Path]:
    """``bench export``: one file per experiment, or (``from_files``) the tables merged into ``output``; returns
    the paths written."""
    import sys

    from removal_bench.core.disk import write_atomic
    from removal_bench.running import preflight
    from removal_bench.running.tracking import load_runs, require_experiment

    stream = stream or sys.stdout
    if output and not str(output).endswith((".jsonl", ".jsonl.gz")):
        raise UserError(f"--output {output}: a trial table ends in .jsonl.gz (compact) or .jsonl (one whole run a line)")
    if from_files:
        if experiments or tracking_uri:
            raise UserError("--from reads trial tables instead of MLflow: --experiment and --tracking-uri go without it")
        if not output:
            raise UserError("--from needs --output: the table to write (.jsonl.gz compact, .jsonl one whole run a line)")
        target = preflight.writable_file(output, "--output").resolve()
        records = merge_records(read_lines(from_files), stream=None if quiet else stream)
        data = table_bytes(records, target)
        write_atomic(target, data, "the trial table")
        if not quiet:
            print(f"wrote {target}: {sum(r['kind'] == 'trial' for r in records)} trials and "
                  f"{sum(r['kind'] == 'invocation' for r in records)} invocations from {len(from_files)} table(s), "
                  f"{len(data):,} bytes", file=stream)
        return [target]
    if not experiments:
        raise UserError("give --experiment (runs from MLflow) or --from (trial tables to merge or convert)")
    if output and len(experiments) != 1:
        raise UserError("--output names one file: give one --experiment (without it, each goes to "
                        f"results/<experiment>/{TRIAL_FILE})")
    targets = {name: preflight.writable_file(output or Path("results") / name / TRIAL_FILE, "--output").resolve()
               for name in experiments}
    uri = preflight.tracking_uri(tracking_uri, write=False)
    for name in experiments:
        require_experiment(uri, name)
    written = []
    for name, path in targets.items():
        trials = load_runs(uri, name)
        if trials.empty:
            raise UserError(f"experiment {name!r} at {uri} holds no trial runs")
        # A trial run still RUNNING (a sweep in progress, or one whose driver is gone) has no figures yet: left
        # out, so that a table exported mid-sweep holds ended runs only and the next export adds the rest.
        running = trials["status"] == "RUNNING"
        unended, trials = int(running.sum()), trials[~running]
        data = table_bytes(export_records(trials, load_runs(uri, name, kind="invocation"), name), path)
        write_atomic(path, data, "the trial table")
        written.append(path)
        if not quiet:
            left = (f"; left out {unended} trial run(s) still RUNNING (a sweep in progress, or a driver that is gone): "
                    "export again once they have ended" if unended else "")
            print(f"wrote {path}: {len(deduplicate(trials))} trials of experiment {name!r}, "
                  f"{len(data):,} bytes{left}", file=stream)
    return written


# --------------------------------------------------------------------------- reading back


def _text_of(path: Path) -> str:
    import gzip
    import zlib

    if not path.is_file():
        raise UserError(f"trial table {path} does not exist (bench export writes one)")
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return data.decode()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        raise UserError(f"cannot read trial table {path}: {error}") from None


def read_lines(paths: Iterable[str | Path], full: bool = False) -> list[dict[str, Any]]:
    """Every run of the tables, as schema-1 records (``kind``, ``experiment``, ``run_id``, ``parent_run_id``,
    ``status``, times, ``params``, ``tags``, ``metrics``; with ``full`` also the fields read from them, as a
    schema-1 file holds them). Schema-1 (``.jsonl``) and compact (``.jsonl.gz``) tables alike; a missing
    file, a line that is not JSON or not ours is a UserError naming it."""
    from removal_bench.reporting import compact

    paths = [Path(path).expanduser() for path in paths]
    out = []
    for path in paths:
        schema, settings, pending = SCHEMA, {}, []
        for number, line in enumerate(_text_of(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise UserError(f"{path} line {number} is not JSON ({error}): is it a bench export file?") from None
            kind = record.get("kind") if isinstance(record, dict) else None
            if kind == "table" and record.get("schema") == compact.SCHEMA:
                schema = compact.SCHEMA
                continue
            if schema == compact.SCHEMA and kind == "setting" and isinstance(record.get("id"), str):
                settings[record["id"]] = record
                continue
            if kind not in ("trial", "invocation") or record.get("schema", schema) != schema:
                raise UserError(f"{path} line {number} is not a trial or invocation of schema {schema}: "
                                "is it a bench export file?")
            if schema == compact.SCHEMA:
                pending.append((number, record))
            else:
                out.append(record)
        for number, record in pending:
            out.append(_decoded(record, settings, path, number))
    if not any(record["kind"] == "trial" for record in out):
        raise UserError(f"{', '.join(str(p) for p in paths)} hold no trials")
    return [complete(record) for record in out] if full else out


def _decoded(record: dict[str, Any], settings: dict[str, dict], path: Path, number: int) -> dict[str, Any]:
    """A schema-2 line as the schema-1 record's core (``params``, ``tags``, ``metrics`` and the run's fields)."""
    from removal_bench.reporting import compact

    where = f"{path} line {number}"
    if not isinstance(record.get("run_id"), str) or not isinstance(record.get("status"), str):
        raise UserError(f"{where} has no run_id or status: is it a bench export file?")
    if record["kind"] == "invocation":
        return {"kind": "invocation", "schema": SCHEMA, "experiment": record.get("experiment"),
                "run_id": record["run_id"], "status": record["status"], "start_time": record.get("start_time"),
                "end_time": record.get("end_time"), "params": record.get("params") or {}, "tags": record.get("tags") or {}}
    setting = settings.get(record.get("setting"))
    if setting is None:
        raise UserError(f"{where}: trial of setting {record.get('setting')!r}, which the table does not hold")
    if not isinstance(setting.get("params", {}), dict) or not isinstance(setting.get("tags", {}), dict) \
            or not isinstance(record.get("drop", []), list):
        raise UserError(f"{where} is not a trial of schema {compact.SCHEMA}: its setting or drop list is malformed")
    return CompactTrial(record, setting)


class CompactTrial(dict):
    """A schema-2 trial as a schema-1 record whose ``params``, ``tags``, ``metrics`` and ``parent_run_id`` are
    decoded when first read (:func:`removal_bench.reporting.compact.decode_trial`); until then
    :func:`read_frames` builds the frame from the compact line itself, column by column (a 100,000-trial table
    never holds 100,000 dictionaries of every field)."""

    LAZY = ("params", "tags", "metrics", "parent_run_id")

    def __init__(self, line: dict[str, Any], setting: dict[str, Any]):
        super().__init__(kind="trial", schema=SCHEMA, experiment=setting.get("experiment"), run_id=line["run_id"],
                         status=line["status"], start_time=line.get("start_time"), end_time=line.get("end_time"))
        self.line, self.setting = line, setting

    @property
    def decoded(self) -> bool:
        return dict.__contains__(self, "params")

    def _decode(self) -> None:
        from removal_bench.reporting import compact

        if not self.decoded:
            params, tags, metrics = compact.decode_trial(self.line, self.setting)
            dict.update(self, params=params, tags=tags, metrics=metrics, parent_run_id=tags.get("mlflow.parentRunId"))

    def __missing__(self, key):
        if key in self.LAZY:
            self._decode()
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def get(self, key, default=None):
        if key in self.LAZY:
            self._decode()
        return dict.get(self, key, default)

    def __contains__(self, key) -> bool:
        return key in self.LAZY or dict.__contains__(self, key)

    def keys(self):
        self._decode()
        return dict.keys(self)

    def items(self):
        self._decode()
        return dict.items(self)

    def values(self):
        self._decode()
        return dict.values(self)

    def __iter__(self):
        self._decode()
        return dict.__iter__(self)

    def __eq__(self, other):
        self._decode()
        if isinstance(other, CompactTrial):
            other._decode()
        return dict.__eq__(self, other)

    __hash__ = None


def complete(record: dict[str, Any]) -> dict[str, Any]:
    """A trial record with every schema-1 field (identity, protocol, versions, plugins ...) read from its tags."""
    if record["kind"] != "trial" or dict.__contains__(record, "identity"):
        return record if record["kind"] == "trial" or "schema" in record else {**record, "schema": SCHEMA}
    return trial_record(record["experiment"], record["run_id"], record["status"], record.get("start_time"),
                        record.get("end_time"), record["params"], record["tags"], record["metrics"])


def _frame(records: list[dict[str, Any]]):
    """The frame of ``mlflow.search_runs`` for these records, built column by column (a row per record)."""
    import numpy as np
    import pandas as pd

    n = len(records)
    if n and all(isinstance(r, CompactTrial) and not r.decoded for r in records):
        return _compact_frame(records)
    columns: dict[str, list] = {"run_id": [None] * n, "status": [None] * n, "experiment": [None] * n}
    times = {"start_time": np.full(n, np.iinfo(np.int64).min, dtype=np.int64),
             "end_time": np.full(n, np.iinfo(np.int64).min, dtype=np.int64)}
    for index, record in enumerate(records):
        columns["run_id"][index], columns["status"][index] = record["run_id"], record["status"]
        columns["experiment"][index] = record["experiment"]
        for name, values in times.items():
            if record.get(name) is not None:
                values[index] = record[name]
        for prefix, group in (("params.", record.get("params", {})), ("tags.", record.get("tags", {})),
                              ("metrics.", record.get("metrics", {}))):
            for key, value in group.items():
                column = columns.get(prefix + key)
                if column is None:
                    column = columns[prefix + key] = [np.nan] * n
                column[index] = value
    frame = {name: values for name, values in list(columns.items())[:3]}
    for name, values in times.items():
        frame[name] = pd.to_datetime(pd.Series(values).where(values != np.iinfo(np.int64).min), unit="ms", utc=True)
    for name, values in list(columns.items())[3:]:
        frame[name] = np.asarray(values, dtype=float) if name.startswith("metrics.") else values
    return pd.DataFrame(frame) if n else pd.DataFrame()


def _compact_frame(records: list["CompactTrial"]):
    """:func:`_frame` of undecoded schema-2 trials, from their lines (:func:`removal_bench.reporting.compact.frame_columns`)."""
    import numpy as np
    import pandas as pd

    from removal_bench.reporting import compact

    frame = {"run_id": [r["run_id"] for r in records], "status": [r["status"] for r in records],
             "experiment": [r["experiment"] for r in records]}
    for name in ("start_time", "end_time"):
        values = pd.Series([r[name] for r in records], dtype="float64")
        frame[name] = pd.to_datetime(values.round().astype("Int64"), unit="ms", utc=True)
    try:
        frame.update(compact.frame_columns([(r.line, r.setting) for r in records]))
    except (TypeError, AttributeError, ValueError) as error:
        raise UserError(f"a trial of the table is not of schema {compact.SCHEMA}: {error}") from None
    return pd.DataFrame(frame)


def read_frames(records: list[dict[str, Any]]):
    """(trials, invocations): the frames ``load_runs`` gives for trial and invocation runs."""
    trials = _frame([r for r in records if r["kind"] == "trial"])
    invocations = _frame([r for r in records if r["kind"] == "invocation"])
    return trials, invocations


def experiments_of(records: list[dict[str, Any]]) -> list[str]:
    return sorted({r["experiment"] for r in records if r["kind"] == "trial"})


# --------------------------------------------------------------------------- merging tables

# The figures a trial is judged by (bench verify compares them; repeated runs are told apart by them). Times are not.
FIGURES = (
    "accuracy", "balanced_accuracy", "val_accuracy", "leakage", "leakage_norm", "mi_bits", "val_leakage",
    "leak_linear", "leak_mlp", "leak_gbdt", "leak_probe25", "leak_probe50", "floor_leakage", "head_acc",
    "dp_gap", "eo_gap", "majority_accuracy",
)


@dataclass
class Merged:
    """What merging runs from several sources did: runs seen twice (one run id) and trials run twice."""

    same_runs: int = 0  # runs present more than once (the same run id, or an import of it): counted once
    repeated: list[str] = field(default_factory=list)  # per trial run more than once: which run was kept, how far apart
    largest: float = 0.0  # the largest difference of a figure between a kept run and a dropped one

    def lines(self) -> list[str]:
        out = []
        if self.same_runs:
            out.append(f"{self.same_runs} run(s) appear in more than one source (the same run id): each counted once")
        if self.repeated:
            out.append(f"{len(self.repeated)} trial(s) have more than one FINISHED run (the same configuration and seed, "
                       f"say on two machines): each counts once, as its latest FINISHED run, never an average; the runs "
                       f"differ by up to {self.largest:.4g} in a figure")
        return out


def merge_runs(frame, parents=None):
    """(trials, invocations, :class:`Merged`) of runs gathered from several sources (MLflow, trial tables): a
    run present twice is kept once; a trial (config hash, which holds the seed) with several FINISHED runs keeps
    the one :func:`removal_bench.running.tracking.deduplicate` keeps (the latest), and every such trial is named
    with the runs kept and dropped and the largest difference between their figures."""
    import math

    merged = Merged()
    if frame is not None and not frame.empty:
        once = ~run_key(frame).duplicated()
        merged.same_runs = int((~once).sum())
        frame = frame[once] if merged.same_runs else frame
        finished = frame[frame["status"] == "FINISHED"]
        several = finished["tags.bench.config_hash"].duplicated(keep=False)
        if several.any():
            kept_ids = set(deduplicate(frame)["run_id"])
            for config_hash, runs in finished[several].groupby("tags.bench.config_hash", sort=True):
                kept = runs[runs["run_id"].isin(kept_ids)]
                if kept.empty:
                    continue
                kept = kept.iloc[0]
                for _, other in runs[runs["run_id"] != kept["run_id"]].iterrows():
                    gap, figure = 0.0, "none"
                    for name in FIGURES:
                        a, b = kept.get(f"metrics.{name}"), other.get(f"metrics.{name}")
                        if isinstance(a, float) and isinstance(b, float) and math.isfinite(a) and math.isfinite(b) \
                                and abs(a - b) > gap:
                            gap, figure = abs(a - b), name
                    merged.largest = max(merged.largest, gap)
                    merged.repeated.append(
                        f"{kept.get('tags.bench.label')} on {kept.get('tags.bench.dataset')}, seed {kept.get('tags.bench.seed')} "
                        f"(config hash {config_hash}): kept run {_short(kept)}, dropped run {_short(other)}; largest "
                        f"difference {gap:.4g} ({figure})")
    if parents is not None and not parents.empty:
        parents = parents[~run_key(parents).duplicated()]
    return frame, parents, merged


def _short(run) -> str:
    key = run.get(f"tags.{SOURCE_RUN_TAG}")
    key = key if isinstance(key, str) else run["run_id"]
    where = run.get("tags.fingerprint.cpu")
    return key + (f" ({where})" if isinstance(where, str) and where else "")


def merge_records(records: list[dict[str, Any]], stream=None) -> list[dict[str, Any]]:
    """Several tables' records as one table's: each run once (by run id), one run per trial (as
    :func:`merge_runs`: the trials run more than once are printed to ``stream``), ordered as an export is."""
    trials, invocations = read_frames(records)
    trials, invocations, merged = merge_runs(trials, invocations)
    keep = set(deduplicate(trials)["run_id"]) | set(invocations["run_id"] if not invocations.empty else [])
    if stream is not None:
        for line in merged.lines() + merged.repeated:
            print(line, file=stream)
    seen, out = set(), []
    for record in records:
        if record["run_id"] in keep and record["run_id"] not in seen:
            seen.add(record["run_id"])
            out.append(record)
    def order(line):
        return (line["kind"] != "invocation", line.get("start_time") is None, line.get("start_time") or 0, line["run_id"])

    return sorted(out, key=order)


# --------------------------------------------------------------------------- ranking against a file


def _per_dataset(frame, column: str) -> dict[str, set]:
    out: dict[str, set] = {}
    if column not in frame.columns:
        return out
    for dataset, value in zip(frame["tags.bench.dataset"], frame[column]):
        out.setdefault(dataset, set()).add(value if isinstance(value, str) else None)
    return out


def _configurations(frame, dataset: str) -> dict[str, int]:
    runs = frame[frame["tags.bench.dataset"] == dataset]
    return {method: group["tags.bench.config_key"].nunique() for method, group in runs.groupby("tags.bench.method")}


def _with_fingerprints(frame):
    """``frame`` with column ``fingerprint``: each trial's protocol fingerprint recomputed from its logged parts
    as they are written now (:func:`removal_bench.running.protocol.stored_fingerprint`)."""
    from removal_bench.running.protocol import stored_fingerprint

    frame = frame.copy()
    logged = frame["tags.bench.protocol"] if "tags.bench.protocol" in frame.columns else [None] * len(frame)
    parts = frame["tags.bench.protocol_parts"] if "tags.bench.protocol_parts" in frame.columns else [None] * len(frame)
    pairs = list(zip(parts, logged))
    known = {pair: stored_fingerprint(*pair) for pair in dict.fromkeys(pairs)}  # a table repeats a few texts
    frame["fingerprint"] = [known[pair] for pair in pairs]
    return frame


def comparable(mine, theirs) -> None:
    """UserError naming the first difference unless every dataset of ``mine`` (a user's trial runs) was measured
    as ``theirs`` (a trial table's) was: the same protocol fingerprint (dataset and options, recipe,
    attackers, metric definitions), the same seeds, and curves of as many strengths."""
    mine, theirs = _with_fingerprints(deduplicate(mine)), _with_fingerprints(deduplicate(theirs))
    theirs_fingerprints = _per_dataset(theirs, "fingerprint")
    for dataset, fingerprints in sorted(_per_dataset(mine, "fingerprint").items()):
        where = f"cannot rank on {dataset}"
        if dataset not in set(theirs["tags.bench.dataset"]):
            raise UserError(f"{where}: the trial table has no trials on {dataset} (it has "
                            f"{', '.join(sorted(set(theirs['tags.bench.dataset'])))})")
        if None in fingerprints or None in theirs_fingerprints.get(dataset, {None}):
            side = "your runs" if None in fingerprints else "the trial table"
            raise UserError(f"{where}: some trials of {side} carry no protocol fingerprint (tag bench.protocol, logged "
                            "since plugins and trial tables came in): run them again with this version")
        if fingerprints != theirs_fingerprints[dataset]:
            raise UserError(f"{where}: the protocol differs: {_protocol_difference(mine, theirs, dataset)}"
                            f"{_refine_hint(mine, theirs, dataset)}")
        seeds = set(mine.loc[mine["tags.bench.dataset"] == dataset, "tags.bench.seed"])
        wanted = set(theirs.loc[theirs["tags.bench.dataset"] == dataset, "tags.bench.seed"])
        if seeds != wanted:
            raise UserError(f"{where}: seeds {','.join(sorted(seeds, key=_seed))} here, "
                            f"{','.join(sorted(wanted, key=_seed))} in the trial table (--seeds {len(wanted)})")
        theirs_counts = Counter(n for n in _configurations(theirs, dataset).values() if n > 1)
        if theirs_counts:
            walked = theirs_counts.most_common(1)[0][0]
            for method, count in sorted(_configurations(mine, dataset).items()):
                if count > 1 and count != walked:
                    raise UserError(f"{where}: {method} walked {count} strengths, the trial table's curves "
                                    f"{walked} (bench sweep --curve --strengths {walked})")


def _seed(text: str):
    return (0, int(text), "") if str(text).isdigit() else (1, 0, str(text))


def _refine_hint(mine, theirs, dataset: str) -> str:
    """How to walk the file's curves where they are refined and these are not (or refined otherwise)."""
    def rounds(frame) -> int:
        if "tags.bench.refined" not in frame.columns:
            return 0
        found = frame.loc[frame["tags.bench.dataset"] == dataset, "tags.bench.refined"]
        return max((int(r) for r in found if isinstance(r, str) and r.isdigit()), default=0)

    wanted = rounds(theirs)
    if not wanted or rounds(mine) == wanted:
        return ""
    parts = theirs.loc[(theirs["tags.bench.dataset"] == dataset) & theirs["tags.bench.refined"].notna(),
                       "tags.bench.protocol_parts"]
    base = next((json.loads(p).get("refinement", {}).get("base_strengths") for p in parts if isinstance(p, str)), None)
    return (f" (the file's curves are refined: bench sweep --curve"
            + (f" --strengths {base}" if base else "") + f" --refine {wanted})")


def _protocol_difference(mine, theirs, dataset: str) -> str:
    from removal_bench.running.protocol import as_written_now, differences

    def parts(frame):
        texts = frame.loc[frame["tags.bench.dataset"] == dataset, "tags.bench.protocol_parts"]
        found = [as_written_now(json.loads(t)) for t in dict.fromkeys(texts) if isinstance(t, str)]
        return [p for i, p in enumerate(found) if p not in found[:i]]

    ours, others = parts(mine), parts(theirs)
    if not ours or not others:
        return "the fingerprints differ"
    # parts only one side has (a refined curve's points: docs/PROTOCOL.md) against the other side's nearest
    pairs = [(a, b) for a in ours for b in others if a not in others or b not in ours]
    best = min((differences(a, b) for a, b in pairs or [(a, b) for a in ours for b in others]), key=len)
    return "; ".join(best[:3]) or "the fingerprints differ"
