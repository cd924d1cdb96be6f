"""Prune's filestore GC against a backup that starts while it deletes, on a real S3 API (moto), forced.

The race of issue 10: a prune whose GC was deleting unreferenced filestore objects while a backup
started; the backup skipped them as "already present", the GC deleted them, and the backup wrote
a manifest over 500 missing objects. Here the interleaving is not left to timing: the GC is held
inside its delete call (after every check it makes) until the backup has either finished (the
old behaviour: it never looks) or is seen reading the GC lease. Only the public API is used, so
the same test runs against a tree without the lease protocol and fails there.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from erpops.backup import engine, retention
from erpops.backup.sets import load_manifest
from erpops.backup.storage import S3Target
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

BUCKET = "erpops-gc-race"
FILES = 500


@pytest.fixture(scope="module")
def server(pg: LocalPostgres) -> Pg:
    server = Pg.from_local(pg)
    server.psql("CREATE DATABASE race_src")
    server.psql("CREATE TABLE item AS SELECT g AS id FROM generate_series(1, 100) g", "race_src")
    return server


def write_filestore(root: Path, db: str, count: int) -> list[bytes]:
    contents = [f"attachment {i}\n".encode() * 20 for i in range(count)]
    for content in contents:
        sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()
        (root / db / sha1[:2]).mkdir(parents=True, exist_ok=True)
        (root / db / sha1[:2] / sha1).write_bytes(content)
    return contents


def store_unreferenced(target: S3Target, contents: list[bytes]) -> None:
    """The same objects already in the target's filestore, referenced by no set: what a GC collects."""
    for content in contents:
        sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()
        target.put_bytes(f"filestore/{sha1[:2]}/{sha1}", content)


