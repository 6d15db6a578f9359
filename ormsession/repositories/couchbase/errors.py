"""Turning Couchbase SDK exceptions into ormsession's, without leaking secrets."""

from __future__ import annotations

from couchbase.exceptions import (
    AmbiguousTimeoutException,
    AuthenticationException,
    BucketNotFoundException,
    CouchbaseException,
    MissingConnectionException,
    QuotaLimitedException,
    RateLimitedException,
    RequestCanceledException,
    ServiceUnavailableException,
    TemporaryFailException,
    TimeoutException,
    UnAmbiguousTimeoutException,
)

from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.urls import scrub

__all__ = ["wrap_couchbase_error"]

#: "The store cannot serve us right now (or ever, with these credentials)", with the most
#: likely cause, since the SDK's own messages are terse ("Failed to connect").
_UNAVAILABLE: tuple[tuple[type[CouchbaseException], str], ...] = (
    (AuthenticationException, "wrong username or password, or the user lacks access"),
    (BucketNotFoundException, "no such bucket, or the user may not access it"),
    (
        UnAmbiguousTimeoutException,
        "no answer in time: host or port unreachable, or the scope/collection missing",
    ),
    (AmbiguousTimeoutException, "no answer in time; the write may or may not have happened"),
    (TimeoutException, "no answer in time"),
    (ServiceUnavailableException, "the key-value service is unavailable"),
    (MissingConnectionException, "not connected"),
    (RequestCanceledException, "request cancelled (connection closed)"),
    (TemporaryFailException, "the server is temporarily overloaded"),
    (RateLimitedException, "rate limited by the server"),
    (QuotaLimitedException, "over a server quota"),
)


def wrap_couchbase_error(
    exc: CouchbaseException, *, where: str, operation: str, secret: str | None = None
) -> StoreError:
    """An ormsession error for ``exc``. ``where`` names the store (a redacted URL);
    ``secret`` (the password) is scrubbed from the SDK's text in case it ever echoes it.

    The SDK's full repr carries an error context (document keys, opaque ids, source file
    lines); only its short message is kept, so errors stay one readable line.
    """
    detail = scrub(f"{type(exc).__name__}: {_message(exc)}", secret)
    if _collection_unknown(exc):
        return StoreUnavailableError(
            f"session store {where} unavailable during {operation}: {detail} (the scope or "
            "collection does not exist, or the user may not access it)"
        )
    for kind, cause in _UNAVAILABLE:
        if isinstance(exc, kind):
            return StoreUnavailableError(
                f"session store {where} unavailable during {operation}: {detail} ({cause})"
            )
    return StoreError(f"session store {where} failed during {operation}: {detail}")


def _collection_unknown(exc: CouchbaseException) -> bool:
    """The SDK times out on an unknown collection, retrying "collection outdated" until its
    deadline; its error context says so, which makes a far better message."""
    try:
        reasons = exc.error_context.retry_reasons or ()
    except Exception:  # an SDK detail, not an API: never fail the wrapping over it
        return False
    return isinstance(exc, TimeoutException | UnAmbiguousTimeoutException) and any(
        "collection_outdated" in str(reason) for reason in reasons
    )


def _message(exc: CouchbaseException) -> str:
    try:
        message = exc.message
    except Exception:  # the SDK builds it lazily from its C++ core; never fail here
        message = None
    return (message or "").splitlines()[0] if message else "no details"
