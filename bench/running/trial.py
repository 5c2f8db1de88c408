"""One trial: train one method on one dataset with one seed, then measure it.

:func:`run_trial` is a plain function of a plain config dict. It runs with or
without Ray, on CPU or GPU: the Ray executor, the serial executor, the tests
and the GPU benchmark scripts all call it directly. :func:`execute_trial`
wraps it so that a trial that raises or diverges ends as a FAILED result with
its reason instead of an exception.

The config (see :func:`make_config`)::

    method, dataset        registry names
    dataset_options        resolved dataset options (all of them, defaults included)
    hparams                resolved hyperparameters of the method
    seed                   training seed (data splits are fixed by the dataset's data_seed)
    recipe                 the resolved training recipe (removal_bench.core.recipes.Recipe.as_dict(): optimiser,
                           schedule, epochs, batch size, encoder, augmentation); its citation is
                           not part of the identity
    epochs, batch_size     the recipe's (None: the dataset spec's), kept as keys for readers
    encoder                the recipe's (None: the dataset spec's)
    device                 "auto", "cpu", "cuda", "cuda:1", ...
    data_root              folder holding the datasets' files
    threads                torch / BLAS threads for this trial (None: leave as is)
    embeddings_path        where to write embeddings.npz (None: don't)
    model_path             where to write the model file (removal_bench.running.artifacts; None: don't)
    epoch_leakage          also measure ``val_leakage_epoch`` after every epoch (see
                           :func:`epoch_leakage`; a sweep's leakage guard turns it on)
    probe_sizes            also measure the best attacker family's leakage from 25% and 50% of
                           ``probe`` (default True; :func:`probe_size_leakage`)
    reuse_dir              a folder where trainings shared by methods that declare ``trains_as``
                           are kept and reused within one invocation (:func:`reuse_path`; None: off)

Only the first group is the trial's identity: :func:`config_hash` hashes it.
Device, data root, threads and output paths do not change what is computed.
"""

from __future__ import annotations

import hashlib
import json
import os
import math
import tempfile
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import removal_bench.datasets as dataset_registry
import removal_bench.methods as method_registry
from removal_bench.core.disk import DISK_FULL_KEY, DISK_FULL_WHAT_KEY, DiskFull, is_disk_full, save_atomic
from removal_bench.core.errors import UserError
from removal_bench.core.params import resolve
from removal_bench.core.recipes import Recipe, identity_fields, resolve_recipe
from removal_bench.core.encoders import ENCODERS, NormalisedInput, build_encoder, load_weights
from removal_bench.running.plugins import ensure_loaded as ensure_plugins, records_for as plugin_records

IDENTITY_KEYS = ("method", "dataset", "dataset_options", "hparams", "seed", "recipe")
EVAL_BATCH = 4096

