"""Data encrypted at rest on Couchbase, end to end: a real manager (sync and async, encryption
on by default) on the test server through the real SDK, and every document the test's key
prefix left on the server, read back from the server itself.

What is checked: no stored byte (document ids or values: sessions, moved markers, a user's
index, counters) holds the session data or the id; the storage key, which the store does
hold, decrypts nothing; a document changed on the server (its ciphertext, its nonce, or its
associated data: the record copied under another session's key, or rebound to another user)
opens as a fresh session with a logged warning; and after a regenerate or a login the old
ciphertext is nowhere on the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ormsession.encryption import FORMAT
from ormsession.expiry import now_us
from ormsession.ids import storage_key
from ormsession.repositories.base import StoredSession
from ormsession.repositories.couchbase.base import (
    Get,
    Replace,
    decode_marker,
    decode_record,
    decode_seen,
    encode_record,
)
from ormsession.repositories.couchbase.counters import expiry_for
from ormsession.repositories.couchbase.repository import CouchbaseRepository
from tests.couchbase.users_support import documents, prefix, repository
from tests.support.at_rest import (
    BODY,
    FLIPS,
    MARKER,
    NONCE,
    assert_nowhere,
    assert_opens_fresh,
    assert_storage_key_opens_nothing,
    flipped,
    id_forms,
    log_in,
    move,
    save_new,
)
from tests.support.couchbase_server import CouchbaseTestServer
from tests.support.stores import open_manager

__all__ = ["prefix", "repository"]  # fixtures


@pytest.fixture(params=["sync", "async"])
def manager(request: pytest.FixtureRequest, prefix: str) -> Iterator[Any]:
    """A manager on the test server whose documents all carry ``prefix`` (the ``repository``
    fixture, another app server, reads and changes the same documents)."""
    with open_manager(request, "couchbase", request.param, key_prefix=prefix) as manager:
        yield manager


def dump(server: CouchbaseTestServer, prefix: str) -> dict[bytes, bytes]:
    """Every document under the test's prefix: id -> value, as the server holds them."""
    head = prefix.encode()
    found = {k: d.value for k, d in documents(server).items() if k.startswith(head)}
    assert found, "the test wrote no document under its prefix"
    return found


def stored(repository: CouchbaseRepository, session_id: str) -> StoredSession:
    record = repository.read(storage_key(session_id), now_us())
    assert record is not None
    return record


def rewrite(
    repository: CouchbaseRepository, session_id: str, change: Any, *, key: str | None = None
) -> None:
    """Replace the document of ``session_id`` (or of storage key ``key``) on the server with
    ``change(record)``, keeping everything else as stored (count bucket, last write)."""
    key = key or storage_key(session_id)
    perform = repository._within("tamper")
    doc_key = repository.context.layout.document_key(key)
    doc = perform(Get(doc_key))
    decoded = decode_record(doc.value)
    assert decoded is not None
    record, bucket = decoded
    seen = decode_seen(doc.value) if record.owner is not None else 0
    changed: StoredSession = change(record)
    value = encode_record(changed, bucket, seen)
    assert perform(Replace(doc_key, value, doc.cas, expiry_for(changed.expires_us, now_us())))


def test_no_stored_byte_holds_the_data_or_the_id(
    couchbase_server: CouchbaseTestServer, prefix: str, manager: Any
) -> None:
    anonymous = save_new(manager, secret=MARKER)
    visitor = save_new(manager, secret=MARKER, cart=["apple"])
    bound = log_in(manager, visitor)
    assert manager.open(bound)["secret"] == MARKER and manager.open(anonymous)["secret"] == MARKER
    ids = [form for sid in (anonymous, visitor, bound) for form in id_forms(sid)]
    assert_nowhere(dump(couchbase_server, prefix).items(), MARKER.encode(), *ids)
    sessions = [v for v in dump(couchbase_server, prefix).values() if decode_record(v)]
    assert len(sessions) == 2  # the anonymous one and the bound one; the rest: marker, index
    for value in sessions:
        decoded = decode_record(value)
        assert decoded is not None and decoded[0].data[:1] == FORMAT


def test_the_storage_key_opens_nothing(
    couchbase_server: CouchbaseTestServer, prefix: str, manager: Any
) -> None:
    sessions = [save_new(manager, secret=MARKER), log_in(manager, save_new(manager, a=MARKER))]
    for session_id in sessions:
        key = storage_key(session_id)
        value = dump(couchbase_server, prefix)[(prefix + key).encode()]
        decoded = decode_record(value)
        assert decoded is not None
        record = decoded[0]
        assert_storage_key_opens_nothing(key, record.data, record.owner)
        assert manager.open(session_id), "while the id itself opens it"


@pytest.mark.parametrize("offset", FLIPS)
def test_a_flipped_byte_is_a_fresh_session_and_a_warning(
    repository: CouchbaseRepository, manager: Any, offset: int, caplog: pytest.LogCaptureFixture
) -> None:
    sid = save_new(manager, secret=MARKER)
    rewrite(repository, sid, lambda record: record._replace(data=flipped(record.data, offset)))
    assert_opens_fresh(manager, sid, caplog, "secret")


def test_a_record_copied_under_another_key_is_a_fresh_session_and_a_warning(
    repository: CouchbaseRepository, manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    victim, attacker = save_new(manager, secret=MARKER), save_new(manager, mine=1)
    stolen = stored(repository, victim).data
    rewrite(repository, attacker, lambda record: record._replace(data=stolen))
    assert_opens_fresh(manager, attacker, caplog, "secret", "mine")


@pytest.mark.parametrize("field", ["user_id", "handle"])
def test_a_record_rebound_to_another_owner_is_a_fresh_session_and_a_warning(
    repository: CouchbaseRepository, manager: Any, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    sid = log_in(manager, save_new(manager, secret=MARKER), user="ann")

    def rebind(record: StoredSession) -> StoredSession:
        assert record.owner is not None and record.owner.user_id == "ann"
        return record._replace(owner=record.owner._replace(**{field: "mallory"}))

    rewrite(repository, sid, rebind)
    assert_opens_fresh(manager, sid, caplog, "secret")


@pytest.mark.parametrize("how", ["regenerate", "login"])
def test_after_a_regenerate_or_login_the_old_ciphertext_is_nowhere(
    couchbase_server: CouchbaseTestServer,
    repository: CouchbaseRepository,
    prefix: str,
    manager: Any,
    how: str,
) -> None:
    sid = save_new(manager, secret=MARKER)
    old = stored(repository, sid).data
    new_sid = move(manager, sid, how)
    # Neither the sealed record's ciphertext nor its nonce survives anywhere; the old key
    # holds only a moved marker, which holds no data.
    assert_nowhere(dump(couchbase_server, prefix).items(), old[BODY], old[NONCE])
    old_doc = dump(couchbase_server, prefix)[(prefix + storage_key(sid)).encode()]
    assert decode_marker(old_doc) is not None and decode_record(old_doc) is None
    assert stored(repository, new_sid).data != old
    assert manager.open(sid).is_new
