"""The names of a request, parsed without the registries (torch): shared by the command line, the planner,
the plugins and the catalogue (:mod:`removal_bench.running.catalogue`). Imports nothing of ours but core."""

from __future__ import annotations

from importlib import metadata

from removal_bench.core.errors import UserError
from removal_bench.core.params import parse_assignments

BUILT_IN_PACKAGE = "removal-bench"  # the distribution that installs the built-in methods and datasets


def split_names(values: list[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``; empty items are an error."""
    names = []
    for value in values or []:
        for item in value.split(","):
            if not item.strip():
                raise UserError(f"empty name in {value!r}")
            names.append(item.strip())
    return names


def parse_dataset(text: str) -> tuple[str, dict[str, str]]:
    """``colored_digits:rho=0.99:colourings=5`` -> name and raw options."""
    name, *assignments = text.split(":")
    return name.strip(), parse_assignments(assignments, f"option of dataset {name.strip()!r}")


def is_import_path(text: str) -> bool:
    """``package.module:Class`` (a colon, and no ``=`` before it)."""
    module, sep, attribute = text.partition(":")
    return bool(sep) and "=" not in module and bool(module.strip()) and "=" not in attribute.split(":")[0]


def built_in_version() -> str:
    """``removal-bench X``: where a built-in comes from (`bench list`; :func:`removal_bench.running.plugins.describe`)."""
    try:
        return f"{BUILT_IN_PACKAGE} {metadata.version(BUILT_IN_PACKAGE)}"
    except metadata.PackageNotFoundError:
        return BUILT_IN_PACKAGE
