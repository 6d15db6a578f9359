"""The WSGI middleware, driven by a raw WSGI caller (no framework, no test client)."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import ormsession
from ormsession.errors import SessionTooLargeError
from ormsession.integrations.wsgi import (
    SessionMiddleware,
    destroy_session,
    get_session,
    regenerate_session,
)
from ormsession.repositories.memory import MemoryRepository
from tests.integrations.helpers import SetCookie, only_set_cookie, parse_set_cookie

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class Result:
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    calls: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def cookie(self) -> SetCookie:
        return only_set_cookie(self.all("Set-Cookie"))


def call(
    app: App,
    path: str = "/",
    *,
    cookie: str | None = None,
    query: str = "",
    scheme: str = "http",
    headers: dict[str, str] | None = None,
) -> Result:
    """Call a WSGI app the way a server does: start_response, iterate, close."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        started.append((status, response_headers))
        return lambda data: None

    body = app(environ, start_response)
    try:
        chunks = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, response_headers = started[-1]
    return Result(status, response_headers, chunks)


def view(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A tiny app: /count, /read, /login, /logout, /plain (ignores the session)."""
    path = environ["PATH_INFO"]
    session = get_session(environ)
    if path == "/count":
        session["count"] = session.get("count", 0) + 1
    elif path == "/login":
        regenerate_session(environ)
        session["user"] = "ada"
    elif path == "/logout":
        destroy_session(environ)
    text = "plain" if path == "/plain" else f"{session.get('user')}:{session.get('count', 0)}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text.encode()]


def session_app(**options: Any) -> SessionMiddleware:
    return SessionMiddleware(view, url=options.pop("url", "memory://"), **options)


class Browser:
    """Keeps the session cookie between calls, as a browser would."""

    def __init__(self, app: App, name: str = "session") -> None:
        self.app, self.name = app, name
        self.value: str | None = None

    def get(self, path: str, **kwargs: Any) -> Result:
        cookie = f"{self.name}={self.value}" if self.value else None
        result = call(self.app, path, cookie=cookie, **kwargs)
        for header in result.all("Set-Cookie"):
            parsed = parse_set_cookie(header)
            if parsed.name == self.name:
                self.value = None if parsed.deletes else parsed.value
        return result


def flow(app: SessionMiddleware) -> None:
    """The login story every store must get right."""
    browser = Browser(app, app.manager.cookie.cookie_name)
    first = browser.get("/count")
    assert first.body == b"None:1" and first.cookie.name == app.manager.cookie.cookie_name
    anonymous_id = browser.value
    assert browser.get("/count").body == b"None:2"
    read = browser.get("/read")
    assert read.body == b"None:2" and read.all("Set-Cookie") == []
    assert read.header("Vary") == "Cookie"

    login = browser.get("/login")
    assert login.body == b"ada:2"
    assert browser.value not in (None, anonymous_id)
    stale = call(app, "/read", cookie=f"{app.manager.cookie.cookie_name}={anonymous_id}")
    assert stale.body == b"None:0", "the pre-login id must no longer work"

    logout = browser.get("/logout")
    assert logout.cookie.deletes and browser.value is None
    assert logout.body == b"None:0"


def test_flow_on_memory() -> None:
    flow(session_app())


def test_flow_on_real_stores(real_store_url: str) -> None:
    app = session_app(url=real_store_url)
    try:
        # The PostgreSQL database is shared by this session's integration tests.
        before = app.manager.count()
        flow(app)
        assert app.manager.count() == before  # logged out: nothing left behind
    finally:
        app.close()


def test_untouched_session_gets_no_cookie_and_no_vary() -> None:
    result = call(session_app(), "/plain")
    assert result.all("Set-Cookie") == [] and result.header("Vary") is None


def test_vary_is_merged_into_the_apps_own() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        get_session(environ).get("x")
        start_response("200 OK", [("Vary", "Accept-Encoding")])
        return [b""]

    result = call(SessionMiddleware(app, url="memory://"))
    assert result.all("Vary") == ["Accept-Encoding, Cookie"]


def test_logout_cookie_carries_the_same_attributes() -> None:
    app = session_app(
        cookie_path="/", cookie_domain="example.test", cookie_secure=True, cookie_samesite="strict"
    )
    browser = Browser(app)
    login = browser.get("/login")
    logout = browser.get("/logout")
    assert logout.cookie.deletes
    assert (
        logout.cookie.same_scope()
        == login.cookie.same_scope()
        == {
            "path": "/",
            "domain": "example.test",
            "secure": "yes",
            "samesite": "Strict",
            "httponly": "yes",
        }
    )


@pytest.mark.parametrize("forged", ["garbage", "A" * 43, "../../etc/passwd", "x" * 5000, "'; DROP"])
def test_forged_cookie_gives_a_fresh_session(forged: str) -> None:
    app = session_app()
    assert call(app, "/read", cookie=f"session={forged}").body == b"None:0"
    result = call(app, "/count", cookie=f"session={forged}")
    assert result.cookie.value not in ("", forged)


class TestIdOptIns:
    def stored_id(self, app: SessionMiddleware) -> str:
        value = call(app, "/count").cookie.value
        assert value
        return value

    def test_header_id_is_ignored_by_default(self) -> None:
        app = session_app()
        sid = self.stored_id(app)
        assert call(app, "/read", headers={"X-Session-Id": sid}).body == b"None:0"

    def test_header_id_when_enabled_and_new_id_echoed(self) -> None:
        app = session_app(id_header="X-Session-Id")
        sid = self.stored_id(app)
        read = call(app, "/read", headers={"X-Session-Id": sid})
        assert read.body == b"None:1" and read.header("X-Session-Id") is None
        assert read.header("Vary") == "Cookie, X-Session-Id"
        login = call(app, "/login", headers={"X-Session-Id": sid})
        new_id = login.header("X-Session-Id")
        assert new_id and new_id != sid
        assert call(app, "/read", headers={"X-Session-Id": new_id}).body == b"ada:1"
        assert call(app, "/read", headers={"X-Session-Id": sid}).body == b"None:0"
        logout = call(app, "/logout", headers={"X-Session-Id": new_id})
        assert logout.header("X-Session-Id") == ""

    def test_query_id_is_ignored_by_default(self) -> None:
        app = session_app()
        sid = self.stored_id(app)
        assert call(app, "/read", query=f"sid={sid}").body == b"None:0"

    def test_query_id_when_enabled(self) -> None:
        app = session_app(id_query_param="sid")
        sid = self.stored_id(app)
        assert call(app, "/read", query=f"sid={sid}").body == b"None:1"


class TestSecure:
    def test_no_secure_on_http(self) -> None:
        assert "secure" not in call(session_app(), "/count").cookie.attributes

    def test_secure_on_https(self) -> None:
        assert "secure" in call(session_app(), "/count", scheme="https").cookie.attributes

    def test_forwarded_proto_is_not_trusted_by_default(self) -> None:
        result = call(session_app(), "/count", headers={"X-Forwarded-Proto": "https"})
        assert "secure" not in result.cookie.attributes

    def test_forwarded_proto_when_trusted(self) -> None:
        app = session_app(trust_forwarded_proto=True)
        result = call(app, "/count", headers={"X-Forwarded-Proto": "https"})
        assert "secure" in result.cookie.attributes

    def test_host_prefix(self) -> None:
        app = session_app(cookie_host_prefix=True)
        cookie = call(app, "/count").cookie
        assert cookie.name == "__Host-session"
        assert cookie.attributes["path"] == "/" and "secure" in cookie.attributes
        assert "domain" not in cookie.attributes
        sid = cookie.value
        assert call(app, "/read", cookie=f"__Host-session={sid}").body == b"None:1"
        assert call(app, "/read", cookie=f"session={sid}").body == b"None:0"


def test_cookie_lifetime_and_browser_session_cookie() -> None:
    session_cookie = call(session_app(), "/count").cookie
    assert "max-age" not in session_cookie.attributes
    assert "expires" not in session_cookie.attributes
    lasting = call(session_app(cookie_lifetime=3600), "/count").cookie
    assert lasting.attributes["max-age"] == "3600" and "expires" in lasting.attributes


def test_set_cookie_disabled() -> None:
    app = session_app(set_cookie=False, id_header="X-Session-Id")
    result = call(app, "/count")
    assert result.all("Set-Cookie") == []


class TestStreaming:
    def test_change_after_start_response_is_saved(self) -> None:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
            session = get_session(environ)
            start_response("200 OK", [])
            yield b"a"
            session["late"] = True
            yield b"b"

        middleware = SessionMiddleware(app, url="memory://")
        manager = middleware.manager
        session = manager.open(None)
        session["early"] = 1
        manager.save(session)
        result = call(middleware, cookie=f"session={session.id}")
        assert result.body == b"ab"
        assert dict(manager.open(session.id)) == {"early": 1, "late": True}

    def test_new_cookie_after_headers_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
            start_response("200 OK", [])
            yield b"a"
            get_session(environ)["late"] = True

        with caplog.at_level(logging.WARNING, logger="ormsession"):
            result = call(SessionMiddleware(app, url="memory://"))
        assert result.all("Set-Cookie") == []
        assert "did not get the new cookie" in caplog.text

    def test_apps_iterable_is_closed(self) -> None:
        closed: list[bool] = []

        class Body:
            def __iter__(self) -> Iterator[bytes]:
                return iter([b"x"])

            def close(self) -> None:
                closed.append(True)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
            start_response("200 OK", [])
            return Body()

        call(SessionMiddleware(app, url="memory://"))
        assert closed == [True]


def test_failed_save_is_not_retried_by_the_error_response() -> None:
    saves: list[int] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        get_session(environ)["big"] = "x" * 100
        try:
            start_response("200 OK", [])
        except SessionTooLargeError:
            start_response("500 Internal Server Error", [], sys.exc_info())
            return [b"error"]
        return [b"ok"]

    middleware = SessionMiddleware(app, url="memory://", max_data_bytes=10)
    original = middleware.manager.save

    def counting_save(session: ormsession.RequestSession, *, https: bool = False) -> str | None:
        saves.append(1)
        return original(session, https=https)

    middleware.manager.save = counting_save  # type: ignore[method-assign]
    result = call(middleware)
    assert result.status.startswith("500") and result.body == b"error"
    assert saves == [1] and result.all("Set-Cookie") == []


def test_manager_options_next_to_a_manager_are_rejected() -> None:
    manager = ormsession.configure("memory://")
    with pytest.raises(ormsession.ConfigurationError):
        SessionMiddleware(view, manager=manager, cookie_name="other")
    middleware = SessionMiddleware(view, manager=manager, id_header="X-Id")
    assert middleware.manager is manager and middleware.options.id_header == "X-Id"


def test_get_session_without_middleware() -> None:
    with pytest.raises(RuntimeError, match="SessionMiddleware"):
        call(view)


def test_read_only_request_refreshes_a_lifetime_cookie_only_when_due() -> None:
    now = [datetime(2024, 1, 1, tzinfo=UTC)]
    manager = ormsession.SessionManager(
        MemoryRepository(),
        ormsession.Config(
            cookie_lifetime=timedelta(hours=2), idle_timeout=timedelta(hours=1), refresh_ratio=0.1
        ),
        clock=lambda: now[0],
    )
    browser = Browser(SessionMiddleware(view, manager=manager))
    assert browser.get("/count").cookie.attributes["max-age"] == "7200"
    now[0] += timedelta(minutes=1)
    assert browser.get("/read").all("Set-Cookie") == []  # not due: nothing written or sent
    now[0] += timedelta(minutes=10)
    refreshed = browser.get("/read")
    assert refreshed.body == b"None:1"
    assert refreshed.cookie.attributes["max-age"] == "7200"  # follows the pushed-back expiry
    assert browser.get("/read").all("Set-Cookie") == []
