"""Training recipes: schedules step where their references step, overrides are checked, recipes reach the hash."""

import math

import pytest
import torch

from removal_bench.core.errors import UserError
from removal_bench.core.recipes import (
    IRENE_BIASED_MNIST, IRENE_CELEBA, Recipe, apply_overrides, parse_train,
)
from removal_bench.running.trial import config_hash, make_config, run_trial

SMALL = {"n_train": 400, "n_eval": 200}


def rates(config):
    epochs = []
    metrics = run_trial(config, report=epochs.append)
    return [e["lr"] for e in epochs], metrics


def test_multistep_schedule_steps_after_the_reference_epochs():
    """IRENE's MultiStepLR([40, 60]) is stepped after each epoch: epochs 1-40 at 0.1, 41-60 at 0.01, then 0.001.

    Scaled down here to milestones 2/4 over 5 epochs: the rate each epoch trains with is 0.1, 0.1, 0.01, 0.01, 0.001.
    """
    config = make_config("vanilla", "synthetic", SMALL, train={"schedule": "multistep", "milestones": "2/4",
                                                               "lr": "0.1", "epochs": "5"})
    lrs, _ = rates(config)
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_step_and_cosine_schedules():
    lrs, _ = rates(make_config("vanilla", "synthetic", SMALL, train={"schedule": "step", "step_size": "2", "gamma": "0.5",
                                                                    "lr": "0.04", "epochs": "4"}))
    assert lrs == pytest.approx([0.04, 0.04, 0.02, 0.02])
    lrs, _ = rates(make_config("vanilla", "synthetic", SMALL, train={"schedule": "cosine", "lr": "0.04", "epochs": "4"}))
    assert lrs[0] == pytest.approx(0.04) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[2] == pytest.approx(0.04 * (1 + math.cos(math.pi * 2 / 4)) / 2)


def test_plateau_cuts_the_rate_and_the_stop_rule_ends_training_early():
    """A relative threshold of 0.9 makes every epoch after the first "no improvement": patience 0 then cuts the
    rate after each of them, and IRENE's rule (stop once lr < 1e-3) ends training after the epoch at 0.001,
    as its code does (0.1, 0.01 and 0.001 are trained; 1e-4 is not)."""
    config = make_config("vanilla", "synthetic", SMALL, train={
        "schedule": "plateau", "patience": "0", "cooldown": "0", "threshold": "0.9", "min_lr": "1e-3",
        "lr": "0.1", "epochs": "10"})
    lrs, metrics = rates(config)
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert metrics["stopped_early"] == 1 and metrics["epochs"] == 4 and metrics["planned_epochs"] == 10
    assert metrics["final_lr"] == pytest.approx(1e-4)


def counted_batches(monkeypatch):
    """The size of every batch vanilla's optimiser steps on, in order."""
    from removal_bench.methods.vanilla import Vanilla

    sizes = []
    update = Vanilla.update

    def counting(self, x, y, s):
        sizes.append(len(x))
        return update(self, x, y, s)

    monkeypatch.setattr(Vanilla, "update", counting)
    return sizes


def test_ffb_training_counts_steps_decays_per_step_and_drops_the_last_partial_batch(monkeypatch):
    """FFB's loop (ahxt/fair_fairness_benchmark@394f020 src/ffb_tabular_erm.py l. 206-231): an infinite loader with
    drop_last=True, cut after num_training_steps, StepLR stepped after every step. Scaled down: 400 rows, batch 32
    (12 whole batches, 16 rows left over each pass), 30 steps, x0.1 every 10 steps."""
    sizes = counted_batches(monkeypatch)
    train = {"optimizer": "adam", "lr": "0.01", "schedule": "step", "step_size": "10", "gamma": "0.1",
             "schedule_unit": "step", "max_steps": "30", "batch_size": "32"}
    lrs, metrics = rates(make_config("vanilla", "synthetic", SMALL, train={**train, "drop_last": "true"}))
    assert sizes == [32] * 30  # 30 optimiser steps, never a partial batch
    assert metrics["epochs"] == 3  # 12 + 12 + 6 steps
    assert lrs == pytest.approx([0.01, 0.001, 1e-4])  # the rate each epoch starts with: after 0, 12 and 24 steps
    assert metrics["final_lr"] == pytest.approx(1e-5)  # after 30 steps: three decays
    sizes.clear()
    rates(make_config("vanilla", "synthetic", SMALL, train=train))  # kept: 13 batches a pass, the 13th of 16 rows
    assert len(sizes) == 30 and sizes[12] == 16 and sizes.count(16) == 2


