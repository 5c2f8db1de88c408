"""``python -m removal_bench.benchmarks soak``: a Ray sweep interrupted many times, at random moments, by
several kinds of real fault, resumed each time by the same command.

    python -m removal_bench.benchmarks soak --interruptions 50 --seed 0

A round is one experiment of one SQLite store: the same ``bench sweep`` (``--methods``, ``--samples``,
``--seeds`` of ``synthetic:n_train=300:n_eval=200``, one epoch, local Ray) started, hit by a fault after a
delay drawn from ``random.Random(seed)`` (uniform over ``--max-delay`` seconds, counted from the attempt's
start or, half the time, from its first trial line: faults land while Ray starts, during a trial, a store
write or the report), started
again, and so on for a few faults; then run to the end. Rounds go on until ``--interruptions`` faults
have been made. The faults, all real:

``sigkill``  SIGKILL to the driver's whole process group (its local Ray included): a machine that vanishes.
``sigterm``  SIGTERM to the driver alone: a scheduler's preemption (the driver must exit 143, one line).
``worker``   SIGKILL to one Ray worker process running a trial (``ray::ImplicitFunc``), a descendant of
             the driver started here, while the driver lives on: Ray Tune retries the trial.
``disk``     the store's disk filled: the store lives on a tmpfs mounted here (``mount -t tmpfs``, root
             needed; without it this kind is left out, saying so), filled with a file of zeros while the
             sweep runs; the driver must stop with one line (exit 2); the file is removed before the resume.

After every attempt the processes it left (its process group, anything whose environment names its own
``RAY_TMPDIR``) are killed by pid. At the end it prints the interruptions survived by kind, trials lost
(planned but never FINISHED), trials duplicated (FINISHED more than once), figures changed (a FINISHED
trial whose figures differ from the same trial's in one uninterrupted reference run, in a store of its
own; wall-clock figures and ``train_reused`` excepted), attempts that printed a traceback, and exit
statuses that were not the fault's. ``tests/test_chaos.py`` runs the same machinery with a few faults.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

DATASET = "synthetic:n_train=300:n_eval=200"
KINDS = ("sigkill", "sigterm", "worker", "disk")
# What each fault's attempt may exit with (a fault that lands after the attempt ended finds 0).
EXPECTED_STATUS = {"sigkill": {-9, 0}, "sigterm": {143, 0}, "disk": {2, 0}, "worker": {0}, None: {0}}


def started_too_late(attempt, status: int | None) -> bool:
    """A SIGTERM that arrived while the interpreter was still starting, before ``bench`` installed its handler:
    the default action (exit -15), and nothing written: that handler prints its line on every SIGTERM it
    handles, so an empty stderr says it was not in place yet (once seen in CI, 1 attempt of 6)."""
    return attempt.fault == "sigterm" and status == -15 and not attempt.text.strip()


def bench_script() -> str:
    script = Path(sys.executable).with_name("bench")
    return str(script) if script.exists() else f"{sys.executable} -m removal_bench.commands.cli"


GRACE = 20.0  # seconds an attempt's processes get to end by themselves before they count as left behind


@dataclass
class SweepPlan:
    methods: str = "irene,grl"
    samples: int = 3
    seeds: int = 3

    def arguments(self, uri: str, experiment: str, folder: Path) -> list[str]:
        return ["sweep", "--methods", self.methods, "--datasets", DATASET, "--epochs", "1", "--samples",
                str(self.samples), "--seeds", str(self.seeds), "--executor", "ray", "--tracking-uri", uri,
                "--experiment", experiment, "--results-dir", str(folder / f"results-{experiment}"),
                "--storage-path", str(folder / "ray_results")]

    def keys(self) -> set[str]:
        from removal_bench.running.sweep import SweepRequest, plan_sweep

        request = SweepRequest(methods=[self.methods], datasets=[DATASET], epochs=1, samples=self.samples,
                               seeds=self.seeds)
        return {trial.key for trial in plan_sweep(request)}


# --------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of ``pid`` from /proc, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[2])


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (one that has ended, waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat:
            children.setdefault(stat[0], []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Attempt:
    """One ``bench`` process in a session (process group) of its own, with a ``RAY_TMPDIR`` of its own."""

    def __init__(self, arguments: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None):
        self.ray_dir = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # short: Ray's socket paths live under it
        self.marker = f"RAY_TMPDIR={self.ray_dir}".encode()
        environment = {**os.environ, "RAY_TMPDIR": self.ray_dir, "RAY_USAGE_STATS_ENABLED": "0",
                       "PYTHONWARNINGS": "ignore", **(env or {})}
        self.log = log
        self.stream = log.open("w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(bench_script().split() + arguments, cwd=cwd, env=environment,
                                        stdout=subprocess.DEVNULL, stderr=self.stream, start_new_session=True)
        self.fault: str | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def text(self) -> str:
        if not self.stream.closed:
            self.stream.flush()
        return self.log.read_text(errors="replace")

    def workers(self) -> list[int]:
        """Ray worker processes running a trial, among this driver's descendants (and only those)."""
        return [pid for pid in descendants(self.process.pid) if "ray::ImplicitFunc" in command_line(pid)]

    def own_processes(self) -> list[int]:
        """Every live process of this attempt: its process group, and whatever names its RAY_TMPDIR."""
        found = []
        for pid in _pids():
            if pid == os.getpid():
                continue
            stat = _stat(pid)
            if stat and stat[1] == self.process.pid:
                found.append(pid)
                continue
            try:
                if self.marker in Path(f"/proc/{pid}/environ").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        return found

    def cleanup(self) -> int:
        """Kill what the attempt left running (by pid: only its own processes); how many there were."""
        if self.alive:
            self.kill_group(signal.SIGKILL)
            self.wait(60)
        # Ray's own processes (raylet, GCS, log monitor) may still be on their way out when the driver has exited,
        # more so on a loaded machine: what ends by itself within GRACE seconds is not left behind (the chaos
        # test's uninterrupted reference run counted one such straggler in a full test run)
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline and any(_running(pid) for pid in self.own_processes()):
            time.sleep(0.5)
        left = 0
        for _ in range(3):
            pids = [pid for pid in self.own_processes() if _running(pid)]
            if not pids:
                break
            left = max(left, len(pids))
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(1)
        self.stream.close()
        shutil.rmtree(self.ray_dir, ignore_errors=True)
        return left

    def kill_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- a small disk


