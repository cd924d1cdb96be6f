"""Odoo's backup zip, read and written exactly as Odoo's database manager does (16.0-18.0).

Layout (odoo/service/db.py `dump_db` with backup_format='zip', zipped by odoo/tools/osutil.py
`zip_dir`): `dump.sql` first (plain `pg_dump --no-owner`), then `manifest.json` (indent 4), then
`filestore/<xx>/<sha1>` (the attachment files, each named by the sha1 of its bytes). Deflated,
zip64 allowed. A zip written here restores through Odoo's /web/database/restore, and a zip from
Odoo's /web/database/backup imports here.

Import mirrors `restore_db`: the database is created as `_create_empty_database` does
(ENCODING 'unicode' LC_COLLATE 'C' TEMPLATE template0, then CREATE on schema public granted to
PUBLIC as 17.0 does for PostgreSQL 15+), `dump.sql` is fed to psql, the filestore lands in
`<filestore_root>/<db>/`, and with copy=True the database identity is regenerated like
`ir.config_parameter.init(force=True)` (database.uuid, database.secret, database.create_date).
It does not neutralize: call erpops.backup.neutralize.neutralize for that. Unlike Odoo it:

- streams dump.sql from the zip into `psql --single-transaction -v ON_ERROR_STOP=1` (no temp copy,
  and a failing statement leaves nothing half-restored: Odoo ignores statement errors);
- runs the dump under a psql `\\restrict` key of its own, so a crafted dump.sql cannot run psql
  meta-commands such as `\\!` (a shell command) on the machine importing it. The dump's own
  `\\restrict` / `\\unrestrict` lines (pg_dump 15.14+, 16.10+, 17.6+) are replaced by ours;
- checks every filestore file's sha1 against its name while extracting it;
- on any failure drops the database it created and removes the filestore it wrote.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from erpops.backup import leftovers, untrusted
from erpops.backup.neutralize import identity_sql, new_identity
from erpops.errors import ErpopsError, IntegrityError, OperationFailed, PreflightError, ServiceError, UsageError
from erpops.pg import Pg, client_bin, quote_ident

DUMP_NAME = "dump.sql"
MANIFEST_NAME = "manifest.json"
FILESTORE_PREFIX = "filestore/"
MANIFEST_KEYS = ("odoo_dump", "db_name", "version", "version_info", "major_version", "pg_version", "modules")
CHUNK = 1024 * 1024
# A content file of Odoo's filestore: <first two hex digits of the sha1>/<sha1>.
_FILESTORE_FILE = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{40})$")
# Odoo's garbage collector marks candidates in <filestore>/checklist/<xx>/<sha1> (empty files):
# hints, not content. They are skipped on import and export.
_CHECKLIST = "checklist/"
_RESTRICT_LINE = re.compile(rb"^\\(?:un)?restrict [A-Za-z0-9]+\r?\n?$")
# psql learned \restrict in these releases (CVE-2025-8714); older ones cannot guard a dump.
_RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}

FilestoreSource = Iterable[tuple[str, "IO[bytes] | Callable[[], IO[bytes]]"]]


# -- reading ----------------------------------------------------------------------------------------------


def read_manifest(zip_path: Path | str) -> dict[str, Any]:
    """The manifest of an Odoo backup zip, after checking the zip has Odoo's layout (UsageError if not)."""
    with _open_zip(zip_path) as zf:
        return _check_layout(zf, Path(zip_path))[0]


def _open_zip(zip_path: Path | str) -> zipfile.ZipFile:
    path = Path(zip_path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file; give the path of an Odoo backup zip")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise UsageError(
            f"{path} is not a zip file ({exc}); Odoo backups to import are the zip format "
            "(Database Manager > Backup > zip, with filestore)"
        ) from exc


