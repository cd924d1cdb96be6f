"""Health checks against real PostgreSQL, Redis and S3 on loopback, each put into a bad state on
purpose and back: the check must see the failure, then see it cleared."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from erpops.errors import ErpopsError
from erpops.local import LocalPostgres, LocalRedis, LocalS3, RespError
from erpops.pg import Pg
from healthchecks import cli as health_cli
from healthchecks import postgres, redis, s3
from healthchecks.core import Check, Level, State, Targets, Thresholds, run_checks
from healthchecks.suite import checks_for
from tests import paths
from tests.integration.test_health_odoo import FakeOdoo
from tests.unit.test_health import parse_prometheus

pytestmark = pytest.mark.integration

Outcome = tuple[State, str, dict[str, float]]


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def run(check: Callable[[Targets, Thresholds], Outcome], targets: Targets, th: Thresholds | None = None) -> Any:
    """Through the runner, as the CLI does: UNKNOWN reasons come back as results, not exceptions."""
    [result] = run_checks([Check(check.__name__, check)], targets, th or Thresholds.defaults())
    return result


@contextlib.contextmanager
def session(server: LocalPostgres, sql: str, db: str = "postgres") -> Iterator[subprocess.Popen[str]]:
    """A psql client holding `sql` open (stdin stays open: the session lives until we kill it).

    Killing psql alone leaves its backend inside pg_sleep (the server notices a vanished client
    only at its next read), so the backend is terminated too, found by its application_name.
    """
    app = f"health-test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [str(server.bin("psql")), "-X", "-q", "-d", server.dsn(db)], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, **server.env(), "PGAPPNAME": app})
    assert proc.stdin is not None
    proc.stdin.write(sql + "\n")
    proc.stdin.flush()
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'")


def activity(server: LocalPostgres, where: str) -> int:
    return int(server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE {where}").strip())


@pytest.fixture
def pg_targets(pg: LocalPostgres) -> Targets:
    return Targets(pg=Pg.from_local(pg), pg_db="postgres", host=False)


# -- PostgreSQL ---------------------------------------------------------------------------------

def test_healthy_postgres_is_ok(pg_targets: Targets) -> None:
    # the connect time's own levels are a timing: lifted, so a busy machine is not a sick server
    th = Thresholds.defaults()
    th.levels["pg_connect_ms"] = Level(60_000, 120_000)
    results = run_checks(postgres.CHECKS, pg_targets, th)
    bad = [f"{r.check}: {r.state.name} {r.message}" for r in results if r.state is not State.OK]
    assert not bad
    by_name = {r.check: r for r in results}
    assert by_name["pg.replication"].message.startswith("no replicas")
    assert by_name["pg.connections"].metrics["max"] >= 20


def test_long_transaction_warns_then_crits_then_clears(pg: LocalPostgres, pg_targets: Targets) -> None:
    marker = "pg_sleep(30) /* long-tx */"
    with session(pg, f"BEGIN; SELECT txid_current(); SELECT {marker};"):
        wait_for("the long transaction", lambda: activity(pg, "query LIKE '%long-tx%' AND pid <> pg_backend_pid() "
                                                               "AND now() - xact_start > interval '1.2 s'") == 1)
        warn = run(postgres.longest_transaction, pg_targets,
                   Thresholds.defaults().override(pg_longest_transaction_seconds=(1, 3600)))
        crit = run(postgres.longest_transaction, pg_targets,
                   Thresholds.defaults().override(pg_longest_transaction_seconds=(0.5, 1)))
        assert warn.state is State.WARN, warn.message
        assert crit.state is State.CRIT, crit.message
        backend = pg.psql("SELECT pid FROM pg_stat_activity WHERE query LIKE '%long-tx%' "
                          "AND pid <> pg_backend_pid()").strip()
        assert f"(pid {backend})" in crit.message  # names the backend to cancel
        assert crit.metrics["age_seconds"] >= 1
    wait_for("the session to end", lambda: activity(pg, "query LIKE '%long-tx%' AND pid <> pg_backend_pid()") == 0)
    after = run(postgres.longest_transaction, pg_targets,
                Thresholds.defaults().override(pg_longest_transaction_seconds=(5, 10)))
    assert after.state is State.OK, after.message


def test_idle_in_transaction_crits_then_clears(pg: LocalPostgres, pg_targets: Targets) -> None:
    th = Thresholds.defaults().override(pg_idle_in_transaction_seconds=(0.2, 0.5))
    with session(pg, "BEGIN; SELECT txid_current();"):
        wait_for("idle in transaction", lambda: activity(
            pg, "state = 'idle in transaction' AND now() - state_change > interval '0.6 s'") == 1)
        held = run(postgres.idle_in_transaction, pg_targets, th)
        assert held.state is State.CRIT, held.message
        assert held.metrics["sessions"] == 1
    wait_for("the session to end", lambda: activity(pg, "state LIKE 'idle in transaction%'") == 0)
    assert run(postgres.idle_in_transaction, pg_targets, th).state is State.OK


def test_blocked_lock_is_crit_then_ok(pg: LocalPostgres, pg_targets: Targets) -> None:
    pg.psql("DROP TABLE IF EXISTS health_lock; CREATE TABLE health_lock (id int)")
    th = Thresholds.defaults().override(pg_lock_wait_seconds=(0, 0))
    try:
        with session(pg, "BEGIN; LOCK TABLE health_lock IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30);"):
            wait_for("the lock holder", lambda: activity(pg, "query LIKE '%pg_sleep(30)%' "
                                                             "AND pid <> pg_backend_pid()") == 1)
            with session(pg, "SELECT count(*) FROM health_lock;"):
                wait_for("the blocked session",
                         lambda: activity(pg, "cardinality(pg_blocking_pids(pid)) > 0") == 1)
                blocked = run(postgres.blocked_locks, pg_targets, th)
                assert blocked.state is State.CRIT, blocked.message
                assert blocked.metrics["blocked_sessions"] == 1
        wait_for("the locks to go", lambda: activity(pg, "cardinality(pg_blocking_pids(pid)) > 0") == 0)
        after = run(postgres.blocked_locks, pg_targets, th)
        assert after.state is State.OK, after.message
    finally:
        pg.psql("DROP TABLE IF EXISTS health_lock")


def test_xid_age_and_cache_thresholds_bite(pg_targets: Targets) -> None:
    xid = run(postgres.xid_age, pg_targets, Thresholds.defaults().override(pg_xid_age=(1, 2)))
    assert xid.state is State.CRIT and xid.metrics["age"] >= 2
    conns = run(postgres.connections, pg_targets, Thresholds.defaults().override(pg_connections_ratio=(0.0, 2)))
    assert conns.state is State.WARN


def test_database_size_against_the_volume(pg_targets: Targets) -> None:
    th = Thresholds.defaults()
    th.pg_storage_bytes = 10 * 1024**2  # a 10 MiB volume: a fresh cluster (~22 MiB) overflows it
    result = run(postgres.database_size, pg_targets, th)
    assert result.state is State.CRIT and result.metrics["volume_ratio"] > 1


def test_unreachable_postgres_is_unknown(pg: LocalPostgres) -> None:
    from erpops.local import free_port

    t = Targets(pg=Pg(host="127.0.0.1", port=free_port()), host=False)
    results = run_checks(postgres.CHECKS, t, Thresholds.defaults())
    assert {r.state for r in results} == {State.UNKNOWN}
    assert all("Connection refused" in r.message for r in results)


def test_missing_stats_permission_is_unknown(pg: LocalPostgres) -> None:
    pg.psql("DROP ROLE IF EXISTS health_nobody; CREATE ROLE health_nobody LOGIN")
    try:
        t = Targets(pg=Pg(host=pg.host, port=pg.port, user="health_nobody"), host=False)
        result = run(postgres.longest_transaction, t)
        assert result.state is State.UNKNOWN and "pg_monitor" in result.message
        pg.psql("GRANT pg_monitor TO health_nobody")
        assert run(postgres.longest_transaction, t).state is State.OK
    finally:
        pg.psql("DROP ROLE IF EXISTS health_nobody")


# -- Odoo database: cron and mail queue -------------------------------------------------------

_SCRATCH_SCHEMA = """
CREATE TABLE ir_cron (id serial PRIMARY KEY, cron_name jsonb, active boolean, nextcall timestamp,
                      interval_number int, interval_type varchar);
