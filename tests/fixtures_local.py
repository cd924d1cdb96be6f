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


@pytest.fixture(scope="module")
def drop_databases_made_here(pg: LocalPostgres) -> Iterator[None]:
    """The PostgreSQL server is shared by the session: a module leaves it with the databases it had.

    Opt in with `pytestmark = pytest.mark.usefixtures("drop_databases_made_here")`.
    """
    from erpops.backup.engine import drop_database
    from erpops.pg import Pg

    server = Pg.from_local(pg)
    before = set(server.psql("SELECT datname FROM pg_database").split())
    yield
    for db in set(server.psql("SELECT datname FROM pg_database").split()) - before:
        drop_database(server, db)


@pytest.fixture(scope="module")
def aws(s3: LocalS3, request: pytest.FixtureRequest) -> Iterator[LocalS3]:
    """boto3's standard chain set to the S3 fixture's dummy credentials, and the module's BUCKET created.

    Endpoints are always passed explicitly, so the AWS_ENDPOINT_URL variables stay unset.
    """
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3.env().items():
            if not key.startswith("AWS_ENDPOINT_URL"):
                mp.setenv(key, value)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        s3.client().create_bucket(Bucket=request.module.BUCKET)
        yield s3
