"""The words a user reads name what the software does, papers, files and commits, never a tracker's numbers.

Users cannot see the project's issue tracker, so a reference to one of its issues ("issue" and a number) in the
code, the docs, the committed results' text or a recipe's citation (logged with every trial as
``recipe.citation``) points at nothing. What changed when belongs in CHANGELOG.md, citing commits.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRACKER_NUMBER = re.compile(r"\bissues?\s+#?\d+", re.IGNORECASE)

CODE = ("bench", "methods", "datasets", "examples", "tests")  # every text file under them
RESULT_SUFFIXES = (".md", ".sh", ".toml", ".txt")  # results/: text only, never the .gz tables
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", "node_modules"}

# Files whose wording is being changed elsewhere right now, with the most tracker numbers each may still hold.
# Remove an entry once its file is clean; a file never gains one here.
PENDING: dict[str, int] = {}


def _text_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and not SKIPPED_PARTS & set(path.parts) and not any(
                    part.endswith(".egg-info") for part in path.parts):
                files.append(path)
    files += [path for path in sorted((ROOT / "results").rglob("*"))
              if path.is_file() and path.suffix in RESULT_SUFFIXES]
    return [path for path in files if path.resolve() != Path(__file__).resolve()]


def _read(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary (a .pyc, a plot, a compressed table)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _hits(text: str) -> list[str]:
    return [f"l. {text.count(chr(10), 0, found.start()) + 1}: {found.group(0)!r}"
            for found in TRACKER_NUMBER.finditer(text)]


def test_no_tracker_number_in_code_docs_or_results():
    found = {}
    for path in _text_files():
        text = _read(path)
        if text is None:
            continue
        hits = _hits(text)
        name = path.relative_to(ROOT).as_posix()
        if len(hits) > PENDING.get(name, 0):
            found[name] = hits
    assert not found, ("tracker numbers where users read (say what the software does; history goes in "
                       f"CHANGELOG.md): {found}")


def _recipes() -> dict[str, object]:
    import removal_bench.datasets as datasets
    import removal_bench.methods as methods
    from removal_bench.core import recipes
    from removal_bench.core.recipes import Recipe

    found = {f"core.recipes.{name}": value for name, value in vars(recipes).items() if isinstance(value, Recipe)}
    for name, cls in datasets.REGISTRY.items():
        if isinstance(getattr(cls, "recipe", None), Recipe):
            found[f"dataset {name}: recipe"] = cls.recipe
        for recipe_name, recipe in getattr(cls, "named_recipes", {}).items():
            found[f"dataset {name}: --recipe {recipe_name}"] = recipe
    for name, cls in methods.REGISTRY.items():
        for dataset, recipe in getattr(cls, "reference_recipes", {}).items():
            found[f"method {name}: reference recipe for {dataset}"] = recipe
    return found


def test_no_tracker_number_in_any_recipe_citation():
    """Every trial logs its recipe's citation as a parameter: it names papers, commits or doc sections."""
    recipes = _recipes()
    assert any(name.startswith("dataset biased_mnist: --recipe") for name in recipes)  # the walk finds them
    cited = {name: recipe.citation for name, recipe in recipes.items() if TRACKER_NUMBER.search(recipe.citation or "")}
    assert not cited, cited


@pytest.mark.parametrize("text, hit", [
    ("(issue 26, docs/BIASED_MNIST.md)", True), ("Issue 30: SIGTERM", True), ("issues 27 and 28", True),
    ("see issue #12", True), ("an issue with 3 seeds", False), ("tissue 5", False), ("1956a69", False),
])
def test_the_pattern(text, hit):
    assert bool(TRACKER_NUMBER.search(text)) is hit


def test_a_pending_entry_goes_when_its_file_is_clean():
    """PENDING lists only files that still hold a tracker number: a cleaned file loses its allowance."""
    for name in PENDING:
        path = ROOT / name
        assert path.is_file() and _hits(_read(path) or ""), f"{name} is clean (or gone): drop its PENDING entry"
