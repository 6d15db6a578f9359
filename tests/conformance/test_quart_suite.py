"""Flask's session tests, ported to Quart's async test client, on every store.

Quart's own session tests test its signed-cookie interface directly (``SecureCookieSession``
internals), so they say nothing about another interface. What a Quart app expects of
``quart.session`` is what a Flask app expects of ``flask.session``: this file ports the
24 Flask 3.1.3 tests that :mod:`tests.conformance.test_flask_suite` runs, one test here
per test there (named alike, in the same order), with Quart's spelling (``await
client.get``, ``await flash``, ``root_path=`` for a WSGI ``SCRIPT_NAME``) and the same
assertions. Where Flask's test checks the in-memory session after the request, the port
reads it back through the store (``session_transaction``), which is stricter.

Left out, as in the Flask suite (they test client-side signing): the missing
``SECRET_KEY``, the signing-key fallbacks, and the test client's null sessions.
``test_async_view`` is ``test_stream_keeps_session`` again in Quart (every view is async);
its port reads a streamed body both fully and not at all.

Each test runs on memory, SQLite (aiosqlite), PostgreSQL (asyncpg), MariaDB (asyncmy) and
Redis, in ``asyncio.run`` with a bare test client: every test has its own event loop and
so its own manager (``_asgi_loops``), closed when the loop ends; one test also runs the
app served (``test_app()``: the manager built at startup, closed at shutdown).
"""

from __future__ import annotations

import asyncio
import gc
import platform
import re
import uuid
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import quart
from markupsafe import Markup
from quart import Quart, session
from quart.globals import request_ctx
from werkzeug.http import parse_date
from werkzeug.routing import BaseConverter

from ormsession.integrations.quart import OrmSession
from tests.support.stores import StoreTarget, target_for

STORES = ("memory", "sqlite", "postgresql", "mysql", "redis")

Scenario = Callable[[Quart], Awaitable[None]]


@pytest.fixture(params=STORES)
def target(request: pytest.FixtureRequest) -> StoreTarget:
    try:
        return target_for(request, request.param)
    except pytest.skip.Exception as exc:  # CI has every service: a missing one is a failure
        pytest.fail(f"{request.param} is not available: {exc}")


@pytest.fixture
def make_app(target: StoreTarget) -> Callable[[], Quart]:
    """A Quart app as Flask's ``app`` fixture makes one (``testing``), with ormsession on
    the store under test; no ``SECRET_KEY``: a server-side session needs none."""

    def make() -> Quart:
        app = Quart(__name__)
        app.testing = True
        OrmSession(app, url=target.async_url, **target.options)
        return app

    return make


@pytest.fixture
def app(make_app: Callable[[], Quart]) -> Quart:
    return make_app()


def run(scenario: Awaitable[None]) -> None:
    asyncio.run(scenario)  # type: ignore[arg-type]


async def text(response: Any) -> str:
    return str(await response.get_data(as_text=True))


def set_cookie(response: Any) -> str:
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 1, cookies
    return str(cookies[0]).lower()


def record_sessions(app: Quart) -> list[Any]:
    """The session object of each request, as Flask's test reads ``request_ctx._session``
    after it (read off the context: no session method runs, so nothing is marked)."""
    seen: list[Any] = []

    @app.after_request
    async def record(response: Any) -> Any:
        seen.append(request_ctx.session)
        return response

    return seen


# -- tests/test_basic.py ----------------------------------------------------------------
def test_session_accessed(app: Quart) -> None:
    @app.post("/")
    async def do_set() -> str:
        session["value"] = (await quart.request.form)["value"]
        return "value set"

    @app.get("/")
    async def do_get() -> str:
        return str(session.get("value", "None"))

    @app.get("/nothing")
    async def do_nothing() -> str:
        return ""

    seen = record_sessions(app)

    async def scenario() -> None:
        client = app.test_client()
        response = await client.get("/nothing")
        assert "cookie" not in response.vary
        assert not seen[-1].accessed and not seen[-1].modified

        response = await client.post("/", form={"value": "42"})
        assert await text(response) == "value set"
        assert "cookie" in response.vary
        assert seen[-1].accessed and seen[-1].modified

        response = await client.get("/")
        assert await text(response) == "42"
        assert "cookie" in response.vary
        assert seen[-1].accessed and not seen[-1].modified

        response = await client.get("/nothing")
        assert await text(response) == ""
        assert "cookie" not in response.vary
        assert not seen[-1].accessed and not seen[-1].modified

    run(scenario())


