"""Biased Fashion-MNIST (biased_mnist:source=fashion_mnist) and the references' split."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from removal_bench.core.errors import UserError
from removal_bench.core.params import resolve
from removal_bench.datasets.biased_mnist import FASHION_RAW, STEMS, BiasedMnist
from removal_bench.datasets.download import file_status
from tests.conftest import SHARED_DATA, declare_biased_mnist, idx_bytes, serve_folder

SIZES = {"train-images-idx3-ubyte": (60_000, 28, 28), "train-labels-idx1-ubyte": (60_000,),
         "t10k-images-idx3-ubyte": (10_000, 28, 28), "t10k-labels-idx1-ubyte": (10_000,)}


def fake_fashion(counts: tuple[int, int], seed: int = 0) -> dict[str, bytes]:
    """Real-format idx content: a small random silhouette per image (zeros elsewhere), labels 0..9."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, count in zip(("train", "t10k"), counts):
        images = np.zeros((count, 28, 28), dtype=np.uint8)
        images[:, 10:18, 10:18] = rng.integers(0, 256, size=(count, 8, 8)) * (rng.random((count, 8, 8)) < 0.5)
        out[f"{part}-images-idx3-ubyte"] = idx_bytes(images)
        out[f"{part}-labels-idx1-ubyte"] = idx_bytes(rng.integers(0, 10, size=count))
    return out


def options(**given):
    return resolve("biased_mnist", BiasedMnist.options, {"source": "fashion_mnist", **given})


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """60,000 + 10,000 images in Fashion-MNIST's files (gzipped), with their decompressed SHA-256."""
    root = tmp_path_factory.mktemp("fashion")
    contents = fake_fashion((60_000, 10_000))
    raw = root / "biased_mnist" / FASHION_RAW
    raw.mkdir(parents=True)
    for stem, content in contents.items():
        with gzip.open(raw / f"{stem}.gz", "wb", compresslevel=1) as handle:
            handle.write(content)
    return root, {stem: hashlib.sha256(content).hexdigest() for stem, content in contents.items()}


def test_fashion_source_loads_every_image_and_follows_the_protocol(full_size, monkeypatch):
    root, hashes = full_size
    declare_biased_mnist(monkeypatch, hashes, "fashion_mnist")
    BiasedMnist.prepare(root, download=False, options=options())  # verified by decompressed content
    rho = 0.99
    data = BiasedMnist().load(options(split="reference", rho=rho), root)
    assert len(data.train) == 60_000 and len(data.test) == 10_000  # the references' split
    assert len(data.val) + len(data.probe) == 10_000 and abs(len(data.val) - len(data.probe)) <= 1
    assert data.spec.target_name == "garment"
    aligned = (data.train.s == data.train.y).float().mean().item()
    assert abs(aligned - rho) < 4 * np.sqrt(rho * (1 - rho) / 60_000)
    for name in ("val", "probe", "test"):
        split = data.splits()[name]
        table = np.zeros((10, 10), dtype=np.int64)
        np.add.at(table, (split.y.numpy(), split.s.numpy()), 1)
        assert (table.max(axis=1) - table.min(axis=1) <= 1).all(), name  # every (class, colour) cell equal up to one
    # Today's split stays the default: disjoint 50,000 / 10,000 / 5,000 / 5,000.
    ours = BiasedMnist().load(options(rho=rho, subsample=0.1), root)
    assert [len(ours.splits()[name]) for name in ("train", "val", "probe", "test")] == [5000, 1000, 500, 500]


def test_fashion_files_are_checked_by_decompressed_content(full_size, monkeypatch):
    root, hashes = full_size
    def statuses_now():
        pairs = file_status(BiasedMnist.folder(root), BiasedMnist.files)
        return dict((f.name, s) for f, s in pairs if f.name.startswith(FASHION_RAW))

    statuses = statuses_now()
    assert set(statuses.values()) == {"corrupt"}  # the real checksums: these are not Fashion-MNIST
    declare_biased_mnist(monkeypatch, hashes, "fashion_mnist")
    statuses = statuses_now()
    assert list(statuses) == [f"{FASHION_RAW}{stem}.gz" for stem in STEMS] and set(statuses.values()) == {"present"}


def test_fashion_download_from_upstream_keeps_only_the_right_content(tmp_path, monkeypatch):
    contents = fake_fashion((30, 10), seed=1)
    served = tmp_path / "served"
    served.mkdir()
    for stem, content in contents.items():  # recompressed: the .gz bytes are not what the hashes cover
        (served / f"{stem}.gz").write_bytes(gzip.compress(content, compresslevel=9))
    hashes = {stem: hashlib.sha256(content).hexdigest() for stem, content in contents.items()}
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    with serve_folder(served) as url:
        declare_biased_mnist(monkeypatch, hashes, "fashion_mnist", mirror=url + "/")
        BiasedMnist.prepare_source(tmp_path / "root", "fashion_mnist")
        data = BiasedMnist().load(options(split="reference"), tmp_path / "root")
        assert (len(data.train), len(data.test)) == (30, 10)
        declare_biased_mnist(monkeypatch, {**hashes, "t10k-labels-idx1-ubyte": "0" * 64}, "fashion_mnist", url + "/")
        target = tmp_path / "root" / "biased_mnist" / FASHION_RAW / "t10k-labels-idx1-ubyte.gz"
        target.unlink()
        with pytest.raises(UserError, match="does not hold the expected content"):
            BiasedMnist.prepare_source(tmp_path / "root", "fashion_mnist")
        assert not target.exists()  # a wrong download is not left behind


@pytest.mark.skipif(not (SHARED_DATA / "biased_mnist" / "FashionMNIST").is_dir(), reason="no shared Fashion-MNIST")
def test_real_fashion_mnist(monkeypatch):
    statuses = [s for f, s in file_status(BiasedMnist.folder(SHARED_DATA), BiasedMnist.files)
                if f.name.startswith(FASHION_RAW)]
    assert statuses == ["present"] * 4  # Debian's .gz, checked by the decompressed SHA-256 of the README
    data = BiasedMnist().load(options(split="reference", rho=0.999), SHARED_DATA)
    assert len(data.train) == 60_000 and len(data.test) == 10_000
    counts = np.bincount(data.train.y.numpy(), minlength=10)
    assert (counts == 6000).all()  # Fashion-MNIST has 6,000 training images per class
    conflicting = int((data.train.s != data.train.y).sum())
    assert 60 - 4 * np.sqrt(60) < conflicting < 60 + 4 * np.sqrt(60)
