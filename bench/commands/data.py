"""``bench data check`` and ``bench data fetch``: the data files under a data root.

``check`` prints, for each dataset that reads files (or those named), each file's
status (present, missing, or corrupt: its SHA-256, or for MNIST and
Fashion-MNIST that of its decompressed content, does not match) and the
folder it is looked for in; exit status 0 when every file is present, 1
otherwise. ``fetch`` downloads a dataset's missing files and verifies them
(as ``bench run`` would before its first trial); with dataset options
(``biased_mnist:source=mnist``) only the files those options read.

A dataset whose files need more than a list of names (CelebA's image folder)
reports them through a ``file_statuses(data_root)``
classmethod; the others are checked by :func:`removal_bench.datasets.download.file_status`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from removal_bench.core.errors import UserError


def _data_root(args: argparse.Namespace, write: bool = False) -> Path:
    """The data root, checked: a folder (or none yet); one this process can write when ``write``."""
    from removal_bench.running import preflight

    if args.data_root:
        root = Path(args.data_root).expanduser()
    else:
        from removal_bench.datasets import default_data_root  # the registry: torch

        root = default_data_root()
    if write:
        return preflight.writable_folder(root, "--data-root")
    return preflight.readable_folder(root, "--data-root")


def statuses(cls, data_root: Path) -> list[tuple[str, str]]:
    """(file name, status) for each file ``cls`` reads."""
    from removal_bench.datasets.download import file_status

    custom = getattr(cls, "file_statuses", None)
    pairs = custom(data_root) if custom is not None else file_status(cls.folder(data_root), cls.files)
    return [(data_file.name, status) for data_file, status in pairs]


def command_check(args: argparse.Namespace) -> int:
    data_root = _data_root(args)  # first: a wrong --data-root answers without the registry (torch)
    import removal_bench.datasets as registry
    from removal_bench.datasets.download import PRESENT

    if args.names:
        classes = [registry.get_dataset(name) for name in args.names]
    else:
        classes = [cls for _, cls in sorted(registry.REGISTRY.items()) if cls.needs_data()]
    rows = []
    for cls in classes:
        if not cls.needs_data():
            rows.append((cls.name, "-", "needs no files", "-"))
            continue
        folder = str(cls.folder(data_root))
        rows.extend((cls.name, name, status, folder) for name, status in statuses(cls, data_root))
    header = ("dataset", "file", "status", "folder")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())
    incomplete = sorted({row[0] for row in rows if row[2] not in (PRESENT, "needs no files")})
    if incomplete:
        print(f"\nincomplete: {', '.join(incomplete)} (bench data fetch NAME downloads what can be downloaded)")
        return 1
    return 0


def command_fetch(args: argparse.Namespace) -> int:
    from removal_bench.core.params import resolve
    from removal_bench.running import catalogue

    name, given = catalogue.parse_dataset(args.name)
    if not catalogue.plugins_installed():  # an unknown name or option answered before torch is imported
        resolve(f"dataset {name!r}", catalogue.registries()[1].lookup(name).params, given)
    import removal_bench.datasets as registry

    cls = registry.get_dataset(name)
    options = resolve(f"dataset {name!r}", cls.options, given) if given else None
    if not cls.needs_data():
        print(f"{cls.name}: needs no data files")
        return 0
    data_root = _data_root(args, write=True)
    if options is None:
        cls.prepare(data_root, download=True)
    else:  # only the files these options read (biased_mnist:source=mnist: MNIST's, not Fashion-MNIST's)
        cls.prepare_for_run(data_root, options)
    print(f"{args.name}: every file {'it reads ' if options else ''}is present and intact in {cls.folder(data_root)}")
    return 0


def add_commands(subparsers) -> None:
    data = subparsers.add_parser("data", help="check or download the data files of datasets")
    commands = data.add_subparsers(dest="data_command", parser_class=type(data))
    data.set_defaults(handler=lambda args: _usage(data))

    check = commands.add_parser("check", help="each dataset's files: present, missing or corrupt")
    check.add_argument("names", nargs="*", metavar="NAME", help="datasets to check (default: every one that reads files)")
    check.add_argument("--data-root", help="folder holding dataset folders (default $BENCH_DATA_ROOT or ~/.cache/removal-bench)")
    check.set_defaults(handler=command_check)

    fetch = commands.add_parser("fetch", help="download a dataset's missing files and verify them")
    fetch.add_argument("name", metavar="NAME", help="the dataset, with options to fetch only the files they read "
                                                    "(biased_mnist:source=mnist)")
    fetch.add_argument("--data-root", help="folder holding dataset folders (default $BENCH_DATA_ROOT or ~/.cache/removal-bench)")
    fetch.set_defaults(handler=command_fetch)


def _usage(parser: argparse.ArgumentParser) -> int:
    raise UserError(f"{parser.prog}: expected a command, check or fetch (see {parser.prog} --help)")
