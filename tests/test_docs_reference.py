"""docs/USAGE.md's command-line reference is what the parsers print, and the README's tour stays a front door.

The reference is generated (``python -m removal_bench.commands.reference``): an option added, renamed or
re-documented in a parser without regenerating the page fails here, so the manual cannot drift from the
program (the hypervolume's reference point once did, in hand-written prose).
"""

from __future__ import annotations

import re
from pathlib import Path

from removal_bench.commands import reference

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_reference_is_what_the_parsers_print():
    page = (ROOT / "docs" / "USAGE.md").read_text()
    assert reference.BEGIN in page, "docs/USAGE.md has no generated reference: python -m removal_bench.commands.reference"
    committed = page.split(reference.BEGIN, 1)[1]
    generated = reference.reference().split(reference.BEGIN, 1)[1]
    if committed != generated:
        mine, theirs = committed.splitlines(), generated.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
        raise AssertionError(
            f"docs/USAGE.md differs from the parsers from line {first} of its reference on (page: "
            f"{mine[first] if first < len(mine) else '<end>'!r}, parsers: {theirs[first] if first < len(theirs) else '<end>'!r}): "
            "run python -m removal_bench.commands.reference")


def test_the_reference_has_every_option_of_every_command():
    """The generated part holds each parser's options (a section per command, none dropped)."""
    from tests.test_startup import commands
    from removal_bench.commands.cli import build_parser

    page = (ROOT / "docs" / "USAGE.md").read_text().split(reference.BEGIN, 1)[1]
    parser = build_parser()
    for words in commands():
        title = " ".join(["bench", *words])
        assert f"### `{title}`" in page, title
        command = parser
        for word in words:
            command = next(a for a in command._actions if a.__class__.__name__ == "_SubParsersAction").choices[word]
        section = page.split(f"### `{title}`", 1)[1].split("\n### ", 1)[0]
        for action in command._actions:
            for option in action.option_strings:
                assert option in section, f"{title}: {option} is not in docs/USAGE.md"


def test_the_check_mode_fails_on_a_stale_page(tmp_path):
    stale = tmp_path / "USAGE.md"
    stale.write_text("# manual\n\n" + reference.BEGIN + "\n\n### `bench run`\n\nan old text\n")
    assert reference.main(["--check", "--page", str(stale)]) == 1
    assert reference.main(["--page", str(stale)]) == 0
    assert stale.read_text().startswith("# manual\n\n" + reference.BEGIN)
    assert reference.main(["--check", "--page", str(stale)]) == 0


def test_readme_is_a_front_door():
    """At most about 200 lines; the two commands first; the tour's seven steps; links to the manual."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 210
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines()[0].startswith("make run ") and first_block.splitlines()[1].startswith("make test ")
    steps = re.findall(r"^\*\*(\d)\. ([^*]+)\*\*", text, re.M)
    assert [number for number, _ in steps] == list("1234567"), steps
    for link in ("docs/USAGE.md", "docs/PROTOCOL.md", "results/README.md"):
        assert link in text


def test_readme_and_bench_list_cite_hsic_alike():
    """One citation per method: the README's methods table names the work `bench list` names."""
    from removal_bench.methods import REGISTRY

    text = (ROOT / "README.md").read_text()
    for name, cls in REGISTRY.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"README's methods table lacks {name}"
        cited = re.search(r"\(([A-Z][^()]*?)\s(\d{4})\)$", cls.description)  # "(Bahng et al. 2020)"
        if cited:
            author, year = cited.group(1).split(" and ")[0].split(",")[0].split(" et al.")[0], cited.group(2)
            source = row.rstrip(" |").rsplit("|", 1)[1]
            assert author in source and year in source, f"{name}: bench list cites {cited.group(0)}, README {source.strip()!r}"
