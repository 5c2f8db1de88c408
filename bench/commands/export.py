"""The `bench export`, `bench import` and `bench verify` subcommands (found by :mod:`removal_bench.commands.cli`): a portable
table of every trial (:mod:`removal_bench.reporting.export`) and a check of its figures
(:mod:`removal_bench.reporting.verify`)."""

from __future__ import annotations

import argparse
import sys


def add_commands(subparsers) -> None:
    from removal_bench.commands.arguments import comma_names, non_negative_float, non_negative_int, positive_int

    export = subparsers.add_parser(
        "export", help="write every trial of an experiment to a portable table (compact JSON lines): identity and figures",
        description="One file per experiment, results/<experiment>/trials.jsonl.gz: per trial its identity, "
                    "hyperparameters and every final metric, what its invocation shares once (versions, commit, "
                    "protocol fingerprint, hardware fingerprint, recipe), gzip-compressed (docs/RESULTS_TABLE.md); "
                    "--output NAME.jsonl writes one whole run a line instead. "
                    "bench leaderboard --from FILE rebuilds the leaderboard from it without MLflow. With --from, "
                    "trial tables (either kind) are merged or converted into --output instead: each run once, one "
                    "run per trial, the trials run more than once named with how far their runs differ.",
    )
    export.add_argument("--experiment", action="append",
                        help="MLflow experiment(s), comma-separated or repeated; each gets its own file")
    export.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    export.add_argument("--output", help="the file, for one experiment (default results/<experiment>/trials.jsonl.gz); "
                                         ".jsonl.gz compact, .jsonl one whole run a line")
    export.add_argument("--from", dest="from_files", action="append", metavar="FILE",
                        help="trial table(s) to merge or convert into --output instead of MLflow's runs (repeatable)")
    export.add_argument("--quiet", action="store_true", help="print nothing")
    export.set_defaults(handler=command_export)

    load = subparsers.add_parser(
        "import", help="write trial tables (bench export) into an MLflow store: a sweep then resumes from them",
        description="Each trial and invocation of the files becomes a run of the store (same status, times, "
                    "params, tags and final metrics; tagged bench.source_run_id with the run it came from), "
                    "in the file's experiment or --experiment. bench sweep then skips those trials as "
                    "complete, bench leaderboard ranks them, bench export gives the source run ids back. "
                    "Importing the same file again adds nothing.",
    )
    load.add_argument("files", nargs="+", metavar="FILE", help="trial table(s) written by bench export")
    load.add_argument("--experiment", help="MLflow experiment to write to (default: each line's own)")
    load.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    load.add_argument("--quiet", action="store_true", help="print nothing")
    load.set_defaults(handler=command_import)

    verify = subparsers.add_parser(
        "verify", help="re-run a sample of a trial table's trials and test their figures: bit-identical where the "
                       "machine and versions match, the same distribution elsewhere",
        description="Rebuild each sampled trial from its identity (its config hash must match) and run it here "
                    "without MLflow. Where the trial's hardware fingerprint (CPU, ISA, bf16, threads, math library) "
                    "and the computing packages' versions are this machine's, every figure must come back "
                    "bit-identical (--tolerance relaxes that). Elsewhere (a row without a fingerprint included) "
                    "training diverges by about a seed's spread: the trial's whole configuration is re-run (all "
                    "its seeds in the table, or --seeds N) and each figure's reruns are tested against the "
                    "table's seeds (Welch's t-test, family-wise --alpha over every figure tested). Exit status 0 "
                    "when every check passes, 1 otherwise. docs/VERIFY.md says what holds where.",
    )
    verify.add_argument("files", nargs="+", metavar="FILE", help="trial table(s) written by bench export")
    verify.add_argument("--sample", type=positive_int, default=3, help="trials to draw (default 3)")
    verify.add_argument("--sample-seed", type=non_negative_int, default=0, help="seed of the sample's draw (default 0)")
    verify.add_argument("--seeds", type=positive_int,
                        help="distribution mode: re-run the first N seeds of each configuration (default: all it has)")
    verify.add_argument("--mode", choices=("auto", "exact", "distribution"), default="auto",
                        help="auto (default): exact where the fingerprint and versions match, else distribution")
    verify.add_argument("--alpha", type=non_negative_float, default=0.01,
                        help="distribution mode: family-wise error of the figure tests (default 0.01)")
    verify.add_argument("--tolerance", type=non_negative_float, default=0.0,
                        help="exact mode: largest absolute difference accepted per figure (default 0: bit-identical)")
    verify.add_argument("--datasets", action="extend", type=comma_names,
                        help="draw only trials of these datasets, comma-separated or repeated")
    verify.add_argument("--data-root", help="folder holding dataset folders (default $BENCH_DATA_ROOT or ~/.cache/removal-bench)")
    verify.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    verify.add_argument("--quiet", action="store_true", help="print nothing; the exit status says")
    verify.set_defaults(handler=command_verify)


def command_export(args: argparse.Namespace) -> int:
    from removal_bench.reporting.export import execute_export
    from removal_bench.running.names import split_names

    execute_export(split_names(args.experiment) if args.experiment else [], args.tracking_uri, args.output,
                   quiet=args.quiet, stream=sys.stdout, from_files=args.from_files)
    return 0


def command_import(args: argparse.Namespace) -> int:
    from removal_bench.core.errors import UserError
    from removal_bench.reporting.export import read_lines
    from removal_bench.running import preflight
    from removal_bench.running.tracking import import_records

    if args.experiment is not None and not args.experiment.strip():
        raise UserError("--experiment must not be empty")
    records = read_lines(args.files)
    uri = preflight.tracking_uri(args.tracking_uri, write=True)
    by_experiment: dict[str, list] = {}
    for record in records:
        by_experiment.setdefault(args.experiment or record["experiment"], []).append(record)
    for experiment, lines in by_experiment.items():
        progress = None if args.quiet else Progress(f"experiment {experiment!r}")
        if progress:
            print(f"importing {len(lines)} runs into experiment {experiment!r} at {uri}; a line every 10 s",
                  file=sys.stderr, flush=True)
        written, updated, skipped = import_records(uri, experiment, lines, progress=progress)
        if not args.quiet:
            print(f"experiment {experiment!r} at {uri}: {written} runs imported"
                  f"{f', {updated} imported before they ended brought up to date' if updated else ''}"
                  f"{f', {skipped} already there' if skipped else ''}", file=sys.stdout)
    return 0


class Progress:
    """``bench import``'s progress: a line on stderr at most every ``every`` seconds (a whole table takes minutes)."""

    def __init__(self, what: str, every: float = 10.0, stream=None):
        import time

        self.what, self.every, self.stream = what, every, stream or sys.stderr
        self.clock = time.monotonic
        self.start = self.last = self.clock()

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if done and now - self.last >= self.every:
            self.last = now
            rate = done / (now - self.start)
            left = (total - done) / rate if rate > 0 else float("nan")
            print(f"  {self.what}: {done}/{total} lines, {now - self.start:.0f} s, about {left:.0f} s left",
                  file=self.stream, flush=True)


def command_verify(args: argparse.Namespace) -> int:
    from removal_bench.reporting.verify import execute_verify

    return execute_verify(args.files, args.sample, args.sample_seed, args.tolerance, args.data_root, args.device,
                          stream=sys.stdout, quiet=args.quiet, seeds=args.seeds, mode=args.mode, alpha=args.alpha,
                          datasets=args.datasets or None)
