"""Session-wide real services on loopback: PostgreSQL 15 (`pg`), Redis (`redis_server`), S3 (`s3`).

Each starts once, on first use, and stops at the end of the session. A missing binary fails the
test with the install hint instead of skipping it: `./run test` installs them, so a skip would
only hide a broken machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import pytest

from erpops.errors import ServiceError
from erpops.local import LocalPostgres, LocalRedis, LocalS3

Service = TypeVar("Service", LocalPostgres, LocalRedis, LocalS3)


def _serve(service: Service) -> Iterator[Service]:
    try:
        service.start()
    except ServiceError as exc:
        problem = f"{type(service).__name__} could not start: {exc}"
    else:
        problem = None
    if problem is not None:  # failed outside the except block: no chained traceback in the report
        pytest.fail(problem, pytrace=False)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    yield from _serve(LocalPostgres())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    yield from _serve(LocalRedis())


@pytest.fixture(scope="session")
def s3() -> Iterator[LocalS3]:
    yield from _serve(LocalS3())
