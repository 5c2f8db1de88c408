"""``bench verify FILE``: re-run a sample of a trial table's trials from their identity and test the figures.

Each sampled trial is rebuilt from its ``identity`` (the tag ``bench.identity``: method, dataset and
options, hyperparameters, seed, recipe; :mod:`removal_bench.running.protocol`); the rebuilt config must
hash to the row's ``config_hash``, else the row is reported as not rebuildable. A plugin's class is
loaded as the row's ``plugins`` record says (entry point or import path: it must be installed here).
Trials run in this process (:func:`removal_bench.running.trial.execute_trial`, no MLflow, nothing written)
on the row's torch thread count (``torch_threads``, 1 when the row predates it).

What can be expected depends on where the trial ran (docs/VERIFY.md):

- **exact**: the row's hardware fingerprint (tags ``fingerprint.*``: CPU model, the ISA torch's kernels
  dispatch to, native bf16, threads, math library, machine; :func:`removal_bench.core.hardware.fingerprint`)
  and the versions of the packages that compute (:data:`COMPUTING_PACKAGES`) are this machine's. A trial is
  deterministic there (``tests/test_determinism.py``): the sampled trial is run again and every figure of
  :data:`FIGURES` must come back bit-identical (``--tolerance`` relaxes that).
- **distribution**: anything else, a row without a fingerprint included (trials from before it was logged:
  unknown machine). Training diverges across CPUs and math libraries by about one seed's spread, so one
  trial's figures say nothing; the sampled trial's whole configuration is run again (all the seeds the table
  has of it, or the first ``--seeds N``) and each figure's rerun seeds are tested against the table's seeds
  with Welch's two-sample t-test. The family of tests (every figure of every configuration checked in one
  call) holds a family-wise error of ``--alpha`` (default 0.01, Bonferroni): a figure fails when its p-value
  is below alpha / (number of tests). The committed mean's 95% bootstrap interval over seeds is printed
  beside it, for reading, not for the verdict (the rerun mean has its own noise: a mean of as many seeds
  falls outside the other's 95% interval about one time in six when nothing differs).

Times are never compared.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from removal_bench.core.errors import UserError
from removal_bench.reporting.export import FIGURES

COMPUTING_PACKAGES = ("torch", "numpy", "scikit-learn", "concept-erasure")  # ray and mlflow compute no figure
MODES = ("auto", "exact", "distribution")


@dataclass
class Checked:
    run_id: str
    where: str
    verdict: str  # identical, within, differs, failed, not rebuildable; distribution: same distribution, differs, untestable
    differences: list[str] = field(default_factory=list)
    largest: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. a plugin whose source is not the one the row ran
    mode: str = "exact"


def _threads(record: dict[str, Any]) -> int:
    text = record.get("tags", {}).get("fingerprint.threads") or record.get("metrics", {}).get("torch_threads") or 1
    try:
        return max(int(float(text)), 1)
    except (TypeError, ValueError):
        return 1


def mode_of(record: dict[str, Any], device: str) -> tuple[str, str]:
    """("exact" or "distribution", why): exact only where the row's fingerprint and computing packages are
    this machine's."""
    tags = record.get("tags", {})
    recorded = {key: value for key, value in tags.items() if key.startswith("fingerprint.")}
    if not recorded:
        return "distribution", "no hardware fingerprint recorded (a trial from before it was logged): unknown machine"
    from removal_bench.core.hardware import fingerprint
    from removal_bench.running.tracking import package_versions

    path = tags.get("compute_path", "")
    if path.startswith("cuda") != device.startswith("cuda"):
        return "distribution", f"it computed on {path.split()[0]}, this check on {device}"
    here = fingerprint(_threads(record))
    differ = [f"{key[len('fingerprint.'):]} {recorded.get(key, '(none)')!r} there, {value!r} here"
              for key, value in here.items() if recorded.get(key) != value]
    versions = package_versions()
    differ += [f"{name} {tags.get(f'version.{name}', '(none)')} there, {versions.get(name, '(none)')} here"
               for name in COMPUTING_PACKAGES if tags.get(f"version.{name}") != versions.get(name)]
    if differ:
        return "distribution", "; ".join(differ[:3]) + (f"; and {len(differ) - 3} more" if len(differ) > 3 else "")
    return "exact", "the same hardware fingerprint and package versions"


