"""The Redis family's user index beyond the contract: what is stored where, that plain
requests never write the index, that the index expires with the last login it serves, and
that entries of sessions gone are pruned by the calls that read them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.redis.base import (
    HEADER_SIZE,
    Get,
    KeyLayout,
    RedisRepositoryBase,
)
from ormsession.repositories.redis.users import ENTRY_GRACE_US, user_index_id
from ormsession.users import new_handle
from tests.redis.helpers import KINDS, node_clients, routing_client
from tests.support.stores import open_manager, open_store, target_for

pytestmark = pytest.mark.timeout(60)

SECOND = US_PER_SECOND
HOUR = 3600 * SECOND


def new_key() -> str:
    return storage_key(SessionIds().generate())


def owner(user_id: str, **fields: Any) -> Owner:
    return Owner(user_id, new_handle(), **fields)


def bound(who: Owner, now: int, ttl: int = HOUR, data: bytes = b'{"a":1}') -> StoredSession:
    return StoredSession(data, 1, now, now + ttl, who)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def repository(request: pytest.FixtureRequest, kind: str) -> Iterator[Any]:
    with open_store(request, kind, "sync") as repository:
        yield repository


@pytest.fixture
def raw(request: pytest.FixtureRequest, kind: str) -> Iterator[Any]:
    """A bytes client reaching every key of ``kind`` (Cluster-aware)."""
    with routing_client(request, kind) as client:
        yield client


def layout_for(request: pytest.FixtureRequest, kind: str) -> KeyLayout:
    return KeyLayout(target_for(request, kind).options["key_prefix"])


def index_state(client: Any, name: str) -> tuple[bytes | None, int]:
    """A user index's exact bytes (DUMP) and its absolute expiry (PEXPIRETIME, ms)."""
    return client.dump(name), client.pexpiretime(name)


# -- the key and the value -----------------------------------------------------------------
def test_the_index_is_named_by_a_hash_of_the_user_id_never_the_id(
    request: pytest.FixtureRequest, kind: str, repository: Any, raw: Any
) -> None:
    user = "ü {tag}:42 " + new_handle()
    now, key = now_us(), new_key()
    assert repository.create(key, bound(owner(user), now), now, now + 2 * HOUR)
    prefix = target_for(request, kind).options["key_prefix"]
    name = f"{prefix}user:{user_index_id(user)}"
    assert raw.type(name) == b"hash"
    assert raw.hkeys(name) == [key.encode()]
    with node_clients(request, kind) as clients:
        names = [n for client in clients for n in client.scan_iter(match=prefix + "*")]
    assert not [n for n in names if b"{tag}" in n or user.encode() in n]


def test_an_unbound_session_is_stored_and_read_as_before(
    repository: Any, raw: Any, request: pytest.FixtureRequest, kind: str
) -> None:
    """Same format (2), same bytes, one GET: binding costs unbound sessions nothing."""
    if not isinstance(repository, RedisRepositoryBase):
        pytest.skip("sync repository only")
    now, key = now_us(), new_key()
    assert repository.create(key, StoredSession(b"data", 1, now, now + HOUR), now)
    value = raw.get(layout_for(request, kind).session(key))
    assert value[0] == 2 and len(value) == HEADER_SIZE + 4
    sent: list[Any] = []
    real = repository._execute

    def execute(command: Any, operation: str) -> Any:
        sent.append(command)
        return real(command, operation)

    repository._execute = execute  # type: ignore[method-assign]
    stored = repository.read(key, now)
    assert stored is not None and stored.owner is None
    assert [type(command) for command in sent] == [Get]


def test_a_bound_value_carries_owner_and_last_write(
    request: pytest.FixtureRequest, kind: str, repository: Any, raw: Any
) -> None:
    who = owner("u-" + new_handle(), user_agent="Mozilla/5.0", ip="192.0.2.1")
    now, key = now_us(), new_key()
    assert repository.create(key, bound(who, now, data=b"payload"), now, None)
    value = raw.get(layout_for(request, kind).session(key))
    assert value[0] == 4 and value.endswith(b"payload")
    assert who.user_id.encode() in value and who.user_agent.encode() in value


