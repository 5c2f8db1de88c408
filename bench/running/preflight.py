"""Checks made before the first trial, before any MLflow run or results file is written.

Every command calls these at its boundary. Each either returns or raises
:class:`removal_bench.core.errors.UserError` with one line, within seconds: a tracking URI
with an unknown scheme, a server that does not answer, a SQLite file that is
not a database, a Ray address nobody listens on, a device this machine does not
have, a folder that cannot be written, a number that is not finite. Network
probes use ``PROBE_SECONDS`` (``BENCH_PROBE_SECONDS``, default 5) as their timeout.

The checks write nothing: a writability probe uses an unnamed temporary file.
"""

from __future__ import annotations

import math
import os
import re
import socket
import sqlite3
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from removal_bench.core.errors import UserError

SQLITE_HEADER = b"SQLite format 3\x00"
# What MLflow itself accepts as a tracking store (a "+driver" suffix is allowed on databases).
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
RAY_CLIENT_PORT = 10001
DEVICE_PATTERN = re.compile(r"^(cpu|cuda|mps)(?::(\d+))?$")


def probe_seconds() -> float:
    text = os.environ.get("BENCH_PROBE_SECONDS", "5")
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"BENCH_PROBE_SECONDS must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"BENCH_PROBE_SECONDS must be a positive number of seconds, got {text!r}")
    return value


def one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split())[:300]


# --- numbers ---------------------------------------------------------------------------------------

def finite(value: float | None, option: str, minimum: float = 0.0, strict: bool = False) -> None:
    """UserError unless ``value`` is None or a finite number above (``strict``) or at least ``minimum``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{option} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise UserError(f"{option} must be {'above' if strict else 'at least'} {minimum:g}, got {value:g}")


# --- folders and files -------------------------------------------------------------------------------

def _nearest_existing(path: Path) -> Path:
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def _can_create_in(folder: Path) -> str | None:
    """None when a file can be created in ``folder``, else the reason; leaves nothing behind."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:  # root passes os.access everywhere; a read-only file system does not let it write
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return error.strerror or one_line(error)
    return None


def writable_folder(path: str | Path, option: str) -> Path:
    """The absolute folder; UserError unless it is (or can be created as) a folder this process can write."""
    folder = readable_folder(path, option)
    ancestor = _nearest_existing(folder)
    reason = _can_create_in(ancestor)
    if reason:
        raise UserError(f"{option} {path}: cannot write in {ancestor} ({reason})")
    return folder


def writable_file(path: str | Path, option: str) -> Path:
    """The absolute file path; UserError unless it can be written (its folder writable, not itself a folder)."""
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise UserError(f"{option} {path}: is a folder, not a file")
    writable_folder(target.parent, option)
    return target


def readable_folder(path: str | Path, option: str) -> Path:
    """A folder that may not exist yet (nothing in it then), but must not be a file."""
    folder = Path(path).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {path}: is a file, not a folder")
    ancestor = _nearest_existing(folder)
    if not ancestor.is_dir():
        raise UserError(f"{option} {path}: {ancestor} is a file, not a folder")
    return folder


# --- tracking ------------------------------------------------------------------------------------------

def tracking_uri(uri: str | None, write: bool = True) -> str:
    """The absolute tracking URI, checked: its scheme is known and its store answers.

    ``write``: the command will create runs (``run``, ``sweep``): a SQLite file may
    be created; otherwise (``report``, ``leaderboard``) the store must already exist.
    """
    from removal_bench.running.tracking import normalise_tracking_uri

    if uri is not None and not uri.strip():
        raise UserError("--tracking-uri must not be empty")
    uri = normalise_tracking_uri(uri.strip() if uri else uri)
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else uri.split(":", 1)[0].lower()
    base = scheme.split("+", 1)[0]
    if base not in TRACKING_SCHEMES:
        raise UserError(
            f"tracking URI {uri!r} has an unknown scheme {scheme!r} "
            "(expected sqlite:///path/to/mlflow.db, http://host:port or https://host:port)"
        )
    if base == "sqlite":
        sqlite_store(uri, write)
    elif base in ("http", "https"):
        http_server(uri)
    elif base in DATABASE_PORTS:
        parsed = urllib.parse.urlsplit(uri)
        if parsed.hostname:
            tcp_reachable(parsed.hostname, parsed.port or DATABASE_PORTS[base], f"the {base} server of {uri}")
    return uri