INSERT INTO ir_cron (cron_name, active, nextcall, interval_number, interval_type) VALUES
  ('{"en_US": "Mail: Email Queue Manager"}', true, (now() AT TIME ZONE 'UTC') + interval '1 minute', 1, 'hours'),
  ('{"en_US": "Scheduler"}', true, (now() AT TIME ZONE 'UTC') + interval '1 hour', 1, 'days'),
  ('{"en_US": "Disabled job"}', false, (now() AT TIME ZONE 'UTC') - interval '30 days', 1, 'days');
CREATE TABLE mail_mail (id serial PRIMARY KEY, state varchar);
"""


@pytest.fixture(scope="module")
def odoo_db(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real Odoo 17 fixture when erpops can import it, else the minimal ir_cron/mail_mail shape."""
    db = f"health_{uuid.uuid4().hex[:8]}"
    server = Pg.from_local(pg)
    imported = False
    fixture_zip = paths.optional(paths.ODOO_FIXTURE, paths.ODOO_FIXTURE_WHAT)  # in CI: a failure when absent
    if fixture_zip is not None:
        try:
            from erpops.backup.odoozip import import_odoo_zip

            import_odoo_zip(fixture_zip, server, db, tmp_path_factory.mktemp("filestore"))
            imported = True
        except (ImportError, ErpopsError) as exc:
            warnings.warn(f"Odoo fixture import unavailable ({exc}); using a scratch ir_cron table", stacklevel=1)
            server.psql(f"DROP DATABASE IF EXISTS {db}")
    if not imported:
        server.psql(f"CREATE DATABASE {db}")
        server.psql(_SCRATCH_SCHEMA, db)
    # Start from a healthy schedule: every active job due in the future.
    server.psql("UPDATE ir_cron SET nextcall = (now() AT TIME ZONE 'UTC') + interval '5 minutes' WHERE active", db)
    yield db
    server.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_overdue_cron_warns_crits_then_clears(pg: LocalPostgres, odoo_db: str) -> None:
    t = Targets(pg=Pg.from_local(pg), pg_db=odoo_db, odoo_db=odoo_db, host=False)
    assert run(postgres.cron_overdue, t).state is State.OK
    job = pg.psql("SELECT id FROM ir_cron WHERE active ORDER BY id LIMIT 1", odoo_db).strip()
    try:
        pg.psql(f"UPDATE ir_cron SET nextcall = (now() AT TIME ZONE 'UTC') - interval '3 hours' WHERE id = {job}",
                odoo_db)
        crit = run(postgres.cron_overdue, t)  # defaults: warn 30 min, crit 120 min
        assert crit.state is State.CRIT, crit.message
        assert crit.metrics["overdue_jobs"] == 1 and 179 <= crit.metrics["max_overdue_minutes"] <= 181
        assert '"en_US"' not in crit.message  # the job's name, not its jsonb
        warn = run(postgres.cron_overdue, t, Thresholds.defaults().override(cron_overdue_minutes=(60, 240)))
        assert warn.state is State.WARN, warn.message
    finally:
        pg.psql(f"UPDATE ir_cron SET nextcall = (now() AT TIME ZONE 'UTC') + interval '5 minutes' WHERE id = {job}",
                odoo_db)
    assert run(postgres.cron_overdue, t).state is State.OK


