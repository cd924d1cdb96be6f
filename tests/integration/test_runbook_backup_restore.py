"""runbooks/backup-restore.md, run as written against local PostgreSQL and S3.

The commands come out of the Markdown (tests/runbooks.py) and run in the runbook's order, in a copy of
the project whose dev inventory is pointed at the loopback servers the way the runbook says to
(`inventories/dev/group_vars/all/local.yml` with erpops_pg_host/port and the S3 keys), against a
bucket and a database named as the dev spec names them, owned by the role `odoo` the spec connects
as (CREATEDB, not a superuser). Each command's outcome is mirrored one for one in EXPECTED: the exit
status and what its output must show. A command added to or changed in the runbook fails this test
until it is mirrored here (or placed in NOT_RUN, with the reason). After the restores, the host's
state is checked with testinfra: the restored database's owner, no scratch database left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from erpops.demo import ODOO_BASE_SQL
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg
from tests.runbooks import ROOT, Command, commands, fill

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

RUNBOOK = ROOT / "runbooks" / "backup-restore.md"
VENV_BIN = Path(sys.executable).parent
STACK = "dev"
DB = "odoo_dev"  # the dev spec's odoo.database
BUCKET = "acme-erpops-dev-backups"  # the dev spec's object_storage.backup_bucket
ROLE = "odoo"  # the dev spec's database user
AWS_SECRET = "rb-aws-secret-7d6c5b4a"

# Runbook command (placeholders as written) -> (succeeds, what the output shows). In the runbook's order.
EXPECTED: dict[str, tuple[bool, list[str]]] = {
    "ansible-inventory -i inventories/<stack>/hosts.yml --host localhost | grep -E 'erpops_pg_(host|port)\"'":
        (True, ['"erpops_pg_host": "127.0.0.1"', '"erpops_pg_port": <pg port>']),
    "python inventory_from_spec.py --check": (True, ["ok: 3 inventory files match the spec"]),
    "ansible-inventory -i inventories/<stack>/hosts.yml --host localhost | grep -E "
    "'erpops_(stack|tier|db|backup_target)\"'":
        (True, ['"erpops_backup_target": "s3://acme-erpops-dev-backups/dev"', '"erpops_db": "odoo_dev"']),
    "ansible-playbook backup.yml -i inventories/<stack>/hosts.yml --check":
        (True, ["erpops backup: set_id=(check mode) target=s3://acme-erpops-dev-backups/dev"]),
    "ansible-playbook backup.yml -i inventories/<stack>/hosts.yml":
        (True, ["erpops backup: set_id=dev-odoo_dev-", "TASK [Verify the new set]", "changed=1"]),
    "ansible-playbook backup.yml -i inventories/<stack>/hosts.yml -e erpops_backup_prune=true":
        (True, ["erpops prune: deleted="]),
    "ansible-playbook verify.yml -i inventories/<stack>/hosts.yml": (True, ["ok=True", "changed=0"]),
    "ansible-playbook verify.yml -i inventories/<stack>/hosts.yml -e erpops_verify_set_id=<set id> "
    "-e erpops_verify_deep=true": (True, ["erpops verify: set_id=<set id> ok=True"]),
    'psql -h 127.0.0.1 -U odoo odoo_dev -c "DELETE FROM res_partner WHERE id > 40"': (True, ["DELETE 2"]),
    "ansible-playbook restore.yml -i inventories/dev/hosts.yml -e erpops_restore_db=odoo_dev":
        (False, ["refused by pre-flight checks (nothing was changed)", "database odoo_dev already exists",
                 "(exit code 6)"]),
    "ansible-playbook restore.yml -i inventories/dev/hosts.yml -e erpops_restore_db=odoo_dev_restored":
        (True, ["db=odoo_dev_restored", "replaced=False", '"res_partner": 42']),
    "ansible-playbook restore.yml -i inventories/dev/hosts.yml -e erpops_restore_db=odoo_dev "
    "-e erpops_restore_replace=true": (False, ["add -e erpops_restore_confirm=true", "(nothing was changed)"]),
    "ansible-playbook restore.yml -i inventories/dev/hosts.yml -e erpops_restore_db=odoo_dev  "
    "-e erpops_restore_replace=true -e erpops_restore_confirm=true":
        (True, ["db=odoo_dev replaced=True", '"res_partner": 42']),
    'psql -h 127.0.0.1 -U odoo odoo_dev -Atc "SELECT count(*) FROM res_partner"': (True, ["42"]),
    "ansible-playbook restore.yml -i inventories/prod/hosts.yml -e erpops_restore_db=odoo_prod_restored":
        (False, ["stack prod has tier prod: restoring there needs -e erpops_restore_allow_prod=true"]),
    "ansible-playbook rehearse.yml -i inventories/<stack>/hosts.yml -e erpops_rehearse_to=<to stack> --check":
        (True, ["erpops rehearse (check mode): set_id=<set id>", "(stack dev)"]),
    "ansible-playbook rehearse.yml -i inventories/<stack>/hosts.yml -e erpops_rehearse_to=<to stack>":
        (True, ["erpops rehearse: set_id=<set id> ok=True RPO met=True RTO met=True"]),
    "erpops list --stack <stack>": (True, ["<set id>"]),
    "erpops verify --stack <stack> <set id>": (True, ["<set id>: ok"]),
    "ansible-playbook <playbook>.yml -i inventories/<stack>/hosts.yml -v": (True, ["erpops verify: set_id="]),
}
NOT_RUN = {
    "cd playbooks": "every command runs in the copy's playbooks/",
    "source ../.venv/bin/activate": "the test runs in that venv",
    "kubectl -n erpops-<stack> port-forward svc/odoo-db-rw 5432:5432 &": "no cluster: local.yml points at loopback",
    "erpops restore <set id> --to odoo_dev_restored --addons-path "
    "/usr/lib/python3/dist-packages/odoo/addons,/mnt/enterprise": "needs an Odoo installation's addons",
    "erpops restore <set id> --to odoo_dev_restored --allow-unneutralized voip": "needs a database with voip installed",
    "ansible-playbook restore.yml -i inventories/prod/hosts.yml -e erpops_restore_db=odoo_prod_restored  "
    "-e erpops_restore_allow_prod=true": "restores on the prod cluster",
}
VALUES = {"stack": STACK, "to stack": STACK, "playbook": "verify"}


def _runbook_commands() -> list[Command]:
    return commands(RUNBOOK)


def test_every_command_of_the_runbook_is_mirrored_here() -> None:
    written = [c.text for c in _runbook_commands()]
    assert [t for t in written if t not in EXPECTED and t not in NOT_RUN] == [], "mirror the new commands"
    assert [t for t in [*EXPECTED, *NOT_RUN] if t not in written] == [], "the runbook no longer has these"


@pytest.fixture(scope="module")
def project(pg: LocalPostgres, s3: LocalS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the project whose dev inventory reaches the loopback servers through local.yml."""
    root = tmp_path_factory.mktemp("runbook")
    for stack_file in ROOT.glob("Pulumi*.yaml"):
        shutil.copy(stack_file, root / stack_file.name)
    shutil.copytree(ROOT / "playbooks", root / "playbooks",
                    ignore=shutil.ignore_patterns("output", "__pycache__", "reports", "local.yml"))
    local = root / "playbooks/inventories/dev/group_vars/all/local.yml"
    local.parent.mkdir(parents=True)
    local.write_text(yaml.safe_dump({
        "erpops_pg_host": "127.0.0.1", "erpops_pg_port": pg.port, "erpops_s3_endpoint_url": s3.endpoint_url,
        "erpops_aws_access_key_id": s3.env()["AWS_ACCESS_KEY_ID"], "erpops_aws_secret_access_key": AWS_SECRET}))
    local.chmod(0o600)
    s3.client().create_bucket(Bucket=BUCKET)
    pg.psql(f"CREATE ROLE {ROLE} LOGIN CREATEDB")
    pg.psql(f"CREATE DATABASE {DB} OWNER {ROLE}")
    as_odoo = Pg(host=pg.host, port=pg.port, user=ROLE)  # the tables are the role's, as Odoo's would be
    as_odoo.psql(ODOO_BASE_SQL + "CREATE TABLE res_partner (id serial PRIMARY KEY, name text NOT NULL);"
                 "INSERT INTO res_partner (name) SELECT 'partner ' || g FROM generate_series(1, 42) g;", DB)
    yield root
    pg.psql(f"DROP DATABASE IF EXISTS {DB}_restored; DROP DATABASE IF EXISTS {DB};")
    pg.psql(f"DROP OWNED BY {ROLE}; DROP ROLE IF EXISTS {ROLE}")


