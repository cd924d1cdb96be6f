"""`erpops filestore migrate`: move an Odoo database's attachments between a filestore and object storage.

Layouts (what Odoo reads, so the rows switched here are what Odoo then opens):
- a directory is Odoo's own filestore, `<data_dir>/filestore/<db>`: `ir_attachment.store_fname` is the
  path inside it, `<sha1[:2]>/<sha1>` for what Odoo writes (ir.attachment._file_write);
- `s3://bucket[/prefix]` is an OCA fs_attachment storage (fs.storage record `--storage-code`, the chart's
  `erpops_filestore`): `store_fname` is `<code>://<path>`, the object `<prefix>/<path>` (fs_storage wraps
  the bucket in fsspec's rooted_dir at `directory_path` = `bucket[/prefix]`), and `<path>` is the sha1,
  or `<sha1[:2]>/<sha1[2:4]>/<sha1>` when the storage has `optimizes_directory_path`
  (fs_attachment 16.0-18.0, ir.attachment._get_fs_path). `fs_filename` is set to the path's basename,
  as fs_attachment does for an obfuscated name.

Order, per batch of rows: copy every file in parallel (a bounded pool, chunked streams), read each
object back and compare its sha1 with the attachment's checksum (re-sending once on a mismatch), write
the checkpoint, then switch the verified rows in one transaction with a compare-and-swap on the old
store_fname, then advance the checkpoint. A killed run resumes after the last switched batch; files it
had already copied are found at the target, verified by read-back and not sent again. Sources are never
deleted: Odoo can be pointed back until you remove them yourself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from erpops.backup.progress import Reporter
from erpops.errors import ErpopsError, IntegrityError, OperationFailed, PreflightError, UsageError
from erpops.filestore.stores import DirStore, HashingReader, S3Store, Store, sha1_of
from erpops.pg import Pg, quote_literal

DEFAULT_CODE = "erpops_filestore"  # the fs.storage code the chart's module Job creates
CHECKPOINT_VERSION = 1
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Row:
    id: int
    store_fname: str
    checksum: str | None
    file_size: int | None


@dataclass
class Outcome:
    """What happened to one file (one source path, shared by every row naming it)."""

    source: str
    status: str  # copied | present | resent | failed
    new_key: str | None = None
    sha1: str | None = None
    bytes: int = 0
    reason: str = ""


@dataclass
class Report:
    db: str
    source: str
    target: str
    apply: bool
    rows: int = 0  # rows to move (plan) / rows seen (run)
    files: int = 0
    bytes: int = 0
    already_switched: int = 0  # rows already in the target layout
    present: int = 0  # files already at the target, verified (no upload)
    copied: int = 0
    resent: int = 0  # a target object did not match its checksum and was sent again
    moved: int = 0  # rows switched to the target
    conflicts: int = 0  # rows changed by someone else meanwhile: left as they were
    failed: list[dict[str, str]] = field(default_factory=list)
    bytes_copied: int = 0
    duration_s: float = 0.0
    resumed_from: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Layout:
    """How one location names files in ir_attachment.store_fname."""

    def __init__(self, store: Store, code: str, optimize: bool = False) -> None:
        self.store = store
        self.code = code
        self.optimize = optimize
        self.is_s3 = isinstance(store, S3Store)

    @property
    def prefix(self) -> str:
        return f"{self.code}://"

    def row_filter(self) -> str:
        if self.is_s3:
            return f"left(store_fname, {len(self.prefix)}) = {quote_literal(self.prefix)}"
        return "store_fname IS NOT NULL AND store_fname <> '' AND position('://' in store_fname) = 0"

    def key_of(self, store_fname: str) -> str:
        return store_fname[len(self.prefix):] if self.is_s3 else store_fname

    def new_key(self, sha1: str) -> str:
        if self.is_s3:
            return f"{sha1[:2]}/{sha1[2:4]}/{sha1}" if self.optimize else sha1
        return f"{sha1[:2]}/{sha1}"

    def store_fname(self, key: str) -> str:
        return f"{self.prefix}{key}" if self.is_s3 else key


class Checkpoint:
    """A small JSON file, rewritten atomically after each batch: cursor, totals, verified-not-switched keys."""

    def __init__(self, path: Path, identity: dict[str, str]) -> None:
        self.path = path
        self.identity = identity
        self.cursor = 0
        self.pending: dict[str, str] = {}  # target key -> sha1, verified but rows not yet switched
        self.totals: dict[str, int] = {}

    def load(self) -> bool:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return False
        except ValueError as exc:
            raise UsageError(f"checkpoint {self.path} is not JSON ({exc}): remove it to start over") from None
        if doc.get("version") != CHECKPOINT_VERSION or doc.get("identity") != self.identity:
            raise UsageError(f"checkpoint {self.path} belongs to another move ({doc.get('identity')}): pass "
                             "--checkpoint with another path, or remove it")
        self.cursor = int(doc.get("cursor", 0))
        self.pending = dict(doc.get("pending") or {})
        self.totals = dict(doc.get("totals") or {})
        return True

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": CHECKPOINT_VERSION, "identity": self.identity, "cursor": self.cursor,
                                   "pending": self.pending, "totals": self.totals}))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def default_checkpoint(db: str, source: str, target: str) -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    tag = hashlib.sha256(f"{db}\0{source}\0{target}".encode()).hexdigest()[:12]
    return state / "erpops" / f"filestore-{db}-{tag}.json"


class Migration:
    def __init__(self, pg: Pg, db: str, source: Store, target: Store, *, code: str = DEFAULT_CODE,
                 jobs: int = 8, batch: int = 200, checkpoint: Path | None = None,
                 allow_connected: bool = False, reporter: Reporter | None = None) -> None:
        if source.url == target.url:
            raise UsageError(f"--from and --to are the same location ({source.url}): nothing to move")
        if isinstance(source, DirStore) and isinstance(target, DirStore):
            raise UsageError("--from and --to are both directories: one side must be s3://bucket[/prefix]")
        if jobs < 1 or batch < 1:
            raise UsageError("--jobs and --batch must be at least 1")
        self.pg, self.db = pg, db
        self.code = code
        self.jobs, self.batch = jobs, batch
        self.allow_connected = allow_connected
        self.reporter = reporter or Reporter()
        self.src = Layout(source, code, self._optimize(source))
        self.dst = Layout(target, code, self._optimize(target))
        self.checkpoint = Checkpoint(checkpoint or default_checkpoint(db, source.url, target.url),
                                     {"db": db, "from": source.url, "to": target.url, "code": code})

    # ---- database ------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return self.pg.psql(sql, self.db)

    def _json(self, sql: str) -> Any:
        return json.loads(self._sql(sql).strip() or "null")

    def _has(self, table: str, column: str | None = None) -> bool:
        if column is None:
            sql = f"SELECT to_regclass({quote_literal(table)}) IS NOT NULL"
        else:
            sql = ("SELECT count(*) > 0 FROM information_schema.columns WHERE table_name = "
                   f"{quote_literal(table)} AND column_name = {quote_literal(column)}")
        return self._sql(sql).strip() == "t"

    def _storage_row(self) -> dict[str, Any] | None:
        if not self._has("fs_storage"):
            return None
        return self._json("SELECT row_to_json(s) FROM (SELECT code, protocol, directory_path, "
                          "coalesce(optimizes_directory_path, false) AS optimizes_directory_path FROM fs_storage "
                          f"WHERE code = {quote_literal(self.code)} LIMIT 1) s")

    def _optimize(self, store: Store) -> bool:
        if not isinstance(store, S3Store) or not self.pg.database_exists(self.db):
            return False
        row = self._storage_row() if self._has("ir_attachment") else None
        return bool(row and row.get("optimizes_directory_path"))

    def _rows(self, after: int) -> list[Row]:
        got = self._json(
            "SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM (SELECT id, store_fname, checksum, file_size "
            f"FROM ir_attachment WHERE {self.src.row_filter()} AND id > {int(after)} ORDER BY id "
            f"LIMIT {int(self.batch)}) t")
        return [Row(int(r["id"]), r["store_fname"], r.get("checksum"), r.get("file_size")) for r in got]

    def connected_sessions(self) -> list[str]:
        got = self._json("SELECT coalesce(json_agg(coalesce(nullif(application_name, ''), 'client ' || "
                         "coalesce(host(client_addr), 'local'))), '[]') FROM pg_stat_activity WHERE datname = "
                         f"{quote_literal(self.db)} AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        return list(got)

    # ---- pre-flight ----------------------------------------------------------------------
    def preflight(self, apply: bool) -> list[str]:
        """Problems refusing an --apply run (nothing is changed); notes for a dry run."""
        if not self.pg.database_exists(self.db):
            raise UsageError(f"--db {self.db!r}: no such database on {self.pg.host}:{self.pg.port}")
        if not self._has("ir_attachment"):
            raise UsageError(f"--db {self.db!r} has no ir_attachment table: is it an Odoo database?")
        problems: list[str] = []
        for layout, side in ((self.src, "--from"), (self.dst, "--to")):
            store = layout.store
            if isinstance(store, S3Store):
                store.check()
                row = self._storage_row()
                if row is None:
                    problems.append(
                        f"{side} {store.url}: database {self.db} has no fs.storage {self.code!r} (OCA fs_attachment): "
                        "install fs_storage and fs_attachment and create the storage first (runbooks/"
                        "filestore-migrate.md), or pass --storage-code with its code")
                elif (row.get("directory_path") or "").strip("/") != store.directory_path:
                    problems.append(
                        f"{side} {store.url}: fs.storage {self.code!r} reads directory_path "
                        f"{row.get('directory_path')!r}, not {store.directory_path!r}: Odoo would not find the files "
                        "there; fix the URL or the storage")
            elif side == "--from" and not store.root.is_dir():  # type: ignore[attr-defined]
                problems.append(f"--from {store.url} is not a directory: give Odoo's <data_dir>/filestore/{self.db}")
        if apply and not self.allow_connected:
            sessions = self.connected_sessions()
            if sessions:
                problems.append(
                    f"{len(sessions)} session(s) are connected to {self.db} ({', '.join(sorted(set(sessions)))}): Odoo "
                    "may write attachments meanwhile. Freeze it first: scale web and cron to 0 (runbooks/"
                    "filestore-migrate.md), or pass --allow-connected if these are not Odoo")
        return problems

    # ---- plan ----------------------------------------------------------------------------
    def plan(self, check_target: bool = True) -> Report:
        """Counts and bytes to move; with check_target, also how many files are already at the target (a HEAD each)."""
        report = Report(self.db, self.src.store.url, self.dst.store.url, apply=False)
        totals = self._json(
            "SELECT json_build_array(count(*), count(DISTINCT store_fname), "
            f"(SELECT coalesce(sum(s), 0) FROM (SELECT max(file_size) s FROM ir_attachment WHERE "
            f"{self.src.row_filter()} GROUP BY store_fname) f)) FROM ir_attachment WHERE {self.src.row_filter()}")
        report.rows, report.files, report.bytes = int(totals[0]), int(totals[1]), int(totals[2])
        report.already_switched = int(self._sql(
            f"SELECT count(*) FROM ir_attachment WHERE {self.dst.row_filter()}").strip())
        cursor = 0
        with ThreadPoolExecutor(self.jobs) as pool:
            while check_target and (rows := self._rows(cursor)):
                cursor = rows[-1].id
                wanted = {r.store_fname: r for r in rows if r.checksum and _SHA1.match(r.checksum)}
                sizes = pool.map(lambda r: self.dst.store.size(self.dst.new_key(r.checksum)), wanted.values())
                report.present += sum(1 for r, s in zip(wanted.values(), sizes, strict=True)
                                      if s is not None and r.file_size in (None, s))
        return report

    # ---- copy ----------------------------------------------------------------------------
    def _verified(self, key: str, sha1: str, size: int | None) -> bool:
        got, got_size = sha1_of(self.dst.store, key)
        return got == sha1 and (size is None or got_size == size)

    def _copy(self, row: Row) -> Outcome:
        src_key = self.src.key_of(row.store_fname)
        out = Outcome(row.store_fname, "failed")
        try:
            size = self.src.store.size(src_key)
            sha1 = row.checksum if row.checksum and _SHA1.match(row.checksum) else None
            if sha1 is None and size is not None:  # Odoo always sets it; a row without one is hashed first
                sha1, _ = sha1_of(self.src.store, src_key)
            if sha1 is None:
                out.reason = f"missing at {self.src.store.url}/{src_key} and no checksum to find it elsewhere"
                return out
            key = out.new_key = self.dst.new_key(sha1)
            out.sha1 = sha1
            have = self.dst.store.size(key)
            if have is not None and (size is None or have == size) and (
                    self.checkpoint.pending.get(key) == sha1 or self._verified(key, sha1, size)):
                out.status = "present"
                return out
            if size is None:
                out.reason = f"missing at {self.src.store.url}/{src_key}"
                return out
            resent = have is not None
            for attempt in range(2):
                with self.src.store.open(src_key) as raw:
                    reader = HashingReader(raw)
                    self.dst.store.write(key, reader, size)
                if reader.sha1.hexdigest() != sha1:
                    self.dst.store.delete(key)
                    out.reason = (f"source {self.src.store.url}/{src_key} does not match its checksum {sha1} "
                                  f"(read {reader.sha1.hexdigest()}): not moved")
                    out.new_key = None
                    return out
                out.bytes += reader.size
                if self._verified(key, sha1, size):
                    out.status = "resent" if resent else "copied"
                    return out
                resent = True  # what we read back is not what we sent: send it again, once
                if attempt == 1:
                    out.reason = f"{self.dst.store.url}/{key} did not read back with sha1 {sha1} after two uploads"
        except ErpopsError as exc:
            out.reason = str(exc)
        except OSError as exc:
            out.reason = f"{type(exc).__name__}: {exc}"
        return out

    # ---- switch --------------------------------------------------------------------------
    def _switch(self, rows: list[Row], outcomes: dict[str, Outcome]) -> tuple[int, int]:
        values = [f"({r.id}, {quote_literal(r.store_fname)}, "
                  f"{quote_literal(self.dst.store_fname(outcomes[r.store_fname].new_key or ''))})"
                  for r in rows if outcomes[r.store_fname].status != "failed"]
        if not values:
            return 0, 0
        fs_filename = ""
        if self.has_fs_filename:
            fs_filename = (", fs_filename = reverse(split_part(reverse(v.new), '/', 1))" if self.dst.is_s3
                           else ", fs_filename = NULL")
        # one statement, so one transaction; compare-and-swap: a row someone changed meanwhile keeps what it has
        sql = (f"WITH v(id, old, new) AS (VALUES {', '.join(values)}),\n"
               f"u AS (UPDATE ir_attachment a SET store_fname = v.new{fs_filename} FROM v "
               "WHERE a.id = v.id AND a.store_fname = v.old RETURNING a.id)\nSELECT count(*) FROM u;\n")
        moved = int(self._sql(sql).strip())
        return moved, len(values) - moved

    def _batches(self, start: int) -> Iterator[list[Row]]:
        cursor = start
        while rows := self._rows(cursor):
            cursor = rows[-1].id
            yield rows

    def run(self) -> Report:
        """Copy, verify and switch, batch by batch. Raises PreflightError before changing anything."""
        problems = self.preflight(apply=True)
        if problems:
            raise PreflightError(problems, "filestore migrate")
        self.has_fs_filename = self._has("ir_attachment", "fs_filename")
        plan = self.plan(check_target=False)  # the copy looks at each target object anyway
        report = Report(self.db, self.src.store.url, self.dst.store.url, apply=True, rows=plan.rows,
                        files=plan.files, bytes=plan.bytes, already_switched=plan.already_switched)
        cp = self.checkpoint
        if cp.load():
            report.resumed_from = cp.cursor
            self.reporter.note(f"resuming after attachment id {cp.cursor} ({cp.path})", cursor=cp.cursor)
        started = time.monotonic()
        task = self.reporter.task("filestore", plan.bytes)
        with ThreadPoolExecutor(self.jobs) as pool:
            for rows in self._batches(cp.cursor):
                firsts: dict[str, Row] = {}
                for r in rows:
                    firsts.setdefault(r.store_fname, r)

                def copy(r: Row) -> Outcome:
                    o = self._copy(r)
                    task.advance(o.bytes)
                    return o

                outcomes = {o.source: o for o in pool.map(copy, firsts.values())}
                cp.pending = {o.new_key: o.sha1 for o in outcomes.values()
                              if o.status != "failed" and o.new_key and o.sha1}
                cp.save()  # bytes verified: a kill from here on finds them and does not send them again
                moved, conflicts = self._switch(rows, outcomes)
                for o in outcomes.values():
                    if o.status == "failed":
                        report.failed.append({"store_fname": o.source, "reason": o.reason})
                    else:
                        setattr(report, o.status, getattr(report, o.status) + 1)
                    report.bytes_copied += o.bytes
                report.moved += moved
                report.conflicts += conflicts
                cp.cursor, cp.pending = rows[-1].id, {}
                cp.totals = {k: cp.totals.get(k, 0) + v for k, v in
                             (("moved", moved), ("copied", sum(o.status in ("copied", "resent")
                                                               for o in outcomes.values())))}
                cp.save()
                self.reporter.note(f"batch up to id {cp.cursor}: {report.moved} rows switched, "
                                   f"{report.copied + report.resent} files copied, {report.present} present, "
                                   f"{len(report.failed)} failed", cursor=cp.cursor, moved=report.moved)
        task.close()
        report.duration_s = round(time.monotonic() - started, 3)
        if not report.failed:
            cp.remove()  # finished: a new run starts from the first row again
        return report


def raise_for(report: Report) -> None:
    """After the report is printed: exit 5 on a checksum failure, 4 on any other failure."""
    if not report.failed:
        return
    first = report.failed[0]
    text = (f"{len(report.failed)} file(s) not moved; their rows still point at {report.source}, which Odoo keeps "
            f"reading. First: {first['store_fname']}: {first['reason']}")
    if any("checksum" in f["reason"] or "sha1" in f["reason"] for f in report.failed):
        raise IntegrityError(text)
    raise OperationFailed(text)