def test_session_path(app: Quart) -> None:
    app.config.update(APPLICATION_ROOT="/foo")

    @app.route("/")
    async def index() -> str:
        session["testing"] = 42
        return "Hello World"

    async def scenario() -> None:
        response = await app.test_client().get("/")
        assert "path=/foo" in set_cookie(response)

    run(scenario())


def test_session_using_application_root(app: Quart) -> None:
    # Flask's test mounts the app under SCRIPT_NAME "/bar"; ASGI's name for it: root_path.
    app.config.update(APPLICATION_ROOT="/bar")

    @app.route("/")
    async def index() -> str:
        session["testing"] = 42
        return "Hello World"

    async def scenario() -> None:
        # An ASGI path includes the root path; the app routes what follows it.
        response = await app.test_client().get("/bar/", root_path="/bar")
        assert "path=/bar" in set_cookie(response)

    run(scenario())


def test_session_using_session_settings(app: Quart) -> None:
    app.config.update(
        SERVER_NAME="www.example.com:8080",
        APPLICATION_ROOT="/test",
        SESSION_COOKIE_DOMAIN=".example.com",
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_PARTITIONED=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
    )

    @app.route("/")
    async def index() -> str:
        session["testing"] = 42
        return "Hello World"

    @app.route("/clear")
    async def clear() -> str:
        session.pop("testing", None)
        return "Goodbye World"

    async def scenario() -> None:
        client = app.test_client()
        host = {"host": "www.example.com:8080"}
        cookie = set_cookie(await client.get("/test/", headers=host, root_path="/test"))
        assert "domain=example.com" in cookie
        assert "path=/" in cookie
        assert "secure" in cookie
        assert "httponly" not in cookie
        assert "samesite" in cookie
        assert "partitioned" in cookie

        cookie = set_cookie(await client.get("/test/clear", headers=host, root_path="/test"))
        assert "session=;" in cookie
        assert "domain=example.com" in cookie
        assert "path=/" in cookie
        assert "secure" in cookie
        assert "samesite" in cookie
        assert "partitioned" in cookie

    run(scenario())


def test_session_using_samesite_attribute(app: Quart) -> None:
    @app.route("/")
    async def index() -> str:
        session["testing"] = 42
        return "Hello World"

    async def scenario() -> None:
        client = app.test_client()
        app.config.update(SESSION_COOKIE_SAMESITE="invalid")
        # Flask's test client re-raises the ValueError; Quart's answers the testing app's
        # traceback page instead. The request fails on it all the same, with no cookie.
        response = await client.get("/")
        assert response.status_code == 500
        assert "ValueError" in await text(response)
        assert "set-cookie" not in response.headers

        app.config.update(SESSION_COOKIE_SAMESITE=None)
        assert "samesite" not in set_cookie(await client.get("/"))
        app.config.update(SESSION_COOKIE_SAMESITE="Strict")
        assert "samesite=strict" in set_cookie(await client.get("/"))
        app.config.update(SESSION_COOKIE_SAMESITE="Lax")
        assert "samesite=lax" in set_cookie(await client.get("/"))

    run(scenario())


def test_session_expiration(app: Quart) -> None:
    permanent = True

    @app.route("/")
    async def index() -> str:
        session["test"] = 42
        session.permanent = permanent
        return ""

    @app.route("/test")
    async def test() -> str:
        return str(session.permanent)

    async def scenario() -> None:
        nonlocal permanent
        client = app.test_client()
        response = await client.get("/")
        match = re.search(r"(?i)\bexpires=([^;]+)", response.headers["set-cookie"])
        assert match is not None
        expires = parse_date(match.group(1))
        expected = datetime.now(UTC) + app.permanent_session_lifetime
        assert expires is not None
        assert (expires.year, expires.month, expires.day) == (
            expected.year,
            expected.month,
            expected.day,
        )
        assert await text(await client.get("/test")) == "True"

        permanent = False
        response = await client.get("/")
        assert "set-cookie" in response.headers
        assert re.search(r"\bexpires=([^;]+)", response.headers["set-cookie"]) is None

    run(scenario())


def test_session_stored_last(app: Quart) -> None:
    @app.after_request
    async def modify_session(response: Any) -> Any:
        session["foo"] = 42
        return response

    @app.route("/")
    async def dump_session_contents() -> str:
        return repr(session.get("foo"))

    async def scenario() -> None:
        client = app.test_client()
        assert await text(await client.get("/")) == "None"
        assert await text(await client.get("/")) == "42"

    run(scenario())


