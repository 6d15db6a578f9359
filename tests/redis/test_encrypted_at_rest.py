"""Data encrypted at rest on the Redis family, end to end: a real manager (sync and async,
encryption on by default) on plain Redis, Sentinel and Cluster, on Redis and on Valkey,
and every key the test's prefix left on the servers, read back from the servers (every
Cluster master) with raw clients.

What is checked: no stored byte (key names, and every value: sessions, moved markers,
count indexes with their scores, a user's index with its entries) holds the session data
or the id; the storage key, which the store does hold, decrypts nothing; a value changed
on the server (its ciphertext, its nonce, or its associated data: the record copied under
another session's key, or rebound to another user) opens as a fresh session with a logged
warning; and after a regenerate or a login the old ciphertext is nowhere on the servers
(on Cluster, where the move parks the old record and copies new bytes, the parked copy
is gone too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from ormsession.encryption import FORMAT
from ormsession.ids import storage_key
from ormsession.repositories.base import StoredSession
from ormsession.repositories.redis.base import (
    KeyLayout,
    decode_marker,
    decode_record,
    encode_record,
    stored_bucket,
)
from ormsession.repositories.redis.users import decode_head
from tests.redis.helpers import KINDS, node_clients, routing_client
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
from tests.support.redis_servers import _glob_escape
from tests.support.stores import open_manager

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def prefix(request: pytest.FixtureRequest, kind: str) -> str:
    """The test's key prefix on ``kind`` (the one its store target uses)."""
    return str(request.getfixturevalue(f"{kind}_key_prefix"))


@pytest.fixture(params=["sync", "async"])
def manager(request: pytest.FixtureRequest, kind: str, prefix: str) -> Iterator[Any]:
    """A manager on ``kind`` whose keys all carry ``prefix`` (its store target's)."""
    with open_manager(request, kind, request.param) as manager:
        yield manager


@pytest.fixture
def raw(request: pytest.FixtureRequest, kind: str) -> Iterator[Any]:
    """A raw (bytes) client reaching any of ``kind``'s keys: what another app server, or
    whoever can write to Redis, sees and changes."""
    with routing_client(request, kind) as client:
        yield client


def dump(request: pytest.FixtureRequest, kind: str, prefix: str) -> dict[bytes, bytes]:
    """Every key under the test's prefix on every data node: name -> all its content (a
    string's bytes; a hash's fields and values; a sorted set's members and scores)."""
    found: dict[bytes, bytes] = {}
    with node_clients(request, kind) as clients:
        for client in clients:
            for name in client.scan_iter(match=_glob_escape(prefix) + "*", count=500):
                found[name] = _content(client, name)
    assert found, "the test wrote no key under its prefix"
    return found


def _content(client: redis.Redis, name: bytes) -> bytes:
    kind = client.type(name)
    if kind == b"hash":
        pairs = sorted(client.hgetall(name).items())
        return b"\n".join(field + b"=" + value for field, value in pairs)
    if kind == b"zset":
        members = client.zrange(name, 0, -1, withscores=True)
        return b"\n".join(member + b"=" + repr(score).encode() for member, score in members)
    value = client.get(name)
    assert kind == b"string" and value is not None, (name, kind)
    return bytes(value)


def session_name(prefix: str, session_id: str) -> bytes:
    return KeyLayout(prefix).session(storage_key(session_id)).encode()


def stored(raw: Any, prefix: str, session_id: str) -> tuple[StoredSession, bytes]:
    """The record under ``session_id``'s key as the server holds it, and the whole value."""
    value = raw.get(session_name(prefix, session_id))
    assert value is not None
    record = decode_record(bytes(value))
    assert record is not None
    return record, bytes(value)


def rewrite(
    raw: Any, prefix: str, session_id: str, change: Callable[[StoredSession], StoredSession]
) -> None:
    """Replace the value of ``session_id`` on the server with ``change(record)``, keeping
    the rest as stored (count bucket, last write, TTL)."""
    record, value = stored(raw, prefix, session_id)
    head = decode_head(value)
    seen = head.seen_us if head is not None else 0
    changed = encode_record(change(record), stored_bucket(value), seen)
    assert raw.set(session_name(prefix, session_id), changed, keepttl=True)


