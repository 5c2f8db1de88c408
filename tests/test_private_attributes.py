"""Several private attributes on the tabular datasets, their intersection, and FFB's protocol."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import removal_bench.datasets as registry
from removal_bench.core.errors import UserError
from removal_bench.core.params import resolve
from removal_bench.datasets.private import joint_label
from tests.conftest import SHARED_DATA, bench_command, quiet_env


def load(name: str, **given):
    cls = registry.get_dataset(name)
    return cls().load(resolve(name, cls.options, given), SHARED_DATA)


def test_joint_label_has_one_class_per_combination_in_train():
    sex = np.array([0, 0, 1, 1, 0, 1, 1])
    race = np.array([0, 1, 0, 1, 2, 2, 1])
    in_train = np.array([1, 1, 1, 1, 0, 0, 0], dtype=bool)  # (0,2) and (1,2) never occur in train
    labels, keep, names = joint_label({"sex": sex, "race": race}, ("sex", "race"), in_train)
    assert names == ["sex=0+race=0", "sex=0+race=1", "sex=1+race=0", "sex=1+race=1"]
    assert labels.tolist() == [0, 1, 2, 3, -1, -1, 3] and keep.tolist() == [1, 1, 1, 1, 0, 0, 1]


needs_tabular = pytest.mark.skipif(
    not all((SHARED_DATA / name).is_dir() for name in ("adult", "compas", "german")), reason="no shared tabular data"
)


@needs_tabular
@pytest.mark.parametrize("name, single, joint, classes", [
    ("adult", ("sex", "race"), "sex+race", (2, 5, 10)),
    ("compas", ("race", "sex"), "sex+race", (2, 2, 4)),
    ("german", ("sex", "age"), "sex+age", (2, 2, 4)),
])
def test_each_private_attribute_and_their_intersection(name, single, joint, classes):
    first, second = (load(name, private=p) for p in single)
    both = load(name, private=joint)
    assert (first.spec.num_private, second.spec.num_private, both.spec.num_private) == classes
    assert set(both.train.s.tolist()) == set(range(classes[2]))  # every class present in train
    # Removing a column shrinks x; keeping it restores the width.
    kept = load(name, private=joint, keep_private_column=True)
    assert kept.spec.input_shape[0] > both.spec.input_shape[0]


@needs_tabular
def test_ffb_protocol_matches_ffb_row_counts_and_split():
    adult = load("adult", protocol="ffb", private="sex")
    sizes = {name: len(split) for name, split in adult.splits().items()}
    assert sum(sizes.values()) == 45222  # FFB: adult.data + adult.test, rows with '?' dropped
    rest = -(-45222 * 6 // 10)  # train_test_split(test_size=0.6) rounds the held-out part up
    assert sizes["train"] == 45222 - rest and sizes["test"] == rest - -(-rest // 2)
    race = load("adult", protocol="ffb", private="race")
    assert sum(len(split) for split in race.splits().values()) < 45222  # White and Black only
    compas = load("compas", protocol="ffb", private="race")
    assert sum(len(split) for split in compas.splits().values()) == 6172  # every race kept
    german = load("german", protocol="ffb", private="age")
    assert len(german.train) == 400 and len(german.test) == 300
    # s = 1 for older than 25 (FFB's definition): about 81% of German's applicants.
    assert 0.75 < german.train.s.float().mean().item() < 0.87
    # The split is scikit-learn's, seeded by data_seed: another seed, other training rows.
    other = load("german", protocol="ffb", private="age", data_seed=1)
    assert not np.array_equal(german.train.x.numpy(), other.train.x.numpy())
    with pytest.raises(UserError, match="protocol=ffb"):
        load("adult", protocol="ffb", private="sex+race")


@pytest.mark.skipif(not (SHARED_DATA / "adult").is_dir(), reason="no shared copy of Adult")
def test_intersectional_run_end_to_end(tmp_path):
    """`bench run` on adult:private=sex+race: 10 private classes through training, attackers and MLflow."""
    command = bench_command() + [
        "run", "--methods", "vanilla", "--datasets", "adult:private=sex+race", "--seeds", "1", "--epochs", "1",
        "--executor", "serial", "--data-root", str(SHARED_DATA), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
        "--results-dir", str(tmp_path / "results"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=quiet_env(), timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("default")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("bench.kind") == "trial"]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    metrics = runs[0].data.metrics
    assert metrics["num_private"] == 10
    # Chance is 1/10 for a balanced accuracy over 10 classes; sex and race are far from hidden in Adult.
    assert 0.1 < metrics["leakage"] <= 1.0 and metrics["accuracy"] > 0.75
