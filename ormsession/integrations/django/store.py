"""Django's ``SessionBase`` contract, kept by ormsession's managers.

Each operation (load, save, create, exists, delete, flush, cycle_key) is written once, as
a flow that yields the manager calls it needs (:class:`ManagerCall`); the synchronous
methods answer them with the process's :class:`~ormsession.SessionManager`, the ``a*``
methods await the event loop's :class:`~ormsession.AsyncSessionManager`. No blocking call
runs behind ``sync_to_async``.

The session cache (Django's ``_session_cache``) is always a :class:`DjangoSession`, the
:class:`~ormsession.RequestSession` the manager loaded or made: what a request changed,
and the version it read, travel with it to the save, so concurrent requests that change
different keys both keep their changes, and a session another request deleted is never
brought back (Django's ``UpdateError``, which the middleware turns into
``SessionInterrupted``).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import replace
from datetime import timedelta
from typing import Any, NamedTuple

from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError

from ormsession.cookies import CookieOptions
from ormsession.errors import SessionLostError, StoreError
from ormsession.expiry import LONGEST_DURATION, ExpiryPolicy, now_us
from ormsession.flows import arun, run
from ormsession.ids import SessionIds
from ormsession.integrations.django import _managers
from ormsession.session import RequestSession

__all__ = ["DjangoSession", "ManagerCall", "SessionStore"]

logger = logging.getLogger("ormsession")

_EXPIRY_KEY = "_session_expiry"
#: How many distinct lifetimes have their expiry rules kept (one or two in an app).
_CACHE_LIMIT = 64


class DjangoSession(RequestSession):
    """A session as Django keeps it: stored even when empty (``create()`` stores one;
    ``flush()``, not emptying, is the logout)."""

    keep_when_empty = True


class ManagerCall(NamedTuple):
    """One call a flow needs: ``manager.<method>(*args, **kwargs)``, or with
    ``on_repository`` the manager's store's."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}  # noqa: RUF012 - never mutated
    on_repository: bool = False


Flow = Generator[ManagerCall, Any, Any]


def _perform_sync(call: ManagerCall) -> Any:
    manager = _managers.sync_manager()
    target: Any = manager.repository if call.on_repository else manager
    return getattr(target, call.method)(*call.args, **call.kwargs)


async def _arun(flow: Flow) -> Any:
    manager = await _managers.async_manager()

    def perform(call: ManagerCall) -> Any:
        target: Any = manager.repository if call.on_repository else manager
        return getattr(target, call.method)(*call.args, **call.kwargs)

    return await arun(flow, perform)


_expiries: dict[tuple[int, Any], ExpiryPolicy] = {}


def _save_expiry(age: int) -> ExpiryPolicy:
    """The rules of a save that gives the session ``age`` more seconds (Django's expiry
    age): idle timeout ``age``; ormsession's absolute timeout, never shorter than ``age``."""
    base = _managers.config().expiry
    # Django takes any date (year 9999 for "never"); the stores hold 1000 years, as long.
    age = min(age, int(LONGEST_DURATION.total_seconds()))
    cache_key = (age, base)
    policy = _expiries.get(cache_key)
    if policy is None:
        absolute = base.absolute_timeout
        lifetime = timedelta(seconds=age)
        policy = ExpiryPolicy(
            idle_timeout=lifetime,
            absolute_timeout=None if absolute is None else max(absolute, lifetime),
            refresh_ratio=base.refresh_ratio,
        )
        if len(_expiries) >= _CACHE_LIMIT:
            _expiries.clear()
        _expiries[cache_key] = policy
    return policy


def _ids() -> SessionIds:
    """How ids are made and checked under the current configuration (no I/O)."""
    config = _managers.config()
    return SessionIds(prefix=config.id_prefix, nbytes=config.id_bytes)


def _open_expiry() -> ExpiryPolicy:
    """The rules a load judges a stored session by: its stored expiry (written by the last
    save with that save's rules, the absolute deadline included) and nothing else, so a
    session given a longer life by ``set_expiry()`` is not cut short."""
    base = _managers.config().expiry
    return ExpiryPolicy(
        idle_timeout=base.idle_timeout, absolute_timeout=None, refresh_ratio=base.refresh_ratio
    )


