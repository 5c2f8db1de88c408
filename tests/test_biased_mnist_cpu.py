"""Biased-MNIST's CPU setting (docs/BIASED_MNIST.md): the LeNet-style encoder, ``--recipe cpu``, its reduced flag,
and the GPU estimate that ``bench reproduce --device cuda`` prints before it starts."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from removal_bench.core.encoders import build_encoder
from removal_bench.core.errors import UserError
from removal_bench.core.recipes import CPU_BIASED_MNIST, IRENE_BIASED_MNIST
from removal_bench.running.trial import config_hash, make_config
from tests.conftest import SHARED_DATA

REFERENCE = {"rho": "0.99", "split": "reference"}


def test_lenet_is_two_5x5_convolutions_with_pooling_and_a_128_unit_layer():
    encoder = build_encoder("lenet", (3, 28, 28))
    convolutions = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convolutions] == [(3, 32, (5, 5)), (32, 64, (5, 5))]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in encoder.modules()) == 2
    assert sum(p.numel() for p in encoder.parameters()) == 455_232
    z = encoder(torch.randn(4, 3, 28, 28))
    assert z.shape == (4, 128) == (4, encoder.out_dim) and bool((z >= 0).all())  # ReLU features


def _reach(features: torch.nn.Module, side: int) -> int:
    """Height in pixels of the input that one feature at the centre of ``features``' map depends on."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 28, 28, requires_grad=True)
    out = features.eval()(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero()
    return int(rows.max() - rows.min() + 1)


def test_lenet_sees_most_of_a_digit_where_small_cnn_sees_a_7_pixel_patch():
    """The receptive field decides Biased-MNIST on a CPU: small_cnn's three 3x3 convolutions see
    7 x 7 pixels of a 28 x 28 digit before global pooling, lenet's two 5x5 convolutions and poolings 16 x 16."""
    assert _reach(build_encoder("lenet", (3, 28, 28)).features, 28) == 16
    assert _reach(build_encoder("small_cnn", (3, 28, 28)).features, 28) == 7


def test_recipe_cpu_is_biased_mnists_named_reduced_recipe():
    config = make_config("vanilla", "biased_mnist", REFERENCE, recipe="cpu")
    recipe = config["recipe"]
    assert (recipe["optimizer"], recipe["lr"], recipe["schedule"]) == ("adam", 1e-3, "none")
    assert (recipe["epochs"], recipe["batch_size"], recipe["encoder"]) == (3, 100, "lenet")
    assert recipe == CPU_BIASED_MNIST.as_dict() and "reduced" in CPU_BIASED_MNIST.citation
    full = make_config("vanilla", "biased_mnist", REFERENCE)
    assert full["recipe"] == IRENE_BIASED_MNIST.as_dict()  # the default is unchanged, so are its hashes
    assert config_hash(config) != config_hash(full)
    # the same recipe for every method: EnD under --recipe cpu trains as vanilla does
    assert make_config("end", "biased_mnist", REFERENCE, recipe="cpu")["recipe"] == recipe
    with pytest.raises(UserError, match="synthetic declares no such recipe"):
        make_config("vanilla", "synthetic", {}, recipe="cpu")


def test_bench_list_shows_the_cpu_recipe(capsys):
    from removal_bench.commands.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if "--recipe cpu " in line]
    assert len(lines) == 1 and "(reduced)" in lines[0] and "encoder lenet" in lines[0] and "3 epochs" in lines[0]
    converged = [line for line in out if "--recipe cpu-converged " in line]  # the converged setting
    assert len(converged) == 1 and "(reduced)" in converged[0] and "12 epochs" in converged[0]
    assert "x0.1 after epochs 8/11" in converged[0] and "precision auto" in converged[0]


