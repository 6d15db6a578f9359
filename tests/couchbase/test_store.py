"""The Couchbase store through the real SDK against the protocol test server: what lands on
the server, expiry by the server's clock, round trips per write, the count counters, and
configuration end to end.

The shared contract and manager suites also run on this store (``STORE_TARGETS``); these
tests check what those cannot see: stored bytes, server TTLs, ops sent, timing of failures.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest

import ormsession
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.manager import SessionManager
from ormsession.repositories.base import REPLACED_ID_GRACE_US, StoredSession
from ormsession.repositories.couchbase.base import decode_marker
from ormsession.repositories.couchbase.factory import open_store
from ormsession.repositories.couchbase.repository import CouchbaseRepository
from ormsession.settings import load_config
from tests.manager.test_lifecycle import cookie_id
from tests.support.couchbase_fixtures import COUCHBASE_BUCKET, couchbase_url, unique_prefix
from tests.support.couchbase_server import CouchbaseTestServer, Opcode, StoredDocument

DAY_S = 24 * 60 * 60  # seconds: the test server's clock and time.time()
# Times given to the repository: µs.
SECOND = US_PER_SECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
BINARY_FORMAT = 0x03  # the SDK's "common flags" format byte for raw binary
ALL_COLLECTIONS = (("_default", "_default"), ("sessions", "items"))


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def repository(couchbase_server: CouchbaseTestServer, prefix: str) -> Iterator[CouchbaseRepository]:
    settings = load_config(key_prefix=prefix)
    repository = open_store(couchbase_url(couchbase_server), settings, want_async=False)
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


def record(now: int, ttl: int, data: bytes = b'{"a":1}') -> StoredSession:
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
    # Looked up, then asked whether a regenerate replaced it (a moved marker).
    assert couchbase_server.op_counts[Opcode.GET] - gets == 2, "the unknown id was looked up"
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
    session_docs = {key for key in mine if not key.startswith(f"{prefix}count:".encode())}
    old, new = (prefix + storage_key(first)).encode(), (prefix + storage_key(second)).encode()
    assert session_docs == {old, new}
    marker = decode_marker(everything[old])
    assert marker is not None and marker.to == storage_key(second), "the old id is a marker"


def test_a_rename_leaves_a_moved_marker_with_the_renames_expiry_and_time(
    couchbase_server: CouchbaseTestServer,
    repository: CouchbaseRepository,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now, old, new = now_us(), new_key(), new_key()
    assert repository.create(old, record(now, HOUR), now)
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        assert repository.rename(old, new, now + 2 * HOUR, now)
        assert repository.read(old, now) is None
    assert not caplog.records, "a moved marker is an ordinary miss"
    doc = stored(couchbase_server, prefix + old)
    assert doc is not None
    assert (doc.flags >> 24, doc.datatype) == (BINARY_FORMAT, 0)
    assert doc.value == b"orM2" + struct.pack(">qq", now + 2 * HOUR, now) + new.encode()
    assert abs(doc.expiry - (couchbase_server.now() + 7200)) <= 2, "the rename's TTL"
    assert repository.count(now) == 1, "the marker is counted nowhere"
    assert repository.moved(old, now) is True
    assert repository.moved(old, now + REPLACED_ID_GRACE_US) is True
    assert repository.moved(old, now + REPLACED_ID_GRACE_US + 1) is False, "the grace is over"
    late = now + 2 * MINUTE
    assert repository.create(old, record(late, HOUR), late) is False, "refused until expiry"
    assert repository.moved(old, now + 2 * HOUR) is False, "judged by the caller's now"
    assert repository.moved(new, now) is False and repository.moved(new_key(), now) is False
    couchbase_server.advance_clock(7201)
    assert stored(couchbase_server, prefix + old) is None, "the marker expires with its TTL"


def test_the_record_layout_on_the_server(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, key = now_us(), new_key()
    created = now - 3 * MINUTE
    payload = b"\x00\xff session bytes"
    assert repository.create(key, StoredSession(payload, 1, created, now + HOUR), now)
    doc = stored(couchbase_server, prefix + key)
    assert doc is not None
    assert (doc.flags >> 24, doc.datatype) == (BINARY_FORMAT, 0)
    magic, version, created_us, expires_us, level, end = struct.unpack_from(">4sQqqBq", doc.value)
    assert (magic, version, doc.value[37:]) == (b"orS2", 1, payload)
    assert (level, end % (1 << level)) == (6, 0), "counted in a 64-second bucket"
    assert 0 <= end * SECOND - expires_us < 64 * SECOND
    assert created_us == created
    assert expires_us == now + HOUR
    assert abs(doc.expiry - (couchbase_server.now() + 3600)) <= 2


def test_a_foreign_document_under_a_session_key_is_no_session(
    couchbase_server: CouchbaseTestServer,
    repository: CouchbaseRepository,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now, key = now_us(), new_key()
    repository.collection.upsert(prefix + key, {"not": "ours"})
    assert repository.read(key, now) is None
    assert "not an ormsession record" in caplog.text
    assert repository.update(key, b"x", now + HOUR, 1, now) is None
    assert repository.create(key, record(now, HOUR), now)  # replaced
    assert repository.read(key, now) is not None


# -- expiry by the server's clock ---------------------------------------------------------
def test_documents_expire_on_the_server_without_sleeping(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, key = now_us(), new_key()
    assert repository.create(key, record(now, 10 * SECOND), now)
    assert repository.read(key, now) is not None
    couchbase_server.advance_clock(11)
    assert stored(couchbase_server, prefix + key) is None
    # Judged by the caller's (unmoved) clock the record is live: a None here proves the
    # server's TTL removed it, not the stored expiry.
    assert repository.read(key, now) is None
    assert repository.touch(key, now + HOUR, now) is False


def test_touch_moves_the_stored_expiry_and_the_server_ttl(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, key = now_us(), new_key()
    assert repository.create(key, record(now, 10 * SECOND), now)
    assert repository.touch(key, now + 2 * HOUR, now)
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
        assert doc is not None and abs(doc.expiry - (time.time() + 40 * DAY_S)) <= 2
        assert dict(manager.open(sid)) == {"user": 1}
        couchbase_server.advance_clock(39 * DAY_S)
        assert dict(manager.open(sid)) == {"user": 1}
        assert manager.count() == 1
        couchbase_server.advance_clock(2 * DAY_S)
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


# -- one round trip per write -----------------------------------------------------------
#: The opcodes of document operations (the SDK also polls cluster configs on its own).
DOCUMENT_OPS = (
    Opcode.GET,
    Opcode.SET,
    Opcode.ADD,
    Opcode.REPLACE,
    Opcode.DELETE,
    Opcode.INCREMENT,
    Opcode.DECREMENT,
    Opcode.TOUCH,
    Opcode.GAT,
    Opcode.GET_META,
)


def kv_ops(server: CouchbaseTestServer) -> Counter[str]:
    return Counter({op.name: server.op_counts[op] for op in DOCUMENT_OPS})


def ops_of(server: CouchbaseTestServer, action: Callable[[], object]) -> dict[str, int]:
    before = kv_ops(server)
    action()
    return {name: n for name, n in (kv_ops(server) - before).items() if n}


def test_a_save_after_open_is_one_replace(
    couchbase_server: CouchbaseTestServer, manager: SessionManager
) -> None:
    session = manager.open(None)
    session["visits"] = 0
    sid = cookie_id(manager.save(session))
    for visit in range(1, 4):
        opened = manager.open(sid)
        opened["visits"] = visit
        assert ops_of(couchbase_server, partial(manager.save, opened)) == {"REPLACE": 1}
    for visit in range(4, 7):  # the same session object saved again: its own write's hint
        opened["visits"] = visit
        assert ops_of(couchbase_server, partial(manager.save, opened)) == {"REPLACE": 1}
    assert dict(manager.open(sid)) == {"visits": 6}


def test_the_async_twin_saves_in_one_replace_too(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    import asyncio

    async def scenario() -> list[dict[str, int]]:
        manager = await ormsession.configure_async(
            url=couchbase_url(couchbase_server), key_prefix=prefix
        )
        try:
            session = await manager.open(None)
            session["n"] = 0
            sid = cookie_id(await manager.save(session))
            costs = []
            for n in range(1, 3):
                opened = await manager.open(sid)
                opened["n"] = n
                before = kv_ops(couchbase_server)
                await manager.save(opened)
                costs.append(dict(kv_ops(couchbase_server) - before))
            assert dict(await manager.open(sid)) == {"n": 2}
            return costs
        finally:
            await manager.close()

    assert asyncio.run(scenario()) == [{"REPLACE": 1}, {"REPLACE": 1}]


def test_without_the_cache_a_save_reads_first(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    url = couchbase_url(couchbase_server, cas_cache_size=0)
    with ormsession.configure(url=url, key_prefix=prefix) as manager:
        session = manager.open(None)
        session["n"] = 1
        sid = cookie_id(manager.save(session))
        opened = manager.open(sid)
        opened["n"] = 2
        assert ops_of(couchbase_server, lambda: manager.save(opened)) == {"GET": 1, "REPLACE": 1}


def test_a_stale_hint_still_gives_the_contract_answer(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    """Two repositories (two app processes) on one prefix: each one's hints go stale
    whenever the other writes, and every answer must still be the contract's."""
    settings = load_config(key_prefix=prefix)
    mine = open_store(couchbase_url(couchbase_server), settings, want_async=False)
    theirs = open_store(couchbase_url(couchbase_server), settings, want_async=False)
    try:
        now, key = now_us(), new_key()
        hour = now + HOUR
        assert mine.create(key, record(now, HOUR), now)  # mine: hint at v1
        assert theirs.update(key, b"theirs", hour, 1, now) == 2
        # Mine still remembers version 1: the guarded replace is refused and the
        # document read, which is at version 2.
        used = ops_of(couchbase_server, lambda: mine.update(key, b"mine", hour, 1, now))
        assert used == {"REPLACE": 1, "GET": 1}
        assert mine.update(key, b"mine", hour, 1, now) is None
        assert mine.update(key, b"mine", hour, 2, now) == 3  # exactly +1
        # A touch elsewhere moves the CAS but not the version: the update still succeeds.
        assert theirs.touch(key, now + 2 * HOUR, now)
        assert mine.update(key, b"mine again", hour, 3, now) == 4
        # A delete elsewhere: the stale hint must not bring the session back.
        theirs.delete(key)
        assert mine.update(key, b"zombie", hour, 4, now) is None
        assert mine.read(key, now) is None and stored(couchbase_server, prefix + key) is None
        # And a re-created session at version 1 is not mistaken for the old version 1.
        assert theirs.create(key, record(now, HOUR, b"new life"), now)
        assert mine.update(key, b"x", hour, 1, now) == 2
        after = theirs.read(key, now)
        assert after is not None and (after.data, after.version) == (b"x", 2)
        assert mine.count(now) == 1
    finally:
        mine.close()
        theirs.close()