class Interleaver:
    """The target both sides use, with a gate in the GC's delete and an eye on the backup's reads."""

    def __init__(self, inner: S3Target) -> None:
        self._inner = inner
        self.gc_deleting = threading.Event()
        self.go = threading.Event()
        self.backup_read_a_lock = threading.Event()
        self.on_backup_list: Callable[[S3Target], None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete_many(self, keys: list[str]) -> None:
        if threading.current_thread().name == "prune" and any(k.startswith("filestore/") for k in keys):
            self.gc_deleting.set()
            assert self.go.wait(600), "the test never released the GC"
        self._inner.delete_many(keys)

    def get_bytes(self, key: str) -> bytes:
        data = self._inner.get_bytes(key)
        if threading.current_thread().name == "backup" and key.startswith("locks/"):
            self.backup_read_a_lock.set()  # it exists (get_bytes raised otherwise) and the backup looked at it
        return data

    def list_objects(self, prefix: str = "") -> Any:
        listing = list(self._inner.list_objects(prefix))
        if threading.current_thread().name == "backup" and prefix == "filestore/" and self.on_backup_list:
            hook, self.on_backup_list = self.on_backup_list, None
            hook(self._inner)
        return iter(listing)


def run_in_thread(name: str, fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread, box


def wait_until(condition: Callable[[], bool], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_backup_starting_during_the_gc_never_writes_a_set_over_deleted_objects(
    server: Pg, aws: LocalS3, tmp_path: Path
) -> None:
    inner = S3Target(BUCKET, "race", endpoint_url=aws.endpoint_url)
    root = tmp_path / "filestore"
    contents = write_filestore(root, "race_src", FILES)
    store_unreferenced(inner, contents)
    target = Interleaver(inner)

    prune, pruned = run_in_thread("prune", lambda: retention.prune(target, retention.Rules(), apply=True))
    assert target.gc_deleting.wait(600), f"the GC never started deleting: {pruned}"
    backup, backed = run_in_thread(
        "backup", lambda: engine.backup(target, server, "race_src", filestore=str(root), workers=4))
    # The old code never looks at the GC and finishes; the lease protocol makes it read the lease and wait.
    wait_until(lambda: not backup.is_alive() or target.backup_read_a_lock.is_set())
    target.go.set()
    backup.join(600)
    prune.join(600)
    assert "error" not in backed, backed.get("error")
    assert "error" not in pruned, pruned.get("error")

    set_id = backed["result"]["set_id"]
    report = engine.verify(inner, set_id)
    assert report["problems"] == [], f"{len(report['problems'])} problems, e.g. {report['problems'][:2]}"
    assert report["ok"]
    # what the GC deleted came back (as pack objects on S3), and nothing the set does not reference is left
    referenced = {f.key for f in load_manifest(inner, set_id).filestore}
    assert len(load_manifest(inner, set_id).filestore) == FILES
    assert set(inner.list_keys("filestore/")) == referenced
    assert list(inner.list_keys("locks/")) == [], "the GC left its lease behind"


def test_a_skipped_object_deleted_before_the_manifest_is_uploaded_again(
    server: Pg, aws: LocalS3, tmp_path: Path
) -> None:
    """What the lease cannot cover (a GC stalled past its expiry): the backup re-checks what it skipped."""
    inner = S3Target(BUCKET, "recheck", endpoint_url=aws.endpoint_url)
    root = tmp_path / "filestore"
    contents = write_filestore(root, "race_src", 50)
    store_unreferenced(inner, contents)
    target = Interleaver(inner)
    # Right after the backup listed the filestore (and decided to skip all 50), 20 of them vanish.
    target.on_backup_list = lambda s3: s3.delete_many(sorted(s3.list_keys("filestore/"))[:20])

    backup, backed = run_in_thread(
        "backup", lambda: engine.backup(target, server, "race_src", filestore=str(root), workers=4))
    backup.join(600)
    assert "error" not in backed, backed.get("error")
    report = engine.verify(inner, backed["result"]["set_id"])
    assert report["problems"] == [], f"{len(report['problems'])} problems, e.g. {report['problems'][:2]}"


def test_a_backup_that_starts_between_gc_batches_stops_the_gc(
    server: Pg, aws: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = S3Target(BUCKET, "batches", endpoint_url=aws.endpoint_url)
    store_unreferenced(inner, [f"object {i}".encode() for i in range(250)])
    monkeypatch.setattr(retention, "GC_BATCH", 100)
    target = Interleaver(inner)
    prune, pruned = run_in_thread("prune", lambda: retention.prune(target, retention.Rules(), apply=True))
    assert target.gc_deleting.wait(600)
    marker = {"started_at": datetime.now(UTC).isoformat(), "host": socket.gethostname(), "pid": os.getpid()}
    inner.put_bytes("sets/adhoc-x-20261203T000000Z-abcdef/in-progress.json", json.dumps(marker).encode())
    target.go.set()
    prune.join(600)
    assert "error" not in pruned, pruned.get("error")
    assert pruned["result"]["filestore_delete"] == 100
    assert pruned["result"]["filestore_gc"].startswith("stopped: a backup started during the prune")
    assert len(list(inner.list_keys("filestore/"))) == 150


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_prune_tells_a_dead_backup_from_a_live_one(aws: LocalS3) -> None:
    target = S3Target(BUCKET, "dead-or-alive", endpoint_url=aws.endpoint_url)
    now = datetime.now(UTC)
    live, dead = "adhoc-a-20261203T000000Z-aaaaaa", "adhoc-b-20261203T000000Z-bbbbbb"
    for set_id, pid in ((live, os.getpid()), (dead, dead_pid())):
        marker = {"started_at": now.isoformat(), "heartbeat_at": now.isoformat(), "host": socket.gethostname(),
                  "pid": pid}
        target.put_bytes(f"sets/{set_id}/in-progress.json", json.dumps(marker).encode())
        target.client.create_multipart_upload(Bucket=BUCKET, Key=f"dead-or-alive/sets/{set_id}/dump.pgdump.zst")
    # moto dates every upload 2010: by age both are old, but one belongs to a backup that still runs.
    assert all(now - u.initiated > timedelta(days=1) for u in target.list_incomplete_uploads(""))
    result = retention.prune(target, retention.Rules(), apply=True)
    assert result["in_progress"] == [live]
    assert result["dead_backups"] == {dead: "dead"}
    assert result["incomplete_delete"] == [dead]
    left = [u.key for u in target.list_incomplete_uploads("")]
    assert left == [f"sets/{live}/dump.pgdump.zst"]
    assert target.exists(f"sets/{live}/in-progress.json")
    assert not target.exists(f"sets/{dead}/in-progress.json")
