"""The per-dataset trade-off plot: each method's front, seed error bars, the floor explained.

Task accuracy (test) against normalised leakage (0 = the attacker at chance,
1 = ``s`` fully recovered), so that datasets with different numbers of private
classes read the same way. Only fronts are labelled, through a legend outside
the axes (no text on the points, so nothing overlaps); a caption under the
axes says what the lines, bars and the dotted floor are.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from removal_bench.measuring.pareto import pareto_mask

MARKERS = "osD^vP*Xhp<>"
REFINED_LABEL = "refined strength (dashed ring)"
CAPTION = (
    "Lines: each method's front (its configurations that no other of its configurations beats on both axes); "
    "points: mean over seeds, bars: ± 1 standard error over seeds; hollow points: the method's dominated "
    "configurations. Dotted line: the floor, the leakage of an attacker that sees only vanilla's predicted task "
    "probabilities: where y and s are correlated, no accurate model goes far left of it. Dashed: the accuracy of always predicting the majority class."
)


def _png(figure) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _publish(figure, path: Path, what: str = "the trade-off plot") -> None:
    """Write the figure to ``path`` atomically (a full disk: one line naming the plot, no half-written PNG)."""
    from removal_bench.core.disk import write_atomic

    write_atomic(path, _png(figure), what)


def front_plot(rows, path: Path, title: str, legend_notes: dict[str, str] | None = None) -> None:
    """Write the plot of one dataset's configuration rows to ``path`` (PNG).

    ``legend_notes`` (method -> text, e.g. its hypervolume interval) is appended
    to the method's legend entry.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({r.method for r in rows}, key=lambda m: (m != "vanilla", m))
    colours = plt.get_cmap("tab10").colors
    figure, axes = plt.subplots(figsize=(7.5, 4.6), dpi=130)
    from removal_bench.reporting.summaries import reference_accuracy

    reference = reference_accuracy(rows)
    for index, method in enumerate(methods):
        colour, marker = colours[index % len(colours)], MARKERS[index % len(MARKERS)]
        mine = [r for r in rows if r.method == method
                and math.isfinite(r.mean("accuracy")) and math.isfinite(r.mean("leakage_norm"))]
        if not mine:
            continue
        optimal = pareto_mask([r.mean("accuracy") for r in mine], [r.mean("leakage_norm") for r in mine])
        front = sorted((r for r, keep in zip(mine, optimal) if keep), key=lambda r: r.mean("leakage_norm"))
        rest = [r for r, keep in zip(mine, optimal) if not keep]
        if rest:
            axes.scatter([r.mean("leakage_norm") for r in rest], [r.mean("accuracy") for r in rest], marker=marker,
                         facecolors="none", edgecolors=[colour], alpha=0.45, s=18, linewidths=0.8)
        errors = [[r.stats.get(m, (math.nan, math.nan))[1] for r in front] for m in ("leakage_norm", "accuracy")]
        errors = [[e if math.isfinite(e) else 0.0 for e in column] for column in errors]
        label = method + (f"  {legend_notes[method]}" if legend_notes and method in legend_notes else "")
        axes.errorbar([r.mean("leakage_norm") for r in front], [r.mean("accuracy") for r in front],
                      xerr=errors[0], yerr=errors[1], color=colour, marker=marker, markersize=5, capsize=2,
                      linewidth=1.4, elinewidth=0.8, label=label, drawstyle="steps-post" if len(front) > 1 else "default")
    refined = [r for r in rows if getattr(r, "refined", 0)
               and math.isfinite(r.mean("accuracy")) and math.isfinite(r.mean("leakage_norm"))]
    if refined:  # a ring around each strength that bench sweep --refine added (docs/PROTOCOL.md, "Refined curves")
        axes.scatter([r.mean("leakage_norm") for r in refined], [r.mean("accuracy") for r in refined], marker="o",
                     s=95, facecolors="none", edgecolors="black", linewidths=0.8, linestyle=(0, (2, 1.5)),
                     label=REFINED_LABEL, zorder=3)
    floors = [sum(values) / len(values) for r in rows if r.method == "vanilla"
              for values in [list(r.per_seed.get("floor_leakage_norm", {}).values())] if values]
    if floors:
        axes.axvline(floors[0], color="grey", linestyle=":", linewidth=1.2, label="floor (vanilla)")
    if math.isfinite(reference):
        axes.axhline(reference, color="grey", linestyle="--", linewidth=0.8, label="majority-class accuracy")
    axes.set_xlim(-0.03, 1.03)
    axes.set_xlabel("normalised leakage of the best fresh attacker (0: chance, 1: s recovered; lower is better)")
    axes.set_ylabel("task accuracy (test)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    if methods:
        axes.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    figure.text(0.01, -0.01, "\n".join(textwrap.wrap(CAPTION, 150)), fontsize=6.5, va="top", ha="left")
    _publish(figure, path)


HEAD_CAPTION = (
    "Per in-training method, against its strength (log scale): its own head's or adversary's test accuracy at "
    "predicting s (solid) and the fresh attackers' leakage on the frozen bottleneck (dashed), both normalised "
    "(0 = chance, 1 = s fully recovered); bars: ± 1 standard error over seeds. Where the solid line falls to 0 "
    "while the dashed one stays up, the method fools its own head and the attribute is still there for a fresh "
    "attacker."
)


def _normalised(accuracy: float, classes: float) -> float:
    if not (math.isfinite(accuracy) and math.isfinite(classes)) or classes < 2:
        return math.nan
    return (accuracy - 1 / classes) / (1 - 1 / classes)


def strength_axis(method: str, rows) -> str | None:
    """The hyperparameter a method's curve walks: its declared strength (the first, for tied ones), else the one
    with most distinct values among its rows (a plugin not installed here)."""
    from removal_bench.methods import REGISTRY

    declared = getattr(REGISTRY.get(method), "strength", {}) or {}
    for name in declared:
        return name
    counts = {}
    for row in rows:
        for name, value in row.hparams.items():
            counts.setdefault(name, set()).add(value)
    varied = [(len(values), name) for name, values in counts.items() if len(values) > 1]
    return max(varied)[1] if varied else None


def head_series(rows) -> dict[str, list[tuple[float, tuple[float, float], tuple[float, float]]]]:
    """Per method with a head: (strength, (head norm, se), (leak norm, se)) by strength; methods without a
    head (vanilla, LEACE, INLP) or without a strength are left out."""
    series = {}
    for method in sorted({r.method for r in rows}):
        own = [r for r in rows if r.method == method and math.isfinite(r.mean("head_acc"))]
        axis = strength_axis(method, own) if own else None
        if axis is None:
            continue
        points = []
        for row in own:
            try:
                x = float(row.hparams[axis])
            except (KeyError, ValueError):
                continue
            classes = row.mean("num_private")
            head, head_error = row.stats.get("head_acc", (math.nan, math.nan))
            scale = 1 / (1 - 1 / classes) if math.isfinite(classes) and classes >= 2 else math.nan
            leak = row.stats.get("leakage_norm", (math.nan, math.nan))
            points.append((x, (_normalised(head, classes), head_error * scale), leak))
        if len(points) >= 2 and all(p[0] > 0 for p in points):
            series[method] = sorted(points)
    return series


def refined_strengths(method: str, rows) -> set[float]:
    """The strengths (on :func:`strength_axis`) of ``method``'s rows that a refinement added."""
    axis = strength_axis(method, [r for r in rows if r.method == method])
    out = set()
    for row in rows:
        if row.method == method and getattr(row, "refined", 0) and axis in row.hparams:
            try:
                out.add(float(row.hparams[axis]))
            except ValueError:
                pass
    return out


def head_png(rows, title: str) -> bytes | None:
    """The head-versus-attacker picture of one dataset as PNG bytes; None when no method there has a head and a
    strength curve. ``bench leaderboard`` renders it once and gives it to the Markdown (a file) and the HTML page
    (embedded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = head_series(rows)
    if not series:
        return None
    columns = min(3, len(series))
    lines = math.ceil(len(series) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(3.4 * columns, 2.6 * lines + 0.9), dpi=110,
                                squeeze=False)
    for index, (method, points) in enumerate(series.items()):
        axis = axes[index // columns][index % columns]
        xs = [p[0] for p in points]
        for which, style, label in ((1, "-", "own head"), (2, "--", "fresh attackers")):
            means = [p[which][0] for p in points]
            errors = [p[which][1] if math.isfinite(p[which][1]) else 0.0 for p in points]
            axis.errorbar(xs, means, yerr=errors, linestyle=style, marker="o", markersize=3, capsize=2, label=label,
                          color="tab:red" if which == 1 else "tab:blue")
        added = refined_strengths(method, rows)
        marked = [(p[0], p[which][0]) for p in points for which in (1, 2) if p[0] in added and math.isfinite(p[which][0])]
        if marked:
            axis.scatter([x for x, _ in marked], [y for _, y in marked], marker="o", s=40, facecolors="none",
                         edgecolors="black", linewidths=0.7, linestyle=(0, (2, 1.5)),
                         label=REFINED_LABEL if index == 0 else None, zorder=3)
        axis.set_xscale("log")
        lowest = min((p[which][0] for p in points for which in (1, 2) if math.isfinite(p[which][0])), default=0.0)
        axis.set_ylim(min(-0.1, lowest - 0.1), 1.05)  # a head fooled past chance reads below 0
        axis.axhline(0, color="grey", linewidth=0.6)
        axis.set_title(method, fontsize=9)
        axis.set_xlabel(strength_axis(method, []) or "strength", fontsize=8)
        axis.tick_params(labelsize=7)
    for index in range(len(series), lines * columns):
        axes[index // columns][index % columns].set_visible(False)
    axes[0][0].set_ylabel("normalised accuracy at s", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="best")
    figure.suptitle(title, fontsize=10)
    figure.text(0.01, -0.02, "\n".join(textwrap.wrap(HEAD_CAPTION, 150)), fontsize=6.5, va="top")
    figure.tight_layout()
    return _png(figure)
