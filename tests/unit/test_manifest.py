"""manifest.json: set ids, Odoo's keys, round trip, validation, restore compatibility rules."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from erpops.backup import manifest as mf
from erpops.errors import IntegrityError, UsageError

SHA1 = "b1625102d5ee020412d2d01015690c7778c38a8a"


def sample() -> mf.Manifest:
    modules = {"base": "17.0.1.3", "mrp": "17.0.2.0", "web": "17.0.1.0"}
    return mf.Manifest(
        odoo=mf.odoo_keys("mfg", modules, 150018),
        set_id="prod-mfg-20261129T181500Z-3fa2b1",
        created_at="2026-11-29T18:15:00Z",
        stack="prod",
        db_name="mfg",
        erpops_version="0.1.0",
        pg_server_version="15.18",
        pg_server_version_num=150018,
        artifacts=[mf.Artifact("dump", "sets/prod-mfg-20261129T181500Z-3fa2b1/dump.pgdump.zst", 2072858, "a" * 64,
                               "zstd", "custom", 16129248, "b" * 64)],
        filestore=[mf.FilestoreFile(f"b1/{SHA1}", SHA1, "c" * 64, 702)],
        row_counts={"res_partner": 42, "mrp_production": 6, "sale_order": None},
        duration_seconds=4.1,
        neutralized=False,
        source={"kind": "database", "db_size_bytes": 58_000_000},
    )


def test_set_id_shape_and_time() -> None:
    when = datetime(2026, 11, 29, 18, 15, 0, tzinfo=UTC)
    set_id = mf.new_set_id("prod-eu", "mfg_2", when)
    assert mf.SET_ID_RE.match(set_id)
    assert set_id.startswith("prod-eu-mfg_2-20261129T181500Z-")
    assert len(set_id.rsplit("-", 1)[1]) == 6
    assert mf.set_time(set_id) == when
    assert mf.set_time("not-a-set") is None


@pytest.mark.parametrize("stack, db", [("Prod", "mfg"), ("prod", "-mfg"), ("prod", "a b"), ("prod", "x" * 64),
                                       ("prod", "m;drop")])
def test_set_id_refuses_bad_names(stack: str, db: str) -> None:
    with pytest.raises(UsageError):
        mf.new_set_id(stack, db)


def test_odoo_keys_match_odoo_dump_db_manifest() -> None:
    keys = mf.odoo_keys("mfg", {"base": "17.0.1.3", "sale": "17.0.1.2"}, 150018)
    assert keys == {
        "odoo_dump": "1", "db_name": "mfg", "version": "17.0", "version_info": [17, 0, 0, "final", 0, ""],
        "major_version": "17.0", "pg_version": "15.0", "modules": {"base": "17.0.1.3", "sale": "17.0.1.2"},
    }
    assert mf.odoo_keys("x", {}, 160004)["version"] is None
    assert mf.odoo_version_of({"base": "saas~17.2.1.3"}) == "17.2"
    assert mf.pg_version_odoo_style(170002) == "17.0"


def test_round_trip_through_json() -> None:
    m = sample()
    text = json.dumps(m.to_dict())
    back = mf.Manifest.from_dict(json.loads(text))
    assert back == m
    data = json.loads(text)
    assert data["odoo_dump"] == "1" and data["modules"]["mrp"] == "17.0.2.0"
    e = data["erpops"]
    assert e["filestore"] == {"count": 1, "bytes": 702, "files": [
        {"path": f"b1/{SHA1}", "sha1": SHA1, "sha256": "c" * 64, "size": 702}]}
    assert e["artifacts"][0]["compression"] == "zstd" and e["artifacts"][0]["format"] == "custom"
    assert set(e) >= {"set_id", "created_at", "stack", "erpops_version", "pg_server_version", "artifacts",
                      "filestore", "row_counts", "duration_seconds", "neutralized"}
    assert back.dump.uncompressed_size == 16129248
    assert back.filestore[0].key == f"filestore/b1/{SHA1}"
    assert back.odoo_version == "17.0"


def test_a_packed_file_round_trips_with_its_pack_and_offset() -> None:
    data = sample().to_dict()
    data["erpops"]["filestore"]["files"][0].update(pack="filestore/packs/" + "a" * 64, offset=4096)
    back = mf.Manifest.from_dict(json.loads(json.dumps(data)))
    assert back.to_dict()["erpops"]["format"] == 2  # an erpops reading format 1 only refuses it, not misreads it
    f = back.filestore[0]
    assert (f.key, f.offset) == ("filestore/packs/" + "a" * 64, 4096)  # the object to read is the pack
    assert back.to_dict()["erpops"]["filestore"]["files"][0]["offset"] == 4096


def test_the_dump_blocks_and_frames_round_trip() -> None:
    data = sample().to_dict()
    a = data["erpops"]["artifacts"][0]
    assert "frames" not in a and "data_blocks" not in a  # not recorded: the restore uses a temp file
    a.update(data_start=4000, data_blocks=[[3366, 16000000], [3367, 125248]],
             frames=[[0, 0, "d" * 64], [8388608, 1048576, "e" * 64]])
    back = mf.Manifest.from_dict(json.loads(json.dumps(data)))
    assert back.dump.data_blocks == ((3366, 16000000), (3367, 125248))
    assert back.dump.frames == ((0, 0, "d" * 64), (8388608, 1048576, "e" * 64))
    assert mf.Manifest.from_dict(json.loads(json.dumps(back.to_dict()))) == back


def with_blocks(d: dict[str, Any], **change: Any) -> None:
    d["erpops"]["artifacts"][0].update(data_start=4000, data_blocks=[[3366, 16125248]], frames=[[0, 0, "d" * 64]])
    d["erpops"]["artifacts"][0].update(change)


def broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(sample().to_dict())
    change(data)
    return data


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("erpops"), "no 'erpops' section"),
    (lambda d: d["erpops"].update(format=3), "format 3"),
    (lambda d: d["erpops"]["artifacts"][0].update(sha256="xyz"), "not 64 hex digits"),
    (lambda d: d["erpops"]["artifacts"][0].update(size="12"), "artifacts[0].size"),
    (lambda d: d["erpops"].update(artifacts=[]), "no 'dump' artifact"),
    (lambda d: d["erpops"]["filestore"]["files"][0].update(path="b1/" + "0" * 40), "does not match sha1"),
    (lambda d: d["erpops"]["filestore"]["files"][0].update(path="../etc/passwd"), "does not match sha1"),
    (lambda d: d["erpops"]["filestore"].update(count=5), "filestore.count 5"),
    (lambda d: d["erpops"]["filestore"]["files"][0].update(pack="sets/x/dump.pgdump.zst", offset=0), "not a pack"),
    (lambda d: d["erpops"]["filestore"]["files"][0].update(pack="filestore/packs/" + "a" * 64, offset=-1),
     "not a pack"),
    (lambda d: d["erpops"]["filestore"]["files"][0].update(pack="filestore/packs/" + "a" * 64), "not a pack"),
    (lambda d: d["erpops"].update(created_at="yesterday"), "created_at"),
    (lambda d: d["erpops"].update(row_counts={"res_partner": "42"}), "row_counts"),
    (lambda d: with_blocks(d, data_blocks=[[3366, 5]]), "artifacts[0].data_blocks: data_start plus the block sizes"),
    (lambda d: with_blocks(d, data_blocks=[["3366", 5]]), "artifacts[0].data_start/data_blocks"),
    (lambda d: with_blocks(d, frames=[[0, 0, "xyz"]]), "artifacts[0].frames"),
    (lambda d: with_blocks(d, frames=[[0, 0, "d" * 64], [0, 10, "d" * 64]]), "artifacts[0].frames"),
    (lambda d: with_blocks(d, frames=[[0, 0, "d" * 64], [10, 2072858, "d" * 64]]), "artifacts[0].frames"),
])
def test_invalid_manifests_are_refused_with_the_reason(change: Any, message: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        mf.Manifest.from_dict(broken(change), "s3://b/sets/x/manifest.json")
    assert message in str(caught.value)
    assert caught.value.exit_code == 5


def test_restore_problems_pg_major_must_not_go_down() -> None:
    m = sample()
    assert mf.restore_problems(m, server_version_num=150004) == []
    assert mf.restore_problems(m, server_version_num=170002) == []
    (problem,) = mf.restore_problems(m, server_version_num=140011)
    assert "PostgreSQL server is 14, the dump comes from 15" in problem


@pytest.mark.parametrize("image, ok", [("17.0", True), ("17", True), ("18.0", False), ("16.0", False)])
def test_restore_problems_odoo_major_must_match(image: str, ok: bool) -> None:
    problems = mf.restore_problems(sample(), server_version_num=150018, odoo_version=image)
    assert (problems == []) is ok
    if not ok:
        assert "majors must match" in problems[0]


def test_restore_problems_modules_missing_from_the_image() -> None:
    (problem,) = mf.restore_problems(sample(), server_version_num=150018, odoo_modules={"base", "web"})
    assert "1 installed module(s) are not available in the target image: mrp" in problem


def test_row_count_problems() -> None:
    expected = {"res_partner": 42, "sale_order": None, "stock_move": 81}
    assert mf.row_count_problems(expected, {"res_partner": 42, "sale_order": None, "stock_move": 81}) == []
    problems = mf.row_count_problems(expected, {"res_partner": 41, "sale_order": 3, "stock_move": None})
    assert problems == [
        "res_partner: 41 rows restored, the set recorded 42",
        "sale_order: 3 rows restored, the set recorded no table",
        "stock_move: missing rows restored, the set recorded 81",
    ]
