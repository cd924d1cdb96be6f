"""`erpops backup|verify|restore|list|prune`: click commands over the backup engine.

Registered on the main group from COMMANDS. Every command takes `--json`: one JSON object on
stdout (also on failure: {"ok": false, "error": ..., "error_type": ..., "exit_code": ...}), and
progress as JSON lines on stderr. Exit codes are erpops.errors' (0 ok, 2 usage, 3 service or
credentials, 4 failed and rolled back, 5 integrity, 6 refused by pre-flight).

The target is `--target URL` (s3://bucket/prefix or file:///path), else ERPOPS_BACKUP_TARGET,
else derived from `--stack`: s3://<object_storage.backup_bucket>/<stack>, with the stack's
endpoint and region. The database server comes from libpq's PGHOST/PGPORT/PGUSER/PGPASSWORD.
S3 credentials come from boto3's standard chain (AWS_* variables, profile, instance role).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from erpops.errors import ErpopsError, PreflightError, SpecError, UsageError
from erpops.jsonout import json_errors
from erpops.options import endpoint_url_option, region_option, target_option


def _stack_spec(ctx: click.Context, stack: str | None) -> Any:
    """The validated spec of --stack, or None when there is no stack file to read."""
    if not stack:
        return None
    from erpops import spec

    obj = ctx.find_root().obj
    root = obj.get("root") if isinstance(obj, dict) else None
    try:
        return spec.load(stack, root or spec.find_root()).spec
    except SpecError:
        return None


def project_root(ctx: click.Context) -> Path:
    """The repository root the CLI was started for (--root), else the one found from here."""
    from erpops import spec

    obj = ctx.find_root().obj
    root = obj.get("root") if isinstance(obj, dict) else None
    return root or spec.find_root()


def _target(ctx: click.Context, opts: dict[str, Any], *, writing: bool = False) -> Any:
    from erpops.backup.storage import open_target

    url, endpoint, region = opts["target"], opts["endpoint_url"], opts["region"]
    if not url:
        s = _stack_spec(ctx, opts.get("stack"))
        if s is None:
            raise UsageError("no backup target: pass --target s3://bucket/prefix (or file:///path), set "
                             "ERPOPS_BACKUP_TARGET, or pass --stack naming a Pulumi.<stack>.yaml")
        from erpops.naming import stack_backup_target

        stack_target = stack_backup_target(s, opts["stack"])
        url, endpoint, region = stack_target.url, endpoint or stack_target.endpoint_url, region or stack_target.region
    target = open_target(url, endpoint_url=endpoint, region=region, sse=opts.get("sse"),
                         kms_key_id=opts.get("kms_key_id"), storage_class=opts.get("storage_class"),
                         concurrency=opts.get("concurrency") or 4)
    target.check(create=writing)
    return target


def _tier(ctx: click.Context, stack: str | None) -> str | None:
    if not stack:
        return None
    s = _stack_spec(ctx, stack)
    if s is not None:
        return s.tier
    from erpops import spec

    return spec.infer_tier(stack)


def _reporter(as_json: bool) -> Any:
    from erpops.backup.progress import make_reporter

    return make_reporter(tty=False if as_json else None)


def _emit(as_json: bool, result: dict[str, Any], human: Callable[[dict[str, Any]], None]) -> None:
    if as_json:
        from erpops.jsonout import envelope

        click.echo(json.dumps(envelope(result), indent=2, default=str))
    else:
        human(result)


def target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        target_option(),
        click.option("--stack", "-s", default=None, help="Stack name: default target, set id prefix, tier."),
        endpoint_url_option(),
        region_option(),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _opts(**kw: Any) -> dict[str, Any]:
    return kw


def _echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


def _size(n: int | None) -> str:
    from erpops.backup.progress import human_bytes

    return "-" if n is None else human_bytes(n)


# The helpers the other command modules (interop, rehearse, drill) share, under public names.
cli_target = _target
cli_reporter = _reporter
emit = _emit
target_opts = _opts
echo_lines = _echo_lines
human_size = _size


# ------------------------------------------------------------------------------------------------


@click.command("backup")
@target_options
@click.option("--db", default=None, help="Database to back up (default: the Odoo zip's, with --from-zip).")
@click.option("--filestore", default=None,
              help="Odoo's filestore root (data_dir/filestore, holding <db>/) or s3://bucket/prefix holding <db>/.")
@click.option("--jobs", "-j", default=None, type=click.IntRange(1, 64),
              help="Parallel filestore transfers (and S3 parts in flight: at most 4). Default: 8 where the "
                   "filestore or the target is S3, the cores plus one where both are local.")
@click.option("--neutralized", is_flag=True,
              help="Back up a neutralized copy: copy to a scratch database, neutralize it, dump that, drop it.")
@click.option("--addons-path", "addons_path", multiple=True, metavar="DIRS",
              help="With --neutralized: Odoo's addons directories (comma-separated, as Odoo's); the installed "
                   "modules' own data/neutralize.sql run from there, as odoo-bin neutralize does "
                   "(default: erpops' rules).")
@click.option("--allow-unneutralized", "allow_unneutralized", multiple=True, metavar="MODULE",
              help="With --neutralized: accept this installed module's neutralize file as not covered "
                   "(repeatable); otherwise such a module fails the neutralized backup.")
@click.option("--from-zip", "from_zip", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Store an Odoo database-manager zip as a set instead (no database needed).")
@click.option("--sse", type=click.Choice(["AES256", "aws:kms"]), default=None, help="S3 server-side encryption.")
@click.option("--kms-key-id", default=None, help="KMS key for --sse aws:kms (default: the bucket's).")
@click.option("--storage-class", default=None, help="S3 storage class, e.g. STANDARD_IA.")
@click.option("--dry-run", is_flag=True,
              help="Pre-flight only: check the target exists and is readable, the database exists, the filestore "
                   "folder exists; print the plan; write nothing (exit 6 when a check fails, 3 unreachable).")
@click.pass_context
@json_errors
def backup_cmd(ctx: click.Context, target: str | None, stack: str | None, endpoint_url: str | None,
               region: str | None, as_json: bool, db: str | None, filestore: str | None, jobs: int | None,
               neutralized: bool, addons_path: tuple[str, ...], allow_unneutralized: tuple[str, ...],
               from_zip: Path | None, sse: str | None, kms_key_id: str | None, storage_class: str | None,
               dry_run: bool) -> None:
    """Back up a database and its filestore into a new set (dump + filestore + manifest.json)."""
    from erpops.backup import engine
    from erpops.backup.neutralize import odoo_addons_files, parse_addons_path
    from erpops.pg import Pg

    paths = parse_addons_path(addons_path)
    if (paths or allow_unneutralized) and not neutralized:
        raise UsageError("--addons-path and --allow-unneutralized need --neutralized")
    if paths:
        odoo_addons_files(paths, ())  # a wrong --addons-path is bad input, found before the target is touched

    t = _target(ctx, _opts(target=target, stack=stack, endpoint_url=endpoint_url, region=region, sse=sse,
                           kms_key_id=kms_key_id, storage_class=storage_class, concurrency=min(jobs or 4, 4)),
                writing=not dry_run)
    if dry_run:
        plan = backup_plan(t, Pg.from_env(), db, filestore, neutralized, from_zip)
        _emit(as_json, plan, lambda r: _echo_lines([f"dry run: would {r['action']}", *(
            f"  ok: {c}" for c in r["checks"])]))
        return
    reporter = _reporter(as_json)
    if from_zip is not None:
        if neutralized or filestore:
            raise UsageError("--from-zip stores the zip as it is: --neutralized and --filestore do not apply")
        result = engine.import_odoo_zip(t, from_zip, stack=stack or "adhoc", db=db,
                                         workers=jobs or engine.DEFAULT_WORKERS, reporter=reporter)
    else:
        if not db:
            raise UsageError("--db is required (the database to back up)")
        result = engine.backup(t, Pg.from_env(), db, stack=stack or "adhoc", filestore=filestore,
                               filestore_endpoint_url=endpoint_url, filestore_region=region, neutralized=neutralized,
                               addons_path=paths or None, allow_unneutralized=allow_unneutralized, workers=jobs,
                               reporter=reporter)

    def human(r: dict[str, Any]) -> None:
        dump = r["artifacts"][0]
        fs = r["filestore"]
        _echo_lines([
            f"set {r['set_id']} complete in {r['target']}",
            f"  dump: {_size(dump['uncompressed_size'])} -> {_size(dump['size'])} zstd, sha256 {dump['sha256']}",
            f"  filestore: {fs['count']} files, {_size(fs['bytes'])} ({fs['uploaded']} uploaded, "
            f"{fs['skipped_existing']} already stored)",
            f"  neutralized: {'yes' if r['neutralized'] else 'no'}; {r['duration_seconds']:.1f} s",
        ] + ([f"  NOT neutralized, accepted: {', '.join(accepted)} (--allow-unneutralized)"]
             if (accepted := (r.get("neutralize_report") or {}).get("uncovered_allowed")) else []))

    _emit(as_json, result, human)


def backup_plan(t: Any, pg: Any, db: str | None, filestore: str | None, neutralized: bool,
                from_zip: Path | None) -> dict[str, Any]:
    """What `erpops backup` would do, after checking what it needs exists; writes nothing.

    The target was checked by _target (readable; a missing bucket is exit 2 there). Raises
    PreflightError (exit 6) naming every missing piece, ServiceError (exit 3) when PostgreSQL is unreachable.
    """
    checks = [f"target {t.url} exists and is readable"]
    problems: list[str] = []
    if from_zip is not None:
        checks.append(f"zip {from_zip} exists")
        return {"dry_run": True, "action": f"store {from_zip} as a new set in {t.url}", "target": t.url,
                "db": db, "from_zip": str(from_zip), "checks": checks}
    if not db:
        raise UsageError("--db is required (the database to back up)")
    if pg.database_exists(db):
        checks.append(f"database {db} exists on {pg.host}:{pg.port}")
    else:
        problems.append(f"database {db} does not exist on {pg.host}:{pg.port}: check --db (PGHOST/PGPORT for the "
                        "server)")
    if filestore and not filestore.startswith("s3://"):
        folder = Path(filestore) / db
        if folder.is_dir():
            checks.append(f"filestore folder {folder} exists")
        else:
            problems.append(f"filestore folder {folder} does not exist: --filestore is Odoo's data_dir/filestore, "
                            "which holds one folder per database")
    if problems:
        raise PreflightError(problems, f"backup of {db}")
    copy = "a neutralized copy of " if neutralized else ""
    return {"dry_run": True, "action": f"back up {copy}{db} into a new set in {t.url}", "target": t.url, "db": db,
            "filestore": filestore, "neutralized": neutralized, "checks": checks}


@click.command("verify")
@target_options
@click.argument("set_id")
@click.option("--deep", is_flag=True, help="Also restore into a scratch database and compare row counts.")
@click.option("--jobs", "-j", default=2, show_default=True, type=click.IntRange(1, 64),
              help="pg_restore jobs for --deep.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where --deep may decompress the dump of an older set for pg_restore -j (default: $TMPDIR).")
@click.pass_context
@json_errors
def verify_cmd(ctx: click.Context, target: str | None, stack: str | None, endpoint_url: str | None,
               region: str | None, as_json: bool, set_id: str, deep: bool, jobs: int, work_dir: Path | None) -> None:
    """Re-read a set and check every artifact and filestore file; write verify.json (exit 5 if damaged)."""
    from erpops.backup import engine
    from erpops.errors import IntegrityError
    from erpops.pg import Pg

    t = _target(ctx, _opts(target=target, stack=stack, endpoint_url=endpoint_url, region=region))
    report = engine.verify(t, set_id, deep=deep, pg=Pg.from_env() if deep else None, jobs=jobs, work_dir=work_dir,
                           reporter=_reporter(as_json))

    def human(r: dict[str, Any]) -> None:
        c = r["checked"]
        state = "ok" if r["ok"] else "FAILED"
        _echo_lines([f"{r['set_id']}: {state} ({c['artifacts']} artifact(s), {c['filestore_files']} filestore files, "
                     f"{_size(c['bytes'])}{', deep' if r['deep'] else ''})"] + [f"  - {p}" for p in r["problems"]])

    _emit(as_json, report, human)
    if not report["ok"]:
        failed = IntegrityError(f"set {set_id} failed verification: {len(report['problems'])} problem(s)")
        failed.json_printed = True  # type: ignore[attr-defined] - the report above is the JSON answer
        raise failed


@click.command("restore")
@target_options
@click.argument("set_id")
@click.option("--to", "db", required=True, help="Database to restore into (must not exist unless --replace).")
@click.option("--filestore", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Odoo's filestore root (data_dir/filestore); files go to <root>/<db>/.")
@click.option("--skip-filestore", is_flag=True, help="Restore the database only.")
@click.option("--replace", is_flag=True, help="Replace an existing database (kept until the new one is complete).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask to confirm --replace (automation).")
@click.option("--neutralize/--no-neutralize", default=None,
              help="Neutralize the restored copy (default: on for Odoo databases, unless the --stack tier is prod).")
@click.option("--addons-path", "addons_path", multiple=True, metavar="DIRS",
              help="Odoo's addons directories (comma-separated, as Odoo's): run the installed modules' own "
                   "data/neutralize.sql from there, as odoo-bin neutralize does (default: erpops' rules).")
@click.option("--allow-unneutralized", "allow_unneutralized", multiple=True, metavar="MODULE",
              help="Accept this installed module's neutralize file as not covered (repeatable); "
                   "otherwise such a module fails the neutralized restore.")
@click.option("--odoo-version", default=None, help="Odoo version of the target image, e.g. 17.0: majors must match.")
@click.option("--owner", default=None, help="Role to own the database and its objects (default: the connecting user).")
@click.option("--jobs", "-j", default=2, show_default=True, type=click.IntRange(1, 64), help="pg_restore jobs.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the dump of an older set (no frames in its manifest) is decompressed for "
                   "pg_restore -j (default: $TMPDIR; too small: -j 1 stream).")
@click.option("--untrusted", is_flag=True,
              help="The dump comes from a source you do not trust: screen it and run it as a fresh role without "
                   "rights (always done for plain SQL dumps from Odoo zips).")
@click.option("--dry-run", is_flag=True,
              help="Pre-flight only: the set is complete, the server answers with these credentials, the role may "
                   "create (and replace) the database, the database state and the disk are right; print the plan; "
                   "change nothing (exit 6 when a check fails, 3 unreachable or credentials refused).")
@click.pass_context
@json_errors
def restore_cmd(ctx: click.Context, target: str | None, stack: str | None, endpoint_url: str | None,
                region: str | None, as_json: bool, set_id: str, db: str, filestore: Path | None,
                skip_filestore: bool, replace: bool, yes: bool, neutralize: bool | None,
                addons_path: tuple[str, ...], allow_unneutralized: tuple[str, ...], odoo_version: str | None,
                owner: str | None, jobs: int, work_dir: Path | None, untrusted: bool, dry_run: bool) -> None:
    """Restore a set into a NEW database (or --replace one), after pre-flight checks and a verify."""
    from erpops.backup.neutralize import parse_addons_path
    from erpops.backup.restore import restore, restore_plan
    from erpops.pg import Pg

    t = _target(ctx, _opts(target=target, stack=stack, endpoint_url=endpoint_url, region=region))
    if neutralize is None and _tier(ctx, stack) == "prod":
        neutralize = False  # else None: the library neutralizes Odoo databases, leaves others alone
    if dry_run:
        plan = restore_plan(t, set_id, pg=Pg.from_env(), db=db, filestore_root=filestore,
                            skip_filestore=skip_filestore, replace=replace, neutralize=neutralize,
                            addons_path=parse_addons_path(addons_path) or None, odoo_version=odoo_version,
                            owner=owner, untrusted=untrusted)
        _emit(as_json, plan, lambda r: _echo_lines([f"dry run: would {r['action']} from set {r['set_id']}", *(
            f"  ok: {c}" for c in r["checks"]), *(f"  note: {n}" for n in r["notes"])]))
        return

    def confirm(name: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise PreflightError([f"replacing database {name} needs confirmation: pass --yes when not interactive"],
                                 f"restore of {set_id} into {name}")
        typed = click.prompt(f"This replaces database {name!r}. Type its name to confirm", err=True, default="",
                             show_default=False)
        return bool(typed == name)

    result = restore(t, set_id, pg=Pg.from_env(), db=db, filestore_root=filestore, skip_filestore=skip_filestore,
                     replace=replace, confirm=confirm, neutralize=neutralize, jobs=jobs, odoo_version=odoo_version,
                     addons_path=parse_addons_path(addons_path) or None, allow_unneutralized=allow_unneutralized,
                     owner=owner, work_dir=work_dir, reporter=_reporter(as_json), untrusted=untrusted)

    def human(r: dict[str, Any]) -> None:
        fs = r["filestore"]
        lines = [f"restored {r['set_id']} as {r['db']}{' (replaced)' if r['replaced'] else ''} in "
                 f"{r['duration_seconds']:.1f} s",
                 f"  filestore: {fs['count']} files in {fs['dir']}" if fs["dir"] else "  filestore: not restored",
                 f"  neutralized: {'yes' if r['neutralized'] else 'NO'}"]
        nr = r.get("neutralize_report") or {}
        if nr.get("uncovered_allowed"):
            lines.append(f"  NOT neutralized, accepted: {', '.join(nr['uncovered_allowed'])} (--allow-unneutralized)")
        lines += [f"  note: {n}" for n in r["leftovers"]]
        _echo_lines(lines)

    _emit(as_json, result, human)


@click.command("list")
@target_options
@click.option("--db", default=None, help="Only sets of this database.")
@click.pass_context
@json_errors
def list_cmd(ctx: click.Context, target: str | None, stack: str | None, endpoint_url: str | None,
             region: str | None, as_json: bool, db: str | None) -> None:
    """List complete (restorable) sets, newest first, with verified status and age."""
    from erpops.backup import engine

    t = _target(ctx, _opts(target=target, stack=stack, endpoint_url=endpoint_url, region=region))
    sets = engine.list_sets(t, db=db)
    result = {"ok": True, "target": t.url, "sets": sets}

    def human(r: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"sets in {r['target']}", title_justify="left")
        for col in ("set id", "db", "age", "dump", "filestore", "verified"):
            table.add_column(col)
        for s in r["sets"]:
            if "error" in s:
                table.add_row(s["set_id"], "?", "?", "?", "?", "unreadable manifest")
                continue
            verified = {None: "never", True: "ok", False: "FAILED"}[s["verified"]]
            if s["verified"] is not None:
                verified += f" {s['verified_at']}{' deep' if s['verified_deep'] else ''}"
            age = f"{s['age_hours']:.1f} h" if s["age_hours"] < 48 else f"{s['age_hours'] / 24:.1f} d"
            table.add_row(s["set_id"], s["db"], age, _size(s["dump_bytes"]),
                          f"{s['filestore_files']} / {_size(s['filestore_bytes'])}", verified)
        Console(width=None if sys.stdout.isatty() else 200).print(table)

    _emit(as_json, result, human)


@click.command("prune")
@target_options
@click.option("--daily", type=click.IntRange(1), default=None, help="Days to keep (default: the stack's, else 7).")
@click.option("--weekly", type=click.IntRange(0), default=None, help="ISO weeks to keep (default: stack's, else 4).")
@click.option("--monthly", type=click.IntRange(0), default=None, help="Months to keep (default: stack's, else 0).")
@click.option("--apply", is_flag=True, help="Delete for real (default: show what would be deleted).")
@click.pass_context
@json_errors
def prune_cmd(ctx: click.Context, target: str | None, stack: str | None, endpoint_url: str | None,
              region: str | None, as_json: bool, daily: int | None, weekly: int | None, monthly: int | None,
              apply: bool) -> None:
    """Delete sets outside the retention (GFS); never the newest verified set. Dry run unless --apply."""
    from erpops.backup import retention

    t = _target(ctx, _opts(target=target, stack=stack, endpoint_url=endpoint_url, region=region))
    s = _stack_spec(ctx, stack)
    base = s.backup.retention if s is not None else retention.Rules()
    rules = retention.Rules(daily=daily if daily is not None else base.daily,
                            weekly=weekly if weekly is not None else base.weekly,
                            monthly=monthly if monthly is not None else base.monthly)
    result = {"ok": True, **retention.prune(t, rules, apply=apply, reporter=_reporter(as_json))}
    result["server_leftovers"] = _server_leftovers()

    def human(r: dict[str, Any]) -> None:
        verb = "deleted" if r["apply"] else "would delete"
        lines = [f"{r['target']}: keep {len(r['keep'])}, {verb} {len(r['delete'])} set(s) "
                 f"(daily {r['rules']['daily']}, weekly {r['rules']['weekly']}, monthly {r['rules']['monthly']})"]
        lines += [f"  keep   {k['set_id']}  ({', '.join(k['reasons'])})" for k in r["keep"]]
        lines += [f"  delete {d['set_id']}" for d in r["delete"]]
        lines += [f"  delete incomplete {i} (its backup is {r['dead_backups'].get(i, 'stale')})"
                  for i in r["incomplete_delete"]]
        lines += [f"  in progress {i} (a live backup: its uploads are kept)" for i in r["in_progress"]]
        for item in r["server_leftovers"] or []:
            lines.append(f"  leftover on the PostgreSQL server: {item['describe']}")
        lines.append(f"  filestore: {verb} {r['filestore_delete']} unreferenced objects "
                     f"({_size(r['filestore_bytes_freed'])}); {r['filestore_gc']}")
        if not r["apply"]:
            lines.append("dry run: pass --apply to delete")
        _echo_lines(lines)

    _emit(as_json, result, human)


def _server_leftovers() -> list[dict[str, Any]] | None:
    """What killed erpops runs left on the PGHOST server (erpops.backup.leftovers), when PGHOST is set.

    Reported only: any backup, restore or import against that server removes the dead ones.
    """
    import os

    from erpops.backup import leftovers
    from erpops.pg import Pg

    if not os.environ.get("PGHOST"):
        return None
    try:
        found = leftovers.find(Pg.from_env())
    except ErpopsError:
        return None
    return [{**x.to_dict(), "describe": x.describe()} for x in found if x.state != "live"]


COMMANDS = [backup_cmd, verify_cmd, restore_cmd, list_cmd, prune_cmd]
