"""A user's sessions in Starlette and FastAPI: ``await login_session(request, ...)`` and
its siblings (the checks are in :mod:`tests.integrations.users_apps`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import ormsession
from ormsession.async_manager import AsyncSessionManager
from ormsession.integrations.asgi import (
    SessionDep,
    SessionMiddleware,
    destroy_session,
    list_sessions,
    login_session,
    revoke_other_sessions,
    revoke_session,
)
from ormsession.repositories.memory import AsyncMemoryRepository, MemoryRepository
from tests.integrations import users_apps
from tests.integrations.helpers import starlette_test_client
from tests.integrations.users_apps import a_user, listed

if TYPE_CHECKING:
    from starlette.testclient import TestClient
else:
    TestClient = starlette_test_client()

Factory = Callable[[], Awaitable[AsyncSessionManager]]


def manager_factory(url: str) -> Factory:
    """Each browser is a TestClient used without ``with``: each request runs on an event
    loop of its own, which gets a manager of its own (see ``_asgi_loops``). On the memory
    store those managers share one store, as a real server's one process would."""
    if url == "memory://":
        shared = MemoryRepository()

        async def on_memory() -> AsyncSessionManager:
            return AsyncSessionManager(AsyncMemoryRepository(shared))

        return on_memory

    async def on_url() -> AsyncSessionManager:
        return await ormsession.configure_async(url=url)

    return on_url


async def _login(request: Request) -> Any:
    args = request.query_params
    user: str | int = args["user"]
    if args.get("int"):
        user = int(user)
    if args.get("blank"):
        await login_session(request, user, user_agent=None, ip=None)
    elif "agent" in args:
        await login_session(request, user, user_agent=args["agent"])
    else:
        await login_session(request, user)
    return PlainTextResponse("ok")


async def _me(request: Request) -> Any:
    session = request.session
    return JSONResponse(
        {"user": session.user_id, "handle": session.handle, "note": session.get("note")}  # type: ignore[attr-defined]
    )


async def _sessions(request: Request) -> Any:
    return JSONResponse(listed(await list_sessions(request)))


async def _revoke(request: Request) -> Any:
    return JSONResponse({"ended": await revoke_session(request, request.query_params["handle"])})


async def _revoke_others(request: Request) -> Any:
    return JSONResponse({"ended": await revoke_other_sessions(request)})


async def _logout(request: Request) -> Any:
    await destroy_session(request)
    return PlainTextResponse("bye")


async def _clear(request: Request) -> Any:
    request.session.clear()
    return PlainTextResponse("bye")


async def _note(request: Request) -> Any:
    request.session["note"] = request.query_params["text"]
    return PlainTextResponse("ok")


async def _whose(request: Request) -> Any:
    return PlainTextResponse(str(request.session.user_id))  # type: ignore[attr-defined]


ROUTES = {
    ("POST", "/login"): _login,
    ("GET", "/me"): _me,
    ("GET", "/sessions"): _sessions,
    ("POST", "/revoke"): _revoke,
    ("POST", "/revoke-others"): _revoke_others,
    ("POST", "/logout"): _logout,
    ("POST", "/clear"): _clear,
    ("POST", "/note"): _note,
    ("GET", "/whose"): _whose,
}


def starlette_app(factory: Factory) -> Any:
    routes = [Route(path, view, methods=[method]) for (method, path), view in ROUTES.items()]
    return Starlette(routes=routes, middleware=[Middleware(SessionMiddleware, manager=factory)])


def fastapi_app(factory: Factory) -> Any:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, manager=factory)
    for (method, path), view in ROUTES.items():
        if path == "/me":
            continue
        app.add_api_route(path, view, methods=[method])

    @app.get("/me")
    async def me(session: SessionDep) -> dict[str, Any]:
        # The FastAPI dependency hands out the same session the helpers work on.
        return {"user": session.user_id, "handle": session.handle, "note": session.get("note")}

    return app


@pytest.fixture(params=["starlette", "fastapi"])
def make_browser(request: pytest.FixtureRequest, users_async_store_url: str) -> Callable[[], Any]:
    build = starlette_app if request.param == "starlette" else fastapi_app
    app = build(manager_factory(users_async_store_url))
    return lambda: TestClient(app)


@pytest.mark.parametrize("check", users_apps.CHECKS, ids=lambda check: check.__name__[6:])
def test_users(make_browser: Callable[[], Any], check: Any) -> None:
    check(make_browser, a_user())


def test_login_takes_agent_and_address_from_the_request(make_browser: Callable[[], Any]) -> None:
    # Starlette's TestClient says it is "testclient", from the host "testclient".
    users_apps.check_login_takes_agent_and_address_from_the_request(
        make_browser, a_user(), "testclient", "testclient"
    )


@pytest.mark.parametrize("bad", users_apps.BAD_USER_IDS)
def test_a_bad_user_id_is_a_user_id_error(make_browser: Callable[[], Any], bad: str) -> None:
    users_apps.check_a_bad_user_id_is_a_user_id_error(make_browser, bad)


def test_a_login_follows_starlettes_max_age() -> None:
    # Starlette's max_age sets the request's timeouts; the login's rename sets the store's
    # expiry by them (as regenerate_session does), not by the config's day-long default.
    routes = [Route(path, view, methods=[method]) for (method, path), view in ROUTES.items()]
    middleware = Middleware(SessionMiddleware, secret_key="unused", max_age=300, url="memory://")
    app = Starlette(routes=routes, middleware=[middleware])
    with TestClient(app) as client:
        users_apps.login(client, a_user())
        (item,) = users_apps.sessions(client)
    remaining = datetime.fromisoformat(item["expires"]) - datetime.now(UTC)
    assert timedelta(minutes=4) < remaining <= timedelta(minutes=5)
