"""Full requests: Flask (WSGI) and Starlette (ASGI), ormsession's integration vs the floor's.

Both sides of a comparison run the same app (same routes, same endpoint code) behind their
session layer and are driven by the same cookie-keeping client:

- WSGI: Flask's test client (Werkzeug), in-process, no sockets.
- ASGI: ``httpx.AsyncClient`` over ``httpx.ASGITransport``, in the benchmark's event loop:
  no thread hop per request, unlike Starlette's ``TestClient`` (which runs the app in a
  portal thread), so the client costs least.

The floor's session layers are what a hand-written integration needs: read the cookie, load
the record, hand the app a dict that notices assignments, save it if assigned, set the
cookie for a new session, add ``Vary: Cookie`` when the session was used.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from importlib import import_module
from typing import Any

from flask import Flask, session
from flask.sessions import SecureCookieSession, SessionInterface

from benchmarks.floors import AsyncFloor, Floor
from benchmarks.timing import OpRunner, Waits, run_rounds

__all__ = [
    "REQUEST_KINDS",
    "SEED",
    "AsgiRunner",
    "FloorASGIMiddleware",
    "FloorFlaskSession",
    "FloorSessionInterface",
    "flask_app",
    "flask_runner",
    "request_series",
    "rounds_against_floor",
    "starlette_app",
]

#: The request kinds :func:`request_series` makes.
REQUEST_KINDS = ("flask-read", "flask-write", "starlette-read", "starlette-write")

#: What the benchmark's sessions hold: a logged-in user with a small cart.
SEED: dict[str, Any] = {"user_id": 42, "name": "ada", "cart": ["apple", "pear"], "visits": 0}
COOKIE = "session"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# -- Flask --------------------------------------------------------------------------------
def flask_app(
    *, manager: Any = None, floor: Floor | None = None, package: str = "ormsession"
) -> Any:
    """A Flask app with ``/login`` (creates the session), ``/read`` and ``/write``.
    ``package``: whose integration to use (``benchmarks.ab`` passes an older copy's)."""
    app = Flask(f"bench_{package if manager is not None else 'floor'}")
    if manager is not None:
        import_module(f"{package}.integrations.flask").OrmSession(app, manager=manager)
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
        if not session.modified:
            return
        self.floor.write(session.sid, dict(session))
        if session.new:
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


def starlette_app(
    *, manager: Any = None, floor: AsyncFloor | None = None, package: str = "ormsession"
) -> Any:
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
        session_middleware = import_module(f"{package}.integrations.asgi").SessionMiddleware
        middleware = Middleware(session_middleware, manager=manager)
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
    """Requests through cookie-keeping ``httpx.AsyncClient`` s on an ASGI app; run each series
    inside the event loop with ``runner.run(series(n))``. ``in_flight`` clients, each with its
    own session, send their requests at the same time (one client: one request at a time)."""

    def __init__(self, app: Any, runner: Any, *, in_flight: int = 1) -> None:
        import httpx

        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, not {in_flight}")
        self.runner = runner
        self.clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
            for _ in range(in_flight)
        ]
        for client in self.clients:
            response = runner.run(client.post("/login"))
            assert response.status_code == 200, response.status_code
            assert COOKIE in client.cookies

    def series(self, method: str, path: str, expect: bytes | None = None) -> OpRunner:
        clients = self.clients
        for client in clients:
            first = self.runner.run(client.request(method, path))
            assert first.status_code == 200, first.status_code
            if expect is not None:
                assert first.content == expect, first.content

        async def requests(client: Any, n: int) -> None:
            for _ in range(n):
                response = await client.request(method, path)
                if response.status_code != 200:
                    raise AssertionError(f"{path} answered {response.status_code}")

        async def one_at_a_time(n: int) -> int:
            start = time.perf_counter_ns()
            await requests(clients[0], n)
            return time.perf_counter_ns() - start

        async def together(n: int) -> int:
            # Each client's share, rounded up; the time is scaled back to n requests.
            share = -(-n // len(clients))
            start = time.perf_counter_ns()
            await asyncio.gather(*(requests(client, share) for client in clients))
            return (time.perf_counter_ns() - start) * n // (share * len(clients))

        series = one_at_a_time if len(clients) == 1 else together
        return lambda n: int(self.runner.run(series(n)))

    def close(self) -> None:
        for client in self.clients:
            self.runner.run(client.aclose())


def request_series(
    kind: str,
    runner: Any,
    stack: contextlib.ExitStack,
    *,
    managers: tuple[Any, Any] | None = None,
    floors: tuple[Floor, AsyncFloor] | None = None,
    package: str = "ormsession",
    in_flight: int = 1,
) -> OpRunner:
    """A series of ``kind`` requests (``flask-read``, ``flask-write``, ``starlette-read``,
    ``starlette-write``): through ``package``'s integration on ``managers`` (sync, async), or
    the floor's session layer on ``floors``. ``in_flight``: Starlette requests sent at once
    (Flask's test client sends one at a time). An ASGI client is closed with ``stack``."""
    framework, operation = kind.split("-")
    method, path = ("GET", "/read") if operation == "read" else ("POST", "/write")
    if framework == "flask":
        if managers is not None:
            app = flask_app(manager=managers[0], package=package)
        else:
            assert floors is not None, "a series needs managers or floors"
            app = flask_app(floor=floors[0])
        return flask_runner(app, method, path)
    if managers is not None:
        asgi_app = starlette_app(manager=managers[1], package=package)
    else:
        assert floors is not None, "a series needs managers or floors"
        asgi_app = starlette_app(floor=floors[1])
    asgi = AsgiRunner(asgi_app, runner, in_flight=in_flight)
    stack.callback(asgi.close)
    return asgi.series(method, path)


def rounds_against_floor(
    kind: str,
    runner: Any,
    stack: contextlib.ExitStack,
    sides: Mapping[str, tuple[Any, Any]],
    floors: tuple[Floor, AsyncFloor],
    *,
    rounds: int,
    ops: int,
    in_flight: int = 1,
) -> tuple[dict[str, list[float]], dict[str, Waits]]:
    """``kind`` requests through each side's managers (sync, async) and through the floor's
    layer on ``floors``, in the same interleaved rounds: the per-round times
    (:func:`~benchmarks.timing.run_rounds`) and each series' waits, keyed by side and
    ``"floor"``."""
    series = {
        side: request_series(kind, runner, stack, managers=managers, in_flight=in_flight)
        for side, managers in sides.items()
    }
    series["floor"] = request_series(kind, runner, stack, floors=floors, in_flight=in_flight)
    waits = {side: Waits() for side in series}
    group = {side: waits[side].counting(run) for side, run in series.items()}
    return run_rounds(group, rounds=rounds, ops=ops, warmup_ops=20), waits
