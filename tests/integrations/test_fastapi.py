"""FastAPI: the middleware plus the ``SessionDep`` dependency, through FastAPI's TestClient."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Request

from ormsession.integrations.asgi import (
    SessionDep,
    SessionMiddleware,
    destroy_session,
    get_session,
    regenerate_session,
)
from tests.integrations.helpers import SetCookie, only_set_cookie, starlette_test_client

if TYPE_CHECKING:
    from starlette.testclient import TestClient
else:
    TestClient = starlette_test_client()


def make_app(**options: Any) -> FastAPI:
    app = FastAPI()
    options.setdefault("url", "memory://")
    app.add_middleware(SessionMiddleware, **options)

    @app.post("/cart/{item}")
    def add(item: str, session: SessionDep) -> dict[str, Any]:
        # A sync endpoint (run in a thread by FastAPI) gets the same session object.
        session.setdefault("cart", []).append(item)
        return {"cart": session["cart"]}

    @app.get("/me")
    async def me(session: SessionDep) -> dict[str, Any]:
        return {"user": session.get("user"), "cart": session.get("cart", [])}

    @app.post("/login")
    async def login(request: Request, session: SessionDep) -> dict[str, str]:
        assert session is request.session
        await regenerate_session(request)
        session["user"] = "ada"
        return {"ok": "yes"}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, str]:
        await destroy_session(request)
        return {"ok": "bye"}

    return app


def cookie_of(response: httpx.Response) -> SetCookie:
    return only_set_cookie(response.headers.get_list("set-cookie"))


def shopping_flow(client: Any) -> None:
    first = client.post("/cart/apple")
    assert first.json() == {"cart": ["apple"]}
    anonymous = cookie_of(first).value
    assert client.post("/cart/pear").json() == {"cart": ["apple", "pear"]}
    me = client.get("/me")
    assert me.json() == {"user": None, "cart": ["apple", "pear"]}
    assert me.headers.get_list("set-cookie") == [] and me.headers["vary"] == "Cookie"

    rotated = cookie_of(client.post("/login")).value
    assert rotated not in ("", anonymous)
    assert client.get("/me").json() == {"user": "ada", "cart": ["apple", "pear"]}
    stale = client.get("/me", headers={"Cookie": f"session={anonymous}"})
    assert stale.json() == {"user": None, "cart": []}

    logout = client.post("/logout")
    assert cookie_of(logout).deletes
    assert client.get("/me").json() == {"user": None, "cart": []}


def test_flow_on_memory() -> None:
    with TestClient(make_app()) as client:
        shopping_flow(client)


def test_flow_on_real_stores(real_async_store_url: str) -> None:
    with TestClient(make_app(url=real_async_store_url)) as client:
        shopping_flow(client)


def test_dependency_is_exported_and_named() -> None:
    assert get_session.__name__ == "get_session"
    assert SessionDep.__metadata__[0].dependency is get_session  # type: ignore[attr-defined]


def test_header_id_opt_in() -> None:
    with TestClient(make_app()) as client:
        sid = cookie_of(client.post("/cart/apple")).value
        client.cookies.clear()
        assert client.get("/me", headers={"X-Session-Id": sid}).json()["cart"] == []
    with TestClient(make_app(id_header="X-Session-Id")) as client:
        sid = cookie_of(client.post("/cart/apple")).value
        client.cookies.clear()
        assert client.get("/me", headers={"X-Session-Id": sid}).json()["cart"] == ["apple"]
        new_id = client.post("/login", headers={"X-Session-Id": sid}).headers["x-session-id"]
        client.cookies.clear()
        assert client.get("/me", headers={"X-Session-Id": new_id}).json()["user"] == "ada"


def test_forged_cookie_gives_a_fresh_session() -> None:
    with TestClient(make_app()) as client:
        response = client.get("/me", headers={"Cookie": "session=../../" + "A" * 60})
    assert response.status_code == 200 and response.json() == {"user": None, "cart": []}


def test_starlettes_arguments_and_no_with(real_async_store_url: str) -> None:
    """The one-line switch: Starlette's call unchanged, and FastAPI's TestClient without
    ``with`` (a new event loop per request, no lifespan) on a real store."""
    app = FastAPI()
    app.add_middleware(
        SessionMiddleware, secret_key="unused", max_age=3600, url=real_async_store_url
    )

    @app.post("/cart/{item}")
    async def add(item: str, session: SessionDep) -> dict[str, Any]:
        session.setdefault("cart", []).append(item)
        return {"cart": session["cart"]}

    @app.post("/empty")
    async def empty(session: SessionDep) -> dict[str, Any]:
        session.clear()
        return {"session": session}

    client = TestClient(app)
    first = client.post("/cart/apple")
    assert re.fullmatch(
        r"session=[\w-]{43}; path=/; Max-Age=3600; httponly; samesite=lax",
        first.headers["set-cookie"],
    )
    assert client.post("/cart/pear").json() == {"cart": ["apple", "pear"]}
    emptied = client.post("/empty")
    assert emptied.json() == {"session": {}}
    assert emptied.headers["set-cookie"].startswith("session=; path=/; expires=Thu, 01 Jan 1970")
    assert client.post("/cart/fig").json() == {"cart": ["fig"]}
    client.post("/empty")  # ends it: the store is shared with other tests that count
