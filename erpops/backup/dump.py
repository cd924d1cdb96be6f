"""The database side of a backup: a snapshot session, the facts read in it, pg_dump as a stream, and
the databases erpops makes and drops beside the user's (scratch, restore, verify copies).

Row counts, modules and versions are read inside one REPEATABLE READ transaction whose
snapshot pg_dump shares (`--snapshot`): on a busy database they describe exactly what was
dumped, so a deep verify can compare them.

Why compression outside pg_dump: gzip inside pg_dump runs on one core and is the bottleneck
(146-197 s for 3.4 GB here); `-Z0` piped through multi-threaded zstd takes 26-35 s. The dump
streams straight into the target, never as a full local copy, as zstd frames of about 64 MiB
(Framed). On the way the stored bytes are hashed (whole, and each frame for the restore's ranged
reads), the uncompressed bytes counted and their data blocks located (pgarchive.BlockFinder): the
manifest records both, and a restore hands each loader just its tables' frames
(erpops.backup.staged). The frames carry no zstd checksum of their own: the sha256 of each frame's
stored bytes, which every restore and verify checks, already fixes what they decompress to, and
the checksum cost an xxh64 pass over every uncompressed byte twice (at backup and at restore).
Sets made before this still have it, and zstd still checks it there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from erpops.backup import leftovers
from erpops.backup import manifest as mf
from erpops.backup.leftovers import preexec
from erpops.backup.pgarchive import BlockFinder
from erpops.backup.progress import Reporter
from erpops.backup.storage import CHUNK, HashingReader, Reader, Target
from erpops.errors import BackupError, ErpopsError, ServiceError
from erpops.pg import Pg, client_bin, quote_ident, quote_literal

# Measured (benchmarks/backup_restore.py prints the table): on dumps of Odoo-like data level 1 takes
# about half the CPU of level 3 and its output was no larger (on issue 16's 3.4 GB database it was smaller).
ZSTD_LEVEL = 1
FRAME = 64 * 1024 * 1024  # uncompressed bytes per zstd frame of a dump (Framed)
_END = "__ERPOPS_END_OF_RESULT__"


def log_tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text[-limit:]


def exit_text(rc: int) -> str:
    return f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"


class SnapshotSession:
    """A psql session holding a REPEATABLE READ READ ONLY transaction; pg_dump shares its snapshot."""

    def __init__(self, pg: Pg, db: str) -> None:
        self.pg = pg
        self.db = db
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [client_bin("psql"), "-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db], preexec_fn=preexec(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, env=pg.env(),
        )
        # A server-side idle-in-transaction timeout must not end the transaction pg_dump imports.
        self.snapshot = self.query("SET idle_in_transaction_session_timeout = 0;\n"
                                   "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
                                   "SELECT pg_export_snapshot()")[0]

    def query(self, sql: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(sql.strip().rstrip(";") + ";\n\\echo " + _END + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # psql already exited: the read below reports why
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=10)
                self._err.seek(0)
                where = f"{self.pg.host}:{self.pg.port}/{self.db}"
                raise ServiceError(f"psql on {where} failed: {self._err.read().strip()}")
            line = line.rstrip("\n")
            if line == _END:
                return lines
            lines.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write("COMMIT;\n\\q\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()

    def __enter__(self) -> SnapshotSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class DbFacts:
    server_version: str
    server_version_num: int
    modules: dict[str, str | None]
    row_counts: dict[str, int | None]
    size_bytes: int


def _facts_sql_tables() -> str:
    names = ", ".join(quote_literal(t) for t in (*mf.ROW_COUNT_TABLES, "ir_module_module"))
    return (f"SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname IN ({names})")


def read_facts(query: Callable[[str], list[str]]) -> DbFacts:
    """Versions, installed modules, row counts and size of the connected database."""
    version, version_num, size = query(
        "SELECT current_setting('server_version') || '|' || current_setting('server_version_num') || '|' "
        "|| pg_database_size(current_database())")[0].split("|")
    tables = set(query(_facts_sql_tables()))
    modules: dict[str, str | None] = {}
    if "ir_module_module" in tables:
        for line in query("SELECT name || '|' || coalesce(latest_version, '') FROM ir_module_module "
                          "WHERE state = 'installed' ORDER BY name"):
            name, _, latest = line.partition("|")
            modules[name] = latest or None
    counts: dict[str, int | None] = dict.fromkeys(mf.ROW_COUNT_TABLES)
    present = [t for t in mf.ROW_COUNT_TABLES if t in tables]
    if present:
        sql = " UNION ALL ".join(f"SELECT {quote_literal(t)} || '|' || count(*) FROM public.{quote_ident(t)}"
                                 for t in present)
        for line in query(sql):
            table, _, count = line.partition("|")
            counts[table] = int(count)
    return DbFacts(version.split(" ")[0], int(version_num), modules, counts, int(size))


def row_counts(pg: Pg, db: str) -> dict[str, int | None]:
    """The manifest's row counts of db, read in one psql session (one process, not one per query)."""
    with SnapshotSession(pg, db) as session:
        return read_facts(session.query).row_counts