def sqlite_store(uri: str, write: bool) -> None:
    if not uri.startswith("sqlite:///") or len(uri) == len("sqlite:///"):
        raise UserError(f"tracking URI {uri!r}: expected sqlite:///path/to/mlflow.db")
    path = Path(uri[len("sqlite:///") :])
    if path.exists():
        if path.is_dir():
            raise UserError(f"tracking URI {uri}: {path} is a folder, not an SQLite file")
        sqlite_file(path, uri)
        if write:
            reason = _can_create_in(path.parent) or (None if os.access(path, os.W_OK) else "permission denied")
            if reason:  # SQLite writes a journal beside the database
                raise UserError(f"tracking URI {uri}: cannot write {path} ({reason})")
        return
    if not write:
        raise UserError(f"no MLflow store at {path} (run bench run or bench sweep first, or give --tracking-uri)")
    folder = path.parent
    if not folder.exists():
        raise UserError(f"tracking URI {uri}: folder {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"tracking URI {uri}: {folder} is a file, not a folder")
    reason = _can_create_in(folder)
    if reason:
        raise UserError(f"tracking URI {uri}: cannot create {path.name} in {folder} ({reason})")


def sqlite_file(path: Path, uri: str) -> None:
    """UserError unless ``path`` is an SQLite database, whole, that MLflow could have written (or empty)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as error:
        raise UserError(f"tracking URI {uri}: cannot read {path} ({error.strerror})") from None
    if size == 0:
        return  # SQLite and MLflow treat an empty file as an empty database
    if not header.startswith(SQLITE_HEADER) or len(header) < 100:
        raise UserError(f"tracking URI {uri}: {path} is not an SQLite database")
    # The header's page size (1 means 65536) and page count: a file shorter than that was cut off.
    page_size = int.from_bytes(header[16:18], "big")
    expected = (65536 if page_size == 1 else page_size) * int.from_bytes(header[28:32], "big")
    if size < expected:
        raise UserError(f"tracking URI {uri}: {path} is truncated ({size} of {expected} bytes)")
    # Read-write where the file is writable: a writer SIGKILLed mid-transaction leaves a hot journal
    # (mlflow.db-journal) that the next reader must roll back, which a read-only connection cannot do ("attempt
    # to write a readonly database"): every later command refused a store that was whole (tests/test_chaos.py).
    # Rolling it back is what SQLite does on any open that may write; nothing else is written here.
    mode = "rw" if os.access(path, os.W_OK) else "ro"
    try:
        connection = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=probe_seconds())
        try:
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise UserError(f"tracking URI {uri}: {path} is not a readable SQLite database ({one_line(error)})") from None
    if page_size * pages > size:
        raise UserError(f"tracking URI {uri}: {path} is truncated ({size} bytes of {page_size * pages})")
    if tables and "experiments" not in tables:
        raise UserError(f"tracking URI {uri}: {path} is an SQLite database but not an MLflow store")


def http_server(uri: str) -> None:
    """UserError unless an MLflow server answers at ``uri`` within the probe timeout (``/health``, as ``mlflow server`` serves it)."""
    timeout = probe_seconds()
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout):
            pass
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise UserError(f"MLflow server at {uri} answers HTTP {error.code} ({one_line(error.reason)})") from None
        if error.code not in (401, 403):  # behind authentication, MLflow's credentials variables will answer it
            raise UserError(f"{uri} answers HTTP {error.code} at /health: is it an MLflow server?") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            reason = f"no answer within {timeout:g} s"
        raise UserError(f"MLflow server at {uri} does not answer: {one_line(reason)}") from None


# --- Ray ---------------------------------------------------------------------------------------------

def tcp_reachable(host: str, port: int, what: str) -> None:
    timeout = probe_seconds()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except (TimeoutError, socket.timeout):
        raise UserError(f"cannot reach {what} at {host}:{port}: no answer within {timeout:g} s") from None
    except OSError as error:
        raise UserError(f"cannot reach {what} at {host}:{port}: {error.strerror or one_line(error)}") from None


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and an empty SETTINGS frame
SETTINGS_FRAME = 4


def grpc_answers(host: str, port: int, what: str) -> None:
    """UserError unless a gRPC (HTTP/2) server answers at host:port, as Ray's GCS and client server do.

    Ray's own client retries for minutes against a port where something else
    listens; an HTTP/2 server answers the connection preface with a SETTINGS frame at once.
    """
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # the preface would have to go through TLS; the TCP check has to do
    timeout = probe_seconds()
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(HTTP2_PREFACE)
            reply = b""
            while len(reply) < 9:
                chunk = connection.recv(9 - len(reply))
                if not chunk:
                    break
                reply += chunk
    except (TimeoutError, socket.timeout):
        raise UserError(f"{host}:{port} accepts connections but does not answer as {what} within {timeout:g} s") from None
    except OSError as error:
        raise UserError(f"cannot reach {what} at {host}:{port}: {error.strerror or one_line(error)}") from None
    if len(reply) < 9 or reply[3] != SETTINGS_FRAME:
        raise UserError(f"{host}:{port} answers, but not as {what} (no gRPC server there)")


def split_host_port(text: str, default_port: int | None, option: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit("//" + text)
    try:
        port = parsed.port
    except ValueError:
        raise UserError(f"{option} {text!r}: the port must be a number from 0 to 65535") from None
    host = parsed.hostname
    if not host or parsed.path or (port is None and default_port is None):
        raise UserError(f"{option} {text!r}: expected HOST:PORT, e.g. 10.0.0.5:6379")
    return host, port if port is not None else default_port


def current_ray_cluster() -> str | None:
    """The address of the Ray that ``ray start`` last started on this machine, as ``address="auto"`` finds it."""
    temp = os.environ.get("RAY_TMPDIR") or "/tmp/ray"
    try:
        text = (Path(temp) / "ray_current_cluster").read_text().strip()
    except OSError:
        return None
    return text or None


def ray_address(address: str | None) -> None:
    """UserError unless a Ray cluster listens at ``address`` (None: a local Ray is started, nothing to check)."""
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    if not address or address == "local":
        return
    if address == "auto":
        found = current_ray_cluster()
        if not found:
            raise UserError("--address auto: no Ray cluster was started on this machine "
                            "(ray start --head starts one; without --address a local Ray is started for the run)")
        address = found
    if address.startswith("ray://"):
        host, port = split_host_port(address[len("ray://") :], RAY_CLIENT_PORT, "--address")
        tcp_reachable(host, port, "the Ray client server")
        grpc_answers(host, port, "the Ray client server")
        return
    if "://" in address:
        raise UserError(f"--address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    host, port = split_host_port(address, None, "--address")
    tcp_reachable(host, port, "Ray")
    grpc_answers(host, port, "Ray")


# --- devices -----------------------------------------------------------------------------------------

def device(name: str, local: bool = True) -> None:
    """UserError unless ``name`` names a device (and, when the trials run here, this machine has it)."""
    if name == "auto":
        return
    match = DEVICE_PATTERN.match(name or "")
    if not match or (match.group(1) == "cpu" and match.group(2) is not None):
        raise UserError(f"unknown --device {name!r} (valid: auto, cpu, cuda, cuda:N, mps)")
    kind, index = match.group(1), int(match.group(2)) if match.group(2) is not None else 0
    if kind == "cpu" or not local:  # a cluster's workers, not this machine, have its GPUs
        return
    import torch

    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {name}: this machine has no CUDA GPU (use --device cpu or auto)")
        if index >= count:
            raise UserError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()) or index > 0:
        raise UserError(f"--device {name}: this machine has no Apple MPS device")


def local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """A local Ray waits forever for a trial that asks for more than the machine has: refuse it up front."""
    cpus = local_cpus()
    if cpus_per_trial > cpus:
        raise UserError(f"--cpus-per-trial {cpus_per_trial:g}: this machine has {cpus} CPU(s)")
    if gpus_per_trial > 0:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus_per_trial > gpus:
            raise UserError(f"--gpus-per-trial {gpus_per_trial:g}: this machine has {gpus} CUDA GPU(s)")


# --- a run's request ---------------------------------------------------------------------------------

def validate_request(request) -> None:
    """Checks that `bench run` and `bench sweep` share (those that need no machine, file or server); ``request``
    is a RunRequest or the parsed arguments (the same attribute names)."""
    if not isinstance(request.seeds, int) or request.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {request.seeds}")
    if request.executor not in ("ray", "serial", "offline"):
        raise UserError(f"unknown executor {request.executor!r} (valid: ray, serial, offline)")
    offline_dir = getattr(request, "offline_dir", None)
    if request.executor == "offline" and not offline_dir:
        raise UserError("--executor offline plans the trials into a folder: give --offline-dir DIR")
    if offline_dir and request.executor != "offline":
        raise UserError("--offline-dir is for --executor offline")
    if request.executor == "offline":
        for option, value in (("--save-embeddings", getattr(request, "save_embeddings", False)),
                              ("--log-models", getattr(request, "log_models", False))):
            if value:
                raise UserError(f"{option} logs files the trial writes; --executor offline brings back only its "
                                "results line")
    finite(request.cpus_per_trial, "--cpus-per-trial", strict=True)
    finite(request.gpus_per_trial, "--gpus-per-trial")
    finite(request.max_concurrent, "--max-concurrent", minimum=1)
    if request.executor in ("serial", "offline"):
        for option, value in (("--address", request.address), ("--max-concurrent", request.max_concurrent),
                              ("--storage-path", request.storage_path)):
            if value is not None:
                raise UserError(f"{option} is for Ray; --executor {request.executor} "
                                + ("runs every trial in this process" if request.executor == "serial"
                                   else "plans the trials for python -m removal_bench.running.offline"))
    if not request.experiment or not request.experiment.strip():
        raise UserError("--experiment must not be empty")
