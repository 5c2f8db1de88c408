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
    epochs, batch_size     None means the dataset's default
    encoder                None means the dataset's default
    device                 "auto", "cpu", "cuda", "cuda:1", ...
    data_root              folder holding the datasets' files
    threads                torch / BLAS threads for this trial (None: leave as is)
    embeddings_path        where to write embeddings.npz (None: don't)
    epoch_leakage          also measure ``val_leakage_epoch`` after every epoch (see
                           :func:`epoch_leakage`; a sweep's leakage guard turns it on)

Only the first group is the trial's identity: :func:`config_hash` hashes it.
Device, data root, threads and output paths do not change what is computed.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import datasets as dataset_registry
import methods as method_registry
from bench.errors import UserError
from bench.params import resolve
from methods.encoders import ENCODERS, NormalisedInput, build_encoder, load_weights

IDENTITY_KEYS = ("method", "dataset", "dataset_options", "hparams", "seed", "epochs", "batch_size", "encoder")
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
) -> dict[str, Any]:
    """Validate names and values once, at the boundary, and return a resolved config.

    ``dataset_options`` and ``hparams`` may hold strings (from the command line);
    unknown names or bad values raise UserError.
    """
    method_cls = method_registry.get_method(method)
    dataset_cls = dataset_registry.get_dataset(dataset)
    if encoder is not None and encoder not in ENCODERS:
        raise UserError(f"unknown encoder {encoder!r} (valid: {', '.join(sorted(ENCODERS))})")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value is not None and (not isinstance(value, int) or value < (0 if name == "epochs" else 2)):
            raise UserError(f"{name} must be a whole number >= {0 if name == 'epochs' else 2}, got {value!r}")
    return {
        "method": method,
        "dataset": dataset,
        "dataset_options": resolve(dataset, dataset_cls.options, dataset_options or {}),
        "hparams": resolve(method, method_cls.hparams, hparams or {}),
        "seed": int(seed),
        "epochs": epochs,
        "batch_size": batch_size,
        "encoder": encoder,
        "device": device,
        "data_root": str(Path(data_root).expanduser().resolve()) if data_root else str(dataset_registry.default_data_root()),
        "threads": threads,
        "embeddings_path": embeddings_path,
    }


def config_hash(config: dict[str, Any]) -> str:
    """A trial's identity: the hash of its canonical identity fields (16 hex digits)."""
    identity = {key: config.get(key) for key in IDENTITY_KEYS}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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
def accuracy_on(method: method_registry.Method, split: dataset_registry.Split) -> torch.Tensor:
    """Task accuracy as a 0-d tensor on the device (no host synchronisation)."""
    correct = torch.zeros((), device=split.y.device)
    for start in range(0, len(split), EVAL_BATCH):
        logits = method(split.x[start : start + EVAL_BATCH])
        correct += (logits.argmax(dim=1) == split.y[start : start + EVAL_BATCH]).sum()
    return correct / len(split)


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

    from bench.metrics import balanced_accuracy

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


def _set_seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def run_trial(config: dict[str, Any], report: Reporter | None = None) -> dict[str, Any]:
    """Train and evaluate one trial; return its final metrics.

    ``report`` (if given) receives a dict of metrics after every epoch
    (``epoch``, ``train_loss`` and the method's other loss terms, ``val_accuracy``).
    Raises TrialDiverged when the loss stops being finite.
    """
    from bench.attackers import measure_leakage
    from bench.metrics import balanced_accuracy, task_metrics

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    device = resolve_device(config["device"])
    data = load_data(config)
    spec = data.spec
    epochs = spec.epochs if config["epochs"] is None else config["epochs"]
    batch_size = spec.batch_size if config["batch_size"] is None else config["batch_size"]
    encoder_name = config["encoder"] or spec.encoder

    generator = _set_seed(config["seed"])
    train, val = data.train.to(device), data.val.to(device)
    encoder = build_encoder(encoder_name, spec.input_shape)
    if spec.encoder_weights:
        load_weights(encoder, spec.encoder_weights)
    fast_images = device.type == "cuda" and encoder_name == "resnet18"
    if spec.pixel_mean is not None:
        encoder = NormalisedInput(encoder, spec.pixel_mean, spec.pixel_std, channels_last=fast_images)
    method_cls = method_registry.get_method(config["method"])
    method = method_cls(encoder, spec.num_classes, spec.num_private, config["hparams"], max(epochs, 1)).to(device)
    if fast_images:  # channels_last + bf16 autocast: 2.4x the fp32 img/s on an H200 (docs/DEVELOPING.md)
        method = method.to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=fast_images) if device.type == "cuda" else nullcontext()

    n = len(train)
    steps = n // batch_size + (1 if n % batch_size >= 2 else 0)  # a batch of one breaks batch norm
    start = time.perf_counter()
    for epoch in range(epochs):
        method.train()
        order = torch.randperm(n, generator=generator).to(device)
        sums: dict[str, torch.Tensor] = {}
        for step in range(steps):
            index = order[step * batch_size : (step + 1) * batch_size]
            with autocast:
                terms = method.update(train.x[index], train.y[index], train.s[index])
            for key, value in terms.items():
                sums[key] = sums[key] + value if key in sums else value
        method.end_epoch(epoch)
        method.eval()
        means = {("train_" + key if not key.startswith("train_") else key): (value / steps).item() for key, value in sums.items()}
        bad = {key: value for key, value in means.items() if not math.isfinite(value)}
        if bad:
            key, value = next(iter(bad.items()))
            raise TrialDiverged(f"{key} became {value} in epoch {epoch + 1}")
        epoch_metrics = {"epoch": epoch + 1, **means, "val_accuracy": accuracy_on(method, val).item()}
        if config.get("epoch_leakage") and not is_post_hoc(method):
            epoch_metrics["val_leakage_epoch"] = epoch_leakage(method, data.probe.to(device), val, spec.num_private, config["seed"])
        if report is not None:
            report(epoch_metrics)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - start

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
    leakage = measure_leakage(probe.z, probe.s, val_e.z, val_e.s, test.z, test.s, spec.num_private, seed=config["seed"])
    metrics.update(leakage.as_metrics())
    metrics["leakage_attacker"] = leakage.best
    floor = measure_leakage(
        probe.probabilities, probe.s, val_e.probabilities, val_e.s, test.probabilities, test.s,
        spec.num_private, seed=config["seed"],
    )
    metrics.update(floor.as_metrics(prefix="floor_"))
    if test.private_logits is not None:
        metrics["head_acc"] = balanced_accuracy(test.s, test.private_logits.argmax(1))
    metrics["train_seconds"] = train_seconds
    metrics["samples_per_second"] = epochs * n / train_seconds if train_seconds > 0 else 0.0
    metrics["eval_seconds"] = time.perf_counter() - evaluation_start
    metrics["epochs"] = epochs
    metrics["num_classes"] = spec.num_classes
    metrics["num_private"] = spec.num_private
    metrics["batch_size"] = batch_size
    metrics["encoder"] = encoder_name
    metrics["bottleneck_dim"] = int(probe.z.shape[1])

    if config.get("embeddings_path"):
        path = Path(config["embeddings_path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez_compressed(
            partial,
            z_probe=probe.z, y_probe=probe.y, s_probe=probe.s,
            z_test=test.z, y_test=test.y, s_test=test.s,
        )
        partial.replace(path)
    return metrics


def execute_trial(config: dict[str, Any], report: Reporter | None = None) -> dict[str, Any]:
    """Run a trial and never raise: the result says ``status`` FINISHED or FAILED (with ``error``)."""
    try:
        metrics = run_trial(config, report)
    except TrialDiverged as error:
        return {"status": "FAILED", "error": f"diverged: {error}"}
    except Exception as error:  # a trial's bug must not stop the other trials
        return {
            "status": "FAILED",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }
    return {"status": "FINISHED", **metrics}
