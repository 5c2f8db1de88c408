"""The authors' form as options (docs/METHODS.md): a bounded bottleneck, a task head on z/||z||, and both left out
of the identity of every configuration that does not set them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from removal_bench.core.encoders import ENCODERS, build_encoder
from removal_bench.core.errors import UserError
from removal_bench.core.recipes import Recipe, apply_overrides
from removal_bench.methods.base import NormalisedLinear
from removal_bench.running.trial import config_hash, make_config, run_trial

SHAPES = {"mlp": (20,), "ffb_mlp": (20,), "small_cnn": (3, 8, 8), "lenet": (3, 28, 28), "biased_mnist_cnn": (3, 28, 28),
          "rebias_cnn": (3, 28, 28), "resnet18": (3, 32, 32)}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_a_bounded_bottleneck_stays_in_minus_one_one(name):
    torch.manual_seed(0)
    shape = SHAPES[name]
    bounded = build_encoder(name, shape, "bounded").eval()
    with torch.no_grad():
        for _ in range(3):  # a few training batches set the batch norms' running statistics, then eval
            bounded.train()(torch.randn(16, *shape) * 5)
        z = bounded.eval()(torch.randn(16, *shape) * 50)
    assert z.shape[1] == bounded.out_dim
    assert float(z.abs().max()) <= 1.0
    assert float(z.min()) < 0  # a Tanh, not a ReLU: both signs


@pytest.mark.parametrize("name", ["mlp", "lenet", "ffb_mlp"])
def test_the_default_bottleneck_is_not_bounded(name):
    """The check above could fail: the common encoders' ReLU bottlenecks leave [-1, 1] on large inputs."""
    torch.manual_seed(0)
    shape = SHAPES[name]
    encoder = build_encoder(name, shape).eval()
    with torch.no_grad():
        z = encoder(torch.randn(16, *shape) * 50)
    assert float(z.max()) > 1.0 and float(z.min()) >= 0.0


def test_a_bounded_bottleneck_keeps_the_encoders_weights_names():
    default, bounded = build_encoder("lenet", (3, 28, 28)), build_encoder("lenet", (3, 28, 28), "bounded")
    extra = set(bounded.state_dict()) - set(default.state_dict())
    assert set(default.state_dict()) <= set(bounded.state_dict())
    assert extra and all(key.startswith("fc.1.") for key in extra)  # only the new batch norm


def test_the_normalised_head_reads_only_the_direction_of_z():
    torch.manual_seed(0)
    head, plain = NormalisedLinear(8, 3), torch.nn.Linear(8, 3)
    z = torch.randn(5, 8)
    assert torch.allclose(head(z), head(7.5 * z), atol=1e-6)
    assert not torch.allclose(plain(z), plain(7.5 * z), atol=1e-3)
    assert set(head.state_dict()) == {"weight", "bias"}  # a linear layer's: models load alike


def test_the_form_fields_are_checked():
    assert apply_overrides(Recipe(), {"bottleneck": "bounded", "head": "normalised"}).describe().count("Tanh") == 1
    with pytest.raises(UserError, match="recipe.bottleneck"):
        apply_overrides(Recipe(), {"bottleneck": "tanh"})
    with pytest.raises(UserError, match="recipe.head"):
        apply_overrides(Recipe(), {"head": "cosine"})


def test_earlier_configurations_keep_their_identity():
    """At their defaults the new fields (and adversarial debiasing's projection) are out of the config hash."""
    for method in ("vanilla", "end", "adv_debias"):
        config = make_config(method, "synthetic")
        old = {**config, "recipe": {k: v for k, v in config["recipe"].items() if k not in ("bottleneck", "head")}}
        assert config_hash(config) == config_hash(old)
        bounded = make_config(method, "synthetic", train={"bottleneck": "bounded"})
        assert config_hash(bounded) != config_hash(config)
    adv = make_config("adv_debias", "synthetic")
    assert "projection" not in adv["hparams"]
    per_tensor = make_config("adv_debias", "synthetic", hparams={"projection": "per_tensor"})
    assert per_tensor["hparams"]["projection"] == "per_tensor" and config_hash(per_tensor) != config_hash(adv)


def test_a_trial_in_the_authors_form_trains_and_its_bottleneck_is_bounded(tmp_path):
    path = tmp_path / "z.npz"
    config = make_config("end", "synthetic", {"n_train": 600, "n_eval": 400}, seed=0, epochs=3,
                         train={"bottleneck": "bounded", "head": "normalised"})
    config["embeddings_path"] = str(path)
    metrics = run_trial(config)
    z = np.load(path)["z_test"]
    assert np.abs(z).max() <= 1.0 and z.min() < 0
    assert metrics["accuracy"] > metrics["majority_accuracy"] + 0.1  # it learns the task


def test_a_leaderboard_section_ranks_one_model_form():
    import pandas as pd

    from removal_bench.reporting.leaderboard import refuse_mixed_forms

    common = {"tags.bench.dataset": "synthetic", "params.recipe.bottleneck": "default", "params.recipe.head": "linear"}
    older = {"tags.bench.dataset": "synthetic"}  # logged before the fields existed: the common form
    authors = {"tags.bench.dataset": "synthetic", "params.recipe.bottleneck": "bounded", "params.recipe.head": "normalised"}
    elsewhere = {**authors, "tags.bench.dataset": "adult"}
    refuse_mixed_forms(pd.DataFrame([common, older, elsewhere]))  # one form per dataset: ranked
    refuse_mixed_forms(pd.DataFrame([older, older]))  # a table from before the fields
    with pytest.raises(UserError, match=r"synthetic: its trials ran in 2 model forms .*bottleneck=bounded, head=normalised \(1 trials\)"):
        refuse_mixed_forms(pd.DataFrame([common, older, authors]))
