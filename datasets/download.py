"""Data files under a data root: present, intact (by SHA-256), or downloaded.

A dataset declares its files as :class:`DataFile` (name, SHA-256,
URL). :func:`ensure_files` checks them before any trial starts and downloads
the missing ones. It never deletes or overwrites a file the user put there: a
file whose hash does not match is reported, not replaced.

Hashing a large file at every trial would be slow, so verified hashes are
remembered in ``.verified.json`` in the dataset's folder, keyed by file name
with the file's size and modification time; a file whose size or time changed
is hashed again. A folder without write permission (a read-only shared copy;
respected even when running as root) gets no stamp; hashes are then remembered
for the process only.

Verified by content: a file declared as ``name.gz`` with ``content_sha256``
(the SHA-256 of its decompressed bytes) is present when its content matches,
whatever compressed it (upstream's archive, ``gzip -9`` of the same bytes, a
distribution's repackaging), or when only the extracted ``name`` exists and
hashes to the same. Its ``sha256`` (of upstream's archive) still checks each
download. A truncated or altered archive is "corrupt". MNIST and Fashion-MNIST
are declared so (:mod:`removal_bench.datasets.biased_mnist`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from removal_bench.core.disk import full_disk_error, is_disk_full
from removal_bench.core.errors import UserError

STAMP_NAME = ".verified.json"
CHUNK = 1 << 20
FILE_MODE = 0o644

PRESENT = "present"
MISSING = "missing"
CORRUPT = "corrupt"

# (resolved path, size, mtime_ns) -> sha256, for folders where the stamp cannot be written.
_memory: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class DataFile:
    """A file a dataset reads, relative to its folder under the data root."""

    name: str
    sha256: str | None = None  # of the file as downloaded (upstream's archive)
    url: str | None = None
    # SHA-256 of the decompressed content of a ``.gz`` name: any compression of it, or the extracted file, is accepted
    content_sha256: str | None = None

    @property
    def plain_name(self) -> str:
        """The extracted file's name (``name`` without ``.gz``)."""
        return self.name.removesuffix(".gz")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_sha256_of(path: Path) -> str:
    """SHA-256 of a file's content, decompressed when its name ends in .gz; '' for a broken archive."""
    digest = hashlib.sha256()
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):  # gzip.BadGzipFile is an OSError; truncation is an EOFError
        return ""
    return digest.hexdigest()


def _read_stamp(folder: Path) -> dict[str, dict]:
    try:
        stamp = json.loads((folder / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write_stamp(folder: Path, stamp: dict[str, dict]) -> None:
    """Best effort, atomic: a read-only folder or a concurrent writer only costs a re-hash later."""
    try:
        if not folder.stat().st_mode & stat.S_IWUSR:
            return  # marked read-only (a shared copy): respected even where root could write
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f"{STAMP_NAME}.partial-")
    except OSError:
        return
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(stamp, out, indent=1, sort_keys=True)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, folder / STAMP_NAME)
    except OSError:
        _remove_quietly(Path(temporary))


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _remember(
    folder: Path, stamp: dict[str, dict], name: str, info: os.stat_result, sha: str, kind: str = "sha256"
) -> None:
    """Remember a file's hash (``kind``: "sha256" of its bytes, or "content_sha256" of its decompressed bytes)."""
    _memory[(str((folder / name).resolve()), info.st_size, info.st_mtime_ns, kind)] = sha
    entry = stamp.get(name)
    if not (isinstance(entry, dict) and entry.get("size") == info.st_size and entry.get("mtime_ns") == info.st_mtime_ns):
        entry = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    stamp[name] = {**entry, kind: sha}


def _cached_sha(
    folder: Path, stamp: dict[str, dict], name: str, info: os.stat_result, kind: str = "sha256"
) -> str | None:
    entry = stamp.get(name)
    if (
        isinstance(entry, dict)
        and entry.get("size") == info.st_size
        and entry.get("mtime_ns") == info.st_mtime_ns
        and isinstance(entry.get(kind), str)
    ):
        return entry[kind]
    return _memory.get((str((folder / name).resolve()), info.st_size, info.st_mtime_ns, kind))


def _hash(folder: Path, stamp: dict[str, dict], name: str, kind: str) -> tuple[str, bool]:
    """A file's hash of ``kind`` (from the stamp or the process's memory when unchanged), and whether it was computed."""
    info = (folder / name).stat()
    sha = _cached_sha(folder, stamp, name, info, kind)
    if sha is not None:
        return sha, False
    sha = content_sha256_of(folder / name) if kind == "content_sha256" else sha256_of(folder / name)
    _remember(folder, stamp, name, info, sha, kind)
    return sha, True


def content_file(folder: Path, data_file: DataFile) -> str | None:
    """The file that holds ``data_file``'s content: its own name, else the extracted one, else None."""
    for name in (data_file.name, data_file.plain_name):
        if (Path(folder) / name).is_file():
            return name
    return None


