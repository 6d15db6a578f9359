"""The request-facing session: a ``dict`` that remembers what a request did to it.

Named ``RequestSession`` so it is never confused with the SQL model ``Session`` (a row).
It is a real ``dict`` subclass, so it is exactly what Flask's and Starlette's users already
hold (JSON-serializable, ``|=``, ``copy()``, ``popitem()``), and it does no I/O: the manager
loads it, and its policy decides from the session's state what ``save`` must write. That
state changes only through the methods under "state", which the policy calls.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from ormsession.expiry import from_us
from ormsession.ids import storage_key

__all__ = ["RequestSession", "Stored"]

# Values of these types cannot be changed in place, so a session holding only them cannot
# have changed unless something was assigned. Anything else (list, dict, set, objects)
# might have, which the policy finds out by comparing serialized bytes at save time.
_IMMUTABLE = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
        uuid.UUID,
        Decimal,
        frozenset,
    }
)


class Stored(NamedTuple):
    """What the store holds of a session, as this request last read or wrote it."""

    #: The serialized data, byte for byte.
    data: bytes
    #: The compare-and-set version.
    version: int
    #: When the stored session expires unless used again (µs since the Unix epoch, UTC).
    expires_us: int


class RequestSession(dict[str, Any]):
    """One request's view of a session.

    Use it like a dict. ``modified`` becomes true on any change made through the dict's
    methods; a value changed in place (``session["cart"].append(x)``) is found at save time
    by comparing the serialized data with what was loaded, so ``mark_modified()`` is rarely
    needed. ``accessed`` becomes true when the request reads or changes the session (the
    integrations then add ``Vary: Cookie``).
    """

    __slots__ = (
        "_accessed",
        "_client_sent_id",
        "_created_us",
        "_destroyed",
        "_id",
        "_key",
        "_modified",
        "_needs_cookie",
        "_stored",
        "_unavailable",
    )

    def __init__(
        self,
        session_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        created_us: int,
        stored: Stored | None = None,
        client_sent_id: bool = False,
        unavailable: bool = False,
    ) -> None:
        """A session under ``session_id`` holding ``data``: as the store holds it
        (``stored``), or new. ``client_sent_id``: the request carried an id (so a destroyed
        session deletes the client's cookie). ``unavailable``: the store could not be read;
        such a session is never saved."""
        super().__init__(data or {})
        self._id = session_id
        self._key = storage_key(session_id)
        self._created_us = created_us
        self._stored = stored
        # A new session holding data must be written; a stored one is as loaded.
        self._modified = stored is None and bool(data)
        self._accessed = False
        self._destroyed = False
        self._unavailable = unavailable
        self._client_sent_id = client_sent_id
        # The client holds no cookie for a new session's id yet.
        self._needs_cookie = stored is None

    # -- what a request can ask -------------------------------------------------------
    @property
    def id(self) -> str:
        """The session id the client holds (never stored; stores see only its hash)."""
        return self._id

    @property
    def is_new(self) -> bool:
        """True until the session has been stored."""
        return self._stored is None

    @property
    def modified(self) -> bool:
        """True after a change in this request (or :meth:`mark_modified`).

        Settable, as in Flask: ``session.modified = True`` forces the next save to write.
        """
        return self._modified

    @modified.setter
    def modified(self, value: bool) -> None:
        self._modified = bool(value)

    @property
    def accessed(self) -> bool:
        """True once a value was read or changed in this request (settable, as in Flask)."""
        return self._accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        self._accessed = bool(value)

    @property
    def destroyed(self) -> bool:
        """True after ``manager.destroy(session)`` in this request, or when another request
        destroyed it while this one was running."""
        return self._destroyed

    @property
    def created_at(self) -> dt.datetime:
        """When the session was created (aware UTC)."""
        return from_us(self._created_us)

    @property
    def expires_at(self) -> dt.datetime | None:
        """When the stored session ends if unused (aware UTC; None while it is new)."""
        return None if self._stored is None else from_us(self._stored.expires_us)

    def mark_modified(self) -> None:
        """Force the next save to write, e.g. after changing an object in place."""
        self._modified = True

    # -- reads: mark the session accessed ---------------------------------------------
    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._accessed = True
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._accessed = True
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self._accessed = True
        return super().__iter__()

    def __len__(self) -> int:
        self._accessed = True
        return super().__len__()

    def keys(self) -> Any:
        self._accessed = True
        return super().keys()

    def values(self) -> Any:
        self._accessed = True
        return super().values()

    def items(self) -> Any:
        self._accessed = True
        return super().items()

    # -- changes: each of these bypasses __setitem__ in CPython, so each is here -------
    def __setitem__(self, key: str, value: Any) -> None:
        self._changed()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._accessed = True
        if not super().__contains__(key):
            self._changed()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._changed()
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> RequestSession:  # type: ignore[override,misc]
        self._changed()
        super().update(other)
        return self

    def pop(self, key: str, *default: Any) -> Any:
        self._accessed = True
        if super().__contains__(key):
            self._changed()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self._changed()
        return item

    def clear(self) -> None:
        self._accessed = True
        if super().__len__():
            self._changed()
            super().clear()

    def _changed(self) -> None:
        self._accessed = self._modified = True

    def __repr__(self) -> str:
        # The id is a bearer credential: show only a short prefix of its hash.
        state = "new" if self.is_new else "stored"
        return f"<{type(self).__name__} {self._key[:8]}… {state} keys={sorted(self.contents())!r}>"

    # -- state: read and changed by the manager's policy, not by apps -----------------
    @property
    def storage_key(self) -> str:
        """The key the session is stored under: a SHA-256 of its id (see :mod:`~.ids`)."""
        return self._key

    @property
    def stored(self) -> Stored | None:
        """What the store holds, as last read or written (None: never stored)."""
        return self._stored

    @property
    def created_us(self) -> int:
        """:attr:`created_at` in µs since the Unix epoch."""
        return self._created_us

    @property
    def client_sent_id(self) -> bool:
        """Whether the request came with a session id (even one that proved invalid)."""
        return self._client_sent_id

    @property
    def unavailable(self) -> bool:
        """Whether the store failed the read: such a session is never saved."""
        return self._unavailable

    @property
    def needs_cookie(self) -> bool:
        """Whether the client has no cookie for this id yet (new, or regenerated)."""
        return self._needs_cookie

    def contents(self) -> dict[str, Any]:
        """A plain shallow copy of the data, without marking the session accessed."""
        return dict(dict.items(self))

    def may_have_changed_in_place(self) -> bool:
        """Whether a value could have been changed in place (it is of a mutable type)."""
        return not _IMMUTABLE.issuperset(map(type, dict.values(self)))

    def mark_stored(self, stored: Stored, data: Mapping[str, Any] | None = None) -> None:
        """The store now holds ``stored`` (a read, a write, or equal data found unchanged);
        ``data``: what was written when it is not what this request holds (a merge)."""
        if data is not None:
            super().clear()
            super().update(data)
        self._stored = stored
        self._modified = False

    def touched(self, expires_us: int) -> None:
        """The store pushed the expiry back to ``expires_us`` (data unchanged)."""
        assert self._stored is not None
        self._stored = self._stored._replace(expires_us=expires_us)

    def moved_to(self, session_id: str, expires_us: int) -> None:
        """The store renamed the session to ``session_id``'s key (a regenerate)."""
        assert self._stored is not None
        self._id, self._key = session_id, storage_key(session_id)
        self._stored = self._stored._replace(expires_us=expires_us)
        self._needs_cookie = True

    def restart(self, session_id: str, created_us: int) -> None:
        """Become a new, unsaved session under ``session_id``, keeping the data."""
        self._id, self._key = session_id, storage_key(session_id)
        self._created_us = created_us
        self._stored = None
        self._modified = super().__len__() > 0
        self._needs_cookie = True

    def ended(self, session_id: str, created_us: int) -> None:
        """The stored session is gone (destroyed here or by another request): continue as
        a new, empty session under ``session_id``."""
        super().clear()
        self.restart(session_id, created_us)
        self._destroyed = True

    def cookie_sent(self) -> None:
        """A ``Set-Cookie`` for the current id is on its way to the client."""
        self._needs_cookie = False
