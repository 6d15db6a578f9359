"""The Flask extension, through Flask's own test client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask, flash, get_flashed_messages, session
from markupsafe import Markup

import ormsession
from ormsession.integrations.flask import (
    FlaskSession,
    OrmSession,
    destroy_session,
    regenerate_session,
)
from ormsession.repositories.memory import MemoryRepository
from tests.integrations.helpers import SetCookie, only_set_cookie
from tests.support.stores import record_calls

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def make_app(*, install: bool = True, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"ORMSESSION_URL": "memory://"} | config)
    if install:
        OrmSession(app)

    @app.get("/count")
    def count() -> str:
        session["count"] = session.get("count", 0) + 1
        return str(session["count"])

    @app.get("/read")
    def read() -> str:
        return f"{session.get('user')}:{session.get('count', 0)}"

    @app.get("/plain")
    def plain() -> str:
        return "plain"

    @app.get("/login")
    def login() -> str:
        regenerate_session()
        session["user"] = "ada"
        return "ok"

    @app.get("/logout")
    def logout() -> str:
        destroy_session()
        return "bye"

    @app.get("/remember")
    def remember() -> str:
        session.permanent = True
        session["user"] = "ada"
        return "ok"

    @app.get("/flash")
    def flash_it() -> str:
        flash(Markup("<b>saved</b>"), "info")
        session["when"] = WHEN
        return "ok"

    @app.get("/show")
    def show() -> dict[str, Any]:
        messages = get_flashed_messages(with_categories=True)
        ((category, message),) = messages  # type: ignore[str-unpack]
        return {
            "category": category,
            "is_markup": isinstance(message, Markup),
            "html": str(message),
            "escaped": str(Markup("{}").format(message)),
            "when_ok": session["when"] == WHEN,
            "type": type(session._get_current_object()).__name__,  # type: ignore[attr-defined]
            "new": session.new,
        }

    return app


def cookie_of(response: Any) -> SetCookie:
    return only_set_cookie(response.headers.getlist("Set-Cookie"))


def login_flow(app: Flask) -> None:
    client = app.test_client()
    name = app.session_interface.manager.cookie.cookie_name  # type: ignore[attr-defined]
    first = client.get("/count")
    assert first.text == "1" and cookie_of(first).name == name
    anonymous = cookie_of(first).value
    assert client.get("/count").text == "2"
    read = client.get("/read")
    assert read.text == "None:2" and read.headers.getlist("Set-Cookie") == []
    assert read.headers["Vary"] == "Cookie"

    login = client.get("/login")
    rotated = cookie_of(login).value
    assert rotated not in ("", anonymous)
    assert client.get("/read").text == "ada:2"
    stranger = app.test_client()
    stranger.set_cookie(name, anonymous)
    assert stranger.get("/read").text == "None:0", "the pre-login id must no longer work"

    logout = client.get("/logout")
    assert cookie_of(logout).deletes
    assert client.get("/read").text == "None:0"


def test_flow_on_memory() -> None:
    login_flow(make_app())


def test_flow_on_real_stores(real_store_url: str) -> None:
    app = make_app(ORMSESSION_URL=real_store_url)
    login_flow(app)
    manager = app.session_interface.manager  # type: ignore[attr-defined]
    assert manager.count() == 0  # logged out: nothing left behind
    manager.close()


def test_no_vary_and_no_cookie_when_session_unused() -> None:
    response = make_app().test_client().get("/plain")
    assert "Vary" not in response.headers
    assert response.headers.getlist("Set-Cookie") == []


def test_flash_markup_and_datetime_round_trip() -> None:
    client = make_app().test_client()
    client.get("/flash")
    shown = client.get("/show").json
    assert shown == {
        "category": "info",
        "is_markup": True,
        "html": "<b>saved</b>",
        "escaped": "<b>saved</b>",
        "when_ok": True,
        "type": "FlaskSession",
        "new": False,
    }


def test_flask_cookie_config_is_honoured() -> None:
    app = make_app(
        SESSION_COOKIE_NAME="app_sid",
        SESSION_COOKIE_DOMAIN="example.test",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    client = app.test_client()
    cookie = cookie_of(client.get("/login", base_url="https://example.test"))
    assert cookie.name == "app_sid"
    assert cookie.same_scope() == {
        "path": "/",
        "domain": "example.test",
        "secure": "yes",
        "samesite": "Strict",
    }
    logout = cookie_of(client.get("/logout", base_url="https://example.test"))
    assert logout.deletes and logout.same_scope() == cookie.same_scope()


def test_flask_defaults_keep_ormsession_defaults() -> None:
    # Flask's default SESSION_COOKIE_SAMESITE is None and SECURE False; ormsession keeps
    # SameSite=Lax and Secure-on-https unless the app changed them.
    client = make_app().test_client()
    plain = cookie_of(client.get("/count"))
    assert plain.attributes["samesite"] == "Lax" and "secure" not in plain.attributes
    assert plain.attributes["httponly"] == "yes" and plain.attributes["path"] == "/"
    secure = cookie_of(make_app().test_client().get("/count", base_url="https://localhost"))
    assert "secure" in secure.attributes


def test_ormsession_config_keys_override_flask_keys() -> None:
    app = make_app(SESSION_COOKIE_NAME="flask_name", ORMSESSION_COOKIE_NAME="orm_name")
    assert cookie_of(app.test_client().get("/count")).name == "orm_name"


def test_application_root_is_the_default_path() -> None:
    app = make_app(APPLICATION_ROOT="/shop")
    assert cookie_of(app.test_client().get("/count")).attributes["path"] == "/shop"


def test_partitioned_cookie() -> None:
    cookie = cookie_of(make_app(SESSION_COOKIE_PARTITIONED=True).test_client().get("/count"))
    assert "partitioned" in cookie.attributes
    assert "secure" in cookie.attributes, "browsers keep a partitioned cookie only if Secure"


class TestPermanent:
    def app_with_clock(self, **config: Any) -> tuple[Flask, list[datetime]]:
        now = [datetime(2024, 1, 1, tzinfo=UTC)]
        manager = ormsession.SessionManager(
            MemoryRepository(),
            ormsession.Config(idle_timeout=timedelta(hours=1), refresh_ratio=0.1),
            clock=lambda: now[0],
        )
        app = make_app(install=False, **config)
        OrmSession(app, manager=manager)
        return app, now

    def test_permanent_cookie_lives_permanent_session_lifetime(self) -> None:
        app = make_app(PERMANENT_SESSION_LIFETIME=timedelta(days=7))
        client = app.test_client()
        assert "max-age" not in cookie_of(client.get("/count")).attributes
        remembered = cookie_of(client.get("/remember"))
        assert remembered.attributes["max-age"] == str(7 * 86400)

    def test_resent_on_every_request_while_the_store_is_touched_only_when_due(self) -> None:
        # Flask re-sends a permanent session's cookie on every request (with Vary: Cookie);
        # the store's expiry is still pushed back only once refresh_ratio has passed.
        app, now = self.app_with_clock(PERMANENT_SESSION_LIFETIME=timedelta(days=7))
        client = app.test_client()
        client.get("/remember")
        calls = record_calls(app.session_interface.manager)  # type: ignore[attr-defined]
        plain = client.get("/plain")  # the session is not even read
        assert cookie_of(plain).attributes["max-age"] == str(7 * 86400)
        assert plain.headers["Vary"] == "Cookie"
        assert calls.writes() == []
        now[0] += timedelta(minutes=10)  # past refresh_ratio * idle_timeout: touch due
        refreshed = cookie_of(client.get("/read"))
        assert refreshed.attributes["max-age"] == str(7 * 86400)
        assert calls.writes() == ["touch"]

    def test_no_refresh_when_refresh_each_request_is_off(self) -> None:
        app, now = self.app_with_clock(SESSION_REFRESH_EACH_REQUEST=False)
        client = app.test_client()
        client.get("/remember")
        assert client.get("/read").headers.getlist("Set-Cookie") == []
        now[0] += timedelta(minutes=10)
        response = client.get("/read")
        assert response.text == "ada:0" and response.headers.getlist("Set-Cookie") == []
        assert cookie_of(client.get("/count")).attributes["max-age"] == str(31 * 86400)


def test_header_and_query_opt_ins_from_app_config() -> None:
    app = make_app(ORMSESSION_ID_HEADER="X-Session-Id", ORMSESSION_ID_QUERY_PARAM="sid")
    sid = cookie_of(app.test_client().get("/count")).value
    fresh = app.test_client(use_cookies=False)
    assert fresh.get("/read", headers={"X-Session-Id": sid}).text == "None:1"
    assert fresh.get(f"/read?sid={sid}").text == "None:1"
    login = fresh.get("/login", headers={"X-Session-Id": sid})
    assert login.headers["X-Session-Id"] not in ("", sid)

    default = make_app()
    sid = cookie_of(default.test_client().get("/count")).value
    other = default.test_client(use_cookies=False)
    assert other.get("/read", headers={"X-Session-Id": sid}).text == "None:0"
    assert other.get(f"/read?sid={sid}").text == "None:0"


def test_forwarded_proto_trust() -> None:
    headers = {"X-Forwarded-Proto": "https"}
    untrusted = cookie_of(make_app().test_client().get("/count", headers=headers))
    assert "secure" not in untrusted.attributes
    trusting = make_app(ORMSESSION_TRUST_FORWARDED_PROTO=True)
    assert "secure" in cookie_of(trusting.test_client().get("/count", headers=headers)).attributes


def test_host_prefix() -> None:
    cookie = cookie_of(make_app(ORMSESSION_COOKIE_HOST_PREFIX=True).test_client().get("/count"))
    assert cookie.name == "__Host-session" and "secure" in cookie.attributes
    assert "domain" not in cookie.attributes and cookie.attributes["path"] == "/"


@pytest.mark.parametrize("forged", ["nonsense", "A" * 43, "\u00e9t\u00e9", "x" * 4000])
def test_forged_cookie_gives_a_fresh_session(forged: str) -> None:
    client = make_app().test_client()
    client.set_cookie("session", forged)
    response = client.get("/read")
    assert response.status_code == 200 and response.text == "None:0"
    assert response.headers.getlist("Set-Cookie") == []


def test_session_transaction_and_loaded_session_class() -> None:
    app = make_app()
    client = app.test_client()
    with client.session_transaction() as prepared:
        prepared["user"] = "grace"
        assert isinstance(prepared, FlaskSession) and prepared.new
    assert client.get("/read").text == "grace:0"
    with client.session_transaction() as loaded:
        assert isinstance(loaded, FlaskSession) and not loaded.new
        assert loaded["user"] == "grace"


def test_ready_manager_and_init_app() -> None:
    manager = ormsession.configure("memory://", cookie_name="shared")
    extension = OrmSession(manager=manager)
    app = make_app(install=False)
    extension.init_app(app)
    # The app's manager is left as it is; the extension's shares its store and config.
    assert extension.manager is not None and extension.manager.repository is manager.repository
    assert extension.manager.config is manager.config and manager.session_class is not FlaskSession
    assert cookie_of(app.test_client().get("/count")).name == "shared"
    extension.close()  # does not close a manager it was given
    assert app.test_client().get("/count").status_code == 200
    with pytest.raises(ormsession.ConfigurationError):
        OrmSession(make_app(install=False), manager=manager, cookie_name="x")


def test_helpers_need_the_extension() -> None:
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        regenerate_session()
        return ""

    app.testing = True
    with pytest.raises(RuntimeError, match="OrmSession"):
        app.test_client().get("/")


def test_a_ready_managers_copy_keeps_its_class_and_leaves_it_as_it_was() -> None:
    class Instrumented(ormsession.SessionManager):
        opened = 0

        def open(
            self, session_id: str | None = None, **options: Any
        ) -> ormsession.RequestSession:
            Instrumented.opened += 1
            return super().open(session_id, **options)

    manager = Instrumented(MemoryRepository())
    app = make_app(install=False)
    extension = OrmSession(app, manager=manager)
    assert type(extension.manager) is Instrumented
    assert extension.manager.repository is manager.repository
    assert manager.session_class is ormsession.RequestSession
    app.test_client().get("/count")
    assert Instrumented.opened == 1


def test_a_new_visitor_writing_during_an_outage_gets_the_page_with_fresh_sessions() -> None:
    from tests.unit.test_policy_options import WriteDownRepository

    app = make_app(install=False)
    manager = ormsession.SessionManager(
        WriteDownRepository(), ormsession.Config(on_store_error="fresh")
    )
    OrmSession(app, manager=manager)
    response = app.test_client().get("/count")  # a first visit that writes to the session
    assert response.status_code == 200 and response.text == "1"
    assert "Set-Cookie" not in response.headers, "an unsaved session sets no cookie"
