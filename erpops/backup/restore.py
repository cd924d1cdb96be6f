"""Restore a backup set into a database (and its filestore), never touching the current one early.

Order, each step only after the previous one succeeded:

1. Pre-flight, before anything changes (all failed checks reported at once, PreflightError,
   exit 6): the set is complete; the database is absent, or `replace=True` was given and
   confirmed; the PostgreSQL server major is >= the dump's; the Odoo major matches the target
   image's (`odoo_version`); free disk for the filestore (shutil.disk_usage against the set's
   filestore bytes) and, when the server runs on this machine and its data directory is
   readable, for the database (the source's pg_database_size); the filestore directory is
   absent (or replaced). A remote server's disk cannot be seen from here: that check is skipped,
   and the report says so.
2. The confirmation callback, when replacing (the CLI asks to type the database name).
3. Build aside, checking every byte against the manifest as it is read (no separate verify pass:
   each byte is read once): the dump goes into `<db>__erpops_restore_<hex>` and, at the same time,
   the filestore into `<filestore_root>/<db>__erpops_restore_<hex>/` (sha1, sha256 and size of
   each file); row counts are compared with the manifest; the copy is neutralized when asked.
   Damage anywhere fails here, before the swap: IntegrityError (exit 5), what was built is dropped
   and the current database was never touched.
4. Swap: when replacing, the current database is renamed `<db>__erpops_old_<hex>` and the new
   one renamed `<db>` in one transaction; the filestore directories likewise. The old ones are
   dropped only after the swap succeeded.

Any failure in 3-4 drops what was built (temp database, partial filestore directory), undoes
a partial swap, and says so in the error (BackupError, exit 4).

With jobs > 1, a set whose manifest records the dump's data blocks and zstd frames is restored by
N loaders that each read their tables' frames of the stored dump, with no temp file
(erpops.backup.staged). An older set needs a seekable file for pg_restore -j N: its dump is
decompressed (once, its stored bytes checked on the way) to a temp file in `work_dir` when there
is room for it, otherwise it streams into `pg_restore -j 1` (the report says which).
Plain SQL dumps (sets imported from Odoo zips), and any dump with untrusted=True, are screened
and run by a fresh role without rights (erpops.backup.untrusted), one psql transaction.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from erpops.backup import filestore as fs
from erpops.backup import leftovers as markers
from erpops.backup import manifest as mf
from erpops.backup.dump import create_database, drop_database, exit_text, is_local_host, log_tail, row_counts, side_name
from erpops.backup.leftovers import preexec
from erpops.backup.pgarchive import add_data_offsets
from erpops.backup.progress import Reporter, human_bytes
from erpops.backup.sets import load_manifest
from erpops.backup.staged import StreamedRestore
from erpops.backup.storage import CHUNK, HashingReader, Target
from erpops.backup.untrusted import UntrustedDumpError
from erpops.errors import BackupError, ErpopsError, IntegrityError, PreflightError, ServiceError, UsageError
from erpops.pg import Pg, client_bin, quote_ident, quote_literal

MiB = 1024 * 1024
# Room to leave on a filesystem on top of what a restore writes there.
DISK_MARGIN = 64 * MiB
# A plain SQL dump restores into about this many times its own size (indexes, page overhead);
# used only when the set does not record the source database's size.
PLAIN_DUMP_GROWTH = 4


def existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def data_directory(pg: Pg) -> Path | None:
    """The server's data directory when it can be read from here (local server, enough rights)."""
    if not is_local_host(pg.host):
        return None
    try:
        path = Path(pg.scalar("SHOW data_directory"))
    except ServiceError:
        return None
    return path if path.exists() else None


