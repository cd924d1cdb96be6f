"""The backup engine: take a set, find sets, verify a set, restore a dump into a database.

A backup set = a compressed database dump + the database's filestore + manifest.json:

    <target>/sets/<set_id>/dump.pgdump.zst   pg_dump -Fc -Z0, compressed by zstd outside pg_dump
    <target>/sets/<set_id>/manifest.json     written last: without it the set is incomplete
    <target>/sets/<set_id>/verify.json       written by verify
    <target>/filestore/<sha1[:2]>/<sha1>     shared by every set holding that file

Why compression outside pg_dump: gzip inside pg_dump runs on one core and is the bottleneck
(146-197 s for 3.4 GB here); `-Z0` piped through multi-threaded zstd takes 26-35 s. The dump
streams straight into the target (S3 multipart parts of 8 MiB; a temp file beside the key for
file:// targets), never as a full local copy; sha256 and size of the stored and of the
uncompressed bytes are computed on the way.

Row counts, modules and versions are read inside one REPEATABLE READ transaction whose
snapshot pg_dump shares (`--snapshot`): on a busy database they describe exactly what was
dumped, so a deep verify can compare them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from erpops import __version__
from erpops.backup import lease, leftovers
from erpops.backup import manifest as mf
from erpops.backup.leftovers import preexec
from erpops.backup.progress import Reporter
from erpops.backup.storage import (
    CHUNK,
    FileTarget,
    HashingReader,
    Reader,
    S3Target,
    Target,
    parse_url,
)
from erpops.errors import (
    BackupError,
    CredentialsError,
    ErpopsError,
    IntegrityError,
    ServiceError,
    UsageError,
)
from erpops.pg import Pg, client_bin, quote_ident, quote_literal

log = logging.getLogger(__name__)

ZSTD_LEVEL = 3
DEFAULT_WORKERS = 8
_END = "__ERPOPS_END_OF_RESULT__"
MiB = 1024 * 1024


# ------------------------------------------------------------------------------------------------
# PostgreSQL plumbing
# ------------------------------------------------------------------------------------------------


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text[-limit:]


def _exit_text(rc: int) -> str:
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
    return read_facts(lambda sql: pg.psql(sql, db).splitlines()).row_counts


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

    def read(self, size: int = -1) -> bytes:
        return self.stdout.read(size)

    def finish(self) -> None:
        """Raise BackupError unless pg_dump exited 0 (call after its output reached EOF)."""
        rc = self.proc.wait()
        if rc != 0:
            raise BackupError(f"pg_dump of {self.db} failed ({_exit_text(rc)}): "
                              f"{_tail(Path(self._err.name)) or 'no message'}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stdout.close()
        self._err.close()
        Path(self._err.name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# Finding sets
# ------------------------------------------------------------------------------------------------


@dataclass
class SetListing:
    complete: list[str] = field(default_factory=list)
    incomplete: dict[str, datetime | None] = field(default_factory=dict)  # id -> in-progress marker time


def scan_sets(target: Target) -> SetListing:
    """Every set id under sets/, split into complete (manifest present) and incomplete."""
    keys: dict[str, set[str]] = {}
    times: dict[str, datetime] = {}
    for obj in target.list_objects(f"{mf.SETS}/"):
        parts = obj.key.split("/")
        if len(parts) == 3:
            keys.setdefault(parts[1], set()).add(parts[2])
            if parts[2] == mf.IN_PROGRESS:
                times[parts[1]] = obj.modified
    listing = SetListing()
    for set_id, names in keys.items():
        if mf.MANIFEST in names:
            listing.complete.append(set_id)
        else:
            listing.incomplete[set_id] = times.get(set_id)
    listing.complete.sort(key=lambda s: (mf.set_time(s) or datetime.min.replace(tzinfo=UTC), s), reverse=True)
    return listing


def load_manifest(target: Target, set_id: str) -> mf.Manifest:
    """The parsed manifest of a complete set; UsageError naming how to find sets otherwise."""
    key = mf.set_key(set_id, mf.MANIFEST)
    if len(set_id) > 200:
        raise UsageError(f"{set_id[:40]}... ({len(set_id)} characters) is not a backup set id: set ids look like "
                         f"prod-mfg-20261129T181500Z-3fa2b1; list them with `erpops list --target {target.url}`")
    if "/" in set_id or not set_id or target.head(key) is None:
        if set_id and "/" not in set_id and any(True for _ in target.list_keys(f"{mf.SETS}/{set_id}/")):
            raise UsageError(f"set {set_id} in {target.url} is incomplete (no manifest.json): its backup failed "
                             "or is still running; it cannot be restored. List restorable sets with "
                             f"`erpops list --target {target.url}`")
        raise UsageError(f"no backup set {set_id!r} in {target.url}: list the sets with "
                         f"`erpops list --target {target.url}`")
    raw = target.get_bytes(key)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise IntegrityError(f"{target.child(key)} is not valid JSON ({exc})") from exc
    manifest = mf.Manifest.from_dict(data, target.child(key))
    if manifest.set_id != set_id:
        raise IntegrityError(f"{target.child(key)} describes set {manifest.set_id}, not {set_id}")
    return manifest


def read_verify(target: Target, set_id: str) -> dict[str, Any] | None:
    key = mf.set_key(set_id, mf.VERIFY)
    if target.head(key) is None:
        return None
    try:
        data = json.loads(target.get_bytes(key))
    except ValueError:
        return {"ok": False, "problems": ["verify.json is not valid JSON"]}
    return data if isinstance(data, dict) else None


def list_sets(target: Target, *, now: datetime | None = None, db: str | None = None) -> list[dict[str, Any]]:
    """Complete sets, newest first, each with its verified status and age."""
    now = now or datetime.now(UTC)
    out = []
    for set_id in scan_sets(target).complete:
        try:
            m = load_manifest(target, set_id)
        except IntegrityError as exc:
            out.append({"set_id": set_id, "ok": False, "error": str(exc)})
            continue
        if db and m.db_name != db:
            continue
        v = read_verify(target, set_id)
        out.append({
            "set_id": set_id,
            "db": m.db_name,
            "stack": m.stack,
            "created_at": m.created_at,
            "age_hours": round((now - m.created).total_seconds() / 3600, 2),
            "odoo_version": m.odoo_version,
            "pg_server_version": m.pg_server_version,
            "dump_bytes": m.dump.size,
            "filestore_files": len(m.filestore),
            "filestore_bytes": m.filestore_bytes,
            "neutralized": m.neutralized,
            "verified": None if v is None else bool(v.get("ok")),
            "verified_at": None if v is None else v.get("verified_at"),
            "verified_deep": None if v is None else bool(v.get("deep")),
        })
    out.sort(key=lambda s: s.get("created_at") or "", reverse=True)
    return out


# ------------------------------------------------------------------------------------------------
# Filestore
# ------------------------------------------------------------------------------------------------


def filestore_source(spec: str, db: str, *, endpoint_url: str | None = None, region: str | None = None) -> Target:
    """Odoo's filestore of db: `<root>/<db>/xx/<sha1>` under a local root or an s3:// prefix."""
    if spec.startswith("s3://"):
        _, bucket, prefix = parse_url(spec)
        return S3Target(bucket, f"{prefix}/{db}".strip("/"), endpoint_url=endpoint_url, region=region)
    root = Path(spec.removeprefix("file://"))
    if not root.is_dir():
        raise UsageError(f"filestore root {root} does not exist: pass Odoo's data_dir/filestore (it holds one "
                         "directory per database)")
    return FileTarget(root / db)