class SmallDisk:
    """A tmpfs mounted at ``folder`` (root only), filled with zeros and freed on demand."""

    def __init__(self, folder: Path, size: str = "128m"):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        self.mounted = done.returncode == 0
        self.reason = done.stderr.strip()[:200]
        self.filler = folder / "filler"

    def fill(self) -> None:
        handle = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 1 << 16, 4096, 512, 1):
                try:
                    while True:
                        os.write(handle, b"\0" * size)
                except OSError as error:
                    if error.errno != 28:  # ENOSPC: full now
                        raise
        finally:
            os.close(handle)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], capture_output=True)


# --------------------------------------------------------------------------- what the store holds


def is_timing(name: str) -> bool:
    return name.endswith(("_seconds", "_per_second"))


def trial_figures(uri: str, experiment: str) -> tuple[dict[str, int], dict[str, dict[str, float]]]:
    """FINISHED trial runs per config hash, and the final figures of each (the last FINISHED run's)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`bench.kind` = 'trial'",
                               max_results=100000)
    counts: dict[str, int] = {}
    figures: dict[str, dict[str, float]] = {}
    if frame.empty:
        return counts, figures
    finished = frame[frame["status"] == "FINISHED"]
    metrics = [c for c in finished.columns if c.startswith("metrics.") and not is_timing(c)
               and c != "metrics.train_reused"]
    for _, row in finished.iterrows():
        key = row["tags.bench.config_hash"]
        counts[key] = counts.get(key, 0) + 1
        figures[key] = {c[len("metrics."):]: row[c] for c in metrics if row[c] == row[c]}  # NaN: not logged
    return counts, figures


def describe_changes(uri: str, experiment: str, keys: list[str], reference: dict[str, dict[str, float]]) -> list[str]:
    """A line per changed trial: its run(s), their status and tags that tell its history (retries, imports), and
    each figure that differs from the uninterrupted reference."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`bench.kind` = 'trial'",
                               max_results=100000)
    _, figures = trial_figures(uri, experiment)
    lines = []
    for key in keys:
        runs = frame[frame["tags.bench.config_hash"] == key]
        history = "; ".join(
            f"run {row['run_id'][:8]} {row['status']} parent {str(row.get('tags.mlflow.parentRunId'))[:8]}"
            + "".join(f" {tag[5:]}={row[tag]}" for tag in row.index
                      if tag.startswith("tags.bench.") and "retr" in tag and row[tag] == row[tag])
            for _, row in runs.iterrows())
        mine, theirs = figures.get(key, {}), reference.get(key, {})
        moved = [f"{name}: {theirs.get(name)} -> {mine.get(name)}" for name in sorted(set(mine) | set(theirs))
                 if mine.get(name) != theirs.get(name)]
        label = runs["tags.bench.label"].iloc[0] if not runs.empty and "tags.bench.label" in runs else key
        lines.append(f"changed {label} ({key}): {history}; " + ", ".join(moved[:8])
                     + (f" and {len(moved) - 8} more" if len(moved) > 8 else ""))
    return lines


