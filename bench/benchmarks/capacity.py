"""The capacity check on a committed section: does a wider MLP attacker read more of ``s`` than the protocol's?

    python -m removal_bench.benchmarks capacity --from results/curves/trials.jsonl.gz \\
        --datasets synthetic,colored_digits,adult,compas,german --data-root ../shared/data \\
        --tracking-uri sqlite:///mlflow-capacity.db --output results/capacity/TABLE.md

The leaderboard's attacker table shows the capacity check (docs/PROTOCOL.md, "Is the attacker strong enough?")
where the selected runs hold embeddings or a model; the committed trial tables hold neither (their trials ran
without ``--save-embeddings``, some on another CPU). So, per section of the tables (``--datasets``; one dataset at
several settings, ``biased_mnist:rho=0.99,biased_mnist:rho=0.997``, is a section each, as on the leaderboard):

1. each method's selected configuration (the leaderboard's model selection, no bound on leakage) is run again on
   ``--seeds`` seeds with ``--save-embeddings`` (``bench run --set METHOD.NAME=VALUE ...``, the section's dataset
   options and ``--recipe``) into MLflow experiment ``capacity-<section>``; a method with every seed FINISHED there
   is not run again, so the command resumes;
2. ``bench attack RUN... --attacker mlp_wide`` re-attacks every one of those runs that lacks the figure, from its
   embeddings: the protocol's MLP four times wider with twice its patience;
3. the table gives, per method, the committed selected configuration's normalised leakage, the rerun's, the wide
   MLP's and its gain over the rerun's protocol leakage in balanced accuracy (mean over seeds, its standard
   error and the largest seed's) and the leaderboard's verdict on it (``standings.capacity_verdict``, on the same
   bootstrap interval): **saturated** where the mean gain is at most 0.02, *at the margin* where it is above it but
   its 95% interval reaches it, else **not saturated**.

The gain is measured on the rerun's own embeddings, both attackers on the same ``z``: a rerun on another CPU is
another draw of the same configuration (training differs across CPUs by about one seed's spread), which the
capacity question does not depend on; the committed column is there to show the rerun is such a draw. A rerun
whose recipe differs from the committed section's is named in the table.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from removal_bench.reporting import statistics as bootstrap
from removal_bench.reporting.standings import CAPACITY_MARGIN as MARGIN  # the leaderboard's margin
from removal_bench.reporting.standings import capacity_verdict


def sections(paths: list[str], datasets: list[str] | None, methods: list[str] | None = None) -> dict[str, list]:
    """Section -> the selected configuration (a summaries.Row) of each method (of ``methods``, default all), from
    the trial tables."""
    from removal_bench.reporting import export, summaries
    from removal_bench.reporting.leaderboard import only_datasets, split_sections

    frame, parents = export.read_frames(export.read_lines(paths))
    if datasets:
        frame, parents = only_datasets(frame, parents, datasets)
        frame = split_sections(frame, datasets, every=True)  # one setting asked for is named by it too
    frame, parents, _ = export.merge_runs(frame, parents)
    return {section: [s.selected for s in summaries.methods_of(rows)
                      if s.selected is not None and (not methods or s.method in methods)]
            for section, rows in sorted(summaries.summarise(frame).items())}


def experiment_of(section: str) -> str:
    from removal_bench.reporting.publish import file_stem

    return f"capacity-{file_stem(section)}"


def dataset_spec(section: str, row) -> str:
    """The dataset with the committed trials' options (the data seed included: it is an option like the rest)."""
    from removal_bench.reporting.leaderboard import base_dataset

    options = sorted((key[len("data."):], value) for key, value in row.setting.items() if key.startswith("data."))
    return ":".join([base_dataset(section), *(f"{key}={value}" for key, value in options)])


