"""The fast CPU path chooses bf16 or fp32 by timing the trial's own step where the CPU has native bf16 (on an
Intel Xeon with avx512_bf16 and no AMX, bf16 matrix products run at half fp32's speed), keeps the rates per
machine, and leaves the trial itself as it would have been."""

from __future__ import annotations

import json

import torch

from removal_bench.core.encoders import build_encoder
from removal_bench.core.params import resolve
from removal_bench.core.recipes import Recipe
from removal_bench.methods.vanilla import Vanilla
from removal_bench.running import trial as trial_module
from removal_bench.running.trial import ComputePath, choose_by_timing, make_config, run_trial

CANDIDATE = ComputePath(True, True, "cpu bf16 autocast + channels_last + fused step (avx512_bf16)", measure=True)


def _method():
    torch.manual_seed(0)
    recipe = Recipe(optimizer="adam", lr=1e-3, precision="auto")
    return Vanilla(build_encoder("small_cnn", (3, 8, 8)), 10, 10, resolve("vanilla", Vanilla.hparams, {}), 1,
                   recipe=recipe).to(memory_format=torch.channels_last)


def _batch():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, 8, 8, generator=generator).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (32,), generator=generator), torch.randint(0, 10, (32,), generator=generator)


def test_the_timing_leaves_the_model_and_the_random_state_as_they_were(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_PATH_CACHE", str(tmp_path / "paths.json"))
    method = _method()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    state = torch.get_rng_state()
    chosen = choose_by_timing(CANDIDATE, method, *_batch(), {"case": "untouched"}, steps=1)
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())
    assert torch.equal(state, torch.get_rng_state())
    assert "measured" in chosen.label and chosen.channels_last and not chosen.measure
    rates = next(iter(json.loads((tmp_path / "paths.json").read_text()).values()))
    assert rates["bf16"] > 0 and rates["fp32"] > 0
    assert chosen.bf16 == (rates["bf16"] > rates["fp32"])


def test_the_faster_path_is_chosen_from_the_kept_rates(tmp_path, monkeypatch):
    """Once a machine has timed a kind of trial, the kept rates decide: bf16 only where it is faster."""
    monkeypatch.setenv("BENCH_PATH_CACHE", str(tmp_path / "paths.json"))
    method = _method()
    choose_by_timing(CANDIDATE, method, *_batch(), {"case": "kept"}, steps=1)
    cache = json.loads((tmp_path / "paths.json").read_text())
    (key,) = cache
    for bf16, fp32, expect_bf16 in ((2000.0, 1000.0, True), (500.0, 1000.0, False), (1000.0, 1000.0, False)):
        cache[key] = {"bf16": bf16, "fp32": fp32}
        (tmp_path / "paths.json").write_text(json.dumps(cache))
        chosen = choose_by_timing(CANDIDATE, method, *_batch(), {"case": "kept"}, steps=1)
        assert chosen.bf16 is expect_bf16, (bf16, fp32, chosen.label)
        assert f"{bf16 / fp32:.2f}x" in chosen.label


def test_a_trial_on_a_native_bf16_cpu_times_its_step_and_logs_the_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_PATH_CACHE", str(tmp_path / "paths.json"))
    monkeypatch.delenv("BENCH_CPU_BF16", raising=False)
    import removal_bench.core.hardware as hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda: "avx512_bf16")
    config = make_config("vanilla", "colored_digits", {"colourings": 1}, seed=0, epochs=1, train={"precision": "auto"},
                         device="cpu")
    metrics = run_trial(config)
    assert "measured" in metrics["compute_path"] and "avx512_bf16" in metrics["compute_path"]
    assert len(json.loads((tmp_path / "paths.json").read_text())) == 1
    again = run_trial(config)  # the kept rates: the same choice, and the same figures as the first run
    assert again["compute_path"] == metrics["compute_path"]
    assert again["accuracy"] == metrics["accuracy"]
    assert trial_module.path_cache_file() == tmp_path / "paths.json"
