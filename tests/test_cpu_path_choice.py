"""The fast CPU path (``precision=auto``) is chosen by timing the trial's own step: plain fp32, fp32 with
channels_last and the fused step, and bf16 with both where the CPU has native bf16. Neither pays everywhere (bf16 on
an Intel Xeon with avx512_bf16 and no AMX, channels_last for small_cnn on an AVX2 EPYC), so a trial is never slower
than fp32; the rates are kept per machine, and the trial itself is left as it would have been."""

from __future__ import annotations

import json

import torch

from removal_bench.core.encoders import build_encoder
from removal_bench.core.params import resolve
from removal_bench.core.recipes import Recipe
from removal_bench.methods.vanilla import Vanilla
from removal_bench.running import trial as trial_module
from removal_bench.running.trial import ComputePath, choose_by_timing, make_config, run_trial

NATIVE = ComputePath(True, True, "cpu, to be measured (native bf16: avx512_bf16)", measure=True)
PLAIN = ComputePath(False, True, "cpu, to be measured (no native bf16)", measure=True)


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
    chosen = choose_by_timing(NATIVE, method, *_batch(), {"case": "untouched"}, steps=1)
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())
    assert torch.equal(state, torch.get_rng_state())
    assert "measured fastest" in chosen.label and not chosen.measure
    rates = next(iter(json.loads((tmp_path / "paths.json").read_text()).values()))
    assert set(rates) == {"fp32", "fast-fp32", "bf16"} and min(rates.values()) > 0
    fastest = max(rates, key=rates.get)
    assert (chosen.bf16, chosen.channels_last, chosen.fused) == {
        "fp32": (False, False, False), "fast-fp32": (False, True, True), "bf16": (True, True, True)}[fastest]


def test_the_fastest_path_is_chosen_from_the_kept_rates(tmp_path, monkeypatch):
    """Once a machine has timed a kind of trial, the kept rates decide; bf16 is a candidate only where native."""
    monkeypatch.setenv("BENCH_PATH_CACHE", str(tmp_path / "paths.json"))
    method = _method()
    choose_by_timing(NATIVE, method, *_batch(), {"case": "kept"}, steps=1)
    cache = json.loads((tmp_path / "paths.json").read_text())
    (key,) = cache
    for rates, expect in (({"fp32": 1000.0, "fast-fp32": 1200.0, "bf16": 2000.0}, (True, True)),
                          ({"fp32": 1000.0, "fast-fp32": 1200.0, "bf16": 500.0}, (False, True)),
                          ({"fp32": 1000.0, "fast-fp32": 880.0, "bf16": 500.0}, (False, False)),
                          ({"fp32": 1000.0, "fast-fp32": 1000.0, "bf16": 1000.0}, (False, False))):  # ties: plainer
        cache[key] = rates
        (tmp_path / "paths.json").write_text(json.dumps(cache))
        chosen = choose_by_timing(NATIVE, method, *_batch(), {"case": "kept"}, steps=1)
        assert (chosen.bf16, chosen.channels_last) == expect, (rates, chosen.label)
    without = choose_by_timing(PLAIN, method, *_batch(), {"case": "no bf16"}, steps=1)
    assert not without.bf16
    assert set(json.loads((tmp_path / "paths.json").read_text()).values().__iter__().__next__()) >= {"fp32", "fast-fp32"}


def test_where_plain_fp32_is_fastest_an_auto_trial_computes_as_an_fp32_trial(tmp_path, monkeypatch):
    """The choice changes the arithmetic and nothing else: kept rates that make plain fp32 the fastest give an
    auto trial the very figures of a precision=fp32 trial; the choice is logged."""
    monkeypatch.setenv("BENCH_PATH_CACHE", str(tmp_path / "paths.json"))
    monkeypatch.delenv("BENCH_CPU_BF16", raising=False)
    config = make_config("vanilla", "colored_digits", {"colourings": 1}, seed=0, epochs=2, train={"precision": "auto"},
                         device="cpu")
    first = run_trial(config)  # times the candidates and keeps the rates
    assert "measured fastest" in first["compute_path"]
    cache = json.loads((tmp_path / "paths.json").read_text())
    for key in cache:
        cache[key] = {name: (2000.0 if name == "fp32" else 1000.0) for name in cache[key]}
    (tmp_path / "paths.json").write_text(json.dumps(cache))
    auto = run_trial(config)
    fp32 = run_trial(make_config("vanilla", "colored_digits", {"colourings": 1}, seed=0, epochs=2,
                                 train={"precision": "fp32"}, device="cpu"))
    assert auto["compute_path"].startswith("cpu fp32 (") and fp32["compute_path"] == "cpu fp32"
    for metric in ("accuracy", "val_accuracy", "leakage"):
        assert auto[metric] == fp32[metric]
    assert trial_module.path_cache_file() == tmp_path / "paths.json"
