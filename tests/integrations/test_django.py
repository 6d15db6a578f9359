"""ormsession's Django engine on real stores: the guarantees Django's own tests do not
check (no lost update, a logout that sticks, an atomic cycle_key, keys never adopted), the
``a*`` methods on the asyncio manager alone, the settings, and ``clearsessions``.

Django's own session tests run against the engine in tests/conformance/test_django_suite.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")
SHARED_MEMORY = "file:memorydb_default?mode=memory&cache=shared"

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        SECRET_KEY="ormsession-tests",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
        ],
        # What Django's test runner makes of an SQLite database: a shared in-memory one.
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": SHARED_MEMORY}},
        SESSION_ENGINE="ormsession.integrations.django",
        ORMSESSION_URL="memory://",
        USE_TZ=True,
    )
    django.setup()

from django.contrib.sessions.backends.base import UpdateError  # noqa: E402
from django.contrib.sessions.exceptions import SessionInterrupted  # noqa: E402
from django.contrib.sessions.middleware import SessionMiddleware  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402

from ormsession.integrations.django import SessionStore, _managers  # noqa: E402
from ormsession.integrations.django._settings import (  # noqa: E402
    async_url_of,
    config_from_settings,
    database_url,
    url_for_database,
)
from ormsession.session import RequestSession  # noqa: E402
from tests.support.stores import target_for  # noqa: E402

STORES = ("memory", "sqlite", "postgresql", "mysql", "redis")


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engine on one store, through Django settings (as a project configures it)."""
    target = target_for(request, request.param)
    options = {f"ORMSESSION_{key.upper()}": value for key, value in target.options.items()}
    with override_settings(ORMSESSION_URL=target.url, **options):
        try:
            yield request.param
        finally:
            _managers.reset()


def stored(session_key: str | None) -> dict[str, Any] | None:
    """What a fresh request finds under ``session_key`` (None: nothing)."""
    probe = SessionStore(session_key)
    data = probe.load()
    return None if probe.session_key is None else data.contents()


def saved(data: dict[str, Any]) -> SessionStore:
    session = SessionStore()
    session.update(data)
    session.save()
    return session


# -- what Django's backends get wrong -----------------------------------------------------
def test_concurrent_saves_of_different_keys_both_persist(store: str) -> None:
    key = saved({"cart": [1]}).session_key
    first, second = SessionStore(key), SessionStore(key)
    assert first["cart"] == second["cart"] == [1]  # both requests read
    first["theme"] = "dark"
    second["cart"] = [1, 2]
    first.save()
    second.save()  # Django's backends would write back its stale "theme"-less copy
    assert stored(key) == {"cart": [1, 2], "theme": "dark"}


def test_a_flushed_session_is_not_saved_back_by_a_request_in_flight(store: str) -> None:
    key = saved({"user": "ada"}).session_key
    in_flight, logout = SessionStore(key), SessionStore(key)
    assert in_flight["user"] == "ada"
    logout.flush()
    in_flight["visits"] = 1
    with pytest.raises(UpdateError):
        in_flight.save()
    assert stored(key) is None
    assert in_flight.session_key is None


def test_cycle_key_makes_the_old_key_worthless_and_a_racing_request_cannot_revive_it(
    store: str,
) -> None:
    key = saved({"cart": [1]}).session_key
    racing, login = SessionStore(key), SessionStore(key)
    assert racing["cart"] == [1]
    login["user"] = "ada"
    login.cycle_key()
    login.save()
    assert login.session_key != key
    assert stored(key) is None
    racing["cart"] = [1, 2]
    with pytest.raises(UpdateError):  # the middleware turns it into SessionInterrupted
        racing.save()
    assert stored(login.session_key) == {"cart": [1], "user": "ada"}
    assert stored(key) is None


def test_cycle_key_of_a_session_flushed_meanwhile_does_not_bring_it_back(store: str) -> None:
    key = saved({"secret": 1}).session_key
    login, logout = SessionStore(key), SessionStore(key)
    assert login["secret"] == 1
    logout.flush()
    login.cycle_key()
    assert login.session_key != key
    assert dict(login.items()) == {}, "the destroyed session's data stays gone"
    login["user"] = "ada"
    login.save()
    assert stored(login.session_key) == {"user": "ada"}


