"""Training recipes: optimiser, learning-rate schedule, epochs, batch size, encoder, augmentation.

A :class:`Recipe` is how a network is trained, apart from the method's own loss.
Each dataset declares the recipe of the reference that defined its protocol
(``Dataset.recipe``, or ``Dataset.recipe_for(options)`` when it depends on the
options), with its citation; by default every method trains under its
dataset's recipe, so methods are compared on equal terms. A method may declare
its own paper's recipe for a dataset (``Method.reference_recipes``); ``--recipe
reference`` uses it where it exists.

Every field can be overridden from the command line (``--train lr=0.01``,
``--train schedule=cosine``, ``--train milestones=40/60``): :func:`apply_overrides`
parses and validates them. The resolved recipe is part of a trial's config (and
so of its hash) and is logged as MLflow params ``recipe.<field>``.

Schedules are ``torch.optim.lr_scheduler`` objects stepped once per epoch by the
trial loop (``plateau`` on the validation figure named by ``monitor``), or once
per optimiser step with ``schedule_unit=step`` (FFB counts its schedule and its
training length, ``max_steps``, in steps). With
``min_lr`` above zero, training stops after the epoch at which the learning
rate falls below it (IRENE's stop rule on CelebA).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from removal_bench.core.errors import UserError

if TYPE_CHECKING:  # torch is imported where a recipe builds its torch objects, so that checking a recipe
    import torch   # (the command line's argument checks) loads no torch: bench list answers at once

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "multistep", "step", "cosine", "plateau")
MONITORS = ("val_loss", "val_accuracy")
AUGMENTATIONS = ("none", "hflip")
UNITS = ("epoch", "step")
PRECISIONS = ("fp32", "bf16", "auto")  # the image encoders' arithmetic: see Recipe.precision
HEADS = ("linear", "normalised")  # what the task head reads: see Recipe.head
BOOLEANS = ("drop_last",)
NAMED = ("cpu", "cpu-converged")  # recipes a dataset may declare by name (Dataset.named_recipes): --recipe cpu
SOURCES = ("dataset", "reference", *NAMED)  # --recipe: the dataset's, the method's paper's where it has one, or a named one


@dataclass(frozen=True)
class Recipe:
    """How the encoder and task head are trained. ``None`` in epochs/batch_size/encoder: the dataset spec's."""

    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    beta1: float = 0.9  # Adam only
    beta2: float = 0.999  # Adam only
    schedule: str = "none"
    milestones: tuple[int, ...] = ()  # multistep: epochs (1-based counts) after which the rate is multiplied by gamma
    step_size: int = 30  # step: every this many epochs
    gamma: float = 0.1  # multistep and step: the factor
    plateau_factor: float = 0.1
    patience: int = 10
    threshold: float = 0.0  # plateau: relative improvement that counts (threshold_mode "rel", as torch's default)
    cooldown: int = 0
    monitor: str = "val_loss"  # what plateau watches: val_loss (minimised) or val_accuracy (maximised)
    min_lr: float = 0.0  # stop training once the rate falls below this (0: never)
    schedule_unit: str = "epoch"  # the schedule steps once per epoch, or once per optimiser step (FFB)
    max_steps: int = 0  # stop after this many optimiser steps in all (0: train every epoch through; FFB)
    drop_last: bool = False  # drop each epoch's last partial batch (torch's DataLoader(drop_last=True); FFB)
    epochs: int | None = None
    batch_size: int | None = None
    encoder: str | None = None
    augmentation: str = "none"
    # How image encoders compute (removal_bench.running.trial.compute_path): "fp32" as always; "bf16": bf16
    # autocast, channels_last and the fused optimiser step; "auto": bf16 where the device has native bf16
    # (CUDA, or a CPU with amx_bf16 / avx512_bf16: removal_bench.core.hardware.native_bf16) and, on a CPU, a
    # timing of the trial's own step finds it faster (removal_bench.running.trial.choose_by_timing), else fp32
    # with channels_last and the fused step. Tabular encoders always run fp32. Each trial logs the path it took.
    precision: str = "fp32"
    # The model around a method's loss, as some methods' authors build it (docs/METHODS.md): "default" keeps the
    # encoder as declared (the common encoders end in ReLU); "bounded" ends its bottleneck in BatchNorm + Tanh, as
    # the SimpleConvNet of IRENE and EnD ends (removal_bench.core.encoders.bounded).
    bottleneck: str = "default"
    # "linear": the task head reads z; "normalised": it reads z / ||z|| (EnD's ``pattern_norm`` before its fc,
    # EIDOSLAB/entangling-disentangling-bias@b095648 src/models.py). Heads of the methods and the attackers read z.
    head: str = "linear"
    citation: str = ""

    # -- building the torch objects -----------------------------------------
    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    def build_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The recipe's optimiser over ``params`` (what the encoder and task head train with).

        Outside ``precision=fp32`` the step is torch's fused kernel (one pass over all parameters; the same
        update up to rounding): part of the fast path, so fp32 trials keep their arithmetic exactly.
        """
        import torch

        fused = True if self.precision != "fp32" else None
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay, fused=fused)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay, fused=fused)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, epochs: int):
        """The learning-rate scheduler for ``optimizer`` (None for a constant rate), stepped once per epoch."""
        from torch.optim import lr_scheduler as schedulers

        if self.schedule == "multistep":
            return schedulers.MultiStepLR(optimizer, milestones=list(self.milestones), gamma=self.gamma)
        if self.schedule == "step":
            return schedulers.StepLR(optimizer, step_size=self.step_size, gamma=self.gamma)
        if self.schedule == "cosine":
            return schedulers.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
        if self.schedule == "plateau":
            return schedulers.ReduceLROnPlateau(
                optimizer, mode="min" if self.monitor == "val_loss" else "max", factor=self.plateau_factor,
                patience=self.patience, threshold=self.threshold, cooldown=self.cooldown,
            )
        return None

    def should_stop(self, optimizer: torch.optim.Optimizer) -> bool:
        """IRENE's stop rule: the rate has fallen below ``min_lr``."""
        return self.min_lr > 0 and optimizer.param_groups[0]["lr"] < self.min_lr

    # -- reading and writing -------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """JSON-able fields (milestones as a list): what a trial's config holds."""
        values = dataclasses.asdict(self)
        values["milestones"] = list(self.milestones)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Recipe":
        return cls(**{**values, "milestones": tuple(values.get("milestones", ()))})

    def as_params(self) -> dict[str, Any]:
        """Flat MLflow params ``recipe.<field>`` (milestones as ``40/60``, unset fields as ``default``)."""
        out = {}
        for name, value in self.as_dict().items():
            if name == "milestones":
                value = "/".join(str(m) for m in value) or "none"
            out[f"recipe.{name}"] = "default" if value is None else value
        return out

    def describe(self) -> str:
        """One line for ``bench list``: only the fields that matter to this recipe."""
        if self.optimizer == "adam":
            optimiser = f"Adam lr {self.lr:g} betas ({self.beta1:g}, {self.beta2:g}) wd {self.weight_decay:g}"
        else:
            optimiser = f"SGD lr {self.lr:g} momentum {self.momentum:g} wd {self.weight_decay:g}"
        unit = "steps" if self.schedule_unit == "step" else "epochs"
        schedule = {
            "none": "constant rate",
            "multistep": f"x{self.gamma:g} after {unit} {'/'.join(str(m) for m in self.milestones)}",
            "step": f"x{self.gamma:g} every {self.step_size} {unit}",
            "cosine": "cosine to 0",
            "plateau": f"plateau on {self.monitor} (x{self.plateau_factor:g}, patience {self.patience}, "
                       f"threshold {self.threshold:g}, cooldown {self.cooldown})",
        }[self.schedule]
        if self.min_lr > 0:
            schedule += f", stop when lr < {self.min_lr:g}"
        parts = [
            optimiser, schedule,
            f"{self.max_steps} steps" if self.max_steps else
            f"{self.epochs if self.epochs is not None else 'default'} epochs",
            f"batch {self.batch_size if self.batch_size is not None else 'default'}"
            + (", last partial batch dropped" if self.drop_last else ""),
            f"encoder {self.encoder or 'default'}",
        ]
        if self.augmentation != "none":
            parts.append(f"augmentation {self.augmentation}")
        if self.precision != "fp32":
            parts.append(f"precision {self.precision}")
        if self.bottleneck != "default":
            parts.append(f"bottleneck {self.bottleneck} (BatchNorm + Tanh)")
        if self.head != "linear":
            parts.append("task head on z/||z||")
        text = "; ".join(parts)
        return f"{text}  [{self.citation}]" if self.citation else text


