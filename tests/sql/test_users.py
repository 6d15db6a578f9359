"""The SQL store's user index (issue 28): what the contract suite cannot see.

User ids compare exactly on every dialect (MariaDB's collations would not), ``read``,
``update`` and ``touch`` never write an owner column (the statements are captured in the
driver), and ``revoke``/``revoke_all`` win over a rename or a login in *every* order of
their statements, on SQLite, PostgreSQL and MariaDB, on the direct driver path and
SQLAlchemy's (the asyncio twin runs the same flows and statements).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

import ormsession
from ormsession.expiry import now_us
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.sql import moves
from ormsession.repositories.sql.repository import SqlRepository
from ormsession.testing.contract import HOUR, new_key
from ormsession.testing.users import owner
from ormsession.users import new_handle
from tests.manager.test_lifecycle import cookie_id
from tests.support.sql_fixtures import SQL_BACKENDS, async_url, sql_url
from tests.support.sql_stepping import Run, every_interleaving, nothing_to_check, rows
from tests.support.statement_log import traced_engine
from tests.support.stores import STORE_TARGETS

OWNER_COLUMNS = ("session_user_id", "session_handle", "session_user_agent", "session_ip")


def bound(now: int, who: Owner | None, data: bytes = b"{}") -> StoredSession:
    return StoredSession(data, 1, now, now + HOUR, who)


def user(prefix: str = "u") -> str:
    return f"{prefix}-{new_handle()}"


# -- exact comparison -------------------------------------------------------------------
def test_user_ids_differing_by_case_accent_or_trailing_space_are_different_users(
    repository: SqlRepository,
) -> None:
    now, base = now_us(), user("resume")
    # Each pair is one user under MariaDB's default collations (case- and accent-
    # insensitive, and every one of them pads with spaces, utf8mb4_bin included).
    users = [base, base.upper(), base + " ", base.replace("resume", "résumé"), base + "  "]
    keys = {}
    for who in users:
        keys[who] = new_key()
        assert repository.create(keys[who], bound(now, owner(who)), now)
    for who in users:
        assert [item.key for item in repository.sessions_of(who, now)] == [keys[who]]
    assert repository.revoke_all(base + " ", None, now) == 1
    left = {who for who in users if repository.read(keys[who], now) is not None}
    assert left == set(users) - {base + " "}
    assert repository.sessions_of(base + " ", now) == []
    stored = repository.read(keys[base + "  "], now)
    assert stored is not None and stored.owner is not None
    assert stored.owner.user_id == base + "  ", "trailing spaces are kept"


def test_handles_differing_by_case_name_different_sessions(repository: SqlRepository) -> None:
    now, who = now_us(), user()
    handle = "AbCdEfGhIjKlMnOpQrStUv"
    lower, upper = new_key(), new_key()
    assert repository.create(lower, bound(now, owner(who, handle=handle.lower())), now)
    assert repository.create(upper, bound(now, owner(who, handle=handle)), now)
    assert repository.revoke(who, handle, now) is True
    assert repository.read(upper, now) is None
    assert repository.read(lower, now) is not None
    assert repository.revoke(who, handle + " ", now) is False


def test_mariadb_keeps_owner_columns_in_utf8mb4_with_a_binary_collation(
    request: pytest.FixtureRequest,
) -> None:
    url = sql_url(request, "mysql")
    STORE_TARGETS["mysql"](request)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text(
                    "SELECT column_name, character_set_name, collation_name"
                    " FROM information_schema.columns"
                    " WHERE table_schema = DATABASE() AND table_name = 'session'"
                    " AND column_name IN ('session_user_id', 'session_handle',"
                    " 'session_user_agent', 'session_ip')"
                )
            )
            columns = {name: (charset, collation) for name, charset, collation in found}
    finally:
        engine.dispose()
    assert columns == dict.fromkeys(OWNER_COLUMNS, ("utf8mb4", "utf8mb4_bin"))


# -- no index write on read, update, touch --------------------------------------------
@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_read_update_and_touch_write_no_owner_column(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """The index is the owner columns: a request that does not log in, log out or revoke
    never writes them (seen at the driver, on an app's engine)."""
    STORE_TARGETS[backend](request)
    engine, log = traced_engine(sql_url(request, backend))
    repository = SqlRepository(engine)
    now, key, who = now_us(), new_key(), owner(user(), user_agent="curl/8", ip="::1")
    assert repository.create(key, bound(now, who), now)
    (insert,) = [sql for word, sql in zip(log, log.texts, strict=True) if word == "INSERT"]
    assert all(column in insert for column in OWNER_COLUMNS), "the log sees the columns"
    before = rows(repository, key)[key]
    log.clear()
    later = now + 5_000_000
    stored = repository.read(key, later)
    assert stored is not None and stored.owner == who
    assert repository.update(key, b'{"a":1}', later + HOUR, 1, later) == 2
    assert repository.touch(key, later + 2 * HOUR, later)
    statements = [(word, sql) for word, sql in zip(log, log.texts, strict=True)]
    run = [word for word, _ in statements if word not in ("BEGIN", "COMMIT", "ROLLBACK")]
    assert run == ["SELECT", "UPDATE", "UPDATE"], "one statement per call"
    writes = [sql for word, sql in statements if word == "UPDATE"]
    for sql in writes:
        assert not any(column in sql for column in OWNER_COLUMNS), sql
    after = rows(repository, key)[key]
    assert {c: after[c] for c in OWNER_COLUMNS} == {c: before[c] for c in OWNER_COLUMNS}
    assert (repository.sessions_of(who.user_id, later)[0]).seen_us == later
    engine.dispose()


# -- revoke against renames, every order of their statements --------------------------
def gone(repository: SqlRepository, now: int, *keys: str) -> None:
    for key in keys:
        assert repository.read(key, now) is None, "a revoked session is readable"


def test_a_revoke_wins_over_a_rename_in_every_order(repository: SqlRepository) -> None:
    queries = repository._queries

    def start() -> Run:
        now, old, new, who = now_us(), new_key(), new_key(), owner(user())
        assert repository.create(old, bound(now, who), now)

        def check(results: list[Any]) -> None:
            renamed, ended = results
            assert ended == 1, "the session was live when the revoke looked"
            gone(repository, now, old, new)
            assert repository.sessions_of(who.user_id, now) == []
            if renamed:
                # What is left is at most the cleared marker: no data, no owner.
                for row in rows(repository, old, new).values():
                    assert row["session_moved_to"] == new
                    assert row["session_user_id"] is None

        flows = [
            (moves.rename(queries, old, new, now + HOUR, now), nothing_to_check),
            (moves.revoke(queries, "revoke", who.user_id, who.handle, None, now), nothing_to_check),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 10


def test_revoke_all_wins_over_a_login_of_the_same_user_in_every_order(
    repository: SqlRepository,
) -> None:
    queries = repository._queries

    def start() -> Run:
        now, old, new, who = now_us(), new_key(), new_key(), owner(user())
        assert repository.create(old, bound(now, who), now)
        relogin = owner(who.user_id, handle=who.handle, ip="10.0.0.1")

        def check(results: list[Any]) -> None:
            _, ended = results
            assert ended == 1
            gone(repository, now, old, new)
            assert repository.sessions_of(who.user_id, now) == []

        flows = [
            (moves.rename(queries, old, new, now + HOUR, now, relogin), nothing_to_check),
            (moves.revoke(queries, "revoke_all", who.user_id, None, None, now), nothing_to_check),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 10


def test_a_login_as_another_user_leaves_the_first_users_reach_once_marked(
    repository: SqlRepository,
) -> None:
    """The previous owner's revoke_all ends the session only if it looked before the
    login's first statement (then the destroy came first, and wins); from that statement
    on the session is the new owner's alone, markers included."""
    queries = repository._queries

    def start() -> Run:
        now, old, new = now_us(), new_key(), new_key()
        first = owner(user("first"))
        second = owner(user("second"), handle=first.handle)
        assert repository.create(old, bound(now, first, b"cart"), now)
        flows = [
            (moves.rename(queries, old, new, now + HOUR, now, second), nothing_to_check),
            (moves.revoke(queries, "revoke_all", first.user_id, None, None, now), nothing_to_check),
        ]

        def check(results: list[Any]) -> None:
            renamed, ended = results
            assert repository.read(old, now) is None
            assert repository.sessions_of(first.user_id, now) == []
            if ended:
                gone(repository, now, new)
                assert repository.sessions_of(second.user_id, now) == []
            else:
                assert renamed is True
                moved = repository.read(new, now)
                assert moved is not None and (moved.data, moved.owner) == (b"cart", second)
                assert [s.key for s in repository.sessions_of(second.user_id, now)] == [new]
                assert repository.revoke_all(first.user_id, None, now) == 0
                assert repository.read(new, now) is not None

        return flows, check

    outcomes = every_interleaving(repository, start)
    assert outcomes >= 10


def test_revoke_all_keeps_the_kept_session_while_another_is_renamed(
    repository: SqlRepository,
) -> None:
    queries = repository._queries

    def start() -> Run:
        now, who = now_us(), user()
        kept, old, new = new_key(), new_key(), new_key()
        assert repository.create(kept, bound(now, owner(who)), now)
        assert repository.create(old, bound(now, owner(who)), now)

        def check(results: list[Any]) -> None:
            _, ended = results
            assert ended == 1
            gone(repository, now, old, new)
            assert repository.read(kept, now) is not None
            assert [s.key for s in repository.sessions_of(who, now)] == [kept]

        flows = [
            (moves.rename(queries, old, new, now + HOUR, now), nothing_to_check),
            (moves.revoke(queries, "revoke_all", who, None, kept, now), nothing_to_check),
        ]
        return flows, check

    assert every_interleaving(repository, start) >= 10


def test_the_user_index_is_one_statement_per_lookup(repository: SqlRepository) -> None:
    """sessions_of is one SELECT; revoke one SELECT and then the delete of each session."""
    now, who = now_us(), owner(user())
    key = new_key()
    assert repository.create(key, bound(now, who), now)
    executed: list[str] = []
    execute = repository._execute

    def counted(query: Any) -> Any:
        executed.append(type(query.statement).__name__)
        return execute(query)

    repository._execute = counted  # type: ignore[method-assign]
    assert len(repository.sessions_of(who.user_id, now)) == 1
    assert executed == ["Select"]
    executed.clear()
    assert repository.revoke(who.user_id, who.handle, now) is True
    assert executed == ["Select", "Delete"]
    executed.clear()
    assert repository.revoke_all(who.user_id, None, now) == 0
    assert executed == ["Select"]


# -- on an app's own engine -----------------------------------------------------------
@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_login_round_trips_on_the_apps_engine(
    request: pytest.FixtureRequest, backend: str
) -> None:
    STORE_TARGETS[backend](request)
    engine = create_engine(sql_url(request, backend))
    name = user("Ann Lee") + " "
    with ormsession.configure(engine=engine) as manager:
        session = manager.open(None)
        session["cart"] = ["apple"]
        manager.save(session)
        manager.login(session, name, user_agent="Mozilla/5.0 (X11)", ip="2001:db8::7")
        sid = cookie_id(manager.save(session))
        reopened = manager.open(sid)
        assert (reopened.user_id, reopened.handle) == (name, session.handle)
        assert reopened["cart"] == ["apple"]
        (listed,) = manager.sessions_of(name, current=reopened)
        assert (listed.handle, listed.user_agent, listed.ip, listed.current) == (
            session.handle,
            "Mozilla/5.0 (X11)",
            "2001:db8::7",
            True,
        )
        assert manager.sessions_of(name.rstrip()) == []
        assert manager.revoke_all(name) == 1
        assert manager.open(sid).user_id is None
    engine.dispose()


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_login_round_trips_on_the_apps_async_engine(
    request: pytest.FixtureRequest, backend: str
) -> None:
    STORE_TARGETS[backend](request)
    url = async_url(sql_url(request, backend))
    name = user("Ann")

    async def scenario() -> None:
        engine = create_async_engine(url)
        manager = await ormsession.configure_async(engine=engine)
        session = await manager.open(None)
        await manager.login(session, name, user_agent="curl/8", ip="127.0.0.1")
        sid = cookie_id(await manager.save(session))
        reopened = await manager.open(sid)
        assert (reopened.user_id, reopened.handle) == (name, session.handle)
        (listed,) = await manager.sessions_of(name)
        assert (listed.user_agent, listed.ip) == ("curl/8", "127.0.0.1")
        assert await manager.revoke(name, listed.handle) is True
        assert (await manager.open(sid)).user_id is None
        await manager.close()
        await engine.dispose()

    asyncio.run(scenario())
