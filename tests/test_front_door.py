"""The rough edges a newcomer met, each pinned by what a user sees.

- ``bench leaderboard`` never silently replaces the default leaderboard with one that ranks fewer datasets:
  refused (one line, exit 2, nothing written) unless ``--output`` (elsewhere; the plots beside it, in
  ``<name>-plots/``) or ``--force``.
- ``--with`` names, in the provenance, only the invocations that ran a dataset it ranks (a one-dataset
  ranking listed all twelve invocations of the committed table and their 3 h of wall time).
- ``bench report --json`` gives every trial's run id (what ``bench attack`` takes).
- ``bench import`` says what it is doing while it works (the committed table took minutes in silence).

Built from slices of the committed trial table, so nothing trains here.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from removal_bench.commands.cli import main

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = next((p for p in (ROOT / "results" / "curves" / "trials.jsonl.gz", ROOT / "results" / "curves" / "trials.jsonl")
                  if p.exists()), None)
pytestmark = [pytest.mark.timeout(600), pytest.mark.skipif(COMMITTED is None, reason="no committed trial table")]


@pytest.fixture(scope="module")
def records():
    from removal_bench.reporting import export

    return export.read_lines([str(COMMITTED)])


def table(path: Path, records, datasets: set[str], methods: set[str] | None = None) -> Path:
    """A trial table (one whole run a line) of the committed table's trials of ``datasets`` (and ``methods``),
    with the invocations that ran them."""
    kept = []
    for record in records:
        if record["kind"] == "invocation":
            if set(str(record["params"].get("datasets", "")).split(",")) & datasets:
                kept.append(record)
        elif record["tags"].get("bench.dataset") in datasets and (methods is None or record["tags"].get("bench.method") in methods):
            kept.append(record)
    path.write_text("".join(json.dumps(record) + "\n" for record in kept))
    return path


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), lines
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_default_leaderboard_is_not_replaced_by_one_ranking_fewer_datasets(records, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    small = table(tmp_path / "small.jsonl", records, {"synthetic", "german"}, {"vanilla", "leace", "irene"})
    assert main(["leaderboard", "--from", str(small), "--format", "markdown,html", "--quiet"]) == 0
    board = tmp_path / "results" / "LEADERBOARD.md"
    assert "## german" in board.read_text() and "## synthetic" in board.read_text()
    before = snapshot(tmp_path / "results")
    capsys.readouterr()

    # refused: the Markdown, the page, and both at once; not a byte written
    for formats in ("markdown", "html", "markdown,html"):
        assert main(["leaderboard", "--from", str(small), "--datasets", "synthetic", "--format", formats, "--quiet"]) == 2
        line = error_line(capsys)
        assert "ranks 2 dataset(s) (german, synthetic)" in line and "would drop german" in line, line
        assert "--output FILE" in line and "--force" in line
        assert snapshot(tmp_path / "results") == before

    # elsewhere: --output, with its plots beside it in a folder named after it
    assert main(["leaderboard", "--from", str(small), "--datasets", "synthetic", "--output", "elsewhere/lb.md", "--quiet"]) == 0
    assert "## synthetic" in (tmp_path / "elsewhere" / "lb.md").read_text()
    assert (tmp_path / "elsewhere" / "lb-plots" / "synthetic.png").is_file()
    assert snapshot(tmp_path / "results") == before

    # a leaderboard ranking every dataset of the file (or more) replaces it as before; --force replaces any
    assert main(["leaderboard", "--from", str(small), "--quiet"]) == 0
    assert main(["leaderboard", "--from", str(small), "--datasets", "synthetic", "--force", "--quiet"]) == 0
    text = board.read_text()
    assert "## synthetic" in text and "## german" not in text


def test_with_names_only_the_invocations_of_the_datasets_it_ranks(records, tmp_path, monkeypatch):
    """Ranking synthetic ``--with`` the whole committed table: its provenance counts the invocations that ran
    synthetic (each once, though both tables hold them), not the table's twelve."""
    monkeypatch.chdir(tmp_path)
    ours = table(tmp_path / "ours.jsonl", records, {"synthetic"})
    synthetic_invocations = [r for r in records if r["kind"] == "invocation" and r["params"].get("datasets") == "synthetic"]
    every_invocation = [r for r in records if r["kind"] == "invocation"]
    assert len(every_invocation) > len(synthetic_invocations) >= 1
    assert main(["leaderboard", "--from", str(ours), "--with", str(COMMITTED), "--output", "lb.md", "--quiet"]) == 0
    text = (tmp_path / "lb.md").read_text()
    counted = re.search(r"^- Trials: (\d+) .*?from (\d+) invocation\(s\)", text, re.M)
    assert counted, text[:3000]
    assert int(counted.group(2)) == len(synthetic_invocations)
    commands = text.split("- Commands:", 1)[1].split("\n## ", 1)[0]
    assert "--datasets synthetic" in commands
    for other in ("colored_digits", "adult", "compas", "german", "biased_mnist"):
        assert f"--datasets {other}" not in commands


