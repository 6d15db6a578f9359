"""The Redis count index files sessions by expiry bucket: most writes leave it alone, count
never misses a live session and forgets an expired one within its bucket. On the real
shared Redis."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis

import ormsession
from ormsession.errors import ConfigurationError
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.repositories.base import StoredSession
from ormsession.repositories.buckets import DEFAULT_RESOLUTION, place
from ormsession.repositories.redis.base import stored_bucket
from ormsession.repositories.redis.factory import open_store
from ormsession.repositories.redis.repository import RedisRepository

SECOND = US_PER_SECOND
HOUR = 3600 * SECOND
DAY = 24 * HOUR


@pytest.fixture
def raw(single_node: tuple[str, str]) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(single_node[0]) as client:
        yield client


@pytest.fixture
def repository(single_node: tuple[str, str]) -> Iterator[RedisRepository]:
    redis_url, redis_key_prefix = single_node
    repository = open_store(
        redis_url, ormsession.load_config(key_prefix=redis_key_prefix), want_async=False
    )
    try:
        yield repository
    finally:
        repository.close()


def new_key() -> str:
    return secrets.token_hex(32)


def mid_bucket(lifetime: int) -> int:
    """A now whose ``now + lifetime`` lies one second into its count bucket, so an expiry
    a second later stays in that bucket (buckets are 2**n s, aligned to the epoch)."""
    aligned = now_us() // (1 << 20) // SECOND * (1 << 20) * SECOND
    return aligned + SECOND - lifetime


def test_a_write_within_the_bucket_leaves_the_index_alone(
    repository: RedisRepository, raw: redis.Redis
) -> None:
    layout = repository.layout
    now, key = mid_bucket(DAY), new_key()
    index, member = layout.index_of(key), key
    assert repository.create(key, StoredSession(b"{}", 1, now, now + DAY), now)
    first = raw.zscore(index, member)
    assert first is not None
    # Take the member out behind the store's back: a write that re-filed it would put it back.
    raw.zrem(index, member)
    assert repository.update(key, b'{"a":1}', now + DAY + SECOND, 1, now) == 2
    assert repository.touch(key, now + DAY + 2 * SECOND, now)
    assert raw.zscore(index, member) is None, "the expiry stayed in its bucket: no ZADD"
    value = raw.get(layout.session(key)) or b""
    assert stored_bucket(value).holds(now + DAY + 2 * SECOND)
    # An expiry past the bucket's end files it again, under the new bucket.
    later = now + DAY + 3 * HOUR
    assert repository.update(key, b'{"a":2}', later, 2, now) == 3
    bucket = stored_bucket(raw.get(layout.session(key)) or b"")
    assert bucket.holds(later) and bucket != stored_bucket(value)
    assert raw.zscore(index, member) == bucket.end * SECOND
    assert repository.count(later - 1) >= 1


def test_count_never_misses_a_live_session_and_forgets_it_within_its_bucket(
    repository: RedisRepository,
) -> None:
    now = now_us()
    start = repository.count(now)
    lifetimes = [30 * SECOND, 10 * 60 * SECOND, DAY]
    for lifetime in lifetimes:
        assert repository.create(new_key(), StoredSession(b"{}", 1, now, now + lifetime), now)
    for lifetime in lifetimes:
        width = (1 << place(now + lifetime, now, DEFAULT_RESOLUTION).level) * SECOND
        assert width <= max(SECOND, lifetime // DEFAULT_RESOLUTION)
        live = sum(1 for other in lifetimes if other >= lifetime)
        assert repository.count(now + lifetime - 1) - start == live, "a live one is counted"
        assert repository.count(now + lifetime + width) - start == live - 1, "forgotten"


def test_a_finer_count_resolution_files_closer_to_the_expiry(
    single_node: tuple[str, str], raw: redis.Redis
) -> None:
    redis_url, redis_key_prefix = single_node
    url = f"{redis_url}?count_resolution=1024"
    repository = open_store(
        url, ormsession.load_config(key_prefix=redis_key_prefix), want_async=False
    )
    try:
        now, key = now_us(), new_key()
        assert repository.create(key, StoredSession(b"{}", 1, now, now + DAY), now)
        score = raw.zscore(repository.layout.index_of(key), key)
        assert score is not None
        assert now + DAY <= score <= now + DAY + DAY // 1024, "within 1/1024 of a day"
    finally:
        repository.close()
    for bad in ("0", "1025", "x"):
        with pytest.raises(ConfigurationError, match="count_resolution"):
            open_store(
                f"{redis_url}?count_resolution={bad}", ormsession.load_config(), want_async=False
            )


def test_a_repository_refuses_a_resolution_out_of_range(raw: redis.Redis) -> None:
    for bad in (0, 1025):
        with pytest.raises(ConfigurationError, match="count_resolution must be 1-1024"):
            RedisRepository(raw, count_resolution=bad)
