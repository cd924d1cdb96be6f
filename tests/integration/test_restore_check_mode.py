"""`playbooks/restore.yml --check` pre-flights the database server, as `backup.yml --check` does the bucket.

Before, check mode looked the set up in the bucket and reported `changed` whatever the server said: an
unreachable server, a role that does not exist or may not create databases, an existing database
without replace, all showed `changed=1`, and the real run then failed. Now check mode runs
`erpops restore --dry-run`, the real run's pre-flight, and fails where the real run would; a restore
that can run is `changed` and nothing is created. The same rights are checked by a real run before
it builds anything (exit 6, not a failure half-way).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from erpops.demo import ODOO_BASE_SQL
from erpops.local import LocalPostgres, LocalS3

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
VENV_BIN = Path(sys.executable).parent
BUCKET = "erpops-restore-check"
SOURCE_DB = "rc_source"
NO_CREATEDB = "rc_no_createdb"  # may log in, may not create databases
CREATEDB_ONLY = "rc_createdb"  # may create databases, owns only OWNED_DB
OWNED_DB = "rc_owned"
AWS_SECRET = "rc-aws-secret-5e4d3c2b"
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "ANSIBLE_", "ERPOPS_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", AWS_EC2_METADATA_DISABLED="true")
    return env


def databases(pg: LocalPostgres) -> set[str]:
    return set(pg.psql("SELECT datname FROM pg_database").split())


@pytest.fixture(scope="module")
def roles(pg: LocalPostgres) -> Iterator[None]:
    pg.psql(f"CREATE ROLE {NO_CREATEDB} LOGIN; CREATE ROLE {CREATEDB_ONLY} LOGIN CREATEDB")
    yield
    pg.psql(f"DROP DATABASE IF EXISTS {OWNED_DB}")
    pg.psql(f"DROP ROLE IF EXISTS {NO_CREATEDB}; DROP ROLE IF EXISTS {CREATEDB_ONLY}")


@pytest.fixture(scope="module")
def set_id(pg: LocalPostgres, s3: LocalS3) -> str:
    """One backup set of a small Odoo-shaped database, taken with the CLI."""
    s3.client().create_bucket(Bucket=BUCKET)
    pg.psql(f"CREATE DATABASE {SOURCE_DB}")
    pg.psql(ODOO_BASE_SQL, SOURCE_DB)
    pg.psql("CREATE TABLE res_partner (id serial PRIMARY KEY, name text);"
            "INSERT INTO res_partner (name) SELECT 'p' || g FROM generate_series(1, 7) g", SOURCE_DB)
    env = {**_clean_env(), **s3.env(), **pg.env()}
    proc = subprocess.run([str(VENV_BIN / "erpops"), "backup", "--target", f"s3://{BUCKET}/dev", "--endpoint-url",
                           s3.endpoint_url, "--db", SOURCE_DB, "--stack", "dev", "--json"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(json.loads(proc.stdout)["set_id"])


@pytest.fixture(scope="module")
def extra_vars(pg: LocalPostgres, s3: LocalS3, set_id: str, roles: None,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    values = {
        "erpops_db": SOURCE_DB,
        "erpops_pg_host": pg.host,
        "erpops_pg_port": pg.port,
        "erpops_pg_user": pg.user,
        "erpops_backup_target": f"s3://{BUCKET}/dev",
        "erpops_s3_endpoint_url": s3.endpoint_url,
        "erpops_s3_region": s3.region,
        "erpops_aws_access_key_id": s3.env()["AWS_ACCESS_KEY_ID"],
        "erpops_aws_secret_access_key": AWS_SECRET,
        "erpops_restore_odoo_version": "",
    }
    path = tmp_path_factory.mktemp("restore-check") / "vars.json"
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return path


def restore_check(extra_vars: Path, db: str, *overrides: str) -> tuple[int, int, str]:
    """(rc, changed, output) of `ansible-playbook restore.yml --check -e erpops_restore_db=<db> ...`."""
    env = {**_clean_env(), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg")}
    args = [a for o in overrides for a in ("-e", o)]
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "restore.yml", "-i", "inventories/dev/hosts.yml", "-e", f"@{extra_vars}",
         "--check", "-e", f"erpops_restore_db={db}", *args],
        cwd=PLAYBOOKS, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert AWS_SECRET not in out, out
    m = RECAP.search(out)
    assert m, out
    return proc.returncode, int(m.group(2)), " ".join(out.split())


def test_a_restore_that_can_run_is_changed_and_creates_nothing(extra_vars: Path, pg: LocalPostgres,
                                                              set_id: str) -> None:
    before = databases(pg)
    rc, changed, out = restore_check(extra_vars, "rc_new")
    assert (rc, changed) == (0, 1), out
    assert f"set_id={set_id}" in out and "would=restore_into_new_database_rc_new" in out, out
    assert databases(pg) == before


@pytest.mark.parametrize(("overrides", "says"), [
    (["erpops_pg_port=1"], "connection to server at"),
    (["erpops_pg_user=rc_no_such_role"], 'role "rc_no_such_role" does not exist'),
    ([f"erpops_pg_user={NO_CREATEDB}"], f"role {NO_CREATEDB} on 127.0.0.1"),
    ([f"erpops_restore_db={SOURCE_DB}"], f"database {SOURCE_DB} already exists"),
    ([f"erpops_pg_user={CREATEDB_ONLY}", f"erpops_restore_db={SOURCE_DB}", "erpops_restore_replace=true",
      "erpops_restore_confirm=true"], f"cannot replace database {SOURCE_DB}: it is owned by"),
], ids=["server-unreachable", "role-unknown", "no-createdb", "database-exists", "replace-not-owner"])
def test_check_mode_fails_where_the_real_run_would(extra_vars: Path, pg: LocalPostgres, overrides: list[str],
                                                   says: str) -> None:
    before = databases(pg)
    rc, changed, out = restore_check(extra_vars, "rc_never", *overrides)
    assert rc != 0 and changed == 0, out
    assert says in out, out
    assert databases(pg) == before


def test_check_mode_of_a_confirmed_replace_says_it_replaces(extra_vars: Path, pg: LocalPostgres) -> None:
    oid = pg.psql(f"SELECT oid FROM pg_database WHERE datname = '{SOURCE_DB}'").strip()
    rc, changed, out = restore_check(extra_vars, SOURCE_DB, "erpops_restore_replace=true",
                                     "erpops_restore_confirm=true")
    assert (rc, changed) == (0, 1), out
    assert f"would=replace_database_{SOURCE_DB}" in out, out
    assert pg.psql(f"SELECT oid FROM pg_database WHERE datname = '{SOURCE_DB}'").strip() == oid


def test_the_owner_of_a_database_may_replace_it_without_being_a_superuser(extra_vars: Path,
                                                                        pg: LocalPostgres) -> None:
    pg.psql(f"CREATE DATABASE {OWNED_DB} OWNER {CREATEDB_ONLY}")
    rc, changed, out = restore_check(extra_vars, OWNED_DB, f"erpops_pg_user={CREATEDB_ONLY}",
                                     "erpops_restore_replace=true", "erpops_restore_confirm=true")
    assert (rc, changed) == (0, 1), out
    assert f"would=replace_database_{OWNED_DB}" in out, out


def test_a_real_restore_by_a_role_without_createdb_is_refused_before_anything(pg: LocalPostgres, s3: LocalS3,
                                                                             set_id: str, roles: None) -> None:
    """The rights are part of the pre-flight of a real run too: exit 6, nothing built, not exit 4 half-way."""
    before = databases(pg)
    env = {**_clean_env(), **s3.env(), **pg.env(), "PGUSER": NO_CREATEDB}
    proc = subprocess.run([str(VENV_BIN / "erpops"), "restore", set_id, "--to", "rc_refused", "--target",
                           f"s3://{BUCKET}/dev", "--endpoint-url", s3.endpoint_url, "--json"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)
    assert any(f"role {NO_CREATEDB}" in p and "may not create databases" in p for p in error["problems"]), error
    assert databases(pg) == before
