"""Couchbase test fixtures: the protocol-level test server, and the store target that runs
the contract and manager suites on it through the real ``couchbase`` SDK.

The server is shared by the whole test session; tests stay apart by key prefix (every
store target gets its own), and each starts on the real clock (see ``reset_clock``).
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest

from tests.support.backends import backend_missing
from tests.support.couchbase_server import CouchbaseTestServer

if TYPE_CHECKING:
    from tests.support.stores import StoreTarget

COUCHBASE_USER = "ormsession"
COUCHBASE_PASSWORD = "secret-pw"
COUCHBASE_BUCKET = "sessions"
#: A named scope.collection the server also has, for URL ?scope=&collection= tests.
COUCHBASE_COLLECTION = "sessions.items"


@pytest.fixture(scope="session")
def couchbase_server() -> Iterator[CouchbaseTestServer]:
    server = CouchbaseTestServer(
        users={COUCHBASE_USER: COUCHBASE_PASSWORD},
        buckets={COUCHBASE_BUCKET: [COUCHBASE_COLLECTION]},
    )
    with server:
        yield server


def couchbase_url(
    server: CouchbaseTestServer,
    *,
    password: str = COUCHBASE_PASSWORD,
    bucket: str = COUCHBASE_BUCKET,
    **options: Any,
) -> str:
    """``couchbase://ormsession:<password>@127.0.0.1:<port>/<bucket>?<options>``."""
    host = server.connection_string.split("://", 1)[1]
    query = f"?{urlencode(options)}" if options else ""
    return f"couchbase://{COUCHBASE_USER}:{password}@{host}/{bucket}{query}"


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


def couchbase_target(request: pytest.FixtureRequest) -> StoreTarget:
    """The ``couchbase`` entry of ``STORE_TARGETS``: our test server, a fresh key prefix
    (so counts and documents of one test never meet another's), the real clock."""
    from tests.support.stores import StoreTarget

    if importlib.util.find_spec("couchbase") is None:
        backend_missing("the couchbase SDK is not installed: pip install 'ormsession[couchbase]'")
    server: CouchbaseTestServer = request.getfixturevalue("couchbase_server")
    server.reset_clock()
    url = couchbase_url(server)
    return StoreTarget(url, url, {"key_prefix": unique_prefix()})