def keep_store(store: Path, target: Path) -> None:
    """A consistent copy of a SQLite store (its backup API: a store another process may hold open)."""
    import sqlite3

    source, copy = sqlite3.connect(str(store)), sqlite3.connect(str(target))
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


@dataclass
class Verdict:
    planned: int
    lost: list[str]
    duplicated: list[str]
    changed: list[str]

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.changed)


def judge(uri: str, experiment: str, planned: set[str], reference: dict[str, dict[str, float]]) -> Verdict:
    counts, figures = trial_figures(uri, experiment)
    lost = sorted(key for key in planned if counts.get(key, 0) == 0)
    duplicated = sorted(key for key, count in counts.items() if count > 1)
    changed = sorted(key for key in planned if key in figures and figures[key] != reference.get(key))
    return Verdict(len(planned), lost, duplicated, changed)


# --------------------------------------------------------------------------- chaos


@dataclass
class Chaos:
    """Faults made at random moments on one command, resumed by the same command (one round per experiment)."""

    folder: Path
    rng: random.Random
    kinds: tuple[str, ...] = ("sigkill", "sigterm")
    max_delay: float = 30.0
    disk: SmallDisk | None = None
    made: Counter = field(default_factory=Counter)
    attempts: list[Attempt] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)  # the logs of attempts that printed one
    statuses: list[str] = field(default_factory=list)  # 'log: fault -> status' for each status not the fault's
    leftovers: int = 0  # processes an attempt left behind (killed by cleanup)
    say: object = print

    def start(self, arguments: list[str]) -> Attempt:
        attempt = Attempt(arguments, self.folder, self.folder / f"attempt-{len(self.attempts):03d}.err")
        self.attempts.append(attempt)
        return attempt

    def end(self, attempt: Attempt, timeout: float = 900) -> int:
        """Wait for the attempt, check its exit status and stderr, kill what it left (by pid)."""
        status = attempt.wait(timeout)
        if status is None:
            self.statuses.append(f"{attempt.log.name}: {attempt.fault} -> still running after {timeout:.0f} s")
        elif status not in EXPECTED_STATUS[attempt.fault] and not started_too_late(attempt, status):
            last = attempt.text.strip().splitlines()[-1:] or [""]
            self.statuses.append(f"{attempt.log.name}: {attempt.fault} -> exit {status}: {last[0][:300]}")
        left = attempt.cleanup()
        if attempt.fault != "sigkill":  # a process group killed outright may leave Ray's stragglers; others not
            self.leftovers += left
        if "Traceback" in attempt.text:
            self.tracebacks.append(str(attempt.log))
        return -1 if status is None else status

    def sleep_or_end(self, attempt: Attempt, seconds: float) -> bool:
        """Sleep ``seconds`` unless the attempt ends first; whether it still runs."""
        return attempt.wait(seconds) is None

    def next_moment(self, attempt: Attempt) -> bool:
        """Wait for the next fault's moment: half the time ``0..max_delay`` s from now, half from the attempt's
        first trial line (Ray's start-up alone took 15-50 s on the loaded 2-core box, so moments counted from
        the start would rarely reach a trial or a store write). Whether the attempt still runs."""
        if self.rng.random() < 0.5:
            deadline = time.monotonic() + 300
            while attempt.alive and time.monotonic() < deadline and "\n[" not in "\n" + attempt.text:
                time.sleep(0.1)
        return self.sleep_or_end(attempt, self.rng.uniform(0, self.max_delay))

    def fault(self, attempt: Attempt, kind: str) -> bool:
        """Make one fault of ``kind`` on the running attempt; whether it was made (a worker may not exist yet)."""
        if kind == "worker":
            deadline = time.monotonic() + 20
            while attempt.alive and time.monotonic() < deadline:
                workers = attempt.workers()
                if workers:
                    try:
                        os.kill(self.rng.choice(workers), signal.SIGKILL)
                    except ProcessLookupError:
                        return False
                    return True
                time.sleep(0.5)
            return False
        attempt.fault = kind
        if kind == "sigkill":
            attempt.kill_group(signal.SIGKILL)
        elif kind == "sigterm":
            attempt.process.send_signal(signal.SIGTERM)
        elif kind == "disk":
            self.disk.fill()
            attempt.wait(180)  # the driver meets the full store at its next write and stops
            self.disk.free()
        return True

    def round(self, arguments: list[str], faults: int) -> tuple[Counter, bool]:
        """Up to ``faults`` faults (fewer when the command ends first), then the command run to the end;
        the faults made by kind, and whether every attempt of the round exited as its fault says, without a
        traceback."""
        made, problems = Counter(), len(self.tracebacks) + len(self.statuses)
        while sum(made.values()) < faults:
            attempt = self.start(arguments)
            while sum(made.values()) < faults and self.next_moment(attempt):
                kind = self.rng.choice(self.kinds)
                if not self.fault(attempt, kind):
                    continue
                made[kind] += 1
                self.made[kind] += 1
                self.say(f"  fault {sum(self.made.values()):3d}: {kind:7s} at {time.monotonic() - attempt.started:5.1f} s "
                         f"of {attempt.log.name}")
                if kind != "worker":
                    break
            status = self.end(attempt)
            if status == 0 and attempt.fault is None:
                break  # the command finished its work before the next fault
        self.end(self.start(arguments))
        return made, len(self.tracebacks) + len(self.statuses) == problems


