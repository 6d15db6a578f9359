"""A user's sessions, as the app sees them: checked user ids, handles, and the listing.

No I/O. The policy binds a session to a user on login (:class:`~.repositories.base.Owner`)
and turns what a store lists into :class:`UserSession` values.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from ormsession.errors import UserIdError
from ormsession.expiry import from_us
from ormsession.repositories.base import (
    MAX_HANDLE,
    MAX_IP,
    MAX_USER_AGENT,
    MAX_USER_ID,
    OwnedSession,
    Owner,
)

__all__ = ["UserSession", "is_handle", "new_handle", "owner_for", "user_key"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HANDLE = re.compile(rf"[A-Za-z0-9_-]{{16,{MAX_HANDLE}}}")


def user_key(user_id: object) -> str:
    """``user_id`` as stores keep it: a str (an int becomes its decimal digits), checked.

    Raises :class:`UserIdError` for anything else, so a typo (``None``, a user object
    instead of its id) is caught at the call, not stored as ``"None"``.
    """
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        # The value, read through int's own slot: a subclass's str() may say anything (an
        # (int, Enum) member's is "AccountId.ADMIN"), and 1 must name the same user as it.
        number = int.__int__(user_id)
        if not -(10**MAX_USER_ID) < number < 10**MAX_USER_ID:
            raise UserIdError(f"a user id must be at most {MAX_USER_ID} characters")
        user_id = str(number)
    if not isinstance(user_id, str):
        raise UserIdError(f"a user id must be a str or an int, not {type(user_id).__name__}")
    user_id = str.__str__(user_id)  # a plain str holding a subclass's value, as stores keep it
    if not user_id or len(user_id) > MAX_USER_ID or _CONTROL.search(user_id):
        raise UserIdError(
            f"a user id must be 1 to {MAX_USER_ID} characters without control characters"
        )
    try:
        user_id.encode()
    except UnicodeEncodeError:
        raise UserIdError("a user id must be valid Unicode text (no lone surrogates)") from None
    return user_id


def new_handle() -> str:
    """A fresh handle: 128 random bits, URL-safe (22 characters), never starting with
    ``-`` (so ``ormsession sessions revoke --handle H`` never reads it as an option)."""
    while (handle := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return handle


def is_handle(candidate: object) -> bool:
    """Whether ``candidate`` could be a handle (so a forged one never reaches the store)."""
    return isinstance(candidate, str) and _HANDLE.fullmatch(candidate) is not None


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("latin-1")  # a raw header value, as WSGI servers decode them
    text = _CONTROL.sub("", str(text)).encode("utf-8", "replace").decode()[:limit]
    return text or None


def owner_for(user_id: str, handle: str | None, user_agent: str | None, ip: str | None) -> Owner:
    """The owner a login binds: the session's handle kept (a new one the first time), the
    user agent and address cut to what every store keeps."""
    return Owner(
        user_id,
        handle or new_handle(),
        _clip(user_agent, MAX_USER_AGENT),
        _clip(ip, MAX_IP),
    )


@dataclass(frozen=True)
class UserSession:
    """One live session of a user: what a "where you're signed in" page shows.

    ``handle`` names it for :meth:`~ormsession.SessionManager.revoke`; it is not the
    session id and cannot open the session. Times are aware UTC datetimes; ``last_seen``
    is when the store last wrote the session (its expiry is refreshed at most every
    ``refresh_ratio`` of the idle timeout, so it is that precise). ``current``: this is the
    session passed as ``current=``.
    """

    handle: str
    created: datetime
    last_seen: datetime
    expires: datetime
    user_agent: str | None
    ip: str | None
    current: bool

    @classmethod
    def listed(cls, owned: OwnedSession, *, current: bool) -> UserSession:
        return cls(
            handle=owned.owner.handle,
            created=from_us(owned.created_us),
            last_seen=from_us(owned.seen_us),
            expires=from_us(owned.expires_us),
            user_agent=owned.owner.user_agent,
            ip=owned.owner.ip,
            current=current,
        )
