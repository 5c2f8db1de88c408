"""Fast checks of the plugin and trial-table machinery, without Ray or MLflow (the end-to-end path:
``tests/test_plugins.py``): how texts are read as import paths, the protocol fingerprint, the export's
round trip to the reports' frame, and ``--with``'s refusals."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from removal_bench.core.errors import UserError
from removal_bench.reporting import export
from removal_bench.reporting.summaries import summarise
from removal_bench.running import plugins, protocol
from removal_bench.running.trial import config_hash, make_config


@pytest.mark.parametrize("text, expected", [
    ("pkg.mod:Data", ("pkg.mod:Data", [])),
    ("pkg.mod:Data:rho=0.9:n=3", ("pkg.mod:Data", ["rho=0.9", "n=3"])),
    ("adult:private=sex", ("adult", ["private=sex"])),
    ("colored_digits:rho", ("colored_digits", ["rho"])),  # a registered name: a malformed option, not a path
    ("synthetic", ("synthetic", [])),
])
def test_dataset_texts_split_into_name_or_path_and_options(text, expected):
    assert plugins.split_dataset_text(text) == expected


def test_import_paths_are_told_from_names():
    assert plugins.is_import_path("my_module:MyMethod")
    assert not plugins.is_import_path("irene")
    assert not plugins.is_import_path("a=b:c")


def test_a_plugin_subclass_must_declare_its_own_name_and_description():
    from tests.plugin_samples import NoDescription, NoUpdate, StrengthNotDeclared

    with pytest.raises(UserError, match="has no description of its own"):
        plugins.check_method(NoDescription, "x")
    with pytest.raises(UserError, match="does not implement update"):
        plugins.check_method(NoUpdate, "x")
    with pytest.raises(UserError, match="declares strength 'gamma'"):
        plugins.check_method(StrengthNotDeclared, "x")


def test_built_in_configs_carry_no_plugins_and_keep_their_hash():
    config = make_config("irene", "synthetic", seed=1)
    assert config["plugins"] == {}
    without = {k: v for k, v in config.items() if k != "plugins"}
    assert config_hash(config) == config_hash(without)


def test_the_fingerprint_moves_with_the_protocol_and_not_with_the_method_or_seed():
    base = make_config("vanilla", "synthetic", {"n_train": 300}, seed=0)
    same = make_config("irene", "synthetic", {"n_train": 300}, {"gamma": 3.0}, seed=4)
    other = make_config("vanilla", "synthetic", {"n_train": 400}, seed=0)
    shorter = make_config("vanilla", "synthetic", {"n_train": 300}, seed=0, epochs=3)
    fingerprint = protocol.tags(base)["bench.protocol"]
    assert protocol.tags(same)["bench.protocol"] == fingerprint
    assert protocol.tags(other)["bench.protocol"] != fingerprint
    assert protocol.tags(shorter)["bench.protocol"] != fingerprint
    assert protocol.differences(protocol.protocol_parts(other), protocol.protocol_parts(base)) == \
        ["dataset_options.n_train 400 here, 300 in the file"]
    assert json.loads(protocol.tags(same)["bench.identity"])["hparams"]["gamma"] == 3.0


def _run(method: str, seed: int, config_key: str, accuracy: float, leakage: float, dataset_options: dict | None = None,
         start: int = 0) -> dict:
    config = make_config(method, "synthetic", dataset_options or {"n_train": 300}, seed=seed)
    tags = protocol.tags(config)
    return {
        "run_id": f"{method}-{config_key}-{seed}", "status": "FINISHED",
        "start_time": pd.Timestamp(1_700_000_000_000 + start, unit="ms", tz="UTC"),
        "end_time": pd.Timestamp(1_700_000_005_000 + start, unit="ms", tz="UTC"),
        "tags.bench.kind": "trial", "tags.bench.method": method, "tags.bench.dataset": "synthetic",
        "tags.bench.seed": str(seed), "tags.bench.label": f"{method}({config_key})", "tags.bench.config_key": config_key,
        "tags.bench.config_hash": f"{config_key}-{seed}", "tags.leakage_attacker": "mlp",
        **{f"tags.{k}": v for k, v in tags.items()},
        "params.hp.x": config_key, "params.data.n_train": str((dataset_options or {"n_train": 300})["n_train"]),
        "metrics.accuracy": accuracy, "metrics.val_accuracy": accuracy, "metrics.leakage": leakage,
        "metrics.val_leakage": leakage, "metrics.leakage_norm": 2 * leakage - 1, "metrics.num_classes": 2.0,
        "metrics.num_private": 2.0, "metrics.majority_accuracy": 0.5,
    }


def _frame(method: str, configurations: int, seeds: int, **kwargs) -> pd.DataFrame:
    rows = [_run(method, seed, f"{method}{c}", 0.7 + 0.01 * c + 0.001 * seed, 0.9 - 0.05 * c, start=seed + 10 * c, **kwargs)
            for c in range(configurations) for seed in range(seeds)]
    return pd.DataFrame(rows)


def test_the_export_reads_back_into_the_frame_that_the_reports_summarise():
    frame = pd.concat([_frame("vanilla", 1, 3), _frame("irene", 3, 3)], ignore_index=True)
    text = export.export_text(frame, pd.DataFrame(), "committed")
    assert len(text.splitlines()) == 12
    back, _ = export.read_frames([json.loads(line) for line in text.splitlines()])
    ours, theirs = summarise(frame), summarise(back)
    for a, b in zip(ours["synthetic"], theirs["synthetic"]):
        assert (a.label, a.seeds, a.stats, a.per_seed, a.hparams, a.setting, a.first_start, a.pareto) == \
               (b.label, b.seeds, b.stats, b.per_seed, b.hparams, b.setting, b.first_start, b.pareto)


def test_with_refuses_other_seeds_other_strength_counts_and_other_protocols():
    committed = pd.concat([_frame("vanilla", 1, 3), _frame("irene", 4, 3)], ignore_index=True)
    export.comparable(_frame("grl", 4, 3), committed)  # the same protocol, seeds and curve length: accepted
    with pytest.raises(UserError, match=r"seeds 0,1 here, 0,1,2 in the trial table \(--seeds 3\)"):
        export.comparable(_frame("grl", 4, 2), committed)
    with pytest.raises(UserError, match=r"grl walked 2 strengths, the trial table's curves 4"):
        export.comparable(_frame("grl", 2, 3), committed)
    with pytest.raises(UserError, match="the protocol differs: dataset_options.n_train 500 here, 300 in the file"):
        export.comparable(_frame("grl", 4, 3, dataset_options={"n_train": 500}), committed)
    stale = committed.drop(columns=["tags.bench.protocol", "tags.bench.protocol_parts"])
    with pytest.raises(UserError, match="carry no protocol fingerprint"):
        export.comparable(_frame("grl", 4, 3), stale)


def _logged_with_recipe(frame: pd.DataFrame, **fields) -> pd.DataFrame:
    """``frame``'s trials as if logged with these recipe fields in their parts (and their fingerprint from them)."""
    frame = frame.copy()
    parts = [json.loads(text) for text in frame["tags.bench.protocol_parts"]]
    for part in parts:
        part["recipe"].update(fields)
    frame["tags.bench.protocol_parts"] = [protocol.canonical(p) for p in parts]
    frame["tags.bench.protocol"] = [protocol.fingerprint(p) for p in parts]
    return frame


