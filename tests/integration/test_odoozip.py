"""Odoo backup zips: a real Odoo 17 backup imports, exports and imports again, and bad zips leave nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from erpops.backup.odoozip import (
    MANIFEST_KEYS,
    export_odoo_zip,
    import_odoo_zip,
    read_manifest,
    write_odoo_zip,
)
from erpops.errors import IntegrityError, OperationFailed, UsageError
from erpops.local import LocalPostgres
from erpops.pg import Pg, quote_ident

pytestmark = pytest.mark.integration

# From shared/fixtures/README.md, and counted in the restored database.
ROW_COUNTS = {
    "res_partner": 42,
    "product_product": 48,
    "mrp_bom": 8,
    "mrp_production": 6,
    "stock_move": 81,
    "stock_picking": 25,
    "sale_order": 24,
    "purchase_order": 11,
    "account_move": 24,
    "ir_cron": 21,
    "res_users": 7,
    "res_company": 2,
}
# 858 attachments are stored in the filestore; several share their bytes, so it holds 566 files.
STORED_ATTACHMENTS = 858
FILESTORE_FILES = 566


def count(pg: Pg, db: str, table: str) -> int:
    return int(pg.scalar(f"SELECT count(*) FROM {quote_ident(table)}", db))


def sha1_of(path: Path) -> str:
    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()


def filestore_names(root: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in root.glob("*/*") if p.is_file()}


def make_zip(path: Path, *, dump: bytes | None, manifest: dict | str | None, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if dump is not None:
            zf.writestr("dump.sql", dump)
        if manifest is not None:
            zf.writestr("manifest.json", manifest if isinstance(manifest, str) else json.dumps(manifest))
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def good_manifest(db_name: str = "tiny") -> dict:
    return {
        "odoo_dump": "1", "db_name": db_name, "version": "17.0", "version_info": [17, 0, 0, "final", 0, ""],
        "major_version": "17.0", "pg_version": "15.0", "modules": {"base": "17.0.1.3"},
    }  # fmt: skip


def blob(data: bytes) -> tuple[str, bytes]:
    sha = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    return f"filestore/{sha[:2]}/{sha}", data


@pytest.fixture(scope="module")
def client(pg: LocalPostgres) -> Pg:
    return Pg.from_local(pg)


@pytest.fixture(scope="module")
def imported(client: Pg, tmp_path_factory: pytest.TempPathFactory,
             odoo_fixture: Path) -> Iterator[tuple[str, Path, dict]]:
    """The fixture zip imported once for this module: (db, filestore dir, returned manifest)."""
    zip_path = odoo_fixture
    root = tmp_path_factory.mktemp("filestore")
    manifest = import_odoo_zip(zip_path, client, "mfg_import", root)
    yield "mfg_import", root / "mfg_import", manifest
    client.psql('DROP DATABASE IF EXISTS "mfg_import" WITH (FORCE)')


def assert_nothing_left(client: Pg, db: str, root: Path) -> None:
    assert not client.database_exists(db), f"database {db} was left behind"
    assert not (root / db).exists(), f"filestore {root / db} was left behind"
    if root.exists():
        assert list(root.iterdir()) == [], f"staging left in {root}"


# -- import -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "expected"), sorted(ROW_COUNTS.items()))
def test_import_restores_every_row(client: Pg, imported: tuple[str, Path, dict], table: str, expected: int) -> None:
    db, _, _ = imported
    assert count(client, db, table) == expected


def test_import_returns_the_zip_manifest(imported: tuple[str, Path, dict], odoo_fixture: Path) -> None:
    _, _, manifest = imported
    assert manifest == read_manifest(odoo_fixture)
    assert (manifest["odoo_dump"], manifest["db_name"], manifest["version"]) == ("1", "mfg", "17.0")
    assert len(manifest["modules"]) == 69


def test_import_writes_the_filestore_and_every_file_matches_its_sha1(
    client: Pg, imported: tuple[str, Path, dict]
) -> None:
    db, filestore, _ = imported
    names = filestore_names(filestore)
    assert len(names) == FILESTORE_FILES
    wrong = [name for name in names if sha1_of(filestore / name) != name[3:]]
    assert wrong == []
    stored = client.psql("SELECT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL", db).split()
    assert len(stored) == STORED_ATTACHMENTS
    assert set(stored) <= names, f"attachments without their file: {sorted(set(stored) - names)[:5]}"


def test_import_creates_the_database_as_odoo_does(client: Pg, imported: tuple[str, Path, dict]) -> None:
    db, _, _ = imported
    encoding, collate = client.scalar(
        f"SELECT pg_encoding_to_char(encoding) || '|' || datcollate FROM pg_database WHERE datname = '{db}'"
    ).split("|")
    assert (encoding, collate) == ("UTF8", "C")


def test_import_onto_an_existing_database_is_refused_and_leaves_it_untouched(client: Pg, tmp_path: Path,
                                                                               odoo_fixture: Path) -> None:
    client.psql('CREATE DATABASE "occupied"')
    try:
        client.psql("CREATE TABLE keep (v text); INSERT INTO keep VALUES ('mine')", "occupied")
        with pytest.raises(UsageError, match=r"'occupied' already exists.*dropdb occupied"):
            import_odoo_zip(odoo_fixture, client, "occupied", tmp_path / "fs")
        assert client.scalar("SELECT v FROM keep", "occupied") == "mine"
        assert client.scalar("SELECT to_regclass('res_partner') IS NULL", "occupied") == "t"
        assert not (tmp_path / "fs" / "occupied").exists()
    finally:
        client.psql('DROP DATABASE "occupied" WITH (FORCE)')


BAD_ZIPS = {
    "manifest-not-odoo": (b"SELECT 1;", {**good_manifest(), "odoo_dump": "2"}, r"odoo_dump='2'"),
    "manifest-not-json": (b"SELECT 1;", "{not json", r"manifest.json is not valid JSON"),
    "no-dump": (None, good_manifest(), r"no dump\.sql"),
    "no-manifest": (b"SELECT 1;", None, r"no manifest\.json"),
}


@pytest.mark.parametrize("case", sorted(BAD_ZIPS))
def test_a_zip_without_odoos_layout_is_refused_before_anything_is_created(
    client: Pg, tmp_path: Path, case: str
) -> None:
    dump, manifest, message = BAD_ZIPS[case]
    zip_path = make_zip(tmp_path / "bad.zip", dump=dump, manifest=manifest, files=dict([blob(b"x")]))
    root = tmp_path / "fs"
    with pytest.raises(UsageError, match=message):
        import_odoo_zip(zip_path, client, "bad_layout", root)
    assert_nothing_left(client, "bad_layout", root)


def test_a_file_that_is_not_a_zip_is_refused(client: Pg, tmp_path: Path) -> None:
    not_zip = tmp_path / "backup.zip"
    not_zip.write_bytes(b"-- plain SQL, not a zip\n")
    with pytest.raises(UsageError, match="is not a zip file"):
        import_odoo_zip(not_zip, client, "not_zip", tmp_path / "fs")
    assert not client.database_exists("not_zip")


def test_a_sql_error_in_dump_sql_leaves_no_database_and_no_filestore(client: Pg, tmp_path: Path) -> None:
    dump = (b"CREATE TABLE first (id int);\nINSERT INTO first VALUES (1);\n"
            b"INSERT INTO first VALUES (no_such_function());\n")
    zip_path = make_zip(tmp_path / "sqlerr.zip", dump=dump, manifest=good_manifest(), files=dict([blob(b"a")]))
    root = tmp_path / "fs"
    with pytest.raises(OperationFailed, match=r"(?s)restoring \S*dump\.sql into 'sql_error' failed.*no_such_function"):
        import_odoo_zip(zip_path, client, "sql_error", root)
    assert_nothing_left(client, "sql_error", root)


def test_a_filestore_file_whose_sha1_is_not_its_name_is_refused(client: Pg, tmp_path: Path) -> None:
    name, _ = blob(b"the real bytes")
    zip_path = make_zip(
        tmp_path / "corrupt.zip", dump=b"CREATE TABLE t (id int);\n", manifest=good_manifest(),
        files={**dict([blob(b"fine")]), name: b"other bytes"},
    )  # fmt: skip
    root = tmp_path / "fs"
    with pytest.raises(IntegrityError, match=rf"{name} holds bytes whose sha1 is"):
        import_odoo_zip(zip_path, client, "corrupt", root)
    assert_nothing_left(client, "corrupt", root)


def test_a_psql_meta_command_in_dump_sql_cannot_run(client: Pg, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    dump = (
        b"\\restrict attackerkey\nCREATE TABLE t (v text);\n\\unrestrict attackerkey\n"
        + f"\\! touch {marker}\n".encode()
    )
    zip_path = make_zip(tmp_path / "evil.zip", dump=dump, manifest=good_manifest(), files={})
    root = tmp_path / "fs"
    # Refused by the screen before anything runs (psql's own \restrict fence stays as a second line).
    with pytest.raises(IntegrityError, match=r"dump\.sql line 4 refused: a psql meta-command"):
        import_odoo_zip(zip_path, client, "evil", root)
    assert not marker.exists()
    assert_nothing_left(client, "evil", root)


def test_copy_data_starting_with_a_backslash_is_data(client: Pg, tmp_path: Path) -> None:
    dump = b"CREATE TABLE t (v text);\nCOPY t (v) FROM stdin;\n\\restrict notakey\n\\N\n\\.\n"
    zip_path = make_zip(tmp_path / "copy.zip", dump=dump, manifest=good_manifest(), files={})
    import_odoo_zip(zip_path, client, "copy_data", tmp_path / "fs")
    try:
        # In COPY data \r is a carriage return and \N a NULL: both lines arrive as rows.
        assert client.scalar("SELECT count(*) FROM t WHERE v = chr(13) || 'estrict notakey'", "copy_data") == "1"
        assert client.scalar("SELECT count(*) FROM t WHERE v IS NULL", "copy_data") == "1"
    finally:
        client.psql('DROP DATABASE "copy_data" WITH (FORCE)')


# -- export and round trip -------------------------------------------------------------------------------------


def test_export_then_import_round_trips_rows_filestore_and_manifest(
    client: Pg, imported: tuple[str, Path, dict], tmp_path: Path, odoo_fixture: Path
) -> None:
    db, filestore, _ = imported
    out = tmp_path / "out" / "mfg.zip"
    result = export_odoo_zip(client, db, filestore, out)

    assert result["filestore_files"] == FILESTORE_FILES
    assert [p.name for p in out.parent.iterdir()] == ["mfg.zip"], "a temp file was left beside the zip"
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names[:2] == ["dump.sql", "manifest.json"]  # Odoo's zip_dir puts dump.sql first
        assert all(n.startswith("filestore/") for n in names[2:])
        manifest = json.loads(zf.read("manifest.json"))
    assert list(manifest) == list(MANIFEST_KEYS)
    original = read_manifest(odoo_fixture)
    assert manifest["modules"] == original["modules"]
    for key in ("odoo_dump", "version", "version_info", "major_version", "pg_version"):
        assert manifest[key] == original[key], key
    assert manifest["db_name"] == db

    root = tmp_path / "fs2"
    back = import_odoo_zip(out, client, "mfg_roundtrip", root, copy=True)
    try:
        assert back == manifest
        for table, expected in ROW_COUNTS.items():
            assert count(client, "mfg_roundtrip", table) == expected, table
        assert filestore_names(root / "mfg_roundtrip") == filestore_names(filestore)
        keys = "('database.uuid', 'database.secret')"
        before = client.psql(f"SELECT key, value FROM ir_config_parameter WHERE key IN {keys} ORDER BY key", db)
        after = client.psql(
            f"SELECT key, value FROM ir_config_parameter WHERE key IN {keys} ORDER BY key", "mfg_roundtrip"
        )
        assert len(after.splitlines()) == 2
        assert set(before.splitlines()).isdisjoint(after.splitlines()), "copy=True kept the production identity"
    finally:
        client.psql('DROP DATABASE IF EXISTS "mfg_roundtrip" WITH (FORCE)')


def test_write_odoo_zip_refuses_a_filestore_file_that_does_not_match_its_name(tmp_path: Path) -> None:
    name, _ = blob(b"expected")
    out = tmp_path / "out.zip"
    with pytest.raises(IntegrityError, match="sha1"):
        write_odoo_zip(
            out, _reader(b"SELECT 1;\n"), good_manifest(), [(name.removeprefix("filestore/"), _reader(b"tampered"))]
        )
    assert list(tmp_path.iterdir()) == [], "a half zip or temp file was left"


def test_write_odoo_zip_needs_odoos_manifest_keys(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="manifest lacks"):
        write_odoo_zip(tmp_path / "out.zip", _reader(b""), {"odoo_dump": "1"}, [])
    assert list(tmp_path.iterdir()) == []


def _reader(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)
