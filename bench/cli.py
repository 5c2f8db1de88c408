"""The `bench` command line.

Bad input (an unknown name, a malformed option, a missing data file) gets one
line on stderr and exit status 2. A traceback means a bug.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from bench.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


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
    where = parser.add_argument_group("where to run")
    where.add_argument("--executor", choices=("ray", "serial"), default="ray",
                       help="ray: Ray Tune trials (default); serial: in this process, without Ray")
    where.add_argument("--address", help="address of a running Ray cluster (default: start a local Ray)")
    where.add_argument("--cpus-per-trial", type=float, default=1.0)
    where.add_argument("--gpus-per-trial", type=float, help="default: 1 on a CUDA machine, else 0; may be fractional")
    where.add_argument("--max-concurrent", type=positive_int, help="at most this many trials at once")
    where.add_argument("--storage-path", help="where Ray Tune keeps its results (shared storage on a cluster)")
    where.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    where.add_argument("--data-root", help="folder holding dataset folders (default $BENCH_DATA_ROOT or ~/.cache/removal-bench)")
    out = parser.add_argument_group("tracking and output")
    out.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    out.add_argument("--experiment", default="default", help="MLflow experiment name (default 'default')")
    out.add_argument("--results-dir", help="where tables and plots go (default results/<experiment>)")
    out.add_argument("--save-embeddings", action="store_true",
                     help="log the probe and test bottlenecks with y and s as embeddings.npz per trial")


def run_fields(args: argparse.Namespace) -> dict:
    """The fields of a RunRequest, from the options :func:`add_run_arguments` declared."""
    from dataclasses import fields

    from bench.runner import RunRequest

    return {field.name: getattr(args, field.name) for field in fields(RunRequest)}


def command_run(args: argparse.Namespace) -> int:
    from bench.runner import RunRequest, execute

    return execute(RunRequest(**run_fields(args)))


def command_list(args: argparse.Namespace) -> int:
    import datasets as dataset_registry
    import methods as method_registry
    from methods.encoders import ENCODERS

    print("methods:")
    for name, cls in sorted(method_registry.REGISTRY.items()):
        print(f"  {name:<12} {cls.description}")
        for hp, param in cls.hparams.items():
            print(f"      {hp:<18} {param.describe()}{'  ' + param.help if param.help else ''}")
    print("\ndatasets:")
    for name, cls in sorted(dataset_registry.REGISTRY.items()):
        needs = "  (reads files from the data root)" if cls.needs_data() else ""
        print(f"  {name:<15} {cls.description}{needs}")
        for option, param in cls.options.items():
            print(f"      {option:<18} {param.describe()}{'  ' + param.help if param.help else ''}")
    print("\nencoders: " + ", ".join(sorted(ENCODERS)))
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="bench", description="Benchmark information removal in deep networks.")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)
    run = commands.add_parser("run", help="train every method on every dataset and seed; print Pareto tables")
    add_run_arguments(run)
    run.set_defaults(handler=command_run)
    listing = commands.add_parser("list", help="methods and datasets, with their options")
    listing.set_defaults(handler=command_list)
    from bench import data_command, sweep_command

    for module in (data_command, sweep_command):  # each adds its subcommands
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return args.handler(args)
    except UserError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
