"""Hostile ids through every integration: arbitrary ``Cookie`` headers, id headers and
query strings never crash a request (WSGI, Flask, ASGI/Starlette) and never make the
server adopt an id the client made up: whatever comes in, a session the app writes to
gets an id the server generated (it appears nowhere in the request).

The store is ``memory://``: these tests are about the integrations' parsing, which every
store shares; the stores' own handling of ids is in the manager and contract suites.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask import session as flask_session
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import ormsession
from ormsession.config import Config
from ormsession.integrations import asgi as asgi_integration
from ormsession.integrations import wsgi as wsgi_integration
from ormsession.integrations.flask import OrmSession
from ormsession.repositories.memory import MemoryRepository
from tests.integrations.helpers import parse_set_cookie

ID_HEADER, ID_PARAM = "X-Session-Id", "sid"
CONFIG = Config(url="memory://", id_header=ID_HEADER, id_query_param=ID_PARAM)
#: An id's own alphabet (URL-safe base64) and what breaks cookie and query syntax.
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: WSGI hands headers and the query string over as latin-1 text (PEP 3333); ASGI as bytes.
latin1 = st.characters(min_codepoint=0, max_codepoint=255)
ids = st.text(st.sampled_from(ID_CHARS), min_size=40, max_size=46) | st.text(latin1, max_size=50)
names = st.sampled_from(["session", "Session", " session", "session ", "__Host-session", "x"])
pair = st.builds(
    lambda name, sep, value, quote: f"{name}{sep}{quote}{value}{quote}",
    names,
    st.sampled_from(["=", "==", "", " = "]),
    ids,
    st.sampled_from(["", '"']),
)
cookies = st.one_of(
    st.lists(pair, max_size=4).map("; ".join),
    st.lists(pair, max_size=4).map(",".join),
    st.text(latin1, max_size=80),
)
queries = st.one_of(
    st.builds(lambda value, junk: f"{ID_PARAM}={value}{junk}", ids, st.text(latin1, max_size=10)),
    st.text(latin1, max_size=60),
)
requests = st.fixed_dictionaries(
    {"cookie": st.none() | cookies, "header": st.none() | ids, "query": queries}
)


def assert_not_adopted(request: dict[str, Any], status: str, set_cookies: list[str]) -> None:
    assert status.startswith("200"), status
    assert len(set_cookies) == 1, set_cookies  # the app wrote to the session
    new_id = parse_set_cookie(set_cookies[0]).value
    assert len(new_id) >= 43
    for sent in (request["cookie"], request["header"], request["query"]):
        assert sent is None or new_id not in sent, "an id the client sent was adopted"


# -- WSGI, and Flask through its WSGI entry ------------------------------------------------
def call_wsgi(app: Callable[..., Any], request: dict[str, Any]) -> tuple[str, list[str]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": request["query"],
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if request["cookie"] is not None:
        environ["HTTP_COOKIE"] = request["cookie"]
    if request["header"] is not None:
        environ["HTTP_X_SESSION_ID"] = request["header"]
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    body = app(environ, start_response)
    try:
        b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    status, headers = started[-1]
    return status, [value for name, value in headers if name.lower() == "set-cookie"]


def wsgi_view(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    wsgi_integration.get_session(environ)["seen"] = True
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture(scope="module")
def wsgi_app() -> Iterator[wsgi_integration.SessionMiddleware]:
    with ormsession.configure(url="memory://") as manager:
        yield wsgi_integration.SessionMiddleware(
            wsgi_view, manager=manager, id_header=ID_HEADER, id_query_param=ID_PARAM
        )


@settings(max_examples=200)
@given(request=requests)
def test_wsgi(wsgi_app: Any, request: dict[str, Any]) -> None:
    assert_not_adopted(request, *call_wsgi(wsgi_app, request))


@pytest.fixture(scope="module")
def flask_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        ORMSESSION_URL="memory://",
        ORMSESSION_ID_HEADER=ID_HEADER,
        ORMSESSION_ID_QUERY_PARAM=ID_PARAM,
    )
    OrmSession(app)

    @app.get("/")
    def index() -> str:
        flask_session["seen"] = True
        return "ok"

    return app


@settings(max_examples=150)
@given(request=requests)
def test_flask(flask_app: Flask, request: dict[str, Any]) -> None:
    assert_not_adopted(request, *call_wsgi(flask_app, request))


# -- ASGI, through a Starlette app ----------------------------------------------------------
async def starlette_view(request: Request) -> Response:
    request.session["seen"] = True
    return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def asgi_app() -> Iterator[tuple[asyncio.Runner, Starlette]]:
    with asyncio.Runner() as runner:
        manager = runner.run(ormsession.configure_async(url="memory://"))
        middleware = Middleware(
            asgi_integration.SessionMiddleware,
            manager=manager,
            id_header=ID_HEADER,
            id_query_param=ID_PARAM,
        )
        yield runner, Starlette(routes=[Route("/", starlette_view)], middleware=[middleware])
        runner.run(manager.close())


async def call_asgi(app: Starlette, request: dict[str, Any]) -> tuple[str, list[str]]:
    headers = []
    if request["cookie"] is not None:
        headers.append((b"cookie", request["cookie"].encode("latin-1")))
    if request["header"] is not None:
        headers.append((ID_HEADER.lower().encode(), request["header"].encode("latin-1")))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": request["query"].encode("latin-1"),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    set_cookies = [
        value.decode("latin-1") for name, value in start["headers"] if name == b"set-cookie"
    ]
    return str(start["status"]), set_cookies


@settings(max_examples=200)
@given(request=requests)
def test_asgi(asgi_app: tuple[asyncio.Runner, Starlette], request: dict[str, Any]) -> None:
    runner, app = asgi_app
    assert_not_adopted(request, *runner.run(call_asgi(app, request)))


def test_a_known_id_is_kept_so_the_properties_can_fail(wsgi_app: Any) -> None:
    # Guard: the same calls do carry a session along when its id is real, so a test above
    # that saw a new id every time did so because the ids were unknown.
    status, first = call_wsgi(wsgi_app, {"cookie": None, "header": None, "query": ""})
    sid = parse_set_cookie(first[0]).value
    request = {"cookie": f"session={sid}", "header": None, "query": ""}
    status, again = call_wsgi(wsgi_app, request)
    assert status.startswith("200") and again == []  # same session, nothing new to send
    assert isinstance(wsgi_app.manager.repository, MemoryRepository)


# -- cookies of the session's name that are no id never hide the real one -----------------
#: Values of the session cookie's name that cannot be an id (the memory store's ids are
#: 43 characters of ID_CHARS): junk a parent domain's app, an old path or a tosser left.
not_ids = st.text(latin1, max_size=50).filter(
    lambda value: (
        ";" not in value
        and not (
            len(value.strip().strip('"')) == 43 and set(value.strip().strip('"')) <= set(ID_CHARS)
        )
    )
)
shadows = st.lists(
    st.builds(
        lambda value, quote: f"session={quote}{value}{quote}", not_ids, st.sampled_from(["", '"'])
    ),
    min_size=1,
    max_size=4,
)


def real_session(call: Callable[[dict[str, Any]], tuple[str, list[str]]]) -> str:
    _, first = call({"cookie": None, "header": None, "query": ""})
    return parse_set_cookie(first[0]).value


@settings(max_examples=150)
@given(before=shadows)
def test_wsgi_keeps_the_session_behind_junk_of_its_name(wsgi_app: Any, before: list[str]) -> None:
    sid = real_session(lambda request: call_wsgi(wsgi_app, request))
    request = {"cookie": "; ".join([*before, f"session={sid}"]), "header": None, "query": ""}
    status, set_cookies = call_wsgi(wsgi_app, request)
    assert status.startswith("200") and set_cookies == [], "the real session was hidden"


@settings(max_examples=150)
@given(before=shadows)
def test_asgi_keeps_the_session_behind_junk_of_its_name(
    asgi_app: tuple[asyncio.Runner, Starlette], before: list[str]
) -> None:
    runner, app = asgi_app
    sid = real_session(lambda request: runner.run(call_asgi(app, request)))
    request = {"cookie": "; ".join([*before, f"session={sid}"]), "header": None, "query": ""}
    status, set_cookies = runner.run(call_asgi(app, request))
    assert status.startswith("200") and set_cookies == [], "the real session was hidden"
