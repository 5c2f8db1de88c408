"""The `bench attack` subcommand (found by :mod:`bench.cli`); the work is in :mod:`bench.attack`."""

from __future__ import annotations

import argparse


def add_commands(subparsers) -> None:
    attack = subparsers.add_parser(
        "attack", help="re-attack a logged trial with the protocol's attackers or any scikit-learn classifier",
        description="Rebuild a trial's model from its MLflow run (logged with --log-models), or read its "
                    "embeddings.npz (--save-embeddings), embed probe, val and test, run the attackers, print "
                    "leakage the protocol's way and log it to the same run as attack.<attacker>.leakage.",
    )
    attack.add_argument("run_id", metavar="RUN_ID", help="the MLflow run id of one trial")
    attack.add_argument("--attacker", dest="attackers", action="append", default=[],
                        metavar="NAME|MODULE.CLASS[:ARG=VALUE...]",
                        help="linear, mlp, gbdt (the protocol's, the default: all three) or a scikit-learn "
                             "classifier by import path, e.g. sklearn.svm.SVC:C=10; repeatable or comma-separated")
    attack.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    attack.add_argument("--data-root", help="folder holding dataset folders, to rebuild the splits "
                                            "(default $BENCH_DATA_ROOT or ~/.cache/removal-bench)")
    attack.add_argument("--device", default="cpu", help="where the rebuilt encoder embeds the splits (default cpu)")
    attack.add_argument("--from", dest="source", choices=("auto", "model", "embeddings"), default="auto",
                        help="auto: the model if the run logged one, else its embeddings (default)")
    attack.add_argument("--no-log", dest="log", action="store_false", help="print only; log nothing to the run")
    attack.add_argument("--json", dest="json_output", action="store_true", help="print one JSON document instead")
    attack.set_defaults(handler=command_attack)


def command_attack(args: argparse.Namespace) -> int:
    from bench.attack import AttackRequest, execute_attack

    return execute_attack(AttackRequest(
        run_id=args.run_id, attackers=args.attackers, tracking_uri=args.tracking_uri, data_root=args.data_root,
        device=args.device, source=args.source, log=args.log, json_output=args.json_output,
    ))
