"""A restore without a temp file (erpops.backup.staged) on a real PostgreSQL 15: loaders reading their
frames of the stored dump, early indexes, and the result identical to the source: rows, indexes,
constraints, triggers, sequences, a materialized view. A damaged frame is named, and nothing is left."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from erpops.backup import dump, engine
from erpops.backup import manifest as mf
from erpops.backup.pgarchive import BlockFinder, data_offsets
from erpops.backup.restore import restore
from erpops.backup.storage import open_target
from erpops.errors import IntegrityError
from erpops.local import LocalPostgres
from erpops.pg import Pg

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

SCHEMA = """
CREATE TABLE partner (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE product (id serial PRIMARY KEY, code text NOT NULL, weight numeric CHECK (weight >= 0));
CREATE TABLE mrp_order (id bigserial PRIMARY KEY, partner_id int REFERENCES partner(id),
                        product_id int NOT NULL REFERENCES product(id) ON DELETE RESTRICT,
                        qty int, note text, blob bytea);
CREATE INDEX mrp_order_product ON mrp_order (product_id, qty);
CREATE INDEX partner_lower_name ON partner (lower(name));
CREATE TABLE audit (at timestamptz DEFAULT now(), what text);
CREATE FUNCTION audit_it() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO audit (what) VALUES (TG_OP || ' ' || NEW.id); RETURN NEW; END$$;
CREATE TRIGGER mrp_order_audit AFTER INSERT ON mrp_order FOR EACH ROW EXECUTE FUNCTION audit_it();
INSERT INTO partner (name, email) SELECT 'Partner ' || i, 'p' || i || '@example.com' FROM generate_series(1, 3000) i;
INSERT INTO product (code, weight) SELECT 'P-' || i, i % 50 FROM generate_series(1, 500) i;
ALTER TABLE mrp_order DISABLE TRIGGER mrp_order_audit;
INSERT INTO mrp_order (partner_id, product_id, qty, note, blob)
  SELECT 1 + i % 3000, 1 + i % 500, i % 17, repeat(md5(i::text), 1 + i % 9), decode(md5(i::text), 'hex')
  FROM generate_series(1, 40000) i;
ALTER TABLE mrp_order ENABLE TRIGGER mrp_order_audit;
CREATE MATERIALIZED VIEW product_qty AS SELECT product_id, sum(qty) AS qty FROM mrp_order GROUP BY product_id;
CREATE UNIQUE INDEX product_qty_id ON product_qty (product_id);
COMMENT ON TABLE mrp_order IS 'manufacturing orders';
SELECT setval('partner_id_seq', 5000);
"""

FINGERPRINT = [
    "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = 'public'::regnamespace ORDER BY 1",
    "SELECT tgrelid::regclass || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger "
    "WHERE NOT tgisinternal ORDER BY 1",
    "SELECT sequencename || ' ' || last_value FROM pg_sequences ORDER BY 1",
    "SELECT relname || ' ' || relispopulated::text FROM pg_class WHERE relkind = 'm'",
    "SELECT obj_description('mrp_order'::regclass)",
    *(f"SELECT count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {t} t"
      for t in ("partner", "product", "mrp_order", "audit", "product_qty")),
]


def fingerprint(pg: Pg, db: str) -> list[str]:
    return [pg.psql(q, db) for q in FINGERPRINT]


@pytest.fixture(scope="module")
def source(pg: LocalPostgres) -> Pg:
    server = Pg.from_local(pg)
    server.psql("DROP DATABASE IF EXISTS staged_src")
    server.psql("CREATE DATABASE staged_src")
    server.psql(SCHEMA, "staged_src")
    return server


@pytest.fixture()
def small_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames of 256 KiB (read in 64 KiB chunks): the test dump of a few MB has many, and loaders start mid-dump."""
    monkeypatch.setattr(dump, "FRAME", 256 * 1024)
    monkeypatch.setattr(dump, "CHUNK", 64 * 1024)


def test_the_backup_records_blocks_where_pg_dump_itself_puts_them(source: Pg, pg: LocalPostgres,
                                                                   tmp_path: Path) -> None:
    seekable = tmp_path / "file.dump"  # pg_dump writing a file records the offsets itself
    subprocess.run([str(pg.bin("pg_dump")), "-Fc", "-Z0", "-d", "staged_src", "-f", str(seekable)],
                   env=source.env(), check=True)
    # through a pipe, as a backup reads it: no offsets in the TOC
    data = subprocess.run([str(pg.bin("pg_dump")), "-Fc", "-Z0", "-d", "staged_src"], env=source.env(), check=True,
                          capture_output=True).stdout
    finder = BlockFinder()
    pos, step = 0, 1
    while pos < len(data):  # uneven pieces: 1, 2, 4 ... bytes, then 64 KiB: headers split across pieces
        finder.wrote(data[pos:pos + step])
        pos += step
        step = min(step * 2, 65536) if step < 65536 else 65536 - 7
    finder.finish()
    expected = data_offsets(seekable)
    assert finder.starts == expected and len(expected) == 4  # four tables (a matview's data is post-data)
    assert finder.toc is not None and finder.toc.end + sum(finder.sizes.values()) == len(data)


def test_a_restore_reads_frames_and_equals_the_source(source: Pg, tmp_path: Path, small_frames: None) -> None:
    target = open_target(f"file://{tmp_path}/t")
    set_id = engine.backup(target, source, "staged_src", stack="dev")["set_id"]
    m = engine.load_manifest(target, set_id)
    assert m.dump.frames is not None and len(m.dump.frames) > 10
    assert m.dump.data_blocks is not None and len(m.dump.data_blocks) == 4
    report = restore(target, set_id, pg=source, db="staged_dst", skip_filestore=True, jobs=2)
    assert report["ok"] and report["pg_restore_jobs"] == 2
    assert any("no temp file" in n for n in report["notes"]), report["notes"]
    assert fingerprint(source, "staged_dst") == fingerprint(source, "staged_src")
    # the trigger was restored enabled and fires, as in the source
    source.psql("INSERT INTO mrp_order (partner_id, product_id, qty) VALUES (1, 1, 1)", "staged_dst")
    assert source.scalar("SELECT count(*) FROM audit", "staged_dst") == "1"


def test_a_set_without_frames_restores_through_a_temp_file(source: Pg, tmp_path: Path) -> None:
    """Sets made before the frames were recorded: decompressed to a temp file, then pg_restore -j 2."""
    target = open_target(f"file://{tmp_path}/t")
    set_id = engine.backup(target, source, "staged_src", stack="dev")["set_id"]
    path = tmp_path / "t" / mf.set_key(set_id, mf.MANIFEST)
    data = json.loads(path.read_text())
    for key in ("frames", "data_blocks", "data_start"):
        data["erpops"]["artifacts"][0].pop(key)
    path.write_text(json.dumps(data))
    report = restore(target, set_id, pg=source, db="staged_old", skip_filestore=True, jobs=2)
    assert any("temp file" in n and "no temp file" not in n for n in report["notes"]), report["notes"]
    assert fingerprint(source, "staged_old") == fingerprint(source, "staged_src")


def test_a_damaged_frame_is_named_and_nothing_is_left(source: Pg, tmp_path: Path, small_frames: None) -> None:
    target = open_target(f"file://{tmp_path}/t")
    set_id = engine.backup(target, source, "staged_src", stack="dev")["set_id"]
    m = engine.load_manifest(target, set_id)
    assert m.dump.frames is not None
    stored = tmp_path / "t" / m.dump.key
    data = bytearray(stored.read_bytes())
    k = len(m.dump.frames) // 2
    data[m.dump.frames[k][1] + 40] ^= 0x10  # inside a frame in the middle of mrp_order's data
    stored.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as caught:
        restore(target, set_id, pg=source, db="staged_bad", skip_filestore=True, jobs=2)
    assert f"frame {k} " in str(caught.value) or "does not decompress" in str(caught.value), str(caught.value)
    assert not source.database_exists("staged_bad")
    assert source.psql("SELECT datname FROM pg_database WHERE datname LIKE 'staged_bad%'") == ""


def test_blocks_that_are_not_the_dumps_are_refused_before_any_load(source: Pg, tmp_path: Path) -> None:
    target = open_target(f"file://{tmp_path}/t")
    set_id = engine.backup(target, source, "staged_src", stack="dev")["set_id"]
    path = tmp_path / "t" / mf.set_key(set_id, mf.MANIFEST)
    data = json.loads(path.read_text())
    blocks = data["erpops"]["artifacts"][0]["data_blocks"]
    blocks[0][0], blocks[1][0] = blocks[1][0], blocks[0][0]  # same sizes, the tables swapped
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="written for another dump"):
        restore(target, set_id, pg=source, db="staged_swapped", skip_filestore=True, jobs=2)
    assert source.psql("SELECT datname FROM pg_database WHERE datname LIKE 'staged_swapped%'") == ""
