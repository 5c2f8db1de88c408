"""`bench report` and `bench leaderboard`: tables, plots and the leaderboard from what MLflow holds.

Both read the trial runs back with ``mlflow.search_runs`` (never from a
driver's memory), count each trial once (:func:`removal_bench.running.tracking.deduplicate`) and
name every seed that is missing.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TextIO

from removal_bench.reporting import files
from removal_bench.reporting import publish
from removal_bench.reporting import summaries
from removal_bench.reporting import tables
from removal_bench.core.errors import UserError
from removal_bench.core.params import same_value


def parse_formats(text: str | None) -> tuple[str, ...]:
    """``markdown,latex`` -> ("markdown", "latex"); unknown names are a UserError."""
    if not text:
        return ("markdown", "csv")
    names = [name.strip().lower() for name in text.split(",")]
    aliases = {"md": "markdown", "tex": "latex"}
    names = [aliases.get(name, name) for name in names]
    unknown = [name for name in names if name not in tables.FORMATS]
    if unknown or not names:
        raise UserError(f"unknown --format {unknown[0] if unknown else text!r} (valid: {', '.join(tables.FORMATS)})")
    return tuple(dict.fromkeys(names))


def declared_seeds(tracking_uri: str, experiments: list[str]) -> dict[str, list[str]]:
    """Per dataset, the seeds 0..N-1 that the invocations (parent runs) running it asked for."""
    from removal_bench.running.tracking import load_runs

    return declared_seeds_of(load_runs(tracking_uri, experiments, kind="invocation"))


def declared_seeds_of(parents) -> dict[str, list[str]]:
    """:func:`declared_seeds` from a frame of invocation runs (MLflow's, or a trial table's)."""
    seeds: dict[str, set[str]] = {}
    if parents.empty or "params.datasets" not in parents.columns or "params.seeds" not in parents.columns:
        return {}
    for datasets, count in zip(parents["params.datasets"], parents["params.seeds"]):
        try:
            number = int(count)
        except (TypeError, ValueError):
            continue
        for dataset in str(datasets).split(","):
            seeds.setdefault(dataset, set()).update(str(s) for s in range(number))
    return {dataset: sorted(values) for dataset, values in seeds.items()}


def of_sections(declared: dict[str, list[str]], frame) -> dict[str, list[str]]:
    """:func:`declared_seeds_of` with each section of ``frame`` (``biased_mnist:rho=0.99``) not declared by its own
    name given its dataset's seeds. A trial without a dataset (a run its driver opened and never tagged) is no section."""
    sections = {section for section in frame["tags.bench.dataset"] if isinstance(section, str)}
    return {**declared, **{section: declared[base_dataset(section)] for section in sections
                           if section not in declared and base_dataset(section) in declared}}