def side_name(db: str, tag: str, rand: str) -> str:
    """`<db>__erpops_<tag>_<rand>`, the db part shortened so the whole fits PostgreSQL's 63 bytes."""
    suffix = f"__erpops_{tag}_{rand}"
    return db[: 63 - len(suffix)] + suffix


def create_database(pg: Pg, db: str, owner: str | None = None, *, kind: str | None = "side") -> None:
    """An empty database the way Odoo's _create_empty_database makes one: template0, UTF8, collation C,
    and (Odoo 17.0 on PostgreSQL 15+) CREATE on schema public granted to PUBLIC, which a restore
    with --no-privileges would otherwise lose."""
    # The leftover marker is set in the same session: a SIGKILL right after leaves a marked database.
    pg.create_database(db, owner, same_session=leftovers.mark_sql("DATABASE", quote_ident(db), kind) if kind else "")


def drop_database(pg: Pg, db: str) -> None:
    """Drop db, ending its sessions first (WITH (FORCE), PostgreSQL 13+)."""
    pg.drop_database(db)


def is_local_host(host: str) -> bool:
    if host.startswith("/") or host in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


PIPE_BYTES = 1024 * 1024  # /proc/sys/fs/pipe-max-size: 1 MiB by default, settable by any user
SOCKET_BYTES = 1024 * 1024  # asked for; Linux caps a socket's buffer at 2 x net.core.wmem_max (416 KiB by default)


def widen_pipe(fd: int) -> None:
    """Give a pipe 1 MiB instead of Linux's 64 KiB. Best effort (F_SETPIPE_SZ is Linux's)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class Feed:
    """Our end of a unix stream socket standing in for a pipe into a child process's stdin (pg_restore).

    Not a pipe: a pipe kept full wakes its writer each time the reader frees a page, and pg_restore reads
    4 KiB at a time, so a restore's loaders were woken about 140,000 times for a 4.6 GB dump. A unix
    socket wakes its writer only once the queue has drained to a quarter of its buffer: about 3,200 times.
    Measured in a staged restore of that dump, 4 rounds: erpops's CPU 3.4 s instead of 3.8 s, pg_restore's
    2.8 s instead of 3.3 s, the restore 20.6 s instead of 21.1 s (pg_restore -j2 of a plain file: 18.9 s).
    The A/B is `benchmarks/local_ab.py feed`.
    A pipe stays on pg_dump's output: it made no difference there (pg_dump fills it faster than a page
    at a time).
    """

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child: socket.socket | None = theirs  # the child's stdin: ours is closed once the child has it
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BYTES)
        theirs.shutdown(socket.SHUT_WR)

    def started(self) -> None:
        """The child has its copy of its end: ours goes, so its exit is an EPIPE here and our close its EOF."""
        if self.child is not None:
            self.child.close()
            self.child = None

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)

    def close(self) -> None:
        """The end of the child's input (it reads EOF); idempotent."""
        self.started()
        self.sock.close()


