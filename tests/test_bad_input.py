"""Bad input to every command: one line on stderr starting ``bench: error:``, exit status 2, within seconds,
and nothing written in the working folder (no mlflow.db, no results, no data folder).

The table runs in-process through :func:`removal_bench.commands.cli.main` (fast); a few rows run the console script
as a subprocess, as a user would, with a timeout that catches a hang. Paths in a row are written
with placeholders: ``{aux}`` is a folder beside the working folder holding the files a row needs
(garbage and truncated databases, a plain file where a folder is expected, corrupt data files),
``{down}`` a loopback port where nothing listens, ``{http}`` a loopback HTTP server that is not
Ray, ``{store}`` a real MLflow SQLite store with one empty experiment.
"""

import socket
import sqlite3
import subprocess

import pytest

from removal_bench.commands.cli import main
from tests.conftest import bench_command, quiet_env, serve_folder

pytestmark = pytest.mark.timeout(120)  # a hang guard; each row takes seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_auxiliary(folder):
    """The files the rows point at, none of them in the working folder."""
    folder.mkdir()
    (folder / "plain_file").write_text("not a folder\n")
    (folder / "garbage.db").write_bytes(bytes(range(256)) * 64)
    other = sqlite3.connect(folder / "other.db")
    other.execute("CREATE TABLE people (name TEXT)")
    other.commit()
    other.close()
    whole = folder / "whole.db"
    database = sqlite3.connect(whole)
    database.execute("CREATE TABLE experiments (payload BLOB)")
    database.execute("INSERT INTO experiments VALUES (?)", (b"x" * 200_000,))
    database.commit()
    database.close()
    (folder / "truncated.db").write_bytes(whole.read_bytes()[:50_000])
    adult = folder / "data" / "adult"
    adult.mkdir(parents=True)
    (adult / "adult.data").write_text("39, State-gov, 77516, Bachelors, 13, Never-marr")  # cut off mid-line
    (adult / "adult.test").write_bytes(b"\x00\xff garbage \x13" * 100)
    (folder / "data" / "german").mkdir()
    (folder / "data" / "german" / "german.data").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The placeholders' values: auxiliary files, a dead port, an HTTP server that is not Ray, a real store."""
    from removal_bench.running.tracking import Tracker, sqlite_uri

    root = tmp_path_factory.mktemp("bad-input")
    aux = make_auxiliary(root / "aux")
    store = root / "store" / "mlflow.db"
    store.parent.mkdir()
    Tracker(sqlite_uri(store), "empty")
    with serve_folder(aux) as http:
        yield {"aux": str(aux), "down": str(free_port()), "http": http.removeprefix("http://"),
               "store": sqlite_uri(store)}


SERVERS_AND_STORES = [
    ("run", ["--tracking-uri", "nonsense://x"], "unknown scheme 'nonsense'"),
    ("run", ["--tracking-uri", "file:///tmp/mlruns"], "file store"),
    ("run", ["--tracking-uri", "sqlite://relative.db"], "expected sqlite:///path/to/mlflow.db"),
    ("run", ["--tracking-uri", "http://127.0.0.1:{down}"], "does not answer"),
    ("run", ["--tracking-uri", "http://{http}"], "answers HTTP 404 at /health: is it an MLflow server?"),
    ("run", ["--tracking-uri", "sqlite:///{aux}/no_such_folder/mlflow.db"], "does not exist"),
    ("run", ["--tracking-uri", "sqlite:///{aux}/plain_file/mlflow.db"], "is a file, not a folder"),
    ("run", ["--tracking-uri", "sqlite:///{aux}/garbage.db"], "is not an SQLite database"),
    ("run", ["--tracking-uri", "sqlite:///{aux}/truncated.db"], "is truncated"),
    ("run", ["--tracking-uri", "sqlite:///{aux}/other.db"], "not an MLflow store"),
    ("run", ["--tracking-uri", "sqlite:///{aux}"], "is a folder, not an SQLite file"),
    ("run", ["--address", "127.0.0.1:{down}"], "cannot reach Ray at 127.0.0.1:{down}: Connection refused"),
    ("run", ["--address", "{http}"], "answers, but not as Ray"),
    ("run", ["--address", "ray://127.0.0.1:{down}"], "cannot reach the Ray client server"),
    ("run", ["--address", "headnode"], "expected HOST:PORT"),
    ("run", ["--address", "127.0.0.1:99999"], "port must be a number"),
    ("run", ["--address", "tcp://127.0.0.1:6379"], "expected HOST:PORT, ray://HOST:PORT or auto"),
    ("sweep", ["--tracking-uri", "http://127.0.0.1:{down}"], "does not answer"),
    ("sweep", ["--address", "127.0.0.1:{down}"], "cannot reach Ray"),
]

