"""Full disks and termination: one line naming the path, nothing half-written, the same command resumes.

A full disk (``ENOSPC``, a quota's ``EDQUOT``, SQLite's "database or disk is
full") is not a bug to show a traceback for but a fault of the machine: every
writer of ours turns it into :class:`DiskFull`, a :class:`UserError` whose one
line names the file and what was being written. :func:`write_atomic` is the one
way a text file of ours is written: a temporary file beside it, renamed into
place only when whole, removed on any failure (a full disk, Ctrl-C, SIGTERM).

SIGTERM (what a scheduler sends to preempt a job) is handled as Ctrl-C:
:func:`terminate_as_interrupt` makes it raise :class:`Terminated`, a
``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` and ``except
BaseException`` cleanup of the driver (runs closed KILLED, Ray shut down,
temporary files removed) runs for it too; the CLI then exits with status 143.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from removal_bench.core.errors import UserError

FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded", "file write failed")
MIN_FREE_VARIABLE = "BENCH_MIN_FREE_MB"
DEFAULT_MIN_FREE_MB = 50.0  # the floor checked before the first trial (results, tracking store, data root)
# In a trial's result (removal_bench.running.trial.execute_trial): the path it could not write and what it was; the
# driver records the trial FAILED and then stops, since every later trial would fail the same way.
DISK_FULL_KEY, DISK_FULL_WHAT_KEY = "bench.disk_full", "bench.disk_full_what"
TERMINATED_STATUS = 128 + signal.SIGTERM  # 143, as a shell reports a process that SIGTERM ended


class DiskFull(UserError):
    """A write failed because its file system is full; the message names the path and what was written."""

    def __init__(self, path: str | Path | None, what: str, detail: str = "no space left on device", hint: str = ""):
        self.path, self.what, self.detail, self.hint = (str(path) if path else None), what, detail, hint
        where = f" {self.path}" if self.path else ""
        super().__init__(f"{detail}: cannot write{where} ({what})" + (f"; {hint}" if hint else ""))

    def with_hint(self, hint: str) -> "DiskFull":
        """The same fault with what the user does next (once, by whoever knows it best)."""
        return self if self.hint else DiskFull(self.path, self.what, self.detail, hint)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from) says the file system or SQLite file is full.

    ``file write failed`` is how ``torch.save`` reports ``ENOSPC`` (its C++ writer drops the errno).
    """
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, DiskFull):
            return True
        if isinstance(error, OSError) and error.errno in FULL_ERRNOS:
            return True
        if any(text in str(error).lower() for text in FULL_TEXTS):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def full_disk_error(error: BaseException, path: str | Path | None, what: str) -> DiskFull:
    """The :class:`DiskFull` for ``error``, naming ``path`` (or the path the OSError names)."""
    if isinstance(error, DiskFull):
        return error
    path = path or getattr(error, "filename", None)
    detail = "database or disk is full" if "database or disk is full" in str(error).lower() else "no space left on device"
    return DiskFull(path, what, detail)


