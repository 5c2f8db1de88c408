"""The command-line reference of docs/USAGE.md, written from the parsers themselves.

    python -m removal_bench.commands.reference           # rewrite the generated part of docs/USAGE.md
    python -m removal_bench.commands.reference --check   # exit status 1 when the page differs from the parsers

The page's generated part starts at :data:`BEGIN` and runs to its end: one section per command (``bench data``'s
subcommands each have their own), holding what ``bench <command> --help`` prints at a fixed width of
:data:`WIDTH` columns. ``tests/test_docs_reference.py`` fails when the committed page differs from what the
parsers give, so an option cannot change without its documentation.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

WIDTH = 100
BEGIN = "<!-- generated from the parsers by `python -m removal_bench.commands.reference`: do not edit below -->"
PAGE = Path(__file__).resolve().parents[2] / "docs" / "USAGE.md"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    """``parser``'s help at :data:`WIDTH` columns, whatever the terminal (argparse reads ``COLUMNS``)."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        return parser.format_help().rstrip() + "\n"
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def reference() -> str:
    """The generated part: ``bench --help``, then every command's (and ``bench data``'s subcommands')."""
    from removal_bench.commands.cli import build_parser

    parser = build_parser()
    sections = [("bench", parser)]
    for name, command in _subcommands(parser).items():
        sections.append((f"bench {name}", command))
        sections += [(f"bench {name} {sub}", child) for sub, child in _subcommands(command).items()]
    lines = [BEGIN, "", "## Command-line reference", "",
             "What `bench <command> --help` prints, for every command (`" + "`, `".join(n for n, _ in sections[1:]) + "`).", ""]
    for title, command in sections:
        lines += [f"### `{title}`", "", "```text", _help(command).rstrip(), "```", ""]
    return "\n".join(lines)


def page_with_reference(page: str) -> str:
    """``page`` with everything from :data:`BEGIN` on replaced by :func:`reference` (appended if it has none)."""
    head = page.split(BEGIN, 1)[0] if BEGIN in page else page.rstrip() + "\n\n"
    return head + reference()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m removal_bench.commands.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only: exit status 1 when the page is out of date")
    parser.add_argument("--page", type=Path, default=PAGE, help=f"the page (default {PAGE})")
    args = parser.parse_args(argv)
    current = args.page.read_text() if args.page.exists() else ""
    wanted = page_with_reference(current)
    if args.check:
        if current != wanted:
            print(f"{args.page} is out of date with the parsers: run python -m removal_bench.commands.reference",
                  file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        args.page.write_text(wanted)
        print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
