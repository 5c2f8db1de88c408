"""The `bench sweep`, `bench report` and `bench leaderboard` subcommands (found by :mod:`removal_bench.commands.cli`)."""

from __future__ import annotations

import argparse
import sys


def unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value:g}")
    return value


def add_commands(subparsers) -> None:
    # Imported here: removal_bench.commands.cli imports this module while it is itself being imported.
    from removal_bench.commands.arguments import above_one, add_run_arguments, comma_names, non_negative_int, positive_int

    sweep = subparsers.add_parser(
        "sweep", help="random or grid search over each method's hyperparameters; resumable",
        description="Draw configurations from each method's search space and run each on every seed. "
                    "Running the same command again runs only the trials that have no FINISHED run in the "
                    "experiment.",
    )
    add_run_arguments(sweep)
    sweep._option_string_actions["--set"].help = (
        "fix a hyperparameter (one value) or draw it from these values (several); repeatable"
    )
    search = sweep.add_argument_group("search")
    search.add_argument("--samples", type=positive_int,
                        help="random configurations per method (default 20); not with --grid")
    search.add_argument("--grid", action="store_true", help="every point of each space's grid instead of random draws")
    search.add_argument("--grid-points", type=positive_int, default=3,
                        help="points per continuous hyperparameter with --grid (default 3)")
    search.add_argument("--curve", action="store_true",
                        help="each method's strength curve (bench list: strength) instead of a search; "
                             "other hyperparameters at their defaults, the recipe at the dataset's")
    search.add_argument("--strengths", type=positive_int, default=8,
                        help="log-spaced points per strength curve with --curve (default 8)")
    search.add_argument("--refine", type=non_negative_int, default=0, metavar="K",
                        help="with --curve: K more strengths per curve, each bisecting (in log space) the neighbouring "
                             "pair whose validation figures differ most; planned from finished rounds only, so the "
                             "same command resumes to the same points (default 0; docs/PROTOCOL.md)")
    search.add_argument("--search", choices=("random", "optuna"), default="random",
                        help="random: draws (or --grid, --curve); optuna: a multi-objective Bayesian search (Ray Tune's "
                             "OptunaSearch, TPE) for the best validation task accuracy at each validation leakage, "
                             "in rounds, --samples configurations a method; resumable to the same proposals "
                             "(docs/USAGE.md)")
    search.add_argument("--proposals", type=positive_int, default=4, metavar="K",
                        help="with --search optuna: configurations each round proposes per method after the "
                             "first round's random start (default 4)")
    search.add_argument("--sweep-seed", type=non_negative_int, default=0,
                        help="seed of the random draws (default 0); the same seed draws the same configurations")
    search.add_argument("--scheduler", choices=("none", "asha"), default="none",
                        help="asha: stop trials early on validation task accuracy (Ray only)")
    search.add_argument("--max-leakage", type=unit_interval,
                        help="leakage guard: with asha, an epoch whose linear-probe validation leakage exceeds it "
                             "scores 0; in the report, the model selection's bound on validation leakage")
    search.add_argument("--grace-period", type=positive_int, default=1, help="asha: epochs before the first cut (default 1)")
    search.add_argument("--reduction-factor", type=above_one, default=3.0, help="asha: keep 1/this at each rung (default 3)")
    search.add_argument("--restart", action="store_true",
                        help="run every trial again under a new parent run, even those already FINISHED")
    search.add_argument("--format", dest="formats", default="markdown,csv",
                        help="report formats: markdown, csv, latex, comma-separated (default markdown,csv)")
    sweep.set_defaults(handler=command_sweep)

    report = subparsers.add_parser("report", help="tables, hypervolumes, model selection and plots of an experiment, from MLflow")
    report.add_argument("--experiment", default="default", help="MLflow experiment name (default 'default')")
    report.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    report.add_argument("--max-leakage", type=unit_interval,
                        help="model selection: best validation task accuracy with validation leakage at most this")
    report.add_argument("--format", dest="formats", default="markdown,csv",
                        help="markdown, csv, latex, comma-separated (default markdown,csv); the plot is always written")
    report.add_argument("--results-dir", help="where the files go (default results/<experiment>)")
    report.add_argument("--from", dest="from_files", action="append", metavar="FILE",
                        help="report on trial table(s) written by bench export instead of MLflow (repeatable)")
    add_output_arguments(report)
    report.set_defaults(handler=command_report)

    board = subparsers.add_parser("leaderboard", help="write results/LEADERBOARD.md: methods ranked by hypervolume per dataset")
    board.add_argument("--experiment", action="extend", type=comma_names,
                       help="MLflow experiment(s), comma-separated or repeated (default: every experiment with trial runs)")
    board.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    board.add_argument("--max-leakage", type=unit_interval,
                       help="model selection: best validation task accuracy with validation leakage at most this")
    board.add_argument("--output", metavar="FILE",
                       help="where to write it (default results/LEADERBOARD.md, or results/leaderboard.html with "
                            "--format html; one format with it); the Markdown's plots go to a folder beside it named "
                            "after it, e.g. elsewhere/lb.md -> elsewhere/lb-plots/")
    board.add_argument("--force", action="store_true",
                       help="replace the default file even when it ranks a dataset this leaderboard does not "
                            "(refused otherwise, so that e.g. --datasets adult cannot drop the other datasets' standings)")
    board.add_argument("--format", dest="formats", default="markdown",
                       help="markdown (default), html (one self-contained page with interactive plots), or markdown,html")
    board.add_argument("--from", dest="from_files", action="append", metavar="FILE",
                       help="build from trial table(s) written by bench export instead of MLflow (repeatable)")
    board.add_argument("--with", dest="with_files", action="append", metavar="FILE",
                       help="rank the runs together with these trial tables' trials (the committed ones: "
                            "results/*/trials.jsonl.gz), on the runs' datasets, where the protocol matches; "
                            "files go to results/<experiment>/ (repeatable)")
    board.add_argument("--datasets", action="extend", type=comma_names,
                       help="rank only these datasets' trials, comma-separated or repeated (default: every dataset); "
                            "NAME:OPTION=VALUE ranks only its trials with that option, e.g. biased_mnist:rho=0.997 "
                            "(a dataset whose trials ran at several settings is refused until one is chosen); one "
                            "dataset at several settings ranks each as a section of its own, e.g. "
                            "biased_mnist:rho=0.99,biased_mnist:rho=0.997")
    board.add_argument("--capacity", dest="capacity_files", action="append", metavar="FILE",
                       help="the capacity check from reruns: trial tables of each method's selected configuration run "
                            "again with embeddings and attacked by the wide MLP (python -m removal_bench.benchmarks "
                            "capacity); the attacker table shows them where the runs ranked have none (repeatable)")
    add_output_arguments(board)
    board.set_defaults(handler=command_leaderboard)


