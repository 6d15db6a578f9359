"""Fixtures for the Couchbase tests. The server itself (``couchbase_server``) is a
session fixture in ``tests.support.couchbase_fixtures``, so other suites can use it too."""

from collections.abc import Iterator

import pytest

from tests.support.couchbase_fixtures import (
    COUCHBASE_BUCKET,
    COUCHBASE_PASSWORD,
    COUCHBASE_USER,
)
from tests.support.couchbase_server import CouchbaseTestServer

__all__ = ["COUCHBASE_BUCKET", "COUCHBASE_PASSWORD", "COUCHBASE_USER"]


@pytest.fixture(autouse=True)
def _real_clock(couchbase_server: CouchbaseTestServer) -> Iterator[None]:
    # The server is shared by the session: a test that advances its clock must not make
    # documents of the next test (or expiries above 30 days, absolute) expire early.
    couchbase_server.reset_clock()
    yield
    couchbase_server.reset_clock()
