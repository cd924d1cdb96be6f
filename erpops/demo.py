"""`erpops demo`: a local rehearsal of the SRE loop on embedded defaults, with real servers.

Starts PostgreSQL 15, Redis and an S3 endpoint on loopback (erpops.local), loads an Odoo
database (the Odoo 17 fixture zip when it is beside the project, else a small Odoo-shaped
database made here), then runs the real `erpops` commands one after the other, as an SRE would:
backup to S3 -> verify -> restore into a new, neutralized database -> health checks. Each step
is a subprocess of the same CLI, so the demo exercises exactly what users run. Everything is
stopped and removed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from erpops import spec
from erpops.errors import OperationFailed, SpecError
from erpops.jsonout import json_errors
from erpops.pg import Pg

DEMO_STACK = "dev"  # its spec gives the rehearsal's RPO and RTO; everything runs on the local servers
FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "odoo17-mfg.zip"

# Odoo's base tables in their minimal shape: enough for backup, restore, neutralization, health.
ODOO_BASE_SQL = """
CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar NOT NULL, state varchar,
                               latest_version varchar);
INSERT INTO ir_module_module (name, state, latest_version)
  VALUES ('base', 'installed', '17.0.1.3'), ('mrp', 'installed', '17.0.2.0');
CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar UNIQUE NOT NULL, value text);
INSERT INTO ir_config_parameter (key, value)
  VALUES ('database.uuid', gen_random_uuid()::text), ('database.secret', md5(random()::text));
CREATE TABLE ir_mail_server (id serial PRIMARY KEY, name varchar, smtp_host varchar, smtp_port int,
                             active boolean);
INSERT INTO ir_mail_server (name, smtp_host, smtp_port, active)
  VALUES ('Production SMTP', 'smtp.example.com', 587, true);
CREATE TABLE ir_cron (id serial PRIMARY KEY, cron_name varchar, active boolean, nextcall timestamp,
                      interval_number int, interval_type varchar);
INSERT INTO ir_cron (cron_name, active, nextcall, interval_number, interval_type)
  SELECT 'job ' || g, true, now() + interval '1 hour', 1, 'hours' FROM generate_series(1, 5) g;
