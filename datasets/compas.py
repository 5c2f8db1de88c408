"""ProPublica COMPAS: predict two-year recidivism, remove race (or sex, or both).

Data: ``compas-scores-two-years.csv`` (7,214 rows) from ProPublica's
``compas-analysis`` repository (the data of "Machine Bias", 2016), verified by
SHA-256 and read from ``<data root>/compas/``. Target ``y`` = ``two_year_recid``
(1 = re-arrested within two years, about 46% after filtering).

Rows: the filter of ProPublica's own analysis, which keeps 6,172 rows:
``days_b_screening_arrest`` within [-30, 30] (rows where it is empty are
dropped, as R's ``filter`` does), ``is_recid`` != -1, ``c_charge_degree`` != 'O'
and ``score_text`` != 'N/A'.

Private attribute ``s``, option ``private``: ``race`` (default), ``sex`` (0 =
Female, 1 = Male) or ``sex+race``, their intersection (one class per (sex,
race) combination present in ``train``, :mod:`removal_bench.datasets.private`). Race is coded
by the option ``races``, which also chooses the rows:
- ``binary`` (default): only African-American (1) and Caucasian (0) people,
  5,278 rows, the comparison of ProPublica's analysis;
- ``all``: every race its own class, in this fixed order: African-American,
  Asian, Caucasian, Hispanic, Native American, Other (0..5; 6,172 rows; Asian
  and Native American hold 31 and 11 people).
The private columns are removed from ``x`` unless ``keep_private_column``; the
other one of sex and race is a one-hot feature.

``protocol=ffb`` instead follows FFB (Han et al., ICLR 2024), for like-for-like
comparison with its Table 4: all 6,172 rows, AIF360's columns (charge
description included), race as Caucasian (1) vs everyone else (0), FFB's split
and MLP; see :mod:`removal_bench.datasets.ffb` (``races`` is then not used).

Features ``x``: age, priors_count, juv_fel_count, juv_misd_count and
juv_other_count (plus decile_score, COMPAS's own risk score, when
``include_score`` is set), standardised with the mean and standard deviation of
the ``train`` split only; sex, c_charge_degree (F/M) and age_cat one-hot
encoded with the categories seen in ``train``, and race when it is not private. The file
repeats the ``decile_score`` and ``priors_count`` headers; the first of each is
read (the copies are identical).

Splits (seeded by ``data_seed``): 50% ``train``, 10% ``val``, 20% ``probe``,
20% ``test``, stratified by (y, s) (by y and the combination of values for an
intersection): each group is shuffled and cut at
those fractions (rounded per group, so a split's size may differ from its exact
share by a few rows).
"""

from __future__ import annotations

from dataclasses import replace

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from removal_bench.core.errors import UserError
from removal_bench.core.params import Param
from removal_bench.core.recipes import OURS_CHEAP, Recipe
from removal_bench.datasets import ffb
from removal_bench.datasets.base import SPLITS, Data, DataFile, Dataset, DatasetSpec, Split, register
from removal_bench.datasets.private import attributes_of, joint_label

URL = "https://raw.githubusercontent.com/propublica/compas-analysis/master/compas-scores-two-years.csv"
FILE_NAME = "compas-scores-two-years.csv"

NUMERIC = ("age", "priors_count", "juv_fel_count", "juv_misd_count", "juv_other_count")
SCORE = "decile_score"
CATEGORICAL = ("sex", "c_charge_degree", "age_cat")
FILTER_NUMERIC = ("days_b_screening_arrest", "is_recid")
TARGET = "two_year_recid"
PRIVATE = "race"
REQUIRED = NUMERIC + (SCORE,) + CATEGORICAL + FILTER_NUMERIC + (TARGET, PRIVATE, "score_text")
RACES = ("African-American", "Asian", "Caucasian", "Hispanic", "Native American", "Other")
BINARY_RACES = {"Caucasian": 0, "African-American": 1}
SEX_CODES = {"Female": 0, "Male": 1}
PRIVATE_ATTRIBUTES = ("race", "sex")
FRACTIONS = (0.5, 0.1, 0.2, 0.2)  # train, val, probe, test