FIELDS = tuple(field.name for field in dataclasses.fields(Recipe))
OVERRIDABLE = tuple(name for name in FIELDS if name != "citation")
# Fields added after the config hashes were pinned (tests/test_trial.py), with their defaults: a trial's
# identity holds one only when it differs from its default, so every earlier configuration keeps its hash.
LATE_FIELDS: dict[str, Any] = {"drop_last": False, "precision": "fp32", "bottleneck": "default", "head": "linear"}


def identity_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """A recipe's fields as a trial's identity holds them: no citation, late fields only when set."""
    return {k: v for k, v in values.items()
            if k != "citation" and not (k in LATE_FIELDS and v == LATE_FIELDS[k])}


def parse_field(name: str, raw: Any) -> Any:
    """One field's value from a string (or a value), validated; UserError names the field and what it expects."""
    if name not in OVERRIDABLE:
        raise UserError(f"the training recipe has no field {name!r} (valid: {', '.join(OVERRIDABLE)})")
    text = str(raw).strip()
    where = f"recipe.{name}"
    choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "monitor": MONITORS, "augmentation": AUGMENTATIONS,
               "schedule_unit": UNITS, "precision": PRECISIONS, "head": HEADS}
    if name == "bottleneck":  # torch: only a recipe that names a bottleneck pays it, as one that names an encoder
        from removal_bench.core.encoders import BOTTLENECKS

        choices["bottleneck"] = BOTTLENECKS
    if name in BOOLEANS:
        if isinstance(raw, bool):
            return raw
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise UserError(f"{where}: expected true or false, got {raw!r}")
        return text.lower() in ("true", "1", "yes")
    if name in choices:
        if text not in choices[name]:
            raise UserError(f"{where}: {text!r} is not one of {', '.join(choices[name])}")
        return text
    if name == "encoder":
        from removal_bench.core.encoders import ENCODERS  # torch: only a recipe that names an encoder pays it

        if text not in ENCODERS:
            raise UserError(f"{where}: unknown encoder {text!r} (valid: {', '.join(sorted(ENCODERS))})")
        return text
    if name == "milestones":
        if isinstance(raw, (list, tuple)):
            items = list(raw)
        else:
            items = [] if text in ("", "none") else text.replace("+", "/").replace(" ", "/").split("/")
        try:
            values = tuple(int(str(item).strip()) for item in items)
        except ValueError:
            raise UserError(f"{where}: expected whole epochs separated by '/', e.g. 40/60, got {raw!r}") from None
        if any(v < 1 for v in values) or list(values) != sorted(set(values)):
            raise UserError(f"{where}: expected increasing epochs of at least 1, got {raw!r}")
        return values
    integer = name in ("step_size", "patience", "cooldown", "epochs", "batch_size", "max_steps")
    try:
        if integer:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value: Any = int(text) if isinstance(raw, str) else int(raw)
        else:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
    except (ValueError, TypeError):
        raise UserError(f"{where}: expected a {'whole number' if integer else 'number'}, got {raw!r}") from None
    minimum = {"epochs": 0, "batch_size": 2, "step_size": 1, "patience": 0, "cooldown": 0}.get(name, 0.0)
    if value < minimum or (name in ("lr", "plateau_factor", "gamma") and value <= 0):
        bound = "above 0" if name in ("lr", "plateau_factor", "gamma") else f"at least {minimum:g}"
        raise UserError(f"{where}: must be {bound}, got {raw!r}")
    if name in ("momentum", "beta1", "beta2", "plateau_factor") and value >= 1 and not (name == "momentum" and value == 1):
        raise UserError(f"{where}: must be below 1, got {raw!r}")
    return value


