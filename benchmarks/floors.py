"""The floor: the same session work written by hand on the same driver, pool and client. It
hashes the id (SHA-256 hex, as ormsession stores it), reads one record by key with its
expiry, ``json``-decodes it, and writes one upsert with the expiry: no id check, absolute
timeout, compare-and-set, count index or change detection. Regenerate: SQL ``UPDATE`` of the
key; Redis ``RENAME`` (Cluster: ``GET`` + ``SET`` + ``DEL``); Couchbase upsert + remove."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.util import await_only, greenlet_spawn

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


class AsyncFloor(Protocol):
    async def read(self, session_id: str) -> dict[str, Any] | None: ...
    async def write(self, session_id: str, data: dict[str, Any]) -> None: ...


# -- no store at all ---------------------------------------------------------------------
class DictFloor:
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


class AsyncDictFloor:
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


class SqlFloor:
    """By hand on a DBAPI cursor from ``engine``'s pool (the engine ormsession uses)."""

    def __init__(self, engine: Any, table: str = "session") -> None:
        self.engine = engine
        dialect = engine.dialect.name
        style = "qmark" if dialect == "sqlite" else "format"
        self.sql = SqlStatements(dialect, table, style)
        self.bind_time = _time_binder(dialect)

    def _run(self, sql: str, params: tuple[Any, ...], fetch: bool = False) -> Any:
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            row = cursor.fetchone() if fetch else None
            cursor.close()
            return row
        finally:
            connection.close()

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


class AsyncSqlFloor:
    """By hand on the asyncio driver's connection from ``engine``'s pool."""

    def __init__(self, engine: Any, table: str = "session") -> None:
        self.engine = engine
        self.driver = engine.dialect.driver
        dialect = engine.dialect.name
        style = {"asyncpg": "numeric_dollar", "aiosqlite": "qmark"}.get(self.driver, "format")
        self.sql = SqlStatements(dialect, table, style)
        self.bind_time = _time_binder(dialect)

    async def _run(self, sql: str, params: tuple[Any, ...], fetch: bool = False) -> Any:
        # As ormsession's store runs one: a greenlet checks the pool's connection out, awaits
        # the driver and gives it back (engine.connect() would add ~80 µs a statement).
        return await greenlet_spawn(self._on_pooled_connection, sql, params, fetch)

    def _on_pooled_connection(self, sql: str, params: tuple[Any, ...], fetch: bool) -> Any:
        connection = self.engine.sync_engine.raw_connection()
        try:
            return await_only(self.on_connection(connection.driver_connection, sql, params, fetch))
        finally:
            connection.close()

    async def on_connection(
        self, raw: Any, sql: str, params: tuple[Any, ...], fetch: bool = False
    ) -> Any:
        """The statement on the driver's connection ``raw``: its first row when ``fetch``."""
        if self.driver == "asyncpg":
            if fetch:
                return await raw.fetchrow(sql, *params)
            await raw.execute(sql, *params)
            return None
        if self.driver == "aiosqlite":
            cursor = await raw.execute(sql, params)
            try:
                return await cursor.fetchone() if fetch else None
            finally:
                await cursor.close()
        async with raw.cursor() as cursor:  # asyncmy
            await cursor.execute(sql, params)
            return await cursor.fetchone() if fetch else None

    async def read(self, session_id: str) -> dict[str, Any] | None:
        now = datetime.now(UTC)
        row = await self._run(self.sql.read, (key_of(session_id), self.bind_time(now)), True)
        return None if row is None else loads(bytes(row[0]))

    async def write(self, session_id: str, data: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        bind = self.bind_time
        await self._run(
            self.sql.upsert, (key_of(session_id), dumps(data), bind(now + TTL), bind(now))
        )


# -- Redis and Couchbase -----------------------------------------------------------------
class _Prefixed:
    """A floor on ``client`` (the manager's own), its keys under ``prefix`` + ``floor:``."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix + "floor:"


class RedisFloor(_Prefixed):
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


class AsyncRedisFloor(_Prefixed):
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


class CouchbaseFloor(_CouchbaseKeys):
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


class AsyncCouchbaseFloor(_CouchbaseKeys):
    async def read(self, session_id: str) -> dict[str, Any] | None:
        try:
            result = await self.client.get(self.prefix + key_of(session_id), self.get_options)
        except self.missing:
            return None
        return loads(result.value)

    async def write(self, session_id: str, data: dict[str, Any]) -> None:
        key = self.prefix + key_of(session_id)
        await self.client.upsert(key, dumps(data), self.upsert_options)
