"""The playbooks end to end: ansible-playbook, as an operator runs it, against real PostgreSQL and S3.

backup.yml -> verify.yml -> restore.yml into a new database, then the safety rails: backup in
check mode writes nothing, a restore onto an existing database without confirmation is refused
by the pre-flight and leaves it untouched, replace without confirm and prod without allow_prod
are refused by the playbook. Credentials travel in an extra-vars file, as a vault would hand
them over, and must never show up in the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from erpops.backup import engine
from erpops.demo import ODOO_BASE_SQL
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
VENV_BIN = Path(sys.executable).parent
BUCKET = "erpops-playbooks"
SOURCE_DB = "pb_source"
# Distinctive values: finding them in ansible's output means a secret leaked.
AWS_SECRET = "pb-aws-secret-0f1e2d3c"
PG_PASSWORD = "pb-pg-password-9a8b7c6d"
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class Run:
    rc: int
    out: str

    @property
    def changed(self) -> int:
        return int(self._recap()[1])

    @property
    def failed(self) -> int:
        return int(self._recap()[3])

    def _recap(self) -> tuple[str, ...]:
        m = RECAP.search(self.out)
        assert m, f"no PLAY RECAP in:\n{self.out}"
        return m.groups()

    def value(self, key: str) -> str:
        m = re.search(rf"\b{key}=([^\s'\"]+)", self.out)
        assert m, f"{key}= not in:\n{self.out}"
        return m.group(1)


@pytest.fixture(scope="module", autouse=True)
def drop_databases_made_here(pg: LocalPostgres) -> Iterator[None]:
    """The PostgreSQL server is shared by the session: leave it with the databases it had."""
    server = Pg.from_local(pg)
    before = set(server.psql("SELECT datname FROM pg_database").split())
    yield
    for db in set(server.psql("SELECT datname FROM pg_database").split()) - before:
        engine.drop_database(server, db)


@pytest.fixture(scope="module")
def source_db(pg: LocalPostgres) -> str:
    """A small Odoo-shaped database with two of the tables a set records row counts of."""
    pg.psql(f"CREATE DATABASE {SOURCE_DB}")
    pg.psql(ODOO_BASE_SQL, SOURCE_DB)
    pg.psql("CREATE TABLE res_partner (id serial PRIMARY KEY, name text NOT NULL);"
            "INSERT INTO res_partner (name) SELECT 'partner ' || g FROM generate_series(1, 42) g;"
            "CREATE TABLE sale_order (id serial PRIMARY KEY, partner_id int REFERENCES res_partner);"
            "INSERT INTO sale_order (partner_id) SELECT 1 + g % 42 FROM generate_series(1, 24) g;", SOURCE_DB)
    return SOURCE_DB


@pytest.fixture(scope="module")
def extra_vars(pg: LocalPostgres, s3: LocalS3, source_db: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev inventory pointed at the loopback servers: an extra-vars file, mode 0600."""
    s3.client().create_bucket(Bucket=BUCKET)
    values = {
        "erpops_db": source_db,
        "erpops_pg_host": pg.host,
        "erpops_pg_port": pg.port,
        "erpops_pg_user": pg.user,
        "erpops_pg_password": PG_PASSWORD,  # trust auth ignores it; it must stay out of the output
        "erpops_backup_target": f"s3://{BUCKET}/dev",
        "erpops_s3_endpoint_url": s3.endpoint_url,
        "erpops_s3_region": s3.region,
        "erpops_aws_access_key_id": s3.env()["AWS_ACCESS_KEY_ID"],
        "erpops_aws_secret_access_key": AWS_SECRET,  # moto accepts any secret
        "erpops_restore_odoo_version": "",  # not an Odoo database: no version to match
    }
    path = tmp_path_factory.mktemp("playbooks") / "vars.json"
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return path


def playbook(name: str, extra_vars: Path, *args: str, inventory: str = "dev", tmpdir: Path | None = None) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "ANSIBLE_", "ERPOPS_"))}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"), AWS_EC2_METADATA_DISABLED="true")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), name, "-i", f"inventories/{inventory}/hosts.yml",
         "-e", f"@{extra_vars}", *args],
        cwd=PLAYBOOKS, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    for secret in (AWS_SECRET, PG_PASSWORD):
        assert secret not in out, f"a secret leaked into the output of {name}:\n{out}"
    return Run(proc.returncode, out)


