"""`erpops rehearse --from prod --to staging`: prove the newest verified backup restores, and how fast.

A rehearsal takes the newest *verified* complete set of the --from stack (`erpops verify` writes
the verdict a set is chosen on), restores it into a NEW database on the --to environment's
PostgreSQL server (libpq's PGHOST/PGPORT/PGUSER/PGPASSWORD), neutralized, with its filestore,
then checks the copy and measures the objectives of the --from stack's spec:

- RPO (`backup.rpo_minutes`): the age of the set when the restore started. Missed when older:
  that much production work would be lost if production died at that moment.
- RTO (`backup.rto_minutes`): the wall time of the whole rehearsal (select, verify, restore of
  the database, neutralize, filestore, checks), step by step. Dropping the copy afterwards is not
  counted: a real recovery keeps it.
- Checks: nothing live remains (erpops.backup.neutralize.live_items), row counts match the
  manifest table by table, the filestore holds exactly the manifest's files with their sha256,
  and health checks on the copy (pg.connect must pass; odoo.cron_overdue is advisory: a restored
  copy's crons are due since the backup, and neutralization deactivated them anyway).

The copy is `<db>_rehearsal_<YYYYmmddHHMM>` (or --db) and is DROPPED at the end unless --keep: a
rehearsal proves a restore, it does not provision an environment. Rehearsals never land in a
prod-tier stack (--to prod is refused before anything happens).

The report goes to --report-dir as `rehearsal-<from>-<to>-<UTC timestamp>.md` and `.json`, also
when the restore itself fails (status "error"). Exit codes: 0 every check passed and both
objectives were met; 1 the rehearsal ran to the end but a check failed or an objective was
missed (RehearsalMissed: the report says which); otherwise erpops.errors' code of the failure
(2 usage/spec, 3 service, 4 restore failed and rolled back, 5 integrity, 6 refused: no verified
set, --to a prod tier, database exists).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from erpops import plugins
from erpops.backup.commands import cli_reporter as _reporter
from erpops.backup.commands import cli_target as _target
from erpops.backup.commands import echo_lines as _echo_lines
from erpops.backup.commands import emit as _emit
from erpops.backup.commands import json_errors
from erpops.backup.commands import target_opts as _opts
from erpops.errors import ErpopsError, PreflightError, UsageError
from erpops.options import backup_target_options
from erpops.plugins import HealthProbe, HealthRequest

STEPS = ("select", "verify", "restore_db", "neutralize", "filestore", "checks")
# Health checks run on the copy: (check name, whether its failure fails the rehearsal).
HEALTH_CHECKS = (("pg.connect", True), ("odoo.cron_overdue", False))


class RehearsalMissed(ErpopsError):
    """The rehearsal ran to the end, but a check failed or the RPO/RTO was missed (the report says which)."""

    exit_code = 1


def rehearsal_db_name(db: str, when: datetime) -> str:
    """`<db>_rehearsal_<YYYYmmddHHMM>`, the db part shortened to fit PostgreSQL's 63 bytes."""
    suffix = f"_rehearsal_{when.astimezone(UTC):%Y%m%d%H%M}"
    return db[: 63 - len(suffix)] + suffix


def select_set(target: Any, stack: str) -> tuple[dict[str, Any], list[str]]:
    """(the newest verified complete set of stack, ids of newer sets that are not verified ok).

    PreflightError naming `erpops verify` when no set of the stack is verified.
    """
    from erpops.backup import engine

    sets = [s for s in engine.list_sets(target) if "error" not in s]
    ours = [s for s in sets if s.get("stack") == stack]
    verified = [s for s in ours if s["verified"] is True]
    if not verified:
        if not ours:
            why = (f"no complete backup set of stack {stack} in {target.url}"
                   + (f" ({len(sets)} set(s) of other stacks ignored)" if sets else "")
                   + f": run `erpops backup --stack {stack} --db <db>` first")
        else:
            failed = sum(1 for s in ours if s["verified"] is False)
            why = (f"none of the {len(ours)} complete set(s) of stack {stack} in {target.url} is verified"
                   + (f" ({failed} failed verification)" if failed else "")
                   + f": a rehearsal restores only a verified set; run `erpops verify {ours[0]['set_id']} "
                   f"--target {target.url}` (newest set), then rehearse again")
        raise PreflightError([why], f"rehearsal of {stack}")
    chosen = verified[0]
    newer = [s["set_id"] for s in ours if s["created_at"] > chosen["created_at"] and s["verified"] is not True]
    return chosen, newer


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _check(name: str, passed: bool | None, detail: str, *, advisory: bool = False, **extra: Any) -> dict[str, Any]:
    """status: passed, failed, skipped, or warning (an advisory check that did not pass: never fails a rehearsal)."""
    status = "skipped" if passed is None else "passed" if passed else "warning" if advisory else "failed"
    return {"name": name, "status": status, "advisory": advisory, "detail": detail, **extra}