def check_max_leakage(value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise UserError(f"--max-leakage is a balanced accuracy between 0 and 1, got {value}")


def execute_report(
    experiment: str,
    tracking_uri: str | None = None,
    max_leakage: float | None = None,
    formats: tuple[str, ...] = ("markdown", "csv"),
    results_dir: str | None = None,
    stream: TextIO | None = None,
    quiet: bool = False,
    json_output: bool = False,
    from_files: list[str] | None = None,
) -> int:
    """``bench report``: from MLflow's runs of ``experiment``, or (``from_files``) from trial tables (``bench export``)."""
    from removal_bench.running import preflight
    from removal_bench.running.tracking import load_runs, require_experiment

    stream = stream or sys.stdout
    check_max_leakage(max_leakage)
    if not experiment or not experiment.strip():
        raise UserError("--experiment must not be empty")
    uri, parents = None, None
    if from_files:  # a trial table: its experiment, its invocations' declared seeds, no MLflow
        from removal_bench.reporting import export

        records = export.read_lines(from_files)
        experiment = experiment if experiment != "default" else export.experiments_of(records)[0]
        folder = preflight.writable_folder(Path(results_dir or Path("results") / experiment), "--results-dir").resolve()
        frame, parents = export.read_frames(records)
        frame, parents, _ = export.merge_runs(frame, parents)
    else:
        folder = preflight.writable_folder(Path(results_dir or Path("results") / experiment), "--results-dir").resolve()
        uri = preflight.tracking_uri(tracking_uri, write=False)
        require_experiment(uri, experiment)
        frame = load_runs(uri, experiment)
    if frame.empty:
        raise UserError(f"experiment {experiment!r} at {uri} holds no trial runs")
    frame = summaries.split_settings(frame)  # a dataset run at several settings: a section each
    seeds = declared_seeds_of(parents) if parents is not None else declared_seeds(uri, [experiment])
    by_dataset = summaries.summarise(frame, expected_seeds=of_sections(seeds, frame))
    from removal_bench.reporting.standings import of_datasets

    found = of_datasets(by_dataset, max_leakage)  # once, for the printed tables, the files and the JSON
    if not (quiet or json_output):
        publish.print_report(by_dataset, stream, max_leakage, found)
    written = publish.write_results(by_dataset, folder, experiment, formats, max_leakage, found)
    if json_output:
        from removal_bench.reporting.documents import print_json, report_document

        document = report_document(by_dataset, max_leakage, found, experiment=experiment, tracking_uri=uri,
                                   results_dir=str(folder), files=[str(path) for path in written])
        print_json(with_run_ids(document, frame), stream)
    elif not quiet:
        print(f"\nwrote {len(written)} files to {folder}", file=stream)
    return 0


def with_run_ids(document: dict, frame) -> dict:
    """``document`` (:func:`removal_bench.reporting.documents.report_document`) with each configuration's
    ``runs``: seed -> the MLflow run id of the trial counted for it (``bench attack RUN_ID``)."""
    trials = summaries.deduplicate(frame)
    ids: dict[tuple[str, str], dict[str, str]] = {}
    for dataset, key, seed, run_id in zip(trials["tags.bench.dataset"], trials["tags.bench.config_key"],
                                          trials["tags.bench.seed"], trials["run_id"]):
        ids.setdefault((str(dataset), str(key)), {})[str(seed)] = str(run_id)
    for dataset, part in document.get("datasets", {}).items():
        for configuration in part.get("configurations", []):
            runs = ids.get((dataset, configuration["config_key"]), {})
            configuration["runs"] = {seed: runs[seed] for seed in sorted(runs, key=summaries._seed_order)}
    return document


def selected_run_ids(tracking_uri: str, experiment: str, max_leakage: float | None = None,
                     datasets: list[str] | None = None) -> list[tuple[str, str]]:
    """(run id, label) of every seed counted for each method's selected configuration on each dataset of
    ``experiment`` (the model selection of the report and the leaderboard), in dataset, method, seed order.
    ``datasets``: only these sections, as ``bench leaderboard --datasets`` names them (biased_mnist:rho=0.99)."""
    from removal_bench.running.tracking import load_runs

    frame = load_runs(tracking_uri, experiment)
    if frame.empty:
        return []
    if datasets:
        frame, _ = only_datasets(frame, frame.iloc[0:0], datasets)
        frame = split_sections(frame, datasets)
    refuse_mixed_settings(frame)
    trials = summaries.deduplicate(frame)
    ids: dict[tuple[str, str], dict[str, str]] = {}
    for dataset, key, seed, run_id in zip(trials["tags.bench.dataset"], trials["tags.bench.config_key"],
                                          trials["tags.bench.seed"], trials["run_id"]):
        ids.setdefault((str(dataset), str(key)), {})[str(seed)] = str(run_id)
    found = []
    for dataset, rows in sorted(summaries.summarise(frame).items()):
        for summary in summaries.methods_of(rows, max_leakage):
            row = summary.selected
            if row is None:
                continue
            runs = ids.get((dataset, row.config_key), {})
            found += [(runs[seed], row.label) for seed in sorted(runs, key=summaries._seed_order)]
    return found


def bench_experiments(tracking_uri: str) -> list[str]:
    """Active experiments of the store that hold at least one bench trial run."""
    from mlflow import MlflowClient

    from removal_bench.running.tracking import Retrying

    client, call = MlflowClient(tracking_uri), Retrying(tracking_uri)
    names = []
    for found in call(client.search_experiments):
        if call(client.search_runs, [found.experiment_id], "tags.`bench.kind` = 'trial'", max_results=1):
            names.append(found.name)
    return sorted(names)


def _seconds(start, end) -> float:
    begin, finish = summaries._milliseconds(start), summaries._milliseconds(end)
    return (finish - begin) / 1000 if math.isfinite(begin) and math.isfinite(finish) and finish >= begin else math.nan


def _described(parent) -> str:
    """A command line for an invocation from before parents logged theirs: rebuilt from its params."""
    kind = "sweep" if str(parent.get("tags.mlflow.runName", "")).startswith("sweep") else "run"
    text = f"bench {kind} --methods {parent.get('params.methods', '?')} --datasets {parent.get('params.datasets', '?')} " \
           f"--seeds {parent.get('params.seeds', '?')}"
    search = parent.get("params.search")
    return text + (f" (search {search})" if isinstance(search, str) else "") + "  # rebuilt from the run's params"


def provenance(tracking_uri: str | None, experiments: list[str], frame, command: str | list[str] = "",
               parents=None) -> tables.Provenance:
    """Commands, trials, wall time and commits of the runs behind a leaderboard, from MLflow (or from
    ``parents``, the invocation runs of a trial table). ``command``: the command line that wrote it, as text
    or as its words (default: this process's)."""
    from removal_bench.running.tracking import load_runs

    from removal_bench.running.sweep import command_text, portable_command

    trials = summaries.deduplicate(frame)

    command = command_text(command) if isinstance(command, list) else (command or command_text())
    found = tables.Provenance(trials=len(trials), report_command=command)
    found.trial_seconds = sum(s for s in (_seconds(a, b) for a, b in zip(trials["start_time"], trials.get("end_time", [])))
                              if math.isfinite(s)) if "end_time" in trials.columns else math.nan
    commits = trials["tags.bench.git_commit"] if "tags.bench.git_commit" in trials.columns else []
    found.commits = sorted({c for c in commits if isinstance(c, str) and c})
    starts = [summaries._milliseconds(v) for v in trials["start_time"]]
    ends = [summaries._milliseconds(v) for v in trials["end_time"]] if "end_time" in trials.columns else []
    found.first_start = min((s for s in starts if math.isfinite(s)), default=math.nan)
    found.last_end = max((e for e in ends if math.isfinite(e)), default=math.nan)
    found.plugins = plugin_lines(trials)
    if parents is None:
        parents = load_runs(tracking_uri, experiments, kind="invocation")
    if not parents.empty:
        parents = parents.sort_values("start_time")
        found.invocations = len(parents)
        durations = [_seconds(a, b) for a, b in zip(parents["start_time"], parents["end_time"])] \
            if "end_time" in parents.columns else []
        found.wall_seconds = sum(d for d in durations if math.isfinite(d)) if durations else math.nan
        commands = []
        for _, parent in parents.iterrows():
            command = parent.get("params.command")
            commands.append(portable_command(command) if isinstance(command, str) and command else _described(parent))
        found.commands = list(dict.fromkeys(commands))
    return found


def plugin_lines(trials) -> list[str]:
    """One line per plugin (and per version of its source) among ``trials``, from their ``plugin.*`` tags:
    what it is, the package and version, how it was loaded and its source file's SHA-256 (first 12 digits)."""
    lines = set()
    for kind in ("method", "dataset"):
        prefix = f"tags.plugin.{kind}."
        if prefix + "package" not in trials.columns:
            continue
        columns = [f"tags.bench.{kind}", *(prefix + field for field in ("package", "version", "origin", "spec", "source_sha256"))]
        plugin_trials = trials.loc[trials[prefix + "package"].notna()].reindex(columns=columns)  # absent tags: NaN
        for record in plugin_trials.drop_duplicates().itertuples(index=False):
            name, package, version, origin, spec, sha = (v if isinstance(v, str) else "" for v in record)
            lines.add(f"{kind} {name}: {package}{' ' + version if version else ''}, {origin} {spec}"
                      + (f", source SHA-256 {sha[:12]}" if sha else ""))
    return sorted(lines)


def ran_any(parents, names) -> list[bool]:
    """Per invocation run of ``parents``: whether it ran any of these datasets (by the names its params hold,
    as :func:`declared_seeds_of` reads them)."""
    if parents.empty or "params.datasets" not in parents.columns:
        return [True] * len(parents)
    return [bool(set(str(value).split(",")) & set(names)) for value in parents["params.datasets"]]


def ranked_in(path: Path) -> list[str]:
    """The datasets an existing leaderboard file ranks: the Markdown's dataset sections (``## name``), or the
    page's embedded data (:mod:`removal_bench.reporting.html`); [] when it names none."""
    import re

    text = path.read_text(errors="replace")
    if path.suffix.lower() in (".html", ".htm"):
        from removal_bench.reporting.html import datasets_in_page

        return datasets_in_page(text)
    # sections named by a dataset (or one setting of it, biased_mnist:rho=0.99); the others are capitalised
    return re.findall(r"^## ([a-z0-9_]+(?::[A-Za-z0-9_]+=[^\s:]+)*)$", text, re.M)


def refuse_fewer_datasets(paths: dict, ranked: list[str]) -> None:
    """A UserError when a default leaderboard file (results/LEADERBOARD.md, results/leaderboard.html) ranks a
    dataset this one does not: replacing it would drop that dataset's standings. ``--output`` (elsewhere) or
    ``--force`` (replace anyway) says it is meant."""
    from removal_bench.reporting.html import DEFAULT_OUTPUTS

    defaults = {target.resolve() for target in DEFAULT_OUTPUTS.values()}
    for path in paths.values():
        if path not in defaults or not path.is_file():
            continue
        before = ranked_in(path)
        bases = {base_dataset(section) for section in ranked}  # biased_mnist ranked now by setting is not dropped
        dropped = [name for name in before if name not in ranked and (":" in name or name not in bases)]
        if dropped:
            raise UserError(
                f"{path} ranks {len(before)} dataset(s) ({', '.join(before)}); this leaderboard ranks {len(ranked)} "
                f"({', '.join(ranked)}) and would drop {', '.join(dropped)}: write it elsewhere with --output FILE, "
                "or replace it with --force")


def wanted_settings(specs: list[str]) -> dict[str, list[dict[str, str]]]:
    """``--datasets`` specs as dataset name -> the settings asked for (``{}``: every setting), in the order given."""
    from removal_bench.running.names import parse_dataset

    wanted: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        name, options = parse_dataset(spec)
        if options not in wanted.setdefault(name, []):
            wanted[name].append(options)
    return wanted


def base_dataset(section: str) -> str:
    """The dataset of a section: ``biased_mnist`` for ``biased_mnist:rho=0.99``."""
    return section.split(":", 1)[0]


def only_datasets(frame, parents, specs: list[str]):
    """The trials of these datasets (a UserError naming those without any) and the invocations that ran them.

    A spec may carry dataset options, ``biased_mnist:rho=0.997``: then only that dataset's trials run with
    them count, and only the invocations that ran one of those trials (their parent runs)."""
    wanted = wanted_settings(specs)
    present = set(frame["tags.bench.dataset"])
    missing = [name for name in wanted if name not in present]
    if missing:
        raise UserError(f"no trials of dataset(s) {', '.join(missing)} (the runs have: {', '.join(sorted(present))})")
    for name, settings in wanted.items():
        for options in settings:
            if options and not (holds(frame, options) & (frame["tags.bench.dataset"] == name)).any():
                held = sorted({setting_text(row) for _, row in frame[frame["tags.bench.dataset"] == name].iterrows()})
                raise UserError(f"no trials of {name} with {':'.join(f'{k}={v}' for k, v in options.items())} "
                                f"(its trials ran with: {'; '.join(held)})")
    frame = frame[matching(frame, wanted)]
    plain = [name for name, settings in wanted.items() if {} in settings]
    chosen = ran_any(parents, plain) if plain else [False] * len(parents)
    if "tags.mlflow.parentRunId" in frame.columns and "run_id" in parents.columns:
        with_options = frame[frame["tags.bench.dataset"].isin([n for n, s in wanted.items() if {} not in s])]
        ran = set(with_options["tags.mlflow.parentRunId"].dropna())
        chosen = [a or b for a, b in zip(chosen, parents["run_id"].isin(ran))]
    return frame, parents[chosen]


def matching(frame, wanted: dict[str, list[dict[str, str]]]):
    """Per trial of ``frame``: whether its dataset is wanted, at one of the settings asked for (name -> settings,
    :func:`wanted_settings`)."""
    keep = frame["tags.bench.dataset"].isin(wanted)
    for name, settings in wanted.items():
        anyof = frame["tags.bench.dataset"] != frame["tags.bench.dataset"]
        for options in settings:
            anyof = anyof | holds(frame, options)
        keep &= (frame["tags.bench.dataset"] != name) | anyof
    return keep


def holds(frame, options: dict[str, str]):
    """Per trial of ``frame``: whether it ran with every one of these dataset options."""
    held = frame["tags.bench.dataset"] == frame["tags.bench.dataset"]
    for option, value in options.items():
        column = f"params.data.{option}"
        if column not in frame.columns:
            return ~held
        held &= frame[column].map(lambda have, value=value: same_value(have, value))
    return held


def split_sections(frame, specs: list[str], every: bool = False):
    """``frame`` with each setting of a dataset asked for at several (``--datasets biased_mnist:rho=0.99,
    biased_mnist:rho=0.997``) as a section of its own, named by :func:`summaries.section_name`; a UserError when one trial
    falls in two of them (settings that overlap). Datasets asked for once keep their name, unless ``every``: then
    a dataset asked for at one setting is named by it too."""
    for name, settings in wanted_settings(specs).items():
        if len(settings) < 2 and not (every and settings[0]):
            continue
        ours = frame["tags.bench.dataset"] == name
        labels = frame["tags.bench.dataset"].copy()
        taken = ours & False
        for options in settings:
            here = ours & holds(frame, options)
            both = taken & here
            if both.any():
                raise UserError(f"--datasets asks for {name} at settings that overlap: {summaries.section_name(name, options)} "
                                f"and another setting both hold {int(both.sum())} of its trials; give settings that differ")
            labels[here] = summaries.section_name(name, options)
            taken |= here
        frame = frame.assign(**{"tags.bench.dataset": labels})
    return frame


def setting_text(trial) -> str:
    """A trial's dataset options as ``rho=0.997:split=ours`` (the data seed left out: each seed may draw its own)."""
    options = {name[len("params.data."):]: value for name, value in trial.items()
               if name.startswith("params.data.") and name != "params.data.data_seed" and isinstance(value, str)}
    return ":".join(f"{k}={v}" for k, v in sorted(options.items())) or "its defaults"


def attach_capacity(by_dataset: dict[str, list], paths: list[str], datasets: list[str] | None = None) -> None:
    """The capacity check from rerun tables (``bench leaderboard --capacity``): for each configuration ranked whose
    own runs hold no wide-MLP figure, the wide MLP's leakage and its gain over the rerun's own leakage, per seed,
    from the reruns of the same configuration (same section, same label) in these tables, whose trials must have
    run at the section's dataset options and recipe; a UserError names a table that holds none of the sections."""
    from removal_bench.reporting import export

    frame, _ = export.read_frames(export.read_lines(paths))
    if datasets:
        present = set(frame["tags.bench.dataset"])
        wanted = [spec for spec in datasets if spec.split(":", 1)[0] in present]
        if wanted:
            frame = split_sections(frame[matching(frame, wanted_settings(wanted))], wanted)
    reruns = summaries.summarise(frame)
    if not set(reruns) & set(by_dataset):
        raise UserError(f"--capacity: the tables hold {', '.join(sorted(reruns)) or 'no trials'}, none of the sections "
                        f"ranked here ({', '.join(sorted(by_dataset))})")
    for dataset, rows in by_dataset.items():
        theirs = {row.label: row for row in reruns.get(dataset, []) if "capacity_gain" in row.per_seed}
        for row in rows:
            other = theirs.get(row.label)
            if other is None or "capacity_gain" in row.per_seed:
                continue
            differ = [key for key in summaries.SETTING_RECIPE if key in row.setting and other.setting.get(key) != row.setting.get(key)]
            data = {k: v for k, v in row.setting.items() if k.startswith("data.")}
            if differ or any(other.setting.get(k) != v for k, v in data.items()):
                continue  # a rerun at another setting says nothing about this one
            for metric in ("leak_wide", "leak_wide_norm", "capacity_gain"):
                row.per_seed[metric] = dict(other.per_seed.get(metric, {}))
            row.capacity_from = "reruns"


def refuse_mixed_settings(frame) -> None:
    """A UserError when a dataset's trials ran with more than one set of dataset options (Biased-MNIST's quick
    look at rho 0.995 and its converged section at 0.997, say): a section ranks one setting, so mixing them
    would put two datasets' points on one curve. ``--datasets NAME:OPTION=VALUE`` chooses one."""
    if frame.empty:
        return
    for dataset, runs in frame.groupby("tags.bench.dataset"):
        varying = summaries.varying_options(runs)
        if not varying:
            continue
        counts = runs.groupby([runs[c].astype(str) for c in varying]).size()
        settings = []
        for key, count in counts.items():
            values = key if isinstance(key, tuple) else (key,)
            settings.append(":".join(f"{c[len('params.data.'):]}={v}" for c, v in zip(varying, values)) + f" ({count} trials)")
        example = f"{dataset}:" + ":".join(f"{c[len('params.data.'):]}={runs[c].dropna().iloc[-1]}" for c in varying)
        apart = ",".join(f"{dataset}:" + ":".join(f"{c[len('params.data.'):]}={v}" for c, v in
                                                  zip(varying, key if isinstance(key, tuple) else (key,)))
                         for key in counts.index)
        raise UserError(f"{dataset}: its trials ran at {len(settings)} settings ({'; '.join(settings)}), and a section "
                        f"ranks one: choose it with --datasets {example}, or rank each as a section of its own "
                        f"with --datasets {apart}")


FORM_PARAMS = {"params.recipe.bottleneck": "default", "params.recipe.head": "linear"}  # recipe fields: docs/METHODS.md


def refuse_mixed_forms(frame) -> None:
    """A UserError when a dataset's trials ran in more than one model form (``--train bottleneck=bounded``,
    ``head=normalised``: the authors' form beside the common one, docs/METHODS.md): a section ranks one form,
    so that a method's curve and its selected configuration never mix the two. A trial logged before the fields
    existed is in the common form."""
    if frame.empty:
        return
    import pandas as pd

    parts = []
    for column, default in FORM_PARAMS.items():
        held = frame[column].fillna(default).astype(str) if column in frame.columns else pd.Series(default, index=frame.index)
        name = column[len("params.recipe."):]
        parts.append(held.map(lambda value, name=name, default=default: "" if value == default else f"{name}={value}"))
    forms = pd.concat(parts, axis=1).apply(lambda row: ", ".join(p for p in row if p) or "the common form", axis=1)
    for dataset, runs in forms.groupby(frame["tags.bench.dataset"]):
        counts = runs.value_counts()
        if len(counts) > 1:
            found = "; ".join(f"{form} ({count} trials)" for form, count in counts.items())
            raise UserError(f"{dataset}: its trials ran in {len(counts)} model forms ({found}), and a section ranks one: "
                            "rank each from an experiment or table of its own (docs/METHODS.md)")


def execute_leaderboard(
    experiments: list[str] | None = None,
    tracking_uri: str | None = None,
    max_leakage: float | None = None,
    output: str | None = None,
    stream: TextIO | None = None,
    formats: tuple[str, ...] = ("markdown",),
    quiet: bool = False,
    json_output: bool = False,
    command: str | list[str] = "",
    from_files: list[str] | None = None,
    with_files: list[str] | None = None,
    datasets: list[str] | None = None,
    force: bool = False,
    capacity_files: list[str] | None = None,
) -> int:
    """``formats``: markdown (``results/LEADERBOARD.md``) and/or html (``results/leaderboard.html``, :mod:`removal_bench.reporting.html`).

    ``from_files``: build from these trial tables (``bench export``; :mod:`removal_bench.reporting.export`) instead
    of MLflow. ``with_files``: rank the runs (from MLflow or ``from_files``) together with these tables' trials,
    on the datasets of the runs, where the protocol matches (else a UserError naming the difference); the
    files then go to ``results/<experiment>/`` unless ``--output`` says otherwise. ``datasets``: rank only these
    datasets' trials (and name only the invocations that ran them). Without ``output``, a default file that
    ranks a dataset this leaderboard does not is refused unless ``force`` (:func:`refuse_fewer_datasets`)."""
    from removal_bench.reporting import export
    from removal_bench.running import preflight
    from removal_bench.running.tracking import _quiet_mlflow, load_runs, require_experiment

    stream = stream or sys.stdout
    check_max_leakage(max_leakage)
    from removal_bench.reporting import html as html_report

    if from_files and (experiments or tracking_uri):
        raise UserError("--from reads the trial table instead of MLflow: --experiment and --tracking-uri go without it")
    records = export.read_lines(from_files) if from_files else None
    committed = export.read_lines(with_files) if with_files else None
    targets = html_report.leaderboard_targets(formats, output)
    if committed is not None and not output:  # never over the committed leaderboard
        folder = Path("results") / ((experiments or export.experiments_of(records or []) or ["with"])[0])
        targets = {name: folder / path.name for name, path in targets.items()}
    paths = {name: preflight.writable_file(target, "--output").resolve() for name, target in targets.items()}
    uri = None
    if records is not None:
        frame, parents = export.read_frames(records)
        experiments = export.experiments_of(records)
    else:
        uri = preflight.tracking_uri(tracking_uri, write=False)
        _quiet_mlflow()
        if experiments:
            for name in experiments:
                require_experiment(uri, name)
        else:
            experiments = bench_experiments(uri)
            if not experiments:
                raise UserError(f"MLflow at {uri} holds no bench trial runs")
        frame = load_runs(uri, experiments)
        if frame.empty:
            raise UserError(f"experiment(s) {', '.join(experiments)} at {uri} hold no trial runs")
        parents = load_runs(uri, experiments, kind="invocation")
    if datasets:
        frame, parents = only_datasets(frame, parents, datasets)
    source = tables.source_text(experiments, from_files, with_files)  # before the --with tables' experiments join
    if committed is not None:
        import pandas as pd

        theirs, their_parents = export.read_frames(committed)
        export.comparable(frame, theirs)
        ours = set(frame["tags.bench.dataset"])
        theirs = theirs[theirs["tags.bench.dataset"].isin(ours)]
        if datasets:  # the options --datasets asks for hold for their trials too
            theirs = theirs[matching(theirs, wanted_settings(datasets))]
        frame = pd.concat([frame, theirs], ignore_index=True)
        # provenance: only the invocations that ran a dataset ranked here (not every dataset of the tables)
        parents = pd.concat([parents, their_parents[ran_any(their_parents, ours)]], ignore_index=True)
        if "run_id" in parents.columns:  # an invocation both hold (its table --with itself) counts once
            parents = parents.drop_duplicates("run_id")
        experiments = list(dict.fromkeys([*experiments, *export.experiments_of(committed)]))
    if datasets:  # a dataset asked for at several settings ranks each as a section of its own
        frame = split_sections(frame, datasets)
    frame, parents, merged = export.merge_runs(frame, parents)  # each run once; a trial run twice named, not averaged
    refuse_mixed_settings(frame)
    refuse_mixed_forms(frame)
    by_dataset = summaries.summarise(frame, expected_seeds=of_sections(declared_seeds_of(parents), frame))
    if capacity_files:
        attach_capacity(by_dataset, capacity_files, datasets)
    if not output and not force:
        refuse_fewer_datasets(paths, sorted(by_dataset))  # before any file (plots included) is written
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    from removal_bench.reporting.standings import of_datasets

    found = of_datasets(by_dataset, max_leakage)  # once, for the plots, the Markdown, the HTML and the JSON
    heads = publish.head_images(by_dataset)  # once, for the Markdown's files and the page's embedded images
    plots, head_plots = {}, {}
    if "markdown" in paths:  # the Markdown links its plots by a path relative to itself
        folder = paths["markdown"].parent / f"{paths['markdown'].stem.lower()}-plots"
        plots = {dataset: f"{folder.name}/{path.name}"
                 for dataset, path in publish.write_plots(by_dataset, folder, max_leakage, found).items()}
        head_plots = {dataset: f"{folder.name}/{path.name}"
                      for dataset, path in publish.write_head_plots(heads, folder).items()}
    behind = provenance(uri, experiments, frame, command, parents)
    behind.merged = merged.lines() + merged.repeated
    text = tables.leaderboard_text(by_dataset, experiments, max_leakage, generated, provenance=behind, plots=plots,
                                   found=found, head_plots=head_plots, source=source)
    if "markdown" in paths:
        files.write_text(paths["markdown"], text, "the leaderboard")
    if "html" in paths:
        html_report.write_page(paths["html"], by_dataset, experiments, max_leakage, generated, found, heads, source,
                               behind.plugins)
    if json_output:
        from removal_bench.reporting.documents import print_json, report_document

        print_json(report_document(by_dataset, max_leakage, found, experiments=experiments, tracking_uri=uri, generated=generated,
                                   files=[str(path) for path in paths.values()]), stream)
    elif not quiet:
        print(text, file=stream)
        for path in paths.values():
            print(f"wrote {path}", file=stream)
    return 0
