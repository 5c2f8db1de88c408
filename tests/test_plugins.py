"""Plugins, trial tables and ranking against them, end to end through the console script.

A method given by import path (a file in the working folder, the example package's method) runs on a
real local Ray (its workers must import it too) and a SQLite MLflow; built-in methods run in another
experiment standing in for the committed runs. Then: its provenance tags, ``bench export``, the
leaderboard rebuilt from the table byte for byte (but the generation time and command),
``--with`` ranking and its refusals, ``bench verify``, and a hostile plugin's text in the HTML page.
The installed package (entry point, fresh venv) is ``test_example_package_installs_and_runs_its_curve``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import bench_command, installed_venv, quiet_env, site_packages, without_generation

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "covariance-penalty"
SYNTHETIC = "synthetic:n_train=300:n_eval=300"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def bench(args: list[str], cwd: Path, timeout: float = 600, extra_path: str = "") -> subprocess.CompletedProcess:
    env = quiet_env()
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), extra_path) if p)
    return subprocess.run(bench_command() + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def trial_runs(folder: Path, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`bench.kind` = 'trial'")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A working folder with a plugin file, experiment ``mine`` (the plugin and vanilla, on Ray) and
    ``committed`` (vanilla and IRENE, serial), 2 seeds, 1 epoch, the same protocol; ``committed`` exported."""
    folder = tmp_path_factory.mktemp("plugins")
    shutil.copy(EXAMPLE / "src" / "covariance_penalty" / "__init__.py", folder / "my_removal.py")
    common = ["--datasets", SYNTHETIC, "--seeds", "2", "--epochs", "1", "--quiet"]
    ok(bench(["run", "--methods", "vanilla,my_removal:CovariancePenalty", "--experiment", "mine",
              "--cpus-per-trial", "1", *common], folder))
    ok(bench(["run", "--methods", "vanilla,irene", "--experiment", "committed", "--executor", "serial", *common], folder))
    ok(bench(["export", "--experiment", "committed"], folder))
    return folder


def test_a_plugin_by_import_path_runs_on_ray_and_records_its_provenance(work):
    runs = trial_runs(work, "mine")
    assert set(runs["status"]) == {"FINISHED"}, runs[["status", "tags.bench.error"]]
    plugin = runs[runs["tags.bench.method"] == "cov_penalty"]
    assert len(plugin) == 2
    source = hashlib.sha256((work / "my_removal.py").read_bytes()).hexdigest()
    assert set(plugin["tags.plugin.method.source_sha256"]) == {source}
    assert set(plugin["tags.plugin.method.spec"]) == {"my_removal:CovariancePenalty"}
    assert set(plugin["tags.plugin.method.origin"]) == {"import path"}
    builtin = runs[runs["tags.bench.method"] == "vanilla"]
    assert builtin["tags.plugin.method.package"].isna().all()  # built-ins carry no plugin tags
    assert runs["tags.bench.protocol"].nunique() == 1  # one protocol for both methods


def test_export_has_one_line_per_trial_with_identity_and_exact_figures(work):
    from removal_bench.reporting.export import read_lines

    lines = read_lines([work / "results" / "committed" / "trials.jsonl.gz"], full=True)
    trials = [line for line in lines if line["kind"] == "trial"]
    assert len(trials) == 4 and sum(line["kind"] == "invocation" for line in lines) == 1
    runs = trial_runs(work, "committed").set_index("run_id")
    for line in trials:
        run = runs.loc[line["run_id"]]
        assert line["config_hash"] == run["tags.bench.config_hash"]
        assert line["identity"]["method"] == line["method"] and line["identity"]["seed"] == int(line["seed"])
        assert line["protocol"] == run["tags.bench.protocol"] and line["commit"] == run.get("tags.bench.git_commit")
        assert line["versions"]["torch"] and line["dataset_options"]["n_train"] == "300"
        for name in ("accuracy", "leakage", "leak_gbdt", "val_leakage"):
            assert line["metrics"][name] == run[f"metrics.{name}"]  # every bit: JSON keeps the double


def _without_generation(text: str) -> str:
    text = re.sub(r"the trial table\(s\) \S+ \(runs of (MLflow experiment\(s\) [^)]+)\)", r"\1", text)  # where it was read
    return without_generation(text)