def run_words(arguments: argparse.Namespace, section: str, rows: list) -> list[str]:
    words = ["run", "--methods", ",".join(row.method for row in rows), "--datasets", dataset_spec(section, rows[0]),
             "--seeds", str(arguments.seeds), "--save-embeddings", "--executor", "serial",
             "--experiment", experiment_of(section), "--tracking-uri", arguments.tracking_uri, "--quiet",
             "--results-dir", str(Path(arguments.scratch) / experiment_of(section))]
    for row in rows:
        words += [item for name, value in sorted(row.hparams.items()) for item in ("--set", f"{row.method}.{name}={value}")]
    if arguments.recipe:
        words += ["--recipe", arguments.recipe]
    if arguments.data_root:
        words += ["--data-root", arguments.data_root]
    return words


def store_rows(arguments: argparse.Namespace, section: str) -> dict[str, object]:
    """Method -> its row in the section's capacity experiment (one configuration a method); {} if none."""
    from mlflow import MlflowClient

    from removal_bench.reporting import summaries
    from removal_bench.running.tracking import load_runs

    if MlflowClient(arguments.tracking_uri).get_experiment_by_name(experiment_of(section)) is None:
        return {}
    frame = load_runs(arguments.tracking_uri, [experiment_of(section)])
    if frame.empty:
        return {}
    return {row.method: row for rows in summaries.summarise(frame).values() for row in rows}


def run_ids(arguments: argparse.Namespace, section: str) -> list[tuple[str, str, bool]]:
    """(run id, method, has the wide MLP's figure) of the newest FINISHED run of each (method, seed)."""
    from removal_bench.reporting import summaries
    from removal_bench.running.tracking import load_runs

    frame = load_runs(arguments.tracking_uri, [experiment_of(section)])
    frame = summaries.deduplicate(frame)
    frame = frame[frame["status"] == "FINISHED"]
    column = f"metrics.{summaries.CAPACITY_METRIC}"
    done = frame[column].notna() if column in frame.columns else frame["run_id"].isna()
    return list(zip(frame["run_id"], frame["tags.bench.method"], done))


def measure(arguments: argparse.Namespace, found: dict[str, list]) -> None:
    from removal_bench.commands.cli import main as bench

    for section, rows in found.items():
        have = store_rows(arguments, section)
        todo = [row for row in rows if row.method not in have or have[row.method].finished < arguments.seeds]
        if todo:
            words = run_words(arguments, section, todo)
            print("bench " + " ".join(words), flush=True)
            if bench(words) not in (0, None):
                raise SystemExit(f"the run above ended with a failure: {section}")
        bare = [run_id for run_id, _, done in run_ids(arguments, section) if not done]
        if bare:
            words = ["attack", *bare, "--attacker", "mlp_wide", "--tracking-uri", arguments.tracking_uri]
            words += ["--data-root", arguments.data_root] if arguments.data_root else []
            print(f"bench attack <{len(bare)} runs of {experiment_of(section)}> --attacker mlp_wide", flush=True)
            import contextlib
            import io

            import warnings

            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the wide MLP's batch clipped on a small probe split
                if bench(words) not in (0, None):
                    raise SystemExit(f"the attack above ended with a failure: {section}")


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) / math.sqrt(len(values)):.3f}"


