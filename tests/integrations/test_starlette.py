"""The ASGI middleware under Starlette: its TestClient, and httpx's ASGITransport."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import ormsession
from ormsession.async_manager import AsyncSessionManager
from ormsession.integrations._asgi_loops import LoopManagers
from ormsession.integrations.asgi import (
    MANAGER_KEY,
    SessionMiddleware,
    destroy_session,
    regenerate_session,
)
from ormsession.schema import VERSION_TABLE, upgrade
from tests.integrations.helpers import SetCookie, only_set_cookie, starlette_test_client
from tests.support.sql_fixtures import async_url

if TYPE_CHECKING:
    from starlette.testclient import TestClient
else:
    TestClient = starlette_test_client()


async def count(request: Request) -> Response:
    request.session["count"] = request.session.get("count", 0) + 1
    return PlainTextResponse(str(request.session["count"]))


async def read(request: Request) -> Response:
    return PlainTextResponse(f"{request.session.get('user')}:{request.session.get('count', 0)}")


async def plain(request: Request) -> Response:
    return PlainTextResponse("plain", headers={"Vary": "Accept-Encoding"})


async def login(request: Request) -> Response:
    await regenerate_session(request)
    request.session["user"] = "ada"
    return PlainTextResponse("ok")


async def logout(request: Request) -> Response:
    await destroy_session(request)
    return PlainTextResponse("bye")


async def stream(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        request.session["late"] = True
        yield b"b"

    return StreamingResponse(body())


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"count": websocket.session.get("count", 0)})
    await websocket.close()


ROUTES = [
    Route("/count", count),
    Route("/read", read),
    Route("/plain", plain),
    Route("/login", login),
    Route("/logout", logout),
    Route("/stream", stream),
    WebSocketRoute("/ws", socket),
]


def make_app(**options: Any) -> Starlette:
    options.setdefault("url", "memory://")
    return Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, **options)])


def cookie_of(response: httpx.Response) -> SetCookie:
    return only_set_cookie(response.headers.get_list("set-cookie"))


def login_flow(client: TestClient, cookie_name: str = "session") -> None:
    first = client.get("/count")
    assert first.text == "1" and cookie_of(first).name == cookie_name
    anonymous = cookie_of(first).value
    assert client.get("/count").text == "2"
    read_only = client.get("/read")
    assert read_only.text == "None:2" and read_only.headers.get_list("set-cookie") == []
    assert read_only.headers["vary"] == "Cookie"

    rotated = cookie_of(client.get("/login")).value
    assert rotated not in ("", anonymous)
    assert client.get("/read").text == "ada:2"
    stale = client.get("/read", headers={"Cookie": f"{cookie_name}={anonymous}"})
    assert stale.text == "None:0", "the pre-login id must no longer work"
    current = client.get("/read", headers={"Cookie": f"{cookie_name}={rotated}"})
    assert current.text == "ada:2"  # the explicit Cookie header is what the app saw

    logout_response = client.get("/logout")
    assert cookie_of(logout_response).deletes
    assert client.get("/read").text == "None:0"


def test_flow_on_memory() -> None:
    with TestClient(make_app()) as client:
        login_flow(client)


def test_flow_on_real_stores(real_async_store_url: str) -> None:
    with TestClient(make_app(url=real_async_store_url)) as client:
        login_flow(client)


def test_unused_session_adds_no_headers_and_keeps_apps_vary() -> None:
    with TestClient(make_app()) as client:
        response = client.get("/plain")
    assert response.headers.get_list("set-cookie") == []
    assert response.headers.get_list("vary") == ["Accept-Encoding"]


def test_logout_cookie_carries_the_same_attributes() -> None:
    app = make_app(cookie_domain="testserver.local", cookie_secure=True, cookie_samesite="strict")
    with TestClient(app, base_url="https://testserver.local") as client:
        set_cookie = cookie_of(client.get("/login"))
        deleting = cookie_of(client.get("/logout"))
    assert deleting.deletes
    assert (
        deleting.same_scope()
        == set_cookie.same_scope()
        == {
            "path": "/",
            "domain": "testserver.local",
            "secure": "yes",
            "samesite": "Strict",
            "httponly": "yes",
        }
    )


@pytest.mark.parametrize("forged", ["nonsense", "A" * 43, "%00%00", "x" * 4000])
def test_forged_cookie_gives_a_fresh_session(forged: str) -> None:
    with TestClient(make_app()) as client:
        response = client.get("/read", headers={"Cookie": f"session={forged}"})
    assert response.status_code == 200 and response.text == "None:0"
    assert response.headers.get_list("set-cookie") == []


def test_id_header_and_query_opt_ins() -> None:
    with TestClient(make_app()) as client:
        sid = cookie_of(client.get("/count")).value
        client.cookies.clear()
        assert client.get("/read", headers={"X-Session-Id": sid}).text == "None:0"
        assert client.get(f"/read?sid={sid}").text == "None:0"
    with TestClient(make_app(id_header="X-Session-Id", id_query_param="sid")) as client:
        sid = cookie_of(client.get("/count")).value
        client.cookies.clear()
        assert client.get("/read", headers={"X-Session-Id": sid}).text == "None:1"
        assert client.get(f"/read?sid={sid}").text == "None:1"
        new_id = client.get("/login", headers={"X-Session-Id": sid}).headers["x-session-id"]
        client.cookies.clear()
        assert new_id not in ("", sid)
        assert client.get("/read", headers={"X-Session-Id": new_id}).text == "ada:1"


def test_forwarded_proto_and_host_prefix() -> None:
    headers = {"X-Forwarded-Proto": "https"}
    with TestClient(make_app()) as client:
        assert "secure" not in cookie_of(client.get("/count", headers=headers)).attributes
    with TestClient(make_app(trust_forwarded_proto=True)) as client:
        assert "secure" in cookie_of(client.get("/count", headers=headers)).attributes
    with TestClient(make_app(cookie_host_prefix=True)) as client:
        cookie = cookie_of(client.get("/count"))
    assert cookie.name == "__Host-session" and "secure" in cookie.attributes


def test_change_while_streaming_is_saved() -> None:
    manager_box: list[AsyncSessionManager] = []

    async def factory() -> AsyncSessionManager:
        manager_box.append(await ormsession.configure_async("memory://"))
        return manager_box[0]

    app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=factory)])
    with TestClient(app) as client:
        client.get("/count")
        assert client.get("/stream").text == "ab"

        async def stored() -> dict[str, Any]:
            session = await manager_box[0].open(client.cookies["session"])
            return dict(session)

        assert client.portal.call(stored) == {"count": 1, "late": True}  # type: ignore[union-attr]


def test_websocket_reads_the_session() -> None:
    with TestClient(make_app()) as client:
        client.get("/count")
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"count": 1}


def recording_factory(url: str, events: list[str]) -> Callable[[], Awaitable[AsyncSessionManager]]:
    """A manager factory for ``url`` that appends "built" to ``events`` when called, and
    "closed" when the manager it built is closed."""

    class Tracked(AsyncSessionManager):
        async def close(self) -> None:
            events.append("closed")
            await super().close()

    async def factory() -> AsyncSessionManager:
        events.append("built")
        plain = await ormsession.configure_async(url)
        return Tracked(plain.repository)

    return factory


class TestManagerLifecycle:
    def test_lifespan_builds_at_startup_and_closes_at_shutdown(self) -> None:
        events: list[str] = []
        factory = recording_factory("memory://", events)

        app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=factory)])
        with TestClient(app) as client:
            assert events == ["built"]  # before any request
            client.get("/count")
            client.get("/count")
            assert events == ["built"]
        assert events == ["built", "closed"]

    def test_a_given_manager_is_not_closed(self) -> None:
        closed: list[bool] = []

        class Tracked(AsyncSessionManager):
            async def close(self) -> None:
                closed.append(True)

        manager = Tracked(ormsession.repositories.memory.AsyncMemoryRepository())
        app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=manager)])
        with TestClient(app) as client:
            assert client.get("/count").text == "1"
        assert closed == []

    def test_lazy_build_happens_once_under_concurrency(self) -> None:
        built: list[int] = []

        async def factory() -> AsyncSessionManager:
            built.append(1)
            await asyncio.sleep(0.05)  # let the other requests pile up on the lock
            return await ormsession.configure_async("memory://")

        middleware_app = SessionMiddleware(Starlette(routes=ROUTES), manager=factory)

        async def main() -> list[str]:
            transport = httpx.ASGITransport(app=middleware_app)  # no lifespan: lazy path
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                responses = await asyncio.gather(*(client.get("/count") for _ in range(8)))
            await middleware_app.aclose()
            return [response.text for response in responses]

        assert asyncio.run(main()) == ["1"] * 8
        assert built == [1]

    def test_startup_failure_is_reported_at_startup(self) -> None:
        app = make_app(url="postgresql+asyncpg://nobody@127.0.0.1:1/none", store_timeout=1)
        with pytest.raises(Exception, match=r"(?i)connect|refused|unavailable"), TestClient(app):
            pass

    def test_sync_manager_is_refused(self) -> None:
        with pytest.raises(ormsession.ConfigurationError, match="block the event loop"):
            SessionMiddleware(Starlette(), manager=ormsession.configure("memory://"))  # type: ignore[arg-type]

    def test_manager_options_next_to_a_manager_are_rejected(self) -> None:
        async def factory() -> AsyncSessionManager:
            return await ormsession.configure_async("memory://")

        with pytest.raises(ormsession.ConfigurationError, match="cookie_name"):
            SessionMiddleware(Starlette(), manager=factory, cookie_name="x")


def test_httpx_asgi_transport_flow(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/count")).text == "1"
            assert (await client.get("/count")).text == "2"
            read_only = await client.get("/read")
            assert read_only.headers.get_list("set-cookie") == []
            login_response = await client.get("/login")
            assert cookie_of(login_response).value
            assert (await client.get("/read")).text == "ada:2"

    with caplog.at_level(logging.WARNING, logger="ormsession"):
        asyncio.run(main())
    assert not caplog.records


def test_helpers_without_middleware() -> None:
    async def endpoint(request: Request) -> Response:
        await regenerate_session(request)
        return JSONResponse({})

    app = Starlette(routes=[Route("/", endpoint)])
    with TestClient(app) as client, pytest.raises(RuntimeError, match="SessionMiddleware"):
        client.get("/")


# -- Starlette's own SessionMiddleware arguments (Starlette mode) -------------------------
async def show(request: Request) -> JSONResponse:
    return JSONResponse({"session": request.session})


async def put(request: Request) -> JSONResponse:
    request.session.update(await request.json())
    return JSONResponse({"session": request.session})


async def expiry(request: Request) -> JSONResponse:
    expires = request.session.expires_at
    return JSONResponse({"expires_in": None if expires is None else _seconds_left(expires)})


async def clear(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"session": request.session})


async def dict_ops(request: Request) -> JSONResponse:
    session = request.session
    merged = session | {"merged": True}
    copied = session.copy()
    copied["only_in_copy"] = True
    session |= {"ior": 1, "last": 2}
    last = session.popitem()
    return JSONResponse(
        {
            "merged": [type(merged).__name__, merged],
            "copied": type(copied).__name__,
            "popped": list(last),
            "session": session,
        }
    )


def _seconds_left(moment: Any) -> float:
    from ormsession.expiry import utcnow

    return float((moment - utcnow()).total_seconds())


def empty_session_table(async_url_of_store: str) -> None:
    """Remove every session of a test database (one this test session created)."""
    url = async_url_of_store.replace("+asyncpg", "+psycopg2").replace("+asyncmy", "+pymysql")
    engine = create_engine(url.replace("+aiosqlite", ""), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM session"))
    finally:
        engine.dispose()


@pytest.fixture
def store_url(real_async_store_url: str) -> Iterator[str]:
    """A real asyncio store, emptied afterwards: the PostgreSQL database is shared by the
    module's tests, and some of them count what is left."""
    yield real_async_store_url
    empty_session_table(real_async_store_url)


