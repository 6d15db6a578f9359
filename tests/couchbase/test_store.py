"""The Couchbase store through the real SDK against the protocol test server: what lands on
the server, expiry by the server's clock, the count index, and configuration end to end.

The shared contract and manager suites also run on this store (``STORE_TARGETS``); these
tests check what those cannot see: stored bytes, server TTLs, ops sent, timing of failures.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

import ormsession
from ormsession.configure import load_settings
from ormsession.expiry import utcnow
from ormsession.ids import SessionIds, storage_key
from ormsession.manager import SessionManager
from ormsession.repositories.base import StoredSession
from ormsession.repositories.couchbase.factory import open_repository
from ormsession.repositories.couchbase.repository import CouchbaseRepository
from tests.manager.test_lifecycle import cookie_id
from tests.support.couchbase_fixtures import COUCHBASE_BUCKET, couchbase_url, unique_prefix
from tests.support.couchbase_server import CouchbaseTestServer, Opcode, StoredDocument

DAY = 24 * 60 * 60
BINARY_FORMAT = 0x03  # the SDK's "common flags" format byte for raw binary
ALL_COLLECTIONS = (("_default", "_default"), ("sessions", "items"))


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def repository(couchbase_server: CouchbaseTestServer, prefix: str) -> Iterator[CouchbaseRepository]:
    repository = open_repository(couchbase_url(couchbase_server), load_settings(key_prefix=prefix))
    yield repository
    repository.close()


@pytest.fixture
def manager(couchbase_server: CouchbaseTestServer, prefix: str) -> Iterator[SessionManager]:
    with ormsession.configure(url=couchbase_url(couchbase_server), key_prefix=prefix) as manager:
        yield manager


def new_key() -> str:
    return storage_key(SessionIds().generate())


def stored(
    server: CouchbaseTestServer,
    document_id: str,
    scope: str = "_default",
    collection: str = "_default",
) -> StoredDocument | None:
    return server.documents(COUCHBASE_BUCKET, scope, collection).get(document_id.encode())


def record(now: datetime, ttl: timedelta, data: bytes = b'{"a":1}') -> StoredSession:
    return StoredSession(data, 1, now, now + ttl)


# -- first visits, keys and stored bytes ------------------------------------------------------
def test_first_visits_and_unknown_ids_give_new_sessions_not_errors(
    couchbase_server: CouchbaseTestServer, manager: SessionManager
) -> None:
    gets = couchbase_server.op_counts[Opcode.GET]
    assert manager.open(None).is_new
    unknown = SessionIds().generate()
    session = manager.open(unknown)
    assert session.is_new and session.id != unknown
    assert couchbase_server.op_counts[Opcode.GET] - gets == 1, "the unknown id was looked up"
    session["cart"] = [1]
    assert manager.save(session) is not None


def test_the_raw_session_id_is_stored_nowhere(
    couchbase_server: CouchbaseTestServer, manager: SessionManager, prefix: str
) -> None:
    session = manager.open(None)
    session["user"] = "alice"
    first = cookie_id(manager.save(session))
    manager.regenerate(session)
    second = cookie_id(manager.save(session))
    everything = {
        key: doc.value
        for scope, collection in ALL_COLLECTIONS
        for key, doc in couchbase_server.documents(COUCHBASE_BUCKET, scope, collection).items()
    }
    for sid in (first, second):
        assert not any(
            sid.encode() in key or sid.encode() in value for key, value in everything.items()
        )
    mine = {key for key in everything if key.startswith(prefix.encode())}
    session_docs = {key for key in mine if b":count:" not in key}
    assert session_docs == {(prefix + storage_key(second)).encode()}  # the old id is gone


def test_the_record_layout_on_the_server(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, key = utcnow(), new_key()
    created = now - timedelta(minutes=3)
    payload = b"\x00\xff session bytes"
    assert repository.create(key, StoredSession(payload, 1, created, now + timedelta(hours=1)), now)
    doc = stored(couchbase_server, prefix + key)
    assert doc is not None
    assert (doc.flags >> 24, doc.datatype) == (BINARY_FORMAT, 0)
    magic, version, created_us, expires_us = struct.unpack_from(">4sQqq", doc.value)
    assert (magic, version, doc.value[28:]) == (b"orS1", 1, payload)
    assert created_us == int(created.timestamp() * 1_000_000)
    assert expires_us == int((now + timedelta(hours=1)).timestamp() * 1_000_000)
    assert abs(doc.expiry - (couchbase_server.now() + 3600)) <= 2


def test_a_foreign_document_under_a_session_key_is_no_session(
    couchbase_server: CouchbaseTestServer,
    repository: CouchbaseRepository,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now, key = utcnow(), new_key()
    repository.collection.upsert(prefix + key, {"not": "ours"})
    assert repository.read(key, now) is None
    assert "not an ormsession record" in caplog.text
    assert repository.update(key, b"x", now + timedelta(hours=1), 1, now) is None
    assert repository.create(key, record(now, timedelta(hours=1)), now)  # replaced
    assert repository.read(key, now) is not None


# -- expiry by the server's clock ---------------------------------------------------------
def test_documents_expire_on_the_server_without_sleeping(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, key = utcnow(), new_key()
    assert repository.create(key, record(now, timedelta(seconds=10)), now)
    assert repository.read(key, now) is not None
    couchbase_server.advance_clock(11)
    assert stored(couchbase_server, prefix + key) is None
    # Judged by the caller's (unmoved) clock the record is live: a None here proves the
    # server's TTL removed it, not the stored expiry.
    assert repository.read(key, now) is None
    assert repository.touch(key, now + timedelta(hours=1), now) is False


def test_touch_moves_the_stored_expiry_and_the_server_ttl(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, key = utcnow(), new_key()
    assert repository.create(key, record(now, timedelta(seconds=10)), now)
    assert repository.touch(key, now + timedelta(hours=2), now)
    doc = stored(couchbase_server, prefix + key)
    assert doc is not None and abs(doc.expiry - (couchbase_server.now() + 7200)) <= 2
    couchbase_server.advance_clock(11)
    after = repository.read(key, now)
    assert after is not None and after.version == 1


def test_a_forty_day_lifetime_does_not_expire_at_once(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    # Above 30 days memcached reads an expiry as a Unix time; raw seconds would be 1970.
    with ormsession.configure(
        url=couchbase_url(couchbase_server),
        key_prefix=prefix,
        idle_timeout=timedelta(days=40),
        absolute_timeout=None,
    ) as manager:
        session = manager.open(None)
        session["user"] = 1
        sid = cookie_id(manager.save(session))
        doc = stored(couchbase_server, prefix + storage_key(sid))
        assert doc is not None and abs(doc.expiry - (time.time() + 40 * DAY)) <= 2
        assert dict(manager.open(sid)) == {"user": 1}
        couchbase_server.advance_clock(39 * DAY)
        assert dict(manager.open(sid)) == {"user": 1}
        assert manager.count() == 1
        couchbase_server.advance_clock(2 * DAY)
        assert manager.open(sid).is_new


def test_an_idle_session_is_gone_when_the_server_clock_passes_its_ttl(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    with ormsession.configure(
        url=couchbase_url(couchbase_server), key_prefix=prefix, idle_timeout=timedelta(minutes=5)
    ) as manager:
        session = manager.open(None)
        session["n"] = 1
        sid = cookie_id(manager.save(session))
        couchbase_server.advance_clock(4 * 60)
        assert not manager.open(sid).is_new
        couchbase_server.advance_clock(2 * 60)
        assert manager.open(sid).is_new


def test_gc_sends_nothing(couchbase_server: CouchbaseTestServer, manager: SessionManager) -> None:
    before = sum(couchbase_server.op_counts.values())
    assert manager.gc() == 0
    assert sum(couchbase_server.op_counts.values()) == before


# -- the count index ------------------------------------------------------------------------
def shard_entries(server: CouchbaseTestServer, prefix: str, shards: int) -> dict[str, Any]:
    import json

    entries: dict[str, Any] = {}
    for n in range(shards):
        doc = stored(server, f"{prefix}count:{shards}:{n}")
        if doc is not None:
            entries |= json.loads(doc.value)["sessions"]
    return entries


def test_count_reads_only_the_index_shards(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    url = couchbase_url(couchbase_server, index_shards=4)
    repository = open_repository(url, load_settings(key_prefix=prefix))
    try:
        now = utcnow()
        keys = [new_key() for _ in range(6)]
        for key in keys:
            assert repository.create(key, record(now, timedelta(hours=1)), now)
        ops = sum(couchbase_server.op_counts.values())
        assert repository.count(now) == 6
        assert sum(couchbase_server.op_counts.values()) - ops == 4, "one read per shard"
        assert set(shard_entries(couchbase_server, prefix, 4)) == set(keys)
        repository.delete(keys[0])
        assert keys[0] not in shard_entries(couchbase_server, prefix, 4)
        assert repository.count(now) == 5
    finally:
        repository.close()


def test_index_entries_follow_expiry_and_are_pruned(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    url = couchbase_url(couchbase_server, index_shards=1)
    repository = open_repository(url, load_settings(key_prefix=prefix))
    try:
        now, short, long = utcnow(), new_key(), new_key()
        assert repository.create(short, record(now, timedelta(seconds=30)), now)
        assert repository.create(long, record(now, timedelta(seconds=30)), now)
        assert repository.touch(long, now + timedelta(hours=1), now)
        later = now + timedelta(seconds=31)
        assert repository.count(later) == 1, "touch must move the index entry too"
        assert repository.create(new_key(), record(later, timedelta(hours=1)), later)
        entries = shard_entries(couchbase_server, prefix, 1)
        assert short not in entries, "expired entries are dropped when a shard is rewritten"
        assert long in entries and len(entries) == 2
        shard = stored(couchbase_server, f"{prefix}count:1:0")
        assert shard is not None and shard.expiry > couchbase_server.now() + 3600
    finally:
        repository.close()


def test_count_stays_exact_with_concurrent_writers_on_one_shard(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    url = couchbase_url(couchbase_server, index_shards=1)
    repository = open_repository(url, load_settings(key_prefix=prefix))
    now = utcnow()
    keys = [[new_key() for _ in range(5)] for _ in range(8)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(mine: list[str]) -> None:
        try:
            barrier.wait()
            for key in mine:
                assert repository.create(key, record(now, timedelta(hours=1)), now)
            barrier.wait()
            for key in mine[:2]:
                repository.delete(key)
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=writer, args=(mine,)) for mine in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        assert repository.count(now) == 8 * 3
    finally:
        repository.close()


# -- configuration end to end ---------------------------------------------------------------
def round_trip(manager: Any) -> None:
    session = manager.open(None)
    session["user"] = "bob"
    sid = cookie_id(manager.save(session))
    assert dict(manager.open(sid)) == {"user": "bob"}
    assert manager.count() == 1
    manager.destroy(opened := manager.open(sid))
    assert opened.is_new
    assert manager.count() == 0


def test_configure_with_a_url_round_trips(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    url = f"couchbase://ormsession:secret-pw@127.0.0.1:{couchbase_server.port}/sessions"
    with ormsession.configure(url=url, key_prefix=prefix) as manager:
        round_trip(manager)


def test_configure_async_with_a_url_round_trips(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    import asyncio

    from tests.support.stores import ManagerFacade

    url = (
        f"couchbase://127.0.0.1:{couchbase_server.port}/sessions"
        "?username=ormsession&password=secret-pw"
    )

    with asyncio.Runner() as runner:
        manager = runner.run(ormsession.configure_async(url=url, key_prefix=prefix))
        try:
            round_trip(ManagerFacade(manager, runner))
        finally:
            runner.run(manager.close())


def test_a_named_scope_and_collection_from_the_url(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    url = couchbase_url(couchbase_server, scope="sessions", collection="items")
    with ormsession.configure(url=url, key_prefix=prefix) as manager:
        session = manager.open(None)
        session["where"] = "items"
        sid = cookie_id(manager.save(session))
        key = prefix + storage_key(sid)
        assert stored(couchbase_server, key, "sessions", "items") is not None
        assert stored(couchbase_server, key) is None
        assert dict(manager.open(sid)) == {"where": "items"}


def test_sync_and_async_twins_share_one_layout(
    couchbase_server: CouchbaseTestServer, prefix: str, repository: CouchbaseRepository
) -> None:
    import asyncio

    from ormsession.repositories.couchbase.factory import open_async_repository

    now, key = utcnow(), new_key()
    assert repository.create(key, record(now, timedelta(hours=1), b"from sync"), now)

    async def from_async() -> tuple[StoredSession | None, int]:
        twin = open_async_repository(
            couchbase_url(couchbase_server), load_settings(key_prefix=prefix)
        )
        try:
            return await twin.read(key, now), await twin.count(now)
        finally:
            await twin.close()

    read, count = asyncio.run(from_async())
    assert read is not None and read.data == b"from sync"
    assert count == 1
