"""ASGI middleware (Starlette, FastAPI, any ASGI app) on the asyncio manager.

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from ormsession.integrations.asgi import SessionMiddleware

    app = Starlette(routes=..., middleware=[
        Middleware(SessionMiddleware, url="sqlite+aiosqlite:///sessions.sqlite3"),
    ])
    # in an endpoint: request.session["user"] = "ada"

A drop-in for Starlette's own SessionMiddleware: it takes Starlette's arguments under their
names and meanings (``SessionMiddleware(app, secret_key=..., max_age=...)``, see
``_starlette_options``), and ``request.session`` (``scope["session"]``) is a ``dict`` as
Starlette's is; but the data lives in the store and only an id is in the cookie. Served
without lifespan events, each event loop gets its own manager (``_asgi_loops``). The
middleware itself is plain ASGI and imports no framework; ``get_session`` and
``SessionDep`` (FastAPI dependencies) import Starlette/FastAPI when first used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from ormsession.async_manager import AsyncSessionManager
from ormsession.errors import ConfigurationError
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
    config_for,
    late_change,
    merge_vary,
    or_from_request,
    warn_cookie_lost,
)
from ormsession.integrations._starlette_options import (
    UNSET,
    StarletteOverrides,
    Unset,
    starlette_overrides,
)
from ormsession.session import RequestSession

if TYPE_CHECKING:
    from typing import Annotated, TypeAlias

    from starlette.requests import HTTPConnection

    from ormsession.config import Config
    from ormsession.users import UserSession

    #: ``session: SessionDep`` in a FastAPI endpoint is the request's session.
    SessionDep: TypeAlias = Annotated[RequestSession, "Depends(get_session)"]

    def get_session(connection: HTTPConnection) -> RequestSession:
        """FastAPI dependency: the request's session."""


