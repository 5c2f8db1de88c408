"""The compact trial table (schema 2, ``trials.jsonl.gz``) and merged tables, without Ray or MLflow: it reads back
to exactly the runs a schema-1 table holds (params, tags, metrics, times), whatever odd values they carry; old
tables still read; pandas reads it in one line; ``bench export --from`` converts and merges; a run present twice
counts once and a trial run twice is named with the runs kept and dropped, never averaged."""

from __future__ import annotations

import gzip
import json
import subprocess

import pandas as pd
import pytest

from removal_bench.core.errors import UserError
from removal_bench.reporting import compact, export
from removal_bench.reporting.summaries import summarise
from tests.conftest import bench_command, quiet_env
from tests.test_trial_tables import _frame


def _records(frame: pd.DataFrame) -> list[dict]:
    return export.export_records(frame, pd.DataFrame(), "committed")


def _table(frame: pd.DataFrame, path, compact_file: bool = True):
    path.write_bytes(export.table_bytes(_records(frame), path))
    return path


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == list(b.columns)


def test_compact_and_verbose_tables_read_back_to_the_same_runs(tmp_path):
    frame = pd.concat([_frame("vanilla", 1, 3), _frame("irene", 3, 3)], ignore_index=True)
    old = _table(frame, tmp_path / "trials.jsonl")
    new = _table(frame, tmp_path / "trials.jsonl.gz")
    assert new.read_bytes()[:2] == b"\x1f\x8b" and old.read_bytes()[:1] == b"{"
    assert new.stat().st_size < old.stat().st_size / 3
    verbose, small = export.read_lines([old]), export.read_lines([new])
    _same(export.read_frames(verbose)[0], export.read_frames(small)[0])
    assert export.read_lines([new], full=True) == verbose  # every schema-1 field, identity and protocol parsed
    assert export.table_bytes(small, new) == new.read_bytes()  # written again: the same bytes
    summaries = summarise(export.read_frames(small)[0])["synthetic"]
    assert [r.per_seed for r in summaries] == [r.per_seed for r in summarise(frame)["synthetic"]]


