"""The committed leaderboard is what the committed trial table gives on the committed code.

``results/LEADERBOARD.md`` and ``results/leaderboard.html`` are written by ``bench leaderboard --from
results/curves/trials.jsonl.gz --format markdown,html`` (results/README.md; the file's ``- This file:`` line
names the command, other tables and ``--datasets`` choices included). Rebuilt here by that command into
a temporary folder, every line of the Markdown must come back the same but the generation time and the
command that wrote it, and the page's embedded data (every figure, interval and rank of every dataset) the
same: a change to the reporting code that moves a committed number fails here until the leaderboard is
regenerated, with before -> after in the note.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.browser import Browser, find_chromium
from tests.conftest import bench_command, quiet_env, without_generation

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "results" / "curves" / "trials.jsonl.gz"
pytestmark = pytest.mark.timeout(600)


def _data(page: str) -> str:
    found = re.search(r'<script type="application/json" id="bench-data">(.*?)</script>', page, re.S)
    assert found, "the page has no embedded data"
    return found.group(1)


def committed_command() -> list[str]:
    """The words of the command that wrote results/LEADERBOARD.md, from its own ``- This file:`` line."""
    import shlex

    text = (ROOT / "results" / "LEADERBOARD.md").read_text()
    found = re.search(r"^- This file: `(bench leaderboard [^`]+)`\.$", text, re.M)
    assert found, "results/LEADERBOARD.md does not say which command wrote it"
    words = shlex.split(found.group(1))
    tables = [words[i + 1] for i, word in enumerate(words) if word == "--from"]
    assert TABLE.relative_to(ROOT).as_posix() in tables, tables  # the leaderboard's own table among them
    return words


def test_the_committed_leaderboard_rebuilds_from_the_committed_table(tmp_path):
    """The command the file names, run again on the tables it names (each at its committed path)."""
    words = committed_command()
    for i, word in enumerate(words):
        if word in ("--from", "--capacity"):  # the trial tables and the capacity check's rerun tables
            (tmp_path / words[i + 1]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / words[i + 1]).symlink_to(ROOT / words[i + 1])  # the path as results/README.md types it
    assert {"--format", "markdown,html"} <= set(words) and "--output" not in words
    done = subprocess.run(bench_command() + words[1:], cwd=tmp_path, capture_output=True, text=True, timeout=540,
                          env=quiet_env())
    assert done.returncode == 0, done.stderr[-3000:]
    committed = (ROOT / "results" / "LEADERBOARD.md").read_text()
    rebuilt = (tmp_path / "results" / "LEADERBOARD.md").read_text()
    assert "## biased_mnist" in committed and "## colored_digits" in committed
    # the capacity check (results/capacity/, --capacity) in every section's attacker table
    assert sum(line.startswith("| method") and "wide MLP" in line for line in committed.splitlines()) == 7  # 2 Biased-MNIST
    mine, theirs = without_generation(committed).splitlines(), without_generation(rebuilt).splitlines()
    assert len(mine) == len(theirs)
    differing = [(a, b) for a, b in zip(mine, theirs) if a != b]
    assert not differing, differing[:3]
    page = (tmp_path / "results" / "leaderboard.html").read_text()
    assert _data(page) == _data((ROOT / "results" / "leaderboard.html").read_text())
    plots = sorted(p.name for p in (tmp_path / "results" / "leaderboard-plots").iterdir())
    assert plots == sorted(p.name for p in (ROOT / "results" / "leaderboard-plots").iterdir())


def test_the_committed_table_is_compact_and_whole():
    """At most 1 kB a trial on disk, every trial of the leaderboard's sweep, the schema-1 fields intact."""
    from removal_bench.reporting import export

    records = export.read_lines([TABLE], full=True)
    trials = [r for r in records if r["kind"] == "trial"]
    assert len(trials) == 2086 and sum(r["kind"] == "invocation" for r in records) == 32  # 1,561 + 525 refined (a0c65b1)
    assert TABLE.stat().st_size <= 1000 * len(trials)
    assert all(r["identity"]["seed"] == int(r["seed"]) and r["versions"]["torch"] for r in trials)