def _run_parallel(items: list[Any], fn: Callable[[Any], Any], workers: int) -> list[Any]:
    """fn over items on a thread pool; the first exception cancels what has not started and is raised."""
    if not items:
        return []
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="erpops-fs") as pool:
        futures: list[Future[Any]] = [pool.submit(fn, item) for item in items]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            # Ctrl-C or SIGTERM: drop the queued transfers, let only the running ones (<= workers) end
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception() is not None), None)
        if failed is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            raise failed.exception()  # type: ignore[misc]
        return [f.result() for f in futures]


@dataclass
class FilestoreCopy:
    files: list[mf.FilestoreFile]
    uploaded: int
    skipped: int
    ignored: list[str]


def copy_filestore(source: Target, target: Target, reporter: Reporter, workers: int = DEFAULT_WORKERS) -> FilestoreCopy:
    """Copy `xx/<sha1>` files into target's content-addressed filestore/, checking each sha1.

    An object already stored with the same size is not uploaded again (the source is still read
    and hashed: its sha256 goes into the manifest and its sha1 must match its name).
    """
    existing = {o.key: o.size for o in target.list_objects(f"{mf.FILESTORE}/")}
    entries, ignored = [], []
    for obj in source.list_objects(""):
        (entries if mf.SHA1_PATH_RE.match(obj.key) else ignored).append(obj)
    if ignored:
        reporter.note(f"filestore: {len(ignored)} file(s) not named xx/<sha1> ignored (Odoo never references "
                      f"them), e.g. {ignored[0].key}", ignored=len(ignored))
    task = reporter.task("filestore", total=sum(o.size for o in entries))

    def one(obj: Any) -> tuple[mf.FilestoreFile, bool]:
        sha1 = obj.key.split("/")[1]
        key = mf.filestore_key(sha1)
        with source.get_stream(obj.key) as raw:
            reader = HashingReader(raw, sha1=True, on_bytes=task.advance)

            def check() -> None:
                if reader.sha1 != sha1:
                    raise IntegrityError(
                        f"corrupt filestore source: {source.child(obj.key)} has sha1 {reader.sha1} but Odoo named it "
                        f"by its sha1 {sha1}: the file was damaged or changed in place. Restore that file from an "
                        f"older set, or find the attachment with ir_attachment.store_fname = '{obj.key}'")

            if existing.get(key) == obj.size:
                reader.drain()
                check()
                uploaded = False
            else:
                target.put_stream(key, reader, before_commit=check)
                uploaded = True
        return mf.FilestoreFile(obj.key, sha1, reader.sha256, reader.size), uploaded

    with task:
        results = _run_parallel(entries, one, workers)
        # Skipped objects are re-checked before the manifest can reference them: a GC that stalled past
        # its lease may have deleted some since the listing above (erpops.backup.lease). Gone ones are
        # uploaded again.
        skipped = {mf.filestore_key(r[0].sha1): obj for r, obj in zip(results, entries, strict=True) if not r[1]}
        if skipped:
            now_stored = {o.key: o.size for o in target.list_objects(f"{mf.FILESTORE}/")}
            gone = [obj for key, obj in skipped.items() if now_stored.get(key) != obj.size]
            if gone:
                reporter.note(f"filestore: {len(gone)} object(s) skipped as already stored were deleted meanwhile "
                              "(by a prune); uploading them again", reuploaded=len(gone))
                for key in (mf.filestore_key(o.key.split("/")[1]) for o in gone):
                    existing.pop(key, None)
                again = {r[0].sha1: r for r in _run_parallel(gone, one, workers)}
                results = [again.get(r[0].sha1, r) for r in results]
    files = sorted((r[0] for r in results), key=lambda f: f.path)
    uploaded = sum(1 for r in results if r[1])
    return FilestoreCopy(files, uploaded, len(results) - uploaded, [o.key for o in ignored])


