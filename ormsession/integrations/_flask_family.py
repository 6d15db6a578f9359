"""What the Flask and Quart extensions share: both apps are ``flask.sansio.app.App``.

Quart is Flask's API on asyncio: the same ``app.config`` keys (``SESSION_COOKIE_*``,
``APPLICATION_ROOT``, ``SESSION_REFRESH_EACH_REQUEST``, ``PERMANENT_SESSION_LIFETIME``),
the same ``SessionMixin``, Werkzeug's response headers. So the rules that turn an app's
configuration into a request's cookie and timeouts, and the extension's start-up
(``ORMSESSION_*`` keys, Flask's cookie keys filled with ormsession's settings), live here
once; each extension only adds its framework's hooks, sync or awaited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask.sessions import SessionMixin

from ormsession.config import Config
from ormsession.cookies import CookieOptions
from ormsession.errors import ConfigurationError
from ormsession.expiry import ExpiryPolicy
from ormsession.integrations._common import REQUEST_OPTION_NAMES, RequestOptions, config_for
from ormsession.session import RequestSession

if TYPE_CHECKING:
    from flask.sansio.app import App

__all__ = [
    "EXTENSION_KEY",
    "AppSettings",
    "CookieRules",
    "FlaskSession",
    "add_headers",
    "app_settings",
    "check_cookie_settings",
    "config_options",
    "install_cookie_settings",
    "refuse_a_second_install",
]

#: Where the extension keeps its session interface in ``app.extensions``.
EXTENSION_KEY = "ormsession"

#: How many cookie layouts an interface remembers (an app has one or two; tests a few more).
_CACHE_LIMIT = 64


class FlaskSession(RequestSession, SessionMixin):
    """A :class:`RequestSession` that is also a Flask (or Quart) session
    (``session.permanent`` etc.)."""

    #: How this request named its session (set by ``open_session`` for ``save_session``).
    ormsession_request: Any = None
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


class CookieRules:
    """A request's cookie and server-side timeouts, from ``app.config`` as it is now.

    ``config``: the manager's configuration (its cookie's ``max_age`` and ``__Host-``
    prefix, its timeouts, ``set_cookie``); ``now_us``: its clock.
    ``idle_timeout_set``: the app chose ormsession's ``idle_timeout`` itself, so it also
    governs permanent sessions (otherwise their idle timeout is
    ``PERMANENT_SESSION_LIFETIME``, see :meth:`permanent_expiry`).
    """

    def __init__(
        self, config: Config, now_us: Callable[[], int], *, idle_timeout_set: bool
    ) -> None:
        self.config = config
        self.now_us = now_us
        self.idle_timeout_set = idle_timeout_set
        # Built from app.config's values on first use, then one dict lookup a request.
        self._cookies: dict[tuple[Any, ...], CookieOptions] = {}
        self._expiries: dict[timedelta, ExpiryPolicy] = {}

    def cookie_options(self, app: App, *, permanent: bool) -> CookieOptions:
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
        base = self.config.cookie
        return CookieOptions(
            name=name,
            path=path or root or "/",
            domain=cookie_domain(domain),
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
        base = self.config.expiry
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

    def open_expiry(self, app: App) -> ExpiryPolicy:
        """The timeouts a session is read with: a permanent session's (longer) absolute
        timeout, as whether it is permanent is known only once it is read. A session that
        is not permanent was stored with an expiry capped by the shorter one, so it still
        ends on time."""
        return self.permanent_expiry(app.permanent_session_lifetime)

    def request_expiry(self, app: App, session: RequestSession) -> ExpiryPolicy | None:
        """The timeouts this request's save (or regenerate, login) follows: a permanent
        session's are longer; None for the configuration's."""
        if isinstance(session, FlaskSession) and session.permanent:
            return self.permanent_expiry(app.permanent_session_lifetime)
        return None

    def wire_name(self, app: App) -> str:
        """The cookie's name as the browser sends it (with the ``__Host-`` prefix)."""
        name: str = app.config["SESSION_COOKIE_NAME"]
        return "__Host-" + name if self.config.cookie.host_prefix else name

    def response_cookie(
        self,
        app: App,
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
        if session.is_new or session.lost or needed or not self.config.set_cookie:
            return set_cookie
        refresh = cookie_options.max_age is not None and bool(
            app.config.get("SESSION_REFRESH_EACH_REQUEST", True)
        )
        if not (session.modified or refresh):
            return None  # a refresh cookie Flask would not send (refresh turned off)
        if set_cookie is None:
            set_cookie = cookie_options.set_cookie(session.id, https=https, now_us=self.now_us())
        return set_cookie


def add_headers(response: Any, headers: list[tuple[str, str]]) -> None:
    """Add ``headers`` (from ``SessionRequest.headers_for``) to a Werkzeug-style response
    (Flask's, Quart's): ``Vary`` merges into the response's own."""
    for name, value in headers:
        if name == "Vary":
            for vary in value.split(", "):
                response.vary.add(vary)
        else:
            response.headers.add(name, value)


# -- the extension's start-up ----------------------------------------------------------
@dataclass(frozen=True)
class AppSettings:
    """What an extension resolved at ``init_app``: the configuration (``resolved``, of
    which the request options are read), the options the app chose itself (``chosen``:
    they override Flask's cookie keys) and ``options``, to build a manager with."""

    resolved: Config
    chosen: frozenset[str]
    options: Mapping[str, Any]

    @property
    def request_options(self) -> RequestOptions:
        return RequestOptions.from_config(self.resolved)


def app_settings(
    app: App,
    config: Config | None,
    options: Mapping[str, Any],
    *,
    manager_config: Config | None,
) -> AppSettings:
    """Resolve an extension's settings from the app's ``ORMSESSION_*`` keys, ``config``
    and keyword ``options`` (those win). ``manager_config``: the configuration of a ready
    manager the app passed, which brings its own store and cookie settings (only the
    request options can then still come from ``app.config``)."""
    app_options = config_options(app)
    if manager_config is None:
        merged = app_options | dict(options)
        resolved = config_for(config, merged, manager_given=False)
        # Chosen in code or in app.config: these override Flask's keys.
        return AppSettings(resolved, frozenset(merged), merged)
    request_options = {
        key: value for key, value in app_options.items() if key in REQUEST_OPTION_NAMES
    }
    resolved = config_for(config, request_options | dict(options), manager_given=True)
    return AppSettings(resolved, frozenset(explicit_fields(manager_config)), {})


def config_options(app: App) -> dict[str, Any]:
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


def cookie_domain(domain: str | None) -> str | None:
    """``SESSION_COOKIE_DOMAIN`` as Werkzeug writes it: without a port or a leading dot,
    and an international name in its ASCII (IDNA) form."""
    if not domain:
        return None
    host = domain.partition(":")[0].lstrip(".")
    try:
        return host.encode("idna").decode("ascii") or None
    except UnicodeError as exc:
        raise ValueError(f"SESSION_COOKIE_DOMAIN {domain!r} is not a host name") from exc


def explicit_fields(config: Config) -> set[str]:
    """The options ``config`` was given explicitly, by code or the environment (a copy
    made by ``Config.replace`` keeps the original's record, plus the changes)."""
    return set(config.model_fields_set)


def idle_timeout_set(config: Config) -> bool:
    return "idle_timeout" in explicit_fields(config)


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


def install_cookie_settings(app: App, config: Config, chosen: set[str] | frozenset[str]) -> None:
    """Write ormsession's cookie settings into Flask's ``SESSION_COOKIE_*`` keys, which
    are then read on every request.

    An option in ``chosen`` (given to ``OrmSession`` or as an ``ORMSESSION_*`` key in
    ``app.config``) always wins. Any other setting of ``config`` (from the environment,
    or one of ormsession's safer defaults: ``SameSite=Lax``, ``Secure`` on https) fills
    a key only while it still holds Flask's default, so a value the app set, before or
    after ``OrmSession(app)``, wins over it.
    """
    from_outside = explicit_fields(config)
    for key, (field, flask_default) in _FLASK_COOKIE_KEYS.items():
        value = _as_flask_value(field, getattr(config, field))
        if field in chosen or (
            (field in from_outside or field in _SAFER_DEFAULTS)
            and _is_default(app.config.get(key, flask_default), flask_default)
        ):
            app.config[key] = value


def check_cookie_settings(app: App, config: Config) -> None:
    """Refuse, at ``init_app``, Flask cookie keys that could never build a cookie (a
    ``SESSION_COOKIE_DOMAIN`` or ``SESSION_COOKIE_PATH`` with ``;`` or a line break, an
    unknown ``SESSION_COOKIE_SAMESITE``, a name that is no token): otherwise the app starts
    and every response that sets the cookie fails. Keys changed later are still checked
    when the cookie is built (``ValueError``), as Flask does."""
    rules = CookieRules(config, lambda: 0, idle_timeout_set=False)
    try:
        for permanent in (False, True):
            rules.cookie_options(app, permanent=permanent)
    except ValueError as exc:
        raise ConfigurationError(f"app.config: {exc}") from exc


def _as_flask_value(field: str, value: Any) -> Any:
    if field == "cookie_samesite" and value is not None:
        return str(value).capitalize()
    return value


def _is_default(value: Any, default: Any) -> bool:
    # `False == 0` and `None` vs `False` must not be confused: compare type and value.
    return type(value) is type(default) and value == default


def refuse_a_second_install(app: App) -> None:
    """One extension per app at a time. A second ``OrmSession(app)`` (or ``init_app(app)``
    again) would build a second manager, replacing the first one's under the app while its
    connections stay open, and settings given to the first would silently stop applying.
    (Flask's extension gives the app back when it is closed.)"""
    if EXTENSION_KEY in app.extensions:
        raise ConfigurationError(
            f"ormsession is already installed on app {app.name!r}: OrmSession(app) or "
            "init_app(app) was called a second time for it; keep the first extension and "
            "use it (to change settings, give them all to that one call), or close() it first"
        )
