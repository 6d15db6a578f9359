"""ormsession's own Alembic lineage: upgrade, downgrade, inspect and check the SQL schema.

The migrations ship inside the package (``ormsession/migrations``; the checkout's top-level
``migrations`` points at the same files), record their state in their own version table
``ormsession_alembic_version``, and touch only ormsession's table, so they coexist with an
app's own Alembic history. These functions run them with no checkout and no alembic.ini.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from ormsession.errors import SchemaError
from ormsession.repositories.sql.model import (
    DEFAULT_TABLE_NAME,
    session_table,
    validate_table_name,
)

__all__ = [
    "HEAD_REVISION",
    "MIGRATION_TIMEOUT",
    "VERSION_TABLE",
    "alembic_config",
    "check_schema",
    "current_revision",
    "downgrade",
    "include_object",
    "migrations_path",
    "upgrade",
]

#: The version table of ormsession's lineage (apart from the app's ``alembic_version``).
VERSION_TABLE = "ormsession_alembic_version"


def version_table_for(table_name: str) -> str:
    """Each session table keeps its own lineage state, so two ormsession tables (say, two
    apps in one database) never share or clobber a version row."""
    if table_name == DEFAULT_TABLE_NAME:
        return VERSION_TABLE
    return f"{VERSION_TABLE}_{validate_table_name(table_name)}"


#: The revision this release of ormsession needs (a test keeps it equal to the script head).
HEAD_REVISION = "0003_session_owner"
#: Keys ``env.py`` reads from ``Config.attributes``.
TABLE_NAME_ATTRIBUTE = "ormsession.table_name"

Target = str | Engine | Connection

#: Seconds a whole migration run may take on a connection ormsession opens, so that a
#: stalled server fails the deploy step instead of hanging it. Connecting, and each wait
#: for a table lock, are bounded by the (much shorter) store timeout instead.
MIGRATION_TIMEOUT = 300.0

#: Alembic's ``context`` and ``op`` are module-level proxies to the running command, so
#: two commands in two threads of one process (two event loops' managers, or an app's
#: synchronous and asyncio managers, starting with ``auto_migrate``) take turns; one that
#: ends would otherwise remove the proxies under the other. Reentrant: two starts on one
#: thread (greenlets of one event loop) must not deadlock that thread.
_ALEMBIC_TURN = threading.RLock()


def migrations_path() -> Path:
    """Where the migration scripts are, inside the installed package."""
    return Path(str(resources.files("ormsession") / "migrations"))


def alembic_config(
    *,
    connection: Connection | None = None,
    url: str | None = None,
    table_name: str = DEFAULT_TABLE_NAME,
) -> Any:
    """An Alembic ``Config`` for ormsession's migrations, with no alembic.ini needed."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    if url is not None:
        # ConfigParser interpolation would eat a literal '%' (URL-encoded passwords).
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes[TABLE_NAME_ATTRIBUTE] = validate_table_name(table_name)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _connection(target: Target, timeout: float) -> Iterator[Connection]:
    """A transactional connection for migrations (even on ormsession's autocommit engine),
    under the migration limits (see :data:`MIGRATION_TIMEOUT`); a Connection the caller
    hands in is theirs, limits included."""
    if isinstance(target, Connection):
        yield target
        return
    from ormsession.repositories.sql.deadlines import run_limit

    engine = _engine_for(target, timeout) if isinstance(target, str) else target
    try:
        with _wrapped_errors(engine, timeout), engine.connect() as connection:
            # DDL and the version stamp belong in one transaction where the database
            # allows it, so use the database's own isolation level, not autocommit.
            connection = connection.execution_options(
                isolation_level=connection.default_isolation_level or "AUTOCOMMIT"
            )
            with run_limit(connection, MIGRATION_TIMEOUT), _lock_waits(connection, timeout):
                yield connection
                if connection.in_transaction():
                    connection.commit()
    finally:
        if isinstance(target, str):
            engine.dispose()


