"""`bench reproduce`: the verdict, rows without data, and one real run of a subset."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from removal_bench.core.errors import UserError
from removal_bench.running.reproduce import (
    AGREES, DIFFERS, ReproduceRequest, load_tables, mean_and_error, plan_rows, render, select_tables, verdict,
)
from tests.conftest import SHARED_DATA, bench_command, quiet_env


def test_verdict_is_within_published_spread_plus_our_error():
    assert verdict(85.35, 0.34, 85.0, 0.02) == AGREES  # 0.35 <= 0.34 + 0.02
    assert verdict(85.35, 0.34, 85.0, 0.0) == DIFFERS  # 0.35 > 0.34
    assert verdict(10.4, 0.0, 12.0, 2.0) == AGREES  # no published spread: our error alone
    assert verdict(10.4, 0.0, 12.0, None) == DIFFERS  # one seed: no error to lean on
    assert verdict(None, 0.0, 50.0, 1.0) == "no published figure"
    assert verdict(52.3, 2.39, None, None) == "not run"


def test_mean_and_standard_error():
    assert mean_and_error([]) == (None, None)
    assert mean_and_error([3.0]) == (3.0, None)
    mean, error = mean_and_error([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and abs(error - (5 / 3) ** 0.5 / 2) < 1e-12


def test_every_published_row_is_a_valid_setting_with_a_source():
    tables = load_tables()
    assert {"rebias-table1", "end-table1", "ffb-table4"} <= {t.id for t in tables}
    rows = plan_rows(ReproduceRequest(seeds=1, data_root="/nonexistent"), tables)  # validates every option
    assert all(row.table.source for row in rows)
    ffb = [row for row in rows if row.table.id == "ffb-table4"]
    assert len(ffb) == 6 and all(row.trials[0].config["dataset_options"]["protocol"] == "ffb" for row in ffb)
    values = {(row.row.label, n.metric): n.value for row in ffb for n in row.row.numbers}
    assert values[("Adult (gender)", "dp_gap")] == 16.67 and values[("German (age)", "accuracy")] == 75.19
    with pytest.raises(UserError, match="no published table"):
        select_tables(["nope"], tables)


def test_rows_without_data_say_so_and_how_to_get_it(tmp_path):
    tables = select_tables(["rebias"], load_tables())
    request = ReproduceRequest(tables=["rebias"], data_root=str(tmp_path), seeds=2, epochs=1)
    rows = plan_rows(request, tables)
    assert all(row.missing for row in rows)
    text = render(rows, pd.DataFrame(), request, "sqlite:////x/mlflow.db", 0.0)
    table_lines = [line for line in text.splitlines() if line.startswith("| rho")]
    assert len(table_lines) == 4
    for line in table_lines:
        assert "data absent" in line and "not run" in line
        assert f"`bench data fetch biased_mnist --data-root {tmp_path}`" in line and "GPU" in line


@pytest.mark.skipif(not (SHARED_DATA / "german").is_dir(), reason="no shared copy of the German credit file")
def test_reproduce_end_to_end_on_a_subset(tmp_path):
    """FFB's table with only German present: German rows run (serial, 1 epoch, 1 seed), the others say why not."""
    (tmp_path / "data").mkdir()
    shutil.copytree(SHARED_DATA / "german", tmp_path / "data" / "german")
    output = tmp_path / "REPRODUCTION.md"
    command = bench_command() + [
        "reproduce", "ffb", "--seeds", "1", "--epochs", "1", "--executor", "serial",
        "--data-root", str(tmp_path / "data"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--output", str(output),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=quiet_env(), timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    text = output.read_text()
    german = [line for line in text.splitlines() if line.startswith("| German")]
    assert len(german) == 4  # two rows, accuracy and DP each
    for line in german:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        ours, n, verdict_cell, notes = cells[4], cells[5], cells[7], cells[8]
        assert 0.0 <= float(ours) <= 100.0 and n == "1/1" and verdict_cell in (AGREES, DIFFERS)
        assert "reduced: 1 seeds (published setting: 10), epochs 1" in notes
    for label in ("Adult (gender)", "Adult (race)", "COMPAS (gender)", "COMPAS (race)"):
        line = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
        assert "data absent" in line and "bench data fetch" in line
    assert "| ffb-table4 | German (gender) |" in text  # the runs behind the figures
    # Run again: every trial is already complete, and the file is the same apart from the time line.
    again = subprocess.run(command, capture_output=True, text=True, env=quiet_env(), timeout=300, cwd=tmp_path)
    assert again.returncode == 0 and "2 already complete" in again.stderr and "running 0" in again.stderr
    assert german == [line for line in output.read_text().splitlines() if line.startswith("| German")]


def test_our_parity_gap_is_ffbs_demographic_parity():
    """FFB (src/metrics.py): DP = |P(y^=1 | s=1) - P(y^=1 | s=0)|, y^ = 1 when p(y=1) > 0.5; ours is the same fraction."""
    import numpy as np

    from removal_bench.measuring.metrics import task_metrics

    rng = np.random.default_rng(0)
    for _ in range(5):
        s = rng.integers(0, 2, size=500)
        positive = np.clip(rng.random(500) + 0.2 * s, 0, 1)  # a gap that depends on s
        y = rng.integers(0, 2, size=500)
        predicted = positive > 0.5
        ffb = abs(predicted[s == 1].mean() - predicted[s == 0].mean())
        ours = task_metrics(np.stack([1 - positive, positive], axis=1), y, s).dp_gap
        assert abs(ours - ffb) < 1e-12
