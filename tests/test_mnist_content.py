"""Biased-MNIST's files verified by content: any compression of MNIST's idx bytes is MNIST.

The real files are ../shared/data/biased_mnist/MNIST/raw/ (gzipped there with ``gzip -n -9``, so their
.gz bytes are not upstream's). Tests of damaged files write small idx files in the real format themselves.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from removal_bench.commands.cli import main
from removal_bench.core.errors import UserError
from removal_bench.core.params import resolve
from removal_bench.datasets.biased_mnist import FASHION_RAW, RAW, STEMS, BiasedMnist
from removal_bench.datasets.download import file_status
from removal_bench.running.runner import PlannedTrial, prepare_data
from removal_bench.running.trial import make_config
from tests.conftest import SHARED_DATA, declare_biased_mnist, idx_bytes, serve_folder

REAL_MNIST = SHARED_DATA / "biased_mnist" / "MNIST" / "raw"
needs_real_mnist = pytest.mark.skipif(
    not all((REAL_MNIST / f"{stem}.gz").is_file() for stem in STEMS),
    reason=f"no MNIST in {REAL_MNIST} (../shared/data): the real-file tests need its four idx files",
)
# MNIST's digits per class (LeCun et al.): the 60,000 training and the 10,000 test images.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
PAPER_RHOS = (0.99, 0.995, 0.997, 0.999)


def tiny_source(counts: tuple[int, int] = (40, 20), seed: int = 0) -> dict[str, bytes]:
    """The four idx files' content: random strokes in the middle of each 28 x 28 image, labels 0..9."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, count in zip(("train", "t10k"), counts):
        images = np.zeros((count, 28, 28), dtype=np.uint8)
        images[:, 8:20, 8:20] = rng.integers(0, 256, size=(count, 12, 12)) * (rng.random((count, 12, 12)) < 0.4)
        out[f"{part}-images-idx3-ubyte"] = idx_bytes(images)
        out[f"{part}-labels-idx1-ubyte"] = idx_bytes(np.arange(count) % 10)
    return out


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def write_source(folder: Path, contents: dict[str, bytes], level: int | None = 1) -> None:
    """Each file gzipped at ``level`` (``None``: extracted, no .gz)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, content in contents.items():
        if level is None:
            (folder / stem).write_bytes(content)
        else:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(content, compresslevel=level, mtime=0))


def statuses(root: Path, source: str = "mnist") -> dict[str, str]:
    pairs = file_status(BiasedMnist.folder(root), BiasedMnist.files_for({"source": source}))
    return {data_file.name: status for data_file, status in pairs}


# -- the real files -------------------------------------------------------------------------------


@needs_real_mnist
def test_real_mnist_is_present_by_content_though_its_archives_are_not_upstreams(capsys):
    assert statuses(SHARED_DATA) == {f"{RAW}{stem}.gz": "present" for stem in STEMS}
    for stem in STEMS:  # the .gz bytes differ from upstream's: only the content can vouch for them
        archive = next(f for f in BiasedMnist.files if f.name == f"{RAW}{stem}.gz")
        assert sha((REAL_MNIST / f"{stem}.gz").read_bytes()) != archive.sha256
    main(["data", "check", "biased_mnist", "--data-root", str(SHARED_DATA)])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:] if line.startswith("biased_mnist")]
    assert [row[2] for row in rows if row[1].startswith(RAW)] == ["present"] * 4
    BiasedMnist.prepare(SHARED_DATA, download=False, options={"source": "mnist"})  # raises nothing


@needs_real_mnist
def test_real_mnist_reference_split_counts_classes_and_colouring_at_every_rho():
    for rho in PAPER_RHOS:
        options = resolve("biased_mnist", BiasedMnist.options, {"split": "reference", "rho": rho})
        data = BiasedMnist().load(options, SHARED_DATA)
        assert (len(data.train), len(data.test)) == (60_000, 10_000)
        assert len(data.val) + len(data.probe) == 10_000 and abs(len(data.val) - len(data.probe)) <= 1
        assert np.bincount(data.train.y.numpy(), minlength=10).tolist() == TRAIN_COUNTS
        assert np.bincount(data.test.y.numpy(), minlength=10).tolist() == TEST_COUNTS
        assert sorted(np.concatenate([data.val.y.numpy(), data.probe.y.numpy()]).tolist()) == sorted(
            data.test.y.tolist())  # val and probe are the test images, recoloured
        # Train: each image takes its digit's colour with probability rho (independent draws).
        aligned = int((data.train.s == data.train.y).sum())
        expected, sigma = 60_000 * rho, np.sqrt(60_000 * rho * (1 - rho))
        assert abs(aligned - expected) < 4 * sigma, (rho, aligned, expected)
        off = ((data.train.s - data.train.y) % 10)[data.train.s != data.train.y].numpy()
        assert 0 not in off and len(set(off.tolist())) >= min(9, len(off)) - 1  # the other nine colours
        for name in ("val", "probe", "test"):  # unbiased: every (digit, colour) cell equal up to one image
            split = data.splits()[name]
            table = np.zeros((10, 10), dtype=np.int64)
            np.add.at(table, (split.y.numpy(), split.s.numpy()), 1)
            assert (table.max(axis=1) - table.min(axis=1) <= 1).all(), (rho, name)
        del data


# -- content, not bytes: small files in the real format ------------------------------------------


def test_any_compression_of_the_content_is_present_and_damage_is_corrupt(tmp_path, monkeypatch, capsys):
    contents = tiny_source()
    declare_biased_mnist(monkeypatch, {stem: sha(content) for stem, content in contents.items()})
    raw = tmp_path / "biased_mnist" / RAW
    write_source(raw, contents, level=1)
    assert set(statuses(tmp_path).values()) == {"present"}
    write_source(raw, contents, level=9)  # other .gz bytes, the same content
    assert set(statuses(tmp_path).values()) == {"present"}
    for stem in STEMS:  # extracted files only
        (raw / f"{stem}.gz").unlink()
    write_source(raw, contents, level=None)
    assert statuses(tmp_path) == {f"{RAW}{stem}": "present" for stem in STEMS}
    BiasedMnist.prepare(tmp_path, download=False, options={"source": "mnist"})

    altered = bytearray(contents["train-images-idx3-ubyte"])
    altered[-1] ^= 0xFF  # one pixel
    (raw / "train-images-idx3-ubyte").write_bytes(bytes(altered))
    (raw / "t10k-labels-idx1-ubyte").unlink()
    truncated = gzip.compress(contents["t10k-labels-idx1-ubyte"], mtime=0)[:-9]  # a cut-off archive
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(truncated)
    found = statuses(tmp_path)
    assert found[f"{RAW}train-images-idx3-ubyte"] == "corrupt"
    assert found[f"{RAW}t10k-labels-idx1-ubyte.gz"] == "corrupt"
    assert found[f"{RAW}train-labels-idx1-ubyte"] == "present"

    assert main(["data", "check", "biased_mnist", "--data-root", str(tmp_path)]) == 1
    rows = {line.split()[1]: line.split()[2] for line in capsys.readouterr().out.splitlines()
            if line.startswith("biased_mnist")}
    assert rows[f"{RAW}train-images-idx3-ubyte"] == rows[f"{RAW}t10k-labels-idx1-ubyte.gz"] == "corrupt"
    with pytest.raises(UserError) as caught:
        BiasedMnist.prepare(tmp_path, download=True, options={"source": "mnist"})
    message = str(caught.value)
    assert "\n" not in message and "decompressed" in message and "left untouched" in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert (raw / "t10k-labels-idx1-ubyte.gz").read_bytes() == truncated  # nothing replaced or removed
    assert (raw / "train-images-idx3-ubyte").read_bytes() == bytes(altered)


def test_a_content_check_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    contents = tiny_source()
    declare_biased_mnist(monkeypatch, {stem: sha(content) for stem, content in contents.items()})
    raw = tmp_path / "biased_mnist" / RAW
    write_source(raw, contents, level=6)
    assert set(statuses(tmp_path).values()) == {"present"}
    stamp = (tmp_path / "biased_mnist" / ".verified.json").read_text()
    assert sha(contents["train-images-idx3-ubyte"]) in stamp  # the content's hash, under the .gz's name
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x03" + bytes(12), mtime=0))
    assert statuses(tmp_path)[f"{RAW}train-images-idx3-ubyte.gz"] == "corrupt"  # size changed: hashed again


def test_a_run_checks_and_downloads_only_the_source_it_names(tmp_path, monkeypatch, capsys):
    """source=mnist with MNIST present and Fashion-MNIST absent (but downloadable) touches no Fashion-MNIST file;
    source=fashion_mnist downloads Fashion-MNIST and nothing else."""
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    mnist, fashion = tiny_source(seed=1), tiny_source(seed=2)
    root = tmp_path / "root"
    write_source(root / "biased_mnist" / RAW, mnist, level=9)
    served = tmp_path / "served"
    write_source(served, fashion, level=3)  # Zalando's address, on loopback
    declare_biased_mnist(monkeypatch, {stem: sha(content) for stem, content in mnist.items()}, "mnist",
                         mirror="http://127.0.0.1:9/")  # nothing listens there: a download would fail loudly
    with serve_folder(served) as url:
        declare_biased_mnist(monkeypatch, {stem: sha(content) for stem, content in fashion.items()},
                             "fashion_mnist", mirror=url + "/")

        def planned(source: str) -> list[PlannedTrial]:
            config = make_config("vanilla", "biased_mnist", {"source": source, "split": "reference"}, {},
                                 seed=0, data_root=str(root))
            return [PlannedTrial(config, "key", "config-key", "vanilla")]

        capsys.readouterr()
        prepare_data(planned("mnist"))
        err = capsys.readouterr().err
        assert err == ""  # no note about the other source
        assert not (root / "biased_mnist" / FASHION_RAW).exists()  # nothing downloaded, nothing begun
        prepare_data(planned("fashion_mnist"))
        assert statuses(root, "fashion_mnist") == {f"{FASHION_RAW}{stem}.gz": "present" for stem in STEMS}
        assert statuses(root, "mnist") == {f"{RAW}{stem}.gz": "present" for stem in STEMS}
        assert capsys.readouterr().err == ""


def test_a_run_on_a_missing_source_says_which_files_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    write_source(tmp_path / "biased_mnist" / FASHION_RAW, tiny_source(), level=1)  # only the other source
    config = make_config("vanilla", "biased_mnist", {}, {}, seed=0, data_root=str(tmp_path))
    with pytest.raises(UserError) as caught:
        prepare_data([PlannedTrial(config, "key", "config-key", "vanilla")])
    message = str(caught.value)
    assert "\n" not in message and "missing" in message and "downloads are disabled" in message
    assert f"{RAW}train-images-idx3-ubyte.gz" in message and FASHION_RAW not in message


def test_a_dataset_whose_prepare_takes_no_options_is_still_prepared_before_a_run(tmp_path):
    """A dataset class written before ``prepare(options=...)`` (a plugin's) keeps working: called as before."""
    from removal_bench.datasets.base import Dataset

    calls = []

    class Older(Dataset):
        name = "older"

        @classmethod
        def prepare(cls, data_root, download=True):
            calls.append((data_root, download))

    Older.prepare_for_run(tmp_path, {"anything": 1})
    assert calls == [(tmp_path, True)]

    class Newer(Dataset):
        name = "newer"

        @classmethod
        def prepare(cls, data_root, download=True, options=None):
            calls.append(options)

    Newer.prepare_for_run(tmp_path, {"source": "mnist"})
    assert calls[-1] == {"source": "mnist"}
