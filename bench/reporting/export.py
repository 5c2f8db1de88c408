"""A portable table of every trial: MLflow's runs as JSON lines, read back into the frame the reports use.

``bench export`` writes one file per experiment (``results/<experiment>/trials.jsonl``): one line per
trial (``"kind": "trial"``; one run per trial, as the reports count them:
:func:`removal_bench.running.tracking.deduplicate`) and one per invocation (``"kind": "invocation"``:
the command, seeds and times that the leaderboard's provenance and expected seeds come from).

Why JSON lines and not CSV: every value keeps its type (a hyperparameter ``"1"`` stays the string
MLflow holds, a figure keeps every bit of its float: ``json`` writes the shortest repr that reads back
to the same double), nested identity (hyperparameters, dataset options, recipe, plugins) stays
nested, and a line is a whole trial, so the file diffs and concatenates line by line in git.
``pandas.read_json(path, lines=True)`` reads it as a table.

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
from pathlib import Path
from typing import Any, Iterable

from removal_bench.core.errors import UserError
from removal_bench.running.tracking import SOURCE_RUN_TAG, deduplicate

SCHEMA = 1
TRIAL_FILE = "trials.jsonl"
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
    plugins: dict[str, dict[str, str]] = {}
    for key, value in tags.items():
        if key.startswith("plugin."):
            _, kind, field = key.split(".", 2)
            plugins.setdefault(kind, {})[field] = value
    return {
        "kind": "trial", "schema": SCHEMA, "experiment": experiment,
        "run_id": run["run_id"], "parent_run_id": tags.get("mlflow.parentRunId"), "status": run["status"],
        "start_time": _milliseconds(run.get("start_time")), "end_time": _milliseconds(run.get("end_time")),
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


def export_text(trials, invocations, experiment: str) -> str:
    """The JSON lines of one experiment: its invocations, then one line per trial (by start time, run id).
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
    return "".join(json.dumps(line, sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n" for line in lines)


def execute_export(experiments: list[str], tracking_uri: str | None, output: str | None, quiet: bool = False,
                   stream=None) -> list[Path]:
    """``bench export``: one file per experiment; returns the paths written."""
    import sys

    from removal_bench.reporting.files import write_text
    from removal_bench.running import preflight
    from removal_bench.running.tracking import load_runs, require_experiment

    stream = stream or sys.stdout
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
        text = export_text(trials, load_runs(uri, name, kind="invocation"), name)
        write_text(path, text)
        written.append(path)
        if not quiet:
            print(f"wrote {path}: {len(deduplicate(trials))} trials of experiment {name!r}", file=stream)
    return written


# --------------------------------------------------------------------------- reading back


def read_lines(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every line of the files, checked: a missing file, a line that is not JSON or not ours is a UserError."""
    out = []
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"trial table {path} does not exist (bench export writes one)")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read trial table {path}: {error}") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise UserError(f"{path} line {number} is not JSON ({error}): is it a bench export file?") from None
            if not isinstance(record, dict) or record.get("kind") not in ("trial", "invocation") \
                    or record.get("schema") != SCHEMA:
                raise UserError(f"{path} line {number} is not a trial or invocation of schema {SCHEMA}: "
                                "is it a bench export file?")
            out.append(record)
    if not any(record["kind"] == "trial" for record in out):
        raise UserError(f"{', '.join(str(p) for p in paths)} hold no trials")
    return out


def _frame(records: list[dict[str, Any]]):
    import pandas as pd

    rows = []
    for record in records:
        row = {"run_id": record["run_id"], "status": record["status"], "experiment": record["experiment"]}
        for name in ("start_time", "end_time"):
            row[name] = pd.to_datetime(record[name], unit="ms", utc=True) if record.get(name) is not None else pd.NaT
        row.update({f"params.{k}": v for k, v in record.get("params", {}).items()})
        row.update({f"tags.{k}": v for k, v in record.get("tags", {}).items()})
        row.update({f"metrics.{k}": v for k, v in record.get("metrics", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def read_frames(records: list[dict[str, Any]]):
    """(trials, invocations): the frames ``load_runs`` gives for trial and invocation runs."""
    trials = _frame([r for r in records if r["kind"] == "trial"])
    invocations = _frame([r for r in records if r["kind"] == "invocation"])
    return trials, invocations


def experiments_of(records: list[dict[str, Any]]) -> list[str]:
    return sorted({r["experiment"] for r in records if r["kind"] == "trial"})


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


def comparable(mine, theirs) -> None:
    """UserError naming the first difference unless every dataset of ``mine`` (a user's trial runs) was measured
    as ``theirs`` (a trial table's) was: the same protocol fingerprint (dataset and options, recipe,
    attackers, metric definitions), the same seeds, and curves of as many strengths."""
    mine, theirs = deduplicate(mine), deduplicate(theirs)
    theirs_fingerprints = _per_dataset(theirs, "tags.bench.protocol")
    for dataset, fingerprints in sorted(_per_dataset(mine, "tags.bench.protocol").items()):
        where = f"cannot rank on {dataset}"
        if dataset not in set(theirs["tags.bench.dataset"]):
            raise UserError(f"{where}: the trial table has no trials on {dataset} (it has "
                            f"{', '.join(sorted(set(theirs['tags.bench.dataset'])))})")
        if None in fingerprints or None in theirs_fingerprints.get(dataset, {None}):
            side = "your runs" if None in fingerprints else "the trial table"
            raise UserError(f"{where}: some trials of {side} carry no protocol fingerprint (tag bench.protocol, logged "
                            "since plugins and trial tables came in): run them again with this version")
        if fingerprints != theirs_fingerprints[dataset]:
            raise UserError(f"{where}: the protocol differs: {_protocol_difference(mine, theirs, dataset)}")
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


def _protocol_difference(mine, theirs, dataset: str) -> str:
    from removal_bench.running.protocol import differences

    def parts(frame):
        texts = frame.loc[frame["tags.bench.dataset"] == dataset, "tags.bench.protocol_parts"]
        return [json.loads(t) for t in dict.fromkeys(texts) if isinstance(t, str)]

    ours, others = parts(mine), parts(theirs)
    if not ours or not others:
        return "the fingerprints differ"
    best = min((differences(a, b) for a in ours for b in others), key=len)
    return "; ".join(best[:3]) or "the fingerprints differ"
