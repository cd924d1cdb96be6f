"""Pack objects on a real S3 API (moto): small files share objects, each is read back alone with a ranged GET
(an empty file included), every file back byte for byte, and damage inside a pack is named by file."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from erpops.backup import filestore as fs
from erpops.backup import manifest as mf
from erpops.backup.progress import Reporter
from erpops.backup.storage import FileTarget, S3Target
from erpops.backup.verify import verify_artifacts
from erpops.local import LocalS3

pytestmark = pytest.mark.integration

BUCKET = "erpops-packs"


def odoo_filestore(root: Path, sizes: list[int]) -> dict[str, bytes]:
    rng = random.Random(16)
    files = {}
    for size in sizes:
        data = rng.randbytes(size)
        sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        (root / sha1[:2]).mkdir(parents=True, exist_ok=True)
        (root / sha1[:2] / sha1).write_bytes(data)
        files[f"{sha1[:2]}/{sha1}"] = data
    return files


def manifest_of(files: list[mf.FilestoreFile]) -> mf.Manifest:
    art = mf.Artifact("dump", "sets/x/dump.pgdump.zst", 1, "0" * 64, "zstd", "custom")
    return mf.Manifest(odoo={}, set_id="dev-db-20261207T000000Z-abcdef", created_at="2026-12-07T00:00:00Z",
                       stack="dev", db_name="db", erpops_version="0", pg_server_version=None,
                       pg_server_version_num=None, artifacts=[art], filestore=files, row_counts={},
                       duration_seconds=0.0, neutralized=False)


def test_packs_on_s3_read_back_file_by_file_and_pack_by_pack(aws: LocalS3, tmp_path: Path) -> None:
    sizes = [0, 17, *random.Random(3).choices(range(1_000, 300_000), k=80), 2 * 1024 * 1024]
    files = odoo_filestore(tmp_path / "src", sizes)
    target = S3Target(BUCKET, "packs", endpoint_url=aws.endpoint_url)
    copied = fs.copy_filestore(FileTarget(tmp_path / "src"), target, Reporter(), workers=8)

    keys = {o.key: o.size for o in target.list_objects("filestore/")}
    packs = [k for k in keys if k.startswith("filestore/packs/")]
    assert len(keys) == len(packs) + 1 < len(files) / 5  # one big file alone, the rest in a few packs
    assert copied.packs == len(packs) and all(keys[k] < 8 * 1024 * 1024 for k in packs)  # one PUT each
    by_path = {f.path: f for f in copied.files}
    for path, data in files.items():
        with fs.open_file(target, by_path[path]) as body:
            assert body.read() == data, path

    dest = tmp_path / "restored"
    fs.restore_filestore(target, copied.files, dest, Reporter(), workers=4)
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == files

    victim = next(f for f in copied.files if f.pack is not None and f.size > 1000)
    body = bytearray(target.get_bytes(victim.pack))
    body[(victim.offset or 0) + 500] ^= 0xFF
    target.put_bytes(victim.pack, bytes(body))
    problems, _ = verify_artifacts(target, manifest_of(copied.files), Reporter(), 4, artifacts=False)
    assert len(problems) == 1 and f"(file {victim.path}) is damaged" in problems[0]