@contextmanager
def _lock_waits(connection: Connection, timeout: float) -> Iterator[None]:
    """A migration that waits for a table lock holds up every session read and write
    queued behind it (on PostgreSQL and MySQL), so its lock waits end with the store
    timeout, the longest those requests wait anyway. (SQLite's busy timeout is the
    connection's: ormsession's engines set it to the store timeout.)"""
    name = connection.dialect.name
    if name == "postgresql":
        # SET LOCAL ends with the migration's transaction.
        connection.execute(text(f"SET LOCAL lock_timeout = {max(int(timeout * 1000), 1)}"))
        yield
    elif name in ("mysql", "mariadb"):
        seconds = max(math.ceil(timeout), 1)  # whole seconds
        own = int(connection.execute(text("SELECT @@SESSION.lock_wait_timeout")).scalar_one())
        connection.execute(text(f"SET SESSION lock_wait_timeout = {seconds}"))
        try:
            yield
        finally:
            # A pooled connection goes back with the setting it came with (an app's engine
            # may set its own); one that broke during the migration is discarded by the
            # pool anyway.
            with suppress(SQLAlchemyError):
                connection.execute(text(f"SET SESSION lock_wait_timeout = {own}"))
    else:
        yield


def _engine_for(url: str, timeout: float) -> Engine:
    from ormsession.errors import MissingDriverError
    from ormsession.repositories.sql.clients import driver_connect_args
    from ormsession.repositories.sql.deadlines import bound_connects
    from ormsession.repositories.sql.urls import (
        check_sqlite_directory,
        extra_for,
        parse_sql_url,
        with_synchronous_driver,
    )

    parsed = parse_sql_url(url, want_async=None)
    check_sqlite_directory(parsed)
    # Migrations run synchronously; the same database through its sync driver.
    parsed = parse_sql_url(with_synchronous_driver(parsed))
    try:
        engine = create_engine(
            parsed,
            poolclass=NullPool,
            hide_parameters=True,
            connect_args=driver_connect_args(parsed, timeout),
        )
    except ImportError as exc:
        extra = extra_for(parsed)
        raise MissingDriverError(
            f"the driver for {parsed.drivername!r} is not installed: "
            f"pip install 'ormsession[{extra}]'"
        ) from exc
    bound_connects(engine, timeout)
    return engine


@contextmanager
def _wrapped_errors(engine: Engine, timeout: float) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except SQLAlchemyError as exc:
        from ormsession.repositories.sql.errors import timed_out, wrap_sql_error

        if time.monotonic() - started >= MIGRATION_TIMEOUT:
            raise timed_out(exc, engine.url, "migration", MIGRATION_TIMEOUT) from exc
        raise wrap_sql_error(exc, engine, "migration") from exc


def upgrade(
    target: Target,
    revision: str = "head",
    *,
    table_name: str = DEFAULT_TABLE_NAME,
    timeout: float = 5.0,
) -> None:
    """Bring ``target`` (a URL, an Engine or a Connection) up to ``revision``.

    ``timeout`` (the ``store_timeout`` setting) bounds connecting and each wait for a table
    lock; the whole run ends within :data:`MIGRATION_TIMEOUT` on a connection ormsession
    opened (a Connection handed in runs under its owner's limits, and in the transaction it
    has open, if any, which its owner commits: Alembic's rule). Safe to call from an app's
    own ``env.py`` (docs/migrations.md).
    """
    from alembic import command

    with _ALEMBIC_TURN, _connection(target, timeout) as connection, _callers_alembic_kept():
        command.upgrade(alembic_config(connection=connection, table_name=table_name), revision)


def downgrade(
    target: Target,
    revision: str = "base",
    *,
    table_name: str = DEFAULT_TABLE_NAME,
    timeout: float = 5.0,
) -> None:
    """Take ``target`` down to ``revision`` (``base`` drops ormsession's table); the limits
    are :func:`upgrade`'s."""
    from alembic import command

    with _ALEMBIC_TURN, _connection(target, timeout) as connection, _callers_alembic_kept():
        command.downgrade(alembic_config(connection=connection, table_name=table_name), revision)


@contextmanager
def _callers_alembic_kept() -> Iterator[None]:
    """Let an app's own ``env.py`` call :func:`upgrade` in the middle of its command.

    ``alembic.context`` and ``alembic.op`` are module-level proxies to the running command's
    environment. Ours installs its own over the app's and, on exit, deletes their names, so
    the app's command then fails as it removes its own: ``KeyError: 'config'`` (or
    ``'script'``: the order is a set's), after having migrated. Put the caller's back.
    """
    from alembic import context, op

    callers = [getattr(module, "_proxy", None) for module in (context, op)]
    try:
        yield
    finally:
        for proxy in callers:
            if proxy is not None:
                proxy._install_proxy()