def bucket_keys(s3: LocalS3) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def counts(pg: LocalPostgres, db: str) -> dict[str, int]:
    rows = pg.psql("SELECT 'res_partner', count(*) FROM res_partner UNION ALL "
                   "SELECT 'sale_order', count(*) FROM sale_order", db)
    return {table: int(n) for table, n in (line.split("|") for line in rows.split())}


def database_oid(pg: LocalPostgres, db: str) -> str:
    return pg.psql(f"SELECT oid FROM pg_database WHERE datname = '{db}'").strip()


@pytest.fixture(scope="module")
def backed_up(extra_vars: Path, s3: LocalS3) -> dict[str, Any]:
    run = playbook("backup.yml", extra_vars)
    assert run.rc == 0, run.out
    return {"run": run, "set_id": run.value("set_id"), "keys": bucket_keys(s3)}


def test_servers_listen_on_loopback(host: Any, pg: LocalPostgres, s3: LocalS3) -> None:
    assert host.socket(f"tcp://127.0.0.1:{pg.port}").is_listening
    assert host.socket(f"tcp://127.0.0.1:{s3.port}").is_listening
    assert host.file(str(PLAYBOOKS / "inventories/dev/hosts.yml")).contains("erpops_backup_target")


def test_backup_playbook_creates_a_verified_set(backed_up: dict[str, Any]) -> None:
    run, set_id = backed_up["run"], backed_up["set_id"]
    assert run.changed == 1, run.out  # the backup; the verify that follows changes nothing
    assert set_id.startswith("dev-"), set_id
    assert f"sets/{set_id}/manifest.json" in {k.removeprefix("dev/") for k in backed_up["keys"]}
    assert f"dev/sets/{set_id}/verify.json" in backed_up["keys"]


def test_verify_playbook_reports_ok_and_changes_nothing(backed_up: dict[str, Any], extra_vars: Path) -> None:
    run = playbook("verify.yml", extra_vars, "-e", f"erpops_verify_set_id={backed_up['set_id']}")
    assert run.rc == 0, run.out
    assert (run.changed, run.value("ok")) == (0, "True"), run.out


def test_restore_playbook_restores_into_a_new_database(backed_up: dict[str, Any], extra_vars: Path,
                                                       pg: LocalPostgres) -> None:
    run = playbook("restore.yml", extra_vars, "-e", "erpops_restore_db=pb_restored")
    assert run.rc == 0, run.out
    assert run.changed == 1, run.out
    assert run.value("set_id") == backed_up["set_id"]  # the newest set of erpops_db
    assert counts(pg, "pb_restored") == counts(pg, SOURCE_DB) == {"res_partner": 42, "sale_order": 24}


def test_backup_in_check_mode_writes_nothing(backed_up: dict[str, Any], extra_vars: Path, s3: LocalS3) -> None:
    before = bucket_keys(s3)
    run = playbook("backup.yml", extra_vars, "--check")
    assert run.rc == 0, run.out
    assert run.changed == 1, run.out  # what a real run would do
    assert "set_id=(check mode)" in run.out
    assert bucket_keys(s3) == before


def test_restore_in_check_mode_creates_nothing(backed_up: dict[str, Any], extra_vars: Path,
                                               pg: LocalPostgres) -> None:
    run = playbook("restore.yml", extra_vars, "--check", "-e", "erpops_restore_db=pb_check_mode")
    assert (run.rc, run.changed) == (0, 1), run.out
    assert database_oid(pg, "pb_check_mode") == ""


def test_restore_onto_an_existing_database_is_refused_by_the_preflight(backed_up: dict[str, Any], extra_vars: Path,
                                                                      pg: LocalPostgres) -> None:
    oid, before = database_oid(pg, SOURCE_DB), counts(pg, SOURCE_DB)
    run = playbook("restore.yml", extra_vars, "-e", f"erpops_restore_db={SOURCE_DB}")
    assert run.rc != 0 and run.failed == 1, run.out
    assert "refused by pre-flight checks (nothing was changed)" in run.out
    assert f"database {SOURCE_DB} already exists" in run.out
    assert "(exit code 6)" in run.out
    assert (database_oid(pg, SOURCE_DB), counts(pg, SOURCE_DB)) == (oid, before)