def test_report_json_gives_each_trials_run_id_and_import_shows_progress(records, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    small = table(tmp_path / "vanilla.jsonl", records, {"synthetic"}, {"vanilla"})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lines = len(small.read_text().splitlines())
    assert main(["import", str(small), "--tracking-uri", uri]) == 0
    captured = capsys.readouterr()
    assert f"importing {lines} runs into experiment 'curves'" in captured.err
    assert main(["report", "--experiment", "curves", "--tracking-uri", uri, "--json", "--results-dir", "out"]) == 0
    document = json.loads(capsys.readouterr().out)
    configurations = document["datasets"]["synthetic"]["configurations"]
    assert len(configurations) == 1

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = configurations[0]["runs"]
    sources = {r["tags"]["bench.seed"]: r["run_id"] for r in records
               if r["kind"] == "trial" and r["tags"].get("bench.dataset") == "synthetic" and r["tags"].get("bench.method") == "vanilla"}
    assert sorted(runs) == sorted(sources) == configurations[0]["seeds"]["with_run"]
    for seed, run_id in runs.items():
        run = client.get_run(run_id)  # a run of the store, the one bench attack RUN_ID would open
        assert run.data.tags["bench.seed"] == seed and run.data.tags["bench.source_run_id"] == sources[seed]


def test_import_progress_lines():
    from removal_bench.commands.export import Progress

    stream = io.StringIO()
    progress = Progress("experiment 'x'", every=0.0, stream=stream)
    progress(0, 10)
    assert stream.getvalue() == ""  # nothing before the first line is in
    progress(4, 10)
    line = stream.getvalue().strip()
    assert line.startswith("experiment 'x': 4/10 lines, ") and line.endswith(" s left"), line
    quiet = Progress("y", every=3600.0, stream=stream)
    quiet(5, 10)
    assert stream.getvalue().strip() == line  # at most one line per `every` seconds


def test_a_table_exported_mid_sweep_holds_ended_runs_and_a_later_table_ends_what_it_imported(records, tmp_path,
                                                                                            monkeypatch, capsys):
    """A sweep's table committed as it grows: exported while a trial and its invocation are still RUNNING, then
    again once they have ended. The first table leaves the RUNNING trial out and says so; a user who imported
    it (and whose own sweep then closed its RUNNING invocation as an orphan) and imports the second one ends up
    with every run ended, each once, as in the source store."""
    from mlflow import MlflowClient

    from removal_bench.running.tracking import CLOSED_REASON_TAG, ORPHAN_CLOSED, load_runs

    monkeypatch.chdir(tmp_path)
    small = table(tmp_path / "vanilla.jsonl", records, {"synthetic"}, {"vanilla"})
    source, user = f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'user.db'}"
    assert main(["import", str(small), "--tracking-uri", source, "--quiet"]) == 0
    client = MlflowClient(source)
    trials, invocations = load_runs(source, "curves"), load_runs(source, "curves", kind="invocation")
    assert len(trials) == 5 and len(invocations) >= 1
    # As the sweep left them mid-way: one trial and its invocation not ended yet.
    trial, invocation = trials.iloc[0], invocations[invocations["run_id"] == trials.iloc[0]["tags.mlflow.parentRunId"]].iloc[0]
    for run in (trial, invocation):
        client.update_run(run["run_id"], status="RUNNING")
    capsys.readouterr()
    assert main(["export", "--experiment", "curves", "--tracking-uri", source, "--output", "mid.jsonl.gz"]) == 0
    said = capsys.readouterr().out
    assert "4 trials of experiment 'curves'" in said and "left out 1 trial run(s) still RUNNING" in said, said
    mid = [r for r in export_lines(tmp_path / "mid.jsonl.gz") if r["kind"] == "trial"]
    assert len(mid) == 4 and {r["status"] for r in mid} == {"FINISHED"}
    for run in (trial, invocation):
        client.set_terminated(run["run_id"], status="FINISHED", end_time=int(run["end_time"].timestamp() * 1000))
    assert main(["export", "--experiment", "curves", "--tracking-uri", source, "--output", "end.jsonl.gz", "--quiet"]) == 0

    assert main(["import", "mid.jsonl.gz", "--tracking-uri", user, "--quiet"]) == 0
    opened = load_runs(user, "curves", kind="invocation")
    opened = opened[opened["status"] == "RUNNING"]
    assert len(opened) == 1  # the invocation, as the table had it
    MlflowClient(user).set_terminated(opened.iloc[0]["run_id"], status="KILLED")  # as bench closes an orphan
    MlflowClient(user).set_tag(opened.iloc[0]["run_id"], CLOSED_REASON_TAG, f"{ORPHAN_CLOSED}; its driver is gone")
    capsys.readouterr()
    assert main(["import", "end.jsonl.gz", "--tracking-uri", user]) == 0
    said = capsys.readouterr().out
    assert "1 runs imported, 1 imported before they ended brought up to date" in said, said
    mine = load_runs(user, "curves")
    assert len(mine) == 5 and set(mine["status"]) == {"FINISHED"}
    assert sorted(mine["tags.bench.source_run_id"]) == sorted(trials["tags.bench.source_run_id"])  # the committed ids
    for column in ("metrics.accuracy", "metrics.leakage"):
        assert sorted(mine[column]) == sorted(trials[column])
    ended = load_runs(user, "curves", kind="invocation")
    assert set(ended["status"]) == set(invocations["status"]) and len(ended) == len(invocations)
    assert CLOSED_REASON_TAG not in ended.columns or ended[f"tags.{CLOSED_REASON_TAG}"].isna().all()
    again = main(["import", "end.jsonl.gz", "--tracking-uri", user])  # nothing left to do
    assert again == 0 and "0 runs imported" in capsys.readouterr().out and len(load_runs(user, "curves")) == 5