def test_leaderboard_from_the_table_is_the_leaderboard_from_mlflow(work, tmp_path):
    from_mlflow, from_table = tmp_path / "mlflow", tmp_path / "table"
    for folder in (from_mlflow, from_table):
        folder.mkdir()
        shutil.copy(work / "mlflow.db", folder / "mlflow.db")
    table = work / "results" / "committed" / "trials.jsonl.gz"
    ok(bench(["leaderboard", "--experiment", "committed", "--format", "markdown,html", "--quiet"], from_mlflow))
    (from_table / "mlflow.db").unlink()  # no store at all
    ok(bench(["leaderboard", "--from", str(table), "--format", "markdown,html", "--quiet"], from_table))
    assert not (from_table / "mlflow.db").exists()
    for name in ("LEADERBOARD.md", "leaderboard.html"):
        mine, theirs = (from_mlflow / "results" / name).read_text(), (from_table / "results" / name).read_text()
        assert "irene" in mine and "vanilla" in mine
        assert f"from the trial table(s) {table} (runs of MLflow experiment(s) committed)" in theirs, name
        assert "from MLflow experiment(s) committed." in mine, name
        assert _without_generation(mine) == _without_generation(theirs), name
    plots = sorted(p.name for p in (from_table / "results" / "leaderboard-plots").iterdir())
    assert plots == ["synthetic.png"]


def test_import_gives_the_table_back_and_a_sweep_resumes_from_it(work, tmp_path):
    """A committed table read into a fresh store (a new machine): exported again it is the same file byte for
    byte, a second import adds nothing, the leaderboard is the table's, and a sweep counts its trials complete."""
    table = work / "results" / "committed" / "trials.jsonl.gz"
    first = ok(bench(["import", str(table)], tmp_path))
    assert "5 runs imported" in first.stdout  # 1 invocation + 4 trials
    again = ok(bench(["import", str(table)], tmp_path))
    assert "0 runs imported, 5 already there" in again.stdout
    ok(bench(["export", "--experiment", "committed", "--output", "back.jsonl.gz", "--quiet"], tmp_path))
    assert (tmp_path / "back.jsonl.gz").read_bytes() == table.read_bytes()
    imported = trial_runs(tmp_path, "committed")
    from removal_bench.reporting.export import read_lines

    assert len(imported) == 4 and not set(imported["run_id"]) & {record["run_id"] for record in read_lines([table])}
    ok(bench(["leaderboard", "--experiment", "committed", "--quiet"], tmp_path))
    ok(bench(["leaderboard", "--from", str(table), "--output", "table/LEADERBOARD.md", "--quiet"], tmp_path))
    assert _without_generation((tmp_path / "results" / "LEADERBOARD.md").read_text()) == \
        _without_generation((tmp_path / "table" / "LEADERBOARD.md").read_text())
    resumed = ok(bench(["sweep", "--methods", "vanilla", "--datasets", SYNTHETIC, "--seeds", "2", "--epochs", "1",
                        "--experiment", "committed", "--executor", "serial"], tmp_path))
    assert "2 already complete in experiment 'committed'; running 0" in resumed.stderr
    assert len(trial_runs(tmp_path, "committed")) == 4  # nothing ran again


def test_leaderboard_of_some_datasets_ranks_only_theirs(work, tmp_path):
    table = work / "results" / "committed" / "trials.jsonl.gz"
    mixed = tmp_path / "mixed.jsonl"  # the table, plus its trials again as another dataset's
    from removal_bench.reporting.export import read_lines

    lines = [json.dumps(record) for record in read_lines([table], full=True)]
    other = []
    for line in lines:
        record = json.loads(line)
        if record["kind"] == "trial":
            record["run_id"] += "-g"
            record["tags"]["bench.dataset"] = record["dataset"] = "german"
            record["tags"]["bench.config_hash"] += "-g"
            other.append(json.dumps(record))
    mixed.write_text("\n".join(lines + other) + "\n")
    both = ok(bench(["leaderboard", "--from", str(mixed), "--json"], tmp_path))
    assert sorted(json.loads(both.stdout)["datasets"]) == ["german", "synthetic"]
    one = ok(bench(["leaderboard", "--from", str(mixed), "--datasets", "synthetic", "--json", "--force"], tmp_path))  # replaces the two-dataset file
    assert sorted(json.loads(one.stdout)["datasets"]) == ["synthetic"]
    shutil.rmtree(tmp_path / "results")
    refused = bench(["leaderboard", "--from", str(mixed), "--datasets", "synthetic,adult"], tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "bench: error: no trials of dataset(s) adult (the runs have: german, synthetic)"]
    assert not (tmp_path / "results").exists()  # nothing half-written


