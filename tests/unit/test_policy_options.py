"""Manager options that do not depend on the store (run on the memory store)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import pytest

from ormsession import (
    AsyncSessionManager,
    Config,
    RequestSession,
    SessionLostError,
    SessionManager,
    StoreUnavailableError,
)
from ormsession.repositories.memory import AsyncMemoryRepository, MemoryRepository
from tests.support.stores import FakeClock


class DownRepository(MemoryRepository):
    """A store that is unreachable."""

    def read(self, key: str, now_us: int) -> Any:
        raise StoreUnavailableError("store down")


def new_manager(clock: FakeClock | None = None, **options: Any) -> SessionManager:
    return SessionManager(MemoryRepository(), Config(**options), clock=clock or FakeClock())


def saved_id(manager: SessionManager, **data: Any) -> str:
    session = manager.open(None)
    session.update(data)
    manager.save(session)
    return session.id


def test_a_down_store_raises_by_default() -> None:
    manager = SessionManager(DownRepository())
    with pytest.raises(StoreUnavailableError):
        manager.open(saved_id(new_manager(), x=1))


def test_fail_open_serves_a_fresh_unsaved_session(caplog: pytest.LogCaptureFixture) -> None:
    manager = SessionManager(DownRepository(), Config(on_store_error="fresh"))
    some_id = saved_id(new_manager(), x=1)
    with caplog.at_level(logging.ERROR, logger="ormsession"):
        session = manager.open(some_id)
    assert session.is_new and "store unavailable" in caplog.text
    session["x"] = 2
    assert manager.save(session) is None, "never overwrite the client's cookie during an outage"


def test_a_lifetime_cookie_is_refreshed_when_the_expiry_moves() -> None:
    clock = FakeClock()
    manager = new_manager(clock, cookie_lifetime=dt.timedelta(days=7))
    sid = saved_id(manager, x=1)
    session = manager.open(sid)
    assert manager.save(session) is None, "nothing moved: no cookie"
    clock.advance(hours=3)  # past 10% of the 1-day idle timeout: a touch is due
    header = manager.save(manager.open(sid))
    assert (
        header is not None and header.startswith(f"session={sid};") and "Max-Age=604800" in header
    )


def test_a_browser_session_cookie_is_not_resent_on_touch() -> None:
    clock = FakeClock()
    manager = new_manager(clock)
    sid = saved_id(manager, x=1)
    clock.advance(hours=3)
    assert manager.save(manager.open(sid)) is None


def test_set_cookie_false_persists_but_emits_no_cookie() -> None:
    manager = new_manager(set_cookie=False)
    session = manager.open(None)
    session["x"] = 1
    assert manager.save(session) is None
    assert manager.open(session.id)["x"] == 1
    manager.destroy(session)
    assert manager.save(session) is None


def test_secure_follows_the_request_scheme_by_default() -> None:
    manager = new_manager()
    session = manager.open(None)
    session["x"] = 1
    assert "Secure" in (manager.save(session, https=True) or "")


def test_a_session_shows_its_times_as_aware_utc_datetimes() -> None:
    # Inside, times are µs; what an app reads off a session is a datetime of the clock's.
    clock = FakeClock()
    manager = new_manager(clock, idle_timeout=dt.timedelta(hours=2))
    fresh = manager.open(None)
    assert fresh.created_at == clock.now and fresh.expires_at is None
    fresh["x"] = 1
    manager.save(fresh)
    assert fresh.expires_at == clock.now + dt.timedelta(hours=2)
    created = clock.now
    clock.advance(minutes=30)
    reopened = manager.open(fresh.id)
    assert reopened.created_at == created and reopened.created_at.tzinfo is dt.UTC
    assert reopened.expires_at == created + dt.timedelta(hours=2)


def test_the_refresh_ratio_is_configurable() -> None:
    clock = FakeClock()
    manager = new_manager(clock, idle_timeout=dt.timedelta(hours=1), refresh_ratio=0.5)
    sid = saved_id(manager, x=1)
    before = manager.open(sid).expires_at
    clock.advance(minutes=29)
    manager.save(manager.open(sid))
    assert manager.open(sid).expires_at == before
    clock.advance(minutes=2)
    manager.save(manager.open(sid))
    assert manager.open(sid).expires_at == before + dt.timedelta(minutes=31)


def test_modified_is_settable_like_flask() -> None:
    manager = new_manager()
    sid = saved_id(manager, items=[1])
    session = manager.open(sid)
    session.modified = True
    assert session.modified
    session.modified = False
    assert not session.modified


def test_the_session_repr_hides_the_id() -> None:
    manager = new_manager()
    session = manager.open(None)
    session["user"] = 1
    assert session.id not in repr(session) and "user" in repr(session)


def test_the_async_twin_runs_the_same_policy() -> None:
    async def scenario() -> None:
        async with AsyncSessionManager(AsyncMemoryRepository()) as manager:
            session = await manager.open(None)
            session["x"] = 1
            header = await manager.save(session)
            assert header is not None
            reopened = await manager.open_from_cookie_header(header.split(";")[0])
            assert reopened["x"] == 1
            await manager.regenerate(reopened)
            assert (await manager.save(reopened) or "").startswith(f"session={reopened.id}")
            assert await manager.count() == 1
            await manager.destroy(reopened)
            assert await manager.count() == 0

    asyncio.run(scenario())


class AsyncDownRepository(AsyncMemoryRepository):
    async def read(self, key: str, now: dt.datetime) -> Any:
        raise StoreUnavailableError("store down")


def test_the_async_manager_raises_or_serves_fresh_on_a_down_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    some_id = saved_id(new_manager(), x=1)

    async def scenario() -> None:
        with pytest.raises(StoreUnavailableError):
            await AsyncSessionManager(AsyncDownRepository()).open(some_id)
        lenient = AsyncSessionManager(AsyncDownRepository(), Config(on_store_error="fresh"))
        with caplog.at_level(logging.ERROR, logger="ormsession"):
            session = await lenient.open(some_id)
        assert session.is_new and "store unavailable" in caplog.text
        session["x"] = 2
        assert await lenient.save(session) is None

    asyncio.run(scenario())


class TaggedSession(RequestSession):
    """A session class with its own constructor (session_class=...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = "constructed"


def test_a_session_class_with_its_own_init_still_gets_it_called_on_open() -> None:
    manager = SessionManager(MemoryRepository(), session_class=TaggedSession)
    sid = saved_id(manager, x=1)
    opened = manager.open(sid)
    assert isinstance(opened, TaggedSession) and opened.tag == "constructed"
    assert not opened.is_new and not opened.modified and opened.id == sid
    assert opened["x"] == 1 and manager.save(opened) is None


@pytest.mark.parametrize(
    ("size", "took", "expected", "why"),
    [
        (1000, 0.020, 1000, "a healthy server keeps the configured size"),
        (1000, 0.500, 250, "twice the budget: sized for half the budget at that rate"),
        (1000, 0.125, 1000, "exactly half the budget: unchanged"),
        (250, 0.010, 500, "fast again: grows, but at most twofold"),
        (3, 30.0, 1, "never below one row"),
        (400, 0.0, 800, "an unmeasurably fast batch grows twofold"),
        (800, 0.0, 1000, "and never past the configured size"),
    ],
)
def test_the_next_gc_batch_is_sized_from_the_last_ones_rate(
    size: int, took: float, expected: int, why: str
) -> None:
    from ormsession.policy import next_gc_batch

    assert next_gc_batch(size, took, 0.25, 1000) == expected, why


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"batch_size": 0}, "batch size must be a whole number >= 1"),
        ({"batch_size": -5}, "batch size must be a whole number >= 1"),
        ({"batch_seconds": 0}, "batch seconds must be > 0"),
        ({"batch_seconds": float("nan")}, "batch seconds must be > 0"),
    ],
)
def test_gc_refuses_a_batch_it_cannot_run(arguments: dict[str, Any], message: str) -> None:
    from ormsession.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        new_manager().gc(**arguments)