DEVICES_FOLDERS_NUMBERS = [
    ("run", ["--device", "cuda:99"], "--device cuda:99: this machine has"),
    ("run", ["--device", "tpu"], "unknown --device 'tpu'"),
    ("run", ["--device", "cpu:1"], "unknown --device 'cpu:1'"),
    ("sweep", ["--device", "cuda:99"], "--device cuda:99: this machine has"),
    ("run", ["--results-dir", "{aux}/plain_file/tables"], "is a file, not a folder"),
    ("run", ["--results-dir", "{aux}/plain_file"], "is a file, not a folder"),
    ("run", ["--results-dir", "/proc/version/tables"], "is a file, not a folder"),
    ("run", ["--data-root", "{aux}/plain_file"], "is a file, not a folder"),
    ("run", ["--storage-path", "{aux}/plain_file/ray"], "is a file, not a folder"),
    ("run", ["--cpus-per-trial", "nan"], "expected a finite number"),
    ("run", ["--cpus-per-trial", "inf"], "expected a finite number"),
    ("run", ["--cpus-per-trial", "-1"], "must be above 0"),
    ("run", ["--cpus-per-trial", "0"], "must be above 0"),
    ("run", ["--cpus-per-trial", "4096"], "this machine has"),
    ("run", ["--gpus-per-trial", "-0.5"], "must not be negative"),
    ("run", ["--gpus-per-trial", "1024"], "CUDA GPU(s)"),
    ("run", ["--gpus-per-trial", "nan"], "expected a finite number"),
    ("run", ["--max-concurrent", "0"], "must be at least 1"),
    ("run", ["--max-concurrent", "-3"], "must be at least 1"),
    ("run", ["--seeds", "0"], "must be at least 1"),
    ("run", ["--seeds", "two"], "expected a whole number"),
    ("run", ["--epochs", "-1"], "must not be negative"),
    ("run", ["--batch-size", "1"], "batch_size must be a whole number >= 2"),
    ("run", ["--encoder", "transformer"], "unknown encoder 'transformer'"),
    ("run", ["--experiment", " "], "--experiment must not be empty"),
    ("run", ["--executor", "serial", "--address", "127.0.0.1:6379"], "--address is for Ray"),
    ("run", ["--executor", "serial", "--max-concurrent", "2"], "--max-concurrent is for Ray"),
    ("sweep", ["--scheduler", "asha", "--executor", "serial"], "--scheduler asha needs --executor ray"),
    ("sweep", ["--grid", "--samples", "3"], "give one of them"),
    ("sweep", ["--samples", "0"], "must be at least 1"),
    ("sweep", ["--grid", "--grid-points", "1"], "--grid-points must be at least 2"),
    ("sweep", ["--reduction-factor", "inf"], "expected a finite number"),
    ("sweep", ["--reduction-factor", "nan"], "expected a finite number"),
    ("sweep", ["--reduction-factor", "1"], "must be above 1"),
    ("sweep", ["--grace-period", "0"], "must be at least 1"),
    ("sweep", ["--max-leakage", "1.5"], "between 0 and 1"),
    ("sweep", ["--max-leakage", "nan"], "between 0 and 1"),
    ("sweep", ["--format", "pdf"], "unknown --format 'pdf'"),
    ("sweep", ["--sweep-seed", "-1"], "must not be negative"),
    ("sweep", ["--cpus-per-trial=-inf"], "expected a finite number"),
]

