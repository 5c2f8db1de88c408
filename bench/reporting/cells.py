"""How one figure is written in a table cell (shared by the tables and the standings)."""

from __future__ import annotations

import math
import time

from removal_bench.reporting.summaries import Row


def _cell(stat: tuple[float, float] | None, pm: str = "±") -> str:
    if stat is None or not math.isfinite(stat[0]):
        return "-"
    mean, error = stat
    return f"{mean:.3f}" if not math.isfinite(error) else f"{mean:.3f} {pm} {error:.3f}"


def seeds_cell(row: Row) -> str:
    return f"{row.finished}/{len(row.expected) or row.trials}"


def _number(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _date(milliseconds: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(milliseconds / 1000)) if math.isfinite(milliseconds) else "-"
