"""Session data sealed at rest (:mod:`ormsession.encryption`): the cipher on its own."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from ormsession.encryption import FORMAT, OVERHEAD, DataCipher, Hkdf
from ormsession.errors import ConfigurationError, CorruptSessionDataError, TamperedSessionError
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import Owner
from ormsession.users import new_handle

DATA = b'{"marker":"c0ffee-secret-value"}'


def _id() -> str:
    return SessionIds().generate()


def _sealed(cipher: DataCipher, session_id: str, data: bytes = DATA) -> bytes:
    return cipher.seal(cipher.key(session_id), storage_key(session_id), data)


def test_sealed_data_opens_with_its_id_and_shows_neither_data_nor_id() -> None:
    cipher, session_id = DataCipher(), _id()
    sealed = _sealed(cipher, session_id)
    assert len(sealed) == len(DATA) + OVERHEAD
    assert sealed[:1] == FORMAT
    for secret in (b"c0ffee", session_id.encode(), storage_key(session_id).encode()):
        assert secret not in sealed
    plaintext, _ = cipher.open(session_id, storage_key(session_id), sealed)
    assert plaintext == DATA


def test_every_write_takes_a_fresh_nonce() -> None:
    cipher, session_id = DataCipher(), _id()
    assert _sealed(cipher, session_id) != _sealed(cipher, session_id)


def test_the_data_key_is_hkdf_sha256_of_the_id_under_its_label() -> None:
    # RFC 5869 by hand: extract with a zero salt, expand one block under the label.
    session_id = _id()
    prk = hmac.digest(b"\0" * 32, session_id.encode(), hashlib.sha256)
    okm = hmac.digest(prk, b"ormsession session data key, format 1\x01", hashlib.sha256)

    sealed = _sealed(DataCipher(), session_id)
    nonce, body = sealed[5:17], sealed[17:]
    aad = sealed[:5] + storage_key(session_id).encode()
    assert AESGCM(okm).decrypt(nonce, body, aad) == DATA
    assert okm != bytes.fromhex(storage_key(session_id)), "the storage key is the data key"


# RFC 5869 appendix A, test cases 1-3 (SHA-256): IKM, salt, info, and the first 32 bytes
# of the OKM (one expand block is T(1), the OKM's first block whatever its length).
RFC_5869_VECTORS = [
    (
        bytes([0x0B]) * 22,
        bytes(range(0x0D)),
        bytes(range(0xF0, 0xFA)),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf",
    ),
    (  # an 80-byte salt: longer than SHA-256's block, so HMAC hashes it first
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c",
    ),
    (
        bytes([0x0B]) * 22,
        b"",
        b"",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d",
    ),
]


@pytest.mark.parametrize(
    ("ikm", "salt", "info", "okm"), RFC_5869_VECTORS, ids=["basic", "long", "empty salt"]
)
def test_the_key_derivation_gives_rfc_5869s_vectors(
    ikm: bytes, salt: bytes, info: bytes, okm: str
) -> None:
    assert Hkdf(salt, info).derive(ikm).hex() == okm


@given(
    ikm=st.binary(max_size=200),
    # Salts shorter and longer than SHA-256's 64-byte block (HMAC hashes a longer key).
    salt=st.none() | st.binary(max_size=64) | st.binary(min_size=65, max_size=200),
    info=st.binary(max_size=100),
)
def test_the_key_derivation_matches_cryptographys_hkdf(
    ikm: bytes, salt: bytes | None, info: bytes
) -> None:
    expected = HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)
    assert Hkdf(salt, info).derive(ikm) == expected


def test_a_secret_is_the_derivations_salt() -> None:
    secret, session_id = b"s" * 32, _id()
    sealed = DataCipher([secret]).seal(
        DataCipher([secret]).key(session_id), storage_key(session_id), DATA
    )
    okm = HKDF(hashes.SHA256(), 32, secret, b"ormsession session data key, format 1")
    aead = AESGCM(okm.derive(session_id.encode()))
    aad = sealed[:5] + storage_key(session_id).encode()
    assert aead.decrypt(sealed[5:17], sealed[17:], aad) == DATA


@pytest.mark.parametrize("where", ["format", "key id", "nonce", "ciphertext", "tag"])
def test_a_changed_byte_anywhere_fails_to_open(where: str) -> None:
    cipher, session_id = DataCipher(), _id()
    sealed = bytearray(_sealed(cipher, session_id))
    index = {"format": 0, "key id": 2, "nonce": 9, "ciphertext": 20, "tag": len(sealed) - 1}
    sealed[index[where]] ^= 0x01
    with pytest.raises(TamperedSessionError):
        cipher.open(session_id, storage_key(session_id), bytes(sealed))


def test_a_record_moved_under_another_key_fails_to_open() -> None:
    cipher, session_id = DataCipher(), _id()
    sealed = _sealed(cipher, session_id)
    with pytest.raises(TamperedSessionError):
        cipher.open(session_id, storage_key(_id()), sealed)  # associated data differs
    with pytest.raises(TamperedSessionError):
        cipher.open(_id(), storage_key(session_id), sealed)  # another id's key


@pytest.mark.parametrize("stored", [b"", b"{}", DATA, FORMAT + b"\0" * 10])
def test_plaintext_and_truncated_records_are_refused(stored: bytes) -> None:
    session_id = _id()
    with pytest.raises(TamperedSessionError) as caught:
        DataCipher().open(session_id, storage_key(session_id), stored)
    assert isinstance(caught.value, CorruptSessionDataError), "the manager treats it as corrupt"


def test_a_secret_is_mixed_in_and_rotates() -> None:
    old, new = b"o" * 32, b"n" * 32
    session_id, key = _id(), storage_key(_id())
    under_old = DataCipher([old]).seal(DataCipher([old]).key(session_id), key, DATA)
    with pytest.raises(TamperedSessionError, match="not configured"):
        DataCipher().open(session_id, key, under_old)  # the id alone is not enough
    with pytest.raises(TamperedSessionError, match="not configured"):
        DataCipher([new]).open(session_id, key, under_old)  # the old secret was dropped
    rotated = DataCipher([new, old])
    plaintext, reseal_key = rotated.open(session_id, key, under_old)
    assert plaintext == DATA
    resealed = rotated.seal(reseal_key, key, plaintext)
    assert DataCipher([new]).open(session_id, key, resealed)[0] == DATA, "written under the new"


def test_a_secret_too_short_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        DataCipher([b"short"])


def test_the_secret_is_never_shown() -> None:
    from ormsession.config import Config

    config = Config(encryption_secrets=["s3cret-pepper-of-32-characters!!"])
    for shown in (repr(config), str(config), config.model_dump_json()):
        assert "s3cret" not in shown
    with pytest.raises(ConfigurationError, match="encrypt is False"):
        Config(encrypt=False, encryption_secrets=["s3cret-pepper-of-32-characters!!"])


def test_the_owner_is_bound_to_the_data() -> None:
    # The store must read the user id and handle, so they are not encrypted; but whoever
    # can write to the store cannot rebind a session to another user: the data then fails.
    cipher, session_id = DataCipher(), _id()
    key, ann = storage_key(session_id), Owner("ann", new_handle())
    sealed = cipher.seal(cipher.key(session_id), key, DATA, ann)
    assert cipher.open(session_id, key, sealed, ann)[0] == DATA
    for forged in (Owner("admin", ann.handle), Owner("ann", new_handle()), None):
        with pytest.raises(TamperedSessionError):
            cipher.open(session_id, key, sealed, forged)
    unbound = cipher.seal(cipher.key(session_id), key, DATA)
    with pytest.raises(TamperedSessionError):
        cipher.open(session_id, key, unbound, ann)  # bound behind the app's back
    # The user agent and address are shown, not trusted: they are not bound.
    shown = ann._replace(user_agent="curl", ip="10.0.0.1")
    assert cipher.open(session_id, key, sealed, shown)[0] == DATA


@pytest.mark.parametrize(
    "owner",
    [
        Owner(42, "h" * 22),  # type: ignore[arg-type]
        Owner("ada", None),  # type: ignore[arg-type]
        Owner("\udcff", "h" * 22),
    ],
)
def test_an_odd_stored_owner_is_a_tampered_record_never_a_crash(owner: Owner) -> None:
    cipher, session_id = DataCipher(), _id()
    sealed = _sealed(cipher, session_id)
    with pytest.raises(TamperedSessionError):
        cipher.open(session_id, storage_key(session_id), sealed, owner)


def test_a_memoryview_from_a_store_opens() -> None:
    cipher, session_id = DataCipher(), _id()
    sealed = memoryview(_sealed(cipher, session_id))
    assert cipher.open(session_id, storage_key(session_id), sealed)[0] == DATA  # type: ignore[arg-type]
