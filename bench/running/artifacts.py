"""What a trial leaves behind besides its metrics: its model file and the description of its data.

Model file (``model.pt``, written by :func:`save_model` when a trial's config
has ``model_path``; ``bench run --log-models`` logs it to the trial's MLflow
run). A ``torch.save`` of plain containers only, so ``torch.load(...,
weights_only=True)`` reads it without running code from the file::

    format       "removal-bench-model/1"
    config       the trial's config without run-time fields (device, paths,
                 threads): method, dataset, dataset_options, hparams, seed,
                 epochs, batch_size, encoder, recipe, ...
    build        what the constructor took: encoder name, input shape,
                 num_classes, num_private, epochs, whether the input is
                 normalised on the device (uint8 images)
    state_dict   the method's parameters and buffers (encoder, task head,
                 the method's heads), on the CPU
    attributes   per submodule, the plain attributes that are not in the
                 state dict but change what the model computes: numbers,
                 flags, tensors, and dataclasses of tensors (LEACE's fitted
                 eraser, a post-hoc method's ``fitted`` flag)

:func:`load_model` rebuilds the method from it: ``method.embed(x)`` then gives
the trial's bottleneck bit for bit on the same device type.

Dataset input (:func:`dataset_input`): an ``mlflow.entities.DatasetInput``
naming the dataset, its resolved options and the SHA-256 of each data file
where the registry knows it, so MLflow's UI shows what a trial trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

MODEL_FORMAT = "removal-bench-model/1"
MODEL_FILE = "model.pt"
# Config fields that say where and how a trial ran, not what it computed.
RUNTIME_KEYS = frozenset({"device", "data_root", "threads", "embeddings_path", "model_path", "epoch_leakage", "trial_key"})
_PLAIN = (bool, int, float, str, type(None))


def model_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config that rebuilds and identifies the model, as JSON-safe values."""
    kept = {key: value for key, value in config.items() if key not in RUNTIME_KEYS}
    return json.loads(json.dumps(kept, default=str))


def _plain_attributes(module: nn.Module) -> dict[str, Any]:
    captured = {}
    for name, value in vars(module).items():
        if name.startswith("_") or name == "training":
            continue
        if isinstance(value, _PLAIN):
            captured[name] = value
        elif isinstance(value, torch.Tensor):
            captured[name] = value.detach().cpu()
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
            if all(isinstance(v, (torch.Tensor, *_PLAIN)) for v in fields.values()):
                kind = type(value)
                captured[name] = {
                    "dataclass": f"{kind.__module__}:{kind.__qualname__}",
                    "fields": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in fields.items()},
                }
    return captured


def save_model(path: str | Path, method: nn.Module, config: dict[str, Any], encoder_name: str, input_shape) -> Path:
    """Write the model file of a trained (and, for post-hoc methods, fitted) method; atomic."""
    from removal_bench.core.encoders import NormalisedInput

    payload = {
        "format": MODEL_FORMAT,
        "config": model_config(config),
        "build": {
            "method": type(method).name,
            "encoder": encoder_name,
            "input_shape": [int(size) for size in input_shape],
            "num_classes": int(method.num_classes),
            "num_private": int(method.num_private),
            "epochs": int(method.epochs),
            "hparams": json.loads(json.dumps(method.hp, default=str)),
            "normalised_input": isinstance(method.encoder, NormalisedInput),
        },
        "state_dict": {key: value.detach().cpu().contiguous() for key, value in method.state_dict().items()},
        "attributes": {name or ".": _plain_attributes(module) for name, module in method.named_modules()},
    }
    from removal_bench.core.disk import save_atomic

    # written whole or not at all; a full disk is DiskFull naming the file
    return save_atomic(path, lambda stream: torch.save(payload, stream), "the trial's model, --log-models")


class ModelFileError(ValueError):
    """The file is not a model file this version can rebuild."""


def read_model(path: str | Path) -> dict[str, Any]:
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say so in one line
        raise ModelFileError(f"{path} is not a readable model file ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a {MODEL_FORMAT} file")
    return payload


# Model files written before the one namespace (removal_bench) name our modules by their old top-level names.
_RENAMED = {"methods.encoders": "removal_bench.core.encoders", "bench.recipes": "removal_bench.core.recipes",
            "bench.params": "removal_bench.core.params"}