check_entry = _check  # public: the drill reports its own checks the same way


def run_checks(pg: Any, db: str, manifest: Any, fs_dir: Path | None, to_sized: Any,
               health: HealthProbe | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(checks, row count table) of the restored copy. Never raises on findings: a check that cannot run fails.

    `health` runs the health checks (default: the installed provider, erpops.plugins.health_probe).
    """
    from erpops.backup import engine
    from erpops.backup.neutralize import live_items

    checks: list[dict[str, Any]] = []
    try:
        live = live_items(pg, db)
        checks.append(_check("neutralized", not live, "nothing live remains (mail, fetchmail, crons, payment, ...)"
                             if not live else f"{len(live)} live item(s): " + "; ".join(live), live_items=live))
    except ErpopsError as exc:
        checks.append(_check("neutralized", False, f"could not look: {exc}"))

    rows: list[dict[str, Any]] = []
    try:
        actual = engine.row_counts(pg, db)
        if manifest.row_counts:
            rows = [{"table": t, "expected": want, "actual": actual.get(t), "match": actual.get(t) == want}
                    for t, want in sorted(manifest.row_counts.items())]
            bad = [r["table"] for r in rows if not r["match"]]
            checks.append(_check("row_counts", not bad, f"{len(rows)} tables match the manifest" if not bad
                                 else f"{len(bad)} table(s) differ from the manifest: {', '.join(bad)}"))
        else:
            rows = [{"table": t, "expected": None, "actual": n, "match": None} for t, n in sorted(actual.items())]
            checks.append(_check("row_counts", None, "the set records no row counts (stored from an Odoo zip): "
                                 "nothing to compare"))
    except ErpopsError as exc:
        checks.append(_check("row_counts", False, f"could not count: {exc}"))

    if not manifest.filestore:
        checks.append(_check("filestore", None, "the set holds no filestore"))
    elif fs_dir is None or not fs_dir.is_dir():
        checks.append(_check("filestore", False, f"no filestore directory {fs_dir}"))
    else:
        want = {f.path: f for f in manifest.filestore}
        have = {f"{p.parent.name}/{p.name}": p for p in fs_dir.glob("*/*") if p.is_file()}
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        damaged = sorted(k for k in set(want) & set(have)
                         if have[k].stat().st_size != want[k].size or _sha256(have[k]) != want[k].sha256)
        ok = not (missing or extra or damaged)
        detail = (f"{len(have)} files, every sha256 as in the manifest" if ok else
                  f"{len(missing)} missing, {len(extra)} unexpected, {len(damaged)} with another sha256 "
                  f"(e.g. {(missing + extra + damaged)[0]})")
        checks.append(_check("filestore", ok, detail, expected_files=len(want), files=len(have)))

    wanted = {name: blocking for name, blocking in HEALTH_CHECKS}
    request = HealthRequest(pg=pg, pg_db=db, odoo_db=db, sized=to_sized, selected=lambda name: name in wanted)
    for finding in (health or plugins.health_probe())(request):
        checks.append(_check(f"health:{finding.check}", finding.passed, f"{finding.state}: {finding.message}",
                             advisory=not wanted[finding.check], state=finding.state, metrics=finding.metrics))
    return checks, rows


def rehearse(
    target: Any,
    *,
    from_stack: str,
    from_sized: Any,
    to_stack: str,
    to_sized: Any,
    pg: Any,
    report_dir: Path,
    db: str | None = None,
    filestore_root: Path | None = None,
    keep: bool = False,
    jobs: int = 2,
    work_dir: Path | None = None,
    reporter: Any = None,
    select: Any = None,
    allow_prod: bool = False,
    on_created: Any = None,
    write: bool = True,
    addons_path: list[Path] | None = None,
    allow_unneutralized: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run one rehearsal and write its reports; returns the report (see the module docstring).

    `erpops drill` (erpops.backup.drill) runs the same engine inside the stack itself: `select(target,
    stack)` picks the set instead of select_set, `allow_prod` lifts the prod-tier refusal (the drill has its
    own guard), `on_created(db)` is called as soon as the scratch database exists (to mark it), and
    `write=False` leaves the report files to the caller. `addons_path` / `allow_unneutralized` go to the
    neutralization as in `erpops restore` (Odoo's own files; installed modules accepted as not covered).

    Raises PreflightError before anything is done (--to a prod tier, no verified set, database
    exists), the restore's own error after writing a report with status "error", and never for
    a failed check or a missed objective: the report's status says "failed" then.
    """
    from erpops.backup import engine
    from erpops.backup import manifest as mf
    from erpops.backup.progress import Reporter
    from erpops.backup.restore import restore

    reporter = reporter or Reporter()
    to_tier = to_sized.spec.tier
    if to_tier == "prod" and not allow_prod:
        raise PreflightError([f"stack {to_stack} is a prod tier: rehearsals never land in production; rehearse "
                              "into a staging or dev stack (--to staging)"], f"rehearsal {from_stack} -> {to_stack}")
    backup_spec = from_sized.spec.backup
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    steps: dict[str, float] = dict.fromkeys(STEPS, 0.0)

    chosen, newer = (select or select_set)(target, from_stack)
    set_id = chosen["set_id"]
    manifest = engine.load_manifest(target, set_id)
    steps["select"] = round(time.monotonic() - t0, 3)
    reporter.note(f"rehearsal {from_stack} -> {to_stack}: set {set_id} (verified {chosen['verified_at']})")

    restore_start = datetime.now(UTC)
    name = db or rehearsal_db_name(manifest.db_name or "odoo", restore_start)
    mf.check_db_name(name)
    temp_root = None
    if filestore_root is None and manifest.filestore:
        temp_root = Path(tempfile.mkdtemp(prefix="erpops-rehearsal-fs-", dir=work_dir))
    fs_root = filestore_root or temp_root
    fs_dir = fs_root / name if fs_root is not None and manifest.filestore else None
    age_minutes = round((restore_start - manifest.created).total_seconds() / 60, 2)

    report: dict[str, Any] = {
        "ok": False,
        "status": "error",
        "from": {"stack": from_stack, "tier": from_sized.spec.tier, "rpo_minutes": backup_spec.rpo_minutes,
                 "rto_minutes": backup_spec.rto_minutes},
        "to": {"stack": to_stack, "tier": to_tier, "server": f"{pg.host}:{pg.port}"},
        "target": target.url,
        "set": {"set_id": set_id, "db": manifest.db_name, "created_at": manifest.created_at,
                "verified_at": chosen["verified_at"], "verified_deep": chosen["verified_deep"],
                "odoo_version": manifest.odoo_version, "dump_format": manifest.dump.format,
                "dump_bytes": manifest.dump.size, "filestore_files": len(manifest.filestore),
                "filestore_bytes": manifest.filestore_bytes, "newer_unverified": newer},
        "db": name,
        "filestore_dir": str(fs_dir) if fs_dir else None,
        "started_at": mf.utc_iso(started_at),
        "finished_at": None,
        "rpo": {"objective_minutes": backup_spec.rpo_minutes, "actual_minutes": age_minutes,
                "met": age_minutes <= backup_spec.rpo_minutes},
        "rto": None,
        "checks": [],
        "row_counts": [],
        "failures": [],
        "neutralize": None,
        "keep": keep,
        "restored": False,
        "dropped": False,
        "notes": [],
        "error": None,
    }
    if newer:
        report["notes"].append(f"{len(newer)} newer set(s) are not verified ok and were passed over: "
                               f"{', '.join(newer)}")
    restored = completed = False
    try:
        r0 = time.monotonic()
        result = restore(target, set_id, pg=pg, db=name, filestore_root=fs_root, neutralize=True, jobs=jobs,
                         work_dir=work_dir, reporter=reporter, on_created=on_created, addons_path=addons_path,
                         allow_unneutralized=allow_unneutralized)
        restored = report["restored"] = True
        wall = time.monotonic() - r0
        timings = result["timings"]
        steps["verify"] = timings.get("verify_seconds", 0.0)
        steps["restore_db"] = timings.get("database_seconds", 0.0)
        steps["neutralize"] = timings.get("neutralize_seconds", 0.0)
        steps["filestore"] = timings.get("filestore_seconds", 0.0)
        # Pre-flight, the swap into place and the rest of restore()'s own bookkeeping.
        steps["restore_other"] = round(max(0.0, wall - sum(steps[s] for s in STEPS[1:5])), 3)
        report["notes"] += result["notes"]
        report["neutralize"] = {k: result["neutralize_report"].get(k) for k in
                                ("mode", "changed", "remaining", "uuid_changed", "secret_changed", "is_neutralized",
                                 "uncovered_allowed", "not_in_addons_path")} \
            if result["neutralize_report"] else None
        c0 = time.monotonic()
        report["checks"], report["row_counts"] = run_checks(pg, name, manifest, fs_dir, to_sized)
        steps["checks"] = round(time.monotonic() - c0, 3)
        completed = True
    except ErpopsError as exc:
        report["error"] = {"message": str(exc), "error_type": type(exc).__name__, "exit_code": exc.exit_code}
        report["failures"].append(f"rehearsal did not complete: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        exc.rehearsal_report = report  # type: ignore[attr-defined]
        raise
    finally:
        total = round(time.monotonic() - t0, 3)
        report["rto"] = {"objective_minutes": backup_spec.rto_minutes, "actual_minutes": round(total / 60, 2),
                         "met": total <= backup_spec.rto_minutes * 60 and restored,
                         "total_seconds": total, "steps": steps}
        if restored and not keep:
            try:
                engine.drop_database(pg, name)
                report["dropped"] = True
            except ErpopsError as exc:
                report["notes"].append(f"could not drop {name} ({exc}): drop it by hand")
            if fs_dir is not None:
                shutil.rmtree(fs_dir, ignore_errors=True)
        if temp_root is not None and (not keep or not restored):
            shutil.rmtree(temp_root, ignore_errors=True)
        report["finished_at"] = mf.utc_iso(datetime.now(UTC))
        if not completed and report["error"] is None:  # Ctrl-C, or a bug: never report a pass
            report["error"] = {"message": "interrupted before the rehearsal completed", "error_type": "Interrupted",
                               "exit_code": 130}
            report["failures"].append("rehearsal did not complete: interrupted")
        if report["error"] is None:
            failures = [f"check {c['name']} failed: {c['detail']}" for c in report["checks"] if c["status"] == "failed"]
            if not report["rpo"]["met"]:
                failures.append(f"RPO missed: the newest verified set was {age_minutes:g} min old, the objective is "
                                f"{backup_spec.rpo_minutes} min")
            if not report["rto"]["met"]:
                failures.append(f"RTO missed: the rehearsal took {report['rto']['actual_minutes']:g} min, the "
                                f"objective is {backup_spec.rto_minutes} min")
            report["failures"] = failures
            report["status"] = "failed" if failures else "passed"
            report["ok"] = not failures
        report["report"] = write_reports(report, report_dir, from_stack, to_stack, started_at) if write else None
    return report


def write_reports(report: dict[str, Any], report_dir: Path, from_stack: str, to_stack: str,
                  when: datetime) -> dict[str, str]:
    """Write rehearsal-<from>-<to>-<ts>.json and .md into report_dir; their paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    base = report_dir / f"rehearsal-{from_stack}-{to_stack}-{when:%Y%m%dT%H%M%SZ}"
    paths = {"json": str(base.with_suffix(".json")), "markdown": str(base.with_suffix(".md"))}
    body = {**report, "report": paths}
    for suffix, text in ((".json", json.dumps(body, indent=2, default=str) + "\n"), (".md", render_markdown(body))):
        tmp = base.with_suffix(suffix + ".part")
        tmp.write_text(text)
        tmp.replace(base.with_suffix(suffix))
    return paths


def _yes(flag: bool | None) -> str:
    return {True: "met", False: "**MISSED**", None: "-"}[flag]


def render_markdown(r: dict[str, Any]) -> str:
    s, rpo, rto = r["set"], r["rpo"], r["rto"] or {}
    fate = ("never created: the restore did not complete (what it built was rolled back)" if not r["restored"]
            else "kept (--keep)" if r["keep"] else "dropped at the end" if r["dropped"]
            else "NOT dropped: drop it by hand")
    verdict = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR (did not complete)"}[r["status"]]
    lines = [
        f"# Restore rehearsal {r['from']['stack']} -> {r['to']['stack']}: {verdict}",
        "",
        f"- Started {r['started_at']}, finished {r['finished_at']}",
        f"- Set `{s['set_id']}` (database `{s['db']}`, Odoo {s['odoo_version']}), created {s['created_at']}, "
        f"verified {s['verified_at']}{' (deep)' if s['verified_deep'] else ''}",
        f"- From target `{r['target']}` into database `{r['db']}` on {r['to']['server']} "
        f"({r['to']['tier']} tier), neutralized" + (
            f" except {', '.join(accepted)} (NOT neutralized, accepted with --allow-unneutralized)"
            if (accepted := (r.get("neutralize") or {}).get("uncovered_allowed")) else ""),
        f"- The rehearsal database was {fate}",
        "",
        "## Objectives",
        "",
        "| objective | target | actual | result |",
        "|---|---|---|---|",
        f"| RPO (age of the set at restore start) | {rpo['objective_minutes']} min | {rpo['actual_minutes']:g} min | "
        f"{_yes(rpo['met'])} |",
        f"| RTO (rehearsal wall time) | {rto.get('objective_minutes')} min | {rto.get('actual_minutes', 0):g} min | "
        f"{_yes(rto.get('met'))} |",
        "",
        "### Time per step",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {step} | {sec:.1f} |" for step, sec in (rto.get("steps") or {}).items()],
        f"| **total** | **{rto.get('total_seconds', 0):.1f}** |",
        "",
        "## Checks",
        "",
        "| check | result | detail |",
        "|---|---|---|",
        *[f"| {c['name']}{' (advisory)' if c['advisory'] else ''} | {c['status']} | "
          f"{str(c['detail']).replace('|', '/')} |" for c in r["checks"]],
        "",
    ]
    if r["row_counts"]:
        lines += ["## Row counts", "", "| table | manifest | restored | match |", "|---|---|---|---|"]
        lines += [f"| {x['table']} | {x['expected']} | {x['actual']} | "
                  f"{'yes' if x['match'] else '-' if x['match'] is None else '**NO**'} |" for x in r["row_counts"]]
        lines.append("")
    if r["failures"]:
        lines += ["## Failures", "", *[f"- {f}" for f in r["failures"]], ""]
    if r["error"]:
        lines += ["## Error", "", "```", r["error"]["message"], "```", ""]
    if r["notes"]:
        lines += ["## Notes", "", *[f"- {n}" for n in r["notes"]], ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------


def _root(ctx: click.Context) -> Path:
    from erpops import spec

    obj = ctx.find_root().obj
    root = obj.get("root") if isinstance(obj, dict) else None
    return root or spec.find_root()


def _json_report_on_error(fn: Any) -> Any:
    """With --json, a failure after the rehearsal started prints its report (with the error) as the one object."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ErpopsError as exc:
            report = getattr(exc, "rehearsal_report", None)
            if kwargs.get("as_json") and report is not None and not getattr(exc, "json_printed", False):
                from erpops.jsonout import error

                click.echo(json.dumps({**report, **error(exc)}, indent=2, default=str))
                exc.json_printed = True  # type: ignore[attr-defined]
            raise

    return wrapper


@click.command("rehearse")
@click.option("--from", "from_stack", required=True, help="Stack whose backups are rehearsed (its RPO/RTO apply).")
@click.option("--to", "to_stack", required=True, help="Stack whose PostgreSQL server receives the copy (not prod).")
@backup_target_options(from_env=False, target_default="s3://<backup_bucket>/<from>, the --from stack's",
                       endpoint_default="AWS, or the --from stack's", region_default="boto3's, or the --from stack's")
@click.option("--db", default=None, help="Name of the rehearsal database (default: <db>_rehearsal_<YYYYmmddHHMM>).")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Where rehearsal-<from>-<to>-<ts>.md and .json are written.")
@click.option("--keep", is_flag=True, help="Keep the rehearsal database and filestore (default: drop them at the end).")
@click.option("--filestore", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Filestore root for the copy (<root>/<db>/; default: a temp directory).")
@click.option("--jobs", "-j", default=2, show_default=True, type=click.IntRange(1, 64), help="pg_restore jobs.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the dump is decompressed for pg_restore -j (default: $TMPDIR).")
@click.option("--addons-path", "addons_path", multiple=True, metavar="DIRS",
              help="Odoo's addons directories (comma-separated, as Odoo's): run the installed modules' own "
                   "data/neutralize.sql from there, as odoo-bin neutralize does (default: erpops' rules).")
@click.option("--allow-unneutralized", "allow_unneutralized", multiple=True, metavar="MODULE",
              help="Accept this installed module's neutralize file as not covered (repeatable); otherwise such a "
                   "module fails the rehearsal (exit 4, the copy rolled back).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object on stdout.")
@click.pass_context
@json_errors
@_json_report_on_error
def rehearse_cmd(ctx: click.Context, from_stack: str, to_stack: str, target: str | None, endpoint_url: str | None,
                 region: str | None, db: str | None, report_dir: Path, keep: bool, filestore: Path | None, jobs: int,
                 work_dir: Path | None, addons_path: tuple[str, ...], allow_unneutralized: tuple[str, ...],
                 as_json: bool) -> None:
    """Restore the newest verified set of --from into a new, neutralized database of --to; check it; report RPO/RTO.

    Exit 0: every check passed and RPO/RTO were met; 1: the rehearsal completed but a check failed or
    an objective was missed; 2-6: erpops errors (6: refused, e.g. no verified set or --to prod).
    The rehearsal database is dropped at the end unless --keep.
    """
    from erpops import spec
    from erpops.backup.neutralize import odoo_addons_files, parse_addons_path
    from erpops.pg import Pg

    paths = parse_addons_path(addons_path)
    if paths:
        odoo_addons_files(paths, ())  # a wrong --addons-path is bad input, found before anything else
    root = _root(ctx)
    from_sized = spec.load(from_stack, root)
    to_sized = spec.load(to_stack, root)
    if to_sized.spec.tier == "prod":  # before touching storage: refused whatever else is wrong
        raise PreflightError([f"stack {to_stack} is a prod tier: rehearsals never land in production; rehearse "
                              "into a staging or dev stack (--to staging)"], f"rehearsal {from_stack} -> {to_stack}")
    if db is not None and db == to_sized.spec.odoo.database:
        raise UsageError(f"--db {db} is the {to_stack} stack's own Odoo database: give the rehearsal another name")
    t = _target(ctx, _opts(target=target, stack=from_stack, endpoint_url=endpoint_url, region=region))
    report = rehearse(t, from_stack=from_stack, from_sized=from_sized, to_stack=to_stack, to_sized=to_sized,
                      pg=Pg.from_env(), report_dir=report_dir, db=db, filestore_root=filestore, keep=keep, jobs=jobs,
                      work_dir=work_dir, reporter=_reporter(as_json), addons_path=paths or None,
                      allow_unneutralized=allow_unneutralized)

    def human(r: dict[str, Any]) -> None:
        rto = r["rto"]
        lines = [f"rehearsal {from_stack} -> {to_stack}: {r['status'].upper()} (set {r['set']['set_id']} into "
                 f"{r['db']}, {'kept' if r['keep'] else 'dropped'})",
                 f"  RPO: set {r['rpo']['actual_minutes']:g} min old, objective {r['rpo']['objective_minutes']} min: "
                 f"{'met' if r['rpo']['met'] else 'MISSED'}",
                 f"  RTO: {rto['actual_minutes']:g} min, objective {rto['objective_minutes']} min: "
                 f"{'met' if rto['met'] else 'MISSED'} ("
                 + ", ".join(f"{k} {v:.1f} s" for k, v in rto["steps"].items()) + ")"]
        lines += [f"  {c['status']:7} {c['name']}{' (advisory)' if c['advisory'] else ''}: {c['detail']}"
                  for c in r["checks"]]
        accepted = (r.get("neutralize") or {}).get("uncovered_allowed")
        if accepted:
            lines.append(f"  NOT neutralized, accepted: {', '.join(accepted)} (--allow-unneutralized)")
        lines += [f"  FAILED: {f}" for f in r["failures"]]
        lines.append(f"  report: {r['report']['markdown']}")
        _echo_lines(lines)

    _emit(as_json, report, human)
    if not report["ok"]:
        missed = RehearsalMissed(f"rehearsal {from_stack} -> {to_stack} completed but failed: "
                                 + "; ".join(report["failures"]) + f" (report: {report['report']['markdown']})")
        missed.json_printed = True  # type: ignore[attr-defined] - the report above is the JSON answer
        raise missed
