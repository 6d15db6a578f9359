"""The repository contract (:mod:`ormsession.repositories.base`), one test per sentence.

The test bodies live once, in :class:`RepositoryTests`, written against the blocking
interface; :class:`RepositoryContract` runs them on a :class:`SessionRepository` and
:class:`AsyncRepositoryContract` on an :class:`AsyncSessionRepository` through a
:class:`~ormsession.testing.blocking.BlockingRepository`. Where the twins must differ (how
calls run at the same time, which base class is required) the test asks a method of the
class. Times are µs, as the contract has them: ``now`` is the real clock, and "later" is
passed as the ``now`` of a later call; stores with native TTLs must still judge expiry by
the ``now`` they are given.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import (
    REPLACED_ID_GRACE_US,
    AsyncSessionRepository,
    SessionRepository,
    StoredSession,
)
from ormsession.testing.blocking import BlockingRepository
from ormsession.testing.users import UserIndexTests

__all__ = [
    "HOUR",
    "MINUTE",
    "SECOND",
    "TOLERANCE",
    "AsyncRepositoryContract",
    "RepositoryContract",
    "RepositoryTests",
    "assert_record",
    "assert_same_time",
    "new_key",
    "record",
]

SECOND = US_PER_SECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
#: Stores keep times to the µs; a millisecond of slack for any rounding on the way.
TOLERANCE = 1000


def new_key() -> str:
    """A fresh key, shaped as the manager makes them (64 hex characters)."""
    return storage_key(SessionIds().generate())


def record(
    now: int, data: bytes = b'{"a":1}', *, ttl: int = HOUR, version: int = 1
) -> StoredSession:
    """A record created at ``now`` that expires ``ttl`` µs later."""
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


class RepositoryTests(UserIndexTests):
    """Every test of the contract, once; subclass :class:`RepositoryContract` or
    :class:`AsyncRepositoryContract` instead, which say how the twins differ."""

    #: The base class every repository of this twin must be an instance of.
    interface: ClassVar[type[SessionRepository] | type[AsyncSessionRepository]]

    def unwrapped(self, repository: SessionRepository) -> object:
        """The store's own repository behind the ``repository`` the tests call."""
        raise NotImplementedError

    def concurrently(
        self, repository: SessionRepository, calls: Sequence[tuple[str, tuple[Any, ...]]]
    ) -> list[Any]:
        """``repository.<method>(*args)`` for each ``(method, args)`` in ``calls``, all at
        the same time; the results in order."""
        raise NotImplementedError

    # -- the base class -----------------------------------------------------------------
    def test_the_repository_is_an_instance_of_the_contract_base_class(
        self, repository: SessionRepository
    ) -> None:
        # The registry refuses anything else, so a store that passes here can be opened
        # by URL; a duck-typed class would pass every other test and fail there.
        assert isinstance(self.unwrapped(repository), self.interface)

    # -- read / create ------------------------------------------------------------------
    def test_read_of_a_missing_key_is_none(self, repository: SessionRepository) -> None:
        assert repository.read(new_key(), now_us()) is None

    def test_create_then_read_round_trips_every_field(self, repository: SessionRepository) -> None:
        now, key = now_us(), new_key()
        stored = record(now, b'{"user":42}', version=1)
        assert repository.create(key, stored, now) is True
        assert_record(repository.read(key, now), stored)

    def test_binary_data_round_trips_exactly(self, repository: SessionRepository) -> None:
        now, key = now_us(), new_key()
        payload = bytes(range(256)) * 4 + os.urandom(1 << 20)  # every byte value, and 1 MiB
        assert repository.create(key, record(now, payload), now)
        result = repository.read(key, now)
        assert result is not None
        assert result.data == payload

    def test_create_refuses_a_key_held_by_a_live_record(
        self, repository: SessionRepository
    ) -> None:
        now, key = now_us(), new_key()
        first = record(now, b"first")
        assert repository.create(key, first, now)
        assert repository.create(key, record(now, b"second"), now) is False
        assert_record(repository.read(key, now), first)

    def test_create_replaces_an_expired_record(self, repository: SessionRepository) -> None:
        now, key = now_us(), new_key()
        assert repository.create(key, record(now, b"old", ttl=30 * SECOND), now)
        later = now + 31 * SECOND
        replacement = record(later, b"new")
        assert repository.create(key, replacement, later) is True
        assert_record(repository.read(key, later), replacement)

    def test_read_judges_expiry_by_the_given_now(self, repository: SessionRepository) -> None:
        now, key = now_us(), new_key()
        stored = record(now, ttl=30 * SECOND)
        assert repository.create(key, stored, now)
        assert repository.read(key, now + 29 * SECOND) is not None
        assert repository.read(key, stored.expires_us) is None  # expires_us <= now: gone
        assert repository.read(key, now + 31 * SECOND) is None

    # -- update (compare-and-set) -------------------------------------------------------
    def test_update_with_the_current_version_replaces_data_and_expiry(
        self, repository: SessionRepository
    ) -> None:
        now, key = now_us(), new_key()
        assert repository.create(key, record(now, b"v1"), now)
        new_expiry = now + 2 * HOUR
        assert repository.update(key, b"v2", new_expiry, 1, now) == 2
        assert repository.update(key, b"v3", new_expiry, 2, now) == 3
        assert_record(repository.read(key, now), StoredSession(b"v3", 3, now, new_expiry))

    def test_update_with_a_stale_version_changes_nothing(
        self, repository: SessionRepository
    ) -> None:
        now, key = now_us(), new_key()
        stored = record(now, b"v1")
        assert repository.create(key, stored, now)
        assert repository.update(key, b"v2", now + 2 * HOUR, 1, now) == 2
        assert repository.update(key, b"stale", now + 3 * HOUR, 1, now) is None
        after = repository.read(key, now)
        assert after is not None
        assert (after.data, after.version) == (b"v2", 2)
        assert_same_time(after.expires_us, now + 2 * HOUR)

    def test_update_of_a_missing_key_is_none_and_creates_nothing(
        self, repository: SessionRepository
    ) -> None:
        now, key = now_us(), new_key()
        assert repository.update(key, b"x", now + HOUR, 1, now) is None
        assert repository.read(key, now) is None

    def test_update_of_an_expired_record_is_none(self, repository: SessionRepository) -> None:
        now, key = now_us(), new_key()
        assert repository.create(key, record(now, ttl=30 * SECOND), now)
        later = now + 31 * SECOND
        assert repository.update(key, b"revived?", later + HOUR, 1, later) is None
        assert repository.read(key, later) is None

    def test_concurrent_updates_of_one_version_let_exactly_one_win(
        self, repository: SessionRepository
    ) -> None:
        now, key = now_us(), new_key()
        assert repository.create(key, record(now, b"v1"), now)
        calls = [(key, f"writer {n}".encode(), now + HOUR, 1, now) for n in range(4)]
        results: list[int | None] = self.concurrently(repository, [("update", c) for c in calls])
        assert sorted(results, key=lambda r: r or 0) == [None, None, None, 2]
        final = repository.read(key, now)
        assert final is not None
        assert final.version == 2
        assert final.data == calls[results.index(2)][1], "the winner's data was not kept"

    # -- touch --------------------------------------------------------------------------
    def test_touch_moves_only_the_expiry(self, repository: SessionRepository) -> None:
        now, key = now_us(), new_key()
        stored = record(now, b"data")
        assert repository.create(key, stored, now)
        assert repository.touch(key, now + 5 * HOUR, now) is True
        after = repository.read(key, now)
        assert after is not None
        assert (after.data, after.version) == (b"data", 1)
        assert_same_time(after.expires_us, now + 5 * HOUR)
        # the touched expiry is what reads judge by
        assert repository.read(key, now + 2 * HOUR) is not None

    def test_touch_of_missing_or_expired_records_is_false(
        self, repository: SessionRepository
    ) -> None:
        now, key = now_us(), new_key()
        assert repository.touch(key, now + HOUR, now) is False
        assert repository.read(key, now) is None
        assert repository.create(key, record(now, ttl=30 * SECOND), now)
        later = now + 31 * SECOND
        assert repository.touch(key, later + HOUR, later) is False
        assert repository.read(key, later) is None

    # -- delete -------------------------------------------------------------------------
    def test_delete_removes_and_is_idempotent(self, repository: SessionRepository) -> None:
        now, key, other = now_us(), new_key(), new_key()
        assert repository.create(key, record(now), now)
        assert repository.create(other, record(now, b"other"), now)
        repository.delete(key)
        assert repository.read(key, now) is None
        repository.delete(key)
        repository.delete(new_key())
        assert repository.read(other, now) is not None, "delete touched another key"

    # -- rename -------------------------------------------------------------------------
    def test_rename_moves_the_record_and_keeps_data_version_and_creation(
        self, repository: SessionRepository
    ) -> None:
        now, old, new = now_us(), new_key(), new_key()
        created = now - 5 * MINUTE
        assert repository.create(old, StoredSession(b"payload", 1, created, now + HOUR), now)
        assert repository.update(old, b"payload2", now + HOUR, 1, now) == 2
        assert repository.rename(old, new, now + 3 * HOUR, now) is True
        assert repository.read(old, now) is None
        moved = StoredSession(b"payload2", 2, created, now + 3 * HOUR)
        assert_record(repository.read(new, now), moved)
        # the version survives, so compare-and-set continues under the new key
        assert repository.update(new, b"payload3", now + HOUR, 2, now) == 3

    def test_a_renamed_key_is_worthless_at_once(self, repository: SessionRepository) -> None:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, record(now, b"v1"), now)
        assert repository.rename(old, new, now + HOUR, now) is True
        assert repository.read(old, now) is None
        assert repository.update(old, b"late write", now + HOUR, 1, now) is None
        assert repository.touch(old, now + 2 * HOUR, now) is False
        assert repository.rename(old, new_key(), now + HOUR, now) is False, (
            "a second rename of the old key would make a second live copy"
        )
        assert repository.create(old, record(now, b"planted"), now) is False, (
            "the moved marker holds its key until it expires"
        )
        assert repository.moved(old, now) is True
        assert repository.moved(new, now) is False, "a live record is not a marker"
        assert repository.moved(new_key(), now) is False, "nor is a missing key"
        assert_record(repository.read(new, now), record(now, b"v1")._replace(expires_us=now + HOUR))

    def test_delete_of_a_renamed_key_deletes_where_it_moved(
        self, repository: SessionRepository
    ) -> None:
        now, first, second, third, other = (now_us(), new_key(), new_key(), new_key(), new_key())
        start = repository.count(now)
        assert repository.create(first, record(now, b"session"), now)
        assert repository.create(other, record(now, b"someone else"), now)
        assert repository.rename(first, second, now + HOUR, now)
        assert repository.rename(second, third, now + HOUR, now)
        repository.delete(first)  # a logout that opened the session before both renames
        for key in (first, second, third):
            assert repository.read(key, now) is None
            assert repository.moved(key, now) is False, "a deleted marker is gone"
        assert repository.read(other, now) is not None, "delete followed too far"
        assert repository.count(now) - start == 1
        repository.delete(first)  # still idempotent

    def test_a_moved_marker_expires_with_the_rename(self, repository: SessionRepository) -> None:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, record(now), now)
        assert repository.rename(old, new, now + 30 * SECOND, now)
        later = now + 31 * SECOND
        assert repository.moved(old, later) is False, "an expired marker is no marker"
        assert repository.create(old, record(later, b"reused"), later) is True
        assert_record(repository.read(old, later), record(later, b"reused"))
        repository.delete(old)
        assert repository.read(new, now) is not None, "an expired marker must not be followed"

    def test_moved_answers_only_for_the_grace_after_the_rename(
        self, repository: SessionRepository
    ) -> None:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, record(now), now)
        assert repository.rename(old, new, now + HOUR, now)
        assert repository.moved(old, now + REPLACED_ID_GRACE_US - SECOND) is True
        late = now + REPLACED_ID_GRACE_US + SECOND
        assert repository.moved(old, late) is False, "a browser that missed the new id"
        assert repository.read(old, late) is None, "the old key stays worthless"
        assert repository.create(old, record(late, b"planted"), late) is False
        repository.delete(old)  # a logout through the old id still follows the marker
        assert repository.read(new, now) is None

    def test_of_racing_renames_of_one_key_exactly_one_wins(
        self, repository: SessionRepository
    ) -> None:
        now, old = now_us(), new_key()
        assert repository.create(old, record(now, b"session"), now)
        targets = [new_key() for _ in range(4)]
        calls = [("rename", (old, target, now + HOUR, now)) for target in targets]
        results = self.concurrently(repository, calls)
        assert sorted(results) == [False, False, False, True]
        live = [target for target in targets if repository.read(target, now) is not None]
        assert live == [targets[results.index(True)]], "one session, one live key"

    def test_a_delete_racing_a_rename_leaves_no_copy(self, repository: SessionRepository) -> None:
        now = now_us()
        for _ in range(10):
            old, new = new_key(), new_key()
            assert repository.create(old, record(now, b"session"), now)
            calls = [("rename", (old, new, now + HOUR, now)), ("delete", (old,))]
            self.concurrently(repository, calls)
            assert repository.read(old, now) is None
            assert repository.read(new, now) is None, "the destroy lost to a rename"

    def test_rename_with_data_moves_the_new_bytes_and_keeps_the_version(
        self, repository: SessionRepository
    ) -> None:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, record(now, b"sealed-for-old"), now)
        assert repository.update(old, b"sealed-for-old-2", now + HOUR, 1, now) == 2
        assert repository.rename(old, new, now + 2 * HOUR, now, None, None, b"sealed-for-new", 2)
        moved = repository.read(new, now)
        assert moved is not None
        assert (moved.data, moved.version) == (b"sealed-for-new", 2)
        assert_same_time(moved.expires_us, now + 2 * HOUR)
        assert repository.read(old, now) is None
        assert repository.moved(old, now)
        assert repository.update(new, b"next", now + HOUR, 2, now) == 3, "the version went on"

    def test_rename_with_data_of_a_stale_version_changes_nothing(
        self, repository: SessionRepository
    ) -> None:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, record(now, b"v1"), now)
        assert repository.update(old, b"v2", now + HOUR, 1, now) == 2  # a write came in
        assert repository.rename(old, new, now + HOUR, now, None, None, b"re-sealed v1", 1) is False
        assert repository.read(new, now) is None
        assert repository.moved(old, now) is False
        current = repository.read(old, now)
        assert current is not None
        assert (current.data, current.version) == (b"v2", 2)

    def test_of_an_update_and_a_rename_with_data_racing_one_wins_cleanly(
        self, repository: SessionRepository
    ) -> None:
        now = now_us()
        for _ in range(5):
            old, new = new_key(), new_key()
            assert repository.create(old, record(now, b"v1"), now)
            calls = [
                ("update", (old, b"v2", now + HOUR, 1, now)),
                ("rename", (old, new, now + HOUR, now, None, None, b"moved v1", 1)),
            ]
            updated, renamed = self.concurrently(repository, calls)
            assert (updated is None) == renamed, "both or neither won the one version"
            if renamed:
                after = repository.read(new, now)
                assert after is not None
                assert after.data == b"moved v1"
            else:
                after = repository.read(old, now)
                assert after is not None
                assert after.data == b"v2"

    def test_rename_of_missing_or_expired_records_is_false(
        self, repository: SessionRepository
    ) -> None:
        now, old, new = now_us(), new_key(), new_key()
        assert repository.rename(old, new, now + HOUR, now) is False
        assert repository.read(new, now) is None
        assert repository.create(old, record(now, ttl=30 * SECOND), now)
        later = now + 31 * SECOND
        assert repository.rename(old, new, later + HOUR, later) is False
        assert repository.read(new, later) is None

    # -- count / delete_expired -----------------------------------------------------------
    def test_count_includes_only_live_records(self, repository: SessionRepository) -> None:
        now = now_us()
        start = repository.count(now)
        for ttl in (30, 30, 3600, 3600, 3600):
            assert repository.create(new_key(), record(now, ttl=ttl * SECOND), now)
        assert repository.count(now) - start == 5
        assert repository.count(now + 31 * SECOND) - start == 3

    def test_count_follows_deletes_and_renames(self, repository: SessionRepository) -> None:
        now, a, b, c = now_us(), new_key(), new_key(), new_key()
        start = repository.count(now)
        for key in (a, b):
            assert repository.create(key, record(now), now)
        repository.delete(a)
        assert repository.rename(b, c, now + HOUR, now)
        repository.delete(new_key())
        assert repository.count(now) - start == 1

    def test_delete_expired_removes_expired_records_in_bounded_batches(
        self, repository: SessionRepository
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

    def test_delete_expired_removes_expired_moved_markers(
        self, repository: SessionRepository
    ) -> None:
        if repository.native_ttl:
            pytest.skip("the store expires records itself (native TTL): gc deletes nothing")
        now, old, new = now_us(), new_key(), new_key()
        assert repository.create(old, record(now, ttl=2 * HOUR), now)
        assert repository.rename(old, new, now + 30 * SECOND, now)
        later = now + HOUR
        assert repository.delete_expired(later, 10) == 2, "the moved record and its marker"
        assert repository.delete_expired(later, 10) == 0
        assert repository.create(old, record(later, b"reused"), later)


class RepositoryContract(RepositoryTests):
    """The contract suite for a synchronous store.

    Subclass it in a test module (its name must start with ``Test`` for pytest to collect
    it) and provide a fixture ``repository`` that yields a fresh, empty
    :class:`~ormsession.SessionRepository` and closes it afterwards::

        class TestMyStore(RepositoryContract):
            @pytest.fixture
            def repository(self) -> Iterator[SessionRepository]:
                repository = MyRepository(...)
                yield repository
                repository.close()

    Calls that must race run in threads released together by a barrier: the store must
    be safe to share between threads, as a web server's worker threads share it.
    """

    interface = SessionRepository

    def unwrapped(self, repository: SessionRepository) -> object:
        return repository

    def concurrently(
        self, repository: SessionRepository, calls: Sequence[tuple[str, tuple[Any, ...]]]
    ) -> list[Any]:
        barrier = threading.Barrier(len(calls), timeout=30)

        def call(method_and_args: tuple[str, tuple[Any, ...]]) -> Any:
            method, args = method_and_args
            barrier.wait()
            return getattr(repository, method)(*args)

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            return list(pool.map(call, calls))


class AsyncRepositoryContract(RepositoryTests):
    """The contract suite for an asyncio store: the same tests as
    :class:`RepositoryContract`, awaited.

    Provide a fixture ``async_repository`` returning (or yielding) an
    :class:`~ormsession.AsyncSessionRepository` that is *not started*: the suite awaits
    ``start()`` before the test and ``close()`` after it, on an event loop of the test's
    own, so don't close it yourself, and leave I/O to ``start()``::

        class TestMyAsyncStore(AsyncRepositoryContract):
            @pytest.fixture
            def async_repository(self) -> AsyncSessionRepository:
                return MyAsyncRepository(...)

    The fixture runs with that loop already current (not running; ``asyncio.Runner``'s);
    it may ask for the fixture ``contract_runner`` to await set-up or clean-up of its own
    on it (``contract_runner.run(coroutine)``). Calls that must race run as concurrent
    tasks (``asyncio.gather``) on that loop.
    """

    interface = AsyncSessionRepository

    @pytest.fixture
    def contract_runner(self) -> Iterator[asyncio.Runner]:
        """The test's event loop (entering the runner makes its loop the current one)."""
        with asyncio.Runner() as runner:
            yield runner

    @pytest.fixture
    def repository(
        self, contract_runner: asyncio.Runner, async_repository: AsyncSessionRepository
    ) -> Iterator[BlockingRepository]:
        # contract_runner is listed first so it exists before the store's fixture runs.
        try:
            contract_runner.run(async_repository.start())
        except BaseException:
            contract_runner.run(async_repository.close())  # as configure_async() does
            raise
        try:
            yield BlockingRepository(async_repository, contract_runner)
        finally:
            contract_runner.run(async_repository.close())

    def unwrapped(self, repository: SessionRepository) -> object:
        assert isinstance(repository, BlockingRepository)
        return repository.inner

    def concurrently(
        self, repository: SessionRepository, calls: Sequence[tuple[str, tuple[Any, ...]]]
    ) -> list[Any]:
        assert isinstance(repository, BlockingRepository)
        return repository.gather(calls)