def _restore_dataclass(spec: dict[str, Any], device: torch.device):
    """A dataclass whose module the method's own import already loaded (nothing else is imported from a file)."""
    module_name, _, qualname = spec["dataclass"].partition(":")
    module_name = _RENAMED.get(module_name, module_name)
    if module_name.split(".")[0] in ("methods", "datasets"):  # written before the one namespace
        module_name = f"removal_bench.{module_name}"
    if module_name not in sys.modules:
        raise ModelFileError(f"attribute of type {spec['dataclass']} names a module the method does not use")
    target: Any = sys.modules[module_name]
    for part in qualname.split("."):
        target = getattr(target, part)
    if not (isinstance(target, type) and dataclasses.is_dataclass(target)):
        raise ModelFileError(f"{spec['dataclass']} is not a dataclass")
    fields = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in spec["fields"].items()}
    return target(**fields)


def rebuild(payload: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """The method of a model file, in eval mode on ``device``, computing what the trial computed."""
    import removal_bench.methods as method_registry
    from removal_bench.core.encoders import NormalisedInput, build_encoder

    from removal_bench.running.plugins import ensure_loaded

    ensure_loaded(payload.get("config", {}))  # a plugin method's class, loaded as the trial loaded it
    device = torch.device(device)
    build = payload["build"]
    bottleneck = (payload["config"].get("recipe") or {}).get("bottleneck", "default")
    encoder = build_encoder(build["encoder"], tuple(build["input_shape"]), bottleneck)
    if build["normalised_input"]:
        channels = build["input_shape"][0]
        # Placeholders: the real pixel statistics are buffers, restored by the state dict.
        encoder = NormalisedInput(encoder, (0.0,) * channels, (1.0,) * channels)
    method_cls = method_registry.get_method(build["method"])
    extra = {}
    recipe = payload["config"].get("recipe")
    if recipe and "recipe" in inspect.signature(method_cls.__init__).parameters:
        from removal_bench.core.recipes import Recipe

        extra["recipe"] = Recipe.from_dict(recipe)  # builds the optimiser only; nothing the model computes
    method = method_cls(encoder, build["num_classes"], build["num_private"], build["hparams"], build["epochs"], **extra)
    state = payload["state_dict"]
    modules = dict(method.named_modules())
    for key, value in state.items():
        # A buffer registered as None (INLP's projection before fitting) is absent from a fresh
        # module's state dict, so load_state_dict would call it unexpected: set it directly.
        owner, _, name = key.rpartition(".")
        module = modules.get(owner)
        if module is not None and name in module._buffers and module._buffers[name] is None:
            module._buffers[name] = value.clone()
    for owner, attributes in payload.get("attributes", {}).items():
        module = modules.get("" if owner == "." else owner)
        if module is None:
            continue
        for name, value in attributes.items():
            if isinstance(value, dict) and "dataclass" in value:
                value = _restore_dataclass(value, device)
            setattr(module, name, value)
    # A post-hoc method replaces its task head after training; its shape is in the state dict.
    missing, unexpected = method.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelFileError(
            f"the model file does not match {build['method']}'s modules "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    return method.to(device).eval()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Read a model file and rebuild its method; returns (method in eval mode, the trial's config)."""
    payload = read_model(path)
    return rebuild(payload, device), payload["config"]


# --------------------------------------------------------------------------- dataset inputs


def dataset_description(config: dict[str, Any]) -> dict[str, Any]:
    """Name, resolved options and data files (with SHA-256 where the registry knows it) of a trial's data."""
    import removal_bench.datasets as dataset_registry

    dataset_cls = dataset_registry.get_dataset(config["dataset"])
    files = [{"name": item.name, "sha256": item.sha256, "url": item.url} for item in dataset_cls.files]
    return {
        "dataset": config["dataset"],
        "options": json.loads(json.dumps(config["dataset_options"], sort_keys=True, default=str)),
        "files": files,
    }


def dataset_digest(description: dict[str, Any]) -> str:
    """Same name, options and file checksums, same digest (files without a known checksum count by name)."""
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dataset_input(config: dict[str, Any]):
    """The ``mlflow.entities.DatasetInput`` of a trial's training data, for ``MlflowClient.log_inputs``."""
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import DatasetInput, InputTag

    description = dataset_description(config)
    options = ",".join(f"{k}={v}" for k, v in sorted(description["options"].items()))
    entity = DatasetEntity(
        name=config["dataset"],
        digest=dataset_digest(description),
        source_type="code",  # generated or read by the dataset's class in this package
        source=json.dumps({"tags": {"bench.dataset": config["dataset"], "bench.options": options}}),
        profile=json.dumps(description),
    )
    return DatasetInput(dataset=entity, tags=[InputTag("mlflow.data.context", "training")])