def test_mail_in_exception_warns(pg: LocalPostgres, odoo_db: str) -> None:
    t = Targets(pg=Pg.from_local(pg), pg_db=odoo_db, odoo_db=odoo_db, host=False)
    before = run(postgres.mail_queue, t)
    assert before.state is State.OK, before.message
    columns = pg.psql("SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_name = "
                      "'mail_mail' AND is_nullable = 'NO' AND column_default IS NULL", odoo_db).strip()
    if columns:  # the real table wants a mail_message row: borrow an existing one
        msg = pg.psql("SELECT id FROM mail_message ORDER BY id LIMIT 1", odoo_db).strip()
        insert = f"INSERT INTO mail_mail (mail_message_id, state) VALUES ({msg}, 'exception') RETURNING id"
    else:
        insert = "INSERT INTO mail_mail (state) VALUES ('exception') RETURNING id"
    mail = pg.psql(insert, odoo_db).strip().splitlines()[0]
    try:
        failed = run(postgres.mail_queue, t)
        assert failed.state is State.WARN and failed.metrics["exception"] == 1, failed.message
    finally:
        pg.psql(f"DELETE FROM mail_mail WHERE id = {mail}", odoo_db)
    assert run(postgres.mail_queue, t).state is State.OK


@pytest.mark.parametrize("check", [postgres.cron_overdue, postgres.mail_queue])
def test_not_an_odoo_database_is_unknown(pg: LocalPostgres, check: Any) -> None:
    t = Targets(pg=Pg.from_local(pg), pg_db="postgres", odoo_db="postgres", host=False)
    result = run(check, t)
    assert result.state is State.UNKNOWN and "table in database postgres" in result.message