# -- plain requests never write the index -----------------------------------------------------
def test_read_update_and_touch_leave_the_index_byte_for_byte(
    request: pytest.FixtureRequest, kind: str, repository: Any, raw: Any
) -> None:
    user = "u-" + new_handle()
    now, key, other = now_us(), new_key(), new_key()
    assert repository.create(key, bound(owner(user), now), now, now + 30 * 24 * HOUR)
    assert repository.create(other, bound(owner(user), now), now, now + 30 * 24 * HOUR)
    name = layout_for(request, kind).user(user)
    before = index_state(raw, name)
    assert before[0] is not None and before[1] > 0
    later = now
    for version in range(1, 4):  # an update by the script, then by IFEQ where there is one
        later += 10 * SECOND
        assert repository.read(key, later) is not None
        assert repository.update(key, b"v%d" % version, later + HOUR, version, later)
        assert repository.touch(other, later + 2 * HOUR, later)
    assert repository.touch(key, later + 3 * HOUR, later + SECOND)
    assert not repository.moved(key, later) and repository.count(later) >= 2
    time.sleep(0.01)  # a PEXPIRE of the same TTL would move the absolute expiry
    assert index_state(raw, name) == before
    listed = {item.key: item.seen_us for item in repository.sessions_of(user, later + SECOND)}
    assert listed == {key: later + SECOND, other: later}, "last seen rides on the writes"


@pytest.mark.parametrize("kind", ["valkey", "cluster"])
def test_no_command_of_a_plain_request_names_the_index(
    request: pytest.FixtureRequest, kind: str, repository: Any, raw: Any
) -> None:
    """MONITOR on a private server (script-issued commands included): reads, updates and
    touches send nothing that names the user index; a login does."""
    user = "u-" + new_handle()
    now, key = now_us(), new_key()
    name = layout_for(request, kind).user(user)
    node = raw.get_node_from_key(name) if kind == "cluster" else None
    monitored = node.redis_connection if node is not None else raw
    seen: list[bytes] = []
    with monitored.monitor() as monitor:
        ready = threading.Event()

        def watch() -> None:
            ready.set()
            for event in monitor.listen():
                command = event["command"]
                seen.append(command.encode() if isinstance(command, str) else command)
                if "monitor-done" in str(command):
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        ready.wait(5)
        assert repository.create(key, bound(owner(user), now), now, now + HOUR)
        for version in range(1, 4):
            assert repository.read(key, now) is not None
            assert repository.update(key, b"{}", now + HOUR, version, now) == version + 1
            assert repository.touch(key, now + HOUR, now)
        monitored.echo("monitor-done")
        watcher.join(10)
    marker = name.encode()
    named = [command for command in seen if marker in command]
    assert named, "the login's own index write must show (or MONITOR saw nothing)"
    writes = [command for command in named if b"HSET" in command.upper()]
    assert len(writes) == 1, named


# -- the index's own TTL ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["redis", "cluster"])
@pytest.mark.parametrize("via", ["create", "login"])
def test_the_index_lives_as_long_as_the_longest_login(
    request: pytest.FixtureRequest, kind: str, via: str, repository: Any, raw: Any
) -> None:
    user = "u-" + new_handle()
    name = layout_for(request, kind).user(user)
    now = now_us()

    def bind(until: int | None) -> None:
        key = new_key()
        who = owner(user)
        if via == "create":
            assert repository.create(key, bound(who, now), now, until)
            return
        assert repository.create(key, StoredSession(b"{}", 1, now, now + HOUR), now)
        assert repository.rename(key, new_key(), now + HOUR, now, who, until)

    bind(now + 2 * HOUR)
    assert 2 * 3600_000 - 2000 < raw.pttl(name) <= 2 * 3600_000
    bind(now + HOUR)  # an earlier end never shortens it
    assert raw.pttl(name) > HOUR // 1000
    bind(now + 3 * HOUR)
    assert raw.pttl(name) > 2 * 3600_000
    bind(None)  # a login without an absolute timeout: the index never expires
    assert raw.pttl(name) == -1
    bind(now + HOUR)
    assert raw.pttl(name) == -1
    assert len(repository.sessions_of(user, now)) == 5


def test_a_regenerate_keeps_the_index_at_least_as_long_as_the_session(
    request: pytest.FixtureRequest, kind: str, repository: Any, raw: Any
) -> None:
    user = "u-" + new_handle()
    name = layout_for(request, kind).user(user)
    now, key, new = now_us(), new_key(), new_key()
    assert repository.create(key, bound(owner(user), now), now, now + HOUR)
    assert repository.rename(key, new, now + 5 * HOUR, now)
    assert raw.pttl(name) > 4 * 3600_000
    assert [item.key for item in repository.sessions_of(user, now)] == [new]


