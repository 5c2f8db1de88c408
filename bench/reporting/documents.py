"""Output for scripts: the report as one JSON document.

:func:`report_document` is what ``--json`` prints on stdout for ``bench run``,
``sweep``, ``report`` and ``leaderboard``, and what the HTML leaderboard
embeds for its plots: per dataset, every configuration row (mean and standard
error of each metric over seeds, seeds finished/failed/stopped/missing, the
attackers that set its leakage, Pareto and selection marks) and every method's
hypervolume and selected configuration. Numbers that are not finite are ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any, TextIO

from removal_bench.reporting import summaries



def _number(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def row_document(row: summaries.Row) -> dict[str, Any]:
    return {
        "label": row.label,
        "method": row.method,
        "config_key": row.config_key,
        "seeds": {
            "expected": list(row.expected), "with_run": list(row.seeds), "finished": row.finished,
            "failed": row.failed, "stopped": row.stopped, "missing": list(row.missing),
        },
        "metrics": {
            name: {"mean": _number(mean), "se": _number(error)} for name, (mean, error) in sorted(row.stats.items())
        },
        "attackers": {name: int(count) for name, count in sorted(row.attackers.items())},
        "errors": list(row.errors),
        "pareto": row.pareto,
        "selected": row.selected,
        **({"refined": row.refined} if row.refined else {}),  # a refined curve's point: its round
        "commits": list(row.commits),
        "first_start_ms": _number(row.first_start),
        "last_start_ms": _number(row.last_start),
    }


def method_document(rank: int | None, summary: summaries.MethodSummary) -> dict[str, Any]:
    return {
        "rank": rank,
        "method": summary.method,
        "hypervolume": _number(summary.hypervolume),
        "chance_accuracy": _number(summary.chance_accuracy),
        "configurations": summary.configurations,
        "trials": summary.trials,
        "finished": summary.finished,
        "failed": summary.failed,
        "selected": summary.selected.label if summary.selected else None,
        "selected_config_key": summary.selected.config_key if summary.selected else None,
        "commits": list(summary.commits),
        "last_start_ms": _number(summary.last_start),
    }


def datasets_document(by_dataset: dict[str, list[summaries.Row]], max_leakage: float | None = None,
                      found: dict | None = None) -> dict[str, Any]:
    """Per dataset: its methods in order of hypervolume (``rank``: that order, by the point estimate), its
    configuration rows and, where ``found`` (:func:`removal_bench.reporting.standings.of_datasets`) is given, ``standing``:
    the statistics of LEADERBOARD.md (hypervolume intervals, tied ranks, P(beats), budgets, attackers,
    reliability; :func:`removal_bench.reporting.standings.standing_document`)."""
    from removal_bench.reporting.standings import standing_document

    out = {}
    for dataset, rows in sorted(by_dataset.items()):
        method_summaries = summaries.methods_of(rows, max_leakage)  # also sets each row's ``selected`` mark
        ranked, rank = [], 0
        for summary in method_summaries:
            if math.isfinite(summary.hypervolume):
                rank += 1
                ranked.append(method_document(rank, summary))
            else:
                ranked.append(method_document(None, summary))
        out[dataset] = {"methods": ranked, "configurations": [row_document(row) for row in rows]}
        if found is not None:
            out[dataset]["standing"] = standing_document(found[dataset])
    return out


def report_document(by_dataset: dict[str, list[summaries.Row]], max_leakage: float | None = None, found: dict | None = None,
                    **fields: Any) -> dict[str, Any]:
    """The whole document: ``fields`` (command, experiment(s), tracking URI, files written, ...) then ``datasets``
    (with each dataset's ``standing`` when ``found`` is given)."""
    return {**fields, "max_leakage": max_leakage, "datasets": datasets_document(by_dataset, max_leakage, found)}


def print_json(document: dict[str, Any], stream: TextIO) -> None:
    json.dump(document, stream, indent=1, allow_nan=False, default=str)
    stream.write("\n")
    stream.flush()