@pytest.mark.parametrize(("inventory", "args", "message"), [
    ("dev", ["-e", "erpops_restore_replace=true"], "add -e erpops_restore_confirm=true"),
    ("prod", ["-e", "erpops_restore_db=odoo_copy"], "tier prod: restoring there needs -e erpops_restore_allow_prod"),
    ("dev", [], "erpops_restore_db is not set"),
], ids=["replace-unconfirmed", "prod-not-allowed", "no-target-db"])
def test_restore_playbook_refuses_before_calling_erpops(backed_up: dict[str, Any], extra_vars: Path,
                                                        pg: LocalPostgres, inventory: str, args: list[str],
                                                        message: str) -> None:
    oid = database_oid(pg, SOURCE_DB)
    if "erpops_restore_replace=true" in args:
        args = [*args, "-e", f"erpops_restore_db={SOURCE_DB}"]
    run = playbook("restore.yml", extra_vars, *args, inventory=inventory)
    assert run.rc != 0 and run.failed == 1, run.out
    assert message in run.out
    assert "Restore the set into" not in run.out  # stopped before the restore task
    assert database_oid(pg, SOURCE_DB) == oid


def test_replace_with_confirmation_swaps_the_database(backed_up: dict[str, Any], extra_vars: Path,
                                                      pg: LocalPostgres) -> None:
    pg.psql("DELETE FROM sale_order WHERE id > 20", "pb_restored")  # break something on purpose
    oid = database_oid(pg, "pb_restored")
    run = playbook("restore.yml", extra_vars, "-e", "erpops_restore_db=pb_restored",
                   "-e", "erpops_restore_replace=true", "-e", "erpops_restore_confirm=true")
    assert run.rc == 0, run.out
    assert run.value("replaced") == "True"
    assert counts(pg, "pb_restored")["sale_order"] == 24
    assert database_oid(pg, "pb_restored") != oid


