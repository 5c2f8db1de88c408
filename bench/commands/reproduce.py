"""The `bench reproduce` subcommand (found by :mod:`removal_bench.commands.cli`); the work is in :mod:`removal_bench.running.reproduce`."""

from __future__ import annotations

import argparse
import sys


def add_commands(subparsers) -> None:
    # Imported here: removal_bench.commands.cli imports this module while it is itself being imported.
    from removal_bench.commands.arguments import non_negative_int, positive_int

    command = subparsers.add_parser(
        "reproduce", help="run the settings of published tables and write results/REPRODUCTION.md",
        description="Run the settings of published tables (bench/running/published.toml) through the ordinary run path "
                    "and write our numbers beside theirs. Resumable: trials the experiment already holds "
                    "complete are not run again.",
    )
    command.add_argument("tables", nargs="*", metavar="TABLE",
                         help="table ids or prefixes (e.g. ffb, rebias-table1); default: every table")
    command.add_argument("--list", action="store_true", help="list the published tables and exit")
    what = command.add_argument_group("changing a row (the file says so next to it)")
    what.add_argument("--seeds", type=positive_int, help="seeds per row (default: the table's)")
    what.add_argument("--epochs", type=non_negative_int, help="training epochs (default: the recipe's)")
    what.add_argument("--batch-size", type=positive_int)
    what.add_argument("--encoder")
    what.add_argument("--option", dest="options", action="append", default=[], metavar="[TABLE:]NAME=VALUE",
                      help="a dataset option for the rows (of TABLE) whose dataset has it, e.g. "
                           "biased-fashion-mnist:subsample=0.1 (repeatable); on an option that tells a table's "
                           "rows apart (rho) it chooses the rows published at that value, e.g. rho=0.997")
    what.add_argument("--train", action="append", default=[], metavar="[TABLE:]FIELD=VALUE",
                      help="a training-recipe field for the rows (of TABLE), e.g. biased-fashion-mnist:epochs=5 "
                           "(repeatable)")
    what.add_argument("--recipe", action="append", default=[], metavar="[TABLE:]SOURCE",
                      help="whose training recipe the rows (of TABLE) start from: the dataset's "
                           "(dataset, the default), each method's paper's (reference), or a dataset's named one, e.g. cpu: "
                           "Biased-MNIST's reduced CPU setting (bench list); the file marks the rows reduced; "
                           "repeatable, e.g. --recipe rebias-table1:cpu --recipe end-table1:cpu")
    where = command.add_argument_group("where to run")
    where.add_argument("--executor", choices=("ray", "serial", "offline"), default="ray",
                       help="as bench run's: offline plans the trials into --offline-dir (docs/USAGE.md)")
    where.add_argument("--offline-dir", metavar="DIR", help="with --executor offline: the plan's and results' folder")
    where.add_argument("--address", help="address of a running Ray cluster (default: start a local Ray)")
    where.add_argument("--cpus-per-trial", type=float, default=1.0)
    where.add_argument("--gpus-per-trial", type=float)
    where.add_argument("--max-concurrent", type=positive_int)
    where.add_argument("--storage-path")
    where.add_argument("--device", default="auto")
    where.add_argument("--data-root", help="folder holding dataset folders (default $BENCH_DATA_ROOT or ~/.cache/removal-bench)")
    out = command.add_argument_group("tracking and output")
    out.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    out.add_argument("--experiment", default="reproduce", help="MLflow experiment (default 'reproduce')")
    out.add_argument("--output", help="the file to write (default results/REPRODUCTION.md)")
    out.add_argument("--restart", action="store_true", help="run every trial again, even those already complete")
    out.add_argument("--report-only", action="store_true",
                     help="run nothing: write the file from the runs the experiment already holds (missing seeds say so)")
    command.set_defaults(handler=command_reproduce)


def command_reproduce(args: argparse.Namespace) -> int:
    from removal_bench.running.reproduce import ReproduceRequest, execute_reproduce, load_tables

    if args.list:
        for table in load_tables():
            print(f"{table.id:<22} {table.title} ({len(table.rows)} rows)")
        return 0
    fields = {name: getattr(args, name) for name in (
        "tables", "seeds", "epochs", "batch_size", "encoder", "recipe", "options", "train", "executor", "offline_dir",
        "address",
        "cpus_per_trial", "gpus_per_trial", "max_concurrent", "storage_path", "device", "data_root",
        "tracking_uri", "experiment", "output", "restart", "report_only")}
    from removal_bench.running.sweep import portable_command

    words = ["bench", *sys.argv[1:]] if sys.argv[1:2] == ["reproduce"] else ["bench", "reproduce", *args.tables]
    return execute_reproduce(ReproduceRequest(**fields, command=portable_command(words)))
