"""The synchronous session manager: policy from :mod:`ormsession.policy`, I/O on a repository."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from ormsession._manager_base import ManagerBase
from ormsession.errors import StoreError
from ormsession.policy import CompareAndSet, Flow
from ormsession.repositories.base import SessionRepository
from ormsession.session import RequestSession

__all__ = ["SessionManager"]

T = TypeVar("T")


class SessionManager(ManagerBase):
    """Loads and saves sessions on one synchronous repository.

    Usually built by :func:`ormsession.configure`; construct it directly to pass a
    repository and typed options yourself. Thread-safe if its repository is.
    """

    def __init__(
        self, repository: SessionRepository, *, owns_repository: bool = True, **options: Any
    ) -> None:
        super().__init__(**options)
        self.repository = repository
        self._owns_repository = owns_repository

    def open(self, session_id: str | None = None) -> RequestSession:
        """The session ``session_id`` names (the cookie's value), or a new one."""
        policy = self.policy
        now = policy.now_us()
        key = policy.key_to_read(session_id)
        if key is None:
            return policy.fresh(session_id, now)
        assert session_id is not None
        try:
            record = self.repository.read(key, now)
        except StoreError as exc:
            return policy.unreadable(exc, session_id, now)
        return policy.opened(session_id, key, record, now)

    def open_from_cookie_header(self, header: str | None) -> RequestSession:
        """Like :meth:`open`, reading the id out of a raw ``Cookie`` header."""
        return self.open(self.session_id_from_cookie_header(header))

    def save(self, session: RequestSession, *, https: bool = False) -> str | None:
        """Persist the request's changes; return a ``Set-Cookie`` value, or None if the
        response needs none. ``https``: whether the request came over TLS (for Secure)."""
        policy = self.policy
        answer = policy.save(session, https=https)
        if isinstance(answer, CompareAndSet):
            # Most writes: one compare-and-set, made without driving a flow.
            answer = policy.written(answer, self.repository.update(*answer.args))
        if answer is None or isinstance(answer, str):
            return answer
        return self._run(answer)  # a conflict, a create, a touch: the store first

    def regenerate(self, session: RequestSession) -> None:
        """New id, same data, old id gone (call on login, against session fixation)."""
        self._run(self.policy.regenerate(session))

    def destroy(self, session: RequestSession) -> None:
        """Delete the session from the store now (call on logout)."""
        self._run(self.policy.destroy(session))

    def count(self) -> int:
        """How many live (unexpired) sessions the store holds."""
        return self._run(self.policy.count())

    def gc(
        self,
        *,
        batch_size: int | None = None,
        batch_seconds: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete expired sessions in batches; return how many (0 on TTL stores).

        Each batch is its own short statement of at most ``batch_size`` rows (default
        ``gc_batch_size``), so no lock is held for long; a batch slower than
        ``batch_seconds`` (default ``gc_batch_seconds``) makes the next ones smaller.
        ``progress`` is called with the running total after each batch.
        """
        return self._run(self._gc(batch_size, batch_seconds, progress))

    def close(self) -> None:
        """Release the repository's resources (never an engine or client the app passed)."""
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

    def _run(self, flow: Flow[T]) -> T:
        """Answer a policy flow's store calls with this repository."""
        repository = self.repository
        try:
            call = next(flow)
            while True:
                try:
                    result = getattr(repository, call.method)(*call.args)
                except Exception as exc:
                    call = flow.throw(exc)
                else:
                    call = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