class SessionStore(SessionBase):
    """``SESSION_ENGINE = "ormsession.integrations.django"``: Django's sessions in an
    ormsession store.

    Session keys are ormsession ids (256 bits, stored hashed); a key the client chose, or
    one the store does not hold, is never adopted: loading it gives a new session with a
    new key. ``cycle_key()`` is ormsession's regenerate (the old key stops working at
    once), ``flush()`` its destroy, ``clear_expired()`` (the ``clearsessions`` command)
    its batched gc.
    """

    # Django's (a property that refuses keys shorter than 8 characters, and the cache).
    _session_key: str | None
    _session_cache: DjangoSession

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        #: ``clear()`` before the session was loaded: the stored session under this key
        #: is emptied (and given what was set since) at the next save, so ``clear()``
        #: itself needs no store access, as in Django.
        self._replace_key: str | None = None

    # -- keys ---------------------------------------------------------------------------
    def _get_new_session_key(self) -> str:
        return _ids().generate()

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()

    # -- the session cache ----------------------------------------------------------------
    def _get_session(self, no_load: bool = False) -> DjangoSession:
        return run(self._cache_flow(no_load), _perform_sync)  # type: ignore[no-any-return]

    async def _aget_session(self, no_load: bool = False) -> DjangoSession:
        return await _arun(self._cache_flow(no_load))  # type: ignore[no-any-return]

    _session = property(_get_session)

    def _cache_flow(self, no_load: bool = False) -> Flow:
        self.accessed = True
        cache = getattr(self, "_session_cache", None)
        if cache is None:
            if self.session_key is None or no_load:
                cache = yield ManagerCall("open")
            else:
                cache = yield from self._load_flow()
            self._session_cache = cache
        return cache

    def _settled_flow(self, no_load: bool = False) -> Flow:
        """The cache, with a pending ``clear()`` of the stored session applied."""
        session = yield from self._cache_flow(no_load)
        key, self._replace_key = self._replace_key, None
        if key is None:
            return session
        stored = yield ManagerCall("open", (key,), {"expiry": _open_expiry()})
        if stored.lost:
            # A login elsewhere renamed it meanwhile: saving what was set since under a
            # new key would send a cookie over the login's (UpdateError, as for a session
            # that was read before the rename).
            self._session_key = None
            self._session_cache = stored
            return stored
        if stored.is_new:  # gone meanwhile: what was set since the clear() starts anew
            self._session_key = None
            return session
        stored.clear()
        stored.update(session.contents())
        self._session_cache = stored
        return stored

    def is_empty(self) -> bool:
        # A key a login replaced moments ago (a request sent just before the login's
        # response arrived) loads as a lost session: not empty, so the middleware does not
        # delete the cookie, which the browser holds for the new key by now.
        cache = getattr(self, "_session_cache", None)
        if cache is not None and cache.lost and self._session_key is None:
            return False
        return bool(super().is_empty())

    def clear(self) -> None:
        cache = getattr(self, "_session_cache", None)
        if cache is not None:
            cache.clear()
        else:
            self._replace_key = self.session_key
            self._session_cache = self._fresh_unloaded()
        self.accessed = True
        self.modified = True

    def _fresh_unloaded(self) -> DjangoSession:
        """A new, empty session, made without asking the store anything (so ``clear()``
        is safe in async code too)."""
        return DjangoSession(self._get_new_session_key(), created_us=now_us())

    # -- load, exists -------------------------------------------------------------------
    def load(self) -> DjangoSession:
        return run(self._load_flow(), _perform_sync)  # type: ignore[no-any-return]

    async def aload(self) -> DjangoSession:
        return await _arun(self._load_flow())  # type: ignore[no-any-return]

    def _load_flow(self) -> Flow:
        session = yield ManagerCall("open", (self.session_key,), {"expiry": _open_expiry()})
        # Unknown, expired, malformed: never adopted. Unread (a store outage, with
        # on_store_error="fresh"): the key stays, so the middleware neither deletes the
        # browser's cookie nor replaces it; the empty session served is never saved.
        if session.is_new and not session.unavailable:
            self._session_key = None
        return session

    def exists(self, session_key: str | None) -> bool:
        return run(self._exists_flow(session_key), _perform_sync)  # type: ignore[no-any-return]

    async def aexists(self, session_key: str | None) -> bool:
        return await _arun(self._exists_flow(session_key))  # type: ignore[no-any-return]

    def _exists_flow(self, session_key: str | None) -> Flow:
        if not session_key:
            return False
        session = yield ManagerCall("open", (session_key,), {"expiry": _open_expiry()})
        return not session.is_new

    # -- create, save ---------------------------------------------------------------------
    def create(self) -> None:
        run(self._create_flow(), _perform_sync)

    async def acreate(self) -> None:
        await _arun(self._create_flow())

    def _create_flow(self) -> Flow:
        """A new session under a new key, stored now (with the data set so far)."""
        cache = getattr(self, "_session_cache", None)
        self._replace_key = None
        session = yield ManagerCall("open")
        if cache is not None:
            session.update(cache.contents())
        self._session_cache = session
        yield from self._write_flow(session)
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        run(self._save_flow(must_create), _perform_sync)

    async def asave(self, must_create: bool = False) -> None:
        await _arun(self._save_flow(must_create))

    def _save_flow(self, must_create: bool) -> Flow:
        session = yield from self._settled_flow(no_load=must_create)
        if must_create and not session.is_new:
            raise CreateError
        if session.lost and not must_create:
            # Another request destroyed or regenerated it (a logout, a login elsewhere):
            # writing it now would bring it back.
            raise UpdateError
        if session.lost:
            session = yield ManagerCall("open")
            self._session_cache = session
        read = session.stored
        yield from self._write_flow(session)
        if read is not None and session.stored is read:
            yield from self._unwritten_flow(session)

    def _unwritten_flow(self, session: DjangoSession) -> Flow:
        """A save that wrote nothing (nothing changed, no expiry push due) learnt nothing
        of the store, yet Django's middleware sends the key again (``SESSION_SAVE_EVERY_
        REQUEST``): if another request destroyed or regenerated the session meanwhile,
        that cookie would replace the browser's new one (a login in another tab undone).
        So the key is read once more; gone is ``UpdateError``, as in Django's backends."""
        storage_key = session.storage_key
        try:
            record = yield ManagerCall("read", (storage_key, now_us()), on_repository=True)
        except StoreError:
            if _managers.config().on_store_error == "raise":
                raise
            # As the save itself would: an outage fails no request in this mode.
            logger.exception("session store unavailable; the session key is sent unchecked")
            return
        if record is None:
            self._session_key = None
            raise UpdateError

    def _write_flow(self, session: DjangoSession) -> Flow:
        age = self.get_expiry_age(expiry=dict.get(session, _EXPIRY_KEY))
        options: dict[str, Any] = {}
        if age > 0:
            options["expiry"] = _save_expiry(age)
        else:
            # An expiry in the past (set_expiry() with a negative delta or a past date):
            # the session ends now, as a cookie expired when sent does.
            options["cookie"] = _expired_cookie(_managers.config().cookie)
        try:
            yield ManagerCall("save", (session,), options)
        except SessionLostError as exc:  # on_lost_changes="raise"
            self._session_key = None
            raise UpdateError from exc
        if session.unavailable and self._session_key is not None:
            return  # nothing was saved: the browser keeps its cookie (see _load_flow)
        if session.lost:
            self._session_key = None
            raise UpdateError
        self._session_key = session.id

    # -- delete, flush, cycle_key ---------------------------------------------------------
    def delete(self, session_key: str | None = None) -> None:
        run(self._delete_flow(session_key), _perform_sync)

    async def adelete(self, session_key: str | None = None) -> None:
        await _arun(self._delete_flow(session_key))

    def _delete_flow(self, session_key: str | None) -> Flow:
        """Delete the stored session under ``session_key`` (default: this one's). This
        object's data stays as it is (Django's contract): saving it afterwards raises
        ``UpdateError``, it is not stored again."""
        key = self.session_key if session_key is None else session_key
        if not key:
            return
        storage_key = _ids().storage_key_of(key)
        if storage_key is not None:
            yield ManagerCall("delete", (storage_key,), on_repository=True)

    def flush(self) -> None:
        run(self._flush_flow(), _perform_sync)

    async def aflush(self) -> None:
        await _arun(self._flush_flow())

    def _flush_flow(self) -> Flow:
        """The logout: the stored session is destroyed (even if another request renamed
        it meanwhile), and this one continues as a new, empty session with no key."""
        cache = getattr(self, "_session_cache", None)
        if self._replace_key is not None:
            yield from self._delete_flow(self._replace_key)
            self._replace_key = None
        if cache is None:
            yield from self._delete_flow(None)
            cache = yield ManagerCall("open")
        else:
            yield ManagerCall("destroy", (cache,))
        self._session_cache = cache
        self._session_key = None
        self.accessed = self.modified = True

    def cycle_key(self) -> None:
        run(self._cycle_flow(), _perform_sync)

    async def acycle_key(self) -> None:
        await _arun(self._cycle_flow())

    def _cycle_flow(self) -> Flow:
        """A new key for the same data; the old key stops working at once (an id planted
        before a login stays useless). A session another request destroyed meanwhile is
        not brought back: the data stays gone, and this one continues as a new session."""
        session = yield from self._settled_flow()
        if not session.lost:
            age = self.get_expiry_age(expiry=dict.get(session, _EXPIRY_KEY))
            options: dict[str, Any] = {"expiry": _save_expiry(age)} if age > 0 else {}
            yield ManagerCall("regenerate", (session,), options)
        if session.lost:
            session = yield ManagerCall("open")
            self._session_cache = session
        self._session_key = session.id
        self.modified = True

    # -- maintenance ----------------------------------------------------------------------
    @classmethod
    def clear_expired(cls) -> None:
        """Delete expired sessions in batches (the ``clearsessions`` command)."""
        _managers.sync_manager().gc()

    @classmethod
    async def aclear_expired(cls) -> None:
        await (await _managers.async_manager()).gc()


def _expired_cookie(base: CookieOptions) -> CookieOptions:
    """``base`` expired when sent: the policy then stores nothing, and takes the session
    out of the store if it was there."""
    return replace(base, max_age=timedelta(0))


def login_flow(
    store: SessionStore, user_id: str | int, user_agent: str | None, ip: str | None
) -> Flow:
    """Bind ``store``'s session to ``user_id`` (ormsession's login: a regenerate that
    also lists the session among the user's, for "log out everywhere")."""
    session = yield from store._settled_flow()
    if session.lost:
        session = yield ManagerCall("open")
    age = store.get_expiry_age(expiry=dict.get(session, _EXPIRY_KEY))
    options: dict[str, Any] = {"user_agent": user_agent, "ip": ip}
    if age > 0:
        options["expiry"] = _save_expiry(age)
    yield ManagerCall("login", (session, user_id), options)
    store._session_cache = session
    store._session_key = session.id
    store.modified = True
