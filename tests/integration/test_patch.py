"""`erpops patch` end to end with the command driver: real PostgreSQL 15, a real S3 API (moto).

Each test gets its own small Odoo-like database (ir_module_module with latest_version,
res_partner with rows), its own backup prefix and its own "VM": a work directory whose files
the driver's shell commands read and write (the running image, a maintenance flag). The apply
step is a SQL script that bumps module versions and rewrites partners; the engine runs as the
real command line in a subprocess, so exit codes and signals are the ones a user sees.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from erpops.backup import engine
from erpops.backup.storage import Target, open_target
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg, client_bin

pytestmark = pytest.mark.integration

BUCKET = "erpops-patch-it"
FROM_IMAGE = "odoo:17.0-20261001"
TO_IMAGE = "odoo:17.0-20261120"
REPO = Path(__file__).resolve().parents[2]

SCHEMA = """
CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar NOT NULL UNIQUE, state varchar NOT NULL,
                               latest_version varchar);
INSERT INTO ir_module_module (name, state, latest_version) VALUES
  ('base', 'installed', '17.0.1.3'), ('web', 'installed', '17.0.1.0'), ('mrp', 'installed', '17.0.2.0'),
  ('stock', 'installed', '17.0.1.1'), ('sale', 'uninstalled', NULL);
CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar NOT NULL, email varchar, active boolean DEFAULT true);
INSERT INTO res_partner (name, email) SELECT 'Partner ' || i, 'p' || i || '@example.com' FROM generate_series(1, 60) i;
"""

# What a module update does to the data: versions bumped, rows rewritten, added, a column added.
APPLY_SQL = """
UPDATE ir_module_module SET latest_version = '17.0.9.9' WHERE name IN ('mrp', 'stock');
UPDATE res_partner SET name = name || ' (migrated)' WHERE id % 3 = 0;
DELETE FROM res_partner WHERE id > 55;
INSERT INTO res_partner (name, email) VALUES ('Added by update', 'new@example.com');
ALTER TABLE res_partner ADD COLUMN commercial_name varchar;
"""


def checksums(pg: Pg, db: str) -> dict[str, str]:
    """Row counts, key-table checksums and the columns: equal means the database is exactly that one."""
    return {
        "res_partner": pg.scalar("SELECT count(*) || ':' || md5(string_agg(t::text, '' ORDER BY id)) "
                                 "FROM res_partner t", db),
        "ir_module_module": pg.scalar("SELECT count(*) || ':' || md5(string_agg(t::text, '' ORDER BY id)) "
                                      "FROM ir_module_module t", db),
        "columns": pg.scalar("SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY table_name, "
                             "column_name) FROM information_schema.columns WHERE table_schema = 'public'", db),
    }


@pytest.fixture(scope="module")
def server(pg: LocalPostgres) -> Iterator[Pg]:
    server = Pg.from_local(pg)
    before = set(server.psql("SELECT datname FROM pg_database").split())
    yield server
    for db in set(server.psql("SELECT datname FROM pg_database").split()) - before:
        engine.drop_database(server, db)


@pytest.fixture(scope="module")
def aws(s3: LocalS3) -> Iterator[LocalS3]:
    """Dummy credentials for boto3's chain in this process too (the test reads the bucket through the engine)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3.env().items():
            if not key.startswith("AWS_ENDPOINT_URL"):
                mp.setenv(key, value)
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3


