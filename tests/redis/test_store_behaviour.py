"""What every Redis mode (plain, Sentinel, Cluster) must guarantee beyond the contract:
TTLs on every key, namespaces that keep apps apart, no raw session id anywhere."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import pytest

import ormsession
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import storage_key
from ormsession.repositories.base import REPLACED_ID_GRACE_US, StoredSession
from ormsession.repositories.redis.base import KeyLayout, encode_marker
from tests.manager.test_lifecycle import cookie_id, stored_session
from tests.redis.helpers import KEY_LAYOUT, KINDS, node_clients, routing_client, stored_keys
from tests.support.stores import FakeClock, open_manager, open_store, target_for

pytestmark = pytest.mark.timeout(60)


def _mixed_workload(manager: Any, clock: FakeClock) -> None:
    """Creates, writes, merge conflicts, touches, regenerates, destroys, expiries, gc,
    logins (one user's index) and a revoke."""
    sids = [stored_session(manager, n=n, cart=[]) for n in range(12)]
    bound = [stored_session(manager, n=n) for n in range(3)]
    for sid in bound:
        session = manager.open(sid)
        manager.login(session, "user:{1}")
        manager.save(session)
    handle = manager.sessions_of("user:{1}")[0].handle
    assert manager.revoke("user:{1}", handle)
    for sid in sids[:4]:  # compare-and-set conflicts resolved by merging
        first, second = manager.open(sid), manager.open(sid)
        first["a"] = 1
        second["b"] = 2
        manager.save(first)
        manager.save(second)
    for sid in sids[4:8]:  # regenerate (a rename), with and without a later write
        session = manager.open(sid)
        manager.regenerate(session)
        session["logged_in"] = True
        manager.save(session)
    manager.destroy(manager.open(sids[8]))
    slow, logout = manager.open(sids[9]), manager.open(sids[9])
    manager.destroy(logout)
    slow["late"] = 1
    manager.save(slow)  # finds the session gone: stays destroyed
    clock.advance(hours=3)  # due for a throttled touch
    for sid in sids[10:]:
        manager.save(manager.open(sid))
    clock.advance(hours=22)  # the untouched ones are now expired for the manager
    stored_session(manager, after="expiry")  # create trims the index shard it lands in
    manager.count()
    manager.gc()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_no_key_ever_lacks_a_ttl(request: pytest.FixtureRequest, kind: str, mode: str) -> None:
    clock = FakeClock()
    with open_manager(request, kind, mode, clock=clock) as manager:
        _mixed_workload(manager, clock)
    prefix = target_for(request, kind).options["key_prefix"]
    with node_clients(request, kind) as clients:
        keys = stored_keys(clients, prefix)
    sessions = [k for k in keys if k.kind == b"string"]
    indexes = [k for k in keys if k.kind == b"zset"]
    assert len(sessions) >= 10 and indexes, "the workload must have left keys to inspect"
    assert [k.name for k in keys if k.pttl <= 0] == [], "every key must carry a TTL"
    for key in keys:
        assert key.name.startswith(prefix.encode())
        assert KEY_LAYOUT.fullmatch(key.name[len(prefix) :]), key.name
    assert not [k for k in keys if b":moving:" in k.name], "parked copies must be discarded"
    (user,) = [k for k in keys if k.kind == b"hash"]
    assert user.pttl >= max(k.pttl for k in sessions) - 50, "a user index outlives its sessions"
    # An index outlives its members: its TTL is at least the longest one in its shard.
    for index in indexes:
        tag = index.name[: index.name.index(b"}") + 1]
        members = [k.pttl for k in sessions if k.name.startswith(tag)]
        assert index.pttl >= max(members, default=0) - 50


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_native_ttl_follows_every_write(
    request: pytest.FixtureRequest, kind: str, mode: str
) -> None:
    """Redis must drop a record when (and not before) the manager's expiry passes."""
    layout = KeyLayout(target_for(request, kind).options["key_prefix"])
    hour = 3600 * US_PER_SECOND
    key, new = storage_key("ttl-a" + mode), storage_key("ttl-b" + mode)
    with open_store(request, kind, mode) as repository, routing_client(request, kind) as raw:

        def assert_ttl(key: str, ttl: int) -> None:
            # TTL = expires_us - the now of the write (Redis' clock plays no part).
            expected = ttl // 1000
            assert expected - 2000 < raw.pttl(layout.session(key)) <= expected, key

        now = now_us()
        assert repository.create(key, StoredSession(b"x", 1, now, now + hour), now)
        assert_ttl(key, hour)
        assert repository.update(key, b"y", now + 2 * hour, 1, now) == 2
        assert_ttl(key, 2 * hour)
        assert repository.touch(key, now + 3 * hour, now)
        assert_ttl(key, 3 * hour)
        assert repository.rename(key, new, now + 4 * hour, now)
        assert_ttl(new, 4 * hour)
        # A write whose now runs ahead of Redis' clock gets the TTL its now implies.
        later = now + 2 * hour
        assert repository.touch(new, later + hour, later)
        assert_ttl(new, hour)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_rename_leaves_an_uncounted_moved_marker_with_the_renames_ttl(
    request: pytest.FixtureRequest, kind: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What the old key holds after a rename (on Cluster, between two slots: old and new
    key in different shards; then within one), and that reading it is a plain miss, not a
    warning."""
    layout = KeyLayout(target_for(request, kind).options["key_prefix"])
    hour = 3600 * US_PER_SECOND
    old, new = "0a" + secrets.token_hex(31), "f5" + secrets.token_hex(31)
    with open_store(request, kind, mode) as repository, routing_client(request, kind) as raw:
        now = now_us()
        assert repository.create(old, StoredSession(b"x", 1, now, now + hour), now)
        expires = now + 2 * hour
        with caplog.at_level(logging.WARNING, logger="ormsession"):
            assert repository.rename(old, new, expires, now)
            assert repository.read(old, now) is None
        assert not caplog.records, "a moved marker is an ordinary miss"
        assert raw.get(layout.session(old)) == encode_marker(new, expires, now)
        assert 2 * hour // 1000 - 2000 < raw.pttl(layout.session(old)) <= 2 * hour // 1000
        assert raw.zscore(layout.index_of(old), old) is None, "a marker is never counted"
        assert repository.count(now) == 1
        # moved(): the question the policy asks after a miss (was this id regenerated?)
        assert repository.moved(old, now) is True
        assert repository.moved(old, expires) is False, "judged by the caller's now"
        assert repository.moved(old, now + REPLACED_ID_GRACE_US) is True
        late = now + REPLACED_ID_GRACE_US + 1
        assert repository.moved(old, late) is False, "only for the grace after the rename"
        assert raw.get(layout.session(old)) == encode_marker(new, expires, now), "it stays"
        assert repository.moved(new, now) is False, "a record is not a marker"
        assert repository.moved("ee" + secrets.token_hex(31), now) is False
        # (The check above can fail: a value that is neither a record nor a marker warns.)
        raw.set(layout.session(old), encode_marker(new, expires, now) + b"?", px=60_000)
        with caplog.at_level(logging.WARNING, logger="ormsession"):
            assert repository.read(old, now) is None
        assert "unknown format" in caplog.text
        # The same within one shard (on Cluster: the RENAME script, not PARK).
        near, later = "f5" + secrets.token_hex(31), now + 1
        assert repository.rename(new, near, expires, later)
        assert raw.get(layout.session(new)) == encode_marker(near, expires, later)
        assert repository.moved(new, later + REPLACED_ID_GRACE_US) is True
        assert repository.moved(new, later + REPLACED_ID_GRACE_US + 1) is False


@pytest.mark.parametrize("kind", KINDS)
def test_the_raw_session_id_is_in_no_key_and_no_value(
    request: pytest.FixtureRequest, kind: str
) -> None:
    target = target_for(request, kind)
    prefix = target.options["key_prefix"]
    manager = ormsession.configure(url=target.url, key_prefix=prefix)
    ids = []
    try:
        for n in range(8):
            session = manager.open(None)
            session["n"] = n
            ids.append(cookie_id(manager.save(session)))
        session = manager.open(ids[0])
        manager.regenerate(session)
        manager.save(session)
        ids.append(session.id)
    finally:
        manager.close()
    with node_clients(request, kind) as clients:
        keys = stored_keys(clients, prefix)
    blob = b"\n".join(k.name + b"\n" + k.content for k in keys)
    assert storage_key(ids[-1]).encode() in blob, "sanity: the hashed key is stored"
    for sid in ids:
        assert sid.encode() not in blob
        assert sid[:20].encode() not in blob, "not even a fragment of the id"


@pytest.mark.parametrize("kind", KINDS)
def test_apps_with_different_prefixes_never_see_each_others_sessions(
    request: pytest.FixtureRequest, kind: str
) -> None:
    target = target_for(request, kind)
    prefix = target.options["key_prefix"]
    # The second app's prefix extends the first's: scans and counts must still not mix.
    first = ormsession.configure(url=target.url, key_prefix=prefix)
    second = ormsession.configure(url=target.url, key_prefix=prefix + "other:")
    try:
        mine = [stored_session(first, app=1) for _ in range(3)]
        theirs = stored_session(second, app=2)
        assert (first.count(), second.count()) == (3, 1)
        for sid in mine:
            assert second.open(sid).is_new
        assert first.open(theirs).is_new
        assert second.open(theirs)["app"] == 2
        first.gc()
        assert second.count() == 1
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("kind", KINDS)
def test_configure_round_trips_sessions_sync_and_async(
    request: pytest.FixtureRequest, kind: str
) -> None:
    target = target_for(request, kind)
    prefix = target.options["key_prefix"]
    with ormsession.configure(url=target.url, key_prefix=prefix) as manager:
        sid = stored_session(manager, user="ann")
        session = manager.open(sid)
        manager.regenerate(session)
        new_sid = cookie_id(manager.save(session))
        assert manager.open(sid).is_new and manager.open(new_sid)["user"] == "ann"
        assert manager.count() == 1

    async def scenario() -> None:
        manager = await ormsession.configure_async(url=target.async_url, key_prefix=prefix)
        try:
            session = await manager.open(new_sid)
            assert session["user"] == "ann", "the async twin reads what the sync one wrote"
            session["via"] = "async"
            await manager.regenerate(session)
            await manager.save(session)
            reopened = await manager.open(session.id)
            assert dict(reopened) == {"user": "ann", "via": "async"}
            assert (await manager.open(new_sid)).is_new
            assert await manager.count() == 1
        finally:
            await manager.close()

    asyncio.run(scenario())