# -- Redis -----------------------------------------------------------------------------------------

def test_healthy_redis_is_ok(redis_server: LocalRedis) -> None:
    th = Thresholds.defaults()
    th.levels["redis_latency_ms"] = Level(60_000, 120_000)  # PING time is a timing: not judged on a busy machine
    results = run_checks(redis.CHECKS, Targets(redis_url=redis_server.url, host=False), th)
    assert [(r.check, r.state) for r in results] == [(c.name, State.OK) for c in redis.CHECKS]


def test_full_redis_is_crit_then_ok_after_flushall() -> None:
    with LocalRedis(maxmemory="2mb", maxmemory_policy="noeviction") as server:
        t = Targets(redis_url=server.url, host=False)
        client = server.client()
        with pytest.raises(RespError, match="OOM"):
            for i in range(10_000):
                client.set(f"session:{i}", "x" * 1024)
        full = run(redis.memory, t)
        assert full.state is State.CRIT, full.message
        assert full.metrics["ratio"] >= 0.95 and "noeviction" in full.message
        client.command("FLUSHALL")
        after = run(redis.memory, t)
        assert after.state is State.OK, after.message
        client.close()


def test_evictions_warn() -> None:
    with LocalRedis(maxmemory="2mb", maxmemory_policy="allkeys-lru") as server:
        client = server.client()
        for i in range(4000):
            client.set(f"session:{i}", "x" * 1024)
        result = run(redis.evictions, Targets(redis_url=server.url, host=False))
        assert result.state is State.WARN and result.metrics["evicted_keys"] > 0, result.message
        client.close()


def test_unreachable_redis_is_unknown() -> None:
    from erpops.local import free_port

    results = run_checks(redis.CHECKS, Targets(redis_url=f"redis://127.0.0.1:{free_port()}/0", host=False),
                         Thresholds.defaults())
    assert {r.state for r in results} == {State.UNKNOWN}


# -- S3 ----------------------------------------------------------------------------------------------

@pytest.fixture
def bucket(s3: LocalS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Targets]]:
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    name = f"health-{uuid.uuid4().hex[:8]}"
    client = s3.client()
    client.create_bucket(Bucket=name)
    yield client, Targets(s3_endpoint=s3.endpoint_url, s3_bucket=name, s3_prefix="prod", s3_region=s3.region,
                          host=False)


def _put_set(client: Any, t: Targets, set_id: str, created: datetime | None, manifest: bool = True) -> None:
    client.put_object(Bucket=t.s3_bucket, Key=f"prod/sets/{set_id}/db.dump", Body=b"x")
    if manifest:
        doc = {"erpops": {"created_at": created.isoformat().replace("+00:00", "Z")}} if created else {"set": set_id}
        client.put_object(Bucket=t.s3_bucket, Key=f"prod/sets/{set_id}/manifest.json", Body=json.dumps(doc).encode())


