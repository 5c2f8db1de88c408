"""Write: the per-dataset result files (Markdown, CSV, LaTeX, the Pareto plot) and the terminal report."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, TextIO

from removal_bench.core.disk import DiskFull, write_atomic
from removal_bench.reporting import standings, summaries
from removal_bench.reporting.documents import print_json, report_document
from removal_bench.reporting.files import write_text
from removal_bench.reporting.plots import front_plot, head_png
from removal_bench.reporting.summaries import Row
from removal_bench.running.tracking import log_report
from removal_bench.reporting.tables import csv_text, explain, hypervolume_notes, latex_text, markdown_text, methods_table, table

def plot(rows: list[Row], path: Path, title: str, legend_notes: dict[str, str] | None = None) -> None:
    """The dataset's trade-off plot (:func:`bench.plots.front_plot`): fronts, seed error bars, the floor."""
    front_plot(rows, path, title, legend_notes)


def write_results(
    by_dataset: dict[str, list[Row]],
    folder: Path,
    title: str,
    formats: Iterable[str] = ("markdown", "csv"),
    max_leakage: float | None = None,
    found: dict | None = None,
) -> list[Path]:
    """Per dataset under ``folder``: ``NAME.md``, ``NAME.csv``, ``NAME.tex`` (as ``formats`` ask) and
    the Pareto plot ``NAME.png`` (a section ``biased_mnist:rho=0.99`` as ``biased_mnist-rho=0.99``); returns the
    paths written. ``found``: the standings of :func:`bench.standings.of_datasets` when the caller has them already."""
    formats = list(formats)
    written = []
    found = found if found is not None else standings.of_datasets(by_dataset, max_leakage)
    for dataset, rows in sorted(by_dataset.items()):
        standing = found[dataset]
        summaries = [m.summary for m in standing.methods]
        stem = file_stem(dataset)
        texts = {
            "markdown": (folder / f"{stem}.md",
                         lambda: markdown_text(rows, summaries, f"{title}: {dataset}", max_leakage, standing)),
            "csv": (folder / f"{stem}.csv", lambda: csv_text(rows, summaries)),
            "latex": (folder / f"{stem}.tex", lambda: latex_text(rows, summaries, f"{title}: {dataset}")),
        }
        for name in formats:
            path, render = texts[name]
            write_text(path, render(), f"the {name} results table")
            written.append(path)
        plot(rows, folder / f"{stem}.png", f"{title}: {dataset}", hypervolume_notes(standing))
        written.append(folder / f"{stem}.png")
    return written


def print_report(by_dataset: dict[str, list[Row]], stream, max_leakage: float | None = None, found: dict | None = None) -> None:
    """Each dataset's configuration table, methods table, ranking with intervals and budgets, then the legend."""

    found = found if found is not None else standings.of_datasets(by_dataset, max_leakage)
    replicates = standings.statistics.REPLICATES
    for dataset, rows in sorted(by_dataset.items()):
        standing = found[dataset]
        replicates = standing.replicates
        print(f"\n{dataset}", file=stream)
        print(table(rows), file=stream)
        print(methods_table([m.summary for m in standing.methods]), file=stream)
        print(standings.reliability_text(standing).replace("**", ""), file=stream)
        print(standings.ranking_table(standing, "simple_outline"), file=stream)
        print(standings.budget_table(standing, "simple_outline"), file=stream)
    refined = any(r.refined for rows in by_dataset.values() for r in rows)
    print("\n" + explain(max_leakage, refined) + " " + standings.explain(replicates), file=stream)


def head_images(by_dataset: dict[str, list[Row]]) -> dict[str, bytes]:
    """The leaderboard's head-versus-attacker pictures (PNG bytes), per dataset where some method has a head."""
    images = {dataset: head_png(rows, f"{dataset}: own head vs fresh attackers")
              for dataset, rows in sorted(by_dataset.items())}
    return {dataset: image for dataset, image in images.items() if image is not None}


def write_head_plots(images: dict[str, bytes], folder: Path) -> dict[str, Path]:
    """Each of :func:`head_images` as ``folder/DATASET-heads.png``."""
    written = {}
    for dataset, image in images.items():
        written[dataset] = write_atomic(folder / f"{file_stem(dataset)}-heads.png", image, "the head-versus-attacker plot")
    return written


def file_stem(section: str) -> str:
    """A file name for a leaderboard section: ``biased_mnist-rho=0.99`` for ``biased_mnist:rho=0.99`` (no colon,
    which some file systems refuse)."""
    return section.replace(":", "-")


def write_plots(by_dataset: dict[str, list[Row]], folder: Path, max_leakage: float | None = None,
                found: dict | None = None) -> dict[str, Path]:
    """The leaderboard's plots, one PNG per dataset under ``folder``."""
    found = found if found is not None else standings.of_datasets(by_dataset, max_leakage)
    written = {}
    for dataset, rows in sorted(by_dataset.items()):
        written[dataset] = folder / f"{file_stem(dataset)}.png"
        plot(rows, written[dataset], dataset, hypervolume_notes(found[dataset]))
    return written


def publish_report(
    frame, request, tracking_uri: str, stream: TextIO,
    formats: tuple[str, ...] = ("markdown", "csv"), max_leakage: float | None = None, parent_id: str | None = None,
) -> None:
    """Print the tables of ``frame`` (runs read back from MLflow) and write them under the results folder.

    ``request``: the run's or sweep's request (seeds, quiet, json_output, experiment, results folder)."""
    frame = summaries.split_settings(frame)  # a dataset run at several settings: a section each
    by_dataset = summaries.summarise(frame, expected_seeds=[str(s) for s in range(request.seeds)])
    found = standings.of_datasets(by_dataset, max_leakage)  # once, for the printed tables, the files and the JSON
    if not (request.quiet or request.json_output):
        print_report(by_dataset, stream, max_leakage, found)
    from removal_bench.running.runner import results_folder  # here: runner imports torch, bench report needs none

    results_dir = results_folder(request)
    try:
        written = write_results(by_dataset, results_dir, request.experiment, formats, max_leakage, found)
        if parent_id:  # the MLflow UI shows the tables and plots on the invocation's run
            log_report(tracking_uri, parent_id, written)
    except DiskFull as error:  # the trials are safe in MLflow: say how to get the tables once there is room
        raise error.with_hint(
            f"the trials are in MLflow; free space, then bench report --experiment {request.experiment} "
            f"--tracking-uri {tracking_uri} --results-dir {results_dir} rebuilds the tables") from None
    if request.json_output:
        print_json(report_document(
            by_dataset, max_leakage, found, experiment=request.experiment, tracking_uri=tracking_uri, parent_run_id=parent_id,
            results_dir=str(results_dir), files=[str(path) for path in written],
        ), stream)
    elif not request.quiet:
        print(f"\nwrote {len(written)} files to {results_dir}; runs: mlflow ui --backend-store-uri {tracking_uri}", file=stream)