def test_gc_batch_seconds_zero_or_none_in_the_settings_means_fixed_batches() -> None:
    from ormsession.errors import ConfigurationError
    from ormsession.settings import OrmsessionSettings

    assert OrmsessionSettings(gc_batch_seconds="0").gc_batch_seconds is None
    assert OrmsessionSettings(gc_batch_seconds="none").gc_batch_seconds is None
    assert OrmsessionSettings(gc_batch_seconds="1.5").gc_batch_seconds == 1.5
    with pytest.raises(ConfigurationError, match="greater than 0"):
        OrmsessionSettings(gc_batch_seconds=-1)


class WriteDownRepository(MemoryRepository):
    """Reads work; every write fails, as when the store goes down mid-request."""

    def create(self, *args: Any) -> bool:
        raise StoreUnavailableError("store down")

    def update(self, *args: Any) -> int | None:
        raise StoreUnavailableError("store down")


def test_fresh_mode_drops_a_save_the_store_fails_instead_of_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session_id = saved_id(new_manager(), x=1)
    strict = SessionManager(WriteDownRepository(), Config())
    visitor = strict.open(None)
    visitor["cart"] = ["apple"]
    with pytest.raises(StoreUnavailableError):
        strict.save(visitor)
    lenient = SessionManager(WriteDownRepository(), Config(on_store_error="fresh"))
    visitor = lenient.open(None)
    visitor["cart"] = ["apple"]  # a new visitor writing during an outage: no error page
    with caplog.at_level(logging.ERROR, logger="ormsession"):
        assert lenient.save(visitor) is None
    assert visitor.is_new and "not saved" in caplog.text
    assert session_id  # the store's other sessions are not touched either way


