"""The compact trial table (``trials.jsonl.gz``, schema 2): each trial's own figures once, what its invocation
shares once, gzip-compressed JSON lines.

A schema-1 table (``trials.jsonl``, :mod:`removal_bench.reporting.export`) repeats on every line what is
the same for hundreds of trials (package versions, commit, protocol, dataset options, recipe and its
citation) and holds each trial's identity three times (parsed, as the ``bench.identity`` tag, and as
params): 7.7 kB a trial. Schema 2 keeps, per line:

- ``{"kind": "table", "schema": 2, ...}``: the first line (a concatenation of two tables holds two).
- ``{"kind": "invocation", ...}``: as in schema 1 (run id, status, times, params, tags), without ``schema``.
- ``{"kind": "setting", "id": ..., ...}``: what a group of trials shares: the experiment, the params and tags
  of :func:`is_setting_param` / :func:`is_setting_tag` (dataset options, recipe, versions, commit, protocol,
  hardware fingerprint, plugins, parent invocation), and the identity's typed dataset options and recipe. Its
  ``id`` is a hash of its content, so two tables never give one id two meanings.
- ``{"kind": "trial", "setting": ID, ...}``: flat: run id, status, times, ``dataset``, ``method``, ``label``,
  ``seed``, ``config_hash``, ``config_key``, the typed hyperparameters as ``hp.<name>``, every final metric
  as ``metrics.<name>``; rarely ``params.<name>`` / ``tags.<name>`` (what its setting and these fields do
  not give back exactly) and ``drop`` (what they give that the run did not have).

The rest of the run is derived on reading (:func:`decode_trial`): params ``method``, ``seed`` and
``hp.<name>`` (the text MLflow logged), the tags ``bench.method``, ``bench.label``, ``bench.seed``,
``bench.config_hash``, ``bench.config_key``, ``mlflow.runName`` and ``bench.identity`` (its canonical
JSON). The writer checks every trial: it decodes the line it built and stores explicitly whatever does not
come back identical, so the table reads back to the run's params, tags and metrics exactly, whatever they
hold. ``pandas.read_json(path, lines=True)`` reads it (one row per line; ``kind == "trial"`` are the trials,
with their figures as columns).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from typing import Any, Iterable

SCHEMA = 2
HEADER = {"kind": "table", "schema": SCHEMA, "format": "removal-bench trial table, docs/RESULTS_TABLE.md"}
SETTING_PARAMS = ("dataset", "epochs", "batch_size", "encoder")
SETTING_PARAM_PREFIXES = ("data.", "recipe.")
SETTING_TAGS = ("bench.dataset", "bench.git_commit", "bench.protocol", "bench.protocol_parts", "bench.threads",
                "bench.kind", "mlflow.parentRunId", "encoder", "compute_path")
SETTING_TAG_PREFIXES = ("version.", "fingerprint.", "plugin.", "mlflow.source.")
# trial line field -> the tag it gives back
FIELD_TAGS = {"dataset": "bench.dataset", "method": "bench.method", "label": "bench.label",
              "config_hash": "bench.config_hash", "config_key": "bench.config_key"}
RUN_FIELDS = ("run_id", "status", "start_time", "end_time")


def is_setting_param(name: str) -> bool:
    return name in SETTING_PARAMS or name.startswith(SETTING_PARAM_PREFIXES)


def is_setting_tag(name: str) -> bool:
    return name in SETTING_TAGS or name.startswith(SETTING_TAG_PREFIXES)


def canonical(value: Any) -> str:
    """As :func:`removal_bench.running.protocol.canonical` (the ``bench.identity`` tag's text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, sort_keys=True, allow_nan=False, separators=(",", ":"))


def _identity(tags: dict[str, str]) -> dict[str, Any] | None:
    try:
        found = json.loads(tags["bench.identity"])
    except (KeyError, TypeError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _text(value: Any) -> str:
    """A hyperparameter as MLflow logged it (``str`` of the Python value)."""
    return str(value)


def own_items(line: dict[str, Any], setting: dict[str, Any]) -> tuple[dict, dict, dict, list[tuple[str, str]]]:
    """What a schema-2 trial line gives beyond its setting: (params, tags, metrics, dropped), where ``params``
    and ``tags`` replace the setting's of the same name and ``dropped`` are ("params" or "tags", name) to remove."""
    params, tags, hparams, metrics, given = {}, {}, {}, {}, []
    keys = tuple(line)
    kinds = _KINDS.get(keys)
    if kinds is None:  # how each key of lines shaped like this one is read (trials of a table share a few shapes)
        if len(_KINDS) > 10000:
            _KINDS.clear()
        kinds = _KINDS[keys] = tuple(
            (key, 0, key[8:]) if key.startswith("metrics.") else (key, 1, key[3:]) if key.startswith("hp.")
            else (key, 2, key) if key.startswith(("params.", "tags.")) else (key, 3, key) for key in keys)
    for key, kind, name in kinds:
        if kind == 0:
            metrics[name] = line[key]
        elif kind == 1:
            hparams[name] = line[key]
        elif kind == 2:
            given.append((key, line[key]))
    for field, tag in FIELD_TAGS.items():
        if line.get(field) is not None:
            tags[tag] = line[field]
    method, dataset, seed, label = line.get("method"), line.get("dataset"), line.get("seed"), line.get("label")
    if method is not None:
        params["method"] = method
    if seed is not None:
        params["seed"] = tags["bench.seed"] = _text(seed)
    for name, value in hparams.items():
        params[f"hp.{name}"] = _text(value)
    if label is not None and dataset is not None and seed is not None:
        tags["mlflow.runName"] = f"{label}/{dataset}/seed{seed}"
    if "dataset_options" in setting and "recipe" in setting:
        tags["bench.identity"] = _identity_text(setting, dataset, hparams, method, seed)
    for key, value in given:
        if key.startswith("params."):
            params[key[7:]] = value
        else:
            tags[key[5:]] = value
    dropped = []
    for key in line.get("drop", ()):
        kind, _, name = key.partition(".")
        (params if kind == "params" else tags).pop(name, None)
        dropped.append((kind, name))
    return params, tags, metrics, dropped


_KINDS: dict[tuple, tuple] = {}  # a trial line's keys -> (key, 0 metric / 1 hyperparameter / 2 param or tag / 3 other, name)
_TEXTS: dict[Any, str] = {}  # canonical JSON of the values trials repeat (dataset, method, hyperparameters)
_SETTING_TEXTS: dict[int, tuple[dict, str, str]] = {}  # id() of a setting -> (it, its options' and recipe's JSON)


def _identity_text(setting: dict[str, Any], dataset: Any, hparams: dict, method: Any, seed: Any) -> str:
    """``canonical`` of the identity {dataset, dataset_options, hparams, method, recipe, seed}, with the setting's
    parts encoded once per setting: JSON of a dict with sorted keys is its keys' and values' JSON in that order."""
    found = _SETTING_TEXTS.get(id(setting))
    if found is None or found[0] is not setting:
        if len(_SETTING_TEXTS) > 10000:
            _SETTING_TEXTS.clear()
        found = _SETTING_TEXTS[id(setting)] = (setting, canonical(setting["dataset_options"]), canonical(setting["recipe"]))
    return (f'{{"dataset":{_repeated(dataset)},"dataset_options":{found[1]},"hparams":{_repeated(hparams)},'
            f'"method":{_repeated(method)},"recipe":{found[2]},"seed":{_repeated(seed)}}}')


def _repeated(value: Any) -> str:
    """``canonical(value)``, remembered for the values trials repeat (a dict by its items, with their types)."""
    try:
        key = (type(value), tuple((k, type(v), v) for k, v in value.items())) if isinstance(value, dict) else (type(value), value)
        hash(key)
    except TypeError:
        return canonical(value)
    found = _TEXTS.get(key)
    if found is None:
        if len(_TEXTS) > 100000:
            _TEXTS.clear()
        found = _TEXTS[key] = canonical(value)
    return found


def decode_trial(line: dict[str, Any], setting: dict[str, Any]) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """(params, tags, metrics) of a schema-2 trial line with its setting, each sorted by name."""
    own_params, own_tags, metrics, dropped = own_items(line, setting)
    params, tags = {**setting.get("params", {}), **own_params}, {**setting.get("tags", {}), **own_tags}
    for kind, name in dropped:
        (params if kind == "params" else tags).pop(name, None)
    return dict(sorted(params.items())), dict(sorted(tags.items())), dict(sorted(metrics.items()))


def frame_columns(trials: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """The ``params.*``, ``tags.*`` and ``metrics.*`` columns of ``mlflow.search_runs``'s frame for schema-2 trial
    lines with their settings, column by column (no per-trial dictionaries of every field): what a setting gives
    is filled for all its trials at once. Columns come in the order a frame built row by row from the decoded
    trials would have (first appearance, each trial's params, tags and metrics sorted by name); a value a trial
    lacks is NaN."""
    import numpy as np

    n = len(trials)
    order: dict[str, None] = {}
    objects: dict[str, np.ndarray] = {}
    floats: dict[str, np.ndarray] = {}
    signatures: dict[tuple, None] = {}
    rows: dict[str, list[int]] = {}
    settings: dict[str, dict[str, Any]] = {}
    later: list[tuple[str, int, Any]] = []

    def column(name: str) -> np.ndarray:
        found = objects.get(name)
        if found is None:
            found = objects[name] = np.full(n, np.nan, dtype=object)
        return found

    for index, (line, setting) in enumerate(trials):
        params, tags, metrics, dropped = own_items(line, setting)
        key = setting["id"]
        settings.setdefault(key, setting)
        rows.setdefault(key, []).append(index)
        signature = (key, tuple(params), tuple(tags), tuple(metrics), tuple(dropped))
        if signature not in signatures:
            signatures[signature] = None
            gone = set(dropped)
            names = sorted(({*setting.get("params", {})} | {*params}) - {n for k, n in gone if k == "params"})
            order.update(dict.fromkeys(f"params.{name}" for name in names))
            names = sorted(({*setting.get("tags", {})} | {*tags}) - {n for k, n in gone if k == "tags"})
            order.update(dict.fromkeys(f"tags.{name}" for name in names))
            order.update(dict.fromkeys(f"metrics.{name}" for name in sorted(metrics)))
        for name, value in params.items():
            later.append((f"params.{name}", index, value))
        for name, value in tags.items():
            later.append((f"tags.{name}", index, value))
        for name, value in metrics.items():
            values = floats.get(f"metrics.{name}")
            if values is None:
                values = floats[f"metrics.{name}"] = np.full(n, np.nan)
            values[index] = value
        for kind, name in dropped:
            later.append((f"{kind}.{name}", index, np.nan))
    for key, setting in settings.items():  # what a setting gives, for all its trials at once
        where = np.asarray(rows[key])
        for prefix in ("params", "tags"):
            for name, value in setting.get(prefix, {}).items():
                column(f"{prefix}.{name}")[where] = value
    for name, index, value in later:  # then each trial's own values, and what it drops
        column(name)[index] = value
    return {name: floats[name] if name in floats else column(name) for name in order}


def _setting_of(record: dict[str, Any]) -> dict[str, Any]:
    params, tags = record.get("params", {}), record.get("tags", {})
    setting = {"experiment": record.get("experiment"),
               "params": {k: v for k, v in sorted(params.items()) if is_setting_param(k)},
               "tags": {k: v for k, v in sorted(tags.items()) if is_setting_tag(k)}}
    identity = _identity(tags)
    if identity is not None and isinstance(identity.get("dataset_options"), dict) and isinstance(identity.get("recipe"), dict):
        setting["dataset_options"], setting["recipe"] = identity["dataset_options"], identity["recipe"]
    setting["id"] = hashlib.sha256(_dumps(setting).encode()).hexdigest()[:16]
    return setting


def encode_trial(record: dict[str, Any], setting: dict[str, Any]) -> dict[str, Any]:
    """The schema-2 line of a trial record (schema 1's fields ``params``, ``tags``, ``metrics`` and the run's),
    checked: what the derivation does not give back exactly is stored explicitly."""
    params, tags, metrics = record.get("params", {}), record.get("tags", {}), record.get("metrics", {})
    line: dict[str, Any] = {"kind": "trial", "setting": setting["id"]}
    for name in RUN_FIELDS:
        line[name] = record.get(name)
    for field, tag in FIELD_TAGS.items():
        if tag in tags:
            line[field] = tags[tag]
    identity = _identity(tags) or {}
    hparams = identity.get("hparams") if isinstance(identity.get("hparams"), dict) else \
        {k[3:]: v for k, v in params.items() if k.startswith("hp.")}
    if "seed" in identity:
        line["seed"] = identity["seed"]
    elif "bench.seed" in tags:
        line["seed"] = tags["bench.seed"]
    line.update({f"hp.{k}": v for k, v in hparams.items()})
    line.update({f"metrics.{k}": v for k, v in metrics.items()})
    got_params, got_tags, _ = decode_trial(line, setting)
    for prefix, want, got in (("params", params, got_params), ("tags", tags, got_tags)):
        for key, value in want.items():
            if got.get(key) != value:
                line[f"{prefix}.{key}"] = value
        dropped = [f"{prefix}.{key}" for key in got if key not in want]
        if dropped:
            line.setdefault("drop", []).extend(dropped)
    return line


def encode(records: Iterable[dict[str, Any]]) -> str:
    """Schema-1 records (invocations first, then trials, in the order given) as schema-2 JSON lines."""
    out, written = [_dumps(HEADER)], set()
    for record in records:
        if record["kind"] == "invocation":
            out.append(_dumps({key: record.get(key) for key in ("kind", "experiment", "run_id", *RUN_FIELDS[1:], "params", "tags")}))
            continue
        setting = _setting_of(record)
        if setting["id"] not in written:
            written.add(setting["id"])
            out.append(_dumps({"kind": "setting", **setting}))
        out.append(_dumps(encode_trial(record, setting)))
    return "\n".join(out) + "\n"


def compress(text: str) -> bytes:
    """gzip, level 9, without a file name or time in the header: the same table gives the same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0, filename="") as stream:
        stream.write(text.encode())
    return buffer.getvalue()
