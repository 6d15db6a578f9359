"""The floor: the same session work written by hand on the driver itself (psycopg2, PyMySQL
and sqlite3 on connections in autocommit from a minimal pool; asyncpg's and asyncmy's own
pools, one aiosqlite connection; redis-py), with ormsession's timeouts where the driver has
them natively. It hashes the id (SHA-256 hex, as ormsession stores it), reads one record by
key with its expiry, ``json``-decodes it, and writes one upsert with the expiry: no id check,
absolute timeout, compare-and-set, count index or change detection. Regenerate: SQL
``UPDATE`` of the key; Redis ``RENAME`` (Cluster: ``GET`` + ``SET`` + ``DEL``); Couchbase
upsert + remove."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

#: How long a session lives (ormsession's default idle timeout).
TTL = timedelta(days=1)
_TTL_MS = int(TTL.total_seconds() * 1000)


def key_of(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def new_id() -> str:
    return secrets.token_urlsafe(32)


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def loads(raw: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw)
    return value


class Floor(Protocol):
    def read(self, session_id: str) -> dict[str, Any] | None: ...
    def write(self, session_id: str, data: dict[str, Any]) -> None: ...
    def regenerate(self, session_id: str, data: dict[str, Any]) -> str: ...
    def close(self) -> None: ...


class AsyncFloor(Protocol):
    async def start(self) -> None: ...
    async def read(self, session_id: str) -> dict[str, Any] | None: ...
    async def write(self, session_id: str, data: dict[str, Any]) -> None: ...
    async def close(self) -> None: ...


class _NothingToOpen:
    """A floor on a client someone else opens and closes."""

    def close(self) -> None:
        return None


class _AsyncNothingToOpen:
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


# -- no store at all ---------------------------------------------------------------------
class DictFloor(_NothingToOpen):
    """The floor's CPU work alone (hash, json) over a dict: the counterpart of ``memory://``."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}

    def read(self, session_id: str) -> dict[str, Any] | None:
        raw = self.records.get(key_of(session_id))
        return None if raw is None else loads(raw)

    def write(self, session_id: str, data: dict[str, Any]) -> None:
        self.records[key_of(session_id)] = dumps(data)

    def regenerate(self, session_id: str, data: dict[str, Any]) -> str:
        fresh = new_id()
        self.records[key_of(fresh)] = self.records.pop(key_of(session_id))
        return fresh


class AsyncDictFloor(_AsyncNothingToOpen):
    def __init__(self) -> None:
        self.floor = DictFloor()

    async def read(self, session_id: str) -> dict[str, Any] | None:
        return self.floor.read(session_id)

    async def write(self, session_id: str, data: dict[str, Any]) -> None:
        self.floor.write(session_id, data)


# -- SQL ----------------------------------------------------------------------------------
def _sqlite_text(moment: datetime) -> str:
    # The text format SQLAlchemy stores SQLite DATETIMEs in (so the columns compare alike).
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _time_binder(dialect: str) -> Callable[[datetime], Any]:
    if dialect == "sqlite":
        return _sqlite_text
    if dialect == "postgresql":
        return lambda moment: moment
    return lambda moment: moment.replace(tzinfo=None)  # MySQL DATETIME: naive UTC


class SqlStatements:
    """The floor's three statements for a dialect, in a driver's parameter style."""

    def __init__(self, dialect: str, table: str, style: str) -> None:
        m = self._marks(style, 4)
        self.read = (
            f"SELECT session_data FROM {table} WHERE session_key = {m[0]} "
            f"AND session_expiry > {m[1]}"
        )
        columns = "session_key, session_data, session_expiry, session_created, session_version"
        insert = f"INSERT INTO {table} ({columns}) VALUES ({m[0]}, {m[1]}, {m[2]}, {m[3]}, 1)"
        if dialect in ("mysql", "mariadb"):
            self.upsert = (
                f"{insert} ON DUPLICATE KEY UPDATE "
                "session_data = VALUES(session_data), session_expiry = VALUES(session_expiry)"
            )
        else:
            self.upsert = (
                f"{insert} ON CONFLICT (session_key) DO UPDATE SET "
                "session_data = excluded.session_data, session_expiry = excluded.session_expiry"
            )
        self.rename = (
            f"UPDATE {table} SET session_key = {m[0]}, session_expiry = {m[1]} "
            f"WHERE session_key = {m[2]} AND session_expiry > {m[3]}"
        )

    @staticmethod
    def _marks(style: str, count: int) -> list[str]:
        if style == "numeric_dollar":
            return [f"${i}" for i in range(1, count + 1)]
        return ["?" if style == "qmark" else "%s"] * count


