"""Faults at random moments: a Ray sweep, ``bench import`` and ``bench leaderboard`` interrupted again
and again by real signals at moments drawn from a seeded ``random.Random``, resumed each time by the same command.

The moments are drawn from the start of each attempt, so they fall while Ray starts, while a trial runs, while
the driver writes to the store and while the report is written. Each attempt is a ``bench`` process in a
session of its own (``start_new_session``) with a ``RAY_TMPDIR`` of its own; whatever an attempt leaves (a
SIGKILLed group's Ray processes) is killed by pid afterwards (``removal_bench.benchmarks.soak.Attempt.cleanup``),
never by name. The machinery is the soak benchmark's (``python -m removal_bench.benchmarks soak``), which runs
the same with 50 and more faults of more kinds.
"""

from __future__ import annotations

import gzip
import json
import random
import signal
import time
from pathlib import Path

import mlflow
import pytest

from removal_bench.benchmarks.soak import Attempt, Chaos, SweepPlan, judge, trial_figures
from removal_bench.running.tracking import SOURCE_RUN_TAG, sqlite_uri
from tests.conftest import without_generation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PLAN = SweepPlan(methods="irene,grl", samples=3, seeds=3)  # 18 trials, one epoch each


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep run once without interruption, in a store of its own: its trials' figures."""
    folder = tmp_path_factory.mktemp("reference")
    uri = sqlite_uri(folder / "mlflow.db")
    chaos = Chaos(folder, random.Random(0))
    status = chaos.end(chaos.start(PLAN.arguments(uri, "reference", folder)))
    assert status == 0, chaos.attempts[0].text[-3000:]
    assert not chaos.tracebacks and not chaos.statuses and chaos.leftovers == 0
    counts, figures = trial_figures(uri, "reference")
    planned = PLAN.keys()
    assert len(planned) >= 18 and counts == {key: 1 for key in planned}
    return {"folder": folder, "uri": uri, "figures": figures, "planned": planned}


def test_a_ray_sweep_killed_and_terminated_at_random_moments_finishes_every_trial_once_with_the_same_figures(
        reference, tmp_path):
    chaos = Chaos(tmp_path, random.Random(30), kinds=("sigkill", "sigterm"), max_delay=8.0)
    uri = sqlite_uri(tmp_path / "mlflow.db")
    made, orderly, rounds = 0, True, 0
    while made < 5:  # a round ends when the sweep finishes; a fresh experiment of the same store then starts over
        experiment = f"chaos{rounds}"
        faults, ok = chaos.round(PLAN.arguments(uri, experiment, tmp_path), faults=6 - made)
        made, orderly, rounds = made + sum(faults.values()), orderly and ok, rounds + 1
        verdict = judge(uri, experiment, reference["planned"], reference["figures"])
        assert verdict.clean, verdict  # every trial FINISHED exactly once, every figure as the uninterrupted run's
        assert rounds < 4, "the sweep keeps finishing before its faults: shorten max_delay"
    log = "\n".join(f"{a.log.name} ({a.fault}): {a.text.strip().splitlines()[-1:]}" for a in chaos.attempts)
    assert orderly, (chaos.statuses, chaos.tracebacks, log)  # each exit as its fault says, no traceback anywhere
    for attempt in chaos.attempts:
        assert "Traceback" not in attempt.text, attempt.text[-3000:]
    # Not asserted: that a SIGTERMed driver takes all its local Ray processes down with it. It does not always:
    # in a full test run on the loaded 2-core machine 1-2 of Ray's processes outlived the driver by more than
    # soak.GRACE seconds (the soak counted 10 over 50 faults). They hold no store and change no figure (the
    # verdicts above); cleanup kills them by pid. An open gap, said in its note.


def test_a_ray_worker_killed_mid_trial_is_retried_with_the_same_figures(tmp_path):
    """A Ray worker dies, the driver lives; Ray Tune runs the trial again from the start (``FailureConfig``),
    in the same MLflow run, and the trial's seeds give the figures of an uninterrupted run."""
    arguments = ["run", "--methods", "irene", "--datasets", "synthetic:n_train=2000:n_eval=500", "--seeds", "2",
                 "--epochs", "8", "--executor", "ray", "--max-concurrent", "1", "--storage-path",
                 str(tmp_path / "ray_results"), "--results-dir", str(tmp_path / "results")]
    chaos = Chaos(tmp_path, random.Random(4))
    reference_uri, uri = sqlite_uri(tmp_path / "reference.db"), sqlite_uri(tmp_path / "mlflow.db")
    assert chaos.end(chaos.start([*arguments, "--tracking-uri", reference_uri, "--experiment", "w"])) == 0
    expected_counts, expected = trial_figures(reference_uri, "w")
    assert len(expected) == 2

    attempt = chaos.start([*arguments, "--tracking-uri", uri, "--experiment", "w"])
    deadline = time.monotonic() + 300
    while not attempt.workers():  # the first trial's worker, running it
        assert attempt.alive and time.monotonic() < deadline, attempt.text[-3000:]
        time.sleep(0.2)
    time.sleep(random.Random(4).uniform(0.5, 2.0))  # mid-trial: training or evaluating
    workers = attempt.workers()
    assert workers, "the trial ended before its worker could be killed: lengthen it"
    import os

    os.kill(workers[0], signal.SIGKILL)
    assert chaos.end(attempt) == 0, attempt.text[-3000:]
    assert not chaos.tracebacks and not chaos.statuses, attempt.text[-3000:]
    retries = [line for line in attempt.text.splitlines() if line.startswith("[retry] ")]
    assert len(retries) == 1 and "its Ray worker died" in retries[0], attempt.text[-3000:]
    counts, figures = trial_figures(uri, "w")
    assert counts == expected_counts == {key: 1 for key in expected}  # FINISHED exactly once each
    assert figures == expected  # determinism through the retry
    mlflow.set_tracking_uri(uri)
    trials = mlflow.search_runs(experiment_names=["w"], filter_string="tags.`bench.kind` = 'trial'")
    assert sorted(trials["status"]) == ["FINISHED", "FINISHED"]  # the retry kept its run: no FAILED, no second run