def test_old_backup_is_crit_then_fresh_set_ok(bucket: tuple[Any, Targets]) -> None:
    client, t = bucket
    th = Thresholds.from_health(__import__("erpops.spec", fromlist=["Health"]).Health(), rpo_minutes=60)
    assert run(s3.backup_age, t, th).state is State.CRIT  # nothing at all
    _put_set(client, t, "20261126T020000Z", datetime.now(UTC) - timedelta(days=3))
    _put_set(client, t, "20261129T020000Z", None, manifest=False)  # newer but incomplete: does not count
    old = run(s3.backup_age, t, th)
    assert old.state is State.CRIT, old.message
    assert "20261126T020000Z" in old.message and "3.0 days" in old.message
    assert old.metrics["incomplete_sets"] == 1 and "1 incomplete set(s)" in old.message
    client.put_object(Bucket=t.s3_bucket, Key="prod/sets/20261129T040000Z/in-progress.json", Body=b"{}")
    running = run(s3.backup_age, t, th)
    assert running.metrics["running_sets"] == 1 and running.metrics["incomplete_sets"] == 1
    _put_set(client, t, "20261129T030000Z", datetime.now(UTC) - timedelta(minutes=10))
    fresh = run(s3.backup_age, t, th)
    assert fresh.state is State.OK, fresh.message
    assert 9 <= fresh.metrics["age_minutes"] <= 11


def test_manifest_without_created_at_falls_back_to_last_modified(bucket: tuple[Any, Targets]) -> None:
    client, t = bucket
    _put_set(client, t, "legacy", None)
    result = run(s3.backup_age, t)
    assert result.state is State.OK and "LastModified" in result.message


def test_stale_multipart_upload_warns(bucket: tuple[Any, Targets]) -> None:
    client, t = bucket
    assert run(s3.multipart, t).state is State.OK
    upload = client.create_multipart_upload(Bucket=t.s3_bucket, Key="prod/sets/x/db.dump")
    try:
        # moto reports every upload as initiated in 2010: it is always "old" here (the young
        # case is covered by the unit test of grade_uploads).
        aged = run(s3.multipart, t)
        assert aged.state is State.WARN and aged.metrics["stale_uploads"] == 1, aged.message
        assert "prod/sets/x/db.dump" in aged.message
    finally:
        client.abort_multipart_upload(Bucket=t.s3_bucket, Key="prod/sets/x/db.dump", UploadId=upload["UploadId"])
    assert run(s3.multipart, t).state is State.OK


def test_missing_bucket_is_unknown(bucket: tuple[Any, Targets]) -> None:
    _, t = bucket
    t.s3_bucket = "no-such-bucket-here"
    for check in (s3.bucket, s3.backup_age, s3.multipart):
        result = run(check, t)
        assert result.state is State.UNKNOWN, (check.__name__, result.message)


# -- The whole suite -------------------------------------------------------------------------------

@pytest.fixture
def everything(pg: LocalPostgres, redis_server: LocalRedis, bucket: tuple[Any, Targets],
               tmp_path: Path) -> Iterator[Targets]:
    client, t = bucket
    _put_set(client, t, "fresh", datetime.now(UTC) - timedelta(minutes=5))
    with FakeOdoo() as fake:
        yield Targets(odoo_url=fake.url, pg=Pg.from_local(pg), redis_url=redis_server.url,
                      s3_endpoint=t.s3_endpoint, s3_bucket=t.s3_bucket, s3_prefix="prod", s3_region=t.s3_region,
                      data_paths=[str(tmp_path)])


def test_whole_suite_is_ok_against_healthy_services(everything: Targets) -> None:
    # How fast the suite answers is printed by benchmarks/health_suite.py, never asserted here; the
    # latency levels and the timeout are lifted so that a busy machine is not a "sick" service.
    th = Thresholds.defaults()
    th.timeout = 60.0
    for name in ("odoo_latency_ms", "pg_connect_ms", "redis_latency_ms"):
        th.levels[name] = Level(60_000, 120_000)
    results = run_checks(checks_for(everything), everything, th)
    unknown = [f"{r.check}: {r.message}" for r in results if r.state is State.UNKNOWN]
    assert not unknown
    not_ok = [f"{r.check}: {r.message}" for r in results if r.state is not State.OK and not r.check.startswith("host.")]
    assert not not_ok  # host checks depend on this machine's load: they only must answer