def test_with_ranks_the_new_method_beside_the_table_where_the_protocol_matches(work):
    table = work / "results" / "committed" / "trials.jsonl.gz"
    done = ok(bench(["leaderboard", "--experiment", "mine", "--with", str(table), "--format", "markdown,html",
                     "--json"], work))
    document = json.loads(done.stdout)
    methods = {m["method"] for m in document["datasets"]["synthetic"]["methods"]}
    assert methods == {"vanilla", "irene", "cov_penalty"}, methods
    text = (work / "results" / "mine" / "LEADERBOARD.md").read_text()
    assert "cov_penalty" in text and "irene" in text
    source = hashlib.sha256((work / "my_removal.py").read_bytes()).hexdigest()[:12]
    plugin = f"method cov_penalty: (not installed), import path my_removal:CovariancePenalty, source SHA-256 {source}"
    assert f"- Plugins (methods and datasets from other packages, as their trials recorded them): {plugin}." in text
    assert f"<li>plugin {plugin}</li>" in (work / "results" / "mine" / "leaderboard.html").read_text()
    assert f"ranked with the trial table(s) {table}" in text
    assert not (work / "results" / "LEADERBOARD.md").exists()  # the committed leaderboard is not overwritten


def test_with_refuses_a_different_protocol_naming_the_difference(work):
    table = work / "results" / "committed" / "trials.jsonl.gz"
    ok(bench(["run", "--methods", "vanilla", "--datasets", "synthetic:n_train=400:n_eval=300", "--seeds", "2",
              "--epochs", "1", "--experiment", "bigger", "--executor", "serial", "--quiet"], work))
    done = bench(["leaderboard", "--experiment", "bigger", "--with", str(table)], work)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot rank on synthetic: the protocol differs: dataset_options.n_train 400 here, 300 in the file" in done.stderr
    ok(bench(["run", "--methods", "vanilla", "--datasets", SYNTHETIC, "--seeds", "1", "--epochs", "1",
              "--experiment", "oneseed", "--executor", "serial", "--quiet"], work))
    done = bench(["leaderboard", "--experiment", "oneseed", "--with", str(table)], work)
    assert done.returncode == 2 and "seeds 0 here, 0,1 in the trial table" in done.stderr, done.stderr
    assert not (work / "results" / "bigger" / "LEADERBOARD.md").exists()


def test_verify_reruns_a_sample_bit_identically_and_catches_a_changed_figure(work, tmp_path):
    table = work / "results" / "committed" / "trials.jsonl.gz"
    done = ok(bench(["verify", str(table), "--sample", "2"], work))
    assert "2 of 2 sampled trials came back within tolerance 0 (2 bit-identical)" in done.stdout, done.stdout
    changed = tmp_path / "changed.jsonl"
    lines = []
    from removal_bench.reporting.export import read_lines

    for record in read_lines([table], full=True):
        if record["kind"] == "trial":
            record["metrics"]["accuracy"] += 0.01
        lines.append(json.dumps(record))
    changed.write_text("\n".join(lines) + "\n")
    done = bench(["verify", str(changed), "--sample", "1"], work)
    assert done.returncode == 1 and "differs" in done.stdout and "accuracy" in done.stdout, done.stdout
    assert ok(bench(["verify", str(changed), "--sample", "1", "--tolerance", "0.02"], work)).stdout.count("within") >= 1
    record = read_lines([table], full=True)[-1]
    record["config_hash"] = "0" * 16
    forged = tmp_path / "forged.jsonl"
    forged.write_text(json.dumps(record) + "\n")
    done = bench(["verify", str(forged)], work)
    assert done.returncode == 1 and "not rebuildable" in done.stdout and "not to its config hash" in done.stdout


def test_plugin_text_is_escaped_in_the_html_page(work):
    hostile = '<script>document.title="pwned"</script>"\'&'
    ok(bench(["run", "--methods", "tests.plugin_samples:Hostile", "--set", f"hostile.mode={hostile}",
              "--datasets", SYNTHETIC, "--seeds", "1", "--epochs", "1", "--experiment", "hostile",
              "--executor", "serial", "--quiet"], work, extra_path=str(ROOT)))
    listing = ok(bench(["list", "--methods", "tests.plugin_samples:Hostile"], work, extra_path=str(ROOT))).stdout
    assert "from (not installed), import path tests.plugin_samples:Hostile" in listing or "import path" in listing
    ok(bench(["leaderboard", "--experiment", "hostile", "--format", "html", "--output", "hostile.html", "--quiet"], work))
    page = (work / "hostile.html").read_text()
    assert "hostile" in page
    assert '<script>document.title="pwned"' not in page  # only our two script elements, never the plugin's
    assert page.count("<script") == 2
    assert "&lt;script&gt;document.title=&quot;pwned&quot;" in page  # shown as text
    from tests.browser import Browser, find_chromium

    if find_chromium():
        browser = Browser(find_chromium())
        try:
            browser.open((work / "hostile.html").as_uri())
            assert browser.evaluate("document.title") != "pwned"
            assert browser.problems() == []
        finally:
            browser.close()


