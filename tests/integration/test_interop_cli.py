"""`erpops import odoo-zip` and `erpops export odoo-zip` on the real Odoo 17 fixture, through the CLI.

Real PostgreSQL 15 and a real S3 API (moto) on loopback. The fixture zip is imported once by the
CLI (that is the import test's subject too), backed up as a set, exported back to Odoo's zip from
the set without restoring it, and imported again: same rows, same filestore.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from erpops.backup import engine
from erpops.backup.interop import COMMANDS
from erpops.backup.odoozip import MANIFEST_KEYS, read_manifest
from erpops.backup.storage import open_target
from erpops.errors import ErpopsError
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

BUCKET = "erpops-interop"
# From shared/fixtures/README.md
FIXTURE_COUNTS = {"res_partner": 42, "product_product": 48, "mrp_production": 6, "stock_move": 81,
                  "sale_order": 24, "purchase_order": 11, "account_move": 24}
FIXTURE_FILES = 566


def sha1_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes(), usedforsecurity=False).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, Any, str]:
    """(exit code as erpops.cli.main sets it, stdout parsed as JSON with --json, stderr)."""
    group = click.Group("erpops", commands={c.name: c for c in COMMANDS})
    result = CliRunner().invoke(group, args, env=env)
    exc = result.exception
    code = exc.exit_code if isinstance(exc, ErpopsError) else result.exit_code
    if exc is not None and not isinstance(exc, ErpopsError | SystemExit):
        raise exc
    if "--json" not in args:
        return code, result.stdout, result.stderr
    return code, json.loads(result.stdout) if result.stdout.strip() else None, result.stderr


@pytest.fixture(scope="module")
def env(pg: LocalPostgres, aws: LocalS3) -> dict[str, str]:
    return {**pg.env(), "ERPOPS_S3_ENDPOINT_URL": aws.endpoint_url}


@pytest.fixture(scope="module")
def imported(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, odoo_fixture: Path) -> dict[str, Any]:
    """`erpops import odoo-zip <fixture> --to ix_mfg` once for the module."""
    root = tmp_path_factory.mktemp("ix-data") / "filestore"
    code, out, err = run_cli(["import", "odoo-zip", str(odoo_fixture), "--to", "ix_mfg", "--filestore", str(root),
                              "--json"], env)
    assert code == 0, (out, err)
    return {"root": root, "result": out}


@pytest.fixture(scope="module")
def stored_set(pg: LocalPostgres, aws: LocalS3, imported: dict[str, Any]) -> dict[str, Any]:
    target = open_target(f"s3://{BUCKET}/dev", endpoint_url=aws.endpoint_url)
    report = engine.backup(target, Pg.from_local(pg), "ix_mfg", stack="dev", filestore=str(imported["root"]))
    return {"target": target, "set_id": report["set_id"]}


def test_import_cli_creates_the_database_with_the_fixture_rows(pg: LocalPostgres, env: dict[str, str],
                                                               imported: dict[str, Any], odoo_fixture: Path) -> None:
    out = imported["result"]
    assert out["ok"] and out["db"] == "ix_mfg" and out["odoo_version"] == "17.0" and out["modules"] == 69
    assert out["filestore"]["count"] == FIXTURE_FILES
    counts = engine.row_counts(Pg.from_local(pg), "ix_mfg")
    assert {k: counts[k] for k in FIXTURE_COUNTS} == FIXTURE_COUNTS
    files = sha1_tree(imported["root"] / "ix_mfg")
    assert len(files) == FIXTURE_FILES and all(p.split("/")[1] == sha1 for p, sha1 in files.items())

    code, again, _ = run_cli(["import", "odoo-zip", str(odoo_fixture), "--to", "ix_mfg", "--filestore",
                              str(imported["root"]), "--json"], env)
    assert code == 2 and again["ok"] is False and "already exists" in again["error"]


def test_export_of_a_stored_set_imports_back_identical(pg: LocalPostgres, env: dict[str, str], aws: LocalS3,
                                                       imported: dict[str, Any], stored_set: dict[str, Any],
                                                       tmp_path: Path) -> None:
    out = tmp_path / "out" / "ix.zip"
    code, result, err = run_cli(["export", "odoo-zip", stored_set["set_id"], "--out", str(out),
                                 "--target", f"s3://{BUCKET}/dev", "--json"], env)
    assert code == 0, (result, err)
    assert result["source"] == "set" and result["dump_format"] == "custom"
    assert result["filestore_files"] == FIXTURE_FILES and result["path"] == str(out)
    assert '"step": "export filestore"' in err  # progress as JSON lines on stderr
    manifest = read_manifest(out)
    assert set(MANIFEST_KEYS) <= set(manifest) and "erpops" not in manifest
    assert manifest["db_name"] == "ix_mfg" and manifest["version"] == "17.0" and len(manifest["modules"]) == 69
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert names[:2] == ["dump.sql", "manifest.json"]  # Odoo's order
    assert sorted(p for p in out.parent.iterdir()) == [out]  # no temp file left beside it

    back_root = tmp_path / "fs"
    code, back, err = run_cli(["import", "odoo-zip", str(out), "--to", "ix_back", "--filestore", str(back_root),
                               "--json"], env)
    assert code == 0, (back, err)
    server = Pg.from_local(pg)
    assert engine.row_counts(server, "ix_back") == engine.row_counts(server, "ix_mfg")
    assert sha1_tree(back_root / "ix_back") == sha1_tree(imported["root"] / "ix_mfg")


def test_export_refuses_a_corrupted_set_and_leaves_no_zip(pg: LocalPostgres, env: dict[str, str],
                                                          imported: dict[str, Any], tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    target = open_target(f"file://{backups}")
    set_id = engine.backup(target, Pg.from_local(pg), "ix_mfg", stack="dev", filestore=str(imported["root"]))["set_id"]
    victim = sorted((backups / "filestore").glob("*/*"))[len(FIXTURE_COUNTS)]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    victim.write_bytes(bytes(data))

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, result, _ = run_cli(["export", "odoo-zip", set_id, "--out", str(out_dir / "bad.zip"),
                               "--target", f"file://{backups}", "--json"], env)
    assert code == 5 and result["ok"] is False and result["error_type"] == "IntegrityError"
    assert victim.name in result["error"] and "no zip was written" in result["error"]
    assert list(out_dir.iterdir()) == []  # neither the zip nor its .part

    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))  # repaired: now an object is missing instead
    gone = sorted((backups / "filestore").glob("*/*"))[-1]
    gone.unlink()
    code, result, _ = run_cli(["export", "odoo-zip", set_id, "--out", str(out_dir / "bad.zip"),
                               "--target", f"file://{backups}", "--json"], env)
    assert code == 5 and "missing" in result["error"] and list(out_dir.iterdir()) == []


def test_export_of_a_set_stored_from_an_odoo_zip_gives_back_the_same_dump(env: dict[str, str],
                                                                          tmp_path: Path, odoo_fixture: Path) -> None:
    """A set made by `erpops backup --from-zip` keeps Odoo's plain dump.sql: the export streams it back unchanged."""
    url = f"file://{tmp_path / 'zipset'}"
    set_id = engine.import_odoo_zip(open_target(url), odoo_fixture, stack="dev")["set_id"]
    out = tmp_path / "again.zip"
    code, result, err = run_cli(["export", "odoo-zip", set_id, "--out", str(out), "--target", url, "--json"], env)
    assert code == 0, (result, err)
    assert result["dump_format"] == "plain" and result["filestore_files"] == FIXTURE_FILES
    with zipfile.ZipFile(odoo_fixture) as original, zipfile.ZipFile(out) as exported:
        assert hashlib.sha256(exported.read("dump.sql")).digest() == hashlib.sha256(original.read("dump.sql")).digest()
        assert json.loads(exported.read("manifest.json")) == json.loads(original.read("manifest.json"))
        assert {n for n in exported.namelist() if n.startswith("filestore/")} == \
            {n for n in original.namelist() if n.startswith("filestore/") and not n.endswith("/")}


def test_export_of_a_live_database(env: dict[str, str], imported: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "live.zip"
    code, text, err = run_cli(["export", "odoo-zip", "--db", "ix_mfg", "--filestore", str(imported["root"]),
                               "--out", str(out)], env)
    assert code == 0, (text, err)
    assert f"wrote {out}" in text and f"{FIXTURE_FILES} files" in text and "database ix_mfg" in text
    assert read_manifest(out)["db_name"] == "ix_mfg"
    with zipfile.ZipFile(out) as zf:
        assert sum(1 for n in zf.namelist() if n.startswith("filestore/")) == FIXTURE_FILES

    code, again, _ = run_cli(["export", "odoo-zip", "--db", "ix_mfg", "--filestore", str(imported["root"]),
                              "--out", str(out), "--json"], env)
    assert code == 2 and "already exists" in again["error"]  # never overwritten without --force
