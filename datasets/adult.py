"""UCI Adult (Census Income, 1994): predict income > 50K, remove sex (or race, or both).

Data: ``adult.data`` (32,561 rows) and ``adult.test`` (16,281 rows) from the UCI
Machine Learning Repository, verified by SHA-256 and read from
``<data root>/adult/``. Target ``y`` = 1 when income is above 50K (about 24% of
people).

Private attribute ``s``, option ``private``:
- ``sex`` (default): 0 = Female (about 33%), 1 = Male;
- ``race``: each race its own class, in this order: Amer-Indian-Eskimo,
  Asian-Pac-Islander, Black, Other, White (0..4; White about 85%);
- ``sex+race``: the intersection, one class per (sex, race) combination present
  in ``train`` (:mod:`removal_bench.datasets.private`; all ten are).
The chosen columns are removed from ``x`` unless ``keep_private_column``; the
other of the two stays a one-hot feature.

``protocol=ffb`` instead follows FFB (Han et al., ICLR 2024) for like-for-like
comparison with its Table 4: its rows, preprocessing, split and MLP, see
:mod:`removal_bench.datasets.ffb` (``private`` is then ``sex`` or ``race``, White vs Black).

Preprocessing:
- values are stripped of their leading spaces; the test file's first line (a
  comment) is skipped and the '.' ending its labels is removed;
- '?' (a missing workclass, occupation or native country) is kept as a category
  of its own rather than dropping those rows: being missing is informative, and
  dropping them would change the population between papers' versions;
- ``fnlwgt`` is the census sampling weight, not a property of the person: it is
  dropped;
- the numeric columns (age, education-num, capital-gain, capital-loss,
  hours-per-week) are standardised with the mean and standard deviation of the
  ``train`` split only;
- the categorical columns are one-hot encoded with the categories seen in
  ``train`` (a category absent there encodes as all zeros);
- the private columns are removed from ``x`` unless ``keep_private_column`` is
  set. Other columns still carry them (``relationship`` holds Husband and Wife):
  that is the information a removal method has to remove.

Splits (seeded by ``data_seed``): ``adult.data`` is shuffled into ``train``
(80%) and ``val`` (20%); ``adult.test`` into ``probe`` (50%) and ``test`` (50%).
"""

from __future__ import annotations

from dataclasses import replace

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from removal_bench.core.errors import UserError
from removal_bench.core.params import Param
from removal_bench.core.recipes import OURS_CHEAP, Recipe
from removal_bench.datasets import ffb
from removal_bench.datasets.base import Data, DataFile, Dataset, DatasetSpec, Split, register
from removal_bench.datasets.private import attributes_of, intersection_choices, joint_label

URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"

COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
NUMERIC = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
CATEGORICAL = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "native-country",
)
DROPPED = ("fnlwgt",)
PRIVATE_ATTRIBUTES = ("sex", "race")
SEX_CODES = {"Female": 0, "Male": 1}
RACE_CODES = {"Amer-Indian-Eskimo": 0, "Asian-Pac-Islander": 1, "Black": 2, "Other": 3, "White": 4}
CODES = {"sex": SEX_CODES, "race": RACE_CODES}
INCOME_CODES = {"<=50K": 0, ">50K": 1}