def preflight(
    manifest: mf.Manifest,
    pg: Pg,
    db: str,
    *,
    filestore_root: Path | None,
    skip_filestore: bool,
    replace: bool,
    odoo_version: str | None,
    server_version_num: int,
    db_exists: bool,
    disk_usage: Callable[[Path], Any] = shutil.disk_usage,
) -> tuple[list[str], list[str]]:
    """(problems, notes): why the restore must not start, and what was checked or skipped."""
    problems = mf.restore_problems(manifest, server_version_num=server_version_num, odoo_version=odoo_version)
    notes: list[str] = []
    if db_exists and not replace:
        problems.append(f"database {db} already exists on {pg.host}:{pg.port}: restore under another name "
                        "(--to), or pass --replace (the current database stays until the new one is complete)")
    fs_bytes = manifest.filestore_bytes
    if manifest.filestore and not skip_filestore:
        if filestore_root is None:
            problems.append(f"the set holds {len(manifest.filestore)} filestore files ({human_bytes(fs_bytes)}): pass "
                            "--filestore <Odoo data_dir>/filestore, or --skip-filestore to restore the database alone")
        else:
            dest = filestore_root / db
            if dest.exists() and any(dest.iterdir()) and not replace:
                problems.append(f"filestore directory {dest} already exists and is not empty: pass --replace, or "
                                "remove it if it belongs to no database")
            where = existing_parent(filestore_root)
            free = disk_usage(where).free
            need = fs_bytes + DISK_MARGIN
            if free < need:
                problems.append(f"not enough free disk for the filestore: {human_bytes(need)} needed "
                                f"({human_bytes(fs_bytes)} + {human_bytes(DISK_MARGIN)} margin), "
                                f"{human_bytes(free)} free on "
                                f"{where}: free space or pass another --filestore")
            else:
                notes.append(f"filestore disk: {human_bytes(free)} free on {where}, {human_bytes(need)} needed")
    elif manifest.filestore:
        notes.append(f"filestore: skipped on request ({len(manifest.filestore)} files not restored)")
    db_bytes = manifest.source.get("db_size_bytes") or (manifest.dump.uncompressed_size or 0) * PLAIN_DUMP_GROWTH
    data_dir = data_directory(pg)
    if data_dir is None:
        notes.append(f"database disk: not checked (the server at {pg.host}:{pg.port} is remote, or its data "
                     f"directory is not readable here); the restore needs about {human_bytes(db_bytes)} there")
    else:
        free = disk_usage(data_dir).free
        need = db_bytes + DISK_MARGIN
        if free < need:
            problems.append(f"not enough free disk for the database: about {human_bytes(need)} needed, "
                            f"{human_bytes(free)} free in {data_dir}")
        else:
            notes.append(f"database disk: {human_bytes(free)} free in {data_dir}, about {human_bytes(need)} needed")
    return problems, notes


def role_problems(pg: Pg, db: str, *, db_exists: bool, replace: bool, owner: str | None,
                  sandbox: bool) -> tuple[list[str], list[str]]:
    """(problems, checks): whether the connecting role may do what the restore does.

    A restore creates a database (CREATEDB), gives it to `owner` (membership in that role), and, when
    replacing, renames and drops the current one (its owner, or a member of the owning role). A plain SQL
    or untrusted dump runs as a fresh sandbox role (CREATEROLE). A superuser may do all of it.
    """
    who = f"role {pg.user} on {pg.host}:{pg.port}"
    facts = pg.scalar("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user")
    superuser, createdb, createrole = (flag == "t" for flag in facts.split("|"))
    if superuser:
        return [], [f"{who} is a superuser"]
    problems: list[str] = []
    checks: list[str] = []
    if createdb:
        checks.append(f"{who} may create databases (CREATEDB)")
    else:
        problems.append(f"{who} may not create databases: ALTER ROLE {quote_ident(pg.user)} CREATEDB, or connect "
                        "as a role that has it (PGUSER)")
    if sandbox:
        if createrole:
            checks.append(f"{who} may create the sandbox role the screened SQL runs as (CREATEROLE)")
        else:
            problems.append(f"{who} may not create roles, and this dump runs as a fresh sandbox role (plain SQL, or "
                            f"--untrusted): ALTER ROLE {quote_ident(pg.user)} CREATEROLE, or connect as a role that "
                            "has it")
    if owner:
        member = pg.scalar(f"SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles "
                           f"WHERE rolname = {quote_literal(owner)}")
        if member == "":
            problems.append(f"role {owner} (--owner) does not exist on {pg.host}:{pg.port}: create it first, or "
                            "leave --owner out (the connecting role owns the database)")
        elif member != "t":
            problems.append(f"{who} is not a member of role {owner} (--owner), so it cannot give it the database: "
                            f"GRANT {quote_ident(owner)} TO {quote_ident(pg.user)}")
        else:
            checks.append(f"{who} may hand the database to {owner}")
    if db_exists and replace:
        row = pg.scalar(f"SELECT pg_get_userbyid(datdba) || '|' || "
                        f"CASE WHEN pg_has_role(current_user, datdba, 'MEMBER') THEN 't' ELSE 'f' END "
                        f"FROM pg_database WHERE datname = {quote_literal(db)}")
        db_owner, _, may = row.rpartition("|")
        if may == "t":
            checks.append(f"{who} may rename and drop database {db} (owned by {db_owner})")
        elif row:
            problems.append(f"{who} cannot replace database {db}: it is owned by {db_owner}; connect as {db_owner} "
                            "(PGUSER) or as a member of it")
    return problems, checks


