"""A user's sessions in Quart: ``await login_session(...)`` and its siblings (the checks are
in :mod:`tests.integrations.users_apps`), and the Quart extension's own rules: regenerate,
destroy, permanent sessions, websockets, a ready manager."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import quart
from quart import Quart, session
from quart.testing.connections import WebsocketDisconnectError

import ormsession
from ormsession.errors import ConfigurationError
from ormsession.integrations.quart import (
    OrmSession,
    destroy_session,
    list_sessions,
    login_session,
    regenerate_session,
    revoke_other_sessions,
    revoke_session,
)
from tests.integrations import users_apps
from tests.integrations.helpers import parse_set_cookie
from tests.integrations.users_apps import a_user, listed


def users_app(**options: Any) -> Quart:
    app = Quart(__name__)
    app.testing = True
    OrmSession(app, **options)

    @app.post("/login")
    async def login() -> str:
        args = quart.request.args
        user: str | int = args["user"]
        if args.get("int"):
            user = int(user)
        if args.get("blank"):
            await login_session(user, user_agent=None, ip=None)
        elif "agent" in args:
            await login_session(user, user_agent=args["agent"])
        else:
            await login_session(user)
        return "ok"

    @app.get("/me")
    async def me() -> Any:
        return {
            "user": session.user_id,  # type: ignore[attr-defined]
            "handle": session.handle,  # type: ignore[attr-defined]
            "note": session.get("note"),
        }

    @app.get("/sessions")
    async def sessions() -> Any:
        return quart.jsonify(listed(await list_sessions()))

    @app.post("/revoke")
    async def revoke() -> Any:
        return {"ended": await revoke_session(quart.request.args["handle"])}

    @app.post("/revoke-others")
    async def revoke_others() -> Any:
        return {"ended": await revoke_other_sessions()}

    @app.post("/logout")
    async def logout() -> str:
        await destroy_session()
        return "bye"

    @app.post("/clear")
    async def clear() -> str:
        session.clear()
        return "bye"

    @app.post("/note")
    async def note() -> str:
        session["note"] = quart.request.args["text"]
        return "ok"

    @app.get("/whose")
    async def whose() -> str:
        return str(session.user_id)  # type: ignore[attr-defined]

    @app.post("/regenerate")
    async def regenerate() -> str:
        await regenerate_session()
        return "ok"

    @app.post("/permanent")
    async def permanent() -> str:
        session.permanent = True
        session["note"] = "kept"
        return "ok"

    @app.websocket("/ws")
    async def ws() -> None:
        await quart.websocket.accept()
        session["note"] = await quart.websocket.receive()
        await quart.websocket.send(str(session.user_id))  # type: ignore[attr-defined]

    return app


class Reply:
    """A Quart response, read: what the shared checks look at (as Werkzeug's has it)."""

    def __init__(self, status_code: int, headers: Any, text: str) -> None:
        self.status_code = status_code
        self.headers = headers
        self.text = text

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class Browser:
    """A Quart test client driven from sync test code: each request runs in
    ``asyncio.run``, on a new event loop, so the extension gives each its own manager (as
    a bare ``app.test_client()`` in separate tasks of a test suite would); an exception
    of the app's is raised here, as Flask's test client does."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.client = app.test_client()

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        raised: list[BaseException] = []

        async def record(sender: Any, exception: BaseException, **extra: Any) -> None:
            raised.append(exception)

        async def send() -> Reply:
            with quart.got_request_exception.connected_to(record, self.app):
                response = await self.client.open(path, method=method, **kwargs)
            return Reply(response.status_code, response.headers, await response.get_data(True))

        reply = asyncio.run(send())
        if raised:
            raise raised[0]
        return reply

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Reply:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def app(users_async_store_url: str) -> Quart:
    return users_app(url=users_async_store_url)


@pytest.fixture
def make_browser(app: Quart) -> Callable[[], Browser]:
    return lambda: Browser(app)


@pytest.mark.parametrize("check", users_apps.CHECKS, ids=lambda check: check.__name__[6:])
def test_users(make_browser: Callable[[], Browser], check: Any) -> None:
    check(make_browser, a_user())


def test_login_takes_agent_and_address_from_the_request(make_browser: Callable[[], Any]) -> None:
    # Quart's test client says it is "Quart", from the address "<local>".
    users_apps.check_login_takes_agent_and_address_from_the_request(
        make_browser, a_user(), "Quart", "<local>"
    )


@pytest.mark.parametrize("bad", users_apps.BAD_USER_IDS)
def test_a_bad_user_id_is_a_user_id_error(make_browser: Callable[[], Any], bad: str) -> None:
    users_apps.check_a_bad_user_id_is_a_user_id_error(make_browser, bad)


# -- the extension's own rules -------------------------------------------------------------
def cookie_of(reply: Reply) -> str:
    (header,) = reply.headers.getlist("Set-Cookie")
    return parse_set_cookie(header).value


def test_regenerate_gives_a_new_id_and_the_old_one_is_worthless(app: Quart) -> None:
    browser = Browser(app)
    old = cookie_of(browser.post("/note?text=hello"))
    new = cookie_of(browser.post("/regenerate"))
    assert new != old
    assert users_apps.me(browser)["note"] == "hello"
    stale = Browser(app).get("/me", headers={"Cookie": f"session={old}"})
    assert stale.json == {"user": None, "handle": None, "note": None}


def test_a_permanent_session_lives_permanent_session_lifetime() -> None:
    app = users_app(url="memory://")
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(minutes=5)
    browser = Browser(app)
    header = browser.post("/permanent").headers["Set-Cookie"]
    assert "Max-Age=300" in header
    # The store keeps it as long: the login's expiry follows the permanent session's rules.
    users_apps.login(browser, a_user())
    (item,) = users_apps.sessions(browser)
    remaining = datetime.fromisoformat(item["expires"]) - datetime.now(UTC)
    assert timedelta(minutes=4) < remaining <= timedelta(minutes=5)


async def closed_by_the_server(socket: Any) -> None:
    """Wait for the close Quart sends once the handler returned and its session was saved
    (a client that disconnects first cancels the handler, and its save with it)."""
    with pytest.raises(WebsocketDisconnectError):
        await socket.receive()


def test_a_websocket_keeps_changes_to_a_session_its_client_holds(app: Quart) -> None:
    browser = Browser(app)
    user = a_user()
    users_apps.login(browser, user)

    async def talk() -> str:
        async with browser.client.websocket("/ws") as socket:
            await socket.send("from the socket")
            answer = str(await socket.receive())
            await closed_by_the_server(socket)
        return answer

    assert asyncio.run(talk()) == user
    assert users_apps.me(browser)["note"] == "from the socket"


def test_a_websocket_without_a_session_stores_nothing(
    app: Quart, caplog: pytest.LogCaptureFixture
) -> None:
    browser = Browser(app)

    async def talk() -> str:
        async with browser.client.websocket("/ws") as socket:
            await socket.send("lost")
            answer = str(await socket.receive())
            await closed_by_the_server(socket)
        return answer

    with caplog.at_level(logging.WARNING, logger="ormsession"):
        assert asyncio.run(talk()) == "None"
    assert "cannot set a cookie" in caplog.text
    assert users_apps.me(browser) == {"user": None, "handle": None, "note": None}


def test_a_ready_manager_is_used_and_left_open() -> None:
    async def scenario() -> None:
        manager = await ormsession.configure_async(url="memory://")
        app = users_app(manager=manager)
        async with app.test_app() as served:
            client = served.test_client()
            await client.post("/note?text=x")
        assert await manager.count() == 1  # the app's manager: not closed at shutdown
        await manager.close()

    asyncio.run(scenario())


def test_a_sync_manager_is_refused() -> None:
    with ormsession.configure(url="memory://") as manager, pytest.raises(ConfigurationError):
        OrmSession(Quart(__name__), manager=manager)  # type: ignore[arg-type]


def test_quart_session_keys_are_refused() -> None:
    # Quart-Session's keys are Flask-Session's: refused with what to use instead.
    app = Quart(__name__)
    app.config["SESSION_TYPE"] = "redis"
    with pytest.raises(ConfigurationError, match="ORMSESSION_URL"):
        OrmSession(app)


def test_a_second_install_on_one_app_is_refused_and_the_first_keeps_serving() -> None:
    app = users_app(url="memory://", cookie_name="first")
    first = app.extensions["ormsession"]
    hooks = len(app.before_serving_funcs)
    with pytest.raises(ConfigurationError, match="already installed on app"):
        OrmSession(app, url="memory://", cookie_name="second")
    assert app.extensions["ormsession"] is first and len(app.before_serving_funcs) == hooks

    async def scenario() -> None:
        async with app.test_app():
            response = await app.test_client().post("/login?user=ada")
            assert parse_set_cookie(response.headers.getlist("Set-Cookie")[0]).name == "first"

    asyncio.run(scenario())
