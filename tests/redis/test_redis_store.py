"""The plain Redis store on real servers: outages, credentials, ready clients, round trips."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

import ormsession
from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import StoredSession
from ormsession.repositories.buckets import DEFAULT_RESOLUTION, place
from ormsession.repositories.redis.base import KeyLayout, decode_record, stored_bucket
from ormsession.repositories.redis.factory import open_store
from tests.manager.test_lifecycle import stored_session
from tests.support.redis_servers import RedisProcess, free_port

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 0.5
HOUR = 3600 * US_PER_SECOND


def new_key() -> str:
    return storage_key(SessionIds().generate())


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture(scope="module", params=["redis", "valkey"])
def protected_redis(request: pytest.FixtureRequest) -> Iterator[RedisProcess]:
    """A private node with a password: redis-server, or valkey-server."""
    if request.param == "valkey":
        server: str | None = request.getfixturevalue("valkey_binary")
    else:
        request.getfixturevalue("redis_binaries")
        server = None
    with RedisProcess(password="the-right-pw", server=server) as node:
        yield node


def _open_fails_fast(url: str, *, limit: float) -> StoreError:
    """``configure()`` (its start-up read) raises a store error within ``limit``, and so
    does the first ``open`` of an app that may start while the store is down."""
    start = time.monotonic()
    with pytest.raises(StoreError) as caught:
        ormsession.configure(url=url, store_timeout=TIMEOUT)
    assert time.monotonic() - start < limit, "must fail within the configured timeout"
    manager = ormsession.configure(url=url, store_timeout=TIMEOUT, on_store_error="fresh")
    start = time.monotonic()
    try:
        assert manager.open(SessionIds().generate()).unavailable
    finally:
        manager.close()
    assert time.monotonic() - start < limit, "must fail within the configured timeout"
    return caught.value


async def _open_fails_fast_async(url: str, *, limit: float) -> StoreError:
    start = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await ormsession.configure_async(url=url, store_timeout=TIMEOUT)
    assert time.monotonic() - start < limit
    manager = await ormsession.configure_async(
        url=url, store_timeout=TIMEOUT, on_store_error="fresh"
    )
    start = time.monotonic()
    try:
        assert (await manager.open(SessionIds().generate())).unavailable
    finally:
        await manager.close()
    assert time.monotonic() - start < limit
    return caught.value


# -- outages ------------------------------------------------------------------------------
def test_redis_down_is_a_typed_error_at_once() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    error = _open_fails_fast(url, limit=TIMEOUT)
    assert isinstance(error, StoreUnavailableError)
    assert "unavailable during read" in str(error) and "Connection refused" in str(error)
    error = asyncio.run(_open_fails_fast_async(url, limit=TIMEOUT))
    assert isinstance(error, StoreUnavailableError)


def test_a_hung_redis_times_out_within_the_configured_timeout(silent_port: int) -> None:
    # No retry on a timeout: one socket timeout, not three with backoff (redis-py 8's default).
    url = f"redis://127.0.0.1:{silent_port}/0"
    error = _open_fails_fast(url, limit=TIMEOUT + 0.3)
    assert isinstance(error, StoreUnavailableError) and "Timeout" in str(error)
    error = asyncio.run(_open_fails_fast_async(url, limit=TIMEOUT + 0.3))
    assert isinstance(error, StoreUnavailableError)


def test_a_wrong_password_is_a_typed_error_without_the_password(
    protected_redis: RedisProcess,
) -> None:
    host, port = protected_redis.address
    url = f"redis://:wrong-pw-123@{host}:{port}/0"
    for error in (
        _open_fails_fast(url, limit=TIMEOUT),
        asyncio.run(_open_fails_fast_async(url, limit=TIMEOUT)),
    ):
        assert isinstance(error, StoreUnavailableError)
        assert "wrong-pw-123" not in str(error) and "the-right-pw" not in str(error)
        assert "redis://:***@" in str(error)
    with ormsession.configure(url=f"redis://:the-right-pw@{host}:{port}/0") as manager:
        assert manager.open(stored_session(manager, ok=1))["ok"] == 1


def test_a_non_session_value_under_a_session_key_is_a_store_error(
    single_node: tuple[str, str],
) -> None:
    redis_url, redis_key_prefix = single_node
    repository = open_store(
        redis_url, ormsession.load_config(key_prefix=redis_key_prefix), want_async=False
    )
    key, now = new_key(), now_us()
    try:
        with redis.Redis.from_url(redis_url) as raw:
            raw.hset(KeyLayout(redis_key_prefix).session(key), "x", "1")
            raw.pexpire(KeyLayout(redis_key_prefix).session(key), 60_000)
            with pytest.raises(StoreError) as caught:
                repository.create(key, StoredSession(b"{}", 1, now, now + HOUR), now)
            assert not isinstance(caught.value, StoreUnavailableError)
            assert "WRONGTYPE" in str(caught.value)
            # A string in a foreign format is not a session: absent, and replaceable.
            other = new_key()
            raw.set(KeyLayout(redis_key_prefix).session(other), b"beego gob", px=60_000)
            assert repository.read(other, now) is None
            assert repository.create(other, StoredSession(b"{}", 1, now, now + HOUR), now)
            assert repository.read(other, now) is not None
    finally:
        repository.close()


# -- clients --------------------------------------------------------------------------------
def _connected(pool: Any) -> list[bool]:
    return [bool(c.is_connected) for c in pool._available_connections]


def test_a_ready_client_is_used_and_never_closed(single_node: tuple[str, str]) -> None:
    redis_url, redis_key_prefix = single_node
    client = redis.Redis.from_url(redis_url, decode_responses=True)  # the app decodes; we don't
    try:
        manager = ormsession.configure(client=client, key_prefix=redis_key_prefix)
        sid = stored_session(manager, blob=b"\x00\xff", text="zoë")
        assert dict(manager.open(sid)) == {"blob": b"\x00\xff", "text": "zoë"}
        assert manager.count() == 1
        manager.close()
        assert _connected(client.connection_pool) == [True], "the app's pool stays connected"
        assert client.get("no-such-key-ormsession") is None
    finally:
        client.close()


def test_a_ready_async_client_is_used_and_never_closed(single_node: tuple[str, str]) -> None:
    redis_url, redis_key_prefix = single_node

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        try:
            manager = await ormsession.configure_async(client=client, key_prefix=redis_key_prefix)
            session = await manager.open(None)
            session["n"] = 1
            await manager.save(session)
            assert (await manager.open(session.id))["n"] == 1
            await manager.close()
            assert _connected(client.connection_pool) == [True]
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_what_a_url_opened_is_closed(single_node: tuple[str, str]) -> None:
    redis_url, redis_key_prefix = single_node
    manager = ormsession.configure(url=redis_url, key_prefix=redis_key_prefix)
    stored_session(manager, n=1)
    pool = manager.repository.client.connection_pool
    assert _connected(pool) == [True]
    manager.close()
    assert _connected(pool) in ([], [False])


def test_sync_and_async_clients_are_not_mixed_up(redis_url: str) -> None:
    with pytest.raises(ormsession.ConfigurationError, match="configure_async"):
        ormsession.configure(client=redis.asyncio.Redis.from_url(redis_url))
    client = redis.Redis.from_url(redis_url)
    with pytest.raises(ormsession.ConfigurationError, match=r"redis\.asyncio client"):
        asyncio.run(ormsession.configure_async(client=client))
    client.close()


def test_a_sentinel_object_is_refused_with_a_hint() -> None:
    from redis.sentinel import Sentinel

    with pytest.raises(ormsession.ConfigurationError, match="master_for"):
        ormsession.configure(client=Sentinel([("127.0.0.1", 1)]))


# -- one round trip each ----------------------------------------------------------------------
#: Commands a client sends; the rest of INFO commandstats are commands run inside scripts.
_CLIENT_COMMANDS = {"get", "eval", "evalsha", "zcount", "wait"}


def _calls(client: redis.Redis, *also: str) -> dict[str, int]:
    """Client-sent commands the server ran since the last CONFIG RESETSTAT (and ``also``:
    SET, where no script ran to send one)."""
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    client.config_resetstat()
    return {name: n for name, n in calls.items() if name in _CLIENT_COMMANDS | set(also)}


def test_each_operation_is_one_round_trip_and_survives_a_script_flush(
    protected_redis: RedisProcess,
) -> None:
    host, port = protected_redis.address
    url = f"redis://:the-right-pw@{host}:{port}/0"
    # Valkey (8.1 and later) has SET ... IFEQ: an update of the value just read is one SET.
    valkey = protected_redis.server is not None
    write = {"set": 1} if valkey else {"evalsha": 1}
    also = ("set",) if valkey else ()  # on Redis, scripts' SETs are counted as SETs too
    with (
        ormsession.configure(url=url, key_prefix="rt:") as manager,
        protected_redis.client() as admin,
    ):
        sid = stored_session(manager, n=0)
        session = manager.open(sid)
        for n in (1, 2):  # the first run of a script on a server: NOSCRIPT, then EVAL
            session["n"] = n
            manager.regenerate(session)
            manager.save(session)
        _calls(admin)
        manager.open(session.id)
        assert _calls(admin) == {"get": 1}, "a read is one GET"
        session["n"] = 3
        manager.save(session)
        assert _calls(admin, *also) == write, "a write is one EVALSHA, or one SET IFEQ"
        manager.regenerate(session)
        assert _calls(admin) == {"evalsha": 1}, "rename is one script on plain Redis"
        assert manager.count() == 1
        assert _calls(admin) == {"zcount": 256}, "count: one pipeline of 256 ZCOUNTs"
        admin.script_flush()
        session["n"] = 4
        manager.save(session)
        assert _calls(admin) == {"evalsha": 1, "eval": 1}, "a flushed script is sent again"
        session["n"] = 5
        manager.save(session)
        assert _calls(admin) == {"evalsha": 1}
        assert manager.open(session.id)["n"] == 5
        _calls(admin)
        session = manager.open(session.id)  # the next request: read, then write
        session["n"] = 6
        manager.save(session)
        assert _calls(admin, *also) == {"get": 1} | write
        assert manager.repository.set_if_equal is valkey


def test_creates_and_gc_trim_the_count_index(single_node: tuple[str, str]) -> None:
    redis_url, redis_key_prefix = single_node
    settings = ormsession.load_config(key_prefix=redis_key_prefix)
    layout = KeyLayout(redis_key_prefix)
    repository = open_store(redis_url, settings, want_async=False)
    now, later = now_us(), now_us() + 2 * HOUR
    shard_a = ["ab" + secrets.token_hex(31) for _ in range(5)]
    shard_b = ["cd" + secrets.token_hex(31) for _ in range(5)]
    try:
        for key in shard_a + shard_b:
            assert repository.create(key, StoredSession(b"{}", 1, now, now + HOUR), now)
        with redis.Redis.from_url(redis_url) as raw:
            index_a, index_b = layout.index_of(shard_a[0]), layout.index_of(shard_b[0])
            assert (raw.zcard(index_a), raw.zcard(index_b)) == (5, 5)
            # Counted in its bucket (1/32-1/64 of its lifetime wide): gone once that ends.
            width = (1 << place(now + HOUR, now, DEFAULT_RESOLUTION).level) * US_PER_SECOND
            assert repository.count(now + HOUR - 1) == 10
            assert repository.count(now + HOUR + width) == 0
            fresh = "ab" + secrets.token_hex(31)
            assert repository.create(fresh, StoredSession(b"{}", 1, later, later + HOUR), later)
            assert raw.zcard(index_a) == 1, "a create trims its shard of expired members"
            assert raw.zcard(index_b) == 5
            assert repository.delete_expired(later, 1000) == 0  # native TTLs: nothing to delete
            assert raw.zcard(index_b) == 0, "gc trims every shard"
            assert repository.count(later) == 1
    finally:
        repository.close()


def test_every_script_stores_exact_microsecond_times(single_node: tuple[str, str]) -> None:
    """The scripts get their times packed as 8-byte integers and hand them to Redis as Lua
    numbers: the stored expiries and the index scores (the end of the session's count
    bucket) must come out exact to the microsecond (a time turned into text by Lua itself
    would read 1.764e+15 and lose the last digits)."""
    redis_url, redis_key_prefix = single_node
    settings = ormsession.load_config(key_prefix=redis_key_prefix)
    layout = KeyLayout(redis_key_prefix)
    repository = open_store(redis_url, settings, want_async=False)
    now = now_us() // US_PER_SECOND * US_PER_SECOND + 123_457
    key, renamed = new_key(), new_key()
    odd = 654_321

    def assert_exact(key: str, expires: int, version: int) -> None:
        value = raw.get(layout.session(key)) or b""
        record = decode_record(value)
        assert record is not None
        assert (record.version, record.created_us, record.expires_us) == (version, now, expires)
        bucket = stored_bucket(value)
        assert bucket.holds(expires), "the header names the bucket its expiry is in"
        score = raw.zscore(layout.index_of(key), key)
        assert score is not None and int(score) == bucket.end * US_PER_SECOND

    try:
        with redis.Redis.from_url(redis_url) as raw:
            assert repository.create(key, StoredSession(b"{}", 1, now, now + HOUR + odd), now)
            assert_exact(key, now + HOUR + odd, 1)
            assert repository.update(key, b'{"a":1}', now + 2 * HOUR + odd, 1, now) == 2
            assert_exact(key, now + 2 * HOUR + odd, 2)
            assert repository.update(key, b'{"a":2}', now + 5 * HOUR, 1, now) is None
            assert repository.touch(key, now + 3 * HOUR + odd, now)
            assert_exact(key, now + 3 * HOUR + odd, 2)
            assert repository.rename(key, renamed, now + 4 * HOUR + odd, now)
            assert_exact(renamed, now + 4 * HOUR + odd, 2)
            assert raw.zscore(layout.index_of(key), key) is None, "the old member is gone"
            assert repository.read(renamed, now).data == b'{"a":1}'  # type: ignore[union-attr]
            repository.delete(renamed)
            assert raw.zscore(layout.index_of(renamed), renamed) is None
            assert not raw.exists(layout.session(renamed))
    finally:
        repository.close()
