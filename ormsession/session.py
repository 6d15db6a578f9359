"""The request-facing session: a mutable mapping that remembers what a request did to it.

Named ``RequestSession`` so it is never confused with the SQL model ``Session`` (a row).
It does no I/O: the manager loads it, and decides from its flags what ``save`` must write.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, MutableMapping
from decimal import Decimal
from typing import Any, Self

from ormsession.expiry import from_us
from ormsession.ids import storage_key

__all__ = ["RequestSession"]

# Values of these types cannot be changed in place, so handing them out cannot modify the
# session behind the mapping's back. Anything else (list, dict, set, objects) might be.
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


class RequestSession(MutableMapping[str, Any]):
    """One request's view of a session.

    Use it like a dict. ``modified`` becomes true on any assignment or deletion; a value
    changed in place (``session["cart"].append(x)``) is detected at save time by comparing
    the serialized data with what was loaded, so ``mark_modified()`` is rarely needed.
    """

    __slots__ = (
        "_accessed",
        "_client_sent_id",
        "_created_us",
        "_data",
        "_destroyed",
        "_dirty",
        "_expires_us",
        "_exposed",
        "_id",
        "_id_changed",
        "_key",
        "_original",
        "_snapshots",
        "_unavailable",
        "_version",
    )

    def __init__(
        self,
        session_id: str,
        data: dict[str, Any] | None = None,
        *,
        created_us: int,
        client_sent_id: bool = False,
        key: str | None = None,
    ) -> None:
        self._data: dict[str, Any] = data if data is not None else {}
        self._client_sent_id = client_sent_id
        self._destroyed = False
        self._unavailable = False
        self._start(session_id, created_us, key)

    @classmethod
    def _stored(
        cls,
        session_id: str,
        key: str,
        data: dict[str, Any],
        original: bytes,
        version: int,
        created_us: int,
        expires_us: int,
    ) -> Self:
        """A session as it was just read from the store, under the id the client sent.

        The same state ``__init__`` + :meth:`_loaded` give, set in one go: this is on every
        request's path. A subclass with its own ``__init__`` still gets it called.
        """
        if cls.__init__ is not RequestSession.__init__:
            session = cls(session_id, data, created_us=created_us, client_sent_id=True, key=key)
            session._loaded(original, version, expires_us)
            session._id_changed = False
            return session
        session = cls.__new__(cls)
        session._id = session_id
        session._key = key
        session._data = data
        session._original = original
        session._version = version
        session._created_us = created_us
        session._expires_us = expires_us
        session._client_sent_id = True
        session._destroyed = session._unavailable = session._dirty = False
        session._exposed = session._accessed = session._id_changed = False
        session._snapshots = None
        return session

    def _start(self, session_id: str, created_us: int, key: str | None = None) -> None:
        """Become a brand-new, unsaved session under ``session_id`` (keeps the data).

        ``key``: its storage key, when the caller has already hashed the id.
        """
        self._id = session_id
        self._key = key or storage_key(session_id)
        self._original: bytes | None = None
        self._version = 0
        self._created_us = created_us
        self._expires_us: int | None = None
        self._dirty = bool(self._data)
        self._exposed = False
        self._snapshots: dict[str, Any] | None = None
        self._accessed = False
        self._id_changed = True

    def _loaded(self, original: bytes, version: int, expires_us: int) -> None:
        """Record that this session's data came from (or was just written to) the store."""
        self._original = original
        self._version = version
        self._expires_us = expires_us
        self._dirty = False
        self._exposed = False
        self._snapshots = None

    # -- what a request can ask -------------------------------------------------------
    @property
    def id(self) -> str:
        """The session id the client holds (never stored; stores see only its hash)."""
        return self._id

    @property
    def is_new(self) -> bool:
        """True until the session has been stored."""
        return self._original is None

    @property
    def modified(self) -> bool:
        """True after an assignment, deletion or :meth:`mark_modified` in this request.

        Settable, as in Flask: ``session.modified = True`` forces the next save to write.
        """
        return self._dirty

    @modified.setter
    def modified(self, value: bool) -> None:
        self._dirty = bool(value)

    @property
    def accessed(self) -> bool:
        """True once any value was read or written in this request."""
        return self._accessed

    @property
    def destroyed(self) -> bool:
        """True after ``manager.destroy(session)`` in this request."""
        return self._destroyed

    @property
    def created_at(self) -> dt.datetime:
        """When the session was created (aware UTC)."""
        return from_us(self._created_us)

    @property
    def expires_at(self) -> dt.datetime | None:
        """When the stored session ends if unused (aware UTC; None while it is new)."""
        expires_us = self._expires_us
        return None if expires_us is None else from_us(expires_us)

    def mark_modified(self) -> None:
        """Force the next save to write, e.g. after changing an object in place."""
        self._dirty = True

    # -- the mapping ------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        value = self._data[key]
        if type(value) not in _IMMUTABLE:
            self._watch(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        # Spelled out (not Mapping's get over __getitem__): it is on every request's path.
        self._accessed = True
        try:
            value = self._data[key]
        except KeyError:
            return default
        if type(value) not in _IMMUTABLE:
            self._watch(key, value)
        return value

    def _watch(self, key: str, value: Any) -> None:
        """A mutable value leaves the mapping: keep what it takes to see an in-place change.

        A flat list or dict (of immutable items, the usual cart or flags) gets a shallow
        copy, compared at save for the price of an equality test. Anything deeper makes the
        save compare the whole session's serialized form instead.
        """
        if self._exposed:
            return
        snapshots = self._snapshots
        if snapshots is None:
            snapshots = self._snapshots = {}
        elif key in snapshots:
            return
        items = value.values() if type(value) is dict else value if type(value) is list else None
        # issuperset(map(...)) walks the items in C: this runs on most requests.
        if items is None or not _IMMUTABLE.issuperset(map(type, items)):
            self._exposed = True
            return
        snapshots[key] = value.copy()

    def _changed_in_place(self) -> bool:
        """Whether a watched flat value differs from its snapshot (see :meth:`_watch`)."""
        snapshots = self._snapshots
        if not snapshots:
            return False
        # A watched value is still the very object that was copied (putting another under
        # its key marks the session dirty, and then this is not asked), so equality with
        # the copy is the whole question. (A loop, not any() over a generator, which costs a
        # frame more: sessions watch one or two values.)
        data = self._data
        for key, copy in snapshots.items():  # noqa: SIM110
            if data.get(key) != copy:
                return True
        return False

    def __setitem__(self, key: str, value: Any) -> None:
        self._accessed = True
        self._dirty = True
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        self._accessed = True
        del self._data[key]
        self._dirty = True

    def __iter__(self) -> Iterator[str]:
        self._accessed = True
        return iter(self._data)

    def __len__(self) -> int:
        self._accessed = True
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._accessed = True
        return key in self._data

    def clear(self) -> None:
        self._accessed = True
        if self._data:
            self._data.clear()
            self._dirty = True

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the data."""
        self._accessed = True
        self._exposed = True
        return dict(self._data)

    def __repr__(self) -> str:
        # The id is a bearer credential: show only a short prefix of its hash.
        state = "new" if self.is_new else "stored"
        return f"<RequestSession {self._key[:8]}… {state} keys={sorted(self._data)!r}>"
