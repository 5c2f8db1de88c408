"""COMPAS, German credit, Biased-MNIST and CelebA: on small files in the real formats, and the real files when present."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from removal_bench.core.errors import UserError
from removal_bench.core.params import resolve
from removal_bench.datasets import SPLITS
from removal_bench.datasets import get_dataset
from removal_bench.datasets.base import DataFile
from removal_bench.datasets.biased_mnist import BiasedMnist
from removal_bench.datasets.celeba import ATTRIBUTES, CelebA
from removal_bench.datasets.colored_digits import NUM_COLOURS, PALETTE
from removal_bench.datasets.download import file_status
from tests.conftest import SHARED_DATA, declare_biased_mnist



def load(name: str, data_root: Path, **given):
    cls = get_dataset(name)
    return cls().load(resolve(name, cls.options, given), data_root)


def row_ranks(data, column: int) -> dict[str, np.ndarray]:
    """Each split's rows as ranks of one standardised column over all splits.

    Standardising is one affine map for every split, so when the raw column holds
    0, 1, 2, ... the rank of a row is its raw value: the row it came from.
    """
    values = torch.cat([split.x[:, column] for split in data.splits().values()]).numpy()
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    out, start = {}, 0
    for name, split in data.splits().items():
        out[name] = ranks[start : start + len(split)]
        start += len(split)
    return out


def assert_stratified(data, tolerance: float) -> None:
    """Each (y, s) group's share is about the same in every split."""
    every = torch.cat([torch.stack([s.y, s.s], 1) for s in data.splits().values()]).numpy()
    groups, overall = np.unique(every, axis=0, return_counts=True)
    overall = overall / overall.sum()
    for name, split in data.splits().items():
        pairs = torch.stack([split.y, split.s], 1).numpy()
        share = np.array([np.all(pairs == g, axis=1).mean() for g in groups])
        assert np.abs(share - overall).max() < tolerance, name


# -- compas: the real header, a few rows -------------------------------------------------------

COMPAS_HEADER = (
    "id,name,first,last,compas_screening_date,sex,dob,age,age_cat,race,juv_fel_count,decile_score,"
    "juv_misd_count,juv_other_count,priors_count,days_b_screening_arrest,c_jail_in,c_jail_out,"
    "c_case_number,c_offense_date,c_arrest_date,c_days_from_compas,c_charge_degree,c_charge_desc,"
    "is_recid,r_case_number,r_charge_degree,r_days_from_arrest,r_offense_date,r_charge_desc,r_jail_in,"
    "r_jail_out,violent_recid,is_violent_recid,vr_case_number,vr_charge_degree,vr_offense_date,"
    "vr_charge_desc,type_of_assessment,decile_score,score_text,screening_date,v_type_of_assessment,"
    "v_decile_score,v_score_text,v_screening_date,in_custody,out_custody,priors_count,start,end,event,"
    "two_year_recid"
).split(",")
COMPAS_RACES = ["African-American", "Caucasian", "Hispanic", "Other", "Asian", "Native American"]


