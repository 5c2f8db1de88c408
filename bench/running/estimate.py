"""How long planned trials will train on a GPU, from measured GPU rates: printed before a long run starts.

The rates are the GPU benchmark's reference figures (``removal_bench.benchmarks.gpu.ANCHORS``), measured on one
NVIDIA H200 with torch 2.11: the reference SimpleConvNet (``biased_mnist_cnn``; ReBias's ``rebias_cnn`` has
the same layers) at batch 100 trains 30.5k img/s with the data resident on the GPU, as
:func:`removal_bench.running.trial.run_trial` keeps it, and 18.8k img/s through a DataLoader. No other
encoder has a measured GPU rate here, so its trials are counted as not estimated rather than guessed.

The estimate is training only (epochs x training images / rate, one trial at a time on one GPU, every
method at vanilla's rate: EnD's and HSIC's extra terms on a batch of 128-d features are small beside the
convolutions); evaluation (the attackers, on the CPU) and data loading come on top. Another GPU, another
torch, or GPUs shared between trials give other times: it is an estimate, and says so.

On a CPU the same is printed from the one-thread training rates that ``python -m
removal_bench.benchmarks cpu-paths`` measured (:data:`CPU_RATES`): the fp32 path for ``precision=fp32``, the
fast path (bf16 autocast, channels_last, fused step) where the recipe asks for it and the CPU has native
bf16, divided among the trials that run at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

GPU_CARD = "NVIDIA H200 (torch 2.11)"
# encoder -> (img/s with the data on the GPU, img/s through a DataLoader), batch 100, fp32
GPU_RATES: dict[str, tuple[float, float]] = {
    "biased_mnist_cnn": (30.5e3, 18.8e3),
    "rebias_cnn": (30.5e3, 18.8e3),
}
RATE_BATCH = 100
CPU_CARD = "AMD EPYC core with avx512_bf16 (torch 2.14.1, one thread; python -m removal_bench.benchmarks cpu-paths)"
# encoder -> (fp32 img/s, fast-path img/s), batch 100, one thread, 3 x 28 x 28 (docs/BIASED_MNIST.md, "Speed: the fast CPU path")
CPU_RATES: dict[str, tuple[float, float]] = {
    "lenet": (1115.0, 2392.0),
    "small_cnn": (591.0, 964.0),
    "biased_mnist_cnn": (40.0, 74.0),
    "rebias_cnn": (43.0, 87.0),
}


@dataclass
class Estimate:
    seconds: float = 0.0  # at the resident-data rate
    seconds_loader: float = 0.0  # at the DataLoader rate
    images: int = 0  # training images seen, over every estimated trial
    estimated: int = 0  # trials with a measured rate
    unknown: dict[str, int] = field(default_factory=dict)  # encoder -> trials without one

    def lines(self) -> list[str]:
        out = []
        if self.estimated:
            out.append(
                f"estimate: {self.estimated} trials train {self.images:,} images: about {self.seconds / 60:.0f} min "
                f"on one {GPU_CARD} at its measured SimpleConvNet rate ({GPU_RATES['biased_mnist_cnn'][0] / 1e3:.1f}k "
                f"img/s, data on the GPU), {self.seconds_loader / 60:.0f} min at its DataLoader rate "
                f"({GPU_RATES['biased_mnist_cnn'][1] / 1e3:.1f}k img/s); training only, one trial at a time; "
                "evaluation and other GPUs differ: an estimate, not a measurement here"
            )
        for encoder, count in sorted(self.unknown.items()):
            out.append(f"estimate: {count} trials with encoder {encoder} not estimated (no measured GPU rate)")
        return out


def training_images(config: dict[str, Any], spec_and_size: Callable[[dict[str, Any]], tuple[Any, int]]) -> tuple[str, int, int]:
    """(encoder, epochs, training images) of one trial; ``spec_and_size`` gives its DatasetSpec and train size."""
    spec, size = spec_and_size(config)
    recipe = config.get("recipe") or {}
    epochs = recipe.get("epochs") if recipe.get("epochs") is not None else spec.epochs
    encoder = recipe.get("encoder") or spec.encoder
    return encoder, int(epochs), int(size)


def _tally(configs: Iterable[dict[str, Any]], spec_and_size: Callable[[dict[str, Any]], tuple[Any, int]],
           rates_for: Callable[[dict[str, Any], str], tuple[float, float] | None]) -> Estimate:
    """Training images and seconds of ``configs``: ``rates_for(config, encoder)`` gives the trial's
    (rate, DataLoader rate) in img/s, or None where its encoder has no measured rate (counted in ``unknown``)."""
    result = Estimate()
    for config in configs:
        encoder, epochs, size = training_images(config, spec_and_size)
        rates = rates_for(config, encoder)
        if rates is None:
            result.unknown[encoder] = result.unknown.get(encoder, 0) + 1
            continue
        images = epochs * size
        result.images += images
        result.seconds += images / rates[0]
        result.seconds_loader += images / rates[1]
        result.estimated += 1
    return result


def estimate(configs: Iterable[dict[str, Any]], spec_and_size: Callable[[dict[str, Any]], tuple[Any, int]]) -> Estimate:
    """Training time of ``configs`` on one GPU at the measured rates (see the module's docstring)."""
    return _tally(configs, spec_and_size, lambda config, encoder: GPU_RATES.get(encoder))


def estimate_cpu(configs: Iterable[dict[str, Any]], spec_and_size: Callable[[dict[str, Any]], tuple[Any, int]],
                 concurrent: int = 1) -> list[str]:
    """Lines estimating the training time of ``configs`` on CPU threads at the measured one-thread rates."""
    from removal_bench.core.hardware import native_bf16

    fast_here = native_bf16() is not None

    def rates_for(config: dict[str, Any], encoder: str) -> tuple[float, float] | None:
        rates = CPU_RATES.get(encoder)
        if rates is None:
            return None
        fast = (config.get("recipe") or {}).get("precision", "fp32") != "fp32" and fast_here
        rate = rates[1 if fast else 0]
        return rate, rate  # no DataLoader figure on a CPU: the one rate

    result = _tally(configs, spec_and_size, rates_for)
    seconds, images, counted, unknown = result.seconds, result.images, result.estimated, result.unknown
    out = []
    if counted:
        wall = seconds / max(concurrent, 1)
        out.append(f"estimate: {counted} trials train {images:,} images: about {seconds / 60:.0f} min of one-thread "
                   f"training, {wall / 60:.0f} min with {max(concurrent, 1)} at a time, at the rates measured on an "
                   f"{CPU_CARD}; this CPU {'has' if fast_here else 'lacks'} native bf16; training only: an estimate")
    for encoder, count in sorted(unknown.items()):
        out.append(f"estimate: {count} trials with encoder {encoder} not estimated (no measured CPU rate)")
    return out


def loaded_size(config: dict[str, Any]) -> tuple[Any, int]:
    """The trial's DatasetSpec and training-set size, from its loaded data (cached per process)."""
    from removal_bench.running.trial import load_data

    data = load_data(config)
    return data.spec, len(data.train.y)
