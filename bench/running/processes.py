"""The processes a command started, found and ended from ``/proc`` (Linux), so that none outlives ``bench``.

``ray.shutdown`` asks the local Ray it started (GCS, raylet, agents, workers) to stop, but after a SIGTERM
some of them outlived the command by more than 20 s (2 of 12 in the SIGTERM soak, docs/DEVELOPING.md): a
user's machine kept them. :func:`descendants` lists every process below this one before the shutdown
(Ray's node processes are the driver's children, its workers the raylet's), and :func:`end_stragglers` waits
a few seconds for them to go and kills what is left. A process is named by its pid and its start time, so a
pid reused by an unrelated process is never touched. Elsewhere than Linux both do nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time in clock ticks, state) of ``pid``, or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: the fields after its closing one are fixed
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19]), fields[0]


def descendants(root: int | None = None) -> list[tuple[int, int]]:
    """(pid, start time) of every live process below ``root`` (this process by default)."""
    if not PROC.is_dir():
        return []
    root = os.getpid() if root is None else root
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[2] != "Z":
            children.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found: list[tuple[int, int]] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child[0])
    return found


def alive(process: tuple[int, int]) -> bool:
    """Whether the process (pid, start time) still runs (a zombie has ended)."""
    stat = _stat(process[0])
    return stat is not None and stat[1] == process[1] and stat[2] != "Z"


def end_stragglers(processes: list[tuple[int, int]], grace: float = 5.0) -> list[int]:
    """Wait up to ``grace`` seconds for ``processes`` to end, then SIGKILL those still running; the pids killed."""
    deadline = time.monotonic() + grace
    left = [p for p in processes if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    killed = []
    for process in left:
        if alive(process):
            try:
                os.kill(process[0], signal.SIGKILL)
                killed.append(process[0])
            except OSError:
                pass
    return killed
