"""Hostile ``Cookie`` headers through every integration's real framework test client.

A browser sends every cookie it holds under the session cookie's name, the longest path
first, then the oldest: a cookie of another app on a parent domain, a leftover of an older
path, or one planted by a sibling subdomain (cookie tossing) comes *before* the app's own.
A value that cannot be a session id is skipped for a well-formed one after it, and an id
that names no stored session for the next one (up to three ids), so such a cookie never
hides the user's session (a fresh session there would replace the real cookie at the
first write, and the user would be signed out on every visit).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, MutableMapping
from datetime import timedelta
from typing import Any

import flask
import pytest
import quart
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import ormsession
from ormsession.integrations import asgi as ormsession_asgi
from ormsession.integrations import flask as ormsession_flask
from ormsession.integrations import quart as ormsession_quart
from ormsession.integrations import wsgi as ormsession_wsgi
from tests.integrations.helpers import starlette_test_client

TestClient = starlette_test_client()

#: Values of the session cookie's name that cannot be a session id, sent before the real
#: one: another app's signed cookie, junk, a quoted or empty value, a prefix of an id.
SHADOWS = [
    "eyJ1c2VyIjoiYWRhIn0.ZxYz.abc",
    "zzz",
    '"quoted"',
    "",
    "A" * 42,
    "A" * 44,
    "a;b",
]

SetCookie = re.compile(r"session=([^;]*)")


def _count(session: Any) -> str:
    session["n"] = session.get("n", 0) + 1
    return str(session["n"])


def wsgi_client(url: str) -> tuple[Any, Callable[[str | None], tuple[str, list[str]]]]:
    from werkzeug.test import Client

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = _count(ormsession_wsgi.get_session(environ)).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    middleware = ormsession_wsgi.SessionMiddleware(app, url=url)
    client = Client(middleware, use_cookies=False)

    def get(cookie: str | None) -> tuple[str, list[str]]:
        response = client.get("/", headers={"Cookie": cookie} if cookie is not None else {})
        return response.get_data(as_text=True), response.headers.getlist("Set-Cookie")

    return middleware, get


def flask_client(url: str) -> tuple[Any, Callable[[str | None], tuple[str, list[str]]]]:
    app = flask.Flask(__name__)

    @app.route("/")
    def index() -> str:
        return _count(flask.session)

    extension = ormsession_flask.OrmSession(app, url=url)
    client = app.test_client(use_cookies=False)

    def get(cookie: str | None) -> tuple[str, list[str]]:
        response = client.get("/", headers={"Cookie": cookie} if cookie is not None else {})
        return response.get_data(as_text=True), response.headers.getlist("Set-Cookie")

    return extension, get


@pytest.fixture(params=["wsgi", "flask"])
def sync_get(
    request: pytest.FixtureRequest, real_store_url: str
) -> Any:  # Callable[[str | None], tuple[str, list[str]]]
    owner, get = (wsgi_client if request.param == "wsgi" else flask_client)(real_store_url)
    yield get
    owner.close()


def _id_of(set_cookies: list[str]) -> str:
    assert len(set_cookies) == 1, set_cookies
    match = SetCookie.match(set_cookies[0])
    assert match is not None, set_cookies
    return match.group(1)


def _assert_shadows_are_skipped(get: Callable[[str | None], tuple[str, list[str]]]) -> None:
    body, set_cookies = get(None)
    assert body == "1"
    real = _id_of(set_cookies)
    count = 1
    for shadow in SHADOWS:
        for header in (
            f"session={shadow}; session={real}",
            f"a=1; session={shadow}; session={real}",
        ):
            count += 1
            body, set_cookies = get(header)
            # Flask re-sends the cookie of a modified session: the same id.
            kept = [_id_of([cookie]) for cookie in set_cookies]
            assert (body, kept) in ((str(count), []), (str(count), [real])), (header, body, kept)
    # A well-formed id that names no session (another app's, an expired one) is passed
    # over too, for the next one that does, up to three ids in all.
    for unknown in (["B" * 43], ["B" * 43, "C" * 43]):
        count += 1
        body, set_cookies = get("; ".join([*(f"session={u}" for u in unknown), f"session={real}"]))
        assert body == str(count) and all(_id_of([c]) == real for c in set_cookies)
    three = "; ".join(f"session={u}" for u in ("B" * 43, "C" * 43, "D" * 43))
    body, set_cookies = get(f"{three}; session={real}")
    assert body == "1" and _id_of(set_cookies) not in (real, "B" * 43, "C" * 43, "D" * 43)
    # Of two live sessions the first wins: the browser's most specific cookie.
    body, set_cookies = get(None)
    other = _id_of(set_cookies)
    body, set_cookies = get(f"session={other}; session={real}")
    assert body == "2" and all(_id_of([c]) == other for c in set_cookies)
    # Only malformed values: a fresh session, never one of them.
    body, set_cookies = get("session=zzz; session=yyy")
    assert body == "1" and _id_of(set_cookies) not in ("zzz", "yyy")


def test_wsgi_and_flask_skip_a_malformed_duplicate(sync_get: Any) -> None:
    _assert_shadows_are_skipped(sync_get)


async def _starlette_index(request: Request) -> Response:
    return PlainTextResponse(_count(request.session))


def test_starlette_skips_a_malformed_duplicate(real_async_store_url: str) -> None:
    app = Starlette(
        routes=[Route("/", _starlette_index)],
        middleware=[Middleware(ormsession_asgi.SessionMiddleware, url=real_async_store_url)],
    )
    with TestClient(app) as client:

        def get(cookie: str | None) -> tuple[str, list[str]]:
            client.cookies.clear()
            response = client.get("/", headers={"Cookie": cookie} if cookie is not None else {})
            return response.text, response.headers.get_list("set-cookie")

        _assert_shadows_are_skipped(get)


def test_starlette_split_cookie_headers_skip_a_malformed_duplicate() -> None:
    # HTTP/2 sends each cookie in a header of its own; ASGI hands them over one by one.
    middleware = ormsession_asgi.SessionMiddleware(
        Starlette(routes=[Route("/", _starlette_index)]), url="memory://"
    )

    async def get(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, list[bytes]]:
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "2",
            "method": "GET",
            "scheme": "https",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 443),
        }
        await middleware(scope, receive, send)
        cookies = [value for name, value in sent[0]["headers"] if name == b"set-cookie"]
        return sent[1]["body"], cookies

    async def scenario() -> None:
        body, cookies = await get([])
        assert body == b"1"
        real = _id_of([cookie.decode() for cookie in cookies]).encode()
        shadowed = [(b"cookie", b"session=\xff\xfe"), (b"cookie", b"session=" + real)]
        assert await get(shadowed) == (b"2", [])
        await middleware.aclose()

    asyncio.run(scenario())


def test_quart_skips_a_malformed_duplicate() -> None:
    app = quart.Quart(__name__)

    @app.route("/")
    async def index() -> str:
        return _count(quart.session)

    ormsession_quart.OrmSession(app, url="memory://")

    async def scenario() -> None:
        async with app.test_app():
            client = app.test_client()

            async def call(cookie: str | None) -> tuple[str, list[str]]:
                client.cookie_jar = None
                headers = {"Cookie": cookie} if cookie is not None else {}
                response = await client.get("/", headers=headers)
                return await response.get_data(as_text=True), response.headers.getlist("Set-Cookie")

            results: dict[str | None, tuple[str, list[str]]] = {}
            first = await call(None)
            real = _id_of(first[1])
            for shadow in [*SHADOWS, "B" * 43]:
                header = f"session={shadow}; session={real}"
                results[header] = await call(header)
            counts = [
                body
                for body, cookies in results.values()
                if [_id_of([cookie]) for cookie in cookies] in ([], [real])
            ]
            assert counts == [str(n) for n in range(2, 3 + len(SHADOWS))], results

    asyncio.run(scenario())


@pytest.mark.parametrize("shadow", SHADOWS)
def test_open_from_cookie_header_skips_a_malformed_duplicate(shadow: str) -> None:
    with ormsession.configure(url="memory://") as manager:
        session = manager.open()
        session["n"] = 1
        real = _id_of([manager.save(session) or ""])
        reopened = manager.open_from_cookie_header(f"session={shadow}; session={real}")
        assert (reopened.id, dict(reopened)) == (real, {"n": 1})
        unknown = manager.open_from_cookie_header(f"session={'B' * 43}; session={real}")
        assert (unknown.id, dict(unknown)) == (real, {"n": 1})
        assert manager.session_id_from_cookie_header("session=zzz; session=yyy") == "zzz"


# -- cookie settings that could only ever build a broken Set-Cookie ------------------------
BAD_FLASK_COOKIE_KEYS: list[tuple[str, Any]] = [
    ("SESSION_COOKIE_DOMAIN", "example.com; HttpOnly=0"),
    ("SESSION_COOKIE_DOMAIN", "example.com\r\nX-Injected: 1"),
    ("SESSION_COOKIE_PATH", "/app; Domain=evil.example"),
    ("SESSION_COOKIE_PATH", "/app\r\nX-Injected: 1"),
    ("APPLICATION_ROOT", "/a;b"),
    ("SESSION_COOKIE_SAMESITE", "Lax; Secure"),
    ("SESSION_COOKIE_NAME", "session\r\nX-Injected: 1"),
    # Its Expires date would be past year 9999: an OverflowError at every save.
    ("PERMANENT_SESSION_LIFETIME", timedelta(days=3_000_000)),
]


@pytest.mark.parametrize(("key", "value"), BAD_FLASK_COOKIE_KEYS)
def test_flask_refuses_bad_cookie_keys_at_init_app(key: str, value: Any) -> None:
    app = flask.Flask(__name__)
    app.config[key] = value
    extension = ormsession_flask.OrmSession(url="memory://")
    with pytest.raises(ormsession.ConfigurationError, match=r"app\.config"):
        extension.init_app(app)
    assert extension._owned == [] and "ormsession" not in app.extensions
    # Fixed, the same app installs (nothing half-installed is left to refuse it).
    app.config[key] = flask.Flask("fresh").config[key]
    extension.init_app(app)
    extension.close()


@pytest.mark.parametrize(("key", "value"), BAD_FLASK_COOKIE_KEYS)
def test_quart_refuses_bad_cookie_keys_at_init_app(key: str, value: Any) -> None:
    app = quart.Quart(__name__)
    app.config[key] = value
    with pytest.raises(ormsession.ConfigurationError, match=r"app\.config"):
        ormsession_quart.OrmSession(app, url="memory://")
    assert "ormsession" not in app.extensions


def test_a_cookie_lifetime_past_what_expires_can_hold_is_a_configuration_error() -> None:
    with pytest.raises(ormsession.ConfigurationError, match="cookie lifetime"):
        ormsession.Config(url="memory://", cookie_lifetime=timedelta(days=3_000_000))
    # Set after init_app, Flask's key fails the request with a ValueError (as Flask's own
    # bad values do), before anything is stored, instead of an OverflowError after.
    app = flask.Flask(__name__)
    app.testing = True

    @app.route("/")
    def index() -> str:
        flask.session.permanent = True
        return _count(flask.session)

    extension = ormsession_flask.OrmSession(app, url="memory://")
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=3_000_000)
    with pytest.raises(ValueError, match=r"longer than (the )?365000 days"):
        app.test_client().get("/")
    assert extension.manager is not None and extension.manager.count() == 0
    extension.close()


def test_async_open_from_cookie_header_passes_over_an_unknown_id(
    real_async_store_url: str,
) -> None:
    # The aiohttp recipe's way in.
    async def scenario() -> None:
        manager = await ormsession.configure_async(url=real_async_store_url)
        try:
            session = await manager.open()
            session["n"] = 1
            real = _id_of([await manager.save(session) or ""])
            header = f"session=zzz; session={'B' * 43}; session={real}"
            reopened = await manager.open_from_cookie_header(header)
            assert (reopened.id, dict(reopened)) == (real, {"n": 1})
        finally:
            await manager.close()

    asyncio.run(scenario())


def test_an_unknown_id_before_one_a_login_replaced_gets_the_lost_session_and_no_cookie(
    real_store_url: str,
) -> None:
    # The browser holds the login's new cookie and is about to send it; a request already
    # on its way with the replaced id must not answer with a cookie of a fresh session,
    # even when an unknown id (another app's) comes first.
    with ormsession.configure(url=real_store_url) as manager:
        session = manager.open()
        session["n"] = 1
        replaced = _id_of([manager.save(session) or ""])
        manager.regenerate(session)
        reopened = manager.open_from_cookie_header(f"session={'B' * 43}; session={replaced}")
        assert reopened.lost and len(reopened) == 0
        reopened["n"] = 2
        assert manager.save(reopened) is None
        assert dict(manager.open(session.id)) == {"n": 1}
        manager.destroy(session)


def test_a_path_or_domain_flask_writes_is_written_as_flask_writes_it() -> None:
    # A space or non-ASCII in APPLICATION_ROOT is percent-encoded, as Werkzeug encodes it
    # (browsers match the cookie against the encoded URL path); an underscore in a host.
    from werkzeug.http import dump_cookie

    for root, domain in (("/my app", "my_host.internal"), ("/café", None)):
        app = flask.Flask(__name__)
        app.config.update(APPLICATION_ROOT=root, SESSION_COOKIE_DOMAIN=domain)
        extension = ormsession_flask.OrmSession(app, url="memory://")

        @app.route("/")
        def index() -> str:
            return _count(flask.session)

        (header,) = (
            app.test_client()
            .get("/", base_url=f"http://localhost{root}")
            .headers.getlist("Set-Cookie")
        )
        expected = dump_cookie("session", "x", path=root, domain=domain)
        expected_path = next(p for p in expected.split("; ") if p.startswith("Path="))
        assert expected_path in header.split("; ")
        if domain is not None:
            assert f"Domain={domain}" in header.split("; ")
        extension.close()
