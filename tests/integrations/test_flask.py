"""The Flask extension, through Flask's own test client."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask, flash, get_flashed_messages, session
from flask.globals import request_ctx
from markupsafe import Markup

import ormsession
from ormsession.expiry import to_us
from ormsession.integrations.flask import (
    FlaskSession,
    OrmSession,
    OrmSessionInterface,
    destroy_session,
    regenerate_session,
)
from ormsession.repositories.memory import MemoryRepository
from tests.integrations.helpers import SetCookie, only_set_cookie
from tests.support.stores import FakeClock, record_calls, target_for

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
    manager = app.session_interface.manager  # type: ignore[attr-defined]
    before = manager.count()  # other tests' sessions in the shared database
    login_flow(app)
    assert manager.count() == before  # logged out: nothing left behind
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

    def test_a_regenerate_keeps_a_permanent_sessions_lifetime(self) -> None:
        # The rename sets the store's expiry: from PERMANENT_SESSION_LIFETIME for a
        # permanent session, not the config's idle timeout.
        app = make_app(PERMANENT_SESSION_LIFETIME=timedelta(minutes=5))

        @app.get("/rotate")
        def rotate() -> str:
            regenerate_session()
            return "ok"

        client = app.test_client()
        client.get("/remember")
        new_id = cookie_of(client.get("/rotate")).value
        manager = app.session_interface.manager  # type: ignore[attr-defined]
        expires_at = manager.open(new_id).expires_at
        remaining = expires_at - datetime.now(UTC)
        assert timedelta(minutes=4) < remaining <= timedelta(minutes=5)

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


def test_a_second_install_on_one_app_is_refused_and_the_first_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[Any] = []
    module = sys.modules["ormsession.configure"]  # the package's `configure` is the function
    real_configure = module.configure

    def counting_configure(*args: Any, **kwargs: Any) -> Any:
        built.append(manager := real_configure(*args, **kwargs))
        return manager

    monkeypatch.setattr(module, "configure", counting_configure)
    app = make_app(ORMSESSION_COOKIE_NAME="first")
    first = app.extensions["ormsession"]
    client = app.test_client()
    assert client.get("/count").text == "1"
    for again in (
        lambda: OrmSession(app, cookie_name="second"),
        lambda: OrmSession().init_app(app),
    ):
        with pytest.raises(ormsession.ConfigurationError, match="already installed on app"):
            again()
    assert app.extensions["ormsession"] is first and len(built) == 1
    response = client.get("/count")
    assert response.text == "2" and cookie_of(response).name == "first"
    # One extension, several apps (the app factory pattern) is as before.
    extension = OrmSession()
    for name in ("a", "b"):
        other = make_app(install=False, ORMSESSION_COOKIE_NAME=name)
        extension.init_app(other)
        assert cookie_of(other.test_client().get("/count")).name == name
    extension.close()
    # Closed, an extension gives its apps back (one test's teardown, the next one's set-up).
    reused = make_app(install=False)
    for _ in range(2):
        extension = OrmSession(reused)
        assert reused.test_client().get("/count").text == "1"
        extension.close()


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

        def open(self, session_id: str | None = None, **options: Any) -> ormsession.RequestSession:
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


# -- Flask's own settings, read at request time ----------------------------------------------
STORES = ["sqlite", "postgresql", "mysql", "redis"]


@pytest.fixture(params=STORES)
def store_app(request: pytest.FixtureRequest) -> Iterator[Flask]:
    """An app on a real store (its own database or key prefix), closed afterwards."""
    target = target_for(request, request.param)
    app = make_app(install=False)
    extension = OrmSession(app, url=target.url, **target.options)
    yield app
    extension.close()


def manager_of(app: Flask) -> Any:
    return app.session_interface.manager  # type: ignore[attr-defined]


class TestSettingsAtRequestTime:
    def test_cookie_keys_changed_after_init_apply_to_the_next_response(self) -> None:
        app = make_app()
        client = app.test_client()
        first = cookie_of(client.get("/count"))
        assert (first.name, first.attributes["path"]) == ("session", "/")
        app.config.update(
            SESSION_COOKIE_NAME="later",
            SESSION_COOKIE_DOMAIN=".example.test",
            APPLICATION_ROOT="/shop",
            SESSION_COOKIE_HTTPONLY=False,
            SESSION_COOKIE_SECURE=True,
            SESSION_COOKIE_SAMESITE="Strict",
            SESSION_COOKIE_PARTITIONED=True,
        )
        later = cookie_of(app.test_client().get("/count", "http://www.example.test/shop/"))
        assert later.name == "later"
        assert later.attributes == {
            "domain": "example.test",  # the leading dot dropped, as Werkzeug does
            "path": "/shop",
            "secure": "yes",
            "samesite": "Strict",
            "partitioned": "yes",
        }
        app.config["SESSION_COOKIE_PATH"] = "/"
        assert cookie_of(app.test_client().get("/count")).attributes["path"] == "/"

    def test_the_cookie_options_are_built_once_per_settings(self) -> None:
        app = make_app()
        interface = app.session_interface
        assert isinstance(interface, OrmSessionInterface)
        first = interface.cookie_options(app, permanent=False)
        assert interface.cookie_options(app, permanent=False) is first
        app.config["SESSION_COOKIE_NAME"] = "other"
        changed = interface.cookie_options(app, permanent=False)
        assert changed is not first and changed.name == "other"
        permanent = interface.cookie_options(app, permanent=True)
        assert permanent.max_age == app.permanent_session_lifetime

    def test_the_cookie_is_read_under_the_current_name(self) -> None:
        app = make_app()
        client = app.test_client()
        client.get("/count")
        app.config["SESSION_COOKIE_NAME"] = "renamed"
        # The browser's "session" cookie is no longer the session cookie: a fresh session.
        assert client.get("/read").text == "None:0"

    def test_init_app_writes_the_safer_defaults_into_flasks_keys(self) -> None:
        app = make_app()
        assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
        assert app.config["SESSION_COOKIE_SECURE"] is None, "None: Secure on https requests"
        assert app.config["SESSION_COOKIE_PATH"] is None, "APPLICATION_ROOT still applies"

    def test_an_explicit_samesite_none_sends_no_samesite(self) -> None:
        app = make_app()
        app.config["SESSION_COOKIE_SAMESITE"] = None
        assert "samesite" not in cookie_of(app.test_client().get("/count")).attributes

    def test_the_apps_own_values_set_before_init_win_over_the_safer_defaults(self) -> None:
        app = make_app(SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=True)
        cookie = cookie_of(app.test_client().get("/count"))
        assert cookie.attributes["samesite"] == "Strict" and "secure" in cookie.attributes

    @pytest.mark.parametrize("samesite", ["invalid", "", 1])
    def test_an_invalid_samesite_raises_value_error_before_anything_is_stored(
        self, samesite: Any
    ) -> None:
        app = make_app()
        app.testing = True
        app.config["SESSION_COOKIE_SAMESITE"] = samesite
        with pytest.raises(ValueError, match="SESSION_COOKIE_SAMESITE"):
            app.test_client().get("/count")
        assert manager_of(app).count() == 0

    def test_an_invalid_cookie_name_or_path_raises_value_error(self) -> None:
        app = make_app()
        app.testing = True
        app.config["SESSION_COOKIE_NAME"] = "bad name"
        with pytest.raises(ValueError, match="cookie name"):
            app.test_client().get("/count")
        app.config.update(SESSION_COOKIE_NAME="session", SESSION_COOKIE_PATH="no-slash")
        with pytest.raises(ValueError, match="cookie path"):
            app.test_client().get("/count")


class TestPrecedence:
    def test_keyword_options_beat_ormsession_keys_beat_flask_keys(self) -> None:
        app = make_app(install=False, SESSION_COOKIE_NAME="flask", ORMSESSION_COOKIE_NAME="config")
        OrmSession(app, url="memory://", cookie_name="keyword")
        assert app.config["SESSION_COOKIE_NAME"] == "keyword"
        assert cookie_of(app.test_client().get("/count")).name == "keyword"

    def test_flask_keys_beat_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ORMSESSION_COOKIE_NAME", "from_env")
        monkeypatch.setenv("ORMSESSION_COOKIE_SAMESITE", "strict")
        assert cookie_of(make_app().test_client().get("/count")).name == "from_env"
        app = make_app(SESSION_COOKIE_NAME="from_flask", SESSION_COOKIE_SAMESITE="Lax")
        cookie = cookie_of(app.test_client().get("/count"))
        assert cookie.name == "from_flask" and cookie.attributes["samesite"] == "Lax"
        assert make_app().config["SESSION_COOKIE_SAMESITE"] == "Strict"

    def test_a_later_flask_key_wins_over_an_ormsession_key(self) -> None:
        app = make_app(ORMSESSION_COOKIE_NAME="config")
        app.config["SESSION_COOKIE_NAME"] = "later"
        assert cookie_of(app.test_client().get("/count")).name == "later"

    def test_a_ready_managers_own_settings_are_installed(self) -> None:
        manager = ormsession.configure("memory://", cookie_name="mine", cookie_samesite="strict")
        app = make_app(install=False, SESSION_COOKIE_NAME="flask")
        OrmSession(app, manager=manager)
        assert app.config["SESSION_COOKIE_NAME"] == "mine"
        assert app.config["SESSION_COOKIE_SAMESITE"] == "Strict"


class TestWhenTheCookieIsSent:
    def test_a_modified_session_resends_its_cookie_without_a_store_write(self) -> None:
        app = make_app()

        @app.get("/same")
        def same() -> str:
            session["count"] = 1  # the value it already has
            return ""

        client = app.test_client()
        sid = cookie_of(client.get("/count")).value
        calls = record_calls(manager_of(app))
        again = client.get("/same")
        assert cookie_of(again).value == sid, "Flask sends the cookie of a modified session"
        assert "max-age" not in cookie_of(again).attributes
        assert calls.writes() == [], "equal data is not written again"

    def test_an_unmodified_session_sends_no_cookie(self) -> None:
        client = make_app().test_client()
        client.get("/count")
        assert client.get("/read").headers.getlist("Set-Cookie") == []

    def test_changing_permanent_sends_the_cookie_with_or_without_a_lifetime(
        self, store_app: Flask
    ) -> None:
        app = store_app

        @app.get("/forget")
        def forget() -> str:
            session.permanent = False
            return ""

        client = app.test_client()
        client.get("/count")
        remembered = cookie_of(client.get("/remember"))
        assert remembered.attributes["max-age"] == str(31 * 86400)
        assert "expires" in remembered.attributes
        forgotten = cookie_of(client.get("/forget"))
        assert forgotten.value == remembered.value
        assert "max-age" not in forgotten.attributes and "expires" not in forgotten.attributes
        assert client.get("/read").text == "ada:1"

    @pytest.mark.parametrize("how", ["clear", "pop"])
    def test_emptying_the_session_ends_it_with_a_deleting_cookie(
        self, store_app: Flask, how: str
    ) -> None:
        app = store_app

        @app.get("/empty")
        def empty() -> str:
            if how == "clear":
                session.clear()
            else:
                session.pop("count")
            return ""

        client = app.test_client()
        sid = cookie_of(client.get("/count")).value
        assert manager_of(app).count() == 1
        ended = client.get("/empty")
        assert cookie_of(ended).deletes and ended.headers["Vary"] == "Cookie"
        assert manager_of(app).count() == 0, "no empty record is left behind"
        replay = app.test_client()
        replay.set_cookie("session", sid)
        assert replay.get("/read").text == "None:0"

    def test_modified_stays_true_after_the_save(self) -> None:
        app = make_app()
        client = app.test_client()
        with client:
            client.get("/count")
            saved = session._get_current_object()  # type: ignore[attr-defined]
            assert saved.modified and saved.accessed and not saved.dirty

    def test_the_interface_never_reads_the_session(self) -> None:
        # len(session) or bool(session) would mark it accessed (and add Vary: Cookie).
        app = make_app()
        client = app.test_client()
        client.get("/remember")
        app.config["SESSION_REFRESH_EACH_REQUEST"] = False
        with client:
            response = client.get("/plain")
            # request_ctx._session: the flask.session proxy itself marks the session accessed.
            assert not request_ctx._session.accessed and "Vary" not in response.headers


class TestPermanentSessionsOnTheServer:
    def clocked(self, url: str, options: dict[str, Any], **config: Any) -> tuple[Flask, Any]:
        clock = FakeClock()
        app = make_app(install=False, **config)
        manager = ormsession.configure(url, clock=clock, **options)
        OrmSession(app, manager=manager)
        return app, clock

    def test_idle_timeout_is_the_lifetime_and_the_absolute_timeout_never_shorter(
        self, request: pytest.FixtureRequest
    ) -> None:
        target = target_for(request, "postgresql")
        app, clock = self.clocked(
            target.url, target.options, PERMANENT_SESSION_LIFETIME=timedelta(days=60)
        )
        client = app.test_client()
        client.get("/remember")
        stored = manager_of(app).open(cookie_of(client.get("/count")).value)
        assert stored.expires_at == clock.now + timedelta(days=60)
        other = app.test_client()
        other.get("/count")  # not permanent: the default idle timeout (1 day)
        clock.advance(days=2)
        assert client.get("/read").text == "ada:1", "a permanent session outlives idle_timeout"
        assert other.get("/read").text == "None:0"
        for _ in range(3):  # active past the 30-day absolute timeout, within 60 days
            clock.advance(days=12)
            assert client.get("/read").text == "ada:1"
        clock.advance(days=25)  # 63 days after creation: past the lifetime
        assert client.get("/read").text == "None:0"
        manager_of(app).close()

    @pytest.mark.parametrize("where", ["option", "app.config", "environment"])
    def test_an_explicit_idle_timeout_governs_permanent_sessions_too(
        self, where: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock = FakeClock()
        app = make_app(install=False)
        if where == "option":
            extension = OrmSession(app, url="memory://", idle_timeout="2h")
        elif where == "app.config":
            app.config["ORMSESSION_IDLE_TIMEOUT"] = "2h"
            extension = OrmSession(app, url="memory://")
        else:
            monkeypatch.setenv("ORMSESSION_IDLE_TIMEOUT", "2h")
            extension = OrmSession(app, url="memory://")
        assert extension.manager is not None
        extension.manager.policy.now_us = lambda: to_us(clock())
        client = app.test_client()
        client.get("/remember")
        assert cookie_of(client.get("/count")).attributes["max-age"] == str(31 * 86400)
        clock.advance(hours=3)
        assert client.get("/read").text == "None:0"


class TestFlaskSessionKeys:
    def test_redis_type_and_client_name_the_url_to_use(self) -> None:
        import redis

        client = redis.Redis.from_url("redis://:s3cret@127.0.0.1:6379/0")
        app = make_app(install=False, SESSION_TYPE="redis", SESSION_REDIS=client)
        with pytest.raises(ormsession.ConfigurationError) as raised:
            OrmSession(app)
        message = str(raised.value)
        assert "SESSION_TYPE" in message and "SESSION_REDIS" in message
        assert 'ORMSESSION_URL = "redis://127.0.0.1:6379/0"' in message
        assert "s3cret" not in message
        client.close()

    @pytest.mark.parametrize(
        ("key", "instead"),
        [
            ("SESSION_KEY_PREFIX", "ORMSESSION_KEY_PREFIX"),
            ("SESSION_SQLALCHEMY", "configure(engine="),
            ("SESSION_PERMANENT", "session.permanent"),
            ("SESSION_USE_SIGNER", "nothing"),
            ("SESSION_ID_LENGTH", "ORMSESSION_ID_BYTES"),
            ("SESSION_SERIALIZATION_FORMAT", "ORMSESSION_SERIALIZER"),
        ],
    )
    def test_each_key_names_its_replacement(self, key: str, instead: str) -> None:
        with pytest.raises(ormsession.ConfigurationError, match=re.escape(instead)):
            make_app(**{key: True})

    def test_also_as_options(self) -> None:
        with pytest.raises(ormsession.ConfigurationError, match="ORMSESSION_KEY_PREFIX"):
            OrmSession(make_app(install=False), session_key_prefix="x:")
        with pytest.raises(ValueError, match="SESSION_TYPE"):
            OrmSession(make_app(install=False), SESSION_TYPE="redis")

    def test_flasks_own_session_keys_are_not_mistaken_for_them(self) -> None:
        make_app(SESSION_REFRESH_EACH_REQUEST=False, SESSION_COOKIE_NAME="x")


def test_no_secret_key_is_needed() -> None:
    app = make_app()
    assert app.secret_key is None
    client = app.test_client()
    client.get("/flash")
    assert client.get("/show").json["html"] == "<b>saved</b>"  # type: ignore[index]


def test_a_failed_save_is_raised_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    # Flask saves the session again while it renders the 500 page: that second save must
    # not raise (and log) the same error again.
    app = Flask(__name__)
    app.config.update(ORMSESSION_URL="memory://", ORMSESSION_MAX_DATA_BYTES=100)
    OrmSession(app)

    @app.get("/big")
    def big() -> str:
        session["x"] = "y" * 1000
        return "ok"

    with caplog.at_level("ERROR"):
        response = app.test_client().get("/big")
    assert response.status_code == 500
    assert "Set-Cookie" not in response.headers
    failures = [record for record in caplog.records if record.exc_info]
    assert len(failures) == 1, [record.getMessage() for record in failures]
    assert "SessionTooLargeError" in caplog.text


@pytest.mark.parametrize(
    ("configured", "written"),
    [
        ("localhost:5000", "localhost"),
        ("bücher.example", "xn--bcher-kva.example"),
        (".example.com", "example.com"),
    ],
)
def test_cookie_domain_is_written_as_werkzeug_writes_it(configured: str, written: str) -> None:
    cookie = cookie_of(make_app(SESSION_COOKIE_DOMAIN=configured).test_client().get("/count"))
    assert cookie.attributes["domain"] == written