def interrupt_at_random(chaos: Chaos, arguments: list[str], rng: random.Random, start_line: str, window: float,
                        times: int, after_each=lambda: None) -> None:
    """``times`` attempts, each SIGKILLed (whole group) or SIGTERMed (the process) ``0..window`` seconds after
    it printed ``start_line`` (or after it started, when ``start_line`` is empty)."""
    for _ in range(times):
        attempt = chaos.start(arguments)
        deadline = time.monotonic() + 120
        while start_line and start_line not in attempt.text:
            if not attempt.alive or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if attempt.wait(rng.uniform(0, window)) is None:
            attempt.fault = rng.choice(("sigkill", "sigterm"))
            if attempt.fault == "sigkill":
                attempt.kill_group(signal.SIGKILL)
            else:
                attempt.process.send_signal(signal.SIGTERM)
        chaos.end(attempt, timeout=120)
        after_each()


def run_once(chaos: Chaos, arguments: list[str]) -> tuple[Attempt, float]:
    attempt = chaos.start(arguments)
    started = time.monotonic()
    assert chaos.end(attempt, timeout=300) == 0, attempt.text[-3000:]
    return attempt, time.monotonic() - started


def exported(chaos: Chaos, uri: str, output: Path) -> list[dict]:
    run_once(chaos, ["export", "--experiment", "reference", "--tracking-uri", uri, "--output", str(output)])
    opener = gzip.open if output.suffix == ".gz" else open
    with opener(output, "rt") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def test_bench_import_interrupted_at_random_moments_imports_each_run_once_and_exports_the_same_table(
        reference, tmp_path):
    # Found and fixed by this test: a store half-migrated by a SIGKILL while MLflow built its tables
    # (tracking.create_store_whole), and a SIGTERM during `import mlflow` that pydantic-core turned into a
    # traceback (core.disk: the handler waits out an import). A non-strict xfail until 2026-12-05: 8 runs of 9
    # passed on the loaded 2-core machine that day, the ninth failed on that import, and 3 of 3 since its fix.
    chaos = Chaos(tmp_path, random.Random(31))
    table = tmp_path / "table.jsonl"
    original = exported(chaos, reference["uri"], table)
    assert len(original) == len(reference["planned"]) + 1  # the trials and their invocation

    # how long the writes take: from the "importing" line to the end (the command's own start-up before it)
    importing = [time.monotonic()]
    probe = chaos.start(["import", str(table), "--tracking-uri", sqlite_uri(tmp_path / "probe.db")])
    while "importing" not in probe.text and probe.alive:
        time.sleep(0.02)
    importing.append(time.monotonic())
    assert chaos.end(probe) == 0
    window = max(time.monotonic() - importing[1], 0.5)

    uri = sqlite_uri(tmp_path / "imported.db")
    arguments = ["import", str(table), "--tracking-uri", uri]
    interrupt_at_random(chaos, arguments, random.Random(32), "importing", window, times=6)
    interrupted = [a for a in chaos.attempts if a.fault]
    assert len(interrupted) >= 4, [a.text for a in chaos.attempts]
    final, _ = run_once(chaos, arguments)
    assert not chaos.tracebacks and not chaos.statuses, (chaos.tracebacks, chaos.statuses)

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["reference"], max_results=100000)
    sources = list(runs[f"tags.{SOURCE_RUN_TAG}"])
    assert sorted(sources) == sorted(record["run_id"] for record in original)  # each run imported exactly once
    again = exported(chaos, uri, tmp_path / "again.jsonl")
    assert again == original  # the re-export is the original table, line for line


def test_bench_leaderboard_interrupted_mid_write_leaves_no_half_file_and_the_rerun_is_identical(reference, tmp_path):
    chaos = Chaos(tmp_path, random.Random(33))
    expected_folder = tmp_path / "expected"
    arguments = ["leaderboard", "--experiment", "reference", "--tracking-uri", reference["uri"]]
    _, seconds = run_once(chaos, [*arguments, "--output", str(expected_folder / "LEADERBOARD.md")])
    expected = without_generation((expected_folder / "LEADERBOARD.md").read_text())

    output = tmp_path / "board" / "LEADERBOARD.md"

    def whole_or_absent() -> None:
        if output.exists():
            assert without_generation(output.read_text()) == expected  # never a half-written file
        partial = [p.name for p in output.parent.glob("*") if p.name.startswith(".")] if output.parent.exists() else []
        killed = chaos.attempts[-1].fault == "sigkill"
        assert killed or not partial, partial  # a temporary file is removed, unless the process was SIGKILLed

    # the moments span the whole command (start-up, reading the store, computing, the writes at its end)
    interrupt_at_random(chaos, [*arguments, "--output", str(output)], random.Random(34), "", seconds * 0.9, times=6,
                        after_each=whole_or_absent)
    assert sum(1 for a in chaos.attempts if a.fault) >= 4
    run_once(chaos, [*arguments, "--output", str(output)])
    assert without_generation(output.read_text()) == expected
    assert not chaos.tracebacks and not chaos.statuses, (chaos.tracebacks, chaos.statuses)
