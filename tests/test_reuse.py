"""Trainings shared within an invocation (removal_bench.running.trial.reuse_path): vanilla, LEACE and INLP train alike.

The reuse is only sound if those methods really train the same weights for the
same dataset, recipe and seed, and if a trial that loads a kept training ends
with exactly the figures it would have computed itself; both are asserted here,
then the driver's use of it (serial `bench run`, MLflow in a SQLite file).
"""

import tempfile

from mlflow import MlflowClient

from removal_bench.commands.cli import main
from removal_bench.running.trial import make_config, run_trial

DATA = {"n_train": 1200, "n_eval": 400}
EPOCHS = 3
# What a reused trial may report differently: its own wall times and the flag itself.
TIMING = {"train_seconds", "samples_per_second", "eval_seconds", "probe_sizes_seconds", "train_reused"}


def trial(method, hparams=None, seed=1, reuse_dir=None):
    config = make_config(method, "synthetic", DATA, hparams or {}, seed=seed, device="cpu", epochs=EPOCHS)
    config["reuse_dir"] = reuse_dir
    history = []
    metrics = run_trial(config, report=history.append)
    return metrics, history


def test_vanilla_leace_and_inlp_train_the_same_weights():
    """The premise of trains_as: per-epoch losses and validation figures equal to the last bit."""
    histories = {method: trial(method)[1] for method in ("vanilla", "leace", "inlp")}
    assert len(histories["vanilla"]) == EPOCHS
    assert histories["leace"] == histories["vanilla"]
    assert histories["inlp"] == histories["vanilla"]
    other_seed = trial("vanilla", seed=2)[1]
    assert other_seed != histories["vanilla"]  # the comparison can fail


def test_a_reused_training_ends_with_the_figures_of_its_own(tmp_path):
    fresh, fresh_history = trial("inlp", {"iterations": 3})
    first, _ = trial("inlp", {"iterations": 1}, reuse_dir=str(tmp_path))
    kept = list(tmp_path.iterdir())
    assert len(kept) == 1 and first["train_reused"] == 0
    reused, reused_history = trial("inlp", {"iterations": 3}, reuse_dir=str(tmp_path))
    assert reused["train_reused"] == 1 and fresh["train_reused"] == 0
    assert reused_history == fresh_history  # the epochs are reported again
    assert {k: v for k, v in reused.items() if k not in TIMING} == {k: v for k, v in fresh.items() if k not in TIMING}
    assert reused["leakage"] != first["leakage"]  # iterations act after training: the trials differ

    other_seed, _ = trial("vanilla", seed=2, reuse_dir=str(tmp_path))
    assert other_seed["train_reused"] == 0 and len(list(tmp_path.iterdir())) == 2
    irene, _ = trial("irene", reuse_dir=str(tmp_path))  # its training depends on its hyperparameters: never kept
    assert irene["train_reused"] == 0 and len(list(tmp_path.iterdir())) == 2


def test_bench_run_trains_once_per_seed_and_leaves_no_folder(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    status = main([
        "run", "--methods", "inlp,vanilla,irene", "--set", "inlp.iterations=1,2", "--datasets",
        "synthetic:n_train=1200:n_eval=400", "--seeds", "1", "--epochs", str(EPOCHS), "--executor", "serial",
        "--experiment", "reuse", "--tracking-uri", uri, "--results-dir", str(tmp_path / "results"),
        "--data-root", str(tmp_path), "--quiet",
    ])
    assert status == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("reuse").experiment_id], "tags.`bench.kind` = 'trial'")
    reused = sorted((r.data.tags["bench.method"], r.data.params.get("hp.iterations", "-"), r.data.metrics["train_reused"])
                    for r in runs)
    assert reused == [("inlp", "1", 0.0), ("inlp", "2", 1.0), ("irene", "-", 0.0), ("vanilla", "-", 1.0)]
    for run in runs:  # every trial's epochs reach MLflow, reused or not
        steps = {metric.step for metric in client.get_metric_history(run.info.run_id, "train_loss")}
        assert steps == set(range(1, EPOCHS + 1))
    assert not [path for path in scratch.iterdir() if path.name.startswith("bench-reuse-")]


def test_no_reuse_when_vanilla_reports_epoch_leakage(tmp_path):
    config = make_config("vanilla", "synthetic", DATA, seed=1, device="cpu", epochs=1)
    config.update(reuse_dir=str(tmp_path), epoch_leakage=True)
    assert run_trial(config)["train_reused"] == 0
    assert not list(tmp_path.iterdir())


def test_only_a_vouched_training_is_shared():
    """A subclass of vanilla that trains its own way must not load vanilla's weights."""
    from removal_bench import methods
    from removal_bench.methods.vanilla import Vanilla

    class OwnUpdate(Vanilla):
        def update(self, x, y, s):
            return super().update(x, y, s)

    class OwnUpdateVouched(OwnUpdate):
        trains_as = "vanilla"

    class Renamed(Vanilla):  # no training hook overridden: still vanilla's training
        description = "another name"

    assert methods.training_identity(OwnUpdate) is None
    assert methods.training_identity(OwnUpdateVouched) == "vanilla"
    assert methods.training_identity(Renamed) == "vanilla"
    assert {name for name in methods.REGISTRY if methods.training_identity(methods.get_method(name))} == {
        "vanilla", "leace", "inlp"}
