"""The fault matrix: each failure gives a clear error, and nothing is lost or left behind.

pg_dump killed mid-stream, the S3 endpoint dying mid-upload, a flipped byte in storage, a
restore onto an existing database, a full disk, wrong credentials, an unknown set id, a corrupt
filestore source, a restore failing half-way. Real PostgreSQL and S3 (moto) on loopback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import psutil
import pytest
from click.testing import CliRunner

from erpops.backup import engine, filestore, retention
from erpops.backup import manifest as mf
from erpops.backup.commands import COMMANDS
from erpops.backup.progress import Reporter
from erpops.backup.restore import restore
from erpops.backup.storage import MiB, S3Target, Target, open_target
from erpops.errors import (
    BackupError,
    CredentialsError,
    ErpopsError,
    IntegrityError,
    PreflightError,
    UsageError,
)
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("drop_databases_made_here")]

BUCKET = "erpops-backup-faults"


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(pg: LocalPostgres) -> Pg:
    return Pg.from_local(pg)


def write_filestore(root: Path, db: str, contents: list[bytes]) -> None:
    for content in contents:
        sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()
        (root / db / sha1[:2]).mkdir(parents=True, exist_ok=True)
        (root / db / sha1[:2] / sha1).write_bytes(content)


@pytest.fixture(scope="module")
def shop(server: Pg, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small database `shop` (1000 rows) with a filestore of 5 files."""
    server.psql("CREATE DATABASE shop")
    server.psql("CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL, price numeric);"
                "INSERT INTO item SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 1000) g;", "shop")
    root = tmp_path_factory.mktemp("shop-data") / "filestore"
    write_filestore(root, "shop", [f"attachment {i} ".encode() * 1000 for i in range(5)])
    return {"db": "shop", "root": root}


@pytest.fixture(scope="module")
def bulk(server: Pg) -> str:
    """A database whose dump (~70 MB) spans several 5 MiB parts even once compressed."""
    server.psql("CREATE DATABASE bulk")
    server.psql("CREATE TABLE blob AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b "
                "FROM generate_series(1, 1000000) g", "bulk")
    return "bulk"


def s3_target(s3: LocalS3, prefix: str, **kw: Any) -> S3Target:
    return S3Target(BUCKET, prefix, endpoint_url=s3.endpoint_url, **kw)


def checksum(pg: Pg, db: str) -> str:
    return pg.scalar("SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id)) FROM item t", db)


def erpops_databases(pg: Pg) -> list[str]:
    return pg.psql("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_erpops\\_%'").split()


def nothing_left(target: Target) -> None:
    assert list(target.list_keys("sets/")) == []
    assert target.list_incomplete_uploads("") == []


def pg_dump_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "pg_dump"]


class Breaker:
    """A progress listener that breaks something once an upload is under way (and bytes flowed)."""

    def __init__(self, watch: Target, action: Callable[[], None], after_bytes: int = 8 * MiB) -> None:
        self.watch = watch
        self.action = action
        self.after_bytes = after_bytes
        self.fired = False
        self.uploads_when_fired = 0
        self._next_check = after_bytes

    def __call__(self, step: str, done: int) -> None:
        if self.fired or step != "dump" or done < self._next_check:
            return
        self._next_check = done + MiB
        uploads = self.watch.list_incomplete_uploads("sets/")
        if uploads:  # a multipart upload (S3) or a temp file (file://) exists: break it now
            self.uploads_when_fired = len(uploads)
            self.fired = True
            self.action()


# -- pg_dump killed mid-stream ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["s3", "file"])
def test_pg_dump_killed_mid_stream_leaves_no_set_and_no_upload(kind: str, aws: LocalS3, server: Pg, bulk: str,
                                                               tmp_path: Path) -> None:
    target: Target = (s3_target(aws, "killed", part_size=5 * MiB) if kind == "s3"
                      else open_target(f"file://{tmp_path / 'backups'}"))

    def kill_pg_dump() -> None:
        (child,) = pg_dump_children()
        child.kill()

    breaker = Breaker(target, kill_pg_dump)
    with pytest.raises(BackupError) as caught:
        engine.backup(target, server, bulk, stack="dev", reporter=Reporter(listener=breaker))
    assert breaker.fired and breaker.uploads_when_fired == 1, "pg_dump finished before an upload was under way"
    message = str(caught.value)
    assert "pg_dump of bulk failed (killed by signal 9)" in message
    assert "removed the incomplete set" in message
    nothing_left(target)
    assert engine.list_sets(target) == []
    assert pg_dump_children() == []


