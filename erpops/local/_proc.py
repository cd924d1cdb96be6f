"""Process plumbing shared by the local services.

Free loopback ports, log tails, spawning a server in its own session and ending that whole
session by PID, plus one atexit hook so an interpreter that exits without calling ``stop()``
still leaves no server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

from erpops.errors import ServiceError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# free_port() cannot reserve the port it finds: a server that lost it to another program retries this often
PORT_ATTEMPTS = 3

_cleanups: dict[int, Callable[[], None]] = {}
_atexit_hooked = False


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now (the kernel picks it).

    Another process can take it before the caller binds it; the services retry with a new
    port when their server reports the address is in use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note saying why there are none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(log {path} is empty)"


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in a new session (its own process group), output appended to log_path.

    The new session keeps Ctrl-C in a terminal from reaching the server, so stop() can shut it
    down in order; the parent-death signal covers the one exit atexit cannot: this interpreter
    being killed outright.
    """
    with open(log_path, "ab") as log_file:
        # The child keeps its own copy of the descriptor; ours closes with the block.
        return subprocess.Popen(
            _die_with_parent(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )


def _die_with_parent(argv: Sequence[str]) -> list[str]:
    """Prefix argv so the kernel sends SIGTERM to the server if this interpreter dies (even by SIGKILL).

    Linux ties the parent-death signal to the spawning *thread*: spawned from any other thread
    than the main one, the server would die with that thread, so it is only set from the main
    thread. util-linux setpriv sets it and execs the command (no extra process); where setpriv
    is missing the server simply lacks this safety net.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def listens(pid: int, port: int) -> bool:
    """True when process pid holds a listening TCP socket on port.

    Checked before probing a port: a foreign program that took the port first would accept the
    probe's connection too, and might never answer it.
    """
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def watch(pid: int) -> psutil.Process | None:
    """A handle on pid that stays valid only for that very process (psutil checks its start time)."""
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def alive(proc: psutil.Process | None) -> bool:
    """True while the watched process runs (a zombie counts as gone)."""
    if proc is None:
        return False
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(proc: psutil.Process | None, timeout: float) -> bool:
    """Wait up to timeout for a watched process to end; True when it did."""
    deadline = time.monotonic() + timeout
    while alive(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def kill_pid(proc: psutil.Process | None, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Send sig to a watched process, SIGKILL it if it outlives timeout."""
    if proc is None or not alive(proc):
        return
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)
    if not wait_gone(proc, timeout):
        with contextlib.suppress(psutil.Error):
            proc.kill()
        wait_gone(proc, timeout)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send sig to a process group; False when the group is empty."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # A member changed user and we are not root: nothing more we are allowed to do.
        log.warning("not allowed to signal process group %s", pgid)
        return False
    return True


def _group_empty(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """End every process in the session started by spawn(): SIGTERM, then SIGKILL, then reap.

    The group is signalled even when its leader already exited, because a wrapper such as
    runuser can die and leave its child (the real server) running in the same group.
    """
    if proc is None:
        return
    pgid = proc.pid  # start_new_session makes the leader's PID the group ID
    if _signal_group(pgid, signal.SIGTERM):
        deadline = time.monotonic() + timeout
        while not _group_empty(pgid) and time.monotonic() < deadline:
            proc.poll()  # reap the leader so it does not linger as a zombie member
            time.sleep(0.02)
        if not _group_empty(pgid):
            _signal_group(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("process %s did not exit after SIGKILL", proc.pid)


def register_cleanup(owner: object, stop: Callable[[], None]) -> None:
    """Call stop at interpreter exit unless unregister_cleanup(owner) ran first."""
    global _atexit_hooked
    _cleanups[id(owner)] = stop
    if not _atexit_hooked:
        atexit.register(_run_cleanups)
        _atexit_hooked = True


def unregister_cleanup(owner: object) -> None:
    _cleanups.pop(id(owner), None)


def _run_cleanups() -> None:
    for stop in list(_cleanups.values())[::-1]:
        try:
            stop()
        except Exception:  # exit must go on: one failed stop must not keep the others running
            log.exception("cleanup of a local service failed at exit")
    _cleanups.clear()


class LocalService:
    """What the three local servers share: the port once started, context manager, cleanup."""

    host = LOOPBACK
    log_name = "server.log"  # in the temp dir

    def __init__(self, *, port: int | None, base_dir: str | Path | None, start_timeout: float,
                 stop_timeout: float) -> None:
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._requested_port = port
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._port: int | None = None
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._server: psutil.Process | None = None  # the server process itself (not a wrapper)

    def start(self) -> Self:  # pragma: no cover - each server starts its own way
        raise NotImplementedError

    def _start_on_free_port(self, what: str, launch: Callable[[int], subprocess.Popen[bytes]],
                            wait_ready: Callable[[], bool]) -> None:
        """Start the server on the requested port, or on a free one: `launch(port)` spawns it (logging to
        log_path), `wait_ready()` says whether it came up. free_port() cannot reserve the port it finds:
        when another program took it first ("Address already in use" in this attempt's log), try another
        one, up to PORT_ATTEMPTS times; any other failure, or a requested port, fails at once."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = self._requested_port or free_port()
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._port = port
            self._proc = launch(port)
            if wait_ready():
                return
            clash = "Address already in use" in self._log_since(offset)
            stop_group(self._proc, timeout=self.stop_timeout)
            self._proc = None
            if not clash or self._requested_port is not None or attempt == PORT_ATTEMPTS:
                raise ServiceError(f"{what} did not start on {self.host}:{port}; log tail:\n" + log_tail(self.log_path))
            log.info("port %s was taken before %s bound it; retrying on another port", port, what)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:  # pragma: no cover
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServiceError(f"{type(self).__name__} is not running: call start() first")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    @property
    def running(self) -> bool:
        return alive(self._server)

    @property
    def log_path(self) -> Path:
        return self._workdir() / self.log_name

    def _workdir(self) -> Path:
        if self._tmp is None:
            raise ServiceError(f"{type(self).__name__} is not running: call start() first")
        return self._tmp

    def _release(self) -> None:
        """Forget the process handles and delete the temp dir (the end of every stop())."""
        self._server = None
        self._proc = None
        self._port = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port else "stopped"
        return f"<{type(self).__name__} {where}>"