def validate(recipe: Recipe) -> Recipe:
    """Checks across fields (a multistep schedule needs milestones, ...); returns the recipe."""
    if recipe.schedule == "multistep" and not recipe.milestones:
        raise UserError("recipe.schedule=multistep needs recipe.milestones (e.g. --train milestones=40/60)")
    if recipe.schedule == "plateau" and recipe.schedule_unit == "step":
        raise UserError("recipe.schedule=plateau watches a validation figure once per epoch: use schedule_unit=epoch")
    if recipe.monitor not in MONITORS:
        raise UserError(f"recipe.monitor: {recipe.monitor!r} is not one of {', '.join(MONITORS)}")
    return recipe


def apply_overrides(recipe: Recipe, overrides: Mapping[str, Any]) -> Recipe:
    """``recipe`` with ``overrides`` (field name -> string or value) applied and validated."""
    changes = {name: parse_field(name, raw) for name, raw in overrides.items()}
    return validate(dataclasses.replace(recipe, **changes))


def parse_train(items: Iterable[str]) -> dict[str, list[str]]:
    """``["lr=0.01,0.1", "schedule=cosine"]`` -> {"lr": ["0.01", "0.1"], "schedule": ["cosine"]}, checked."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise UserError(f"malformed --train {item!r}: expected FIELD=VALUE[,VALUE...]")
        values = [v.strip() for v in value.split(",")]
        if any(not v for v in values):
            raise UserError(f"malformed --train {item!r}: empty value")
        for raw in values:
            parse_field(name, raw)
        if name in out:
            raise UserError(f"--train names {name!r} twice")
        out[name] = values
    return out


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise UserError(f"unknown recipe source {source!r} (valid: {', '.join(SOURCES)})")
    return source


def resolve_recipe(
    method_cls, dataset_cls, dataset_options: Mapping[str, Any], source: str = "dataset",
    overrides: Mapping[str, Any] | None = None,
) -> Recipe:
    """The recipe a trial trains with: its dataset's (or its method's paper's), then the overrides."""
    check_source(source)
    recipe = dataset_cls.recipe_for(dict(dataset_options))
    if source == "reference":
        recipe = method_cls.reference_recipes.get(dataset_cls.name, recipe)
    elif source in NAMED:
        named = getattr(dataset_cls, "named_recipes", {})
        if source not in named:
            have = ", ".join(sorted(named)) or "none"
            raise UserError(f"--recipe {source}: dataset {dataset_cls.name} declares no such recipe (its named "
                            f"recipes: {have}); `bench list` shows them")
        recipe = named[source]
    return apply_overrides(recipe, overrides or {})


