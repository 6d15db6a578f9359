"""The one error hierarchy of ormsession.

Every error the library raises on purpose derives from :class:`OrmsessionError`, so an
application can catch one type. Driver errors are wrapped ``from`` the original exception,
with messages that never contain a password.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "CorruptSessionDataError",
    "MissingDriverError",
    "OrmsessionError",
    "SchemaError",
    "SerializationError",
    "SessionLostError",
    "SessionTooLargeError",
    "StoreError",
    "StoreUnavailableError",
    "TamperedSessionError",
    "UserIdError",
]


class OrmsessionError(Exception):
    """Base class of every error raised by ormsession."""


class ConfigurationError(OrmsessionError, ValueError):
    """Raised at configuration time: a bad URL, an unknown scheme, an invalid option value."""


class MissingDriverError(ConfigurationError):
    """Raised when a store's driver is not installed; the message names the extra to install."""


class SchemaError(OrmsessionError):
    """Raised at start-up when the SQL table is missing or at an older revision.

    The message names the command that fixes it (``ormsession db upgrade``).
    """


class UserIdError(OrmsessionError, ValueError):
    """Raised by ``login``, ``sessions_of``, ``revoke`` and ``revoke_all`` for a user id that
    is not a non-empty string (or an int) of at most 255 characters without control
    characters."""


class StoreError(OrmsessionError):
    """Raised when the store fails an operation (a driver error, wrapped)."""


class StoreUnavailableError(StoreError):
    """Raised when the store cannot be reached: refused, timed out, wrong credentials."""


class SerializationError(OrmsessionError):
    """Raised by ``save`` when a session value cannot be serialized (unsupported type)."""


class CorruptSessionDataError(OrmsessionError):
    """Raised by a serializer for stored bytes it cannot decode.

    The manager never lets this escape: it logs a warning and starts a new session.
    """


class TamperedSessionError(CorruptSessionDataError):
    """Raised when sealed session data fails to open: changed, moved to another key, or
    sealed under a secret that is no longer configured. The manager treats it as corrupt
    data (a fresh session and a logged warning); it never reaches the app."""


class SessionTooLargeError(OrmsessionError):
    """Raised by ``save`` when the serialized session is over ``max_data_bytes``, or over
    what the store itself accepts in one write (MySQL's ``max_allowed_packet``).

    Nothing is written, so the stored session keeps its previous data.
    """

    def __init__(
        self,
        size: int,
        limit: int,
        *,
        what: str = "session data",
        advice: str = "raise max_data_bytes or keep less in the session",
    ) -> None:
        super().__init__(
            f"{what} is {size} bytes serialized, over the limit of {limit} bytes ({advice})"
        )
        self.size = size
        self.limit = limit


class ConflictError(OrmsessionError):
    """Raised by ``save`` when concurrent writers kept winning the compare-and-set.

    Each conflict is resolved by re-reading and re-applying this request's changed keys;
    this error means that kept failing ``max_attempts`` times in a row.
    """


class SessionLostError(ConflictError):
    """Raised by ``save``, only with ``on_lost_changes="raise"``, when this request's changes
    were dropped because another request destroyed or regenerated the session meanwhile
    (a logout, a login in another tab). By default they are dropped with a logged warning,
    and the response carries no ``Set-Cookie``: the browser keeps what the other request
    gave it.
    """