# --------------------------------------------------------------------------- the benchmark


def soak(arguments: argparse.Namespace) -> None:
    started = time.monotonic()
    rng = random.Random(arguments.seed)
    folder = Path(arguments.folder or tempfile.mkdtemp(prefix="bench-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    plan = SweepPlan(arguments.methods, arguments.samples, arguments.seeds)
    planned = plan.keys()
    kinds = tuple(k.strip() for k in arguments.kinds.split(","))
    disk = None
    if "disk" in kinds:
        disk = SmallDisk(folder / "small-disk", arguments.disk_size)
        if not disk.mounted:
            print(f"soak: cannot mount a tmpfs ({disk.reason}); the 'disk' fault is left out (run as root)", flush=True)
            kinds, disk = tuple(k for k in kinds if k != "disk"), None
    load = os.getloadavg()
    print(f"soak: {arguments.interruptions} faults of {', '.join(kinds)} (seed {arguments.seed}, delays 0-"
          f"{arguments.max_delay:g} s) on bench sweep --methods {plan.methods} --samples {plan.samples} --seeds "
          f"{plan.seeds} ({len(planned)} trials of {DATASET}, 1 epoch, local Ray); {os.cpu_count()} CPUs, load "
          f"{load[0]:.1f}; folder {folder}", flush=True)
    try:
        chaos = Chaos(folder, rng, kinds, arguments.max_delay, disk)
        reference_uri = f"sqlite:///{folder}/reference.db"
        reference = chaos.start(plan.arguments(reference_uri, "reference", folder))
        if chaos.end(reference, timeout=900) != 0:
            raise SystemExit(f"soak: the uninterrupted reference sweep failed:\n{reference.text[-3000:]}")
        counts, figures = trial_figures(reference_uri, "reference")
        assert set(counts) == planned, "the reference sweep did not finish every planned trial"
        print(f"reference: {len(planned)} trials uninterrupted in {time.monotonic() - started:.0f} s", flush=True)

        store = (disk.folder if disk else folder) / "mlflow.db"
        uri = f"sqlite:///{store}"
        verdicts, survived = [], Counter()
        while sum(chaos.made.values()) < arguments.interruptions:
            experiment = f"round{len(verdicts)}"
            left = arguments.interruptions - sum(chaos.made.values())
            made, orderly = chaos.round(plan.arguments(uri, experiment, folder), min(left, rng.randint(4, 10)))
            verdict = judge(uri, experiment, planned, figures)
            verdicts.append(verdict)
            if verdict.clean and orderly:  # a round's faults are survived when it loses, repeats and changes nothing
                survived.update(made)
            print(f"round {len(verdicts)}: {sum(made.values())} faults; lost {len(verdict.lost)}, duplicated "
                  f"{len(verdict.duplicated)}, changed {len(verdict.changed)}{'' if orderly else ', see below'} "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
            if verdict.changed:  # keep the evidence: which figures moved, and the round's store (off the tmpfs)
                for line in describe_changes(uri, experiment, verdict.changed, figures):
                    print(f"  {line}", flush=True)
                kept = folder / f"changed-{experiment}.db"
                keep_store(store, kept)
                print(f"  the round's store is kept in {kept}", flush=True)
    finally:
        if disk:
            disk.unmount()
    made = sum(chaos.made.values())
    by_kind = lambda counter: ", ".join(f"{kind} {counter[kind]}" for kind in kinds)  # noqa: E731
    print(f"\nsoak done in {(time.monotonic() - started) / 60:.1f} min: {len(chaos.attempts)} attempts, "
          f"{len(verdicts)} rounds of {len(planned)} planned trials")
    print(f"interruptions survived: {sum(survived.values())} of {made} ({by_kind(survived)}; made: {by_kind(chaos.made)})")
    print(f"trials lost: {sum(len(v.lost) for v in verdicts)} of {len(planned) * len(verdicts)}; "
          f"trials duplicated: {sum(len(v.duplicated) for v in verdicts)}; "
          f"figures changed vs the uninterrupted reference: {sum(len(v.changed) for v in verdicts)}")
    print(f"attempts that printed a traceback: {len(chaos.tracebacks)}; exit statuses not the fault's: "
          f"{len(chaos.statuses)}; processes left behind by an attempt not SIGKILLed: {chaos.leftovers}")
    for line in chaos.statuses:
        print(f"  status: {line}")
    for line in chaos.tracebacks:
        print(f"  traceback: {line}")


def add_soak_commands(commands) -> None:
    parser = commands.add_parser("soak", help="a Ray sweep interrupted many times by real faults; lost, duplicated, changed")
    parser.add_argument("--interruptions", type=int, default=50, help="faults to make in all (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the moments and kinds of the faults (default 0)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)} (default all)")
    parser.add_argument("--max-delay", type=float, default=30.0, help="a fault comes 0 to this many seconds after "
                        "the attempt starts, or after the previous worker kill (default 30)")
    parser.add_argument("--methods", default="irene,grl")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--disk-size", default="128m", help="the store's tmpfs (default 128m)")
    parser.add_argument("--folder", help="where the stores and each attempt's stderr go (default: a new temporary folder)")
    parser.set_defaults(handler=soak)