def write_atomic(path: str | Path, text: str | bytes, what: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all: a temporary file beside it, renamed into place.

    On any failure the temporary file is removed and an existing ``path`` is left
    as it was; a full disk raises :class:`DiskFull` naming ``path`` and ``what``.
    """
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "wb" if isinstance(text, bytes) else "w") as stream:
            stream.write(text)
        publish(temporary, path)
        temporary = None
    except OSError as error:
        if is_disk_full(error):
            raise full_disk_error(error, path, what) from None
        raise
    finally:
        if temporary is not None:
            remove_quietly(temporary)
    return path


def save_atomic(path: str | Path, write, what: str) -> Path:
    """Like :func:`write_atomic` for a file that a library writes itself (``torch.save``, ``np.savez``):
    ``write(stream)`` fills a temporary file beside ``path``, open for binary writing, which is renamed into
    place when whole and removed on any failure; a full disk raises :class:`DiskFull` naming ``path`` and
    ``what``. A stream rather than a file name: ``torch.save`` to a name reports a full disk as "unexpected
    pos 704 vs 598" or "file write failed" (its C++ writer drops the errno), to a stream as ``ENOSPC``."""
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        publish(temporary, path)
        temporary = None
    except Exception as error:
        if is_disk_full(error):
            raise full_disk_error(error, path, what) from None
        raise
    finally:
        if temporary is not None:
            remove_quietly(temporary)
    return path


def publish(temporary: str | Path, path: str | Path) -> None:
    """Give a finished temporary file the usual permissions (mkstemp makes it 0600) and move it in place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, path)


def remove_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- free space before the first trial ---------------------------------------------------------------

def min_free_bytes() -> int:
    """The floor of free space (``BENCH_MIN_FREE_MB``, default 50 MB) every written folder must have."""
    text = os.environ.get(MIN_FREE_VARIABLE)
    if text is None:
        return int(DEFAULT_MIN_FREE_MB * 1e6)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise UserError(f"{MIN_FREE_VARIABLE} must be a number of megabytes, at least 0, got {text!r}")
    return int(value * 1e6)


def nearest_existing(path: Path) -> Path:
    ancestor = Path(path).expanduser().absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def free_bytes(path: str | Path) -> int:
    """Free bytes (for this user) on the file system that holds ``path`` or would hold it."""
    return shutil.disk_usage(nearest_existing(Path(path))).free


def require_free(places: list[tuple[str | Path, str, int]]) -> None:
    """UserError unless each (folder, what, extra bytes) has the floor plus its extra free.

    Folders on one file system are checked once, against the sum of what they need.
    """
    floor = min_free_bytes()
    by_device: dict[int, tuple[Path, list[str], int]] = {}
    for folder, what, extra in places:
        existing = nearest_existing(Path(folder))
        device = os.stat(existing).st_dev
        _, names, need = by_device.get(device, (existing, [], 0))
        by_device[device] = (existing, [*names, f"{what} {folder}"], need + max(int(extra), 0))
    for existing, names, need in by_device.values():
        total, free = need + floor, free_bytes(existing)
        if free < total:
            raise UserError(
                f"not enough free space for {', '.join(names)}: {size_text(free)} free, {size_text(total)} needed "
                f"(the floor {MIN_FREE_VARIABLE}={floor / 1e6:g}"
                + (f" plus {size_text(need)} estimated for this plan's trials" if need else "")
                + "); free some space or point the folder elsewhere"
            )


def size_text(size: float) -> str:
    """``8192`` -> ``8.2 kB``; decimal units, as ``df -H`` prints them."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} bytes"


# --- SIGTERM as Ctrl-C ---------------------------------------------------------------------------------

class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled as Ctrl-C (runs closed KILLED), then exit status 143."""


_deferring = 0  # how many termination_deferred sections are open
_pending = False  # SIGTERM arrived inside one: raised when the outermost closes
_received = False  # SIGTERM arrived in this process (Ray Tune may re-raise our Terminated as a plain KeyboardInterrupt)


def _inside_import(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _deliver_again(seconds: float) -> None:
    """SIGTERM to this process again in ``seconds``, from another thread, to meet :func:`_raise_terminated`
    where it can raise."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()


def _raise_terminated(signum, frame) -> None:
    global _pending, _received
    if not _claim_end("main"):
        return  # a SigtermWatchdog is ending the command: the main thread must not start a second ending
    _received = True
    if _inside_import(frame):
        # Under an import, native code may catch the exception and raise its own: pydantic-core, building
        # MLflow's schemas as `import mlflow` runs, turned Terminated into a SchemaError and a 60-line traceback,
        # exit 1 (tests/test_chaos.py's import test, 1 run of 6). Raised once the import is done.
        _deliver_again(0.1)
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup of the first
    if _deferring:
        _pending = True
        return
    raise Terminated()


_claimed: list[str] = []  # who ends the command after a SIGTERM: "main" (its handler) or "watchdog"
_claim_lock = threading.Lock()


def _claim_end(who: str) -> bool:
    with _claim_lock:
        if not _claimed:
            _claimed.append(who)
        return _claimed[0] == who


def terminated_line(left: list[str]) -> str:
    """The one line a command ended by SIGTERM prints, ``left`` naming what it had to leave unfinished."""
    return ("bench: terminated (SIGTERM); open runs were closed KILLED, the same command resumes"
            + "".join(f"; {what}" for what in left))


class SigtermWatchdog:
    """Ends the command within ``within`` seconds of a SIGTERM that the main thread cannot take.

    Python runs a signal handler in the main thread between two bytecodes; a main thread blocked in native code
    runs none. A sweep's driver blocked in Ray's client on a GCS that no longer answers (stopped, or hung: Ray
    Tune's trial registry reads the GCS's key-value store with no deadline) never raised :class:`Terminated`
    and outlived its SIGTERM for good (tests/test_full_disk_and_sigterm.py, 1 run in 6 on a loaded 2-core
    machine). The C-level handler still writes the signal's number to ``signal.set_wakeup_fd``, which a thread
    of this class reads: if the handler has not run ``within`` seconds later, that thread calls ``end`` (kill
    what hangs, close the open runs KILLED), prints :func:`terminated_line` with ``why``, and ends the process
    with status 143, skipping the exit handlers that would wait on the stuck thread. Use as a context manager
    in the main thread, around the work that may block (elsewhere it does nothing)."""

    def __init__(self, within: float, end, why: str):
        self.within, self.end, self.why = within, end, why
        self.pipe: tuple[int, int] | None = None
        self.previous = -1
        self.thread: threading.Thread | None = None

    def __enter__(self) -> "SigtermWatchdog":
        if threading.current_thread() is not threading.main_thread():
            return self
        read, write = os.pipe()
        os.set_blocking(write, False)
        try:
            self.previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        except ValueError:
            os.close(read)
            os.close(write)
            return self
        self.pipe = (read, write)
        self.thread = threading.Thread(target=self._watch, name="sigterm-watchdog", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.pipe is None:
            return
        signal.set_wakeup_fd(self.previous)
        try:
            os.write(self.pipe[1], b"\0")  # 0 is no signal: the thread stops
        except OSError:
            pass
        self.thread.join(self.within + 5)
        if not self.thread.is_alive():
            for fd in self.pipe:
                os.close(fd)
        self.pipe = None

    def _watch(self) -> None:
        read = self.pipe[0]
        while True:
            try:
                data = os.read(read, 64)
            except OSError:
                return
            if not data or 0 in data:
                return
            if signal.SIGTERM in data:
                break
        deadline = time.monotonic() + self.within
        while time.monotonic() < deadline:
            if _claimed:  # the main thread's handler ran (or will end it through its path)
                return
            time.sleep(0.1)
        if not _claim_end("watchdog"):
            return
        try:
            self.end()
        except BaseException:  # noqa: BLE001 - the process ends below whatever the ending managed
            pass
        try:
            print(terminated_line([*abandoned(), self.why]), file=sys.stderr, flush=True)
            sys.stdout.flush()
        finally:
            os._exit(TERMINATED_STATUS)


def sigterm_received() -> bool:
    """Whether SIGTERM arrived: an interruption that comes out as a plain KeyboardInterrupt is still one."""
    return _received


def termination_pending() -> bool:
    """Whether SIGTERM arrived inside a :func:`termination_deferred` section (a wait there should stop)."""
    return _pending


def termination_deferred(function):
    """Decorate a bookkeeping step that must not be cut in two (an MLflow run created but not yet recorded
    as open would be left RUNNING): SIGTERM inside it is raised when it returns."""
    import functools

    @functools.wraps(function)
    def call(*args, **kwargs):
        global _deferring, _pending
        _deferring += 1
        try:
            result = function(*args, **kwargs)
        finally:
            _deferring -= 1
        if _pending and not _deferring:
            _pending = False
            raise Terminated()
        return result

    return call


def _unraisable(info) -> None:
    """``sys.unraisablehook``: a :class:`Terminated` raised where Python cannot propagate an exception (the
    handler ran inside a weakref callback or ``__del__``, SQLAlchemy's for one) was printed as "Exception
    ignored ... Traceback" and lost, the command going on to exit 0 (tests/test_chaos.py, 1 run of 3). It is
    delivered again instead, to be raised at the next line of ordinary code. So is Ray's ``sys.exit(15)``, the
    handler ``ray.init`` installs for the seconds it starts Ray (the chaos test: a SIGTERM lost there, the sweep
    run to its end, exit 0)."""
    ours = isinstance(info.exc_value, Terminated) or (
        isinstance(info.exc_value, SystemExit) and info.exc_value.code == signal.SIGTERM)
    if ours and threading.current_thread() is threading.main_thread():
        _deliver_again(0.05)  # sent from here, the handler would run inside this hook and be lost again
        return
    _default_unraisable(info)


_default_unraisable = sys.unraisablehook


_abandoned: list[str] = []  # what this command had to leave behind, unfinished (see abandon)


def abandon(what: str) -> None:
    """Record that ``what`` (Ray's shutdown, stuck on a Ray that no longer answers) was left unfinished in a
    thread of its own: the command's end says so, and its exit skips the exit handlers, which would wait on it."""
    _abandoned.append(what)


def abandoned() -> list[str]:
    """What :func:`abandon` recorded, in order."""
    return list(_abandoned)


def terminate_as_interrupt():
    """From now on SIGTERM raises :class:`Terminated` in the main thread (Ray's ``ray.init`` replaces it
    with ``sys.exit(15)``: call again after). Returns the handler it replaced (None off the main thread)."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        return None
    _pending = False
    sys.unraisablehook = _unraisable
    return signal.signal(signal.SIGTERM, _raise_terminated)


def reinstall_sigterm() -> None:
    """Put the handler back after a C library reset SIGTERM to the default action behind Python's back (Ray's
    ``ray.shutdown``: its core worker uninstalls the signal handlers it installed, SIG_DFL, while Python's
    ``signal.getsignal`` still names ours; strace showed 4 s of a sweep's end exposed to exit -15). A
    SIGTERM already received keeps the handler its first call left (further ones ignored)."""
    if threading.current_thread() is threading.main_thread() and not _received:
        signal.signal(signal.SIGTERM, _raise_terminated)


def restore_sigterm(previous) -> None:
    """Put back what :func:`terminate_as_interrupt` replaced (``main`` called in a test's process), and forget
    a SIGTERM that this call of ``main`` has answered."""
    global _received
    _received = False
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