def restore_filestore(
    target: Target, files: list[mf.FilestoreFile], dest: Path, reporter: Reporter, workers: int = DEFAULT_WORKERS
) -> None:
    """Write every file to dest/xx/<sha1>, checking sha1, sha256 and size as it is written.

    Run as root, files and directories take the owner of dest's parent (the Odoo filestore root),
    so the Odoo user can read and write them.
    """
    dest.mkdir(parents=True, exist_ok=True)
    owner = None
    if os.geteuid() == 0:
        st = dest.parent.stat()
        owner = (st.st_uid, st.st_gid)
    task = reporter.task("filestore", total=sum(f.size for f in files))
    made_dirs: set[str] = set()
    lock = threading.Lock()

    def one(f: mf.FilestoreFile) -> None:
        path = dest / f.path
        with lock:
            if f.path[:2] not in made_dirs:
                path.parent.mkdir(exist_ok=True)
                if owner:
                    os.chown(path.parent, *owner)
                made_dirs.add(f.path[:2])
        tmp = path.with_name(f".{path.name}.part-{secrets.token_hex(3)}")
        try:
            with target.get_stream(f.key) as raw, open(tmp, "wb") as out:
                reader = HashingReader(raw, sha1=True, on_bytes=task.advance)
                while data := reader.read(CHUNK):
                    out.write(data)
            if (reader.sha1, reader.sha256, reader.size) != (f.sha1, f.sha256, f.size):
                raise IntegrityError(f"{target.child(f.key)} does not match the manifest (sha1 {reader.sha1}, "
                                     f"{reader.size} bytes; expected sha1 {f.sha1}, {f.size} bytes)")
            if owner:
                os.chown(tmp, *owner)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    with task:
        _run_parallel(files, one, workers)
    if owner:
        os.chown(dest, *owner)


# ------------------------------------------------------------------------------------------------
# Backup
# ------------------------------------------------------------------------------------------------


def _new_compressor() -> zstandard.ZstdCompressor:
    # threads=-1: one compression thread per core, outside the GIL
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=True)


def _store_dump(
    target: Target, key: str, source: Reader, fmt: str, reporter: Reporter, before_commit: Callable[[], None] | None
) -> mf.Artifact:
    task = reporter.task("dump")
    raw = HashingReader(source, on_bytes=task.advance)
    compressed = _new_compressor().stream_reader(raw, read_size=CHUNK, closefd=False)
    with task:
        size, sha256 = target.put_stream(key, compressed, before_commit=before_commit)
    return mf.Artifact("dump", key, size, sha256, "zstd", fmt, raw.size, raw.sha256)