def read_table(path: Path) -> pd.DataFrame:
    """One UCI Adult file as strings, validated; any problem is a UserError naming the file."""
    try:
        frame = pd.read_csv(
            path,
            header=None,
            names=list(COLUMNS),
            dtype=str,
            skipinitialspace=True,
            na_filter=False,
            comment="|",  # adult.test opens with "|1x3 Cross validator"
            skip_blank_lines=True,
            engine="c",
        )
    except OSError as error:
        raise UserError(f"adult: cannot read {path}: {error.strerror or error}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise UserError(f"adult: cannot parse {path}: {reason}") from None
    if frame.empty:
        raise UserError(f"adult: {path} holds no rows")
    frame = frame.apply(lambda column: column.str.strip())
    frame["income"] = frame["income"].str.rstrip(".")
    empty = (frame == "").any(axis=1) | frame.isna().any(axis=1)
    if empty.any():
        line = int(np.flatnonzero(empty.to_numpy())[0])
        raise UserError(
            f"adult: cannot parse {path}: row {line + 1} has fewer than {len(COLUMNS)} values"
        )
    for column, codes in (("sex", SEX_CODES), ("race", RACE_CODES), ("income", INCOME_CODES)):
        bad = ~frame[column].isin(list(codes))
        if bad.any():
            value = frame[column][bad].iloc[0]
            raise UserError(f"adult: cannot parse {path}: unexpected {column} {value!r}")
    for column in NUMERIC + DROPPED:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.isna().any():
            value = frame[column][numbers.isna()].iloc[0]
            raise UserError(f"adult: cannot parse {path}: {column} {value!r} is not a number")
        frame[column] = numbers.astype(np.float64)
    return frame


@register
class Adult(Dataset):
    name = "adult"
    description = "UCI Adult census: income > 50K, private attribute sex (0 = Female, 1 = Male), race, or both"
    # our own protocol's recipe (protocol=ffb: FFB's, see recipe_for)
    recipe = replace(OURS_CHEAP, epochs=10, batch_size=256, encoder="mlp")
    gpu_share = 0.25  # small tensors: several trials share one GPU
    options = {
        "private": Param("sex", "sex; race (5 classes); sex+race (one class per combination in train)",
                         choices=intersection_choices(PRIVATE_ATTRIBUTES)),
        "keep_private_column": Param(False, "keep the private columns in x (removal is then harder)"),
        "protocol": Param("ours", "ours; ffb: FFB's rows, split and MLP (Han et al., ICLR 2024)",
                          choices=("ours", "ffb")),
        "data_seed": Param(0, "seed of the train/val and probe/test splits"),
    }
    files = (
        DataFile(
            "adult.data",
            "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
            URL + "adult.data",
        ),
        DataFile(
            "adult.test",
            "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
            URL + "adult.test",
        ),
    )

    @classmethod
    def recipe_for(cls, options: dict[str, Any]) -> Recipe:
        return ffb.RECIPES[cls.name] if options.get("protocol") == "ffb" else cls.recipe

    def load(self, options: dict[str, Any], data_root: Path) -> Data:
        folder = self.folder(data_root)
        if options["protocol"] == "ffb":
            return ffb.load(self.name, folder, None, options)
        development = read_table(folder / "adult.data")
        held_out = read_table(folder / "adult.test")
        rng = np.random.default_rng(options["data_seed"])
        train, val = _shuffle_split(development, 0.8, rng)
        probe, test = _shuffle_split(held_out, 0.5, rng)

        attributes = attributes_of(options["private"])
        frames, s, classes = _private_labels({"train": train, "val": val, "probe": probe, "test": test}, attributes)
        train, val, probe, test = (frames[name] for name in ("train", "val", "probe", "test"))
        keep = options["keep_private_column"]
        # Today's column order (CATEGORICAL, then sex when kept) so the default x does not change.
        categorical = tuple(c for c in CATEGORICAL if keep or c not in attributes) + (
            ("sex",) if keep or "sex" not in attributes else ()
        )
        categories = {c: pd.Index(sorted(train[c].unique())) for c in categorical}
        mean = train[list(NUMERIC)].mean()
        std = train[list(NUMERIC)].std(ddof=0).replace(0.0, 1.0)

        def encode(frame: pd.DataFrame, private: np.ndarray) -> Split:
            parts = [((frame[list(NUMERIC)] - mean) / std).to_numpy(np.float32)]
            for column in categorical:
                codes = categories[column].get_indexer(frame[column])
                parts.append(_one_hot(codes, len(categories[column])))
            return Split(
                torch.from_numpy(np.concatenate(parts, axis=1)),
                torch.tensor(frame["income"].map(INCOME_CODES).to_numpy(np.int64)),
                torch.from_numpy(private),
            )

        splits = {name: encode(frames[name], s[name]) for name in ("train", "val", "probe", "test")}
        spec = DatasetSpec(
            input_shape=(splits["train"].x.shape[1],),
            num_classes=2,
            num_private=classes,
            encoder="mlp",
            epochs=10,
            batch_size=256,
            target_name="income>50K",
            private_name=options["private"],
        )
        return Data(spec=spec, **splits)


def _private_labels(
    frames: dict[str, pd.DataFrame], attributes: tuple[str, ...]
) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray], int]:
    """Each split's rows that have a private class, their labels, and the number of classes."""
    names = list(frames)
    whole = pd.concat([frames[name] for name in names], ignore_index=True)
    part = np.repeat(np.arange(len(names)), [len(frames[name]) for name in names])
    codes = {a: whole[a].map(CODES[a]).to_numpy(np.int64) for a in attributes}
    labels, keep, classes = joint_label(codes, attributes, part == 0)
    if len(attributes) == 1:
        classes = list(CODES[attributes[0]])  # every value a class, present in train or not
    kept = {name: frames[name][keep[part == i]].reset_index(drop=True) for i, name in enumerate(names)}
    return kept, {name: labels[(part == i) & keep] for i, name in enumerate(names)}, len(classes)


def _one_hot(codes: np.ndarray, width: int) -> np.ndarray:
    """Rows of the identity; code -1 (a category unseen in train) gives a row of zeros."""
    out = np.zeros((len(codes), width), dtype=np.float32)
    known = codes >= 0
    out[np.flatnonzero(known), codes[known]] = 1.0
    return out


def _shuffle_split(
    frame: pd.DataFrame, fraction: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = rng.permutation(len(frame))
    cut = int(round(fraction * len(frame)))
    return frame.iloc[order[:cut]].reset_index(drop=True), frame.iloc[order[cut:]].reset_index(drop=True)
