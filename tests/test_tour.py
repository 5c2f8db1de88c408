"""The README's tour, command by command, on a fresh layout.

The commands are read from the README itself (the ``sh`` blocks of "The tour"), so a command that stops
working, or a tour edited into one that does not, fails here. Each runs as a user would (the console
script, in a temporary working folder: nothing is written anywhere else) with tiny settings: one seed, one
epoch, two strengths, a small ``synthetic`` (``--datasets synthetic:n_train=200:n_eval=200``) and the
serial executor (Ray has tests of its own: test_end_to_end, test_cluster). What the README asserts about
each command's output is checked: the files it names, the run id it says the run prints, the JSON's
``runs``, the MLflow UI serving the experiment, the plugin found by its entry point and ranked ``--with``
the committed table (here a table of the same tiny protocol, written where the README says it is).

Two lines are stand-ins: ``pip install ./examples/covariance-penalty`` becomes the same package laid out
as an installed distribution on ``PYTHONPATH`` (test_plugins installs it for real), and the data files of
step 7 come from ``../shared/data`` (its test is skipped, saying so, where that folder is absent).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, bench_command, quiet_env

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "covariance-penalty"
TINY_DATASET = "synthetic:n_train=200:n_eval=200"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # slow: it starts an MLflow server (the UI)


def tour_commands() -> list[str]:
    """The command lines of the README's tour, in order (comments and blank lines dropped)."""
    text = (ROOT / "README.md").read_text()
    tour = text.split("## The tour", 1)[1].split("\n## ", 1)[0]
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", tour, re.S):
        lines += [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return lines


def words_of(line: str, cwd: Path) -> list[str]:
    return shlex.split(line.replace("$PWD", str(cwd)), comments=True)


def tiny(words: list[str], data_root: Path | None = None) -> list[str]:
    """A tour command with the tour's settings made tiny (and a data root where the command reads data)."""
    command = words[1] if len(words) > 1 else ""
    out, skip = [], False
    for index, word in enumerate(words):
        if skip:
            skip = False
            continue
        value = words[index + 1] if index + 1 < len(words) else None
        if word == "--seeds":
            out += ["--seeds", "1"]
            skip = True
        elif word == "--strengths":
            out += ["--strengths", "2"]
            skip = True
        elif word == "--datasets" and value == "synthetic":
            out += ["--datasets", TINY_DATASET]
            skip = True
        elif word == "--executor":
            out += ["--executor", "serial"]
            skip = True
        else:
            out.append(word)
    if command in ("run", "sweep"):
        out += ["--epochs", "1"] + ([] if "--executor" in out else ["--executor", "serial"])
        if "--curve" in out and "--strengths" not in out:
            out += ["--strengths", "2"]
    if command == "reproduce" and "--list" not in out:
        out += ["--epochs", "1"]
    if data_root is not None and command in ("reproduce", "data") and "--list" not in out:
        out += ["--data-root", str(data_root)]
    return bench_command() + out[1:]


def run(words: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(words, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{shlex.join(words)}\n{done.stderr[-3000:]}"
    return done


def installed_layout(site: Path) -> None:
    """``pip install ./examples/covariance-penalty`` without pip: the package and a dist-info naming its entry point."""
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = project["entry-points"]
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) for group, entries in points.items()))
    for package in (EXAMPLE / "src").iterdir():
        if package.is_dir() and not package.name.endswith(".egg-info"):
            shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("__pycache__"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mlflow_ui_serves(words: list[str], cwd: Path, env: dict[str, str], experiment: str) -> None:
    """Start the README's ``mlflow ui`` (on a free port), ask it for the experiment, stop it."""
    words = list(words)
    port = free_port()
    words[words.index("--port") + 1] = str(port)
    words[0] = str(Path(bench_command()[0]).with_name("mlflow"))
    server = subprocess.Popen(words, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}")
                with urllib.request.urlopen(request, timeout=5) as answer:
                    found = json.load(answer)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "mlflow ui did not answer within 180 s"
                time.sleep(1)
        assert found["experiment"]["name"] == experiment
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def test_the_tour_runs_as_the_readme_says(tmp_path):
    lines = tour_commands()
    kinds = [" ".join(words_of(line, tmp_path)[:2]) for line in lines]
    assert kinds == [
        ".venv/bin/bench run", ".venv/bin/mlflow ui", ".venv/bin/bench report", ".venv/bin/bench sweep",
        ".venv/bin/bench leaderboard", ".venv/bin/pip install", ".venv/bin/bench sweep", ".venv/bin/bench leaderboard",
        ".venv/bin/bench attack", ".venv/bin/bench attack", ".venv/bin/bench reproduce", ".venv/bin/bench data",
        ".venv/bin/bench reproduce",
    ], kinds
    work = tmp_path / "work"
    work.mkdir()
    site = tmp_path / "site"
    env = {**quiet_env(), "BENCH_OFFLINE": "1", "BENCH_DATA_ROOT": str(tmp_path / "no-data")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(site)) if p)
    steps = iter(lines)

    # 1. run: tables, and a last line naming a trial's run id
    done = run(tiny(words_of(next(steps), work)), work, env)
    named = re.search(r"^trial runs: e\.g\. ([0-9a-f]{32}) \(", done.stdout, re.M)
    assert named, done.stdout[-2000:]
    run_id = named.group(1)
    assert (work / "results" / "tour" / "synthetic.md").is_file()

    # 2. the MLflow UI serves the experiment
    mlflow_ui_serves(words_of(next(steps), work), work, env, "tour")

    # 3. report: the files the README names; --json lists every trial's run id
    for name in ("synthetic.md", "synthetic.csv", "synthetic.png"):
        (work / "results" / "tour" / name).unlink()
    run(tiny(words_of(next(steps), work)), work, env)
    assert {p.name for p in (work / "results" / "tour").iterdir()} >= {"synthetic.md", "synthetic.csv", "synthetic.png"}
    document = json.loads(run(bench_command() + ["report", "--experiment", "tour", "--json"], work, env).stdout)
    listed = {rid for c in document["datasets"]["synthetic"]["configurations"] for rid in c["runs"].values()}
    assert run_id in listed and len(listed) == 2  # vanilla and irene, one seed each

    # 4. a curve sweep, then the leaderboard where the README says, plots beside it
    run(tiny(words_of(next(steps), work)), work, env)
    board = tiny(words_of(next(steps), work))
    run(board, work, env)
    output = work / board[board.index("--output") + 1]
    assert output.is_file() and "## synthetic" in output.read_text()
    assert any((output.parent / "leaderboard-plots").glob("synthetic*.png"))

    # 5. the plugin, found by its entry point, ranked --with the committed table (of the same tiny protocol)
    assert words_of(next(steps), work)[1:] == ["install", "./examples/covariance-penalty"]
    installed_layout(site)
    sweep = tiny(words_of(next(steps), work))
    ranked = tiny(words_of(next(steps), work))
    table = work / ranked[ranked.index("--with") + 1]
    table.parent.mkdir(parents=True)
    committed = [w if w != "mine" else "curves" for w in sweep]
    committed[committed.index("cov_penalty")] = "vanilla,irene"
    run(committed, work, env)
    run(bench_command() + ["export", "--experiment", "curves", "--output", str(table)], work, env)
    run(sweep, work, env)
    run(ranked, work, env)
    text = (work / "results" / "mine" / "LEADERBOARD.md").read_text()
    assert "cov_penalty" in text and "irene" in text and (work / "results" / "mine" / "leaderboard.html").is_file()

    # 6. re-attack the trial whose id step 1 printed (its model was logged)
    for _ in range(2):
        words = tiny([w if w != "RUN_ID" else run_id for w in words_of(next(steps), work)])
        attacked = run(words, work, env)
        assert f"run {run_id}" in attacked.stdout and "leakage" in attacked.stdout

    # 7. reproduce --list (the data-reading steps: test_the_tour_reproduces_a_paper)
    listing = run(tiny(words_of(next(steps), work)), work, env)
    assert "ffb-table4" in listing.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site", "work"]  # nothing written beside the working folder


@pytest.mark.skipif(not (SHARED_DATA / "adult").is_dir(), reason=f"no data at {SHARED_DATA} (Adult, COMPAS, German)")
def test_the_tour_reproduces_a_paper(tmp_path):
    """Step 7 with its data: the data check, then one seed of FFB's table through the serial executor, into the
    file the README names (not the committed results/REPRODUCTION.md)."""
    lines = tour_commands()[-2:]
    env = {**quiet_env(), "BENCH_OFFLINE": "1"}
    check = tiny(words_of(lines[0], tmp_path), SHARED_DATA)
    assert check[len(bench_command()):len(bench_command()) + 2] == ["data", "check"]
    run(check, tmp_path, env)
    reproduce = tiny(words_of(lines[1], tmp_path), SHARED_DATA)
    run(reproduce, tmp_path, env, timeout=800)
    output = tmp_path / reproduce[reproduce.index("--output") + 1]
    assert output.is_file() and "ffb-table4" in output.read_text().lower()