NAMES_AND_DATA = [
    ("run", ["--methods", "irene,nope"], "unknown method 'nope'"),
    ("run", ["--methods", "irene,,grl"], "empty name"),
    ("run", ["--datasets", "mnistt"], "unknown dataset 'mnistt'"),
    ("run", ["--datasets", "colored_digits:rhoo=0.9"], "colored_digits has no option 'rhoo'"),
    ("run", ["--datasets", "colored_digits:rho=abc"], "expected a float"),
    ("run", ["--datasets", "colored_digits:rho"], "malformed option"),
    ("run", ["--methods", "irene", "--set", "irene.delta=1"], "irene has no option 'delta'"),
    ("run", ["--methods", "irene", "--set", "irene.gamma"], "malformed --set"),
    ("run", ["--methods", "irene", "--set", "gamma=1"], "malformed --set"),
    ("run", ["--methods", "irene", "--set", "grl.lambda=1"], "not among the methods run"),
    ("run", ["--methods", "irene", "--set", "irene.gamma=nan"], "expected a float, got 'nan'"),
    ("run", ["--executor", "spark"], "invalid choice"),
    ("run", ["--methods", "vanilla", "--datasets", "adult", "--data-root", "{aux}/empty_root"], "adult: missing adult.data"),
    ("run", ["--methods", "vanilla", "--datasets", "adult", "--data-root", "{aux}/data"], "not match the expected SHA-256"),
    ("run", ["--methods", "vanilla", "--datasets", "german", "--data-root", "{aux}/data"], "german.data in"),
    ("sweep", ["--methods", "nope"], "unknown method 'nope'"),
    ("sweep", ["--methods", "vanilla", "--datasets", "adult", "--data-root", "{aux}/data"], "not match the expected SHA-256"),
    ("report", ["--experiment", "default"], "no MLflow store at"),
    ("report", ["--tracking-uri", "sqlite:///{aux}/garbage.db"], "is not an SQLite database"),
    ("report", ["--tracking-uri", "sqlite:///{aux}/truncated.db"], "is truncated"),
    ("report", ["--tracking-uri", "nonsense://x"], "unknown scheme"),
    ("report", ["--tracking-uri", "http://127.0.0.1:{down}"], "does not answer"),
    ("report", ["--tracking-uri", "{store}", "--experiment", "nope"], "has no experiment 'nope'"),
    ("report", ["--tracking-uri", "{store}", "--experiment", "empty"], "holds no trial runs"),
    ("report", ["--tracking-uri", "{store}", "--experiment", "empty", "--results-dir", "{aux}/plain_file/x"],
     "is a file, not a folder"),
    ("report", ["--max-leakage", "2"], "between 0 and 1"),
    ("report", ["--format", "docx"], "unknown --format"),
    ("report", ["--experiment", ""], "--experiment must not be empty"),
    ("leaderboard", [], "no MLflow store at"),
    ("leaderboard", ["--tracking-uri", "sqlite:///{aux}/other.db"], "not an MLflow store"),
    ("leaderboard", ["--tracking-uri", "{store}"], "holds no bench trial runs"),
    ("leaderboard", ["--tracking-uri", "{store}", "--experiment", "nope"], "has no experiment 'nope'"),
    ("leaderboard", ["--tracking-uri", "{store}", "--output", "{aux}/plain_file/board.md"], "is a file, not a folder"),
    ("leaderboard", ["--tracking-uri", "{store}", "--output", "{aux}"], "is a folder, not a file"),
    ("leaderboard", ["--max-leakage", "-0.1"], "between 0 and 1"),
    ("leaderboard", ["--experiment", "a,,b"], "empty name"),
    ("data", ["check", "nope"], "unknown dataset 'nope'"),
    ("data", ["check", "--data-root", "{aux}/plain_file"], "is a file, not a folder"),
    ("data", ["fetch", "nope"], "unknown dataset 'nope'"),
    ("data", ["fetch"], "the following arguments are required"),
    ("data", ["fetch", "adult", "--data-root", "{aux}/plain_file/data"], "is a file, not a folder"),
    ("data", ["fetch", "adult", "--data-root", "{aux}/empty_root"], "missing adult.data, adult.test"),
    ("data", ["fetch", "adult", "--data-root", "{aux}/data"], "not match the expected SHA-256"),
    ("data", [], "expected a command, check or fetch"),
    ("data", ["purge"], "invalid choice"),
    ("list", ["--verbose"], "unrecognized arguments"),
    ("list", ["methods"], "unrecognized arguments"),
    ("launch", [], "invalid choice"),
]