def file_status(folder: Path, files: Sequence[DataFile]) -> list[tuple[DataFile, str]]:
    """Each file with its status: "present", "missing" or "corrupt" (SHA-256 mismatch).

    A file without a declared SHA-256 is "present" whenever it exists. A file
    with ``content_sha256`` is checked by its decompressed content, and found
    under its extracted name too (it is then returned under that name).
    """
    folder = Path(folder)
    stamp = _read_stamp(folder)
    changed = False
    result: list[tuple[DataFile, str]] = []
    for data_file in files:
        if data_file.content_sha256 is not None:
            name = content_file(folder, data_file)
            if name is None:
                result.append((data_file, MISSING))
                continue
            kind = "content_sha256" if name.endswith(".gz") else "sha256"  # an extracted file is its content
            sha, computed = _hash(folder, stamp, name, kind)
            changed |= computed
            status = PRESENT if sha == data_file.content_sha256.lower() else CORRUPT
            shown = data_file if name == data_file.name else DataFile(name, None, data_file.url, data_file.content_sha256)
            result.append((shown, status))
            continue
        path = folder / data_file.name
        if not path.is_file():
            result.append((data_file, MISSING))
            continue
        if data_file.sha256 is None:
            result.append((data_file, PRESENT))
            continue
        sha, computed = _hash(folder, stamp, data_file.name, "sha256")
        changed |= computed
        status = PRESENT if sha == data_file.sha256.lower() else CORRUPT
        result.append((data_file, status))
    if changed:
        _write_stamp(folder, stamp)
    return result


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def download_file(url: str, destination: Path, sha256: str | None, timeout: float = 60) -> None:
    """Download ``url`` to ``destination``, atomically and verified.

    The bytes go to a temporary file in the same folder, which replaces
    ``destination`` only once its SHA-256 matches. On any failure the temporary
    file is removed, nothing else is touched, and UserError says why.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.partial-"
    )
    temporary = Path(temporary_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except urllib.error.HTTPError as error:
                raise UserError(f"could not download {url}: HTTP {error.code} {error.reason}") from None
            except urllib.error.URLError as error:
                raise UserError(f"could not download {url}: {_one_line(error.reason)}") from None
            except (OSError, ValueError) as error:  # timeouts, resets, malformed URLs
                if is_disk_full(error):  # the partial file is removed below
                    raise full_disk_error(error, destination, f"downloading {url}") from None
                raise UserError(f"could not download {url}: {_one_line(error)}") from None
        got = digest.hexdigest()
        if sha256 is not None and got != sha256.lower():
            raise UserError(
                f"download of {url} has SHA-256 {got}, expected {sha256.lower()}; nothing was saved"
            )
        os.chmod(temporary, FILE_MODE)  # mkstemp creates files readable by their owner only
        os.replace(temporary, destination)
    except OSError as error:  # closing the file flushes its last bytes: a full disk can show only there
        _remove_quietly(temporary)
        if is_disk_full(error):
            raise full_disk_error(error, destination, f"downloading {url}") from None
        raise
    except BaseException:
        _remove_quietly(temporary)
        raise
    folder = destination.parent
    stamp = _read_stamp(folder)
    _remember(folder, stamp, destination.name, destination.stat(), got)
    _write_stamp(folder, stamp)


def _names(files: Sequence[DataFile]) -> str:
    return ", ".join(f.name for f in files)


def _holds_content(folder: Path, data_file: DataFile) -> bool:
    """A fresh download checked by its decompressed content (its archive SHA-256 may be unknown)."""
    stamp = _read_stamp(folder)
    sha, _ = _hash(folder, stamp, data_file.name, "content_sha256")
    if sha == data_file.content_sha256.lower():
        _write_stamp(folder, stamp)
        return True
    return False


def ensure_files(
    folder: Path, files: Sequence[DataFile], dataset: str, download: bool = True
) -> None:
    """Make sure every file is in ``folder`` and intact, downloading missing ones if allowed.

    A corrupt file (SHA-256 mismatch) is never deleted or overwritten: it raises
    UserError. Missing files that cannot be downloaded raise one UserError line
    naming all of them and the folder to put them in.
    """
    folder = Path(folder)
    statuses = file_status(folder, files)
    corrupt = [f for f, status in statuses if status == CORRUPT]
    if corrupt:
        pronoun = "it" if len(corrupt) == 1 else "them"
        sources = ", ".join(f.url for f in corrupt if f.url)
        fix = f"replace {pronoun} with the original" + (f" from {sources}" if sources else "")
        verb = "does" if len(corrupt) == 1 else "do"
        what = ("the expected content (SHA-256 of the decompressed bytes; a truncated or altered file)"
                if all(f.content_sha256 for f in corrupt) else "the expected SHA-256")
        raise UserError(
            f"{dataset}: {_names(corrupt)} in {folder} {verb} not match {what} "
            f"(left untouched); move {pronoun} away to download again, or {fix}"
        )
    missing = [f for f, status in statuses if status == MISSING]
    if not missing:
        return
    if download:
        reason = None
        for data_file in list(missing):
            if data_file.url is None:
                continue
            try:
                download_file(data_file.url, folder / data_file.name, data_file.sha256)
            except UserError as error:
                # Most failures (no network, a moved host) hit every file: stop at the first.
                reason = f"download failed: {_one_line(error)}"
                break
            if data_file.content_sha256 is not None and not _holds_content(folder, data_file):
                _remove_quietly(folder / data_file.name)
                reason = f"the download of {data_file.url} does not hold the expected content (removed)"
                break
            missing.remove(data_file)
        if not missing:
            return
        if reason is None:
            reason = "no download address is known"
    else:
        reason = "downloads are disabled"
    pronoun = "it" if len(missing) == 1 else "them"
    sources = ", ".join(f.url for f in missing if f.url)
    where = f"download {pronoun} from {sources}" if sources else f"place {pronoun} there"
    raise UserError(
        f"{dataset}: missing {_names(missing)} in {folder} ({reason}); "
        f"{where} or pass --data-root pointing at a folder that holds {dataset}/"
    )
