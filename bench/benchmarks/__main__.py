"""Benchmark scripts that print figures (speed targets are checked here, not by timed tests).

    python -m removal_bench.benchmarks images --device cuda --resolution 128 --images 50000 --epochs 2
    python -m removal_bench.benchmarks images --device cpu --resolution 32 --images 512 --epochs 1   # smoke run

``images``: a CelebA-shaped trial: random uint8 images in the cache's format (a memory-mapped
``.npy`` of shape (n, 3, R, R)), ResNet-18, normalised on the device, bf16 autocast and
channels_last on CUDA: exactly the path ``celeba`` takes through :func:`removal_bench.running.trial.run_trial`.
It prints the training img/s that the trial measured. Needs neither Ray nor MLflow, so it runs
on a GPU machine that has torch alone.

    python -m removal_bench.benchmarks gpu                      # the GPU workloads against their H200 reference figures (< 8 min)
    python -m removal_bench.benchmarks gpu --tiny --device cpu  # smoke run: every row, tiny sizes, seconds
    python -m removal_bench.benchmarks attackers FOLDER         # current vs previous attackers on saved embeddings
    python -m removal_bench.benchmarks overhead                 # per-trial cost of Ray + MLflow (CPU)
    python -m removal_bench.benchmarks cache-read               # CelebA uint8 cache: gather + transfer img/s
    python -m removal_bench.benchmarks inlp                     # INLP's linear SVM: sklearn's LinearSVC vs ours
    python -m removal_bench.benchmarks cpu-step                 # a small_cnn step on one thread: fp32, channels_last, bf16
    python -m removal_bench.benchmarks encoders                 # training img/s per encoder on 28x28 images, 1 and 2 threads
    python -m removal_bench.benchmarks cpu-paths                # image training img/s: fp32 against the fast CPU path (bf16, channels_last), FLOPs, share of peak
    python -m removal_bench.benchmarks startup                  # bench --help, list, bad input: seconds, MB, imports
    python -m removal_bench.benchmarks mnist-curve --tracking-uri sqlite:///../mlflow-reproduce.db   # Biased-MNIST per rho
    python -m removal_bench.benchmarks adv-projection           # how much of the task gradient adv_debias's projection removes, per rho
    python -m removal_bench.benchmarks end-effects              # EnD's gain over vanilla per rho, model form and data size (MLflow)
    python -m removal_bench.benchmarks fairlearn-adv            # adversarial debiasing on Adult: ours beside fairlearn's
    python -m removal_bench.benchmarks searches                 # --search optuna against random search and refined curves
    python -m removal_bench.benchmarks capacity --from TABLE    # the capacity check on committed sections (reruns with embeddings)
    python -m removal_bench.benchmarks table-scale              # bench leaderboard/report --from on 1k, 10k, 100k-trial tables
    python -m removal_bench.benchmarks soak --interruptions 50  # a Ray sweep under random real faults: lost, duplicated, changed

``gpu``, ``cache-read`` and ``images`` import neither Ray nor MLflow (the GPU machine has neither).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from removal_bench.datasets.base import REGISTRY, Data, Dataset, DatasetSpec, Split
from removal_bench.core.params import Param
from removal_bench.running.trial import make_config, run_trial

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomImages(Dataset):
    """Random uint8 images in CelebA's cache format; a binary y and s (benchmarks only)."""

    name = "benchmark_random_images"
    description = "random uint8 images in the CelebA cache format (benchmarks only)"
    options = {
        "images": Param(50000, "training images", low=16),
        "resolution": Param(128, "image side", low=8),
        "cache": Param("", "folder for the memory-mapped .npy"),
    }

    def load(self, options, data_root):
        side, n = options["resolution"], options["images"]
        path = Path(options["cache"]) / f"random-{n}-{side}.npy"
        if not path.exists():
            from removal_bench.benchmarks.gpu import write_random_cache

            write_random_cache(path, n, side)
        images = torch.from_numpy(np.load(path, mmap_mode="c"))
        generator = torch.Generator().manual_seed(0)

        def labels(count):
            return torch.randint(0, 2, (count,), generator=generator), torch.randint(0, 2, (count,), generator=generator)

        held_out = min(512, n)
        splits = {}
        for name, count in (("train", n), ("val", held_out), ("probe", held_out), ("test", held_out)):
            y, s = labels(count)
            splits[name] = Split(images[:count], y, s)
        spec = DatasetSpec((3, side, side), 2, 2, "resnet18", epochs=1, batch_size=256,
                           pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD)
        return Data(spec, **splits)


def images(arguments: argparse.Namespace) -> None:
    REGISTRY.setdefault(RandomImages.name, RandomImages)
    with tempfile.TemporaryDirectory() as folder:
        cache = arguments.cache or folder
        options = {"images": arguments.images, "resolution": arguments.resolution, "cache": cache}
        for method in arguments.methods.split(","):
            config = make_config(method, RandomImages.name, options, seed=0, epochs=arguments.epochs,
                                 batch_size=arguments.batch_size, device=arguments.device)
            start = time.perf_counter()
            metrics = run_trial(config)
            print(
                f"{method:>10}  resnet18 {arguments.resolution}px batch {arguments.batch_size} on {arguments.device} "
                f"({torch.cuda.get_device_name() if torch.cuda.is_available() and arguments.device != 'cpu' else 'cpu'}): "
                f"{metrics['samples_per_second']:,.0f} img/s training over {arguments.epochs} epoch(s) of "
                f"{arguments.images} images; trial {time.perf_counter() - start:.1f} s",
                flush=True,
            )


from removal_bench.benchmarks.gpu import add_gpu_commands  # noqa: E402  (torch only)
from removal_bench.benchmarks.cpu import add_cpu_commands  # noqa: E402
from removal_bench.benchmarks.curves import add_curve_commands  # noqa: E402
from removal_bench.benchmarks.mnist import add_mnist_commands  # noqa: E402  (MLflow imported when run)
from removal_bench.benchmarks.effects import add_effects_commands  # noqa: E402  (MLflow, fairlearn imported when run)
from removal_bench.benchmarks.searches import add_search_commands  # noqa: E402  (MLflow, Optuna imported when run)
from removal_bench.benchmarks.capacity import add_capacity_commands  # noqa: E402  (MLflow imported when run)
from removal_bench.benchmarks.tables import add_table_commands  # noqa: E402
from removal_bench.benchmarks.startup import add_startup_commands  # noqa: E402
from removal_bench.benchmarks.soak import add_soak_commands  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m removal_bench.benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    image_parser = commands.add_parser("images", help="CelebA-shaped training speed (ResNet-18 on uint8 images)")
    image_parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    image_parser.add_argument("--resolution", type=int, default=128)
    image_parser.add_argument("--images", type=int, default=50000)
    image_parser.add_argument("--epochs", type=int, default=2)
    image_parser.add_argument("--batch-size", type=int, default=256)
    image_parser.add_argument("--methods", default="vanilla,irene")
    image_parser.add_argument("--cache", default="", help="folder for the image file (default: a temporary one)")
    image_parser.set_defaults(handler=images)
    add_gpu_commands(commands)
    add_cpu_commands(commands)
    add_curve_commands(commands)
    add_mnist_commands(commands)
    add_effects_commands(commands)
    add_search_commands(commands)
    add_capacity_commands(commands)
    add_table_commands(commands)
    add_startup_commands(commands)
    add_soak_commands(commands)
    arguments = parser.parse_args(argv)
    from removal_bench.core.errors import UserError

    try:
        arguments.handler(arguments)
    except UserError as error:  # bad input (a missing data file, an unknown name): one line, exit status 2
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