def compas_row(index: int, **override) -> list[str]:
    age = 20 + index % 40
    values = {
        "id": str(index), "name": f"first{index} last{index}", "first": f"first{index}", "last": f"last{index}",
        "sex": "Female" if index % 3 == 0 else "Male", "age": str(age),
        "age_cat": "Less than 25" if age < 25 else ("25 - 45" if age <= 45 else "Greater than 45"),
        "race": COMPAS_RACES[index % 6] if index % 4 else COMPAS_RACES[index % 2],
        "juv_fel_count": str(index % 2), "decile_score": str(1 + index % 10), "juv_misd_count": str(index % 4 // 3),
        "juv_other_count": str(index % 3), "priors_count": str(index),  # unique: identifies the row
        "days_b_screening_arrest": str(-30 + index % 61), "c_charge_degree": "F" if index % 2 else "M",
        "c_charge_desc": "Battery, with a comma", "is_recid": str(index % 2), "type_of_assessment": "Risk of Recidivism",
        "score_text": ["Low", "Medium", "High"][index % 3], "two_year_recid": str((index // 2) % 2),
    }  # fmt: skip
    values.update(override)
    # The header repeats decile_score and priors_count: both copies get the same value.
    return [values.get(column, "") for column in COMPAS_HEADER]


GOOD_COMPAS = 48
DROPPED_COMPAS = [
    dict(days_b_screening_arrest="31"),
    dict(days_b_screening_arrest="-31"),
    dict(days_b_screening_arrest=""),
    dict(is_recid="-1"),
    dict(c_charge_degree="O"),
    dict(score_text="N/A"),
]


def write_compas(root: Path, rows: list[list[str]]) -> Path:
    folder = root / "compas"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "compas-scores-two-years.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COMPAS_HEADER)
        writer.writerows(rows)
    return path


@pytest.fixture
def small_compas(tmp_path, monkeypatch):
    from removal_bench.datasets.compas import Compas

    monkeypatch.setattr(Compas, "files", (DataFile("compas-scores-two-years.csv"),))
    good = [compas_row(i) for i in range(GOOD_COMPAS)]
    dropped = [compas_row(GOOD_COMPAS + k, **change) for k, change in enumerate(DROPPED_COMPAS)]
    write_compas(tmp_path, good[:20] + dropped + good[20:])
    return tmp_path


def test_compas_filter_labels_and_features(small_compas):
    data = load("compas", small_compas, races="all")
    assert sum(len(split) for split in data.splits().values()) == GOOD_COMPAS
    assert data.spec.input_shape == (12,)  # 5 numeric, sex 2, charge degree 2, age_cat 3; no race
    assert (data.spec.num_classes, data.spec.num_private, data.spec.encoder) == (2, 6, "mlp")
    assert (data.spec.epochs, data.spec.batch_size) == (30, 128)
    ranks = row_ranks(data, column=1)  # priors_count = row index
    seen = np.concatenate(list(ranks.values()))
    assert sorted(seen.tolist()) == list(range(GOOD_COMPAS))  # every dropped row (48..53) is gone
    order = ["African-American", "Asian", "Caucasian", "Hispanic", "Native American", "Other"]
    for name, split in data.splits().items():
        rows = [compas_row(i) for i in ranks[name]]
        race = [order.index(r[COMPAS_HEADER.index("race")]) for r in rows]
        recid = [int(r[COMPAS_HEADER.index("two_year_recid")]) for r in rows]
        assert split.s.tolist() == race and split.y.tolist() == recid, name
    train = data.train.x.numpy()
    assert np.allclose(train[:, :5].mean(0), 0, atol=1e-5) and np.allclose(train[:, :5].std(0), 1, atol=1e-4)
    assert set(np.unique(train[:, 5:]).tolist()) == {0.0, 1.0} and (train[:, 5:].sum(1) == 3).all()


def test_compas_binary_races_and_score(small_compas):
    binary = load("compas", small_compas)
    kept = [compas_row(i) for i in range(GOOD_COMPAS)]
    expected = {"African-American": 1, "Caucasian": 0}
    races = [r[COMPAS_HEADER.index("race")] for r in kept]
    assert sum(len(split) for split in binary.splits().values()) == sum(r in expected for r in races)
    assert binary.spec.num_private == 2
    kept_rows = [i for i, race in enumerate(races) if race in expected]  # rank k is the k-th kept row
    ranks = row_ranks(binary, column=1)
    for name, split in binary.splits().items():
        assert split.s.tolist() == [expected[races[kept_rows[k]]] for k in ranks[name]], name
    scored = load("compas", small_compas, include_score=True)
    assert scored.spec.input_shape == (binary.spec.input_shape[0] + 1,)
    assert torch.equal(scored.train.x[:, :5], binary.train.x[:, :5])


def test_compas_split_fractions_and_seed(small_compas):
    data = load("compas", small_compas, races="all")
    sizes = np.array([len(data.splits()[name]) for name in SPLITS])
    assert np.abs(sizes / sizes.sum() - [0.5, 0.1, 0.2, 0.2]).max() < 0.12  # 12 tiny strata, rounded each
    other = load("compas", small_compas, races="all", data_seed=1)
    assert set(row_ranks(data, 1)["train"]) != set(row_ranks(other, 1)["train"])
    again = load("compas", small_compas, races="all")
    assert torch.equal(data.test.x, again.test.x)


@pytest.mark.parametrize(
    "change, fragment",
    [(dict(race="Martian"), "race 'Martian'"), (dict(priors_count="many"), "priors_count 'many'")],
)
def test_compas_malformed_is_a_user_error(tmp_path, change, fragment):
    write_compas(tmp_path, [compas_row(i) for i in range(GOOD_COMPAS)] + [compas_row(99, **change)])
    with pytest.raises(UserError) as caught:
        load("compas", tmp_path)
    assert fragment in str(caught.value) and "compas-scores-two-years.csv" in str(caught.value)


def test_compas_missing_column_is_a_user_error(tmp_path):
    path = write_compas(tmp_path, [compas_row(i) for i in range(GOOD_COMPAS)])
    path.write_text(path.read_text().replace("two_year_recid", "recidivism", 1))
    with pytest.raises(UserError, match="no column two_year_recid"):
        load("compas", tmp_path)


# -- german: german.data rows ------------------------------------------------------------------

PERSONAL_STATUS = ["A91", "A92", "A93", "A94", "A95"]


def german_row(index: int) -> list[str]:
    return [
        f"A1{1 + index % 4}", str(6 + index % 30), f"A3{index % 5}", ["A40", "A41", "A43", "A410"][index % 4],
        str(1000 + index),  # credit amount: unique, identifies the row
        f"A6{1 + index % 5}", f"A7{1 + index % 5}", str(1 + index % 4), PERSONAL_STATUS[index % 5],
        f"A10{1 + index % 3}", str(1 + index % 4), f"A12{1 + index % 4}", str(19 + (index * 7) % 50),
        f"A14{1 + index % 3}", f"A15{1 + index % 3}", str(1 + index % 3), f"A17{1 + index % 4}",
        str(1 + index % 2), f"A19{1 + index % 2}", f"A20{1 + index % 2}", "1" if index % 3 else "2",
    ]  # fmt: skip


def write_german(root: Path, rows: list[list[str]]) -> Path:
    folder = root / "german"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "german.data"
    path.write_text("".join(" ".join(row) + " \n" for row in rows))
    return path


GERMAN_ROWS = 60


def test_german_labels_and_dropped_columns(tmp_path):
    write_german(tmp_path, [german_row(i) for i in range(GERMAN_ROWS)])
    by_sex = load("german", tmp_path)
    by_age = load("german", tmp_path, private="age")
    assert (by_sex.spec.encoder, by_sex.spec.epochs, by_sex.spec.batch_size) == ("mlp", 50, 64)
    assert sum(len(s) for s in by_sex.splits().values()) == GERMAN_ROWS
    rows = [german_row(i) for i in range(GERMAN_ROWS)]
    male = {"A91": 1, "A92": 0, "A93": 1, "A94": 1, "A95": 0}
    for data, column in ((by_sex, 1), (by_age, 1)):  # credit amount is the second numeric column
        ranks = row_ranks(data, column)
        for name, split in data.splits().items():
            assert split.y.tolist() == [int(rows[i][20] == "1") for i in ranks[name]], name
            if data is by_sex:
                assert split.s.tolist() == [male[rows[i][8]] for i in ranks[name]], name
            else:
                assert split.s.tolist() == [int(int(rows[i][12]) > 25) for i in ranks[name]], name
    # sex drops the personal-status one-hot block and keeps age; age drops the age column only.
    statuses_in_train = len({rows[i][8] for i in row_ranks(by_sex, 1)["train"]})
    assert by_age.spec.input_shape[0] - by_sex.spec.input_shape[0] == statuses_in_train - 1
    train = by_sex.train.x.numpy()
    assert np.allclose(train[:, :7].mean(0), 0, atol=1e-5)  # 7 numeric columns, age included
    assert np.allclose(by_age.train.x.numpy()[:, :6].mean(0), 0, atol=1e-5)
    assert set(np.unique(by_age.train.x.numpy()[:, 6:]).tolist()) == {0.0, 1.0}
    assert (by_age.train.x.numpy()[:, 6:].sum(1) == 13).all()  # 13 symbolic attributes


@pytest.mark.parametrize(
    "position, value, fragment",
    [(4, "A99", "attribute 4 (purpose)"), (2, "big", "duration 'big'"), (21, "3", "credit '3'")],
)
def test_german_malformed_is_a_user_error(tmp_path, position, value, fragment):
    rows = [german_row(i) for i in range(GERMAN_ROWS)]
    rows[5][position - 1] = value  # attribute k is column k; the class is column 21
    write_german(tmp_path, rows)
    with pytest.raises(UserError) as caught:
        load("german", tmp_path)
    assert fragment in str(caught.value) and "german.data" in str(caught.value)


def test_german_short_row_is_a_user_error(tmp_path):
    rows = [german_row(i) for i in range(GERMAN_ROWS)]
    rows[3] = rows[3][:15]
    write_german(tmp_path, rows)
    with pytest.raises(UserError, match="row 4 has fewer than 21 values"):
        load("german", tmp_path)


# -- compas and german: the real files ---------------------------------------------------------


@pytest.fixture
def no_stamps(monkeypatch):
    from removal_bench.datasets import download

    # The shared copy is read-only by convention: leave no hash stamp in it.
    monkeypatch.setattr(download, "_write_stamp", lambda folder, stamp: None)


@pytest.mark.skipif(not (SHARED_DATA / "compas").is_dir(), reason="no shared copy of the COMPAS file")
def test_compas_real_file(no_stamps):
    get_dataset("compas").prepare(SHARED_DATA, download=False)  # the declared SHA-256 matches
    every = load("compas", SHARED_DATA, races="all")
    assert sum(len(s) for s in every.splits().values()) == 6172
    binary = load("compas", SHARED_DATA)
    sizes = [len(binary.splits()[name]) for name in SPLITS]
    assert sum(sizes) == 5278
    assert np.abs(np.array(sizes) / 5278 - [0.5, 0.1, 0.2, 0.2]).max() < 0.002
    assert_stratified(binary, tolerance=0.01)
    s = torch.cat([split.s for split in binary.splits().values()]).float()
    assert s.mean().item() == pytest.approx(3175 / 5278, abs=1e-6)  # African-American
    assert sorted(torch.cat([x.s for x in every.splits().values()]).unique().tolist()) == list(range(6))


@pytest.mark.skipif(not (SHARED_DATA / "german").is_dir(), reason="no shared copy of the German credit file")
def test_german_real_file(no_stamps):
    get_dataset("german").prepare(SHARED_DATA, download=False)
    data = load("german", SHARED_DATA)
    assert [len(data.splits()[name]) for name in SPLITS] == [500, 100, 200, 200]
    y = torch.cat([split.y for split in data.splits().values()]).float()
    s = torch.cat([split.s for split in data.splits().values()]).float()
    assert y.mean().item() == pytest.approx(0.7) and s.mean().item() == pytest.approx(0.69)
    assert_stratified(data, tolerance=0.01)
    young = torch.cat([split.s for split in load("german", SHARED_DATA, private="age").splits().values()])
    assert (1 - young.float()).mean().item() == pytest.approx(0.19)


# -- biased_mnist: idx files --------------------------------------------------------------------

ID_BITS = 14


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    content = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(f"{path}.gz", "wb", compresslevel=1) as handle:
            handle.write(content)
    else:
        path.write_bytes(content)


def fake_mnist(first_id: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Images whose row 1 holds their id in binary; soft random strokes elsewhere; corners empty."""
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    ids = first_id + np.arange(count)
    bits = (ids[:, None] >> np.arange(ID_BITS)) & 1
    images[:, 1, 2 : 2 + ID_BITS] = bits * rng.integers(1, 256, size=bits.shape)  # any grey is a stroke
    strokes = rng.random((count, 16, 16)) < 0.3
    images[:, 6:22, 6:22] = strokes * rng.integers(1, 256, size=strokes.shape)
    labels = rng.integers(0, 10, size=count).astype(np.uint8)
    return images, labels


def write_mnist(root: Path, n_train: int, n_test: int, gz: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = root / "biased_mnist" / "MNIST" / "raw"
    train = fake_mnist(0, n_train, rng)
    test = fake_mnist(10_000, n_test, rng)
    write_idx(raw / "train-images-idx3-ubyte", train[0], gz)
    write_idx(raw / "train-labels-idx1-ubyte", train[1], gz)
    write_idx(raw / "t10k-images-idx3-ubyte", test[0], gz)
    write_idx(raw / "t10k-labels-idx1-ubyte", test[1], gz)
    return train, test


def decode_ids(x: torch.Tensor) -> np.ndarray:
    """Undo the colouring: a pixel is a (white) stroke when all three channels are 1."""
    white = (x[:, :, 1, 2 : 2 + ID_BITS] == 1.0).all(dim=1).numpy().astype(np.int64)
    return (white << np.arange(ID_BITS)).sum(axis=1)


def colour_table(split) -> np.ndarray:
    table = np.zeros((10, NUM_COLOURS), dtype=np.int64)
    np.add.at(table, (split.y.numpy(), split.s.numpy()), 1)
    return table


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    parts = write_mnist(root, 6000, 1000, gz=True)
    return root, parts


@pytest.fixture
def unverified_mnist(monkeypatch):
    files = tuple(DataFile(f.name) for f in BiasedMnist.files)
    monkeypatch.setattr(BiasedMnist, "files", files)


def test_biased_mnist_shapes_labels_and_colouring(mnist_root, unverified_mnist):
    root, (train, test) = mnist_root
    BiasedMnist.prepare(root, download=False, options={"source": "mnist"})  # Fashion-MNIST is not needed
    data = load("biased_mnist", root)
    assert [len(data.splits()[name]) for name in SPLITS] == [5000, 1000, 500, 500]
    assert data.spec.input_shape == (3, 28, 28) and data.spec.encoder == "biased_mnist_cnn"
    assert (data.spec.num_classes, data.spec.num_private, data.spec.epochs, data.spec.batch_size) == (10, 10, 80, 100)
    ids = {}
    for name, split in data.splits().items():
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (3, 28, 28)
        assert split.x.min() >= -1 and split.x.max() <= 1
        image = split.x.numpy() * 0.5 + 0.5
        assert np.allclose(image[:, :, 0, 0], PALETTE[split.s.numpy()], atol=1e-6)  # background = colour
        ids[name] = decode_ids(split.x)
        source_images, source_labels = (train if name in ("train", "val") else test)
        local = ids[name] - (0 if name in ("train", "val") else 10_000)
        assert split.y.tolist() == source_labels[local].tolist(), name
        # Binarised: every non-zero source pixel is white, every zero one is the background colour.
        stroke = (split.x == 1.0).all(dim=1).numpy()
        assert np.array_equal(stroke, source_images[local] > 0), name
    assert sorted(np.concatenate([ids["train"], ids["val"]]).tolist()) == list(range(6000))
    assert sorted(np.concatenate([ids["probe"], ids["test"]]).tolist()) == list(range(10_000, 11_000))


@pytest.mark.parametrize("rho", [0.99, 0.999])
def test_biased_mnist_train_bias_is_rho(mnist_root, unverified_mnist, rho):
    root, _ = mnist_root
    data = load("biased_mnist", root, rho=rho)
    train = data.train
    aligned = (train.s == train.y).float().mean().item()
    assert abs(aligned - rho) < 4 * np.sqrt(rho * (1 - rho) / len(train)) + 1e-9
    assert aligned < 1.0
    off = ((train.s - train.y) % NUM_COLOURS)[train.s != train.y].numpy()
    assert 0 not in off and len(set(off.tolist())) > 1  # spread over the other colours


def test_biased_mnist_eval_splits_are_unbiased(mnist_root, unverified_mnist):
    root, _ = mnist_root
    data = load("biased_mnist", root, rho=0.999)
    for name in ("val", "probe", "test"):
        split = data.splits()[name]
        table = colour_table(split)
        assert (table.max(axis=1) - table.min(axis=1) <= 1).all(), name  # P(colour | digit) uniform
        assert abs((split.s == split.y).float().mean().item() - 0.1) < 0.03, name


def test_biased_mnist_plain_and_gzipped_files_agree(tmp_path, monkeypatch):
    write_mnist(tmp_path / "gz", 60, 20, gz=True)
    write_mnist(tmp_path / "plain", 60, 20, gz=False)
    with pytest.raises(UserError, match="train-images-idx3-ubyte.*decompressed"):
        BiasedMnist.prepare(tmp_path / "plain", download=False, options={"source": "mnist"})  # not MNIST's content
    raw = tmp_path / "plain" / "biased_mnist" / "MNIST" / "raw"
    declare_biased_mnist(monkeypatch, {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
                                       for path in raw.iterdir() if not path.name.startswith(".")})
    # Extracted files without their archives are enough, checked by content; so are the archives.
    BiasedMnist.prepare(tmp_path / "plain", download=False, options={"source": "mnist"})
    BiasedMnist.prepare(tmp_path / "gz", download=False, options={"source": "mnist"})
    statuses = [pair for pair in file_status(BiasedMnist.folder(tmp_path / "plain"), BiasedMnist.files)
                if pair[0].name.startswith("MNIST/")]
    assert [status for _, status in statuses] == ["present"] * 4
    assert all(not f.name.endswith(".gz") for f, _ in statuses)
    gz, plain = load("biased_mnist", tmp_path / "gz"), load("biased_mnist", tmp_path / "plain")
    assert [len(gz.splits()[name]) for name in SPLITS] == [50, 10, 10, 10]
    for name in SPLITS:
        assert torch.equal(gz.splits()[name].x, plain.splits()[name].x)
        assert torch.equal(gz.splits()[name].s, plain.splits()[name].s)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda b: b[:-5], "holds"),  # truncated
        (lambda b: b"\x01" + b[1:], "bad magic"),
        (lambda b: b[:3] + b"\x02" + b[4:], "expected unsigned bytes (0x08) in 3"),
    ],
)
def test_biased_mnist_malformed_idx_is_a_user_error(tmp_path, damage, fragment):
    write_mnist(tmp_path, 12, 4, gz=False)
    path = tmp_path / "biased_mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError) as caught:
        load("biased_mnist", tmp_path)
    assert fragment in str(caught.value) and "train-images-idx3-ubyte" in str(caught.value)


def test_biased_mnist_corrupt_gzip_is_a_user_error(tmp_path):
    write_mnist(tmp_path, 12, 4, gz=True)
    path = tmp_path / "biased_mnist" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz"):
        load("biased_mnist", tmp_path)


def test_biased_mnist_rho_must_be_a_paper_value_or_a_reduced_run_s():
    """The paper's 0.99-0.999, and 0.9 / 0.95 for reduced runs; nothing else."""
    with pytest.raises(UserError, match="not one of"):
        resolve("biased_mnist", BiasedMnist.options, {"rho": "0.8"})
    assert resolve("biased_mnist", BiasedMnist.options, {"rho": "0.9"})["rho"] == 0.9


# -- celeba: torchvision's folder layout, small JPEGs ------------------------------------------

CELEBA_PARTITION = [0] * 12 + [1] * 6 + [2] * 8
WIDTH, HEIGHT = 40, 60  # portrait, as the aligned 178x218 images


def celeba_attributes(index: int) -> list[int]:
    return [1 if (index * (j + 3) + j) % 5 < 2 else -1 for j in range(len(ATTRIBUTES))]


def write_celeba(root: Path, count: int = len(CELEBA_PARTITION), partition=CELEBA_PARTITION,
                 attributes=celeba_attributes) -> Path:
    from PIL import Image

    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(count)]
    for i, name in enumerate(names):
        # A flat colour whose red level names the image, and green bands that the centre crop removes.
        pixels = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        pixels[:, :] = (8 * i + 20, 0, 120)
        pixels[:8], pixels[-8:] = (0, 255, 0), (0, 255, 0)
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=95)
    lines = [str(count), " ".join(ATTRIBUTES) + " "]
    for i, name in enumerate(names):
        lines.append(name + " " + " ".join(f"{v:2d}" for v in attributes(i)))
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition)))
    return folder