def _uses_sandbox(manifest: mf.Manifest, untrusted: bool) -> bool:
    return untrusted or manifest.dump.format == "plain"


def restore_plan(
    target: Target,
    set_id: str,
    *,
    pg: Pg,
    db: str,
    filestore_root: Path | None = None,
    skip_filestore: bool = False,
    replace: bool = False,
    neutralize: bool | None = False,
    addons_path: list[Path] | None = None,
    odoo_version: str | None = None,
    owner: str | None = None,
    untrusted: bool = False,
    disk_usage: Callable[[Path], Any] = shutil.disk_usage,
) -> dict[str, Any]:
    """What `restore` would do, after the pre-flight a real run makes first; changes nothing.

    The set is found and complete, the server answers with these credentials, the role may do what the
    restore does, the database state (absent, or present and --replace) and the disk are as a real run
    needs them. The set is not re-read (a real run checks every byte as it builds, before the swap), and the leftovers
    of a killed run are not swept. Raises what restore() would: UsageError for a missing set, ServiceError
    (exit 3) for an unreachable server or refused credentials, PreflightError (exit 6) with every problem.
    """
    mf.check_db_name(db)
    manifest = load_manifest(target, set_id)
    checks = [f"set {set_id} is complete in {target.url} ({manifest.dump.format} dump, "
              f"{len(manifest.filestore)} filestore files)"]
    server_version_num = pg.server_version_num()  # the first connection: reachable, credentials accepted
    checks.append(f"PostgreSQL {server_version_num // 10000} at {pg.host}:{pg.port} accepts role {pg.user}")
    exists = pg.database_exists(db)
    problems, notes = preflight(
        manifest, pg, db, filestore_root=filestore_root, skip_filestore=skip_filestore, replace=replace,
        odoo_version=odoo_version, server_version_num=server_version_num, db_exists=exists, disk_usage=disk_usage)
    role_issues, role_checks = role_problems(pg, db, db_exists=exists, replace=replace, owner=owner,
                                             sandbox=_uses_sandbox(manifest, untrusted))
    problems += role_issues
    checks += role_checks
    if problems:
        raise PreflightError(problems, f"restore of {set_id} into {db}")
    if neutralize is not False and addons_path:
        from erpops.backup.neutralize import odoo_addons_files

        odoo_addons_files(addons_path, ())  # a wrong --addons-path is refused as a real run refuses it
    checks.append(f"database {db} exists on {pg.host}:{pg.port}: it is replaced (--replace)" if exists
                  else f"database {db} does not exist on {pg.host}:{pg.port}")
    if neutralize is None:
        neutralize = manifest.odoo_version is not None
    with_fs = bool(manifest.filestore) and not skip_filestore and filestore_root is not None
    return {
        "dry_run": True,
        "action": f"{'replace database' if exists else 'restore into new database'} {db}",
        "set_id": set_id,
        "target": target.url,
        "db": db,
        "replace": exists,
        "neutralize": neutralize,
        "filestore": {"dir": str(filestore_root / db) if with_fs and filestore_root is not None else None,
                      "count": len(manifest.filestore) if with_fs else 0,
                      "bytes": manifest.filestore_bytes if with_fs else 0},
        "checks": checks,
        "notes": notes,
    }


