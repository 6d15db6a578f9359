"""Session data encrypted at rest under a key only the cookie holds.

The storage key is a SHA-256 of the session id (:mod:`ormsession.ids`); the data key is
derived from the id too, by HKDF-SHA256 under its own label, so neither can be computed
from the other, and a dump of the store (which holds storage keys and ciphertext) or the
app's configuration decrypts nothing without the cookie. Each write is sealed with
AES-256-GCM under a fresh random 96-bit nonce; the associated data binds the format byte,
the key id, the storage key and the session's owner (user id and handle: metadata the
store must read, so it stays outside the ciphertext, but cannot be changed without the data
failing to open), so a record copied under another key, rebound to another user, or changed
in any byte, fails to open.

An optional server-side secret (a "pepper") is mixed into the derivation as HKDF's salt,
for deployments that also want a stolen cookie *plus* a stolen dump to be useless without
the app's secret. Secrets rotate: the first is used for writes, every listed one is tried
for reads by its key id (4 bytes of an HMAC of the secret: it names the secret without
revealing it), and each write re-seals under the first.

Layout of a sealed record: ``format (1) | key id (4) | nonce (12) | ciphertext | tag (16)``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ormsession.errors import ConfigurationError, TamperedSessionError
from ormsession.repositories.base import Owner

__all__ = ["FORMAT", "OVERHEAD", "DataCipher", "Hkdf", "owner_tag"]

#: The first byte of every sealed record: the format's version.
FORMAT = b"\x01"
_INFO = b"ormsession session data key, format 1"
_NO_SECRET_ID = b"\x00\x00\x00\x00"
_NONCE = 12
_TAG = 16
_HEADER = len(FORMAT) + len(_NO_SECRET_ID) + _NONCE
#: How many bytes sealing adds to the serialized data.
OVERHEAD = _HEADER + _TAG


def owner_tag(owner: Owner | None) -> bytes:
    """The owner's part of the associated data (empty for an unbound session). Unambiguous:
    user ids hold no NUL (no control character at all), and it follows a fixed-length
    storage key."""
    if owner is None:
        return b""
    user_id, handle = owner.user_id, owner.handle
    if not isinstance(user_id, str) or not isinstance(handle, str):
        raise TamperedSessionError("the stored owner is not a user id and a handle")
    return b"\0" + user_id.encode("utf-8", "surrogatepass") + b"\0" + handle.encode()


_SHA256_BLOCK = 64
_INNER_PAD = bytes(b ^ 0x36 for b in range(256))  # translate() tables: XOR every byte
_OUTER_PAD = bytes(b ^ 0x5C for b in range(256))


class Hkdf:
    """HKDF-SHA256 (RFC 5869) under one salt and the data key's label, with one 32-byte
    output block: ``HMAC(HMAC(salt, ikm), label || 0x01)``.

    Written on :mod:`hashlib` rather than with ``cryptography``'s HKDF object because it
    runs on every request that reads or writes a session, and the derivation is most of
    what sealing adds to one: the salt's HMAC pads are hashed once here and copied per
    derivation, which halves its cost. The tests check it against RFC 5869's SHA-256
    vectors and against ``cryptography``'s HKDF.
    """

    __slots__ = ("_expand", "_inner", "_outer")

    def __init__(self, salt: bytes | None, label: bytes) -> None:
        key = bytes(hashlib.sha256().digest_size) if salt is None else salt
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))
        self._expand = label + b"\x01"

    def derive(self, ikm: bytes) -> bytes:
        """The 32-byte key for input key material ``ikm``."""
        inner = self._inner.copy()
        inner.update(ikm)
        outer = self._outer.copy()
        outer.update(inner.digest())
        prk = outer.digest().ljust(_SHA256_BLOCK, b"\0")  # extract, then expand one block:
        expand_inner = hashlib.sha256(prk.translate(_INNER_PAD) + self._expand).digest()
        return hashlib.sha256(prk.translate(_OUTER_PAD) + expand_inner).digest()


def _secret_id(secret: bytes) -> bytes:
    return hmac.digest(secret, b"ormsession key id", hashlib.sha256)[:4]


class DataCipher:
    """Seals and opens session data; ``secrets``: the optional peppers, current first."""

    __slots__ = ("_kdfs", "_write_id", "_write_kdf")

    def __init__(self, secrets: Sequence[bytes] = ()) -> None:
        kdfs: dict[bytes, Hkdf] = {}
        for secret in secrets:
            if len(secret) < 16:
                raise ConfigurationError(
                    "an encryption secret must be at least 16 bytes (32 random bytes, "
                    "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                )
            secret_id = _secret_id(secret)
            if secret_id not in kdfs:
                kdfs[secret_id] = Hkdf(secret, _INFO)
        if not secrets:
            kdfs[_NO_SECRET_ID] = Hkdf(None, _INFO)
        self._kdfs = kdfs
        self._write_id = next(iter(kdfs))
        self._write_kdf = kdfs[self._write_id]

    def key(self, session_id: str, secret_id: bytes | None = None) -> AESGCM:
        """The AEAD for ``session_id``'s data under the secret named by ``secret_id``
        (default: the current one)."""
        kdf = self._write_kdf if secret_id is None else self._kdfs[secret_id]
        return AESGCM(kdf.derive(session_id.encode()))

    def seal(
        self, aead: AESGCM, storage_key: str, plaintext: bytes, owner: Owner | None = None
    ) -> bytes:
        """``plaintext`` sealed for ``storage_key`` and ``owner`` with ``aead`` (from
        :meth:`key` with no secret id: writes always use the current secret)."""
        header = FORMAT + self._write_id
        nonce = os.urandom(_NONCE)
        associated = header + storage_key.encode() + owner_tag(owner)
        return header + nonce + aead.encrypt(nonce, plaintext, associated)

    def is_current(self, sealed: bytes) -> bool:
        """Whether ``sealed`` was sealed under the current secret (else the next write
        should re-seal it, before the old secret is dropped)."""
        return sealed[1:5] == self._write_id

    def open(
        self, session_id: str, storage_key: str, sealed: bytes, owner: Owner | None = None
    ) -> tuple[bytes, AESGCM]:
        """The plaintext of a record stored under ``storage_key`` with ``owner``, and the
        current secret's AEAD for re-sealing it. Raises :class:`TamperedSessionError` for
        anything that is not this id's data sealed for this key and owner (changed, moved,
        rebound, truncated, plaintext, or under a secret no longer configured)."""
        sealed = bytes(sealed)  # a store may hand back a memoryview or bytearray
        if len(sealed) < OVERHEAD or sealed[:1] != FORMAT:
            raise TamperedSessionError("not sealed session data (unknown format)")
        secret_id = sealed[1:5]
        if secret_id not in self._kdfs:
            raise TamperedSessionError("sealed under an encryption secret not configured")
        aead = self.key(session_id, secret_id)
        nonce = sealed[5:_HEADER]
        try:
            associated = sealed[:5] + storage_key.encode() + owner_tag(owner)
            plaintext = aead.decrypt(nonce, sealed[_HEADER:], associated)
        except InvalidTag:
            raise TamperedSessionError("session data failed authentication") from None
        if secret_id != self._write_id:
            aead = self.key(session_id)
        return plaintext, aead
