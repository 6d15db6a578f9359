"""Quart extension: ``quart.session`` backed by an ormsession store, on the asyncio manager.

    from quart import Quart, session
    from ormsession.integrations.quart import OrmSession, destroy_session, login_session

    app = Quart(__name__)
    app.config["ORMSESSION_URL"] = "sqlite+aiosqlite:///sessions.sqlite3"
    OrmSession(app)

The Flask extension's API and rules, awaited: Quart's ``SESSION_COOKIE_*``,
``APPLICATION_ROOT``, ``SESSION_REFRESH_EACH_REQUEST`` and ``PERMANENT_SESSION_LIFETIME``
keys are read on every request (the rules are Flask's, shared in
:mod:`~ormsession.integrations._flask_family`); store options come from the app's
``ORMSESSION_*`` keys, keyword options and ``ORMSESSION_*`` environment variables, read
once at :meth:`OrmSession.init_app`. The helpers are coroutines:
``await regenerate_session()``, ``await login_session(user_id)``.

The store's connections belong to one event loop. Served (``before_serving`` /
``after_serving``: hypercorn, ``app.run``, ``app.test_app()``) the manager is built at
startup on the serving loop and closed at shutdown; used without serving hooks (a bare
``app.test_client()`` in ``asyncio.run``), each loop gets its own manager, closed when
that loop ends (see :mod:`~ormsession.integrations._asgi_loops`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import quart
from quart.sessions import SessionInterface, SessionMixin

from ormsession.async_manager import AsyncSessionManager
from ormsession.config import Config
from ormsession.errors import ConfigurationError
from ormsession.expiry import ExpiryPolicy, us_clock, utcnow
from ormsession.integrations._asgi_loops import (
    LoopManagers,
    close_quietly,
    config_for_later_loops,
    is_loop_bound,
)
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

if TYPE_CHECKING:
    from quart import Quart
    from quart.wrappers import BaseRequestWebsocket
    from werkzeug.wrappers import Response as WerkzeugResponse

    from ormsession.users import UserSession

__all__ = [
    "FROM_REQUEST",
    "OrmSession",
    "OrmSessionInterface",
    "QuartSession",
    "destroy_session",
    "list_sessions",
    "login_session",
    "regenerate_session",
    "revoke_other_sessions",
    "revoke_session",
]

logger = logging.getLogger("ormsession")

ManagerFactory = Callable[[], Awaitable[AsyncSessionManager]]


class QuartSession(FlaskSession):
    """A Flask-style session (``session.permanent`` etc.) that knows the manager (of its
    event loop) that opened it, which saves it and serves the helpers."""

    ormsession_manager: AsyncSessionManager | None = None


class _Managers:
    """Where a request's manager comes from: the app's own (``manager=``, never closed
    here), the one built at ``before_serving`` for the serving loop, or one per loop."""

    def __init__(self, config: Config, ready: AsyncSessionManager | None) -> None:
        self._config = config
        self._ready = ready
        self._serving: AsyncSessionManager | None = None
        self._serving_loop: asyncio.AbstractEventLoop | None = None
        self._per_loop = LoopManagers(self._build)

    async def _build(self) -> AsyncSessionManager:
        from ormsession.configure import configure_async

        manager = await configure_async(config=self._config, session_class=QuartSession)
        self._config = config_for_later_loops(self._config)
        return manager

    async def get(self) -> AsyncSessionManager:
        if self._ready is not None:
            return self._ready
        serving = self._serving
        if serving is not None and (
            self._serving_loop is asyncio.get_running_loop() or not is_loop_bound(serving)
        ):
            return serving
        return await self._per_loop.get()

    async def startup(self) -> None:
        """Connect (and check the schema) before serving, so a bad URL fails the deploy at
        startup rather than the first user's request."""
        if self._ready is None and self._serving is None:
            self._serving = await self._build()
            self._serving_loop = asyncio.get_running_loop()

    async def shutdown(self) -> None:
        serving, self._serving, self._serving_loop = self._serving, None, None
        if serving is not None:
            await close_quietly(serving)
        await self._per_loop.aclose()


