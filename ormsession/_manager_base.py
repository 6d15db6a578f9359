"""What the sync and async managers share: options, the policy, cookie helpers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ormsession.cookies import CookieOptions, parse_cookie_header
from ormsession.errors import ConfigurationError
from ormsession.expiry import ExpiryPolicy, utcnow
from ormsession.ids import DEFAULT_ID_BYTES, SessionIds
from ormsession.policy import DEFAULT_MAX_DATA_BYTES, Flow, OnStoreError, SessionPolicy
from ormsession.serializers import JSONSerializer, Serializer
from ormsession.session import RequestSession

__all__ = ["ManagerBase"]

DEFAULT_GC_BATCH_SIZE = 1000
#: How long one gc statement may take before the next is made smaller (seconds).
DEFAULT_GC_BATCH_SECONDS = 0.25


class ManagerBase:
    """Options and policy; subclasses add the I/O (sync or async)."""

    def __init__(
        self,
        *,
        cookie: CookieOptions | None = None,
        expiry: ExpiryPolicy | None = None,
        serializer: Serializer | None = None,
        id_prefix: str = "",
        id_bytes: int = DEFAULT_ID_BYTES,
        max_data_bytes: int = DEFAULT_MAX_DATA_BYTES,
        max_attempts: int = 10,
        on_store_error: OnStoreError = "raise",
        set_cookie: bool = True,
        gc_batch_size: int = DEFAULT_GC_BATCH_SIZE,
        gc_batch_seconds: float | None = DEFAULT_GC_BATCH_SECONDS,
        clock: Callable[[], datetime] = utcnow,
        session_class: type[RequestSession] = RequestSession,
    ) -> None:
        self.policy = SessionPolicy(
            cookie=cookie or CookieOptions(),
            expiry=expiry or ExpiryPolicy(),
            serializer=serializer or JSONSerializer(),
            ids=SessionIds(prefix=id_prefix, nbytes=id_bytes),
            max_data_bytes=max_data_bytes,
            max_attempts=max_attempts,
            on_store_error=on_store_error,
            set_cookie=set_cookie,
            clock=clock,
            session_class=session_class,
        )
        self.gc_batch_size = gc_batch_size
        self.gc_batch_seconds = gc_batch_seconds

    @property
    def cookie(self) -> CookieOptions:
        return self.policy.cookie

    @property
    def expiry(self) -> ExpiryPolicy:
        return self.policy.expiry

    def _gc(
        self,
        batch_size: int | None,
        batch_seconds: float | None,
        progress: Callable[[int], None] | None,
    ) -> Flow[int]:
        """The gc flow for a call's arguments (None: the manager's own settings)."""
        limit = self.gc_batch_size if batch_size is None else batch_size
        seconds = self.gc_batch_seconds if batch_seconds is None else batch_seconds
        if not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"gc batch size must be a whole number >= 1, not {limit!r}")
        if seconds is not None and not seconds > 0:
            raise ConfigurationError(f"gc batch seconds must be > 0, not {seconds!r}")
        return self.policy.gc(limit, progress, batch_seconds=seconds)

    def session_id_from_cookie_header(self, header: str | None) -> str | None:
        """The session id in a raw ``Cookie`` request header, if the cookie is there."""
        return parse_cookie_header(header).get(self.policy.cookie.cookie_name)