@dataclass
class Stack:
    """One test's stack: database, backup prefix, VM work dir, and how to run `erpops patch` on it."""

    pg: Pg
    s3: LocalS3
    db: str
    prefix: str
    work: Path
    stack: str = "dev-patch"

    @property
    def target(self) -> str:
        return f"s3://{BUCKET}/{self.prefix}"

    @property
    def state_dir(self) -> Path:
        return self.work / "state"

    def driver_file(self, apply: str | None = None, smoke: str = "true", name: str = "driver.yml") -> Path:
        psql = client_bin("psql")
        steps = {
            "current_image": 'cat "$WORK/image"',
            "freeze": 'touch "$WORK/maintenance" && echo frozen >> "$WORK/events"',
            "apply": apply or f'{psql} -X -q -v ON_ERROR_STOP=1 -d "$ERPOPS_DB" -f "$WORK/apply.sql"',
            "roll": 'echo "$ERPOPS_PATCH_IMAGE" > "$WORK/image" && rm -f "$WORK/maintenance" '
                    '&& echo "rolled $ERPOPS_PATCH_IMAGE rollback=$ERPOPS_PATCH_ROLLBACK" >> "$WORK/events"',
            "smoke": smoke,
        }
        path = self.work / name
        path.write_text(yaml.safe_dump({"driver": "command", "env": {"WORK": str(self.work)}, "steps": steps}))
        return path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "ERPOPS_"))}
        env.update(self.s3.env())
        env.pop("AWS_ENDPOINT_URL", None)
        env.pop("AWS_ENDPOINT_URL_S3", None)
        env.update(PGHOST=self.pg.host, PGPORT=str(self.pg.port), PGUSER=self.pg.user, ERPOPS_OPERATOR="ci-bot",
                   PYTHONPATH=str(REPO))
        return env

    def argv(self, driver: Path, *extra: str, stack: str | None = None) -> list[str]:
        return [sys.executable, "-m", "erpops.patch", "--stack", stack or self.stack, "--image", TO_IMAGE,
                "--modules", "mrp,stock", "--driver", "command", "--driver-file", str(driver), "--db", self.db,
                "--target", self.target, "--endpoint-url", self.s3.endpoint_url, "--state-dir", str(self.state_dir),
                "--health-check", "pg.connect", "--json", *extra]

    def run(self, driver: Path, *extra: str, stack: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(driver, *extra, stack=stack), cwd=self.work, env=self.env(),
                              capture_output=True, text=True, timeout=300, check=False)

    def start(self, driver: Path, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(driver, *extra), cwd=self.work, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def state(self) -> dict:
        return json.loads((self.state_dir / f"patch-{self.stack}.json").read_text())

    def audit_lines(self) -> list[dict]:
        path = self.state_dir / "patch-audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def bucket_keys(self) -> list[str]:
        client = self.s3.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{self.prefix}/")
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def bucket_audit(self) -> list[dict]:
        client = self.s3.client()
        keys = [k for k in self.bucket_keys() if k.startswith(f"{self.prefix}/audit/")]
        return [json.loads(client.get_object(Bucket=BUCKET, Key=k)["Body"].read()) for k in keys]

    def image(self) -> str:
        return (self.work / "image").read_text().strip()

    def expected_patched(self) -> dict[str, str]:
        """The original database with APPLY_SQL applied once, built aside: what a good patch leaves."""
        copy = f"{self.db}_expected"
        self.pg.psql(f'CREATE DATABASE "{copy}" TEMPLATE "{self.db}"')
        try:
            self.pg.psql(APPLY_SQL, copy)
            return checksums(self.pg, copy)
        finally:
            engine.drop_database(self.pg, copy)


@pytest.fixture
def stack(server: Pg, aws: LocalS3, tmp_path: Path) -> Iterator[Stack]:
    rand = secrets.token_hex(3)
    db = f"patch_{rand}"
    engine.create_database(server, db)
    server.psql(SCHEMA, db)
    work = tmp_path / "vm"
    work.mkdir()
    (work / "image").write_text(FROM_IMAGE + "\n")
    (work / "apply.sql").write_text(APPLY_SQL)
    yield Stack(server, aws, db, f"patch-{rand}", work)
    engine.drop_database(server, db)


def assert_rolled_back(stack: Stack, original: dict[str, str]) -> None:
    assert checksums(stack.pg, stack.db) == original, "the rollback did not restore the database exactly"
    assert stack.image() == FROM_IMAGE
    assert not (stack.work / "maintenance").exists(), "web was left in maintenance"
    leftovers = stack.pg.psql("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_erpops\\_%'").split()
    assert leftovers == []


def test_patch_succeeds_records_state_and_audit(stack: Stack) -> None:
    original = checksums(stack.pg, stack.db)
    expected = stack.expected_patched()
    assert expected != original

    proc = stack.run(stack.driver_file())

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["result"] == "done"
    assert checksums(stack.pg, stack.db) == expected
    assert stack.image() == TO_IMAGE
    assert not (stack.work / "maintenance").exists()
    state = stack.state()
    assert state["status"] == "done"
    assert [s["name"] for s in state["steps"]] == ["preflight", "freeze", "backup", "apply", "roll", "gate"]
    assert all(s["status"] == "ok" and s["seconds"] is not None for s in state["steps"])
    # the pre-patch set is complete, verified and holds the original database
    sets = {s["set_id"]: s for s in engine.list_sets(engine_target(stack))}
    assert sets[state["pre_patch_set"]]["verified"] is True
    (line,) = stack.audit_lines()
    assert (line["result"], line["from_image"], line["to_image"], line["modules"], line["who"]) == (
        "done", FROM_IMAGE, TO_IMAGE, ["mrp", "stock"], "ci-bot")
    assert [s["name"] for s in line["steps"]] == [s["name"] for s in state["steps"]]
    assert stack.bucket_audit() == [line]


def engine_target(stack: Stack) -> Target:
    return open_target(stack.target, endpoint_url=stack.s3.endpoint_url)


def test_failed_module_update_rolls_back_exactly(stack: Stack) -> None:
    original = checksums(stack.pg, stack.db)
    psql = client_bin("psql")
    # the update commits part of its work, then fails
    driver = stack.driver_file(apply=f'{psql} -X -q -d "$ERPOPS_DB" -f "$WORK/apply.sql" && echo boom >&2 && exit 1')

    proc = stack.run(driver)

    assert proc.returncode == 4, proc.stderr
    assert json.loads(proc.stdout)["error_type"] == "OperationFailed"
    assert "rolled back" in proc.stderr and "boom" in proc.stderr
    assert_rolled_back(stack, original)
    state = stack.state()
    assert state["status"] == "rolled_back"
    assert [s["name"] for s in state["rollback_steps"]] == ["freeze", "restore", "roll_back_image", "health"]
    assert (stack.work / "events").read_text().splitlines()[-1] == f"rolled {FROM_IMAGE} rollback=1"
    (line,) = stack.audit_lines()
    assert line["result"] == "rolled_back" and "boom" in line["error"]
    assert stack.bucket_audit() == [line]


def test_failed_gate_rolls_back_exactly(stack: Stack) -> None:
    original = checksums(stack.pg, stack.db)

    proc = stack.run(stack.driver_file(smoke="echo 'p95 regression: 2300 ms > 1800 ms' && exit 1"))

    assert proc.returncode == 4, proc.stderr
    assert "p95 regression" in proc.stderr
    assert_rolled_back(stack, original)
    state = stack.state()
    assert [(s["name"], s["status"]) for s in state["steps"]][-1] == ("gate", "failed")
    assert state["status"] == "rolled_back"
    assert [line["result"] for line in stack.bucket_audit()] == ["rolled_back"]


def running_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group: orphans are reaped by whoever PID 1 is, or not."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            live.append(int(stat.parent.name))
    return live


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"patch exited {proc.returncode} before the apply step: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def slow_apply(stack: Stack) -> Path:
    """An apply step that mutates the database, says so, then hangs: the moment to kill the patch."""
    psql = client_bin("psql")
    return stack.driver_file(apply=f'{psql} -X -q -d "$ERPOPS_DB" -f "$WORK/apply.sql" && touch "$WORK/applying" '
                                   '&& sleep 120', name="slow.yml")


def test_killed_mid_apply_then_rerun_rolls_back_and_reapplies(stack: Stack) -> None:
    original = checksums(stack.pg, stack.db)
    expected = stack.expected_patched()
    proc = stack.start(slow_apply(stack))
    _wait_for(stack.work / "applying", proc)

    os.kill(proc.pid, signal.SIGKILL)  # the patch alone: its apply command goes on, orphaned
    proc.wait(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    killed = stack.state()
    assert killed["status"] == "running" and killed["steps"][-1]["name"] == "apply"
    orphan = killed["child_pgid"]
    assert running_in_group(orphan)  # the apply command goes on without its parent
    assert checksums(stack.pg, stack.db) != original  # half-applied

    rerun = stack.run(stack.driver_file())

    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)
    assert result["recovered"] == {"run_id": killed["run_id"], "action": "rollback", "status": "rolled_back"}
    assert "orphaned step command" in rerun.stderr
    assert not running_in_group(orphan)
    # rolled back to the original, then re-applied once: exactly the patched database, not twice patched
    assert checksums(stack.pg, stack.db) == expected
    assert stack.image() == TO_IMAGE
    assert not (stack.work / "maintenance").exists()
    assert stack.state()["status"] == "done"
    lines = stack.audit_lines()
    assert [(line["run_id"], line["result"]) for line in lines] == [
        (killed["run_id"], "rolled_back"), (result["run_id"], "done")]
    assert sorted(line["run_id"] for line in stack.bucket_audit()) == sorted(line["run_id"] for line in lines)


def test_killed_mid_apply_then_abort_leaves_the_original(stack: Stack) -> None:
    original = checksums(stack.pg, stack.db)
    proc = stack.start(slow_apply(stack))
    _wait_for(stack.work / "applying", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]

    rerun = stack.run(stack.driver_file(), "--abort")

    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["result"] == "aborted"
    assert_rolled_back(stack, original)
    assert [line["result"] for line in stack.audit_lines()] == ["rolled_back"]


def test_sigterm_mid_apply_rolls_back_by_itself(stack: Stack) -> None:
    original = checksums(stack.pg, stack.db)
    proc = stack.start(slow_apply(stack))
    _wait_for(stack.work / "applying", proc)

    os.kill(proc.pid, signal.SIGTERM)  # the patch process only, as systemd or a CI runner would
    _out, err = proc.communicate(timeout=120)

    assert proc.returncode == 4, err
    assert "interrupted by signal" in err
    assert_rolled_back(stack, original)
    state = stack.state()
    assert state["status"] == "rolled_back" and state["child_pgid"] is None


def test_check_mode_changes_nothing(stack: Stack) -> None:
    original = checksums(stack.pg, stack.db)
    keys = stack.bucket_keys()

    proc = stack.run(stack.driver_file(), "--check")

    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["check"] is True and plan["from_image"] == FROM_IMAGE and plan["problems"] == []
    assert [s["step"] for s in plan["steps"]] == ["preflight", "freeze", "backup", "apply", "roll", "gate"]
    assert "take and verify a backup set now" in plan["steps"][0]["does"]
    assert checksums(stack.pg, stack.db) == original
    assert stack.bucket_keys() == keys
    assert stack.image() == FROM_IMAGE
    assert not stack.state_dir.exists() or not list(stack.state_dir.glob("patch-*.json"))
    assert not (stack.work / "events").exists()


def test_prod_without_approval_is_refused_before_anything_changes(stack: Stack) -> None:
    original = checksums(stack.pg, stack.db)
    keys = stack.bucket_keys()

    proc = stack.run(stack.driver_file(), "--window", "2020-01-01T00:00Z/2020-01-01T04:00Z", stack="prod-patch")

    assert proc.returncode == 6, proc.stderr
    problems = json.loads(proc.stdout)["problems"]
    assert any("--approved-by" in p for p in problems)
    assert any("outside the change window" in p for p in problems)
    assert checksums(stack.pg, stack.db) == original
    assert stack.image() == FROM_IMAGE
    assert not (stack.work / "events").exists()
    # the refusal is audited; no set was taken
    assert [k for k in stack.bucket_keys() if k not in keys and "/audit/" not in k] == []


def test_killed_during_the_pre_patch_backup_is_reported_stuck_until_resolved(stack: Stack) -> None:
    """SIGKILL while the pre-patch backup runs: `--check` and `erpops health` say stuck, and how to resolve it."""
    from healthchecks.core import State, Targets, Thresholds
    from healthchecks.patch import stuck

    # A database big enough that its pre-patch backup takes a while: the moment to kill the patch.
    stack.pg.psql("CREATE TABLE erpops_bulk AS SELECT g AS id, md5(g::text) AS a FROM generate_series(1, 1500000) g",
                  stack.db)
    proc = stack.start(stack.driver_file())
    deadline = time.monotonic() + 600
    while True:
        steps = stack.state()["steps"] if (stack.state_dir / f"patch-{stack.stack}.json").exists() else []
        if steps and steps[-1]["name"] == "backup" and steps[-1]["status"] == "running":
            break
        assert proc.poll() is None, f"patch ended before its pre-patch backup: {proc.stderr.read()}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the pre-patch backup never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    assert (stack.work / "maintenance").exists()  # frozen: this is what must not go unnoticed
    resolve = f"erpops patch --stack {stack.stack} --image {TO_IMAGE} --abort"

    state, text, metrics = stuck(Targets(patch_state_dir=str(stack.state_dir)), Thresholds(levels={}))
    assert state == State.CRIT
    assert "is stuck" in text and "still in maintenance" in text and resolve in text
    assert metrics == {"stuck": 1.0}

    check = stack.run(stack.driver_file(), "--check")
    assert check.returncode == 0, check.stderr
    (reported,) = json.loads(check.stdout)["stuck"]
    assert reported["resolve"] == resolve and reported["would"] == "unfreeze"

    aborted = stack.run(stack.driver_file(), "--abort")
    assert aborted.returncode == 0, aborted.stderr
    assert "was stuck" in aborted.stderr
    assert not (stack.work / "maintenance").exists()
    assert stuck(Targets(patch_state_dir=str(stack.state_dir)), Thresholds(levels={}))[0] == State.OK


def test_the_smoke_gets_the_driver_files_env_and_its_timeout(stack: Stack) -> None:
    original = checksums(stack.pg, stack.db)
    driver = stack.driver_file(smoke='cd "${WORK:?the driver env is missing}" && echo seen > smoke-saw && sleep 600',
                               name="hanging-smoke.yml")
    doc = yaml.safe_load(driver.read_text())
    driver.write_text(yaml.safe_dump({**doc, "timeout_seconds": 30}))

    result = stack.run(driver)

    assert (stack.work / "smoke-saw").read_text().strip() == "seen"  # WORK came from the driver file's env:
    assert result.returncode == 4, result.stderr
    assert "load-test smoke did not finish within 30 s" in result.stderr
    assert_rolled_back(stack, original)
