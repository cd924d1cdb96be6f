"""`erpops import odoo-zip`, `erpops export odoo-zip` and `erpops rehearse`: Odoo's zip format in and out.

Registered on the main group from COMMANDS, with commands.py's conventions: `--json` prints one
JSON object on stdout (also on failure), progress goes to stderr, exit codes are erpops.errors'.

- `import odoo-zip FILE --to DB`: an Odoo database-manager zip becomes a new database and its
  filestore (erpops.backup.odoozip.import_odoo_zip). To keep a zip as a backup set instead, use
  `erpops backup --from-zip FILE`.
- `export odoo-zip SET --out FILE`: a stored set becomes the zip Odoo's database manager restores,
  without restoring the set anywhere: the dump is decompressed (and, for pg_dump's custom format,
  turned into plain SQL by `pg_restore --no-owner -f -`), the filestore objects are streamed from
  the target and each is checked against the manifest's sha256 and size on the way. The zip is
  written beside --out and renamed into place: a failure leaves no zip, not even a partial one.
  `export odoo-zip --db DB --filestore ROOT --out FILE` exports a live database instead.
- `rehearse`: see erpops.backup.rehearse.

The set export lives here rather than in odoozip.py because it joins the two halves (a set on a
target, Odoo's zip writer) and nothing else needs it.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import click

from erpops.backup.commands import (
    cli_reporter as _reporter,
)
from erpops.backup.commands import (
    cli_target as _target,
)
from erpops.backup.commands import (
    echo_lines as _echo_lines,
)
from erpops.backup.commands import (
    emit as _emit,
)
from erpops.backup.commands import (
    human_size as _size,
)
from erpops.backup.commands import (
    json_errors,
    target_options,
)
from erpops.backup.commands import (
    target_opts as _opts,
)
from erpops.backup.restore import check_stream
from erpops.errors import IntegrityError, OperationFailed, UsageError

# Odoo's default data_dir for a user install (odoo/tools/config.py: appdirs user_data_dir).
ODOO_FILESTORE = Path("~/.local/share/Odoo/filestore").expanduser()


# ------------------------------------------------------------------------------------------------
# Export of a stored set (library)
# ------------------------------------------------------------------------------------------------


class _CheckedObject:
    """A filestore object read from the target, checked against the manifest's sha256 and size at EOF."""

    def __init__(self, target: Any, set_id: str, f: Any, on_bytes: Callable[[int], None] | None) -> None:
        from erpops.backup.storage import HashingReader

        self._target, self._set_id, self._f = target, set_id, f
        self._stack = contextlib.ExitStack()
        from erpops.backup.filestore import open_file

        try:
            body = self._stack.enter_context(open_file(target, f))
        except UsageError as exc:
            self._stack.close()
            raise IntegrityError(f"{target.child(f.key)} is missing (filestore file {f.path}): the set is damaged; "
                                 "no zip was written") from exc
        self._reader = HashingReader(body, on_bytes=on_bytes)

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        if not data:
            r, f = self._reader, self._f
            if (r.size, r.sha256) != (f.size, f.sha256):
                raise IntegrityError(
                    f"{self._target.child(f.key)} is damaged: {r.size} bytes, sha256 {r.sha256}; the manifest "
                    f"records {f.size} bytes, sha256 {f.sha256} (file {f.path}); no zip was written. "
                    f"`erpops verify {self._set_id}` lists every damaged object")
        return data

    def close(self) -> None:
        self._stack.close()


