"""`erpops rehearse`: the newest verified set of prod restored into staging's server, checked, reported.

Real PostgreSQL 15 and a real S3 API (moto) on loopback, the real Odoo 17 fixture. The project is a
temp directory holding the repository's Pulumi.yaml, Pulumi.prod.yaml and Pulumi.staging.yaml with
prod's backup bucket pointed at the test bucket, so the target comes from the spec as in production.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from erpops.backup import engine
from erpops.backup import manifest as mf
from erpops.backup.interop import COMMANDS
from erpops.backup.odoozip import import_odoo_zip
from erpops.backup.rehearse import rehearsal_db_name
from erpops.backup.storage import open_target
from erpops.errors import ErpopsError
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

REPO = Path(__file__).resolve().parents[2]
BUCKET = "erpops-rehearse-prod-backups"
FIXTURE_FILES = 566


def run_cli(args: list[str], env: dict[str, str], root: Path) -> tuple[int, Any, str]:
    """(exit code as erpops.cli.main sets it, stdout parsed as JSON with --json, stderr), under a group with --root."""

    @click.group("erpops")
    @click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None)
    @click.pass_context
    def group(ctx: click.Context, root: Path | None) -> None:
        ctx.ensure_object(dict)
        ctx.obj["root"] = root

    for command in COMMANDS:
        group.add_command(command)
    result = CliRunner().invoke(group, ["--root", str(root), *args], env=env)
    exc = result.exception
    code = exc.exit_code if isinstance(exc, ErpopsError) else result.exit_code
    if exc is not None and not isinstance(exc, ErpopsError | SystemExit):
        raise exc
    if "--json" not in args:
        return code, result.stdout, result.stderr
    return code, json.loads(result.stdout) if result.stdout.strip() else None, result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's stack files, prod's backups in the test bucket (the endpoint comes from the env)."""
    root = tmp_path_factory.mktemp("project")
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"):
        shutil.copy(REPO / name, root / name)
    prod = yaml.safe_load((root / "Pulumi.prod.yaml").read_text())
    prod["config"]["erpops:spec"]["object_storage"]["backup_bucket"] = BUCKET
    (root / "Pulumi.prod.yaml").write_text(yaml.safe_dump(prod))
    return root


@pytest.fixture(scope="module")
def env(pg: LocalPostgres, aws: LocalS3) -> dict[str, str]:
    return {**pg.env(), "ERPOPS_S3_ENDPOINT_URL": aws.endpoint_url, "ERPOPS_BACKUP_TARGET": ""}


@pytest.fixture(scope="module")
def source(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory, odoo_fixture: Path) -> dict[str, Any]:
    """The fixture as prod's database rh_prod, with its filestore."""
    root = tmp_path_factory.mktemp("rh-data") / "filestore"
    server = Pg.from_local(pg)
    import_odoo_zip(odoo_fixture, server, "rh_prod", root)
    return {"pg": server, "root": root}


@pytest.fixture(scope="module")
def prod_set(source: dict[str, Any], aws: LocalS3) -> dict[str, Any]:
    """A verified set of stack prod in s3://<bucket>/prod, where the prod spec puts it."""
    target = open_target(f"s3://{BUCKET}/prod", endpoint_url=aws.endpoint_url)
    report = engine.backup(target, source["pg"], "rh_prod", stack="prod", filestore=str(source["root"]))
    assert engine.verify(target, report["set_id"])["ok"]
    return {"target": target, "set_id": report["set_id"], "manifest": engine.load_manifest(target, report["set_id"])}


