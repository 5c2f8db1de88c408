"""``python -m removal_bench.benchmarks startup``: how fast the command line answers.

Runs the console script as a user would, in a fresh empty folder (``BENCH_OFFLINE=1``, no server
anywhere), for ``bench --help``, every ``bench <command> --help``, ``bench list`` and a set of bad
inputs that need no server, each ``--repeats`` times, and prints per row the median wall time, the
peak resident memory and, from one more run under ``PYTHONPROFILEIMPORTTIME=1`` (``python -X
importtime``), the cumulative import time of the heavy packages it loaded (torch, sklearn, mlflow, ray,
matplotlib, pandas, scipy) and of all imports together. The load average is printed first: on a
shared machine the times are only comparable with others taken at a similar load.

Targets (a quiet machine): ``--help`` under 1 s, ``bench list`` under 3 s, bad input under 2 s.
Figures, never a test: ``tests/test_startup.py`` guards the part that can regress silently (which
packages ``--help`` and argument errors import).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "sklearn", "mlflow", "ray", "matplotlib", "pandas", "scipy")

# Bad inputs that need no server: (what is wrong, the arguments). {tmp} is an empty folder.
BAD_INPUTS = [
    ("argparse: a number", ["run", "--seeds", "0"]),
    ("argparse: a choice", ["run", "--executor", "spark"]),
    ("argparse: unknown command", ["launch"]),
    ("argparse: sweep's bound", ["sweep", "--max-leakage", "1.5"]),
    ("empty --experiment", ["run", "--experiment", " "]),
    ("serial with --address", ["run", "--executor", "serial", "--address", "127.0.0.1:6379"]),
    ("unknown --recipe", ["run", "--recipe", "fast"]),
    ("report --format", ["report", "--format", "docx"]),
    ("leaderboard empty name", ["leaderboard", "--experiment", "a,,b"]),
    ("unknown method", ["run", "--methods", "nope"]),
    ("malformed dataset option", ["run", "--datasets", "colored_digits:rho=abc"]),
    ("unknown --device", ["run", "--device", "tpu"]),
    ("no store for report", ["report"]),
    ("leaderboard --from missing", ["leaderboard", "--from", "{tmp}/missing.jsonl"]),
    ("leaderboard --with missing", ["leaderboard", "--with", "{tmp}/missing.jsonl"]),
    ("import missing", ["import", "{tmp}/missing.jsonl"]),
    ("verify missing", ["verify", "{tmp}/missing.jsonl"]),
    ("data fetch unknown", ["data", "fetch", "nope"]),
    ("attack: no store", ["attack", "0123abcd", "--data-root", "{tmp}/nowhere"]),
]


def command_names() -> list[str]:
    from removal_bench.commands.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def imports_of(stderr: str) -> tuple[float, dict[str, float]]:
    """(all imports' seconds, {heavy package: cumulative seconds}) from ``-X importtime`` lines."""
    total, heavy = 0, {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header line
        if not name.startswith("  "):  # a top-level import: its cumulative time holds everything under it
            total += int(cumulative)
        if name.strip() in HEAVY:
            heavy[name.strip()] = int(cumulative) / 1e6
    return total / 1e6, heavy


TIME = "/usr/bin/time"  # measures the command's own peak memory (ours would count this process's pages, forked)


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall seconds, peak resident MB (NaN without /usr/bin/time), exit status, stderr) of one run."""
    wrapped = [TIME, "-f", "BENCH-STARTUP-KB %M", *argv] if os.path.exists(TIME) else argv
    start = time.perf_counter()
    done = subprocess.run(wrapped, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    lines = done.stderr.splitlines()
    marks = [line for line in lines if line.startswith("BENCH-STARTUP-KB ")]
    memory = int(marks[-1].split()[1]) / 1024 if marks else float("nan")
    stderr = "\n".join(line for line in lines  # /usr/bin/time's own lines dropped
                       if not line.startswith(("BENCH-STARTUP-KB ", "Command exited with non-zero status")))
    return seconds, memory, done.returncode, stderr


def rows(include: str) -> list[tuple[str, list[str]]]:
    chosen = []
    if "help" in include:
        chosen.append(("bench --help", ["--help"]))
        chosen += [(f"bench {name} --help", [name, "--help"]) for name in command_names()]
    if "list" in include:
        chosen.append(("bench list", ["list"]))
    if "bad" in include:
        chosen += [(f"bad: {what}", argv) for what, argv in BAD_INPUTS]
    return chosen


def startup(arguments: argparse.Namespace) -> None:
    bench = arguments.bench or str(Path(sys.executable).with_name("bench"))
    load = os.getloadavg()
    print(f"bench start-up: {bench}; {arguments.repeats} runs per row (median), one more under -X importtime; "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    header = f"{'row':<40} {'s':>6} {'MB':>5} {'rc':>3} {'imports s':>9}  heavy packages imported (cumulative import s)"
    print(header)
    print("-" * len(header))
    worst = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        base = Path(folder)
        env = {**os.environ, "BENCH_OFFLINE": "1", "BENCH_DATA_ROOT": str(base / "data-root")}
        env.pop("RAY_ADDRESS", None)
        env.pop("PYTHONPROFILEIMPORTTIME", None)
        for label, argv in rows(arguments.rows):
            argv = [part.replace("{tmp}", folder) for part in argv]
            work = base / "work"
            work.mkdir(exist_ok=True)
            runs = [timed([bench, *argv], work, env) for _ in range(arguments.repeats)]
            seconds = statistics.median(run[0] for run in runs)
            memory = max(run[1] for run in runs)
            *_, status, stderr = runs[-1]
            _, _, _, profile = timed([bench, *argv], work, {**env, "PYTHONPROFILEIMPORTTIME": "1"})
            total, heavy = imports_of(profile)
            heavy_text = ", ".join(f"{name} {value:.2f}" for name, value in sorted(heavy.items(), key=lambda kv: -kv[1])) or "none"
            print(f"{label:<40} {seconds:6.2f} {memory:5.0f} {status:3d} {total:9.2f}  {heavy_text}", flush=True)
            if label.startswith("bad:") and status != 2:
                print(f"    (expected exit status 2; stderr: {stderr.strip().splitlines()[-1:] or ''})", flush=True)
            group = "help" if label.endswith("--help") else "list" if label == "bench list" else "bad input"
            worst[group] = max(worst.get(group, 0.0), seconds)
            for leftover in work.iterdir():  # a row wrote something: say so (nothing should be written)
                print(f"    wrote {leftover.name} in the working folder", flush=True)
    load = os.getloadavg()
    print(f"slowest: " + ", ".join(f"{group} {value:.2f} s" for group, value in worst.items())
          + f" (targets on a quiet machine: help 1 s, list 3 s, bad input 2 s); load average now {load[0]:.2f}")


def add_startup_commands(commands) -> None:
    parser = commands.add_parser("startup", help="bench --help, list and bad input: wall time, memory, import profile")
    parser.add_argument("--bench", help="the console script to time (default: the bench beside this Python)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", default="help,list,bad", help="which rows: help, list, bad, comma-separated")
    parser.set_defaults(handler=startup)