# -- the S3 endpoint dies mid-upload ---------------------------------------------------------------


class TcpProxy:
    """127.0.0.1:<port> -> upstream; kill() makes the endpoint vanish mid-request, as a crash would."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.dead = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.dead:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                if self.dead:
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def kill(self) -> None:
        with self.lock:
            self.dead = True
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept(): close() alone does not
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_s3_endpoint_dying_mid_upload(server: Pg, bulk: str, aws: LocalS3) -> None:
    with LocalS3() as dying:
        dying.client().create_bucket(Bucket="dying")
        proxy = TcpProxy(dying.port)
        through_proxy = S3Target("dying", "prod", endpoint_url=f"http://127.0.0.1:{proxy.port}",
                                 part_size=5 * MiB, max_attempts=1)
        direct = S3Target("dying", "prod", endpoint_url=dying.endpoint_url)
        breaker = Breaker(direct, proxy.kill)
        with pytest.raises(BackupError) as caught:
            engine.backup(through_proxy, server, bulk, stack="prod", reporter=Reporter(listener=breaker))
        assert breaker.fired
        message = str(caught.value)
        assert "S3 endpoint" in message or "S3 error" in message or "Connection" in message, message
        # The endpoint was gone, so the abort could not reach it: the error says how to clean up.
        assert "could not be aborted" in message and "erpops prune --apply" in message
        assert not [k for k in direct.list_keys("sets/") if k.endswith("/manifest.json")]
        assert engine.list_sets(direct) == []
        # ... and that cleanup leaves nothing: the unfinished upload and the incomplete set go.
        pruned = retention.prune(direct, retention.Rules(), apply=True, stale_after=timedelta(0))
        assert pruned["uploads_abort"] == 1 and len(pruned["incomplete_delete"]) == 1
        nothing_left(direct)
        assert pg_dump_children() == []


# -- one flipped byte in storage -------------------------------------------------------------------


@pytest.mark.parametrize("what", ["dump", "filestore"])
def test_a_flipped_byte_is_refused_by_verify_and_restore(what: str, aws: LocalS3, server: Pg,
                                                         shop: dict[str, Any], tmp_path: Path) -> None:
    target = s3_target(aws, f"flipped-{what}")
    set_id = engine.backup(target, server, "shop", stack="dev", filestore=str(shop["root"]))["set_id"]
    m = engine.load_manifest(target, set_id)
    key = m.dump.key if what == "dump" else m.filestore[2].key
    data = bytearray(target.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    target.put_bytes(key, bytes(data))

    report = engine.verify(target, set_id)
    assert report["ok"] is False
    (problem,) = report["problems"]
    assert target.child(key) in problem
    assert json.loads(target.get_bytes(mf.set_key(set_id, mf.VERIFY)))["ok"] is False
    assert [s["verified"] for s in engine.list_sets(target)] == [False]
    code, body = run_cli(["verify", set_id, "--target", target.url, "--endpoint-url", aws.endpoint_url, "--json"],
                         {})
    assert code == 5 and body["ok"] is False and body["problems"] == report["problems"]

    with pytest.raises(IntegrityError) as caught:
        restore(target, set_id, pg=server, db="shop_flipped", filestore_root=tmp_path / "fs")
    assert caught.value.exit_code == 5
    assert "failed verification, nothing was changed" in str(caught.value)
    assert not server.database_exists("shop_flipped") and erpops_databases(server) == []
    assert not (tmp_path / "fs").exists()


# -- restoring onto an existing database -----------------------------------------------------------


@pytest.fixture(scope="module")
def shop_set(aws: LocalS3, server: Pg, shop: dict[str, Any]) -> tuple[S3Target, str]:
    target = s3_target(aws, "shop")
    return target, engine.backup(target, server, "shop", stack="dev", filestore=str(shop["root"]))["set_id"]


def test_restore_onto_an_existing_database_is_refused_and_it_stays_untouched(
        server: Pg, shop_set: tuple[S3Target, str], shop: dict[str, Any]) -> None:
    target, set_id = shop_set
    server.psql("UPDATE item SET price = price + 1 WHERE id <= 10", "shop")  # differs from the set now
    before = checksum(server, "shop")
    with pytest.raises(PreflightError) as caught:
        restore(target, set_id, pg=server, db="shop", filestore_root=shop["root"])
    assert caught.value.exit_code == 6
    assert "database shop already exists" in str(caught.value) and "--replace" in str(caught.value)
    asked: list[str] = []
    with pytest.raises(PreflightError, match="was not confirmed"):
        restore(target, set_id, pg=server, db="shop", filestore_root=shop["root"], replace=True,
                confirm=lambda name: bool(asked.append(name)))
    assert asked == ["shop"]
    assert checksum(server, "shop") == before
    assert erpops_databases(server) == []


def test_replace_swaps_in_the_new_database_then_drops_the_old(server: Pg, shop_set: tuple[S3Target, str],
                                                               tmp_path: Path) -> None:
    target, set_id = shop_set
    root = tmp_path / "fs"
    restore(target, set_id, pg=server, db="shop_live", filestore_root=root)
    expected = checksum(server, "shop_live")
    server.psql("DELETE FROM item WHERE id > 500", "shop_live")
    (root / "shop_live" / "stray").write_text("left by the old filestore")
    report = restore(target, set_id, pg=server, db="shop_live", filestore_root=root, replace=True,
                     confirm=lambda name: name == "shop_live")
    assert report["replaced"] and report["leftovers"] == []
    assert checksum(server, "shop_live") == expected
    assert not (root / "shop_live" / "stray").exists()
    assert sorted(p.name for p in root.iterdir()) == ["shop_live"]
    assert erpops_databases(server) == []


def test_a_failure_half_way_rolls_back_and_keeps_the_current_database(
        server: Pg, shop_set: tuple[S3Target, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target, set_id = shop_set
    root = tmp_path / "fs"
    restore(target, set_id, pg=server, db="shop_keep", filestore_root=root)
    server.psql("INSERT INTO item VALUES (5000, 'only in the live database', 1)", "shop_keep")
    before = checksum(server, "shop_keep")
    files_before = sorted(p.name for p in (root / "shop_keep").rglob("*"))
    real = filestore.restore_filestore

    def fail_after_two_files(tgt: Target, files: list[mf.FilestoreFile], dest: Path, rep: Reporter,
                             workers: int = 8, **options: Any) -> None:
        real(tgt, files[:2], dest, rep, workers, **options)
        raise BackupError("simulated: the disk went away while writing the filestore")

    monkeypatch.setattr(filestore, "restore_filestore", fail_after_two_files)
    with pytest.raises(BackupError) as caught:
        restore(target, set_id, pg=server, db="shop_keep", filestore_root=root, replace=True,
                confirm=lambda name: True)
    message = str(caught.value)
    assert "rolled back" in message and "dropped the temporary database" in message
    assert "removed the partial filestore" in message and "database shop_keep was not touched" in message
    assert checksum(server, "shop_keep") == before
    assert sorted(p.name for p in (root / "shop_keep").rglob("*")) == files_before
    assert sorted(p.name for p in root.iterdir()) == ["shop_keep"]
    assert erpops_databases(server) == []


# -- disk full -------------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_disk(path: Path) -> Iterator[bool]:
    """A 1 MiB tmpfs at path (True), or False where mounting is not permitted."""
    path.mkdir(parents=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True, check=False
    ).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=False)


def test_a_full_disk_is_refused_before_anything_changes(server: Pg, shop_set: tuple[S3Target, str],
                                                        tmp_path: Path) -> None:
    target, set_id = shop_set
    with tiny_disk(tmp_path / "small") as mounted:
        fake: dict[str, Any] = {}
        if not mounted:  # no mount permission: the same check, fed a 1 MiB filesystem
            fake["disk_usage"] = lambda _: type("Usage", (), {"total": MiB, "used": 0, "free": MiB})()
        with pytest.raises(PreflightError) as caught:
            restore(target, set_id, pg=server, db="shop_small", filestore_root=tmp_path / "small" / "fs", **fake)
        assert "not enough free disk for the filestore" in str(caught.value)
        assert list((tmp_path / "small").iterdir()) == []
    assert not server.database_exists("shop_small") and erpops_databases(server) == []


# -- credentials, unknown sets, corrupt sources ----------------------------------------------------


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, Any]:
    group = click.Group("erpops", commands={c.name: c for c in COMMANDS})
    result = CliRunner().invoke(group, args, env=env)
    exc = result.exception
    if exc is not None and not isinstance(exc, ErpopsError | SystemExit):
        raise exc
    return (exc.exit_code if isinstance(exc, ErpopsError) else result.exit_code), json.loads(result.stdout)


def test_wrong_s3_credentials_are_named_and_never_shown(server: Pg, shop: dict[str, Any], pg: LocalPostgres,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGKEY"
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "1")  # moto checks signatures after its start probe
    with LocalS3() as strict:
        monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7WRONG00")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        target = S3Target("backups", "prod", endpoint_url=strict.endpoint_url)
        with pytest.raises(CredentialsError) as caught:
            engine.backup(target, server, "shop", stack="prod", filestore=str(shop["root"]))
        message = str(caught.value)
        assert caught.value.exit_code == 3
        assert "rejected the credentials (InvalidAccessKeyId)" in message and "AWS_ACCESS_KEY_ID" in message
        assert secret not in message and "AKIAIOSFODNN7WRONG00" not in message
        code, body = run_cli(["backup", "--db", "shop", "--target", "s3://backups/prod", "--endpoint-url",
                              strict.endpoint_url, "--json"], {**pg.env(), "AWS_SECRET_ACCESS_KEY": secret})
        assert code == 3 and body["error_type"] == "CredentialsError" and secret not in json.dumps(body)


@pytest.mark.parametrize("action", ["verify", "restore"])
def test_an_unknown_set_id_says_how_to_find_sets(action: str, aws: LocalS3, server: Pg,
                                                 shop_set: tuple[S3Target, str]) -> None:
    target, _ = shop_set
    unknown = "dev-shop-20200101T000000Z-000000"
    with pytest.raises(UsageError) as caught:
        if action == "verify":
            engine.verify(target, unknown)
        else:
            restore(target, unknown, pg=server, db="shop_unknown")
    assert f"no backup set {unknown!r} in {target.url}" in str(caught.value)
    assert f"erpops list --target {target.url}" in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_corrupt_filestore_source_fails_the_backup(aws: LocalS3, server: Pg, shop: dict[str, Any],
                                                     tmp_path: Path) -> None:
    root = tmp_path / "filestore"
    write_filestore(root, "shop", [b"good file"])
    sha1 = "0" * 40  # bytes that are not what the name says
    (root / "shop" / "00").mkdir()
    (root / "shop" / "00" / sha1).write_bytes(b"rotten")
    target = s3_target(aws, "corrupt-source")
    with pytest.raises(IntegrityError) as caught:
        engine.backup(target, server, "shop", stack="dev", filestore=str(root))
    message = str(caught.value)
    assert f"corrupt filestore source: file://{root}/shop/00/{sha1}" in message
    assert "store_fname = '00/" in message and "removed the incomplete set" in message
    assert not target.exists(mf.filestore_key(sha1))  # the bad bytes never land under the good name
    nothing_left(target)


def test_cli_replace_needs_confirmation_off_a_terminal(pg: LocalPostgres, aws: LocalS3, server: Pg,
                                                       shop_set: tuple[S3Target, str], tmp_path: Path) -> None:
    target, set_id = shop_set
    env = {**pg.env(), "ERPOPS_BACKUP_TARGET": target.url, "ERPOPS_S3_ENDPOINT_URL": aws.endpoint_url}
    args = ["restore", set_id, "--to", "shop_cli", "--filestore", str(tmp_path / "fs"), "--json"]
    assert run_cli(args, env)[0] == 0
    server.psql("DELETE FROM item WHERE id > 10", "shop_cli")
    before = checksum(server, "shop_cli")
    code, body = run_cli([*args, "--replace"], env)
    assert code == 6 and "pass --yes when not interactive" in body["error"]
    assert checksum(server, "shop_cli") == before
    code, body = run_cli([*args, "--replace", "--yes"], env)
    assert code == 0 and body["replaced"] is True
    assert checksum(server, "shop_cli") != before
    assert erpops_databases(server) == []
