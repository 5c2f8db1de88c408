"""The built-in methods, datasets and encoders without importing them: a command line that answers at once.

Every method and dataset module imports torch (3-5 s on a quiet 2-core machine, 12-15 s on a loaded one), so
``bench list`` and the argument checks that need a name (``bench run --methods nope``,
``--datasets colored_digits:rho=abc``, ``bench data fetch nope``) used to take as long as torch. This module
holds what they need, generated from the registries into :mod:`removal_bench.running.catalogue_data`:

- per method its hyperparameters (:class:`~removal_bench.core.params.Param`) and its ``bench list`` lines;
- per dataset its options, whether it reads files, and its ``bench list`` lines; the encoders' names.

It is used only where no plugin is in play (no entry point installed in the plugin groups, no import path
among the names): plugins are checked by loading them, as before. A request the catalogue passes is
checked again by the registries when the command plans its trials, so the catalogue can only answer
sooner, never differently. ``python -m removal_bench.running.catalogue`` rewrites the data file;
``tests/test_catalogue.py`` fails when the committed file differs from what the registries give, so it
cannot drift from the code.

The name parsing that the commands share (:func:`split_names`, :func:`parse_dataset`, :func:`is_import_path`)
is :mod:`removal_bench.running.names` (no torch); re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from removal_bench.core.errors import UserError
from removal_bench.core.params import Param, resolve
from removal_bench.core.registry import Registry
from removal_bench.running.names import built_in_version, is_import_path, parse_dataset, split_names  # noqa: F401

DATA_FILE = Path(__file__).with_name("catalogue_data.py")
PLUGIN_GROUPS = ("removal_bench.methods", "removal_bench.datasets")


# ------------------------------------------------------------------------------------------ the listing

def method_lines(cls) -> list[str]:
    """A method's ``bench list`` lines but the second (``from ...``, which names the installed version)."""
    lines = [f"  {cls.name:<12} {cls.description}"]
    for hp, param in cls.hparams.items():
        lines.append(f"      {hp:<18} {param.describe()}{'  ' + param.help if param.help else ''}")
    if cls.strength:
        lines.append("      strength (--curve): " + ", ".join(f"{hp} {low:g}..{high:g}" for hp, (low, high) in cls.strength.items()))
    for dataset, recipe in sorted(cls.reference_recipes.items()):
        lines.append(f"      recipe on {dataset} (--recipe reference): {recipe.describe()}")
    return lines


def dataset_lines(cls) -> list[str]:
    """A dataset's ``bench list`` lines but the second (``from ...``)."""
    needs = "  (reads files from the data root)" if cls.needs_data() else ""
    lines = [f"  {cls.name:<15} {cls.description}{needs}"]
    for option, param in cls.options.items():
        lines.append(f"      {option:<18} {param.describe()}{'  ' + param.help if param.help else ''}")
    lines.append(f"      recipe: {cls.recipe_for({k: p.default for k, p in cls.options.items()}).describe()}")
    for recipe_name, recipe in sorted(cls.named_recipes.items()):
        lines.append(f"      recipe --recipe {recipe_name} (reduced): {recipe.describe()}")
    return lines


def print_listing(methods: dict[str, list[str]], datasets: dict[str, list[str]], encoders: list[str],
                  origin, out=None) -> None:
    """``bench list``: ``origin(kind, name)`` gives each entry's ``from`` line (package and version); to ``out``,
    sys.stdout by default (read at the call: a test or a caller may have replaced it)."""
    out = out or sys.stdout
    for title, kind, entries in (("methods:", "method", methods), ("\ndatasets:", "dataset", datasets)):
        print(title, file=out)
        for name, lines in sorted(entries.items()):
            print(lines[0], file=out)
            print(f"      from {origin(kind, name)}", file=out)
            for line in lines[1:]:
                print(line, file=out)
    print(MODEL_FORM, file=out)
    print("\nencoders: " + ", ".join(sorted(encoders)), file=out)


# Recipe fields that build the model around a method's loss as some methods' authors build it (docs/METHODS.md).
MODEL_FORM = """
model form (any trial, any method: --train FIELD=VALUE; logged with the recipe, in the protocol fingerprint: the authors' form ranks apart from the common one):
      bottleneck   default 'default', one of default/bounded  bounded: the encoder's bottleneck ends in BatchNorm + Tanh, as the SimpleConvNet of IRENE and EnD
      head         default 'linear', one of linear/normalised  normalised: the task head reads z/||z|| (EnD's pattern_norm); methods' heads and attackers read z"""


# ------------------------------------------------------------------------------------------ generating