@pytest.mark.parametrize(
    "client_key", ["12345678", "x" * 43, "forged-key-of-the-right-length-0123456789abc"]
)
def test_a_key_the_store_does_not_hold_is_never_adopted(store: str, client_key: str) -> None:
    session = SessionStore(client_key)
    session["a"] = 1
    session.save()
    assert session.session_key != client_key
    assert stored(client_key) is None
    assert stored(session.session_key) == {"a": 1}


# -- Django's behaviours, through the middleware -------------------------------------------
def test_a_session_deleted_during_the_request_is_session_interrupted(store: str) -> None:
    key = saved({"a": 1}).session_key

    def view(request: Any) -> HttpResponse:
        request.session["a"] = 2
        SessionStore(key).flush()  # a logout in a concurrent request
        return HttpResponse()

    request = RequestFactory().get("/")
    request.COOKIES["sessionid"] = key
    with pytest.raises(SessionInterrupted):
        SessionMiddleware(view)(request)
    assert stored(key) is None


def test_an_emptied_session_is_still_saved_and_keeps_its_cookie(store: str) -> None:
    """Django's test_empty_session_saved, checked in ormsession's store."""
    middleware = SessionMiddleware(lambda request: HttpResponse())
    request = RequestFactory().get("/")
    request.session = SessionStore()
    request.session["foo"] = "bar"
    middleware.process_response(request, HttpResponse())
    key = request.session.session_key
    del request.session["foo"]
    response = middleware.process_response(request, HttpResponse())
    assert request.session.session_key == key
    assert response.cookies["sessionid"].value == key
    assert stored(key) == {}


def test_save_every_request_writes_nothing_when_nothing_changed(store: str) -> None:
    key = saved({"a": 1}).session_key
    version = _managers.sync_manager().open(key).stored.version  # type: ignore[union-attr]
    request = RequestFactory().get("/")
    request.COOKIES["sessionid"] = key
    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        response = SessionMiddleware(lambda request: HttpResponse())(request)
    assert response.cookies["sessionid"].value == key  # the cookie is renewed ...
    after = _managers.sync_manager().open(key).stored
    assert after is not None and after.version == version  # ... the store is not rewritten


def test_a_request_that_changed_nothing_does_not_send_back_a_key_a_login_replaced(
    store: str,
) -> None:
    """With SESSION_SAVE_EVERY_REQUEST the middleware re-sends the cookie of a request that
    wrote nothing: a key another tab's login replaced meanwhile would overwrite the new key
    in the browser (logged out again). Django's database backend raises UpdateError there."""
    key = saved({"cart": [1]}).session_key

    def view(request: Any) -> HttpResponse:
        assert request.session["cart"] == [1]
        login = SessionStore(key)  # a login in another tab, while this request runs
        login.cycle_key()
        login.save()
        return HttpResponse()

    request = RequestFactory().get("/")
    request.COOKIES["sessionid"] = key
    with override_settings(SESSION_SAVE_EVERY_REQUEST=True), pytest.raises(SessionInterrupted):
        SessionMiddleware(view)(request)


def test_a_request_with_a_key_a_login_replaced_leaves_the_new_cookie_alone(store: str) -> None:
    """A request sent with the old key just before a login's response arrived: its session
    is empty, and Django's middleware deletes the cookie of an empty session, which by then
    holds the new key (logged out again)."""
    key = saved({"cart": [1]}).session_key
    login = SessionStore(key)
    login.cycle_key()
    login.save()
    request = RequestFactory().get("/")
    request.COOKIES["sessionid"] = key
    response = SessionMiddleware(lambda request: HttpResponse(request.session.get("cart")))(request)
    assert "sessionid" not in response.cookies
    assert stored(login.session_key) == {"cart": [1]}


