"""Hostile input on the real stores, sync and async (issue 24, defects 6, 8 and 9).

Corrupt stored data is a fresh session and a warning, whatever store holds it and however
it got there; data that cannot be stored is a SerializationError and nothing is written;
odd URLs are a ConfigurationError at configure(); passwords in odd URL forms never show.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ormsession.errors import SerializationError
from ormsession.ids import storage_key
from ormsession.serializers import MAX_DEPTH
from tests.manager.test_lifecycle import stored_session
from tests.support import raw_writes
from tests.support.stores import FakeClock, open_manager, store_params

#: Defect 6's stored values: each crashed open() with an untyped exception (or, for
#: 1e999, loaded and then made every save fail).
CORRUPT = {
    "bytes under a bytes tag": b'{"a":{" b":5}}',
    "int under the uuid tag": b'{" u":5}',
    "object under the timedelta tag": b'{" td":{"x":1}}',
    "timedelta out of range": b'{" td":[1e12,0,0]}',
    "float out of range": b'{"a":1e999}',
    "NaN": b'{"a":NaN}',
    "nested past the limit": b'{"a":' + b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5) + b"}",
    "nested past the recursion limit": b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "lone surrogate": b'{"a":"\\ud800"}',
    "not UTF-8": b"\xff\xfe{}",
    "empty": b"",
}
#: The same for the msgpack serializer: maps with bytes keys, an extension type.
CORRUPT_MSGPACK = {
    "bytes key": b"\x81\xc4\x01a\x01",
    "bytes key, nested": b"\x81\xa1a\x81\xc4\x01x\x01",
    "bytes key beside a tag key": b"\x82\xa2 b\xc0\xc4\x00\xc0",
    "extension type": b"\x81\xa1a\xd4\x05\x00",
    "timestamp": b"\x81\xa1a\xd6\xff\x00\x00\x00\x01",
    "infinity": b"\x81\xa1a\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00",
}


def put_record_data(manager: Any, session_id: str, data: bytes) -> None:
    """Overwrite the stored data of ``session_id`` through the store's own update."""
    repository, key = raw_writes._inner(manager).repository, storage_key(session_id)
    now = manager.policy.now_us()
    stored = raw_writes._run(manager, repository.read(key, now))
    assert stored is not None
    updated = repository.update(key, data, stored.expires_us, stored.version, now)
    assert raw_writes._run(manager, updated) is not None


def assert_fresh_with_warning(
    manager: Any, session_id: str, caplog: pytest.LogCaptureFixture, wording: str
) -> None:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        session = manager.open(session_id)
    assert session.is_new and session.id != session_id
    assert wording in caplog.text, caplog.text
    assert session_id not in caplog.text
    session["after"] = True  # and the fresh session saves
    assert manager.save(session) is not None


@pytest.mark.parametrize("label", list(CORRUPT))
def test_corrupt_json_data_is_a_fresh_session_and_a_warning(
    manager: Any, label: str, caplog: pytest.LogCaptureFixture
) -> None:
    sid = stored_session(manager, user=1)
    put_record_data(manager, sid, CORRUPT[label])
    assert_fresh_with_warning(manager, sid, caplog, "corrupt session data")


