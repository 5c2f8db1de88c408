"""Pareto sets and hypervolume in the (task accuracy, leakage) plane: pure functions of arrays.

A configuration is Pareto-optimal when no other has both higher (or equal)
mean task accuracy and lower (or equal) mean leakage, one of them strictly.
Hypervolume (PROTOCOL.md) is measured in the (task accuracy, 1 - leakage_norm)
plane, both to be maximised, from the reference point (no-information accuracy, 0): the caller's
``chance_accuracy``, which the reports take as the majority class's test rate (removal_bench.reporting.summaries.reference_accuracy).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pareto_mask(accuracy: Sequence[float], leakage: Sequence[float]) -> list[bool]:
    """True where the point is not dominated (maximise accuracy, minimise leakage).

    NaN points are never optimal and never dominate.
    """
    acc = np.asarray(accuracy, dtype=float)
    leak = np.asarray(leakage, dtype=float)
    valid = np.isfinite(acc) & np.isfinite(leak)
    mask = []
    for i in range(len(acc)):
        if not valid[i]:
            mask.append(False)
            continue
        better_or_equal = valid & (acc >= acc[i]) & (leak <= leak[i])
        strictly = (acc > acc[i]) | (leak < leak[i])
        mask.append(not bool(np.any(better_or_equal & strictly)))
    return mask


def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (both coordinates maximised) above ``reference``.

    Points at or below the reference in either coordinate add nothing.
    """
    ref_x, ref_y = reference
    inside = sorted(((x, y) for x, y in points if x > ref_x and y > ref_y), key=lambda p: -p[0])
    area, best_y = 0.0, ref_y
    for x, y in inside:
        if y > best_y:
            area += (x - ref_x) * (y - best_y)
            best_y = y
    return area


def front_hypervolume(
    accuracy: Sequence[float], leakage_norm: Sequence[float], chance_accuracy: float
) -> float:
    """PROTOCOL.md's hypervolume of a set of configurations.

    Each configuration is the point (task accuracy, 1 - leakage_norm), both
    maximised; the reference point is (chance task accuracy, 0). Dominated
    points add nothing, so passing every configuration of a method gives the
    hypervolume of its front. NaN points are ignored.
    """
    points = [
        (float(a), 1.0 - float(l))
        for a, l in zip(accuracy, leakage_norm)
        if np.isfinite(a) and np.isfinite(l)
    ]
    return hypervolume(points, (float(chance_accuracy), 0.0))


def constrained_best(
    val_accuracy: Sequence[float], val_leakage: Sequence[float], max_leakage: float | None = None
) -> int | None:
    """PROTOCOL.md's model selection: the index with the best validation task accuracy
    among those whose validation leakage is at most ``max_leakage`` (no bound when None).

    Ties go to the lower validation leakage, then to the first index. Points with a
    NaN in either figure are never chosen. None when no point qualifies.
    """
    best, best_key = None, None
    for index, (accuracy, leakage) in enumerate(zip(val_accuracy, val_leakage)):
        if not (np.isfinite(accuracy) and np.isfinite(leakage)):
            continue
        if max_leakage is not None and leakage > max_leakage:
            continue
        key = (accuracy, -leakage)
        if best_key is None or key > best_key:
            best, best_key = index, key
    return best