def restore(
    target: Target,
    set_id: str,
    *,
    pg: Pg,
    db: str,
    filestore_root: Path | None = None,
    skip_filestore: bool = False,
    replace: bool = False,
    confirm: Callable[[str], bool] | None = None,
    neutralize: bool | None = False,
    addons_path: list[Path] | None = None,
    allow_unneutralized: tuple[str, ...] = (),
    jobs: int = 2,
    workers: int = fs.DEFAULT_WORKERS,
    odoo_version: str | None = None,
    owner: str | None = None,
    work_dir: Path | None = None,
    reporter: Reporter | None = None,
    disk_usage: Callable[[Path], Any] = shutil.disk_usage,
    untrusted: bool = False,
    on_created: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Restore set_id as database db; returns the restore report. See the module docstring.

    untrusted=True screens the dump and runs it as a sandbox role (erpops.backup.untrusted), as is
    always done for plain SQL dumps.
    on_created(temp_db) is called as soon as the database being built exists (before the dump goes in), and
    on_created(db) again once it is in place (the swap clears the leftover marker of the database it renames).

    neutralize=None neutralizes Odoo databases and leaves any other database as it is.
    addons_path / allow_unneutralized: as erpops.backup.neutralize.neutralize (Odoo's own files;
    modules accepted as not covered). A module not covered fails the restore, rolled back.
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    mf.check_db_name(db)
    manifest = load_manifest(target, set_id)
    markers.sweep(pg, [work_dir], note=reporter.note)  # what a killed run left on this server
    server_version_num = pg.server_version_num()
    exists = pg.database_exists(db)
    problems, notes = preflight(
        manifest, pg, db, filestore_root=filestore_root, skip_filestore=skip_filestore, replace=replace,
        odoo_version=odoo_version, server_version_num=server_version_num, db_exists=exists, disk_usage=disk_usage)
    problems += role_problems(pg, db, db_exists=exists, replace=replace, owner=owner,
                              sandbox=_uses_sandbox(manifest, untrusted))[0]
    if problems:
        raise PreflightError(problems, f"restore of {set_id} into {db}")
    if neutralize is not False and addons_path:
        from erpops.backup.neutralize import odoo_addons_files

        odoo_addons_files(addons_path, ())  # a wrong --addons-path is refused before anything starts
    plan = plan_dump_restore(manifest, jobs, work_dir)
    notes.append(f"database: {plan.note}")
    if neutralize is None:  # auto: every Odoo database, nothing else (there is nothing to neutralize)
        neutralize = manifest.odoo_version is not None
        if not neutralize:
            notes.append("neutralize: skipped, the set is not an Odoo database (no installed base module)")
    for note in notes:
        reporter.note(note)
    if exists and replace and confirm is not None and not confirm(db):
        raise PreflightError([f"replacing database {db} was not confirmed"], f"restore of {set_id} into {db}")

    # No separate verify pass: the dump is checked byte for byte while it loads, and every filestore file as it
    # is written (beside the database, at the same time); any mismatch fails before the swap, rolled back.
    with_fs = bool(manifest.filestore) and not skip_filestore and filestore_root is not None
    timings: dict[str, float] = {}
    rand = secrets.token_hex(3)
    temp_db = side_name(db, "restore", rand)
    old_db = side_name(db, "old", rand)
    fs_dest = filestore_root / db if filestore_root is not None else None
    fs_temp = filestore_root / side_name(db, "restore", rand) if filestore_root is not None else None
    fs_old = filestore_root / side_name(db, "old", rand) if filestore_root is not None else None
    made_root = filestore_root is not None and with_fs and not filestore_root.exists()
    built: list[str] = []
    swapped_db = False
    neutralize_report = None
    stop = threading.Event()
    side = ThreadPoolExecutor(1, thread_name_prefix="erpops-restore-fs")
    fs_future: Future[tuple[float, float]] | None = None
    try:
        if with_fs:
            assert fs_temp is not None and filestore_root is not None
            filestore_root.mkdir(parents=True, exist_ok=True)
            built.append("fs")

            def write_filestore() -> tuple[float, float]:
                began = time.monotonic()
                fs.restore_filestore(target, manifest.filestore, fs_temp, reporter, workers, stop=stop)
                return began, time.monotonic()

            fs_future = side.submit(write_filestore)
        step = time.monotonic()
        built.append("db")
        try:
            screened = restore_dump_into(target, manifest, pg, temp_db, plan, reporter, owner, on_created,
                                                untrusted=untrusted)
        except BaseException:
            stop.set()
            fs_error = fs_future.exception() if fs_future is not None else None
            if isinstance(fs_error, IntegrityError):
                raise fs_error from None  # damage found in the filestore is the first cause
            raise
        counts = row_counts(pg, temp_db)
        mismatched = mf.row_count_problems(manifest.row_counts, counts) if manifest.row_counts else []
        if mismatched:
            raise IntegrityError("restored row counts differ from the manifest: " + "; ".join(mismatched))
        timings["database_seconds"] = round(time.monotonic() - step, 3)
        if neutralize:
            step = time.monotonic()
            reporter.note(f"neutralizing {temp_db}")
            from erpops.backup.neutralize import neutralize as neutralize_db

            neutralize_report = neutralize_db(pg, temp_db, addons_path=addons_path,
                                              allow_unneutralized=allow_unneutralized)
            timings["neutralize_seconds"] = round(time.monotonic() - step, 3)
        if fs_future is not None:
            # Timings add up to the wall time: filestore_seconds is what the filestore still took once the
            # database was ready; filestore_total_seconds its whole run, beside the database.
            waited = time.monotonic()
            fs.wait_interruptibly([fs_future])  # Ctrl-C is acted on while the filestore is still being written
            began, ended = fs_future.result()
            timings["filestore_seconds"] = round(max(0.0, ended - waited), 3)
            timings["filestore_total_seconds"] = round(ended - began, 3)

        # Swap: the database first (one transaction), then the filestore directory.
        if exists:
            _swap_databases(pg, db, temp_db, old_db)
        else:
            # The rename and the end of the leftover marker in one transaction: db is the user's now.
            pg.psql(f"BEGIN;\nALTER DATABASE {quote_ident(temp_db)} RENAME TO {quote_ident(db)};\n"
                    f"{markers.unmark_sql('DATABASE', quote_ident(db))}\nCOMMIT;")
        swapped_db = True
        if on_created is not None:  # the caller's own mark (a drill's scratch database) under the final name
            on_created(db)
        if with_fs:
            assert fs_dest is not None and fs_temp is not None and fs_old is not None
            if fs_dest.exists():
                if any(fs_dest.iterdir()):
                    fs_dest.rename(fs_old)
                else:
                    fs_dest.rmdir()
            fs_temp.rename(fs_dest)
    except BaseException as exc:
        stop.set()
        side.shutdown(wait=True)  # the filestore writer has ended before its directory is removed
        undone = _roll_back(pg, db, temp_db, old_db, exists, swapped_db, built, fs_dest, fs_temp, fs_old)
        if made_root and filestore_root is not None:
            with contextlib.suppress(OSError):
                filestore_root.rmdir()  # only when empty: made by this restore and nothing else in it
        if isinstance(exc, ErpopsError):
            msg = f"restore of {set_id} into {db} failed: {exc}; rolled back: {undone}"
            if isinstance(exc, IntegrityError) and not swapped_db:
                # the class stays (a screened statement is UntrustedDumpError, a bad byte IntegrityError)
                what = "was refused" if isinstance(exc, UntrustedDumpError) else "failed verification"
                raise type(exc)(f"set {set_id} {what}, nothing was changed: {exc}; rolled back: {undone}") from exc
            if isinstance(exc, IntegrityError):
                raise type(exc)(msg) from exc
            raise BackupError(msg) from exc
        exc.add_note(f"restore interrupted; rolled back: {undone}")
        raise
    side.shutdown(wait=True)

    leftovers = []
    if exists:
        try:
            drop_database(pg, old_db)
        except ErpopsError as exc:
            leftovers.append(f"the previous database was kept as {old_db} (drop failed: {exc}); drop it by hand")
    if fs_old is not None and fs_old.exists():
        shutil.rmtree(fs_old, ignore_errors=True)
        if fs_old.exists():
            leftovers.append(f"the previous filestore was kept as {fs_old}; remove it by hand")
    return {
        "ok": True,
        "set_id": set_id,
        "target": target.url,
        "db": db,
        "replaced": exists,
        "neutralized": neutralize,
        "neutralize_report": neutralize_report,
        "row_counts": counts,
        "filestore": {"dir": str(fs_dest) if with_fs else None, "count": len(manifest.filestore) if with_fs else 0,
                      "bytes": manifest.filestore_bytes if with_fs else 0},
        "pg_restore_jobs": plan.jobs,
        "untrusted": screened,
        "notes": notes,
        "leftovers": leftovers,
        "timings": timings,
        "duration_seconds": round(time.monotonic() - started, 3),
    }


def _swap_databases(pg: Pg, db: str, new: str, old: str, attempts: int = 3) -> None:
    """Rename db -> old and new -> db in one transaction, ending the sessions on db first.

    Odoo should be stopped; sessions that still hold db are terminated (a new one can sneak in
    between terminate and rename: retried).
    """
    sql = (
        f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = {quote_literal(db)} AND pid <> pg_backend_pid();\n"
        f"ALTER DATABASE {quote_ident(db)} RENAME TO {quote_ident(old)};\n"
        f"ALTER DATABASE {quote_ident(new)} RENAME TO {quote_ident(db)};\n"
        # db is the user's now; old is ours, to drop (by the next run, should this one be killed first)
        f"{markers.unmark_sql('DATABASE', quote_ident(db))}\n"
        f"{markers.mark_sql('DATABASE', quote_ident(old), 'old')}"
    )
    for attempt in range(1, attempts + 1):
        try:
            pg.psql("BEGIN;\n" + sql + "\nCOMMIT;")
            return
        except ServiceError as exc:
            if "being accessed by other users" not in str(exc) or attempt == attempts:
                raise
            time.sleep(0.5 * attempt)


def _exists_quietly(pg: Pg, db: str) -> bool:
    try:
        return pg.database_exists(db)
    except ErpopsError:
        return False


def _roll_back(
    pg: Pg, db: str, temp_db: str, old_db: str, existed: bool, swapped_db: bool, built: list[str],
    fs_dest: Path | None, fs_temp: Path | None, fs_old: Path | None,
) -> str:
    """Undo whatever the restore did; one sentence saying what, for the error message."""
    done: list[str] = []
    failed: list[str] = []
    if swapped_db:
        try:
            if existed:
                _swap_databases(pg, db, old_db, temp_db)  # db (new) -> temp, old -> db
                done.append(f"put the previous database back as {db}")
            else:
                pg.psql(f"BEGIN;\nALTER DATABASE {quote_ident(db)} RENAME TO {quote_ident(temp_db)};\n"
                        f"{markers.mark_sql('DATABASE', quote_ident(temp_db), 'restore')}\nCOMMIT;")
        except ErpopsError as exc:
            failed.append(f"could not undo the database swap ({exc}): the previous database is {old_db}")
    if fs_old is not None and fs_dest is not None and fs_old.exists() and not fs_dest.exists():
        with contextlib.suppress(OSError):
            fs_old.rename(fs_dest)
            done.append(f"put the previous filestore back in {fs_dest}")
    if "db" in built:
        try:
            drop_database(pg, temp_db)
            done.append(f"dropped the temporary database {temp_db}")
        except ErpopsError as exc:
            failed.append(f"could not drop the temporary database {temp_db} ({exc}): drop it by hand")
    if "fs" in built and fs_temp is not None and fs_temp.exists():
        shutil.rmtree(fs_temp, ignore_errors=True)
        if fs_temp.exists():
            failed.append(f"could not remove the partial filestore {fs_temp}: remove it by hand")
        else:
            done.append(f"removed the partial filestore {fs_temp}")
    if not existed or not swapped_db:
        if existed:
            done.append(f"database {db} was not touched")
        elif _exists_quietly(pg, db):
            done.append(f"database {db} was not created by this restore (another run created it meanwhile, "
                        "and it was left alone)")
        else:
            done.append(f"no database {db} was created")
    return "; ".join(done + failed) or "nothing had been changed"


# ------------------------------------------------------------------------------------------------
# Loading a set's dump into a database (also used by a deep verify)
# ------------------------------------------------------------------------------------------------


@dataclass
class DumpPlan:
    """How the dump is fed to pg_restore: a decompressed temp file for -j N, else a pipe (-j 1)."""

    jobs: int
    work_dir: Path | None
    note: str
    streams: bool = False  # -j N from N streams of the stored dump (erpops.backup.staged): no temp file


def plan_dump_restore(manifest: mf.Manifest, jobs: int, work_dir: Path | None) -> DumpPlan:
    """pg_restore -j N needs a seekable file; the dump is decompressed (once) to work_dir when it has room.

    Without room (uncompressed size + 5% + 64 MiB), or with jobs=1, the dump streams into
    pg_restore's stdin instead: nothing touches the local disk, one job restores.
    """
    dump = manifest.dump
    if dump.format == "plain":
        return DumpPlan(1, None, "plain SQL dump: psql --single-transaction from a stream")
    if jobs <= 1:
        return DumpPlan(1, None, "pg_restore -j 1 from a stream (no temp file)")
    if dump.data_blocks and dump.frames:
        return DumpPlan(jobs, None, f"pg_restore -j {jobs}: {jobs} loaders, each reading the dump itself "
                                    "(no temp file)", streams=True)
    wd = work_dir or Path(tempfile.gettempdir())
    need = int((dump.uncompressed_size or dump.size * 5) * 1.05) + 64 * MiB
    try:
        free = shutil.disk_usage(wd).free
    except OSError:
        free = 0
    if free < need:
        return DumpPlan(1, None, f"pg_restore -j 1 from a stream: {wd} has {human_bytes(free)} free, a -j {jobs} "
                                 f"restore needs the dump decompressed there ({human_bytes(need)})")
    return DumpPlan(jobs, wd, f"pg_restore -j {jobs} from a decompressed temp file in {wd} ({human_bytes(need)})")


def check_stream(target: Target, a: mf.Artifact, stored: HashingReader, raw: HashingReader) -> None:
    if (stored.size, stored.sha256) != (a.size, a.sha256):
        raise IntegrityError(f"{target.child(a.key)} changed: {stored.size} bytes, sha256 {stored.sha256}; the "
                             f"manifest records {a.size} bytes, sha256 {a.sha256}")
    if raw.sha256 is None:
        # A restore: the stored bytes matched their sha256, so what they decompress to is fixed; hashing
        # the decompressed bytes again would only cost CPU.
        if a.uncompressed_size is not None and raw.size != a.uncompressed_size:
            raise IntegrityError(f"{target.child(a.key)} decompresses to {raw.size} bytes; the manifest records "
                                 f"{a.uncompressed_size} bytes")
    elif a.uncompressed_sha256 and (raw.size, raw.sha256) != (a.uncompressed_size, a.uncompressed_sha256):
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
    if plan.streams:
        try:
            with reporter.task("restore", total=a.size) as task:
                _streamed(target, a, db, plan, env, client_argv(db, owner), task.advance)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{target.child(a.key)} does not decompress ({exc}): the bytes are damaged") from exc
        except UsageError as exc:  # get_stream: the object is gone
            raise IntegrityError(f"{target.child(a.key)} is missing ({exc})") from exc
        return None
    err = tempfile.NamedTemporaryFile(prefix="erpops-restore-", suffix=".log", delete=False,  # noqa: SIM115
                                      dir=markers.run_dir())
    # With a temp file the bar covers the decompression; pg_restore -j N runs after it.
    task = reporter.task("decompress" if plan.work_dir is not None else "restore", total=a.size)
    try:
        with task, target.get_stream(a.key) as body:
            stored = HashingReader(body, on_bytes=task.advance)
            raw = HashingReader(zstandard.ZstdDecompressor().stream_reader(stored, read_size=CHUNK, closefd=False),
                                sha256=False)
            argv = client_argv(db, owner)
            tool = "pg_restore"
            if plan.work_dir is not None:
                # Decompressed once into a temp file, checked, then pg_restore -j N (a set from before the manifest
                # recorded the dump's data blocks; measured on 2 cores: faster than streaming with -j 1).
                with tempfile.NamedTemporaryFile(prefix="erpops-dump-", suffix=".pgdump",
                                                 dir=markers.run_dir(plan.work_dir)) as tmp:
                    while data := raw.read(CHUNK):
                        tmp.write(data)
                    tmp.flush()
                    check_stream(target, a, stored, raw)  # every byte, before pg_restore reads any
                    add_data_offsets(Path(tmp.name))  # else each -j worker rescans the file for its tables
                    rc = subprocess.run([*argv, "-j", str(plan.jobs), tmp.name], stdout=subprocess.DEVNULL,
                                        stderr=err, env=env, check=False, preexec_fn=preexec()).returncode
            else:
                rc = _feed(argv, raw, env, err)
                if rc == 0:
                    check_stream(target, a, stored, raw)
        if rc != 0:
            raise BackupError(f"{tool} into {db} failed ({exit_text(rc)}): {log_tail(Path(err.name)) or 'no message'}")
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{target.child(a.key)} does not decompress ({exc}): the bytes are damaged") from exc
    except UsageError as exc:  # get_stream: the object is gone
        raise IntegrityError(f"{target.child(a.key)} is missing ({exc})") from exc
    finally:
        err.close()
        Path(err.name).unlink(missing_ok=True)
    return None


def client_argv(db: str, owner: str | None) -> list[str]:
    argv = [client_bin("pg_restore"), "-w", "--no-owner", "--no-privileges", "--exit-on-error", "-d", db]
    if owner:
        argv.append(f"--role={owner}")
    return argv


def _streamed(target: Target, a: mf.Artifact, db: str, plan: DumpPlan, env: dict[str, str], argv: list[str],
              advance: Callable[[int], None]) -> None:
    """pg_restore -j N with N loaders each reading its part of the stored dump (staged.StreamedRestore)."""

    def open_range(offset: int, length: int) -> contextlib.AbstractContextManager[Any]:
        return target.get_range(a.key, offset, length)

    StreamedRestore(argv, plan.jobs, env, markers.run_dir(), db, open_range, a, target.child(a.key), advance).run()


def _feed(argv: list[str], raw: HashingReader, env: dict[str, str], err: Any) -> int:
    """Run argv with raw's bytes on its stdin; read raw to its end either way, so its sums cover every byte;
    the tool's exit code."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=env,
                            preexec_fn=preexec())
    assert proc.stdin is not None
    pipe: Any = proc.stdin
    try:
        while data := raw.read(CHUNK):
            if pipe is not None:
                try:
                    pipe.write(data)
                except BrokenPipeError:
                    pipe = None  # the tool stopped reading: its exit code and log say why
        if pipe is not None:
            with contextlib.suppress(BrokenPipeError):
                pipe.close()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    return proc.wait()


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
                        raise BackupError(f"pg_restore -f - of {source} failed ({exit_text(rc)}): "
                                          + err.read().decode("utf-8", "replace").strip()[-2000:])
                check_stream(target, a, stored, raw)

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