def _run(command: Command, project: Path, pg: LocalPostgres, s3: LocalS3, values: dict[str, str]) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "ANSIBLE_", "ERPOPS_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(project / "playbooks/ansible.cfg"), AWS_EC2_METADATA_DISABLED="true",
               # what the operator's workstation has for the erpops CLI lines: the port-forward, the S3 keys
               PGPORT=str(pg.port), ERPOPS_S3_ENDPOINT_URL=s3.endpoint_url,
               AWS_ACCESS_KEY_ID=s3.env()["AWS_ACCESS_KEY_ID"], AWS_SECRET_ACCESS_KEY=AWS_SECRET,
               PGHOST="127.0.0.1", PGUSER=ROLE)
    line = fill(command.text, values)  # as pasted: pipes and quotes go through the shell
    if command.program == "erpops":
        line = line.replace("erpops", f"erpops --root {project}", 1)
    done = subprocess.run(line, shell=True, cwd=project / "playbooks", env=env, capture_output=True,  # noqa: S602
                          text=True, timeout=600, check=False)
    out = done.stdout + done.stderr
    assert AWS_SECRET not in out, f"a secret leaked: {command}\n{out}"
    return done.returncode, " ".join(out.split())


def test_the_backup_restore_runbook_runs_as_written(project: Path, pg: LocalPostgres, s3: LocalS3,
                                                    host: Any) -> None:
    values = dict(VALUES)
    for command in _runbook_commands():
        if command.text in NOT_RUN:
            continue
        ok, shows = EXPECTED[command.text]
        rc, out = _run(command, project, pg, s3, values)
        assert (rc == 0) == ok, f"{command}\n  exit {rc}, expected {'success' if ok else 'failure'}:\n{out}"
        if "erpops backup: set_id=dev-" in out:  # the newest set: what <set id> means from here on
            values["set id"] = out.split("erpops backup: set_id=")[1].split()[0].strip("'\"")
        wanted = [s.replace("<pg port>", str(pg.port)) for s in shows]
        wanted = [s.replace("<set id>", values.get("set id", "<set id>")) for s in wanted]
        missing = [s for s in wanted if s not in out]
        assert missing == [], f"{command}\n  output lacks {missing}:\n{out}"

    # the host's state after the procedure (pytest-testinfra, local backend)
    owner = host.run(f"psql -h 127.0.0.1 -p {pg.port} -U {pg.user} -Atc "
                     f"\"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}'\" postgres")
    assert owner.rc == 0 and owner.stdout.strip() == ROLE, owner.stderr  # the replaced database is the role's
    databases = host.run(f"psql -h 127.0.0.1 -p {pg.port} -U {pg.user} -Atc 'SELECT datname FROM pg_database'")
    assert not [d for d in databases.stdout.split() if "__erpops_" in d or "_rehearsal_" in d], databases.stdout