def test_bench_run_with_a_recipe_no_dataset_declares_is_one_user_error(tmp_path, capsys):
    from removal_bench.commands.cli import main

    status = main(["run", "--methods", "vanilla", "--datasets", "synthetic", "--recipe", "cpu", "--executor", "serial",
                   "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert status != 0 and "declares no such recipe" in err and "Traceback" not in err


def test_reproduce_with_recipe_cpu_plans_lenet_trials_and_marks_every_row_reduced(tmp_path):
    import pandas as pd

    from removal_bench.running.reproduce import ReproduceRequest, load_tables, plan_rows, render, select_tables

    tables = select_tables(["rebias-table1", "end-table1"], load_tables())
    request = ReproduceRequest(tables=["rebias-table1", "end-table1"], recipe="cpu", data_root=str(tmp_path))
    rows = plan_rows(request, tables)
    # ReBias's rows: 3 seeds; EnD's: 3 seeds at each of its row's 3 grid points (chosen on validation)
    assert len(rows) == 8 and {row.table.id: len(row.trials) for row in rows} == {"rebias-table1": 3, "end-table1": 9}
    assert {t.config["recipe"]["encoder"] for row in rows for t in row.trials} == {"lenet"}
    assert all("recipe cpu" in row.changes for row in rows)
    # the reduced note appears beside our numbers: fake one finished run per trial
    records = [{"tags.bench.config_hash": t.key, "status": "FINISHED", "metrics.accuracy": 0.5, "run_id": f"r{i}{j}",
                "start_time": pd.Timestamp(0), "end_time": pd.Timestamp(0)}
               for i, row in enumerate(rows) for j, t in enumerate(row.trials)]
    for row in rows:
        row.missing = []
    text = render(rows, pd.DataFrame(records), request, "sqlite:////x/mlflow.db", 0.0)
    lines = [line for line in text.splitlines() if line.startswith("| rho")]
    assert len(lines) == 8 and all("**reduced: recipe cpu**" in line for line in lines)
    default = plan_rows(ReproduceRequest(tables=["rebias-table1"], data_root=str(tmp_path)), tables[:1])
    assert all(not row.changes for row in default)  # the published setting is not called reduced


def test_the_leaderboards_setting_line_calls_the_cpu_recipe_reduced():
    from removal_bench.reporting import summaries

    row = summaries.Row("biased_mnist", "vanilla", "vanilla", "k1", setting={
        "data.source": "mnist", "data.rho": "0.95", "data.split": "ours", "data.subsample": "1.0",
        "recipe.epochs": "3", "recipe.encoder": "lenet", "recipe.batch_size": "100", "recipe.optimizer": "adam"})
    text, reduced = summaries.dataset_setting("biased_mnist", [row])
    assert reduced and "encoder lenet (recipe: biased_mnist_cnn)" in text and "epochs 3 (recipe: 100)" in text


def _spec_and_size(config):
    return SimpleNamespace(epochs=80, encoder="biased_mnist_cnn"), 60_000


def test_gpu_estimate_counts_epochs_times_images_at_the_measured_h200_rate():
    from removal_bench.running.estimate import GPU_RATES, estimate

    paper = [make_config(method, "biased_mnist", {"rho": rho, "split": "reference"}, seed=seed)
             for method in ("vanilla", "end") for rho in ("0.99", "0.999") for seed in range(3)]
    result = estimate(paper, _spec_and_size)
    fast, loader = GPU_RATES["biased_mnist_cnn"]
    assert result.estimated == 12 and result.images == 12 * 100 * 60_000  # IRENE's 100 epochs, all 60,000 images
    assert math.isclose(result.seconds, result.images / fast) and math.isclose(result.seconds_loader, result.images / loader)
    assert 38 < result.seconds / 60 < 40  # 7.2e7 images at 30.5k img/s: about 39 min
    half = estimate(paper[:6], _spec_and_size)
    assert math.isclose(half.seconds * 2, result.seconds)
    text = "\n".join(result.lines())
    assert "H200" in text and "estimate" in text and f"{result.seconds / 60:.0f} min" in text
    # an encoder without a measured GPU rate is named, not guessed
    cheap = estimate([make_config("vanilla", "biased_mnist", REFERENCE, recipe="cpu")], _spec_and_size)
    assert cheap.estimated == 0 and cheap.unknown == {"lenet": 1} and "lenet not estimated" in cheap.lines()[0]


def test_the_estimate_is_printed_only_for_trials_on_a_gpu():
    from removal_bench.running.reproduce import on_gpu

    assert on_gpu("cuda", None) and on_gpu("cuda:0", 1.0)
    assert not on_gpu("cpu", None)
    assert on_gpu("auto", None) == torch.cuda.is_available() and not on_gpu("auto", 0.0)


@pytest.mark.skipif(not all((SHARED_DATA / name).is_dir() for name in ("adult", "compas", "german")),
                    reason="no shared copy of Adult, COMPAS and German (../shared/data)")
def test_report_only_writes_the_file_from_the_store_and_runs_nothing(tmp_path, capsys):
    """How one writes the file from the shared store after stopping a long run: no trial starts, the
    rows whose seeds are not there say so; without the experiment it is one clear error."""
    import mlflow

    from removal_bench.commands.cli import main

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["reproduce", "ffb-table4", "--report-only", "--executor", "serial", "--data-root", str(SHARED_DATA),
              "--tracking-uri", uri, "--output", str(tmp_path / "out.md")]
    assert main(common) != 0 and "no experiment 'reproduce'" in capsys.readouterr().err
    assert not (tmp_path / "out.md").exists()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("reproduce")
    assert main(common) == 0
    rows = [line for line in (tmp_path / "out.md").read_text().splitlines() if line.startswith(("| Adult", "| COMPAS", "| German"))]
    assert len(rows) == 12 and all("| 0/10 |" in row and "not run" in row and "missing: 10 seeds" in row for row in rows)
    assert mlflow.search_runs(experiment_ids=[experiment]).empty  # nothing ran, not even an invocation run
