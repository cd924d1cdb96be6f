"""`erpops drill`: the stack's newest set restored into a marked scratch database on its own server, checked,
dropped, its metrics pushed to a real Pushgateway and its report put in the backup bucket.

Real PostgreSQL 15, a real S3 API (moto), the real Odoo 17 fixture, and Debian's prometheus-pushgateway
binary (skipped with the reason when it is not installed). The project is a temp directory with the
repository's Pulumi.yaml and Pulumi.prod.yaml, prod's live database and backup bucket pointed at the test's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from erpops.backup import drill as drill_mod
from erpops.backup import engine, scratch
from erpops.backup import manifest as mf
from erpops.backup.drill import drill_cmd, drill_db_pattern
from erpops.backup.odoozip import import_odoo_zip
from erpops.backup.storage import open_target
from erpops.errors import ErpopsError, PreflightError
from erpops.local import LocalPostgres, LocalS3
from erpops.local._proc import free_port, log_tail, port_open, spawn, stop_group
from erpops.pg import Pg, client_bin
from loadtests.testing.odoo_double import OdooDouble

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

REPO = Path(__file__).resolve().parents[2]
BUCKET = "erpops-drill-prod-backups"
LIVE = "dr_prod"
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


def run_cli(args: list[str], env: dict[str, str], root: Path) -> tuple[int, Any, str]:
    @click.group("erpops")
    @click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None)
    @click.pass_context
    def group(ctx: click.Context, root: Path | None) -> None:
        ctx.ensure_object(dict)
        ctx.obj["root"] = root

    group.add_command(drill_cmd)
    result = CliRunner().invoke(group, ["--root", str(root), *args], env=env)
    exc = result.exception
    code = exc.exit_code if isinstance(exc, ErpopsError) else result.exit_code
    if exc is not None and not isinstance(exc, ErpopsError | SystemExit):
        raise exc
    return code, json.loads(result.stdout) if "--json" in args and result.stdout.strip() else result.stdout, \
        result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    prod = yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())
    s = prod["config"]["erpops:spec"]
    s["object_storage"]["backup_bucket"] = BUCKET
    s["odoo"]["database"] = LIVE
    s["odoo"]["dbfilter"] = f"^{LIVE}$"
    (root / "Pulumi.prod.yaml").write_text(yaml.safe_dump(prod))
    return root


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PUSHGATEWAY is None:
        pytest.skip("no Pushgateway binary: apt-get install prometheus-pushgateway")
    work = tmp_path_factory.mktemp("pushgateway")
    port = free_port()
    proc = spawn([PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"], log_path=work / "log", cwd=work)
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        assert proc.poll() is None and time.monotonic() < deadline, log_tail(work / "log")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    stop_group(proc)


def scraped(url: str) -> dict[str, float]:
    """What Prometheus would scrape from the Pushgateway: erpops_drill_* samples of stack prod."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:  # noqa: S310
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("erpops_drill_") and 'stack="prod"' in line:
            name, value = line.rsplit(" ", 1)
            name = re.sub(r'(,?)(instance|job|stack)="[^"]*"', "", name).replace("{,", "{").replace("{}", "")
            out[name] = float(value)
    return out


DRILL_ROLE = "dr_drill"


@pytest.fixture(scope="module")
def env(pg: LocalPostgres, aws: LocalS3) -> Iterator[dict[str, str]]:
    """Every drill runs as a role like the one CloudNativePG makes for it (infra/derive.py drill_role):
    LOGIN CREATEDB, nothing else; not a superuser, not the live database's owner."""
    server = Pg.from_local(pg)
    server.psql(f"CREATE ROLE {DRILL_ROLE} LOGIN CREATEDB NOSUPERUSER NOCREATEROLE INHERIT CONNECTION LIMIT 5")
    yield {**pg.env(), "PGUSER": DRILL_ROLE, "ERPOPS_S3_ENDPOINT_URL": aws.endpoint_url, "ERPOPS_BACKUP_TARGET": ""}
    for db in drill_dbs(server):
        engine.drop_database(server, db)
    server.psql(f"DROP ROLE IF EXISTS {DRILL_ROLE}")


