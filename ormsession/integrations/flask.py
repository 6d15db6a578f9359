"""Flask extension: ``flask.session`` backed by an ormsession store.

    from flask import Flask, session
    from ormsession.integrations.flask import OrmSession, destroy_session, login_session

    app = Flask(__name__)
    app.config["ORMSESSION_URL"] = "sqlite:///sessions.sqlite3"
    OrmSession(app)

A drop-in for Flask's own sessions: Flask's ``SESSION_COOKIE_*``, ``APPLICATION_ROOT``,
``SESSION_REFRESH_EACH_REQUEST`` and ``PERMANENT_SESSION_LIFETIME`` keys are read on every
request, so an app (or a test) may change them at any time. ``OrmSession(app)`` writes
ormsession's own cookie settings into those keys once (see :func:`install_cookie_settings`);
from then on Flask's keys are the truth. Store options (``ORMSESSION_<FIELD>`` keys in
``app.config``, keyword options, ``ORMSESSION_*`` environment variables) are read once, at
:meth:`OrmSession.init_app`.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import flask
from flask.sessions import SessionInterface, SessionMixin

from ormsession.config import Config
from ormsession.errors import ConfigurationError
from ormsession.expiry import ExpiryPolicy
from ormsession.integrations._common import (
    FROM_REQUEST,
    FromRequest,
    RequestOptions,
    SessionRequest,
    or_from_request,
)
from ormsession.integrations._flask_family import (
    EXTENSION_KEY,
    CookieRules,
    FlaskSession,
    add_headers,
    app_settings,
    check_cookie_settings,
    idle_timeout_set,
    install_cookie_settings,
    refuse_a_second_install,
)
from ormsession.integrations._flask_session import refuse_flask_session_keys
from ormsession.session import RequestSession

if TYPE_CHECKING:
    from flask import Flask, Request, Response

    from ormsession.manager import SessionManager
    from ormsession.users import UserSession

__all__ = [
    "FROM_REQUEST",
    "FlaskSession",
    "OrmSession",
    "OrmSessionInterface",
    "destroy_session",
    "install_cookie_settings",
    "list_sessions",
    "login_session",
    "regenerate_session",
    "revoke_other_sessions",
    "revoke_session",
]

_REQUEST_KEY = "ormsession.request"


class OrmSessionInterface(SessionInterface, CookieRules):
    """Flask's hook: open the session from the request, save it into the response.

    ``idle_timeout_set``: the app chose ormsession's ``idle_timeout`` itself, so it also
    governs permanent sessions (otherwise their idle timeout is
    ``PERMANENT_SESSION_LIFETIME``, see :meth:`permanent_expiry`). The rules that read
    ``app.config`` on every request (:meth:`cookie_options`, :meth:`permanent_expiry`) are
    :class:`~ormsession.integrations._flask_family.CookieRules`, shared with Quart.
    """

    def __init__(
        self, manager: SessionManager, options: RequestOptions, *, idle_timeout_set: bool = False
    ) -> None:
        if not issubclass(manager.session_class, FlaskSession):
            # Flask needs its session interface on every session: the same manager (a
            # copy, so the app's own stays as it is) opening FlaskSessions.
            manager = manager.with_session_class(FlaskSession)
        CookieRules.__init__(
            self, manager.config, manager.policy.now_us, idle_timeout_set=idle_timeout_set
        )
        self.manager = manager
        self.options = options

    # -- Flask's hooks ---------------------------------------------------------------
    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        session_request = SessionRequest.from_wsgi(
            request.environ, self.options, self.wire_name(app), self.manager.policy.ids.is_valid
        )
        request.environ[_REQUEST_KEY] = session_request
        expiry = self.open_expiry(app)
        session = self.manager.open_first(
            session_request.session_id, session_request.later_ids, expiry=expiry
        )
        if not isinstance(session, FlaskSession):  # pragma: no cover - __init__ sees to it
            raise TypeError(f"{type(self.manager).__name__} opened a {type(session).__name__}")
        session.ormsession_request = session_request  # for save_session, without a lookup
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, RequestSession):  # a null session (open failed)
            return
        if getattr(session, "ormsession_save_failed", False):
            return  # the error page of a failed save: the failure is already raised
        try:
            self._save(app, session, response)
        except Exception:
            if isinstance(session, FlaskSession):
                session.ormsession_save_failed = True
            raise

    def _save(self, app: Flask, session: RequestSession, response: Response) -> None:
        session_request = getattr(session, "ormsession_request", None)
        if session_request is None:
            environ = flask.request.environ
            session_request = environ.get(_REQUEST_KEY) or SessionRequest.from_wsgi(
                environ, self.options, self.wire_name(app), self.manager.policy.ids.is_valid
            )
        permanent = isinstance(session, FlaskSession) and session.permanent
        # Built before anything is written: an invalid setting fails the request cleanly.
        cookie_options = self.cookie_options(app, permanent=permanent)
        expiry = self.request_expiry(app, session)
        https = session_request.https
        needed_cookie = session.needs_cookie  # a new or regenerated id: always sent
        set_cookie = self.manager.save(session, https=https, cookie=cookie_options, expiry=expiry)
        set_cookie = self.response_cookie(
            app, session, set_cookie, cookie_options, https, needed=needed_cookie
        )
        add_headers(response, session_request.headers_for(session, set_cookie))


class OrmSession:
    """The extension: ``OrmSession(app)`` or ``ext = OrmSession(); ext.init_app(app)``.

    ``manager``: a ready :class:`SessionManager` (its store and configuration are then its
    own); otherwise one is built from the app's ``ORMSESSION_*`` keys, ``config`` and
    ``options`` when :meth:`init_app` runs. The manager lives as long as the process; call
    :meth:`close` at shutdown if you need to release its connections earlier (tests, say).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        manager: SessionManager | None = None,
        config: Config | None = None,
        **options: Any,
    ) -> None:
        refuse_flask_session_keys(options, where="OrmSession()")
        self._manager = manager
        self._config = config
        self._options = options
        self._owned: list[SessionManager] = []
        self._installed: list[tuple[weakref.ref[Flask], OrmSessionInterface]] = []
        self.manager: SessionManager | None = manager
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        refuse_a_second_install(app)
        refuse_flask_session_keys(app.config, where="app.config")
        manager = self._manager
        settings = app_settings(
            app,
            self._config,
            self._options,
            manager_config=None if manager is None else manager.config,
        )
        if manager is None:
            from ormsession.configure import configure

            manager = configure(config=settings.resolved, session_class=FlaskSession)
            self._owned.append(manager)
        install_cookie_settings(app, manager.config, settings.chosen)
        try:
            check_cookie_settings(app, manager.config)
        except ConfigurationError:
            if manager in self._owned:  # built just now, for this app alone
                self._owned.remove(manager)
                manager.close()
            raise
        interface = OrmSessionInterface(
            manager, settings.request_options, idle_timeout_set=idle_timeout_set(manager.config)
        )
        app.session_interface = interface
        app.extensions[EXTENSION_KEY] = interface
        self._installed.append((weakref.ref(app), interface))
        self.manager = interface.manager

    def close(self) -> None:
        """Close the managers this extension built (never one that was passed in). The apps
        it was installed on may then be given a new extension (a test's teardown)."""
        for manager in self._owned:
            manager.close()
        self._owned.clear()
        for app_ref, interface in self._installed:
            app = app_ref()
            if app is not None and app.extensions.get(EXTENSION_KEY) is interface:
                del app.extensions[EXTENSION_KEY]
        self._installed.clear()


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


