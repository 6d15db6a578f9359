"""Session data encrypted at rest, through the manager, on every store, sync and async:
what the store holds is sealed under the id's key, tampering gives a fresh session, and a
regenerate re-seals under the new id without losing a write that raced it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ormsession.config import Config
from ormsession.encryption import FORMAT
from ormsession.ids import storage_key
from ormsession.repositories.base import StoredSession
from tests.manager.test_lifecycle import cookie_id, stored_session
from tests.support.stores import record_calls

MARKER = "c0ffee-marker-7f3a"


def _store(manager: Any, method: str, *args: Any) -> Any:
    """``repository.<method>(*args)`` on the manager's store, awaited for the async twin."""
    inner = getattr(manager, "inner", manager)
    value = getattr(inner.repository, method)(*args)
    return manager._runner.run(value) if hasattr(value, "__await__") else value


def _record(manager: Any, session_id: str) -> StoredSession:
    record = _store(manager, "read", storage_key(session_id), manager.policy.now_us())
    assert record is not None
    return record


def _replace_data(manager: Any, session_id: str, data: bytes) -> None:
    record = _record(manager, session_id)
    key, now = storage_key(session_id), manager.policy.now_us()
    assert _store(manager, "update", key, data, record.expires_us, record.version, now)


def test_the_store_holds_neither_the_data_nor_the_id(manager: Any) -> None:
    sid = stored_session(manager, secret=MARKER)
    stored = _record(manager, sid).data
    assert stored[:1] == FORMAT
    assert MARKER.encode() not in stored and sid.encode() not in stored
    assert manager.open(sid)["secret"] == MARKER


@pytest.mark.parametrize("offset", [0, 3, 10, 20, -1])
def test_a_tampered_record_is_a_fresh_session_and_a_warning(
    manager: Any, offset: int, caplog: pytest.LogCaptureFixture
) -> None:
    sid = stored_session(manager, secret=MARKER)
    sealed = bytearray(_record(manager, sid).data)
    sealed[offset] ^= 0x40
    _replace_data(manager, sid, bytes(sealed))
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        session = manager.open(sid)
    assert session.is_new and len(session) == 0 and session.id != sid
    assert "corrupt session data" in caplog.text
    assert sid not in caplog.text


def test_a_record_copied_under_another_session_opens_nothing(manager: Any) -> None:
    victim, attacker = stored_session(manager, secret=MARKER), stored_session(manager, mine=1)
    _replace_data(manager, attacker, _record(manager, victim).data)
    session = manager.open(attacker)
    assert session.is_new and "secret" not in session


def test_plaintext_planted_in_the_store_is_not_adopted(manager: Any) -> None:
    sid = stored_session(manager, user=1)
    _replace_data(manager, sid, b'{"user": "admin"}')  # whoever can write to the store
    assert manager.open(sid).is_new


def test_regenerate_re_seals_under_the_new_id(manager: Any) -> None:
    sid = stored_session(manager, secret=MARKER)
    before = _record(manager, sid).data
    session = manager.open(sid)
    manager.regenerate(session)
    manager.save(session)
    after = _record(manager, session.id).data
    assert after != before and after[:1] == FORMAT
    assert manager.open(session.id)["secret"] == MARKER
    # The old ciphertext was made for the old key: under the new one it opens nothing.
    _replace_data(manager, session.id, before)
    assert manager.open(session.id).is_new


def test_login_re_seals_too(manager: Any) -> None:
    sid = stored_session(manager, cart=["apple"])
    session = manager.open(sid)
    manager.login(session, "ann")
    new_sid = cookie_id(manager.save(session))
    reopened = manager.open(new_sid)
    assert reopened["cart"] == ["apple"] and reopened.user_id == "ann"


def test_a_write_between_the_read_and_the_regenerate_is_kept(manager: Any) -> None:
    sid = stored_session(manager, cart=["apple"])
    login, other = manager.open(sid), manager.open(sid)
    other["theme"] = "dark"
    manager.save(other)  # lands after the login request read the session
    manager.regenerate(login)
    login["user"] = "ann"
    new_sid = cookie_id(manager.save(login))
    assert dict(manager.open(new_sid)) == {"cart": ["apple"], "theme": "dark", "user": "ann"}


def test_encrypt_false_stores_the_serialized_data(make_manager: Any) -> None:
    with make_manager(encrypt=False) as manager:
        sid = stored_session(manager, secret=MARKER)
        assert MARKER.encode() in _record(manager, sid).data
        session = manager.open(sid)
        manager.regenerate(session)
        manager.save(session)
        assert manager.open(session.id)["secret"] == MARKER


def _with_secrets(manager: Any, *secrets: str) -> None:
    """The manager now seals and opens with ``secrets`` (a restart with a new config)."""
    manager.policy.cipher = Config(encryption_secrets=list(secrets)).make_cipher()


def test_a_server_secret_rotates_without_logging_anyone_out(manager: Any) -> None:
    old, new = "o" * 32, "n" * 32
    _with_secrets(manager, old)
    sid = stored_session(manager, secret=MARKER)
    _with_secrets(manager)
    assert manager.open(sid).is_new, "the id alone opened data sealed with a secret"
    _with_secrets(manager, new, old)
    session = manager.open(sid)
    assert session["secret"] == MARKER
    session["seen"] = True
    manager.save(session)  # the write re-seals under the new secret
    _with_secrets(manager, new)
    assert manager.open(sid)["secret"] == MARKER


def test_a_session_read_under_an_old_secret_is_re_sealed_by_its_next_save(manager: Any) -> None:
    old, new = "o" * 32, "n" * 32
    _with_secrets(manager, old)
    sid = stored_session(manager, secret=MARKER)
    _with_secrets(manager, new, old)
    session = manager.open(sid)
    assert session["secret"] == MARKER  # a read-only request...
    manager.save(session)  # ...still rewrites it under the current secret
    _with_secrets(manager, new)
    assert manager.open(sid)["secret"] == MARKER, "dropping the old secret logged it out"
    calls = record_calls(manager)
    manager.save(manager.open(sid))
    assert calls.writes() == [], "a session already under the current secret is not rewritten"