def report(arguments: argparse.Namespace, found: dict[str, list]) -> str:
    from removal_bench.reporting.summaries import SETTING_RECIPE

    lines = ["Per section and method: the committed selected configuration's normalised test leakage (mean ± "
             "standard error over its seeds), the rerun's (the protocol's attackers), the wide MLP's on the same "
             "embeddings, and the wide MLP's gain over the rerun's protocol leakage in balanced accuracy (mean ± "
             f"standard error; max: the largest seed's); **saturated** where the mean gain is at most {MARGIN:g}, "
             "*at the margin* where it is above but its 95% bootstrap interval reaches it (as in the leaderboard's "
             "attacker table), else **not saturated**.", ""]
    verdicts = []
    for section, rows in found.items():
        have = store_rows(arguments, section)
        lines += [f"## {section}", "", "| method | selected | committed leak norm | rerun leak norm | wide MLP leak norm "
                  "| gain (balanced acc.) | max | seeds | verdict |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        notes = []
        for row in rows:
            mine = have.get(row.method)
            committed = list(row.per_seed.get("leakage_norm", {}).values())
            if mine is None:
                lines.append(f"| {row.method} | {row.label} | {_cell(committed)} | - | - | - | - | 0 | not run |")
                continue
            gains = list(mine.per_seed.get("capacity_gain", {}).values())
            verdict = capacity_verdict(bootstrap.mean_interval(
                gains, bootstrap.generator(section, row.method, "capacity_gain")))  # the leaderboard's draw
            verdicts.append((section, row.method, verdict, gains))
            verdict = {"saturated": "saturated", "at the margin": "*at the margin*"}.get(verdict, f"**{verdict}**")
            lines.append(f"| {row.method} | {row.label} | {_cell(committed)} | "
                         f"{_cell(list(mine.per_seed.get('leakage_norm', {}).values()))} | "
                         f"{_cell(list(mine.per_seed.get('leak_wide_norm', {}).values()))} | {_cell(gains)} | "
                         f"{max(gains):+.3f} | {len(gains)} | {verdict} |" if gains else
                         f"| {row.method} | {row.label} | {_cell(committed)} | - | - | - | - | 0 | not attacked |")
            differ = [f"{key} {mine.setting.get(key)} (committed {row.setting.get(key)})" for key in SETTING_RECIPE
                      if key in row.setting and mine.setting.get(key) != row.setting.get(key)]
            if differ:
                notes.append(f"{row.method}: the rerun's recipe differs: {', '.join(differ)}")
        lines += [""] + ([f"*{'; '.join(notes)}.*", ""] if notes else [])
    unsaturated = [f"{section} {method}" for section, method, verdict, _ in verdicts if verdict == "not saturated"]
    margin = [f"{section} {method}" for section, method, verdict, _ in verdicts if verdict == "at the margin"]
    measured = [gains for *_, gains in verdicts if gains]
    largest = max((statistics.fmean(g) for g in measured), default=math.nan)
    lines.insert(0, f"Measured {len(measured)} selected configuration{'' if len(measured) == 1 else 's'}; largest mean gain {largest:+.3f}; not saturated: "
                 f"{', '.join(unsaturated) or 'none'}; at the margin: {', '.join(margin) or 'none'}.\n")
    return "\n".join(lines)


def execute(arguments: argparse.Namespace) -> None:
    datasets = [d for d in (arguments.datasets or "").split(",") if d] or None
    methods = [m for m in (arguments.methods or "").split(",") if m] or None
    found = sections(arguments.from_files, datasets, methods)
    if not arguments.report_only:
        measure(arguments, found)
    text = "# The capacity check on committed sections\n\n" + report(arguments, found)
    if arguments.output:
        path = Path(arguments.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)
    print(text)


def add_capacity_commands(commands) -> None:
    parser = commands.add_parser("capacity", help="the capacity check on committed sections: each method's selected "
                                 "configuration run again with embeddings, attacked by the wide MLP")
    parser.add_argument("--from", dest="from_files", action="append", required=True, metavar="FILE",
                        help="trial table(s) (bench export) whose sections to check; repeatable")
    parser.add_argument("--datasets", help="sections, as bench leaderboard --datasets (default: every dataset)")
    parser.add_argument("--methods", help="only these methods' selected configurations, comma-separated (default: all)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of each rerun (default 3)")
    parser.add_argument("--recipe", help="the reruns' --recipe (the section's own, e.g. cpu-converged)")
    parser.add_argument("--data-root")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow-capacity.db")
    parser.add_argument("--scratch", default="/tmp/capacity-reports", help="where each rerun's own report goes")
    parser.add_argument("--report-only", action="store_true", help="read the store, run nothing")
    parser.add_argument("--output", help="write the table to this file (Markdown)")
    parser.set_defaults(handler=execute)