def test_cli_end_to_end_exit_codes_and_prometheus(everything: Targets, tmp_path: Path) -> None:
    assert everything.pg is not None
    base = ["--no-host", "--pg-host", everything.pg.host, "--pg-port", str(everything.pg.port),
            "--redis-url", str(everything.redis_url), "--s3-endpoint", str(everything.s3_endpoint),
            "--s3-bucket", str(everything.s3_bucket), "--s3-prefix", "prod", "--odoo-url", str(everything.odoo_url)]
    prom = tmp_path / "textfile" / "erpops.prom"
    ok = CliRunner().invoke(health_cli.health, [*base, "--stack", "prod", "--pg-db", "postgres",
                                                "--prometheus", str(prom), "--json"],
                            obj={"root": Path(__file__).resolve().parents[2]})
    doc = json.loads(ok.output)
    # prod expects its own Odoo version; the double says 17.0: drift WARN unless prod is 17.0
    states = {c["check"]: c["state"] for c in doc["checks"]}
    # pg.connect grades the psql round trip: WARN on a machine too busy for 100 ms, never CRIT/UNKNOWN here
    assert states["pg.connect"] in ("OK", "WARN") and states["s3.backup_age"] == "OK"
    # the prod spec names an Odoo database this server does not have: UNKNOWN, never OK
    assert states["odoo.cron_overdue"] == "UNKNOWN"
    assert ok.exit_code == {"OK": 0, "WARN": 1, "CRIT": 2, "UNKNOWN": 3}[doc["state"]]
    samples = parse_prometheus(prom.read_text())
    assert samples[("erpops_check_state", frozenset({("check", "pg.connections"), ("stack", "prod")}))] == 0
    assert ("erpops_pg_connections", frozenset({("stack", "prod")})) in samples
    assert ("erpops_pg_version_info", frozenset({("stack", "prod"), ("version", "15")})) not in samples  # x.y
    assert [k for k in samples if k[0] == "erpops_pg_version_info" and dict(k[1])["version"].startswith("15.")]

    down = CliRunner().invoke(health_cli.health, ["--no-host", "--redis-url", "redis://127.0.0.1:1/0"], obj={})
    assert down.exit_code == 3, down.output
    assert "UNKNOWN" in down.output

    only = CliRunner().invoke(health_cli.health, [*base, "-c", "pg.xid"], obj={})
    assert only.exit_code == 0, only.output
    assert "pg.xid_age" in only.output and "redis" not in only.output


def test_cold_process_answers(everything: Targets) -> None:
    """A fresh `python -m healthchecks`, as cron or a Nagios agent runs it: imports boto3 cold.

    Its speed is printed by benchmarks/health_suite.py; here only that it answers, and rightly.
    """
    assert everything.pg is not None
    argv = [sys.executable, "-m", "healthchecks", "--json", "--pg-host", everything.pg.host,
            "--pg-port", str(everything.pg.port), "--redis-url", str(everything.redis_url),
            "--s3-endpoint", str(everything.s3_endpoint), "--s3-bucket", str(everything.s3_bucket),
            "--s3-prefix", "prod", "--odoo-url", str(everything.odoo_url), "--data-path", everything.data_paths[0]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=os.environ.copy())
    doc = json.loads(done.stdout)
    assert done.returncode == {"OK": 0, "WARN": 1, "CRIT": 2, "UNKNOWN": 3}[doc["state"]]
    assert not [c for c in doc["checks"] if c["state"] == "UNKNOWN"], doc


# -- Streaming replication: a real standby, replay paused on purpose ---------------------------