def export_lines(path: Path):
    from removal_bench.reporting import export

    return export.read_lines([str(path)])


CONVERGED = ROOT / "results" / "curves-converged" / "trials.jsonl.gz"


@pytest.mark.skipif(not CONVERGED.exists(), reason="no committed converged trial table")
def test_report_of_a_table_holding_two_settings_of_a_dataset_reports_each_as_a_section_of_its_own(tmp_path, capsys):
    """The converged table holds Biased-MNIST at rho 0.997 and 0.99: `bench report` gives each setting its own
    tables and plot (no curve or selection mixes them), and each section's rows are those of a table holding
    that setting alone, which keeps the dataset's plain name."""
    import pandas as pd

    from removal_bench.reporting import export

    records = export.read_lines([str(CONVERGED)])
    rhos = sorted({str(r["params"].get("data.rho")) for r in records if r["kind"] != "invocation"})
    if len(rhos) < 2:
        pytest.skip(f"the committed converged table holds one setting ({rhos})")
    assert main(["report", "--from", str(CONVERGED), "--results-dir", str(tmp_path / "both"), "--format", "csv",
                 "--quiet"]) == 0
    written = sorted(p.name for p in (tmp_path / "both").iterdir())
    assert written == sorted(f"biased_mnist-rho={rho}.{ext}" for rho in rhos for ext in ("csv", "png"))
    for rho in rhos:
        alone = tmp_path / f"alone-{rho}.jsonl"
        alone.write_text("".join(json.dumps(r) + "\n" for r in records
                                 if r["kind"] == "invocation" or str(r["params"].get("data.rho")) == rho))
        assert main(["report", "--from", str(alone), "--results-dir", str(tmp_path / rho), "--format", "csv",
                     "--quiet"]) == 0
        assert sorted(p.name for p in (tmp_path / rho).iterdir()) == ["biased_mnist.csv", "biased_mnist.png"]
        section = pd.read_csv(tmp_path / "both" / f"biased_mnist-rho={rho}.csv", dtype=str)
        single = pd.read_csv(tmp_path / rho / "biased_mnist.csv", dtype=str)
        assert set(section["dataset"]) == {f"biased_mnist:rho={rho}"} and set(single["dataset"]) == {"biased_mnist"}
        pd.testing.assert_frame_equal(section.drop(columns="dataset"), single.drop(columns="dataset"))
        trials = {(r["tags"]["bench.config_key"], r["tags"]["bench.seed"]) for r in records
                  if r["kind"] != "invocation" and str(r["params"].get("data.rho")) == rho and r["status"] == "FINISHED"}
        assert section["finished"].astype(int).sum() == len(trials)
