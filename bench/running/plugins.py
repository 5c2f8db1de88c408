"""Methods and datasets from other packages: entry points and import paths, checked, with provenance.

A researcher benchmarks a method of their own without forking this repository, in one of two ways:

- **Entry points.** An installed package declares, in its ``pyproject.toml``::

      [project.entry-points."removal_bench.methods"]
      my_method = "my_package.module:MyMethod"

  (the group ``removal_bench.datasets`` for datasets; the entry point's name is the class's ``name``).
  :func:`load_entry_points` loads every one of them; ``bench list`` shows them and ``--methods all``
  includes them. An installed plugin that fails its checks is skipped with one warning line on stderr
  (so that one broken package does not stop every command); naming it is then the error, with the reason.
- **Import paths.** ``--methods my_package.module:MyMethod`` (``--datasets`` likewise, options after
  it: ``my_package.data:MyData:rho=0.9``) imports the class for this invocation. The working folder
  is on the import path (last, after the installed packages), so a ``my_method.py`` beside the user works too.

Either way the class is checked before any trial (:func:`check_method`, :func:`check_dataset`): it
must derive from :class:`removal_bench.methods.base.Method` (or ``Dataset``), have a plain ``name``
(letters, digits, ``_``, ``-``: it is used in file names, HTML and ``--set NAME.X=...``), a one-line
``description``, its hyperparameters or options as :class:`removal_bench.core.params.Param`, the
training step or ``load``, and a ``strength`` within its hyperparameters; it must not take the name
of a built-in or of another plugin. Anything else is a :class:`UserError`: one line, exit status 2.

Each trial's config carries its plugins' records under ``config["plugins"]`` (not part of the
config hash: built-in trials keep their hashes): how to load the class again (so that a Ray
worker, another process, finds it: :func:`ensure_loaded`), and its provenance, which the tracker
logs as tags: ``plugin.<method|dataset>.package``, ``.version``, ``.source_sha256`` (SHA-256 of the
class's source file), ``.origin`` (``entry point`` or ``import path``) and ``.spec``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
import sys
from importlib import metadata
from typing import Any

import removal_bench.datasets as dataset_registry
import removal_bench.methods as method_registry
from removal_bench.core.errors import UserError
from removal_bench.running.names import built_in_version, is_import_path  # noqa: F401  (is_import_path: used here and by tests)
from removal_bench.core.params import Param
from removal_bench.core.registry import NameTaken

GROUPS = {"method": "removal_bench.methods", "dataset": "removal_bench.datasets"}
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

# (kind, name) -> record: every plugin this process loaded (see :func:`record_of`).
LOADED: dict[tuple[str, str], dict[str, str]] = {}
_ENTRY_POINTS_LOADED = False


def _registry(kind: str):
    return method_registry.REGISTRY if kind == "method" else dataset_registry.REGISTRY


def _base(kind: str) -> type:
    return method_registry.Method if kind == "method" else dataset_registry.Dataset


def split_dataset_text(text: str) -> tuple[str, list[str]]:
    """``pkg.mod:Data:rho=0.9`` -> (``pkg.mod:Data``, [``rho=0.9``]); ``adult:private=sex`` -> (``adult``, [...])."""
    parts = text.split(":")
    if parts[0].strip() in dataset_registry.REGISTRY:  # a registered name: what follows are options (``adult:rho``)
        return parts[0], parts[1:]
    if len(parts) > 1 and "=" not in parts[1] and "=" not in parts[0]:
        return f"{parts[0]}:{parts[1]}", parts[2:]
    return parts[0], parts[1:]


# --------------------------------------------------------------------------- checks


def _fail(kind: str, where: str, problem: str) -> UserError:
    return UserError(f"{kind} plugin {where} {problem}")


def _check_common(kind: str, cls: Any, where: str) -> None:
    base = _base(kind)
    if not inspect.isclass(cls) or not issubclass(cls, base) or cls is base:
        what = type(cls).__name__ if not inspect.isclass(cls) else f"class {cls.__qualname__}"
        raise _fail(kind, where, f"is not a subclass of {base.__module__}.{base.__name__} (it is a {what})")
    name = vars(cls).get("name", "")  # its own: a subclass of vanilla does not inherit the name "vanilla"
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _fail(kind, where, f"has no usable name ({name!r}): set the class attribute name to letters, digits, "
                                 "'_' or '-', starting with a letter")
    description = vars(cls).get("description", "")  # its own, likewise
    if not isinstance(description, str) or not description.strip():
        raise _fail(kind, where, "has no description of its own: set the class attribute description to one line")
    declared = cls.hparams if kind == "method" else cls.options
    label = "hparams" if kind == "method" else "options"
    if not isinstance(declared, dict):
        raise _fail(kind, where, f"declares {label} as a {type(declared).__name__}, not a dict of name -> Param")
    for key, param in declared.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise _fail(kind, where, f"declares {label} entry {key!r}: names are Python identifiers")
        if not isinstance(param, Param):
            raise _fail(kind, where, f"declares {label}[{key!r}] as a {type(param).__name__}, not a "
                                     "removal_bench.core.params.Param")


def check_method(cls: Any, where: str) -> None:
    """UserError unless ``cls`` is a usable method class (see the module's docstring)."""
    _check_common("method", cls, where)
    Method = method_registry.Method
    if cls.update is Method.update:
        raise _fail("method", where, "does not implement update(x, y, s), the training step")
    strength = getattr(cls, "strength", {})
    if not isinstance(strength, dict):
        raise _fail("method", where, f"declares strength as a {type(strength).__name__}, not a dict")
    for key, bounds in strength.items():
        if key not in cls.hparams:
            raise _fail("method", where, f"declares strength {key!r}, which is not among its hparams "
                                         f"({', '.join(cls.hparams) or 'none'})")
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise _fail("method", where, f"declares strength {key!r} as {bounds!r}, not (low, high)") from None
        if not 0 < low < high:
            raise _fail("method", where, f"declares strength {key!r} as ({low:g}, {high:g}): the curve is "
                                         "log-spaced, so 0 < low < high")


def check_dataset(cls: Any, where: str) -> None:
    """UserError unless ``cls`` is a usable dataset class (see the module's docstring)."""
    _check_common("dataset", cls, where)
    if cls.load is dataset_registry.Dataset.load:
        raise _fail("dataset", where, "does not implement load(options, data_root)")


CHECKS = {"method": check_method, "dataset": check_dataset}


# --------------------------------------------------------------------------- provenance


def source_sha256(cls: type) -> str:
    """SHA-256 of the file that defines ``cls`` ("" when it has none: a class made at run time)."""
    try:
        path = inspect.getsourcefile(cls) or sys.modules[cls.__module__].__file__
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except (TypeError, OSError, KeyError, AttributeError):
        return ""


def _distribution_of(module: str) -> tuple[str, str]:
    """The installed distribution (name, version) that provides ``module``'s top-level package, or ("", "")."""
    top = module.split(".")[0]
    names = metadata.packages_distributions().get(top, [])
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "", ""


def _record(kind: str, cls: type, origin: str, spec: str, package: str, version: str, path: str = "") -> dict[str, str]:
    return {"kind": kind, "name": cls.name, "origin": origin, "spec": spec, "package": package or "(not installed)",
            "version": version or "", "source_sha256": source_sha256(cls), "path": path}


def _register(kind: str, cls: type, record: dict[str, str], where: str) -> None:
    registry = _registry(kind)
    held = registry.get(cls.name)
    if held is not None and held is not cls:
        other = LOADED.get((kind, cls.name))
        owner = f"the plugin from {other['package']} ({other['spec']})" if other else \
            f"the built-in {kind} {held.__module__}.{held.__qualname__}"
        raise _fail(kind, where, f"takes the name {cls.name!r}, which {owner} has")
    CHECKS[kind](cls, where)
    registry.register(cls)
    LOADED[(kind, cls.name)] = record


def _import(kind: str, spec: str, where: str, path: str = ""):
    module_name, _, attribute = spec.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if path and path not in sys.path:  # last: an installed module of the same name wins over a stray file
        sys.path.append(path)
    registry = _registry(kind)
    before = dict(registry)
    try:
        module = importlib.import_module(module_name)
    except NameTaken as error:  # the module registered itself with @register under a taken name
        raise _fail(kind, where, f"takes a name that is already registered: {error}") from None
    except Exception as error:  # noqa: BLE001: any failure of a user's module is theirs to fix, in one line
        text = " ".join(str(error).split())[:300]
        raise _fail(kind, where, f"failed to import: {type(error).__name__}: {text}") from None
    try:
        found = module
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise _fail(kind, where, f"failed to import: module {module_name!r} has no attribute {attribute!r}") from None
    # A module that decorated its class with @register has registered it already: take it out again,
    # so that the checks below run (and a failing class is not left behind).
    for name, cls in list(registry.items()):
        if name not in before:
            del registry[name]
    return found, module


def load_path(kind: str, spec: str) -> str:
    """Load the class at ``spec`` (``package.module:Class``), check and register it; its name."""
    where = repr(spec)
    for record in LOADED.values():
        if record["kind"] == kind and record["spec"] == spec:
            return record["name"]
    found, module = _import(kind, spec, where, _working_folder())
    if inspect.isclass(found):
        CHECKS[kind](found, where)
    else:
        _check_common(kind, found, where)  # raises: not a class
    package, version = _distribution_of(module.__name__)
    path = "" if package else _import_root(module)
    _register(kind, found, _record(kind, found, "import path", spec, package, version, path), where)
    return found.name


def _working_folder() -> str:
    """The working folder, put on the import path for ``--methods module:Class`` (as ``python -m`` does)."""
    return os.getcwd()


def _import_root(module) -> str:
    """The ``sys.path`` folder that ``module`` was found under (so that another process finds it too)."""
    file = getattr(module, "__file__", None)
    if not file:
        return ""
    folder = os.path.dirname(os.path.abspath(file))
    for _ in module.__name__.split(".")[1:] if not file.endswith("__init__.py") else module.__name__.split("."):
        folder = os.path.dirname(folder)
    return folder


def load_entry_points() -> None:
    """Load, check and register every installed method and dataset plugin (once per process)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    for kind, group in GROUPS.items():
        for entry in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            package = entry.dist.name if entry.dist else ""
            version = entry.dist.version if entry.dist else ""
            where = f"{entry.name!r} (entry point {entry.value!r} of package {package or '?'})"
            if (kind, entry.name) in LOADED or entry.name in _registry(kind).unavailable:
                continue
            try:
                _load_entry_point(kind, entry, where, package, version)
            except UserError as error:  # one broken package must not stop every command: skipped, said once
                _registry(kind).unavailable[entry.name] = str(error)
                print(f"bench: warning: {error} (skipped; naming it is an error until the package is fixed or "
                      "uninstalled)", file=sys.stderr)
    _ENTRY_POINTS_LOADED = True


def _load_entry_point(kind: str, entry: metadata.EntryPoint, where: str, package: str, version: str) -> None:
    found, module = _import(kind, entry.value, where)
    if inspect.isclass(found):
        CHECKS[kind](found, where)
    else:
        _check_common(kind, found, where)
    if found.name != entry.name:
        raise _fail(kind, where, f"names class {found.__qualname__}, whose name is {found.name!r}: "
                                 "the entry point's name must be the class's name")
    _register(kind, found, _record(kind, found, "entry point", entry.value, package, version), where)


def resolve_methods(names: list[str]) -> list[str]:
    """Command-line method names with import paths replaced by the names of the classes they load."""
    return [load_path("method", name) if is_import_path(name) else name for name in names]


def resolve_dataset_text(text: str) -> str:
    """``pkg.mod:Data:rho=0.9`` -> ``data_name:rho=0.9`` (loading the class); other texts unchanged."""
    head, options = split_dataset_text(text)
    if not is_import_path(head):
        return text
    return ":".join([load_path("dataset", head), *options])


def record_of(kind: str, name: str) -> dict[str, str] | None:
    """The plugin record of a registered name; None for a built-in."""
    return LOADED.get((kind, name))


def describe(kind: str, name: str) -> str:
    """``package version`` of where a registered class comes from (``bench list``)."""
    record = record_of(kind, name)
    if record is None:
        return built_in_version()
    version = f" {record['version']}" if record["version"] else ""
    return f"{record['package']}{version}, {record['origin']} {record['spec']}"


def records_for(method: str, dataset: str) -> dict[str, dict[str, str]]:
    """What a trial's config carries under ``plugins``: the records of its method and dataset, if plugins."""
    out = {}
    for kind, name in (("method", method), ("dataset", dataset)):
        record = record_of(kind, name)
        if record is not None:
            out[kind] = dict(record)
    return out


def ensure_loaded(config: dict[str, Any]) -> None:
    """In any process (a Ray worker, ``bench verify``): register the plugins a trial's config names."""
    for kind, record in (config.get("plugins") or {}).items():
        if record["name"] in _registry(kind):
            continue
        if record["origin"] == "entry point":
            load_entry_points()
        else:
            found, module = _import(kind, record["spec"], repr(record["spec"]), record.get("path") or _working_folder())
            # what is loaded here (its source hash may differ from the record's: bench verify says so)
            loaded = {**record, "source_sha256": source_sha256(found)} if inspect.isclass(found) else dict(record)
            _register(kind, found, loaded, repr(record["spec"]))


def tags(config: dict[str, Any]) -> dict[str, str]:
    """MLflow tags of a trial's plugins: ``plugin.<kind>.<field>`` (none for built-ins)."""
    out = {}
    for kind, record in (config.get("plugins") or {}).items():
        for field in ("package", "version", "source_sha256", "origin", "spec"):
            out[f"plugin.{kind}.{field}"] = record.get(field, "")
    return out
