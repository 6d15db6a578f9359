"""The repository contract's user index (the "Users" part of
:mod:`ormsession.repositories.base`): binding, listing and revoking a user's sessions.

Mixed into :class:`~ormsession.testing.contract.RepositoryTests`, so every store, sync and
async, runs these with the rest of the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import (
    MAX_IP,
    MAX_USER_AGENT,
    MAX_USER_ID,
    Owner,
    SessionRepository,
    StoredSession,
)
from ormsession.users import new_handle

__all__ = ["UserIndexTests", "owner"]

_SECOND = US_PER_SECOND
_HOUR = 3600 * _SECOND
_TOLERANCE = 1000


def _key() -> str:
    return storage_key(SessionIds().generate())


def owner(user_id: str = "alice", **fields: Any) -> Owner:
    """An owner of ``user_id`` with a fresh handle (or the given fields)."""
    fields.setdefault("handle", new_handle())
    return Owner(user_id, **fields)


def _bound(now: int, who: Owner, *, data: bytes = b'{"a":1}', ttl: int = _HOUR) -> StoredSession:
    return StoredSession(data, 1, now, now + ttl, who)


def _close(actual: int, expected: int) -> bool:
    return abs(actual - expected) <= _TOLERANCE


def _user(prefix: str) -> str:
    # A user id of this test's own: stores are shared between tests of one run.
    return f"{prefix}-{new_handle()}"


class UserIndexTests:
    """The user index's tests (see the module docstring)."""

    def concurrently(
        self, repository: SessionRepository, calls: Sequence[tuple[str, tuple[Any, ...]]]
    ) -> list[Any]:
        raise NotImplementedError

    # -- binding ------------------------------------------------------------------------
    def test_a_created_owner_round_trips_with_its_metadata(
        self, repository: SessionRepository
    ) -> None:
        now, key = now_us(), _key()
        who = owner(_user("ü ser:{tag}"), user_agent="Mozilla/5.0 (X11)", ip="2001:db8::1")
        assert repository.create(key, _bound(now, who), now)
        stored = repository.read(key, now)
        assert stored is not None
        assert stored.owner == who
        plain = _key()
        assert repository.create(plain, StoredSession(b"{}", 1, now, now + _HOUR), now)
        stored = repository.read(plain, now)
        assert stored is not None
        assert stored.owner is None

    def test_the_longest_user_id_user_agent_and_ip_are_kept_whole(
        self, repository: SessionRepository
    ) -> None:
        now, key = now_us(), _key()
        user = _user("u").ljust(MAX_USER_ID, "é")
        who = owner(user, user_agent="a" * MAX_USER_AGENT, ip="f" * MAX_IP)
        assert repository.create(key, _bound(now, who), now)
        stored = repository.read(key, now)
        assert stored is not None
        assert stored.owner == who
        assert [s.owner for s in repository.sessions_of(user, now)] == [who]

    def test_update_and_touch_keep_the_owner_and_move_last_seen(
        self, repository: SessionRepository
    ) -> None:
        now, key, user = now_us(), _key(), _user("u")
        who = owner(user)
        assert repository.create(key, _bound(now, who), now)
        (listed,) = repository.sessions_of(user, now)
        assert listed.key == key
        assert listed.owner == who
        assert _close(listed.created_us, now)
        assert _close(listed.seen_us, now)
        assert _close(listed.expires_us, now + _HOUR)
        later = now + 10 * _SECOND
        assert repository.update(key, b"{}", later + _HOUR, 1, later) == 2
        stored = repository.read(key, later)
        assert stored is not None
        assert stored.owner == who
        (listed,) = repository.sessions_of(user, later)
        assert _close(listed.seen_us, later)
        assert _close(listed.created_us, now)
        latest = later + 10 * _SECOND
        assert repository.touch(key, latest + _HOUR, latest)
        (listed,) = repository.sessions_of(user, latest)
        assert _close(listed.seen_us, latest)
        assert _close(listed.expires_us, latest + _HOUR)
        assert listed.owner == who

    # -- listing ------------------------------------------------------------------------
    def test_sessions_of_lists_only_that_users_live_sessions(
        self, repository: SessionRepository
    ) -> None:
        now, user, other = now_us(), _user("u"), _user("v")
        mine = {_key(): owner(user), _key(): owner(user)}
        for key, who in mine.items():
            assert repository.create(key, _bound(now, who), now)
        assert repository.create(_key(), _bound(now, owner(other)), now)
        assert repository.create(_key(), StoredSession(b"{}", 1, now, now + _HOUR), now)
        short = _key()
        assert repository.create(short, _bound(now, owner(user), ttl=30 * _SECOND), now)
        listed = {item.key: item.owner for item in repository.sessions_of(user, now)}
        assert listed == {**mine, short: listed.get(short)}
        assert short in listed
        later = now + 31 * _SECOND
        listed = {item.key: item.owner for item in repository.sessions_of(user, later)}
        assert listed == mine, "an expired session is never listed"
        assert repository.sessions_of(_user("nobody"), now) == []

    def test_a_deleted_session_is_not_listed(self, repository: SessionRepository) -> None:
        now, user = now_us(), _user("u")
        keys = [_key(), _key()]
        for key in keys:
            assert repository.create(key, _bound(now, owner(user)), now)
        repository.delete(keys[0])
        assert [item.key for item in repository.sessions_of(user, now)] == [keys[1]]

    # -- rename -------------------------------------------------------------------------
    def test_rename_keeps_the_owner_and_the_index_follows(
        self, repository: SessionRepository
    ) -> None:
        now, old, new, user = now_us(), _key(), _key(), _user("u")
        who = owner(user)
        assert repository.create(old, _bound(now, who), now)
        later = now + 5 * _SECOND
        assert repository.rename(old, new, later + _HOUR, later)
        stored = repository.read(new, later)
        assert stored is not None
        assert stored.owner == who
        (listed,) = repository.sessions_of(user, later)
        assert listed.key == new
        assert listed.owner.handle == who.handle
        assert _close(listed.seen_us, later)
        assert _close(listed.created_us, now)

    def test_rename_with_an_owner_binds_the_session(self, repository: SessionRepository) -> None:
        now, old, new, user = now_us(), _key(), _key(), _user("u")
        assert repository.create(old, StoredSession(b"cart", 1, now, now + _HOUR), now)
        who = owner(user, user_agent="curl/8", ip="127.0.0.1")
        assert repository.rename(old, new, now + _HOUR, now, who, now + 2 * _HOUR)
        stored = repository.read(new, now)
        assert stored is not None
        assert stored.owner == who
        assert stored.data == b"cart"
        assert repository.read(old, now) is None
        assert repository.moved(old, now)
        assert [(item.key, item.owner) for item in repository.sessions_of(user, now)] == [
            (new, who)
        ]

    def test_a_login_as_another_user_leaves_the_first_users_index(
        self, repository: SessionRepository
    ) -> None:
        now, old, new = now_us(), _key(), _key()
        first, second = _user("u"), _user("v")
        before = owner(first)
        assert repository.create(old, _bound(now, before), now)
        after = owner(second, handle=before.handle)
        assert repository.rename(old, new, now + _HOUR, now, after, None)
        assert repository.sessions_of(first, now) == []
        assert repository.revoke_all(first, None, now) == 0
        assert repository.revoke(first, before.handle, now) is False
        stored = repository.read(new, now)
        assert stored is not None
        assert stored.owner == after, "the first user's revoke reached it"
        assert [item.key for item in repository.sessions_of(second, now)] == [new]

    # -- revoke -------------------------------------------------------------------------
    def test_revoke_ends_one_session_by_handle(self, repository: SessionRepository) -> None:
        now, user = now_us(), _user("u")
        gone, kept = (_key(), owner(user)), (_key(), owner(user))
        for key, who in (gone, kept):
            assert repository.create(key, _bound(now, who), now)
        assert repository.revoke(user, gone[1].handle, now) is True
        assert repository.read(gone[0], now) is None
        assert repository.read(kept[0], now) is not None
        assert [item.key for item in repository.sessions_of(user, now)] == [kept[0]]
        assert repository.revoke(user, gone[1].handle, now) is False, "nothing left to end"

    def test_revoke_needs_the_right_user(self, repository: SessionRepository) -> None:
        now, key, user = now_us(), _key(), _user("u")
        who = owner(user)
        assert repository.create(key, _bound(now, who), now)
        assert repository.revoke(_user("mallory"), who.handle, now) is False
        assert repository.revoke(user, new_handle(), now) is False
        assert repository.read(key, now) is not None

    def test_revoke_follows_a_rename(self, repository: SessionRepository) -> None:
        now, old, new, user = now_us(), _key(), _key(), _user("u")
        who = owner(user)
        assert repository.create(old, _bound(now, who), now)
        assert repository.rename(old, new, now + _HOUR, now)
        assert repository.revoke(user, who.handle, now) is True
        assert repository.read(new, now) is None
        assert repository.read(old, now) is None
        assert repository.sessions_of(user, now) == []

    def test_a_request_in_flight_cannot_bring_a_revoked_session_back(
        self, repository: SessionRepository
    ) -> None:
        now, key, user = now_us(), _key(), _user("u")
        who = owner(user)
        assert repository.create(key, _bound(now, who), now)
        loaded = repository.read(key, now)  # the request in flight read it...
        assert loaded is not None
        assert repository.revoke(user, who.handle, now)  # ...then the user revoked it
        assert repository.update(key, b"{}", now + _HOUR, loaded.version, now) is None
        assert repository.touch(key, now + _HOUR, now) is False
        assert repository.rename(key, _key(), now + _HOUR, now) is False
        assert repository.read(key, now) is None
        assert repository.sessions_of(user, now) == []

    def test_revoke_all_ends_every_session_but_the_kept_one(
        self, repository: SessionRepository
    ) -> None:
        now, user = now_us(), _user("u")
        keys = [_key() for _ in range(3)]
        for key in keys:
            assert repository.create(key, _bound(now, owner(user)), now)
        other = _key()
        assert repository.create(other, _bound(now, owner(_user("v"))), now)
        assert repository.revoke_all(user, keys[0], now) == 2
        assert repository.read(keys[0], now) is not None
        assert [repository.read(key, now) for key in keys[1:]] == [None, None]
        assert repository.read(other, now) is not None, "another user's session ended"
        assert repository.revoke_all(user, None, now) == 1
        assert repository.read(keys[0], now) is None
        assert repository.sessions_of(user, now) == []
        assert repository.revoke_all(user, None, now) == 0

    def test_revoke_all_wins_over_renames_in_flight(self, repository: SessionRepository) -> None:
        now, user = now_us(), _user("u")
        for _ in range(5):
            olds, news = [_key(), _key()], [_key(), _key()]
            for key in olds:
                assert repository.create(key, _bound(now, owner(user)), now)
            calls: list[tuple[str, tuple[Any, ...]]] = [
                ("rename", (old, new, now + _HOUR, now))
                for old, new in zip(olds, news, strict=True)
            ]
            calls.append(("revoke_all", (user, None, now)))
            self.concurrently(repository, calls)
            left = [key for key in olds + news if repository.read(key, now) is not None]
            assert left == [], "a session outlived log out everywhere"
            assert repository.sessions_of(user, now) == []

    def test_revoke_wins_over_a_login_in_flight(self, repository: SessionRepository) -> None:
        now, user = now_us(), _user("u")
        for _ in range(5):
            old, new, who = _key(), _key(), owner(user)
            assert repository.create(old, _bound(now, who), now)
            relogin = owner(user, handle=who.handle, ip="10.0.0.1")
            calls: list[tuple[str, tuple[Any, ...]]] = [
                ("rename", (old, new, now + _HOUR, now, relogin, None)),
                ("revoke", (user, who.handle, now)),
            ]
            _, revoked = self.concurrently(repository, calls)
            assert revoked is True
            assert repository.read(old, now) is None
            assert repository.read(new, now) is None

    def test_delete_expired_takes_bound_sessions_out_of_the_listing(
        self, repository: SessionRepository
    ) -> None:
        if repository.native_ttl:
            return  # such a store expires records itself (the listing test covers it)
        now, user = now_us(), _user("u")
        assert repository.create(_key(), _bound(now, owner(user), ttl=30 * _SECOND), now)
        later = now + 31 * _SECOND
        assert repository.delete_expired(later, 1000) >= 1
        assert repository.sessions_of(user, later) == []
