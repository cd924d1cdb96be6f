"""Small filestore files in pack objects (S3 targets: one request per pack, not per file), read back file by
file and pack by pack, every byte checked; on a local directory target that packs as S3 does."""

from __future__ import annotations

import hashlib
import random
import threading
from pathlib import Path

import pytest

from erpops.backup import filestore as fs
from erpops.backup import manifest as mf
from erpops.backup.progress import Reporter
from erpops.backup.storage import FileTarget
from erpops.errors import IntegrityError


class PackingTarget(FileTarget):
    packs_small_files = True


def odoo_filestore(root: Path, sizes: list[int], seed: int = 7) -> dict[str, bytes]:
    """Odoo's layout, xx/<sha1>, with files of these sizes (random bytes); {path: bytes}."""
    rng = random.Random(seed)
    files = {}
    for size in sizes:
        data = rng.randbytes(size)
        sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        path = f"{sha1[:2]}/{sha1}"
        (root / sha1[:2]).mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        files[path] = data
    return files


@pytest.fixture
def small_packs(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(fs, "PACK_BYTES", 256 * 1024)
    return 256 * 1024


SIZES = [0, 1, 700, 4096, 65_536, 200_000, *range(1_000, 121_000, 3_000), fs.PACK_MAX_FILE, fs.PACK_MAX_FILE + 1,
         3 * 1024 * 1024]


def test_small_files_share_pack_objects_and_come_back_byte_for_byte(tmp_path: Path, small_packs: int) -> None:
    files = odoo_filestore(tmp_path / "src", SIZES)
    target = PackingTarget(tmp_path / "target")
    copied = fs.copy_filestore(FileTarget(tmp_path / "src"), target, Reporter(), workers=4)

    by_path = {f.path: f for f in copied.files}
    assert set(by_path) == set(files)
    loose = {p for p, f in by_path.items() if f.pack is None}
    assert loose == {p for p, data in files.items() if len(data) > fs.PACK_MAX_FILE}  # only the big ones alone
    stored = {o.key: o.size for o in target.list_objects("filestore/")}
    packs = {k: size for k, size in stored.items() if k.startswith("filestore/packs/")}
    assert copied.packs == len(packs) > 1 and len(stored) == len(packs) + len(loose)
    assert all(size <= small_packs + fs.PACK_MAX_FILE for size in packs.values())
    for path, data in files.items():  # each file alone: its own range of its pack
        f = by_path[path]
        assert (f.size, f.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        with fs.open_file(target, f) as body:
            assert body.read() == data

    dest = tmp_path / "restored"
    fs.restore_filestore(target, copied.files, dest, Reporter(), workers=3)
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == files


def test_an_unchanged_file_keeps_its_pack_and_a_new_one_goes_into_a_new_pack(tmp_path: Path, small_packs: int) -> None:
    src = tmp_path / "src"
    files = odoo_filestore(src, SIZES[:20])
    target = PackingTarget(tmp_path / "target")
    first = fs.copy_filestore(FileTarget(src), target, Reporter(), workers=4)
    before = {f.path: f for f in first.files}
    added = odoo_filestore(src, [5_000], seed=99)

    second = fs.copy_filestore(FileTarget(src), target, Reporter(), workers=4, previous=before)
    after = {f.path: f for f in second.files}
    assert (second.uploaded, second.skipped, second.packs) == (1, len(files), 1)
    assert all(after[p] == before[p] for p in files)  # same pack, same offset: not read, not stored again
    (new,) = added
    assert after[new].pack is not None and after[new].pack not in {f.pack for f in first.files}


def test_damage_inside_a_pack_is_found_per_file_and_a_missing_pack_names_its_files(
    tmp_path: Path, small_packs: int
) -> None:
    from erpops.backup.verify import verify_artifacts

    files = odoo_filestore(tmp_path / "src", SIZES[:30])
    target = PackingTarget(tmp_path / "target")
    copied = fs.copy_filestore(FileTarget(tmp_path / "src"), target, Reporter(), workers=4)
    packed = sorted((f for f in copied.files if f.pack is not None and f.size > 0), key=lambda f: (f.pack, f.offset))
    victim = packed[len(packed) // 2]
    pack_path = target.root / victim.pack
    raw = bytearray(pack_path.read_bytes())
    raw[(victim.offset or 0) + victim.size // 2] ^= 0x01  # one flipped bit in the middle of one member
    pack_path.write_bytes(bytes(raw))
    manifest = _manifest(copied.files)

    problems, _ = verify_artifacts(target, manifest, Reporter(), 4, artifacts=False)
    assert problems == [f"{target.child(victim.pack)} at {victim.offset} (file {victim.path}) is damaged: "
                        f"{victim.size} bytes, sha1 {problems[0].split('sha1 ')[1].split(';')[0]}; expected "
                        f"{victim.size} bytes, sha1 {victim.sha1}"]
    with pytest.raises(IntegrityError, match=victim.path):
        fs.restore_filestore(target, copied.files, tmp_path / "restored", Reporter(), workers=2)

    gone = next(f.pack for f in packed if f.pack != victim.pack)
    (target.root / gone).unlink()
    problems, _ = verify_artifacts(target, manifest, Reporter(), 4, artifacts=False)
    lost = sorted(f.path for f in copied.files if f.pack == gone)
    assert sorted(p.split("(file ")[1].rstrip(")") for p in problems if "is missing" in p) == lost
    assert len(files) == len(copied.files)


def _manifest(files: list[mf.FilestoreFile]) -> mf.Manifest:
    art = mf.Artifact("dump", "sets/x/dump.pgdump.zst", 1, "0" * 64, "zstd", "custom")
    return mf.Manifest(odoo={}, set_id="dev-db-20261207T000000Z-abcdef", created_at="2026-12-07T00:00:00Z",
                       stack="dev", erpops_version="0", pg_server_version=None, pg_server_version_num=None,
                       db_name="db", neutralized=False, duration_seconds=0.0, artifacts=[art], filestore=files,
                       row_counts={})


def test_at_most_two_sealed_packs_are_held_in_memory(tmp_path: Path, small_packs: int) -> None:
    """Each pack being joined is held about twice over: workers that fill a third one wait for a slot."""
    state = {"now": 0, "peak": 0}
    lock, crowd = threading.Lock(), threading.Condition()

    class SlowTarget(PackingTarget):
        def put_bytes(self, key: str, data: bytes, **options: bool) -> tuple[int, str]:
            if not key.startswith("filestore/packs/"):
                return super().put_bytes(key, data, **options)
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            with crowd:  # stay until a third store would have started, or a moment has passed
                crowd.notify_all()
                crowd.wait_for(lambda: state["now"] > 2, timeout=0.2)
            try:
                return super().put_bytes(key, data, **options)
            finally:
                with lock:
                    state["now"] -= 1

    files = odoo_filestore(tmp_path / "src", [60_000] * 24)
    copied = fs.copy_filestore(FileTarget(tmp_path / "src"), SlowTarget(tmp_path / "target"), Reporter(), workers=8)
    assert copied.packs >= 5 and len(copied.files) == len(files)
    assert state["peak"] <= 2


def test_a_file_that_does_not_match_its_name_is_refused_before_it_joins_a_pack(tmp_path: Path) -> None:
    files = odoo_filestore(tmp_path / "src", [5_000, 6_000])
    path = next(iter(files))
    (tmp_path / "src" / path).write_bytes(files[path] + b"grown since Odoo wrote it")
    target = PackingTarget(tmp_path / "target")
    with pytest.raises(IntegrityError, match=f"corrupt filestore source: .*{path.split('/')[1]}"):
        fs.copy_filestore(FileTarget(tmp_path / "src"), target, Reporter(), workers=1)
