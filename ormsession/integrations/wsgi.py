"""WSGI middleware: a session in every request's environ, for any WSGI framework.

    from ormsession.integrations.wsgi import SessionMiddleware, get_session

    def app(environ, start_response):
        session = get_session(environ)
        session["visits"] = session.get("visits", 0) + 1
        ...

    app = SessionMiddleware(app, url="sqlite:///sessions.sqlite3")

The session is saved when the app calls ``start_response`` (the last moment a cookie can
still be added); a change made while the body is being streamed is saved again when the
body is closed, but any new cookie it would need cannot reach the client (logged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

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
from ormsession.manager import SessionManager
from ormsession.session import RequestSession

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ormsession.config import Config
    from ormsession.users import UserSession

__all__ = [
    "FROM_REQUEST",
    "MANAGER_KEY",
    "SESSION_KEY",
    "SessionMiddleware",
    "destroy_session",
    "get_session",
    "list_sessions",
    "login_session",
    "regenerate_session",
    "revoke_other_sessions",
    "revoke_session",
]

#: Where the middleware puts the request's :class:`RequestSession` in the environ.
SESSION_KEY = "ormsession.session"
#: Where it puts the :class:`SessionManager` (for the helpers below).
MANAGER_KEY = "ormsession.manager"


class SessionMiddleware:
    """Wraps a WSGI app so ``environ["ormsession.session"]`` is the request's session.

    ``manager``: a ready :class:`SessionManager` (the app owns and closes it); otherwise one
    is built with :func:`ormsession.configure` from ``config``/``options`` (any
    :class:`~ormsession.Config` field, e.g. ``url=``, ``cookie_name=``)
    and closed by :meth:`close`. The request options ``id_header``, ``id_query_param`` and
    ``trust_forwarded_proto`` apply either way.
    """

    def __init__(
        self,
        app: WSGIApplication,
        /,
        *,
        manager: SessionManager | None = None,
        config: Config | None = None,
        **options: Any,
    ) -> None:
        resolved = config_for(config, options, manager_given=manager is not None)
        self.app = app
        self.options = RequestOptions.from_config(resolved)
        self._owns_manager = manager is None
        if manager is None:
            from ormsession.configure import configure

            manager = configure(config=resolved)
        self.manager = manager

    def close(self) -> None:
        """Close the manager if this middleware built it (at process end, not per request)."""
        if self._owns_manager:
            self.manager.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        manager = self.manager
        request = SessionRequest.from_wsgi(
            environ, self.options, manager.cookie.cookie_name, manager.policy.ids.is_valid
        )
        session = manager.open_first(request.session_id, request.later_ids)
        environ[SESSION_KEY] = session
        environ[MANAGER_KEY] = manager
        response = _Response(manager, request, session, start_response)
        result = self.app(environ, response.start_response)
        return _ClosingIterable(result, response.finish)


class _Response:
    """One response's session bookkeeping: save once, when the headers are decided."""

    def __init__(
        self,
        manager: SessionManager,
        request: SessionRequest,
        session: RequestSession,
        start_response: StartResponse,
    ) -> None:
        self.manager = manager
        self.request = request
        self.session = session
        self._start_response = start_response
        self._attempted = False
        self._headers: list[tuple[str, str]] | None = None
        self._id_sent = session.id

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
        /,
    ) -> Callable[[bytes], object]:
        # An app may call start_response again with exc_info to replace an error response;
        # the session is saved once, and its headers reused, so a failing save (say, data
        # over the size limit) cannot loop through the app's error handling.
        if not self._attempted:
            self._attempted = True
            cookie = self.manager.save(self.session, https=self.request.https)
            self._id_sent = self.session.id
            self._headers = self.request.headers_for(self.session, cookie)
        return self._start_response(status, _add_headers(headers, self._headers or []), exc_info)

    def finish(self) -> None:
        """After the body: save what the app changed while streaming it, if anything."""
        if self._headers is None or not late_change(self.session, self._id_sent):
            return
        cookie = self.manager.save(self.session, https=self.request.https)
        warn_cookie_lost(self.session, self._id_sent, cookie)


