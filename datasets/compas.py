"""ProPublica COMPAS: predict two-year recidivism, remove race.

Data: ``compas-scores-two-years.csv`` (7,214 rows) from ProPublica's
``compas-analysis`` repository (the data of "Machine Bias", 2016), verified by
SHA-256 and read from ``<data root>/compas/``. Target ``y`` = ``two_year_recid``
(1 = re-arrested within two years, about 46% after filtering).

Rows: the filter of ProPublica's own analysis, which keeps 6,172 rows:
``days_b_screening_arrest`` within [-30, 30] (rows where it is empty are
dropped, as R's ``filter`` does), ``is_recid`` != -1, ``c_charge_degree`` != 'O'
and ``score_text`` != 'N/A'.

Private attribute ``s`` = race, option ``races``:
- ``binary`` (default): only African-American (1) and Caucasian (0) people,
  5,278 rows, the comparison of ProPublica's analysis;
- ``all``: every race its own class, in this fixed order: African-American,
  Asian, Caucasian, Hispanic, Native American, Other (0..5; 6,172 rows; Asian
  and Native American hold 31 and 11 people).

Features ``x``: age, priors_count, juv_fel_count, juv_misd_count and
juv_other_count (plus decile_score, COMPAS's own risk score, when
``include_score`` is set), standardised with the mean and standard deviation of
the ``train`` split only; sex, c_charge_degree (F/M) and age_cat one-hot
encoded with the categories seen in ``train``. Race is never in ``x``. The file
repeats the ``decile_score`` and ``priors_count`` headers; the first of each is
read (the copies are identical).

Splits (seeded by ``data_seed``): 50% ``train``, 10% ``val``, 20% ``probe``,
20% ``test``, stratified by (y, s): each (y, s) group is shuffled and cut at
those fractions (rounded per group, so a split's size may differ from its exact
share by a few rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from bench.errors import UserError
from bench.params import Param
from datasets.base import SPLITS, Data, DataFile, Dataset, DatasetSpec, Split, register

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
    description = "ProPublica COMPAS: two-year recidivism, private attribute race"
    options = {
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

    def load(self, options: dict[str, Any], data_root: Path) -> Data:
        frame = read_table(self.folder(data_root) / FILE_NAME)
        if options["races"] == "binary":
            frame = frame[frame[PRIVATE].isin(list(BINARY_RACES))].reset_index(drop=True)
            codes = BINARY_RACES
        else:
            codes = {race: index for index, race in enumerate(RACES)}
        if len(frame) < 2 * len(SPLITS):
            raise UserError(f"compas: only {len(frame)} rows left after filtering; too few to split")
        y = frame[TARGET].to_numpy(np.int64)
        s = frame[PRIVATE].map(codes).to_numpy(np.int64)
        rng = np.random.default_rng(options["data_seed"])
        parts = stratified_split(y * len(codes) + s, FRACTIONS, rng)
        indices = dict(zip(SPLITS, parts))
        numeric = NUMERIC + ((SCORE,) if options["include_score"] else ())
        splits = encode_tabular(
            {name: frame.iloc[index].reset_index(drop=True) for name, index in indices.items()},
            numeric,
            CATEGORICAL,
            {name: y[index] for name, index in indices.items()},
            {name: s[index] for name, index in indices.items()},
        )
        spec = DatasetSpec(
            input_shape=(splits["train"].x.shape[1],),
            num_classes=2,
            num_private=len(codes),
            encoder="mlp",
            epochs=30,
            batch_size=128,
            target_name=TARGET,
            private_name=PRIVATE,
        )
        return Data(spec=spec, **splits)