def test_a_write_costs_the_same_with_10_or_5000_sessions_stored(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    now = now_us()
    hour = now + HOUR
    costs = []
    stored_so_far = 0
    for population in (10, 5000):
        with ThreadPoolExecutor(16) as pool:  # created through ormsession: all counted
            created = pool.map(
                lambda _: repository.create(new_key(), record(now, HOUR), now),
                range(population - stored_so_far),
            )
            assert all(created)
        key = new_key()
        assert repository.create(key, record(now, HOUR), now)
        stored_so_far = population + 1
        assert repository.count(now) == stored_so_far
        assert repository.read(key, now) is not None
        update = ops_of(couchbase_server, partial(repository.update, key, b"x", hour, 1, now))
        touch = ops_of(couchbase_server, partial(repository.touch, key, hour, now))
        count = ops_of(couchbase_server, lambda: repository.count(now))
        costs.append((update, touch, count))
    assert costs[0] == costs[1]
    assert costs[0][0] == {"REPLACE": 1}
    # And no document the count keeps grows with the sessions: 5,001 of them, and every
    # count document is a few bytes (a per-session index would hold ~100 bytes each).
    head = f"{repository.context.layout.prefix}count:".encode()
    sizes = [
        len(doc.value)
        for key, doc in couchbase_server.documents(COUCHBASE_BUCKET).items()
        if key.startswith(head)
    ]
    assert sizes and max(sizes) < 100


# -- count ------------------------------------------------------------------------------
def counters(server: CouchbaseTestServer, prefix: str) -> dict[str, int]:
    """The live counter documents of a prefix: ``{"<level>:<end>": value}``."""
    head = f"{prefix}count:".encode()
    return {
        key[len(head) :].decode(): int(doc.value)
        for key, doc in server.documents(COUCHBASE_BUCKET).items()
        if key.startswith(head) and key != head + b"levels"
    }


def test_count_follows_every_kind_of_write_and_expiry(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository
) -> None:
    now = now_us()
    a, b, c, d = (new_key() for _ in range(4))
    for key in (a, b, c):
        assert repository.create(key, record(now, DAY), now)
    assert repository.create(d, record(now, MINUTE), now)
    assert repository.count(now) == 4
    assert repository.update(a, b"x", now + 2 * DAY, 1, now) == 2  # a later bucket
    assert repository.update(a, b"y", now + 2 * DAY, 2, now) == 3  # the same bucket
    assert repository.touch(b, now + 3 * DAY, now)
    assert repository.count(now) == 4
    assert sum(counters(couchbase_server, repository.context.layout.prefix).values()) == 4
    repository.delete(c)
    repository.delete(c)  # idempotent, and never counted twice
    assert repository.count(now) == 3
    e = new_key()
    assert repository.rename(a, e, now + 2 * DAY, now)
    assert repository.count(now) == 3
    # Expiry by the given clock, and by the server's TTLs (which also end counters). A
    # session is forgotten within its bucket's width (a 32nd to a 64th of its lifetime).
    assert repository.count(now + 2 * MINUTE) == 2, "d has expired"
    assert repository.count(now + DAY + MINUTE) == 2, "a (now e) and b live on"
    later = 2 * DAY + 2 * HOUR
    couchbase_server.advance_clock(later / SECOND)
    assert repository.count(now + later) == 1, "only b"
    couchbase_server.advance_clock(DAY_S)
    assert repository.count(now + later + DAY) == 0


def test_count_never_misses_a_live_session_and_forgets_it_within_its_bucket(
    repository: CouchbaseRepository,
) -> None:
    now = now_us()
    lifetime = 8 * HOUR
    assert repository.create(new_key(), record(now, lifetime), now)
    expires = now + lifetime
    width = (1 << 9) * SECOND  # an eight-hour lifetime: 512-second buckets
    assert repository.count(expires - 1) == 1
    assert repository.count(expires + width) == 0


def test_count_through_the_manager_across_regenerate_and_destroy(
    couchbase_server: CouchbaseTestServer, manager: SessionManager
) -> None:
    sessions = []
    for n in range(3):
        session = manager.open(None)
        session["n"] = n
        manager.save(session)
        sessions.append(session)
    assert manager.count() == 3
    manager.regenerate(sessions[0])
    manager.save(sessions[0])
    assert manager.count() == 3
    manager.destroy(sessions[1])
    manager.save(sessions[1])
    assert manager.count() == 2
    # The default idle timeout is one day. The manager's clock has not moved, but the
    # server's TTLs have removed the sessions and their counters (and the levels document).
    couchbase_server.advance_clock(2 * DAY_S)
    assert manager.count() == 0


def test_the_count_documents_on_the_server(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    import json

    now = now_us()
    for ttl in (30 * SECOND, DAY, DAY):
        assert repository.create(new_key(), record(now, ttl), now)
    found = counters(couchbase_server, prefix)
    assert sorted(found.values()) == [1, 2]
    levels_doc = stored(couchbase_server, prefix + "count:levels")
    assert levels_doc is not None
    levels = json.loads(levels_doc.value)["levels"]
    assert set(levels) == {"0", "11"}
    for name in found:
        level, end = name.split(":")
        assert int(end) % (1 << int(level)) == 0 and int(end) <= levels[level]
        counter = stored(couchbase_server, f"{prefix}count:{name}")
        assert counter is not None and counter.expiry == int(end) + 3600, "an hour past its end"
    assert levels_doc.expiry == max(levels.values()) + 3600


def test_count_stays_exact_with_concurrent_writers(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository
) -> None:
    now = now_us()
    keys = [[new_key() for _ in range(5)] for _ in range(8)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(mine: list[str]) -> None:
        try:
            barrier.wait()
            for key in mine:
                assert repository.create(key, record(now, HOUR), now)
            barrier.wait()
            for key in mine[:2]:
                repository.delete(key)
            for key in mine[2:]:  # each into a later bucket
                assert repository.touch(key, now + 3 * HOUR, now)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(mine,)) for mine in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert repository.count(now) == 8 * 3
    assert repository.count(now + 2 * HOUR) == 8 * 3


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

    now, key = now_us(), new_key()
    assert repository.create(key, record(now, HOUR, b"from sync"), now)

    async def from_async() -> tuple[StoredSession | None, int]:
        settings = load_config(key_prefix=prefix)
        twin = open_store(couchbase_url(couchbase_server), settings, want_async=True)
        try:
            return await twin.read(key, now), await twin.count(now)
        finally:
            await twin.close()

    read, count = asyncio.run(from_async())
    assert read is not None and read.data == b"from sync"
    assert count == 1