@pytest.mark.parametrize("store", store_params())
def test_corrupt_msgpack_data_is_a_fresh_session_and_a_warning(
    request: pytest.FixtureRequest, store: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, mode = store
    with open_manager(request, name, mode, serializer="msgpack", clock=FakeClock()) as manager:
        for data in CORRUPT_MSGPACK.values():
            sid = stored_session(manager, user=1)
            put_record_data(manager, sid, data)
            assert_fresh_with_warning(manager, sid, caplog, "corrupt session data")


UNSTORABLE = {
    "lone surrogate": "\ud800",
    "lone surrogate in a key": {"\udfff": 1},
    "nested past the limit": [[[]]],  # replaced below, past MAX_DEPTH
    "contains itself": [],
}
UNSTORABLE["contains itself"].append(UNSTORABLE["contains itself"])
for _ in range(MAX_DEPTH):
    UNSTORABLE["nested past the limit"] = [UNSTORABLE["nested past the limit"]]


@pytest.mark.parametrize("label", list(UNSTORABLE))
def test_unstorable_data_is_a_serialization_error_and_nothing_is_written(
    manager: Any, label: str
) -> None:
    sid = stored_session(manager, ok=1)
    session = manager.open(sid)
    session["bad"] = UNSTORABLE[label]
    with pytest.raises(SerializationError):
        manager.save(session)
    assert dict(manager.open(sid)) == {"ok": 1}
    fresh = manager.open(None)
    fresh["bad"] = UNSTORABLE[label]
    with pytest.raises(SerializationError):
        manager.save(fresh)


# -- values written behind ormsession's back, by each store's own means --------------------
SQL_STORES = store_params(["sqlite", "postgresql", "mysql"])

#: SQL each dialect accepts for a value in the data column that ormsession never writes.
HAND_WRITTEN = {
    "sqlite": [
        ("TEXT", ":value", {"value": '{"a":{" b":5}}'}),
        ("TEXT of valid data", ":value", {"value": '{"user":1}'}),
        ("TEXT, not UTF-8", "CAST(x'80ff' AS TEXT)", {}),
        ("INTEGER", "5", {}),
        ("REAL", "1e999", {}),
    ],
    "postgresql": [
        ("text converted", "convert_to(:value, 'UTF8')", {"value": '{" u":5}'}),
        ("bytes", "decode('80ff', 'hex')", {}),
    ],
    "mysql": [
        ("string literal", ":value", {"value": '{" td":[1e12,0,0]}'}),
        ("utf8mb4 text", "_utf8mb4'{\"a\"\\:1e999}'", {}),  # \\: is a colon to text()
        ("bytes", "x'80ff'", {}),
    ],
}


@pytest.mark.parametrize("store", SQL_STORES)
def test_values_written_into_the_sql_data_column_by_hand(
    request: pytest.FixtureRequest, store: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, mode = store
    with open_manager(request, name, mode, clock=FakeClock()) as manager:
        for _label, expression, params in HAND_WRITTEN[name]:
            sid = stored_session(manager, user=1)
            raw_writes.sql_set_data(manager, sid, expression, **params)
            # Even valid serialized data: encrypted at rest (the default), unsealed bytes
            # are not a session (see the next test for what SQLite's TEXT reads as).
            assert_fresh_with_warning(manager, sid, caplog, "corrupt session data")


@pytest.mark.parametrize("store", store_params(["sqlite"]))
def test_a_sqlite_text_value_reads_as_its_utf8_bytes(
    request: pytest.FixtureRequest, store: tuple[str, str]
) -> None:
    # Without encryption the stored bytes are the serialized data: valid data in a TEXT
    # value is the session.
    name, mode = store
    with open_manager(request, name, mode, clock=FakeClock(), encrypt=False) as manager:
        sid = stored_session(manager, user=1)
        raw_writes.sql_set_data(manager, sid, ":value", value='{"user":1}')
        assert dict(manager.open(sid)) == {"user": 1}


@pytest.mark.parametrize("store", store_params(["sqlite"]))
def test_unreadable_sqlite_metadata_reads_as_no_session(
    request: pytest.FixtureRequest, store: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite keeps any type in any column: a version or expiry that does not parse.
    name, mode = store
    with open_manager(request, name, mode, clock=FakeClock()) as manager:
        for column, value in (("session_version", "'v2'"), ("session_expiry", "'9999-zz'")):
            sid = stored_session(manager, user=1)
            raw_writes.sql_execute(
                manager,
                f"UPDATE session SET {column} = {value} WHERE session_key = :key",
                key=storage_key(sid),
            )
            assert_fresh_with_warning(manager, sid, caplog, "unreadable session row")


@pytest.mark.parametrize("store", store_params(["redis"]))
def test_foreign_values_under_a_redis_session_key(
    request: pytest.FixtureRequest, store: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, mode = store
    with open_manager(request, name, mode, clock=FakeClock()) as manager:
        writes = {
            "unknown format": ("SET", b'{"user":1}'),
            "a list": ("RPUSH", b"x"),
            "a hash": ("HSET", "field", "value"),
        }
        for command, *args in writes.values():
            sid = stored_session(manager, user=1)
            raw_writes.redis_replace(manager, sid, command, *args)
            assert_fresh_with_warning(manager, sid, caplog, "under session key")


@pytest.mark.parametrize("store", store_params(["couchbase"]))
def test_foreign_documents_under_a_couchbase_session_key(
    request: pytest.FixtureRequest, store: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, mode = store
    with open_manager(request, name, mode, clock=FakeClock()) as manager:
        for value in ({"user": 1}, "just text", [1, 2]):
            sid = stored_session(manager, user=1)
            raw_writes.couchbase_upsert(manager, sid, value)
            assert_fresh_with_warning(manager, sid, caplog, "not an ormsession record")