def test_a_cleared_session_a_login_replaced_meanwhile_is_not_saved_under_a_new_key(
    store: str,
) -> None:
    """clear() before the session was read, then a login in another tab: saving would store
    what was set since under a new key, whose cookie replaces the login's in the browser."""
    key = saved({"cart": [1]}).session_key

    def view(request: Any) -> HttpResponse:
        request.session.clear()
        request.session["theme"] = "dark"
        login = SessionStore(key)
        login.cycle_key()
        login.save()
        view.new_key = login.session_key  # type: ignore[attr-defined]
        return HttpResponse()

    request = RequestFactory().get("/")
    request.COOKIES["sessionid"] = key
    with pytest.raises(SessionInterrupted):
        SessionMiddleware(view)(request)
    assert stored(view.new_key) == {"cart": [1]}  # type: ignore[attr-defined]


def test_set_expiry_in_the_past_ends_the_session(store: str) -> None:
    session = saved({"a": 1})
    key = session.session_key
    session.set_expiry(-10)
    session.save()
    assert stored(key) is None
    assert stored(session.session_key) is None


@pytest.mark.parametrize(
    "far", [dt.datetime(9999, 1, 1, tzinfo=dt.UTC), dt.timedelta(days=365 * 2000)]
)
def test_set_expiry_far_in_the_future_is_saved(store: str, far: Any) -> None:
    """Django's backends take any date a session's set_expiry() gives ("never expire":
    year 9999); ormsession's stores hold 1000 years, which is as long."""
    session = SessionStore()
    session["a"] = 1
    session.set_expiry(far)
    session.save()
    assert stored(session.session_key) is not None


def test_clearsessions_deletes_expired_sessions_through_gc(store: str) -> None:
    live = saved({"a": 1}).session_key
    short = SessionStore()
    short["a"] = 1
    short.set_expiry(1)
    short.save()
    time.sleep(1.1)
    call_command("clearsessions")
    assert stored(live) == {"a": 1}
    assert stored(short.session_key) is None
    if store == "sqlite":  # gone from the table, not only expired
        path = str(_managers.config().url.get_secret_value()).removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            (rows,) = db.execute("SELECT count(*) FROM session").fetchone()
        assert rows == 1


# -- async ---------------------------------------------------------------------------------
@pytest.mark.parametrize("store", ["sqlite", "postgresql", "redis"], indirect=True)
def test_the_async_methods_use_the_asyncio_manager_only(store: str) -> None:
    async def request_cycle() -> None:
        session = SessionStore()
        await session.aset("a", 1)
        await session.asave()
        key = session.session_key
        again = SessionStore(key)
        assert await again.aget("a") == 1
        await again.acycle_key()
        assert not await again.aexists(key)
        assert await again.aexists(again.session_key)
        await again.aset("b", 2)
        await again.asave()
        other = SessionStore(again.session_key)
        assert dict(await other.aitems()) == {"a": 1, "b": 2}
        await other.aflush()
        assert not await other.aexists(again.session_key)
        await SessionStore.aclear_expired()

    asyncio.run(request_cycle())
    assert _managers._current.sync is None, "an a* method used the synchronous manager"


def test_sync_and_async_share_the_memory_store() -> None:
    with override_settings(ORMSESSION_URL="memory://"):
        key = saved({"a": 1}).session_key

        async def read() -> Any:
            return await SessionStore(key).aget("a")

        assert asyncio.run(read()) == 1
        _managers.reset()


# -- settings ------------------------------------------------------------------------------
def test_options_django_owns_are_refused_naming_the_django_setting() -> None:
    with (
        override_settings(ORMSESSION_COOKIE_NAME="sid"),
        pytest.raises(ImproperlyConfigured, match="SESSION_COOKIE_NAME"),
    ):
        config_from_settings()
    with (
        override_settings(ORMSESSION_IDLE_TIMEOUT=60),
        pytest.raises(ImproperlyConfigured, match="SESSION_COOKIE_AGE"),
    ):
        config_from_settings()


def test_a_misspelt_ormsession_setting_is_refused_naming_the_closest_one() -> None:
    # Ignored, it would send the sessions to the default SQLite file.
    with (
        override_settings(ORMSESSION_URLL="memory://"),
        pytest.raises(ImproperlyConfigured, match=r"ORMSESSION_URLL .*did you mean ORMSESSION_URL"),
    ):
        config_from_settings()


def test_ormsession_settings_reach_the_configuration() -> None:
    with override_settings(ORMSESSION_URL="memory://", ORMSESSION_ENCRYPT=False):
        config = config_from_settings()
    assert config.encrypt is False
    assert config.set_cookie is False  # Django's middleware writes the cookie


