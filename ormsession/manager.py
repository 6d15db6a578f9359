"""The synchronous session manager: the policy's flows, answered by one repository."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from ormsession.config import Config
from ormsession.cookies import CookieOptions, cookie_ids, cookie_value
from ormsession.errors import StoreError
from ormsession.expiry import ExpiryPolicy, utcnow
from ormsession.flows import run
from ormsession.gc import GcReport, GcRunner, count_expired, gc_lock
from ormsession.metrics import MetricsRecorder, make_sink, store_kind
from ormsession.policy import SessionPolicy, StoreCall
from ormsession.repositories.base import SessionRepository
from ormsession.session import RequestSession
from ormsession.users import UserSession

__all__ = ["ManagerBase", "SessionManager"]


class ManagerBase:
    """What the sync and async managers share: the configuration, the policy, and the
    metrics recorder (None unless the ``metrics`` option is set)."""

    #: Answers the policy's store calls: set once per manager (and per copy).
    _perform: Callable[[StoreCall], Any]

    def __init__(
        self,
        store: object,
        config: Config | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        session_class: type[RequestSession] = RequestSession,
    ) -> None:
        self.config = config if config is not None else Config()
        sink = make_sink(self.config.metrics)
        self.metrics = None if sink is None else MetricsRecorder(sink, store_kind(store))
        self.policy = SessionPolicy(
            self.config, clock=clock, session_class=session_class, metrics=self.metrics
        )
        self._owns_repository = True
        #: The gc runners this manager started (GcRunner or AsyncGcRunner): close stops them.
        self._gc_runners: list[Any] = []

    @property
    def cookie(self) -> CookieOptions:
        return self.policy.cookie

    @property
    def expiry(self) -> ExpiryPolicy:
        return self.policy.expiry

    @property
    def session_class(self) -> type[RequestSession]:
        return self.policy.session_class

    def session_id_from_cookie_header(self, header: str | None) -> str | None:
        """The session id in a raw ``Cookie`` request header, if the cookie is there (of
        several cookies of its name, the first well-formed one: see :func:`cookie_value`)."""
        if not header:
            return None
        return cookie_value(header, self.cookie.cookie_name, self.policy.ids.is_valid)

    def _later_cookie_ids(self, header: str | None) -> list[str]:
        """The well-formed ids under the cookie's name after the first (see cookie_ids)."""
        if not header:
            return []
        return cookie_ids(header, self.cookie.cookie_name, self.policy.ids.is_valid)[1:]

    def with_session_class(self, session_class: type[RequestSession]) -> Self:
        """This manager (a copy: its class, repository and configuration) opening
        ``session_class`` sessions. The copy never closes the repository: this one does."""
        derived = copy.copy(self)
        derived.policy = SessionPolicy(
            self.config, clock=self.policy.clock, session_class=session_class, metrics=self.metrics
        )
        derived._owns_repository = False
        derived._gc_runners = []
        derived._perform = derived._performer()  # the copy's calls go to its repository
        return derived

    def _performer(self) -> Callable[[StoreCall], Any]:
        """The function that answers the policy's store calls (see the subclasses)."""
        raise NotImplementedError


