"""The `bench` command line.

Bad input (an unknown name, a malformed option, a missing data file) gets one
line on stderr and exit status 2. A traceback means a bug.

Start-up: this module and the command modules import nothing heavy (torch, scikit-learn, MLflow, Ray,
matplotlib, pandas): each handler imports what it uses once its arguments are parsed, so `bench --help`
and a mistyped option answer at once (tests/test_startup.py; timings: python -m removal_bench.benchmarks startup).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from removal_bench.commands import attack as attack_command
from removal_bench.commands import data as data_command
from removal_bench.commands import export as export_command
from removal_bench.commands import reproduce as reproduce_command
from removal_bench.commands import sweep as sweep_command
from removal_bench.commands.arguments import Parser, add_run_arguments, run_fields
from removal_bench.core.disk import (TERMINATED_STATUS, DiskFull, Terminated, abandoned, full_disk_error, is_disk_full, restore_sigterm, sigterm_received, terminated_line,
                                     terminate_as_interrupt)
from removal_bench.core.errors import UserError


def command_run(args: argparse.Namespace) -> int:
    from removal_bench.running.catalogue import check_request

    check_request(args)  # names, options and numbers, before torch is imported
    from removal_bench.reporting.publish import publish_report
    from removal_bench.running.runner import RunRequest, execute

    request = RunRequest(**run_fields(args))
    finished = execute(request)
    publish_report(finished.frame, request, finished.tracking_uri, sys.stdout, parent_id=finished.parent_id)
    if not (request.quiet or request.json_output):
        print(trial_runs_line(finished.frame, request.experiment), file=sys.stdout)
    return finished.status


def trial_runs_line(frame, experiment: str) -> str:
    """Where a trial's run id is (``bench attack RUN_ID``): one example from ``frame`` (the invocation's trial
    runs) and the report that lists them all."""
    where = (f"every trial's run id: bench report --experiment {experiment} --json "
             "(datasets.<name>.configurations[].runs, seed -> run id), or MLflow's UI")
    if frame is None or frame.empty or "run_id" not in frame.columns:
        return where
    first = frame.sort_values("start_time").iloc[0] if "start_time" in frame.columns else frame.iloc[0]
    label = first.get("tags.bench.label", first.get("tags.bench.method", "?"))
    return (f"trial runs: e.g. {first['run_id']} ({label} on {first.get('tags.bench.dataset', '?')}, "
            f"seed {first.get('params.seed', '?')}; bench attack {first['run_id']} re-attacks it); {where}")


def command_list(args: argparse.Namespace) -> int:
    from removal_bench.running import catalogue

    if not (args.methods or args.datasets) and catalogue.applies():
        catalogue.print_built_ins()  # the generated catalogue: no torch
        return 0
    import removal_bench.datasets as dataset_registry
    import removal_bench.methods as method_registry
    from removal_bench.core.encoders import ENCODERS
    from removal_bench.running import plugins

    plugins.load_entry_points()  # installed plugins; import paths given with --methods / --datasets
    plugins.resolve_methods(catalogue.split_names(args.methods))
    for text in catalogue.split_names(args.datasets):
        plugins.resolve_dataset_text(text)
    catalogue.print_listing({name: catalogue.method_lines(cls) for name, cls in method_registry.REGISTRY.items()},
                            {name: catalogue.dataset_lines(cls) for name, cls in dataset_registry.REGISTRY.items()},
                            list(ENCODERS), plugins.describe)
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="bench", description="Benchmark information removal in deep networks.",
                    epilog="Each command has its own --help. The tour: README.md; every option: docs/USAGE.md.")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)
    run = commands.add_parser("run", help="train every method on every dataset and seed; print Pareto tables")
    add_run_arguments(run)
    run.set_defaults(handler=command_run)
    listing = commands.add_parser("list", help="methods and datasets, with their options and where they come from")
    listing.add_argument("--methods", action="append", help="also list these plugin methods, each MODULE:CLASS")
    listing.add_argument("--datasets", action="append", help="also list these plugin datasets, each MODULE:CLASS")
    listing.set_defaults(handler=command_list)
    for module in (data_command, sweep_command, attack_command, reproduce_command, export_command):  # each adds its subcommands
        module.add_commands(commands)
    return parser


def error_line(error: BaseException) -> str:
    """The one line for a UserError or a full disk; names the file holding MLflow's own log of it, if any."""
    if not isinstance(error, UserError) or isinstance(error, DiskFull):  # a full disk says what to do next, always
        error = full_disk_error(error, None, "a file of this command").with_hint(
            "free space, then run the same command again")
    text = str(error)
    tracking = sys.modules.get("removal_bench.running.tracking")
    log = tracking.save_store_log() if tracking else None  # MLflow's store logged it with a traceback: kept off the terminal
    return f"bench: error: {text}" + (f" (MLflow's log: {log})" if log else "")


def main(argv: Sequence[str] | None = None) -> int:
    previous = terminate_as_interrupt()  # a scheduler's SIGTERM does what Ctrl-C does, then exit status 143
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.command_line = ["bench", *(sys.argv[1:] if argv is None else argv)]  # provenance (sweep, leaderboard)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return args.handler(args)
    except UserError as error:
        print(error_line(error), file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Terminated, or what Ray Tune re-raised for it (a 2-hour sweep once said 130)
        if isinstance(interrupt, Terminated) or sigterm_received():
            print(terminated_line(abandoned()), file=sys.stderr)
            return TERMINATED_STATUS
        print("bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bench list | head`: the reader left; stop quietly, as a C tool killed by SIGPIPE
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush of stdout at exit would raise again
        return 141
    except OSError as error:
        if not is_disk_full(error):
            raise
        print(error_line(error), file=sys.stderr)  # a full disk where no writer of ours named it: still one line
        return 2
    finally:
        restore_sigterm(previous)


def entry() -> None:
    """The ``bench`` console script: :func:`main`, then an exit with no window for a SIGTERM to misreport
    what the command did.

    Once ``main`` has returned its work is done (every run closed, every file written), but the interpreter's
    exit still took 1.7 s on a loaded 2-core machine after a Ray sweep, most of it after Python has put
    SIGTERM back to the default action (tearing down modules, Ray's C++ core worker): a SIGTERM there ended
    the command with exit -15 and no word (the chaos soak: 4 of 12 SIGTERMs), and after a handled SIGTERM
    that teardown once aborted (exit -6 after bench's own line, in CI). So the exit runs what Python
    runs first (joining threads, every exit handler: Ray's, MLflow's, tempfile's), flushes stdout and
    stderr, and ends the process with ``main``'s status, skipping the teardown; a SIGTERM from the moment
    ``main`` returns ends it at once with that status (Ray's own C++ reset of SIGTERM, the other gap, is off:
    ``running.executors``)."""
    import atexit
    import os
    import signal

    status: list[int] = []

    def leave() -> None:  # registered first, so it runs last of the exit handlers
        if status:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(status[0])

    def now(*_) -> None:  # SIGTERM outside main's handler: before main installs it, or once main has returned
        status.append(TERMINATED_STATUS)  # before main returned (its own handler gone): as if it had handled it
        leave()

    atexit.register(leave)
    signal.signal(signal.SIGTERM, now)  # what main's handler replaces and, when main returns, puts back
    status.append(main())
    if abandoned():  # a shutdown left stuck in a thread (Ray's): the exit handlers, Ray's first, would wait on it
        if status[0] != TERMINATED_STATUS:  # a SIGTERM's line has said it
            print("bench: " + "; ".join(abandoned()), file=sys.stderr)
        leave()
    sys.exit(status[0])


if __name__ == "__main__":
    entry()
