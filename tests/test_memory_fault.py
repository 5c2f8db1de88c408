"""A trial that runs out of memory, for real: it fails with one line that says so and what to change, it is not
retried without end, the sweep's other trials finish, and the same command reruns only what is missing.

Two ways a trial meets its memory's end: ``--memory-per-trial MB`` (the trial's allocation past it fails at once,
``removal_bench.running.trial.memory_limit``), and the kernel killing the worker in a memory cgroup (a node's
limit; needs root and a writable cgroup v1 memory hierarchy, else skipped). The trial is
``tests/plugin_memory.py``'s ``memory_hog``, which fills memory in its first step.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = str(Path(sys.executable).with_name("bench"))
ROOT = Path(__file__).resolve().parents[1]
CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def sweep(tmp_path: Path, *extra: str, seeds: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [BENCH, "sweep", "--grid", "--methods", "tests.plugin_memory:MemoryHog,vanilla",
         "--datasets", "synthetic:n_train=400:n_eval=200", "--seeds", str(seeds), "--epochs", "2",
         "--max-concurrent", "2", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--experiment", "memory",
         "--results-dir", str(tmp_path / "results"), "--storage-path", str(tmp_path / "ray"), *extra],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)


def planned(stderr: str) -> tuple[int, int]:
    """(already complete, running) from the sweep's first line."""
    match = re.search(r"(\d+) already complete in experiment '[^']+'; running (\d+)", stderr)
    assert match, stderr[:2000]
    return int(match.group(1)), int(match.group(2))


def test_a_trial_past_its_memory_limit_fails_at_once_with_one_line_and_the_rerun_runs_only_it(tmp_path):
    first = sweep(tmp_path, "--set", "memory_hog.megabytes=3000", "--memory-per-trial", "700")
    assert "Traceback" not in first.stderr, first.stderr[-3000:]
    lines = [line for line in first.stderr.splitlines() if "out of memory" in line]
    assert len(lines) == 2, first.stderr[-3000:]  # one line per failing trial, no retry
    assert all("--memory-per-trial 700 MB" in line and "--batch-size" in line for line in lines)
    assert "retry" not in first.stderr.lower()
    assert planned(first.stderr) == (0, 4)
    assert len(re.findall(r"vanilla on synthetic, seed \d: task acc", first.stderr)) == 2  # the others finished
    again = sweep(tmp_path, "--set", "memory_hog.megabytes=3000", "--memory-per-trial", "700")
    assert planned(again.stderr) == (2, 2)  # the two FAILED ones again, not the finished ones


def _cgroup(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or not (CGROUP_V1 / "cgroup.procs").exists():
        pytest.skip("needs root and a cgroup v1 memory hierarchy")
    group = CGROUP_V1 / f"bench-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(400 * 2**20))
    except OSError as error:
        pytest.skip(f"cannot make a memory cgroup here: {error}")
    return group


def test_a_worker_killed_for_memory_ends_failed_after_bounded_retries_and_says_what_to_change(tmp_path):
    group = _cgroup(tmp_path)
    try:
        result = sweep(tmp_path, "--set", f"memory_hog.cgroup={group}", "--set", "memory_hog.megabytes=1500", seeds=1)
        killed = int((group / "memory.failcnt").read_text())
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass
        try:
            group.rmdir()
        except OSError:
            pass
    assert killed > 0  # the kernel did refuse the worker memory
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    failed = [line for line in result.stderr.splitlines() if "died 3 times" in line]
    assert len(failed) == 1 and "--memory-per-trial" in failed[0], result.stderr[-3000:]  # tried 3 times, then one line
    assert re.search(r"vanilla on synthetic, seed 0: task acc", result.stderr)
