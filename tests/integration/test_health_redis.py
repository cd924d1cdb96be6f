"""The production Redis check (redis-py) against real servers: TLS with a private CA, and Sentinel.

Each test starts its own redis-server processes on loopback (a TLS listener with a certificate made
here by openssl; a sentinel watching a LocalRedis) and stops them at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from erpops.local import LocalRedis, free_port
from erpops.local._proc import log_tail, port_open, spawn, stop_group
from healthchecks import redis
from healthchecks.core import Level, State, Targets, Thresholds, run_checks

pytestmark = pytest.mark.integration
REDIS_SERVER = shutil.which("redis-server") or "redis-server"  # ./run installs it (apt-get install redis-server)
OPENSSL = shutil.which("openssl") or "openssl"


def _thresholds() -> Thresholds:
    th = Thresholds.defaults()
    th.levels["redis_latency_ms"] = Level(60_000, 120_000)  # PING time is a timing: not judged on a busy machine
    return th


def _wait(what: str, proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start on port {port}:\n{log_tail(log)}")
        time.sleep(0.05)


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """(port, CA that signed the server's certificate, another CA) of a TLS-only redis-server."""
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN=erpops test {name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=tmp_path)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=tmp_path)
    (tmp_path / "san.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "1", "-extfile", "san.ext", "-out", "server.pem", cwd=tmp_path)
    port = free_port()
    log = tmp_path / "redis-tls.log"
    proc = spawn([REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                  "--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem",
                  "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"],
                 log_path=log, cwd=tmp_path)
    try:
        _wait("redis-server (TLS)", proc, port, log)
        yield port, tmp_path / "ca.pem", tmp_path / "other-ca.pem"
    finally:
        stop_group(proc)


def test_redis_over_tls_with_the_servers_ca_is_ok(tls_redis: tuple[int, Path, Path]) -> None:
    port, ca, _ = tls_redis
    targets = Targets(redis_url=f"rediss://127.0.0.1:{port}/0", redis_ca_file=str(ca), host=False)
    results = run_checks(redis.CHECKS, targets, _thresholds())
    assert [(r.check, r.state) for r in results] == [(c.name, State.OK) for c in redis.CHECKS], results


def test_redis_over_tls_refuses_a_certificate_another_ca_signed(tls_redis: tuple[int, Path, Path]) -> None:
    port, _, other = tls_redis
    targets = Targets(redis_url=f"rediss://127.0.0.1:{port}/0", redis_ca_file=str(other), host=False)
    (result,) = run_checks([c for c in redis.CHECKS if c.name == "redis.ping"], targets, _thresholds())
    assert result.state is State.UNKNOWN and "certificate verify failed" in result.message, result.message


def test_plain_redis_against_a_tls_port_is_unknown_not_ok(tls_redis: tuple[int, Path, Path]) -> None:
    port, _, _ = tls_redis
    (result,) = run_checks([c for c in redis.CHECKS if c.name == "redis.ping"],
                           Targets(redis_url=f"redis://127.0.0.1:{port}/0", host=False), _thresholds())
    assert result.state is State.UNKNOWN, result.message


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[int, LocalRedis]]:
    """(sentinel port, the master it watches as `sessions`), the master with a password."""
    with LocalRedis(password="s3ntinel-test-pw") as master:
        port = free_port()
        conf = tmp_path / "sentinel.conf"  # a sentinel rewrites its config file: it must be writable
        conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor sessions 127.0.0.1 {master.port} 1\n"
                        f"sentinel auth-pass sessions {master.password}\n")
        log = tmp_path / "sentinel.log"
        proc = spawn([REDIS_SERVER, str(conf), "--sentinel"], log_path=log, cwd=tmp_path)
        try:
            _wait("redis sentinel", proc, port, log)
            yield port, master
        finally:
            stop_group(proc)


def test_redis_through_sentinel_checks_the_master_it_names(sentinel: tuple[int, LocalRedis]) -> None:
    port, master = sentinel
    targets = Targets(redis_url=f"redis://:{master.password}@ignored/0", redis_sentinels=(("127.0.0.1", port),),
                      redis_sentinel_master="sessions", host=False)
    results = run_checks(redis.CHECKS, targets, _thresholds())
    assert [(r.check, r.state) for r in results] == [(c.name, State.OK) for c in redis.CHECKS], results
    with redis.client(targets, 5.0) as conn:  # the check spoke to the master itself: its port, its data
        conn.set("erpops:sentinel-probe", "1")
        assert conn.connection_pool.get_master_address() == ("127.0.0.1", master.port)
    with master.client() as direct:
        assert direct.get("erpops:sentinel-probe") == b"1"


def test_an_unknown_master_name_is_unknown_and_names_the_sentinels(sentinel: tuple[int, LocalRedis]) -> None:
    port, master = sentinel
    targets = Targets(redis_url=f"redis://:{master.password}@ignored/0", redis_sentinels=(("127.0.0.1", port),),
                      redis_sentinel_master="nope", host=False)
    (result,) = run_checks([c for c in redis.CHECKS if c.name == "redis.ping"], targets, _thresholds())
    assert result.state is State.UNKNOWN and f"127.0.0.1:{port}" in result.message and "nope" in result.message
    assert master.password not in result.message