def _add_headers(
    headers: list[tuple[str, str]], extra: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``headers`` plus ``extra``, folding ``Vary`` into the app's own Vary header."""
    result = list(headers)
    for name, value in extra:
        if name.lower() != "vary":
            result.append((name, value))
            continue
        index = next((i for i, (n, _) in enumerate(result) if n.lower() == "vary"), None)
        if index is None:
            result.append((name, value))
        else:
            merged = merge_vary(result[index][1], value.split(", "))
            result[index] = (result[index][0], merged)
    return result


class _ClosingIterable:
    """The app's body, passed through; on ``close()`` the app's iterable is closed first
    (PEP 3333 requires the server to call it), then the session's late save runs."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._body = body
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


def get_session(environ: WSGIEnvironment) -> RequestSession:
    """The request's session (the middleware must wrap the app)."""
    try:
        session: RequestSession = environ[SESSION_KEY]
    except KeyError:
        raise RuntimeError(
            "no ormsession session in the environ: wrap the app in "
            "ormsession.integrations.wsgi.SessionMiddleware"
        ) from None
    return session


def _state(environ: WSGIEnvironment) -> tuple[SessionManager, RequestSession]:
    session = get_session(environ)
    manager: SessionManager = environ[MANAGER_KEY]
    return manager, session


def regenerate_session(environ: WSGIEnvironment) -> None:
    """Give the request's session a new id now, keeping its data (call on login)."""
    manager, session = _state(environ)
    manager.regenerate(session)


def destroy_session(environ: WSGIEnvironment) -> None:
    """Delete the request's session now (call on logout); the response deletes the cookie
    unless the request stores something new in the (now empty) session."""
    manager, session = _state(environ)
    manager.destroy(session)


def _environ_text(environ: WSGIEnvironment, name: str) -> str | None:
    value = environ.get(name)
    return value if isinstance(value, str) else None


def login_session(
    environ: WSGIEnvironment,
    user_id: str | int,
    *,
    user_agent: str | FromRequest | None = FROM_REQUEST,
    ip: str | FromRequest | None = FROM_REQUEST,
) -> None:
    """Log the request's session in as ``user_id`` (call once the credentials are
    checked): a new id, the data kept, and the session bound to the user, so
    :func:`list_sessions` lists it and :func:`revoke_session` can end it. The response
    sets the new cookie.

    ``user_agent`` and ``ip`` (shown in the list) default to the environ's
    ``HTTP_USER_AGENT`` and ``REMOTE_ADDR`` (behind a proxy, a middleware such as
    Werkzeug's ``ProxyFix`` makes that the client's address); pass a value of your own, or
    None to keep none. Raises :class:`~ormsession.UserIdError` for a user id that is not a
    non-empty str or an int.
    """
    manager, session = _state(environ)
    manager.login(
        session,
        user_id,
        user_agent=or_from_request(user_agent, lambda: _environ_text(environ, "HTTP_USER_AGENT")),
        ip=or_from_request(ip, lambda: _environ_text(environ, "REMOTE_ADDR")),
    )


def list_sessions(environ: WSGIEnvironment) -> list[UserSession]:
    """The live sessions of the user the request's session is logged in as, the most
    recently seen first, this one flagged ``current``; ``[]`` when it is logged in as
    nobody."""
    manager, session = _state(environ)
    user_id = session.user_id
    if user_id is None:
        return []
    return manager.sessions_of(user_id, current=session)


def revoke_session(environ: WSGIEnvironment, handle: str) -> bool:
    """Sign the current user out of the session named by ``handle`` (from
    :func:`list_sessions`), at once, even for a request of it in flight; whether there was
    one. Another user's handle ends nothing; this session's own handle ends it as
    :func:`destroy_session` does (the response deletes the cookie)."""
    manager, session = _state(environ)
    user_id = session.user_id
    if user_id is None:
        return False
    if handle == session.handle:
        manager.destroy(session)
        return True
    return manager.revoke(user_id, handle)


def revoke_other_sessions(environ: WSGIEnvironment) -> int:
    """Sign the current user out everywhere but here; how many sessions ended. To sign out
    here too, call :func:`destroy_session` after it."""
    manager, session = _state(environ)
    user_id = session.user_id
    if user_id is None:
        return 0
    return manager.revoke_all(user_id, keep=session)
