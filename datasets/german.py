"""UCI Statlog German Credit: predict good or bad credit, remove sex or age.

Data: ``german.data`` (1,000 rows) from the UCI Machine Learning Repository's
``statlog/german`` folder, verified by SHA-256 and read from
``<data root>/german/``. Each row holds 20 space-separated attributes (13
symbolic, coded ``A<attribute><value>`` such as ``A11``; 7 numeric) and the class
(1 = good, 2 = bad). Target ``y`` = 1 for good credit (70% of rows), 0 for bad.

Private attribute ``s``, option ``private``:
- ``sex`` (default): from attribute 9, personal status and sex: A91, A93, A94 are
  male (1), A92, A95 female (0) (about 31% female). The personal-status column
  is dropped from ``x``;
- ``age``: attribute 13 (age in years) > 25 (1) vs <= 25 (0) (about 19% are 25
  or younger), the definition of FFB's ``load_german_data`` (Han et al., ICLR
  2024; ahxt/fair_fairness_benchmark@394f020 src/dataset.py). The age column is
  dropped from ``x``;
- ``sex+age``: the intersection, one class per (sex, age) combination present
  in ``train`` (:mod:`removal_bench.datasets.private`); both columns are dropped.
``keep_private_column`` keeps the dropped columns in ``x``.

``protocol=ffb`` instead follows FFB for like-for-like comparison with its
Table 4 (age binarised as a feature when sex is private, FFB's split and MLP),
see :mod:`removal_bench.datasets.ffb`.
Other columns still carry some of the private attribute (employment length
correlates with age, for example): that is what a removal method has to remove.

Preprocessing: the numeric attributes (duration, credit amount, installment
rate, residence length, age, number of credits, people liable) are
standardised with the mean and standard deviation of the ``train`` split only;
the symbolic ones are one-hot encoded with the categories seen in ``train`` (an
unseen category encodes as zeros).

Splits (seeded by ``data_seed``): 50% ``train``, 10% ``val``, 20% ``probe``,
20% ``test``, stratified by (y, s), as for ``compas`` (by y and the combination
for ``sex+age``).
"""

from __future__ import annotations

from dataclasses import replace

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from removal_bench.core.errors import UserError
from removal_bench.core.params import Param
from removal_bench.core.recipes import OURS_CHEAP, Recipe
from removal_bench.datasets import ffb
from removal_bench.datasets.base import SPLITS, Data, DataFile, Dataset, DatasetSpec, register
from removal_bench.datasets.compas import encode_tabular, split_by_private
from removal_bench.datasets.private import attributes_of

URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/statlog/german/german.data"
FILE_NAME = "german.data"

COLUMNS = (
    "checking_status",  # 1
    "duration",  # 2
    "credit_history",  # 3
    "purpose",  # 4
    "credit_amount",  # 5
    "savings",  # 6
    "employment_since",  # 7
    "installment_rate",  # 8
    "personal_status",  # 9
    "other_debtors",  # 10
    "residence_since",  # 11
    "property",  # 12
    "age",  # 13
    "other_installment_plans",  # 14
    "housing",  # 15
    "existing_credits",  # 16
    "job",  # 17
    "people_liable",  # 18
    "telephone",  # 19
    "foreign_worker",  # 20
    "credit",  # class: 1 good, 2 bad
)
NUMERIC = (
    "duration",
    "credit_amount",
    "installment_rate",
    "residence_since",
    "age",
    "existing_credits",
    "people_liable",
)
CATEGORICAL = tuple(c for c in COLUMNS[:-1] if c not in NUMERIC)
SEX_CODES = {"A91": 1, "A92": 0, "A93": 1, "A94": 1, "A95": 0}  # 1 = male
CREDIT_CODES = {"1": 1, "2": 0}  # 1 = good
AGE_THRESHOLD = 25
DROPPED_FOR = {"sex": "personal_status", "age": "age"}


