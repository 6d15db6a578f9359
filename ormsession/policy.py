"""Every session rule, written once as I/O-free flows shared by the sync and async managers.

Each operation (open, save, regenerate, destroy, count, gc) is a generator that *yields*
the repository calls it needs (:class:`StoreCall`) and receives their results; the sync
manager answers them by calling its repository, the async manager by awaiting its one
(:mod:`ormsession.flows`). So every rule (id checks, expiry, throttled touch,
compare-and-set with re-apply of changed keys, destroy-wins) lives here, and the managers
only do I/O. Times are µs since the Unix epoch (see :mod:`ormsession.expiry`).

A request, from cookie to store and back: :meth:`SessionPolicy.open` checks the id's
format, reads the record under its hash and judges its expiry; the app uses the
:class:`~ormsession.session.RequestSession` like a dict; :meth:`SessionPolicy.save` writes
what changed (one compare-and-set), refreshes the expiry when due (one touch), or writes
nothing, and answers the ``Set-Cookie`` value the response needs.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ormsession.config import Config
from ormsession.cookies import CookieOptions
from ormsession.errors import (
    ConfigurationError,
    ConflictError,
    CorruptSessionDataError,
    SessionLostError,
    SessionTooLargeError,
    StoreError,
)
from ormsession.expiry import ExpiryPolicy, us_clock, utcnow
from ormsession.flows import Flow, Pause
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import OwnedSession, Owner, StoredSession
from ormsession.session import RequestSession, Stored
from ormsession.users import UserSession, is_handle, owner_for, user_key

if TYPE_CHECKING:
    from ormsession.metrics import MetricsRecorder

__all__ = ["SessionPolicy", "StoreCall", "next_gc_batch"]

logger = logging.getLogger("ormsession")

StoreMethod = Literal[
    "read",
    "create",
    "update",
    "touch",
    "delete",
    "rename",
    "moved",
    "count",
    "delete_expired",
    "sessions_of",
    "revoke",
    "revoke_all",
]


class StoreCall(NamedTuple):
    """One repository call a flow needs: ``getattr(repository, method)(*args)``."""

    method: StoreMethod
    args: tuple[Any, ...]


def _store(method: StoreMethod, *args: Any) -> StoreCall:
    return StoreCall(method, args)


#: What a policy flow yields: repository calls, and pauses between retries.
Step = StoreCall | Pause


def _backoff(conflicts: int) -> Pause:
    """The pause before the next try after ``conflicts`` lost compare-and-sets in a row:
    random, up to 0.5, 1, 2... 32 ms. Writers of one session that retry at once meet again
    in step (two processes saving in a loop gave up after ten tries in 3% of saves); apart,
    each gets its turn."""
    return Pause(random.uniform(0, 0.0005 * 2 ** min(conflicts - 1, 6)))  # noqa: S311


class _Save(NamedTuple):
    """The rules one save follows: the config's, or a request's own (an integration that
    reads its framework's settings per request, such as Flask's)."""

    https: bool
    cookie: CookieOptions
    expiry: ExpiryPolicy


class SessionPolicy:
    """Everything a manager decides, with no I/O. Built once per manager from its config."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        session_class: type[RequestSession] = RequestSession,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self.config = config
        #: Told about conflicts, lost sessions, sizes written and gc (None: no metrics).
        self.metrics = metrics
        self.cookie = config.cookie
        self.expiry = config.expiry
        self.serializer = config.make_serializer()
        #: Seals data at rest under a key derived from the session id (None: plaintext).
        self.cipher = config.make_cipher()
        self.ids = SessionIds(prefix=config.id_prefix, nbytes=config.id_bytes)
        #: The app's clock (aware UTC datetimes), for what is shown to people (cookies).
        self.clock = clock
        #: The same clock in µs, which every rule reads.
        self.now_us = us_clock(clock)
        self.session_class = session_class

    # -- open -----------------------------------------------------------------------
    def open(
        self, session_id: str | None, *, expiry: ExpiryPolicy | None = None
    ) -> Flow[Step, RequestSession]:
        """The session ``session_id`` (a cookie's value) names, or a new one.

        A malformed id never reaches the store; an unknown, expired or corrupt one is never
        adopted: the client gets a new id (session fixation protection). ``expiry``: this
        request's timeouts, instead of the config's.
        """
        expiry = expiry or self.expiry
        now = self.now_us()
        key = self.ids.storage_key_of(session_id)
        if session_id is None or key is None:
            return self._fresh(now, client_sent_id=bool(session_id))
        try:
            record: StoredSession | None = yield _store("read", key, now)
        except StoreError:
            if self.config.on_store_error == "raise":
                raise
            logger.exception("session store unavailable; serving a fresh, unsaved session")
            return self._fresh(now, client_sent_id=True, unavailable=True)
        if record is None and (yield _store("moved", key, now)):
            # The id a regenerate just replaced, from a request already on its way (another
            # tab, an XHR): a session that is never saved, so this response sets no cookie
            # and the browser keeps the new one.
            logger.info("a request came with the id of a regenerated session %s…", key[:8])
            if self.metrics is not None:
                self.metrics.lost("open", dropped=False)
            return self._fresh(now, client_sent_id=True, lost_key=key)
        if record is None or expiry.is_over(record.created_us, record.expires_us, now):
            return self._fresh(now, client_sent_id=True)
        try:
            plaintext, data_key = self._unseal(session_id, key, record)
            data = self.serializer.loads(plaintext)
        except CorruptSessionDataError as exc:
            logger.warning(
                "corrupt session data under key %s…, starting a new session: %s", key[:8], exc
            )
            return self._fresh(now, client_sent_id=True)
        stored = Stored(plaintext, record.version, record.expires_us)
        session = self.session_class(
            session_id,
            data,
            created_us=record.created_us,
            stored=stored,
            client_sent_id=True,
            owner=record.owner,
        )
        session.data_key = data_key
        # Read under a secret being rotated out: rewrite it at this request's save, so a
        # session that is only read does not stay sealed under a secret due to be dropped.
        session.reseal = self.cipher is not None and not self.cipher.is_current(record.data)
        return session

    def _unseal(self, session_id: str, key: str, record: StoredSession) -> tuple[bytes, Any]:
        """The serialized data in a stored record, and the key to seal its next write
        with. Raises :class:`~ormsession.errors.TamperedSessionError` (a corrupt-data
        error) for data that is not this session's, or not bound to this owner."""
        if self.cipher is None:
            return record.data, None
        return self.cipher.open(session_id, key, record.data, record.owner)

    def _sealed(self, session: RequestSession, plaintext: bytes) -> bytes:
        """``plaintext`` as the store must hold it for ``session``'s id."""
        cipher = self.cipher
        if cipher is None:
            return plaintext
        data_key = session.data_key
        if data_key is None:
            data_key = session.data_key = cipher.key(session.id)
        return cipher.seal(data_key, session.storage_key, plaintext, session.owner)

    def _fresh(
        self,
        now: int,
        *,
        client_sent_id: bool,
        unavailable: bool = False,
        lost_key: str | None = None,
    ) -> RequestSession:
        session = self.session_class(
            self.ids.generate(),
            created_us=now,
            client_sent_id=client_sent_id,
            unavailable=unavailable,
        )
        if lost_key is not None:
            session.mark_lost(session.id, now, key=lost_key)
        return session

    # -- save -----------------------------------------------------------------------
    def save(
        self,
        session: RequestSession,
        *,
        https: bool,
        cookie: CookieOptions | None = None,
        expiry: ExpiryPolicy | None = None,
    ) -> Flow[Step, str | None]:
        """Persist what this request changed; the answer is a ``Set-Cookie`` value or None.

        Writes nothing for a request that changed nothing, unless the expiry is due for a
        refresh (then a touch, not a rewrite). A stored session the request emptied ends:
        deleted, with a deleting cookie. Never brings back a session another request
        destroyed or regenerated (see :meth:`_lose`). With ``on_store_error="fresh"`` a
        store that fails the write leaves the session unsaved, logged, instead of raising.
        ``cookie`` and ``expiry``: this request's cookie options and timeouts, instead of
        the config's.
        """
        _check_session(session)
        if session.unavailable:
            return None
        if session.lost and not session.cleared:
            self._still_lost(session)
            return None
        rules = _Save(https, cookie or self.cookie, expiry or self.expiry)
        try:
            if session.lost:
                return (yield from self._log_out_lost(session, rules))
            if rules.cookie.expired_at_once:
                return (yield from self._save_nothing(session, rules))
            return (yield from self._save(session, rules))
        except StoreError:
            if self.config.on_store_error == "raise":
                raise
            logger.exception("session store unavailable; this request's session is not saved")
            return None

    def _save(self, session: RequestSession, rules: _Save) -> Flow[Step, str | None]:
        now = self.now_us()
        stored = session.stored
        if stored is None:
            if not dict.__len__(session) and not session.keep_when_empty:
                deleting = session.destroyed and session.client_sent_id
                return self._delete_cookie(rules) if deleting else None
            return (yield from self._create(session, now, rules))
        if session.cleared:
            return (yield from self._log_out_cleared(session, now, rules))
        data = self._changed_data(session, stored)
        if data is None and session.reseal:
            data = stored.data
        if data is not None:
            expires_us = rules.expiry.expires_at(session.created_us, now)
            key, version = session.storage_key, stored.version
            sealed = self._sealed(session, data)
            new_version = yield _store("update", key, sealed, expires_us, version, now)
            if new_version is None:
                return (yield from self._resolve_conflict(session, expires_us, now, rules))
            session.mark_stored(Stored(data, new_version, expires_us))
            session.reseal = False
            if self.metrics is not None:
                self.metrics.session_size("update", len(data))
            if not dict.__len__(session) and session.owner is None and not session.keep_when_empty:
                return (yield from self._end_emptied(session, now, rules))
            return self._cookie_after_write(session, now, rules)
        if rules.expiry.touch_due(session.created_us, stored.expires_us, now):
            return (yield from self._touch(session, now, rules))
        if session.needs_cookie:
            return self._cookie_after_write(session, now, rules)
        return None

    def _log_out_cleared(
        self, session: RequestSession, now: int, rules: _Save
    ) -> Flow[Step, str | None]:
        """The request called ``clear()`` on the stored session: Flask's and Starlette's
        logout. The stored session ends at once, as ``destroy`` would, following a rename
        another request made meanwhile (a login in another tab does not undo the logout),
        and whatever else the request wrote after clearing, such as a flash message, does
        not keep the user logged in: what it left goes into a new, unbound session."""
        yield _store("delete", session.storage_key)
        session.logged_out(self.ids.generate(), now)
        if not dict.__len__(session):
            return self._delete_cookie(rules) if session.client_sent_id else None
        return (yield from self._create(session, now, rules))

    def _log_out_lost(self, session: RequestSession, rules: _Save) -> Flow[Step, str | None]:
        """The request called ``clear()`` on a session another request had regenerated
        (a logout sent with the id a login just replaced, from a page loaded before it):
        it logs out as ``destroy()`` would, the delete following the rename to the live
        session. What the request stored after clearing is not saved (a lost session never
        is), and the client's cookie is deleted."""
        dropped = session.dirty
        yield from self.destroy(session)
        if dropped:
            logger.warning(
                "a logout through an id another request had replaced: what this request "
                "stored after it is not saved"
            )
            if self.metrics is not None:
                self.metrics.lost("save", dropped=True)
        return self._delete_cookie(rules)

    def _end_emptied(
        self, session: RequestSession, now: int, rules: _Save
    ) -> Flow[Step, str | None]:
        """The request emptied a stored session (``clear()``, the usual logout in Flask
        and Starlette apps, or its last key removed), and the compare-and-set of the empty
        data just succeeded, so no other request changed, regenerated or destroyed it
        since it was read (a login that raced this request has its session kept: this
        save lost the race instead). It ends as a destroy would: no empty record lingers,
        and the client's cookie is deleted."""
        yield _store("delete", session.storage_key)
        session.ended(self.ids.generate(), now)
        return self._delete_cookie(rules)

    def _save_nothing(self, session: RequestSession, rules: _Save) -> Flow[Step, str | None]:
        """A save under a cookie already expired when sent (Starlette's ``max_age<=0``):
        the session can never come back, so nothing is stored; the client still gets its
        (expired) cookie when the session holds data, as Starlette sends it."""
        if session.stored is not None:  # stored under other rules: take it out of the store
            yield _store("delete", session.storage_key)
            session.restart(self.ids.generate(), session.created_us)
        if not dict.__len__(session):
            deleting = session.destroyed and session.client_sent_id
            return self._delete_cookie(rules) if deleting else None
        if not (session.dirty or session.needs_cookie or session.may_have_changed_in_place()):
            return None  # this cookie went out already, for these very contents
        session.settled()
        if not self.config.set_cookie:
            return None
        session.cookie_sent()
        return rules.cookie.set_cookie(session.id, https=rules.https, now_us=self.now_us())

    def _changed_data(self, session: RequestSession, stored: Stored) -> bytes | None:
        """The bytes to write, or None when the data is as stored: nothing was changed, or
        it was changed back to equal values. A value changed in place is found here, by
        comparing serialized bytes."""
        if not session.dirty:
            if not session.may_have_changed_in_place():
                return None
            # Most requests that read a list or dict change nothing: a serializer's fast
            # "same as stored" check settles that without the full tagged encoding.
            unchanged = getattr(self.serializer, "unchanged", None)
            if unchanged is not None and unchanged(session.contents(), stored.data):
                return None
        data = self._encode(session.contents())
        if data == stored.data:
            session.mark_stored(stored)
            return None
        return data

    def _create(self, session: RequestSession, now: int, rules: _Save) -> Flow[Step, str | None]:
        yield from self._insert(session, now, rules.expiry)
        return self._cookie_after_write(session, now, rules)

    def _insert(self, session: RequestSession, now: int, expiry: ExpiryPolicy) -> Flow[Step, None]:
        """Store the session under a fresh key, with its owner if it is bound."""
        data = self._encode(session.contents())
        owner = session.owner
        until = None if owner is None else expiry.deadline(session.created_us)
        for _ in range(3):
            expires_us = expiry.expires_at(session.created_us, now)
            sealed = self._sealed(session, data)
            record = StoredSession(sealed, 1, session.created_us, expires_us, owner)
            if (yield _store("create", session.storage_key, record, now, until)):
                session.mark_stored(Stored(data, 1, expires_us))
                if self.metrics is not None:
                    self.metrics.session_size("create", len(data))
                return
            # A live record already holds this 256-bit key: astronomically unlikely, so
            # treat it as an attack or a bug and never write into it; take another id.
            logger.warning("session key collision on create; generating another id")
            session.restart(self.ids.generate(), session.created_us)
        raise StoreError("could not create a session under a fresh key")

    def _touch(self, session: RequestSession, now: int, rules: _Save) -> Flow[Step, str | None]:
        expires_us = rules.expiry.expires_at(session.created_us, now)
        if not (yield _store("touch", session.storage_key, expires_us, now)):
            self._lose(session, now, dropped=False, flow="save")
            return None
        session.touched(expires_us)
        return self._cookie_after_write(session, now, rules)

    def _resolve_conflict(
        self, session: RequestSession, expires_us: int, now: int, rules: _Save
    ) -> Flow[Step, str | None]:
        """Another request wrote since this one read: re-read, re-apply only this request's
        changes and compare-and-set again, up to ``max_attempts`` writes in all. A session
        gone meanwhile (destroyed, regenerated or expired elsewhere) stays gone."""
        attempts = 1  # the compare-and-set that conflicted
        key = session.storage_key
        while True:
            if attempts < self.config.max_attempts:
                yield _backoff(attempts)
            current: StoredSession | None = yield _store("read", key, now)
            if current is None:
                self._conflict("update", "lost")
                self._lose(session, now, dropped=True, flow="save")
                self._still_lost(session)
                return None
            if attempts >= self.config.max_attempts:
                self._conflict("update", "gave_up")
                raise ConflictError(
                    f"gave up saving session {key[:8]}… after {attempts} compare-and-set conflicts"
                )
            self._conflict("update", "retried")  # a merge, and another compare-and-set
            merged = self._merge(session, current)
            data = self._encode(merged)
            # The other writer may live by longer rules than this request (a "remember me"
            # login that made the session permanent): its expiry is never shortened here.
            expiry = max(expires_us, current.expires_us)
            sealed = self._sealed(session, data)
            new_version = yield _store("update", key, sealed, expiry, current.version, now)
            attempts += 1
            if new_version is not None:
                session.mark_stored(Stored(data, new_version, expiry), merged)
                if self.metrics is not None:
                    self.metrics.session_size("update", len(data))
                if not merged and session.owner is None and not session.keep_when_empty:
                    # each request removed the keys the other left
                    return (yield from self._end_emptied(session, now, rules))
                return self._cookie_after_write(session, now, rules)

    def _merge(self, session: RequestSession, current: StoredSession) -> dict[str, Any]:
        """The stored data with this request's changes applied on top.

        Changes are judged against the data this request loaded, key by key, on the
        serialized form (so 1 vs True vs 1.0 and in-place mutations all count). Keys this
        request did not touch keep the other writer's value; for a key both changed, this
        (later) save wins.
        """
        assert session.stored is not None
        base = self.serializer.loads(session.stored.data)
        mine = session.contents()
        try:
            plaintext, _ = self._unseal(session.id, session.storage_key, current)
            merged = self.serializer.loads(plaintext)
        except CorruptSessionDataError:
            logger.warning(
                "stored session %s… is corrupt; replacing it on save", session.storage_key[:8]
            )
            return mine
        for key, value in mine.items():
            if key not in base or self._value_bytes(value) != self._value_bytes(base[key]):
                merged[key] = value
        for key in base.keys() - mine.keys():
            merged.pop(key, None)
        return merged

    def _value_bytes(self, value: Any) -> bytes:
        return self.serializer.dumps({"": value})

    def _encode(self, data: dict[str, Any]) -> bytes:
        encoded = self.serializer.dumps(data)
        limit = self.config.max_data_bytes
        if len(encoded) > limit:
            if self.metrics is not None:
                self.metrics.too_large()
            raise SessionTooLargeError(len(encoded), limit)
        return encoded

    def _conflict(
        self,
        operation: Literal["update", "rename"],
        outcome: Literal["retried", "lost", "gave_up"],
    ) -> None:
        """A compare-and-set (``operation``) lost to another writer; ``outcome``: what this
        request did next (re-applied its changes and tried again, found the session gone,
        or gave up with :class:`ConflictError`)."""
        if self.metrics is not None:
            self.metrics.conflict(operation, outcome)

    def _lose(
        self,
        session: RequestSession,
        now: int,
        *,
        dropped: bool,
        flow: Literal["save", "regenerate", "login"],
    ) -> None:
        """Another request destroyed or regenerated this session while this one ran (a
        logout, a login in another tab): the session is lost to this request. Nothing it
        holds is written anywhere (no logout undone, no second live id, nothing readable
        through the old id), and its response sets no cookie: the browser keeps what the
        other request gave it, a deleting cookie or the new id. ``dropped``: this request
        had changes, now dropped (logged as a warning; its save raises
        :class:`SessionLostError` when the app opted in with ``on_lost_changes="raise"``)."""
        key = session.storage_key
        session.mark_lost(self.ids.generate(), now, key=key)
        if self.metrics is not None:
            self.metrics.lost(flow, dropped=dropped)
        log = logger.warning if dropped else logger.info
        log(
            "session %s… was destroyed or regenerated by another request%s",
            key[:8],
            "; this request's changes are dropped" if dropped else "",
        )

    def _still_lost(self, session: RequestSession) -> None:
        """A save of a session lost earlier in this request (:meth:`_lose`): nothing is
        written, and no cookie set."""
        if self.config.on_lost_changes == "raise":
            raise SessionLostError(
                "this session was destroyed or regenerated by another request during this "
                "one; nothing is saved"
            )
        if session.dirty:
            logger.warning(
                "the session was destroyed or regenerated by another request during this "
                "one; what this request wrote to it afterwards is not saved"
            )

    def _cookie_after_write(self, session: RequestSession, now: int, rules: _Save) -> str | None:
        # The id changed (new or regenerated), or a lifetime cookie must follow the
        # pushed-back expiry (beego never refreshed it, so active users got logged out).
        cookie = rules.cookie
        if not self.config.set_cookie or not (session.needs_cookie or cookie.max_age):
            return None
        session.cookie_sent()
        return cookie.set_cookie(session.id, https=rules.https, now_us=now)

    def _delete_cookie(self, rules: _Save) -> str | None:
        if not self.config.set_cookie:
            return None
        return rules.cookie.delete_cookie(https=rules.https)

    # -- regenerate, destroy ---------------------------------------------------------
    def regenerate(
        self, session: RequestSession, *, expiry: ExpiryPolicy | None = None
    ) -> Flow[Step, None]:
        """Give the session a new id now, keeping its data; the old id stops working."""
        _check_session(session)
        now = self.now_us()
        new_id = self.ids.generate()
        if session.stored is None:
            session.restart(new_id, session.created_us)
            return
        expires_us = (expiry or self.expiry).expires_at(session.created_us, now)
        if not (yield from self._move(session, new_id, expires_us, now)):
            # Destroyed, regenerated or expired meanwhile: its data must not live on under
            # a new id (a logout undone, two live copies of one session).
            self._lose(session, now, dropped=True, flow="regenerate")

    def _move(
        self,
        session: RequestSession,
        new_id: str,
        expires_us: int,
        now: int,
        owner: Owner | None = None,
        owner_until_us: int | None = None,
    ) -> Flow[Step, bool]:
        """Rename the stored session to ``new_id``'s key (bound to ``owner`` if given);
        False if it is gone. Encrypted data is re-sealed under the new id's key, and the
        rename is a compare-and-set on the version the new bytes were made from: a write
        that came in between is read and re-sealed, never lost."""
        assert session.stored is not None
        old_key, new_key = session.storage_key, storage_key(new_id)
        cipher = self.cipher
        if cipher is None:
            args: tuple[Any, ...] = (old_key, new_key, expires_us, now, owner, owner_until_us)
            if not (yield _store("rename", *args)):
                return False
            session.moved_to(new_id, expires_us, owner)
            return True
        data_key = cipher.key(new_id)
        plaintext, version = session.stored.data, session.stored.version
        for attempt in range(1, self.config.max_attempts + 1):
            sealed = cipher.seal(data_key, new_key, plaintext, owner or session.owner)
            args = (old_key, new_key, expires_us, now, owner, owner_until_us, sealed, version)
            if (yield _store("rename", *args)):
                session.moved_to(new_id, expires_us, owner)
                session.data_key = data_key
                return True
            # A write came in between (or a logout): re-seal what it wrote and rename again.
            last = attempt == self.config.max_attempts
            if not last:
                yield _backoff(attempt)
            current: StoredSession | None = yield _store("read", old_key, now)
            if current is None:
                self._conflict("rename", "lost")
                return False
            self._conflict("rename", "gave_up" if last else "retried")
            if last:
                break
            try:
                plaintext, _ = self._unseal(session.id, old_key, current)
            except CorruptSessionDataError:
                logger.warning(
                    "stored session %s… is corrupt; moving this request's data", old_key[:8]
                )
            version = current.version
        raise ConflictError(f"gave up regenerating session {old_key[:8]}… after conflicts")

    def login(
        self,
        session: RequestSession,
        user_id: object,
        *,
        user_agent: str | None = None,
        ip: str | None = None,
        expiry: ExpiryPolicy | None = None,
    ) -> Flow[Step, None]:
        """Regenerate the session and bind it to ``user_id``, in one atomic store step.

        The handle is kept by a second login of the same user. A login as *another* user
        ends the session and starts an empty one (as Django does): nothing of the previous
        user's session (a cart, a CSRF token, its handle) carries over. A new session is
        stored at once, so the binding holds even while its data is empty.

        Races: a session another request regenerated meanwhile (a double-submitted login
        form) is lost to this request, as in :meth:`regenerate`: the browser keeps the
        other request's new id, and there is still one live session. A session another
        request destroyed or revoked meanwhile is not brought back: the login continues in
        a fresh, empty session under a new handle (this request's credentials were checked,
        so the user is logged in; the old session's data and handle stay gone).
        """
        _check_session(session)
        user = user_key(user_id)
        expiry = expiry or self.expiry
        now = self.now_us()
        previous = session.owner
        if session.stored is not None and previous is not None and previous.user_id != user:
            yield _store("delete", session.storage_key)
            session.ended(self.ids.generate(), now)  # the fresh start the login continues in
        elif session.stored is not None:
            owner = owner_for(user, session.handle, user_agent, ip)
            until = expiry.deadline(session.created_us)
            expires_us = expiry.expires_at(session.created_us, now)
            old_key = session.storage_key
            if (yield from self._move(session, self.ids.generate(), expires_us, now, owner, until)):
                return
            if (yield _store("moved", old_key, now)):
                self._lose(session, now, dropped=True, flow="login")
                return
            logger.warning(
                "session %s… was destroyed by another request during a login; the login "
                "continues in a new session",
                old_key[:8],
            )
            if self.metrics is not None:
                self.metrics.lost("login", dropped=True)
            session.ended(self.ids.generate(), now)
        else:
            session.restart(self.ids.generate(), session.created_us)
        handle = session.handle if previous is not None and previous.user_id == user else None
        session.bind(owner_for(user, handle, user_agent, ip))
        try:
            yield from self._insert(session, now, expiry)
        except BaseException:
            session.unbind()  # the app sees the login fail: nothing is bound
            raise

    def sessions_of(
        self, user_id: object, *, current: RequestSession | None = None
    ) -> Flow[Step, list[UserSession]]:
        """The user's live sessions, the most recently seen first; ``current``: the
        requesting session, flagged ``current`` in the list."""
        user = user_key(user_id)
        now = self.now_us()
        owned: list[OwnedSession] = yield _store("sessions_of", user, now)
        here = current.storage_key if current is not None and current.stored else None
        # The store lists only what has not expired, by the expiry each session was last
        # written with: that follows the rules of its own requests (a Flask permanent
        # session's lifetime), which the config's timeouts here would not.
        listed = [UserSession.listed(item, current=item.key == here) for item in owned]
        listed.sort(key=lambda item: item.last_seen, reverse=True)
        return listed

    def revoke(self, user_id: object, handle: str) -> Flow[Step, bool]:
        """End the session of ``user_id`` named by ``handle``; whether there was one. A
        handle that is malformed or another user's ends nothing."""
        user = user_key(user_id)
        if not is_handle(handle):
            return False
        revoked: bool = yield _store("revoke", user, handle, self.now_us())
        return revoked

    def revoke_all(self, user_id: object, *, keep: RequestSession | None = None) -> Flow[Step, int]:
        """End every session of ``user_id`` ("log out everywhere") but ``keep`` (usually the
        requesting session, when it is that user's); how many ended."""
        user = user_key(user_id)
        keep_key = None
        if keep is not None and keep.stored is not None and keep.user_id == user:
            keep_key = keep.storage_key
        ended: int = yield _store("revoke_all", user, keep_key, self.now_us())
        return ended

    def destroy(self, session: RequestSession) -> Flow[Step, None]:
        """Delete the session now; it continues as a new empty one, and unless the request
        stores something in it, the next save deletes the client's cookie."""
        _check_session(session)
        # A session lost to another request's regenerate is still logged out: the store
        # follows the rename from the key this request knew.
        key = session.storage_key if session.stored is not None else session.lost_key
        if key is not None:
            yield _store("delete", key)
        session.ended(self.ids.generate(), self.now_us())

    # -- maintenance -----------------------------------------------------------------
    def count(self) -> Flow[Step, int]:
        """How many live sessions the store holds."""
        count: int = yield _store("count", self.now_us())
        return count

    def gc(
        self,
        *,
        batch_size: int | None = None,
        batch_seconds: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Flow[Step, int]:
        """Delete expired sessions, at most ``batch_size`` (default ``gc_batch_size``) per
        statement, until a batch comes back short; ``progress`` gets the running total
        after each batch.

        ``batch_seconds`` (default ``gc_batch_seconds``): how long one statement may take
        (and hold its row locks). Each batch is timed, and the next one sized by
        :func:`next_gc_batch`: a server slowed by a cold cache or a busy disk gets smaller
        statements instead of longer ones, a healthy one keeps the batch size.
        """
        limit = self.config.gc_batch_size if batch_size is None else batch_size
        seconds = self.config.gc_batch_seconds if batch_seconds is None else batch_seconds
        if not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"gc batch size must be a whole number >= 1, not {limit!r}")
        if seconds is not None and not seconds > 0:
            raise ConfigurationError(f"gc batch seconds must be > 0, not {seconds!r}")
        total, size = 0, limit
        while True:
            started = time.perf_counter()
            deleted: int = yield _store("delete_expired", self.now_us(), size)
            took = time.perf_counter() - started
            total += deleted
            if deleted and self.metrics is not None:
                self.metrics.gc_removed(deleted)
            if progress is not None and deleted:
                progress(total)
            if deleted < size:
                return total
            if seconds is not None:
                size = next_gc_batch(size, took, seconds, limit)


def next_gc_batch(size: int, took: float, batch_seconds: float, limit: int) -> int:
    """The size of the gc batch after one of ``size`` rows that took ``took`` seconds.

    Aimed at half of ``batch_seconds`` at the last batch's rate, so a batch twice as slow
    per row as the last one still fits; grown at most twofold a step (one fast batch is
    not a trend); between 1 and ``limit``.
    """
    fitting = limit if took <= 0 else int(size * batch_seconds / (2 * took))
    return max(1, min(limit, 2 * size, fitting))


def _check_session(session: object) -> None:
    """A plain dict (or a framework's own session) passed where the manager's session goes
    gets a TypeError naming the mistake, not an AttributeError from inside the policy."""
    if not isinstance(session, RequestSession):
        raise TypeError(
            "expected the session that open() returned (a RequestSession), "
            f"not a {type(session).__name__}"
        )
