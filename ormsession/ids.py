"""Session ids: generation, strict format checks, and hashing for storage.

A session id is what the client holds. It is never stored: stores only ever see
:func:`storage_key` of it, so a leaked database or Redis dump hands out no live session.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from ormsession.errors import ConfigurationError

__all__ = ["DEFAULT_ID_BYTES", "SessionIds", "storage_key"]

#: 32 random bytes = 256 bits, the floor the design sets.
DEFAULT_ID_BYTES = 32
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]{0,32}")


def storage_key(session_id: str) -> str:
    """The key a session is stored under: SHA-256 of the id, 64 lowercase hex characters.

    A plain hash is enough here (no pepper needed): the id carries 256 random bits, so it
    cannot be recovered from its hash, and 64 hex characters fit beego's ``char(64)`` key.
    """
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


class SessionIds:
    """Makes and checks session ids of one fixed format: ``prefix + token_urlsafe(n)``."""

    __slots__ = ("_nbytes", "_pattern", "prefix")

    def __init__(self, *, prefix: str = "", nbytes: int = DEFAULT_ID_BYTES) -> None:
        if not _PREFIX_PATTERN.fullmatch(prefix):
            raise ConfigurationError(
                "id_prefix must be at most 32 characters of A-Z, a-z, 0-9, '_' or '-'"
            )
        if nbytes < DEFAULT_ID_BYTES:
            raise ConfigurationError(
                f"session ids need at least {DEFAULT_ID_BYTES} random bytes (256 bits)"
            )
        self.prefix = prefix
        self._nbytes = nbytes
        # token_urlsafe(n) is unpadded base64url: ceil(4n/3) characters of this alphabet.
        length = -(-4 * nbytes // 3)
        self._pattern = re.compile(re.escape(prefix) + f"[A-Za-z0-9_-]{{{length}}}")

    def generate(self) -> str:
        return self.prefix + secrets.token_urlsafe(self._nbytes)

    def is_valid(self, candidate: object) -> bool:
        """True only for a string of exactly the format :meth:`generate` produces.

        Checked before any store is asked, so junk, oversized or injected values never
        reach a query or a key.
        """
        return isinstance(candidate, str) and self._pattern.fullmatch(candidate) is not None

    def storage_key_of(self, candidate: object) -> str | None:
        """:func:`storage_key` of ``candidate`` when :meth:`is_valid` accepts it, else None:
        the check and the hash in one call, as every request asks for both."""
        if isinstance(candidate, str) and self._pattern.fullmatch(candidate) is not None:
            # storage_key(), inline: every request with a cookie asks this.
            return hashlib.sha256(candidate.encode("ascii")).hexdigest()
        return None
