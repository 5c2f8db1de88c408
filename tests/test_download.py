"""datasets.download against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from removal_bench.core.errors import UserError
from removal_bench.datasets import download
from removal_bench.datasets.base import DataFile
from removal_bench.datasets.download import download_file, ensure_files, file_status, sha256_of
from tests.conftest import serve_folder

GOOD = b"39, State-gov, 77516, Bachelors\n" * 1000
OTHER = b"not what was promised\n"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/served at the returned base URL; shut down after the test."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "good.bin").write_bytes(GOOD)
    (served / "other.bin").write_bytes(OTHER)
    with serve_folder(served) as url:
        yield url


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_sha256_of_streams_whole_file(tmp_path):
    path = tmp_path / "f"
    content = b"x" * (download.CHUNK * 2 + 17)
    path.write_bytes(content)
    assert sha256_of(path) == sha(content)


def test_download_lands_verified_with_no_partial_left(server, tmp_path):
    destination = tmp_path / "data" / "adult" / "good.bin"
    download_file(f"{server}/good.bin", destination, sha(GOOD), timeout=5)
    assert destination.read_bytes() == GOOD
    assert destination.stat().st_mode & 0o777 == download.FILE_MODE
    assert leftovers(destination.parent) == []


def test_mismatching_download_is_refused_and_leaves_nothing(server, tmp_path):
    folder = tmp_path / "adult"
    folder.mkdir()
    unrelated = folder / "notes.txt"
    unrelated.write_text("mine")
    url = f"{server}/other.bin"
    with pytest.raises(UserError) as caught:
        download_file(url, folder / "adult.data", sha(GOOD), timeout=5)
    message = str(caught.value)
    assert sha(OTHER) in message and sha(GOOD) in message and url in message
    assert "\n" not in message
    assert not (folder / "adult.data").exists()
    assert leftovers(folder) == []
    assert unrelated.read_text() == "mine"


def test_failed_download_keeps_existing_destination(server, tmp_path):
    destination = tmp_path / "adult.data"
    destination.write_bytes(b"user's own copy")
    with pytest.raises(UserError):
        download_file(f"{server}/other.bin", destination, sha(GOOD), timeout=5)
    with pytest.raises(UserError, match="404"):
        download_file(f"{server}/absent.bin", destination, sha(GOOD), timeout=5)
    assert destination.read_bytes() == b"user's own copy"
    assert leftovers(tmp_path) == []


def test_ensure_files_downloads_missing_files(server, tmp_path):
    folder = tmp_path / "root" / "toy"
    files = [DataFile("good.bin", sha(GOOD), f"{server}/good.bin")]
    ensure_files(folder, files, dataset="toy")
    assert (folder / "good.bin").read_bytes() == GOOD
    assert file_status(folder, files) == [(files[0], "present")]


def test_ensure_files_reports_failed_download_in_one_line(server, tmp_path):
    folder = tmp_path / "toy"
    files = [
        DataFile("a.bin", sha(GOOD), f"{server}/absent.bin"),
        DataFile("b.bin", sha(GOOD), f"{server}/good.bin"),
    ]
    with pytest.raises(UserError) as caught:
        ensure_files(folder, files, dataset="toy")
    message = str(caught.value)
    assert "\n" not in message
    assert "a.bin" in message and "b.bin" in message and str(folder) in message
    assert "download failed" in message and "--data-root" in message
    assert leftovers(folder) == []


def test_corrupt_file_raises_and_is_kept(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "good.bin").write_bytes(OTHER)
    files = [DataFile("good.bin", sha(GOOD), "http://127.0.0.1:9/never-called")]
    with pytest.raises(UserError) as caught:
        ensure_files(folder, files, dataset="toy", download=True)
    message = str(caught.value)
    assert "good.bin" in message and "SHA-256" in message and "\n" not in message
    assert (folder / "good.bin").read_bytes() == OTHER


def test_missing_without_download_names_file_and_folder(tmp_path):
    folder = tmp_path / "root" / "adult"
    files = [
        DataFile("adult.data", sha(GOOD), "https://example.invalid/adult.data"),
        DataFile("adult.test", None, None),
    ]
    with pytest.raises(UserError) as caught:
        ensure_files(folder, files, dataset="adult", download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("adult: missing adult.data, adult.test in " + str(folder))
    assert "https://example.invalid/adult.data" in message
    assert not folder.exists()  # nothing was downloaded, so nothing was created


def test_file_status_present_missing_corrupt(tmp_path):
    (tmp_path / "good").write_bytes(GOOD)
    (tmp_path / "bad").write_bytes(OTHER)
    (tmp_path / "unchecked").write_bytes(OTHER)
    files = [
        DataFile("good", sha(GOOD)),
        DataFile("bad", sha(GOOD)),
        DataFile("absent", sha(GOOD)),
        DataFile("unchecked", None),
        DataFile("absent_unchecked", None),
    ]
    statuses = [status for _, status in file_status(tmp_path, files)]
    assert statuses == ["present", "corrupt", "missing", "present", "missing"]


def test_verified_hash_is_cached_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "good"
    path.write_bytes(GOOD)
    files = [DataFile("good", sha(GOOD))]
    calls = []
    real = download.sha256_of

    def counting(p):
        calls.append(p)
        return real(p)

    monkeypatch.setattr(download, "sha256_of", counting)
    monkeypatch.setattr(download, "_memory", {})  # only the stamp file may remember
    assert file_status(tmp_path, files)[0][1] == "present"
    assert (tmp_path / download.STAMP_NAME).exists()
    assert file_status(tmp_path, files)[0][1] == "present"
    assert len(calls) == 1

    path.write_bytes(GOOD + b"tampered")
    assert file_status(tmp_path, files)[0][1] == "corrupt"
    assert len(calls) == 2


def test_read_only_folder_gets_no_stamp_but_still_caches(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "good").write_bytes(GOOD)
    files = [DataFile("good", sha(GOOD))]
    calls = []
    real = download.sha256_of
    monkeypatch.setattr(download, "sha256_of", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(download, "_memory", {})
    folder.chmod(0o555)
    try:
        assert file_status(folder, files)[0][1] == "present"
        assert file_status(folder, files)[0][1] == "present"
        assert sorted(p.name for p in folder.iterdir()) == ["good"]
    finally:
        folder.chmod(0o755)
    assert len(calls) == 1
