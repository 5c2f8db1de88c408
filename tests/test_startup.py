"""`bench --help`, every `bench <command> --help` and mistyped options answer without the heavy packages.

Each case runs the command line in a fresh interpreter (as the console script would: ``cli.main``) and reads
``sys.modules`` at exit: none of torch, scikit-learn, MLflow, Ray, matplotlib or pandas may have been
imported. Importing one of them at the top of a command module (or of anything it imports) costs seconds
on every invocation, which is what this guards (`bench --help` once took 22 s on a loaded machine).
The times themselves are a benchmark's (``python -m removal_bench.benchmarks startup``), not a test's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import quiet_env

HEAVY = ("torch", "sklearn", "mlflow", "ray", "matplotlib", "pandas")

PROBE = """
import json, sys
from removal_bench.commands.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as stop:  # --help
    status = stop.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(HEAVY)))
sys.stdout.flush()
print("PROBE " + json.dumps({"status": status, "heavy": heavy}), file=sys.stderr)
"""


def probe(arguments: list[str], cwd) -> tuple[int, list[str], str]:
    """(exit status, heavy packages imported, stderr without the probe's line) of ``bench ARGUMENTS``."""
    done = subprocess.run([sys.executable, "-c", PROBE.replace("HEAVY", repr(json.dumps(HEAVY))), *arguments],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**quiet_env(), "BENCH_OFFLINE": "1", "BENCH_DATA_ROOT": str(cwd / "data-root")})
    lines = done.stderr.splitlines()
    found = [line for line in lines if line.startswith("PROBE ")]
    assert found, done.stderr[-3000:]
    result = json.loads(found[-1][len("PROBE "):])
    return result["status"], result["heavy"], "\n".join(line for line in lines if not line.startswith("PROBE "))


