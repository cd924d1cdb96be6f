"""A throwaway redis-server on loopback: no persistence, random port, stopped by SHUTDOWN or PID."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from erpops.errors import ServiceError
from erpops.local._proc import (
    LOOPBACK,
    LocalService,
    alive,
    listens,
    log_tail,
    register_cleanup,
    spawn,
    stop_group,
    unregister_cleanup,
    wait_gone,
    watch,
)
from erpops.local.resp import RespClient

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get install redis-server"


def find_redis_server() -> Path:
    """redis-server from ERPOPS_REDIS_SERVER or PATH; ServiceError with the install hint otherwise."""
    explicit = os.environ.get("ERPOPS_REDIS_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ServiceError(
                f"ERPOPS_REDIS_SERVER={explicit} is not an executable redis-server; "
                f"fix: {INSTALL_HINT}, or point ERPOPS_REDIS_SERVER at one"
            )
        return Path(explicit)
    found = shutil.which("redis-server")
    if found is None:
        raise ServiceError(f"redis-server not found on PATH; fix: {INSTALL_HINT}")
    return Path(found)


def _config_quote(value: str) -> str:
    """A redis.conf double-quoted string (the format sdssplitargs reads)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


class LocalRedis(LocalService):
    """redis-server on 127.0.0.1 and a random port, in a temp dir, without persistence.

    A password goes into a 0600 config file in the temp dir rather than onto the command line,
    where every local user could read it with ps.
    """

    log_name = "redis.log"

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        maxmemory: str | int | None = None,
        maxmemory_policy: str | None = None,
        binary: str | Path | None = None,
        base_dir: str | Path | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.password = password
        self.maxmemory = maxmemory
        self.maxmemory_policy = maxmemory_policy
        super().__init__(port=port, base_dir=base_dir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._binary = Path(binary) if binary is not None else None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def client(self, timeout: float = 5.0) -> RespClient:
        """A RespClient connected (lazily) to this server, authenticated when it has a password."""
        return RespClient(self.host, self.port, password=self.password, timeout=timeout)

    def start(self) -> LocalRedis:
        if self._proc is not None:
            return self
        binary = self._binary or find_redis_server()
        if not os.access(binary, os.X_OK):
            raise ServiceError(f"{binary} is not an executable redis-server; fix: {INSTALL_HINT}")
        self._tmp = Path(tempfile.mkdtemp(prefix="erpops-redis-", dir=self._base_dir))
        register_cleanup(self, self.stop)
        try:
            self._start_on_free_port("redis-server", lambda port: spawn(
                self._argv(binary, port), log_path=self.log_path, cwd=self._tmp), self._wait_ready)
        except BaseException:
            self.stop()
            raise
        log.info("Redis up on %s:%s (pid %s)", self.host, self._port, self.pid)
        return self

    def stop(self) -> None:
        """SHUTDOWN NOSAVE over RESP, then SIGTERM/SIGKILL the process group, then delete the dir."""
        unregister_cleanup(self)
        try:
            if alive(self._server):
                try:
                    self.client(timeout=2.0).shutdown(nosave=True)
                except ServiceError as exc:
                    log.warning("Redis SHUTDOWN NOSAVE failed, killing by PID: %s", exc)
                wait_gone(self._server, self.stop_timeout)
            stop_group(self._proc, timeout=self.stop_timeout)
        finally:
            self._release()

    def _argv(self, binary: Path, port: int) -> list[str]:
        assert self._tmp is not None
        argv = [str(binary)]
        if self.password is not None:
            conf = self._tmp / "redis.conf"
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"requirepass {_config_quote(self.password)}\n")
            argv.append(str(conf))  # redis-server wants the config file first
        argv += [
            "--port", str(port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self._tmp),
        ]  # fmt: skip
        if self.maxmemory is not None:
            argv += ["--maxmemory", str(self.maxmemory)]
        if self.maxmemory_policy is not None:
            argv += ["--maxmemory-policy", self.maxmemory_policy]
        return argv

    def _wait_ready(self) -> bool:
        """Poll until our server answers PING; False if it exited, ServiceError on timeout.

        Only our child counts: it must hold the listening socket, and INFO must name its PID.
        When another program took the port first, our child exits with "Address already in use".
        """
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        last_error = "no answer yet"
        while self._proc.poll() is None:
            if listens(self._proc.pid, self.port):
                try:
                    with self.client(timeout=1.0) as client:
                        if client.ping() and client.info("server").get("process_id") == str(self._proc.pid):
                            self._server = watch(self._proc.pid)
                            return True
                        last_error = "a different Redis process answers on this port"
                except ServiceError as exc:
                    last_error = str(exc)
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"redis-server did not answer PING on {self.host}:{self.port} within "
                    f"{self.start_timeout:g}s ({last_error}); log tail:\n" + log_tail(self.log_path)
                )
            time.sleep(0.02)
        return False