def test_the_database_setting_builds_the_url_of_a_django_database() -> None:
    from sqlalchemy.engine import make_url

    pg = url_for_database(
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "USER": "app",
            "PASSWORD": "p@ss word",
            "HOST": "db.internal",
            "PORT": "5433",
        }
    )
    parsed = make_url(pg)
    assert (parsed.drivername, parsed.username, parsed.password) == (
        "postgresql",
        "app",
        "p@ss word",
    )
    assert (parsed.host, parsed.port, parsed.database) == ("db.internal", 5433, "app")
    my = {"ENGINE": "django.db.backends.mysql", "NAME": "app", "USER": "root"}
    assert url_for_database(my) == "mysql://root@/app"
    sqlite_file = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/app.sqlite3"}
    assert url_for_database(sqlite_file) == "sqlite:////srv/app.sqlite3"
    with pytest.raises(ImproperlyConfigured, match="oracle"):
        url_for_database({"ENGINE": "django.db.backends.oracle", "NAME": "x"})
    with pytest.raises(ImproperlyConfigured, match="in-memory"):
        url_for_database({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"})
    assert database_url("default") == f"sqlite:///{SHARED_MEMORY}&uri=true"
    with pytest.raises(ImproperlyConfigured, match="no database 'nope'"):
        database_url("nope")
    with (
        override_settings(ORMSESSION_URL="memory://", ORMSESSION_DATABASE="default"),
        pytest.raises(ImproperlyConfigured, match="not both"),
    ):
        config_from_settings()


def test_sessions_go_to_the_django_database_named(tmp_path: Any) -> None:
    """``ORMSESSION_DATABASE``: ormsession's table in Django's own database, here the shared
    in-memory SQLite database Django's test runner uses."""
    from django.db import connection

    # Django's connection keeps the database alive.
    with connection.cursor() as cursor, override_settings(ORMSESSION_DATABASE="default"):
        del settings.ORMSESSION_URL
        key = saved({"a": 1}).session_key
        assert stored(key) == {"a": 1}
        cursor.execute("SELECT count(*) FROM session")
        assert cursor.fetchone() == (1,)
        _managers.reset()


def test_the_async_side_opens_the_same_store_through_an_asyncio_driver() -> None:
    assert async_url_of("postgresql+psycopg2://a@h/d") == "postgresql://a@h/d"
    assert async_url_of("mysql+pymysql://a@h/d") == "mysql://a@h/d"
    assert async_url_of("postgresql+psycopg://a@h/d") == "postgresql+psycopg://a@h/d"
    assert async_url_of("redis://h:6379/0") == "redis://h:6379/0"


def test_the_session_cache_is_an_ormsession_session() -> None:
    with override_settings(ORMSESSION_URL="memory://"):
        session = SessionStore()
        session["a"] = 1
        assert isinstance(session._session_cache, RequestSession)
        _managers.reset()


def test_an_async_save_keeps_the_event_loop_running_while_the_store_is_slow(
    tmp_path: Any,
) -> None:
    """The a* methods await the store: while another connection holds the SQLite file's
    write lock, ``asave()`` waits, and a ticker task on the same loop keeps ticking (the
    method of tests/integrations/test_no_blocking.py)."""
    from tests.integrations.test_no_blocking import HOLD, MAX_GAP, TICK, lock_store_for

    path = tmp_path / "slow.sqlite3"

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        warm = SessionStore()
        await warm.aset("count", 1)
        await warm.asave()  # connections, schema and imports: unmeasured
        session = SessionStore(warm.session_key)
        await session.aset("count", await session.aget("count") + 1)
        held = lock_store_for(path, HOLD)
        await loop.run_in_executor(None, held.wait)
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(TICK)
                gaps.append(loop.time() - last)
                last = loop.time()

        task = asyncio.create_task(ticker())
        await asyncio.sleep(TICK)
        started = time.monotonic()
        try:
            await session.asave()
        finally:
            done.set()
            await task
        assert await SessionStore(warm.session_key).aget("count") == 2
        return time.monotonic() - started, max(gaps)

    with override_settings(ORMSESSION_URL=f"sqlite:///{path}"):
        elapsed, gap = asyncio.run(main())
        _managers.reset()
    assert elapsed >= HOLD * 0.8, "the store lock did not slow the save: the test is void"
    assert gap < MAX_GAP, f"the event loop stalled for {gap:.3f}s"


def test_later_event_loops_skip_the_schema_check_and_migration(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under WSGI every async view runs on a new event loop, with a manager of its own:
    the first checked (and migrated) the schema, the others need not do it again."""
    from ormsession import schema

    calls: list[str] = []
    upgrade, check = schema.upgrade, schema.check_schema

    def counted_upgrade(*args: Any, **kwargs: Any) -> None:
        calls.append("upgrade")
        upgrade(*args, **kwargs)

    def counted_check(*args: Any, **kwargs: Any) -> None:
        calls.append("check")
        check(*args, **kwargs)

    monkeypatch.setattr(schema, "upgrade", counted_upgrade)
    monkeypatch.setattr(schema, "check_schema", counted_check)

    async def read() -> Any:
        return await SessionStore().aget("a")

    with override_settings(ORMSESSION_URL=f"sqlite:///{tmp_path / 's.db'}"):
        try:
            for _ in range(3):
                asyncio.run(read())
        finally:
            _managers.reset()
    assert calls == ["upgrade", "check"]


def test_a_store_outage_with_on_store_error_fresh_leaves_the_browsers_cookie_alone(
    request: pytest.FixtureRequest,
) -> None:
    """``on_store_error="fresh"`` serves an empty, never-saved session during an outage "so
    an outage cannot overwrite the user's real cookie" (docs/security.md): Django's
    middleware deleted the cookie of that empty session, or sent a never-saved key."""
    from tests.support.tcp_proxy import TcpProxy

    target = target_for(request, "redis")
    options = {f"ORMSESSION_{key.upper()}": value for key, value in target.options.items()}

    def view(request: Any) -> HttpResponse:
        if request.GET.get("n"):
            request.session["n"] = request.GET["n"]
        return HttpResponse(str(request.session.get("n")))

    def get(key: str, path: str = "/") -> HttpResponse:
        request = RequestFactory().get(path)
        request.COOKIES["sessionid"] = key
        return SessionMiddleware(view)(request)  # type: ignore[no-any-return]

    with TcpProxy(("127.0.0.1", 6379)) as proxy:
        url = target.url.replace(":6379", f":{proxy.port}")
        settings_ = {"ORMSESSION_STORE_TIMEOUT": 0.5, "ORMSESSION_ON_STORE_ERROR": "fresh"}
        with override_settings(ORMSESSION_URL=url, **{**options, **settings_}):
            try:
                key = saved({"n": "1"}).session_key
                proxy.stall()
                assert get(key).content == b"None"
                assert "sessionid" not in get(key).cookies
                written = get(key, "/?n=2").cookies  # dropped, as the docs say
                assert "sessionid" not in written or written["sessionid"].value == key
                proxy.resume()
                assert get(key).content == b"1"
            finally:
                _managers.reset()


def test_an_outage_after_the_read_fails_no_unchanged_save_with_on_store_error_fresh(
    request: pytest.FixtureRequest,
) -> None:
    """A save with nothing to write reads the session once more (the key must still be
    live to be sent again); with ``on_store_error="fresh"`` a store gone down since the
    request's read fails nothing, as the save itself would not."""
    from tests.support.tcp_proxy import TcpProxy

    target = target_for(request, "redis")
    options = {f"ORMSESSION_{key.upper()}": value for key, value in target.options.items()}
    with TcpProxy(("127.0.0.1", 6379)) as proxy:
        url = target.url.replace(":6379", f":{proxy.port}")
        settings_ = {"ORMSESSION_STORE_TIMEOUT": 0.5, "ORMSESSION_ON_STORE_ERROR": "fresh"}
        with override_settings(ORMSESSION_URL=url, **{**options, **settings_}):
            try:
                key = saved({"n": "1"}).session_key
                session = SessionStore(key)
                assert session["n"] == "1"
                proxy.stall()
                session.save()
                assert session.session_key == key
            finally:
                _managers.reset()