def test_a_late_recipe_field_at_its_default_does_not_split_the_protocol():
    """1956a69 logged ``precision: fp32`` in every trial's parts, which moved every fingerprint: ``--with`` the
    committed table refused every new run ("recipe.precision fp32 here, (absent) in the file"). Compared as
    written now (a late field only where it differs from its default), fp32 ranks with the older trials; bf16
    is another protocol, named."""
    committed = pd.concat([_frame("vanilla", 1, 3), _frame("irene", 4, 3)], ignore_index=True)
    assert "precision" not in json.loads(_frame("grl", 1, 1)["tags.bench.protocol_parts"][0])["recipe"]
    export.comparable(_logged_with_recipe(_frame("grl", 4, 3), precision="fp32"), committed)
    export.comparable(_frame("grl", 4, 3), _logged_with_recipe(committed, precision="fp32"))
    with pytest.raises(UserError, match="the protocol differs: recipe.precision bf16 here, .absent. in the file"):
        export.comparable(_logged_with_recipe(_frame("grl", 4, 3), precision="bf16"), committed)


def test_a_table_that_is_not_ours_is_refused_in_one_line(tmp_path):
    for content, fragment in (("{}\n", "is not a trial or invocation"), ("", "hold no trials"),
                              ('{"kind": "trial", "schema": 99}\n', "of schema 1")):
        path = tmp_path / "table.jsonl"
        path.write_text(content)
        with pytest.raises(UserError, match=fragment):
            export.read_lines([path])
