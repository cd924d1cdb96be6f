"""playbooks/patch.yml as an operator runs it: ansible-playbook, the erpops.ops.erpops_patch module,
the command driver, real PostgreSQL and S3. Check mode changes nothing; a run patches and audits;
a failing update is rolled back and the play says why. Secrets never reach the output."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from erpops.backup import engine
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg, client_bin
from tests.integration.test_patch import APPLY_SQL, FROM_IMAGE, SCHEMA, TO_IMAGE, checksums

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
VENV_BIN = Path(sys.executable).parent
BUCKET = "erpops-patch-playbook"
AWS_SECRET = "pp-aws-secret-5e6f7a8b"
PG_PASSWORD = "pp-pg-password-1c2d3e4f"


@pytest.fixture(scope="module")
def bucket(s3: LocalS3) -> str:
    s3.client().create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def vm(pg: LocalPostgres, s3: LocalS3, bucket: str, tmp_path: Path) -> Iterator[dict]:
    server = Pg.from_local(pg)
    db = f"pb_patch_{secrets.token_hex(3)}"
    engine.create_database(server, db)
    server.psql(SCHEMA, db)
    work = tmp_path / "vm"
    work.mkdir()
    (work / "image").write_text(FROM_IMAGE + "\n")
    (work / "apply.sql").write_text(APPLY_SQL)
    psql = client_bin("psql")
    steps = {
        "current_image": 'cat "$WORK/image"',
        "freeze": 'touch "$WORK/maintenance"',
        "apply": f'{psql} -X -q -v ON_ERROR_STOP=1 -d "$ERPOPS_DB" -f "$WORK/apply.sql" && test ! -e "$WORK/break"',
        "roll": 'echo "$ERPOPS_PATCH_IMAGE" > "$WORK/image" && rm -f "$WORK/maintenance"',
        "smoke": "true",
    }
    (work / "driver.yml").write_text(yaml.safe_dump({"env": {"WORK": str(work)}, "steps": steps}))
    # The CLI as installed, with `patch` registered (the main CLI may not register it yet).
    wrapper = tmp_path / "erpops"
    wrapper.write_text(f"#!{sys.executable}\nfrom erpops import cli\nfrom erpops.patch import patch\n"
                       "cli.cli.commands.setdefault('patch', patch)\ncli.main()\n")
    wrapper.chmod(0o755)
    prefix = f"dev-{secrets.token_hex(3)}"
    values = {
        "erpops_bin": str(wrapper), "erpops_db": db, "erpops_pg_host": pg.host, "erpops_pg_port": pg.port,
        "erpops_pg_user": pg.user, "erpops_pg_password": PG_PASSWORD,
        "erpops_backup_target": f"s3://{BUCKET}/{prefix}", "erpops_s3_endpoint_url": s3.endpoint_url,
        "erpops_s3_region": s3.region, "erpops_aws_access_key_id": s3.env()["AWS_ACCESS_KEY_ID"],
        "erpops_aws_secret_access_key": AWS_SECRET,
        "erpops_patch_image": TO_IMAGE, "erpops_patch_modules": "mrp,stock", "erpops_patch_driver": "command",
        "erpops_patch_driver_file": str(work / "driver.yml"), "erpops_patch_health_checks": ["pg.connect"],
        "erpops_patch_state_dir": str(tmp_path / "state"),
    }
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(values))
    extra.chmod(0o600)
    yield {"pg": server, "s3": s3, "db": db, "work": work, "extra": extra, "prefix": prefix,
           "state": tmp_path / "state"}
    engine.drop_database(server, db)


def playbook(extra: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "ANSIBLE_", "ERPOPS_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"), AWS_EC2_METADATA_DISABLED="true",
               ERPOPS_OPERATOR="ansible-ci")
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "patch.yml", "-i", "inventories/dev/hosts.yml",
                           "-e", f"@{extra}", *args], cwd=PLAYBOOKS, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    out = proc.stdout + proc.stderr
    for secret in (AWS_SECRET, PG_PASSWORD):
        assert secret not in out, f"a secret leaked into the output of patch.yml:\n{out}"
    return proc.returncode, out


def audit_keys(vm: dict) -> list[str]:
    pages = vm["s3"].client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{vm['prefix']}/")
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_check_mode_then_patch(vm: dict, host: Any) -> None:
    original = checksums(vm["pg"], vm["db"])

    rc, out = playbook(vm["extra"], "--check")
    assert rc == 0, out
    assert "result=plan" in out
    # the plan itself, not hidden by the no_log of the task that carries the credentials
    said = " ".join(out.split())  # the yaml callback wraps long lines
    assert f"{FROM_IMAGE} -> {TO_IMAGE}" in said and "modules mrp,stock" in said, out
    assert 'touch "$WORK/maintenance"' in said, out  # the freeze command
    assert "censored" not in out, out
    assert checksums(vm["pg"], vm["db"]) == original
    assert audit_keys(vm) == []

    rc, out = playbook(vm["extra"])
    assert rc == 0, out
    assert "result=done" in out
    assert (vm["work"] / "image").read_text().strip() == TO_IMAGE
    assert not host.file(str(vm["work"] / "maintenance")).exists  # the maintenance flag is gone after the roll
    assert checksums(vm["pg"], vm["db"]) != original
    assert [k for k in audit_keys(vm) if "/audit/patch-" in k]
    (line,) = [json.loads(x) for x in (vm["state"] / "patch-audit.jsonl").read_text().splitlines()]
    assert (line["result"], line["who"], line["stack"]) == ("done", "ansible-ci", "dev")


def test_failed_update_is_rolled_back_and_the_play_says_why(vm: dict) -> None:
    original = checksums(vm["pg"], vm["db"])
    (vm["work"] / "break").touch()

    rc, out = playbook(vm["extra"])

    assert rc != 0
    assert "failed (exit 4, OperationFailed)" in out and "rolled back" in out
    assert checksums(vm["pg"], vm["db"]) == original
    assert (vm["work"] / "image").read_text().strip() == FROM_IMAGE