def test_start_up_reads_the_store_unless_the_app_may_start_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ormsession import configure
    from ormsession.repositories import registry

    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    registry.register_store("down", lambda url, config, *, want_async: DownRepository())
    with pytest.raises(StoreUnavailableError):
        configure(url="down://")
    with configure(url="down://", on_store_error="fresh") as manager:
        assert manager.open(None).is_new


def test_lost_changes_raise_when_the_app_opts_in() -> None:
    manager = new_manager(on_lost_changes="raise")
    sid = saved_id(manager, user=1)
    slow, logout = manager.open(sid), manager.open(sid)
    manager.destroy(logout)
    slow["cart"] = ["late"]
    with pytest.raises(SessionLostError, match="destroyed or regenerated"):
        manager.save(slow)
    # a login that lost to another one: its save says so too
    sid = saved_id(manager, user=2)
    first, second = manager.open(sid), manager.open(sid)
    manager.regenerate(first)
    manager.regenerate(second)
    assert second.lost and not first.lost
    with pytest.raises(SessionLostError):
        manager.save(second)
    assert manager.save(first) is not None  # the winner's cookie


def test_lost_changes_are_dropped_with_a_warning_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = new_manager()
    sid = saved_id(manager, user=1)
    slow, login = manager.open(sid), manager.open(sid)
    manager.regenerate(login)
    manager.save(login)
    slow["cart"] = ["late"]
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        assert manager.save(slow) is None, "no cookie: the browser keeps the new id"
    assert slow.lost and "changes are dropped" in caplog.text
    assert "cart" not in manager.open(login.id), "nothing forwarded into the new session"
    stale = manager.open(sid)  # a request on its way with the replaced id
    assert stale.lost and stale.is_new
    stale["x"] = 1
    assert manager.save(stale) is None


class ReadDownOnceRepository(MemoryRepository):
    """The first read fails (the store down as the request came in), then it is back."""

    failed = False

    def read(self, key: str, now_us: int) -> Any:
        if not self.failed:
            self.failed = True
            raise StoreUnavailableError("store down")
        return super().read(key, now_us)


def test_a_login_after_a_failed_read_sends_the_cookie_of_what_it_stored() -> None:
    manager = SessionManager(ReadDownOnceRepository(), Config(on_store_error="fresh"))
    session = manager.open("A" * 43)
    assert session.unavailable
    manager.login(session, "ada")  # the store is back: the login's write went through
    set_cookie = manager.save(session)
    assert set_cookie is not None and session.id in set_cookie
    assert [s.handle for s in manager.sessions_of("ada")] == [session.handle]
