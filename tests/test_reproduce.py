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


def _grid_frame(rows, val_by_alpha: dict[float, list[float]], test_by_alpha: dict[float, list[float]], skip=()):
    """A frame as MLflow's search_runs gives it: one FINISHED run per planned trial, figures by alpha and seed."""
    records = []
    for entry in rows:
        for point, trials in entry.candidates:
            for trial in trials:
                alpha, seed = point["alpha"], trial.config["seed"]
                if (alpha, seed) in skip:
                    continue
                records.append({"run_id": f"run-{alpha}-{seed}", "status": "FINISHED", "start_time": pd.Timestamp(0),
                                "tags.bench.config_hash": trial.key, "metrics.val_accuracy": val_by_alpha[alpha][seed],
                                "metrics.accuracy": test_by_alpha[alpha][seed]})
    return pd.DataFrame(records)


def test_a_rows_grid_is_chosen_on_validation_and_named_in_the_report(tmp_path):
    """EnD's rows choose alpha = beta per rho from a grid on val_accuracy, never on the test figure."""
    tables = select_tables(["end-table1"], load_tables())
    request = ReproduceRequest(tables=["end-table1"], data_root=str(tmp_path), recipe="cpu-converged")
    rows = [row for row in plan_rows(request, tables) if row.row.label == "rho 0.997"]
    (entry,) = rows
    assert [point["alpha"] for point, _ in entry.candidates] == [0.1, 0.5, 1.0] and len(entry.trials) == 9
    assert len({trial.key for trial in entry.trials}) == 9  # every point and seed its own trial
    entry.missing = []  # as if the data were there
    # alpha 0.5 is best on validation; alpha 1 would be best on test: the row must report alpha 0.5's test figure
    val = {0.1: [0.50, 0.52, 0.51], 0.5: [0.70, 0.69, 0.71], 1.0: [0.60, 0.61, 0.59]}
    test = {0.1: [0.40, 0.41, 0.42], 0.5: [0.60, 0.62, 0.61], 1.0: [0.90, 0.91, 0.92]}
    text = render(rows, _grid_frame(rows, val, test), request, "sqlite:////x/mlflow.db", 0.0)
    line = next(line for line in text.splitlines() if line.startswith("| rho 0.997"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[4].startswith("61.00") and cells[5] == "3/3"
    assert "**alpha=0.5, beta=0.5** chosen on val_accuracy" in cells[8] and "3 of 3 points complete" in cells[8]
    assert "alpha=0.1,beta=0.1; alpha=0.5,beta=0.5; alpha=1,beta=1" in cells[8]
    # a point with a seed missing cannot be chosen, however good its other seeds are
    text = render(rows, _grid_frame(rows, val, test, skip={(0.5, 2)}), request, "sqlite:////x/mlflow.db", 0.0)
    line = next(line for line in text.splitlines() if line.startswith("| rho 0.997"))
    assert "**alpha=1, beta=1** chosen" in line and "2 of 3 points complete" in line
    assert "| 91.00 +- 0.58 |" in line


def test_reproduce_runs_every_rows_first_grid_point_before_any_second(tmp_path, monkeypatch):
    """An interrupted grid leaves whole rows at the authors' default before any row's whole grid."""
    from removal_bench.running import reproduce

    seen = []
    import removal_bench.running.runner as runner

    def planned_then_stop(run, unique):  # the trials in the order they would run, then no run at all
        seen.extend(unique)
        raise UserError("stop here")

    monkeypatch.setattr(reproduce, "missing_data", lambda *args: [])
    monkeypatch.setattr(runner, "check_where", planned_then_stop)
    with pytest.raises(UserError, match="stop here"):
        reproduce.execute_reproduce(ReproduceRequest(tables=["end-table1"], data_root=str(tmp_path), recipe="cpu-converged"))
    alphas = [trial.config["hparams"]["alpha"] for trial in seen]
    assert len(seen) == 36 and alphas[:12] == [0.1] * 12 and set(alphas[12:24]) == {0.5, 1.0}


def test_an_option_a_row_is_told_apart_by_chooses_rows_it_never_relabels_them(tmp_path):
    """`--option rho=0.997` on ReBias's table runs the rho 0.997 row alone (at 0.997, not marked reduced for it);
    the other rows say they were not chosen, instead of comparing a 0.997 model to their published figures. A
    value no row is published at is refused; an option no row sets (split) still changes every row."""
    tables = select_tables(["rebias-table1"], load_tables())
    request = ReproduceRequest(tables=["rebias-table1"], data_root=str(tmp_path), seeds=1, options=["rho=0.9970"])
    rows = plan_rows(request, tables)
    run = [row for row in rows if not row.skipped]
    assert [row.row.label for row in run] == ["rho 0.997"]
    assert run[0].trials[0].config["dataset_options"]["rho"] == 0.997 and run[0].changes == ["1 seeds (published setting: 3)"]
    assert all("not chosen: --option rho=0.9970 runs row rho 0.997" == row.skipped and not row.trials
               for row in rows if row.skipped)
    text = render(rows, pd.DataFrame(), request, "sqlite:////x/mlflow.db", 0.0)
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| rho")}
    assert "rho=0.999 |" in lines["rho 0.999"] and "| not run | not chosen" in lines["rho 0.999"]
    with pytest.raises(UserError, match=r"no row of rebias-table1 is published at rho=0.996 \(its rows: 0.999, 0.997"):
        plan_rows(ReproduceRequest(tables=["rebias-table1"], data_root=str(tmp_path), options=["rho=0.996"]), tables)
    split = plan_rows(ReproduceRequest(tables=["rebias-table1"], data_root=str(tmp_path), options=["split=ours"]), tables)
    assert len([row for row in split if not row.skipped]) == 4
    assert all(row.trials[0].config["dataset_options"]["split"] == "ours" and "split=ours" in row.changes for row in split)


def test_trial_time_counts_imported_runs_by_the_source_id_the_report_names():
    """The report names an imported run by its source id (the id the trial table keeps), so the trial-time line
    must find the run by that id too, and count a run the store holds twice (its own and an import) once."""
    from removal_bench.running.reproduce import trial_seconds
    from removal_bench.running.tracking import SOURCE_RUN_TAG

    frame = pd.DataFrame({
        "run_id": ["local-a", "local-b", "orig-c", "local-c"],
        f"tags.{SOURCE_RUN_TAG}": ["orig-a", None, None, "orig-c"],
        "metrics.train_seconds": [100.0, 20.0, 7.0, 7.0],
        "metrics.eval_seconds": [1.0, 2.0, 3.0, 3.0],
    })
    assert trial_seconds(frame, {"orig-a"}) == 101.0  # the id the report writes for an imported run
    assert trial_seconds(frame, {"orig-a", "local-b"}) == 123.0
    assert trial_seconds(frame, {"orig-c"}) == 10.0  # the original and its import: one run
    assert trial_seconds(frame.drop(columns=[f"tags.{SOURCE_RUN_TAG}"]), {"local-b"}) == 22.0
