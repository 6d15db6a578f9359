"""A user's sessions in Flask: ``login_session``, ``list_sessions``, ``revoke_session``,
``revoke_other_sessions`` (the checks are in :mod:`tests.integrations.users_apps`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

import pytest
from flask import Flask, jsonify, request, session

from ormsession.integrations.flask import (
    OrmSession,
    destroy_session,
    list_sessions,
    login_session,
    revoke_other_sessions,
    revoke_session,
)
from tests.integrations import users_apps
from tests.integrations.users_apps import a_user, listed
from tests.support.stores import record_calls


def make_app(url: str, **config: Any) -> tuple[Flask, OrmSession]:
    app = Flask(__name__)
    app.testing = True  # a view's exception reaches the test
    app.config.update({"ORMSESSION_URL": url} | config)
    extension = OrmSession(app)

    @app.post("/login")
    def login() -> Any:
        user: str | int = request.args["user"]
        if request.args.get("int"):
            user = int(user)
        if request.args.get("remember"):
            session.permanent = True
        if request.args.get("blank"):
            login_session(user, user_agent=None, ip=None)
        elif "agent" in request.args:
            login_session(user, user_agent=request.args["agent"])
        else:
            login_session(user)
        return "ok"

    @app.get("/me")
    def me() -> Any:
        current = session._get_current_object()  # type: ignore[attr-defined]
        return {"user": current.user_id, "handle": current.handle, "note": session.get("note")}

    @app.get("/sessions")
    def sessions() -> Any:
        return jsonify(listed(list_sessions()))

    @app.post("/revoke")
    def revoke() -> Any:
        return {"ended": revoke_session(request.args["handle"])}

    @app.post("/revoke-others")
    def revoke_others() -> Any:
        return {"ended": revoke_other_sessions()}

    @app.post("/logout")
    def logout() -> str:
        destroy_session()
        return "bye"

    @app.post("/clear")
    def clear() -> str:
        session.clear()
        return "bye"

    @app.post("/note")
    def note() -> str:
        session["note"] = request.args["text"]
        return "ok"

    @app.get("/whose")
    def whose() -> str:
        return str(session._get_current_object().user_id)  # type: ignore[attr-defined]

    return app, extension


@pytest.fixture
def app(users_store_url: str) -> Iterator[Flask]:
    app, extension = make_app(users_store_url)
    yield app
    extension.close()


@pytest.mark.parametrize("check", users_apps.CHECKS, ids=lambda check: check.__name__[6:])
def test_users(app: Flask, check: Any) -> None:
    check(app.test_client, a_user())


def test_login_takes_agent_and_address_from_the_request(app: Flask) -> None:
    users_apps.check_login_takes_agent_and_address_from_the_request(
        app.test_client, a_user(), f"Werkzeug/{version('werkzeug')}", "127.0.0.1"
    )


@pytest.mark.parametrize("bad", users_apps.BAD_USER_IDS)
def test_a_bad_user_id_is_a_user_id_error(app: Flask, bad: str) -> None:
    users_apps.check_a_bad_user_id_is_a_user_id_error(app.test_client, bad)


def test_a_permanent_sessions_login_follows_its_lifetime() -> None:
    # The login's rename sets the store's expiry, from PERMANENT_SESSION_LIFETIME for a
    # permanent session (as regenerate_session does): the save after it has nothing left
    # to write.
    app, extension = make_app("memory://", PERMANENT_SESSION_LIFETIME=timedelta(minutes=5))
    client = app.test_client()
    client.post("/note?text=remember me")
    with client.session_transaction() as flask_session:
        flask_session.permanent = True
    manager = app.session_interface.manager  # type: ignore[attr-defined]
    calls = record_calls(manager)
    user = a_user()
    users_apps.login(client, user)
    assert calls.writes() == ["rename"]
    (item,) = users_apps.sessions(client)
    remaining = datetime.fromisoformat(item["expires"]) - datetime.now(UTC)
    assert timedelta(minutes=4) < remaining <= timedelta(minutes=5)
    extension.close()


def test_helpers_need_the_extension() -> None:
    app = Flask(__name__)
    app.secret_key = "x"

    @app.get("/")
    def index() -> str:
        login_session("ada")
        return "ok"

    app.testing = True
    with pytest.raises(RuntimeError, match="OrmSession"):
        app.test_client().get("/")