def read_table(path: Path) -> pd.DataFrame:
    """The CSV, ProPublica's filter applied, validated; any problem is a UserError naming the file."""
    try:
        frame = pd.read_csv(path, dtype=str, na_filter=False, engine="c")
    except OSError as error:
        raise UserError(f"compas: cannot read {path}: {error.strerror or error}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise UserError(f"compas: cannot parse {path}: {reason}") from None
    absent = [column for column in REQUIRED if column not in frame.columns]
    if absent:
        raise UserError(f"compas: cannot parse {path}: no column {', '.join(absent)} in its header")
    frame = frame[list(REQUIRED)].apply(lambda column: column.str.strip())
    days = pd.to_numeric(frame["days_b_screening_arrest"], errors="coerce")
    recid = _numbers(frame, "is_recid", path)
    keep = (
        days.between(-30, 30)  # NaN (an empty cell) is outside
        & (recid != -1)
        & (frame["c_charge_degree"] != "O")
        & (frame["score_text"] != "N/A")
        & (frame["score_text"] != "")
    )
    frame = frame[keep.to_numpy()].reset_index(drop=True)
    if frame.empty:
        raise UserError(f"compas: {path} holds no rows that pass ProPublica's filter")
    for column in NUMERIC + (SCORE, TARGET):
        frame[column] = _numbers(frame, column, path)
    bad = ~frame[TARGET].isin([0.0, 1.0])
    if bad.any():
        raise UserError(f"compas: cannot parse {path}: {TARGET} {frame[TARGET][bad].iloc[0]!r} is not 0 or 1")
    bad = ~frame["sex"].isin(list(SEX_CODES))
    if bad.any():
        raise UserError(f"compas: cannot parse {path}: unexpected sex {frame['sex'][bad].iloc[0]!r}")
    bad = ~frame[PRIVATE].isin(RACES)
    if bad.any():
        valid = ", ".join(RACES)
        raise UserError(f"compas: cannot parse {path}: unexpected race {frame[PRIVATE][bad].iloc[0]!r} (known: {valid})")
    return frame


def _numbers(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    numbers = pd.to_numeric(frame[column], errors="coerce")
    if numbers.isna().any():
        value = frame[column][numbers.isna()].iloc[0]
        raise UserError(f"compas: cannot parse {path}: {column} {value!r} is not a number")
    return numbers.astype(np.float64)


def stratified_split(
    groups: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    """Row indices of each part: every group (an integer label per row) shuffled and cut at ``fractions``.

    Cuts are rounded per group, so a part's size can differ from its exact share
    by up to half a row per group. Each part's indices are sorted.
    """
    cumulative = np.cumsum(np.asarray(fractions, dtype=np.float64))
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for group in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        cuts = np.rint(cumulative[:-1] * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(members, cuts)):
            part.append(chunk)
    return [np.sort(np.concatenate(part)) for part in parts]


def encode_tabular(
    frames: dict[str, pd.DataFrame],
    numeric: Sequence[str],
    categorical: Sequence[str],
    y: dict[str, np.ndarray],
    s: dict[str, np.ndarray],
) -> dict[str, Split]:
    """Standardise ``numeric`` and one-hot ``categorical`` with statistics of ``frames["train"]`` only."""
    train = frames["train"]
    categories = {c: pd.Index(sorted(train[c].unique())) for c in categorical}
    mean = train[list(numeric)].mean()
    std = train[list(numeric)].std(ddof=0).replace(0.0, 1.0)
    splits = {}
    for name, frame in frames.items():
        parts = [((frame[list(numeric)] - mean) / std).to_numpy(np.float32)]
        for column in categorical:
            codes = categories[column].get_indexer(frame[column])
            one_hot = np.zeros((len(frame), len(categories[column])), dtype=np.float32)
            known = codes >= 0  # a category unseen in train encodes as zeros
            one_hot[np.flatnonzero(known), codes[known]] = 1.0
            parts.append(one_hot)
        splits[name] = Split(
            torch.from_numpy(np.ascontiguousarray(np.concatenate(parts, axis=1))),
            torch.as_tensor(y[name], dtype=torch.long),
            torch.as_tensor(s[name], dtype=torch.long),
        )
    return splits


@register
class Compas(Dataset):
    name = "compas"
    description = "ProPublica COMPAS: two-year recidivism, private attribute race, sex, or both"
    # our own protocol's recipe (protocol=ffb: FFB's, see recipe_for)
    recipe = replace(OURS_CHEAP, epochs=30, batch_size=128, encoder="mlp")
    gpu_share = 0.25  # small tensors: several trials share one GPU
    options = {
        "private": Param("race", "race (coded by races); sex; sex+race (one class per combination in train)",
                         choices=("race", "sex", "sex+race")),
        "keep_private_column": Param(False, "keep the private columns in x (removal is then harder)"),
        "protocol": Param("ours", "ours; ffb: FFB's rows, split and MLP (Han et al., ICLR 2024)",
                          choices=("ours", "ffb")),
        "races": Param(
            "binary",
            "binary: African-American (1) vs Caucasian (0) only; all: each race a class",
            choices=("binary", "all"),
        ),
        "include_score": Param(False, "add COMPAS's decile_score to x"),
        "data_seed": Param(0, "seed of the stratified train/val/probe/test split"),
    }
    files = (
        DataFile(FILE_NAME, "c451db85908b2f7fef1d83203bedf6b71ecda0d5af468d82ae62178f91d0cc7d", URL),
    )

    @classmethod
    def recipe_for(cls, options: dict[str, Any]) -> Recipe:
        return ffb.RECIPES[cls.name] if options.get("protocol") == "ffb" else cls.recipe

    def load(self, options: dict[str, Any], data_root: Path) -> Data:
        if options["protocol"] == "ffb":
            return ffb.load(self.name, self.folder(data_root), FILE_NAME, options)
        frame = read_table(self.folder(data_root) / FILE_NAME)
        if options["races"] == "binary":
            frame = frame[frame[PRIVATE].isin(list(BINARY_RACES))].reset_index(drop=True)
            race_codes = BINARY_RACES
        else:
            race_codes = {race: index for index, race in enumerate(RACES)}
        if len(frame) < 2 * len(SPLITS):
            raise UserError(f"compas: only {len(frame)} rows left after filtering; too few to split")
        y = frame[TARGET].to_numpy(np.int64)
        codes = {"race": frame[PRIVATE].map(race_codes).to_numpy(np.int64),
                 "sex": frame["sex"].map(SEX_CODES).to_numpy(np.int64)}
        widths = {"race": len(race_codes), "sex": len(SEX_CODES)}
        attributes = attributes_of(options["private"])
        indices, s, classes = split_by_private(y, codes, widths, attributes, options["data_seed"])
        numeric = NUMERIC + ((SCORE,) if options["include_score"] else ())
        keep = options["keep_private_column"]
        # Today's column order (race never was in x) so that the default x does not change.
        categorical = tuple(c for c in CATEGORICAL if keep or c not in attributes) + (
            (PRIVATE,) if keep or PRIVATE not in attributes else ()
        )
        splits = encode_tabular(
            {name: frame.iloc[index].reset_index(drop=True) for name, index in indices.items()},
            numeric,
            categorical,
            {name: y[index] for name, index in indices.items()},
            s,
        )
        spec = DatasetSpec(
            input_shape=(splits["train"].x.shape[1],),
            num_classes=2,
            num_private=classes,
            encoder="mlp",
            epochs=30,
            batch_size=128,
            target_name=TARGET,
            private_name=options["private"],
        )
        return Data(spec=spec, **splits)


def split_by_private(
    y: np.ndarray, codes: dict[str, np.ndarray], widths: dict[str, int], attributes: Sequence[str], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """The stratified split by (y, private value), each split's private labels, and the number of classes.

    One attribute: stratified by (y, s) and every value of the attribute a class.
    An intersection: stratified by (y, combination); one class per combination
    present in ``train``, rows of other splits with an absent one dropped.
    """
    rng = np.random.default_rng(seed)
    if len(attributes) == 1:
        (name,) = attributes
        s = codes[name]
        indices = dict(zip(SPLITS, stratified_split(y * widths[name] + s, FRACTIONS, rng)))
        return indices, {split: s[index] for split, index in indices.items()}, widths[name]
    stacked = np.stack([codes[a] for a in attributes], axis=1)
    _, combination = np.unique(stacked, axis=0, return_inverse=True)
    combination = combination.reshape(-1)
    indices = dict(zip(SPLITS, stratified_split(y * (combination.max() + 1) + combination, FRACTIONS, rng)))
    in_train = np.zeros(len(y), dtype=bool)
    in_train[indices["train"]] = True
    labels, keep, names = joint_label(codes, attributes, in_train)
    indices = {split: index[keep[index]] for split, index in indices.items()}
    return indices, {split: labels[index] for split, index in indices.items()}, len(names)
