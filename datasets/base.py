"""What a dataset returns: four tensor splits and a small spec. Never loaders.

A dataset is a class registered by name with :func:`register`. It declares its
options as :class:`removal_bench.core.params.Param` and implements :meth:`Dataset.load`.
Datasets that read files also implement :meth:`Dataset.required_files` (and
``urls`` and ``sha256`` for downloads), so the driver can check, before any
trial starts, that everything is present and intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from removal_bench.core.registry import Registry
from removal_bench.datasets.download import DataFile, ensure_files
from removal_bench.core.params import Param
from removal_bench.core.recipes import Recipe

SPLITS = ("train", "val", "probe", "test")


@dataclass
class Split:
    """One split: inputs ``x`` (float32, or uint8 images when the spec has pixel statistics),
    target ``y`` and private label ``s`` (int64)."""

    x: torch.Tensor
    y: torch.Tensor
    s: torch.Tensor

    def __post_init__(self) -> None:
        if not (len(self.x) == len(self.y) == len(self.s)):
            raise ValueError("x, y and s must have the same length")

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device), self.s.to(device))


@dataclass(frozen=True)
class DatasetSpec:
    """What a trial needs to know to build a model for this data."""

    input_shape: tuple[int, ...]
    num_classes: int
    num_private: int
    encoder: str  # default encoder, a name in removal_bench.core.encoders.ENCODERS
    epochs: int  # default number of training epochs
    batch_size: int  # default training batch size
    target_name: str = "y"
    private_name: str = "s"
    # uint8 images (a disk cache, e.g. CelebA): the encoder normalises each batch on the device,
    # (x / 255 - pixel_mean) / pixel_std per channel, so the whole split never exists as float32.
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None
    encoder_weights: str | None = None  # a local weights file for the encoder, if any


@dataclass
class Data:
    spec: DatasetSpec
    train: Split
    val: Split
    probe: Split
    test: Split

    def splits(self) -> dict[str, Split]:
        return {name: getattr(self, name) for name in SPLITS}


class Dataset:
    """Base class. Subclasses set ``name``, ``description``, ``options`` and ``load``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Param]] = {}
    files: ClassVar[tuple[DataFile, ...]] = ()  # empty: needs no data file
    # How the reference that defined this protocol trains (removal_bench.core.recipes); the default
    # recipe leaves epochs, batch size and encoder to the spec that ``load`` returns.
    recipe: ClassVar[Recipe] = Recipe()
    # Recipes declared by name (removal_bench.core.recipes.NAMED), chosen with --recipe NAME: e.g. a reduced
    # CPU setting (``cpu``). Always reduced against ``recipe`` when they differ in epochs, batch or encoder.
    named_recipes: ClassVar[dict[str, Recipe]] = {}
    # The fraction of a GPU one trial asks Ray for when --gpus-per-trial is not given on a CUDA
    # machine: a tabular or toy trial uses a sliver of a GPU, so four share one.
    gpu_share: ClassVar[float] = 1.0

    @classmethod
    def recipe_for(cls, options: dict[str, Any]) -> Recipe:
        """The training recipe for these (resolved) options; override when it depends on them."""
        return cls.recipe

    @classmethod
    def needs_data(cls) -> bool:
        return bool(cls.files)

    @classmethod
    def folder(cls, data_root: Path) -> Path:
        return Path(data_root).expanduser() / cls.name

    @classmethod
    def files_for(cls, options: dict[str, Any] | None) -> tuple[DataFile, ...]:
        """The files a run with these dataset options reads (``None``: every file, as ``bench data``).

        Override when options choose among files (Biased-MNIST's ``source``)."""
        return cls.files

    @classmethod
    def prepare(cls, data_root: Path, download: bool = True, options: dict[str, Any] | None = None) -> None:
        """Make sure the data files are present and intact, downloading them if allowed.

        With ``options`` (a run's dataset options), only the files those options
        read (:meth:`files_for`); without, every file. Raises UserError (naming
        the files and where to put them) when that fails. Setting
        ``BENCH_OFFLINE=1`` turns downloads off.
        """
        files = cls.files_for(options)
        if not files:
            return
        import os

        download = download and os.environ.get("BENCH_OFFLINE", "") in ("", "0")
        ensure_files(cls.folder(data_root), files, dataset=cls.name, download=download)

    @classmethod
    def prepare_for_run(cls, data_root: Path, options: dict[str, Any]) -> None:
        """:meth:`prepare` for a run's dataset options. A subclass whose ``prepare`` takes no ``options``
        (written before they existed, e.g. a plugin) is called as before, for every file."""
        import inspect

        if "options" in inspect.signature(cls.prepare).parameters:
            cls.prepare(data_root, options=options)
        else:
            cls.prepare(data_root)

    def load(self, options: dict[str, Any], data_root: Path) -> Data:
        raise NotImplementedError


REGISTRY: Registry[Dataset] = Registry("dataset")
register = REGISTRY.register
get_dataset = REGISTRY.lookup


def default_data_root() -> Path:
    """``$BENCH_DATA_ROOT``, else ``~/.cache/removal-bench``."""
    import os

    return Path(os.environ.get("BENCH_DATA_ROOT", "~/.cache/removal-bench")).expanduser()
