"""A Django user's sessions: bound at login, listed, revoked ("log out everywhere").

``django.contrib.auth.login()`` cycles the session key and sends ``user_logged_in``; this
module's receiver then binds the session to the user (ormsession's ``login``), so
:func:`list_sessions` shows it and :func:`revoke_other_sessions` can end the others. The
receiver is connected when the session engine is first imported (Django's
``SessionMiddleware`` imports it), and only acts on requests whose session is ormsession's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.signals import user_logged_in

from ormsession.flows import run
from ormsession.integrations.django import _managers
from ormsession.integrations.django.store import SessionStore, _perform_sync, login_flow

if TYPE_CHECKING:
    from django.http import HttpRequest

    from ormsession.users import UserSession

__all__ = ["list_sessions", "revoke_other_sessions", "revoke_session"]


def _bind_on_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if request is None or not isinstance(session, SessionStore) or user is None:
        return
    meta = request.META
    flow = login_flow(session, str(user.pk), meta.get("HTTP_USER_AGENT"), meta.get("REMOTE_ADDR"))
    run(flow, _perform_sync)


user_logged_in.connect(_bind_on_login, dispatch_uid="ormsession.django.login")


def _bound(request: HttpRequest) -> tuple[Any, str] | None:
    store = request.session
    if not isinstance(store, SessionStore):
        raise TypeError("request.session is not ormsession's: set SESSION_ENGINE")
    session = store._session
    user_id = session.user_id
    return None if user_id is None else (session, user_id)


def list_sessions(request: HttpRequest) -> list[UserSession]:
    """The live sessions of the user this request's session is logged in as, the most
    recently seen first, this one flagged ``current``; ``[]`` for an anonymous session."""
    bound = _bound(request)
    if bound is None:
        return []
    session, user_id = bound
    return _managers.sync_manager().sessions_of(user_id, current=session)


def revoke_session(request: HttpRequest, handle: str) -> bool:
    """End the current user's session named by ``handle`` (from :func:`list_sessions`) at
    once; whether there was one. This session's own handle logs this request out
    (``request.session.flush()``)."""
    bound = _bound(request)
    if bound is None:
        return False
    session, user_id = bound
    if handle == session.handle:
        request.session.flush()
        return True
    return _managers.sync_manager().revoke(user_id, handle)


def revoke_other_sessions(request: HttpRequest) -> int:
    """Log the current user out everywhere but here; how many sessions ended."""
    bound = _bound(request)
    if bound is None:
        return 0
    session, user_id = bound
    return _managers.sync_manager().revoke_all(user_id, keep=session)