__all__ = [
    "FROM_REQUEST",
    "MANAGER_KEY",
    "SessionDep",
    "SessionMiddleware",
    "destroy_session",
    "get_session",
    "list_sessions",
    "login_session",
    "regenerate_session",
    "revoke_other_sessions",
    "revoke_session",
    "session_of",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ManagerFactory = Callable[[], Awaitable[AsyncSessionManager]]

#: Where the middleware puts the :class:`AsyncSessionManager` in the scope.
MANAGER_KEY = "ormsession.manager"
#: Where it puts the request's own timeouts (Starlette's ``max_age``), which a regenerate
#: in the request follows as the save does.
_EXPIRY_KEY = "ormsession.expiry"


class SessionMiddleware:
    """Puts the request's session in ``scope["session"]`` and saves it with the response.

    A drop-in for Starlette's ``SessionMiddleware``: its arguments (``secret_key``, accepted
    and unused; ``session_cookie``, ``max_age``, ``path``, ``same_site``, ``https_only``,
    ``domain``, ``partitioned``) keep their names, order and meanings (see
    :mod:`~ormsession.integrations._starlette_options`), next to ormsession's own options.

    ``manager``: a ready :class:`AsyncSessionManager` (the app owns and closes it), or an
    async factory returning one. Without either, the manager is built with
    ``await ormsession.configure_async(config=..., **options)``. A built manager is made
    on lifespan startup and closed on shutdown; served without lifespan, each event loop
    gets its own, closed when that loop ends (see :mod:`~ormsession.integrations._asgi_loops`).
    ``id_header``, ``id_query_param`` and ``trust_forwarded_proto`` apply in every case.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: object = None,
        session_cookie: str | Unset = UNSET,
        max_age: int | Unset | None = UNSET,
        path: str | Unset = UNSET,
        same_site: str | Unset = UNSET,
        https_only: bool | Unset = UNSET,
        domain: str | Unset | None = UNSET,
        partitioned: bool | Unset = UNSET,
        *,
        manager: AsyncSessionManager | ManagerFactory | None = None,
        config: Config | None = None,
        **options: Any,
    ) -> None:
        if manager is not None and not (
            isinstance(manager, AsyncSessionManager) or _is_factory(manager)
        ):
            raise ConfigurationError(
                "SessionMiddleware needs an AsyncSessionManager (from "
                "ormsession.configure_async) or an async factory of one; a synchronous "
                "SessionManager would block the event loop"
            )
        starlette: dict[str, object] = {
            name: value
            for name, value in (
                ("session_cookie", session_cookie),
                ("max_age", max_age),
                ("path", path),
                ("same_site", same_site),
                ("https_only", https_only),
                ("domain", domain),
                ("partitioned", partitioned),
            )
            if value is not UNSET
        }
        if manager is not None and starlette:
            raise ConfigurationError(
                f"{', '.join(sorted(starlette))} configure the cookie: with manager=, set "
                "the cookie options in ormsession.configure_async() instead"
            )
        resolved = config_for(config, options, manager_given=manager is not None)
        self.app = app
        self.options = RequestOptions.from_config(resolved)
        self._overrides: StarletteOverrides | None = None
        if manager is None and (starlette or secret_key is not None):
            # Starlette mode. What the app set itself (as opposed to a default) wins over
            # what a Starlette argument implies: see _starlette_options.
            explicit = set(options) | (config or resolved).model_fields_set
            self._overrides = starlette_overrides(starlette, resolved, explicit)
        # The secret itself is not kept: nothing is signed, the cookie holds a random id.
        del secret_key
        self._config = resolved
        self._factory: ManagerFactory | None = None
        self._manager: AsyncSessionManager | None = None
        # The loop a manager built at lifespan startup belongs to: requests on any other
        # loop (a TestClient used without `with` next to one used with it) get their own.
        self._manager_loop: asyncio.AbstractEventLoop | None = None
        if isinstance(manager, AsyncSessionManager):
            self._manager = manager
        elif manager is not None:
            self._factory = manager
        self._owns_manager = self._manager is None
        self._per_loop = LoopManagers(self._build)

    @property
    def cookie_name(self) -> str | None:
        """The cookie's name when the middleware sets it (Starlette mode), else None: the
        manager's configuration names it."""
        return None if self._overrides is None else self._overrides.cookie.cookie_name

    async def get_manager(self) -> AsyncSessionManager:
        """The manager of this app on the running loop, built on first use."""
        manager = self._manager
        if manager is not None and (
            self._manager_loop is None
            or self._manager_loop is asyncio.get_running_loop()
            or not is_loop_bound(manager)
        ):
            return manager
        return await self._per_loop.get()

    async def _build(self) -> AsyncSessionManager:
        if self._factory is not None:
            return await self._factory()
        from ormsession.configure import configure_async

        manager = await configure_async(config=self._config)
        self._config = config_for_later_loops(self._config)
        return manager

    async def aclose(self) -> None:
        """Close the managers this middleware built that can be closed from the running
        loop (done on lifespan shutdown; others close with their own loop)."""
        manager = self._manager
        if manager is not None and self._owns_manager:
            self._manager = self._manager_loop = None
            await close_quietly(manager)
        await self._per_loop.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        manager = await self.get_manager()
        overrides = self._overrides
        cookie = None if overrides is None else overrides.cookie
        expiry = None if overrides is None else overrides.expiry
        name = manager.cookie.cookie_name if cookie is None else cookie.cookie_name
        request = SessionRequest.from_asgi(scope, self.options, name, manager.policy.ids.is_valid)
        session = await manager.open_first(request.session_id, request.later_ids, expiry=expiry)
        scope["session"] = session
        scope[MANAGER_KEY] = manager
        scope[_EXPIRY_KEY] = expiry
        if kind == "websocket":
            # A websocket cannot set cookies once accepted: its session is read-only.
            await self.app(scope, receive, send)
            return
        # Save when the response starts, and again after the body if the app changed the
        # session while streaming it.
        id_sent: str | None = None

        async def save() -> str | None:
            await _adopt_replacement(scope, session, manager)
            return await manager.save(session, https=request.https, cookie=cookie, expiry=expiry)

        async def send_with_session(message: Message) -> None:
            nonlocal id_sent
            if id_sent is None and message["type"] == "http.response.start":
                set_cookie = await save()
                id_sent = session.id
                extra = request.headers_for(session, set_cookie)
                if extra:
                    message = {**message, "headers": _add_headers(message.get("headers"), extra)}
            await send(message)

        await self.app(scope, receive, send_with_session)
        if id_sent is not None and late_change(session, id_sent):
            warn_cookie_lost(session, id_sent, await save())

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_startup() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and self._manager is None:
                # Connect (and check the schema) before serving, so a bad URL fails the
                # deploy at startup instead of the first user's request. The one loop of
                # a lifespan-managed server then serves every request with it.
                self._manager = await self._build()
                self._manager_loop = asyncio.get_running_loop()
            return message

        async def send_shutdown(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        await self.app(scope, receive_startup, send_shutdown)


async def _adopt_replacement(
    scope: Scope, session: RequestSession, manager: AsyncSessionManager
) -> None:
    """Honour an app that replaced ``scope["session"]`` instead of changing it (Litestar's
    ``request.set_session(...)`` and ``clear_session()`` do): what the scope holds when the
    response starts is what is saved, as with Starlette's own middleware.

    A mapping's content becomes the session's, key by key (only changed keys are written,
    so concurrent requests changing other keys keep theirs); so do a data container's
    fields (a dataclass, a pydantic model, a msgspec Struct: Litestar accepts them and its
    own backends store them as the mapping they serialize to). ``None``, or a sentinel (a
    class, an enum member: Litestar's ``Empty``), ends the session as a logout does.
    Anything else is not session data ormsession can store: ``TypeError``.
    """
    current = scope.get("session")
    if current is session:
        return
    scope["session"] = session
    current = _as_mapping(current)
    if isinstance(current, Mapping):
        for key in [key for key in session if key not in current]:
            del session[key]
        for key, value in current.items():
            if key not in session or (session[key] is not value and session[key] != value):
                session[key] = value
    elif current is None or isinstance(current, type | enum.Enum):
        if session.is_new:
            session.clear()
        else:
            await manager.destroy(session)
    else:
        raise TypeError(
            f"scope['session'] was replaced by a {type(current).__name__}; ormsession "
            "stores a mapping (a dict), or None to end the session"
        )


def _as_mapping(value: Any) -> Any:
    """A data container's fields as a dict (nested containers too); anything else as is."""
    if isinstance(value, Mapping | type | None):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    model_dump = getattr(value, "model_dump", None)  # pydantic 2
    if callable(model_dump):
        return model_dump()
    if hasattr(type(value), "__struct_fields__"):  # msgspec
        import msgspec

        # The values ormsession's serializers store as they are stay as they are.
        kept = (datetime.datetime, datetime.date, datetime.time, decimal.Decimal, uuid.UUID, bytes)
        return msgspec.to_builtins(value, builtin_types=kept)
    return value


def _add_headers(raw: Any, extra: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """The app's response headers with ``extra`` (from ``headers_for``) added; a ``Vary``
    merges into the app's own."""
    headers: list[tuple[bytes, bytes]] = list(raw or ())
    for name, value in extra:
        if name == "Vary":
            index = _vary_index(headers)
            if index is not None:
                _merge_into(headers, index, value)
                continue
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return headers


def _merge_into(headers: list[tuple[bytes, bytes]], index: int, value: str) -> None:
    merged = merge_vary(headers[index][1].decode("latin-1"), value.split(", "))
    headers[index] = (headers[index][0], merged.encode("latin-1"))


def _vary_index(headers: list[tuple[bytes, bytes]]) -> int | None:
    """Where the app's ``Vary`` header is, whatever the case of its name (None: absent)."""
    for index, (name, _) in enumerate(headers):
        if name.lower() == b"vary":
            return index
    return None


def _is_factory(manager: object) -> bool:
    return callable(manager) and not isinstance(manager, AsyncSessionManager)


class _HasScope(Protocol):
    @property
    def scope(self) -> MutableMapping[str, Any]: ...


def _state(connection: _HasScope) -> tuple[AsyncSessionManager, RequestSession]:
    scope = connection.scope
    if MANAGER_KEY not in scope or "session" not in scope:
        raise RuntimeError(
            "no ormsession session on this request: add "
            "ormsession.integrations.asgi.SessionMiddleware to the app"
        )
    return scope[MANAGER_KEY], scope["session"]


def session_of(connection: _HasScope) -> RequestSession:
    """The session of a Starlette ``Request``/``WebSocket`` (same as ``request.session``)."""
    return _state(connection)[1]


async def regenerate_session(connection: _HasScope) -> None:
    """Give the request's session a new id now, keeping its data (call right after login)."""
    manager, session = _state(connection)
    await manager.regenerate(session, expiry=connection.scope.get(_EXPIRY_KEY))


async def destroy_session(connection: _HasScope) -> None:
    """Delete the request's session now (call on logout); the response deletes the cookie
    unless the request stores something new in the now empty session."""
    manager, session = _state(connection)
    await manager.destroy(session)


def _user_agent(scope: MutableMapping[str, Any]) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"user-agent":
            return str(value.decode("latin-1"))
    return None


def _client_host(scope: MutableMapping[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


async def login_session(
    connection: _HasScope,
    user_id: str | int,
    *,
    user_agent: str | FromRequest | None = FROM_REQUEST,
    ip: str | FromRequest | None = FROM_REQUEST,
) -> None:
    """Log the request's session in as ``user_id`` (call once the credentials are
    checked): a new id, the data kept, and the session bound to the user, so
    :func:`list_sessions` lists it and :func:`revoke_session` can end it. The response
    sets the new cookie.

    ``user_agent`` and ``ip`` (shown in the list) default to the request's ``User-Agent``
    header and ``request.client.host`` (behind a proxy, run the server with its
    forwarded-address option, e.g. uvicorn's ``--proxy-headers``, so that is the client's
    address); pass a value of your own, or None to keep none. Raises
    :class:`~ormsession.UserIdError` for a user id that is not a non-empty str or an int.
    """
    manager, session = _state(connection)
    scope = connection.scope
    await manager.login(
        session,
        user_id,
        user_agent=or_from_request(user_agent, lambda: _user_agent(scope)),
        ip=or_from_request(ip, lambda: _client_host(scope)),
        expiry=scope.get(_EXPIRY_KEY),
    )


async def list_sessions(connection: _HasScope) -> list[UserSession]:
    """The live sessions of the user the request's session is logged in as, the most
    recently seen first, this one flagged ``current``; ``[]`` when it is logged in as
    nobody."""
    manager, session = _state(connection)
    user_id = session.user_id
    if user_id is None:
        return []
    return await manager.sessions_of(user_id, current=session)


async def revoke_session(connection: _HasScope, handle: str) -> bool:
    """Sign the current user out of the session named by ``handle`` (from
    :func:`list_sessions`), at once, even for a request of it in flight; whether there was
    one. Another user's handle ends nothing; this session's own handle ends it as
    :func:`destroy_session` does (the response deletes the cookie)."""
    manager, session = _state(connection)
    user_id = session.user_id
    if user_id is None:
        return False
    if handle == session.handle:
        await manager.destroy(session)
        return True
    return await manager.revoke(user_id, handle)


async def revoke_other_sessions(connection: _HasScope) -> int:
    """Sign the current user out everywhere but here; how many sessions ended. To sign out
    here too, await :func:`destroy_session` after it."""
    manager, session = _state(connection)
    user_id = session.user_id
    if user_id is None:
        return 0
    return await manager.revoke_all(user_id, keep=session)


def _fastapi_names() -> dict[str, Any]:
    # Built on first use so that importing this module needs neither Starlette nor FastAPI.
    from typing import Annotated

    from fastapi import Depends
    from starlette.requests import HTTPConnection

    def get_session(connection: HTTPConnection) -> RequestSession:
        """FastAPI dependency: the request's (or websocket's) session."""
        return session_of(connection)

    # Real classes, not strings: FastAPI reads these annotations to inject the request.
    get_session.__annotations__ = {"connection": HTTPConnection, "return": RequestSession}
    session_dep = Annotated[RequestSession, Depends(get_session)]
    return {"get_session": get_session, "SessionDep": session_dep}


_LAZY: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name in ("get_session", "SessionDep"):
        if not _LAZY:
            _LAZY.update(_fastapi_names())
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