class _SetWriter:
    """Tracks what a backup wrote under sets/<id>/ so a failure can remove exactly that."""

    def __init__(self, target: Target, set_id: str) -> None:
        self.target = target
        self.set_id = set_id
        self._heartbeat: Any = None

    def start(self, info: dict[str, Any]) -> None:
        """Write the in-progress marker (pid, host, heartbeat) and keep it fresh until finish/discard."""
        from erpops.backup.lease import Heartbeat

        self._heartbeat = Heartbeat(self.target, mf.set_key(self.set_id, mf.IN_PROGRESS), info).start()

    def stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    def finish(self, manifest: mf.Manifest) -> None:
        self.stop_heartbeat()
        body = json.dumps(manifest.to_dict(), indent=1, sort_keys=False).encode()
        self.target.put_bytes(mf.set_key(self.set_id, mf.MANIFEST), body)  # last: the set is now complete
        with contextlib.suppress(ErpopsError):
            self.target.delete(mf.set_key(self.set_id, mf.IN_PROGRESS))

    def discard(self) -> str:
        """Remove the set's objects; a sentence saying what was cleaned, for the error message."""
        self.stop_heartbeat()
        try:
            keys = list(self.target.list_keys(f"{mf.SETS}/{self.set_id}/"))
            self.target.delete_many(keys)
            aborted = self.target.abort_incomplete(f"{mf.SETS}/{self.set_id}/")
        except ErpopsError as exc:
            return (f"cleanup of {self.target.child(f'{mf.SETS}/{self.set_id}/')} failed too ({exc}): the set has no "
                    "manifest so it is never listed as restorable; `erpops prune --apply` removes it after 24 h")
        extra = f" and aborted {len(aborted)} unfinished upload(s)" if aborted else ""
        return (f"removed the incomplete set {self.set_id} ({len(keys)} object(s)){extra}; filestore objects it "
                "uploaded are unreferenced and go at the next prune")


def _fail(exc: BaseException, what: str, cleanup: str) -> ErpopsError:
    """The error to raise after a failed step: integrity and credential errors keep their class."""
    msg = f"{what} failed: {exc}; {cleanup}"
    if isinstance(exc, IntegrityError):
        return IntegrityError(msg)
    if isinstance(exc, CredentialsError):
        return CredentialsError(msg)
    return BackupError(msg)


