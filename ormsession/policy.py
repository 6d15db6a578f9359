"""Session policy as I/O-free flows, shared by the sync and async managers.

Each operation (save, regenerate, destroy, count, gc) is a generator that *yields* the
store calls it needs and receives their results. The sync manager answers them by calling
a repository; the async manager by awaiting one. The two on every request's path are
lighter: open is three plain steps the managers call around its one read, and save answers
at once when it needs no store call, or asks for one compare-and-set (:class:`CompareAndSet`,
then :meth:`SessionPolicy.written`), returning a flow only for the rest (a conflict, a
create, a touch). Times are µs (see :mod:`ormsession.expiry`). So every
rule — id checks, expiry, throttled touch, compare-and-set with re-apply of changed keys,
destroy-wins — is written once, here, and the two managers only do I/O ("sans-I/O").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, TypeVar

from ormsession.cookies import CookieOptions
from ormsession.errors import (
    ConflictError,
    CorruptSessionDataError,
    SessionTooLargeError,
    StoreError,
)
from ormsession.expiry import ExpiryPolicy, us_clock, utcnow
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import StoredSession
from ormsession.serializers import Serializer
from ormsession.session import RequestSession

__all__ = [
    "DEFAULT_MAX_DATA_BYTES",
    "CompareAndSet",
    "Flow",
    "OnStoreError",
    "SaveAnswer",
    "SessionPolicy",
    "StoreCall",
    "next_gc_batch",
]

logger = logging.getLogger("ormsession")

T = TypeVar("T")
OnStoreError = Literal["raise", "fresh"]
DEFAULT_MAX_DATA_BYTES = 256 * 1024

StoreMethod = Literal[
    "read", "create", "update", "touch", "delete", "rename", "count", "delete_expired"
]


@dataclass(frozen=True, slots=True)
class StoreCall:
    """One repository call a flow needs: ``getattr(repository, method)(*args)``."""

    method: StoreMethod
    args: tuple[Any, ...]


Flow = Generator[StoreCall, Any, T]


class CompareAndSet(NamedTuple):
    """The one store call most writing saves need: ``repository.update(*args)``, whose
    result goes back to :meth:`SessionPolicy.written`. (Made on every write, so a
    NamedTuple, and driven without a flow.)"""

    args: tuple[str, bytes, int, int, int]  # key, data, expires_us, expected_version, now_us
    session: RequestSession
    https: bool


#: What :meth:`SessionPolicy.save` answers: the ``Set-Cookie`` value or None at once, the
#: compare-and-set to make first, or a flow of store calls.
SaveAnswer = str | CompareAndSet | Flow[str | None] | None


def _store(method: StoreMethod, *args: Any) -> StoreCall:
    """The store call a flow yields; the manager sends back its result."""
    return StoreCall(method, args)


class SessionPolicy:
    """Everything a manager decides, with no I/O. Built once per manager."""

    def __init__(
        self,
        *,
        cookie: CookieOptions,
        expiry: ExpiryPolicy,
        serializer: Serializer,
        ids: SessionIds,
        max_data_bytes: int = DEFAULT_MAX_DATA_BYTES,
        max_attempts: int = 10,
        on_store_error: OnStoreError = "raise",
        set_cookie: bool = True,
        clock: Callable[[], datetime] = utcnow,
        session_class: type[RequestSession] = RequestSession,
    ) -> None:
        self.cookie = cookie
        self.expiry = expiry
        self.serializer = serializer
        self.ids = ids
        self.max_data_bytes = max_data_bytes
        self.max_attempts = max_attempts
        self.on_store_error = on_store_error
        self.set_cookie = set_cookie
        #: The app's clock (aware UTC datetimes), for what is shown to people (cookies).
        self.clock = clock
        #: The same clock in µs, which every rule reads (see :mod:`ormsession.expiry`).
        self.now_us = us_clock(clock)
        self.session_class = session_class
        #: The storage key to read for the id a client sent, or None if it is malformed
        #: (the first step of opening, below): the ids' own check-and-hash, bound once.
        self.key_to_read: Callable[[object], str | None] = ids.storage_key_of

    # -- open -----------------------------------------------------------------------
    # Opening is on every request's path, so it is not a generator flow: the managers call
    # these steps around their one read (driving a generator costs a microsecond):
    # key_to_read (bound in __init__), then opened or unreadable.
    # The rules: a malformed id never reaches the store; an unknown, expired or corrupt one
    # is never adopted, the client gets a new id (session fixation protection).
    def opened(
        self, session_id: str, key: str, record: StoredSession | None, now: int
    ) -> RequestSession:
        """The session for what the store returned under ``key`` (None: no live record),
        judged at ``now`` (µs, as every ``now`` below)."""
        if record is None or self.expiry.is_over(record.created_us, record.expires_us, now):
            return self._fresh(now, client_sent_id=True)
        try:
            data = self.serializer.loads(record.data)
        except CorruptSessionDataError as exc:
            logger.warning(
                "corrupt session data under key %s…, starting a new session: %s", key[:8], exc
            )
            return self._fresh(now, client_sent_id=True)
        return self.session_class._stored(
            session_id, key, data, record.data, record.version, record.created_us, record.expires_us
        )

    def unreadable(self, error: StoreError, session_id: str | None, now: int) -> RequestSession:
        """The store failed the read: raise ``error``, or (``on_store_error="fresh"``)
        serve a fresh session that is never saved. Call it in the ``except`` block."""
        if self.on_store_error == "raise":
            raise error
        logger.exception("session store unavailable; serving a fresh, unsaved session")
        fresh = self._fresh(now, client_sent_id=bool(session_id))
        fresh._unavailable = True
        return fresh

    def fresh(self, session_id: str | None, now: int) -> RequestSession:
        """A new session for a client whose id was missing or malformed."""
        return self._fresh(now, client_sent_id=bool(session_id))

    def _fresh(self, now: int, *, client_sent_id: bool) -> RequestSession:
        return self.session_class(
            self.ids.generate(), created_us=now, client_sent_id=client_sent_id
        )

    # -- save -----------------------------------------------------------------------
    def save(self, session: RequestSession, *, https: bool) -> SaveAnswer:
        """Persist what this request changed; the answer is a ``Set-Cookie`` value or None.

        Writes nothing for a request that changed nothing, unless the expiry is due for a
        refresh (then a touch, not a rewrite). Never brings back a session another request
        destroyed. When no store call is needed (most read-only requests) the answer comes
        back at once; a changed session is one :class:`CompareAndSet` to make first (see
        :meth:`written`); anything else is a flow that writes and then answers.
        """
        now = self.now_us()
        if session._unavailable:
            return None
        if session._original is None:  # new (is_new, without the property call)
            if not session._data:
                return (
                    self._delete_cookie(https)
                    if session._destroyed and session._client_sent_id
                    else None
                )
            return self._create(session, now, https)
        if session._dirty or session._exposed or session._changed_in_place():
            data = self._changed_bytes(session)
        else:
            data = None  # the usual read-only request: nothing was assigned or changed
        if data is not None:
            expiry = self.expiry.expires_at(session._created_us, now)
            args = (session._key, data, expiry, session._version, now)
            return CompareAndSet(args, session, https)
        expires_us = session._expires_us
        assert expires_us is not None  # stored sessions always carry their expiry
        if self.expiry.touch_due(session._created_us, expires_us, now):
            return self._touch(session, now, https)
        if session._id_changed:
            return self._cookie_after_write(session, now, https)
        return None

    def _touch(self, session: RequestSession, now: int, https: bool) -> Flow[str | None]:
        new_expiry = self.expiry.expires_at(session._created_us, now)
        if not (yield _store("touch", session._key, new_expiry, now)):
            return self._lost(session, now, https)
        session._expires_us = new_expiry
        return self._cookie_after_write(session, now, https)

    def _create(self, session: RequestSession, now: int, https: bool) -> Flow[str | None]:
        data = self._encode(session._data)
        for _ in range(3):
            expires_us = self.expiry.expires_at(session._created_us, now)
            record = StoredSession(data, 1, session._created_us, expires_us)
            if (yield _store("create", session._key, record, now)):
                session._loaded(data, 1, expires_us)
                return self._cookie_after_write(session, now, https)
            # A live record already holds this 256-bit key: astronomically unlikely, so
            # treat it as an attack or a bug and never write into it; take another id.
            logger.warning("session key collision on create; generating another id")
            session._start(self.ids.generate(), session._created_us)
        raise StoreError("could not create a session under a fresh key")

    def written(
        self, write: CompareAndSet, new_version: int | None
    ) -> str | Flow[str | None] | None:
        """The answer after the first compare-and-set of ``write`` returned ``new_version``:
        a ``Set-Cookie`` value or None when it was stored; on a conflict, the flow that
        re-reads and re-applies only this request's changes."""
        session, https = write.session, write.https
        _key, data, expires_us, _version, now = write.args
        if new_version is not None:
            session._loaded(data, new_version, expires_us)
            return self._cookie_after_write(session, now, https)
        return self._resolve_conflict(session, expires_us, now, https)

    def _resolve_conflict(
        self, session: RequestSession, expires_us: int, now: int, https: bool
    ) -> Flow[str | None]:
        """Another request wrote since this one read: re-read, re-apply only this request's
        changes and compare-and-set again, up to ``max_attempts`` writes in all. A session
        gone meanwhile (destroyed or expired elsewhere) stays gone."""
        attempts = 1  # the first compare-and-set, made by the manager
        while True:
            current: StoredSession | None = yield _store("read", session._key, now)
            if current is None:
                return self._lost(session, now, https)
            if attempts >= self.max_attempts:
                raise ConflictError(
                    f"gave up saving session {session._key[:8]}… after {attempts} "
                    "compare-and-set conflicts"
                )
            merged = self._merge(session, current)
            data = self._encode(merged)
            key, version = session._key, current.version
            new_version = yield _store("update", key, data, expires_us, version, now)
            attempts += 1
            if new_version is not None:
                session._data.clear()
                session._data.update(merged)
                session._loaded(data, new_version, expires_us)
                return self._cookie_after_write(session, now, https)

    def _merge(self, session: RequestSession, current: StoredSession) -> dict[str, Any]:
        """The stored data with this request's changes applied on top.

        Changes are judged against the data this request loaded, key by key, on the
        serialized form (so 1 vs True vs 1.0 and in-place mutations all count). Keys this
        request did not touch keep the other writer's value; for a key both changed, this
        (later) save wins.
        """
        assert session._original is not None
        base = self.serializer.loads(session._original)
        mine = session._data
        try:
            merged = self.serializer.loads(current.data)
        except CorruptSessionDataError:
            logger.warning("stored session %s… is corrupt; replacing it on save", session._key[:8])
            return dict(mine)
        for key, value in mine.items():
            if key not in base or self._value_bytes(value) != self._value_bytes(base[key]):
                merged[key] = value
        for key in base.keys() - mine.keys():
            merged.pop(key, None)
        return merged

    def _value_bytes(self, value: Any) -> bytes:
        return self.serializer.dumps({"": value})

    def _changed_bytes(self, session: RequestSession) -> bytes | None:
        """For a session that may have changed (assigned to, deep values handed out, or a
        watched value changed in place): the bytes to write, or None when the data is as
        loaded (reassigned to equal values, or deep values merely read)."""
        if not session._dirty and session._exposed:
            # Deep values were read: most such requests change nothing, and checking that
            # with the C encoder is several times cheaper than a tagged re-encode.
            unchanged = getattr(self.serializer, "unchanged", None)
            if unchanged is not None and unchanged(session._data, session._original):
                session._exposed = False
                return None
        data = self._encode(session._data)
        if data == session._original:
            session._dirty = session._exposed = False
            session._snapshots = None
            return None
        return data

    def _encode(self, data: dict[str, Any]) -> bytes:
        encoded = self.serializer.dumps(data)
        if len(encoded) > self.max_data_bytes:
            raise SessionTooLargeError(len(encoded), self.max_data_bytes)
        return encoded

    def _lost(self, session: RequestSession, now: int, https: bool) -> str | None:
        """Another request destroyed this session (a logout, say): it stays destroyed."""
        logger.info("session %s… was destroyed by another request; not saving", session._key[:8])
        session._data.clear()
        session._start(self.ids.generate(), now)
        session._destroyed = True
        return self._delete_cookie(https)

    def _cookie_after_write(self, session: RequestSession, now: int, https: bool) -> str | None:
        # The id changed (new or regenerated), or a lifetime cookie must follow the
        # pushed-back expiry (beego never refreshed it, so active users got logged out).
        if not self.set_cookie or not (session._id_changed or self.cookie.max_age):
            return None
        session._id_changed = False
        return self.cookie.set_cookie(session.id, https=https, now_us=now)

    def _delete_cookie(self, https: bool) -> str | None:
        return self.cookie.delete_cookie(https=https) if self.set_cookie else None

    # -- regenerate, destroy ---------------------------------------------------------
    def regenerate(self, session: RequestSession) -> Flow[None]:
        """Give the session a new id now, keeping its data; the old id stops working."""
        now = self.now_us()
        new_id = self.ids.generate()
        if session.is_new:
            session._start(new_id, session._created_us)
            return
        expires_us = self.expiry.expires_at(session._created_us, now)
        if (yield _store("rename", session._key, storage_key(new_id), expires_us, now)):
            session._id, session._key = new_id, storage_key(new_id)
            session._expires_us = expires_us
            session._id_changed = True
            return
        # Gone meanwhile: keep the data as a new session rather than lose the login.
        session._start(new_id, now)

    def destroy(self, session: RequestSession) -> Flow[None]:
        """Delete the session now; it continues as a new empty one, and unless the request
        stores something in it, the next save deletes the client's cookie."""
        if not session.is_new:
            yield _store("delete", session._key)
        session._data.clear()
        session._start(self.ids.generate(), self.now_us())
        session._destroyed = True

    # -- maintenance -----------------------------------------------------------------
    def count(self) -> Flow[int]:
        count: int = yield _store("count", self.now_us())
        return count

    def gc(
        self,
        limit: int,
        progress: Callable[[int], None] | None = None,
        *,
        batch_seconds: float | None = None,
    ) -> Flow[int]:
        """Delete expired sessions, at most ``limit`` per statement, until a batch comes
        back short; ``progress`` gets the running total after each batch.

        ``batch_seconds``: how long one statement may take (and hold its row locks). Each
        batch is timed, and the next one sized by :func:`next_gc_batch`: a server slowed by
        a cold cache or a busy disk gets smaller statements instead of longer ones, a
        healthy one keeps ``limit``. None: always ``limit``.
        """
        total, size = 0, limit
        while True:
            started = time.perf_counter()
            deleted: int = yield _store("delete_expired", self.now_us(), size)
            took = time.perf_counter() - started
            total += deleted
            if progress is not None and deleted:
                progress(total)
            if deleted < size:
                return total
            if batch_seconds is not None:
                size = next_gc_batch(size, took, batch_seconds, limit)


def next_gc_batch(size: int, took: float, batch_seconds: float, limit: int) -> int:
    """The size of the gc batch after one of ``size`` rows that took ``took`` seconds.

    Aimed at half of ``batch_seconds`` at the last batch's rate, so a batch twice as slow
    per row as the last one still fits; grown at most twofold a step (one fast batch is
    not a trend); between 1 and ``limit``.
    """
    fitting = limit if took <= 0 else int(size * batch_seconds / (2 * took))
    return max(1, min(limit, 2 * size, fitting))
