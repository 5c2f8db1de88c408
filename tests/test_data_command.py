"""`bench data check` and `bench data fetch`, end to end through removal_bench.commands.cli.main."""

from __future__ import annotations

import hashlib

import pytest

from removal_bench.commands.cli import main
from removal_bench.datasets.adult import Adult
from removal_bench.datasets.base import DataFile
from removal_bench.datasets.biased_mnist import BiasedMnist
from removal_bench.datasets.compas import Compas
from removal_bench.datasets.german import German
from tests.conftest import declare_biased_mnist, serve_folder

CONTENT = {"compas": b"compas bytes\n", "german": b"german bytes\n", "adult": b"adult bytes\n"}


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def declared(monkeypatch):
    """compas, german and adult each declare one small file with a known SHA-256."""
    for cls in (Compas, German, Adult):
        data_file = DataFile(f"{cls.name}.bin", sha(CONTENT[cls.name]), None)
        monkeypatch.setattr(cls, "files", (data_file,))


def table(output: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(dataset, file) -> (status, folder), from the printed table."""
    rows = {}
    lines = output.splitlines()
    assert lines[0].split() == ["dataset", "file", "status", "folder"]
    for line in lines[1:]:
        if not line.strip():
            break
        dataset, name, status, folder = line.split()
        rows[(dataset, name)] = (status, folder)
    return rows


def test_check_reports_present_missing_and_corrupt(tmp_path, declared, capsys):
    (tmp_path / "compas").mkdir()
    (tmp_path / "compas" / "compas.bin").write_bytes(CONTENT["compas"])
    (tmp_path / "adult").mkdir()
    (tmp_path / "adult" / "adult.bin").write_bytes(b"something else\n")
    status = main(["data", "check", "compas", "german", "adult", "--data-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 1
    rows = table(out)
    assert rows == {
        ("compas", "compas.bin"): ("present", str(tmp_path / "compas")),
        ("german", "german.bin"): ("missing", str(tmp_path / "german")),
        ("adult", "adult.bin"): ("corrupt", str(tmp_path / "adult")),
    }
    assert "incomplete: adult, german" in out
    # Only what is present and intact: exit status 0.
    assert main(["data", "check", "compas", "--data-root", str(tmp_path)]) == 0
    assert table(capsys.readouterr().out) == {("compas", "compas.bin"): ("present", str(tmp_path / "compas"))}


def test_check_defaults_to_every_dataset_that_reads_files(tmp_path, capsys):
    assert main(["data", "check", "--data-root", str(tmp_path)]) == 1
    datasets = {dataset for dataset, _ in table(capsys.readouterr().out)}
    assert {"adult", "compas", "german", "biased_mnist", "celeba"} <= datasets
    assert "synthetic" not in datasets and "colored_digits" not in datasets


def test_check_honours_bench_data_root(tmp_path, declared, monkeypatch, capsys):
    (tmp_path / "german").mkdir()
    (tmp_path / "german" / "german.bin").write_bytes(CONTENT["german"])
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))
    assert main(["data", "check", "german"]) == 0
    assert table(capsys.readouterr().out)[("german", "german.bin")] == ("present", str(tmp_path / "german"))


def test_check_accepts_extracted_mnist_and_lists_the_celeba_image_folder(tmp_path, monkeypatch, capsys):
    raw = tmp_path / "biased_mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    hashes = {}
    for data_file in BiasedMnist.files_for({"source": "mnist"}):  # Fashion-MNIST's files: absent here
        stem = data_file.plain_name.rsplit("/", 1)[-1]
        (raw / stem).write_bytes(stem.encode())
        hashes[stem] = sha(stem.encode())
    declare_biased_mnist(monkeypatch, hashes)  # checked by content, as the real files
    assert main(["data", "check", "biased_mnist", "celeba", "--data-root", str(tmp_path)]) == 1
    rows = table(capsys.readouterr().out)
    assert rows[("biased_mnist", "MNIST/raw/train-images-idx3-ubyte")][0] == "present"
    assert all(status == "present" for (dataset, name), (status, _) in rows.items()
               if dataset == "biased_mnist" and name.startswith("MNIST/"))
    assert rows[("biased_mnist", "FashionMNIST/raw/train-images-idx3-ubyte.gz")][0] == "missing"
    assert rows[("celeba", "img_align_celeba/")][0] == "missing"


def test_fetch_with_options_fetches_only_the_files_they_read(tmp_path, monkeypatch, capsys):
    raw = tmp_path / "biased_mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    hashes = {}
    for data_file in BiasedMnist.files_for({"source": "mnist"}):
        stem = data_file.plain_name.rsplit("/", 1)[-1]
        (raw / stem).write_bytes(stem.encode())
        hashes[stem] = sha(stem.encode())
    declare_biased_mnist(monkeypatch, hashes)
    monkeypatch.setenv("BENCH_OFFLINE", "1")  # nothing may be downloaded: MNIST is here, Fashion-MNIST is not
    assert main(["data", "fetch", "biased_mnist:source=mnist", "--data-root", str(tmp_path)]) == 0
    assert "every file it reads is present" in capsys.readouterr().out
    assert main(["data", "fetch", "biased_mnist", "--data-root", str(tmp_path)]) == 2  # every source's files
    assert "FashionMNIST" in capsys.readouterr().err
    assert main(["data", "fetch", "biased_mnist:source=svhn", "--data-root", str(tmp_path)]) == 2
    assert "source" in capsys.readouterr().err
    assert not (tmp_path / "biased_mnist" / "FashionMNIST").exists()


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (["data", "fetch", "nope"], "unknown dataset 'nope'"),
        (["data", "check", "adult", "nope"], "unknown dataset 'nope'"),
        (["data"], "expected a command"),
        (["data", "fetch"], "the following arguments are required: NAME"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, arguments, fragment, capsys):
    assert main([*arguments, "--data-root", str(tmp_path)] if len(arguments) > 1 else arguments) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and lines[0].startswith("bench: error:"), captured.err
    assert list(tmp_path.iterdir()) == []


def test_fetch_celeba_says_where_to_put_the_files(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    assert main(["data", "fetch", "celeba", "--data-root", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Google Drive" in lines[0] and str(tmp_path / "celeba") in lines[0]


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "german.data").write_bytes(CONTENT["german"])
    with serve_folder(served) as url:
        yield url


def test_fetch_downloads_verifies_and_then_check_passes(tmp_path, server, monkeypatch, capsys):
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    url = f"{server}/german.data"
    monkeypatch.setattr(German, "files", (DataFile("german.data", sha(CONTENT["german"]), url),))
    root = tmp_path / "root"
    assert main(["data", "fetch", "german", "--data-root", str(root)]) == 0
    assert "german" in capsys.readouterr().out
    assert (root / "german" / "german.data").read_bytes() == CONTENT["german"]
    assert main(["data", "check", "german", "--data-root", str(root)]) == 0
    capsys.readouterr()

    # A file whose hash does not match the download: exit 2, nothing saved.
    monkeypatch.setattr(German, "files", (DataFile("german.data", "0" * 64, url),))
    other = tmp_path / "other"
    assert main(["data", "fetch", "german", "--data-root", str(other)]) == 2
    assert "SHA-256" in capsys.readouterr().err
    assert not (other / "german" / "german.data").exists()


def test_fetch_of_a_dataset_without_files(tmp_path, capsys):
    assert main(["data", "fetch", "synthetic", "--data-root", str(tmp_path)]) == 0
    assert "needs no data files" in capsys.readouterr().out
