"""A user's sessions behind the WSGI middleware: ``login_session(environ, ...)`` and its
siblings (the checks are in :mod:`tests.integrations.users_apps`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from ormsession.integrations.wsgi import (
    SessionMiddleware,
    destroy_session,
    get_session,
    list_sessions,
    login_session,
    revoke_other_sessions,
    revoke_session,
)
from tests.integrations import users_apps
from tests.integrations.users_apps import a_user, listed

AGENT, ADDRESS = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "198.51.100.7"


def _route(request: Request) -> Any:
    environ, args = request.environ, request.args
    session = get_session(environ)
    path = request.path
    if path == "/login":
        user: str | int = args["user"]
        if args.get("int"):
            user = int(user)
        if args.get("blank"):
            login_session(environ, user, user_agent=None, ip=None)
        elif "agent" in args:
            login_session(environ, user, user_agent=args["agent"])
        else:
            login_session(environ, user)
        return "ok"
    if path == "/me":
        return {"user": session.user_id, "handle": session.handle, "note": session.get("note")}
    if path == "/sessions":
        return listed(list_sessions(environ))
    if path == "/revoke":
        return {"ended": revoke_session(environ, args["handle"])}
    if path == "/revoke-others":
        return {"ended": revoke_other_sessions(environ)}
    if path == "/logout":
        destroy_session(environ)
        return "bye"
    if path == "/clear":
        session.clear()
        return "bye"
    if path == "/whose":
        return str(session.user_id)
    if path == "/note":
        session["note"] = args["text"]
        return "ok"
    raise AssertionError(path)


@Request.application  # type: ignore[arg-type]
def routes(request: Request) -> Response:
    answer = _route(request)
    if isinstance(answer, str):
        return Response(answer)
    return Response(json.dumps(answer), content_type="application/json")


class Browser(Client):
    """A client that says who it is and where from, as a browser behind a server does."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("environ_base", {"REMOTE_ADDR": ADDRESS, "HTTP_USER_AGENT": AGENT})
        return super().open(*args, **kwargs)


@pytest.fixture
def app(users_store_url: str) -> Iterator[SessionMiddleware]:
    app = SessionMiddleware(routes, url=users_store_url)
    yield app
    app.close()


@pytest.mark.parametrize("check", users_apps.CHECKS, ids=lambda check: check.__name__[6:])
def test_users(app: SessionMiddleware, check: Any) -> None:
    check(lambda: Browser(app), a_user())


def test_login_takes_agent_and_address_from_the_environ(app: SessionMiddleware) -> None:
    users_apps.check_login_takes_agent_and_address_from_the_request(
        lambda: Browser(app), a_user(), AGENT, ADDRESS
    )


def test_without_agent_or_address_nothing_is_kept(app: SessionMiddleware) -> None:
    users_apps.check_login_takes_agent_and_address_from_the_request(
        lambda: Client(app), a_user(), None, None
    )


@pytest.mark.parametrize("bad", users_apps.BAD_USER_IDS)
def test_a_bad_user_id_is_a_user_id_error(app: SessionMiddleware, bad: str) -> None:
    users_apps.check_a_bad_user_id_is_a_user_id_error(lambda: Browser(app), bad)