@pytest.fixture(scope="module")
def live(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory, odoo_fixture: Path) -> dict[str, Any]:
    """The fixture as prod's live database, and one set of it in s3://<bucket>/prod (not verified)."""
    root = tmp_path_factory.mktemp("dr-data") / "filestore"
    server = Pg.from_local(pg)
    import_odoo_zip(odoo_fixture, server, LIVE, root)
    return {"pg": server, "root": root, "oid": scratch.database_oid(server, LIVE)}


@pytest.fixture(scope="module")
def odoo(pg: LocalPostgres) -> Iterator[OdooDouble]:
    """The drill's Odoo sidecar: the double, reading res_users of the scratch copy through the drill's role, with
    the CronJob's dbfilter (only this stack's scratch databases)."""
    with OdooDouble(base_ms=0, jitter_ms=0, pg=Pg(pg.host, pg.port, DRILL_ROLE),
                    dbfilter=drill_db_pattern(LIVE)) as double:
        yield double


def make_set(live: dict[str, Any], url: str, endpoint: str) -> tuple[Any, str]:
    target = open_target(url, endpoint_url=endpoint)
    return target, engine.backup(target, live["pg"], LIVE, stack="prod", filestore=str(live["root"]))["set_id"]


def drill_dbs(pg: Pg) -> list[str]:
    return [d for d in pg.psql("SELECT datname FROM pg_database").split() if "_drill_" in d]


def test_drill_restores_checks_drops_and_publishes(env: dict[str, str], project: Path, live: dict[str, Any],
                                                  aws: LocalS3, pushgateway: str, odoo: OdooDouble,
                                                  tmp_path: Path) -> None:
    target, set_id = make_set(live, f"s3://{BUCKET}/prod", aws.endpoint_url)
    logins = odoo.counts["session:authenticate"]
    code, r, err = run_cli(["drill", "--stack", "prod", "--pushgateway", pushgateway, "--metrics-file",
                            str(tmp_path / "drill.prom"), "--report-dir", str(tmp_path / "reports"),
                            "--odoo-url", odoo.url, "--json"], env, project)
    print(f"\ndrill: {r and r['reason']}\nmetrics: {r and r['metrics']}")
    assert code == 0, (r, err)
    assert r["ok"] and r["status"] == "passed" and r["reason"] is None
    assert r["set"]["set_id"] == set_id and r["target"] == f"s3://{BUCKET}/prod"
    assert re.fullmatch(rf"{LIVE}_drill_\d{{14}}", r["db"]) and r["dropped"] is True
    assert drill_dbs(live["pg"]) == []
    checks = {c["name"]: c["status"] for c in r["checks"]}
    assert {k: checks[k] for k in ("neutralized", "row_counts", "filestore", "health:pg.connect", "odoo_login")} == \
        dict.fromkeys(("neutralized", "row_counts", "filestore", "health:pg.connect", "odoo_login"), "passed")
    # the drill user logged in through Odoo, in the scratch copy, with the uid the drill gave it
    login = next(c for c in r["checks"] if c["name"] == "odoo_login")
    assert login["db"] == r["db"] and login["uid"] > 2 and odoo.counts["session:authenticate"] == logins + 1
    assert r["rto"]["steps"]["odoo_login"] > 0 and "odoo_login" in Path(r["report"]["markdown"]).read_text()
    # the double kept a session open on the copy, as Odoo's registry does: the drop (dropped, above) ended it
    # the live database: the same OID, still live (its mail server active), never a target
    assert r["live"] == {"db": LIVE, "oid": live["oid"]}
    assert scratch.database_oid(live["pg"], LIVE) == live["oid"]
    assert live["pg"].scalar("SELECT count(*) FROM ir_mail_server WHERE active", LIVE) == "1"
    # and the drill's role could not drop it even if the drill tried: PostgreSQL itself refuses
    as_drill = Pg(live["pg"].host, live["pg"].port, DRILL_ROLE)
    with pytest.raises(ErpopsError, match="must be owner"):
        as_drill.psql(f"DROP DATABASE {LIVE}")

    m = scraped(pushgateway)
    assert m["erpops_drill_success"] == 1
    assert m["erpops_drill_last_success_timestamp_seconds"] == m["erpops_drill_last_run_timestamp_seconds"] > 0
    assert m['erpops_drill_rto_seconds{step="total"}'] == r["rto"]["total_seconds"] > 0
    assert m['erpops_drill_rto_seconds{step="restore_db"}'] > 0
    assert m["erpops_drill_rto_objective_seconds"] == 120 * 60 and m["erpops_drill_rpo_objective_seconds"] == 3600
    assert 0 <= m["erpops_drill_rpo_seconds"] < 3600 and m["erpops_drill_set_age_seconds"] >= 0
    assert m[f'erpops_drill_set_info{{set_id="{set_id}"}}'] == 1 and m["erpops_drill_checks_failed"] == 0
    assert m["erpops_drill_odoo_login_success"] == 1 and m['erpops_drill_rto_seconds{step="odoo_login"}'] > 0
    textfile = (tmp_path / "drill.prom").read_text()
    assert 'erpops_drill_success{stack="prod"} 1' in textfile and "# TYPE erpops_drill_rto_seconds gauge" in textfile

    keys = sorted(k for k in target.list_keys("drills/"))
    assert [k.rsplit(".", 1)[1] for k in keys] == ["json", "md"]
    stored = json.loads(target.get_bytes(keys[0]))
    assert stored["status"] == "passed" and stored["set"]["set_id"] == set_id
    assert target.get_bytes(keys[1]).decode().startswith("# Restore drill prod: PASSED")
    for k in keys:
        target.delete(k)