class OrmSessionInterface(SessionInterface, CookieRules):
    """Quart's hook: open the session from the request, save it into the response.

    :meth:`cookie_options` and :meth:`permanent_expiry` give the cookie and the
    server-side timeouts a request gets from ``app.config`` now, as Flask's do.
    """

    def __init__(
        self,
        managers: _Managers,
        config: Config,
        options: RequestOptions,
        *,
        now_us: Callable[[], int],
        idle_timeout_set: bool = False,
    ) -> None:
        CookieRules.__init__(self, config, now_us, idle_timeout_set=idle_timeout_set)
        self.managers = managers
        self.options = options

    async def get_manager(self) -> AsyncSessionManager:
        """The manager serving the running event loop."""
        return await self.managers.get()

    # -- Quart's hooks ---------------------------------------------------------------
    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> QuartSession:
        manager = await self.get_manager()
        session_request = SessionRequest.from_asgi(
            request.scope, self.options, self.wire_name(app), manager.policy.ids.is_valid
        )
        expiry = self.open_expiry(app)
        session = await manager.open_first(
            session_request.session_id, session_request.later_ids, expiry=expiry
        )
        if not isinstance(session, QuartSession):  # pragma: no cover - the managers see to it
            raise TypeError(f"{type(manager).__name__} opened a {type(session).__name__}")
        session.ormsession_request = session_request
        session.ormsession_manager = manager
        return session

    async def save_session(
        self,
        app: Quart,
        session: SessionMixin,
        response: quart.Response | WerkzeugResponse | None,
    ) -> None:
        if not isinstance(session, QuartSession) or session.ormsession_manager is None:
            return  # a null session (open failed)
        if session.ormsession_save_failed:
            return  # the error page of a failed save: the failure is already raised
        try:
            if response is None:
                await self._save_websocket(app, session)
            else:
                await self._save(app, session, response)
        except Exception:
            session.ormsession_save_failed = True
            raise

    async def _save(
        self, app: Quart, session: QuartSession, response: quart.Response | WerkzeugResponse
    ) -> None:
        manager = session.ormsession_manager
        session_request: SessionRequest = session.ormsession_request
        assert manager is not None
        # Built before anything is written: an invalid setting fails the request cleanly.
        cookie_options = self.cookie_options(app, permanent=session.permanent)
        https = session_request.https
        needed_cookie = session.needs_cookie  # a new or regenerated id: always sent
        set_cookie = await manager.save(
            session, https=https, cookie=cookie_options, expiry=self.request_expiry(app, session)
        )
        set_cookie = self.response_cookie(
            app, session, set_cookie, cookie_options, https, needed=needed_cookie
        )
        add_headers(response, session_request.headers_for(session, set_cookie))

    async def _save_websocket(self, app: Quart, session: QuartSession) -> None:
        """A websocket's session, when it closes: no cookie can be sent any more. Changes
        to a session the client already holds are kept (the store has them, the cookie
        is the same); a session the client has no cookie for is not stored at all."""
        manager = session.ormsession_manager
        assert manager is not None
        if session.is_new and not session.destroyed:
            if session.dirty:
                logger.warning(
                    "a websocket changed a session its client has no cookie for: the "
                    "changes are dropped (a websocket cannot set a cookie)"
                )
            return
        await manager.save(session, expiry=self.request_expiry(app, session))


