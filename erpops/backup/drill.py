"""`erpops drill --stack prod`: the stack proves, on a schedule and inside itself, that its newest backup restores.

The rehearse engine (erpops.backup.rehearse) run against the stack's own PostgreSQL server:

1. Leftovers first: scratch databases of an earlier drill that was killed half-way carry a marker
   (erpops.backup.scratch) and are dropped when their maker is gone.
2. The newest complete set of the stack (verified or not: the drill verifies it itself, every byte
   against the manifest) is restored into a scratch database `<db>_drill_<YYYYmmddHHMMSS>`, marked
   the moment it exists, neutralized, checked (row counts against the manifest, the filestore's
   sha256, nothing live left, pg.connect on the copy), then dropped.
3. The live database is never a target: refused by name, and by OID before every drop.
4. The verdict is published: Prometheus metrics (success, RTO per step and total, RPO at the time of
   the drill, the set's age and id) pushed to a Pushgateway and/or written as a textfile, and the
   report as JSON and Markdown into the backup bucket under `<stack>/drills/` (and --report-dir).

Exit 0 when the drill passed; 1 when it ran and failed (a corrupt or missing set, a check, RPO or
RTO missed: the report and the metrics say why); 2 bad usage; 3 a service is unreachable before
the drill could start, or the result could not be published; 143 SIGTERM (the Job's deadline): the
scratch database is dropped on the way out and the failure is published.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from erpops.backup import scratch
from erpops.errors import ErpopsError, PreflightError, ServiceError, UsageError
from erpops.options import backup_target_options

PURPOSE = "drill"
METRIC_PREFIX = "erpops_drill"
PUSH_JOB = "erpops_drill"
DEFAULT_DEADLINE_SECONDS = 3 * 3600


class DrillFailed(ErpopsError):
    """The drill ran and its verdict is a failure (the report and the metrics say why)."""

    exit_code = 1


class DrillInterrupted(ErpopsError):
    """SIGTERM (the Job's deadline, a node drain): what was built is dropped on the way out (exit 143, as
    erpops.cli exits on SIGTERM)."""

    exit_code = 143


def drill_db_name(db: str, when: datetime) -> str:
    suffix = f"_drill_{when.astimezone(UTC):%Y%m%d%H%M%S}"
    return db[: 63 - len(suffix)] + suffix


def newest_complete_set(target: Any, stack: str) -> dict[str, Any]:
    """The newest complete set of stack, whatever its verify verdict. DrillFailed-worthy PreflightError if none."""
    from erpops.backup import engine

    ours = [s for s in engine.list_sets(target) if "error" not in s and s.get("stack") == stack]
    if not ours:
        raise PreflightError([f"no complete backup set of stack {stack} in {target.url}: the backups are not "
                              "running (see runbooks/backup-restore.md)"], f"drill of {stack}")
    return ours[0]


# --------------------------------------------------------------------------------------------
# Metrics: Prometheus text exposition format
# --------------------------------------------------------------------------------------------

_HELP = {
    "success": "1 when the last drill passed, else 0",
    "last_run_timestamp_seconds": "When the last drill finished (Unix time)",
    "last_success_timestamp_seconds": "When a drill last passed (Unix time; absent until one has)",
    "rto_seconds": "Wall time of the last drill by step; step=total is the whole restore",
    "rto_objective_seconds": "The stack's backup.rto_minutes, in seconds",
    "rpo_seconds": "Age of the restored set when the drill restored it (the RPO at that moment)",
    "rpo_objective_seconds": "The stack's backup.rpo_minutes, in seconds",
    "set_age_seconds": "Age of the newest complete set when the drill started",
    "set_info": "The set the last drill restored (value 1)",
    "checks_failed": "Checks of the last drill that failed",
    "leftovers_dropped": "Scratch databases of interrupted drills the last drill dropped",
}


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in sorted(labels.items()))
    return "{" + body + "}"


def metrics(report: dict[str, Any]) -> list[tuple[str, dict[str, str], float]]:
    """(name without prefix, labels, value) of a drill report."""
    out: list[tuple[str, dict[str, str], float]] = []
    finished = report["finished_unix"]
    out.append(("success", {}, 1.0 if report["ok"] else 0.0))
    out.append(("last_run_timestamp_seconds", {}, finished))
    if report["ok"]:
        out.append(("last_success_timestamp_seconds", {}, finished))
    rto = report.get("rto") or {}
    for step, seconds in (rto.get("steps") or {}).items():
        out.append(("rto_seconds", {"step": step}, float(seconds)))
    if "total_seconds" in rto:
        out.append(("rto_seconds", {"step": "total"}, float(rto["total_seconds"])))
    out.append(("rto_objective_seconds", {}, report["objectives"]["rto_minutes"] * 60.0))
    out.append(("rpo_objective_seconds", {}, report["objectives"]["rpo_minutes"] * 60.0))
    s = report.get("set")
    if s:
        out.append(("set_age_seconds", {}, float(s["age_seconds"])))
        out.append(("set_info", {"set_id": s["set_id"]}, 1.0))
    rpo = report.get("rpo") or {}
    if rpo.get("actual_minutes") is not None:
        out.append(("rpo_seconds", {}, round(rpo["actual_minutes"] * 60.0, 3)))
    out.append(("checks_failed", {}, float(sum(1 for c in report.get("checks", []) if c["status"] == "failed"))))
    out.append(("leftovers_dropped", {}, float(len(report["leftovers"]["dropped"]))))
    return out


def exposition(samples: list[tuple[str, dict[str, str], float]], extra: dict[str, str] | None = None) -> str:
    lines: list[str] = []
    seen: set[str] = set()
    for name, labels, value in samples:
        full = f"{METRIC_PREFIX}_{name}"
        if name not in seen:
            seen.add(name)
            lines += [f"# HELP {full} {_HELP[name]}", f"# TYPE {full} gauge"]
        lines.append(f"{full}{_labels({**(extra or {}), **labels})} {value:g}")
    return "\n".join(lines) + "\n"


def push(url: str, stack: str, text: str, timeout: float = 10.0) -> str:
    """POST to the Pushgateway group job=erpops_drill/stack=<stack> (POST replaces same-named metrics
    only: a failed drill keeps the last success timestamp of the one before). Returns the group URL."""
    group = f"{url.rstrip('/')}/metrics/job/{PUSH_JOB}/stack/{urllib.parse.quote(stack, safe='')}"
    req = urllib.request.Request(group, data=text.encode(), method="POST",  # noqa: S310 (the spec's http(s) URL)
                                 headers={"Content-Type": "text/plain; version=0.0.4"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the spec's http(s) URL)
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceError(f"push of the drill metrics to {group} failed: {exc}") from None
    return group


# --------------------------------------------------------------------------------------------
# The drill
# --------------------------------------------------------------------------------------------

_signals: list[str] = []  # names of the signals that interrupted the running drill


def _raise_interrupted(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    _signals.append(name)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup short
    raise DrillInterrupted(f"drill interrupted by {name}")


def run(
    target: Any,
    *,
    sized: Any,
    pg: Any,
    report_dir: Path,
    deadline_seconds: int = DEFAULT_DEADLINE_SECONDS,
    pushgateway: str | None = None,
    metrics_file: Path | None = None,
    upload: bool = True,
    jobs: int = 2,
    work_dir: Path | None = None,
    reporter: Any = None,
) -> dict[str, Any]:
    """One drill; returns its report (status passed/failed). Raises only for what stops it before it starts."""
    from erpops.backup import manifest as mf
    from erpops.backup.progress import Reporter
    from erpops.backup.rehearse import rehearse, render_markdown

    reporter = reporter or Reporter()
    stack = sized.stack
    started = datetime.now(UTC)
    _signals.clear()
    guard = scratch.LiveGuard.of(pg, sized.database)  # a service error here stops the drill: exit 3
    dropped, left = scratch.clean_stale(pg, PURPOSE, stack, guard)
    for d in dropped:
        reporter.note(f"dropped {d['db']}, left by an interrupted drill ({d['why']})")
    backup = sized.spec.backup
    report: dict[str, Any] = {
        "kind": "drill", "stack": stack, "ok": False, "status": "failed", "reason": None,
        "target": target.url, "server": f"{pg.host}:{pg.port}",
        "live": {"db": guard.name, "oid": guard.oid},
        "objectives": {"rpo_minutes": backup.rpo_minutes, "rto_minutes": backup.rto_minutes},
        "started_at": mf.utc_iso(started), "finished_at": None, "finished_unix": None,
        "deadline_seconds": deadline_seconds,
        "leftovers": {"dropped": dropped, "left": left},
        "set": None, "db": None, "dropped": False, "rpo": None, "rto": None, "checks": [], "failures": [],
        "rehearsal": None, "metrics": {}, "report": {}, "interrupted": None,
    }
    name = None
    fs_root = Path(tempfile.mkdtemp(prefix="erpops-drill-fs-", dir=work_dir))
    try:
        chosen = newest_complete_set(target, stack)
        created = mf.parse_utc(chosen["created_at"])
        report["set"] = {"set_id": chosen["set_id"], "created_at": chosen["created_at"],
                         "age_seconds": round((started - created).total_seconds(), 3),
                         "verified_before": chosen["verified"]}
        name = drill_db_name(guard.name, started)
        guard.refuse(pg, name, f"drill of {stack}")
        report["db"] = name
        marker = scratch.new_marker(PURPOSE, stack, deadline_seconds, started)

        def on_created(db: str) -> None:
            guard.refuse(pg, db, f"drill of {stack}")
            scratch.mark(pg, db, marker)

        try:
            r = rehearse(target, from_stack=stack, from_sized=sized, to_stack=stack, to_sized=sized, pg=pg,
                         report_dir=report_dir, db=name, filestore_root=fs_root, keep=True, jobs=jobs,
                         work_dir=work_dir, reporter=reporter, select=lambda _t, _s: (chosen, []),
                         allow_prod=True, on_created=on_created, write=False)
        except ErpopsError as exc:
            r = getattr(exc, "rehearsal_report", None)
            if r is None:
                raise
        report["rehearsal"] = r
        report.update(rpo=r["rpo"], rto=r["rto"], checks=r["checks"], failures=list(r["failures"]))
        if r["error"]:
            report["reason"] = f"the set did not restore: {r['error']['error_type']}: " \
                               f"{r['error']['message'].splitlines()[0]}"
        elif r["failures"]:
            report["reason"] = "; ".join(r["failures"])
        report["ok"] = r["status"] == "passed"
    except (PreflightError, UsageError) as exc:
        report["reason"] = str(exc).splitlines()[-1].strip(" -")
        report["failures"].append(report["reason"])
    except ErpopsError as exc:  # a service failed mid-way: a failed drill, reported as such
        report["reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        report["failures"].append(report["reason"])
    finally:
        if _signals:  # the restore rolled back on the way out; say what happened, not what it caused
            report["ok"] = False
            report["interrupted"] = _signals[0]
            report["reason"] = (f"interrupted by {_signals[0]} (the Job's deadline of {deadline_seconds} s, or a "
                                "node drain) before the drill completed")
            report["failures"].append(report["reason"])
        if name is not None and pg.database_exists(name):
            scratch.drop_marked(pg, name, PURPOSE, stack, guard)
        if name is not None:
            report["dropped"] = not pg.database_exists(name)
        shutil.rmtree(fs_root, ignore_errors=True)
    finished = datetime.now(UTC)
    report["status"] = "passed" if report["ok"] else "failed"
    report["finished_at"] = mf.utc_iso(finished)
    report["finished_unix"] = round(finished.timestamp(), 3)
    samples = metrics(report)
    report["metrics"] = {f"{METRIC_PREFIX}_{n}" + _labels(lab): v for n, lab, v in samples}

    base = f"drill-{stack}-{started:%Y%m%dT%H%M%SZ}"
    json_text = json.dumps(report, indent=2, default=str) + "\n"
    md_text = drill_markdown(report, render_markdown)
    report_dir.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json_text), (".md", md_text)):
        (report_dir / f"{base}{suffix}").write_text(text)
    report["report"] = {"json": str(report_dir / f"{base}.json"), "markdown": str(report_dir / f"{base}.md")}
    if metrics_file is not None:
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = metrics_file.with_suffix(metrics_file.suffix + ".part")
        tmp.write_text(exposition(samples, {"stack": stack}))
        tmp.replace(metrics_file)
    problems = []
    if pushgateway:
        try:
            report["pushed_to"] = push(pushgateway, stack, exposition(samples))
        except ServiceError as exc:
            problems.append(str(exc))
    if upload:
        try:
            for suffix, text in ((".json", json_text), (".md", md_text)):
                target.put_bytes(f"drills/{base}{suffix}", text.encode())
            report["report"]["bucket"] = [target.child(f"drills/{base}.json"), target.child(f"drills/{base}.md")]
        except ErpopsError as exc:
            problems.append(f"upload of the report failed: {exc}")
    report["publish_problems"] = problems
    return report


def drill_markdown(r: dict[str, Any], render_rehearsal: Any) -> str:
    verdict = "PASSED" if r["ok"] else "FAILED"
    lines = [f"# Restore drill {r['stack']}: {verdict}", ""]
    if r["reason"]:
        lines += [f"**Reason:** {r['reason']}", ""]
    s = r["set"] or {}
    lines += [
        f"- Started {r['started_at']}, finished {r['finished_at']}, deadline {r['deadline_seconds']} s",
        f"- Set `{s.get('set_id', '-')}`, created {s.get('created_at', '-')}, "
        f"{round(s['age_seconds'] / 60, 1) if s else '-'} min old at the start",
        f"- Scratch database `{r['db']}` on {r['server']}: {'dropped' if r['dropped'] else 'NOT dropped'}; "
        f"the live database `{r['live']['db']}` (OID {r['live']['oid']}) was not touched",
        f"- Leftovers of interrupted drills dropped: {len(r['leftovers']['dropped'])}"
        + "".join(f"\n  - `{d['db']}` ({d['why']})" for d in r["leftovers"]["dropped"]),
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| `{k}` | {v:g} |" for k, v in r["metrics"].items()],
        "",
    ]
    if r["rehearsal"]:
        body = render_rehearsal(r["rehearsal"]).split("\n", 1)[1]
        lines += ["## Restore", body]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

@click.command("drill")
@click.option("--stack", "-s", required=True, help="Stack whose newest backup is restored on its own server.")
@backup_target_options(from_env=False, target_default="s3://<backup_bucket>/<stack>",
                       endpoint_default="the stack's", region_default="the stack's")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Where drill-<stack>-<ts>.json and .md are written (they go to the bucket as well).")
@click.option("--pushgateway", envvar="ERPOPS_DRILL_PUSHGATEWAY", default=None,
              help="Pushgateway URL (default: the spec's drill.pushgateway).")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the metrics here (node_exporter textfile format).")
@click.option("--no-upload", is_flag=True, help="Do not upload the report to the backup bucket.")
@click.option("--deadline", "deadline_minutes", type=click.IntRange(1, 24 * 60), default=None,
              help="Minutes the drill may take (default: the spec's drill.deadline_minutes).")
@click.option("--jobs", "-j", default=2, show_default=True, type=click.IntRange(1, 64), help="pg_restore jobs.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Scratch space for the dump and the filestore (default: $TMPDIR).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object on stdout.")
@click.pass_context
def drill_cmd(ctx: click.Context, stack: str, target: str | None, endpoint_url: str | None, region: str | None,
              report_dir: Path, pushgateway: str | None, metrics_file: Path | None, no_upload: bool,
              deadline_minutes: int | None, jobs: int, work_dir: Path | None, as_json: bool) -> None:
    """Restore the newest backup set of --stack into a marked scratch database on its own server, check it, drop it,
    publish metrics and the report. Exit 0 passed, 1 failed (the report says why)."""
    from erpops import spec
    from erpops.backup.commands import _emit, _opts, _reporter, _target
    from erpops.cli import _root
    from erpops.pg import Pg

    sized = spec.load(stack, _root(ctx))
    d = sized.spec.drill
    deadline = (deadline_minutes or d.deadline_minutes) * 60
    t = _target(ctx, _opts(target=target, stack=stack, endpoint_url=endpoint_url, region=region))
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        report = run(t, sized=sized, pg=Pg.from_env(), report_dir=report_dir, deadline_seconds=deadline,
                     pushgateway=pushgateway or d.pushgateway, metrics_file=metrics_file, upload=not no_upload,
                     jobs=jobs, work_dir=work_dir, reporter=_reporter(as_json))
    finally:
        signal.signal(signal.SIGTERM, previous)

    def human(r: dict[str, Any]) -> None:
        click.echo(f"drill {stack}: {r['status'].upper()}" + (f": {r['reason']}" if r["reason"] else ""))
        for key, value in r["metrics"].items():
            click.echo(f"  {key} {value:g}")
        for problem in r["publish_problems"]:
            click.echo(f"  WARNING: {problem}")
        click.echo(f"  report: {r['report']['markdown']}")

    _emit(as_json, report, human)
    if report["interrupted"]:
        stopped = DrillInterrupted(f"drill of {stack} {report['reason']}; its scratch database was dropped "
                                   f"(report: {report['report']['markdown']})")
        stopped.json_printed = True  # type: ignore[attr-defined]
        raise stopped
    if not report["ok"]:
        failed = DrillFailed(f"drill of {stack} failed: {report['reason']} (report: {report['report']['markdown']})")
        failed.json_printed = True  # type: ignore[attr-defined]
        raise failed
    if report["publish_problems"]:
        raise ServiceError("the drill passed but could not be published: " + "; ".join(report["publish_problems"]))

