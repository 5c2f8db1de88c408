"""A procedural data set whose generative process is known.

    y ~ Bernoulli(1/2);  s = y with probability ``corr`` (``eval_corr`` in val/probe/test), else 1 - y
    u = [ (2y-1) * y_strength + e_y  (y_dims),
          (2s-1) * s_strength + e_s  (s_dims),
          e_v * (1 + s_nonlinear * s) (s_dims),
          e   (the rest) ]                     e ~ N(0, 1)
    x = Q u,  Q a fixed random rotation (seeded by ``data_seed``)

``s_strength`` writes ``s`` linearly into ``x`` (a linear attacker can read it);
``s_nonlinear`` writes it into the *variance* of some directions, which no
linear function of ``x`` can read but a non-linear attacker can. ``corr`` above
1/2 makes ``s`` a shortcut for ``y`` in training; ``eval_corr`` = 1/2 (default)
makes the evaluation splits unbiased, as the protocol asks.
"""

from __future__ import annotations

from dataclasses import replace

from pathlib import Path
from typing import Any

import numpy as np
import torch

from removal_bench.core.params import Param
from removal_bench.core.recipes import OURS_CHEAP
from removal_bench.datasets.base import Data, Dataset, DatasetSpec, Split, register

Y_DIMS = 4
S_DIMS = 4


def generate(
    n: int,
    corr: float,
    dim: int,
    y_strength: float,
    s_strength: float,
    s_nonlinear: float,
    rotation: np.ndarray,
    rng: np.random.Generator,
) -> Split:
    y = rng.integers(0, 2, size=n)
    s = np.where(rng.random(n) < corr, y, 1 - y)
    u = rng.standard_normal((n, dim))
    u[:, :Y_DIMS] += ((2 * y - 1) * y_strength)[:, None]
    u[:, Y_DIMS : Y_DIMS + S_DIMS] += ((2 * s - 1) * s_strength)[:, None]
    u[:, Y_DIMS + S_DIMS : Y_DIMS + 2 * S_DIMS] *= (1 + s_nonlinear * s)[:, None]
    x = u @ rotation.T
    return Split(
        torch.as_tensor(x, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.long),
        torch.as_tensor(s, dtype=torch.long),
    )


@register
class Synthetic(Dataset):
    name = "synthetic"
    description = "Gaussian toy with known generative process; s written linearly and/or in the variance"
    recipe = replace(OURS_CHEAP, epochs=20, batch_size=128, encoder="mlp")  # the training recipe (removal_bench.core.recipes), with its citation
    gpu_share = 0.25  # small tensors: several trials share one GPU
    options = {
        "n_train": Param(4000, "training samples", low=100),
        "n_eval": Param(2000, "samples in each of probe and test (val gets half)", low=100),
        "dim": Param(32, "input dimension", low=Y_DIMS + 2 * S_DIMS),
        "corr": Param(0.8, "P(s = y) in train", low=0.0, high=1.0),
        "eval_corr": Param(0.5, "P(s = y) in val, probe and test", low=0.0, high=1.0),
        "y_strength": Param(0.75, "mean shift of y in its directions", low=0.0),
        "s_strength": Param(0.6, "mean shift of s in its directions (linear signal)", low=0.0),
        "s_nonlinear": Param(0.0, "extra standard deviation where s = 1 (non-linear signal)", low=0.0),
        "data_seed": Param(0, "seed of the rotation and of every sample"),
    }

    def load(self, options: dict[str, Any], data_root: Path) -> Data:
        o = options
        rng = np.random.default_rng(o["data_seed"])
        rotation, _ = np.linalg.qr(rng.standard_normal((o["dim"], o["dim"])))
        common = dict(
            dim=o["dim"],
            y_strength=o["y_strength"],
            s_strength=o["s_strength"],
            s_nonlinear=o["s_nonlinear"],
            rotation=rotation,
            rng=rng,
        )
        splits = {
            "train": generate(o["n_train"], o["corr"], **common),
            "val": generate(o["n_eval"] // 2, o["eval_corr"], **common),
            "probe": generate(o["n_eval"], o["eval_corr"], **common),
            "test": generate(o["n_eval"], o["eval_corr"], **common),
        }
        spec = DatasetSpec(
            input_shape=(o["dim"],),
            num_classes=2,
            num_private=2,
            encoder="mlp",
            epochs=20,
            batch_size=128,
        )
        return Data(spec=spec, **splits)