def test_every_run_id_in_the_reproduction_report_is_in_its_committed_table():
    """results/REPRODUCTION.md names the runs behind each figure; each must be a trial of the committed table that
    rebuilds it (an imported run is named by its source id, the id ``bench export`` writes), or the report points
    a reader at runs nobody can find."""
    from removal_bench.reporting import export

    report = (ROOT / "results" / "REPRODUCTION.md").read_text()
    named = set(re.findall(r"\b[0-9a-f]{32}\b", report.split("## Runs behind each figure", 1)[1]))
    records = export.read_lines([ROOT / "results" / "reproduce" / "trials.jsonl.gz"], full=True)
    finished = {r["run_id"] for r in records if r["kind"] == "trial" and r.get("status") == "FINISHED"}
    assert len(named) >= 80 and named <= finished, sorted(named - finished)[:5]


def test_a_section_ranks_one_setting_of_its_dataset(tmp_path):
    """The quick look's Biased-MNIST trials (rho 0.995, results/curves) and the converged section's (rho 0.997,
    results/curves-converged) are two settings of one dataset: ranked together they would share a curve, so the
    leaderboard refuses (one line, exit 2, nothing written) and names the choice; --datasets NAME:OPTION=VALUE
    ranks the one asked for, with only the invocations that ran it."""
    converged = ROOT / "results" / "curves-converged" / "trials.jsonl.gz"
    both = ["--from", str(TABLE), "--from", str(converged), "--output", str(tmp_path / "lb.md"), "--quiet"]
    done = subprocess.run(bench_command() + ["leaderboard", *both, "--datasets", "biased_mnist"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=quiet_env())
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    # the converged table also grows a section at rho 0.99: the message counts every setting and names the choices
    assert "rho=0.995 (111 trials)" in done.stderr and "rho=0.997 (174 trials)" in done.stderr
    assert "choose it with --datasets biased_mnist:rho=0.99" in done.stderr
    assert re.search(r"as a section of its own with --datasets biased_mnist:rho=[0-9.]+(,biased_mnist:rho=[0-9.]+)+", done.stderr)
    assert not (tmp_path / "lb.md").exists()
    done = subprocess.run(bench_command() + ["leaderboard", *both, "--datasets", "biased_mnist:rho=0.9970"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=quiet_env())
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "lb.md").read_text()
    setting = next(line for line in text.splitlines() if "Setting: options" in line)
    assert "rho=0.997," in setting and "0.995" not in setting and "epochs 12" in setting
    assert "--recipe cpu-converged" in text and "--recipe cpu " not in text  # the converged sweep's commands only
    done = subprocess.run(bench_command() + ["leaderboard", *both, "--datasets", "biased_mnist:rho=0.9"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=quiet_env())
    assert done.returncode == 2 and "no trials of biased_mnist with rho=0.9 (its trials ran with:" in done.stderr


def test_one_dataset_at_two_settings_ranks_each_as_a_section(tmp_path):
    """``--datasets biased_mnist:rho=0.995,biased_mnist:rho=0.997`` ranks the two settings side by side: a
    section each, named by its setting, with that setting's trials only (111 and 174 in the committed tables),
    its own plot files, and both in the overview; settings that overlap (every trial of one is in the other)
    are refused with one line."""
    converged = ROOT / "results" / "curves-converged" / "trials.jsonl.gz"
    both = ["--from", str(TABLE), "--from", str(converged), "--output", str(tmp_path / "lb.md"), "--quiet"]
    done = subprocess.run(bench_command() + ["leaderboard", *both, "--datasets",
                                             "biased_mnist:rho=0.995,biased_mnist:rho=0.997"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=quiet_env())
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "lb.md").read_text()
    assert re.findall(r"^## (biased_mnist\S*)$", text, re.M) == ["biased_mnist:rho=0.995", "biased_mnist:rho=0.997"]
    rows = {m.group(1): int(m.group(2)) for m in
            re.finditer(r"^\| (biased_mnist:rho=0\.99[57]) \(reduced\) *\| \d+ *\| \d+ *\| \d+ *\| (\d+)", text, re.M)}
    assert rows == {"biased_mnist:rho=0.995": 111, "biased_mnist:rho=0.997": 174}
    for section, rho, other in (("biased_mnist:rho=0.995", "0.995", "0.997"), ("biased_mnist:rho=0.997", "0.997", "0.995")):
        body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        setting = next(line for line in body.splitlines() if "Setting: options" in line)
        assert f"rho={rho}," in setting and other not in setting
        assert f"lb-plots/{section.replace(':', '-')}.png" in body
        assert (tmp_path / "lb-plots" / f"{section.replace(':', '-')}.png").is_file()
    overview = text.split("## Overview", 1)[1].split("## Provenance", 1)[0]
    assert "biased_mnist:rho=0.995" in overview and "biased_mnist:rho=0.997" in overview
    (tmp_path / "lb.md").unlink()
    done = subprocess.run(bench_command() + ["leaderboard", *both, "--datasets", "biased_mnist:rho=0.997,biased_mnist:split=ours"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=quiet_env())
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    assert "settings that overlap" in done.stderr and not (tmp_path / "lb.md").exists()


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")
def test_the_page_plots_each_setting_of_a_dataset(tmp_path):
    """The HTML page of one dataset at two settings, in a real Chromium: a plot per section, every configuration
    a point, the navigation's links reach each section, and no console error."""
    converged = ROOT / "results" / "curves-converged" / "trials.jsonl.gz"
    page = tmp_path / "lb.html"
    done = subprocess.run(bench_command() + ["leaderboard", "--from", str(TABLE), "--from", str(converged), "--format",
                                             "html", "--output", str(page), "--quiet", "--datasets",
                                             "biased_mnist:rho=0.995,biased_mnist:rho=0.997"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=quiet_env())
    assert done.returncode == 0, done.stderr[-2000:]
    browser = Browser(find_chromium())
    try:
        browser.open(page.as_uri())
        state = browser.evaluate("""({
            plots: Array.from(document.querySelectorAll('figure.front-plot')).map(f => [
                f.getAttribute('data-dataset'), f.querySelectorAll('svg.pareto-plot').length,
                f.querySelectorAll('circle.point').length]),
            links: Array.from(document.querySelectorAll('a[href^="#dataset-"]')).map(
                a => [a.textContent, document.getElementById(a.getAttribute('href').slice(1)) !== null]),
        })""")
        assert sorted(state["plots"]) == [["biased_mnist:rho=0.995", 1, 37], ["biased_mnist:rho=0.997", 1, 58]]
        assert sorted(state["links"]) == [["biased_mnist:rho=0.995", True], ["biased_mnist:rho=0.997", True]]
        assert browser.problems() == []
    finally:
        browser.close()


def test_the_capacity_tables_and_the_leaderboard_give_each_method_the_same_verdict():
    """results/capacity's tables (the capacity benchmark) and the leaderboard's attacker tables (``--capacity``)
    judge the same reruns: both take the verdict from ``standings.capacity_verdict`` on the same bootstrap
    interval, so every method they both show gets the same word (a second rule in either would part them)."""
    from removal_bench.reporting.leaderboard import base_dataset

    leaderboard: dict[tuple[str, str], str] = {}
    section = None
    for line in (ROOT / "results" / "LEADERBOARD.md").read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        verdict = re.fullmatch(r"(saturated|at the margin|not saturated) \([+-]\d\.\d{3}\)", cells[-1])
        if section and verdict:
            leaderboard[(section, cells[0])] = verdict.group(1)
    compared = 0
    for table in sorted((ROOT / "results" / "capacity").glob("*.md")):
        section = None
        for line in table.read_text().splitlines():
            if line.startswith("## "):
                section = line[3:].strip()
            cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
            if section and len(cells) == 9 and cells[-1] in {"saturated", "at the margin", "not saturated"}:
                # the leaderboard ranks one setting of a dataset under the dataset's own name
                shown = section if any(key[0] == section for key in leaderboard) else base_dataset(section)
                if (shown, cells[0]) in leaderboard:
                    assert leaderboard[(shown, cells[0])] == cells[-1], (table.name, section, cells[0])
                    compared += 1
    assert compared >= 45, compared  # every tabular configuration, and INLP at rho 0.997
    assert "at the margin" in leaderboard.values()  # INLP on colored_digits: the case where a second rule would differ
