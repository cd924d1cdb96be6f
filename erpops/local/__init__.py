"""Real services on loopback for tests and rehearsals: PostgreSQL 15, Redis and S3 (moto).

Each service runs in a fresh temp dir on 127.0.0.1 and a random free port, in its own process
session, and stop() ends that whole session by PID and deletes the dir. Anything still running
when the interpreter exits is stopped by an atexit hook. Importing this package starts nothing.

    with LocalStack() as stack:
        stack.pg.psql("SELECT 1")
        stack.redis.client().ping()
        stack.s3.client().create_bucket(Bucket="backups")
"""

from __future__ import annotations

import logging
from types import TracebackType

from erpops.errors import ServiceError
from erpops.local._proc import free_port
from erpops.local.postgres import LocalPostgres, check_pg_bindir, find_pg_bindir
from erpops.local.redis import LocalRedis, find_redis_server
from erpops.local.resp import RespClient, RespError
from erpops.local.s3 import LocalS3, find_moto_server

__all__ = [
    "LocalPostgres",
    "LocalRedis",
    "LocalS3",
    "LocalStack",
    "RespClient",
    "RespError",
    "check_pg_bindir",
    "find_moto_server",
    "find_pg_bindir",
    "find_redis_server",
    "free_port",
]

log = logging.getLogger(__name__)


class LocalStack:
    """PostgreSQL, Redis and S3 together: started in that order, stopped in reverse.

    Pass configured instances to change their options. If one fails to start, those already
    started are stopped before the error propagates.
    """

    def __init__(
        self,
        pg: LocalPostgres | None = None,
        redis: LocalRedis | None = None,
        s3: LocalS3 | None = None,
    ) -> None:
        self.pg = pg or LocalPostgres()
        self.redis = redis or LocalRedis()
        self.s3 = s3 or LocalS3()

    @property
    def services(self) -> tuple[LocalPostgres, LocalRedis, LocalS3]:
        return (self.pg, self.redis, self.s3)

    def start(self) -> LocalStack:
        started: list[LocalPostgres | LocalRedis | LocalS3] = []
        try:
            for service in self.services:
                service.start()
                started.append(service)
        except BaseException:
            for service in reversed(started):
                try:
                    service.stop()
                except Exception:  # the start error is the one to report
                    log.exception("stopping %r after a failed start failed", service)
            raise
        return self

    def stop(self) -> None:
        """Stop every service, even when one fails to stop; then report the failures."""
        failures: list[str] = []
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception as exc:
                failures.append(f"{type(service).__name__}: {exc}")
        if failures:
            raise ServiceError("stopping the local stack failed: " + "; ".join(failures))

    def env(self) -> dict[str, str]:
        """PG*, AWS_* and REDIS_URL variables for tools run as subprocesses against the stack."""
        return {**self.pg.env(), **self.s3.env(), "REDIS_URL": self.redis.url}

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