STARLETTE_ROUTES = [
    Route("/show", show),
    Route("/put", put, methods=["POST"]),
    Route("/expiry", expiry),
    Route("/clear", clear, methods=["POST"]),
    Route("/dict_ops", dict_ops, methods=["POST"]),
]


def starlette_app(*args: Any, **options: Any) -> Starlette:
    """An app with the middleware called as Starlette's would be (``args`` positional)."""
    options.setdefault("url", "memory://")
    return Starlette(
        routes=STARLETTE_ROUTES, middleware=[Middleware(SessionMiddleware, *args, **options)]
    )


class TestStarletteArguments:
    def test_positional_secret_and_starlettes_defaults(self, store_url: str) -> None:
        client = TestClient(starlette_app("not-needed", url=store_url))
        response = client.post("/put", json={"user": "ada"})
        set_cookie = response.headers["set-cookie"]
        assert re.fullmatch(
            r"session=[\w-]{43}; path=/; Max-Age=1209600; httponly; samesite=lax", set_cookie
        ), set_cookie
        assert client.get("/show").json() == {"session": {"user": "ada"}}
        # Starlette's max_age is also the server-side bound: the store keeps it 14 days.
        assert client.get("/expiry").json()["expires_in"] == pytest.approx(14 * 86400, abs=60)

    def test_every_cookie_argument(self) -> None:
        app = starlette_app(
            secret_key="s",
            session_cookie="sid",
            max_age=3600,
            path="/",
            same_site="none",
            https_only=True,
            domain=".example.com",
            partitioned=True,
        )
        client = TestClient(app, base_url="https://app.example.com")
        response = client.post("/put", json={"a": 1})
        cookie = response.headers["set-cookie"]
        sid = cookie.split(";")[0].removeprefix("sid=")
        assert cookie == (
            f"sid={sid}; path=/; Max-Age=3600; httponly; samesite=none; secure; "
            "domain=.example.com; partitioned"
        )
        assert client.get("/show").json() == {"session": {"a": 1}}
        deleting = client.post("/clear").headers["set-cookie"]
        assert deleting == (
            "sid=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; samesite=none; "
            "secure; domain=.example.com; partitioned"
        )
        assert client.get("/show").json() == {"session": {}}

    def test_a_path_scopes_the_cookie(self) -> None:
        client = TestClient(starlette_app(secret_key="s", path="/app"))
        assert "; path=/app; " in client.post("/put", json={"a": 1}).headers["set-cookie"]

    @pytest.mark.parametrize("max_age", [0, -1])
    def test_max_age_zero_or_less_sends_an_expired_cookie_and_stores_nothing(
        self, store_url: str, max_age: int, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def count_sessions(request: Request) -> JSONResponse:
            manager: AsyncSessionManager = request.scope["ormsession.manager"]
            return JSONResponse({"live": await manager.count()})

        app = starlette_app(secret_key="s", max_age=max_age, url=store_url)
        app.router.routes.append(Route("/live", count_sessions))
        client = TestClient(app)
        live_before = client.get("/live").json()["live"]  # the store may be shared
        with caplog.at_level(logging.WARNING, logger="ormsession"):
            response = client.post("/put", json={"a": 1})
        assert response.json() == {"session": {"a": 1}}  # the app saw its change
        cookie = response.headers["set-cookie"]
        assert f"; Max-Age={max_age}; " in cookie
        replayed = TestClient(app, cookies={"session": cookie.split(";")[0].split("=")[1]})
        assert replayed.get("/show").json() == {"session": {}}
        assert client.get("/live").json() == {"live": live_before}
        assert not caplog.records

    def test_max_age_none_is_a_browser_session_cookie(self, store_url: str) -> None:
        client = TestClient(starlette_app(secret_key="s", max_age=None, url=store_url))
        cookie = client.post("/put", json={"a": 1}).headers["set-cookie"]
        assert "max-age" not in cookie.lower() and "expires" not in cookie.lower()
        # The server still bounds the session: ormsession's idle timeout (1 day by default).
        assert client.get("/expiry").json()["expires_in"] == pytest.approx(86400, abs=60)

    def test_a_replayed_cookie_older_than_max_age_finds_no_session(self) -> None:
        client = TestClient(starlette_app(secret_key="s", max_age=1))
        cookie = client.post("/put", json={"a": 1}).headers["set-cookie"]
        sid = cookie.split(";")[0].split("=")[1]
        assert client.get("/show").json() == {"session": {"a": 1}}
        time.sleep(1.2)
        replayed = TestClient(client.app, cookies={"session": sid})
        assert replayed.get("/show").json() == {"session": {}}

    def test_ormsession_timeouts_set_by_the_app_win_over_max_age(self) -> None:
        client = TestClient(
            starlette_app(secret_key="s", max_age=3600, idle_timeout=timedelta(minutes=5))
        )
        assert "Max-Age=3600" in client.post("/put", json={"a": 1}).headers["set-cookie"]
        assert client.get("/expiry").json()["expires_in"] == pytest.approx(300, abs=30)

    def test_absolute_timeout_never_ends_a_session_before_its_cookie(self) -> None:
        ninety_days = 90 * 86400
        middleware = SessionMiddleware(Starlette(), secret_key="s", max_age=ninety_days)
        overrides = middleware._overrides
        assert overrides is not None and overrides.expiry is not None
        assert overrides.expiry.idle_timeout == timedelta(days=90)
        assert overrides.expiry.absolute_timeout == timedelta(days=90)  # not the 30-day default
        chosen = SessionMiddleware(
            Starlette(), secret_key="s", max_age=ninety_days, absolute_timeout="7d"
        )
        assert chosen._overrides is not None and chosen._overrides.expiry is not None
        assert chosen._overrides.expiry.absolute_timeout == timedelta(days=7)

    def test_an_ormsession_cookie_option_is_kept_when_starlette_does_not_name_it(self) -> None:
        client = TestClient(starlette_app(secret_key="s", cookie_name="sid", cookie_lifetime=60))
        cookie = client.post("/put", json={"a": 1}).headers["set-cookie"]
        assert cookie.startswith("sid=") and "; Max-Age=60; " in cookie
        # In Starlette mode the store keeps the session as long as its cookie lives.
        assert client.get("/expiry").json()["expires_in"] == pytest.approx(60, abs=5)

    def test_without_starlettes_names_ormsessions_defaults_apply(self) -> None:
        client = TestClient(starlette_app())
        cookie = client.post("/put", json={"a": 1}).headers["set-cookie"]
        assert cookie.endswith("; Path=/; HttpOnly; SameSite=Lax")  # standard, browser-session

    @pytest.mark.parametrize(
        "arguments",
        [
            {"same_site": "bogus"},
            {"same_site": None},
            {"max_age": "x"},
            {"max_age": True},
            {"max_age": 1.5},
            {"max_age": 10**13},
            {"max_age": 10**15},
            {"https_only": "yes"},
            {"partitioned": 1},
            {"session_cookie": "a b"},
            {"path": "no-slash"},
            {"domain": "not a host"},
            {"same_site": "none", "cookie_secure": False},
        ],
    )
    def test_bad_arguments_are_configuration_errors(self, arguments: dict[str, Any]) -> None:
        with pytest.raises(ormsession.ConfigurationError):
            SessionMiddleware(Starlette(), secret_key="s", url="memory://", **arguments)

    @pytest.mark.parametrize(
        "arguments",
        [
            {"session_cookie": "a", "cookie_name": "b"},
            {"path": "/a", "cookie_path": "/b"},
            {"domain": "a.example", "cookie_domain": "b.example"},
            {"same_site": "strict", "cookie_samesite": "lax"},
            {"https_only": True, "cookie_secure": False},
            {"partitioned": True, "cookie_partitioned": False},
            {"max_age": 60, "cookie_lifetime": 120},
            {"max_age": None, "cookie_lifetime": 120},
        ],
    )
    def test_a_starlette_name_and_its_twin_must_agree(self, arguments: dict[str, Any]) -> None:
        with pytest.raises(ormsession.ConfigurationError, match="both set"):
            SessionMiddleware(Starlette(), url="memory://", **arguments)

    def test_a_starlette_name_and_its_twin_may_say_the_same(self) -> None:
        middleware = SessionMiddleware(
            Starlette(), session_cookie="sid", cookie_name="sid", max_age=60, cookie_lifetime=60
        )
        assert middleware.cookie_name == "sid"

    def test_the_twin_may_come_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ORMSESSION_COOKIE_NAME", "from_env")
        monkeypatch.setenv("ORMSESSION_URL", "memory://")
        assert SessionMiddleware(Starlette(), secret_key="s").cookie_name == "from_env"
        with pytest.raises(ormsession.ConfigurationError, match="both set"):
            SessionMiddleware(Starlette(), session_cookie="other")

    def test_cookie_arguments_next_to_a_manager_are_refused(self) -> None:
        manager = AsyncSessionManager(ormsession.repositories.memory.AsyncMemoryRepository())
        with pytest.raises(ormsession.ConfigurationError, match="max_age"):
            SessionMiddleware(Starlette(), manager=manager, max_age=60)
        # The secret alone is fine (and ignored): the manager decides the cookie.
        assert SessionMiddleware(Starlette(), "secret", manager=manager).cookie_name is None


def test_request_session_behaves_as_a_dict(store_url: str) -> None:
    client = TestClient(starlette_app(secret_key="s", url=store_url))
    client.post("/put", json={"a": 1, "b": 2})
    answer = client.post("/dict_ops").json()
    assert answer == {
        "merged": ["dict", {"a": 1, "b": 2, "merged": True}],
        "copied": "dict",
        "popped": ["last", 2],  # popitem() takes the last key, as dict's does
        "session": {"a": 1, "b": 2, "ior": 1},
    }
    assert client.get("/show").json() == {"session": {"a": 1, "b": 2, "ior": 1}}


# -- no lifespan: a new event loop per request ---------------------------------------------
STORE_PORTS = {"postgresql": 5432, "mysql": 3306, "redis": 6379}


def tcp_connections_to(port: int) -> set[str]:
    """This process's established TCP connections to ``port`` (socket inodes, from /proc:
    the sockets among its own file descriptors), so other users of the shared servers do
    not count."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    connected = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote, state, inode = fields[2], fields[3], fields[9]
                established = state == "01"
                if established and inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port:
                    connected.add(inode)
    return connected


class OpenConnections:
    """The store connections a test opened and left open: TCP connections to the server,
    or (SQLite) aiosqlite's connection threads."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.before = self._now()

    def _now(self) -> set[Any]:
        gc.collect()  # a leaked aiosqlite connection warns when collected
        if self.store == "sqlite":
            # aiosqlite runs each connection in a thread named after its worker function.
            return {t for t in threading.enumerate() if "_connection_worker" in t.name}
        return tcp_connections_to(STORE_PORTS[self.store])

    def left(self) -> int:
        opened = self._now() - self.before
        if self.store == "sqlite":
            # A closed connection's thread ends right after the close (give it a moment);
            # a leaked one never does.
            for thread in opened:
                thread.join(timeout=2)
            return sum(thread.is_alive() for thread in opened)
        return len(opened)


@pytest.fixture(params=["sqlite", "postgresql", "mysql", "redis"])
def loop_store(
    request: pytest.FixtureRequest, sqlite_path: Path
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(store name, middleware options) for each real asyncio store, in its own database
    or key prefix, emptied afterwards."""
    name = request.param
    if name == "redis":
        prefix = request.getfixturevalue("redis_key_prefix")  # its keys deleted afterwards
        yield name, {"url": request.getfixturevalue("redis_url"), "key_prefix": prefix}
        return
    if name == "sqlite":
        url = f"sqlite+aiosqlite:///{sqlite_path}"
    elif name == "postgresql":
        url = request.getfixturevalue("postgres_async_url")
    else:
        sync_url = request.getfixturevalue("mysql_url")
        upgrade(sync_url)
        url = async_url(sync_url)
    yield name, {"url": url}
    empty_session_table(url)


@pytest.mark.filterwarnings("error")
class TestEveryEventLoop:
    def test_test_client_without_with(self, loop_store: tuple[str, dict[str, Any]]) -> None:
        name, options = loop_store
        connections = OpenConnections(name)
        client = TestClient(make_app(**options))  # no `with`: a new loop per request
        for expected in ("1", "2", "3", "4"):
            assert client.get("/count").text == expected
            assert connections.left() == 0, "a loop's connection was left open"
        assert client.get("/read").text == "None:4"

    def test_successive_asyncio_runs(self, loop_store: tuple[str, dict[str, Any]]) -> None:
        name, options = loop_store
        connections = OpenConnections(name)
        app = make_app(**options)
        cookies = httpx.Cookies()

        async def one_request() -> str:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://t", cookies=cookies
            ) as client:
                response = await client.get("/count")
                cookies.update(response.cookies)
                return response.text

        assert [asyncio.run(one_request()) for _ in range(3)] == ["1", "2", "3"]
        assert connections.left() == 0

    def test_with_lifespan_one_manager_serves_every_request(
        self, loop_store: tuple[str, dict[str, Any]]
    ) -> None:
        name, options = loop_store
        connections = OpenConnections(name)
        managers: set[int] = set()

        async def which(request: Request) -> Response:
            managers.add(id(request.scope[MANAGER_KEY]))
            return PlainTextResponse("ok")

        app = make_app(**options)
        app.router.routes.append(Route("/which", which))
        with TestClient(app) as client:
            for _ in range(3):
                client.get("/which")
        assert len(managers) == 1
        assert connections.left() == 0

    def test_a_factory_is_called_and_closed_per_loop(self, sqlite_path: Path) -> None:
        events: list[str] = []
        factory = recording_factory(f"sqlite+aiosqlite:///{sqlite_path}", events)

        client = TestClient(
            Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=factory)])
        )
        assert client.get("/count").text == "1"
        assert client.get("/count").text == "2"
        assert events == ["built", "closed", "built", "closed"]

    def test_later_loops_skip_the_schema_check(self, sqlite_path: Path) -> None:
        url = f"sqlite+aiosqlite:///{sqlite_path}"
        client = TestClient(make_app(url=url))
        assert client.get("/count").text == "1"  # migrates and checks the new file
        # Were the check run again, the next loop's manager would refuse this database.
        engine = create_engine(f"sqlite:///{sqlite_path}", poolclass=NullPool)
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        engine.dispose()
        assert client.get("/count").text == "2"
        assert client.get("/count").text == "3"
        with pytest.raises(ormsession.SchemaError):  # a new app does check it
            TestClient(make_app(url=url, auto_migrate=False)).get("/count")

    def test_a_client_without_with_next_to_one_with_it(
        self, loop_store: tuple[str, dict[str, Any]]
    ) -> None:
        # The lifespan's manager belongs to the `with` block's loop: a second client's
        # requests, each on a loop of its own, get their own managers.
        _, options = loop_store
        app = make_app(**options)
        with TestClient(app) as inside:
            assert inside.get("/count").text == "1"
            other = TestClient(app)
            assert [other.get("/count").text for _ in range(2)] == ["1", "2"]
            assert inside.get("/count").text == "2"

    def test_memory_is_shared_by_every_loop(self) -> None:
        client = TestClient(make_app())
        assert [client.get("/count").text for _ in range(3)] == ["1", "2", "3"]

    def test_a_given_manager_is_used_on_every_loop_and_never_closed(self) -> None:
        closed: list[bool] = []

        class Tracked(AsyncSessionManager):
            async def close(self) -> None:
                closed.append(True)

        manager = Tracked(ormsession.repositories.memory.AsyncMemoryRepository())
        app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=manager)])
        client = TestClient(app)
        assert [client.get("/count").text for _ in range(2)] == ["1", "2"]
        assert closed == []

    def test_a_failed_build_fails_that_request_and_the_next_one_retries(self) -> None:
        attempts: list[int] = []

        async def factory() -> AsyncSessionManager:
            attempts.append(1)
            if len(attempts) == 1:
                raise ormsession.StoreUnavailableError("not yet")
            return await ormsession.configure_async("memory://")

        middleware_app = SessionMiddleware(Starlette(routes=ROUTES), manager=factory)

        async def main() -> list[int]:
            transport = httpx.ASGITransport(app=middleware_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                with pytest.raises(ormsession.StoreUnavailableError):
                    await client.get("/count")
                response = await client.get("/count")
            await middleware_app.aclose()
            return [response.status_code, len(attempts)]

        assert asyncio.run(main()) == [200, 2]


@pytest.mark.timeout(10)  # a deadlock in the collector must end as a failure
@pytest.mark.filterwarnings("error")
def test_loops_closed_by_hand_leave_no_entries_behind() -> None:
    """A loop closed without cancelling its tasks never runs its guardian; its entry is
    dropped when the next loop arrives."""
    closed: list[int] = []

    class NoConnections:  # stands for a store bound to its loop, holding nothing
        async def close(self) -> None:
            closed.append(1)

    async def build() -> AsyncSessionManager:
        return AsyncSessionManager(NoConnections())  # type: ignore[arg-type]

    managers = LoopManagers(build)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(managers.get())
    loop.close()
    with managers._lock:  # as when the next loop prunes it: the collector may run then
        managers._entries.clear()
        gc.collect()  # finalizes the abandoned guardian, which must not deadlock
    for _ in range(3):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(managers.get())
        loop.close()  # by hand: the guardian task is left pending
    assert len(managers._entries) == 1  # only the last closed loop's, until the next arrives
    asyncio.run(managers.get())  # asyncio.run cancels the guardian: its manager is closed
    assert managers._entries == {}
    assert closed


def test_an_in_memory_sqlite_database_is_created_for_each_lifespan() -> None:
    # Each manager has its own in-memory database: its schema is made every time, even
    # after an earlier manager of the same middleware made its own (one test per block).
    app = make_app(url="sqlite+aiosqlite://")
    test_client = starlette_test_client()
    for _ in range(2):
        with test_client(app) as client:
            assert [client.get("/count").text for _ in range(2)] == ["1", "2"]


# -- an app that replaces scope["session"] (Litestar's set_session / clear_session) ---------
def replacing_app(replacement: object) -> Starlette:
    async def replace(request: Request) -> Response:
        request.scope["session"] = replacement
        return PlainTextResponse("replaced")

    return Starlette(
        routes=[Route("/count", count), Route("/read", read), Route("/replace", replace)],
        middleware=[Middleware(SessionMiddleware, url="memory://")],
    )


def test_a_replaced_session_mapping_is_what_is_saved() -> None:
    # Read when the response starts, as Starlette's own middleware reads scope["session"].
    with TestClient(replacing_app({"user": "ada", "count": 7})) as client:
        client.get("/count")
        cookie = client.cookies["session"]
        assert "set-cookie" not in client.get("/replace").headers  # same id, new content
        assert client.get("/read").text == "ada:7"
        assert client.cookies["session"] == cookie


@pytest.mark.parametrize("sentinel", [None, type("Empty", (), {})])
def test_a_session_replaced_by_none_or_a_sentinel_is_destroyed(sentinel: object) -> None:
    with TestClient(replacing_app(sentinel)) as client:
        client.get("/count")
        stale = client.cookies["session"]
        assert only_set_cookie(client.get("/replace").headers.get_list("set-cookie")).deletes
        # Destroyed in the store, not only forgotten by this browser.
        response = client.get("/read", headers={"Cookie": f"session={stale}"})
        assert response.text == "None:0"


def test_a_session_replaced_by_something_else_is_an_error() -> None:
    with TestClient(replacing_app(42)) as client, pytest.raises(TypeError, match="mapping"):
        client.get("/replace")
