"""Backup round trip on the real Odoo 17 fixture: zip -> set -> database -> backup -> verify -> restore.

Real PostgreSQL 15 and a real S3 API (moto) on loopback. The fixture database is loaded once
per module by the engine itself: the Odoo zip is stored as a set (plain SQL dump) and restored,
which exercises the zip import and the psql restore path on the way.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from erpops.backup import engine, retention
from erpops.backup import manifest as mf
from erpops.backup.commands import COMMANDS
from erpops.backup.filestore import open_file
from erpops.backup.restore import restore
from erpops.backup.storage import Target, open_target
from erpops.errors import ErpopsError
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

BUCKET = "erpops-backup-roundtrip"
# From shared/fixtures/README.md
FIXTURE_COUNTS = {"res_partner": 42, "product_product": 48, "mrp_production": 6, "stock_move": 81,
                  "sale_order": 24, "purchase_order": 11, "account_move": 24}
FIXTURE_FILES = 566


def sha1_tree(root: Path) -> dict[str, str]:
    """{"xx/sha1": sha1 of the content} for every file under root."""
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes(), usedforsecurity=False).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def leftovers(pg: Pg) -> list[str]:
    return pg.psql("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_erpops\\_%'").split()


def table_checksum(pg: Pg, db: str, table: str) -> str:
    return pg.scalar(f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t", db)


def s3_target(s3: LocalS3, prefix: str) -> Target:
    return open_target(f"s3://{BUCKET}/{prefix}", endpoint_url=s3.endpoint_url)


@pytest.fixture(scope="module")
def mfg(pg: LocalPostgres, aws: LocalS3, tmp_path_factory: pytest.TempPathFactory,
        odoo_fixture: Path) -> dict[str, Any]:
    """The fixture zip stored as a set, then restored as database `mfg` with its filestore."""
    server = Pg.from_local(pg)
    root = tmp_path_factory.mktemp("odoo-data") / "filestore"
    target = s3_target(aws, "imported")
    t0 = time.monotonic()
    imported = engine.import_odoo_zip(target, odoo_fixture, stack="dev", db="mfg")
    t1 = time.monotonic()
    restored = restore(target, imported["set_id"], pg=server, db="mfg", filestore_root=root, jobs=1)
    t2 = time.monotonic()
    return {"pg": server, "root": root, "target": target, "imported": imported, "restored": restored,
            "timings": {"import_zip_s": round(t1 - t0, 2), "restore_plain_s": round(t2 - t1, 2)}}


@pytest.fixture(scope="module")
def backup_set(mfg: dict[str, Any], aws: LocalS3) -> dict[str, Any]:
    target = s3_target(aws, "dev")
    t0 = time.monotonic()
    report = engine.backup(target, mfg["pg"], "mfg", stack="dev", filestore=str(mfg["root"]))
    report["wall_s"] = round(time.monotonic() - t0, 2)
    print(f"\nfixture timings: {mfg['timings']}, backup {report['wall_s']} s")
    return {"target": target, "report": report, "manifest": engine.load_manifest(target, report["set_id"])}


def test_odoo_zip_becomes_a_set_and_restores(mfg: dict[str, Any]) -> None:
    m = engine.load_manifest(mfg["target"], mfg["imported"]["set_id"])
    assert m.dump.format == "plain" and m.dump.key.endswith("/dump.sql.zst")
    assert m.odoo["db_name"] == "mfg" and m.odoo_version == "17.0" and len(m.odoo["modules"]) == 69
    assert len(m.filestore) == FIXTURE_FILES
    counts = engine.row_counts(mfg["pg"], "mfg")
    assert {k: counts[k] for k in FIXTURE_COUNTS} == FIXTURE_COUNTS
    files = sha1_tree(mfg["root"] / "mfg")
    assert len(files) == FIXTURE_FILES
    assert all(path.split("/")[1] == sha1 for path, sha1 in files.items())


def test_backup_manifest_describes_what_was_stored(mfg: dict[str, Any], backup_set: dict[str, Any]) -> None:
    target, m, set_id = backup_set["target"], backup_set["manifest"], backup_set["report"]["set_id"]
    assert mf.SET_ID_RE.match(set_id) and set_id.startswith("dev-mfg-")
    raw = json.loads(target.get_bytes(mf.set_key(set_id, mf.MANIFEST)))
    assert raw["odoo_dump"] == "1" and raw["version"] == "17.0" and raw["pg_version"] == "15.0"
    assert len(raw["modules"]) == 69 and raw["modules"]["mrp"].startswith("17.0.")
    assert raw["erpops"]["pg_server_version"].startswith("15.")
    dump = m.dump
    assert dump.key == f"sets/{set_id}/dump.pgdump.zst" and dump.format == "custom" and dump.compression == "zstd"
    stored = target.get_bytes(dump.key)
    assert (len(stored), hashlib.sha256(stored).hexdigest()) == (dump.size, dump.sha256)
    assert dump.uncompressed_size > dump.size
    assert m.row_counts == engine.row_counts(mfg["pg"], "mfg")
    assert len(m.filestore) == FIXTURE_FILES
    assert {f.path for f in m.filestore} == set(sha1_tree(mfg["root"] / "mfg"))
    # content-addressed and shared: the keys carry no set id; on S3 small files share pack objects, each file
    # still readable alone (its range of the pack)
    assert all(f.key.startswith("filestore/") and set_id not in f.key for f in m.filestore)
    packed = [f for f in m.filestore if f.pack is not None]
    assert packed and len({f.pack for f in packed}) < len(packed) / 10
    for f in m.filestore[::40]:
        with open_file(target, f) as body:
            assert body.read() == (mfg["root"] / "mfg" / f.path).read_bytes()
    assert not target.exists(mf.set_key(set_id, mf.IN_PROGRESS))


def test_deep_verify_restores_to_scratch_and_matches_row_counts(mfg: dict[str, Any],
                                                                backup_set: dict[str, Any]) -> None:
    report = engine.verify(backup_set["target"], backup_set["report"]["set_id"], deep=True, pg=mfg["pg"])
    assert report["ok"], report["problems"]
    assert report["row_counts"] == backup_set["manifest"].row_counts
    assert report["checked"]["filestore_files"] == FIXTURE_FILES
    stored = json.loads(backup_set["target"].get_bytes(mf.set_key(report["set_id"], mf.VERIFY)))
    assert stored["ok"] is True and stored["deep"] is True and stored["problems"] == []
    assert leftovers(mfg["pg"]) == []


def test_restore_into_a_new_database_round_trips(mfg: dict[str, Any], backup_set: dict[str, Any],
                                                 tmp_path: Path) -> None:
    pg: Pg = mfg["pg"]
    root = tmp_path / "filestore"
    t0 = time.monotonic()
    report = restore(backup_set["target"], backup_set["report"]["set_id"], pg=pg, db="mfg_restored",
                     filestore_root=root, jobs=2)
    print(f"\nrestore of the fixture: {time.monotonic() - t0:.1f} s, {report['timings']}")
    assert report["ok"] and not report["replaced"] and report["pg_restore_jobs"] == 2
    assert engine.row_counts(pg, "mfg_restored") == engine.row_counts(pg, "mfg")
    for table in ("res_partner", "mrp_production", "ir_attachment"):
        assert table_checksum(pg, "mfg_restored", table) == table_checksum(pg, "mfg", table)
    restored = sha1_tree(root / "mfg_restored")
    assert restored == sha1_tree(mfg["root"] / "mfg")
    assert all(path.split("/")[1] == sha1 for path, sha1 in restored.items())
    assert sorted(p.name for p in root.iterdir()) == ["mfg_restored"]
    assert leftovers(pg) == []


def test_second_backup_shares_unchanged_filestore_objects(mfg: dict[str, Any], backup_set: dict[str, Any]) -> None:
    target = backup_set["target"]
    before = sum(1 for _ in target.list_keys("filestore/"))
    again = engine.backup(target, mfg["pg"], "mfg", stack="dev", filestore=str(mfg["root"]))
    assert again["filestore"]["uploaded"] == 0
    assert again["filestore"]["skipped_existing"] == FIXTURE_FILES
    assert sum(1 for _ in target.list_keys("filestore/")) == before
    listed = [s["set_id"] for s in engine.list_sets(target)]
    assert {again["set_id"], backup_set["report"]["set_id"]} <= set(listed)


# -- the command line, as Ansible drives it --------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> tuple[int, Any, str]:
    """(exit code as erpops.cli.main sets it, parsed JSON stdout, stderr) of one command."""
    group = click.Group("erpops", commands={c.name: c for c in COMMANDS})
    result = CliRunner().invoke(group, args, env=env, input=stdin)
    exc = result.exception
    code = exc.exit_code if isinstance(exc, ErpopsError) else result.exit_code
    if exc is not None and not isinstance(exc, ErpopsError | SystemExit):
        raise exc
    return code, json.loads(result.stdout) if result.stdout.strip() else None, result.stderr


def cli_env(pg: LocalPostgres, s3: LocalS3, prefix: str) -> dict[str, str]:
    return {**pg.env(), "ERPOPS_BACKUP_TARGET": f"s3://{BUCKET}/{prefix}", "ERPOPS_S3_ENDPOINT_URL": s3.endpoint_url}


def test_cli_list_verify_and_restore_neutralized(pg: LocalPostgres, aws: LocalS3, mfg: dict[str, Any],
                                                 backup_set: dict[str, Any]) -> None:
    env = cli_env(pg, aws, "dev")
    code, listed, _ = run_cli(["list", "--json"], env)
    assert code == 0 and listed["ok"] and listed["target"] == f"s3://{BUCKET}/dev"
    first = listed["sets"][0]
    assert set(first) >= {"set_id", "db", "created_at", "age_hours", "verified", "verified_at", "dump_bytes"}
    set_id = backup_set["report"]["set_id"]

    code, verified, stderr = run_cli(["verify", set_id, "--json"], env)
    assert code == 0 and verified["ok"] and verified["problems"] == []
    assert '"event": "step_done"' in stderr  # progress as JSON lines on stderr, stdout stays one object

    # no --stack: not prod, so the restored copy is neutralized by default; -j 1 streams from stdin
    code, restored, _ = run_cli(["restore", set_id, "--to", "mfg_neutral", "--skip-filestore", "--jobs", "1",
                                 "--json"], env)
    assert code == 0, restored
    assert restored["neutralized"] is True and restored["pg_restore_jobs"] == 1
    assert restored["neutralize_report"]["remaining"] == []
    p = mfg["pg"]
    assert p.scalar("SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'",
                    "mfg_neutral").lower() == "true"
    assert p.scalar("SELECT count(*) FROM fetchmail_server WHERE active", "mfg_neutral") == "0"
    assert p.scalar("SELECT count(*) FROM fetchmail_server WHERE active", "mfg") == "1"  # source untouched

    code, again, _ = run_cli(["restore", set_id, "--to", "mfg_neutral", "--skip-filestore", "--json"], env)
    assert code == 6 and again["ok"] is False and again["error_type"] == "PreflightError"
    assert any("already exists" in problem for problem in again["problems"])


def test_file_target_backup_list_verify_prune(pg: LocalPostgres, mfg: dict[str, Any], tmp_path: Path) -> None:
    server: Pg = mfg["pg"]
    server.psql("CREATE DATABASE shopfile")
    server.psql("CREATE TABLE item AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 500) g",
                "shopfile")
    target = open_target(f"file://{tmp_path / 'backups'}")
    fs_root = tmp_path / "fs"
    files = fs_root / "shopfile"
    ids = []
    for i in range(3):
        content = f"attachment {i}".encode()
        sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()
        (files / sha1[:2]).mkdir(parents=True, exist_ok=True)
        (files / sha1[:2] / sha1).write_bytes(content)  # each backup holds one more file
        ids.append(engine.backup(target, server, "shopfile", stack="dev", filestore=str(fs_root))["set_id"])
        time.sleep(1.05)  # set ids and created_at have one-second resolution
    assert [s["set_id"] for s in engine.list_sets(target)] == ids[::-1]
    assert engine.verify(target, ids[0])["ok"]
    assert not list((tmp_path / "backups").rglob(".*.part-*"))

    dry = retention.prune(target, retention.Rules(daily=1, weekly=0, monthly=0))
    assert [k["set_id"] for k in dry["keep"]] == [ids[2], ids[0]]  # newest daily, newest verified
    assert [d["set_id"] for d in dry["delete"]] == [ids[1]]
    assert dry["filestore_delete"] == 0  # every file of ids[1] is also in ids[2]
    assert len(list(target.list_keys("sets/"))) == 3 * 2 + 1  # nothing deleted by a dry run (+ verify.json)

    applied = retention.prune(target, retention.Rules(daily=1, weekly=0, monthly=0), apply=True)
    assert applied["delete"] == dry["delete"]
    assert [s["set_id"] for s in engine.list_sets(target)] == [ids[2], ids[0]]
    assert not (tmp_path / "backups" / "sets" / ids[1]).exists()
    restored = restore(target, ids[0], pg=server, db="shopfile_back", filestore_root=tmp_path / "fs2")
    assert restored["filestore"]["count"] == 1
    assert table_checksum(server, "shopfile_back", "item") == table_checksum(server, "shopfile", "item")


def test_neutralized_backup_dumps_a_neutralized_copy(pg: LocalPostgres, aws: LocalS3, mfg: dict[str, Any]) -> None:
    env = cli_env(pg, aws, "neutral")
    code, report, _ = run_cli(["backup", "--db", "mfg", "--stack", "staging", "--neutralized", "--json"], env)
    assert code == 0, report
    assert report["neutralized"] is True and report["set_id"].startswith("staging-mfg-")
    m = engine.load_manifest(s3_target(aws, "neutral"), report["set_id"])
    assert m.neutralized and m.source["neutralize_report"]["remaining"] == []
    assert m.row_counts == engine.row_counts(mfg["pg"], "mfg")
    assert mfg["pg"].scalar("SELECT count(*) FROM fetchmail_server WHERE active", "mfg") == "1"  # source untouched
    assert leftovers(mfg["pg"]) == []


def test_s3_filestore_source_sse_storage_class_and_owner(pg: LocalPostgres, aws: LocalS3, mfg: dict[str, Any],
                                                        tmp_path: Path) -> None:
    server: Pg = mfg["pg"]
    server.psql("CREATE DATABASE shops3")
    server.psql("CREATE TABLE item AS SELECT g AS id FROM generate_series(1, 10) g", "shops3")
    server.psql("DO $$ BEGIN CREATE ROLE odoo_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    client = aws.client()
    contents = [f"s3 attachment {i}".encode() for i in range(4)]
    for content in contents:  # Odoo's layout under an S3 prefix: <prefix>/<db>/xx/<sha1>
        sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()
        client.put_object(Bucket=BUCKET, Key=f"odoo-data/shops3/{sha1[:2]}/{sha1}", Body=content)
    target = open_target(f"s3://{BUCKET}/encrypted", endpoint_url=aws.endpoint_url, sse="AES256",
                         storage_class="STANDARD_IA")
    report = engine.backup(target, server, "shops3", stack="dev", filestore=f"s3://{BUCKET}/odoo-data",
                           filestore_endpoint_url=aws.endpoint_url)
    assert report["filestore"]["count"] == 4
    head = client.head_object(Bucket=BUCKET, Key=f"encrypted/{report['artifacts'][0]['key']}")
    assert head["ServerSideEncryption"] == "AES256" and head["StorageClass"] == "STANDARD_IA"
    restored = restore(target, report["set_id"], pg=server, db="shops3_back", filestore_root=tmp_path / "fs",
                       owner="odoo_app")
    assert restored["filestore"]["count"] == 4
    assert server.scalar("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shops3_back'") == "odoo_app"
    assert server.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'item'", "shops3_back") == "odoo_app"
    assert len(sha1_tree(tmp_path / "fs" / "shops3_back")) == 4
