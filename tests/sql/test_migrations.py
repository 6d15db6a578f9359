"""ormsession's Alembic lineage on SQLite, PostgreSQL and MariaDB, each in a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, insert, inspect, text

from ormsession import schema
from ormsession.errors import SchemaError
from ormsession.expiry import from_us, now_us
from ormsession.repositories.base import StoredSession
from ormsession.repositories.sql.model import session_table
from ormsession.repositories.sql.repository import SqlRepository
from ormsession.testing.contract import HOUR

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["sqlite", "postgresql", "mysql"]
pytestmark = pytest.mark.parametrize("fresh_database_url", BACKENDS, indirect=True)


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_the_table_and_the_expiry_index(fresh_database_url: str) -> None:
    schema.upgrade(fresh_database_url)
    engine = create_engine(fresh_database_url)
    with engine.connect() as connection:
        inspector = inspect(connection)
        columns = {c["name"]: c for c in inspector.get_columns("session")}
        assert set(columns) == {
            "session_key",
            "session_data",
            "session_expiry",
            "session_created",
            "session_version",
            "session_moved_to",
            "session_user_id",
            "session_handle",
            "session_user_agent",
            "session_ip",
            "session_seen",
        }
        assert columns["session_moved_to"]["nullable"], "NULL: the row is a session"
        assert columns["session_user_id"]["nullable"], "NULL: the session is not bound"
        assert inspector.get_pk_constraint("session")["constrained_columns"] == ["session_key"]
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("session")}
        assert indexes == {
            "ix_session_session_expiry": ["session_expiry"],
            "ix_session_session_user_id": ["session_user_id", "session_expiry"],
        }
        assert "alembic_version" not in inspector.get_table_names(), "the app's table is untouched"
        version = connection.execute(text("SELECT version_num FROM ormsession_alembic_version"))
        assert version.scalar_one() == schema.HEAD_REVISION
    engine.dispose()
    assert schema.current_revision(fresh_database_url) == schema.HEAD_REVISION
    schema.check_schema(create_engine(fresh_database_url))


def test_session_data_holds_more_than_64_kib_on_every_dialect(fresh_database_url: str) -> None:
    schema.upgrade(fresh_database_url)
    engine = create_engine(fresh_database_url)
    payload = os.urandom(5 * 1024 * 1024)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO session (session_key, session_data, session_expiry,"
                " session_created, session_version) VALUES (:k, :d, :e, :c, 1)"
            ),
            {"k": "k" * 64, "d": payload, "e": "2030-01-01 00:00:00", "c": "2030-01-01 00:00:00"},
        )
        stored = connection.execute(text("SELECT session_data FROM session")).scalar_one()
    assert bytes(stored) == payload
    engine.dispose()


def test_downgrade_to_base_and_back(fresh_database_url: str) -> None:
    schema.upgrade(fresh_database_url)
    schema.downgrade(fresh_database_url, "base")
    assert "session" not in tables(fresh_database_url)
    assert schema.current_revision(fresh_database_url) is None
    with pytest.raises(SchemaError, match="ormsession db upgrade"):
        schema.check_schema(create_engine(fresh_database_url))
    schema.upgrade(fresh_database_url)
    assert "session" in tables(fresh_database_url)


def test_the_model_and_the_migrations_agree(fresh_database_url: str) -> None:
    schema.upgrade(fresh_database_url)
    engine = create_engine(fresh_database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": schema.VERSION_TABLE}
        )
        differences = compare_metadata(context, session_table().metadata)
    engine.dispose()
    assert differences == []


def test_alembic_upgrade_head_from_the_checkout(fresh_database_url: str) -> None:
    environment = os.environ | {"ORMSESSION_URL": fresh_database_url}
    alembic = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini")]
    upgraded = subprocess.run(
        [*alembic, "upgrade", "head"],
        check=True,
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "session" in tables(fresh_database_url)
    # The ini's logging section is applied: Alembic's usual lines, on stderr.
    assert "INFO  [alembic.runtime.migration] Running upgrade  -> 0001_create_session" in (
        upgraded.stderr
    )
    assert f"-> {schema.HEAD_REVISION}" in upgraded.stderr
    subprocess.run(
        [*alembic, "downgrade", "base"], check=True, env=environment, cwd=ROOT, capture_output=True
    )
    assert "session" not in tables(fresh_database_url)
    # -x url=... wins over the environment
    subprocess.run(
        [*alembic, "-x", f"url={fresh_database_url}", "upgrade", "head"],
        check=True,
        env=os.environ | {"ORMSESSION_URL": "sqlite:///nowhere/x.db"},
        cwd=ROOT,
        capture_output=True,
    )
    assert "session" in tables(fresh_database_url)


def test_an_apps_own_alembic_history_is_left_alone(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url)
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        )
        connection.execute(text("INSERT INTO alembic_version VALUES ('app_rev_42')"))
    schema.upgrade(fresh_database_url)
    schema.downgrade(fresh_database_url, "base")
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            == "app_rev_42"
        )
    engine.dispose()


def test_the_cli_upgrades_and_reports(fresh_database_url: str) -> None:
    command = [sys.executable, "-m", "ormsession", "db"]
    done = subprocess.run(
        [*command, "upgrade", "--url", fresh_database_url],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert schema.HEAD_REVISION in done.stdout
    current = subprocess.run(
        [*command, "current"],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ | {"ORMSESSION_URL": fresh_database_url},
        cwd="/",
    )
    assert current.stdout.strip() == schema.HEAD_REVISION
    sql = subprocess.run(
        [*command, "upgrade", "--sql", "--url", fresh_database_url],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert "CREATE TABLE session" in sql.stdout and "CREATE INDEX" in sql.stdout


def test_head_revision_constant_matches_the_scripts(fresh_database_url: str) -> None:
    scripts = ScriptDirectory(str(schema.migrations_path()))
    assert scripts.get_current_head() == schema.HEAD_REVISION
    shipped = [rev.revision for rev in scripts.walk_revisions()][::-1]
    assert shipped == schema.KNOWN_REVISIONS


def test_a_database_at_an_older_revision_is_refused_until_upgraded(
    fresh_database_url: str,
) -> None:
    schema.upgrade(fresh_database_url, "0001_create_session")
    engine = create_engine(fresh_database_url)
    now = now_us()
    with engine.begin() as connection:
        # The model's types bind the times as each dialect stores them; the statement
        # names only the columns revision 0001 has.
        values = {
            "session_key": "a" * 64,
            "session_data": b"kept",
            "session_expiry": from_us(now + HOUR),
            "session_created": from_us(now),
            "session_version": 3,
        }
        connection.execute(insert(session_table()).values(values))
    with pytest.raises(
        SchemaError,
        match=r"at revision 0001_create_session, this ormsession needs 0003_session_owner; "
        r"run: ormsession db upgrade",
    ):
        SqlRepository(engine)
    schema.upgrade(fresh_database_url)
    repository = SqlRepository(engine)  # the check passes now
    stored = repository.read("a" * 64, now)
    assert stored is not None and (stored.data, stored.version) == (b"kept", 3)
    engine.dispose()


def test_downgrade_to_0001_drops_the_markers_and_keeps_the_sessions(
    fresh_database_url: str,
) -> None:
    table = "app_sessions"  # the revision follows the configured table name
    schema.upgrade(fresh_database_url, table_name=table)
    engine = create_engine(fresh_database_url)
    repository = SqlRepository(engine, table_name=table)
    now, kept, moved, target = now_us(), "b" * 64, "c" * 64, "d" * 64
    for key in (kept, moved):
        assert repository.create(key, StoredSession(b"data", 1, now, now + HOUR), now)
    assert repository.rename(moved, target, now + HOUR, now)
    schema.downgrade(fresh_database_url, "0001_create_session", table_name=table)
    with engine.connect() as connection:
        inspector = inspect(connection)
        assert "session_moved_to" not in {c["name"] for c in inspector.get_columns(table)}
        indexes = {i["name"] for i in inspector.get_indexes(table)}
        assert indexes == {f"ix_{table}_session_expiry"}
        keys = connection.execute(text(f"SELECT session_key FROM {table}")).scalars()
        assert set(keys) == {kept, target}, "a marker would read as an empty live session"
    schema.upgrade(fresh_database_url, table_name=table)
    assert SqlRepository(engine, table_name=table).read(target, now) is not None
    schema.downgrade(fresh_database_url, "base", table_name=table)
    engine.dispose()


def test_a_mixed_case_table_name_is_migrated_checked_and_served(fresh_database_url: str) -> None:
    # PostgreSQL folds unquoted names to lower case: the version table's name must be
    # quoted where it is read, as Alembic quotes it where it is made.
    import ormsession

    schema.upgrade(fresh_database_url, table_name="AppSessions")
    with ormsession.configure(url=fresh_database_url, table_name="AppSessions") as manager:
        session = manager.open(None)
        session["n"] = 1
        manager.save(session)
        assert manager.open(session.id)["n"] == 1
    assert schema.current_revision(fresh_database_url, table_name="AppSessions") == (
        schema.HEAD_REVISION
    )


def test_upgrades_in_two_threads_at_once_both_succeed(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alembic's ``context`` and ``op`` are module-level proxies: an upgrade that ends in
    one thread removes them under one still running in another (two event loops, or the
    sync and asyncio managers of one app, starting with auto_migrate). Seen as
    ``AttributeError: module 'alembic.context' has no attribute 'config'``."""
    import threading

    second_inside, first_done = threading.Event(), threading.Event()
    run_env = ScriptDirectory.run_env

    def paused_run_env(self: ScriptDirectory) -> None:
        # The first upgrade ends while the second is in its env.py, unless they take turns.
        if threading.current_thread().name == "first":
            second_inside.wait(timeout=2)
        else:
            second_inside.set()
            first_done.wait(timeout=2)
        run_env(self)

    monkeypatch.setattr(ScriptDirectory, "run_env", paused_run_env)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            schema.upgrade(fresh_database_url)
        except BaseException as exc:
            errors.append(exc)
        finally:
            if threading.current_thread().name == "first":
                first_done.set()

    first = threading.Thread(target=upgrade, name="first")
    second = threading.Thread(target=upgrade, name="second")
    first.start()
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)
    assert errors == []
    assert schema.current_revision(fresh_database_url) == schema.HEAD_REVISION
