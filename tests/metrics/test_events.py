"""Each metric, emitted where the docs say, with the attributes the docs list: on the memory
store, SQLite and Redis, sync and async (the callback sink; OpenTelemetry is
test_opentelemetry.py's)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

import ormsession
from ormsession import ConflictError, RequestSession, SessionTooLargeError
from ormsession.metrics import INSTRUMENTS, MetricEvent
from ormsession.serializers import JSONSerializer
from tests.metrics.conftest import STORE_KINDS, Events
from tests.support.stores import FakeClock

MakeManager = Callable[..., AbstractContextManager[Any]]
DURATION = "ormsession.store.operation.duration"


def stored(manager: Any, **data: Any) -> str:
    """The id of a new stored session holding ``data``."""
    session = manager.open(None)
    session.update(data)
    manager.save(session)
    return str(session.id)


def test_every_store_call_is_timed_by_operation_and_store(
    make_manager: MakeManager, events: Events, clock: FakeClock
) -> None:
    with make_manager() as manager:
        session_id = stored(manager, user=1)
        session = manager.open(session_id)
        session["cart"] = [1, 2]
        manager.save(session)
        clock.advance(hours=12)  # half the idle timeout: the next read-only save touches
        manager.save(manager.open(session.id))
        manager.regenerate(session)
        manager.count()
        manager.gc()
        manager.destroy(session)
    timed = {event.attributes["ormsession.operation"] for event in events.named(DURATION)}
    assert {"create", "read", "update", "touch", "rename", "count", "delete"} <= timed
    if make_manager.store != "redis":  # type: ignore[attr-defined]
        assert "delete_expired" in timed  # (a TTL store's gc asks the store nothing)
    for event in events.named(DURATION):
        assert event.attributes["ormsession.store"] == STORE_KINDS[make_manager.store]  # type: ignore[attr-defined]
        assert set(event.attributes) == {"ormsession.store", "ormsession.operation"}
        assert 0 < event.value < 5
    assert not events.named("ormsession.store.errors")


def test_every_event_is_a_documented_metric_with_its_attributes(
    manager: Any, events: Events
) -> None:
    first = manager.open(stored(manager, a=1))
    second = manager.open(first.id)
    first["b"], second["c"] = 2, 3
    manager.save(first)
    manager.save(second)
    assert events
    for event in events:
        assert isinstance(event, MetricEvent)
        assert set(event.attributes) <= set(event.instrument.attributes)
        assert all(isinstance(value, str) for value in event.attributes.values())


def test_session_size_is_the_serialized_bytes_written(manager: Any, events: Events) -> None:
    serializer = JSONSerializer()
    session = manager.open(None)
    session["user"] = "ada"
    manager.save(session)
    session["cart"] = list(range(100))
    manager.save(session)
    manager.save(manager.open(session.id))  # read-only: writes nothing, measures nothing
    sizes = [
        (e.attributes["ormsession.operation"], e.value)
        for e in events.named("ormsession.session.size")
    ]
    assert sizes == [
        ("create", len(serializer.dumps({"user": "ada"}))),
        ("update", len(serializer.dumps({"user": "ada", "cart": list(range(100))}))),
    ]


def test_a_merge_is_an_update_conflict_retried(manager: Any, events: Events) -> None:
    session_id = stored(manager, a=1)
    first, second = manager.open(session_id), manager.open(session_id)
    first["b"], second["c"] = 2, 3
    manager.save(first)
    manager.save(second)  # its compare-and-set loses; it merges and writes again
    assert dict(manager.open(session_id)) == {"a": 1, "b": 2, "c": 3}
    assert events.named("ormsession.conflicts") == [
        MetricEvent(
            "ormsession.conflicts",
            1,
            {
                "ormsession.store": STORE_KINDS[manager_store(manager)],
                "ormsession.operation": "update",
                "ormsession.outcome": "retried",
            },
        )
    ]
    assert events.total("ormsession.session.size", operation="update") > 0


def manager_store(manager: Any) -> str:
    return str(getattr(manager, "inner", manager).metrics.store)


def test_giving_up_after_max_attempts(make_manager: MakeManager, events: Events) -> None:
    with make_manager(max_attempts=1) as manager:
        session_id = stored(manager, a=1)
        first, second = manager.open(session_id), manager.open(session_id)
        first["b"], second["c"] = 2, 3
        manager.save(first)
        with pytest.raises(ConflictError):
            manager.save(second)
    assert events.total("ormsession.conflicts", operation="update", outcome="gave_up") == 1
    assert events.total("ormsession.conflicts") == 1


def test_a_save_of_a_session_destroyed_meanwhile_is_lost(manager: Any, events: Events) -> None:
    session_id = stored(manager, a=1)
    mine, logout = manager.open(session_id), manager.open(session_id)
    manager.destroy(logout)
    mine["b"] = 2
    assert manager.save(mine) is None
    assert events.total("ormsession.conflicts", operation="update", outcome="lost") == 1
    assert events.total("ormsession.sessions.lost", flow="save", dropped="true") == 1


def test_a_touch_of_a_session_destroyed_meanwhile_is_lost(
    manager: Any, events: Events, clock: FakeClock
) -> None:
    session_id = stored(manager, a=1)
    mine, logout = manager.open(session_id), manager.open(session_id)
    manager.destroy(logout)
    clock.advance(hours=12)
    manager.save(mine)  # nothing changed, the expiry is due: a touch, which finds nothing
    assert events.total("ormsession.sessions.lost", flow="save", dropped="false") == 1
    assert not events.named("ormsession.conflicts")


def test_a_request_with_the_id_a_regenerate_replaced(
    make_manager: MakeManager, events: Events
) -> None:
    with make_manager() as manager:
        session_id = stored(manager, a=1)
        manager.regenerate(manager.open(session_id))
        manager.open(session_id)  # a request that was on its way with the old id
    assert events.total("ormsession.sessions.lost", flow="open", dropped="false") == 1


@pytest.mark.parametrize("encrypt", [True, False])
def test_a_regenerate_of_a_session_destroyed_meanwhile(
    make_manager: MakeManager, events: Events, encrypt: bool
) -> None:
    with make_manager(encrypt=encrypt) as manager:
        session_id = stored(manager, a=1)
        mine, logout = manager.open(session_id), manager.open(session_id)
        manager.destroy(logout)
        manager.regenerate(mine)
    assert events.total("ormsession.sessions.lost", flow="regenerate", dropped="true") == 1
    # Only an encrypted rename is a compare-and-set (it carries data sealed for the new id).
    lost_renames = events.total("ormsession.conflicts", operation="rename", outcome="lost")
    assert lost_renames == (1 if encrypt else 0)


def test_a_login_of_a_session_destroyed_meanwhile(
    make_manager: MakeManager, events: Events
) -> None:
    with make_manager() as manager:
        session_id = stored(manager, a=1)
        mine, logout = manager.open(session_id), manager.open(session_id)
        manager.destroy(logout)
        manager.login(mine, "ada")
    assert events.total("ormsession.sessions.lost", flow="login", dropped="true") == 1


def test_a_rename_retry_of_the_encryption_path(make_manager: MakeManager, events: Events) -> None:
    with make_manager() as manager:
        session_id = stored(manager, a=1)
        mine, other = manager.open(session_id), manager.open(session_id)
        other["b"] = 2
        manager.save(other)  # a write between this request's read and its regenerate
        manager.regenerate(mine)  # re-sealed from the version it read: conflict, retry
        assert dict(manager.open(mine.id)) == {"a": 1, "b": 2}
    assert events.total("ormsession.conflicts", operation="rename", outcome="retried") == 1
    assert not events.named("ormsession.sessions.lost")


def test_too_large_is_counted(make_manager: MakeManager, events: Events) -> None:
    with make_manager(max_data_bytes=64) as manager:
        session = manager.open(None)
        session["blob"] = "x" * 100
        with pytest.raises(SessionTooLargeError):
            manager.save(session)
    assert events.total("ormsession.session.too_large") == 1
    assert not events.named("ormsession.session.size")


def test_gc_rows_removed(make_manager: MakeManager, events: Events, clock: FakeClock) -> None:
    with make_manager(gc_batch_size=2) as manager:
        for n in range(5):
            stored(manager, n=n)
        clock.advance(days=2)  # past the idle timeout of a day
        removed = manager.gc()
    assert events.total("ormsession.gc.removed") == removed
    if make_manager.store == "redis":  # type: ignore[attr-defined]
        assert removed == 0  # Redis expires them itself
    else:
        assert removed == 5
        assert [e.value for e in events.named("ormsession.gc.removed")] == [2, 2, 1]


def test_a_failing_sink_never_fails_a_request(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken(event: MetricEvent) -> None:
        calls.append(event)
        raise RuntimeError("the metrics backend is down")

    with (
        caplog.at_level(logging.ERROR, logger="ormsession"),
        make_manager(metrics=broken) as manager,
    ):
        session_id = stored(manager, a=1)
        assert dict(manager.open(session_id)) == {"a": 1}
    assert len(calls) >= 3
    failures = [r for r in caplog.records if "metrics sink failed" in r.getMessage()]
    assert len(failures) == 1  # once, not once per event


def test_the_instruments_table_is_complete() -> None:
    for name, spec in INSTRUMENTS.items():
        assert name.startswith("ormsession.")
        assert spec.kind in ("counter", "histogram")
        assert bool(spec.buckets) == (spec.kind == "histogram")
        assert "ormsession.store" in spec.attributes


def test_a_copy_with_another_session_class_is_measured_on_its_own_repository(
    events: Events,
) -> None:
    class AppSession(RequestSession):
        pass

    calls: list[str] = []

    class Watching:  # stands between the copy and the store, as a test double would
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(self.inner, name)

    with ormsession.configure("memory://", metrics=events.append) as manager:
        derived = manager.with_session_class(AppSession)
        derived.repository = Watching(manager.repository)
        session = derived.open(None)
        session["a"] = 1
        derived.save(session)
        assert isinstance(derived.open(session.id), AppSession)
    assert calls == ["create", "read"]
    timed = [e.attributes["ormsession.operation"] for e in events.named(DURATION)]
    assert timed == ["create", "read"]
