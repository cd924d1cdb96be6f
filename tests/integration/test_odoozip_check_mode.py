"""erpops.ops.erpops_odoo_zip in check mode pre-flights an import as the real run would, and changes nothing.

Before, check mode of an import only looked for the zip file and reported `changed` whatever the server
said. Now it runs `erpops import odoo-zip --dry-run`: the zip's layout, the server and the role's rights
(CREATEDB, and CREATEROLE for the sandbox role the dump runs as), the database and its filestore folder
absent, the disk, the whole dump through the screen. A small zip made here, real PostgreSQL on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from erpops.local import LocalPostgres

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CREATEDB_ONLY = "zc_createdb"  # may create databases, not roles
DUMP = b"CREATE TABLE res_partner (id serial PRIMARY KEY, name text);\nINSERT INTO res_partner (name) VALUES ('a');\n"
MANIFEST = {"odoo_dump": "1", "db_name": "tiny", "version": "17.0", "version_info": [17, 0, 0, "final", 0, ""],
            "major_version": "17.0", "pg_version": "15.0", "modules": {"base": "17.0.1.3"}}


def databases(pg: LocalPostgres) -> set[str]:
    return set(pg.psql("SELECT datname FROM pg_database").split())


@pytest.fixture(scope="module")
def role(pg: LocalPostgres) -> Iterator[str]:
    pg.psql(f"CREATE ROLE {CREATEDB_ONLY} LOGIN CREATEDB")
    yield CREATEDB_ONLY
    pg.psql(f"DROP ROLE IF EXISTS {CREATEDB_ONLY}")


def make_zip(path: Path, dump: bytes = DUMP) -> Path:
    data = b"a scanned invoice"
    sha = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("dump.sql", dump)
        zf.writestr("manifest.json", json.dumps(MANIFEST))
        zf.writestr(f"filestore/{sha[:2]}/{sha}", data)
    return path


def import_check(pg: LocalPostgres, zip_path: Path, db: str, filestore: Path, **pg_args: Any) -> dict[str, Any]:
    """`ansible localhost -m erpops.ops.erpops_odoo_zip -a 'mode=import ...' --check`: its result."""
    args = {"mode": "import", "src": str(zip_path), "db": db, "filestore": str(filestore), "pg_host": pg.host,
            "pg_port": pg.port, "pg_user": pg.user, **pg_args}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "ANSIBLE_", "ERPOPS_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
               ANSIBLE_CONFIG=str(ROOT / "playbooks/ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.oneline")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", "erpops.ops.erpops_odoo_zip",
         "-a", json.dumps(args), "-e", json.dumps({"ansible_python_interpreter": sys.executable}), "--check"],
        cwd=ROOT / "playbooks", env=env, capture_output=True, text=True, timeout=300, check=False)
    head, _, payload = proc.stdout.strip().splitlines()[-1].partition("=> ")
    return {**json.loads(payload), "failed": "FAILED" in head}


def test_an_import_that_can_run_is_changed_and_creates_nothing(pg: LocalPostgres, tmp_path: Path) -> None:
    before = databases(pg)
    result = import_check(pg, make_zip(tmp_path / "ok.zip"), "zc_new", tmp_path / "filestore")
    assert (result["failed"], result["changed"]) == (False, True), result
    assert result["planned"]["dry_run"] is True and result["planned"]["odoo_version"] == "17.0"
    assert any("passes the screen" in c for c in result["planned"]["checks"]), result
    assert databases(pg) == before and not (tmp_path / "filestore").exists()


@pytest.mark.parametrize(("case", "says"), [
    ("unreachable", "connection to server at"),
    ("no-createrole", "may not create roles"),
    ("database-exists", "already exists"),
    ("refused-statement", "refused"),
])
def test_check_mode_fails_where_the_real_import_would(pg: LocalPostgres, tmp_path: Path, role: str, case: str,
                                                      says: str) -> None:
    zip_path = make_zip(tmp_path / "z.zip", DUMP + b"COPY res_partner TO PROGRAM 'id';\n"
                        if case == "refused-statement" else DUMP)
    pg_args: dict[str, Any] = {"unreachable": {"pg_port": 1}, "no-createrole": {"pg_user": role}}.get(case, {})
    db = "postgres" if case == "database-exists" else "zc_never"
    before = databases(pg)
    result = import_check(pg, zip_path, db, tmp_path / "filestore", **pg_args)
    assert result["failed"] and not result.get("changed"), result
    assert says in result["msg"], result
    assert databases(pg) == before and not (tmp_path / "filestore").exists()