# Plugins (tests/plugin_samples.py, tests/plugin_broken.py) and trial tables (bench export, import, verify, leaderboard --from).
PLUGINS_AND_TABLES = [
    ("run", ["--methods", "tests.plugin_samples:NotAMethod"], "is not a subclass of removal_bench.methods.base.Method"),
    ("run", ["--methods", "vanilla,tests.plugin_samples:NoUpdate"], "does not implement update(x, y, s)"),
    ("run", ["--methods", "tests.plugin_samples:TakesIrene"], "takes the name 'irene', which the built-in method"),
    ("run", ["--methods", "tests.plugin_samples:StrengthNotDeclared"], "declares strength 'gamma', which is not among"),
    ("run", ["--methods", "tests.plugin_samples:HtmlName"], "has no usable name ('<b>bold</b>')"),
    ("run", ["--methods", "tests.plugin_samples:NoDescription"], "has no description"),
    ("run", ["--methods", "tests.plugin_samples:Missing"], "has no attribute 'Missing'"),
    ("run", ["--methods", "no_such_module_anywhere:Method"], "failed to import: ModuleNotFoundError"),
    ("sweep", ["--curve", "--methods", "tests.plugin_broken:Anything"], "failed to import: RuntimeError: this plugin is broken"),
    ("run", ["--datasets", "tests.plugin_samples:NoLoad"], "does not implement load(options, data_root)"),
    ("run", ["--datasets", "tests.plugin_samples:TakesAdult:x=1"], "takes the name 'adult', which the built-in dataset"),
    ("run", ["--datasets", "tests.plugin_samples:NoUpdate"], "is not a subclass of removal_bench.datasets.base.Dataset"),
    ("list", ["--methods", "tests.plugin_samples:NoUpdate"], "does not implement update"),
    ("leaderboard", ["--from", "{aux}/missing.jsonl"], "does not exist (bench export writes one)"),
    ("leaderboard", ["--from", "{aux}/plain_file"], "line 1 is not JSON"),
    ("leaderboard", ["--from", "{aux}/plain_file", "--experiment", "x"], "--from reads the trial table instead of MLflow"),
    ("leaderboard", ["--with", "{aux}/missing.jsonl", "--tracking-uri", "{store}"], "does not exist"),
    ("verify", ["{aux}/plain_file"], "line 1 is not JSON"),
    ("verify", ["{aux}/missing.jsonl", "--sample", "2"], "does not exist"),
    ("verify", ["{aux}/missing.jsonl", "--sample", "0"], "must be at least 1"),
    ("export", ["--experiment", "nope", "--tracking-uri", "{store}"], "has no experiment 'nope'"),
    ("export", ["--experiment", "empty", "--tracking-uri", "{store}"], "holds no trial runs"),
    ("export", ["--experiment", "a,b", "--output", "x.jsonl"], "--output names one file"),
    ("import", ["{aux}/missing.jsonl"], "does not exist (bench export writes one)"),
    ("import", ["{aux}/plain_file"], "line 1 is not JSON"),
    ("import", ["{aux}/plain_file", "--experiment", " "], "--experiment must not be empty"),
    ("import", [], "the following arguments are required: FILE"),
]

TABLE = SERVERS_AND_STORES + DEVICES_FOLDERS_NUMBERS + NAMES_AND_DATA + PLUGINS_AND_TABLES


def fill(text: str, places: dict[str, str]) -> str:
    for name, value in places.items():
        text = text.replace("{" + name + "}", value)
    return text


def assert_one_error_line(status: int, stderr: str, fragment: str) -> None:
    lines = stderr.strip().splitlines()
    assert status == 2, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("bench: error: "), stderr
    assert fragment in lines[0], stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("command, arguments, fragment", TABLE, ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(command, arguments, fragment, places, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "default_root"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    status = main([command, *(fill(argument, places) for argument in arguments)])
    captured = capsys.readouterr()
    assert_one_error_line(status, captured.err, fill(fragment, places))
    assert list(work.iterdir()) == []
    assert not (tmp_path / "default_root").exists()


# The console script, as a user runs it: the rows that used to hang for minutes or print a traceback.
SUBPROCESS_ROWS = [
    (["run", "--tracking-uri", "http://127.0.0.1:{down}"], "does not answer"),
    (["sweep", "--address", "127.0.0.1:{down}", "--methods", "vanilla"], "cannot reach Ray"),
    (["run", "--device", "cuda:7", "--methods", "vanilla"], "--device cuda:7"),
    (["report", "--tracking-uri", "sqlite:///{aux}/garbage.db"], "is not an SQLite database"),
    (["run", "--methods", "nope"], "unknown method 'nope' (valid: "),
]


@pytest.mark.parametrize("arguments, fragment", SUBPROCESS_ROWS, ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_console_script_bad_input_is_one_line_within_seconds(arguments, fragment, places, tmp_path):
    done = subprocess.run(bench_command() + [fill(argument, places) for argument in arguments], cwd=tmp_path,
                          capture_output=True, text=True, env={**quiet_env(), "BENCH_OFFLINE": "1"}, timeout=60)
    assert_one_error_line(done.returncode, done.stderr, fill(fragment, places))
    assert list(tmp_path.iterdir()) == []


def test_auxiliary_files_are_left_as_they_were(places):
    """The checks only read: the garbage and truncated stores keep their bytes."""
    from pathlib import Path

    aux = Path(places["aux"])
    assert (aux / "garbage.db").read_bytes() == bytes(range(256)) * 64
    assert len((aux / "truncated.db").read_bytes()) == 50_000
    assert not (aux / "no_such_folder").exists() and not (aux / "empty_root").exists()
