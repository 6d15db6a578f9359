"""The user index on the Couchbase store, through the real SDK against the test server: what
lands on the server (bound records, the index document and its TTL), what each call costs,
that reads, saves and touches never write the index, lazy pruning, and threads racing
revokes against regenerates. (Interleavings and crashes step by step:
``test_users_steps.py``; the contract's user tests run in ``tests/contract``.)"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import ormsession
from ormsession.errors import StoreUnavailableError
from ormsession.expiry import now_us
from ormsession.flows import run
from ormsession.repositories.base import StoredSession
from ormsession.repositories.couchbase import index
from ormsession.repositories.couchbase.base import (
    HEADER,
    MAGIC,
    OWNED_MAGIC,
    KeyLayout,
    decode_record,
    decode_seen,
    encode_record,
)
from ormsession.repositories.couchbase.counters import UNCOUNTED
from ormsession.repositories.couchbase.factory import open_store
from ormsession.repositories.couchbase.index import (
    MISSING_GRACE_US,
    SWEEP_MIN,
    Entry,
    decode_index,
    encode_index,
    index_expiry,
    sweep_at,
    until_for,
)
from ormsession.repositories.couchbase.repository import CouchbaseRepository
from ormsession.settings import load_config
from tests.couchbase.users_support import (
    DAY,
    HOUR,
    SECOND,
    assert_superset,
    bound,
    documents,
    index_document,
    indexed,
    live_keys,
    new_key,
    new_user,
    owner,
    prefix,
    repository,
)
from tests.manager.test_lifecycle import cookie_id
from tests.support.couchbase_fixtures import (
    COUCHBASE_BUCKET,
    COUCHBASE_PASSWORD,
    COUCHBASE_USER,
    couchbase_url,
    unique_prefix,
)
from tests.support.couchbase_server import CouchbaseTestServer, Opcode

__all__ = ["prefix", "repository"]  # fixtures
DAY_S = 24 * 3600


# -- the documents -------------------------------------------------------------------------
def test_a_bound_record_carries_its_owner_and_last_write_and_an_unbound_one_is_unchanged(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, key, plain = now_us(), new_key(), new_key()
    who = owner(new_user(), user_agent="Mozilla/5.0 (X11; Linux)", ip="2001:db8::7")
    assert repository.create(key, bound(now, who, data=b"DATA"), now)
    assert repository.create(plain, bound(now, None, data=b"DATA"), now)
    raw = documents(couchbase_server)[(prefix + key).encode()].value
    assert raw.startswith(OWNED_MAGIC)
    assert raw.endswith(b"DATA")
    assert decode_seen(raw) == now
    for text in (who.user_id, who.handle, who.user_agent, who.ip):
        assert text is not None
        assert text.encode() in raw, "owner metadata stays outside the data"
    decoded = decode_record(raw)
    assert decoded is not None and decoded[0].owner == who
    plain_raw = documents(couchbase_server)[(prefix + plain).encode()].value
    # An unbound session: the same bytes as before users existed (header, then the data).
    assert plain_raw.startswith(MAGIC) and len(plain_raw) == HEADER.size + len(b"DATA")


def test_owner_fields_of_every_length_round_trip_and_cut_records_are_not_ours() -> None:
    now = now_us()
    who = owner("ü" * 255, user_agent="ü" * 512, ip="ü" * 45)
    record = StoredSession(b"x", 3, now, now + HOUR, who)
    raw = encode_record(record, UNCOUNTED, now)
    assert decode_record(raw) == (record, UNCOUNTED)
    nothing = owner("u", user_agent=None, ip=None)
    assert decode_record(encode_record(record._replace(owner=nothing), UNCOUNTED, now)) == (
        record._replace(owner=nothing),
        UNCOUNTED,
    )
    # The fields' lengths point past the end: a foreign or damaged document, not a record.
    assert decode_record(raw[: HEADER.size + 12]) is None


def test_the_index_document_names_each_key_with_its_handle(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, user = now_us(), new_user()
    first, second = owner(user), owner(user)
    keys = new_key(), new_key()
    assert repository.create(keys[0], bound(now, first), now, now + DAY)
    assert repository.create(keys[1], bound(now, second), now, now + 2 * DAY)
    doc_id = KeyLayout(prefix).user_key(user)
    assert doc_id.startswith(f"{prefix}user:") and len(doc_id) == len(prefix) + 5 + 64
    assert indexed(couchbase_server, prefix, user) == {
        keys[0]: Entry(first.handle, now, now + DAY),
        keys[1]: Entry(second.handle, now, now + 2 * DAY),
    }
    raw = index_document(couchbase_server, prefix, user)
    assert raw is not None
    assert user.encode() not in raw.value, "the index names keys, the records name users"


def test_the_index_lives_as_long_as_the_longest_login_allows(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, user = now_us(), new_user()
    start = couchbase_server.now()
    assert repository.create(new_key(), bound(now, owner(user)), now, now + 40 * DAY)
    doc = index_document(couchbase_server, prefix, user)
    assert doc is not None
    # 40 days: past the 30-day rule, sent as an absolute time (a timedelta to the SDK).
    assert abs(doc.expiry - (start + 40 * DAY_S)) <= 2
    # A later login with a shorter limit never shortens it (the max is kept).
    assert repository.create(new_key(), bound(now, owner(user)), now, now + 2 * DAY)
    doc = index_document(couchbase_server, prefix, user)
    assert doc is not None and abs(doc.expiry - (start + 40 * DAY_S)) <= 2
    couchbase_server.advance_clock(39 * DAY_S)
    assert index_document(couchbase_server, prefix, user) is not None
    couchbase_server.advance_clock(2 * DAY_S)
    assert index_document(couchbase_server, prefix, user) is None


def test_a_login_without_a_limit_gives_the_index_no_ttl(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, user = now_us(), new_user()
    assert repository.create(new_key(), bound(now, owner(user)), now, now + DAY)
    assert repository.create(new_key(), bound(now, owner(user)), now, None)
    doc = index_document(couchbase_server, prefix, user)
    assert doc is not None and doc.expiry == 0


def test_entries_past_their_limit_leave_at_the_next_index_write(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, user = now_us(), new_user()
    short = new_key()
    assert repository.create(short, bound(now, owner(user), ttl=60 * SECOND), now, now + HOUR)
    later = now + 2 * HOUR
    fresh = new_key()
    assert repository.create(fresh, bound(later, owner(user)), later, later + DAY)
    assert set(indexed(couchbase_server, prefix, user)) == {fresh}, "no session read for it"


def test_a_regenerate_moves_the_key_and_keeps_the_logins_limit(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, user, old, new = now_us(), new_user(), new_key(), new_key()
    who = owner(user)
    assert repository.create(old, bound(now, who), now, now + DAY)
    later = now + 5 * SECOND
    assert repository.rename(old, new, later + HOUR, later)
    entries = indexed(couchbase_server, prefix, user)
    assert entries[new] == Entry(who.handle, later, now + DAY)
    assert old in entries, "the old key leaves when a call finds its marker"
    assert [item.key for item in repository.sessions_of(user, later)] == [new]
    assert set(indexed(couchbase_server, prefix, user)) == {new}


# -- costs ------------------------------------------------------------------------------------
def _ops(server: CouchbaseTestServer, before: Counter[int]) -> Counter[int]:
    return Counter({op: n - before[op] for op, n in server.op_counts.items() if n > before[op]})


def test_what_each_call_costs(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository
) -> None:
    now, user = now_us(), new_user()
    plain, key = new_key(), new_key()
    assert repository.create(plain, bound(now, None), now)
    assert repository.create(key, bound(now, owner(user)), now)

    def cost(call: Callable[[], object]) -> Counter[int]:
        before = Counter(couchbase_server.op_counts)
        assert call() is not None
        return _ops(couchbase_server, before)

    # An unbound session's read is one get, as before; a bound one's too.
    assert cost(lambda: repository.read(plain, now)) == {Opcode.GET: 1}
    assert cost(lambda: repository.read(key, now)) == {Opcode.GET: 1}
    # A login of a new session: the index (get, then add or replace), then the insert
    # (and its count, as for any new session).
    other = new_key()
    assert cost(lambda: repository.create(other, bound(now, owner(user)), now)) == {
        Opcode.GET: 1,
        Opcode.REPLACE: 1,
        Opcode.INCREMENT: 1,
        Opcode.ADD: 1,
    }
    # A listing: the index, then the sessions in one batch (nothing to prune).
    assert cost(lambda: repository.sessions_of(user, now)) == {Opcode.GET: 3}
    # Revoking one: the index, the session, its guarded remove (and its count).
    handle = repository.read(other, now)
    assert handle is not None and handle.owner is not None
    ops = cost(lambda: repository.revoke(user, handle.owner.handle, now))
    assert ops[Opcode.GET] == 2 and ops[Opcode.DELETE] == 1
    assert ops[Opcode.REPLACE] == 1, "the revoked key is pruned from the index"
    # A logout of a bound session: its remove (guarded by the CAS it remembers) and its
    # uncount, then its key leaves the index: read, and here the emptied index removed.
    ops = cost(lambda: repository.delete(key) or True)
    assert ops == {Opcode.DELETE: 2, Opcode.DECREMENT: 1, Opcode.GET: 1}


# -- read, update and touch never write the index ----------------------------------------------
def test_reads_saves_and_touches_never_write_the_index(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, user, key = now_us(), new_user(), new_key()
    who = owner(user)
    assert repository.create(key, bound(now, who), now, now + DAY)
    before = index_document(couchbase_server, prefix, user)
    assert before is not None
    version = 1
    for step in range(1, 6):
        at = now + step * SECOND
        loaded = repository.read(key, at)
        assert loaded is not None and loaded.owner == who
        new_version = repository.update(key, b"{}", at + HOUR, version, at)
        assert new_version == version + 1
        version = new_version
        assert repository.touch(key, at + 2 * HOUR, at)
        assert repository.moved(key, at) is False
    after = index_document(couchbase_server, prefix, user)
    assert after == before, "the index document (value, CAS, TTL) was written"
    (listed,) = repository.sessions_of(user, now + 5 * SECOND)
    assert listed.seen_us == now + 5 * SECOND, "last seen rides on the session's own writes"


def test_requests_through_the_manager_never_write_the_index(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    url = couchbase_url(couchbase_server)
    with ormsession.configure(url=url, key_prefix=prefix, refresh_ratio=0.0) as manager:
        session = manager.open(None)
        session["cart"] = [1]
        manager.login(session, 42, user_agent="curl/8", ip="127.0.0.1")
        sid = cookie_id(manager.save(session))
        before = index_document(couchbase_server, prefix, "42")
        assert before is not None
        for n in range(5):
            request = manager.open(sid)
            assert request.user_id == "42"
            request["n"] = n
            manager.save(request)  # a save, and (refresh_ratio 0) a touch on every read
            manager.save(manager.open(sid))
        assert index_document(couchbase_server, prefix, "42") == before
        (listed,) = manager.sessions_of(42)
        assert listed.user_agent == "curl/8"
        assert manager.revoke_all(42) == 1
        assert manager.open(sid).is_new


def test_the_async_twin_writes_no_index_on_reads_and_saves(
    couchbase_server: CouchbaseTestServer, prefix: str
) -> None:
    async def scenario() -> None:
        twin = open_store(
            couchbase_url(couchbase_server), load_config(key_prefix=prefix), want_async=True
        )
        try:
            now, user, key = now_us(), new_user(), new_key()
            assert await twin.create(key, bound(now, owner(user)), now, now + DAY)
            before = index_document(couchbase_server, prefix, user)
            assert (await twin.read(key, now)) is not None
            assert await twin.update(key, b"{}", now + HOUR, 1, now) == 2
            assert await twin.touch(key, now + 2 * HOUR, now)
            assert index_document(couchbase_server, prefix, user) == before
            assert [s.key for s in await twin.sessions_of(user, now)] == [key]
            assert await twin.revoke_all(user, None, now) == 1
            assert index_document(couchbase_server, prefix, user) is None, "emptied: removed"
        finally:
            await twin.close()

    asyncio.run(scenario())


# -- pruning -----------------------------------------------------------------------------------
def test_an_entry_without_a_document_is_kept_for_the_grace_then_pruned(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, user = now_us(), new_user()
    live, orphan = new_key(), new_key()
    assert repository.create(live, bound(now, owner(user)), now, now + DAY)
    # A create that stopped after adding its key (crashed, or its insert still on the way).
    adding = index.add(repository.context.layout, owner(user), orphan, now + DAY, now)
    run(adding, repository._within("test"))
    assert [s.key for s in repository.sessions_of(user, now)] == [live]
    assert orphan in indexed(couchbase_server, prefix, user), "its insert may still come"
    later = now + MISSING_GRACE_US + SECOND
    assert repository.sessions_of(user, later) == []  # the live one has expired too by then
    assert index_document(couchbase_server, prefix, user) is None


def test_deleted_expired_and_moved_away_keys_are_pruned_at_once(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    now, user, other = now_us(), new_user(), new_user()
    deleted, short, moved, kept = (new_key() for _ in range(4))
    for key in (deleted, moved, kept):
        assert repository.create(key, bound(now, owner(user)), now)
    assert repository.create(short, bound(now, owner(user), ttl=10 * SECOND), now)
    repository.delete(deleted)
    assert repository.rename(moved, new_key(), now + HOUR, now, owner(other), None)
    later = now + 20 * SECOND
    assert [s.key for s in repository.sessions_of(user, later)] == [kept]
    assert set(indexed(couchbase_server, prefix, user)) == {kept}


# -- threads -----------------------------------------------------------------------------------
def test_revoke_all_against_regenerating_threads_leaves_nothing_alive(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    """Threads regenerate (and re-login) their sessions in a loop while another logs the
    user out everywhere, over and over: each round, once the revoke has returned, no
    session that existed before it started is alive, and the index never misses one."""
    user = new_user()
    errors: list[BaseException] = []

    def regenerate(chain: list[str], stop: threading.Event, now: int) -> None:
        try:
            while not stop.is_set():
                new = new_key()
                login = owner(user, handle="h" * 22) if len(chain) % 2 else None
                if not repository.rename(chain[-1], new, now + HOUR, now, login, now + DAY):
                    return  # revoked under it
                chain.append(new)
        except BaseException as exc:
            errors.append(exc)

    for _round in range(5):
        now = now_us()
        starts = [new_key() for _ in range(4)]
        for key in starts:
            assert repository.create(key, bound(now, owner(user)), now, now + DAY)
        stop = threading.Event()
        chains: list[list[str]] = [[key] for key in starts]
        threads = [threading.Thread(target=regenerate, args=(c, stop, now)) for c in chains]
        for thread in threads:
            thread.start()
        while min(len(chain) for chain in chains) < 3 and not errors:
            stop.wait(0.001)  # every thread is regenerating by now
        repository.revoke_all(user, None, now)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors
        # A regenerate that had read its record before the revoke removed it cannot
        # commit (its marker replace is guarded by that CAS); one after finds nothing.
        alive = [key for chain in chains for key in chain if repository.read(key, now)]
        assert alive == [], "a session survived log out everywhere"
        assert_superset(couchbase_server, prefix, user)
        assert live_keys(couchbase_server, prefix, user, now) == set()


def test_the_keys_index_stays_exact_under_concurrent_logins(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    """Logins of one user from many threads at once: every key lands in the one index
    document (its CAS loop loses no entry)."""
    now, user = now_us(), new_user()
    keys = [new_key() for _ in range(24)]
    barrier = threading.Barrier(len(keys))

    def login(key: str) -> None:
        barrier.wait()
        assert repository.create(key, bound(now, owner(user)), now, now + DAY)

    threads = [threading.Thread(target=login, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert set(indexed(couchbase_server, prefix, user)) == set(keys)
    assert len(repository.sessions_of(user, now)) == len(keys)
    assert repository.revoke_all(user, keys[0], now) == len(keys) - 1
    assert [s.key for s in repository.sessions_of(user, now)] == [keys[0]]


def test_an_index_nobody_lists_stays_bounded_across_many_regenerates(
    couchbase_server: CouchbaseTestServer, repository: CouchbaseRepository, prefix: str
) -> None:
    """Each regenerate adds the new key before the old one is known to be a marker; a
    login or rename that finds the index at its sweep size drops what is stale first."""
    now, user = now_us(), new_user()
    key = new_key()
    assert repository.create(key, bound(now, owner(user)), now, None)
    for _ in range(3 * SWEEP_MIN):
        new = new_key()
        assert repository.rename(key, new, now + HOUR, now)
        key = new
    entries = indexed(couchbase_server, prefix, user)
    assert key in entries
    assert len(entries) <= SWEEP_MIN + 1
    assert [s.key for s in repository.sessions_of(user, now)] == [key]


# -- a stalled node ------------------------------------------------------------------------
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_user_calls_end_within_the_store_timeout_on_a_stalled_node(twin: str) -> None:
    server = CouchbaseTestServer(
        users={COUCHBASE_USER: COUCHBASE_PASSWORD}, buckets={COUCHBASE_BUCKET: []}
    ).start()
    settings = load_config(key_prefix=unique_prefix(), store_timeout=1)
    now, user, key = now_us(), new_user(), new_key()
    who = owner(user)
    calls = [
        ("create", (new_key(), bound(now, owner(user)), now, now + DAY)),
        ("rename", (key, new_key(), now + HOUR, now, owner(user), now + DAY)),
        ("sessions_of", (user, now)),
        ("revoke", (user, who.handle, now)),
        ("revoke_all", (user, None, now)),
    ]

    async def scenario() -> None:
        store = open_store(couchbase_url(server), settings, want_async=twin == "async")
        try:

            async def call(name: str, args: tuple[object, ...]) -> Any:
                result = getattr(store, name)(*args)
                return await result if twin == "async" else result

            assert await call("create", (key, bound(now, who), now, now + DAY))
            server.pause()
            try:
                for name, args in calls:
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailableError, match=f"during {name}"):
                        await call(name, args)
                    assert time.monotonic() - started < 1 + 1.5, name
            finally:
                server.resume()
            assert [s.key for s in await call("sessions_of", (user, now))] == [key]
        finally:
            closing = store.close()
            if twin == "async":
                await closing

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


# -- the index document's codec (no I/O) -------------------------------------------------------
def test_the_index_codec_round_trips_and_reads_anything_else_as_empty(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = now_us()
    entries = {new_key(): Entry("h" * 22, now, None), new_key(): Entry("g" * 22, now, now + DAY)}
    raw = encode_index(entries, 200)
    assert decode_index(raw) == entries
    assert sweep_at(raw) == 200
    assert index_expiry(entries, now) is None, "an entry without a limit: no TTL"
    limited = {k: e for k, e in entries.items() if e.until_us is not None}
    assert index_expiry(limited, now) == timedelta(days=1)
    assert until_for(None, now + HOUR) is None
    assert until_for(now + HOUR, now + DAY) == now + DAY, "never before the session's expiry"
    for garbage in (b"[]", b'{"format": 2, "keys": {}}', b'{"format": 1, "keys": {"x": []}}'):
        with caplog.at_level(logging.WARNING, logger="ormsession"):
            assert decode_index(garbage) == {}
        assert sweep_at(garbage) == SWEEP_MIN
    assert "unreadable couchbase user index" in caplog.text