"""
_DEMO_DATA_SQL = """
CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar NOT NULL);
INSERT INTO res_partner (name) SELECT 'Partner ' || g FROM generate_series(1, 200) g;
CREATE TABLE mrp_production (id serial PRIMARY KEY, name varchar, state varchar);
INSERT INTO mrp_production (name, state) SELECT 'WH/MO/' || g, 'confirmed' FROM generate_series(1, 50) g;
"""


def _run(step: str, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "erpops.cli", *argv], env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - started
    try:
        result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        result = {"output": proc.stdout}
    # health answers like a Nagios plugin: WARN (1) and CRIT (2) are results to show, not demo failures;
    # a rehearsal that completed but missed an objective (1) is shown too
    if proc.returncode != 0 and not ((step == "health" and proc.returncode in (1, 2))
                                     or (step == "rehearse" and proc.returncode == 1 and "rpo" in result)):
        message = result.get("error") or proc.stderr.strip()[-2000:]
        raise OperationFailed(f"demo step {step!r} failed (exit {proc.returncode}): {message}")
    _say(f"  {step:<10} {seconds:6.1f} s  exit {proc.returncode}")
    return result


# with --json the summary for people goes to stderr and stdout carries one JSON envelope only
_TO_STDERR = False


def _say(line: str) -> None:
    click.echo(line, err=_TO_STDERR)


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _load_database(pg: Pg, env: dict[str, str], filestore: Path, use_fixture: bool) -> tuple[str, str]:
    if use_fixture:
        from erpops.backup.odoozip import import_odoo_zip

        import_odoo_zip(FIXTURE, pg, "mfg", filestore)
        return "mfg", f"the Odoo 17 fixture ({FIXTURE.name})"
    pg.create_database("demo")
    pg.psql(ODOO_BASE_SQL + _DEMO_DATA_SQL, db="demo")
    (filestore / "demo").mkdir(parents=True)
    return "demo", "a small Odoo-shaped database made by the demo (the Odoo fixture zip is absent)"


@click.command("demo")
@click.option("--fixture/--no-fixture", default=True, show_default=True,
              help="Use the Odoo 17 fixture zip from ../shared/fixtures when it is there.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (docs/json-output.md) on stdout; the summary goes to stderr.")
@json_errors
def demo(fixture: bool, as_json: bool) -> None:
    """Rehearse backup -> verify -> restore (neutralized) -> health on real local servers."""
    from erpops.jsonout import envelope
    from erpops.local import LocalStack

    global _TO_STDERR
    _TO_STDERR = as_json

    started = time.monotonic()
    try:
        root = spec.find_root()
    except SpecError:
        root = Path.cwd()
    out_dir = root / "out" / "demo"
    with tempfile.TemporaryDirectory(prefix="erpops-demo-") as tmp, LocalStack() as stack:
        work = Path(tmp)
        filestore = work / "filestore"
        filestore.mkdir()
        os.chown(filestore, os.getuid(), os.getgid())
        pg = Pg.from_local(stack.pg)
        env = {**os.environ, **stack.env(), "ERPOPS_BACKUP_TARGET": "s3://erpops-demo-backups/demo",
               "ERPOPS_S3_ENDPOINT_URL": stack.s3.endpoint_url}
        stack.s3.client().create_bucket(Bucket="erpops-demo-backups")
        _say(f"local services: PostgreSQL {stack.pg.port}, Redis {stack.redis.port}, "
                   f"S3 {stack.s3.endpoint_url}")
        db, what = _load_database(pg, env, filestore, fixture and FIXTURE.is_file())
        _say(f"database {db!r}: {what}")
        target = env["ERPOPS_BACKUP_TARGET"]
        made = _run("backup", ["backup", "--db", db, "--stack", DEMO_STACK, "--filestore", str(filestore), "--json"],
                    env)
        set_id = made["set_id"]
        _run("verify", ["verify", set_id, "--json"], env)
        restored = _run("restore", ["restore", set_id, "--to", f"{db}_restored", "--filestore",
                                    str(work / "restored"), "--neutralize", "--json"], env)
        checks = _run("health", ["health", "--pg-db", f"{db}_restored", "--no-host", "--json"], env)
        reports = out_dir / "rehearsal"
        rehearsal = _run("rehearse", ["rehearse", "--from", DEMO_STACK, "--to", DEMO_STACK, "--target", target,
                                      "--report-dir", str(reports), "--json"], env)
        counts = ", ".join(f"{table} {n}" for table, n in restored.get("row_counts", {}).items() if n is not None)
        states: dict[str, int] = {}
        for check in checks.get("checks", []):
            states[check.get("state", "?")] = states.get(check.get("state", "?"), 0) + 1
        rpo, rto = rehearsal.get("rpo") or {}, rehearsal.get("rto") or {}
        _say("")
        _say(f"backup    set {set_id}: {_size(made['artifacts'][0]['size'])} of dump, "
                   f"{made['filestore']['count']} filestore files")
        _say(f"restore   {db}_restored, neutralized {'yes' if restored.get('neutralized') else 'no'}: {counts}")
        _say("health    " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))
        for check in checks.get("checks", []):
            if check.get("state") != "OK":
                _say(f"          {check['state']} {check['check']}: {check['message']}")
        _say(f"rehearsal {str(rehearsal.get('status', '?')).upper()}: RPO {rpo.get('actual_minutes', '?'):g} min "
                   f"of {rpo.get('objective_minutes')} ({'met' if rpo.get('met') else 'MISSED'}), RTO "
                   f"{rto.get('actual_minutes', 0):g} min of {rto.get('objective_minutes')} "
                   f"({'met' if rto.get('met') else 'MISSED'})")
        _say("")
        _say(f"done in {time.monotonic() - started:.0f} s. The rehearsal report: "
                   f"{(rehearsal.get('report') or {}).get('markdown', reports)}")
        rendered = root / "out" / "render"
        if rendered.is_dir():
            _say(f"The objects `pulumi up` would create, per stack: {rendered}/<stack>/")
        _say("Next: runbooks/backup-restore.md (the same steps on a stack, with Ansible), "
                   "runbooks/provisioning.md (a real cluster), ./run test (the whole suite).")
        if as_json:
            click.echo(json.dumps(envelope({
                "database": db, "set_id": set_id, "backup": made, "restore": restored,
                "health": {"states": states, "checks": checks.get("checks", [])}, "rehearsal": rehearsal,
                "seconds": round(time.monotonic() - started, 1),
                "rendered": str(rendered) if rendered.is_dir() else None}, command="erpops demo"), indent=2,
                default=str))