def export_set_zip(
    target: Any, set_id: str, out: Path, *, work_dir: Path | None = None, reporter: Any = None,
) -> dict[str, Any]:
    """Write set_id of target as an Odoo backup zip at out; returns write_odoo_zip's dict plus set facts.

    Raises IntegrityError (nothing written) when a stored byte does not match the manifest.
    """
    import zstandard

    from erpops.backup import engine
    from erpops.backup.odoozip import MANIFEST_KEYS, write_odoo_zip
    from erpops.backup.progress import Reporter
    from erpops.backup.storage import CHUNK, HashingReader
    from erpops.pg import client_bin

    reporter = reporter or Reporter()
    manifest = engine.load_manifest(target, set_id)
    odoo = {k: v for k, v in manifest.odoo.items() if k != "erpops"}
    missing = [k for k in MANIFEST_KEYS if k not in odoo]
    if missing:
        raise UsageError(f"set {set_id} records no Odoo manifest keys {missing}: it is not an Odoo database, "
                         "Odoo's database manager could not restore it")
    odoo["db_name"] = manifest.db_name or odoo.get("db_name")
    a = manifest.dump
    fs_tasks: list[Any] = []

    with contextlib.ExitStack() as stack:
        dump_task = stack.enter_context(reporter.task("export dump", total=a.size))
        try:
            body = stack.enter_context(target.get_stream(a.key))
        except UsageError as exc:  # as verify says it: a set whose dump is gone is damaged (exit 5)
            raise IntegrityError(f"{target.child(a.key)} is missing: the set is damaged; no zip was written. "
                                 f"`erpops verify {set_id}` lists every damaged object") from exc
        stored = HashingReader(body, on_bytes=dump_task.advance)
        raw: Any = stored
        if a.compression == "zstd":
            raw = HashingReader(zstandard.ZstdDecompressor().stream_reader(stored, read_size=CHUNK, closefd=False))
        dump_reader: IO[bytes] | Any = raw
        proc: subprocess.Popen[bytes] | None = None
        errors = stack.enter_context(tempfile.TemporaryFile())
        if a.format == "custom":
            # pg_restore turns the custom format into plain SQL; it wants a file it can read in its own order.
            from erpops.backup.leftovers import preexec, run_dir

            tmp = stack.enter_context(tempfile.NamedTemporaryFile(prefix="erpops-export-", suffix=".pgdump",
                                                                  dir=run_dir(work_dir)))
            try:
                while data := raw.read(CHUNK):
                    tmp.write(data)
            except zstandard.ZstdError as exc:
                raise IntegrityError(f"{target.child(a.key)} does not decompress ({exc}): the set is damaged; "
                                     "no zip was written") from exc
            tmp.flush()
            check_stream(target, a, stored, raw)
            proc = subprocess.Popen([client_bin("pg_restore"), "--no-owner", "-f", "-", tmp.name],
                                    stdout=subprocess.PIPE, stderr=errors, preexec_fn=preexec())
            stack.callback(_reap, proc)
            assert proc.stdout is not None
            dump_reader = proc.stdout

        def files() -> Iterator[tuple[str, Callable[[], Any]]]:
            # dump.sql has been read to EOF before the first filestore file: the dump's verdict is in.
            if proc is not None:
                code = proc.wait()
                if code != 0:
                    errors.seek(0)
                    raise OperationFailed(f"pg_restore -f - of {target.child(a.key)} failed (exit {code}); no zip "
                                          "was written: " + errors.read().decode("utf-8", "replace").strip()[-2000:])
            else:
                check_stream(target, a, stored, raw)
            dump_task.close()
            task = reporter.task("export filestore", total=manifest.filestore_bytes)
            fs_tasks.append(task)
            for f in manifest.filestore:
                yield f.path, (lambda f=f: _CheckedObject(target, set_id, f, task.advance))

        try:
            result = write_odoo_zip(out, dump_reader, odoo, files())
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{target.child(a.key)} does not decompress ({exc}): the set is damaged; "
                                 "no zip was written") from exc
        except OSError as exc:
            raise OperationFailed(f"writing {out} failed: {exc}; no zip was written") from exc
        finally:
            for task in fs_tasks:
                task.close()
    return {"ok": True, "set_id": set_id, "target": target.url, "db": manifest.db_name,
            "odoo_version": manifest.odoo_version, "dump_format": a.format, **result}


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------


@click.group("import")
def import_group() -> None:
    """Bring databases in from other formats (to store a zip as a backup set: `erpops backup --from-zip`)."""


