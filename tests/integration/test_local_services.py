"""The local services are real: SQL runs, keys round-trip, multipart objects survive, stop() kills."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from erpops.errors import ServiceError
from erpops.local import LocalPostgres, LocalRedis, LocalS3, RespClient, RespError, free_port
from erpops.local._proc import port_open

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


# -- PostgreSQL -------------------------------------------------------------------------------


def test_postgres_runs_sql_in_a_new_database(pg: LocalPostgres) -> None:
    pg.psql("CREATE DATABASE smoke")
    out = pg.psql(
        """
        CREATE TABLE partner (id int PRIMARY KEY, name text NOT NULL);
        INSERT INTO partner VALUES (1, 'Azure Interior'), (2, 'Deco Addict');
        SELECT name FROM partner ORDER BY id;
        """,
        db="smoke",
    )
    assert out.splitlines() == ["Azure Interior", "Deco Addict"]


def test_postgres_is_15_on_loopback_and_not_root(pg: LocalPostgres) -> None:
    assert pg.psql("SHOW server_version").startswith("15")
    assert pg.psql("SHOW listen_addresses").strip() == "127.0.0.1"
    assert pg.pid is not None
    postmaster = psutil.Process(pg.pid)
    assert postmaster.name() == "postgres"
    if os.geteuid() == 0:
        assert postmaster.uids().real != 0, f"postmaster {pg.pid} runs as root"
        assert postmaster.username() == pg.os_user
    else:
        assert postmaster.uids().real == os.geteuid()


def test_postgres_env_drives_client_tools(pg: LocalPostgres) -> None:
    pg.psql("CREATE TABLE IF NOT EXISTS dumped (id int)")
    dump = subprocess.run(
        [str(pg.bin("pg_dump")), "--schema-only", "--table=dumped", "postgres"],
        env={**os.environ, **pg.env()},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "CREATE TABLE public.dumped" in dump


def test_psql_error_stops_and_names_the_cause(pg: LocalPostgres) -> None:
    with pytest.raises(ServiceError, match="no_such_table") as caught:
        pg.psql("SELECT * FROM no_such_table; CREATE TABLE never_created (id int);")
    assert caught.value.exit_code == 3
    assert pg.psql("SELECT to_regclass('never_created') IS NULL").strip() == "t"


# -- Redis ------------------------------------------------------------------------------------


def test_redis_set_get_info(redis_server: LocalRedis) -> None:
    value = os.urandom(64)
    with redis_server.client() as client:
        assert client.ping()
        assert client.set("erpops:probe", value, ex=60)
        assert client.get("erpops:probe") == value
        assert client.get("erpops:absent") is None
        server = client.info("server")
        assert server["tcp_port"] == str(redis_server.port)
        assert server["process_id"] == str(redis_server.pid)
        assert client.info("keyspace")["db0"].startswith("keys=")
        assert client.info("persistence")["aof_enabled"] == "0"
        assert client.command("CONFIG", "GET", "save") == [b"save", b""]


def test_redis_password_and_memory_options() -> None:
    with LocalRedis(password="s3cret pass", maxmemory="16mb", maxmemory_policy="allkeys-lru") as server:
        with pytest.raises(RespError, match="NOAUTH"), RespClient(server.host, server.port) as anonymous:
            anonymous.ping()
        with RespClient.from_url(server.url) as client:
            assert client.command("CONFIG", "GET", "maxmemory-policy") == [b"maxmemory-policy", b"allkeys-lru"]
            assert client.command("CONFIG", "GET", "maxmemory") == [b"maxmemory", str(16 * MiB).encode()]
        assert server.pid is not None
        assert "s3cret" not in " ".join(psutil.Process(server.pid).cmdline())


# -- S3 ---------------------------------------------------------------------------------------


def test_s3_multipart_upload_round_trips(s3: LocalS3) -> None:
    client = s3.client()
    client.create_bucket(Bucket="erpops-backups")
    parts = [os.urandom(5 * MiB) for _ in range(3)] + [os.urandom(123_457)]
    want = hashlib.sha256(b"".join(parts)).hexdigest()

    upload = client.create_multipart_upload(Bucket="erpops-backups", Key="db/odoo.dump")
    done = []
    for number, body in enumerate(parts, start=1):
        part = client.upload_part(
            Bucket="erpops-backups", Key="db/odoo.dump", UploadId=upload["UploadId"], PartNumber=number, Body=body
        )
        done.append({"PartNumber": number, "ETag": part["ETag"]})
    client.complete_multipart_upload(
        Bucket="erpops-backups", Key="db/odoo.dump", UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
    )

    head = client.head_object(Bucket="erpops-backups", Key="db/odoo.dump")
    assert head["ContentLength"] == sum(map(len, parts))
    assert head["ETag"].strip('"').endswith(f"-{len(parts)}")
    got = client.get_object(Bucket="erpops-backups", Key="db/odoo.dump")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == want


# -- lifecycle --------------------------------------------------------------------------------


@pytest.mark.parametrize("service_class", [LocalPostgres, LocalRedis, LocalS3], ids=["postgres", "redis", "s3"])
def test_stop_ends_every_process_and_frees_the_port(service_class: type) -> None:
    service = service_class().start()
    try:
        assert service.pid is not None and port_open(service.host, service.port)
        server = psutil.Process(service.pid)
        procs = [server, *server.children(recursive=True)]
        # The process-group leader (runuser for PostgreSQL under root) must go too.
        leader = psutil.Process(service._proc.pid)
        procs.append(leader)
        port, workdir = service.port, service.log_path.parent
    finally:
        service.stop()
    survivors = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], f"{service_class.__name__}.stop() left {survivors}"
    assert not port_open("127.0.0.1", port)
    assert not workdir.exists()
    service.stop()  # a second stop is harmless


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert not port_open("127.0.0.1", port)


# -- missing or wrong binaries ----------------------------------------------------------------


def test_wrong_pg_bindir_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPOPS_PG_BINDIR", "/nonexistent")
    with pytest.raises(ServiceError) as caught:
        LocalPostgres().start()
    message = str(caught.value)
    assert "ERPOPS_PG_BINDIR=/nonexistent" in message
    assert "initdb" in message
    assert "apt-get install postgresql-15" in message
    assert caught.value.exit_code == 3


def test_pg_bindir_of_another_major_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("initdb", "pg_ctl", "postgres", "pg_isready", "psql"):
        fake = tmp_path / name
        fake.write_text("#!/bin/sh\necho 'postgres (PostgreSQL) 14.12 (Debian 14.12-1)'\n")
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("ERPOPS_PG_BINDIR", str(tmp_path))
    with pytest.raises(ServiceError, match=r"is PostgreSQL 14\.12, erpops needs major version 15"):
        LocalPostgres().start()


@pytest.mark.parametrize(
    ("make", "hint"),
    [
        (lambda: LocalRedis(binary="/nonexistent/redis-server"), "apt-get install redis-server"),
        (lambda: LocalS3(binary="/nonexistent/moto_server"), "pip install 'moto[server]'"),
    ],
    ids=["redis", "s3"],
)
def test_missing_binary_names_the_fix(make, hint: str) -> None:
    with pytest.raises(ServiceError, match="/nonexistent/") as caught:
        make().start()
    assert hint in str(caught.value)


@pytest.mark.parametrize("service_class", [LocalPostgres, LocalRedis, LocalS3], ids=["postgres", "redis", "s3"])
def test_port_taken_before_the_server_binds_is_retried(service_class: type, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        busy = squatter.getsockname()[1]
        offered = iter([busy])
        # the start loop every server shares (LocalService._start_on_free_port) asks _proc for a port
        monkeypatch.setattr(sys.modules["erpops.local._proc"], "free_port", lambda: next(offered, None) or free_port())
        with service_class() as service:
            assert service.port != busy
            assert port_open(service.host, service.port)
        with pytest.raises(ServiceError, match="Address already in use"):
            service_class(port=busy).start()