class PgDump:
    """`pg_dump -Fc -Z0` of one database as a readable stream; finish() checks its exit status."""

    def __init__(self, pg: Pg, db: str, snapshot: str | None = None) -> None:
        self.db = db
        self._err = tempfile.NamedTemporaryFile(prefix="erpops-pg_dump-", suffix=".log", delete=False)  # noqa: SIM115
        argv = [client_bin("pg_dump"), "-w", "-Fc", "-Z0", "-d", db]
        if snapshot:
            argv.append(f"--snapshot={snapshot}")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._err, env=pg.env(),
                                     preexec_fn=preexec())
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout
        widen_pipe(self.stdout.fileno())  # 16 times fewer wake-ups of the thread reading it than at 64 KiB

    def read(self, size: int = -1) -> bytes:
        return self.stdout.read(size)

    def kill(self) -> None:
        """End pg_dump now (from any thread): its output ends and finish() fails."""
        with contextlib.suppress(OSError):
            self.proc.kill()

    def finish(self) -> None:
        """Raise BackupError unless pg_dump exited 0 (call after its output reached EOF)."""
        rc = self.proc.wait()
        if rc != 0:
            raise BackupError(f"pg_dump of {self.db} failed ({exit_text(rc)}): "
                              f"{log_tail(Path(self._err.name)) or 'no message'}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stdout.close()
        self._err.close()
        Path(self._err.name).unlink(missing_ok=True)


def copy_database(pg: Pg, source: str, dest: str) -> None:
    """pg_dump | pg_restore into a new database dest (dropped again if anything fails)."""
    create_database(pg, dest)
    dump = PgDump(pg, source)
    err = tempfile.NamedTemporaryFile(prefix="erpops-pg_restore-", delete=False, dir=leftovers.run_dir())  # noqa: SIM115
    try:
        proc = subprocess.run(
            [client_bin("pg_restore"), "-w", "--no-owner", "--no-privileges", "--exit-on-error", "-d", dest],
            stdin=dump.stdout, stdout=subprocess.DEVNULL, stderr=err, env=pg.env(), check=False,
            preexec_fn=preexec(),
        )
        dump.finish()
        if proc.returncode != 0:
            raise BackupError(f"pg_restore into {dest} failed ({exit_text(proc.returncode)}): "
                              f"{log_tail(Path(err.name))}")
    except BaseException:
        with contextlib.suppress(ErpopsError):
            drop_database(pg, dest)
        raise
    finally:
        dump.close()
        err.close()
        Path(err.name).unlink(missing_ok=True)


def new_compressor() -> zstandard.ZstdCompressor:
    # threads=-1: one compression thread per core, outside the GIL; no frame checksum (see the module's doc)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=False)


def store_dump(
    target: Target, key: str, source: Reader, fmt: str, reporter: Reporter, before_commit: Callable[[], None] | None
) -> mf.Artifact:
    task = reporter.task("dump")
    # The stored bytes are hashed (per frame, and whole by put_stream), which fixes what they decompress to,
    # so the uncompressed stream is not hashed as well.
    raw = HashingReader(source, on_bytes=task.advance, sha256=False)
    blocks = _Blocks(raw) if fmt == "custom" else None
    framed = Framed(blocks or raw)
    with task:
        size, sha256 = target.put_stream(key, framed, before_commit=before_commit, durable=False)
    start, sizes = blocks.result(raw.size) if blocks else (None, None)
    frames = tuple(framed.frames) if sizes else None
    return mf.Artifact("dump", key, size, sha256, "zstd", fmt, raw.size, None, start, sizes, frames)


class Framed:
    """The source compressed as zstd frames of FRAME uncompressed bytes each (the last one shorter), one after another.

    Concatenated frames are one valid zstd stream (every reader, zstd's own included, decompresses
    them in turn). Each frame's uncompressed and stored offsets and the sha256 of its stored bytes
    are recorded (`frames`), so a restore can start reading at any frame (a ranged read) and check
    every frame it reads against the manifest. Each frame is one multi-threaded stream_reader over
    the next FRAME bytes: measured, a compressobj fed chunk by chunk took over twice the CPU.
    """

    def __init__(self, source: Reader) -> None:
        self._source = source
        self._cctx = new_compressor()
        self._reader: Any = None
        self._limit: _Limited | None = None
        self._done = False
        self._u = self._c = 0
        self._frame_u = self._frame_c = 0
        self._hash = hashlib.sha256()
        self.frames: list[tuple[int, int, str]] = []

    def read(self, size: int = -1) -> bytes:
        while not self._done:
            if self._reader is None:
                self._limit = _Limited(self._source, FRAME)
                self._reader = self._cctx.stream_reader(self._limit, read_size=CHUNK, closefd=False)
                self._frame_u, self._frame_c, self._hash = self._u, self._c, hashlib.sha256()
            data = self._reader.read(size if size > 0 else CHUNK)
            if data:
                self._hash.update(data)
                self._c += len(data)
                return data
            assert self._limit is not None
            self.frames.append((self._frame_u, self._frame_c, self._hash.hexdigest()))
            self._u += self._limit.count
            self._done = self._limit.count < FRAME  # the source ended inside this frame
            self._reader = None
        return b""


class _Limited:
    """At most `limit` bytes of a reader, then EOF (one frame's input)."""

    def __init__(self, reader: Reader, limit: int) -> None:
        self._reader, self._left, self.count = reader, limit, 0

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._reader.read(self._left if size < 0 else min(size, self._left))
        self._left -= len(data)
        self.count += len(data)
        return data


class _Blocks:
    """Passes a custom-format dump through, finding its data blocks (pgarchive.BlockFinder) on the way."""

    def __init__(self, reader: Reader) -> None:
        self._reader, self.finder = reader, BlockFinder()

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        if data:
            self.finder.wrote(data)
        return data

    def result(self, total: int) -> tuple[int | None, tuple[tuple[int, int], ...] | None]:
        f = self.finder
        f.finish()
        if f.toc is None or f.missing or not f.sizes:
            return None, None  # not an archive the finder handles: a restore then uses a temp file
        sizes = tuple((e.dump_id, f.sizes[e.dump_id]) for e in f.toc.entries if e.dump_id in f.sizes)
        if f.toc.end + sum(n for _, n in sizes) != total:
            return None, None
        return f.toc.end, sizes