def test_drop_last_enters_the_hash_only_when_set_and_a_batch_larger_than_the_data_is_refused():
    plain = make_config("vanilla", "synthetic", SMALL)
    assert "drop_last" in plain["recipe"] and plain["recipe"]["drop_last"] is False
    explicit = make_config("vanilla", "synthetic", SMALL, train={"drop_last": "false"})
    dropped = make_config("vanilla", "synthetic", SMALL, train={"drop_last": "true"})
    assert config_hash(plain) == config_hash(explicit) != config_hash(dropped)
    with pytest.raises(UserError, match="expected true or false"):
        apply_overrides(Recipe(), {"drop_last": "maybe"})
    with pytest.raises(UserError, match="no whole batch of 1000"):
        run_trial(make_config("vanilla", "synthetic", SMALL, train={"drop_last": "true", "batch_size": "1000"}))


def test_ffb_recipes_are_ffbs_code_and_its_table_7():
    from removal_bench.core.encoders import FFBMLP
    from removal_bench.datasets.ffb import RECIPES

    assert {name: recipe.batch_size for name, recipe in RECIPES.items()} == {"adult": 1024, "compas": 32, "german": 32}
    for recipe in RECIPES.values():
        assert (recipe.optimizer, recipe.lr, recipe.schedule, recipe.step_size, recipe.gamma) == ("adam", 0.01, "step", 50, 0.1)
        assert (recipe.schedule_unit, recipe.max_steps, recipe.drop_last, recipe.encoder) == ("step", 150, True, "ffb_mlp")
    dropouts = [m.p for m in FFBMLP((10,)).modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.5] * 3  # F.dropout without p (src/networks.py l. 77), not the 0.2 FFB stores


