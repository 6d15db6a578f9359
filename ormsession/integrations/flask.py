"""Flask extension: ``flask.session`` backed by an ormsession store.

    from flask import Flask, session
    from ormsession.integrations.flask import OrmSession, destroy_session, regenerate_session

    app = Flask(__name__)
    app.config["ORMSESSION_URL"] = "sqlite:///sessions.sqlite3"
    OrmSession(app)

Configuration, lowest precedence first: ``ORMSESSION_*`` environment variables; Flask's
``SESSION_COOKIE_*`` keys (when changed from Flask's defaults); ``ORMSESSION_<FIELD>`` keys in
``app.config``; keyword options given to :class:`OrmSession`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import flask
from flask.sessions import SessionInterface, SessionMixin

from ormsession.config import Config
from ormsession.errors import ConfigurationError
from ormsession.integrations._common import (
    REQUEST_OPTION_NAMES,
    RequestOptions,
    SessionRequest,
    config_for,
)
from ormsession.session import RequestSession, Stored

if TYPE_CHECKING:
    from flask import Flask, Request, Response

    from ormsession.manager import SessionManager

__all__ = [
    "FlaskSession",
    "OrmSession",
    "OrmSessionInterface",
    "destroy_session",
    "regenerate_session",
]

EXTENSION_KEY = "ormsession"
_REQUEST_KEY = "ormsession.request"

#: Flask's standard session settings and the ormsession option each one sets.
_FLASK_COOKIE_KEYS = {
    "SESSION_COOKIE_NAME": "cookie_name",
    "SESSION_COOKIE_DOMAIN": "cookie_domain",
    "SESSION_COOKIE_PATH": "cookie_path",
    "SESSION_COOKIE_HTTPONLY": "cookie_httponly",
    "SESSION_COOKIE_SECURE": "cookie_secure",
    "SESSION_COOKIE_SAMESITE": "cookie_samesite",
}


class FlaskSession(RequestSession, SessionMixin):
    """A :class:`RequestSession` that is also a Flask session (``session.permanent`` etc.)."""

    #: How this request named its session (set by ``open_session`` for ``save_session``).
    ormsession_request: SessionRequest | None = None

    @property
    def new(self) -> bool:  # type: ignore[override]
        """True until the session has been stored (Flask's name for ``is_new``)."""
        return self.is_new

    @property
    def permanent(self) -> bool:
        # Read without marking the session accessed: the interface checks it on every save,
        # and that must not add a Vary header to responses that never used the session.
        return bool(dict.get(self, "_permanent", False))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self["_permanent"] = bool(value)


class OrmSessionInterface(SessionInterface):
    """Flask's hook: open the session from the request, save it into the response."""

    def __init__(self, manager: SessionManager, options: RequestOptions) -> None:
        if not issubclass(manager.session_class, FlaskSession):
            # Flask needs its session interface on every session: the same manager (a
            # copy, so the app's own stays as it is) opening FlaskSessions.
            manager = manager.with_session_class(FlaskSession)
        self.manager = manager
        self.options = options

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        session_request = SessionRequest.from_wsgi(
            request.environ, self.options, self.manager.cookie.cookie_name
        )
        request.environ[_REQUEST_KEY] = session_request
        session = self.manager.open(session_request.session_id)
        if not isinstance(session, FlaskSession):  # pragma: no cover - __init__ sees to it
            raise TypeError(f"{type(self.manager).__name__} opened a {type(session).__name__}")
        session.ormsession_request = session_request  # for save_session, without a lookup
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, RequestSession):  # a null session (open failed)
            return
        session_request = getattr(session, "ormsession_request", None)
        if session_request is None:
            environ = flask.request.environ
            session_request = environ.get(_REQUEST_KEY) or SessionRequest.from_wsgi(
                environ, self.options, self.manager.cookie.cookie_name
            )
        stored_before = session.stored
        cookie = self.manager.save(session, https=session_request.https)
        if isinstance(session, FlaskSession) and session.permanent:
            cookie = self._permanent_cookie(app, session, cookie, stored_before, session_request)
        for name, value in session_request.headers_for(session, cookie):
            if name == "Vary":
                for vary in value.split(", "):
                    response.vary.add(vary)
            else:
                response.headers.add(name, value)

    def _permanent_cookie(
        self,
        app: Flask,
        session: FlaskSession,
        cookie: str | None,
        stored_before: Stored | None,
        session_request: SessionRequest,
    ) -> str | None:
        """A permanent session's cookie lives ``PERMANENT_SESSION_LIFETIME``.

        Flask resends it on every request (``SESSION_REFRESH_EACH_REQUEST``); here it is
        resent when the store's expiry was pushed back too (a write, or the throttled
        touch), so read-only responses stay free of Set-Cookie and cacheable.
        """
        lifetime: timedelta = app.permanent_session_lifetime
        stored = session.stored
        if stored is None or lifetime.total_seconds() <= 0:
            return cookie  # a deleting cookie (nothing stored)
        if not self.manager.config.set_cookie:
            return None
        moved = stored_before is None or stored.expires_us != stored_before.expires_us
        refreshed = moved and bool(app.config.get("SESSION_REFRESH_EACH_REQUEST", True))
        if cookie is None and not refreshed:
            return None
        options = replace(self.manager.cookie, max_age=lifetime)
        return options.set_cookie(
            session.id, https=session_request.https, now_us=self.manager.policy.now_us()
        )