def _literal(value: Any) -> str:
    """Python source for a value of a Param (numbers, strings, tuples, a search space, a type)."""
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, tuple):
        return "(" + "".join(_literal(v) + ", " for v in value) + ")"
    if dataclasses.is_dataclass(value):
        fields = ", ".join(f"{f.name}={_literal(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return f"{type(value).__name__}({fields})"
    return repr(value)


def generate() -> str:
    """The source of ``catalogue_data.py`` from the registries (imports every built-in: torch)."""
    import removal_bench.datasets as dataset_registry
    import removal_bench.methods as method_registry
    from removal_bench.core import params
    from removal_bench.core.encoders import ENCODERS

    def built_in(cls) -> bool:  # a plugin loaded in this process is not the catalogue's
        return cls.__module__.startswith(("removal_bench.methods.", "removal_bench.datasets."))

    spaces = sorted(name for name in dir(params) if dataclasses.is_dataclass(getattr(params, name))
                    and isinstance(getattr(params, name), type) and name != "Param")
    out = ['"""Generated by `python -m removal_bench.running.catalogue` from the registries: do not edit by hand.',
           "",
           "What `bench list` and the argument checks read without importing torch (removal_bench.running.catalogue);",
           'tests/test_catalogue.py fails when this file differs from what the registries give."""',
           "", f"from removal_bench.core.params import {', '.join(['Param', *spaces])}  # noqa: F401", ""]

    def params_source(declared: dict[str, Param]) -> str:
        return "{" + ", ".join(f"{name!r}: {_literal(param)}" for name, param in declared.items()) + "}"

    def lines_source(lines: list[str]) -> str:
        return "[\n" + "".join(f"            {line!r},\n" for line in lines) + "        ]"

    out.append("METHODS = {")
    for name, cls in sorted(method_registry.REGISTRY.items()):
        if built_in(cls):
            out.append(f"    {name!r}: {{\n        'hparams': {params_source(cls.hparams)},\n"
                       f"        'lines': {lines_source(method_lines(cls))},\n    }},")
    out.append("}")
    out.append("DATASETS = {")
    for name, cls in sorted(dataset_registry.REGISTRY.items()):
        if built_in(cls):
            out.append(f"    {name!r}: {{\n        'options': {params_source(cls.options)},\n"
                       f"        'needs_data': {cls.needs_data()!r},\n"
                       f"        'lines': {lines_source(dataset_lines(cls))},\n    }},")
    out.append("}")
    out.append(f"ENCODERS = {sorted(ENCODERS)!r}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ reading

@dataclasses.dataclass(frozen=True)
class Entry:
    """What the catalogue knows of one built-in: enough for :class:`Registry.lookup`'s message and the checks."""

    name: str
    params: dict[str, Param]
    needs_data: bool = False


def _data():
    from removal_bench.running import catalogue_data

    return catalogue_data


def registries(live: bool = True) -> tuple[Registry, Registry]:
    """Light stand-ins of the method and dataset registries: the same names, the same unknown-name message.

    ``live``: also the names that this process registered itself, where it imported the registries."""
    data = _data()
    methods: Registry = Registry("method")
    datasets: Registry = Registry("dataset")
    for name, entry in data.METHODS.items():
        methods[name] = Entry(name, entry["hparams"])
    for name, entry in data.DATASETS.items():
        datasets[name] = Entry(name, entry["options"], entry["needs_data"])
    # names this process registered itself (an embedding program, a test's method): known to the live registries
    for module, kind, stand_in in (("removal_bench.methods", "hparams", methods), ("removal_bench.datasets", "options", datasets)):
        for name, cls in (getattr(sys.modules.get(module), "REGISTRY", {}) if live else {}).items():
            if name not in stand_in:
                stand_in[name] = Entry(name, getattr(cls, kind), kind == "options" and cls.needs_data())
    return methods, datasets


def plugins_installed() -> bool:
    """Whether any package declares an entry point in the plugin groups (they must be loaded to be known)."""
    return any(True for group in PLUGIN_GROUPS for _ in metadata.entry_points(group=group))


def _registries_loaded() -> bool:
    """Whether this process has imported the real registries (an embedding program or a test that registers a
    method in-process: its names are not in the catalogue, and the planner checks them at no import cost)."""
    return "removal_bench.methods" in sys.modules or "removal_bench.datasets" in sys.modules


def applies() -> bool:
    """Whether ``bench list`` may print the catalogue: no plugin installed, and the registries not imported by this
    process already (then they are the truth, at no import cost, and may hold names registered in-process)."""
    return not plugins_installed() and not _registries_loaded()


def print_built_ins(out=None) -> None:
    """``bench list`` with no plugin in play: the catalogue's lines, no torch."""
    data = _data()
    print_listing({name: entry["lines"] for name, entry in data.METHODS.items()},
                  {name: entry["lines"] for name, entry in data.DATASETS.items()}, data.ENCODERS,
                  lambda kind, name: built_in_version(), out)


def check_request(request) -> None:
    """The checks of a run or sweep request that need only names and options, answered from the catalogue.

    ``request`` is a RunRequest or the parsed arguments (the same attribute names). Does nothing where a plugin
    is in play (an import path among the names, or any plugin installed): the registries check those when
    the command plans. The errors are those the planning raises, in its order."""
    from removal_bench.core.recipes import check_source
    from removal_bench.running import preflight

    methods_given = split_names(request.methods) if request.methods else []
    texts = split_names(request.datasets) if request.datasets else []
    if any(is_import_path(name) for name in methods_given) or plugins_installed():
        return
    methods, datasets = registries()
    if methods_given and methods_given != ["all"]:
        for name in methods_given:
            methods.lookup(name)
    for text in texts:
        head = text.split(":")[0].strip()
        if head not in datasets and is_import_path(text):
            return
    preflight.validate_request(request)
    check_source(request.recipe)
    for text in texts:
        name, given = parse_dataset(text)
        resolve(name, datasets.lookup(name).params, given)
    preflight.device(request.device, local=False)  # the name only: whether this machine has it, when planning


def main() -> int:
    DATA_FILE.write_text(generate())
    print(f"wrote {DATA_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