def read_table(path: Path) -> pd.DataFrame:
    """``german.data`` as a frame, validated; any problem is a UserError naming the file."""
    try:
        frame = pd.read_csv(
            path, sep=r"\s+", header=None, names=list(COLUMNS), dtype=str, na_filter=False, engine="c"
        )
    except OSError as error:
        raise UserError(f"german: cannot read {path}: {error.strerror or error}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise UserError(f"german: cannot parse {path}: {reason}") from None
    if frame.empty:
        raise UserError(f"german: {path} holds no rows")
    short = (frame == "").any(axis=1)
    if short.any():
        line = int(np.flatnonzero(short.to_numpy())[0])
        raise UserError(f"german: cannot parse {path}: row {line + 1} has fewer than {len(COLUMNS)} values")
    for position, column in enumerate(COLUMNS[:-1], start=1):
        if column in NUMERIC:
            numbers = pd.to_numeric(frame[column], errors="coerce")
            if numbers.isna().any():
                value = frame[column][numbers.isna()].iloc[0]
                raise UserError(f"german: cannot parse {path}: {column} {value!r} is not a number")
            frame[column] = numbers.astype(np.float64)
        else:
            # A value of attribute k is A<k><digits>: catches shifted or missing columns.
            bad = ~frame[column].str.fullmatch(rf"A{position}\d+")
            if bad.any():
                value = frame[column][bad].iloc[0]
                raise UserError(
                    f"german: cannot parse {path}: attribute {position} ({column}) {value!r} "
                    f"is not a code A{position}<digits>"
                )
    for column, codes in (("personal_status", SEX_CODES), ("credit", CREDIT_CODES)):
        bad = ~frame[column].isin(list(codes))
        if bad.any():
            raise UserError(f"german: cannot parse {path}: unexpected {column} {frame[column][bad].iloc[0]!r}")
    return frame


@register
class German(Dataset):
    name = "german"
    description = "UCI Statlog German credit: good or bad credit, private attribute sex or age"
    # our own protocol's recipe (protocol=ffb: FFB's, see recipe_for)
    recipe = replace(OURS_CHEAP, epochs=50, batch_size=64, encoder="mlp")
    gpu_share = 0.25  # small tensors: several trials share one GPU
    options = {
        "private": Param(
            "sex",
            "sex: from personal status (1 = male); age: 1 = older than 25; sex+age: one class per combination",
            choices=("sex", "age", "sex+age"),
        ),
        "keep_private_column": Param(False, "keep the private columns in x (removal is then harder)"),
        "protocol": Param("ours", "ours; ffb: FFB's preprocessing, split and MLP (Han et al., ICLR 2024)",
                          choices=("ours", "ffb")),
        "data_seed": Param(0, "seed of the stratified train/val/probe/test split"),
    }
    files = (
        DataFile(FILE_NAME, "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871", URL),
    )

    @classmethod
    def recipe_for(cls, options: dict[str, Any]) -> Recipe:
        return ffb.RECIPES[cls.name] if options.get("protocol") == "ffb" else cls.recipe

    def load(self, options: dict[str, Any], data_root: Path) -> Data:
        if options["protocol"] == "ffb":
            return ffb.load(self.name, self.folder(data_root), FILE_NAME, options)
        frame = read_table(self.folder(data_root) / FILE_NAME)
        if len(frame) < 2 * len(SPLITS):
            raise UserError(f"german: only {len(frame)} rows; too few to split")
        private = options["private"]
        attributes = attributes_of(private)
        y = frame["credit"].map(CREDIT_CODES).to_numpy(np.int64)
        codes = {"sex": frame["personal_status"].map(SEX_CODES).to_numpy(np.int64),
                 "age": (frame["age"] > AGE_THRESHOLD).to_numpy(np.int64)}
        indices, s, classes = split_by_private(y, codes, {"sex": 2, "age": 2}, attributes, options["data_seed"])
        dropped = set() if options["keep_private_column"] else {DROPPED_FOR[a] for a in attributes}
        splits = encode_tabular(
            {name: frame.iloc[index].reset_index(drop=True) for name, index in indices.items()},
            tuple(c for c in NUMERIC if c not in dropped),
            tuple(c for c in CATEGORICAL if c not in dropped),
            {name: y[index] for name, index in indices.items()},
            s,
        )
        spec = DatasetSpec(
            input_shape=(splits["train"].x.shape[1],),
            num_classes=2,
            num_private=classes,
            encoder="mlp",
            epochs=50,
            batch_size=64,
            target_name="good_credit",
            private_name=private,
        )
        return Data(spec=spec, **splits)
