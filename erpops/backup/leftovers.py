"""What an erpops run leaves on a server while it works, marked so that a later run can tell it is dead.

A backup --neutralized copies production into a scratch database, a restore builds the new
database aside, an import runs as a sandbox role, a restore decompresses its dump into a temp
file. SIGTERM and SIGINT unwind through the code's own cleanup (handle_termination turns SIGTERM
into an exception, as SIGINT already is); SIGKILL cannot be caught, so everything such a run
creates carries a marker naming its owner, and the next run removes what a dead owner left:

- databases and roles: `COMMENT ON DATABASE|ROLE ... IS 'erpops-leftover:{json}'`, set in the
  same psql session that creates them, cleared when the database becomes the user's;
- temp files: inside `<tmp>/erpops-run-<pid>-<hex>/`, whose `owner.json` names the owner.

The owner is (pid, host, the process's start time from /proc): a marker is dead when its host is
this one and that process no longer runs (a reused pid has another start time). A marker from
another host is never removed from here, only reported: its owner may well be running. Nothing
is ever removed by its name alone.

Children (psql, pg_dump, pg_restore) are started with preexec(): PR_SET_PDEATHSIG, so the
kernel kills them when erpops dies, SIGKILL included.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from erpops.errors import ErpopsError

MARK = "erpops-leftover:"
RUN_DIR_PREFIX = "erpops-run-"
OWNER_FILE = "owner.json"
_PR_SET_PDEATHSIG = 1
_libc: Any = None


# ------------------------------------------------------------------------------------------------
# Owners
# ------------------------------------------------------------------------------------------------


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class Owner:
    pid: int
    host: str
    start: str | None
    started_at: str
    command: str = ""

    @classmethod
    def current(cls, command: str = "") -> Owner:
        pid = os.getpid()
        return cls(pid, socket.gethostname(), _proc_start(pid),
                   datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), command or " ".join(sys.argv[1:3]))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Owner | None:
        try:
            return cls(int(data["pid"]), str(data["host"]), data.get("start"), str(data.get("started_at", "")),
                       str(data.get("command", "")))
        except (KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def state(self) -> str:
        """'live', 'dead' (this host, the process is gone) or 'foreign' (another host: cannot tell)."""
        if self.host != socket.gethostname():
            return "foreign"
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return "dead"
        except PermissionError:
            pass
        if self.start is not None and _proc_start(self.pid) not in (None, self.start):
            return "dead"  # the pid was reused by another process
        return "live"

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.command or 'erpops'}, started {self.started_at})"


def marker_text(kind: str, owner: Owner | None = None) -> str:
    return MARK + json.dumps({"kind": kind, **(owner or Owner.current()).to_dict()}, separators=(",", ":"))


def _parse_marker(text: str | None) -> tuple[str, Owner] | None:
    if not text or not text.startswith(MARK):
        return None
    try:
        data = json.loads(text[len(MARK):])
    except ValueError:
        return None
    owner = Owner.from_dict(data) if isinstance(data, dict) else None
    return (str(data.get("kind", "?")), owner) if owner else None


# ------------------------------------------------------------------------------------------------
# Databases and roles
# ------------------------------------------------------------------------------------------------


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def mark_sql(what: str, name_sql: str, kind: str) -> str:
    """`COMMENT ON DATABASE|ROLE name IS '<marker>'` (name_sql already quoted)."""
    return f"COMMENT ON {what} {name_sql} IS {_quote_literal(marker_text(kind))};"


def unmark_sql(what: str, name_sql: str) -> str:
    return f"COMMENT ON {what} {name_sql} IS NULL;"


@dataclass
class Leftover:
    kind: str  # scratch, restore, verify, import, sandbox, tempdir
    what: str  # database, role, directory
    name: str
    owner: Owner
    state: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "what": self.what, "name": self.name, "owner": self.owner.to_dict(),
                "state": self.state}

    def describe(self) -> str:
        return f"{self.what} {self.name} ({self.kind}) left by {self.owner.describe()}: owner {self.state}"


_FIND_SQL = f"""
SELECT 'database', datname, shobj_description(oid, 'pg_database') FROM pg_database
 WHERE shobj_description(oid, 'pg_database') LIKE '{MARK}%'
UNION ALL
SELECT 'role', rolname, shobj_description(oid, 'pg_authid') FROM pg_roles
 WHERE shobj_description(oid, 'pg_authid') LIKE '{MARK}%'
