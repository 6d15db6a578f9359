"""The repository contract (ormsession/repositories/base.py), one test per sentence.

Every store runs this file, sync and async (async ones through a facade), so each behaviour
is defined once. Times are µs, as the contract has them: ``now`` is the real clock, and
"later" is passed as the ``now`` of a later call; stores with native TTLs must still judge
expiry by the ``now`` they are given.
"""

from __future__ import annotations

import os
import threading

import pytest

from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import SessionRepository, StoredSession

SECOND = US_PER_SECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
#: Stores keep times to the µs; a millisecond of slack for any rounding on the way.
TOLERANCE = 1000


def new_key() -> str:
    return storage_key(SessionIds().generate())


def record(
    now: int, data: bytes = b'{"a":1}', *, ttl: int = HOUR, version: int = 1
) -> StoredSession:
    return StoredSession(data=data, version=version, created_us=now, expires_us=now + ttl)


def assert_same_time(actual: int, expected: int) -> None:
    assert type(actual) is int, "stores hand back times as int µs"
    assert abs(actual - expected) <= TOLERANCE, (actual, expected)


def assert_record(actual: StoredSession | None, expected: StoredSession) -> None:
    assert actual is not None
    assert actual.data == expected.data
    assert actual.version == expected.version
    assert_same_time(actual.created_us, expected.created_us)
    assert_same_time(actual.expires_us, expected.expires_us)


# -- read / create ---------------------------------------------------------------------
def test_read_of_a_missing_key_is_none(repository: SessionRepository) -> None:
    assert repository.read(new_key(), now_us()) is None


def test_create_then_read_round_trips_every_field(repository: SessionRepository) -> None:
    now, key = now_us(), new_key()
    stored = record(now, b'{"user":42}', version=1)
    assert repository.create(key, stored, now) is True
    assert_record(repository.read(key, now), stored)


def test_binary_data_round_trips_exactly(repository: SessionRepository) -> None:
    now, key = now_us(), new_key()
    payload = bytes(range(256)) * 4 + os.urandom(1 << 20)  # every byte value, and 1 MiB
    assert repository.create(key, record(now, payload), now)
    result = repository.read(key, now)
    assert result is not None and result.data == payload


def test_create_refuses_a_key_held_by_a_live_record(repository: SessionRepository) -> None:
    now, key = now_us(), new_key()
    first = record(now, b"first")
    assert repository.create(key, first, now)
    assert repository.create(key, record(now, b"second"), now) is False
    assert_record(repository.read(key, now), first)


def test_create_replaces_an_expired_record(repository: SessionRepository) -> None:
    now, key = now_us(), new_key()
    assert repository.create(key, record(now, b"old", ttl=30 * SECOND), now)
    later = now + 31 * SECOND
    replacement = record(later, b"new")
    assert repository.create(key, replacement, later) is True
    assert_record(repository.read(key, later), replacement)


def test_read_judges_expiry_by_the_given_now(repository: SessionRepository) -> None:
    now, key = now_us(), new_key()
    stored = record(now, ttl=30 * SECOND)
    assert repository.create(key, stored, now)
    assert repository.read(key, now + 29 * SECOND) is not None
    assert repository.read(key, stored.expires_us) is None  # expires_us <= now: gone
    assert repository.read(key, now + 31 * SECOND) is None


# -- update (compare-and-set) -----------------------------------------------------------
def test_update_with_the_current_version_replaces_data_and_expiry(
    repository: SessionRepository,
) -> None:
    now, key = now_us(), new_key()
    assert repository.create(key, record(now, b"v1"), now)
    new_expiry = now + 2 * HOUR
    assert repository.update(key, b"v2", new_expiry, 1, now) == 2
    assert repository.update(key, b"v3", new_expiry, 2, now) == 3
    assert_record(repository.read(key, now), StoredSession(b"v3", 3, now, new_expiry))


def test_update_with_a_stale_version_changes_nothing(repository: SessionRepository) -> None:
    now, key = now_us(), new_key()
    stored = record(now, b"v1")
    assert repository.create(key, stored, now)
    assert repository.update(key, b"v2", now + 2 * HOUR, 1, now) == 2
    assert repository.update(key, b"stale", now + 3 * HOUR, 1, now) is None
    after = repository.read(key, now)
    assert after is not None and after.data == b"v2" and after.version == 2
    assert_same_time(after.expires_us, now + 2 * HOUR)


def test_update_of_a_missing_key_is_none_and_creates_nothing(
    repository: SessionRepository,
) -> None:
    now, key = now_us(), new_key()
    assert repository.update(key, b"x", now + HOUR, 1, now) is None
    assert repository.read(key, now) is None


def test_update_of_an_expired_record_is_none(repository: SessionRepository) -> None:
    now, key = now_us(), new_key()
    assert repository.create(key, record(now, ttl=30 * SECOND), now)
    later = now + 31 * SECOND
    assert repository.update(key, b"revived?", later + HOUR, 1, later) is None
    assert repository.read(key, later) is None