def current_revision(
    target: Target, *, table_name: str = DEFAULT_TABLE_NAME, timeout: float = 5.0
) -> str | None:
    """The ormsession revision ``target`` is at, or None if never migrated."""
    with _connection(target, timeout) as connection:
        return _stamped_revision(connection, table_name)


def _stamped_revision(connection: Connection, table_name: str) -> str | None:
    """The revision in ormsession's version table; else ormsession's revision in the app's
    ``alembic_version`` (when the app runs this lineage as a branch of its own history)."""
    tables = inspect(connection).get_table_names()
    own_table = version_table_for(table_name)
    if own_table in tables:
        # Quoted as the dialect quotes it: PostgreSQL folds an unquoted MixedCase name.
        quoted = connection.dialect.identifier_preparer.quote(own_table)
        query = text(f"SELECT version_num FROM {quoted}")  # noqa: S608 -- validated name
        for revision in connection.execute(query).scalars():
            return str(revision)
    if "alembic_version" in tables:
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        ours = [str(revision) for revision in rows if revision in KNOWN_REVISIONS]
        if ours:
            return max(ours, key=KNOWN_REVISIONS.index)
    return None


#: Every revision ormsession has shipped, oldest first (a test checks it against the scripts).
KNOWN_REVISIONS = ["0001_create_session", "0002_session_moved_to", HEAD_REVISION]


def check_schema(target: Engine | Connection, *, table_name: str = DEFAULT_TABLE_NAME) -> None:
    """Fail fast at start-up when the session table is missing or at an older revision.

    Accepts the revision in ormsession's own version table, or in the app's
    ``alembic_version`` when the app runs ormsession's migrations as a branch of its own.
    """
    from ormsession.repositories.sql.urls import display_sql_url
    from ormsession.urls import upgrade_command

    engine = target.engine if isinstance(target, Connection) else target
    where = display_sql_url(engine.url)
    fix = f"run: {upgrade_command(engine.url.render_as_string(hide_password=False))}"
    try:
        with _borrowed(target) as connection:
            revision = _stamped_revision(connection, table_name)
            inspector = inspect(connection)
            has_table = inspector.has_table(table_name)
            columns = (
                {column["name"] for column in inspector.get_columns(table_name)}
                if has_table
                else set()
            )
    except SQLAlchemyError as exc:
        from ormsession.repositories.sql.errors import wrap_sql_error

        raise wrap_sql_error(exc, engine, "schema check") from exc
    if revision is None or not has_table:
        raise SchemaError(f"the session table {table_name!r} is missing in {where}; {fix}")
    if revision not in KNOWN_REVISIONS:
        raise SchemaError(
            f"the session table in {where} is at revision {revision}, unknown to this "
            f"ormsession (which needs {HEAD_REVISION}): is the database newer than the code?"
        )
    if revision != HEAD_REVISION:
        raise SchemaError(
            f"the session table in {where} is at revision {revision}, this ormsession needs "
            f"{HEAD_REVISION}; {fix}"
        )
    # Stamped, but the table the connection finds under that name may be another one: an
    # app's own table of that name earlier on a PostgreSQL search_path, or a MySQL
    # database other than the stamped one. Every statement would fail on it.
    missing = [c.name for c in session_table(table_name).columns if c.name not in columns]
    if missing:
        raise SchemaError(
            f"the table {table_name!r} that {where} finds is not ormsession's session table "
            f"(it has no {', '.join(missing)}): another table of that name comes first "
            f"(a PostgreSQL search_path set by the engine?), or it was changed by hand"
        )


@contextmanager
def _borrowed(target: Engine | Connection) -> Iterator[Connection]:
    if isinstance(target, Connection):
        yield target
    else:
        with target.connect() as connection:
            yield connection


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """For an app's own ``env.py``: keep ormsession's tables out of the app's autogenerate.

    ``context.configure(..., include_object=ormsession.schema.include_object)``
    """
    table_name = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not _is_ormsession_table(table_name)


def _is_ormsession_table(name: str | None) -> bool:
    return name == DEFAULT_TABLE_NAME or (name or "").startswith(VERSION_TABLE)