@import_group.command("odoo-zip")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "db", required=True, help="New database to create (refused if it exists).")
@click.option("--filestore", type=click.Path(file_okay=False, path_type=Path), default=ODOO_FILESTORE,
              show_default=True, help="Odoo's filestore root (data_dir/filestore); files go to <root>/<db>/.")
@click.option("--copy", is_flag=True,
              help="Give the database a new identity (uuid, secret), as Odoo's 'This database is a copy'.")
@click.option("--neutralize", is_flag=True,
              help="Neutralize the copy, as Odoo's restore 'Neutralize' box: it comes out neutralized or not at all.")
@click.option("--addons-path", "addons_path", multiple=True, metavar="DIRS",
              help="With --neutralize: Odoo's addons directories, to run the modules' own neutralize.sql.")
@click.option("--allow-unneutralized", "allow_unneutralized", multiple=True, metavar="MODULE",
              help="With --neutralize: accept this module's neutralize file as not covered (repeatable).")
@click.option("--dry-run", is_flag=True,
              help="Pre-flight only: the zip is Odoo's, the database and its filestore folder are absent, the disk has "
                   "room, the role may create the database and the sandbox role, the whole dump passes the screen; "
                   "print the plan, change nothing (exit 6 when a check fails, 5 a refused statement, 3 unreachable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@json_errors
def import_odoo_zip_cmd(file: Path, db: str, filestore: Path, copy: bool, neutralize: bool,
                        addons_path: tuple[str, ...], allow_unneutralized: tuple[str, ...], dry_run: bool,
                        as_json: bool) -> None:
    """Restore an Odoo database-manager zip (dump.sql, manifest.json, filestore/) as a NEW database.

    Without --neutralize the copy can still send mail and run crons once Odoo starts on it.
    To keep the zip as a backup set instead: `erpops backup --from-zip FILE`.
    """
    import time

    from erpops.backup import manifest as mf
    from erpops.backup.neutralize import neutralize_or_drop, odoo_addons_files, parse_addons_path
    from erpops.backup.odoozip import import_odoo_zip
    from erpops.pg import Pg

    mf.check_db_name(db)
    paths = parse_addons_path(addons_path)
    if (paths or allow_unneutralized) and not neutralize:
        raise UsageError("--addons-path and --allow-unneutralized need --neutralize")
    if paths:
        odoo_addons_files(paths, ())  # refused before anything is imported
    started = time.monotonic()
    pg = Pg.from_env()
    if dry_run:
        manifest = import_odoo_zip(file, pg, db, filestore, copy=copy, dry_run=True)
        plan = {"dry_run": True, "action": f"import {file} as new database {db}", "db": db, "file": str(file),
                "filestore": {"dir": str(filestore / db)}, "copy": copy, "neutralize": neutralize,
                "odoo_version": manifest.get("version"), "source_db": manifest.get("db_name"),
                "checks": [f"{file} is an Odoo backup zip (Odoo {manifest.get('version')})",
                           f"database {db} and filestore {filestore / db} do not exist on {pg.host}:{pg.port}",
                           "disk room for the database and the filestore",
                           f"role {pg.user} may create the database and the sandbox role",
                           "the whole dump passes the screen"]}
        _emit(as_json, plan, lambda r: _echo_lines([f"dry run: would {r['action']}",
                                                   *(f"  ok: {c}" for c in r["checks"])]))
        return
    manifest = import_odoo_zip(file, pg, db, filestore, copy=copy)
    fs_dir = filestore / db
    report = neutralize_or_drop(pg, db, fs_dir, addons_path=paths or None,
                                allow_unneutralized=allow_unneutralized) if neutralize else None
    count = sum(1 for p in fs_dir.glob("*/*") if p.is_file()) if fs_dir.is_dir() else 0
    result = {"ok": True, "db": db, "file": str(file), "filestore": {"dir": str(fs_dir), "count": count},
              "copy": copy, "neutralized": neutralize, "neutralize_report": report,
              "odoo_version": manifest.get("version"), "source_db": manifest.get("db_name"),
              "modules": len(manifest.get("modules") or {}), "pg_version": manifest.get("pg_version"),
              "duration_seconds": round(time.monotonic() - started, 3)}

    def human(r: dict[str, Any]) -> None:
        _echo_lines([f"imported {r['file']} as database {r['db']} (Odoo {r['odoo_version']}, {r['modules']} modules) "
                     f"in {r['duration_seconds']:.1f} s",
                     f"  filestore: {r['filestore']['count']} files in {r['filestore']['dir']}",
                     "  identity: " + ("new (a copy)" if r["copy"] or r["neutralized"]
                                       else "kept (same uuid and secret as the source)"),
                     "  neutralized: yes" + (f" (accepted as not covered: {', '.join(report['uncovered_allowed'])})"
                                             if report and report["uncovered_allowed"] else "")
                     if r["neutralized"] else
                     "  not neutralized: it can still send mail and run crons once Odoo starts on it"])

    _emit(as_json, result, human)


@click.group("export")
def export_group() -> None:
    """Write databases or backup sets out in other formats."""


@export_group.command("odoo-zip")
@target_options
@click.argument("set_id", required=False)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The zip to write (written beside, then renamed: never a partial zip).")
@click.option("--db", default=None, help="Export this live database instead of a set (needs --filestore).")
@click.option("--filestore", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --db: Odoo's filestore root (data_dir/filestore) holding <db>/.")
@click.option("--odoo-version", default=None, help="With --db: Odoo's version for the manifest (default: base's).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where a custom-format dump is decompressed for pg_restore (default: $TMPDIR).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.pass_context
@json_errors
def export_odoo_zip_cmd(ctx: click.Context, target: str | None, stack: str | None, endpoint_url: str | None,
                        region: str | None, as_json: bool, set_id: str | None, out: Path, db: str | None,
                        filestore: Path | None, odoo_version: str | None, work_dir: Path | None, force: bool) -> None:
    """Write a stored set (SET_ID) or a live database (--db) as the zip Odoo's database manager restores.

    A set is exported without restoring it: its dump streams from the target (custom format is
    turned into plain SQL by pg_restore), each filestore file is checked against the manifest as
    it is copied, and a damaged set fails with exit 5, leaving no zip.
    """
    if out.exists() and not force:
        raise UsageError(f"{out} already exists: pass --force to overwrite it, or another --out")
    if db:
        if set_id:
            raise UsageError("give a SET_ID or --db, not both")
        if filestore is None:
            raise UsageError("--db needs --filestore <Odoo data_dir>/filestore (the zip carries the filestore)")
        from erpops.backup.odoozip import export_odoo_zip
        from erpops.pg import Pg

        written = export_odoo_zip(Pg.from_env(), db, filestore / db, out, odoo_version=odoo_version)
        manifest = written.pop("manifest")
        result = {"ok": True, "source": "database", "db": db, "odoo_version": manifest["version"], **written}
    else:
        if not set_id:
            raise UsageError("give the SET_ID to export (see `erpops list`), or --db DB --filestore ROOT")
        if filestore or odoo_version:
            raise UsageError("--filestore and --odoo-version apply to --db only: a set carries both")
        t = _target(ctx, _opts(target=target, stack=stack, endpoint_url=endpoint_url, region=region))
        result = {"source": "set", **export_set_zip(t, set_id, out, work_dir=work_dir, reporter=_reporter(as_json))}

    def human(r: dict[str, Any]) -> None:
        what = f"set {r['set_id']}" if r["source"] == "set" else f"database {r['db']}"
        _echo_lines([f"wrote {r['path']} ({_size(r['bytes'])}) from {what}",
                     f"  dump.sql: {_size(r['dump_bytes'])}; filestore: {r['filestore_files']} files, "
                     f"{_size(r['filestore_bytes'])}",
                     "  restore it with Odoo's database manager (/web/database/manager) or `erpops import odoo-zip`"])

    _emit(as_json, result, human)


def _rehearse_cmd() -> click.Command:
    from erpops.backup.rehearse import rehearse_cmd

    return rehearse_cmd


COMMANDS: list[click.Command] = [import_group, export_group, _rehearse_cmd()]

__all__ = ["COMMANDS", "export_set_zip"]
