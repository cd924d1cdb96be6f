"""`erpops filestore migrate` on a real Odoo 17 database (the shared backup fixture), PostgreSQL 15 and moto S3.

The database gets the two things OCA fs_attachment adds and the migration relies on: the `fs_storage`
table with the chart's record (code erpops_filestore, protocol s3, directory_path = the bucket) and
`ir_attachment.fs_filename`. Odoo itself does not run here: what we check is what it would read,
the rows' store_fname in the addon's layout and the bytes behind them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from erpops.backup.odoozip import import_odoo_zip
from erpops.filestore.migrate import Migration
from erpops.filestore.stores import DirStore, S3Store
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "fsm_template"
BUCKET = "erpops-fsm-unused"  # the aws fixture creates it; every test makes its own bucket
CODE = "erpops_filestore"
STORED_ATTACHMENTS, FILESTORE_FILES = 858, 566  # shared/fixtures/README.md; several rows share bytes


@dataclass
class Odoo:
    db: str
    filestore: Path
    bucket: str
    pg: Pg
    s3: LocalS3

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}"

    def rows(self) -> dict[int, tuple[str, str, str | None]]:
        got = self.pg.psql("SELECT coalesce(json_agg(json_build_array(id, store_fname, checksum, fs_filename)), '[]') "
                           "FROM ir_attachment WHERE store_fname IS NOT NULL", self.db)
        return {r[0]: (r[1], r[2], r[3]) for r in json.loads(got)}

    def objects(self) -> dict[str, bytes]:
        client = self.s3.client()
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
                for o in page.get("Contents", [])]
        return {k: client.get_object(Bucket=self.bucket, Key=k)["Body"].read() for k in keys}

    def versions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for page in self.s3.client().get_paginator("list_object_versions").paginate(Bucket=self.bucket):
            for v in page.get("Versions", []):
                counts[v["Key"]] = counts.get(v["Key"], 0) + 1
        return counts


def sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def template(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory, odoo_fixture: Path) -> Path:
    client = Pg.from_local(pg)
    root = tmp_path_factory.mktemp("fsm")
    import_odoo_zip(odoo_fixture, client, TEMPLATE, root)
    # what installing OCA fs_storage + fs_attachment adds (the columns this migration reads and writes)
    client.psql("ALTER TABLE ir_attachment ADD COLUMN fs_filename varchar;"
                "CREATE TABLE fs_storage (id serial PRIMARY KEY, name jsonb, code varchar NOT NULL UNIQUE, "
                "protocol varchar NOT NULL, options text, directory_path varchar, optimizes_directory_path boolean, "
                "use_as_default_for_attachments boolean)", TEMPLATE)
    return root / TEMPLATE


@pytest.fixture
def odoo(pg: LocalPostgres, aws: LocalS3, template: Path, tmp_path: Path) -> Iterator[Odoo]:
    client = Pg.from_local(pg)
    name = f"fsm_{uuid.uuid4().hex[:8]}"
    client.psql(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    filestore = tmp_path / "filestore" / name
    shutil.copytree(template, filestore)
    bucket = name.replace("_", "-")
    s3c = aws.client()
    s3c.create_bucket(Bucket=bucket)
    # versioned: every upload leaves a version, so "nothing was sent twice" is countable
    s3c.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.psql("INSERT INTO fs_storage (name, code, protocol, directory_path, use_as_default_for_attachments) "
                f"VALUES ('{{\"en_US\": \"erpops filestore\"}}', '{CODE}', 's3', '{bucket}', true)", name)
    yield Odoo(name, filestore, bucket, client, aws)
    client.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(odoo: Odoo, *args: str, checkpoint: Path | None = None) -> tuple[int, dict[str, Any], str]:
    env = {**odoo.pg.env(), **odoo.s3.env()}
    cmd = [sys.executable, "-m", "erpops.cli", "filestore", "migrate", "--db", odoo.db, "--json", *args]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    # the report, then (on failure) an {"ok": false, "error": ...} object
    text = done.stdout.strip()
    report = json.JSONDecoder().raw_decode(text)[0] if text.startswith("{") else {}
    return done.returncode, report, done.stderr


def assert_all_in_bucket(odoo: Odoo) -> None:
    objects = odoo.objects()
    rows = odoo.rows()
    assert len(rows) == STORED_ATTACHMENTS
    for rid, (store_fname, checksum, fs_filename) in rows.items():
        assert store_fname == f"{CODE}://{checksum}", f"attachment {rid} still at {store_fname}"
        assert fs_filename == checksum
        assert sha1(objects[checksum]) == checksum, f"object {checksum} does not hold attachment {rid}'s bytes"
    assert len(objects) == FILESTORE_FILES


def test_dry_run_plans_and_changes_nothing(odoo: Odoo) -> None:
    before = odoo.rows()
    code, plan, stderr = cli(odoo, "--from", str(odoo.filestore), "--to", odoo.url)
    assert code == 0, stderr
    sizes = {p.name: p.stat().st_size for p in odoo.filestore.glob("*/*")}
    assert (plan["apply"], plan["rows"], plan["files"], plan["present"]) == (False, STORED_ATTACHMENTS,
                                                                            FILESTORE_FILES, 0)
    assert plan["bytes"] == sum(sizes.values())
    assert odoo.rows() == before
    assert odoo.objects() == {}


def test_move_to_object_storage_and_back(odoo: Odoo, tmp_path: Path) -> None:
    code, report, stderr = cli(odoo, "--from", str(odoo.filestore), "--to", odoo.url, "--apply", "--jobs", "4",
                               checkpoint=tmp_path / "cp.json")
    assert code == 0, stderr
    assert (report["moved"], report["copied"], report["failed"]) == (STORED_ATTACHMENTS, FILESTORE_FILES, [])
    assert_all_in_bucket(odoo)
    assert set(odoo.versions().values()) == {1}
    assert len(list(odoo.filestore.glob("*/*"))) == FILESTORE_FILES, "the source must be kept"
    assert not (tmp_path / "cp.json").exists(), "a finished move leaves no checkpoint"

    code, again, _ = cli(odoo, "--from", str(odoo.filestore), "--to", odoo.url, "--apply")
    assert code == 0 and again["rows"] == 0 and again["already_switched"] == STORED_ATTACHMENTS

    back = tmp_path / "volume" / odoo.db
    code, report, stderr = cli(odoo, "--from", odoo.url, "--to", str(back), "--apply")
    assert code == 0, stderr
    assert (report["moved"], report["copied"]) == (STORED_ATTACHMENTS, FILESTORE_FILES)
    for rid, (store_fname, checksum, fs_filename) in odoo.rows().items():
        assert store_fname == f"{checksum[:2]}/{checksum}", f"attachment {rid} at {store_fname}"
        assert fs_filename is None
        assert sha1((back / store_fname).read_bytes()) == checksum


def test_sigkill_mid_run_then_resume_copies_nothing_twice_and_loses_nothing(odoo: Odoo, tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.json"
    env = {**odoo.pg.env(), **odoo.s3.env()}
    cmd = [sys.executable, "-m", "erpops.cli", "filestore", "migrate", "--db", odoo.db, "--from",
           str(odoo.filestore), "--to", odoo.url, "--apply", "--batch", "20", "--jobs", "2",
           "--checkpoint", str(checkpoint)]
    with subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads(checkpoint.read_text())["cursor"] > 0:
                    break
            except (FileNotFoundError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    rows = odoo.rows()
    switched = {rid for rid, (fname, _, _) in rows.items() if fname.startswith(f"{CODE}://")}
    assert 0 < len(switched) < STORED_ATTACHMENTS
    objects = odoo.objects()
    for rid in switched:  # a switched row always has its bytes verified at the target
        assert sha1(objects[rows[rid][1]]) == rows[rid][1]

    code, report, stderr = cli(odoo, "--from", str(odoo.filestore), "--to", odoo.url, "--apply", "--batch", "20",
                               checkpoint=checkpoint)
    assert code == 0, stderr
    assert report["resumed_from"] > 0
    assert report["moved"] == STORED_ATTACHMENTS - len(switched)
    assert_all_in_bucket(odoo)
    versions = odoo.versions()
    assert [k for k, n in versions.items() if n != 1] == [], "objects uploaded more than once"


def test_an_object_corrupted_on_the_target_is_detected_and_resent(odoo: Odoo) -> None:
    victims = sorted(p for p in odoo.filestore.glob("*/*") if p.stat().st_size > 100)[:2]
    client = odoo.s3.client()
    same_size = bytes(b ^ 0xFF for b in victims[0].read_bytes())
    client.put_object(Bucket=odoo.bucket, Key=victims[0].name, Body=same_size)  # same size, other bytes
    client.put_object(Bucket=odoo.bucket, Key=victims[1].name, Body=b"truncated")
    code, report, stderr = cli(odoo, "--from", str(odoo.filestore), "--to", odoo.url, "--apply")
    assert code == 0, stderr
    # the same-size one is caught by its checksum alone ("present" counts files shared by rows of later batches)
    assert (report["resent"], report["copied"]) == (2, FILESTORE_FILES - 2)
    assert_all_in_bucket(odoo)


def test_a_bad_upload_is_caught_by_the_read_back_and_sent_again(odoo: Odoo, tmp_path: Path) -> None:
    class FlakyS3(S3Store):
        """The first upload of one object stores damaged bytes, as a broken proxy or disk would."""

        victim: str | None = None

        def write(self, key: str, reader: Any, size: int) -> None:
            data = reader.read()
            if FlakyS3.victim is None and size > 100:
                FlakyS3.victim = key
                self._call("put_object", "corrupt", Key=self.key(key), Body=data[:-1] + b"\0")
                return
            self._call("put_object", "ok", Key=self.key(key), Body=data)

    target = FlakyS3(odoo.bucket, "", endpoint_url=odoo.s3.endpoint_url, jobs=2)
    report = Migration(odoo.pg, odoo.db, DirStore(odoo.filestore), target, jobs=2,
                       checkpoint=tmp_path / "cp.json").run()
    assert FlakyS3.victim is not None
    assert (report.resent, report.copied, report.failed) == (1, FILESTORE_FILES - 1, [])
    assert_all_in_bucket(odoo)


def test_a_failure_before_the_switch_leaves_odoo_reading_the_old_location(odoo: Odoo) -> None:
    victim = sorted(odoo.filestore.glob("*/*"))[0]
    rel = f"{victim.parent.name}/{victim.name}"
    victim.write_bytes(b"bit rot " + victim.read_bytes()[8:])
    damaged = victim.read_bytes()
    code, report, stderr = cli(odoo, "--from", str(odoo.filestore), "--to", odoo.url, "--apply")
    assert code == 5, stderr
    assert [f["store_fname"] for f in report["failed"]] == [rel]
    assert report["failed"][0]["kind"] == "integrity" and "checksum" in report["failed"][0]["reason"]
    rows = odoo.rows()
    stayed = {rid for rid, (fname, _, _) in rows.items() if fname == rel}
    assert stayed, "the rows of the damaged file must keep their old store_fname"
    assert all(fname.startswith(f"{CODE}://") for rid, (fname, _, _) in rows.items() if rid not in stayed)
    assert victim.name not in odoo.objects(), "an object that failed its checksum must not stay in the bucket"
    assert victim.read_bytes() == damaged


def test_refused_while_odoo_is_connected_and_nothing_changes(odoo: Odoo) -> None:
    before = odoo.rows()
    env = {**odoo.pg.env(), "PGAPPNAME": "odoo-4242"}
    psql = [shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql", "-X", "-d", odoo.db, "-c",
            "SELECT pg_sleep(120)"]
    with subprocess.Popen(psql, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as holder:
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "odoo-4242" not in odoo.pg.psql(
                    f"SELECT application_name FROM pg_stat_activity WHERE datname = '{odoo.db}'"):
                time.sleep(0.05)
            code, _, stderr = cli(odoo, "--from", str(odoo.filestore), "--to", odoo.url, "--apply")
        finally:
            holder.kill()
    assert code == 6, stderr
    assert "odoo-4242" in stderr and "Freeze it first" in stderr
    assert odoo.rows() == before
    assert odoo.objects() == {}


def test_refused_when_the_storage_reads_another_bucket(odoo: Odoo) -> None:
    odoo.pg.psql(f"UPDATE fs_storage SET directory_path = 'someone-else' WHERE code = '{CODE}'", odoo.db)
    before = odoo.rows()
    code, _, stderr = cli(odoo, "--from", str(odoo.filestore), "--to", odoo.url, "--apply")
    assert code == 6, stderr
    assert "directory_path 'someone-else'" in stderr
    assert odoo.rows() == before and odoo.objects() == {}


def ansible_module(odoo: Odoo, args: dict[str, Any], *flags: str) -> dict[str, Any]:
    """erpops.ops.erpops_filestore_migrate run ad hoc on the controller, as a playbook task would run it."""
    venv_bin = Path(sys.executable).parent
    s3_env = odoo.s3.env()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "ANSIBLE_", "ERPOPS_"))}
    env.update(PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_CONFIG=str(REPO / "playbooks" /
               "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.oneline",
               AWS_EC2_METADATA_DISABLED="true")
    args = {"db": odoo.db, "pg_host": odoo.pg.host, "pg_port": odoo.pg.port, "pg_user": odoo.pg.user,
            "endpoint_url": odoo.s3.endpoint_url, "aws_access_key_id": s3_env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": s3_env["AWS_SECRET_ACCESS_KEY"], **args}
    proc = subprocess.run(
        [str(venv_bin / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m",
         "erpops.ops.erpops_filestore_migrate", "-a", json.dumps(args), "-e",
         json.dumps({"ansible_python_interpreter": sys.executable}), *flags],
        cwd=REPO / "playbooks", env=env, capture_output=True, text=True, timeout=600, check=False)
    head, _, payload = proc.stdout.strip().splitlines()[-1].partition("=> ")
    return {**json.loads(payload), "failed": "FAILED" in head}


def test_the_ansible_module_plans_in_check_mode_and_moves_otherwise(odoo: Odoo, tmp_path: Path) -> None:
    before = odoo.rows()
    args = {"src": str(odoo.filestore), "dest": odoo.url, "checkpoint": str(tmp_path / "cp.json")}
    planned = ansible_module(odoo, args, "--check")
    assert not planned["failed"], planned
    assert planned["changed"] is True and planned["report"]["rows"] == STORED_ATTACHMENTS
    assert odoo.rows() == before and odoo.objects() == {}
    done = ansible_module(odoo, args)
    assert not done["failed"] and done["changed"] is True, done
    assert done["report"]["moved"] == STORED_ATTACHMENTS
    assert odoo.s3.env()["AWS_SECRET_ACCESS_KEY"] not in json.dumps(done["command"])
    assert_all_in_bucket(odoo)
    again = ansible_module(odoo, args)
    assert not again["failed"] and again["changed"] is False, again


def test_a_large_file_under_a_prefix_with_optimized_paths_goes_there_and_back(
        pg: LocalPostgres, aws: LocalS3, tmp_path: Path) -> None:
    """Above 8 MiB a file goes multipart; fs_storage's optimizes_directory_path and a bucket prefix are honoured."""
    client = Pg.from_local(pg)
    db = f"fsm_big_{uuid.uuid4().hex[:6]}"
    data = os.urandom(20 * 1024 * 1024 + 123)
    digest = sha1(data)
    root = tmp_path / "filestore" / db
    (root / digest[:2]).mkdir(parents=True)
    (root / digest[:2] / digest).write_bytes(data)
    client.psql(f'CREATE DATABASE "{db}"')
    client.psql("CREATE TABLE ir_attachment (id serial PRIMARY KEY, store_fname varchar, checksum varchar, "
                "file_size int, fs_filename varchar);"
                "CREATE TABLE fs_storage (code varchar, protocol varchar, directory_path varchar, "
                "optimizes_directory_path boolean);"
                f"INSERT INTO fs_storage VALUES ('{CODE}', 's3', 'fsm-big/odoo/', true);"
                "INSERT INTO ir_attachment (store_fname, checksum, file_size) "
                f"VALUES ('{digest[:2]}/{digest}', '{digest}', {len(data)})", db)
    aws.client().create_bucket(Bucket="fsm-big")
    bucket = S3Store("fsm-big", "odoo", endpoint_url=aws.endpoint_url)
    report = Migration(client, db, DirStore(root), bucket, checkpoint=tmp_path / "cp1").run()
    assert (report.moved, report.copied, report.failed) == (1, 1, [])
    path = f"{digest[:2]}/{digest[2:4]}/{digest}"
    assert client.scalar("SELECT store_fname || ' ' || fs_filename FROM ir_attachment", db) == \
        f"{CODE}://{path} {digest}"
    assert sha1(aws.client().get_object(Bucket="fsm-big", Key=f"odoo/{path}")["Body"].read()) == digest

    back = tmp_path / "back" / db
    report = Migration(client, db, bucket, DirStore(back), checkpoint=tmp_path / "cp2").run()
    assert (report.moved, report.copied, report.failed) == (1, 1, [])
    assert client.scalar("SELECT store_fname FROM ir_attachment", db) == f"{digest[:2]}/{digest}"
    assert sha1((back / digest[:2] / digest).read_bytes()) == digest