def rebuild(record: dict[str, Any], data_root: str | None, device: str) -> dict[str, Any]:
    """The trial's config from its identity; UserError-free: raises ValueError with the reason."""
    from removal_bench.running import plugins
    from removal_bench.running.trial import config_hash, make_config

    identity = record.get("identity")
    if not isinstance(identity, dict):
        raise ValueError("no identity recorded (bench.identity: trials logged before trial tables came in)")
    plugins.ensure_loaded({"plugins": _plugin_records(record)})
    recipe = dict(identity["recipe"])
    config = make_config(identity["method"], identity["dataset"], identity["dataset_options"], identity["hparams"],
                         seed=identity["seed"], device=device, data_root=data_root)
    config["recipe"] = recipe
    config["epochs"], config["batch_size"], config["encoder"] = recipe.get("epochs"), recipe.get("batch_size"), recipe.get("encoder")
    config["threads"] = int(record.get("metrics", {}).get("torch_threads", 1) or 1)
    if config_hash(config) != record.get("config_hash"):
        raise ValueError(f"its identity hashes to {config_hash(config)}, not to its config hash {record.get('config_hash')}")
    return config


def _plugin_records(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    out = {}
    for kind, fields in (record.get("plugins") or {}).items():
        name = record.get("method") if kind == "method" else record.get("dataset")
        out[kind] = {"kind": kind, "name": name, "path": "", **fields}
    return out


def _where(record: dict[str, Any]) -> str:
    return f"{record.get('label')} on {record.get('dataset')}, seed {record.get('seed')}"


def _plugin_notes(record: dict[str, Any]) -> list[str]:
    from removal_bench.running.plugins import record_of

    notes = []
    for kind, fields in (record.get("plugins") or {}).items():
        here = record_of(kind, record.get(kind)) or {}
        if fields.get("source_sha256") and here.get("source_sha256") != fields["source_sha256"]:
            notes.append(f"the {kind} plugin's source here is not the one the trial ran (SHA-256 "
                         f"{here.get('source_sha256', '?')[:12]} against {fields['source_sha256'][:12]})")
    return notes


def rerun(record: dict[str, Any], data_root: str | None, device: str) -> tuple[dict[str, Any] | None, str]:
    """(the trial's result here, "") or (None, why it could not run)."""
    from removal_bench.running.trial import execute_trial

    try:
        config = rebuild(record, data_root, device)
    except (ValueError, KeyError, TypeError, UserError) as error:
        return None, f"not rebuildable: {error}"
    result = execute_trial(config)
    if result.get("status") != "FINISHED":
        return None, f"failed: {str(result.get('error', '?'))[:300]}"
    return result, ""


def check(record: dict[str, Any], data_root: str | None, device: str, tolerance: float) -> Checked:
    """Exact mode: the trial again, every figure compared with the row's."""
    where = _where(record)
    result, why = rerun(record, data_root, device)
    notes = _plugin_notes(record)
    if result is None:
        verdict, _, reason = why.partition(": ")
        return Checked(record["run_id"], where, verdict, [reason], notes=notes)
    found = Checked(record["run_id"], where, "identical", notes=notes)
    for name in FIGURES:
        old, new = record.get("metrics", {}).get(name), result.get(name)
        if old is None or not isinstance(new, (int, float)):
            continue
        gap = abs(float(new) - float(old)) if math.isfinite(new) else math.inf
        if gap > 0:
            found.largest = max(found.largest, gap)
            found.differences.append(f"{name} {old!r} -> {float(new)!r}")
    if found.differences:
        found.verdict = "within" if found.largest <= tolerance else "differs"
    return found


# --------------------------------------------------------------------------- distribution mode


@dataclass
class FigureTest:
    figure: str
    committed: list[float]
    rerun: list[float]
    p_value: float  # Welch's two-sided; 1.0 where both samples are constant and equal, 0.0 constant and unequal
    interval: tuple[float, float]  # the committed mean's 95% bootstrap interval

    @property
    def committed_mean(self) -> float:
        return sum(self.committed) / len(self.committed)

    @property
    def rerun_mean(self) -> float:
        return sum(self.rerun) / len(self.rerun)

    def text(self) -> str:
        low, high = self.interval
        inside = "inside" if low <= self.rerun_mean <= high else "outside"
        return (f"{self.figure} table {self.committed_mean:.4f} [{low:.4f}, {high:.4f}] ({len(self.committed)} seeds), "
                f"rerun {self.rerun_mean:.4f} ({len(self.rerun)} seeds, {inside} the interval), Welch p {self.p_value:.3g}")


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same mean (both need 2 or more values;
    two constant samples give 1 when equal, 0 when not)."""
    import numpy as np
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    gap = abs(x.mean() - y.mean())
    if vx + vy == 0:
        return 1.0 if gap <= 1e-12 * max(1.0, abs(x.mean())) else 0.0
    t = gap / math.sqrt(vx + vy)
    freedom = (vx + vy) ** 2 / ((vx ** 2 / (len(x) - 1) if vx else 0.0) + (vy ** 2 / (len(y) - 1) if vy else 0.0))
    return float(2 * stats.t.sf(t, freedom))


def distribution_tests(members: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> list[FigureTest]:
    """Per figure that the table's seeds and the reruns both have (2 or more each): the test."""
    from removal_bench.reporting import statistics

    tests = []
    for name in FIGURES:
        committed = [m["metrics"][name] for m in members if isinstance(m.get("metrics", {}).get(name), float)
                     and math.isfinite(m["metrics"][name])]
        again = [float(r[name]) for r in results.values() if isinstance(r.get(name), (int, float))
                 and math.isfinite(r[name])]
        if len(committed) < 2 or len(again) < 2:
            continue
        found = statistics.mean_interval(committed, statistics.generator("verify", name))
        tests.append(FigureTest(name, committed, again, welch_p(committed, again), (found.low, found.high)))
    return tests


@dataclass
class Configuration:
    """Distribution mode: one configuration of the table, its seeds and their reruns."""

    where: str
    why: str  # why exact figures cannot be expected
    members: list[dict[str, Any]]  # the table's FINISHED trials of it (one per seed)
    rerun: list[dict[str, Any]]  # those run again
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> result here
    problems: list[str] = field(default_factory=list)
    tests: list[FigureTest] = field(default_factory=list)


def _configuration_of(record: dict[str, Any], finished: list[dict[str, Any]], seeds: int | None, why: str) -> Configuration:
    from removal_bench.reporting.summaries import _seed_order

    members = [r for r in finished if r.get("config_key") == record.get("config_key") and r.get("dataset") == record.get("dataset")]
    members.sort(key=lambda r: _seed_order(str(r.get("seed"))))
    label = f"{record.get('label')} on {record.get('dataset')}"
    return Configuration(label, why, members, members[: seeds or len(members)])


# --------------------------------------------------------------------------- the command


def execute_verify(paths: list[str], sample: int, sample_seed: int, tolerance: float, data_root: str | None,
                   device: str = "cpu", stream: TextIO | None = None, quiet: bool = False, seeds: int | None = None,
                   mode: str = "auto", alpha: float = 0.01, datasets: list[str] | None = None) -> int:
    """Check ``sample`` FINISHED trials of the tables drawn with ``sample_seed``, each in the mode its provenance
    allows (``mode`` auto) or the one forced; 0 when every check passes, 1 otherwise."""
    import numpy as np

    from removal_bench.reporting.export import complete, merge_records, read_lines
    from removal_bench.running import preflight

    stream = stream or sys.stdout
    if not math.isfinite(tolerance) or tolerance < 0:
        raise UserError(f"--tolerance must be a number >= 0, got {tolerance}")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha is a probability between 0 and 1, got {alpha}")
    if mode not in MODES:
        raise UserError(f"--mode is one of {', '.join(MODES)}, got {mode!r}")
    if data_root:
        preflight.readable_folder(data_root, "--data-root")
    preflight.device(device, local=True)
    records = merge_records(read_lines(paths))  # each run once, one run per trial
    finished = [complete(r) for r in records if r["kind"] == "trial" and r.get("status") == "FINISHED"]
    if datasets:
        present = {r.get("dataset") for r in finished}
        missing = [name for name in datasets if name not in present]
        if missing:
            raise UserError(f"no FINISHED trials of dataset(s) {', '.join(missing)} in the table "
                            f"(it has: {', '.join(sorted(str(p) for p in present))})")
        finished = [r for r in finished if r.get("dataset") in datasets]
    if not finished:
        raise UserError("the trial table holds no FINISHED trials to verify")
    order = np.random.default_rng(sample_seed).permutation(len(finished))[: min(sample, len(finished))]
    chosen = [finished[i] for i in sorted(order)]

    exact, configurations = [], {}
    for record in chosen:
        found, why = mode_of(record, device)
        if mode != "auto":
            why = f"--mode {mode}" + (f" (auto: {found}, {why})" if found != mode else "")
            found = mode
        if found == "exact":
            exact.append(record)
        else:
            key = (record.get("dataset"), record.get("config_key"))
            if key not in configurations:
                configurations[key] = _configuration_of(record, finished, seeds, why)

    def say(text: str) -> None:
        if not quiet:
            print(text, file=stream, flush=True)

    results = []
    for record in exact:
        found = check(record, data_root, device, tolerance)
        results.append(found)
        if found.verdict in ("within", "differs"):
            detail = f" (largest difference {found.largest:.3g}): " + "; ".join(found.differences[:4])
        elif found.differences:
            detail = f": {found.differences[0]}"
        else:
            detail = ""
        say(f"{found.verdict:>15}  {found.where}  [run {found.run_id}]{detail}")
        for note in found.notes:
            say(f"{'note':>15}  {note}")

    for configuration in configurations.values():
        say(f"{'distribution':>15}  {configuration.where}: re-running {len(configuration.rerun)} of its "
            f"{len(configuration.members)} seeds ({configuration.why})")
        for member in configuration.rerun:
            result, why = rerun(member, data_root, device)
            if result is None:
                configuration.problems.append(f"seed {member.get('seed')} {why}")
            else:
                configuration.results[member["run_id"]] = result
        configuration.tests = distribution_tests(configuration.members, configuration.results)
    family = sum(len(c.tests) for c in configurations.values())
    threshold = alpha / family if family else alpha
    passed_configurations = 0
    for configuration in configurations.values():
        failing = [t for t in configuration.tests if t.p_value < threshold]
        if configuration.problems:
            verdict = "failed"
        elif not configuration.tests:
            verdict = "untestable"
            configuration.problems.append("fewer than 2 seeds on a side: no spread to test against (--seeds 2 or more)")
        else:
            verdict = "differs" if failing else "same distribution"
        passed_configurations += verdict == "same distribution"
        worst = sorted(configuration.tests, key=lambda t: t.p_value)
        shown = failing[:4] if failing else worst[:1]
        detail = "; ".join(t.text() for t in shown) or "; ".join(configuration.problems[:2])
        say(f"{verdict:>15}  {configuration.where}: {len(configuration.tests)} figures tested"
            f"{', least likely' if not failing and worst else ''}: {detail}")

    good = sum(r.verdict in ("identical", "within") for r in results)
    parts = []
    if results or not configurations:
        parts.append(f"{good} of {len(results)} sampled trials came back within tolerance {tolerance:g} "
                     f"({sum(r.verdict == 'identical' for r in results)} bit-identical)")
    if configurations:
        parts.append(f"{passed_configurations} of {len(configurations)} configurations re-run here have the table's "
                     f"distribution (Welch's t-test per figure, {family} tests, family-wise alpha {alpha:g}: "
                     f"p >= {threshold:.2g})")
    say("; ".join(parts))
    return 0 if good == len(results) and passed_configurations == len(configurations) else 1
