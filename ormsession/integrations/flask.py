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

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import flask
from flask.sessions import SessionInterface, SessionMixin

from ormsession.config import Config
from ormsession.cookies import CookieOptions
from ormsession.expiry import ExpiryPolicy
from ormsession.integrations._common import (
    FROM_REQUEST,
    REQUEST_OPTION_NAMES,
    FromRequest,
    RequestOptions,
    SessionRequest,
    config_for,
    or_from_request,
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

EXTENSION_KEY = "ormsession"
_REQUEST_KEY = "ormsession.request"
#: How many cookie layouts an interface remembers (an app has one or two; tests a few more).
_CACHE_LIMIT = 64


class FlaskSession(RequestSession, SessionMixin):
    """A :class:`RequestSession` that is also a Flask session (``session.permanent`` etc.)."""

    #: How this request named its session (set by ``open_session`` for ``save_session``).
    ormsession_request: SessionRequest | None = None
    #: This request's save raised (a store error, data over max_data_bytes): Flask then
    #: renders its error page and saves the same session again, which must not raise (and
    #: be logged) a second time.
    ormsession_save_failed: bool = False

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
    """Flask's hook: open the session from the request, save it into the response.

    ``idle_timeout_set``: the app chose ormsession's ``idle_timeout`` itself, so it also
    governs permanent sessions (otherwise their idle timeout is
    ``PERMANENT_SESSION_LIFETIME``, see :meth:`permanent_expiry`).
    """

    def __init__(
        self, manager: SessionManager, options: RequestOptions, *, idle_timeout_set: bool = False
    ) -> None:
        if not issubclass(manager.session_class, FlaskSession):
            # Flask needs its session interface on every session: the same manager (a
            # copy, so the app's own stays as it is) opening FlaskSessions.
            manager = manager.with_session_class(FlaskSession)
        self.manager = manager
        self.options = options
        self.idle_timeout_set = idle_timeout_set
        # Built from app.config's values on first use, then one dict lookup a request.
        self._cookies: dict[tuple[Any, ...], CookieOptions] = {}
        self._expiries: dict[timedelta, ExpiryPolicy] = {}

    # -- per-request settings, from app.config -----------------------------------------
    def cookie_options(self, app: Flask, *, permanent: bool) -> CookieOptions:
        """The cookie as app.config describes it now (``ValueError`` for an invalid
        value, as Flask raises when it sets the cookie)."""
        config = app.config
        lifetime = app.permanent_session_lifetime if permanent else None
        key = (
            config["SESSION_COOKIE_NAME"],
            config.get("SESSION_COOKIE_DOMAIN"),
            config.get("SESSION_COOKIE_PATH"),
            config.get("APPLICATION_ROOT"),
            config.get("SESSION_COOKIE_HTTPONLY", True),
            config.get("SESSION_COOKIE_SECURE"),
            config.get("SESSION_COOKIE_SAMESITE"),
            config.get("SESSION_COOKIE_PARTITIONED", False),
            lifetime,
        )
        options = self._cookies.get(key)
        if options is None:
            options = self._build_cookie(*key)
            if len(self._cookies) >= _CACHE_LIMIT:
                self._cookies.clear()
            self._cookies[key] = options
        return options

    def _build_cookie(
        self,
        name: str,
        domain: str | None,
        path: str | None,
        root: str | None,
        httponly: bool,
        secure: bool | None,
        samesite: str | None,
        partitioned: bool,
        lifetime: timedelta | None,
    ) -> CookieOptions:
        if samesite is not None and (
            not isinstance(samesite, str) or samesite.lower() not in ("lax", "strict", "none")
        ):
            raise ValueError(
                f"SESSION_COOKIE_SAMESITE must be 'Strict', 'Lax', 'None' or None, not {samesite!r}"
            )
        base = self.manager.cookie
        return CookieOptions(
            name=name,
            path=path or root or "/",
            domain=_cookie_domain(domain),
            secure=None if secure is None else bool(secure),
            httponly=bool(httponly),
            samesite=samesite.lower() if samesite else None,  # type: ignore[arg-type]
            partitioned=bool(partitioned),
            # A permanent session's cookie lives PERMANENT_SESSION_LIFETIME; any other is
            # a browser-session cookie, unless ormsession's cookie_lifetime says otherwise.
            max_age=lifetime if lifetime is not None else base.max_age,
            host_prefix=base.host_prefix,
        )

    def permanent_expiry(self, lifetime: timedelta) -> ExpiryPolicy:
        """The server-side rules of a permanent session: the store keeps it as long as its
        cookie lives. Idle timeout ``PERMANENT_SESSION_LIFETIME`` (unless the app set
        ``idle_timeout`` itself); the absolute timeout never shorter than the lifetime."""
        base = self.manager.expiry
        if lifetime <= timedelta(0):
            return base  # a cookie expired when sent: nothing is stored anyway
        policy = self._expiries.get(lifetime)
        if policy is None:
            absolute = base.absolute_timeout
            policy = ExpiryPolicy(
                idle_timeout=base.idle_timeout if self.idle_timeout_set else lifetime,
                absolute_timeout=None if absolute is None else max(absolute, lifetime),
                refresh_ratio=base.refresh_ratio,
            )
            if len(self._expiries) >= _CACHE_LIMIT:
                self._expiries.clear()
            self._expiries[lifetime] = policy
        return policy

    def _wire_name(self, app: Flask) -> str:
        name: str = app.config["SESSION_COOKIE_NAME"]
        return "__Host-" + name if self.manager.cookie.host_prefix else name

    # -- Flask's hooks ---------------------------------------------------------------
    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        session_request = SessionRequest.from_wsgi(
            request.environ, self.options, self._wire_name(app)
        )
        request.environ[_REQUEST_KEY] = session_request
        # Judged with a permanent session's (longer) absolute timeout: whether the session
        # is permanent is known only once it is read. A session that is not permanent was
        # stored with an expiry capped by the shorter one, so it still ends on time.
        lenient = self.permanent_expiry(app.permanent_session_lifetime)
        session = self.manager.open(session_request.session_id, expiry=lenient)
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
                environ, self.options, self._wire_name(app)
            )
        permanent = isinstance(session, FlaskSession) and session.permanent
        # Built before anything is written: an invalid setting fails the request cleanly.
        cookie_options = self.cookie_options(app, permanent=permanent)
        expiry = self.permanent_expiry(app.permanent_session_lifetime) if permanent else None
        https = session_request.https
        needed_cookie = session.needs_cookie  # a new or regenerated id: always sent
        set_cookie = self.manager.save(session, https=https, cookie=cookie_options, expiry=expiry)
        set_cookie = self._flask_cookie(
            app, session, set_cookie, cookie_options, https, needed=needed_cookie
        )
        for name, value in session_request.headers_for(session, set_cookie):
            if name == "Vary":
                for vary in value.split(", "):
                    response.vary.add(vary)
            else:
                response.headers.add(name, value)

    def _flask_cookie(
        self,
        app: Flask,
        session: RequestSession,
        set_cookie: str | None,
        cookie_options: CookieOptions,
        https: bool,
        *,
        needed: bool,
    ) -> str | None:
        """The ``Set-Cookie`` Flask would send, given the manager's answer ``set_cookie``.

        The manager's answer stands when the id changed, the session ended (a deleting
        cookie) or was lost. For a stored session with its id unchanged, Flask's rule
        decides: the cookie goes out when the session was modified, or when it is
        permanent (or has ormsession's ``cookie_lifetime``) and
        ``SESSION_REFRESH_EACH_REQUEST`` is on. Re-sending costs nothing server-side:
        the store's write or touch stays throttled by the policy.
        """
        if session.is_new or session.lost or needed or not self.manager.config.set_cookie:
            return set_cookie
        refresh = cookie_options.max_age is not None and bool(
            app.config.get("SESSION_REFRESH_EACH_REQUEST", True)
        )
        if not (session.modified or refresh):
            return None  # a refresh cookie Flask would not send (refresh turned off)
        if set_cookie is None:
            set_cookie = cookie_options.set_cookie(
                session.id, https=https, now_us=self.manager.policy.now_us()
            )
        return set_cookie


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
        self.manager: SessionManager | None = manager
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        refuse_flask_session_keys(app.config, where="app.config")
        manager = self._manager
        app_options = config_options(app)
        if manager is None:
            options = app_options | self._options
            resolved = config_for(self._config, options, manager_given=False)
            from ormsession.configure import configure

            manager = configure(config=resolved, session_class=FlaskSession)
            self._owned.append(manager)
            # Chosen in code or in app.config: these override Flask's keys.
            chosen = set(options)
        else:
            # A ready manager brings its own store and configuration; only the request
            # options can still come from app.config.
            request_options = {
                key: value for key, value in app_options.items() if key in REQUEST_OPTION_NAMES
            }
            resolved = config_for(self._config, request_options | self._options, manager_given=True)
            chosen = _explicit_fields(manager.config)
        install_cookie_settings(app, manager.config, chosen)
        interface = OrmSessionInterface(
            manager,
            RequestOptions.from_config(resolved),
            idle_timeout_set=_idle_timeout_set(manager.config),
        )
        app.session_interface = interface
        app.extensions[EXTENSION_KEY] = interface
        self.manager = interface.manager

    def close(self) -> None:
        """Close the managers this extension built (never one that was passed in)."""
        for manager in self._owned:
            manager.close()
        self._owned.clear()