def image_index(x: torch.Tensor) -> np.ndarray:
    red = x[:, 0, x.shape[2] // 2, x.shape[3] // 2].numpy().astype(np.int64)
    return np.rint((red - 20) / 8).astype(np.int64)


def test_celeba_shapes_labels_and_crop(tmp_path):
    write_celeba(tmp_path)
    CelebA.prepare(tmp_path, download=False)
    data = load("celeba", tmp_path, resolution=16, resize="crop", val="plain", target="Smiling", private="Young")
    assert [len(data.splits()[name]) for name in SPLITS] == [12, 6, 4, 4]
    assert data.spec.input_shape == (3, 16, 16) and data.spec.encoder == "resnet18"
    assert (data.spec.epochs, data.spec.batch_size, data.spec.target_name) == (20, 256, "Smiling")
    smiling, young = ATTRIBUTES.index("Smiling"), ATTRIBUTES.index("Young")
    partition_of = {"train": {0}, "val": {1}, "probe": {2}, "test": {2}}
    seen = []
    for name, split in data.splits().items():
        assert split.x.dtype == torch.uint8 and split.x.shape[1:] == (3, 16, 16)
        assert split.x[:, 1].max() < 40  # the green bands were cropped away
        index = image_index(split.x)
        seen.extend(index.tolist())
        assert {CELEBA_PARTITION[i] for i in index} == partition_of[name]
        assert split.y.tolist() == [int(celeba_attributes(i)[smiling] == 1) for i in index], name
        assert split.s.tolist() == [int(celeba_attributes(i)[young] == 1) for i in index], name
    assert sorted(seen) == list(range(len(CELEBA_PARTITION)))
    assert list(image_index(data.train.x)) == list(range(12))  # train keeps the partition file's order
    from removal_bench.core.encoders import NormalisedInput

    spec = data.spec
    identity = torch.nn.Identity()
    identity.out_dim = 3
    normalise = NormalisedInput(identity, spec.pixel_mean, spec.pixel_std)
    x = normalise(data.test.x)
    assert x.dtype == torch.float32 and x.shape == data.test.x.shape
    assert torch.allclose(normalise(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).flatten(),
                          (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_celeba_probe_test_halves_depend_on_the_seed(tmp_path):
    partition = [0] * 4 + [1] * 2 + [2] * 20
    write_celeba(tmp_path, len(partition), partition)
    halves = {seed: frozenset(image_index(load("celeba", tmp_path, resolution=8, val="plain", data_seed=seed).probe.x))
              for seed in range(3)}  # fmt: skip
    assert all(len(h) == 10 for h in halves.values()) and len(set(halves.values())) > 1


def test_celeba_cache_is_built_once_reused_and_rebuilt(tmp_path, monkeypatch):
    from removal_bench.datasets import celeba

    folder = write_celeba(tmp_path)
    builds = []
    real_build = celeba.build_cache
    monkeypatch.setattr(celeba, "build_cache", lambda *a: builds.append(a[-1]["resolution"]) or real_build(*a))
    first = load("celeba", tmp_path, val="plain", resolution=16)
    cache = folder / "images-squash-16.npy"
    stamp = cache.stat().st_mtime_ns
    manifest = json.loads((folder / "images-squash-16.json").read_text())
    assert manifest["resolution"] == 16 and manifest["images"] == len(CELEBA_PARTITION)
    assert np.load(cache, mmap_mode="r").shape == (len(CELEBA_PARTITION), 3, 16, 16)

    second = load("celeba", tmp_path, val="plain", resolution=16, target="Smiling")
    assert builds == [16] and cache.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert torch.equal(first.train.x, second.train.x)
    assert torch.equal(second.train.x, torch.from_numpy(np.load(cache)[:12]))

    third = load("celeba", tmp_path, val="plain", resolution=24)
    assert builds == [16, 24] and third.train.x.shape[2:] == (24, 24)
    load("celeba", tmp_path, val="plain", resolution=16)
    assert builds == [16, 24]

    (folder / "images-squash-16.json").write_text(json.dumps({**manifest, "sources": "0" * 64}))
    load("celeba", tmp_path, val="plain", resolution=16)
    assert builds == [16, 24, 16]  # a manifest that does not match rebuilds
    assert not [p.name for p in folder.iterdir() if ".partial-" in p.name]

    # Writing into the training tensor never reaches the file (mapped copy-on-write).
    view = load("celeba", tmp_path, val="plain", resolution=16).train.x
    view[0].fill_(7)
    assert not (np.load(cache)[0] == 7).all()


def test_celeba_cache_dir_option(tmp_path):
    write_celeba(tmp_path)
    elsewhere = tmp_path / "cache"
    load("celeba", tmp_path, resolution=8, val="plain", cache_dir=str(elsewhere))
    assert (elsewhere / "images-squash-8.npy").is_file() and not (tmp_path / "celeba" / "images-squash-8.npy").exists()


def write_left_right_faces(folder: Path) -> list[Path]:
    """Overwrite the test images: left half red, right half blue, a green band of 10 rows at top and bottom."""
    from PIL import Image

    paths = sorted((folder / "img_align_celeba").iterdir())
    for path in paths:
        pixels = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        pixels[:, : WIDTH // 2] = (220, 0, 0)
        pixels[:, WIDTH // 2 :] = (0, 0, 220)
        pixels[:10], pixels[-10:] = (0, 220, 0), (0, 220, 0)
        Image.fromarray(pixels).save(path, format="PNG")  # lossless; PIL reads it whatever the name says
    return paths


def test_celeba_squash_keeps_the_whole_image_crop_cuts_its_ends(tmp_path):
    from PIL import Image
    from torchvision import transforms

    folder = write_celeba(tmp_path)
    paths = write_left_right_faces(folder)
    squash = load("celeba", tmp_path, resolution=16, resize="squash", val="plain").train.x
    crop = load("celeba", tmp_path, resolution=16, resize="crop", val="plain").train.x
    assert squash.shape[1:] == crop.shape[1:] == (3, 16, 16)
    for x in (squash, crop):  # left stays left (no flip in the data; the flip is the recipe's augmentation)
        assert (x[:, 0, 4:12, :6] > 180).all() and (x[:, 2, 4:12, :6] < 40).all()
        assert (x[:, 2, 4:12, -6:] > 180).all() and (x[:, 0, 4:12, -6:] < 40).all()
    assert (squash[:, 1, 0] > 180).all() and (squash[:, 1, -1] > 180).all()  # the bands survive a squash
    assert (squash[:, 1, 4:12] < 40).all()
    assert (crop[:, 1] < 40).all()  # the centre square starts below the top band and ends above the bottom one
    # Squash is IRENE's transforms.Resize((R, R)) on the PIL image, pixel for pixel; the default is 224 px.
    default = load("celeba", tmp_path, val="plain")
    assert default.spec.input_shape == (3, 224, 224)
    for row, path in enumerate(paths[:12]):
        with Image.open(path) as image:
            for side, x in ((16, squash), (224, default.train.x)):
                expected = np.asarray(transforms.Resize((side, side))(image.convert("RGB"))).transpose(2, 0, 1)
                assert np.array_equal(x[row].numpy(), expected), (path.name, side)


def test_celeba_cache_is_not_reused_across_resize_or_resolution(tmp_path, monkeypatch):
    from removal_bench.datasets import celeba

    folder = write_celeba(tmp_path)
    write_left_right_faces(folder)
    builds = []
    real_build = celeba.build_cache
    monkeypatch.setattr(
        celeba, "build_cache", lambda *a: builds.append((a[-1]["resize"], a[-1]["resolution"])) or real_build(*a)
    )
    # A cache of format 1 (always centre-cropped, named by resolution only) is left alone.
    np.save(folder / "images-16.npy", np.zeros((len(CELEBA_PARTITION), 3, 16, 16), dtype=np.uint8))
    (folder / "images-16.json").write_text(json.dumps(celeba.manifest_for([], 16, "crop") | {"format": 1}))
    runs = {}
    for resize, side in (("squash", 16), ("crop", 16), ("squash", 24), ("crop", 16), ("squash", 16)):
        runs[resize, side] = load("celeba", tmp_path, resolution=side, resize=resize, val="plain").train.x
    assert builds == [("squash", 16), ("crop", 16), ("squash", 24)]
    assert not torch.equal(runs["squash", 16], runs["crop", 16]) and runs["squash", 24].shape[2:] == (24, 24)
    assert (runs["crop", 16] < 40)[:, 1].all()  # the crop's own cache, not the squash's nor the old zeros
    for resize, side in runs:
        manifest = json.loads((folder / f"images-{resize}-{side}.json").read_text())
        assert (manifest["resize"], manifest["resolution"]) == (resize, side)
    # A manifest that names another resize, under this resize's file name, is not trusted.
    crop_manifest = folder / "images-crop-16.json"
    crop_manifest.write_text(json.dumps(json.loads(crop_manifest.read_text()) | {"resize": "squash"}))
    load("celeba", tmp_path, resolution=16, resize="crop", val="plain")
    assert builds[-1] == ("crop", 16) and len(builds) == 4


def balanced_case_attributes(index: int) -> list[int]:
    """celeba_attributes, but Smiling/Young of the valid images (2..21) fall in groups of 7, 6, 4 and 3."""
    values = celeba_attributes(index)
    groups = [(0, 0)] * 7 + [(0, 1)] * 6 + [(1, 0)] * 4 + [(1, 1)] * 3
    if 2 <= index < 22:
        smiling, young = groups[(7 * index) % 20]  # interleaved, so a group is not one run of rows
        values[ATTRIBUTES.index("Smiling")] = 1 if smiling else -1
        values[ATTRIBUTES.index("Young")] = 1 if young else -1
    return values


def test_celeba_balanced_validation_is_irenes_subset(tmp_path):
    partition = [0] * 2 + [1] * 20 + [2] * 4
    write_celeba(tmp_path, len(partition), partition, attributes=balanced_case_attributes)
    options = dict(resolution=8, target="Smiling", private="Young")
    balanced = load("celeba", tmp_path, **options).val  # the default
    plain = load("celeba", tmp_path, val="plain", **options).val
    assert len(plain) == 20 and len(balanced) == 12
    groups = {(y, s): 0 for y in (0, 1) for s in (0, 1)}
    for y, s in zip(balanced.y.tolist(), balanced.s.tolist()):
        groups[y, s] += 1
    assert groups == {(0, 0): 3, (0, 1): 3, (1, 0): 3, (1, 1): 3}
    index = image_index(balanced.x)
    assert set(index) <= set(range(2, 22)) and len(set(index)) == 12
    smiling, young = ATTRIBUTES.index("Smiling"), ATTRIBUTES.index("Young")
    assert balanced.y.tolist() == [int(balanced_case_attributes(i)[smiling] == 1) for i in index]
    assert balanced.s.tolist() == [int(balanced_case_attributes(i)[young] == 1) for i in index]
    # The very rows IRENE's datasets/celebA.py (enzotarta/irene@c7b74ed) keeps with pandas, seed 42.
    import pandas as pd

    valid = [balanced_case_attributes(i) for i in range(2, 22)]
    frame = pd.DataFrame({"index": range(2, 22), "Smiling": [row[smiling] == 1 for row in valid],
                          "Young": [row[young] == 1 for row in valid]})  # fmt: skip
    size = frame.groupby(["Smiling", "Young"]).count().min()["index"]
    irene = frame.groupby(["Smiling", "Young"]).apply(lambda group: group.sample(size, random_state=42))
    assert sorted(index.tolist()) == sorted(irene["index"].tolist())
    # Other seeds pick other rows: the match above is not luck of a small sample.
    from removal_bench.datasets.celeba import balanced_rows

    picks = {tuple(balanced_rows(plain.y.numpy(), plain.s.numpy(), seed)) for seed in range(42, 47)}
    assert len(picks) == 5


def test_celeba_balanced_validation_refuses_an_empty_group(tmp_path):
    write_celeba(tmp_path)  # its valid partition has no blond man
    with pytest.raises(UserError, match="val=plain"):
        load("celeba", tmp_path, resolution=8)
    assert len(load("celeba", tmp_path, resolution=8, val="plain").val) == 6


def test_celeba_bad_options_and_files(tmp_path):
    folder = write_celeba(tmp_path)
    with pytest.raises(UserError) as caught:
        load("celeba", tmp_path, target="Blonde")
    assert "Blond_Hair" in str(caught.value) and "Wearing_Necktie" in str(caught.value)
    with pytest.raises(UserError, match="both 'Male'"):
        load("celeba", tmp_path, target="Male")
    with pytest.raises(UserError, match="does not exist"):
        load("celeba", tmp_path, weights=str(tmp_path / "absent.pth"))
    (folder / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(UserError, match="000003.jpg"):
        load("celeba", tmp_path, resolution=8)
    assert not list(folder.glob("images-*8*")) and not list(folder.glob(".images-*8*"))


@pytest.mark.parametrize("bad_value", ["0", "yes", ""])
def test_celeba_malformed_attribute_list_is_a_user_error(tmp_path, bad_value):
    folder = write_celeba(tmp_path)
    path = folder / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[5] = lines[5].rsplit(" ", 1)[0] + (" " + bad_value if bad_value else "")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="000004.jpg|rows hold") as caught:
        load("celeba", tmp_path, resolution=8)
    assert "list_attr_celeba.txt" in str(caught.value)


def test_celeba_missing_lists_point_to_the_source(tmp_path):
    with pytest.raises(UserError) as caught:
        CelebA.prepare(tmp_path, download=False)
    message = str(caught.value)
    assert "list_attr_celeba.txt" in message and "Google Drive" in message and str(tmp_path / "celeba") in message
    assert "\n" not in message


def test_celeba_weights_load_into_the_encoder(tmp_path):
    import torchvision

    from removal_bench.core.encoders import build_encoder, load_weights as load_encoder_weights

    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    encoder = build_encoder("resnet18", (3, 32, 32))
    assert not torch.equal(encoder.net.conv1.weight, source.conv1.weight)
    load_encoder_weights(encoder, path)
    assert torch.equal(encoder.net.conv1.weight, source.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="do not fit the encoder"):
        load_encoder_weights(encoder, path)