class OrmSession:
    """The extension: ``OrmSession(app)`` or ``ext = OrmSession(); ext.init_app(app)``.

    ``manager``: a ready :class:`SessionManager` (cookie and store options are then its
    own); otherwise one is built from the app's config, ``config`` and ``options`` when
    :meth:`init_app` runs. The manager lives as long as the process; call :meth:`close`
    at shutdown if you need to release its connections earlier (tests, say).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        manager: SessionManager | None = None,
        config: Config | None = None,
        **options: Any,
    ) -> None:
        self._manager = manager
        self._config = config
        self._options = options
        self._owned: list[SessionManager] = []
        self.manager: SessionManager | None = manager
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        manager = self._manager
        if manager is None:
            options = config_options(app) | self._options
            resolved = config_for(self._config, options, manager_given=False)
            from ormsession.configure import configure

            manager = configure(config=resolved, session_class=FlaskSession)
            self._owned.append(manager)
        else:
            # A ready manager brings its own cookie and store options; only the request
            # options can still come from app.config.
            request_options = {
                key: app.config[f"ORMSESSION_{key.upper()}"]
                for key in sorted(REQUEST_OPTION_NAMES)
                if f"ORMSESSION_{key.upper()}" in app.config
            }
            resolved = config_for(self._config, request_options | self._options, manager_given=True)
        interface = OrmSessionInterface(manager, RequestOptions.from_config(resolved))
        app.session_interface = interface
        app.extensions[EXTENSION_KEY] = interface
        self.manager = interface.manager

    def close(self) -> None:
        """Close the managers this extension built (never one that was passed in)."""
        for manager in self._owned:
            manager.close()
        self._owned.clear()


def config_options(app: Flask) -> dict[str, Any]:
    """ormsession options from ``app.config``: Flask's own session keys where the app
    changed them from Flask's defaults (so ormsession's safer defaults, SameSite=Lax and
    Secure on https, stay in force otherwise), then any ``ORMSESSION_<FIELD>`` keys."""
    config, defaults = app.config, app.default_config
    if config.get("SESSION_COOKIE_PARTITIONED"):
        raise ConfigurationError("SESSION_COOKIE_PARTITIONED is not supported by ormsession")
    options: dict[str, Any] = {}
    for key, field in _FLASK_COOKIE_KEYS.items():
        value = config.get(key, defaults.get(key))
        if value is not None and value != defaults.get(key):
            options[field] = value.lower() if field == "cookie_samesite" else value
    root = config.get("APPLICATION_ROOT") or "/"
    if "cookie_path" not in options and root != "/":
        options["cookie_path"] = root
    for field in Config.model_fields:
        key = f"ORMSESSION_{field.upper()}"
        if key in config:
            options[field] = config[key]
    return options


def _interface() -> OrmSessionInterface:
    interface = flask.current_app.session_interface
    if not isinstance(interface, OrmSessionInterface):
        raise RuntimeError("ormsession is not installed on this app: call OrmSession(app)")
    return interface


def _current_session() -> RequestSession:
    # The real object behind the `flask.session` proxy: the manager rewrites its state.
    session = flask.session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(session, RequestSession):
        raise RuntimeError("flask.session is not an ormsession session")
    return session


def regenerate_session() -> None:
    """Give ``flask.session`` a new id now, keeping its data (call right after login)."""
    _interface().manager.regenerate(_current_session())


def destroy_session() -> None:
    """Delete ``flask.session`` from the store now (call on logout). The response deletes
    the cookie, unless the request stores something new in the now empty session."""
    _interface().manager.destroy(_current_session())
