"""What the user-index tests of the Couchbase store share: a repository on the test server,
the flows stepped against it, and the invariant every step must keep (a user's index
names every live session of that user), read from the server's own documents."""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.couchbase.base import KeyLayout, decode_record
from ormsession.repositories.couchbase.factory import open_store
from ormsession.repositories.couchbase.index import Entry, decode_index
from ormsession.repositories.couchbase.repository import CouchbaseRepository
from ormsession.settings import load_config
from ormsession.users import new_handle
from tests.support.couchbase_fixtures import COUCHBASE_BUCKET, couchbase_url, unique_prefix
from tests.support.couchbase_server import CouchbaseTestServer, StoredDocument
from tests.support.flow_steps import Stepper

SECOND = US_PER_SECOND
HOUR = 3600 * SECOND
DAY = 24 * HOUR
_SESSION_ID = re.compile(rb"[0-9a-f]{64}")


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def repository(couchbase_server: CouchbaseTestServer, prefix: str) -> Iterator[CouchbaseRepository]:
    settings = load_config(key_prefix=prefix)
    repository = open_store(couchbase_url(couchbase_server), settings, want_async=False)
    yield repository
    repository.close()


def new_key() -> str:
    return storage_key(SessionIds().generate())


def new_user() -> str:
    return f"user:{{{new_handle()}}} é"  # ':', braces, a space and a non-ASCII letter


def owner(user_id: str, handle: str | None = None, **fields: Any) -> Owner:
    return Owner(user_id, handle or new_handle(), **fields)


def bound(now: int, who: Owner | None, ttl: int = HOUR, data: bytes = b'{"a":1}') -> StoredSession:
    return StoredSession(data, 1, now, now + ttl, who)


def stepper(
    repository: CouchbaseRepository, flow: Generator[Any, Any, Any], name: str = "op"
) -> Stepper:
    """``flow`` stepped with the repository's own calls (real SDK, one deadline)."""
    return Stepper(flow, repository._within(name))


def documents(server: CouchbaseTestServer) -> dict[bytes, StoredDocument]:
    return server.documents(COUCHBASE_BUCKET)


def index_document(server: CouchbaseTestServer, prefix: str, user_id: str) -> StoredDocument | None:
    return documents(server).get(KeyLayout(prefix).user_key(user_id).encode())


def indexed(server: CouchbaseTestServer, prefix: str, user_id: str) -> dict[str, Entry]:
    doc = index_document(server, prefix, user_id)
    return decode_index(doc.value if doc is not None else None)


def live_keys(server: CouchbaseTestServer, prefix: str, user_id: str, now: int) -> set[str]:
    """The keys of ``user_id``'s live sessions, from every document on the server."""
    found = set()
    head = prefix.encode()
    for doc_id, doc in documents(server).items():
        rest = doc_id[len(head) :]
        if not doc_id.startswith(head) or not _SESSION_ID.fullmatch(rest):
            continue
        decoded = decode_record(doc.value)
        if decoded is None:
            continue
        record = decoded[0]
        owned = record.owner is not None and record.owner.user_id == user_id
        if owned and record.expires_us > now:
            found.add(rest.decode())
    return found


def assert_superset(server: CouchbaseTestServer, prefix: str, *users: str) -> None:
    """The invariant: each user's index names every live session of that user."""
    now = now_us()
    for user_id in users:
        missing = live_keys(server, prefix, user_id, now) - set(indexed(server, prefix, user_id))
        assert not missing, f"live sessions of {user_id!r} missing from the index: {missing}"


def solo_steps(make: Callable[[], Stepper]) -> int:
    """How many operations a flow takes alone (on a fresh setup ``make`` builds)."""
    alone = make()
    alone.finish()
    return alone.steps
