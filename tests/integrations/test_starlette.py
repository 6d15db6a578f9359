"""The ASGI middleware under Starlette: its TestClient, and httpx's ASGITransport."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import ormsession
from ormsession.async_manager import AsyncSessionManager
from ormsession.integrations.asgi import SessionMiddleware, destroy_session, regenerate_session
from tests.integrations.helpers import SetCookie, only_set_cookie, starlette_test_client

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


class TestManagerLifecycle:
    def test_lifespan_builds_at_startup_and_closes_at_shutdown(self) -> None:
        events: list[str] = []

        class Tracked(AsyncSessionManager):
            async def close(self) -> None:
                events.append("closed")
                await super().close()

        async def factory() -> AsyncSessionManager:
            events.append("built")
            plain_manager = await ormsession.configure_async("memory://")
            return Tracked(plain_manager.repository)

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
