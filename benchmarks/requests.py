"""Full requests: the same Flask and Starlette apps behind ormsession's integration or the
floor's session layer, driven by the same cookie-keeping client (Flask's test client;
``httpx.AsyncClient`` over ``ASGITransport`` in the event loop: Starlette's ``TestClient``
adds a thread hop that would hide most of the difference). The floor's layers do what a
hand-written one must: read the cookie, load the record, hand the app a dict that notices
assignments, save it if assigned, set the cookie (when new; under Flask, as Flask's
``should_set_cookie`` says: whenever modified), add ``Vary: Cookie`` if used."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from flask import Flask, session
from flask.sessions import SecureCookieSession, SessionInterface

from benchmarks.floors import AsyncFloor, Floor
from benchmarks.timing import OpRunner

#: What the benchmark's sessions hold: a logged-in user with a small cart.
SEED: dict[str, Any] = {"user_id": 42, "name": "ada", "cart": ["apple", "pear"], "visits": 0}
COOKIE = "session"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# -- Flask --------------------------------------------------------------------------------
def flask_app(*, manager: Any = None, floor: Floor | None = None) -> Any:
    """A Flask app with ``/login`` (creates the session), ``/read`` and ``/write``."""
    app = Flask("bench_ormsession" if manager is not None else "bench_floor")
    if manager is not None:
        from ormsession.integrations.flask import OrmSession

        OrmSession(app, manager=manager)
    else:
        assert floor is not None
        app.session_interface = FloorSessionInterface(floor)

    @app.post("/login")
    def login() -> str:
        session.update(SEED)
        return "ok"

    @app.get("/read")
    def read() -> str:
        return f"{session.get('user_id')} {len(session.get('cart', ()))}"

    @app.post("/write")
    def write() -> str:
        session["visits"] = session.get("visits", 0) + 1
        return "ok"

    return app


class FloorFlaskSession(SecureCookieSession):
    """Flask's own tracking dict (``modified``, ``accessed``) plus the id."""

    sid: str = ""
    new: bool = True


class FloorSessionInterface(SessionInterface):
    """A hand-written server-side Flask ``SessionInterface`` on a :class:`Floor`."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor

    def open_session(self, app: Any, request: Any) -> FloorFlaskSession:
        sid = request.cookies.get(COOKIE)
        data = self.floor.read(sid) if sid else None
        if data is None:
            session = FloorFlaskSession()
            session.sid, session.new = secrets.token_urlsafe(32), True
        else:
            session = FloorFlaskSession(data)
            session.sid, session.new = sid, False
        return session

    def save_session(self, app: Any, session: Any, response: Any) -> None:
        if session.accessed:
            response.vary.add("Cookie")
        if session.modified:
            self.floor.write(session.sid, dict(session))
        # Flask's rule for every session interface (its own cookie session's too): the
        # cookie goes out again whenever the session was modified.
        if self.should_set_cookie(app, session):
            response.set_cookie(COOKIE, session.sid, httponly=True, samesite="Lax")


def flask_runner(app: Any, method: str, path: str, expect: bytes | None = None) -> OpRunner:
    """A series of requests through a cookie-keeping Flask test client, after a login."""
    client = app.test_client()
    assert client.post("/login").status_code == 200
    call = client.get if method == "GET" else client.post
    first = call(path)
    assert first.status_code == 200, first.status_code
    if expect is not None:
        assert first.data == expect, first.data

    def run(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            response = call(path)
            if response.status_code != 200:
                raise AssertionError(f"{path} answered {response.status_code}")
        return time.perf_counter_ns() - start

    return run


# -- Starlette ----------------------------------------------------------------------------
class _TrackingDict(dict[str, Any]):
    """The floor's ASGI session: a dict that notices reads and assignments."""

    accessed = False
    modified = False

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return super().get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = self.modified = True
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.accessed = self.modified = True
        super().update(*args, **kwargs)


def _cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == COOKIE:
                    return str(val)
    return None


class FloorASGIMiddleware:
    """A hand-written ASGI session middleware on an :class:`AsyncFloor`."""

    def __init__(self, app: Any, floor: AsyncFloor) -> None:
        self.app = app
        self.floor = floor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sid = _cookie(scope)
        data = await self.floor.read(sid) if sid else None
        new = data is None
        if sid is None or data is None:
            sid = secrets.token_urlsafe(32)
        session = _TrackingDict(data or {})
        scope["session"] = session

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if session.accessed:
                    headers.append((b"vary", b"Cookie"))
                if session.modified:
                    await self.floor.write(sid, dict(session))
                    if new:
                        cookie = f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax"
                        headers.append((b"set-cookie", cookie.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_session)


def starlette_app(*, manager: Any = None, floor: AsyncFloor | None = None) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def login(request: Request) -> PlainTextResponse:
        request.session.update(SEED)
        return PlainTextResponse("ok")

    async def read(request: Request) -> PlainTextResponse:
        session = request.session
        return PlainTextResponse(f"{session.get('user_id')} {len(session.get('cart', ()))}")

    async def write(request: Request) -> PlainTextResponse:
        session = request.session
        session["visits"] = session.get("visits", 0) + 1
        return PlainTextResponse("ok")

    if manager is not None:
        from ormsession.integrations.asgi import SessionMiddleware

        middleware = Middleware(SessionMiddleware, manager=manager)
    else:
        assert floor is not None
        middleware = Middleware(FloorASGIMiddleware, floor=floor)
    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/read", read),
            Route("/write", write, methods=["POST"]),
        ],
        middleware=[middleware],
    )


class AsgiRunner:
    """Requests through a cookie-keeping ``httpx.AsyncClient`` on an ASGI app, one at a
    time; each series runs inside the event loop (``runner.run``)."""

    def __init__(self, app: Any, runner: Any) -> None:
        import httpx

        self.runner = runner
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        response = runner.run(self.client.post("/login"))
        assert response.status_code == 200, response.status_code
        assert COOKIE in self.client.cookies

    def series(self, method: str, path: str, expect: bytes | None = None) -> OpRunner:
        client = self.client
        first = self.runner.run(client.request(method, path))
        assert first.status_code == 200, first.status_code
        if expect is not None:
            assert first.content == expect, first.content

        async def requests(n: int) -> int:
            start = time.perf_counter_ns()
            for _ in range(n):
                response = await client.request(method, path)
                if response.status_code != 200:
                    raise AssertionError(f"{path} answered {response.status_code}")
            return time.perf_counter_ns() - start

        return lambda n: int(self.runner.run(requests(n)))

    def close(self) -> None:
        self.runner.run(self.client.aclose())
