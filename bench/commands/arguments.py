"""What the commands share: the argument parser, number types, and the options of a run (``bench run``,
``bench sweep``, ``bench reproduce``)."""

from __future__ import annotations

import argparse
import math

from removal_bench.core.errors import UserError

# Nothing heavy here (torch, scikit-learn, MLflow, Ray, matplotlib): every command builds its parser from this
# module, and `bench --help` or a mistyped option must answer at once (tests/test_startup.py). What needs torch
# to check (method and dataset names, --recipe, --device) is checked after parsing, before anything is written.


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def comma_names(text: str) -> list[str]:
    """``a,b`` -> ``["a", "b"]`` (with ``action="extend"``, repeated options add up); an empty item is refused.
    The same rule as :func:`removal_bench.running.names.split_names`, in argparse's terms."""
    names = [item.strip() for item in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty name in {text!r}")
    return names


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def above_one(text: str) -> float:
    value = _number(text)
    if value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 1, got {text}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to run")
    what.add_argument("--methods", action="append", help="comma-separated method names, or 'all' (default: all)")
    what.add_argument("--datasets", action="append",
                      help="comma-separated datasets, each NAME[:OPTION=VALUE...], e.g. colored_digits:rho=0.99 "
                           "(default: every dataset that needs no download)")
    what.add_argument("--seeds", type=positive_int, default=3, help="number of seeds, 0..N-1 (default 3)")
    what.add_argument("--epochs", type=non_negative_int, help="training epochs (default: the dataset's)")
    what.add_argument("--batch-size", type=positive_int, help="training batch size (default: the dataset's)")
    what.add_argument("--encoder", help="encoder name (default: the dataset's)")
    what.add_argument("--set", dest="sets", action="append", default=[], metavar="METHOD.NAME=VALUE[,VALUE]",
                      help="set a hyperparameter; several values run each (repeatable)")
    training = parser.add_argument_group("training recipe (optimiser, schedule, epochs, ...; see bench list)")
    training.add_argument("--recipe", default="dataset", metavar="SOURCE",
                          help="dataset: every method trains under its dataset's reference recipe (default); "
                               "reference: each method under its own paper's recipe where it declares one; "
                               "a recipe a dataset declares by name, e.g. cpu: its reduced CPU setting (bench list "
                               "shows them; an unknown name is refused before anything runs)")
    training.add_argument("--train", dest="train", action="append", default=[], metavar="[METHOD.]FIELD=VALUE[,VALUE]",
                          help="override a recipe field, e.g. lr=0.01,0.1 schedule=cosine milestones=40/60 "
                               "grl.epochs=5; several values run each (a sweep draws them) (repeatable)")
    where = parser.add_argument_group("where to run")
    where.add_argument("--executor", choices=("ray", "serial", "offline"), default="ray",
                       help="ray: Ray Tune trials (default); serial: in this process, without Ray; offline: plan "
                            "the trials into --offline-dir for `python -m removal_bench.running.offline DIR` on a "
                            "machine without MLflow or Ray, and log the results found there (docs/USAGE.md)")
    where.add_argument("--offline-dir", metavar="DIR",
                       help="with --executor offline: the folder of plan.jsonl and the results*.jsonl brought back")
    where.add_argument("--address", help="address of a running Ray cluster (default: start a local Ray)")
    where.add_argument("--cpus-per-trial", type=positive_float, default=1.0, help="CPUs per trial (default 1; may be fractional)")
    where.add_argument("--gpus-per-trial", type=non_negative_float,
                       help="default: on a CUDA machine each dataset's share (0.25 tabular and toy sets, 1 images), else 0; may be fractional")
    where.add_argument("--max-concurrent", type=positive_int, help="at most this many trials at once")
    where.add_argument("--memory-per-trial", type=positive_float, metavar="MB",
                       help="memory a trial may take, in MB: Ray schedules no more trials on a node than its memory "
                            "holds, and a trial that asks for more fails at once with one line (out of memory) "
                            "instead of its worker being killed (default: no limit)")
    where.add_argument("--storage-path", help="where Ray Tune keeps its results (shared storage on a cluster)")
    where.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    where.add_argument("--data-root", help="folder holding dataset folders (default $BENCH_DATA_ROOT or ~/.cache/removal-bench)")
    out = parser.add_argument_group("tracking and output")
    out.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    out.add_argument("--experiment", default="default", help="MLflow experiment name (default 'default')")
    out.add_argument("--results-dir", help="where tables and plots go (default results/<experiment>)")
    out.add_argument("--save-embeddings", action="store_true",
                     help="log the probe, val and test bottlenecks with y and s as embeddings.npz per trial")
    out.add_argument("--log-models", action="store_true",
                     help="log each trial's encoder and heads (state dict and the config that rebuilds them) as "
                          "model.pt, for bench attack")
    out.add_argument("--quiet", action="store_true", help="no progress lines and no tables (files are still written)")
    out.add_argument("--json", dest="json_output", action="store_true",
                     help="print the report as one JSON document on stdout instead of tables")


def run_fields(args: argparse.Namespace) -> dict:
    """The fields of a RunRequest, from the options :func:`add_run_arguments` declared."""
    from dataclasses import fields

    from removal_bench.running.runner import RunRequest

    return {field.name: getattr(args, field.name) for field in fields(RunRequest)}