def test_no_stored_byte_holds_the_data_or_the_id(
    request: pytest.FixtureRequest, kind: str, prefix: str, manager: Any
) -> None:
    anonymous = save_new(manager, secret=MARKER)
    visitor = save_new(manager, secret=MARKER, cart=["apple"])
    bound = log_in(manager, visitor)
    assert manager.open(bound)["secret"] == MARKER and manager.open(anonymous)["secret"] == MARKER
    ids = [form for sid in (anonymous, visitor, bound) for form in id_forms(sid)]
    everything = dump(request, kind, prefix)
    assert_nowhere(everything.items(), MARKER.encode(), *ids)
    sessions = [decode_record(v) for v in everything.values()]
    records = [record for record in sessions if record is not None]
    assert len(records) == 2  # anonymous and bound; the rest: a marker, indexes
    assert all(record.data[:1] == FORMAT for record in records)
    assert sum(decode_marker(v) is not None for v in everything.values()) == 1
    assert any(b"user:" in name for name in everything), "the user's index was dumped too"


def test_the_storage_key_opens_nothing(raw: Any, prefix: str, manager: Any) -> None:
    sessions = [save_new(manager, secret=MARKER), log_in(manager, save_new(manager, a=MARKER))]
    for session_id in sessions:
        record, _ = stored(raw, prefix, session_id)
        assert_storage_key_opens_nothing(storage_key(session_id), record.data, record.owner)
        assert manager.open(session_id), "while the id itself opens it"


@pytest.mark.parametrize("offset", FLIPS)
def test_a_flipped_byte_is_a_fresh_session_and_a_warning(
    raw: Any, prefix: str, manager: Any, offset: int, caplog: pytest.LogCaptureFixture
) -> None:
    sid = save_new(manager, secret=MARKER)
    rewrite(raw, prefix, sid, lambda record: record._replace(data=flipped(record.data, offset)))
    assert_opens_fresh(manager, sid, caplog, "secret")


def test_a_record_copied_under_another_key_is_a_fresh_session_and_a_warning(
    raw: Any, prefix: str, manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    victim, attacker = save_new(manager, secret=MARKER), save_new(manager, mine=1)
    _, value = stored(raw, prefix, victim)  # the whole value: header and all
    assert raw.set(session_name(prefix, attacker), value, keepttl=True)
    assert_opens_fresh(manager, attacker, caplog, "secret", "mine")


@pytest.mark.parametrize("field", ["user_id", "handle"])
def test_a_record_rebound_to_another_owner_is_a_fresh_session_and_a_warning(
    raw: Any, prefix: str, manager: Any, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    sid = log_in(manager, save_new(manager, secret=MARKER), user="ann")

    def rebind(record: StoredSession) -> StoredSession:
        assert record.owner is not None and record.owner.user_id == "ann"
        return record._replace(owner=record.owner._replace(**{field: "mallory"}))

    rewrite(raw, prefix, sid, rebind)
    assert_opens_fresh(manager, sid, caplog, "secret")


@pytest.mark.parametrize("how", ["regenerate", "login"])
def test_after_a_regenerate_or_login_the_old_ciphertext_is_nowhere(
    request: pytest.FixtureRequest,
    kind: str,
    raw: Any,
    prefix: str,
    manager: Any,
    how: str,
) -> None:
    sid = save_new(manager, secret=MARKER)
    old, _ = stored(raw, prefix, sid)
    new_sid = move(manager, sid, how)
    # Neither the sealed record's ciphertext nor its nonce survives anywhere (no parked
    # copy on Cluster either); the old key holds only a moved marker, which holds no data.
    everything = dump(request, kind, prefix)
    assert_nowhere(everything.items(), old.data[BODY], old.data[NONCE])
    assert not [name for name in everything if b":moving:" in name]
    old_value = everything[session_name(prefix, sid)]
    assert decode_marker(old_value) is not None and decode_record(old_value) is None
    assert stored(raw, prefix, new_sid)[0].data != old.data
    assert manager.open(sid).is_new
