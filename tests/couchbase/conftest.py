"""Fixtures for the Couchbase tests: an in-process protocol-level Couchbase test server."""

from collections.abc import Iterator

import pytest

from tests.support.couchbase_server import CouchbaseTestServer

COUCHBASE_USER = "ormsession"
COUCHBASE_PASSWORD = "secret-pw"
COUCHBASE_BUCKET = "sessions"


@pytest.fixture(scope="session")
def couchbase_server() -> Iterator[CouchbaseTestServer]:
    server = CouchbaseTestServer(
        users={COUCHBASE_USER: COUCHBASE_PASSWORD},
        buckets={COUCHBASE_BUCKET: ["sessions.items"]},
    )
    with server:
        yield server
