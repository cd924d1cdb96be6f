"""Taking a backup set: the database dump and the filestore copied at the same time, the manifest last.

A backup set = a compressed database dump + the database's filestore + manifest.json:

    <target>/sets/<set_id>/dump.pgdump.zst   pg_dump -Fc -Z0, compressed by zstd outside pg_dump
    <target>/sets/<set_id>/manifest.json     written last: without it the set is incomplete
    <target>/sets/<set_id>/verify.json       written by verify
    <target>/filestore/<sha1[:2]>/<sha1>     shared by every set holding that file
    <target>/filestore/packs/<sha256>        S3: files up to 1 MiB stored together, one request per ~4 MiB
                                             (the manifest gives each file's pack and offset; format 2)

The snapshot is taken first, then the filestore is listed and copied while pg_dump streams (both
to the target; erpops.backup.dump, erpops.backup.filestore). A file target gets every object
without an fsync each and one syncfs before the manifest: the manifest stays the commit point.
Finding, verifying and restoring sets live in sets, verify and restore; this module re-exports
their public names (`engine.verify`, `engine.list_sets`, ...) for the callers that use them here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from erpops import __version__
from erpops.backup import lease, leftovers
from erpops.backup import manifest as mf
from erpops.backup.dump import (
    ZSTD_LEVEL,
    DbFacts,
    PgDump,
    SnapshotSession,
    copy_database,
    create_database,
    drop_database,
    is_local_host,
    read_facts,
    row_counts,
    side_name,
    store_dump,
)
from erpops.backup.filestore import (
    DEFAULT_WORKERS,
    FilestoreCopy,
    Stopped,
    ZipFilestore,
    copy_filestore,
    filestore_source,
    previous_files,
    restore_filestore,
    run_parallel,
    transfer_workers,
    wait_interruptibly,
)
from erpops.backup.progress import Reporter
from erpops.backup.restore import DumpPlan, check_stream, plan_dump_restore, restore_dump_into
from erpops.backup.sets import SetListing, list_sets, load_manifest, read_verify, scan_sets
from erpops.backup.storage import FileTarget, Target
from erpops.backup.verify import verify, verify_artifacts
from erpops.errors import BackupError, CredentialsError, ErpopsError, IntegrityError, UsageError
from erpops.pg import Pg

log = logging.getLogger(__name__)


def _dump_and_filestore(
    start_dump: Callable[[], PgDump], target: Target, key: str, fs_source: Target | None,
    previous: dict[str, mf.FilestoreFile], reporter: Reporter, workers: int | None,
) -> tuple[mf.Artifact, FilestoreCopy]:
    """Store the dump and copy the filestore at the same time; the first failure stops the other."""
    if fs_source is None:
        dump = start_dump()
        try:
            return store_dump(target, key, dump, "custom", reporter, before_commit=dump.finish), \
                FilestoreCopy([], 0, 0, [])
        finally:
            dump.close()
    stop = threading.Event()
    dump = start_dump()
    side = ThreadPoolExecutor(1, thread_name_prefix="erpops-filestore")
    fs_future = side.submit(copy_filestore, fs_source, target, reporter, transfer_workers(fs_source, target, workers),
                            previous=previous, stop=stop)

    def filestore_done(fut: Future[FilestoreCopy]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            dump.kill()  # the dump stream ends, its put_stream fails before committing anything

    fs_future.add_done_callback(filestore_done)
    try:
        try:
            artifact = store_dump(target, key, dump, "custom", reporter, before_commit=dump.finish)
        finally:
            dump.close()
        # Inside the try: Ctrl-C while the filestore copy still runs must stop it too (its queued files
        # would otherwise all be copied before the process could exit)
        wait_interruptibly([fs_future])
        copied = fs_future.result()
    except BaseException:
        stop.set()
        fs_error = fs_future.exception()  # waits for the running transfers (at most `workers`) to end
        side.shutdown(wait=True)
        if fs_error is not None and not isinstance(fs_error, Stopped):
            raise fs_error from None  # the dump was stopped because of it
        raise
    side.shutdown(wait=True)
    return artifact, copied


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
    addons_path: list[Path] | None = None,
    allow_unneutralized: tuple[str, ...] = (),
    workers: int | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Back db (and its filestore) up into a new set on target; returns the backup report.

    workers: filestore transfers at once (default: filestore.transfer_workers's choice for the two ends).

    neutralized=True backs up a neutralized copy instead: the database is copied into a scratch
    database (pg_dump | pg_restore), neutralized there (erpops.backup.neutralize), dumped, and
    the scratch database dropped. Production is never modified. addons_path / allow_unneutralized:
    as erpops.backup.neutralize.neutralize (Odoo's own files; modules accepted as not covered).
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
    if neutralized and addons_path:  # a wrong --addons-path is refused before anything starts
        from erpops.backup.neutralize import odoo_addons_files

        odoo_addons_files(addons_path, ())
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
            from erpops.backup.neutralize import neutralize

            neutralize_report = neutralize(pg, scratch, addons_path=addons_path,
                                           allow_unneutralized=allow_unneutralized)
            dump_db = scratch
        key = mf.set_key(set_id, mf.DUMP_CUSTOM)
        previous: dict[str, mf.FilestoreFile] = {}
        if fs_source is not None:
            lease.wait_for_gc(target, note=reporter.note)  # after the marker, before deciding what to skip
            previous = previous_files(target, db)
        with SnapshotSession(pg, dump_db) as session:
            facts = read_facts(session.query)
            # The filestore is listed after the snapshot exists: every file the dump references is there
            # (Odoo writes a file before it commits its attachment row). It is copied while the dump runs.
            artifact, copied = _dump_and_filestore(
                lambda: PgDump(pg, dump_db, snapshot=session.snapshot), target, key, fs_source, previous,
                reporter, workers)
        target.flush()  # every object durable before the manifest that makes them part of a set
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
                      "skipped_existing": copied.skipped, "ignored": len(copied.ignored), "packs": copied.packs},
        "row_counts": facts.row_counts,
        "neutralized": neutralized,
        "neutralize_report": neutralize_report,
        "duration_seconds": manifest.duration_seconds,
    }


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
                artifact = store_dump(target, mf.set_key(set_id, mf.DUMP_SQL), sql, "plain", reporter, None)
            lease.wait_for_gc(target, note=reporter.note)
            copied = copy_filestore(ZipFilestore(zf, zip_path), target, reporter, workers)
            target.flush()
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
                          "skipped_existing": copied.skipped, "ignored": len(copied.ignored), "packs": copied.packs},
            "row_counts": {}, "neutralized": False, "duration_seconds": manifest.duration_seconds}



# The backup package's public API, from the modules that hold it (callers may import either).
__all__ = [
    "DEFAULT_WORKERS", "ZSTD_LEVEL", "DbFacts", "DumpPlan", "FilestoreCopy", "PgDump", "SetListing", "SnapshotSession",
    "backup", "check_stream", "copy_database", "copy_filestore", "create_database", "drop_database", "filestore_source",
    "import_odoo_zip", "is_local_host", "list_sets", "load_manifest", "plan_dump_restore", "read_facts", "read_verify",
    "restore_dump_into", "restore_filestore", "row_counts", "run_parallel", "scan_sets", "side_name", "verify",
    "verify_artifacts",
]