def test_rehearse_playbook_rehearses_the_newest_verified_set(backed_up: dict[str, Any], extra_vars: Path,
                                                            pg: LocalPostgres, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run = playbook("rehearse.yml", extra_vars, "-e", "erpops_rehearse_to=dev",
                   "-e", f"erpops_rehearse_pg_host={pg.host}", "-e", f"erpops_rehearse_pg_port={pg.port}",
                   "-e", f"erpops_rehearse_report_dir={reports}")
    assert run.rc == 0 and run.changed == 0, run.out
    assert f"set_id={backed_up['set_id']}" in run.out
    assert "RPO met=True" in run.out and "RTO met=True" in run.out
    [report] = reports.glob("rehearsal-dev-dev-*.json")
    body = json.loads(report.read_text())
    assert body["ok"] is True and body["set"]["set_id"] == backed_up["set_id"]
    assert body["dropped"] is True  # a rehearsal leaves no database behind
    assert not [db for db in pg.psql("SELECT datname FROM pg_database").split() if "_rehearsal_" in db]


def test_rehearse_playbook_refuses_the_backed_up_stacks_own_server(backed_up: dict[str, Any],
                                                                   extra_vars: Path, pg: LocalPostgres) -> None:
    run = playbook("rehearse.yml", extra_vars, "-e", "erpops_rehearse_to=staging",
                   "-e", f"erpops_rehearse_pg_host={pg.host}")
    assert run.rc != 0
    assert "set erpops_rehearse_pg_host to the PostgreSQL server of stack staging" in run.out


def test_rehearse_playbook_as_the_runbook_writes_it(backed_up: dict[str, Any], extra_vars: Path,
                                                  pg: LocalPostgres, tmp_path: Path) -> None:
    """runbooks/backup-restore.md: `rehearse.yml -i inventories/<stack>/hosts.yml -e erpops_rehearse_to=<to stack>`,
    first with --check; no erpops_rehearse_pg_host: it comes from the receiving stack's inventory."""
    reports = tmp_path / "reports"
    check = playbook("rehearse.yml", extra_vars, "-e", "erpops_rehearse_to=dev", "--check",
                     "-e", f"erpops_rehearse_report_dir={reports}")
    assert check.rc == 0 and check.changed == 0, check.out
    assert f"erpops rehearse (check mode): set_id={backed_up['set_id']}" in check.out
    assert not reports.exists()  # nothing ran
    run = playbook("rehearse.yml", extra_vars, "-e", "erpops_rehearse_to=dev",
                   "-e", f"erpops_rehearse_report_dir={reports}")
    assert run.rc == 0, run.out
    assert "RPO met=True" in run.out and "RTO met=True" in run.out
    assert not [db for db in pg.psql("SELECT datname FROM pg_database").split() if "_rehearsal_" in db]


def test_rehearse_check_mode_to_another_stack_uses_that_stacks_server(backed_up: dict[str, Any],
                                                                     extra_vars: Path) -> None:
    run = playbook("rehearse.yml", extra_vars, "-e", "erpops_rehearse_to=staging", "--check")
    assert run.rc == 0, run.out
    # erpops_pg_host of inventories/staging/hosts.yml, generated from Pulumi.staging.yaml
    said = " ".join(run.out.split())  # the yaml callback wraps long messages
    assert "into a new neutralized database on odoo-db-rw.erpops-staging.svc (stack staging)" in said, run.out


@pytest.mark.parametrize(("override", "says"), [
    ("erpops_db=pb_no_such_db", "database pb_no_such_db does not exist"),
    ("erpops_backup_target=s3://erpops-no-such-bucket/dev", "the bucket does not exist"),
], ids=["missing-database", "missing-bucket"])
def test_backup_check_mode_fails_when_the_real_run_would(backed_up: dict[str, Any], extra_vars: Path, s3: LocalS3,
                                                         override: str, says: str) -> None:
    before = bucket_keys(s3)
    run = playbook("backup.yml", extra_vars, "--check", "-e", override)
    assert run.rc != 0 and run.changed == 0, run.out
    assert says in run.out
    assert bucket_keys(s3) == before


def module(name: str, args: dict[str, Any], *flags: str) -> dict[str, Any]:
    """One erpops.ops module run ad hoc on the controller; its result (the oneline callback prints JSON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "ANSIBLE_", "ERPOPS_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"),
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.oneline",
               AWS_EC2_METADATA_DISABLED="true")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", f"erpops.ops.{name}",
         "-a", json.dumps(args), "-e", json.dumps({"ansible_python_interpreter": sys.executable}), *flags],
        cwd=PLAYBOOKS, env=env, capture_output=True, text=True, timeout=300, check=False)
    head, _, payload = proc.stdout.strip().splitlines()[-1].partition("=> ")
    return {**json.loads(payload), "failed": "FAILED" in head}


def test_odoo_zip_export_of_a_set_then_import_round_trips(backed_up: dict[str, Any], pg: LocalPostgres, s3: LocalS3,
                                                          tmp_path: Path) -> None:
    commands = [subprocess.run([str(VENV_BIN / "erpops"), verb, "odoo-zip", "--help"], capture_output=True,
                               check=False, timeout=60).returncode == 0 for verb in ("import", "export")]
    if not all(commands):
        pytest.skip("this erpops has no `import odoo-zip` / `export odoo-zip` commands yet")
    s3_args = {"target": f"s3://{BUCKET}/dev", "endpoint_url": s3.endpoint_url, "region": s3.region,
               "aws_access_key_id": s3.env()["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": AWS_SECRET}
    pg_args = {"pg_host": pg.host, "pg_port": pg.port, "pg_user": pg.user}
    zip_path = tmp_path / "set.zip"
    exported = module("erpops_odoo_zip", {"mode": "export", "set_id": backed_up["set_id"], "dest": str(zip_path),
                                          **s3_args, **pg_args})
    assert not exported["failed"] and exported["changed"], exported
    again = module("erpops_odoo_zip", {"mode": "export", "dest": str(zip_path), **s3_args, **pg_args})
    assert (again["failed"], again["changed"]) == (False, False), again  # dest exists: left alone
    imported = module("erpops_odoo_zip", {"mode": "import", "src": str(zip_path), "db": "pb_from_zip",
                                          "filestore": str(tmp_path / "filestore"), **pg_args})
    assert not imported["failed"] and imported["changed"], imported
    assert counts(pg, "pb_from_zip") == counts(pg, SOURCE_DB)


FS_DB = "pb_fs_source"
# Odoo names each filestore file by the sha1 of its content (<2 hex>/<sha1>): the backup checks it
FS_FILES = {f"{h[:2]}/{h}": data for data in (b"invoice scan\n" * 100, b"\x89PNG product picture", b"")
            for h in [hashlib.sha1(data).hexdigest()]}  # noqa: S324 (Odoo's naming, not security)
FS_TARGET = f"s3://{BUCKET}/dev-filestore"  # its own prefix: the rehearsals above pick the newest set of dev


def test_restore_playbook_with_a_filestore_restores_the_files(pg: LocalPostgres, extra_vars: Path, host: Any,
                                                             tmp_path: Path) -> None:
    """runbooks/backup-restore.md: `-e erpops_restore_filestore=<data_dir>/filestore` for a set with a filestore."""
    pg.psql(f"CREATE DATABASE {FS_DB}")
    pg.psql(ODOO_BASE_SQL, FS_DB)
    source = tmp_path / "source-filestore"
    for rel, data in FS_FILES.items():
        (source / FS_DB / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / FS_DB / rel).write_bytes(data)
    target = ("-e", f"erpops_backup_target={FS_TARGET}")
    backup = playbook("backup.yml", extra_vars, *target, "-e", f"erpops_db={FS_DB}",
                      "-e", f"erpops_backup_filestore={source}")
    assert backup.rc == 0, backup.out
    dest = tmp_path / "data_dir" / "filestore"
    dest.mkdir(parents=True)
    run = playbook("restore.yml", extra_vars, *target, "-e", f"erpops_restore_source_db={FS_DB}",
                   "-e", "erpops_restore_db=pb_fs_restored", "-e", f"erpops_restore_filestore={dest}")
    assert run.rc == 0, run.out
    assert "mutually exclusive" not in run.out
    assert run.value("set_id") == backup.value("set_id")
    assert database_oid(pg, "pb_fs_restored") != ""
    db_owner = pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'pb_fs_restored'").strip()
    assert db_owner == pg.user  # the connecting role owns it (no `owner` given)
    owner = host.file(str(dest)).user
    for rel, data in FS_FILES.items():
        restored = host.file(str(dest / "pb_fs_restored" / rel))
        assert restored.is_file and restored.content == data, rel
        assert restored.user == owner  # the Odoo user owning the filestore root can read and write them
        assert restored.mode & 0o600 == 0o600, oct(restored.mode)
    assert not list((dest / "pb_fs_restored").rglob(".*part-*"))  # no partial file left behind


def test_restore_playbook_refuses_a_filestore_with_skip_filestore(backed_up: dict[str, Any], extra_vars: Path,
                                                                 tmp_path: Path) -> None:
    run = playbook("restore.yml", extra_vars, "-e", "erpops_restore_db=pb_never", "-e",
                   f"erpops_restore_filestore={tmp_path}", "-e", "erpops_restore_skip_filestore=true")
    assert run.rc != 0, run.out
    assert "filestore and skip_filestore=true contradict each other" in run.out


def test_a_neutralized_backup_leaves_no_scratch_database_or_temp_file(backed_up: dict[str, Any], extra_vars: Path,
                                                                     pg: LocalPostgres, host: Any,
                                                                     tmp_path: Path) -> None:
    """backup.yml -e erpops_backup_neutralized=true copies the database into a scratch one: gone afterwards."""
    databases = set(pg.psql("SELECT datname FROM pg_database").split())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = playbook("backup.yml", extra_vars, "-e", f"erpops_backup_target=s3://{BUCKET}/dev-neutralized",
                   "-e", "erpops_backup_neutralized=true", tmpdir=scratch)
    assert run.rc == 0, run.out
    assert set(pg.psql("SELECT datname FROM pg_database").split()) == databases
    leftovers = host.check_output(f"find {scratch} -mindepth 1 -not -path '*/ansible-*' -print")
    assert leftovers == "", leftovers



def test_restore_module_shows_what_it_changed_with_diff(backed_up: dict[str, Any], pg: LocalPostgres,
                                                        s3: LocalS3) -> None:
    """`ansible ... -m erpops.ops.erpops_restore --diff`: the default callback prints the module's diff."""
    args = {"set_id": backed_up["set_id"], "db": "pb_diffed", "skip_filestore": True, "odoo_version": "",
            "pg_host": pg.host, "pg_port": pg.port, "pg_user": pg.user, "target": f"s3://{BUCKET}/dev",
            "endpoint_url": s3.endpoint_url, "region": s3.region,
            "aws_access_key_id": s3.env()["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": AWS_SECRET}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "ANSIBLE_", "ERPOPS_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", AWS_EC2_METADATA_DISABLED="true")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", "erpops.ops.erpops_restore",
         "-a", json.dumps(args), "-e", json.dumps({"ansible_python_interpreter": sys.executable}), "--diff"],
        cwd=PLAYBOOKS, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert AWS_SECRET not in proc.stdout + proc.stderr
    assert "-pb_diffed: absent" in proc.stdout, proc.stdout
    assert f"+pb_diffed: restored from set {backed_up['set_id']}" in proc.stdout
    assert "+  res_partner: 42 rows" in proc.stdout