Reporter = Callable[[dict[str, Any]], None]


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def make_config(
    method: str,
    dataset: str,
    dataset_options: dict[str, Any] | None = None,
    hparams: dict[str, Any] | None = None,
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int | None = None,
    encoder: str | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    threads: int | None = None,
    embeddings_path: str | None = None,
    recipe: str = "dataset",
    train: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate names and values once, at the boundary, and return a resolved config.

    ``dataset_options``, ``hparams`` and ``train`` (recipe fields) may hold strings
    (from the command line); unknown names or bad values raise UserError. ``recipe``
    says whose recipe to start from: ``dataset`` (the dataset's reference) or
    ``reference`` (the method's own paper's for this dataset, where it declares one).
    ``epochs``, ``batch_size`` and ``encoder`` are overrides of the recipe's.
    """
    method_cls = method_registry.get_method(method)
    dataset_cls = dataset_registry.get_dataset(dataset)
    if encoder is not None and encoder not in ENCODERS:
        raise UserError(f"unknown encoder {encoder!r} (valid: {', '.join(sorted(ENCODERS))})")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value is not None and (not isinstance(value, int) or value < (0 if name == "epochs" else 2)):
            raise UserError(f"{name} must be a whole number >= {0 if name == 'epochs' else 2}, got {value!r}")
    options = resolve(dataset, dataset_cls.options, dataset_options or {})
    overrides = dict(train or {})
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("encoder", encoder)):
        if value is not None:
            overrides[name] = value
    resolved = resolve_recipe(method_cls, dataset_cls, options, recipe, overrides)
    return {
        "method": method,
        "dataset": dataset,
        "dataset_options": options,
        "hparams": resolve(method, method_cls.hparams, hparams or {}),
        "seed": int(seed),
        "recipe": resolved.as_dict(),
        "epochs": resolved.epochs,
        "batch_size": resolved.batch_size,
        "encoder": resolved.encoder,
        "device": device,
        "data_root": str(Path(data_root).expanduser().resolve()) if data_root else str(dataset_registry.default_data_root()),
        "threads": threads,
        "embeddings_path": embeddings_path,
        # where a plugin method or dataset comes from (removal_bench.running.plugins): not part of the identity
        "plugins": plugin_records(method, dataset),
    }


def _digest(identity: dict[str, Any]) -> str:
    """16 hex digits of the canonical JSON of ``identity``, its recipe's citation left out."""
    if isinstance(identity.get("recipe"), dict):  # a citation's wording changes nothing that is computed
        identity = {**identity, "recipe": identity_fields(identity["recipe"])}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_hash(config: dict[str, Any]) -> str:
    """A trial's identity: the hash of its canonical identity fields (16 hex digits)."""
    return _digest({key: config.get(key) for key in IDENTITY_KEYS})


@dataclass(frozen=True)
class ComputePath:
    """How a trial's training computes: bf16 autocast or not, channels_last or not, and the line it logs."""

    bf16: bool
    channels_last: bool
    label: str
    measure: bool = False  # the path still to be chosen by timing the trial's own step (choose_by_timing)
    fused: bool = True  # the recipe's optimiser as the precision builds it (fused outside fp32); False: not fused

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()


def compute_path(recipe: Recipe, device: torch.device, input_shape: tuple[int, ...], encoder_name: str) -> ComputePath:
    """The arithmetic of a trial's training, from the recipe's ``precision`` and what the device has.

    ``fp32`` is the path every trial took before 1956a69 (on CUDA, ResNet-18 has always trained with bf16
    autocast and channels_last: 2.4x on an H200). Images under ``bf16`` or ``auto`` train with channels_last,
    the fused optimiser step, and bf16 autocast where the device has native bf16 (``auto``) or always
    (``bf16``); evaluation stays fp32 on the fp32 weights. Tabular inputs always train fp32.
    """
    from removal_bench.core.hardware import native_bf16

    image = len(input_shape) == 3
    if recipe.precision == "fp32" or not image:
        legacy = device.type == "cuda" and encoder_name == "resnet18"
        if legacy:
            return ComputePath(True, True, "cuda bf16 autocast + channels_last (resnet18)")
        return ComputePath(False, False, f"{device.type} fp32")
    if device.type == "cuda":
        return ComputePath(True, True, "cuda bf16 autocast + channels_last + fused step")
    flag = native_bf16()
    if recipe.precision == "bf16" or flag == "forced":
        why = flag or "no native bf16: emulated"
        return ComputePath(True, True, f"cpu bf16 autocast + channels_last + fused step ({why})")
    if os.environ.get("BENCH_CPU_BF16", "").strip() == "0":
        return ComputePath(False, True, "cpu fp32 + channels_last + fused step (BENCH_CPU_BF16=0)")
    # Neither bf16 (an Xeon with avx512_bf16 and no AMX: half fp32's speed) nor channels_last (small_cnn on an AVX2
    # EPYC: 0.88x) pays everywhere: the trial times its own step (choose_by_timing)
    label = f"native bf16: {flag}" if flag else "no native bf16"
    return ComputePath(bool(flag), True, f"cpu, to be measured ({label})", measure=True)


# What choose_by_timing may take: (name, bf16 autocast, channels_last, fused optimiser step)
CANDIDATES = (("fp32", False, False, False), ("fast-fp32", False, True, True), ("bf16", True, True, True))
LABELS = {"fp32": "cpu fp32", "fast-fp32": "cpu fp32 + channels_last + fused step",
          "bf16": "cpu bf16 autocast + channels_last + fused step"}


def as_path(method, recipe: Recipe, path: ComputePath, x: torch.Tensor | None = None):
    """``method`` (and the batch ``x``) in ``path``'s memory format, its recipe optimiser rebuilt unfused if the path
    says so (a freshly built optimiser has no state yet: nothing is lost)."""
    from removal_bench.core.encoders import NormalisedInput

    memory = torch.channels_last if path.channels_last else torch.contiguous_format
    method = method.to(memory_format=memory)
    if isinstance(getattr(method, "encoder", None), NormalisedInput):
        method.encoder.channels_last = path.channels_last
    if not path.fused:
        method.optimizer = replace(recipe, precision="fp32").build_optimizer(method.model_parameters())
    if x is not None and x.dim() == 4:
        x = x.contiguous(memory_format=memory)
    return method, x


PATH_CACHE_VERSION = 2  # 2: plain fp32 is a candidate too


def path_cache_file() -> Path:
    """Where the measured choices are kept: ``$BENCH_PATH_CACHE``, else ``~/.cache/removal-bench/compute-paths.json``."""
    return Path(os.environ.get("BENCH_PATH_CACHE") or Path.home() / ".cache" / "removal-bench" / "compute-paths.json")


def choose_by_timing(path: ComputePath, method, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor,
                     key_parts: dict[str, Any], steps: int = 4, recipe: Recipe | None = None) -> ComputePath:
    """The fastest of the CPU paths for the trial's own step: plain fp32 (every trial's before 1956a69), fp32 with
    channels_last and the fused optimiser step, and, where the CPU has native bf16 (``path.bf16``), bf16 autocast
    with both.

    On copies of the freshly built ``method`` (the trial's own model is not touched, and the random state is put
    back, so the trial computes as if nothing had been timed), one warm-up and ``steps`` steps on the batch
    ``x, y, s`` per candidate, interleaved twice, the best of each kept. The rates are kept per hardware
    fingerprint, torch version, method, encoder, input shape, batch and threads in :func:`path_cache_file`, so a
    machine times each kind of trial once; the label says what was measured (tag ``compute_path``). Where plain
    fp32 wins, the trial computes exactly as a ``precision=fp32`` trial. ``BENCH_CPU_BF16=0`` or ``=1`` forces the
    fast fp32 or the bf16 path without timing.
    """
    import copy

    from removal_bench.core.hardware import fingerprint

    key = json.dumps({"v": PATH_CACHE_VERSION, **fingerprint(torch.get_num_threads()), "torch": torch.__version__,
                      **key_parts}, sort_keys=True, default=str)
    cache_file = path_cache_file()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    recipe = recipe or method.recipe
    candidates = [c for c in CANDIDATES if path.bf16 or not c[1]]
    rates = cache.get(key)
    if not isinstance(rates, dict) or not {c[0] for c in candidates} <= set(rates):
        rng = torch.get_rng_state()
        rates = {c[0]: 0.0 for c in candidates}
        for _ in range(2):
            for name, bf16, channels_last, fused in candidates:
                trial, batch = as_path(copy.deepcopy(method), recipe, ComputePath(bf16, channels_last, "", fused=fused), x)
                trial.train()
                context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
                with context:
                    trial.update(batch, y, s)  # warm-up: oneDNN's kernels chosen, buffers allocated
                    start = time.perf_counter()
                    for _ in range(steps):
                        trial.update(batch, y, s)
                    seconds = time.perf_counter() - start
                rates[name] = max(rates[name], steps * len(x) / max(seconds, 1e-9))
                del trial
        torch.set_rng_state(rng)
        cache[key] = rates
        try:  # a cache that cannot be written costs a timing per trial, nothing else
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
            temporary.write_text(json.dumps(cache, indent=1, sort_keys=True))
            os.replace(temporary, cache_file)
        except OSError:
            pass
    best = max(candidates, key=lambda c: (rates[c[0]], -candidates.index(c)))  # ties: the plainer path
    name, bf16, channels_last, fused = best
    flag = path.label[path.label.rfind("(") + 1 : -1]
    others = ", ".join(f"{other} {rates[other] / max(rates[name], 1e-9):.2f}x" for other, *_ in candidates if other != name)
    return ComputePath(bf16, channels_last, f"{LABELS[name]} ({flag}; measured fastest: {others})", fused=fused)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@lru_cache(maxsize=4)
def _load(dataset: str, options_json: str, data_root: str) -> dataset_registry.Data:
    return dataset_registry.get_dataset(dataset)().load(json.loads(options_json), Path(data_root))


def load_data(config: dict[str, Any]) -> dataset_registry.Data:
    """The trial's data, cached per process (serial runs reuse it across methods and seeds)."""
    options_json = json.dumps(config["dataset_options"], sort_keys=True)
    return _load(config["dataset"], options_json, config["data_root"])


@dataclass
class Embedded:
    """What evaluation needs of one split, as numpy arrays."""

    z: np.ndarray
    probabilities: np.ndarray
    private_logits: np.ndarray | None
    y: np.ndarray
    s: np.ndarray


@torch.no_grad()
def embed_split(method: method_registry.Method, split: dataset_registry.Split) -> Embedded:
    zs, probabilities, heads = [], [], []
    for start in range(0, len(split), EVAL_BATCH):
        z = method.embed(split.x[start : start + EVAL_BATCH])
        zs.append(z.float())
        probabilities.append(torch.softmax(method.task_logits(z).float(), dim=1))
        head = method.private_logits(z)
        if head is not None:
            heads.append(head.float())
    return Embedded(
        z=torch.cat(zs).cpu().numpy(),
        probabilities=torch.cat(probabilities).cpu().numpy(),
        private_logits=torch.cat(heads).cpu().numpy() if heads else None,
        y=split.y.cpu().numpy(),
        s=split.s.cpu().numpy(),
    )


@torch.no_grad()
def validation_figures(method: method_registry.Method, split: dataset_registry.Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Task accuracy and mean task cross-entropy (IRENE's plateau figure) as 0-d tensors on the device."""
    correct = torch.zeros((), device=split.y.device)
    loss = torch.zeros((), device=split.y.device)
    for start in range(0, len(split), EVAL_BATCH):
        logits = method(split.x[start : start + EVAL_BATCH]).float()
        target = split.y[start : start + EVAL_BATCH]
        correct += (logits.argmax(dim=1) == target).sum()
        loss += torch.nn.functional.cross_entropy(logits, target, reduction="sum")
    return correct / len(split), loss / len(split)


def horizontal_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of the batch mirrored left-right with probability 1/2 (torchvision's RandomHorizontalFlip)."""
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


EPOCH_PROBE_ROWS = 4000


def is_post_hoc(method: method_registry.Method) -> bool:
    """Whether the method erases after training (its bottleneck during training is not the evaluated one)."""
    return type(method).fit_post_hoc is not method_registry.Method.fit_post_hoc


def epoch_leakage(
    method: method_registry.Method, probe: dataset_registry.Split, val: dataset_registry.Split, num_private: int, seed: int
) -> float:
    """A cheap mid-training leakage estimate: ``val`` balanced accuracy of one linear probe of ``s``.

    One logistic regression (C = 1, standardised features) fitted on at most
    EPOCH_PROBE_ROWS rows of ``probe`` and scored on ``val``: a single fit, no
    hold-out choice, no non-linear attacker, so it is a lower bound on the
    protocol's ``val_leakage`` and is used only to steer a sweep's scheduler,
    never reported as leakage. It runs in eval mode without gradients and draws
    no torch random numbers, so it leaves training unchanged.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from removal_bench.measuring.metrics import balanced_accuracy

    was_training = method.training
    method.eval()
    probe_e, val_e = embed_split(method, probe), embed_split(method, val)
    method.train(was_training)
    z, s = probe_e.z, probe_e.s
    if len(s) > EPOCH_PROBE_ROWS:
        keep = np.random.default_rng([seed, 2]).choice(len(s), EPOCH_PROBE_ROWS, replace=False)
        z, s = z[keep], s[keep]
    if not (np.isfinite(z).all() and np.isfinite(val_e.z).all()):
        return float("nan")
    if np.unique(s).size < 2:
        return 1.0 / num_private
    scaler = StandardScaler().fit(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=1.0, max_iter=200).fit(scaler.transform(z), s)
    return float(balanced_accuracy(val_e.s, model.predict(scaler.transform(val_e.z))))


PROBE_FRACTIONS = (0.25, 0.5)


def probe_size_leakage(
    probe: Embedded, val: Embedded, test: Embedded, num_private: int, seed: int, attacker: str,
    fractions: tuple[float, ...] = PROBE_FRACTIONS,
) -> dict[str, float]:
    """Leakage when the attacker learns ``s`` from only part of ``probe``: ``leak_probe25``, ``leak_probe50``.

    The attacker family that was best on the whole probe (``attacker``: the
    trial's ``leakage_attacker``), refitted on nested random parts of ``probe``
    (the first 25%, 50% of one permutation seeded by the trial's seed) and
    scored on ``test``, so ``leakage`` is the 100% point of the same curve: how
    much data recovering ``s`` takes, not only whether it can be recovered.
    One family rather than all three keeps this at about a third of an
    evaluation's attacker time (all three doubled the attackers' cost).
    """
    import warnings

    from removal_bench.measuring.attackers import measure_leakage

    order = np.random.default_rng([seed, 3]).permutation(len(probe.s))
    out = {}
    for fraction in fractions:
        keep = order[: max(2, int(round(fraction * len(order))))]
        with warnings.catch_warnings():  # a small part of a small probe is below the MLP's batch size: it says so
            warnings.filterwarnings("ignore", message="Got `batch_size` less than 1 or larger than sample size")
            found = measure_leakage(probe.z[keep], probe.s[keep], val.z, val.s, test.z, test.s, num_private, seed=seed,
                                    attackers=(attacker,))
        out[f"leak_probe{round(fraction * 100)}"] = found.leakage
    return out


def _set_seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


@dataclass
class Trained:
    """What training leaves besides the weights: its time, length and per-epoch figures."""

    seconds: float
    epochs: int
    stopped_early: bool
    steps: int
    final_lr: float
    history: list[dict[str, Any]]
    reused: bool = False


def train_method(
    method: method_registry.Method, data: dataset_registry.Data, train: dataset_registry.Split,
    val: dataset_registry.Split, recipe: Recipe, config: dict[str, Any], schedulers: list, generator: torch.Generator,
    autocast, epochs: int, steps: int, batch_size: int, device: torch.device, report: Reporter | None,
) -> Trained:
    """The training loop: ``epochs`` epochs of ``steps`` batches, the recipe's schedule, a report after every epoch."""
    per_step = recipe.schedule_unit == "step"
    n = len(train)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    trained_epochs, stopped_early, done_steps = 0, False, 0
    for epoch in range(epochs):
        method.train()
        learning_rate = method.optimizer.param_groups[0]["lr"]  # the rate this epoch starts with
        order = torch.randperm(n, generator=generator).to(device)
        sums: dict[str, torch.Tensor] = {}
        epoch_steps = steps if not recipe.max_steps else min(steps, recipe.max_steps - done_steps)
        for step in range(epoch_steps):
            index = order[step * batch_size : (step + 1) * batch_size]
            x = train.x[index]
            if recipe.augmentation == "hflip":
                x = horizontal_flip(x, generator)
            with autocast:
                terms = method.update(x, train.y[index], train.s[index])
            for key, value in terms.items():
                sums[key] = sums[key] + value if key in sums else value
            if per_step:
                for scheduler in schedulers:
                    scheduler.step()
        done_steps += epoch_steps
        trained_epochs = epoch + 1
        method.end_epoch(epoch)
        method.eval()
        means = {("train_" + key if not key.startswith("train_") else key): (value / max(epoch_steps, 1)).item()
                 for key, value in sums.items()}
        bad = {key: value for key, value in means.items() if not math.isfinite(value)}
        if bad:
            key, value = next(iter(bad.items()))
            raise TrialDiverged(f"{key} became {value} in epoch {epoch + 1}")
        val_accuracy, val_loss = (figure.item() for figure in validation_figures(method, val))
        epoch_metrics = {"epoch": epoch + 1, **means, "val_accuracy": val_accuracy, "val_loss": val_loss, "lr": learning_rate}
        if not per_step:
            monitored = val_loss if recipe.monitor == "val_loss" else val_accuracy
            for scheduler in schedulers:
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(monitored)
                else:
                    scheduler.step()
        if config.get("epoch_leakage") and not is_post_hoc(method):
            epoch_metrics["val_leakage_epoch"] = epoch_leakage(method, data.probe.to(device), val, data.spec.num_private, config["seed"])
        history.append(epoch_metrics)
        if report is not None:
            report(epoch_metrics)
        if recipe.should_stop(method.optimizer):  # IRENE's CelebA rule: the rate fell below min_lr
            stopped_early = epoch + 1 < epochs
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Trained(time.perf_counter() - start, trained_epochs, stopped_early, done_steps,
                   method.optimizer.param_groups[0]["lr"], history)


# -- reusing a training: vanilla, LEACE and INLP train alike ------------------------------------

def training_key(config: dict[str, Any], trains_as: str, device: torch.device) -> str:
    """What decides a training's result when the method declares ``trains_as``: not its hyperparameters."""
    return _digest({"trains_as": trains_as, "dataset": config["dataset"], "dataset_options": config["dataset_options"],
                    "recipe": config.get("recipe"), "seed": config["seed"], "device": device.type})


def reuse_path(config: dict[str, Any], method_cls: type, device: torch.device) -> Path | None:
    """Where this trial's training is kept for the next trial that trains alike (None: no reuse).

    A method whose training does not depend on its hyperparameters declares
    ``trains_as`` (vanilla, LEACE and INLP: ``"vanilla"``; the post-hoc methods'
    hyperparameters act after training). Within one invocation (``reuse_dir``, a
    folder the driver makes and removes), the first of them to train a dataset,
    recipe and seed keeps its weights, per-epoch figures and random state there;
    the others load them instead of training again, so an INLP strength curve
    trains once per seed, not once per strength. Off when ``epoch_leakage`` is on
    (vanilla reports it per epoch, the post-hoc methods do not).
    """
    trains_as = method_registry.training_identity(method_cls)
    if not config.get("reuse_dir") or not trains_as or config.get("epoch_leakage"):
        return None
    return Path(config["reuse_dir"]) / f"{training_key(config, trains_as, device)}.pt"


def _random_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def save_training(path: Path, method: method_registry.Method, trained: Trained, device: torch.device) -> None:
    """Keep a finished training for :func:`replay_training` (written whole, then renamed into place; a full
    disk is :class:`removal_bench.core.disk.DiskFull` naming the file, and leaves nothing behind)."""
    kept = {"encoder": method.encoder.state_dict(), "classifier": method.classifier.state_dict(),
            "trained": trained, "random": _random_state(device)}
    save_atomic(path, lambda stream: torch.save(kept, stream),
                "the training kept for the invocation's other trials that train alike (reuse_dir)")


def replay_training(path: Path, method: method_registry.Method, device: torch.device, report: Reporter | None) -> Trained | None:
    """Load a kept training into ``method``, report its epochs again and restore its random state; None if none is kept."""
    if not path.exists():
        return None
    kept = torch.load(path, map_location=device, weights_only=False)  # written by this invocation: trusted
    method.encoder.load_state_dict(kept["encoder"])
    method.classifier.load_state_dict(kept["classifier"])
    trained: Trained = kept["trained"]
    for epoch_metrics in trained.history:
        if report is not None:
            report(dict(epoch_metrics))
    torch.set_rng_state(kept["random"]["torch"])
    np.random.set_state(kept["random"]["numpy"])
    if "cuda" in kept["random"]:
        torch.cuda.set_rng_state(kept["random"]["cuda"], device)
    return replace(trained, reused=True)


def run_trial(config: dict[str, Any], report: Reporter | None = None) -> dict[str, Any]:
    """Train and evaluate one trial; return its final metrics.

    ``report`` (if given) receives a dict of metrics after every epoch
    (``epoch``, ``train_loss`` and the method's other loss terms, ``val_accuracy``).
    Raises TrialDiverged when the loss stops being finite.
    """
    from removal_bench.measuring.attackers import measure_leakage
    from removal_bench.measuring.metrics import balanced_accuracy, task_metrics

    ensure_plugins(config)  # a Ray worker (or bench verify) registers the trial's plugins first
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    device = resolve_device(config["device"])
    data = load_data(config)
    spec = data.spec
    recipe = Recipe.from_dict(config["recipe"]) if config.get("recipe") else Recipe()
    epochs = spec.epochs if recipe.epochs is None else recipe.epochs
    batch_size = spec.batch_size if recipe.batch_size is None else recipe.batch_size
    encoder_name = recipe.encoder or spec.encoder

    generator = _set_seed(config["seed"])
    path = compute_path(recipe, device, spec.input_shape, encoder_name)
    train, val = data.train.to(device), data.val.to(device)
    if path.channels_last and train.x.dtype.is_floating_point and spec.pixel_mean is None:
        # NHWC once for the whole split: every batch gathered from it is NHWC, as the convolutions want it
        train = dataset_registry.Split(train.x.contiguous(memory_format=torch.channels_last), train.y, train.s)
    encoder = build_encoder(encoder_name, spec.input_shape, recipe.bottleneck)
    if spec.encoder_weights:
        load_weights(encoder, spec.encoder_weights)
    if spec.pixel_mean is not None:
        encoder = NormalisedInput(encoder, spec.pixel_mean, spec.pixel_std, channels_last=path.channels_last)
    n = len(train)
    steps = n // batch_size + (1 if n % batch_size >= 2 and not recipe.drop_last else 0)  # a batch of one breaks batch norm
    if steps == 0:  # drop_last with fewer rows than one batch: FFB's infinite loader would never yield
        raise UserError(f"{n} training rows make no whole batch of {batch_size} (recipe.drop_last): lower --batch-size")
    if recipe.max_steps:  # FFB counts training in optimiser steps: as many epochs as they take, the last one cut
        epochs = math.ceil(recipe.max_steps / steps)
    method_cls = method_registry.get_method(config["method"])
    method = method_cls(
        encoder, spec.num_classes, spec.num_private, config["hparams"], max(epochs, 1), recipe=recipe, steps_per_epoch=steps,
    ).to(device)
    if path.channels_last:  # ResNet-18 on CUDA: 2.4x the fp32 img/s on an H200 (docs/DEVELOPING.md); lenet on a CPU: BIASED_MNIST.md
        method = method.to(memory_format=torch.channels_last)
    if path.measure:
        sample = train.x[: min(batch_size, len(train))]
        path = choose_by_timing(path, method, sample.to(device), train.y[: len(sample)], train.s[: len(sample)],
                                {"method": config["method"], "encoder": encoder_name, "input": list(spec.input_shape),
                                 "batch": len(sample)}, recipe=recipe)
        method, _ = as_path(method, recipe, path)
        if not path.channels_last and train.x.dtype.is_floating_point and spec.pixel_mean is None:
            train = dataset_registry.Split(train.x.contiguous(), train.y, train.s)  # undo the NHWC split above
    autocast = path.autocast(device)
    schedule_length = epochs * steps if recipe.schedule_unit == "step" else epochs
    schedulers = [recipe.build_scheduler(optimizer, schedule_length) for optimizer in method.scheduled_optimizers()]
    schedulers = [scheduler for scheduler in schedulers if scheduler is not None]

    reuse = reuse_path(config, method_cls, device)
    trained = replay_training(reuse, method, device, report) if reuse else None
    if trained is None:
        trained = train_method(method, data, train, val, recipe, config, schedulers, generator, autocast,
                               epochs, steps, batch_size, device, report)
        if reuse:
            save_training(reuse, method, trained, device)

    method.eval()
    method.fit_post_hoc(train.x, train.y, train.s)
    evaluation_start = time.perf_counter()
    embedded = {name: embed_split(method, split.to(device)) for name, split in data.splits().items() if name != "train"}
    val_e, probe, test = embedded["val"], embedded["probe"], embedded["test"]
    for name, part in embedded.items():
        if not np.isfinite(part.z).all():
            raise TrialDiverged(f"the bottleneck holds NaN or infinite values on {name}")

    metrics: dict[str, Any] = {}
    metrics.update(task_metrics(test.probabilities, test.y, test.s).as_metrics())
    metrics["val_accuracy"] = float((val_e.probabilities.argmax(1) == val_e.y).mean())
    # What always predicting the most frequent test class scores: the hypervolume's reference accuracy.
    metrics["majority_accuracy"] = float(np.bincount(test.y).max() / len(test.y))
    leakage = measure_leakage(probe.z, probe.s, val_e.z, val_e.s, test.z, test.s, spec.num_private, seed=config["seed"])
    metrics.update(leakage.as_metrics())
    metrics["leakage_attacker"] = leakage.best
    floor = measure_leakage(
        probe.probabilities, probe.s, val_e.probabilities, val_e.s, test.probabilities, test.s,
        spec.num_private, seed=config["seed"],
    )
    metrics.update(floor.as_metrics(prefix="floor_"))
    if config.get("probe_sizes", True):
        probe_start = time.perf_counter()
        metrics.update(probe_size_leakage(probe, val_e, test, spec.num_private, config["seed"], leakage.best))
        metrics["probe_sizes_seconds"] = time.perf_counter() - probe_start
    if test.private_logits is not None:
        head_prediction = test.private_logits.argmax(1)
        metrics["head_acc"] = balanced_accuracy(test.s, head_prediction)
        if spec.num_classes > 2 and test.private_logits.shape[1] == spec.num_classes:
            # Where s and y share a label space of more than two classes (a colour per digit), how often the
            # head's guess of s is the task label instead: a head trained on biased batches can learn the colour
            # through the digit, so a head near chance on unbiased data is no proof of removal (PROTOCOL.md).
            metrics["head_predicts_y"] = float(np.mean(head_prediction == test.y))
    metrics["train_seconds"] = trained.seconds
    trained_samples = min(trained.steps * batch_size, trained.epochs * n)
    metrics["samples_per_second"] = trained_samples / trained.seconds if trained.seconds > 0 else 0.0
    metrics["eval_seconds"] = time.perf_counter() - evaluation_start
    metrics["epochs"] = trained.epochs
    metrics["planned_epochs"] = epochs
    metrics["stopped_early"] = int(trained.stopped_early)
    metrics["final_lr"] = trained.final_lr
    metrics["train_reused"] = int(trained.reused)
    metrics["num_classes"] = spec.num_classes
    metrics["num_private"] = spec.num_private
    metrics["batch_size"] = batch_size
    metrics["encoder"] = encoder_name
    metrics["bottleneck_dim"] = int(probe.z.shape[1])
    metrics["torch_threads"] = torch.get_num_threads()  # what bench verify must match for bit-identical figures
    metrics["compute_path"] = path.label  # a string: logged as a tag
    from removal_bench.core.hardware import fingerprint

    metrics.update(fingerprint(torch.get_num_threads()))  # tags fingerprint.*: where bit-identical figures can be expected

    if config.get("embeddings_path"):
        arrays = dict(z_probe=probe.z, y_probe=probe.y, s_probe=probe.s, z_val=val_e.z, y_val=val_e.y, s_val=val_e.s,
                      z_test=test.z, y_test=test.y, s_test=test.s, num_private=spec.num_private, seed=config["seed"])
        save_atomic(config["embeddings_path"], lambda stream: np.savez_compressed(stream, **arrays),
                    "the trial's embeddings, --save-embeddings")
    if config.get("model_path"):  # removal_bench.running.artifacts: state dict plus the config that rebuilds it
        from removal_bench.running.artifacts import save_model

        save_model(config["model_path"], method, config, encoder_name, spec.input_shape)
    return metrics


OUT_OF_MEMORY_ADVICE = "lower --batch-size, run fewer at once (--max-concurrent) or give each more (--memory-per-trial MB)"


@contextmanager
def memory_limit(megabytes: float | None):
    """With ``megabytes``, the process may hold that much more private memory than it holds now (RLIMIT_DATA,
    Linux counts every private writable mapping: torch's and numpy's buffers) while the block runs: an
    allocation past it fails at once (MemoryError, torch's "can't allocate memory") instead of the kernel
    killing the worker for memory. The soft limit is put back afterwards. Elsewhere than Linux, no limit."""
    import resource

    status = Path("/proc/self/status")
    if not megabytes or not status.exists():
        yield
        return
    held = next((int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                 if line.startswith("VmData:")), 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = held + int(megabytes * 2**20)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed (Python's, numpy's or torch's)."""
    text = str(error)
    return isinstance(error, MemoryError) or "can't allocate memory" in text or "not enough memory" in text


def execute_trial(config: dict[str, Any], report: Reporter | None = None) -> dict[str, Any]:
    """Run a trial and never raise: the result says ``status`` FINISHED or FAILED (with ``error``)."""
    try:
        with memory_limit(config.get("memory_mb")):
            metrics = run_trial(config, report)
    except TrialDiverged as error:
        return {"status": "FAILED", "error": f"diverged: {error}"}
    except Exception as error:
        if not out_of_memory(error):
            return _failed(config, error)
        limit = config.get("memory_mb")
        asked = f"more than --memory-per-trial {limit:g} MB" if limit else "more than the machine had"
        detail = " ".join(str(error).split())[:300]  # the advice first: progress lines keep 200 characters
        return {"status": "FAILED", "error": f"out of memory ({asked}): {OUT_OF_MEMORY_ADVICE}; {detail}"}
    return {"status": "FINISHED", **metrics}


def _failed(config: dict[str, Any], error: BaseException) -> dict[str, Any]:
    """The FAILED result of a trial that raised ``error`` (called inside the ``except``: it reads the traceback);
    a trial's bug must not stop the other trials."""
    result = {
        "status": "FAILED",
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback.format_exc(),
    }
    if is_disk_full(error):  # but a full disk stops them all (removal_bench.running.runner.DriverListener)
        # A fault of the machine, not a bug: no traceback (MLflow would stage it in the temporary folder,
        # which may be the full one), and the line names the file our writer names.
        result.pop("traceback")
        written = [config.get(name) for name in ("embeddings_path", "model_path", "reuse_dir") if config.get(name)]
        path = (getattr(error, "path", None) or getattr(error, "filename", None)
                or (str(Path(written[0]).parent) if written else tempfile.gettempdir()))
        what = f"trial {config['method']} on {config['dataset']}, seed {config['seed']}"
        what = f"{error.what}, {what}" if isinstance(error, DiskFull) else f"the files of {what}"
        result.update({DISK_FULL_KEY: str(path), DISK_FULL_WHAT_KEY: what})
        if isinstance(error, DiskFull):
            result["error"] = f"DiskFull: {error.detail}: cannot write {path} ({what})"
    return result
