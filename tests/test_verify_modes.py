"""``bench verify`` in both of its modes on a small compact table made here (tiny synthetic trials, serial,
SQLite MLflow, ``bench export``): bit-identical where the trials' hardware fingerprint and versions are this
machine's; where they are another machine's (or unknown), the configuration's seeds re-run and tested as a
distribution, which passes for the same figures and fails for figures moved by far more than their spread."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from removal_bench.reporting import export, verify
from tests.conftest import bench_command, quiet_env

pytestmark = pytest.mark.timeout(600)
DATASET = "synthetic:n_train=300:n_eval=300"


def bench(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(bench_command() + args, cwd=cwd, capture_output=True, text=True, timeout=500, env=quiet_env())


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("verify")
    for args in (["run", "--methods", "vanilla", "--datasets", DATASET, "--seeds", "3", "--epochs", "1",
                  "--executor", "serial", "--experiment", "tiny", "--quiet"], ["export", "--experiment", "tiny"]):
        done = bench(args, folder)
        assert done.returncode == 0, done.stderr[-3000:]
    return folder / "results" / "tiny" / "trials.jsonl.gz"


def _rewritten(table: Path, target: Path, change) -> Path:
    records = export.read_lines([table])
    for record in records:
        if record["kind"] == "trial":
            change(record)
    target.write_bytes(export.table_bytes(records, target))
    return target


def _elsewhere(record: dict) -> None:
    record["tags"]["fingerprint.cpu"] = "Intel(R) Xeon(R) Platinum 8480+"
    record["tags"]["fingerprint.bf16"] = "amx_bf16"


def test_the_table_records_where_it_ran_and_a_missing_fingerprint_means_distribution(table):
    trials = [r for r in export.read_lines([table], full=True) if r["kind"] == "trial"]
    assert len(trials) == 3 and all(r["tags"].get("fingerprint.isa") for r in trials), trials[0]["tags"]
    assert verify.mode_of(trials[0], "cpu")[0] == "exact"
    bare = {**trials[0], "tags": {k: v for k, v in trials[0]["tags"].items() if not k.startswith("fingerprint.")}}
    assert verify.mode_of(bare, "cpu") == ("distribution", "no hardware fingerprint recorded (a trial from before it "
                                                           "was logged): unknown machine")
    elsewhere = {**trials[0], "tags": dict(trials[0]["tags"])}
    _elsewhere(elsewhere)
    mode, why = verify.mode_of(elsewhere, "cpu")
    assert mode == "distribution" and "cpu 'Intel(R) Xeon(R) Platinum 8480+' there" in why


def test_same_machine_is_bit_identical_and_a_changed_figure_fails(table, tmp_path):
    done = bench(["verify", str(table), "--sample", "1"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 sampled trials came back within tolerance 0 (1 bit-identical)" in done.stdout, done.stdout

    def nudge(record):
        record["metrics"]["accuracy"] += 1e-9  # the smallest of changes

    done = bench(["verify", str(_rewritten(table, tmp_path / "nudged.jsonl.gz", nudge)), "--sample", "1"], tmp_path)
    assert done.returncode == 1 and "differs" in done.stdout and "accuracy" in done.stdout, done.stdout


def test_another_machine_is_tested_as_a_distribution(table, tmp_path):
    foreign = _rewritten(table, tmp_path / "foreign.jsonl.gz", _elsewhere)
    done = bench(["verify", str(foreign), "--sample", "1", "--seeds", "2"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "re-running 2 of its 3 seeds (cpu 'Intel(R) Xeon(R) Platinum 8480+' there" in done.stdout, done.stdout
    assert "1 of 1 configurations re-run here have the table's distribution" in done.stdout

    def moved(record):
        _elsewhere(record)
        record["metrics"]["accuracy"] -= 1.0  # far outside any seed spread of these trials (tens of standard errors)
        record["metrics"]["leakage"] += 1.0

    done = bench(["verify", str(_rewritten(table, tmp_path / "moved.jsonl.gz", moved)), "--sample", "1"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "re-running 3 of its 3 seeds" in done.stdout and "0 of 1 configurations" in done.stdout, done.stdout
    assert "differs" in done.stdout and "accuracy table" in done.stdout and "leakage table" in done.stdout
    forced = bench(["verify", str(table), "--sample", "1", "--mode", "distribution"], tmp_path)
    assert forced.returncode == 0 and "--mode distribution (auto: exact" in forced.stdout, forced.stdout