def _request_expiry(interface: OrmSessionInterface, session: RequestSession) -> ExpiryPolicy | None:
    """The timeouts this request's save will follow (a permanent session's are longer)."""
    return interface.request_expiry(flask.current_app, session)


def regenerate_session() -> None:
    """Give ``flask.session`` a new id now, keeping its data (call right after login)."""
    interface, session = _interface(), _current_session()
    interface.manager.regenerate(session, expiry=_request_expiry(interface, session))


def login_session(
    user_id: str | int,
    *,
    user_agent: str | FromRequest | None = FROM_REQUEST,
    ip: str | FromRequest | None = FROM_REQUEST,
) -> None:
    """Log ``flask.session`` in as ``user_id`` (call once the credentials are checked): a
    new id, the data kept, and the session bound to the user, so :func:`list_sessions`
    lists it and :func:`revoke_session` can end it. The response sets the new cookie.

    ``user_agent`` and ``ip`` (shown in the list) default to the request's
    ``request.user_agent.string`` and ``request.remote_addr`` (behind a proxy, install
    Werkzeug's ``ProxyFix`` so that is the client's address); pass a value of your own,
    or None to keep none. Set ``session.permanent`` before calling it, so the login
    already follows a permanent session's timeouts. Raises
    :class:`~ormsession.UserIdError` for a user id that is not a non-empty str or an int.
    """
    interface, session = _interface(), _current_session()
    request = flask.request
    interface.manager.login(
        session,
        user_id,
        user_agent=or_from_request(user_agent, lambda: request.user_agent.string),
        ip=or_from_request(ip, lambda: request.remote_addr),
        expiry=_request_expiry(interface, session),
    )


def list_sessions() -> list[UserSession]:
    """The live sessions of the user ``flask.session`` is logged in as, the most recently
    seen first, this one flagged ``current`` ("where you're signed in"); ``[]`` when the
    session is logged in as nobody."""
    session = _current_session()
    user_id = session.user_id
    if user_id is None:
        return []
    return _interface().manager.sessions_of(user_id, current=session)


def revoke_session(handle: str) -> bool:
    """Sign the current user out of the session named by ``handle`` (a
    :attr:`~ormsession.UserSession.handle` from :func:`list_sessions`), at once, even for a
    request of it in flight; whether there was one. A handle of another user's session
    ends nothing. This session's own handle ends it as :func:`destroy_session` does (the
    response deletes the cookie)."""
    interface, session = _interface(), _current_session()
    user_id = session.user_id
    if user_id is None:
        return False
    if handle == session.handle:
        interface.manager.destroy(session)
        return True
    return interface.manager.revoke(user_id, handle)


def revoke_other_sessions() -> int:
    """Sign the current user out everywhere but here ("sign out all other devices"); how
    many sessions ended. To sign out here too, call :func:`destroy_session` after it."""
    interface, session = _interface(), _current_session()
    user_id = session.user_id
    if user_id is None:
        return 0
    return interface.manager.revoke_all(user_id, keep=session)


def destroy_session() -> None:
    """Delete ``flask.session`` from the store now (call on logout). The response deletes
    the cookie, unless the request stores something new in the now empty session."""
    _interface().manager.destroy(_current_session())