def test_session_special_types(app: Quart) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    the_uuid = uuid.uuid4()

    @app.route("/")
    async def dump_session_contents() -> tuple[str, int]:
        session["t"] = (1, 2, 3)
        session["b"] = b"\xff"
        session["m"] = Markup("<html>")
        session["u"] = the_uuid
        session["d"] = now
        session["t_tag"] = {" t": "not-a-tuple"}
        session["di_t_tag"] = {" t__": "not-a-tuple"}
        session["di_tag"] = {" di": "not-a-dict"}
        return "", 204

    async def scenario() -> None:
        client = app.test_client()
        await client.get("/")
        # Read back from the store (Flask's test reads the request's own object).
        async with client.session_transaction() as s:
            assert s["t"] == (1, 2, 3)
            assert type(s["b"]) is bytes
            assert s["b"] == b"\xff"
            assert type(s["m"]) is Markup
            assert s["m"] == Markup("<html>")
            assert s["u"] == the_uuid
            assert s["d"] == now
            assert s["t_tag"] == {" t": "not-a-tuple"}
            assert s["di_t_tag"] == {" t__": "not-a-tuple"}
            assert s["di_tag"] == {" di": "not-a-dict"}

    run(scenario())


def test_session_cookie_setting(app: Quart) -> None:
    is_permanent = True

    @app.route("/bump")
    async def bump() -> str:
        value = session["foo"] = session.get("foo", 0) + 1
        session.permanent = is_permanent
        return str(value)

    @app.route("/read")
    async def read() -> str:
        return str(session.get("foo", 0))

    async def run_test(expect_header: bool) -> None:
        client = app.test_client()
        assert await text(await client.get("/bump")) == "1"
        assert await text(await client.get("/bump")) == "2"
        assert await text(await client.get("/bump")) == "3"
        response = await client.get("/read")
        assert ("set-cookie" in response.headers) == expect_header
        assert await text(response) == "3"

    async def scenario() -> None:
        nonlocal is_permanent
        for permanent, refresh, expected in [
            (True, True, True),
            (True, False, False),
            (False, True, False),
            (False, False, False),
        ]:
            is_permanent = permanent
            app.config["SESSION_REFRESH_EACH_REQUEST"] = refresh
            await run_test(expect_header=expected)

    run(scenario())


def test_session_vary_cookie(app: Quart) -> None:
    @app.route("/set")
    async def set_session() -> str:
        session["test"] = "test"
        return ""

    @app.route("/get")
    async def get() -> str:
        return str(session.get("test"))

    @app.route("/getitem")
    async def getitem() -> str:
        return str(session["test"])

    @app.route("/setdefault")
    async def setdefault() -> str:
        return str(session.setdefault("test", "default"))

    @app.route("/clear")
    async def clear() -> str:
        session.clear()
        return ""

    @app.route("/vary-cookie-header-set")
    async def vary_cookie_header_set() -> quart.Response:
        response = quart.Response("")
        response.vary.add("Cookie")
        session["test"] = "test"
        return response

    @app.route("/vary-header-set")
    async def vary_header_set() -> quart.Response:
        response = quart.Response("")
        response.vary.update(("Accept-Encoding", "Accept-Language"))
        session["test"] = "test"
        return response

    @app.route("/no-vary-header")
    async def no_vary_header() -> str:
        return ""

    async def scenario() -> None:
        client = app.test_client()

        async def expect(path: str, header_value: str | None = "Cookie") -> None:
            response = await client.get(path)
            if header_value:
                # The 'Vary' key should exist in the headers only once.
                assert len(response.headers.getlist("Vary")) == 1
                assert response.headers["Vary"] == header_value
            else:
                assert "Vary" not in response.headers

        await expect("/set")
        await expect("/get")
        await expect("/getitem")
        await expect("/setdefault")
        await expect("/clear")
        await expect("/vary-cookie-header-set")
        await expect("/vary-header-set", "Accept-Encoding, Accept-Language, Cookie")
        await expect("/no-vary-header", None)

    run(scenario())


def test_session_refresh_vary(app: Quart) -> None:
    @app.get("/login")
    async def login() -> str:
        session["user_id"] = 1
        session.permanent = True
        return ""

    @app.get("/ignored")
    async def ignored() -> str:
        return ""

    async def scenario() -> None:
        client = app.test_client()
        assert (await client.get("/login")).headers["Vary"] == "Cookie"
        assert (await client.get("/ignored")).headers["Vary"] == "Cookie"

    run(scenario())


