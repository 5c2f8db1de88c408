import contextlib
import functools
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data, when present

# Two cores here: one torch thread per test process keeps timings sane next to Ray workers.
torch.set_num_threads(1)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def serve_folder(folder: Path):
    """A real HTTP server on loopback serving ``folder``; yields its base URL, shut down after."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def bench_command() -> list[str]:
    """The installed console script, run as a subprocess (as a user would)."""
    script = Path(sys.executable).with_name("bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "removal_bench.commands.cli"]


def quiet_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx format of MNIST's files: two zero bytes, type 0x08 (unsigned byte), the number of dimensions,
    each dimension as 32 bits, then the bytes. The Biased-MNIST tests write their small files with it."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def declare_biased_mnist(monkeypatch, hashes: dict[str, str], source: str = "mnist", mirror: str | None = None) -> None:
    """Make Biased-MNIST declare ``hashes`` (idx stem -> SHA-256 of the decompressed content) for ``source``'s
    files, and ``mirror`` (a base URL ending in '/') as their download address: tests that write small idx files
    in the real format check them as the real ones are checked. The archive SHA-256 is dropped (these archives
    are the test's own)."""
    from dataclasses import replace

    from removal_bench.datasets.biased_mnist import SOURCES, BiasedMnist

    prefix = SOURCES[source]
    files = []
    for data_file in BiasedMnist.files:
        if data_file.name.startswith(prefix):
            stem = data_file.plain_name.rsplit("/", 1)[-1]
            url = f"{mirror}{stem}.gz" if mirror else data_file.url
            data_file = replace(data_file, sha256=None, url=url, content_sha256=hashes[stem])
        files.append(data_file)
    monkeypatch.setattr(BiasedMnist, "files", tuple(files))


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def installed_venv(base: Path, *packages: Path, timeout: float = 600) -> Path:
    """A fresh virtual environment under ``base`` with the project installed as a real wheel, built from a copy
    of its files (so nothing leans on the repository being on sys.path), and ``packages`` (folders with a
    pyproject.toml) beside it. The dependencies pip installed for the tests (torch, Ray, MLflow, Hugging Face's
    datasets) are lent by a .pth file instead of installed again."""
    root = Path(__file__).resolve().parents[1]
    source = base / "project"
    source.mkdir(parents=True)
    for name in ("bench", "methods", "datasets"):
        shutil.copytree(root / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    env = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    (site_packages(python) / "_lent_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", str(source), *map(str, packages)],
        capture_output=True, text=True, cwd=base, timeout=timeout,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return env


def without_generation(text: str) -> str:
    """A leaderboard's text without what changes from one build to the next: the generation time (``TIME``)
    and the ``- This file:`` line (the command that wrote it)."""
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "TIME", text)
    return "\n".join(line for line in text.splitlines() if not line.startswith("- This file: "))


class BenchProcess:
    """A ``bench`` subprocess (the console script) whose stderr lines can be waited for while it runs."""

    def __init__(self, arguments: list[str], cwd: Path, env: dict[str, str] | None = None, new_session: bool = False):
        # new_session: its own process group (and every process it starts, Ray's included), for a signal to the group
        self.process = subprocess.Popen(bench_command() + arguments, cwd=cwd, env={**quiet_env(), **(env or {})},
                                        text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=new_session)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for_line(self, prefix: str, timeout: float = 300) -> None:
        """Until a stderr line starts with ``prefix`` (a progress line: ``[  1/4]``); fails if the process ends first."""
        with self.changed:
            found = self.changed.wait_for(
                lambda: any(line.startswith(prefix) for line in self.lines) or self.process.poll() is not None, timeout)
        assert found and any(line.startswith(prefix) for line in self.lines), "\n".join(self.lines[-30:])

    def finish(self, timeout: float = 300) -> int:
        """The exit status; a process still running after ``timeout`` fails the test with the Python stack of
        each of its threads (``faulthandler``, which ``PYTHONFAULTHANDLER`` in its environment turns on, writes
        them on the SIGABRT sent here) and its last lines."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.reader.join(30)
            pytest.fail(f"bench did not end within {timeout:g} s; its threads and last lines:\n" + "\n".join(self.lines[-150:]))
        self.reader.join(30)
        return status

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