def test_what_the_derivation_does_not_give_back_is_kept_explicitly(tmp_path):
    frame = _frame("irene", 2, 2)
    frame.loc[0, "tags.mlflow.runName"] = "renamed by hand"  # not label/dataset/seed
    frame.loc[1, "tags.bench.identity"] = frame.loc[1, "tags.bench.identity"].replace('"seed":0', '"seed":7')
    frame.loc[2, "tags.odd"] = "a tag of its own"
    frame["params.hp.x"] = frame["params.hp.x"].astype(object)
    frame.loc[3, "metrics.accuracy"] = 0.1 + 0.2  # every bit of a double
    path = _table(frame, tmp_path / "t.jsonl.gz")
    verbose = export.read_lines([_table(frame, tmp_path / "t.jsonl")])
    _same(export.read_frames(export.read_lines([path]))[0], export.read_frames(verbose)[0])  # column by column
    assert export.read_lines([path], full=True) == verbose  # trial by trial
    lines = [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    trials = [line for line in lines if line["kind"] == "trial"]
    assert sum("tags.mlflow.runName" in line for line in trials) == 1
    assert sum(line["kind"] == "setting" for line in lines) == 1  # what the trials share, once


def test_pandas_reads_the_compact_table_in_one_line(tmp_path):
    path = _table(pd.concat([_frame("vanilla", 1, 3), _frame("irene", 2, 3)], ignore_index=True), tmp_path / "t.jsonl.gz")
    table = pd.read_json(path, lines=True).query("kind == 'trial'")
    assert len(table) == 9 and table["metrics.accuracy"].notna().all()
    assert set(table["method"]) == {"vanilla", "irene"} and set(table["seed"]) == {0, 1, 2}


@pytest.mark.parametrize("content, fragment", [
    (b"\x1f\x8b\x08\x00broken", "cannot read trial table"),
    (compact.compress('{"kind":"table","schema":2}\n{"kind":"trial","setting":"nope","run_id":"r","status":"FINISHED"}\n'),
     "trial of setting 'nope', which the table does not hold"),
    (compact.compress('{"kind":"table","schema":2}\n{"kind":"trial","schema":1}\n'), "is not a trial or invocation of schema 2"),
])
def test_a_broken_compact_table_is_refused_in_one_line(tmp_path, content, fragment):
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(content)
    with pytest.raises(UserError, match=fragment):
        export.read_lines([path])


def test_a_run_present_twice_counts_once_and_a_trial_run_twice_is_named_not_averaged(tmp_path):
    mine = _frame("irene", 2, 3)
    theirs = mine.copy()  # the same trials run again on another machine: other run ids, other figures
    theirs["run_id"] = theirs["run_id"] + "-b"
    theirs["start_time"] = theirs["start_time"] + pd.Timedelta(days=1)
    theirs["metrics.accuracy"] = theirs["metrics.accuracy"] + 0.25
    theirs["tags.fingerprint.cpu"] = "Intel(R) Xeon(R) Platinum"
    both = pd.concat([mine, theirs, mine.iloc[:2]], ignore_index=True)  # two runs of the first table twice
    frame, _, merged = export.merge_runs(both)
    assert merged.same_runs == 2 and len(frame) == 12
    assert len(merged.repeated) == 6 and merged.largest == pytest.approx(0.25)
    assert "kept run irene-irene0-0-b (Intel(R) Xeon(R) Platinum), dropped run irene-irene0-0" in merged.repeated[0]
    assert "largest difference 0.25 (accuracy)" in merged.repeated[0]
    rows = summarise(frame)["synthetic"]
    assert [r.finished for r in rows] == [3, 3]  # one run per trial: not six seeds
    assert rows[0].mean("accuracy") == pytest.approx(theirs["metrics.accuracy"][:3].mean())  # the kept runs', no average


def test_bench_export_from_converts_and_merges_tables(tmp_path):
    a = _table(_frame("irene", 2, 2), tmp_path / "a.jsonl")
    other = _frame("irene", 2, 2)
    other["run_id"] = other["run_id"] + "-b"
    other["metrics.leakage"] = other["metrics.leakage"] - 0.125
    other["start_time"] = other["start_time"] + pd.Timedelta(days=1)
    b = _table(other, tmp_path / "b.jsonl.gz")
    done = subprocess.run(bench_command() + ["export", "--from", str(a), "--from", str(b), "--from", str(a), "--output",
                                             str(tmp_path / "merged.jsonl.gz")],
                          capture_output=True, text=True, timeout=300, env=quiet_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "4 run(s) appear in more than one source" in done.stdout
    assert "4 trial(s) have more than one FINISHED run" in done.stdout and "largest difference 0.125 (leakage)" in done.stdout
    assert "wrote" in done.stdout and "4 trials and 0 invocations from 3 table(s)" in done.stdout
    merged = export.read_lines([tmp_path / "merged.jsonl.gz"])
    assert sorted(r["run_id"] for r in merged) == sorted(other["run_id"])  # the latest of each trial
    refused = subprocess.run(bench_command() + ["export", "--from", str(a), "--output", str(tmp_path / "x.csv")],
                             capture_output=True, text=True, timeout=300, env=quiet_env(), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"bench: error: --output {tmp_path / 'x.csv'}: a trial table ends in .jsonl.gz (compact) or .jsonl (one whole run a line)"]
    assert not (tmp_path / "x.csv").exists()


def test_the_leaderboard_names_merged_runs_and_report_reads_a_table(tmp_path):
    from removal_bench.reporting import tables

    mine = _frame("irene", 2, 2)
    again = mine.copy()
    again["run_id"] = again["run_id"] + "-b"
    again["start_time"] = again["start_time"] + pd.Timedelta(days=1)
    again["metrics.leakage"] = again["metrics.leakage"] + 0.0625
    _, _, merged = export.merge_runs(pd.concat([mine, again], ignore_index=True))
    text = tables.provenance_text(tables.Provenance(merged=merged.lines() + merged.repeated))
    assert "- Merged sources: 4 trial(s) have more than one FINISHED run" in text
    assert "never an average" in text and "kept run irene-irene0-0-b, dropped run irene-irene0-0; largest difference 0.0625 (leakage)" in text
    assert "Merged sources" not in tables.provenance_text(tables.Provenance())  # nothing merged: no line

    table = _table(pd.concat([_frame("vanilla", 1, 3), _frame("irene", 2, 3)], ignore_index=True), tmp_path / "t.jsonl.gz")
    done = subprocess.run(bench_command() + ["report", "--from", str(table), "--results-dir", str(tmp_path / "out"), "--quiet"],
                          capture_output=True, text=True, timeout=300, env=quiet_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "irene" in (tmp_path / "out" / "synthetic.md").read_text()
