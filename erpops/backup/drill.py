"""`erpops drill --stack prod`: the stack proves, on a schedule and inside itself, that its newest backup restores.

The rehearse engine (erpops.backup.rehearse) run against the stack's own PostgreSQL server, or with
drill.target: cluster against the drill's own small cluster (PGHOST erpops-drill-pg-rw; a server that holds the
live database is then refused: the drill was pointed at the live server):

1. Leftovers first: scratch databases of an earlier drill that was killed half-way carry a marker
   (erpops.backup.scratch) and are dropped when their maker is gone.
2. The newest complete set of the stack (verified or not: the drill verifies it itself, every byte
   against the manifest) is restored into a scratch database `<db>_drill_<YYYYmmddHHMMSS>`, marked
   the moment it exists, neutralized, checked (row counts against the manifest, the filestore's
   sha256, nothing live left, pg.connect on the copy), then dropped.
3. Odoo login (drill.odoo_login): a dedicated drill user in the copy, with no group but base.group_user and a
   random one-time password (stored as Odoo stores it, a passlib pbkdf2_sha512 hash), logs in through the stack's
   own Odoo image, run beside the drill on 127.0.0.1 (the CronJob's sidecar) with dbfilter on the scratch
   databases only; /web/session/authenticate must answer the drill user's uid in the scratch database. A step
   of the RTO (odoo_login) and a check of its own.
4. The live database is never a target: refused by name, and by OID before every drop.
5. The verdict is published: Prometheus metrics (success, RTO per step and total, RPO at the time of
   the drill, the set's age and id) pushed to a Pushgateway and/or written as a textfile, and the
   report as JSON and Markdown into the backup bucket under `<stack>/drills/` (and --report-dir).

Exit 0 when the drill passed; 1 when it ran and failed (a corrupt or missing set, a check, RPO or
RTO missed: the report and the metrics say why); 2 bad usage; 3 a service is unreachable before
the drill could start, or the result could not be published; 143 SIGTERM (the Job's deadline): the
scratch database is dropped on the way out and the failure is published.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from erpops.backup import scratch
from erpops.backup.leftovers import Terminated
from erpops.errors import ErpopsError, PreflightError, ServiceError, UsageError
from erpops.options import backup_target_options

PURPOSE = "drill"
METRIC_PREFIX = "erpops_drill"
PUSH_JOB = "erpops_drill"
DEFAULT_DEADLINE_SECONDS = 3 * 3600
DB_INFIX = "_drill_"
# drill.odoo_login: the Odoo sidecar of the CronJob's pod (infra/derive.py drill_odoo_sidecar)
DEFAULT_ODOO_URL = "http://127.0.0.1:8069"
DEFAULT_ODOO_WAIT_SECONDS = 600
ODOO_DRILL_LOGIN = "__erpops_drill__"
# Odoo's res_users._crypt_context: passlib CryptContext(['pbkdf2_sha512', 'plaintext'], pbkdf2_sha512__rounds=
# max(MIN_ROUNDS, password.hashing.rounds)), MIN_ROUNDS = 600_000 in 17.0 and 18.0
ODOO_HASH_ROUNDS = 600_000
ODOO_HASH_SALT_BYTES = 16  # passlib's pbkdf2_sha512 default salt size


class DrillFailed(ErpopsError):
    """The drill ran and its verdict is a failure (the report and the metrics say why)."""

    exit_code = 1


class DrillInterrupted(ErpopsError):
    """SIGTERM (the Job's deadline, a node drain): what was built is dropped on the way out (exit 143, as
    erpops.cli exits on SIGTERM)."""

    exit_code = 143


class DrillSignal(Terminated):
    """What the SIGTERM handler raises in the middle of the drill. A BaseException, never an Exception:
    libraries catch Exception where a signal may land (botocore turns one raised inside an HTTP send into a
    retried HTTPClientError), and a signal swallowed there let the drill run on with SIGTERM ignored."""


def drill_db_name(db: str, when: datetime) -> str:
    suffix = f"{DB_INFIX}{when.astimezone(UTC):%Y%m%d%H%M%S}"
    return db[: 63 - len(suffix)] + suffix


def drill_db_pattern(db: str) -> str:
    """The regular expression of every scratch database name of live database db (Odoo's dbfilter)."""
    prefix = db[: 63 - len(DB_INFIX) - 14]
    return f"^{re.escape(prefix)}{DB_INFIX}[0-9]{{14}}$"


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
    "odoo_login_success": "1 when the drill user logged in to the restored copy through Odoo, else 0 (absent when "
                          "drill.odoo_login is off)",
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
    login = [c for c in report.get("checks", []) if c["name"] == "odoo_login" and c["status"] != "skipped"]
    if login:
        out.append(("odoo_login_success", {}, 1.0 if login[0]["status"] == "passed" else 0.0))
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
# Odoo login with a drill user
# --------------------------------------------------------------------------------------------

def _ab64(raw: bytes) -> str:
    """passlib's adapted base64: standard alphabet with '.' for '+', no padding."""
    return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")


def odoo_password_hash(password: str, rounds: int = ODOO_HASH_ROUNDS, salt: bytes | None = None) -> str:
    """What Odoo stores in res_users.password: `$pbkdf2-sha512$<rounds>$<salt>$<checksum>` (passlib's format)."""
    salt = salt if salt is not None else secrets.token_bytes(ODOO_HASH_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"$pbkdf2-sha512${rounds}${_ab64(salt)}${_ab64(digest)}"


class OdooLoginFailed(ErpopsError):
    """The Odoo login check did not pass (the message says why)."""

    exit_code = 1


def set_drill_user(pg: Any, db: str, password_hash: str, login: str = ODOO_DRILL_LOGIN) -> int:
    """Create (or take over) the drill user in the scratch copy db: active, internal (share false), member of
    base.group_user only, in the admin's company, with password_hash. Returns its id. Plain SQL on the copy:
    no Odoo runs here, and the copy is dropped with it at the end of the drill."""
    from erpops.pg import quote_literal as lit

    columns = set(pg.psql("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                          "AND table_name = 'res_users'", db).split())
    if not {"login", "password", "partner_id", "company_id"} <= columns:
        raise OdooLoginFailed(f"{db} has no Odoo res_users table with login and password: not an Odoo database")
    now = "(now() AT TIME ZONE 'UTC')"
    extra = {"share": "false", "notification_type": "'email'"}  # mail's NOT NULL column, when installed
    cols = ["login", "password", "active", "partner_id", "company_id", "create_date", "write_date",
            *[c for c in extra if c in columns]]
    vals = [lit(login), lit(password_hash), "true", "p.id", "p.company_id", now, now,
            *[v for c, v in extra.items() if c in columns]]
    xmlid = ("SELECT res_id FROM ir_model_data WHERE module = 'base' AND model = '{}' AND name = '{}'").format
    sql = f"""
BEGIN;
WITH admin AS (
    SELECT u.company_id, p.lang, p.tz FROM res_users u JOIN res_partner p ON p.id = u.partner_id
    WHERE u.id = ({xmlid('res.users', 'user_admin')})
), p AS (
    INSERT INTO res_partner (name, type, active, company_id, lang, tz, create_date, write_date)
    SELECT 'erpops restore drill', 'contact', true, company_id, lang, tz, {now}, {now} FROM admin
    WHERE NOT EXISTS (SELECT 1 FROM res_users WHERE login = {lit(login)})
    RETURNING id, company_id
)
INSERT INTO res_users ({", ".join(cols)}) SELECT {", ".join(vals)} FROM p;
UPDATE res_users SET password = {lit(password_hash)}, active = true WHERE login = {lit(login)};
UPDATE res_partner SET commercial_partner_id = id
    WHERE id = (SELECT partner_id FROM res_users WHERE login = {lit(login)}) AND commercial_partner_id IS NULL;
DELETE FROM res_groups_users_rel WHERE uid = (SELECT id FROM res_users WHERE login = {lit(login)});
INSERT INTO res_groups_users_rel (gid, uid)
    SELECT ({xmlid('res.groups', 'group_user')}), id FROM res_users WHERE login = {lit(login)};
INSERT INTO res_company_users_rel (cid, user_id)
    SELECT u.company_id, u.id FROM res_users u WHERE u.login = {lit(login)} AND NOT EXISTS (
        SELECT 1 FROM res_company_users_rel r WHERE r.cid = u.company_id AND r.user_id = u.id);
COMMIT;
SELECT id FROM res_users WHERE login = {lit(login)};
"""
    out = pg.psql(sql, db).split()
    if not out or not out[-1].isdigit():
        raise OdooLoginFailed(f"the drill user could not be made in {db}: no base.user_admin to take the company "
                              "from")
    return int(out[-1])


def _jsonrpc(url: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": params}).encode()
    req = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 (loopback Odoo sidecar)
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback Odoo sidecar)
        return json.loads(resp.read())


def wait_for_odoo(url: str, wait_seconds: float) -> str:
    """Poll version_info (auth none, no database) until Odoo answers; its server_version. OdooLoginFailed after
    wait_seconds."""
    deadline = time.monotonic() + wait_seconds
    last = "no answer yet"
    while True:
        try:
            answer = _jsonrpc(f"{url.rstrip('/')}/web/webclient/version_info", {}, timeout=10)
            if isinstance(answer.get("result"), dict):
                return str(answer["result"].get("server_version", "?"))
            last = f"answered {answer.get('error') or answer}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise OdooLoginFailed(f"Odoo at {url} did not answer within {wait_seconds:g} s ({last}): is the drill's "
                                  "Odoo sidecar running (kubectl logs <pod> -c odoo)?")
        time.sleep(1.0)


def odoo_login(pg: Any, db: str, url: str, wait_seconds: float = DEFAULT_ODOO_WAIT_SECONDS) -> dict[str, Any]:
    """The login check: the drill user gets a random one-time password in db, then logs in through Odoo at url.
    Returns {uid, db, server_version}; OdooLoginFailed with Odoo's own answer when it refuses."""
    password = secrets.token_urlsafe(32)  # never logged, never stored but as its hash in the copy
    uid = set_drill_user(pg, db, odoo_password_hash(password))
    version = wait_for_odoo(url, wait_seconds)
    try:
        # the first login loads the copy's registry: minutes on a large database
        answer = _jsonrpc(f"{url.rstrip('/')}/web/session/authenticate",
                          {"db": db, "login": ODOO_DRILL_LOGIN, "password": password}, timeout=max(wait_seconds, 60))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise OdooLoginFailed(f"/web/session/authenticate on {url} failed: {getattr(exc, 'reason', exc)}") from None
    if answer.get("error"):
        data = answer["error"].get("data") or {}
        raise OdooLoginFailed(f"Odoo refused the drill user's login to {db}: {data.get('name', 'error')}: "
                              f"{data.get('message') or answer['error'].get('message')}")
    result = answer.get("result") or {}
    if not result.get("uid"):  # Odoo answers {'uid': None} when a second factor is required
        raise OdooLoginFailed(f"Odoo answered uid {result.get('uid')!r} for the drill user in {db} (a second factor "
                              "required?)")
    if result.get("uid") != uid or result.get("db") != db:
        raise OdooLoginFailed(f"Odoo logged in uid {result.get('uid')} to {result.get('db')}, expected the drill "
                              f"user {uid} in {db}")
    return {"uid": uid, "db": db, "server_version": result.get("server_version") or version}


def _login_step(report: dict[str, Any], pg: Any, db: str, odoo_url: str | None, wait_seconds: float,
                reporter: Any) -> None:
    """Run the login check into the report: a check, the RTO step odoo_login, the verdict."""
    from erpops.backup.rehearse import check_entry as _check

    if odoo_url is None:
        report["checks"].append(_check("odoo_login", None, "drill.odoo_login is off: no Odoo login was tried"))
        return
    t0 = time.monotonic()
    try:
        found = odoo_login(pg, db, odoo_url, wait_seconds)
        check = _check("odoo_login", True, f"{ODOO_DRILL_LOGIN} (uid {found['uid']}, base.group_user only) logged "
                                           f"in to {db} through Odoo {found['server_version']} at {odoo_url}",
                       **found)
        reporter.note(check["detail"])
    except ErpopsError as exc:
        check = _check("odoo_login", False, str(exc).splitlines()[0])
    seconds = round(time.monotonic() - t0, 3)
    report["checks"].append(check)
    rto = report["rto"]
    rto["steps"]["odoo_login"] = seconds
    rto["total_seconds"] = round(rto["total_seconds"] + seconds, 3)
    rto["actual_minutes"] = round(rto["total_seconds"] / 60, 2)
    if check["status"] == "failed":
        report["failures"].append(f"check odoo_login failed: {check['detail']}")
    if rto["met"] and rto["total_seconds"] > rto["objective_minutes"] * 60:
        rto["met"] = False
        report["failures"].append(f"RTO missed: the drill took {rto['actual_minutes']:g} min with the Odoo login, "
                                  f"the objective is {rto['objective_minutes']} min")


# --------------------------------------------------------------------------------------------
# The drill
# --------------------------------------------------------------------------------------------

_signals: list[str] = []  # names of the signals that interrupted the running drill


# Modules whose code holds a lock across lines: an exception raised inside them can leave the lock taken, and the
# next thread to log (a transfer thread, the reporter) then blocks the cleanup until the kubelet's SIGKILL
_LOCK_HOLDERS = frozenset({"logging", "logging.handlers", "threading", "queue"})
_DEFER_SECONDS = 0.05


def _holds_a_lock(frame: Any) -> bool:
    """Inside lock handling, or a finalizer (an exception raised in __del__ is printed and dropped)."""
    return frame is not None and (frame.f_globals.get("__name__") in _LOCK_HOLDERS
                                  or frame.f_code.co_name == "__del__")


def _raise_interrupted(signum: int, frame: Any) -> None:
    if not _signals:
        _signals.append(signal.Signals(signum).name)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup short
    if _holds_a_lock(frame):  # not inside logging's or threading's lock handling: raise a moment later
        signal.signal(signal.SIGALRM, _raise_interrupted)
        signal.setitimer(signal.ITIMER_REAL, _DEFER_SECONDS)
        return
    raise DrillSignal(f"drill interrupted by {_signals[0]}")


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
    odoo_url: str | None = None,
    odoo_wait_seconds: float = DEFAULT_ODOO_WAIT_SECONDS,
    scratch_cluster: bool = False,
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
        "drill_target": "cluster" if scratch_cluster else "server",
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
        if scratch_cluster and guard.oid is not None:
            raise PreflightError([f"drill.target is cluster, but {pg.host}:{pg.port} holds the live database "
                                  f"{guard.name}: PGHOST names the live server, not the drill's own cluster "
                                  "(erpops-drill-pg-rw); nothing was restored"], f"drill of {stack}")
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
        if r["restored"] and r["error"] is None:  # the copy is there (keep=True): log in to it
            _login_step(report, pg, name, odoo_url, odoo_wait_seconds, reporter)
            r["failures"] = list(report["failures"])
            r["ok"] = not report["failures"]
            r["status"] = "passed" if r["ok"] else "failed"
        if r["error"]:
            report["reason"] = f"the set did not restore: {r['error']['error_type']}: " \
                               f"{r['error']['message'].splitlines()[0]}"
        elif report["failures"]:
            report["reason"] = "; ".join(report["failures"])
        report["ok"] = r["status"] == "passed"
    except (PreflightError, UsageError) as exc:
        report["reason"] = str(exc).splitlines()[-1].strip(" -")
        report["failures"].append(report["reason"])
    except ErpopsError as exc:  # a service failed mid-way: a failed drill, reported as such
        report["reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        report["failures"].append(report["reason"])
    except DrillSignal:
        pass  # what was built rolled back on the way here; _signals names the signal for the report below
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
        + (f"the live database `{r['live']['db']}` (OID {r['live']['oid']}) was not touched"
           if r["live"]["oid"] is not None else f"the live database `{r['live']['db']}` is not on this server"),
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
@click.option("--odoo-url", envvar="ERPOPS_DRILL_ODOO_URL", default=None,
              help=f"Odoo the drill user logs in through (default with drill.odoo_login: {DEFAULT_ODOO_URL}, the "
                   "CronJob's sidecar).")
@click.option("--no-odoo-login", is_flag=True, help="Skip the Odoo login check (reported as skipped).")
@click.option("--odoo-wait", "odoo_wait", type=click.IntRange(1, 24 * 3600), default=DEFAULT_ODOO_WAIT_SECONDS,
              show_default=True, help="Seconds to wait for Odoo to answer before the login check fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object on stdout.")
@click.pass_context
def drill_cmd(ctx: click.Context, stack: str, target: str | None, endpoint_url: str | None, region: str | None,
              report_dir: Path, pushgateway: str | None, metrics_file: Path | None, no_upload: bool,
              deadline_minutes: int | None, jobs: int, work_dir: Path | None, odoo_url: str | None,
              no_odoo_login: bool, odoo_wait: int, as_json: bool) -> None:
    """Restore the newest backup set of --stack into a marked scratch database on its own server, check it, drop it,
    publish metrics and the report. Exit 0 passed, 1 failed (the report says why)."""
    from erpops import spec
    from erpops.backup.commands import cli_reporter as _reporter
    from erpops.backup.commands import cli_target as _target
    from erpops.backup.commands import emit as _emit
    from erpops.backup.commands import project_root as _root
    from erpops.backup.commands import target_opts as _opts
    from erpops.pg import Pg

    sized = spec.load(stack, _root(ctx))
    d = sized.spec.drill
    deadline = (deadline_minutes or d.deadline_minutes) * 60
    t = _target(ctx, _opts(target=target, stack=stack, endpoint_url=endpoint_url, region=region))
    login_url = None if no_odoo_login or not d.odoo_login else (odoo_url or DEFAULT_ODOO_URL)
    if login_url is not None and not re.fullmatch(r"https?://[^/\s]+/?", login_url):
        raise UsageError(f"--odoo-url {login_url!r} is not an Odoo base URL: write it as http(s)://host[:port]")
    previous, previous_alarm = signal.signal(signal.SIGTERM, _raise_interrupted), signal.getsignal(signal.SIGALRM)
    try:
        report = run(t, sized=sized, pg=Pg.from_env(), report_dir=report_dir, deadline_seconds=deadline,
                     scratch_cluster=d.target == "cluster",
                     pushgateway=pushgateway or d.pushgateway, metrics_file=metrics_file, upload=not no_upload,
                     jobs=jobs, work_dir=work_dir, reporter=_reporter(as_json), odoo_url=login_url,
                     odoo_wait_seconds=odoo_wait)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGTERM, previous)
        if previous_alarm is not None:
            signal.signal(signal.SIGALRM, previous_alarm)

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