class _Pool:
    """A minimal thread-safe pool: idle connections in a deque (``append`` and ``pop`` are
    atomic), a new connection when none is idle, a connection that failed dropped."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self.connect = connect
        self.idle: deque[Any] = deque()

    def get(self) -> Any:
        try:
            return self.idle.pop()
        except IndexError:
            return self.connect()

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class DriverSqlFloor:
    """By hand on the sync driver itself (psycopg2, PyMySQL, sqlite3), on connections in
    autocommit from :class:`_Pool`; ``connect`` makes one, with ormsession's timeouts."""

    def __init__(self, connect: Callable[[], Any], dialect: str, table: str = "session") -> None:
        self.pool = _Pool(connect)
        self.sql = SqlStatements(dialect, table, "qmark" if dialect == "sqlite" else "format")
        self.bind_time = _time_binder(dialect)

    def _run(self, sql: str, params: tuple[Any, ...], fetch: bool = False) -> Any:
        connection = self.pool.get()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            row = cursor.fetchone() if fetch else None
            cursor.close()
        except BaseException:
            connection.close()  # never pooled again: it may be half-way through a reply
            raise
        self.pool.idle.append(connection)
        return row

    def read(self, session_id: str) -> dict[str, Any] | None:
        now = datetime.now(UTC)
        row = self._run(self.sql.read, (key_of(session_id), self.bind_time(now)), fetch=True)
        return None if row is None else loads(bytes(row[0]))

    def write(self, session_id: str, data: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        bind = self.bind_time
        params = (key_of(session_id), dumps(data), bind(now + TTL), bind(now))
        self._run(self.sql.upsert, params)

    def regenerate(self, session_id: str, data: dict[str, Any]) -> str:
        now = datetime.now(UTC)
        fresh = new_id()
        bind = self.bind_time
        params = (key_of(fresh), bind(now + TTL), key_of(session_id), bind(now))
        self._run(self.sql.rename, params)
        return fresh

    def on_each(self, sql: str) -> list[list[tuple[Any, ...]]]:
        """``sql`` run on every idle connection (the server-side counters' hook)."""
        results = []
        for connection in list(self.pool.idle):
            cursor = connection.cursor()
            cursor.execute(sql)
            results.append([tuple(row) for row in cursor.fetchall()])
            cursor.close()
        return results

    def close(self) -> None:
        self.pool.close()


class SqlFloor(DriverSqlFloor):
    """The earlier floor, on a DBAPI connection from ``engine``'s pool (SQLAlchemy's
    ``raw_connection()``): kept as a labelled extra row, and for the scale part's memory."""

    def __init__(self, engine: Any, table: str = "session") -> None:
        super().__init__(engine.raw_connection, engine.dialect.name, table)

    def _run(self, sql: str, params: tuple[Any, ...], fetch: bool = False) -> Any:
        connection = self.pool.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            row = cursor.fetchone() if fetch else None
            cursor.close()
            return row
        finally:
            connection.close()  # back to SQLAlchemy's pool


class AsyncSqlFloorBase:
    """By hand on an asyncio driver itself: :meth:`start` (in the event loop) makes the
    pool or connection, with ormsession's timeouts where the driver has them natively."""

    style = "format"

    def __init__(self, dialect: str, table: str = "session") -> None:
        self.sql = SqlStatements(dialect, table, self.style)
        self.bind_time = _time_binder(dialect)

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def fetch(self, sql: str, params: tuple[Any, ...]) -> Any:
        """The first row ``sql`` returns (None: no row)."""
        raise NotImplementedError

    async def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        raise NotImplementedError

    async def on_each(self, sql: str) -> list[list[tuple[Any, ...]]]:
        """``sql`` run on every idle connection (the server-side counters' hook)."""
        raise NotImplementedError

    async def read(self, session_id: str) -> dict[str, Any] | None:
        now = datetime.now(UTC)
        row = await self.fetch(self.sql.read, (key_of(session_id), self.bind_time(now)))
        return None if row is None else loads(bytes(row[0]))

    async def write(self, session_id: str, data: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        bind = self.bind_time
        await self.execute(
            self.sql.upsert, (key_of(session_id), dumps(data), bind(now + TTL), bind(now))
        )


class AsyncEngineSqlFloor(AsyncSqlFloorBase):
    """The earlier asyncio floor, for a labelled extra row: the driver's connection checked
    out of ``engine``'s (SQLAlchemy's) pool and given back in one new greenlet of
    SQLAlchemy's ``greenlet_spawn`` (ormsession's store keeps its greenlets: bridge.py);
    the statements as the driver floors run them."""

    def __init__(self, engine: Any, table: str = "session") -> None:
        self.engine = engine
        self.driver = engine.dialect.driver
        self.style = {"asyncpg": "numeric_dollar", "aiosqlite": "qmark"}.get(self.driver, "format")
        super().__init__(engine.dialect.name, table)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def fetch(self, sql: str, params: tuple[Any, ...]) -> Any:
        from sqlalchemy.util import greenlet_spawn

        return await greenlet_spawn(self._on_pooled_connection, sql, params, True)

    async def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        from sqlalchemy.util import greenlet_spawn

        await greenlet_spawn(self._on_pooled_connection, sql, params, False)

    def _on_pooled_connection(self, sql: str, params: tuple[Any, ...], fetch: bool) -> Any:
        from sqlalchemy.util import await_only

        connection = self.engine.sync_engine.raw_connection()
        try:
            return await_only(self._on_driver(connection.driver_connection, sql, params, fetch))
        finally:
            connection.close()

    async def _on_driver(self, raw: Any, sql: str, params: tuple[Any, ...], fetch: bool) -> Any:
        if self.driver == "asyncpg":
            return await (raw.fetchrow(sql, *params) if fetch else raw.execute(sql, *params))
        if self.driver == "aiosqlite":
            rows = await raw.execute_fetchall(sql, params)
            return rows[0] if rows else None
        async with raw.cursor() as cursor:  # asyncmy
            await cursor.execute(sql, params)
            return await cursor.fetchone() if fetch else None


async def _no_reset(connection: Any) -> None:
    """asyncpg's pool resets a connection it takes back with a query (``RESET ALL`` and
    more: a round trip); a pool given a reset of its own runs that instead."""


class AsyncpgFloor(AsyncSqlFloorBase):
    """asyncpg's own pool, no reset query; connect and command timeouts as ormsession's."""

    style = "numeric_dollar"

    def __init__(self, dsn: str, timeout: float, table: str = "session") -> None:
        super().__init__("postgresql", table)
        self.dsn, self.timeout = dsn, timeout
        self.pool: Any = None

    async def start(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=10, reset=_no_reset,
            timeout=self.timeout, command_timeout=self.timeout,
        )  # fmt: skip

    async def close(self) -> None:
        await self.pool.close()

    async def fetch(self, sql: str, params: tuple[Any, ...]) -> Any:
        async with self.pool.acquire() as connection:
            return await connection.fetchrow(sql, *params)

    async def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        async with self.pool.acquire() as connection:
            await connection.execute(sql, *params)

    async def on_each(self, sql: str) -> list[list[tuple[Any, ...]]]:
        # Idle connections only: acquiring as many as are idle takes exactly those.
        async with contextlib.AsyncExitStack() as stack:
            idle = self.pool.get_idle_size()
            held = [await stack.enter_async_context(self.pool.acquire()) for _ in range(idle)]
            return [[tuple(row) for row in await c.fetch(sql)] for c in held]


class AsyncmyFloor(AsyncSqlFloorBase):
    """An asyncmy pool in autocommit; connect and read timeouts as ormsession's."""

    def __init__(self, connect: dict[str, Any], timeout: float, table: str = "session") -> None:
        super().__init__("mysql", table)
        self.connect, self.timeout = connect, timeout
        self.pool: Any = None

    async def start(self) -> None:
        import asyncmy

        self.pool = await asyncmy.create_pool(
            minsize=1, maxsize=10, autocommit=True,
            connect_timeout=self.timeout, read_timeout=self.timeout, **self.connect,
        )  # fmt: skip

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    async def fetch(self, sql: str, params: tuple[Any, ...]) -> Any:
        async with self.pool.acquire() as connection, connection.cursor() as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchone()

    async def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        async with self.pool.acquire() as connection, connection.cursor() as cursor:
            await cursor.execute(sql, params)

    async def on_each(self, sql: str) -> list[list[tuple[Any, ...]]]:
        async with contextlib.AsyncExitStack() as stack:
            idle = self.pool.freesize
            held = [await stack.enter_async_context(self.pool.acquire()) for _ in range(idle)]
            results = []
            for connection in held:
                async with connection.cursor() as cursor:
                    await cursor.execute(sql)
                    results.append([tuple(row) for row in await cursor.fetchall()])
            return results


class AiosqliteFloor(AsyncSqlFloorBase):
    """One aiosqlite connection in autocommit (WAL, as ormsession's), busy timeout as
    ormsession's; each statement one hop to its thread (``execute_fetchall``)."""

    style = "qmark"

    def __init__(self, path: str, timeout: float, table: str = "session") -> None:
        super().__init__("sqlite", table)
        self.path, self.timeout = path, timeout
        self.connection: Any = None

    async def start(self) -> None:
        import aiosqlite

        self.connection = await aiosqlite.connect(
            self.path, timeout=self.timeout, isolation_level=None
        )
        await self.connection.execute_fetchall("PRAGMA journal_mode=WAL")
        await self.connection.execute_fetchall("PRAGMA synchronous=NORMAL")

    async def close(self) -> None:
        await self.connection.close()

    async def fetch(self, sql: str, params: tuple[Any, ...]) -> Any:
        rows = await self.connection.execute_fetchall(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        await self.connection.execute_fetchall(sql, params)

    async def on_each(self, sql: str) -> list[list[tuple[Any, ...]]]:
        return [[tuple(row) for row in await self.connection.execute_fetchall(sql)]]


# -- Redis and Couchbase -----------------------------------------------------------------
class _Prefixed:
    """A floor on ``client`` (the manager's own), its keys under ``prefix`` + ``floor:``."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix + "floor:"


class RedisFloor(_Prefixed, _NothingToOpen):
    """By hand on the redis-py client ormsession uses (``GET`` / ``SET PX``)."""

    def __init__(self, client: Any, prefix: str, *, cluster: bool = False) -> None:
        super().__init__(client, prefix)
        self.cluster = cluster

    def read(self, session_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self.prefix + key_of(session_id))
        return None if raw is None else loads(raw)

    def write(self, session_id: str, data: dict[str, Any]) -> None:
        self.client.set(self.prefix + key_of(session_id), dumps(data), px=_TTL_MS)

    def regenerate(self, session_id: str, data: dict[str, Any]) -> str:
        fresh = new_id()
        old, new = self.prefix + key_of(session_id), self.prefix + key_of(fresh)
        if self.cluster:  # the keys live in different slots: no RENAME across them
            raw = self.client.get(old)
            self.client.set(new, raw, px=_TTL_MS)
            self.client.delete(old)
        else:
            self.client.rename(old, new)
        return fresh


class AsyncRedisFloor(_Prefixed, _AsyncNothingToOpen):
    async def read(self, session_id: str) -> dict[str, Any] | None:
        raw = await self.client.get(self.prefix + key_of(session_id))
        return None if raw is None else loads(raw)

    async def write(self, session_id: str, data: dict[str, Any]) -> None:
        await self.client.set(self.prefix + key_of(session_id), dumps(data), px=_TTL_MS)


class _CouchbaseKeys(_Prefixed):
    """On the collection ormsession uses (``get`` / ``upsert`` with expiry), raw JSON."""

    def __init__(self, client: Any, prefix: str) -> None:
        from couchbase.exceptions import DocumentNotFoundException
        from couchbase.options import GetOptions, UpsertOptions
        from couchbase.transcoder import RawJSONTranscoder

        super().__init__(client, prefix)
        transcoder = RawJSONTranscoder()
        self.get_options = GetOptions(transcoder=transcoder)
        self.upsert_options = UpsertOptions(expiry=TTL, transcoder=transcoder)
        self.missing = DocumentNotFoundException


class CouchbaseFloor(_CouchbaseKeys, _NothingToOpen):
    def read(self, session_id: str) -> dict[str, Any] | None:
        try:
            result = self.client.get(self.prefix + key_of(session_id), self.get_options)
        except self.missing:
            return None
        return loads(result.value)

    def write(self, session_id: str, data: dict[str, Any]) -> None:
        key = self.prefix + key_of(session_id)
        self.client.upsert(key, dumps(data), self.upsert_options)

    def regenerate(self, session_id: str, data: dict[str, Any]) -> str:
        fresh = new_id()
        self.write(fresh, data)
        self.client.remove(self.prefix + key_of(session_id))
        return fresh


class AsyncCouchbaseFloor(_CouchbaseKeys, _AsyncNothingToOpen):
    async def read(self, session_id: str) -> dict[str, Any] | None:
        try:
            result = await self.client.get(self.prefix + key_of(session_id), self.get_options)
        except self.missing:
            return None
        return loads(result.value)

    async def write(self, session_id: str, data: dict[str, Any]) -> None:
        key = self.prefix + key_of(session_id)
        await self.client.upsert(key, dumps(data), self.upsert_options)
