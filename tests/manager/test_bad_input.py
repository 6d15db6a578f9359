"""Bad input on every store: forged and malformed ids, corrupt data, oversized data."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from ormsession import flows, policy
from ormsession.errors import ConflictError, SerializationError, SessionTooLargeError
from ormsession.ids import SessionIds, storage_key
from tests.manager.test_lifecycle import cookie_id, stored_session
from tests.support.stores import record_calls

MALFORMED_IDS = [
    "",
    "short",
    "x" * 42,
    "x" * 44,
    "a" * 42 + "=",
    "a" * 42 + ";",
    "a" * 42 + "é",
    "../../etc/passwd" + "a" * 27,
    "a" * 10_000,
    "' OR 1=1 --" + "a" * 32,
    "ormsession:*" + "a" * 31,
]


@pytest.mark.parametrize("bad_id", MALFORMED_IDS, ids=lambda v: repr(v[:20]))
def test_malformed_ids_never_reach_the_store(manager: Any, bad_id: str) -> None:
    calls = record_calls(manager)
    session = manager.open(bad_id)
    assert calls.calls == [], "a malformed id must be rejected before any store call"
    assert session.is_new and session.id != bad_id
    session["x"] = 1
    assert cookie_id(manager.save(session)) == session.id


def test_non_string_ids_are_treated_as_absent(manager: Any) -> None:
    for value in (None, 12345, b"a" * 43):
        session = manager.open(value)
        assert session.is_new


def test_a_well_formed_unknown_id_is_never_adopted(manager: Any) -> None:
    forged = SessionIds().generate()
    session = manager.open(forged)
    assert session.is_new and session.id != forged
    session["user"] = "mallory"
    assert cookie_id(manager.save(session)) != forged
    assert manager.open(forged).is_new, "the forged id must not have been created"


def test_a_stored_key_is_not_a_valid_id(manager: Any) -> None:
    sid = stored_session(manager, user=1)
    assert manager.open(storage_key(sid)).is_new, "knowing the key must not open the session"


def test_corrupt_stored_data_gives_a_new_session_and_a_warning(
    manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sid = stored_session(manager, user=1)
    key = storage_key(sid)
    for garbage in (b"\x80\x04not json", b'{"x": {" zz": 1}}', b"[1,2]", b'{"broken'):
        repository = manager.repository
        current = manager.policy.now_us()
        stored = repository.read(key, current)
        if hasattr(stored, "__await__"):  # the async twin, through the facade's loop
            stored = manager._runner.run(stored)
        result = repository.update(key, garbage, stored.expires_us, stored.version, current)
        if hasattr(result, "__await__"):
            manager._runner.run(result)
        with caplog.at_level(logging.WARNING, logger="ormsession"):
            session = manager.open(sid)
        assert session.is_new and session.id != sid
        assert "corrupt session data" in caplog.text
        assert sid not in caplog.text, "the session id must not be logged"
        caplog.clear()


def test_oversized_data_is_refused_and_the_stored_data_kept(make_manager: Any) -> None:
    with make_manager(max_data_bytes=1024) as manager:
        sid = stored_session(manager, small="ok")
        session = manager.open(sid)
        session["big"] = "x" * 2000
        with pytest.raises(SessionTooLargeError, match="over the limit of 1024 bytes"):
            manager.save(session)
        assert dict(manager.open(sid)) == {"small": "ok"}
        fresh = manager.open(None)
        fresh["big"] = "x" * 2000
        with pytest.raises(SessionTooLargeError):
            manager.save(fresh)


def test_unserializable_values_are_a_clear_error_and_nothing_is_written(manager: Any) -> None:
    sid = stored_session(manager, ok=1)
    session = manager.open(sid)
    session["bad"] = object()
    with pytest.raises(SerializationError, match="cannot store a value of type object"):
        manager.save(session)
    assert dict(manager.open(sid)) == {"ok": 1}


class AlwaysConflicting:
    """A store where another writer always wins the compare-and-set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.updates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, *args: Any) -> Any:
        self.updates += 1
        if asyncio.iscoroutinefunction(self.inner.update):
            return asyncio.sleep(0, result=None)
        return None


def test_endless_conflicts_end_in_a_conflict_error(make_manager: Any) -> None:
    with make_manager(max_attempts=3) as manager:
        sid = stored_session(manager, n=0)
        session = manager.open(sid)
        session["n"] = 1
        inner = getattr(manager, "inner", manager)
        inner.repository = store = AlwaysConflicting(inner.repository)
        with pytest.raises(ConflictError, match="after 3 compare-and-set conflicts"):
            manager.save(session)
        assert store.updates == 3


class AlwaysRewritten(AlwaysConflicting):
    """A store where another writer always writes between a regenerate's read and its
    rename (which, sealing data for the new key, is a compare-and-set on the version)."""

    def rename(self, *args: Any) -> Any:
        self.updates += 1
        if asyncio.iscoroutinefunction(self.inner.rename):
            return asyncio.sleep(0, result=False)
        return False


def record_pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses flows take (each at the longest its draw allows), recorded, not slept."""
    pauses: list[float] = []

    async def async_sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(policy, "random", SimpleNamespace(uniform=lambda low, high: high))
    monkeypatch.setattr(flows, "time", SimpleNamespace(sleep=pauses.append))
    monkeypatch.setattr(flows, "asyncio", SimpleNamespace(sleep=async_sleep))
    return pauses


@pytest.mark.parametrize("wrapper", [AlwaysConflicting, AlwaysRewritten])
def test_each_retry_after_a_conflict_waits_a_longer_pause(
    make_manager: Any, monkeypatch: pytest.MonkeyPatch, wrapper: type[AlwaysConflicting]
) -> None:
    # Writers that retry at once meet again in step; a random pause, longer each time,
    # sets them apart. None after the last try: the error comes at once.
    with make_manager(max_attempts=6) as manager:
        sid = stored_session(manager, n=0)
        session = manager.open(sid)
        session["n"] = 1
        inner = getattr(manager, "inner", manager)
        inner.repository = store = wrapper(inner.repository)
        pauses = record_pauses(monkeypatch)
        write = manager.regenerate if wrapper is AlwaysRewritten else manager.save
        with pytest.raises(ConflictError):
            write(session)
        assert store.updates == 6
        assert pauses == [0.0005, 0.001, 0.002, 0.004, 0.008]


def test_the_pause_after_a_conflict_is_drawn_at_random_up_to_its_bound() -> None:
    for conflicts, bound in [(1, 0.0005), (3, 0.002), (7, 0.032), (50, 0.032)]:
        draws = {policy._backoff(conflicts).seconds for _ in range(200)}
        assert all(0 <= seconds <= bound for seconds in draws)
        assert len(draws) > 150 and max(draws) > bound / 2


def test_a_logout_wins_even_with_a_single_attempt(make_manager: Any) -> None:
    # The failed compare-and-set is followed by a read: a session destroyed meanwhile
    # stays destroyed, rather than the save ending in a ConflictError.
    with make_manager(max_attempts=1) as manager:
        sid = stored_session(manager, user=1)
        slow, logout = manager.open(sid), manager.open(sid)
        manager.destroy(logout)
        slow["cart"] = ["late"]
        assert manager.save(slow) is None, "the logout's own response deletes the cookie"
        assert slow.lost
        assert manager.open(sid).is_new
