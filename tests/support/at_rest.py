"""What every store's at-rest encryption test does, whatever its raw reader: sessions
holding a marker, the id in the forms a dump could show it, and the checks on what the
store holds (each store's test reads its own raw bytes and changes them its own way).

Layout of a sealed record: format (1) | key id (4) | nonce (12) | ciphertext | tag (16)
(see :mod:`ormsession.encryption`)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ormsession.encryption import owner_tag
from ormsession.repositories.base import Owner
from tests.manager.test_lifecycle import cookie_id

MARKER = "c0ffee-marker-5e2a"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) marker-agent"
IP = "203.0.113.78"
NONCE = slice(5, 17)
#: The ciphertext and its tag.
BODY = slice(17, None)
#: Byte offsets to flip in a sealed record, one in each part after the header.
FLIPS = [pytest.param(8, id="nonce"), pytest.param(20, id="ciphertext"), pytest.param(-1, id="tag")]


def id_forms(session_id: str) -> list[bytes]:
    """The id as the cookie carries it, the random bytes it encodes, and their hex."""
    decoded = base64.urlsafe_b64decode(session_id + "=" * (-len(session_id) % 4))
    return [session_id.encode(), decoded, decoded.hex().encode()]


def save_new(manager: Any, **data: Any) -> str:
    session = manager.open(None)
    session.update(data)
    return cookie_id(manager.save(session))


def log_in(manager: Any, session_id: str, user: str = "ann") -> str:
    session = manager.open(session_id)
    manager.login(session, user, user_agent=USER_AGENT, ip=IP)
    return cookie_id(manager.save(session))


def move(manager: Any, session_id: str, how: str) -> str:
    """Regenerate ``session_id`` or log it in (``how``); the new id, which must hold the
    marker the old one did."""
    session = manager.open(session_id)
    if how == "regenerate":
        manager.regenerate(session)
    else:
        manager.login(session, "ann", user_agent=USER_AGENT, ip=IP)
    new_id = cookie_id(manager.save(session))
    assert new_id != session_id and manager.open(new_id)["secret"] == MARKER
    return new_id


def assert_nowhere(stored: Iterable[tuple[bytes, bytes]], *secrets: bytes) -> None:
    """None of ``secrets`` in any stored (name, content) pair."""
    for name, content in stored:
        for secret in secrets:
            assert secret not in name and secret not in content, (name, secret)


def assert_storage_key_opens_nothing(key: str, sealed: bytes, owner: Owner | None) -> None:
    """What the store holds, tried as the data key: the storage key, with and without the
    associated data as the store's reader could rebuild it."""
    attempt = AESGCM(bytes.fromhex(key))
    for associated in (sealed[:5] + key.encode() + owner_tag(owner), None):
        with pytest.raises(InvalidTag):
            attempt.decrypt(sealed[NONCE], sealed[BODY], associated)


def assert_opens_fresh(
    manager: Any, session_id: str, caplog: pytest.LogCaptureFixture, *gone: str
) -> None:
    """``session_id`` opens as a fresh session without the keys ``gone`` (and unbound),
    with a warning that names no id."""
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        session = manager.open(session_id)
    assert session.is_new and session.user_id is None
    assert not [key for key in gone if key in session]
    assert "corrupt session data" in caplog.text and session_id not in caplog.text


def flipped(sealed: bytes, offset: int) -> bytes:
    changed = bytearray(sealed)
    changed[offset] ^= 0x01
    return bytes(changed)