"""


def find(pg: Any, tmp_dirs: Iterable[Path | str | None] = ()) -> list[Leftover]:
    """Every marked object on the server (and run dir under tmp_dirs) whose owner is not this process."""
    found: list[Leftover] = []
    me = os.getpid()
    if pg is not None:
        for line in pg.psql(_FIND_SQL).splitlines():
            what, name, text = [*line.split("|", 2), "", ""][:3]
            parsed = _parse_marker(text)
            if parsed is None or (parsed[1].pid == me and parsed[1].host == socket.gethostname()):
                continue
            kind, owner = parsed
            found.append(Leftover(kind, what, name, owner, owner.state()))
    for base in _bases(tmp_dirs):
        for d in sorted(base.glob(RUN_DIR_PREFIX + "*")):
            try:
                owner = Owner.from_dict(json.loads((d / OWNER_FILE).read_text()))
            except (OSError, ValueError):
                continue  # no marker: not ours to judge
            if owner is not None and not (owner.pid == me and owner.host == socket.gethostname()):
                found.append(Leftover("tempdir", "directory", str(d), owner, owner.state()))
    return found


def _bases(tmp_dirs: Iterable[Path | str | None]) -> list[Path]:
    bases = {Path(tempfile.gettempdir()).resolve()}
    bases |= {Path(d).resolve() for d in tmp_dirs if d}
    return sorted(b for b in bases if b.is_dir())


def sweep(pg: Any, tmp_dirs: Iterable[Path | str | None] = (),
          note: Callable[[str], None] | None = None) -> list[Leftover]:
    """Remove what dead owners left (databases first, then their sandbox roles, then temp dirs); returns it.

    Live and foreign owners' objects are left alone. A failure to remove one is reported, never raised.
    """
    from erpops.pg import quote_ident

    removed = []
    try:
        found = find(pg, tmp_dirs)
    except ErpopsError as exc:
        if note:
            note(f"could not look for leftovers of dead erpops runs: {exc}")
        return []
    order = {"database": 0, "role": 1, "directory": 2}
    for item in sorted(found, key=lambda x: order.get(x.what, 3)):
        if item.state != "dead":
            continue
        try:
            if item.what == "database":
                pg.drop_database(item.name)
            elif item.what == "role":
                for db in pg.psql("SELECT datname FROM pg_database WHERE datallowconn").split():
                    with contextlib.suppress(ErpopsError):
                        pg.psql(f"DROP OWNED BY {quote_ident(item.name)}", db)
                pg.psql(f"DROP ROLE IF EXISTS {quote_ident(item.name)}")
            else:
                shutil.rmtree(item.name)
        except (ErpopsError, OSError) as exc:
            if note:
                note(f"could not remove {item.describe()}: {exc}")
            continue
        removed.append(item)
        if note:
            note(f"removed {item.describe()}")
    return removed


# ------------------------------------------------------------------------------------------------
# Temp files
# ------------------------------------------------------------------------------------------------

_run_dirs: dict[Path, Path] = {}
_run_lock = threading.Lock()


def run_dir(base: Path | str | None = None) -> Path:
    """This process's marked temp directory under base (default $TMPDIR), removed when it exits."""
    root = Path(base or tempfile.gettempdir()).resolve()
    with _run_lock:
        existing = _run_dirs.get(root)
        if existing is not None and existing.is_dir():
            return existing
        path = root / f"{RUN_DIR_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
        (path / OWNER_FILE).write_text(json.dumps(Owner.current().to_dict()))
        _run_dirs[root] = path
        return path


def remove_run_dirs() -> None:
    with _run_lock:
        for path in list(_run_dirs.values()):
            shutil.rmtree(path, ignore_errors=True)
        _run_dirs.clear()


atexit.register(remove_run_dirs)


# ------------------------------------------------------------------------------------------------
# Signals and children
# ------------------------------------------------------------------------------------------------


class Terminated(BaseException):  # named like KeyboardInterrupt, which it mirrors
    """SIGTERM arrived: raised in the main thread so every cleanup on the way out runs (exit 143)."""

    exit_code = 143


def handle_termination() -> None:
    """SIGTERM (and SIGHUP) raise Terminated in the main thread, as SIGINT raises KeyboardInterrupt.

    A second signal during the cleanup is ignored: the cleanup finishes, and what it could not
    finish carries markers for the next run.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    pending: list[int] = []

    def unsafe(frame: Any) -> bool:
        # An exception raised here would be swallowed ("Exception ignored in ..."): a fork callback
        # (logging's _releaseLock runs after every fork), a finalizer.
        for _ in range(4):
            if frame is None:
                return False
            code = frame.f_code
            if "/logging/" in code.co_filename or code.co_name in ("__del__", "_releaseLock", "_acquireLock"):
                return True
            frame = frame.f_back
        return False

    def on_signal(signum: int, frame: Any) -> None:
        if unsafe(frame):
            pending[:] = [signum]
            signal.setitimer(signal.ITIMER_REAL, 0.05)  # deliver it again a moment later, somewhere safe
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(f"erpops got signal {signal.Signals(signum).name}: cleaning up")

    def on_alarm(_signum: int, frame: Any) -> None:
        if pending:
            on_signal(pending[0], frame)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """prctl(PR_SET_PDEATHSIG, sig): the kernel signals this process when the thread that forked it dies.

    Linux only; a no-op elsewhere.
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


_M_ARENA_MAX = -8  # glibc's mallopt parameter


def one_malloc_arena() -> None:
    """mallopt(M_ARENA_MAX, 1): every thread allocates from one glibc arena.

    A backup's transfer threads each got an arena of their own, and the 1-8 MiB buffers freed in
    one were not reused by another: the S3 backup of a 3.9 GB set peaked at 311 MB of resident
    memory, and at 257 MB with one arena, at no more CPU (benchmarks/backup_restore.py).
    Python allocates small objects itself under the GIL, so the shared arena's lock is not
    contended. Only new threads are affected: call it before any starts (erpops.cli.run does).
    A no-op without glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        # the process's own symbols, libc's among them: find_library would run ldconfig
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):  # musl and others: no mallopt
        return


def _preexec_kill() -> None:
    die_with_parent(signal.SIGKILL)


def preexec() -> Callable[[], None] | None:
    """preexec_fn for a child erpops starts: it dies (SIGKILL) when erpops dies, however erpops dies.

    Linux ties the parent-death signal to the forking *thread*: a child started from another
    thread would die with that thread, so only children of the main thread get it.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return _preexec_kill


__all__ = ["MARK", "Leftover", "Owner", "Terminated", "die_with_parent", "find", "handle_termination",
           "mark_sql", "marker_text", "one_malloc_arena", "preexec", "remove_run_dirs", "run_dir", "sweep",
           "unmark_sql"]
