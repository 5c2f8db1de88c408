"""Datasets: shapes, label ranges, splits, and the statistical properties each one promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from removal_bench.core.errors import UserError
from removal_bench.core.params import resolve
from removal_bench.datasets import SPLITS
from removal_bench.datasets import get_dataset
from removal_bench.datasets.adult import Adult
from removal_bench.datasets.base import DataFile
from removal_bench.datasets.colored_digits import NUM_COLOURS, PALETTE
from tests.conftest import SHARED_DATA



def load(name: str, data_root: Path, **given):
    cls = get_dataset(name)
    return cls().load(resolve(name, cls.options, given), data_root)


# -- synthetic -------------------------------------------------------------------------------


def test_synthetic_shapes_and_correlations(tmp_path):
    data = load("synthetic", tmp_path, n_train=4000, n_eval=4000, dim=16, corr=0.8, eval_corr=0.5)
    assert data.spec.input_shape == (16,)
    sizes = {name: len(split) for name, split in data.splits().items()}
    assert sizes == {"train": 4000, "val": 2000, "probe": 4000, "test": 4000}
    for split in data.splits().values():
        assert split.x.shape[1:] == (16,) and split.x.dtype == torch.float32
        assert set(split.y.unique().tolist()) == {0, 1} and set(split.s.unique().tolist()) == {0, 1}
    assert (data.train.s == data.train.y).float().mean().item() == pytest.approx(0.8, abs=0.03)
    for name in ("val", "probe", "test"):
        split = data.splits()[name]
        assert (split.s == split.y).float().mean().item() == pytest.approx(0.5, abs=0.04)


# -- colored_digits --------------------------------------------------------------------------


def grey_levels(x: torch.Tensor, colour: torch.Tensor) -> np.ndarray:
    """Undo the colouring: the stroke intensity 0..16 of each pixel, as integers."""
    image = x.numpy() * 0.5 + 0.5  # (n, 3, 8, 8) in [0, 1]
    background = PALETTE[colour.numpy()]  # (n, 3)
    channel = background.argmin(axis=1)  # the channel where the colour is darkest
    level = background[np.arange(len(channel)), channel][:, None, None]
    values = image[np.arange(len(channel)), channel]
    foreground = (values - level) / (1.0 - level)
    return np.rint(foreground * 16).astype(np.int64)


def image_keys(split) -> list[bytes]:
    return [row.tobytes() for row in grey_levels(split.x, split.s)]


@pytest.fixture(scope="module")
def digits_default():
    return load("colored_digits", Path("unused"))


def test_colored_digits_shapes_and_spec(digits_default):
    data = digits_default
    assert data.spec.input_shape == (3, 8, 8)
    assert (data.spec.num_classes, data.spec.num_private, data.spec.encoder) == (10, 10, "small_cnn")
    sizes = {name: len(split) for name, split in data.splits().items()}
    assert sizes == {"train": 3000, "val": 1970, "probe": 3000, "test": 3000}
    for split in data.splits().values():
        assert split.x.shape[1:] == (3, 8, 8) and split.x.dtype == torch.float32
        assert split.x.min() >= -1.0 and split.x.max() <= 1.0
        assert set(split.y.unique().tolist()) == set(range(10))
        assert set(split.s.unique().tolist()) == set(range(NUM_COLOURS))


def test_colored_digits_recovers_the_real_digits(digits_default):
    from sklearn.datasets import load_digits

    real = {image.astype(np.int64).tobytes() for image in load_digits().images}
    for split in digits_default.splits().values():
        assert set(image_keys(split)) <= real


def test_colored_digits_pools_are_disjoint(digits_default):
    pools = {name: set(image_keys(split)) for name, split in digits_default.splits().items()}
    assert [len(pools[name]) for name in SPLITS] == [1000, 197, 300, 300]
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1 :]:
            assert not pools[first] & pools[second], (first, second)


@pytest.mark.parametrize("rho", [0.9, 0.99])
def test_colored_digits_train_bias_is_rho(rho):
    train = load("colored_digits", Path("unused"), rho=rho).train
    aligned = (train.s == train.y).float().mean().item()
    noise = 4 * np.sqrt(rho * (1 - rho) / len(train))
    assert abs(aligned - rho) < noise
    # Off-diagonal colours are spread over the nine other colours.
    off = ((train.s - train.y) % NUM_COLOURS)[train.s != train.y]
    counts = np.bincount(off.numpy(), minlength=NUM_COLOURS)
    assert counts[0] == 0 and (counts[1:] > 0).all()


def test_colored_digits_colourings_are_independent_draws():
    train = load("colored_digits", Path("unused"), rho=0.5, colourings=2).train
    assert len(train) == 2000
    keys = image_keys(train)
    colours: dict[bytes, list[int]] = {}
    for key, colour in zip(keys, train.s.tolist()):
        colours.setdefault(key, []).append(colour)
    assert all(len(c) == 2 for c in colours.values())
    differ = np.mean([c[0] != c[1] for c in colours.values()])
    assert 0.3 < differ < 0.9  # identical copies would give 0


def test_colored_digits_eval_splits_are_exactly_independent(digits_default):
    for name in ("val", "probe", "test"):
        split = digits_default.splits()[name]
        colours: dict[bytes, list[int]] = {}
        for key, colour in zip(image_keys(split), split.s.tolist()):
            colours.setdefault(key, []).append(colour)
        assert all(sorted(c) == list(range(NUM_COLOURS)) for c in colours.values()), name
        table = np.zeros((10, NUM_COLOURS), dtype=int)
        np.add.at(table, (split.y.numpy(), split.s.numpy()), 1)
        assert (table == table[:, :1]).all(), name  # P(colour | digit) is exactly uniform


def test_colored_digits_seed_changes_pools():
    first = set(image_keys(load("colored_digits", Path("unused"), data_seed=0).test))
    second = set(image_keys(load("colored_digits", Path("unused"), data_seed=1).test))
    assert first != second


# -- adult: small files in the UCI format ----------------------------------------------------

DATA_ROWS = [
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K",
    "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, <=50K",
    "38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Male, 0, 0, 40, United-States, <=50K",
    "53, Private, 234721, 11th, 7, Married-civ-spouse, Handlers-cleaners, Husband, Black, Male, 0, 0, 40, United-States, <=50K",
    "28, Private, 338409, Bachelors, 13, Married-civ-spouse, Prof-specialty, Wife, Black, Female, 0, 0, 40, Cuba, <=50K",
    "37, Private, 284582, Masters, 14, Married-civ-spouse, Exec-managerial, Wife, White, Female, 0, 0, 40, United-States, <=50K",
    "49, Private, 160187, 9th, 5, Married-spouse-absent, Other-service, Not-in-family, Black, Female, 0, 0, 16, Jamaica, <=50K",
    "52, Self-emp-not-inc, 209642, HS-grad, 9, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 45, United-States, >50K",
    "31, Private, 45781, Masters, 14, Never-married, Prof-specialty, Not-in-family, White, Female, 14084, 0, 50, United-States, >50K",
    "42, ?, 159449, Bachelors, 13, Married-civ-spouse, ?, Husband, White, Male, 5178, 0, 40, ?, >50K",
]
TEST_ROWS = [
    "25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.",
    "38, Private, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, White, Male, 0, 0, 50, United-States, <=50K.",
    "28, Local-gov, 336951, Assoc-acdm, 12, Married-civ-spouse, Protective-serv, Husband, White, Male, 0, 0, 40, United-States, >50K.",
    "18, ?, 103497, Some-college, 10, Never-married, ?, Own-child, White, Female, 0, 0, 30, ?, <=50K.",
]
NUMERIC_COUNT = 5


def write_adult(root: Path, data_rows=DATA_ROWS, test_rows=TEST_ROWS) -> Path:
    folder = root / "adult"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adult.data").write_text("\n".join(data_rows) + "\n\n")
    (folder / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(test_rows) + "\n\n")
    return folder


@pytest.fixture
def small_adult(tmp_path, monkeypatch):
    monkeypatch.setattr(Adult, "files", (DataFile("adult.data"), DataFile("adult.test")))
    write_adult(tmp_path)
    Adult.prepare(tmp_path, download=False)
    return tmp_path


def train_categories(data) -> int:
    return data.train.x.shape[1] - NUMERIC_COUNT


def test_adult_small_files_parse(small_adult):
    data = load("adult", small_adult, data_seed=0)
    assert [len(data.splits()[name]) for name in SPLITS] == [8, 2, 2, 2]
    assert data.spec.num_classes == 2 and data.spec.num_private == 2 and data.spec.encoder == "mlp"
    assert data.spec.input_shape == (data.train.x.shape[1],)
    # Labels: test rows end in '.', which must not create a third class.
    all_y = torch.cat([s.y for s in data.splits().values()])
    all_s = torch.cat([s.s for s in data.splits().values()])
    assert all_y.sum().item() == 4 and all_s.sum().item() == 9  # >50K rows; Male rows
    train_x = data.train.x.numpy()
    assert np.allclose(train_x[:, :NUMERIC_COUNT].mean(axis=0), 0.0, atol=1e-5)
    # One-hot block: exactly one 1 per categorical column for categories seen in train.
    one_hot = train_x[:, NUMERIC_COUNT:]
    assert set(np.unique(one_hot).tolist()) <= {0.0, 1.0}
    assert (one_hot.sum(axis=1) == 7).all()  # seven categorical columns, sex excluded


def test_adult_one_hot_width_and_private_column(small_adult):
    default = load("adult", small_adult, data_seed=0)
    kept = load("adult", small_adult, data_seed=0, keep_private_column=True)
    # A split in which the train pool holds both sexes gains exactly two columns.
    assert set(kept.train.s.tolist()) == {0, 1}
    assert kept.train.x.shape[1] == default.train.x.shape[1] + 2
    sex_block = kept.train.x[:, -2:]  # sex is the last categorical column
    assert torch.equal(sex_block.argmax(dim=1), kept.train.s)  # Female, Male in sorted order
    # Without the option, x is the same minus those two columns.
    for name in SPLITS:
        assert torch.equal(kept.splits()[name].x[:, :-2], default.splits()[name].x)


def test_adult_one_hot_width_counts_train_categories(tmp_path, monkeypatch):
    monkeypatch.setattr(Adult, "files", (DataFile("adult.data"), DataFile("adult.test")))
    rows = DATA_ROWS * 3  # 30 rows: the train split of 24 sees every category at this seed
    write_adult(tmp_path, data_rows=rows)
    data = load("adult", tmp_path, data_seed=0)
    import pandas as pd

    from removal_bench.datasets.adult import CATEGORICAL, COLUMNS

    frame = pd.DataFrame([[v.strip() for v in r.split(",")] for r in rows], columns=COLUMNS)
    expected = NUMERIC_COUNT + sum(frame[c].nunique() for c in CATEGORICAL)
    assert data.train.x.shape[1] == expected
    assert "?" in set(frame["workclass"])  # '?' counts as a category of its own


@pytest.mark.parametrize(
    "bad_row",
    [
        "39, State-gov, 77516, Bachelors, 13, Never-married",  # too few values
        "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K, extra",
        "old, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K",
        "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, maybe",
    ],
)
def test_adult_malformed_file_is_a_user_error(tmp_path, monkeypatch, bad_row):
    monkeypatch.setattr(Adult, "files", (DataFile("adult.data"), DataFile("adult.test")))
    write_adult(tmp_path, data_rows=DATA_ROWS + [bad_row])
    with pytest.raises(UserError) as caught:
        load("adult", tmp_path)
    message = str(caught.value)
    assert "adult.data" in message and "\n" not in message


def test_adult_missing_files_name_the_folder(tmp_path):
    with pytest.raises(UserError) as caught:
        Adult.prepare(tmp_path, download=False)
    message = str(caught.value)
    assert "adult.data, adult.test" in message and str(tmp_path / "adult") in message


# -- adult: the real UCI files -----------------------------------------------------------------


@pytest.mark.skipif(not (SHARED_DATA / "adult").is_dir(), reason="no shared copy of the UCI files")
def test_adult_real_files(monkeypatch):
    from removal_bench.datasets import download

    # The shared copy is read-only by convention: leave no hash stamp in it.
    monkeypatch.setattr(download, "_write_stamp", lambda folder, stamp: None)
    Adult.prepare(SHARED_DATA, download=False)  # hashes match the declared SHA-256
    data = load("adult", SHARED_DATA)
    sizes = [len(data.splits()[name]) for name in SPLITS]
    assert sizes[0] + sizes[1] == 32561 and sizes[2] + sizes[3] == 16281
    assert sizes[0] == round(0.8 * 32561) and abs(sizes[2] - sizes[3]) <= 1
    s = torch.cat([split.s for split in data.splits().values()]).float()
    y = torch.cat([split.y for split in data.splits().values()]).float()
    assert (1 - s).mean().item() == pytest.approx(0.332, abs=0.01)  # share of Female
    assert y.mean().item() == pytest.approx(0.239, abs=0.01)
    assert np.allclose(data.train.x[:, :NUMERIC_COUNT].mean(0).numpy(), 0.0, atol=1e-4)
    assert data.spec.input_shape == (data.train.x.shape[1],)