# -- pruning -------------------------------------------------------------------------------
def _entries(raw: Any, name: str) -> set[str]:
    return {field.decode() for field in raw.hkeys(name)}


def test_expired_and_deleted_sessions_leave_the_index_lazily(
    request: pytest.FixtureRequest, kind: str, repository: Any, raw: Any
) -> None:
    """On plain Redis and Sentinel a delete takes the entry out at once and an expired
    session's entry goes with the next listing; on Cluster the index is in another slot,
    so both go with the first listing after the entry's grace (a create in flight files
    its key just before writing it)."""
    user = "u-" + new_handle()
    name = layout_for(request, kind).user(user)
    now = now_us()
    short, deleted, kept = new_key(), new_key(), new_key()
    assert repository.create(short, bound(owner(user), now, ttl=50_000), now, now + HOUR)
    for key in (deleted, kept):
        assert repository.create(key, bound(owner(user), now), now, now + HOUR)
    repository.delete(deleted)
    cluster = kind.endswith("cluster")
    assert _entries(raw, name) == ({short, kept, deleted} if cluster else {short, kept})
    time.sleep(0.1)  # Redis expires the short one
    assert not raw.exists(layout_for(request, kind).session(short))
    later = now_us()
    assert [item.key for item in repository.sessions_of(user, later)] == [kept]
    if cluster:
        assert _entries(raw, name) == {short, kept, deleted}, "kept through the grace"
        later += ENTRY_GRACE_US
        assert [item.key for item in repository.sessions_of(user, later)] == [kept]
    assert _entries(raw, name) == {kept}


def test_revoke_all_prunes_what_it_passes(
    request: pytest.FixtureRequest, kind: str, repository: Any, raw: Any
) -> None:
    user = "u-" + new_handle()
    name = layout_for(request, kind).user(user)
    now = now_us()
    keys = [new_key() for _ in range(3)]
    for key in keys:
        assert repository.create(key, bound(owner(user), now), now, now + HOUR)
    assert repository.revoke_all(user, keys[0], now) == 2
    assert _entries(raw, name) == {keys[0]}
    assert repository.revoke_all(user, None, now) == 1
    assert _entries(raw, name) == set()
    assert not raw.exists(name), "an empty hash is no key"


def test_a_login_as_another_user_moves_the_entry(
    request: pytest.FixtureRequest, kind: str, repository: Any, raw: Any
) -> None:
    first, second = "u-" + new_handle(), "v-" + new_handle()
    layout = layout_for(request, kind)
    now, old, new = now_us(), new_key(), new_key()
    who = owner(first)
    assert repository.create(old, bound(who, now), now, now + HOUR)
    assert repository.rename(old, new, now + HOUR, now, owner(second), now + HOUR)
    assert _entries(raw, layout.user(second)) == {new}
    if not kind.endswith("cluster"):
        assert _entries(raw, layout.user(first)) == set()
    # On Cluster the first user's entry names the old key, a marker: listed never, and a
    # revoke through it stops at the second user's session.
    assert repository.sessions_of(first, now) == []
    assert repository.revoke_all(first, None, now) == 0
    assert repository.read(new, now) is not None
    assert repository.moved(old, now), "the marker stays for the second user's requests"


def test_an_async_repository_lists_and_revokes_the_same(
    request: pytest.FixtureRequest, kind: str, raw: Any
) -> None:
    user = "u-" + new_handle()
    now = now_us()
    with open_store(request, kind, "async") as repository:
        keys = [new_key() for _ in range(2)]
        whos = [owner(user) for _ in keys]
        for key, who in zip(keys, whos, strict=True):
            assert repository.create(key, bound(who, now), now, now + HOUR)
        assert {item.key for item in repository.sessions_of(user, now)} == set(keys)
        new = new_key()
        assert repository.rename(keys[0], new, now + HOUR, now)
        assert repository.revoke(user, whos[0].handle, now) is True
        assert repository.read(new, now) is None
        assert repository.revoke_all(user, None, now) == 1
        assert repository.sessions_of(user, now) == []