def config_options(app: Flask) -> dict[str, Any]:
    """The ``ORMSESSION_<FIELD>`` keys of ``app.config``, as ormsession options (a key
    that is no option, a typo, is refused as it is in the environment)."""
    from ormsession.settings import check_variable_names

    config = app.config
    check_variable_names(config, where="app.config")
    return {
        field: config[f"ORMSESSION_{field.upper()}"]
        for field in Config.model_fields
        if f"ORMSESSION_{field.upper()}" in config
    }


def _cookie_domain(domain: str | None) -> str | None:
    """``SESSION_COOKIE_DOMAIN`` as Werkzeug writes it: without a port or a leading dot,
    and an international name in its ASCII (IDNA) form."""
    if not domain:
        return None
    host = domain.partition(":")[0].lstrip(".")
    try:
        return host.encode("idna").decode("ascii") or None
    except UnicodeError as exc:
        raise ValueError(f"SESSION_COOKIE_DOMAIN {domain!r} is not a host name") from exc


def _explicit_fields(config: Config) -> set[str]:
    """The options ``config`` was given explicitly, by code or the environment (a copy
    made by ``Config.replace`` keeps the original's record, plus the changes)."""
    return set(config.model_fields_set)


def _idle_timeout_set(config: Config) -> bool:
    return "idle_timeout" in _explicit_fields(config)