def _check_layout(zf: zipfile.ZipFile, path: Path) -> tuple[dict[str, Any], list[zipfile.ZipInfo], int]:
    """(manifest, filestore content entries, checklist entries skipped); UsageError naming any problem."""
    names = set(zf.namelist())
    missing = [n for n in (DUMP_NAME, MANIFEST_NAME) if n not in names]
    if missing:
        raise UsageError(
            f"{path} is not an Odoo backup zip: no {' and no '.join(missing)} at its root "
            "(Odoo's zip holds dump.sql, manifest.json and filestore/)"
        )
    try:
        manifest = json.loads(zf.read(MANIFEST_NAME).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: manifest.json is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise UsageError(f"{path}: manifest.json is not a JSON object")
    if manifest.get("odoo_dump") != "1":
        raise UsageError(
            f'{path}: manifest.json has odoo_dump={manifest.get("odoo_dump")!r}, Odoo\'s zip format has "1"; '
            "this is not a backup from Odoo's database manager"
        )
    files: list[zipfile.ZipInfo] = []
    skipped = 0
    bad: list[str] = []
    for info in zf.infolist():
        if not info.filename.startswith(FILESTORE_PREFIX) or info.is_dir():
            continue
        rel = info.filename[len(FILESTORE_PREFIX) :]
        if rel.startswith(_CHECKLIST):
            skipped += 1
        elif _FILESTORE_FILE.match(rel) and rel[:2] == rel[3:5]:
            files.append(info)
        else:
            bad.append(info.filename)
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UsageError(f"{path}: filestore entries not named filestore/<xx>/<sha1> as Odoo stores them: {shown}")
    return manifest, files, skipped


# -- import -----------------------------------------------------------------------------------------------


def import_odoo_zip(
    zip_path: Path | str, pg: Pg, db: str, filestore_root: Path | str, *, copy: bool = False,
    owner: str | None = None, dry_run: bool = False,
) -> dict[str, Any]:
    """Restore an Odoo backup zip as database `db` with its filestore in `filestore_root/db`.

    Refuses (UsageError, nothing changed) when the zip is not Odoo's, when `db` exists or when its
    filestore directory exists; PreflightError (exit 6) when the disk is short or the connecting role may
    not create the database and the sandbox role the dump runs as. dry_run=True stops after these
    checks and the screen of the whole dump, having changed nothing (not even the sweep of leftovers).
    copy=True gives the database a new identity as Odoo's "This database is a copy" does. Any failure
    after the database was created drops it and removes the filestore written so far. Returns the
    zip's manifest.
    """
    zip_path, filestore_root = Path(zip_path), Path(filestore_root)
    with _open_zip(zip_path) as zf:
        manifest, files, _ = _check_layout(zf, zip_path)
        target = filestore_root / db
        if pg.database_exists(db):
            raise UsageError(
                f"database {db!r} already exists on {pg.host}:{pg.port}; importing would overwrite it. "
                f"Import under another name, or drop it first (dropdb {db}) if it is disposable"
            )
        if target.exists():
            raise UsageError(
                f"filestore {target} already exists; import under another name, or remove that directory "
                "if it belongs to no database"
            )
        _check_psql_can_restrict()
        if not dry_run:
            leftovers.sweep(pg)
        dump_info = zf.getinfo(DUMP_NAME)
        _check_import_room(pg, zip_path, dump_info, files, filestore_root)
        from erpops.backup.restore import role_problems

        refused = role_problems(pg, db, db_exists=False, replace=False, owner=owner, sandbox=True)[0]
        if refused:
            raise PreflightError(refused, f"import of {zip_path} into {db}")
        # Screen the whole dump before anything is created: a refusal names the line, changes nothing.
        with zf.open(DUMP_NAME) as dump:
            untrusted.Screen(f"{zip_path.name}!{DUMP_NAME}").check(untrusted.bounded_lines(dump, DUMP_NAME))
        if dry_run:
            return manifest
        try:
            filestore_root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{db}.import-", dir=filestore_root))
        except OSError as exc:
            raise OperationFailed(f"cannot write the filestore under {filestore_root} ({exc}); nothing was "
                                  "imported") from exc
        imported = False
        try:
            _extract_filestore(zf, files, staging, zip_path)
            with zf.open(DUMP_NAME) as dump:
                untrusted.execute_untrusted_sql(
                    pg, db, untrusted.bounded_lines(dump, DUMP_NAME), create_database=_create_empty_database,
                    owner=owner, source=f"{zip_path.name}!{DUMP_NAME}")
            imported = True
            if copy:
                _regenerate_identity(pg, db)
            pg.psql(leftovers.unmark_sql("DATABASE", quote_ident(db)))
            staging.rename(target)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if imported:
                _drop_database(pg, db, exc)
            if isinstance(exc, OSError):  # a full disk, a read-only filestore: say so, no traceback
                raise OperationFailed(f"import of {zip_path} into {db!r} failed: {exc}; the partial filestore "
                                      f"was removed{' and the database dropped' if imported else ''}") from exc
            raise
    return manifest


def _check_import_room(pg: Pg, zip_path: Path, dump_info: zipfile.ZipInfo, files: list[zipfile.ZipInfo],
                       filestore_root: Path) -> None:
    """PreflightError (nothing changed) when the filestore or the database cannot fit, as restore checks."""
    from erpops.backup.engine import _h
    from erpops.backup.restore import DISK_MARGIN, PLAIN_DUMP_GROWTH, _data_directory, _existing_parent

    problems = []
    fs_bytes = sum(i.file_size for i in files)
    where = _existing_parent(filestore_root)
    free = shutil.disk_usage(where).free
    if free < fs_bytes + DISK_MARGIN:
        problems.append(f"not enough free disk for the filestore: {_h(fs_bytes + DISK_MARGIN)} needed, {_h(free)} "
                        f"free on {where}: free space or pass another --filestore")
    data_dir = _data_directory(pg)
    if data_dir is not None:
        need = dump_info.file_size * PLAIN_DUMP_GROWTH + DISK_MARGIN
        free = shutil.disk_usage(data_dir).free
        if free < need:
            problems.append(f"not enough free disk for the database: about {_h(need)} needed for a "
                            f"{_h(dump_info.file_size)} dump.sql, {_h(free)} free in {data_dir}")
    if problems:
        raise PreflightError(problems, f"import of {zip_path}")


def _extract_filestore(zf: zipfile.ZipFile, files: list[zipfile.ZipInfo], dest: Path, zip_path: Path) -> None:
    for info in files:
        rel = info.filename[len(FILESTORE_PREFIX) :]
        out = dest / rel
        out.parent.mkdir(exist_ok=True)
        digest = hashlib.sha1(usedforsecurity=False)
        with zf.open(info) as src, open(out, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != rel[3:]:
            raise IntegrityError(
                f"{zip_path}: {info.filename} holds bytes whose sha1 is {digest.hexdigest()}, not its name: "
                "the backup is corrupt; nothing was imported"
            )


def _create_empty_database(pg: Pg, db: str, owner: str | None = None) -> None:
    """As odoo/service/db.py `_create_empty_database` with db_template = template0 (Odoo's default)."""
    from erpops.backup.leftovers import mark_sql

    mark = mark_sql("DATABASE", quote_ident(db), "import")  # cleared once the import is complete
    try:
        pg.create_database(db, owner, same_session=mark)
    except ServiceError as exc:
        raise OperationFailed(f"cannot create database {db!r}: {exc}") from exc


def _drop_database(pg: Pg, db: str, cause: BaseException) -> None:
    try:
        pg.drop_database(db)
    except ServiceError as exc:
        cause.add_note(f"and the half-imported database {db!r} could not be dropped: {exc}; drop it by hand")


def _psql_version() -> tuple[int, int]:
    out = subprocess.run([client_bin("psql"), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if match is None:
        raise ServiceError(f"cannot read the psql version from {out.strip()!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def _check_psql_can_restrict() -> None:
    major, minor = _psql_version()
    since = _RESTRICT_SINCE.get(major)
    if major < 13 or (since is not None and minor < since):
        raise ServiceError(
            f"psql {major}.{minor} cannot fence a dump's meta-commands (\\restrict, added in 15.14, 16.10, 17.6); "
            "install a current postgresql-client (apt-get install postgresql-client-15) or set ERPOPS_PG_BINDIR"
        )


def restricted_lines(dump: Iterable[bytes], key: str) -> Iterator[bytes]:
    """dump.sql's lines (from a binary file or any iterable of lines) under our own `\\restrict key`.

    The dump's own restrict lines are dropped.

    Outside COPY data, a line `\\restrict X` or `\\unrestrict X` is pg_dump's fence with pg_dump's key;
    keeping it would let a crafted dump lift the fence with a key it chose. Inside COPY data (after
    `COPY ... FROM stdin;` up to `\\.`) lines pass untouched: there a leading backslash is data.
    """
    yield f"\\restrict {key}\n".encode()
    in_copy = False
    for line in dump:
        if in_copy:
            if line.rstrip(b"\r\n") == b"\\.":
                in_copy = False
        elif line.startswith(b"\\"):
            if _RESTRICT_LINE.match(line):
                continue
        elif line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            in_copy = True
        yield line
    yield f"\n\\unrestrict {key}\n".encode()


def _regenerate_identity(pg: Pg, db: str) -> None:
    """A copy gets a new uuid, secret and create date, as `ir.config_parameter.init(force=True)`.

    Odoo also resets web.base.url to http://localhost:<http_port> there; erpops leaves it (it does
    not know the port) and the first admin login rewrites it anyway.
    """
    values = new_identity()
    values["database.create_date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    pg.psql("BEGIN;\n" + identity_sql(values) + "\nCOMMIT;", db)


# -- export -----------------------------------------------------------------------------------------------


def odoo_manifest(pg: Pg, db: str, odoo_version: str | None = None) -> dict[str, Any]:
    """The manifest Odoo's `dump_db_manifest` writes for `db`.

    odoo_version is Odoo's release version ("17.0", "17.0+e", "saas~17.2"); by default it is read
    from the installed base module ("17.0.1.3" -> "17.0", "+e" when web_enterprise is installed).
    """
    if not pg.database_exists(db):
        raise UsageError(f"database {db!r} does not exist on {pg.host}:{pg.port}; check the name (psql -l)")
    out = pg.psql("SELECT name, latest_version FROM ir_module_module WHERE state = 'installed' ORDER BY name", db)
    modules = {}
    for line in out.splitlines():
        if "|" in line:
            name, version = line.split("|", 1)
            modules[name] = version or None
    if odoo_version is None:
        base = modules.get("base") or ""
        match = re.match(r"^((?:saas~)?\d+\.\d+)", base)
        if match is None:
            raise UsageError(
                f"cannot tell the Odoo version of {db!r} (base module version {base!r}); pass odoo_version='17.0'"
            )
        odoo_version = match.group(1) + ("+e" if "web_enterprise" in modules else "")
    # Odoo's own arithmetic (server_version / 100, divmod by 100): 150018 -> "15.0", 90624 -> "9.6".
    pg_version = "%d.%d" % divmod(pg.server_version_num() / 100, 100)  # noqa: UP031
    return {
        "odoo_dump": "1",
        "db_name": db,
        "version": odoo_version,
        "version_info": _version_info(odoo_version),
        "major_version": _major_version(odoo_version),
        "pg_version": pg_version,
        "modules": modules,
    }


def _major_version(version: str) -> str:
    match = re.match(r"^(?:saas~)?(\d+\.\d+)", version)
    return match.group(1) if match else version


def _version_info(version: str) -> list[Any]:
    """odoo.release.version_info as JSON: (17, 0, 0, 'final', 0, '') for '17.0', 'e' last for '+e'."""
    match = re.match(r"^(saas~)?(\d+)\.(\d+)", version)
    if match is None:
        return [version]
    major = f"saas~{match.group(2)}" if match.group(1) else int(match.group(2))
    return [major, int(match.group(3)), 0, "final", 0, "e" if version.endswith("+e") else ""]


def iter_filestore(filestore_dir: Path | str) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """(relpath "xx/sha1", opener) for each content file of an Odoo filestore dir, sorted; none if absent."""
    root = Path(filestore_dir)
    if not root.is_dir():
        return
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"[0-9a-f]{2}", p.name)):
        for f in sorted(sub.iterdir()):
            rel = f"{sub.name}/{f.name}"
            if f.is_file() and _FILESTORE_FILE.match(rel):
                yield rel, (lambda f=f: open(f, "rb"))  # noqa: SIM115 - closed by write_odoo_zip


def write_odoo_zip(
    out_path: Path | str, dump_sql_reader: IO[bytes], manifest: dict[str, Any], filestore_files: FilestoreSource
) -> dict[str, Any]:
    """Write an Odoo backup zip at out_path from a dump.sql stream, a manifest and filestore files.

    filestore_files yields (relpath "xx/sha1", reader) where reader is a binary file object or a
    callable opening one (so thousands of files need not be open at once); each is read to EOF,
    checked against its sha1 name (IntegrityError on mismatch) and closed. The zip is written to a
    temp file beside out_path and renamed into place: out_path is never a half zip.
    Returns {path, bytes, dump_bytes, filestore_files, filestore_bytes}.
    """
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing or manifest.get("odoo_dump") != "1":
        raise UsageError(f"manifest lacks Odoo's keys {missing} or odoo_dump != '1': {sorted(manifest)}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".part", dir=out_path.parent)
    tmp = Path(tmp_name)
    stats = {"dump_bytes": 0, "filestore_files": 0, "filestore_bytes": 0}
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
                with zf.open(_entry(DUMP_NAME), "w", force_zip64=True) as dst:
                    while chunk := dump_sql_reader.read(CHUNK):
                        dst.write(chunk)
                        stats["dump_bytes"] += len(chunk)
                zf.writestr(MANIFEST_NAME, json.dumps(manifest, indent=4))
                for rel, source in filestore_files:
                    stats["filestore_bytes"] += _write_filestore_entry(zf, rel, source)
                    stats["filestore_files"] += 1
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"path": str(out_path), "bytes": out_path.stat().st_size, **stats}


def _entry(name: str) -> zipfile.ZipInfo:
    """A deflated member stamped now (a bare name opened for writing would be dated 1980)."""
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _write_filestore_entry(zf: zipfile.ZipFile, rel: str, source: IO[bytes] | Callable[[], IO[bytes]]) -> int:
    if not (_FILESTORE_FILE.match(rel) and rel[:2] == rel[3:5]):
        raise UsageError(f"filestore entry {rel!r} is not named <xx>/<sha1> as Odoo stores files")
    reader = source() if callable(source) else source
    digest = hashlib.sha1(usedforsecurity=False)
    size = 0
    try:
        with zf.open(_entry(FILESTORE_PREFIX + rel), "w", force_zip64=True) as dst:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
    finally:
        reader.close()
    if digest.hexdigest() != rel[3:]:
        raise IntegrityError(
            f"filestore file {rel} holds bytes whose sha1 is {digest.hexdigest()}: the source filestore is "
            "corrupt; no zip was written"
        )
    return size


def export_odoo_zip(
    pg: Pg, db: str, filestore_dir: Path | str, out_path: Path | str, *, odoo_version: str | None = None
) -> dict[str, Any]:
    """Write `db` and its filestore (the dir holding xx/sha1) as an Odoo backup zip at out_path.

    dump.sql is `pg_dump --no-owner` plain SQL streamed straight into the zip; the manifest has
    Odoo's keys. Returns write_odoo_zip's dict plus the manifest.
    """
    manifest = odoo_manifest(pg, db, odoo_version)
    argv = [client_bin("pg_dump"), "--no-owner", "-d", db]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, env=pg.env())
        assert proc.stdout is not None
        try:
            result = _write_checked(out_path, proc, manifest, iter_filestore(filestore_dir), errors, db)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return {**result, "manifest": manifest}


def _write_checked(
    out_path: Path | str,
    proc: subprocess.Popen[bytes],
    manifest: dict[str, Any],
    files: FilestoreSource,
    errors: IO[bytes],
    db: str,
) -> dict[str, Any]:
    """write_odoo_zip, refusing to rename the zip into place unless pg_dump succeeded."""
    assert proc.stdout is not None

    def checked_files() -> Iterator[tuple[str, IO[bytes] | Callable[[], IO[bytes]]]]:
        # dump.sql has been read to EOF before the first filestore file: pg_dump's verdict is in.
        code = proc.wait()
        if code != 0:
            errors.seek(0)
            raise OperationFailed(
                f"pg_dump of {db!r} failed (exit {code}); no zip was written: "
                + errors.read().decode("utf-8", "replace").strip()
            )
        yield from files

    try:
        return write_odoo_zip(out_path, proc.stdout, manifest, checked_files())
    except ErpopsError:
        raise
    except OSError as exc:
        raise OperationFailed(f"writing {out_path} failed: {exc}; no zip was written") from exc