def test_a_store_error_in_a_listing_is_typed(repository: Any) -> None:
    if not isinstance(repository, RedisRepositoryBase):
        pytest.skip("sync repository only")
    from ormsession.errors import StoreUnavailableError
    from ormsession.repositories.redis.errors import wrap_redis_error

    def execute(command: Any, operation: str) -> Any:
        lost = redis.ConnectionError("injected")
        raise wrap_redis_error(lost, operation=operation, where="test") from lost

    repository._execute = execute  # type: ignore[method-assign]
    for call in (
        lambda: repository.sessions_of("u", now_us()),
        lambda: repository.revoke("u", new_handle(), now_us()),
        lambda: repository.revoke_all("u", None, now_us()),
    ):
        with pytest.raises(StoreUnavailableError):
            call()


# -- through the manager -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["redis", "cluster", "valkey_sentinel"])
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("absolute", [timedelta(days=30), None], ids=["30-days", "no-limit"])
def test_a_login_keeps_the_index_as_long_as_the_absolute_timeout(
    request: pytest.FixtureRequest,
    kind: str,
    mode: str,
    absolute: timedelta | None,
    raw: Any,
) -> None:
    """The index lives until the login's absolute timeout ends; without one, for ever
    (until every session is revoked: an empty hash is no key)."""
    user_id = "u-" + new_handle()
    name = layout_for(request, kind).user(user_id)
    with open_manager(request, kind, mode, absolute_timeout=absolute) as manager:
        sessions = []
        for _ in range(2):
            session = manager.open(None)
            session["cart"] = [1]
            manager.login(session, user_id, user_agent="test/1", ip="192.0.2.7")
            manager.save(session)
            sessions.append(session)
        ttl = raw.pttl(name)
        if absolute is None:
            assert ttl == -1
        else:
            assert absolute.total_seconds() * 1000 - 5000 < ttl <= absolute.total_seconds() * 1000
        listed = manager.sessions_of(user_id, current=sessions[0])
        assert [item.current for item in listed].count(True) == 1
        assert {item.ip for item in listed} == {"192.0.2.7"}
        assert manager.revoke_all(user_id) == 2
        assert not raw.exists(name)


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_each_call_costs_the_round_trips_the_docs_say(kind: str, repository: Any) -> None:
    """docs/stores/redis.md, "A user's sessions": one script a call on plain Redis; on
    Cluster the index's own steps (keys on two masters, so a move crosses slots)."""
    sent: list[Any] = []
    real = repository._execute

    def execute(command: Any, operation: str) -> Any:
        sent.append(command)
        return real(command, operation)

    repository._execute = execute  # type: ignore[method-assign]

    def cost(call: Any) -> int:
        sent.clear()
        call()
        return len(sent)

    user_id, now = "u-" + new_handle(), now_us()
    key, plain = "00" + new_key()[2:], new_key()
    who = owner(user_id)
    moved, login = "ff" + new_key()[2:], "80" + new_key()[2:]
    cluster = kind == "cluster"
    assert cost(lambda: repository.create(key, bound(who, now), now, now + HOUR)) == 1 + cluster
    assert (
        cost(lambda: repository.create(plain, StoredSession(b"{}", 1, now, now + HOUR), now)) == 1
    )
    assert cost(lambda: repository.read(key, now)) == 1
    assert cost(lambda: repository.touch(key, now + 2 * HOUR, now)) == 1
    assert cost(lambda: repository.rename(key, moved, now + HOUR, now)) == (4 if cluster else 1)
    relogin = owner(user_id)
    assert cost(lambda: repository.rename(plain, login, now + HOUR, now, relogin, None)) == (
        4 if cluster else 1
    )
    if cluster:  # a bound session in one slot: the RENAME script says "bound" first
        again = moved[:2] + new_key()[2:]
        assert cost(lambda: repository.rename(moved, again, now + HOUR, now)) == 5
    assert cost(lambda: repository.sessions_of(user_id, now)) == (2 if cluster else 1)
    # On Cluster the old key's entry (a marker now) is one more hop, with nothing to end.
    assert cost(lambda: repository.revoke(user_id, relogin.handle, now)) == (3 if cluster else 1)
    # Three keys reached (two markers, one session), each hopped once, then the clean-up.
    assert cost(lambda: repository.revoke_all(user_id, None, now)) == (5 if cluster else 1)
