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
from typing import Any, ClassVar, NamedTuple

from ormsession.expiry import from_us
from ormsession.ids import storage_key
from ormsession.repositories.base import Owner

__all__ = ["RequestSession", "Stored"]

# Values of these types cannot be changed in place, so handing them out cannot change the
# session behind its back. Anything else (list, dict, set, objects) might be changed in place.
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


_MISSING = object()


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
    methods; a value changed in place (``session["cart"].append(x)``) is found at save time,
    so ``mark_modified()`` is rarely needed. ``accessed`` becomes true when the request reads
    or changes the session (the integrations then add ``Vary: Cookie``).

    Finding in-place changes: a flat list or dict (of immutable items, the usual cart or
    flags) handed out by ``[]``, ``get`` or ``setdefault`` is copied as it leaves, and
    compared with that copy at save, for the price of an equality test; anything deeper, or
    everything at once (``values()``, ``items()``), makes the save compare the whole
    session's serialized bytes with what was loaded. A read-only request that holds a cart
    therefore costs no encoding at save (several per cent of a request, measured).
    """

    #: Whether a session with no data is still stored: its first save creates it even
    #: empty, and a save that empties it keeps it (False: an empty new session is never
    #: written, and emptying a stored one ends it, the Flask and Starlette logout). Django
    #: sets it: there an empty session is a session (``create()`` stores one), and
    #: ``flush()``, not emptying, is the logout.
    keep_when_empty: ClassVar[bool] = False

    __slots__ = (
        "_accessed",
        "_cleared",
        "_client_sent_id",
        "_created_us",
        "_destroyed",
        "_dirty",
        "_exposed",
        "_id",
        "_key",
        "_lost",
        "_lost_key",
        "_modified",
        "_needs_cookie",
        "_owner",
        "_snapshots",
        "_stored",
        "_unavailable",
        "data_key",
        "reseal",
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
        owner: Owner | None = None,
    ) -> None:
        """A session under ``session_id`` holding ``data``: as the store holds it
        (``stored``), or new. ``client_sent_id``: the request carried an id (so a destroyed
        session deletes the client's cookie). ``unavailable``: the store could not be read;
        such a session is never saved."""
        super().__init__(data or {})
        self._id = session_id
        self._key: str | None = None  # hashed when first asked for: a read needs none
        self._created_us = created_us
        self._stored = stored
        self._owner = owner
        #: The key sealing this id's data at rest, once derived (see ``policy._sealed``).
        self.data_key: Any = None
        #: Sealed under an encryption secret that is no longer the current one: the next
        #: save rewrites it (see ``policy._save``).
        self.reseal = False
        # A new session holding data must be written; a stored one is as loaded.
        self._dirty = self._modified = stored is None and bool(data)
        self._accessed = False
        self._cleared = False
        self._destroyed = False
        self._lost = False
        self._lost_key: str | None = None
        self._unavailable = unavailable
        self._client_sent_id = client_sent_id
        # The client holds no cookie for a new session's id yet.
        self._needs_cookie = stored is None
        # Copies of the flat mutable values handed out; _exposed: something deeper was.
        self._snapshots: dict[str, Any] = {}
        self._exposed = False

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
        """True once the request changed the session (or called :meth:`mark_modified`),
        and still after a save, as in Flask and Starlette.

        Settable, as in Flask: ``session.modified = True`` forces the next save to write,
        ``False`` tells it the changes made so far through the dict's methods need none.
        """
        return self._modified

    @modified.setter
    def modified(self, value: bool) -> None:
        self._modified = self._dirty = bool(value)

    @property
    def dirty(self) -> bool:
        """True while changes made through the dict's methods are not saved yet (values
        changed in place are found by the save itself)."""
        return self._dirty

    @property
    def accessed(self) -> bool:
        """True once a value was read or changed in this request (settable, as in Flask)."""
        return self._accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        self._accessed = bool(value)

    @property
    def destroyed(self) -> bool:
        """True after ``manager.destroy(session)`` in this request, or once a save ended
        the session because the request emptied it (``clear()``, the last key removed)."""
        return self._destroyed

    @property
    def lost(self) -> bool:
        """True once this request found that another one destroyed or regenerated the
        session meanwhile (a logout, a login in another tab): its data is gone from this
        object, and nothing this request writes to it is saved."""
        return self._lost

    @property
    def created_at(self) -> dt.datetime:
        """When the session was created (aware UTC)."""
        return from_us(self._created_us)

    @property
    def expires_at(self) -> dt.datetime | None:
        """When the stored session ends if unused (aware UTC; None while it is new)."""
        return None if self._stored is None else from_us(self._stored.expires_us)

    @property
    def user_id(self) -> str | None:
        """The user this session is bound to (by the manager's ``login``), or None.

        Reading it marks the session accessed, as reading a key does: a page rendered for
        the logged-in user depends on the cookie (``Vary: Cookie``, so a shared cache never
        hands it to someone else)."""
        self._accessed = True
        return None if self._owner is None else self._owner.user_id

    @property
    def handle(self) -> str | None:
        """This session's handle among its user's sessions (see ``sessions_of``), or None
        while it is bound to nobody. Not a secret: it cannot open the session. Reading it
        marks the session accessed, as :attr:`user_id` does."""
        self._accessed = True
        return None if self._owner is None else self._owner.handle

    def mark_modified(self) -> None:
        """Force the next save to write, e.g. after changing an object in place."""
        self._modified = self._dirty = True

    # -- reads: mark the session accessed ---------------------------------------------
    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        value = super().__getitem__(key)
        if type(value) not in _IMMUTABLE:
            self._watch(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self._accessed = True
        value = super().get(key, _MISSING)
        if value is _MISSING:
            return default
        if type(value) not in _IMMUTABLE:
            self._watch(key, value)
        return value

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
        self._accessed = self._exposed = True
        return super().values()

    def items(self) -> Any:
        self._accessed = self._exposed = True
        return super().items()

    def __reversed__(self) -> Iterator[str]:
        self._accessed = True
        return super().__reversed__()

    def __eq__(self, other: object) -> bool:
        self._accessed = True
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        self._accessed = True
        return super().__ne__(other)

    @classmethod
    def fromkeys(cls, iterable: Any, value: Any = None, /) -> dict[str, Any]:  # type: ignore[override]
        # A session is made by its manager, with an id: this gives the plain dict.
        return dict.fromkeys(iterable, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Copies and pickles keep the state as it is: the default reduction of a dict
        # subclass would put the items back through __setitem__, marking them modified.
        state = {name: getattr(self, name) for name in RequestSession.__slots__}
        state["data_key"] = None  # derived again when needed: a key object does not pickle
        return (_rebuilt, (type(self), self.contents(), state, getattr(self, "__dict__", None)))

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
        value = super().setdefault(key, default)
        if type(value) not in _IMMUTABLE:
            self._watch(key, value)
        return value

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
        # clear() is Flask's and Starlette's logout: of a stored session (bound or not: an
        # app may keep its own user key), of one another request regenerated (sent with the
        # replaced id), and of a bound one whose data is empty already. Django's logout is
        # flush() (destroy), and its clear() keeps the key: a class that keeps empty
        # sessions does not log out here.
        stored = self._stored is not None and not self.keep_when_empty
        if stored or self._owner is not None or self._lost:
            self._cleared = True
        if super().__len__() or self._owner is not None:
            self._changed()
            super().clear()

    def _changed(self) -> None:
        self._accessed = self._modified = self._dirty = True

    def _watch(self, key: str, value: Any) -> None:
        """A mutable value leaves the session: keep what it takes to find an in-place
        change at save (see the class docstring)."""
        if self._exposed or key in self._snapshots:
            return
        items = value.values() if type(value) is dict else value if type(value) is list else None
        if items is None or not _IMMUTABLE.issuperset(map(type, items)):
            self._exposed = True
        else:
            self._snapshots[key] = value.copy()

    def __repr__(self) -> str:
        # The id is a bearer credential: show only a short prefix of its hash.
        state = "new" if self.is_new else "stored"
        keys = sorted(self.contents())
        return f"<{type(self).__name__} {self.storage_key[:8]}… {state} keys={keys!r}>"

    # -- state: read and changed by the manager's policy, not by apps -----------------
    @property
    def storage_key(self) -> str:
        """The key the session is stored under: a SHA-256 of its id (see :mod:`~.ids`)."""
        if self._key is None:
            self._key = storage_key(self._id)
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
    def lost_key(self) -> str | None:
        """The storage key of the session this request lost (see :attr:`lost`): a logout in
        the same request still deletes through it, whatever it was renamed to."""
        return self._lost_key

    @property
    def cleared(self) -> bool:
        """Whether this request called ``clear()`` on the stored session (or on a bound
        one, or after it was lost to another request): a logout, even when its data was
        empty already (emptying it key by key, or any other forced write of empty data,
        ``modified = True`` say, is no logout)."""
        return self._cleared

    @property
    def client_sent_id(self) -> bool:
        """Whether the request came with a session id (even one that proved invalid)."""
        return self._client_sent_id

    @property
    def unavailable(self) -> bool:
        """Whether the store failed the read: such a session is never saved."""
        return self._unavailable

    @property
    def id_unknown(self) -> bool:
        """Right after ``open``: the request's id named no stored session (unknown,
        expired, corrupt or malformed), so this is a new one. Not for an id a regenerate
        just replaced (:attr:`lost`) nor during an outage (:attr:`unavailable`)."""
        return self.is_new and self._client_sent_id and not self._lost and not self._unavailable

    @property
    def needs_cookie(self) -> bool:
        """Whether the client has no cookie for this id yet (new, or regenerated)."""
        return self._needs_cookie

    def contents(self) -> dict[str, Any]:
        """A plain shallow copy of the data, without marking the session accessed."""
        return dict(dict.items(self))

    def may_have_changed_in_place(self) -> bool:
        """Whether a value handed out by this request may have been changed in place: a
        watched flat value differs from its copy, or something deeper was handed out (then
        only a comparison of the serialized bytes can tell)."""
        if self._exposed:
            return True
        try:
            for key, copy in self._snapshots.items():  # a loop: any() costs a generator
                if dict.get(self, key) != copy:
                    return True
        except Exception:  # an item that refuses ==, as Decimal("sNaN") does: the bytes tell
            return True
        return False

    def mark_stored(self, stored: Stored, data: Mapping[str, Any] | None = None) -> None:
        """The store now holds ``stored`` (a read, a write, or equal data found unchanged);
        ``data``: what was written when it is not what this request holds (a merge)."""
        if data is not None:
            super().clear()
            super().update(data)
        self._stored = stored
        self._dirty = self._exposed = False
        self._snapshots = {}

    def settled(self) -> None:
        """The save dealt with this request's changes without storing them (under a cookie
        already expired when sent, nothing is ever stored): nothing is left to write."""
        self._dirty = self._exposed = False
        self._snapshots = {}

    def touched(self, expires_us: int) -> None:
        """The store pushed the expiry back to ``expires_us`` (data unchanged)."""
        assert self._stored is not None
        self._stored = self._stored._replace(expires_us=expires_us)

    @property
    def owner(self) -> Owner | None:
        """Who the session is bound to, as stored (or to be stored by the next save)."""
        return self._owner

    def moved_to(self, session_id: str, expires_us: int, owner: Owner | None = None) -> None:
        """The store renamed the session to ``session_id``'s key (a regenerate), and bound
        it to ``owner`` if given (a login)."""
        assert self._stored is not None
        if owner is not None:
            self._owner, self._cleared = owner, False
        self._id, self._key, self.data_key = session_id, None, None
        self._stored = self._stored._replace(expires_us=expires_us)
        self._needs_cookie = True

    def bind(self, owner: Owner) -> None:
        """Bind this unsaved session to ``owner``: the save that creates it stores that.

        A login is a fresh start: a session this request had lost (its id replaced by
        another request's regenerate) is lost no more, so the login's save sends the new
        cookie instead of leaving a stored, listed session no client holds."""
        assert self._stored is None
        self._owner, self._cleared = owner, False
        self._lost, self._lost_key = False, None
        self._unavailable = False  # the login's own write reached the store

    def unbind(self) -> None:
        """A login whose write failed: the session is bound to nobody after all."""
        self._owner = None

    def logged_out(self, session_id: str, created_us: int) -> None:
        """This request cleared the bound session (a logout) and then stored something
        again (a flash message, say): the stored session ended, and what the request left
        in it starts a new, unbound session under ``session_id``."""
        remaining = self.contents()
        self.ended(session_id, created_us)
        super().update(remaining)
        self._changed()

    def restart(self, session_id: str, created_us: int) -> None:
        """Become a new, unsaved session under ``session_id``, keeping the data."""
        self._id, self._key, self.data_key = session_id, None, None
        self._created_us = created_us
        self._stored = None
        self._dirty = super().__len__() > 0
        self._modified = self._modified or self._dirty
        self._needs_cookie = True

    def ended(self, session_id: str, created_us: int) -> None:
        """This request destroyed the session: continue as a new, empty session under
        ``session_id``."""
        super().clear()
        self.restart(session_id, created_us)
        self._owner, self._cleared = None, False
        self._destroyed = True
        self._lost, self._lost_key = False, None

    def mark_lost(self, session_id: str, created_us: int, *, key: str) -> None:
        """Another request destroyed or regenerated the session stored under ``key``:
        continue as a new, empty session under ``session_id`` that is never saved."""
        super().clear()
        self.restart(session_id, created_us)
        # A clear() before the loss (the usual start of a login that then lost a race) is
        # no logout: only one after it, sent with the replaced id, is.
        self._owner, self._cleared = None, False
        self._lost, self._lost_key = True, key

    def cookie_sent(self) -> None:
        """A ``Set-Cookie`` for the current id is on its way to the client."""
        self._needs_cookie = False


def _rebuilt(
    cls: type[RequestSession],
    data: dict[str, Any],
    state: dict[str, Any],
    extra: dict[str, Any] | None,
) -> RequestSession:
    """A session from :meth:`RequestSession.__reduce__`'s parts, without running its
    change tracking."""
    session = cls.__new__(cls)
    dict.update(session, data)
    for name, value in state.items():
        object.__setattr__(session, name, value)
    if extra:
        session.__dict__.update(extra)
    return session