def test_a_corrupted_set_fails_the_drill_with_the_reason_and_the_metrics(
        env: dict[str, str], project: Path, live: dict[str, Any], aws: LocalS3, pushgateway: str,
        tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/corrupt"
    target, set_id = make_set(live, url, aws.endpoint_url)
    dump_key = engine.load_manifest(target, set_id).dump.key
    data = bytearray(target.get_bytes(dump_key))
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the stored dump
    target.put_bytes(dump_key, bytes(data))
    before = scraped(pushgateway).get("erpops_drill_last_success_timestamp_seconds")

    code, r, err = run_cli(["drill", "--stack", "prod", "--target", url, "--pushgateway", pushgateway,
                            "--report-dir", str(tmp_path), "--no-odoo-login", "--json"], env, project)
    assert code == 1, (r, err)
    assert r["ok"] is False and r["status"] == "failed"
    assert r["reason"].startswith("the set did not restore: IntegrityError") and set_id in r["reason"]
    assert r["set"]["set_id"] == set_id and drill_dbs(live["pg"]) == []
    m = scraped(pushgateway)
    assert m["erpops_drill_success"] == 0 and m[f'erpops_drill_set_info{{set_id="{set_id}"}}'] == 1
    # a failure does not overwrite when a drill last passed (the "no success within N hours" alert reads it)
    assert m.get("erpops_drill_last_success_timestamp_seconds") == before
    stored = json.loads(target.get_bytes(next(k for k in target.list_keys("drills/") if k.endswith(".json"))))
    assert stored["status"] == "failed" and stored["reason"] == r["reason"]
    assert "**Reason:** the set did not restore: IntegrityError" in Path(r["report"]["markdown"]).read_text()


def _stalled_drill(tmp_path: Path, project: Path, url: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
    """A drill whose pg_restore never ends (a slow restore), in its own session; returns once its scratch
    database exists and carries the marker."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("psql", "pg_dump"):
        (bindir / tool).symlink_to(client_bin(tool))
    (bindir / "pg_restore").write_text("#!/bin/sh\nexec sleep 600\n")
    (bindir / "pg_restore").chmod(0o755)
    argv = [sys.executable, "-m", "erpops.cli", "--root", str(project), "drill", "--stack", "prod", "--target", url,
            "--no-upload", "--report-dir", str(tmp_path / "first"), "--no-odoo-login", *extra]
    return subprocess.Popen(argv, env={**os.environ, **env, "ERPOPS_PG_BINDIR": str(bindir)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_marked(pg: Pg, proc: subprocess.Popen) -> list[tuple[str, int, scratch.Marker]]:
    deadline = time.monotonic() + 300
    while not (found := [m for m in scratch.marked(pg) if m[2].pid == proc.pid]):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the drill never created its scratch database"
        time.sleep(0.2)
    return found


def test_sigterm_drops_the_scratch_database_on_the_way_out(env: dict[str, str], project: Path, live: dict[str, Any],
                                                           aws: LocalS3, pushgateway: str, tmp_path: Path) -> None:
    """The Job's deadline (or a drain) sends SIGTERM: the drill rolls back, reports why, exits 143."""
    url = f"s3://{BUCKET}/sigterm"
    make_set(live, url, aws.endpoint_url)
    proc = _stalled_drill(tmp_path, project, url, env, "--pushgateway", pushgateway, "--json")
    try:
        _wait_marked(live["pg"], proc)
        proc.send_signal(signal.SIGTERM)  # to the drill only, as the kubelet signals PID 1
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    r = json.loads(out)
    assert r["interrupted"] == "SIGTERM" and r["reason"].startswith("interrupted by SIGTERM") and not r["ok"]
    assert drill_dbs(live["pg"]) == [] and scratch.marked(live["pg"]) == []
    assert scraped(pushgateway)["erpops_drill_success"] == 0


def test_an_interrupted_drill_is_cleaned_up_by_the_next(env: dict[str, str], project: Path, live: dict[str, Any],
                                                        aws: LocalS3, pushgateway: str, tmp_path: Path) -> None:
    """The first drill is SIGKILLed while pg_restore runs (a pg_restore that never ends stands in for a slow one);
    its scratch database stays, marked; the next drill drops it and passes."""
    url = f"s3://{BUCKET}/interrupted"
    make_set(live, url, aws.endpoint_url)
    first = _stalled_drill(tmp_path, project, url, env)
    try:
        left = _wait_marked(live["pg"], first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    (left_db, left_oid, marker), = left
    assert live["pg"].database_exists(left_db) and marker.purpose == "drill" and marker.stack == "prod"

    code, r, err = run_cli(["drill", "--stack", "prod", "--target", url, "--no-upload", "--pushgateway", pushgateway,
                            "--report-dir", str(tmp_path / "second"), "--no-odoo-login", "--json"], env, project)
    assert code == 0, (r, err)
    assert [(d["db"], d["oid"]) for d in r["leftovers"]["dropped"]] == [(left_db, left_oid)]
    assert f"pid {first.pid}" in r["leftovers"]["dropped"][0]["why"]
    assert drill_dbs(live["pg"]) == [] and r["metrics"]['erpops_drill_leftovers_dropped'] == 1
    assert {c["name"]: c["status"] for c in r["checks"]}["odoo_login"] == "skipped"
    assert "erpops_drill_odoo_login_success" not in r["metrics"]
    assert scratch.database_oid(live["pg"], LIVE) == live["oid"]


def test_the_live_database_is_refused_by_name_and_by_oid(live: dict[str, Any]) -> None:
    pg: Pg = live["pg"]
    guard = scratch.LiveGuard.of(pg, LIVE)
    with pytest.raises(PreflightError, match="live database \\(by name\\)"):
        guard.refuse(pg, LIVE, "drill")
    pg.psql("CREATE DATABASE dr_other")
    # the same server object under another name (a rename since the guard was taken): refused by OID
    by_oid = scratch.LiveGuard("dr_renamed_live", scratch.database_oid(pg, "dr_other"))
    with pytest.raises(PreflightError, match="has the OID"):
        by_oid.refuse(pg, "dr_other", "drill")
    # an unmarked database is not the drill's to drop, even when it is not live
    with pytest.raises(PreflightError, match="carries no drill marker"):
        scratch.drop_marked(pg, "dr_other", "drill", "prod", guard)
    assert pg.database_exists("dr_other") and pg.database_exists(LIVE)
    # a marker of another host within its deadline is left alone
    scratch.mark(pg, "dr_other", scratch.Marker("drill", "prod", "another-pod", 1, mf.utc_iso(mf.parse_utc(
        "2026-01-01T00:00:00Z")), "2999-01-01T00:00:00Z"))
    dropped, left = scratch.clean_stale(pg, "drill", "prod", guard)
    assert dropped == [] and [x["db"] for x in left] == ["dr_other"]
    engine.drop_database(pg, "dr_other")


def _wrong_hash(pg: Any, db: str, password_hash: str, login: str = drill_mod.ODOO_DRILL_LOGIN) -> int:
    """The drill user stored with the hash of another password than the one the drill then logs in with."""
    return REAL_SET_DRILL_USER(pg, db, drill_mod.odoo_password_hash("not-the-one-time-password", rounds=1000), login)


def _no_user(pg: Any, db: str, password_hash: str, login: str = drill_mod.ODOO_DRILL_LOGIN) -> int:
    """No drill user made at all (the uid is made up): Odoo has nobody of that login."""
    return 999999


REAL_SET_DRILL_USER = drill_mod.set_drill_user


@pytest.mark.parametrize(("make_user", "why"), [
    pytest.param(_wrong_hash, "odoo.exceptions.AccessDenied: Access Denied", id="wrong-hash"),
    pytest.param(_no_user, "odoo.exceptions.AccessDenied: Access Denied", id="missing-user"),
])
def test_a_refused_odoo_login_fails_the_drill_with_the_reason(
        env: dict[str, str], project: Path, live: dict[str, Any], aws: LocalS3, pushgateway: str, odoo: OdooDouble,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_user: Any, why: str) -> None:
    url = f"s3://{BUCKET}/login-{make_user.__name__.strip('_')}"
    make_set(live, url, aws.endpoint_url)
    monkeypatch.setattr(drill_mod, "set_drill_user", make_user)
    code, r, err = run_cli(["drill", "--stack", "prod", "--target", url, "--no-upload", "--pushgateway", pushgateway,
                            "--report-dir", str(tmp_path), "--odoo-url", odoo.url, "--json"], env, project)
    assert code == 1, (r, err)
    assert r["ok"] is False and r["reason"].startswith("check odoo_login failed: Odoo refused the drill user's login")
    assert why in r["reason"] and r["db"] in r["reason"]
    # nothing else failed (advisory checks may warn): the login alone failed the drill, and the copy was dropped
    checks = {c["name"]: c["status"] for c in r["checks"]}
    assert checks.pop("odoo_login") == "failed" and set(checks.values()) <= {"passed", "skipped", "warning"}
    assert r["dropped"] is True and drill_dbs(live["pg"]) == []
    m = scraped(pushgateway)
    assert m["erpops_drill_success"] == 0 and m["erpops_drill_odoo_login_success"] == 0
    assert m["erpops_drill_checks_failed"] == 1
    assert "**Reason:** check odoo_login failed" in Path(r["report"]["markdown"]).read_text()


def test_no_odoo_answering_fails_the_login_check_after_the_wait(
        env: dict[str, str], project: Path, live: dict[str, Any], aws: LocalS3, tmp_path: Path) -> None:
    """The sidecar never came up (a port nothing listens on): the drill waits --odoo-wait seconds, then fails."""
    url = f"s3://{BUCKET}/login-down"
    make_set(live, url, aws.endpoint_url)
    code, r, err = run_cli(["drill", "--stack", "prod", "--target", url, "--no-upload", "--report-dir", str(tmp_path),
                            "--odoo-url", f"http://127.0.0.1:{free_port()}", "--odoo-wait", "2", "--json"], env,
                           project)
    assert code == 1, (r, err)
    assert "did not answer within 2 s" in r["reason"] and "kubectl logs" in r["reason"]
    assert drill_dbs(live["pg"]) == []


def test_the_odoo_double_refuses_a_database_outside_the_drill_filter(odoo: OdooDouble, live: dict[str, Any]) -> None:
    """The sidecar's dbfilter admits only scratch databases: the live database is "not found", whatever the
    credentials, as Odoo answers a database its dbfilter hides."""
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1,
                       "params": {"db": LIVE, "login": "admin", "password": "admin"}}).encode()
    req = urllib.request.Request(f"{odoo.url}/web/session/authenticate", data=body,  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        answer = json.loads(resp.read())
    assert answer["error"]["data"]["name"] == "odoo.exceptions.AccessError"
    assert answer["error"]["data"]["message"] == "Database not found."


@pytest.fixture(scope="module")
def cluster_project(tmp_path_factory: pytest.TempPathFactory, project: Path) -> Path:
    """prod with drill.target: cluster."""
    root = tmp_path_factory.mktemp("project-cluster")
    shutil.copy(project / "Pulumi.yaml", root / "Pulumi.yaml")
    prod = yaml.safe_load((project / "Pulumi.prod.yaml").read_text())
    prod["config"]["erpops:spec"]["drill"]["target"] = "cluster"
    (root / "Pulumi.prod.yaml").write_text(yaml.safe_dump(prod))
    return root


def test_a_scratch_cluster_drill_restores_on_its_own_server_and_never_the_live_one(
        env: dict[str, str], cluster_project: Path, live: dict[str, Any], aws: LocalS3, pushgateway: str,
        tmp_path: Path) -> None:
    """drill.target: cluster. A second real PostgreSQL stands in for erpops-drill-pg (the drill's role made there as
    CloudNativePG makes it); the drill restores, logs in and drops there. Pointed at the live server instead, it
    refuses before restoring anything."""
    url = f"s3://{BUCKET}/cluster"
    make_set(live, url, aws.endpoint_url)
    before = live["pg"].psql("SELECT datname FROM pg_database ORDER BY 1")
    code, r, err = run_cli(["drill", "--stack", "prod", "--target", url, "--no-upload", "--report-dir",
                            str(tmp_path / "live"), "--no-odoo-login", "--pushgateway", pushgateway, "--json"], env,
                           cluster_project)
    assert code == 1, (r, err)
    assert r["drill_target"] == "cluster" and r["set"] is None and r["db"] is None
    assert r["reason"].startswith("drill.target is cluster, but") and "holds the live database dr_prod" in r["reason"]
    assert live["pg"].psql("SELECT datname FROM pg_database ORDER BY 1") == before

    scratch_server = LocalPostgres()
    scratch_server.start()
    try:
        own = Pg.from_local(scratch_server)
        own.psql(f"CREATE ROLE {DRILL_ROLE} LOGIN CREATEDB NOSUPERUSER NOCREATEROLE INHERIT CONNECTION LIMIT 9")
        with OdooDouble(base_ms=0, jitter_ms=0, pg=Pg(own.host, own.port, DRILL_ROLE),
                        dbfilter=drill_db_pattern(LIVE)) as sidecar:
            code, r, err = run_cli(["drill", "--stack", "prod", "--target", url, "--no-upload", "--report-dir",
                                    str(tmp_path / "own"), "--odoo-url", sidecar.url, "--pushgateway", pushgateway,
                                    "--json"],
                                   {**env, **scratch_server.env(), "PGUSER": DRILL_ROLE}, cluster_project)
        assert code == 0, (r, err)
        assert r["server"] == f"{own.host}:{own.port}" and r["live"] == {"db": LIVE, "oid": None}
        assert {c["name"]: c["status"] for c in r["checks"]}["odoo_login"] == "passed"
        assert r["dropped"] is True and drill_dbs(own) == []
        assert "is not on this server" in Path(r["report"]["markdown"]).read_text()
    finally:
        scratch_server.stop()
    assert live["pg"].psql("SELECT datname FROM pg_database ORDER BY 1") == before