def backup(
    target: Target,
    pg: Pg,
    db: str,
    *,
    stack: str = "adhoc",
    filestore: str | None = None,
    filestore_endpoint_url: str | None = None,
    filestore_region: str | None = None,
    neutralized: bool = False,
    workers: int = DEFAULT_WORKERS,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Back db (and its filestore) up into a new set on target; returns the backup report.

    neutralized=True backs up a neutralized copy instead: the database is copied into a scratch
    database (pg_dump | pg_restore), neutralized there (erpops.backup.neutralize), dumped, and
    the scratch database dropped. Production is never modified.
    """
    reporter = reporter or Reporter()
    mf.check_db_name(db)
    started = time.monotonic()
    created = datetime.now(UTC)
    set_id = mf.new_set_id(stack, db, created)
    target.check(create=True)
    if not pg.database_exists(db):
        raise UsageError(f"database {db!r} does not exist on {pg.host}:{pg.port}")
    fs_source = None
    if filestore:
        fs_source = filestore_source(filestore, db, endpoint_url=filestore_endpoint_url, region=filestore_region)
        if isinstance(fs_source, FileTarget) and not fs_source.root.is_dir():
            raise UsageError(f"no filestore for {db} in {filestore} (no directory {fs_source.root}); "
                             "leave --filestore out to back up the database alone")
    leftovers.sweep(pg, note=reporter.note)
    writer = _SetWriter(target, set_id)
    writer.start({"started_at": mf.utc_iso(created), "host": socket.gethostname(), "pid": os.getpid(), "db": db})
    scratch = None
    neutralize_report = None
    try:
        dump_db = db
        if neutralized:
            scratch = side_name(db, "neutral", secrets.token_hex(3))
            reporter.note(f"neutralized backup: copying {db} into scratch database {scratch}")
            copy_database(pg, db, scratch)
            neutralize_report = _neutralize(pg, scratch)
            dump_db = scratch
        key = mf.set_key(set_id, mf.DUMP_CUSTOM)
        with SnapshotSession(pg, dump_db) as session:
            facts = read_facts(session.query)
            dump = PgDump(pg, dump_db, snapshot=session.snapshot)
            try:
                artifact = _store_dump(target, key, dump, "custom", reporter, before_commit=dump.finish)
            finally:
                dump.close()
        copied = FilestoreCopy([], 0, 0, [])
        if fs_source is not None:
            lease.wait_for_gc(target, note=reporter.note)  # after the marker, before deciding what to skip
            copied = copy_filestore(fs_source, target, reporter, workers)
        manifest = mf.Manifest(
            odoo=mf.odoo_keys(db, facts.modules, facts.server_version_num),
            set_id=set_id, created_at=mf.utc_iso(created), stack=stack, db_name=db, erpops_version=__version__,
            pg_server_version=facts.server_version, pg_server_version_num=facts.server_version_num,
            artifacts=[artifact], filestore=copied.files, row_counts=facts.row_counts,
            duration_seconds=round(time.monotonic() - started, 3), neutralized=neutralized,
            source={"kind": "database", "host": pg.host, "port": pg.port, "db_size_bytes": facts.size_bytes,
                    "filestore": filestore, "neutralize_report": neutralize_report},
        )
        writer.finish(manifest)
    except BaseException as exc:
        cleanup = writer.discard()
        if isinstance(exc, ErpopsError):
            raise _fail(exc, f"backup of {db} into {target.url}", cleanup) from exc
        raise
    finally:
        if scratch:
            with contextlib.suppress(ErpopsError):
                drop_database(pg, scratch)
    return {
        "ok": True,
        "set_id": set_id,
        "target": target.url,
        "manifest": target.child(mf.set_key(set_id, mf.MANIFEST)),
        "db": db,
        "created_at": manifest.created_at,
        "odoo_version": manifest.odoo_version,
        "pg_server_version": facts.server_version,
        "artifacts": [vars(a) for a in manifest.artifacts],
        "filestore": {"count": len(copied.files), "bytes": manifest.filestore_bytes, "uploaded": copied.uploaded,
                      "skipped_existing": copied.skipped, "ignored": len(copied.ignored)},
        "row_counts": facts.row_counts,
        "neutralized": neutralized,
        "duration_seconds": manifest.duration_seconds,
    }


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
            raise BackupError(f"pg_restore into {dest} failed ({_exit_text(proc.returncode)}): {_tail(Path(err.name))}")
    except BaseException:
        with contextlib.suppress(ErpopsError):
            drop_database(pg, dest)
        raise
    finally:
        dump.close()
        err.close()
        Path(err.name).unlink(missing_ok=True)


def _neutralize(pg: Pg, db: str, **options: Any) -> dict[str, Any]:
    """options: addons_path, allow_unneutralized (see erpops.backup.neutralize.neutralize)."""
    try:
        from erpops.backup.neutralize import neutralize
    except ImportError as exc:
        raise ServiceError(f"erpops.backup.neutralize is not available ({exc}): cannot neutralize {db}") from exc
    return neutralize(pg, db, **options)


def import_odoo_zip(
    target: Target, zip_path: Path, *, stack: str = "adhoc", db: str | None = None,
    workers: int = DEFAULT_WORKERS, reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Store an Odoo database-manager zip (dump.sql + filestore/ + manifest.json) as a set.

    The plain SQL dump is kept as SQL (`dump.sql.zst`, restored with psql --single-transaction);
    no database is needed. Row counts are unknown (null): a deep verify of such a set checks
    that it restores, and says it had no counts to compare.
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    created = datetime.now(UTC)
    target.check(create=True)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{zip_path} is not a readable zip file: {exc}") from exc
    with zf:
        names = set(zf.namelist())
        if "dump.sql" not in names or "manifest.json" not in names:
            raise UsageError(f"{zip_path} is not an Odoo backup zip: it needs dump.sql and manifest.json "
                             "(Odoo's database manager, backup format zip)")
        odoo = json.loads(zf.read("manifest.json"))
        db = mf.check_db_name(db or str(odoo.get("db_name") or ""))
        set_id = mf.new_set_id(stack, db, created)
        writer = _SetWriter(target, set_id)
        writer.start({"started_at": mf.utc_iso(created), "host": socket.gethostname(), "pid": os.getpid(),
                      "zip": str(zip_path)})
        try:
            with zf.open("dump.sql") as sql:
                artifact = _store_dump(target, mf.set_key(set_id, mf.DUMP_SQL), sql, "plain", reporter, None)
            lease.wait_for_gc(target, note=reporter.note)
            copied = copy_filestore(_ZipFilestore(zf, zip_path), target, reporter, workers)
            manifest = mf.Manifest(
                odoo={**{k: v for k, v in odoo.items() if k != "erpops"}, "db_name": db},
                set_id=set_id, created_at=mf.utc_iso(created), stack=stack, db_name=db, erpops_version=__version__,
                pg_server_version=None, pg_server_version_num=None, artifacts=[artifact], filestore=copied.files,
                row_counts={}, duration_seconds=round(time.monotonic() - started, 3), neutralized=False,
                source={"kind": "odoo-zip", "file": zip_path.name},
            )
            writer.finish(manifest)
        except BaseException as exc:
            cleanup = writer.discard()
            if isinstance(exc, ErpopsError):
                raise _fail(exc, f"import of {zip_path} into {target.url}", cleanup) from exc
            raise
    return {"ok": True, "set_id": set_id, "target": target.url, "db": db, "created_at": manifest.created_at,
            "odoo_version": manifest.odoo_version, "artifacts": [vars(a) for a in manifest.artifacts],
            "filestore": {"count": len(copied.files), "bytes": manifest.filestore_bytes, "uploaded": copied.uploaded,
                          "skipped_existing": copied.skipped, "ignored": len(copied.ignored)},
            "row_counts": {}, "neutralized": False, "duration_seconds": manifest.duration_seconds}


class _ZipFilestore(FileTarget):
    """The filestore/ of an Odoo zip, read-only, through the Target listing/reading API."""

    def __init__(self, zf: zipfile.ZipFile, path: Path) -> None:
        super().__init__(path)
        self.url = f"zip://{path}!filestore"
        self._zf = zf
        self._lock = threading.Lock()

    def list_objects(self, prefix: str = "") -> Iterator[Any]:
        from erpops.backup.storage import ObjectInfo

        for info in self._zf.infolist():
            if info.filename.startswith("filestore/") and not info.is_dir():
                key = info.filename[len("filestore/"):]
                if key.startswith(prefix):
                    yield ObjectInfo(key, info.file_size, datetime(*info.date_time, tzinfo=UTC))

    @contextlib.contextmanager
    def get_stream(self, key: str) -> Iterator[Reader]:
        with self._lock:  # ZipFile is not safe for concurrent reads: hand out in-memory copies
            data = self._zf.read(f"filestore/{key}")
        yield _Bytes(data)


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        out = self._data[self._pos:end]
        self._pos += len(out)
        return out


# ------------------------------------------------------------------------------------------------
# Restoring a dump into a database (used by restore and by deep verify)
# ------------------------------------------------------------------------------------------------


@dataclass
class DumpPlan:
    """How the dump is fed to pg_restore: a decompressed temp file for -j N, else a pipe (-j 1)."""

    jobs: int
    work_dir: Path | None
    note: str


def plan_dump_restore(manifest: mf.Manifest, jobs: int, work_dir: Path | None) -> DumpPlan:
    """pg_restore -j N needs a seekable file; the dump is decompressed to work_dir when it has room.

    Without room (uncompressed size + 5% + 64 MiB), or with jobs=1, the dump streams into
    pg_restore's stdin instead: nothing touches the local disk, one job restores.
    """
    dump = manifest.dump
    if dump.format == "plain":
        return DumpPlan(1, None, "plain SQL dump: psql --single-transaction from a stream")
    if jobs <= 1:
        return DumpPlan(1, None, "pg_restore -j 1 from a stream (no temp file)")
    wd = work_dir or Path(tempfile.gettempdir())
    need = int((dump.uncompressed_size or dump.size * 5) * 1.05) + 64 * MiB
    try:
        free = shutil.disk_usage(wd).free
    except OSError:
        free = 0
    if free < need:
        return DumpPlan(1, None, f"pg_restore -j 1 from a stream: {wd} has {_h(free)} free, a -j {jobs} restore "
                                 f"needs the dump decompressed there ({_h(need)})")
    return DumpPlan(jobs, wd, f"pg_restore -j {jobs} from a decompressed temp file in {wd} ({_h(need)})")


def _h(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def _check_stream(target: Target, a: mf.Artifact, stored: HashingReader, raw: HashingReader) -> None:
    if (stored.size, stored.sha256) != (a.size, a.sha256):
        raise IntegrityError(f"{target.child(a.key)} changed: {stored.size} bytes, sha256 {stored.sha256}; the "
                             f"manifest records {a.size} bytes, sha256 {a.sha256}")
    if a.uncompressed_sha256 and (raw.size, raw.sha256) != (a.uncompressed_size, a.uncompressed_sha256):
        raise IntegrityError(f"{target.child(a.key)} decompresses to {raw.size} bytes, sha256 {raw.sha256}; the "
                             f"manifest records {a.uncompressed_size} bytes, sha256 {a.uncompressed_sha256}")


def restore_dump_into(
    target: Target,
    manifest: mf.Manifest,
    pg: Pg,
    db: str,
    plan: DumpPlan,
    reporter: Reporter,
    owner: str | None = None,
    on_created: Callable[[str], None] | None = None,
    *,
    untrusted: bool = False,
) -> dict[str, Any] | None:
    """Create db and restore the set's dump into it; the caller drops db if this raises.

    Every byte read is hashed on the way: a dump that changed since it was verified fails here.
    A plain SQL dump (from an Odoo zip), or any dump when untrusted=True, is screened and run as a
    sandbox role (erpops.backup.untrusted); the screen's report is returned then, else None.
    """
    a = manifest.dump
    if a.format == "plain" or untrusted:
        return _restore_untrusted(target, a, pg, db, reporter, owner, on_created)
    create_database(pg, db, owner)
    if on_created is not None:
        on_created(db)
    env = pg.env()
    if owner:
        env["PGOPTIONS"] = f"-c role={owner}"
    err = tempfile.NamedTemporaryFile(prefix="erpops-restore-", suffix=".log", delete=False,  # noqa: SIM115
                                      dir=leftovers.run_dir())
    # With a temp file the bar covers the decompression; pg_restore -j N runs after it.
    task = reporter.task("decompress" if plan.work_dir is not None else "restore", total=a.size)
    try:
        with task, target.get_stream(a.key) as body:
            stored = HashingReader(body, on_bytes=task.advance)
            raw = HashingReader(zstandard.ZstdDecompressor().stream_reader(stored, read_size=CHUNK, closefd=False))
            argv = [client_bin("pg_restore"), "-w", "--no-owner", "--no-privileges", "--exit-on-error", "-d", db]
            if owner:
                argv.append(f"--role={owner}")
            tool = "pg_restore"
            if plan.work_dir is not None:
                with tempfile.NamedTemporaryFile(prefix="erpops-dump-", suffix=".pgdump",
                                                 dir=leftovers.run_dir(plan.work_dir)) as tmp:
                    while data := raw.read(CHUNK):
                        tmp.write(data)
                    tmp.flush()
                    _check_stream(target, a, stored, raw)
                    rc = subprocess.run([*argv, "-j", str(plan.jobs), tmp.name], stdout=subprocess.DEVNULL,
                                        stderr=err, env=env, check=False, preexec_fn=preexec()).returncode
            else:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                        preexec_fn=preexec())
                assert proc.stdin is not None
                try:
                    while data := raw.read(CHUNK):
                        proc.stdin.write(data)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass  # the tool stopped reading: its exit code and log say why
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                rc = proc.wait()
                if rc == 0:
                    _check_stream(target, a, stored, raw)
        if rc != 0:
            raise BackupError(f"{tool} into {db} failed ({_exit_text(rc)}): {_tail(Path(err.name)) or 'no message'}")
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{target.child(a.key)} does not decompress ({exc}): the bytes are damaged") from exc
    finally:
        err.close()
        Path(err.name).unlink(missing_ok=True)


def _restore_untrusted(
    target: Target, a: mf.Artifact, pg: Pg, db: str, reporter: Reporter, owner: str | None,
    on_created: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Screen the dump and run it as a fresh sandbox role (custom format: rendered by pg_restore -f - first)."""
    from erpops.backup import untrusted as ut

    source = target.child(a.key)
    err = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    proc: subprocess.Popen[bytes] | None = None
    try:
        with reporter.task("restore (screened, as a sandbox role)", total=a.size) as task, \
                target.get_stream(a.key) as body:
            stored = HashingReader(body, on_bytes=task.advance)
            raw = HashingReader(zstandard.ZstdDecompressor().stream_reader(stored, read_size=CHUNK, closefd=False))
            feeder = None
            if a.format == "plain":
                sql: Any = raw
            else:
                proc, feeder = ut.custom_to_sql(raw, work_err=err)
                sql = proc.stdout

            def checked() -> Iterator[bytes]:
                yield from ut.bounded_lines(sql, source)
                # End of the SQL, before psql may commit: pg_restore's verdict and the stored bytes' sums.
                if proc is not None and feeder is not None:
                    rc = proc.wait()
                    feeder.join()
                    failure = getattr(feeder, "failure", [])
                    if failure:
                        raise failure[0]
                    if rc != 0:
                        err.seek(0)
                        raise BackupError(f"pg_restore -f - of {source} failed ({_exit_text(rc)}): "
                                          + err.read().decode("utf-8", "replace").strip()[-2000:])
                _check_stream(target, a, stored, raw)

            def create(admin: Pg, name: str, role: str) -> None:
                create_database(admin, name, role)
                if on_created is not None:
                    on_created(name)

            result = ut.execute_untrusted_sql(pg, db, checked(), create_database=create, owner=owner,
                                              source=source)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{source} does not decompress ({exc}): the bytes are damaged") from exc
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        err.close()
    return result.to_dict()


# ------------------------------------------------------------------------------------------------
# Verify
# ------------------------------------------------------------------------------------------------


def verify_artifacts(
    target: Target, manifest: mf.Manifest, reporter: Reporter, workers: int = DEFAULT_WORKERS,
    *, filestore: bool = True,
) -> tuple[list[str], int]:
    """Re-read every artifact (decompressing it) and filestore object; (problems, bytes read).

    filestore=False checks the database dump only (a restore that skips the filestore).
    """
    problems: list[str] = []
    total = 0
    for a in manifest.artifacts:
        task = reporter.task(f"verify {a.name}", total=a.size)
        try:
            with task, target.get_stream(a.key) as body:
                stored = HashingReader(body, on_bytes=task.advance)
                if a.compression == "zstd":
                    raw = HashingReader(zstandard.ZstdDecompressor().stream_reader(stored, read_size=CHUNK,
                                                                                   closefd=False))
                    raw.drain()
                else:
                    stored.drain()
                    raw = stored
                total += stored.size
            _check_stream(target, a, stored, raw)
        except IntegrityError as exc:
            problems.append(str(exc))
        except UsageError:
            problems.append(f"{target.child(a.key)} is missing")
        except zstandard.ZstdError as exc:
            problems.append(f"{target.child(a.key)} does not decompress ({exc}): the stored bytes are damaged")
    files = manifest.filestore if filestore else []
    task = reporter.task("verify filestore", total=sum(f.size for f in files)) if files else None

    def one(f: mf.FilestoreFile) -> str | None:
        try:
            with target.get_stream(f.key) as body:
                r = HashingReader(body, sha1=True, on_bytes=task.advance if task else None)
                r.drain()
        except UsageError:
            return f"{target.child(f.key)} is missing (file {f.path})"
        if (r.sha1, r.sha256, r.size) != (f.sha1, f.sha256, f.size):
            return (f"{target.child(f.key)} is damaged: {r.size} bytes, sha1 {r.sha1}; expected {f.size} bytes, "
                    f"sha1 {f.sha1}")
        return None

    if task is not None:
        with task:
            problems += [p for p in _run_parallel(files, one, workers) if p]
    return problems, total + sum(f.size for f in files)


def verify(
    target: Target,
    set_id: str,
    *,
    deep: bool = False,
    pg: Pg | None = None,
    jobs: int = 2,
    work_dir: Path | None = None,
    workers: int = DEFAULT_WORKERS,
    reporter: Reporter | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Check a set against its manifest; write verify.json; return the report (never raises on findings).

    deep=True also restores the dump into a scratch database, compares the row counts with the
    manifest's and drops the scratch database.
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    manifest = load_manifest(target, set_id)
    problems, read_bytes = verify_artifacts(target, manifest, reporter, workers)
    report: dict[str, Any] = {
        "set_id": set_id,
        "target": target.url,
        "verified_at": mf.utc_iso(datetime.now(UTC)),
        "ok": not problems,
        "deep": deep,
        "problems": problems,
        "checked": {"artifacts": len(manifest.artifacts), "filestore_files": len(manifest.filestore),
                    "bytes": read_bytes},
    }
    if deep:
        if pg is None:
            raise UsageError("a deep verify needs a PostgreSQL server to restore into (PGHOST/PGPORT/PGUSER)")
        if problems:
            report["deep_skipped"] = "artifacts are damaged: nothing to restore"
        else:
            leftovers.sweep(pg, [work_dir], note=reporter.note)
            scratch = side_name(manifest.db_name or "set", "verify", secrets.token_hex(3))
            plan = plan_dump_restore(manifest, jobs, work_dir)
            reporter.note(f"deep verify: restoring into scratch database {scratch} ({plan.note})")
            try:
                restore_dump_into(target, manifest, pg, scratch, plan, reporter)
                actual = row_counts(pg, scratch)
                report["row_counts"] = actual
                if manifest.row_counts:
                    problems += mf.row_count_problems(manifest.row_counts, actual)
                else:
                    report["note"] = "the set records no row counts (imported from an Odoo zip): restore checked only"
            except (BackupError, IntegrityError, ServiceError) as exc:
                problems.append(f"restoring into a scratch database failed: {exc}")
            finally:
                with contextlib.suppress(ErpopsError):
                    drop_database(pg, scratch)
            report["ok"] = not problems
    report["duration_seconds"] = round(time.monotonic() - started, 3)
    if write:
        target.put_bytes(mf.set_key(set_id, mf.VERIFY), json.dumps(report, indent=1).encode())
    return report


__all__ = [
    "DbFacts", "DumpPlan", "FilestoreCopy", "PgDump", "SnapshotSession", "backup",
    "copy_filestore", "filestore_source", "import_odoo_zip", "list_sets", "load_manifest", "plan_dump_restore",
    "read_verify", "restore_dump_into", "restore_filestore", "row_counts", "scan_sets", "side_name", "verify",
]