def test_irene_recipes_are_the_reference_code():
    assert (IRENE_BIASED_MNIST.optimizer, IRENE_BIASED_MNIST.lr, IRENE_BIASED_MNIST.momentum,
            IRENE_BIASED_MNIST.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    assert IRENE_BIASED_MNIST.milestones == (40, 60) and IRENE_BIASED_MNIST.epochs == 100
    assert IRENE_BIASED_MNIST.batch_size == 100
    assert (IRENE_CELEBA.schedule, IRENE_CELEBA.patience, IRENE_CELEBA.cooldown, IRENE_CELEBA.threshold,
            IRENE_CELEBA.min_lr, IRENE_CELEBA.monitor) == ("plateau", 10, 5, 0.0, 1e-3, "val_loss")
    optimizer = IRENE_BIASED_MNIST.build_optimizer([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    adam = apply_overrides(Recipe(), {"optimizer": "adam", "beta2": "0.99"}).build_optimizer(
        [torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.9, 0.99)


@pytest.mark.parametrize("overrides, fragment", [
    ({"nope": "1"}, "has no field 'nope'"),
    ({"lr": "fast"}, "recipe.lr: expected a number"),
    ({"lr": "0"}, "recipe.lr: must be above 0"),
    ({"optimizer": "rmsprop"}, "not one of sgd, adam"),
    ({"schedule": "multistep"}, "needs recipe.milestones"),
    ({"milestones": "60/40"}, "increasing epochs"),
    ({"epochs": "2.5"}, "expected a whole number"),
    ({"encoder": "vgg"}, "unknown encoder 'vgg'"),
    ({"momentum": "1.5"}, "below 1"),
])
def test_bad_overrides_are_one_clear_user_error(overrides, fragment):
    with pytest.raises(UserError, match=fragment):
        apply_overrides(Recipe(), overrides)


def test_parse_train_lists_values_and_rejects_malformed_items():
    assert parse_train(["lr=0.01,0.1", "schedule=cosine"]) == {"lr": ["0.01", "0.1"], "schedule": ["cosine"]}
    for bad, fragment in ((["lr"], "malformed"), (["lr=0.1,"], "empty value"), (["lr=1", "lr=2"], "twice")):
        with pytest.raises(UserError, match=fragment):
            parse_train(bad)


def test_the_recipe_is_part_of_the_identity_but_its_citation_is_not():
    base = make_config("irene", "synthetic", SMALL, seed=0)
    assert base["recipe"]["lr"] == 0.05 and base["recipe"]["epochs"] == 20  # synthetic's own cheap recipe
    assert config_hash(base) != config_hash(make_config("irene", "synthetic", SMALL, seed=0, train={"lr": "0.01"}))
    assert config_hash(base) != config_hash(make_config("irene", "synthetic", SMALL, seed=0, epochs=3))
    cited = dict(base, recipe=dict(base["recipe"], citation="another wording"))
    assert config_hash(cited) == config_hash(base)


def test_reference_source_uses_the_methods_paper_recipe_where_it_declares_one():
    mnist = {"rho": "0.99"}
    ours = make_config("end", "biased_mnist", mnist)
    theirs = make_config("end", "biased_mnist", mnist, recipe="reference")
    assert ours["recipe"]["optimizer"] == "sgd" and ours["recipe"]["milestones"] == [40, 60]  # the dataset's (IRENE)
    assert (theirs["recipe"]["optimizer"], theirs["recipe"]["lr"], theirs["recipe"]["batch_size"]) == ("adam", 1e-3, 256)
    # a method without a paper recipe for the dataset keeps the dataset's
    assert make_config("grl", "biased_mnist", mnist, recipe="reference")["recipe"] == ours["recipe"]
    with pytest.raises(UserError, match="unknown recipe source"):
        make_config("end", "biased_mnist", mnist, recipe="paper")


def test_a_run_logs_the_recipe_as_params_and_the_rate_per_epoch(tmp_path):
    import mlflow

    from removal_bench.commands.cli import main

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    assert main(["run", "--methods", "vanilla", "--datasets", "synthetic:n_train=300:n_eval=200", "--seeds", "1",
                 "--executor", "serial", "--tracking-uri", uri, "--experiment", "recipes",
                 "--results-dir", str(tmp_path / "results"),
                 "--train", "schedule=step", "--train", "step_size=1", "--train", "gamma=0.5",
                 "--train", "epochs=3", "--train", "lr=0.08"]) == 0
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("recipes")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("bench.kind") == "trial"]
    assert len(runs) == 1
    params = runs[0].data.params
    assert (params["recipe.schedule"], params["recipe.lr"], params["recipe.epochs"]) == ("step", "0.08", "3")
    assert "recipe.citation" in params
    history = client.get_metric_history(runs[0].info.run_id, "lr")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([0.08, 0.04, 0.02])


def test_unknown_train_field_fails_before_anything_runs(tmp_path, capsys):
    from removal_bench.commands.cli import main

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    assert main(["run", "--methods", "vanilla", "--datasets", "synthetic", "--executor", "serial",
                 "--tracking-uri", uri, "--train", "learning_rate=0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no field 'learning_rate'" in err[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_horizontal_flip_mirrors_about_half_of_the_batch():
    from removal_bench.running.trial import horizontal_flip

    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4).repeat(400, 1, 1, 1)
    flipped = horizontal_flip(x, torch.Generator().manual_seed(0))
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert ((flipped == x).flatten(1).all(1) | mirrored).all()
    assert 150 < int(mirrored.sum()) < 250