def test_rehearse_restores_the_verified_set_neutralized_and_reports(
        env: dict[str, str], project: Path, source: dict[str, Any], prod_set: dict[str, Any], tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    code, r, err = run_cli(["rehearse", "--from", "prod", "--to", "staging", "--db", "rh_keep", "--keep",
                            "--filestore", str(tmp_path / "fs"), "--report-dir", str(reports), "--json"], env, project)
    print(f"\nrehearsal steps: {r and r['rto']['steps']}")
    assert code == 0, (r, err)
    assert r["ok"] and r["status"] == "passed" and r["failures"] == []
    assert r["target"] == f"s3://{BUCKET}/prod" and r["set"]["set_id"] == prod_set["set_id"]
    assert r["from"] == {"stack": "prod", "tier": "prod", "rpo_minutes": 60, "rto_minutes": 120}
    assert r["to"]["tier"] == "staging"
    assert r["rpo"]["met"] and 0 <= r["rpo"]["actual_minutes"] < 60
    assert r["rto"]["met"] and set(r["rto"]["steps"]) >= {"select", "verify", "restore_db", "neutralize",
                                                          "filestore", "checks"}
    assert r["rto"]["total_seconds"] >= sum(v for k, v in r["rto"]["steps"].items() if k != "restore_other") - 0.1
    checks = {c["name"]: c for c in r["checks"]}
    assert {k: checks[k]["status"] for k in ("neutralized", "row_counts", "filestore", "health:pg.connect")} == \
        dict.fromkeys(("neutralized", "row_counts", "filestore", "health:pg.connect"), "passed")
    # advisory: the restored copy's autovacuum cron is due since the backup; it never fails a rehearsal
    assert checks["health:odoo.cron_overdue"]["advisory"] is True
    assert checks["health:odoo.cron_overdue"]["status"] in ("passed", "warning")
    assert checks["filestore"]["files"] == FIXTURE_FILES
    assert {x["table"]: x["actual"] for x in r["row_counts"]} == prod_set["manifest"].row_counts
    assert all(x["match"] for x in r["row_counts"])

    # kept: the copy is there, neutralized; prod is untouched
    pg: Pg = source["pg"]
    assert r["keep"] and not r["dropped"] and pg.database_exists("rh_keep")
    assert pg.scalar("SELECT count(*) FROM ir_mail_server WHERE active AND smtp_host <> 'invalid'", "rh_keep") == "0"
    assert pg.scalar("SELECT count(*) FROM fetchmail_server WHERE active", "rh_keep") == "0"
    assert pg.scalar("SELECT count(*) FROM ir_mail_server WHERE active", "rh_prod") == "1"

    md, js = Path(r["report"]["markdown"]), Path(r["report"]["json"])
    assert md.parent == reports and md.name.startswith("rehearsal-prod-staging-") and md.suffix == ".md"
    assert json.loads(js.read_text())["status"] == "passed"
    text = md.read_text()
    assert "PASSED" in text and "| RPO" in text and "| res_partner | 42 | 42 | yes |" in text
    engine.drop_database(pg, "rh_keep")


def test_rehearse_of_an_old_set_misses_the_rpo_and_drops_the_copy(
        env: dict[str, str], project: Path, source: dict[str, Any], tmp_path: Path) -> None:
    """A verified set three hours old against prod's 60 min RPO: exit 1, the copy is dropped anyway."""
    backups = tmp_path / "old"
    target = open_target(f"file://{backups}")
    set_id = engine.backup(target, source["pg"], "rh_prod", stack="prod", filestore=str(source["root"]))["set_id"]
    manifest_path = backups / mf.set_key(set_id, mf.MANIFEST)
    raw = json.loads(manifest_path.read_text())
    raw["erpops"]["created_at"] = mf.utc_iso(datetime.now(UTC) - timedelta(hours=3))
    manifest_path.write_text(json.dumps(raw))
    assert engine.verify(target, set_id)["ok"]

    code, out, err = run_cli(["rehearse", "--from", "prod", "--to", "staging", "--target", f"file://{backups}",
                              "--report-dir", str(tmp_path / "reports")], env, project)
    assert code == 1, (out, err)
    assert "FAILED" in out and "RPO:" in out and "MISSED" in out  # the human summary
    r = json.loads(next((tmp_path / "reports").glob("rehearsal-prod-staging-*.json")).read_text())
    assert r["status"] == "failed" and not r["ok"]
    assert r["rpo"]["met"] is False and r["rpo"]["actual_minutes"] >= 179
    assert r["rto"]["met"] is True and all(c["status"] != "failed" for c in r["checks"] if not c["advisory"])
    assert any(f.startswith("RPO missed") for f in r["failures"])
    assert re.fullmatch(r"rh_prod_rehearsal_\d{12}", r["db"])
    long_name = rehearsal_db_name("x" * 80, datetime(2026, 11, 29, 18, 5, tzinfo=UTC))
    assert len(long_name) == 63 and long_name.endswith("_rehearsal_202611291805")
    assert r["dropped"] is True and not source["pg"].database_exists(r["db"])
    assert "**MISSED**" in Path(r["report"]["markdown"]).read_text()


def test_rehearse_without_a_verified_set_is_refused(env: dict[str, str], project: Path, source: dict[str, Any],
                                                    tmp_path: Path) -> None:
    pg: Pg = source["pg"]
    pg.psql("CREATE DATABASE rh_tiny")
    pg.psql("CREATE TABLE item AS SELECT g AS id FROM generate_series(1, 10) g", "rh_tiny")
    url = f"file://{tmp_path / 'unverified'}"
    set_id = engine.backup(open_target(url), pg, "rh_tiny", stack="prod")["set_id"]
    code, r, _ = run_cli(["rehearse", "--from", "prod", "--to", "staging", "--target", url,
                          "--report-dir", str(tmp_path / "reports"), "--json"], env, project)
    assert code == 6 and r["ok"] is False and r["error_type"] == "PreflightError"
    assert "is verified" in r["error"] and f"erpops verify {set_id}" in r["error"]
    assert not (tmp_path / "reports").exists()  # refused before it started: no report


def test_rehearse_into_an_existing_database_is_refused_and_leaves_it(
        env: dict[str, str], project: Path, source: dict[str, Any], prod_set: dict[str, Any], tmp_path: Path) -> None:
    """The restore's own pre-flight refuses (exit 6); the report says "error"; the existing database stays."""
    code, r, _ = run_cli(["rehearse", "--from", "prod", "--to", "staging", "--db", "rh_prod",
                          "--report-dir", str(tmp_path / "reports"), "--json"], env, project)
    assert code == 6 and r["ok"] is False and r["status"] == "error" and r["error_type"] == "PreflightError"
    assert "already exists" in r["error"] and r["dropped"] is False and r["rto"]["met"] is False
    assert source["pg"].database_exists("rh_prod")
    written = json.loads(Path(r["report"]["json"]).read_text())
    assert written["status"] == "error" and written["error"]["exit_code"] == 6
    text = Path(r["report"]["markdown"]).read_text()
    assert "ERROR" in text and "never created" in text and r["restored"] is False


def test_rehearse_into_prod_is_refused(env: dict[str, str], project: Path, tmp_path: Path) -> None:
    code, r, _ = run_cli(["rehearse", "--from", "prod", "--to", "prod", "--target", f"file://{tmp_path}", "--json"],
                         env, project)
    assert code == 6 and r["error_type"] == "PreflightError" and "never land in production" in r["error"]


def test_rehearse_refuses_an_uncovered_module_unless_allowed(
        env: dict[str, str], project: Path, source: dict[str, Any], tmp_path: Path) -> None:
    """voip (Enterprise) ships a neutralize file erpops has no rule for: the rehearsal stops (exit 4, the copy
    rolled back) unless --allow-unneutralized names it; then the report says it was accepted."""
    pg: Pg = source["pg"]
    pg.psql("CREATE DATABASE rh_voip TEMPLATE rh_prod")
    pg.psql("UPDATE ir_module_module SET state = 'installed' WHERE name = 'voip';"
            "INSERT INTO ir_module_module (name, state) SELECT 'voip', 'installed' "
            "WHERE NOT EXISTS (SELECT 1 FROM ir_module_module WHERE name = 'voip')", "rh_voip")
    url = f"file://{tmp_path / 'voip'}"
    set_id = engine.backup(open_target(url), pg, "rh_voip", stack="prod")["set_id"]
    assert engine.verify(open_target(url), set_id)["ok"]
    base = ["rehearse", "--from", "prod", "--to", "staging", "--target", url, "--db", "rh_voip_copy",
            "--report-dir", str(tmp_path / "reports"), "--json"]

    code, r, _ = run_cli(base, env, project)
    assert code == 4 and r["ok"] is False and r["status"] == "error", r
    assert "voip" in r["error"] and "--allow-unneutralized voip" in r["error"]
    assert r["restored"] is False and not pg.database_exists("rh_voip_copy")

    code, r, _ = run_cli([*base, "--addons-path", str(tmp_path / "missing")], env, project)
    assert code == 2 and "--addons-path" in r["error"] and "is not a directory" in r["error"]

    code, r, _ = run_cli([*base, "--allow-unneutralized", "voip"], env, project)
    assert code == 0 and r["ok"] and r["status"] == "passed", r
    assert r["neutralize"]["uncovered_allowed"] == ["voip"] and r["neutralize"]["remaining"] == []
    assert {c["name"]: c["status"] for c in r["checks"]}["neutralized"] == "passed"
    assert r["dropped"] is True and not pg.database_exists("rh_voip_copy")
    assert "except voip (NOT neutralized, accepted with --allow-unneutralized)" in \
        Path(r["report"]["markdown"]).read_text()
    engine.drop_database(pg, "rh_voip")