# -- the references' recipes, each as its authors' code trains -------------------------------------
# (one place, so that datasets and methods that share a reference share its recipe)

IRENE_BIASED_MNIST = Recipe(
    optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
    schedule="multistep", milestones=(40, 60), gamma=0.1,
    epochs=100, batch_size=100, encoder="biased_mnist_cnn",
    citation="IRENE, Tartaglione BMVC 2022; enzotarta/irene@aec198c train.py (Bmnist): SGD 0.1 m0.9 wd1e-4, "
             "MultiStepLR([40, 60], 0.1) stepped per epoch, 100 epochs, batch 100, SimpleConvNet (Tanh)",
)
IRENE_CELEBA = Recipe(
    optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
    schedule="plateau", plateau_factor=0.1, patience=10, threshold=0.0, cooldown=5, monitor="val_loss", min_lr=1e-3,
    epochs=100, batch_size=100, encoder="resnet18", augmentation="hflip",
    citation="IRENE, Tartaglione BMVC 2022; enzotarta/irene@aec198c train.py (celebA): SGD 0.1 m0.9 wd1e-4, "
             "ReduceLROnPlateau(0.1, patience 10, threshold 0, cooldown 5) on validation task loss, stop when "
             "lr < 1e-3 (at most 100 epochs), batch 100, ResNet-18 from scratch, random horizontal flip",
)
REBIAS_BIASED_MNIST = Recipe(
    optimizer="adam", lr=1e-3, weight_decay=1e-4,
    schedule="step", step_size=20, gamma=0.1,
    epochs=80, batch_size=256, encoder="rebias_cnn",
    citation="ReBias, Bahng et al. ICML 2020; clovaai/rebias@79d1d1d main_biased_mnist.py: Adam 1e-3 wd1e-4, "
             "StepLR(20, 0.1) per epoch, 80 epochs, batch 256, SimpleConvNet (ReLU)",
)
END_BIASED_MNIST = Recipe(
    optimizer="adam", lr=1e-3, weight_decay=1e-4,
    schedule="step", step_size=20, gamma=0.1,
    epochs=80, batch_size=256, encoder="biased_mnist_cnn",
    citation="EnD, Tartaglione et al. CVPR 2021; EIDOSLAB/entangling-disentangling-bias@b095648 "
             "src/EnD_rebias_mnist_sweep.py, src/configs.py: Adam 1e-3 wd1e-4, StepLR(20, 0.1) per epoch, "
             "80 epochs, batch 256, SimpleConvNet (Tanh)",
)
FFB_TABULAR = Recipe(
    optimizer="adam", lr=1e-2, weight_decay=0.0,
    schedule="step", step_size=50, gamma=0.1, schedule_unit="step", max_steps=150, drop_last=True,
    epochs=None, batch_size=1024, encoder="ffb_mlp",
    citation="FFB, Han et al. ICLR 2024; ahxt/fair_fairness_benchmark@394f020 src/ffb_tabular_erm.py: Adam 1e-2 "
             "(l. 91, 217), StepLR(50, 0.1) stepped after every optimiser step (l. 218, 40), 150 steps (l. 88, "
             "229-231) of an infinite loader with drop_last=True (l. 206; src/utils.py l. 47-51), batch 1024 "
             "(l. 89), MLP 512-256-64 with dropout 0.5 in effect (src/networks.py l. 77)",
)
OURS_CHEAP = Recipe(
    optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, schedule="none",
    citation="this benchmark's own protocol (no reference): SGD 0.05 m0.9 wd1e-4 at a constant rate, sized "
             "for the default suite on two CPU cores",
)
LNL_COLORED_MNIST = Recipe(
    optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
    schedule="step", step_size=40, gamma=0.1, epochs=100, batch_size=128,
    citation="Learning Not to Learn, Kim et al. CVPR 2019; feidfoe/learning-not-to-learn@0e19ab6 option.py, "
             "trainer.py: SGD 0.01 m0.9 wd5e-4 (predictors alike), x0.1 every 40 epochs, 100 epochs, batch 128 "
             "(their coloured MNIST, not Biased-MNIST)",
)
CPU_BIASED_MNIST = Recipe(
    optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="none",
    epochs=3, batch_size=100, encoder="lenet",
    citation="reduced: this benchmark's CPU setting for Biased-MNIST (docs/BIASED_MNIST.md, the 3-epoch quick "
             "look), not a reference's: Adam 1e-3 wd1e-4 (ReBias's and EnD's optimiser) at a constant rate, 3 "
             "epochs, batch 100, LeNet-style CNN; chosen by measurement as the cheapest setting on one CPU thread "
             "under which vanilla keeps ReBias Table 1's pattern (unbiased accuracy falling from rho 0.99 to "
             "0.999: 72/60/45/21%, ReBias 89/72/33/10%)",
)
CPU_CONVERGED_BIASED_MNIST = Recipe(
    optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="multistep", milestones=(8, 11), gamma=0.1,
    epochs=12, batch_size=100, encoder="lenet", precision="auto",
    citation="reduced: this benchmark's converged CPU setting for Biased-MNIST (docs/BIASED_MNIST.md, the "
             "converged setting), not a reference's: Adam 1e-3 wd1e-4 (ReBias's and EnD's optimiser), x0.1 after "
             "epochs 8 and 11 (a decay near the end, as ReBias's StepLR), 12 epochs, batch 100, LeNet-style CNN, "
             "bf16 autocast where the CPU has native bf16 (else fp32); about 6 minutes a trial on one thread",
)