def test_flashes(app: Quart) -> None:
    async def scenario() -> None:
        async with app.test_request_context("/"):
            assert not session.modified
            await quart.flash("Zap")
            session.modified = False
            await quart.flash("Zip")
            assert session.modified
            assert list(quart.get_flashed_messages()) == ["Zap", "Zip"]

    run(scenario())


def test_extended_flashing(app: Quart) -> None:
    @app.route("/")
    async def index() -> str:
        await quart.flash("Hello World")
        await quart.flash("Hello World", "error")
        await quart.flash(Markup("<em>Testing</em>"), "warning")
        return ""

    @app.route("/test_with_categories/")
    async def test_with_categories() -> str:
        messages = quart.get_flashed_messages(with_categories=True)
        assert len(messages) == 3
        assert list(messages) == [
            ("message", "Hello World"),
            ("error", "Hello World"),
            ("warning", Markup("<em>Testing</em>")),
        ]
        return ""

    @app.route("/test_filter/")
    async def test_filter() -> str:
        messages = quart.get_flashed_messages(category_filter=["message"], with_categories=True)
        assert list(messages) == [("message", "Hello World")]
        return ""

    @app.route("/test_filters/")
    async def test_filters() -> str:
        messages = quart.get_flashed_messages(
            category_filter=["message", "warning"], with_categories=True
        )
        assert list(messages) == [
            ("message", "Hello World"),
            ("warning", Markup("<em>Testing</em>")),
        ]
        return ""

    @app.route("/test_filters_without_returning_categories/")
    async def test_filters2() -> str:
        messages = quart.get_flashed_messages(category_filter=["message", "warning"])
        assert len(messages) == 2
        assert messages[0] == "Hello World"
        assert messages[1] == Markup("<em>Testing</em>")
        return ""

    @app.route("/test/")
    async def test() -> str:
        assert list(quart.get_flashed_messages()) == [
            "Hello World",
            "Hello World",
            Markup("<em>Testing</em>"),
        ]
        return ""

    async def scenario() -> None:
        # A new test client for each check: a new session, so the messages are fresh.
        for check in (
            "/test/",
            "/test_with_categories/",
            "/test_filter/",
            "/test_filters/",
            "/test_filters_without_returning_categories/",
        ):
            client = app.test_client()
            await client.get("/")
            assert (await client.get(check)).status_code == 200, check

    run(scenario())


@pytest.mark.skipif(platform.python_implementation() != "CPython", reason="CPython's gc")
def test_app_freed_on_zero_refcount(target: StoreTarget) -> None:
    # Flask's test frees the app by reference counting alone; a bare Quart app already
    # holds reference cycles of its own, so the port asks the collector: the extension
    # must keep no reference (a registry, a hook elsewhere) that keeps an app alive.
    app = Quart(__name__)
    OrmSession(app, url=target.async_url, **target.options)
    assert app.view_functions["static"]
    weak = weakref.ref(app)
    assert weak() is not None
    del app
    gc.collect()
    assert weak() is None


# -- tests/test_helpers.py::TestStreaming -----------------------------------------------------
@pytest.mark.parametrize("read_body", [True, False], ids=["read", "unread"])
def test_stream_keeps_session(app: Quart, read_body: bool) -> None:
    # Also Flask's test_async_view: every Quart view is async.
    @app.route("/")
    async def index() -> quart.Response:
        session["test"] = "quart"

        @quart.stream_with_context
        async def gen() -> Any:
            yield session["test"].encode()

        return quart.Response(gen())

    async def scenario() -> None:
        client = app.test_client()
        response = await client.get("/")
        if read_body:
            assert await response.get_data() == b"quart"
        async with client.session_transaction() as stored:
            assert stored["test"] == "quart"

    run(scenario())


# -- tests/test_reqctx.py::TestGreenletContextCopying -------------------------------------------
@pytest.mark.parametrize("api", [False, True], ids=["copy", "copy_api"])
def test_context_copying(app: Quart, api: bool) -> None:
    # Flask's greenlet tests, in Quart's terms: the request context copied into work that
    # runs after the response, where the session is still the request's.
    later: list[Callable[[], Awaitable[int]]] = []

    @app.route("/")
    async def index() -> str:
        session["fizz"] = "buzz"

        async def check() -> int:
            assert quart.request.path == "/"
            assert quart.current_app == app
            assert quart.request.args["foo"] == "bar"
            assert session.get("fizz") == "buzz"
            return 42

        if api:
            later.append(quart.copy_current_request_context(check))
        else:
            context = request_ctx.copy()

            async def with_context() -> int:
                assert not quart.has_request_context()
                async with context:
                    return await check()

            later.append(with_context)
        return "Hello World!"

    async def scenario() -> None:
        response = await app.test_client().get("/?foo=bar")
        assert await text(response) == "Hello World!"
        assert await asyncio.create_task(later[0]()) == 42

    run(scenario())