def test_example_package_installs_and_runs_its_curve(tmp_path):
    """The README's path: pip install the example into a fresh venv beside the project (real installs, the
    dependencies lent by a .pth file), then bench list, bench run and bench sweep --curve find it by its entry
    point, on Ray, and each trial records the package, its version and its source's hash."""
    example = tmp_path / "example"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    env = installed_venv(tmp_path, example)
    work = tmp_path / "work"
    work.mkdir()
    environment = {k: v for k, v in quiet_env().items() if k != "PYTHONPATH"}

    def run(args, timeout=600):
        done = subprocess.run([str(env / "bin" / "bench"), *args], cwd=work, capture_output=True, text=True,
                              timeout=timeout, env=environment)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    listing = run(["list"]).stdout
    block = listing[listing.index("  cov_penalty"):]
    assert "from covariance-penalty 0.1.0, entry point covariance_penalty:CovariancePenalty" in block.splitlines()[1]
    assert "strength (--curve): lam 0.01..1000" in block
    run(["run", "--methods", "cov_penalty", "--datasets", SYNTHETIC, "--seeds", "1", "--epochs", "1", "--quiet"])
    run(["sweep", "--curve", "--strengths", "2", "--methods", "cov_penalty", "--datasets", SYNTHETIC, "--seeds", "1",
         "--epochs", "1", "--experiment", "curve", "--quiet"])
    runs = trial_runs(work, "curve")
    assert sorted(runs["params.hp.lam"].astype(float)) == [0.01, 1000.0]
    assert set(runs["status"]) == {"FINISHED"}
    installed_file = next(site_packages(env / "bin" / "python").glob("covariance_penalty/__init__.py"))
    assert set(runs["tags.plugin.method.package"]) == {"covariance-penalty"}
    assert set(runs["tags.plugin.method.version"]) == {"0.1.0"}
    assert set(runs["tags.plugin.method.source_sha256"]) == {hashlib.sha256(installed_file.read_bytes()).hexdigest()}


def test_a_broken_installed_plugin_is_skipped_with_a_warning_and_naming_it_fails(tmp_path):
    """An installed package whose entry point fails to import (a real distribution on the import path:
    dist-info, entry_points.txt, module) must not stop every command: the others work, with one warning line;
    asking for it by name is one clear line and exit 2, within seconds, writing nothing."""
    site = tmp_path / "site"
    info = site / "broken_removal-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-removal\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[removal_bench.methods]\nbroken = broken_removal:Broken\n")
    (site / "broken_removal.py").write_text('raise RuntimeError("this plugin is broken on purpose")\n')
    work = tmp_path / "work"
    work.mkdir()

    listing = bench(["list"], work, timeout=120, extra_path=str(site))
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert "  irene " in listing.stdout and "  broken " not in listing.stdout
    warnings = [line for line in listing.stderr.splitlines() if line.startswith("bench: warning:")]
    assert len(warnings) == 1 and "'broken'" in warnings[0] and "RuntimeError: this plugin is broken on purpose" in warnings[0]

    ran = bench(["run", "--methods", "vanilla", "--datasets", SYNTHETIC, "--seeds", "1", "--epochs", "1",
                 "--executor", "serial", "--quiet"], work, extra_path=str(site))
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert len(trial_runs(work, "default")) == 1

    before = sorted(p.name for p in work.iterdir())
    named = bench(["run", "--methods", "vanilla,broken", "--datasets", SYNTHETIC, "--seeds", "1", "--epochs", "1",
                   "--experiment", "named"], work, timeout=120, extra_path=str(site))
    assert named.returncode == 2
    errors = [line for line in named.stderr.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 1 and "method 'broken' is unavailable" in errors[0] and "RuntimeError" in errors[0], named.stderr
    assert "Traceback" not in named.stderr
    assert sorted(p.name for p in work.iterdir()) == before
    assert not _experiment_exists(work, "named")


def _experiment_exists(folder: Path, name: str) -> bool:
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").get_experiment_by_name(name) is not None
