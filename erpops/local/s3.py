"""A throwaway S3 endpoint on loopback: the moto server in its own process.

moto keeps every object in memory and does not verify client-supplied checksums: callers that
care about integrity must compare digests themselves.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from erpops.errors import ServiceError
from erpops.local._proc import (
    LOOPBACK,
    LocalService,
    listens,
    log_tail,
    register_cleanup,
    spawn,
    stop_group,
    unregister_cleanup,
    watch,
)

log = logging.getLogger(__name__)

# moto accepts any key pair; fixed dummies keep boto3 from hunting for real credentials.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # noqa: S105 - dummy: moto accepts any key pair
REGION = "us-east-1"


def find_moto_server() -> Path:
    """moto_server installed next to the running interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "moto_server"  # not resolved: a venv's python is a symlink
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("moto_server")
    if found is None:
        raise ServiceError(
            f"moto_server not found next to {sys.executable} nor on PATH; "
            f"fix: {sys.executable} -m pip install 'moto[server]'"
        )
    return Path(found)


class LocalS3(LocalService):
    """An S3 API (moto server) on 127.0.0.1 and a random port, with dummy credentials."""

    log_name = "moto.log"

    def __init__(
        self,
        *,
        port: int | None = None,
        region: str = REGION,
        binary: str | Path | None = None,
        base_dir: str | Path | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.region = region
        super().__init__(port=port, base_dir=base_dir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._binary = Path(binary) if binary is not None else None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """AWS_* variables pointing a subprocess (aws CLI, pgbackrest, boto3) at this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this endpoint; extra keyword arguments go to botocore's Config."""
        import boto3  # imported here: boto3 costs ~0.3 s, and most importers never need a client
        from botocore.config import Config

        # Explicit credentials and region already keep botocore away from the EC2 metadata
        # address; the variable also covers anything else in this process that resolves them.
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=self.region,
        )
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path"},  # bucket.127.0.0.1 does not resolve
            "retries": {"max_attempts": 2, "mode": "standard"},
            **config,
        }
        return session.client("s3", endpoint_url=self.endpoint_url, config=Config(**options))

    def start(self) -> LocalS3:
        if self._proc is not None:
            return self
        binary = self._binary or find_moto_server()
        if not os.access(binary, os.X_OK):
            raise ServiceError(f"{binary} is not an executable moto_server; fix: pip install 'moto[server]'")
        self._tmp = Path(tempfile.mkdtemp(prefix="erpops-s3-", dir=self._base_dir))
        register_cleanup(self, self.stop)
        env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
        try:
            self._start_on_free_port("moto_server", lambda port: spawn(
                [str(binary), "-H", LOOPBACK, "-p", str(port)], log_path=self.log_path, cwd=self._tmp, env=env),
                self._wait_ready)
        except BaseException:
            self.stop()
            raise
        log.info("S3 (moto) up at %s (pid %s)", self.endpoint_url, self.pid)
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, the moto process group; then delete the temp dir."""
        unregister_cleanup(self)
        try:
            stop_group(self._proc, timeout=self.stop_timeout)
        finally:
            self._release()

    def __repr__(self) -> str:
        return f"<LocalS3 {self.endpoint_url if self._port else 'stopped'}>"

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status < 500
        except OSError:
            return False
        finally:
            conn.close()

    def _wait_ready(self) -> bool:
        """Poll HTTP until moto answers; False if it exited, ServiceError on timeout."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while self._proc.poll() is None:
            if listens(self._proc.pid, self.port) and self._answers():
                self._server = watch(self._proc.pid)
                return True
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"moto_server did not answer on {self.endpoint_url} within {self.start_timeout:g}s; "
                    "log tail:\n" + log_tail(self.log_path)
                )
            time.sleep(0.05)
        return False