# -- tests/test_signals.py ------------------------------------------------------------------
def test_flash_signal(app: Quart) -> None:
    @app.route("/")
    async def index() -> Any:
        await quart.flash("This is a flash message", category="notice")
        return quart.redirect("/other")

    recorded: list[tuple[str, str]] = []

    async def record(sender: Any, message: str, category: str) -> None:
        recorded.append((message, category))

    quart.message_flashed.connect(record, app)
    try:

        async def scenario() -> None:
            client = app.test_client()
            async with client.session_transaction():
                await client.get("/")
                assert recorded == [("This is a flash message", "notice")]

        run(scenario())
    finally:
        quart.message_flashed.disconnect(record, app)


# -- tests/test_templating.py ---------------------------------------------------------------
def test_standard_context(app: Quart) -> None:
    @app.route("/")
    async def index() -> str:
        quart.g.foo = 23
        session["test"] = "aha"
        return await quart.render_template_string(
            """
            {{ request.args.foo }}
            {{ g.foo }}
            {{ config.DEBUG }}
            {{ session.test }}
        """
        )

    async def scenario() -> None:
        response = await app.test_client().get("/?foo=42")
        assert (await response.get_data()).split() == [b"42", b"23", b"False", b"aha"]

    run(scenario())


# -- tests/test_testing.py ------------------------------------------------------------------
def test_redirect_session(app: Quart) -> None:
    @app.route("/redirect")
    async def index() -> Any:
        session["redirect"] = True
        return quart.redirect("/target")

    @app.route("/target")
    async def get_session() -> str:
        session["target"] = True
        return ""

    async def scenario() -> None:
        client = app.test_client()
        await client.get("/redirect", follow_redirects=True)
        async with client.session_transaction() as stored:
            assert stored["redirect"] is True
            assert stored["target"] is True

    run(scenario())


def test_session_transactions(app: Quart) -> None:
    @app.route("/")
    async def index() -> str:
        return str(session["foo"])

    async def scenario() -> None:
        client = app.test_client()
        async with client.session_transaction() as sess:
            assert len(sess) == 0
            sess["foo"] = [42]
            assert len(sess) == 1
        assert await text(await client.get("/")) == "[42]"
        async with client.session_transaction() as sess:
            assert len(sess) == 1
            assert sess["foo"] == [42]

    run(scenario())


def test_session_transactions_keep_context(app: Quart) -> None:
    async def scenario() -> None:
        client = app.test_client()
        async with app.test_request_context("/"):
            await client.get("/")
            req = quart.request._get_current_object()  # type: ignore[attr-defined]
            assert req is not None
            async with client.session_transaction():
                assert req is quart.request._get_current_object()  # type: ignore[attr-defined]

    run(scenario())


# -- tests/test_converters.py ---------------------------------------------------------------
def test_context_available(app: Quart) -> None:
    class ContextConverter(BaseConverter):
        def to_python(self, value: str) -> str:
            assert quart.request is not None
            assert session is not None
            return value

    app.url_map.converters["ctx"] = ContextConverter

    @app.get("/<ctx:name>")
    async def index(name: str) -> str:
        return name

    async def scenario() -> None:
        assert await text(await app.test_client().get("/admin")) == "admin"

    run(scenario())


# -- served: the manager of before_serving / after_serving ------------------------------------
def test_served_app_builds_its_manager_at_startup_and_closes_it(app: Quart) -> None:
    @app.route("/")
    async def index() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    async def scenario() -> None:
        extension = app.extensions["ormsession"]
        async with app.test_app() as served:
            manager = await extension.get_manager()
            client = served.test_client()
            assert await text(await client.get("/")) == "1"
            assert await text(await client.get("/")) == "2"
            assert await extension.get_manager() is manager
            assert await manager.count() == 1
        # Closed at shutdown: a later use builds a new one (on this loop).
        assert await extension.get_manager() is not manager

    run(scenario())
