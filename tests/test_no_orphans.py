"""No Ray process that ``bench`` started outlives it by 10 s: after a sweep that ends, and after a SIGTERM.

Every process the command starts inherits a marker in its environment, so the test finds them in ``/proc``
whatever they are called (GCS, raylet, agents, workers) and whoever their parent is once the driver is gone.
Linux only (it reads ``/proc``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")]

BENCH = str(Path(sys.executable).with_name("bench"))


def marked(mark: str) -> list[int]:
    """Live (not zombie) processes whose environment holds the marker."""
    needle = f"BENCH_ORPHAN_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start(tmp_path: Path, mark: str, seeds: int, epochs: int) -> subprocess.Popen:
    env = {**os.environ, "BENCH_ORPHAN_MARK": mark, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(
        [BENCH, "sweep", "--grid", "--methods", "vanilla", "--datasets", "synthetic:n_train=400:n_eval=200",
         "--seeds", str(seeds), "--epochs", str(epochs), "--max-concurrent", "1",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "orphans",
         "--results-dir", str(tmp_path / "results"), "--storage-path", str(tmp_path / "ray"), "--quiet"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_ray(process: subprocess.Popen, mark: str, timeout: float = 240.0) -> list[str]:
    """Until a Ray worker runs a trial (the processes seen then), or the command ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        seen = [command_line(pid) for pid in marked(mark)]
        if any("raylet" in line for line in seen) and any("ray::" in line for line in seen):
            return seen
        time.sleep(0.2)
    return []


def leftovers_after(mark: str, seconds: float = 10.0) -> list[str]:
    time.sleep(seconds)
    return [f"{pid}: {command_line(pid)[:120]}" for pid in marked(mark)]


def test_no_ray_process_outlives_a_sweep_that_ends(tmp_path):
    mark = uuid.uuid4().hex
    process = start(tmp_path, mark, seeds=2, epochs=2)
    seen = wait_for_ray(process, mark)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    assert seen, "Ray never ran a worker: the test saw nothing to leave behind"
    assert leftovers_after(mark) == []


def test_no_ray_process_outlives_a_sigterm(tmp_path):
    mark = uuid.uuid4().hex
    process = start(tmp_path, mark, seeds=6, epochs=30)  # long enough to be cut in the middle
    seen = wait_for_ray(process, mark)
    assert seen, "Ray never ran a worker before the command ended"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 143, err[-2000:]
    assert leftovers_after(mark) == []
