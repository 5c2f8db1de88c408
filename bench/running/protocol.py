"""A trial's protocol fingerprint and identity, logged as tags so that runs can be compared and re-run.

Two trials are comparable on a leaderboard when they were measured the same way: the same dataset
with the same options, the same training recipe, the same attackers with the same settings and the
same metric definitions. :func:`protocol_parts` spells that out for one trial and :func:`fingerprint`
hashes it; the tracker logs both (``bench.protocol``, ``bench.protocol_parts``). The attackers' part
is every upper-case setting of :mod:`removal_bench.measuring.attackers` (families, C grid, MLP and
GBDT settings, hold-out), so changing an attacker changes the fingerprint without anyone having to
remember to; :data:`METRIC_DEFINITIONS` is bumped by hand when a metric's definition changes (what
leakage, the floor or the hypervolume's reference mean). Seeds and the strengths walked are a
property of a set of trials, not of one: ``bench leaderboard --with`` compares them per dataset
(:mod:`removal_bench.reporting.export`).

A refined curve's added points (``bench sweep --curve --refine K``, :mod:`removal_bench.running.sweep`) carry the
refinement in their fingerprint: ``refinement`` holds the number of log-spaced strengths it bisected from and the
rule's version (:data:`removal_bench.running.sweep.REFINE_RULE`), so curves refined from another grid or by
another rule, or not refined, do not rank together; the round is the trial's ``bench.refined`` tag. The
log-spaced points of a refined sweep are the plain curve's trials (same identity, same fingerprint).

``bench.identity`` is the canonical JSON of the trial's identity (``removal_bench.running.trial.IDENTITY_KEYS``):
what ``bench verify`` rebuilds the trial from, checked against ``bench.config_hash``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Bump when what a metric means changes (docs/PROTOCOL.md): runs on either side then no longer rank together.
# 2026-11-28: hypervolume reference at the majority class's test rate; leak_probe25/50 refit the best family.
METRIC_DEFINITIONS = "2026-11-28"


def attacker_settings() -> dict[str, Any]:
    """Every upper-case setting of the attackers' module (families and their hyperparameters)."""
    from removal_bench.measuring import attackers

    out = {}
    for name, value in sorted(vars(attackers).items()):
        if name.isupper() and isinstance(value, (int, float, str, tuple, bool)):
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def recipe_part(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe as the fingerprint holds it: no citation, and a field added after fingerprints were first
    logged (:data:`removal_bench.core.recipes.LATE_FIELDS`: ``drop_last``, ``precision``) only where it differs
    from its default, as the config hash holds it. Without that, ``precision: fp32`` (1956a69) moved the
    fingerprint of every trial, and ``bench leaderboard --with results/curves/trials.jsonl.gz`` refused every
    new run: "the protocol differs: recipe.precision fp32 here, (absent) in the file"."""
    from removal_bench.core.recipes import LATE_FIELDS

    return {k: v for k, v in recipe.items()
            if k != "citation" and not (k in LATE_FIELDS and v == LATE_FIELDS[k])}


def stored_fingerprint(parts_text: Any, logged: Any) -> Any:
    """The fingerprint of a logged trial, from its ``bench.protocol_parts`` as :func:`protocol_parts` writes them
    now (trials logged between 1956a69 and a0c65b1 carry ``precision: fp32`` in theirs); its logged
    ``bench.protocol`` where the parts are missing or unreadable."""
    if not isinstance(parts_text, str):
        return logged
    try:
        parts = json.loads(parts_text)
    except ValueError:
        return logged
    return fingerprint(as_written_now(parts))


def as_written_now(parts: Any) -> Any:
    """Logged protocol parts as :func:`protocol_parts` writes them now (their recipe through :func:`recipe_part`)."""
    if isinstance(parts, dict) and isinstance(parts.get("recipe"), dict):
        return {**parts, "recipe": recipe_part(parts["recipe"])}
    return parts


def protocol_parts(config: dict[str, Any]) -> dict[str, Any]:
    """What makes a trial's figures comparable with another's (see the module's docstring)."""
    recipe = recipe_part(config.get("recipe") or {})
    return {
        "dataset": config["dataset"],
        "dataset_options": config.get("dataset_options", {}),
        "recipe": recipe,
        "attackers": attacker_settings(),
        "probe_sizes": bool(config.get("probe_sizes", True)),
        "metrics": METRIC_DEFINITIONS,
        **refinement_part(config),
    }


def refinement_part(config: dict[str, Any]) -> dict[str, Any]:
    """``{"refinement": {...}}`` for a refined curve point (its config's ``curve_refine``), else nothing: the
    fingerprints of every other trial stay as they were."""
    refine = config.get("curve_refine")
    if not refine:
        return {}
    return {"refinement": {"base_strengths": refine["base_strengths"], "rule": refine["rule"]}}


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(parts).encode()).hexdigest()[:16]


def identity(config: dict[str, Any]) -> dict[str, Any]:
    from removal_bench.running.trial import IDENTITY_KEYS

    return {key: config.get(key) for key in IDENTITY_KEYS}


def tags(config: dict[str, Any]) -> dict[str, str]:
    """``bench.protocol``, ``bench.protocol_parts``, ``bench.identity`` and ``bench.threads`` of a trial,
    ``bench.refined`` (its refinement round) on a refined curve's point, and on a sweep's trial ``bench.search``
    (random, grid, curve, refine or optuna) with ``bench.search_round`` where the search runs in rounds."""
    parts = protocol_parts(config)
    out = {"bench.protocol": fingerprint(parts), "bench.protocol_parts": canonical(parts),
           "bench.identity": canonical(identity(config))}
    if config.get("threads"):
        out["bench.threads"] = str(config["threads"])
    if config.get("curve_refine"):
        out["bench.refined"] = str(config["curve_refine"]["round"])
    search = config.get("search")
    if isinstance(search, dict) and search.get("name"):  # the sweep's search that proposed it (bench sweep)
        out["bench.search"] = str(search["name"])
        if search.get("round") is not None:
            out["bench.search_round"] = str(search["round"])
    return out


def differences(mine: dict[str, Any], theirs: dict[str, Any], prefix: str = "") -> list[str]:
    """Where two protocol parts disagree, as ``path: mine != theirs`` lines (the refusal's words)."""
    out = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key, "(absent)"), theirs.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a} here, {b} in the file")
    return out