def test_concurrent_updates_of_one_version_let_exactly_one_win(
    repository: SessionRepository,
) -> None:
    now, key = now_us(), new_key()
    assert repository.create(key, record(now, b"v1"), now)
    results: list[int | None] = []
    barrier = threading.Barrier(4)

    def writer(n: int) -> None:
        barrier.wait()
        results.append(repository.update(key, f"writer {n}".encode(), now + HOUR, 1, now))

    if type(repository).__name__ == "SyncFacade":
        # One event loop drives the async twin: the calls interleave at awaits instead.
        for n in range(4):
            results.append(repository.update(key, f"writer {n}".encode(), now + HOUR, 1, now))
    else:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results, key=lambda r: r or 0) == [None, None, None, 2]
    final = repository.read(key, now)
    assert final is not None and final.version == 2


# -- touch ------------------------------------------------------------------------------
def test_touch_moves_only_the_expiry(repository: SessionRepository) -> None:
    now, key = now_us(), new_key()
    stored = record(now, b"data")
    assert repository.create(key, stored, now)
    assert repository.touch(key, now + 5 * HOUR, now) is True
    after = repository.read(key, now)
    assert after is not None and after.data == b"data" and after.version == 1
    assert_same_time(after.expires_us, now + 5 * HOUR)
    # the touched expiry is what reads judge by
    assert repository.read(key, now + 2 * HOUR) is not None


def test_touch_of_missing_or_expired_records_is_false(repository: SessionRepository) -> None:
    now, key = now_us(), new_key()
    assert repository.touch(key, now + HOUR, now) is False
    assert repository.read(key, now) is None
    assert repository.create(key, record(now, ttl=30 * SECOND), now)
    later = now + 31 * SECOND
    assert repository.touch(key, later + HOUR, later) is False
    assert repository.read(key, later) is None


# -- delete -----------------------------------------------------------------------------
def test_delete_removes_and_is_idempotent(repository: SessionRepository) -> None:
    now, key, other = now_us(), new_key(), new_key()
    assert repository.create(key, record(now), now)
    assert repository.create(other, record(now, b"other"), now)
    repository.delete(key)
    assert repository.read(key, now) is None
    repository.delete(key)
    repository.delete(new_key())
    assert repository.read(other, now) is not None, "delete touched another key"


# -- rename -----------------------------------------------------------------------------
def test_rename_moves_the_record_and_keeps_data_version_and_creation(
    repository: SessionRepository,
) -> None:
    now, old, new = now_us(), new_key(), new_key()
    created = now - 5 * MINUTE
    assert repository.create(old, StoredSession(b"payload", 1, created, now + HOUR), now)
    assert repository.update(old, b"payload2", now + HOUR, 1, now) == 2
    assert repository.rename(old, new, now + 3 * HOUR, now) is True
    assert repository.read(old, now) is None
    assert_record(repository.read(new, now), StoredSession(b"payload2", 2, created, now + 3 * HOUR))
    # the version survives, so compare-and-set continues under the new key
    assert repository.update(new, b"payload3", now + HOUR, 2, now) == 3


def test_rename_of_missing_or_expired_records_is_false(repository: SessionRepository) -> None:
    now, old, new = now_us(), new_key(), new_key()
    assert repository.rename(old, new, now + HOUR, now) is False
    assert repository.read(new, now) is None
    assert repository.create(old, record(now, ttl=30 * SECOND), now)
    later = now + 31 * SECOND
    assert repository.rename(old, new, later + HOUR, later) is False
    assert repository.read(new, later) is None


# -- count / delete_expired ---------------------------------------------------------------
def test_count_includes_only_live_records(repository: SessionRepository) -> None:
    now = now_us()
    start = repository.count(now)
    for ttl in (30, 30, 3600, 3600, 3600):
        assert repository.create(new_key(), record(now, ttl=ttl * SECOND), now)
    assert repository.count(now) - start == 5
    assert repository.count(now + 31 * SECOND) - start == 3


def test_count_follows_deletes_and_renames(repository: SessionRepository) -> None:
    now, a, b, c = now_us(), new_key(), new_key(), new_key()
    start = repository.count(now)
    for key in (a, b):
        assert repository.create(key, record(now), now)
    repository.delete(a)
    assert repository.rename(b, c, now + HOUR, now)
    repository.delete(new_key())
    assert repository.count(now) - start == 1


def test_delete_expired_removes_expired_records_in_bounded_batches(
    repository: SessionRepository,
) -> None:
    if repository.native_ttl:
        now = now_us()
        assert repository.create(new_key(), record(now, ttl=30 * SECOND), now)
        assert repository.delete_expired(now + HOUR, 100) == 0
        pytest.skip("the store expires records itself (native TTL): gc deletes nothing")
    now = now_us()
    expired = [new_key() for _ in range(5)]
    live = [new_key() for _ in range(2)]
    for key in expired:
        assert repository.create(key, record(now, ttl=30 * SECOND), now)
    for key in live:
        assert repository.create(key, record(now, ttl=2 * HOUR), now)
    later = now + HOUR
    assert repository.delete_expired(later, 2) == 2
    assert repository.delete_expired(later, 2) == 2
    assert repository.delete_expired(later, 2) == 1
    assert repository.delete_expired(later, 2) == 0
    for key in live:
        assert repository.read(key, later) is not None
    # an expired key is reusable (and really gone, not just hidden)
    assert repository.create(expired[0], record(later, b"again"), later)
    assert repository.count(later) == 3