#: Flask's cookie key -> (ormsession option, Flask's default).
_FLASK_COOKIE_KEYS: dict[str, tuple[str, Any]] = {
    "SESSION_COOKIE_NAME": ("cookie_name", "session"),
    "SESSION_COOKIE_DOMAIN": ("cookie_domain", None),
    "SESSION_COOKIE_PATH": ("cookie_path", None),
    "SESSION_COOKIE_HTTPONLY": ("cookie_httponly", True),
    "SESSION_COOKIE_SECURE": ("cookie_secure", False),
    "SESSION_COOKIE_SAMESITE": ("cookie_samesite", None),
    "SESSION_COOKIE_PARTITIONED": ("cookie_partitioned", False),
}
#: ormsession's defaults that are safer than Flask's: installed unless the app chose.
_SAFER_DEFAULTS = frozenset({"cookie_secure", "cookie_samesite"})


def install_cookie_settings(app: Flask, config: Config, chosen: set[str]) -> None:
    """Write ormsession's cookie settings into Flask's ``SESSION_COOKIE_*`` keys, which
    are then read on every request.

    An option in ``chosen`` (given to ``OrmSession`` or as an ``ORMSESSION_*`` key in
    ``app.config``) always wins. Any other setting of ``config`` (from the environment,
    or one of ormsession's safer defaults: ``SameSite=Lax``, ``Secure`` on https) fills
    a key only while it still holds Flask's default, so a value the app set, before or
    after ``OrmSession(app)``, wins over it.
    """
    from_outside = _explicit_fields(config)
    for key, (field, flask_default) in _FLASK_COOKIE_KEYS.items():
        value = _as_flask_value(field, getattr(config, field))
        if field in chosen or (
            (field in from_outside or field in _SAFER_DEFAULTS)
            and _is_default(app.config.get(key, flask_default), flask_default)
        ):
            app.config[key] = value


def _as_flask_value(field: str, value: Any) -> Any:
    if field == "cookie_samesite" and value is not None:
        return str(value).capitalize()
    return value


def _is_default(value: Any, default: Any) -> bool:
    # `False == 0` and `None` vs `False` must not be confused: compare type and value.
    return type(value) is type(default) and value == default


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
    if isinstance(session, FlaskSession) and session.permanent:
        return interface.permanent_expiry(flask.current_app.permanent_session_lifetime)
    return None


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