def commands() -> list[list[str]]:
    """Every command and subcommand, from the parser: ``[]`` (bench), ``["run"]``, ..., ``["data", "check"]``."""
    import argparse

    from removal_bench.commands.cli import build_parser

    def children(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices
        return {}

    found = [[]]
    for name, command in children(build_parser()).items():
        found.append([name])
        found += [[name, sub] for sub in children(command)]
    return found


def test_every_command_is_probed():
    names = [" ".join(words) for words in commands()]
    assert {"run", "list", "sweep", "report", "leaderboard", "attack", "reproduce", "export", "import", "verify",
            "data check", "data fetch"} <= set(names)


@pytest.mark.parametrize("words", commands(), ids=lambda words: " ".join(["bench", *words]))
def test_help_imports_nothing_heavy(words, tmp_path):
    status, heavy, stderr = probe([*words, "--help"], tmp_path)
    assert status == 0, stderr
    assert heavy == [], f"bench {' '.join(words)} --help imported {heavy}"
    assert list(tmp_path.iterdir()) == []


# Mistakes that parsing, or a check that needs no registry (torch) or store (MLflow), answers.
ARGUMENT_ERRORS = [
    (["launch"], "invalid choice"),
    (["run", "--seeds", "0"], "must be at least 1"),
    (["run", "--executor", "spark"], "invalid choice"),
    (["run", "--cpus-per-trial", "nan"], "expected a finite number"),
    (["sweep", "--max-leakage", "1.5"], "between 0 and 1"),
    (["sweep", "--reduction-factor", "1"], "must be above 1"),
    (["list", "--verbose"], "unrecognized arguments"),
    (["data"], "expected a command, check or fetch"),
    (["data", "purge"], "invalid choice"),
    (["data", "fetch"], "the following arguments are required"),
    (["data", "check", "--data-root", "{file}"], "is a file, not a folder"),
    (["report", "--format", "docx"], "unknown --format"),
    (["report", "--experiment", ""], "--experiment must not be empty"),
    (["report", "--max-leakage", "2"], "between 0 and 1"),
    (["report"], "no MLflow store at"),
    (["leaderboard", "--experiment", "a,,b"], "empty name"),
    (["leaderboard", "--datasets", "adult,"], "empty name"),
    (["leaderboard", "--from", "{tmp}/missing.jsonl"], "does not exist (bench export writes one)"),
    (["leaderboard", "--with", "{tmp}/missing.jsonl"], "does not exist"),
    (["leaderboard", "--format", "pdf"], "unknown leaderboard --format"),
    (["attack"], "give RUN_ID(s) or --selected EXPERIMENT"),
    (["attack", "abc", "--from", "disk"], "invalid choice"),
    (["attack", "abc"], "no MLflow store at"),
    (["attack", "abc", "--data-root", "{file}"], "is a file, not a folder"),
    (["import"], "the following arguments are required: FILE"),
    (["import", "{tmp}/missing.jsonl"], "does not exist"),
    (["verify", "{tmp}/missing.jsonl", "--sample", "0"], "must be at least 1"),
    (["verify", "{tmp}/missing.jsonl"], "does not exist (bench export writes one)"),
    (["verify", "{tmp}/missing.jsonl", "--datasets", "a,,b"], "empty name"),
    (["reproduce", "--seeds", "0"], "must be at least 1"),
    # answered from the generated catalogue (removal_bench.running.catalogue), before the registries import torch
    (["run", "--methods", "nope"], "unknown method 'nope' (valid: adv_debias, "),
    (["sweep", "--methods", "irene,nope"], "unknown method 'nope'"),
    (["run", "--datasets", "nope"], "unknown dataset 'nope' (valid: adult, "),
    (["run", "--datasets", "colored_digits:rho=abc"], "colored_digits.rho: expected a float, got 'abc'"),
    (["run", "--datasets", "colored_digits:shade=1"], "has no option 'shade' (valid: colourings, data_seed, rho)"),
    (["run", "--datasets", "colored_digits:rho"], "malformed"),
    (["run", "--experiment", " "], "--experiment must not be empty"),
    (["run", "--executor", "serial", "--address", "127.0.0.1:6379"], "--address is for Ray"),
    (["run", "--recipe", "fast"], "unknown recipe source 'fast'"),
    (["sweep", "--device", "tpu"], "unknown --device 'tpu'"),
    (["data", "fetch", "nope"], "unknown dataset 'nope'"),
    (["data", "fetch", "colored_digits:rho=2"], "is above the maximum 1"),
]


@pytest.mark.parametrize("arguments, fragment", ARGUMENT_ERRORS, ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_argument_errors_import_nothing_heavy(arguments, fragment, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "plain_file").write_text("not a folder\n")
    filled = [a.replace("{tmp}", str(tmp_path)).replace("{file}", str(tmp_path / "plain_file")) for a in arguments]
    status, heavy, stderr = probe(filled, work)
    lines = stderr.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("bench: error: ") and fragment in lines[0], stderr
    assert heavy == [], f"bench {' '.join(filled)} imported {heavy} to answer: {lines[0]}"
    assert list(work.iterdir()) == []


def test_bench_list_of_the_built_ins_imports_nothing_heavy_and_prints_what_the_registries_hold(tmp_path):
    """`bench list` reads the generated catalogue: no torch; and what it prints names every registered method,
    dataset and encoder with its options (the registries are read here, in the test, to compare)."""
    import removal_bench.datasets as datasets
    import removal_bench.methods as methods
    from removal_bench.core.encoders import ENCODERS

    done = subprocess.run([sys.executable, "-c", PROBE.replace("HEAVY", repr(json.dumps(HEAVY))), "list"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=quiet_env())
    result = json.loads(next(line for line in done.stderr.splitlines() if line.startswith("PROBE "))[len("PROBE "):])
    assert result == {"status": 0, "heavy": []}, done.stderr
    listed = done.stdout
    for name, cls in methods.REGISTRY.items():
        assert f"\n  {name:<12} {cls.description}\n      from removal-bench" in listed, name
        for hp in cls.hparams:
            assert f"\n      {hp:<18} default " in listed
    for name, cls in datasets.REGISTRY.items():
        assert f"\n  {name:<15} {cls.description}" in listed, name
    assert listed.rstrip().endswith("encoders: " + ", ".join(sorted(ENCODERS)))


def test_a_recipe_source_is_checked_after_parsing_before_anything_is_written(tmp_path):
    """``--recipe`` is free text for the parser (its names live with torch, in core.recipes): an unknown one is
    still one line, exit 2, naming the valid ones, and nothing written."""
    from removal_bench.core.recipes import SOURCES

    status, _, stderr = probe(["run", "--recipe", "fast", "--methods", "vanilla", "--datasets", "synthetic"], tmp_path)
    lines = stderr.strip().splitlines()
    assert status == 2 and len(lines) == 1, stderr
    assert lines[0] == f"bench: error: unknown recipe source 'fast' (valid: {', '.join(SOURCES)})"
    assert list(tmp_path.iterdir()) == []