class SessionManager(ManagerBase):
    """Loads and saves sessions on one synchronous repository.

    Usually built by :func:`ormsession.configure`; construct it directly to pass a
    repository and a :class:`~ormsession.Config` yourself. Thread-safe if its repository
    is. ``clock`` (aware UTC datetimes) is for tests; ``session_class`` (a
    :class:`RequestSession` subclass) is what :meth:`open` returns.
    """

    def __init__(
        self,
        repository: SessionRepository,
        config: Config | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        session_class: type[RequestSession] = RequestSession,
        owns_repository: bool = True,
    ) -> None:
        super().__init__(repository, config, clock=clock, session_class=session_class)
        self.repository = repository
        self._owns_repository = owns_repository
        self._perform = self._performer()

    def open(
        self, session_id: str | None = None, *, expiry: ExpiryPolicy | None = None
    ) -> RequestSession:
        """The session ``session_id`` names (the cookie's value), or a new one.
        ``expiry``: this request's timeouts, instead of the config's (see :meth:`save`)."""
        return run(self.policy.open(session_id, expiry=expiry), self._perform)

    def open_from_cookie_header(self, header: str | None) -> RequestSession:
        """Like :meth:`open`, reading the id out of a raw ``Cookie`` header (of several
        ids under the cookie's name, the first that names a stored session: see
        :meth:`open_first`)."""
        first = self.session_id_from_cookie_header(header)
        return self.open_first(first, lambda: self._later_cookie_ids(header))

    def open_first(
        self,
        session_id: str | None,
        later_ids: Callable[[], Sequence[str]],
        *,
        expiry: ExpiryPolicy | None = None,
    ) -> RequestSession:
        """:meth:`open` ``session_id``; if it names no stored session, the first of
        ``later_ids()`` (the other ids of the session cookie's name a request carries: a
        browser sends every cookie of a name it holds, the longest path and then the oldest
        first, so another app's on a parent domain, or one left at an older path, comes
        before the app's own) that opens as anything but unknown: a stored session, or one
        lost to a regenerate or an outage (never saved, so its response cannot replace the
        cookie the browser should keep). Each is opened with :meth:`open`."""
        session = self.open(session_id, expiry=expiry)
        if session.id_unknown:
            for other in later_ids():
                candidate = self.open(other, expiry=expiry)
                if not candidate.id_unknown:
                    return candidate
        return session

    def save(
        self,
        session: RequestSession,
        *,
        https: bool = False,
        cookie: CookieOptions | None = None,
        expiry: ExpiryPolicy | None = None,
    ) -> str | None:
        """Persist the request's changes; return a ``Set-Cookie`` value, or None if the
        response needs none. ``https``: whether the request came over TLS (for Secure).

        ``cookie`` and ``expiry``: this request's cookie options and timeouts, instead of
        the config's, for an integration that reads its framework's settings per request
        (Flask's ``SESSION_COOKIE_*`` and ``PERMANENT_SESSION_LIFETIME``).
        """
        flow = self.policy.save(session, https=https, cookie=cookie, expiry=expiry)
        return run(flow, self._perform)

    def regenerate(self, session: RequestSession, *, expiry: ExpiryPolicy | None = None) -> None:
        """New id, same data, old id gone (call on login, against session fixation).
        ``expiry``: this request's timeouts, as given to :meth:`save`."""
        run(self.policy.regenerate(session, expiry=expiry), self._perform)

    def login(
        self,
        session: RequestSession,
        user_id: str | int,
        *,
        user_agent: str | None = None,
        ip: str | None = None,
        expiry: ExpiryPolicy | None = None,
    ) -> None:
        """Log ``session`` in as ``user_id``: a regenerate (new id, old id worthless) that
        also binds it to the user, atomically, so it is listed by :meth:`sessions_of` and
        ended by :meth:`revoke_all`. ``user_agent`` and ``ip``: shown in that list."""
        flow = self.policy.login(session, user_id, user_agent=user_agent, ip=ip, expiry=expiry)
        run(flow, self._perform)

    def sessions_of(
        self, user_id: str | int, *, current: RequestSession | None = None
    ) -> list[UserSession]:
        """The user's live sessions, the most recently seen first (``current`` flagged)."""
        return run(self.policy.sessions_of(user_id, current=current), self._perform)

    def revoke(self, user_id: str | int, handle: str) -> bool:
        """End one session of the user (by its handle, from :meth:`sessions_of`) at once,
        for every request, including one in flight; whether there was one."""
        return run(self.policy.revoke(user_id, handle), self._perform)

    def revoke_all(self, user_id: str | int, *, keep: RequestSession | None = None) -> int:
        """Log the user out everywhere but ``keep`` (e.g. the current session); how many
        sessions ended."""
        return run(self.policy.revoke_all(user_id, keep=keep), self._perform)

    def destroy(self, session: RequestSession) -> None:
        """Delete the session from the store now (call on logout)."""
        run(self.policy.destroy(session), self._perform)

    def count(self) -> int:
        """How many live (unexpired) sessions the store holds."""
        return run(self.policy.count(), self._perform)

    def gc(
        self,
        *,
        batch_size: int | None = None,
        batch_seconds: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete expired sessions in batches; return how many (0 on TTL stores, and 0 when
        another process holds the gc lock: see :meth:`run_gc`).

        Each batch is its own short statement of at most ``batch_size`` rows (default
        ``gc_batch_size``), so no lock is held for long; a batch slower than
        ``batch_seconds`` (default ``gc_batch_seconds``) makes the next ones smaller.
        ``progress`` is called with the running total after each batch.
        """
        report = self.run_gc(batch_size=batch_size, batch_seconds=batch_seconds, progress=progress)
        return report.removed

    def run_gc(
        self,
        *,
        dry_run: bool = False,
        batch_size: int | None = None,
        batch_seconds: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> GcReport:
        """One coordinated gc run: :meth:`gc` under the store's gc lock, which one process
        at a time holds (PostgreSQL advisory lock, MySQL ``GET_LOCK``, SQLite file lock);
        where another holds it, nothing is deleted and the report says so. ``dry_run``:
        count what would be deleted (no lock needed), delete nothing."""
        if dry_run:
            return GcReport(self._count_expired(), dry_run=True)
        with gc_lock(self.repository) as held:
            if not held:
                return GcReport(0, lock_held_elsewhere=True)
            flow = self.policy.gc(
                batch_size=batch_size, batch_seconds=batch_seconds, progress=progress
            )
            return GcReport(run(flow, self._perform))

    def _count_expired(self) -> int:
        counted = count_expired(self.repository, self.policy.now_us())
        if counted is None:
            raise StoreError(f"{type(self.repository).__qualname__} cannot count expired sessions")
        return int(counted)

    def start_gc(
        self,
        every: float | str | timedelta,
        *,
        batch_size: int | None = None,
        batch_seconds: float | None = None,
    ) -> GcRunner:
        """Run :meth:`run_gc` every ``every`` (seconds, a timedelta, or a duration such as
        ``"10m"``) in a background thread, from now until the runner's ``stop()`` or this
        manager's :meth:`close`. Start one on every node: the gc lock lets one of them
        delete per round, the others skip."""
        options = {"batch_size": batch_size, "batch_seconds": batch_seconds}
        runner = GcRunner(self, every, options).start()
        self._gc_runners.append(runner)
        return runner

    def close(self) -> None:
        """Release the repository's resources (never an engine or client the app passed);
        stop the gc runners this manager started."""
        for runner in self._gc_runners:
            runner.stop()
        if self._owns_repository:
            self.repository.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _performer(self) -> Callable[[StoreCall], Any]:
        # Chosen once: without metrics a store call is the bare repository call it always
        # was (no clock read, no branch); with them, the same call, timed.
        return self._call_store if self.metrics is None else self.metrics.timed(self._call_store)

    def _call_store(self, call: StoreCall) -> Any:
        return getattr(self.repository, call.method)(*call.args)