@contextlib.contextmanager
def standby_of(primary: LocalPostgres) -> Iterator[Pg]:
    """A hot standby of `primary` (pg_basebackup -R), on its own port, as the server's OS user."""
    import pwd
    import shutil
    import tempfile

    from erpops.local import free_port

    account = pwd.getpwnam(primary.os_user)
    as_user = ["runuser", "-u", account.pw_name, "--"] if os.geteuid() == 0 else []
    workdir = Path(tempfile.mkdtemp(prefix="erpops-standby-"))
    os.chown(workdir, account.pw_uid, account.pw_gid)
    data, port = workdir / "data", free_port()
    subprocess.run([*as_user, str(primary.bin("pg_basebackup")), "-h", primary.host, "-p", str(primary.port),
                    "-U", primary.user, "-D", str(data), "-R", "-X", "stream", "-c", "fast"],
                   check=True, capture_output=True, timeout=60)
    proc = subprocess.Popen(
        [*as_user, str(primary.bin("postgres")), "-D", str(data), "-p", str(port), "-k", str(workdir),
         "-c", "listen_addresses=127.0.0.1", "-c", "hot_standby=on", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    standby = Pg(host="127.0.0.1", port=port, user=primary.user)
    try:
        def up() -> bool:
            try:
                return standby.scalar("SELECT pg_is_in_recovery()") == "t"
            except Exception:
                return False
        wait_for("the standby to accept connections", up, timeout=30)
        wait_for("the standby to stream", lambda: primary.psql(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").strip() == "1", timeout=30)
        yield standby
    finally:
        os.killpg(proc.pid, 15)  # the group we started: runuser and its postgres
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def test_replica_lag_crits_while_replay_is_paused_then_clears() -> None:
    with LocalPostgres() as primary, standby_of(primary) as standby:
        t = Targets(pg=Pg.from_local(primary), host=False)
        th = Thresholds.defaults().override(pg_replica_lag_bytes=(64 * 1024, 1024**2))
        healthy = run(postgres.replication, t, th)
        assert healthy.state is State.OK and healthy.metrics["replicas"] == 1, healthy.message
        standby.psql("SELECT pg_wal_replay_pause()")
        try:
            # ~8 MB of WAL the standby receives but does not replay
            primary.psql("CREATE TABLE lag AS SELECT g, repeat('x', 50) AS pad FROM generate_series(1, 100000) g")
            wait_for("the standby to report its stalled replay", lambda: run(postgres.replication, t, th).state
                     is State.CRIT)
            lagging = run(postgres.replication, t, th)
            assert lagging.metrics["lag_bytes"] >= 1024**2, lagging.message
            # the primary counts WAL not yet sent; the standby counts only what it has received,
            # which on a busy machine arrives a little later
            on_standby_targets = Targets(pg=standby, host=False)
            wait_for("the standby to see its own stalled replay",
                     lambda: run(postgres.replication, on_standby_targets, th).state is State.CRIT)
            on_standby = run(postgres.replication, on_standby_targets, th)
            assert on_standby.state is State.CRIT and "standby replay" in on_standby.message
        finally:
            standby.psql("SELECT pg_wal_replay_resume()")
        wait_for("the standby to catch up", lambda: run(postgres.replication, t, th).state is State.OK)


def test_backup_age_skips_unreadable_and_failed_sets_and_dead_backups(bucket: tuple[Any, Targets]) -> None:
    client, t = bucket
    th = Thresholds.from_health(__import__("erpops.spec", fromlist=["Health"]).Health(), rpo_minutes=60)
    _put_set(client, t, "20261126T020000Z", datetime.now(UTC) - timedelta(days=3))
    # Newer sets that must not count: one failed verification, one whose manifest is not JSON.
    _put_set(client, t, "20261129T010000Z", datetime.now(UTC) - timedelta(minutes=30))
    client.put_object(Bucket=t.s3_bucket, Key="prod/sets/20261129T010000Z/verify.json",
                      Body=json.dumps({"ok": False, "problems": ["x is missing"]}).encode())
    client.put_object(Bucket=t.s3_bucket, Key="prod/sets/20261129T020000Z/manifest.json", Body=b"{ truncated")
    # A backup whose heartbeat stopped an hour ago is dead, not running.
    beat = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    client.put_object(Bucket=t.s3_bucket, Key="prod/sets/20261129T030000Z/in-progress.json",
                      Body=json.dumps({"host": "elsewhere", "pid": 1, "heartbeat_at": beat}).encode())
    result = run(s3.backup_age, t, th)
    assert result.state is State.CRIT, result.message
    assert "20261126T020000Z" in result.message and "3.0 days" in result.message
    assert "20261129T010000Z (failed verification)" in result.message
    assert "20261129T020000Z (manifest unreadable)" in result.message
    assert result.metrics["running_sets"] == 0 and result.metrics["incomplete_sets"] == 1