def add_output_arguments(parser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print nothing (files are still written)")
    parser.add_argument("--json", dest="json_output", action="store_true",
                        help="print the per-dataset rows as one JSON document on stdout instead of tables")


def command_sweep(args: argparse.Namespace) -> int:
    from removal_bench.running.catalogue import check_request

    check_request(args)  # names, options and numbers, before torch is imported
    from removal_bench.commands.arguments import run_fields
    from removal_bench.reporting.leaderboard import parse_formats
    from removal_bench.reporting.publish import publish_report
    from removal_bench.running.sweep import SweepRequest, command_text, execute_sweep

    request = SweepRequest(
        **run_fields(args),
        samples=args.samples, grid=args.grid, grid_points=args.grid_points, curve=args.curve, strengths=args.strengths,
        refine=args.refine, search=args.search, proposals=args.proposals,
        sweep_seed=args.sweep_seed,
        scheduler=args.scheduler, max_leakage=args.max_leakage, grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, restart=args.restart, formats=parse_formats(args.formats),
        command=command_text(getattr(args, "command_line", None)),
    )
    finished = execute_sweep(request)
    publish_report(finished.frame, request, finished.tracking_uri, sys.stdout, request.formats, request.max_leakage,
                   parent_id=finished.parent_id)
    return finished.status


def command_report(args: argparse.Namespace) -> int:
    from removal_bench.reporting.leaderboard import execute_report, parse_formats

    return execute_report(args.experiment, args.tracking_uri, args.max_leakage, parse_formats(args.formats), args.results_dir,
                          quiet=args.quiet, json_output=args.json_output, from_files=args.from_files)


def command_leaderboard(args: argparse.Namespace) -> int:
    from removal_bench.reporting.html import parse_leaderboard_formats
    from removal_bench.reporting.leaderboard import execute_leaderboard

    return execute_leaderboard(args.experiment or None, args.tracking_uri, args.max_leakage, args.output,
                               formats=parse_leaderboard_formats(args.formats), quiet=args.quiet, json_output=args.json_output,
                               command=getattr(args, "command_line", None) or "",  # words: made text after the checks
                               from_files=args.from_files, with_files=args.with_files,
                               datasets=args.datasets or None, force=args.force,
                               capacity_files=args.capacity_files)
