"""What makes 100,000-trial tables fast must not move a figure: the bootstrap's means come out bit for bit as
``values[draws].mean(axis=1)`` gives them, and the synthetic tables of ``python -m removal_bench.benchmarks
table-scale`` read back (the timings are the benchmark's, docs/RESULTS_TABLE.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from removal_bench.reporting import compact, export, statistics


@pytest.mark.parametrize("seeds", [1, 2, 3, 5, 8, 40, 306])
@pytest.mark.parametrize("metrics", [1, 2, 3, 4])
def test_resampled_means_are_the_plain_formula_to_the_last_bit(seeds, metrics):
    values = np.random.default_rng(seeds * 10 + metrics).random((seeds, metrics)) * 10 ** np.arange(metrics)
    ours = statistics.resample_means(values, 500, np.random.default_rng(7))
    draws = np.random.default_rng(7).integers(0, seeds, size=(500, seeds))
    assert np.array_equal(ours, values[draws].mean(axis=1))


def test_a_synthetic_table_grows_the_committed_configurations_by_seeds(tmp_path):
    from removal_bench.benchmarks.tables import TEMPLATE, synthetic_records

    template = export.read_lines([TEMPLATE])
    records = synthetic_records(template, 700)
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(compact.compress(compact.encode(records)))
    trials, invocations = export.read_frames(export.read_lines([path]))
    configurations = trials.groupby(["tags.bench.dataset", "tags.bench.config_key"]).size()
    assert len(configurations) == 432 and set(configurations) == {2}  # round(700 / 432) seeds each (327 before the refined curves)
    assert trials["tags.bench.config_hash"].is_unique and trials["run_id"].is_unique
    assert set(invocations["params.seeds"]) == {"2"}
    assert path.stat().st_size < 1000 * len(trials)
    assert Path(TEMPLATE).name == "trials.jsonl.gz"
