"""Writing files atomically: a reader (or a full disk, or SIGTERM) never leaves half a file in place.

The work is :func:`removal_bench.core.disk.write_atomic`; a full disk raises
:class:`removal_bench.core.disk.DiskFull` naming the file.
"""

from __future__ import annotations

from pathlib import Path

from removal_bench.core.disk import publish, write_atomic

__all__ = ["publish", "write_text"]


def write_text(path: Path, text: str, what: str = "a report file") -> None:
    """Write atomically: a reader never sees half a file, a failure leaves no temporary file behind."""
    write_atomic(path, text, what)