class OrmSession:
    """The extension: ``OrmSession(app)`` or ``ext = OrmSession(); ext.init_app(app)``.

    ``manager``: a ready :class:`AsyncSessionManager` (from ``await
    ormsession.configure_async(...)``, built on the loop that serves the app; the app owns
    and closes it); otherwise one is built from the app's ``ORMSESSION_*`` keys,
    ``config`` and ``options``, at ``before_serving`` (closed at ``after_serving``), or
    per event loop when the app is used without its serving hooks.
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        manager: AsyncSessionManager | None = None,
        config: Config | None = None,
        **options: Any,
    ) -> None:
        if manager is not None and not isinstance(manager, AsyncSessionManager):
            raise ConfigurationError(
                "the Quart extension needs an AsyncSessionManager (from "
                "ormsession.configure_async); a synchronous SessionManager would block "
                "the event loop"
            )
        refuse_flask_session_keys(options, where="OrmSession()")
        self._manager = manager
        self._config = config
        self._options = options
        self.interface: OrmSessionInterface | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        refuse_a_second_install(app)
        refuse_flask_session_keys(app.config, where="app.config")
        ready = self._manager
        settings = app_settings(
            app,
            self._config,
            self._options,
            manager_config=None if ready is None else ready.config,
        )
        if ready is not None and not issubclass(ready.session_class, QuartSession):
            # The same store and configuration, opening QuartSessions (the app's own
            # manager stays as it is, and closes the store).
            ready = ready.with_session_class(QuartSession)
        config = settings.resolved if ready is None else ready.config
        install_cookie_settings(app, config, settings.chosen)
        check_cookie_settings(app, config)
        managers = _Managers(settings.resolved, ready)
        interface = OrmSessionInterface(
            managers,
            config,
            settings.request_options,
            # The managers' clock: the app's own manager may have one of its own (tests).
            now_us=us_clock(utcnow) if ready is None else ready.policy.now_us,
            idle_timeout_set=idle_timeout_set(config),
        )
        app.session_interface = interface  # type: ignore[assignment]
        app.extensions[EXTENSION_KEY] = interface
        app.before_serving(managers.startup)
        app.after_serving(managers.shutdown)
        self.interface = interface

    async def get_manager(self) -> AsyncSessionManager:
        """The manager serving the running event loop (for ``count()``, ``gc()``, ...)."""
        if self.interface is None:
            raise RuntimeError("OrmSession.init_app(app) was not called")
        return await self.interface.get_manager()


# -- helpers for views ---------------------------------------------------------------------
def _current() -> tuple[AsyncSessionManager, QuartSession]:
    if not isinstance(quart.current_app.session_interface, OrmSessionInterface):
        raise RuntimeError("ormsession is not installed on this app: call OrmSession(app)")
    # The real object behind the `quart.session` proxy: the manager rewrites its state.
    session = quart.session._get_current_object()
    if not isinstance(session, QuartSession) or session.ormsession_manager is None:
        raise RuntimeError("quart.session is not an ormsession session")
    return session.ormsession_manager, session


def _request_expiry(session: QuartSession) -> ExpiryPolicy | None:
    """The timeouts this request's save will follow (a permanent session's are longer)."""
    app = quart.current_app._get_current_object()  # type: ignore[attr-defined]
    interface = app.session_interface
    assert isinstance(interface, OrmSessionInterface)
    return interface.request_expiry(app, session)


def _connection() -> BaseRequestWebsocket:
    # The objects behind the proxies: Quart's debug page renders the locals of a failed
    # request, and a proxy kept in one fails there once the request context is gone.
    proxy = quart.request if quart.has_request_context() else quart.websocket
    connection: BaseRequestWebsocket = proxy._get_current_object()  # type: ignore[union-attr]
    return connection


async def regenerate_session() -> None:
    """Give ``quart.session`` a new id now, keeping its data (call right after login)."""
    manager, session = _current()
    await manager.regenerate(session, expiry=_request_expiry(session))


async def login_session(
    user_id: str | int,
    *,
    user_agent: str | FromRequest | None = FROM_REQUEST,
    ip: str | FromRequest | None = FROM_REQUEST,
) -> None:
    """Log ``quart.session`` in as ``user_id`` (call once the credentials are checked): a
    new id, the data kept, and the session bound to the user, so :func:`list_sessions`
    lists it and :func:`revoke_session` can end it. The response sets the new cookie.

    ``user_agent`` and ``ip`` (shown in the list) default to the request's ``User-Agent``
    header and ``request.remote_addr`` (behind a proxy, run hypercorn with its
    forwarded-address middleware so that is the client's address); pass a value of your
    own, or None to keep none. Set ``session.permanent`` first, so the login already
    follows a permanent session's timeouts. Raises :class:`~ormsession.UserIdError` for a
    user id that is not a non-empty str or an int.
    """
    manager, session = _current()
    connection = _connection()
    await manager.login(
        session,
        user_id,
        user_agent=or_from_request(user_agent, lambda: connection.headers.get("User-Agent")),
        ip=or_from_request(ip, lambda: connection.remote_addr),
        expiry=_request_expiry(session),
    )


async def list_sessions() -> list[UserSession]:
    """The live sessions of the user ``quart.session`` is logged in as, the most recently
    seen first, this one flagged ``current``; ``[]`` when it is logged in as nobody."""
    manager, session = _current()
    user_id = session.user_id
    if user_id is None:
        return []
    return await manager.sessions_of(user_id, current=session)


async def revoke_session(handle: str) -> bool:
    """Sign the current user out of the session named by ``handle`` (from
    :func:`list_sessions`), at once, even for a request of it in flight; whether there was
    one. Another user's handle ends nothing; this session's own handle ends it as
    :func:`destroy_session` does (the response deletes the cookie)."""
    manager, session = _current()
    user_id = session.user_id
    if user_id is None:
        return False
    if handle == session.handle:
        await manager.destroy(session)
        return True
    return await manager.revoke(user_id, handle)


async def revoke_other_sessions() -> int:
    """Sign the current user out everywhere but here; how many sessions ended. To sign out
    here too, await :func:`destroy_session` after it."""
    manager, session = _current()
    user_id = session.user_id
    if user_id is None:
        return 0
    return await manager.revoke_all(user_id, keep=session)


async def destroy_session() -> None:
    """Delete ``quart.session`` from the store now (call on logout). The response deletes
    the cookie, unless the request stores something new in the now empty session."""
    manager, session = _current()
    await manager.destroy(session)
