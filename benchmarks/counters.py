"""Statements and commands per operation, counted by the store's server, not by the client:
a snapshot before and after the work, the difference divided by the operations.

- PostgreSQL: ``pg_stat_database`` of the benchmark's own database (``xact_commit``: one
  statement a transaction in autocommit; ``tup_*``: rows written), after forcing every pool
  connection's lazy statistics flush (subtracted again).
- MariaDB: ``SHOW SESSION STATUS`` (``Com_*``) on every pool connection: only ours.
- SQLite: ``sqlite3`` trace callbacks on every pool connection (the library *is* the server).
- Redis (plain, Sentinel master, every Cluster master): ``INFO commandstats``, commands run
  by a Lua script included; on the shared Redis the quietest of three trials.
- Couchbase: the test server's ``op_counts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Classified = tuple[int, int, dict[str, int]]  # total, writes, detail


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass(frozen=True)
class Counts:
    """Per operation: everything the server did, and the writes among it."""

    total: float
    writes: float
    unit: str  # "stmt" (SQL statements), "cmd" (Redis commands), "op" (Couchbase KV ops)
    detail: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        parts = ", ".join(f"{name} {value:g}" for name, value in sorted(self.detail.items()))
        return f"{self.total:g} {self.unit} ({parts})" if parts else f"{self.total:g} {self.unit}"


class ServerCounter(ABC):
    """Counts what the server did while ``work`` ran."""

    unit = "stmt"
    #: Trials per measurement; the one with the fewest commands wins (shared servers).
    trials = 1
    #: The counters that are writes (for the default :meth:`classify`).
    writes: frozenset[str] = frozenset()

    @abstractmethod
    def snapshot(self) -> tuple[Mapping[str, int], Mapping[str, int]]:
        """The counters, and what the snapshot itself added to them (PostgreSQL's flushes)."""

    def classify(self, delta: Mapping[str, int]) -> Classified:
        writes = sum(value for name, value in delta.items() if name in self.writes)
        return sum(delta.values()), writes, dict(delta)

    def _trial(self, work: Callable[[], object]) -> Classified:
        before, _ = self.snapshot()
        work()
        after, overhead = self.snapshot()
        delta = Counter(after)
        delta.subtract(before)
        delta.subtract(overhead)
        return self.classify({key: value for key, value in delta.items() if value})

    def count(self, work: Callable[[], object], ops: int) -> Counts:
        total, writes, detail = min((self._trial(work) for _ in range(self.trials)), key=_total)
        return Counts(
            total=round(total / ops, 2),
            writes=round(writes / ops, 2),
            unit=self.unit,
            detail={name: round(value / ops, 2) for name, value in detail.items()},
        )


def _total(result: Classified) -> int:
    return result[0]


# -- SQL ----------------------------------------------------------------------------------
class Pool:
    """Runs one SQL statement on every idle connection of an engine's pool (sync or async):
    checking out as many as the pool holds idle returns exactly those."""

    def __init__(self, engine: Any, runner: asyncio.Runner | None = None) -> None:
        self.engine = engine
        self.runner = runner
        self.is_async = type(engine).__name__ == "AsyncEngine"

    def idle(self) -> int:
        pool = self.engine.sync_engine.pool if self.is_async else self.engine.pool
        return max(1, int(pool.checkedin()))

    def on_each(self, sql: str) -> list[list[tuple[Any, ...]]]:
        if self.is_async:
            assert self.runner is not None, "an AsyncEngine needs the event loop's runner"
            return self.runner.run(self._on_each_async(sql))
        connections = [self.engine.raw_connection() for _ in range(self.idle())]
        results = []
        try:
            for connection in connections:
                cursor = connection.cursor()
                cursor.execute(sql)
                results.append([tuple(row) for row in cursor.fetchall()])
                cursor.close()
        finally:
            for connection in connections:
                connection.close()
        return results

    async def _on_each_async(self, sql: str) -> list[list[tuple[Any, ...]]]:
        results = []
        async with contextlib.AsyncExitStack() as stack:
            connect = self.engine.connect
            connections = [await stack.enter_async_context(connect()) for _ in range(self.idle())]
            for connection in connections:
                # On the driver's connection: SQLAlchemy's execute() would begin a
                # transaction whose rollback the server would count too.
                raw = (await connection.get_raw_connection()).driver_connection
                if hasattr(raw, "fetch"):  # asyncpg
                    rows = await raw.fetch(sql)
                else:  # asyncmy
                    async with raw.cursor() as cursor:
                        await cursor.execute(sql)
                        rows = await cursor.fetchall()
                results.append([tuple(row) for row in rows])
        return results


class FloorPool(Pool):
    """:class:`Pool`'s ``on_each`` over a driver floor's own idle connections."""

    def __init__(self, floor: Any, runner: asyncio.Runner | None = None) -> None:
        self.floor, self.runner = floor, runner

    def on_each(self, sql: str) -> list[list[tuple[Any, ...]]]:
        if self.runner is not None:
            return self.runner.run(self.floor.on_each(sql))  # type: ignore[no-any-return]
        return self.floor.on_each(sql)  # type: ignore[no-any-return]


class PgStatCounter(ServerCounter):
    """``pg_stat_database`` of ``database``, read over ``admin``, a connection in autocommit
    to another database (where its own statements count)."""

    _COLUMNS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")
    # A backend flushes only with relation statistics pending: read a tiny catalog table.
    _FLUSH = "SELECT pg_stat_force_next_flush() FROM pg_catalog.pg_am LIMIT 1"

    def __init__(self, admin: Any, database: str, pools: Iterable[Pool]) -> None:
        self.admin, self.database, self.pools = admin, database, list(pools)

    def snapshot(self) -> tuple[Mapping[str, int], Mapping[str, int]]:
        flushes = sum(len(pool.on_each(self._FLUSH)) for pool in self.pools)
        with self.admin.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(self._COLUMNS)} FROM pg_stat_database WHERE datname = %s",
                (self.database,),
            )
            row = cursor.fetchone()
        return dict(zip(self._COLUMNS, row, strict=True)), {"xact_commit": flushes}

    def classify(self, delta: Mapping[str, int]) -> Classified:
        statements = delta.get("xact_commit", 0) + delta.get("xact_rollback", 0)
        rows = {name: delta.get(f"tup_{name}", 0) for name in ("inserted", "updated", "deleted")}
        detail = {name[:3]: value for name, value in rows.items() if value}
        return statements, sum(rows.values()), detail


class MariaDbStatusCounter(ServerCounter):
    _NAMES = _words("select insert update delete replace insert_select begin commit rollback")
    writes = _words("insert update delete replace insert_select")

    def __init__(self, pools: Iterable[Pool]) -> None:
        self.pools = list(pools)
        names = ", ".join(f"'Com_{name}'" for name in self._NAMES)
        self._sql = f"SHOW SESSION STATUS WHERE Variable_name IN ({names})"

    def snapshot(self) -> tuple[Mapping[str, int], Mapping[str, int]]:
        totals: Counter[str] = Counter()
        for pool in self.pools:
            for rows in pool.on_each(self._sql):
                for name, value in rows:
                    totals[str(name).lower().removeprefix("com_")] += int(value)
        return totals, {}


class SqliteTraceCounter(ServerCounter):
    """Installs a trace callback on the pools' connections (existing and future ones)."""

    _FIRST_WORD = re.compile(r"\s*(\w+)")
    writes = _words("insert update delete replace")

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def trace(self, statement: str) -> None:
        match = self._FIRST_WORD.match(statement)
        self.seen[match.group(1).lower() if match else "?"] += 1

    def install(self, engine: Any, runner: asyncio.Runner | None = None) -> None:
        from sqlalchemy import event

        if type(engine).__name__ == "AsyncEngine":
            assert runner is not None
            event.listen(engine.sync_engine, "connect", self._on_async_connect)
            runner.run(self._install_async(engine))
            return
        event.listen(engine, "connect", lambda dbapi, _: dbapi.set_trace_callback(self.trace))
        for connection in [engine.raw_connection() for _ in range(Pool(engine).idle())]:
            connection.driver_connection.set_trace_callback(self.trace)
            connection.close()

    def install_floor(self, floor: Any, async_floor: Any, runner: asyncio.Runner) -> None:
        """On the driver floors' connections: the sync pool's, idle and future, and the
        aiosqlite floor's one."""
        pool = floor.pool
        for connection in pool.idle:
            connection.set_trace_callback(self.trace)
        connect = pool.connect

        def traced() -> Any:
            connection = connect()
            connection.set_trace_callback(self.trace)
            return connection

        pool.connect = traced
        runner.run(async_floor.connection.set_trace_callback(self.trace))

    def _on_async_connect(self, adapted: Any, _record: Any) -> None:
        # SQLAlchemy's aiosqlite adapter -> aiosqlite.Connection -> sqlite3.Connection.
        adapted._connection._conn.set_trace_callback(self.trace)

    async def _install_async(self, engine: Any) -> None:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            await raw.driver_connection.set_trace_callback(self.trace)

    def snapshot(self) -> tuple[Mapping[str, int], Mapping[str, int]]:
        return dict(self.seen), {}


# -- Redis and Couchbase ------------------------------------------------------------------
class RedisCommandCounter(ServerCounter):
    """``INFO commandstats`` summed over ``nodes`` (admin clients of the data masters)."""

    unit = "cmd"
    #: Server chatter that is not session work: replication, sentinels, cluster bus, us.
    IGNORED = _words(
        "info ping replconf psync sync publish subscribe config client cluster command hello "
        "auth select role readonly readwrite echo sentinel slowlog latency memory debug"
    )

    def __init__(self, nodes: Iterable[Any], *, shared: bool = False) -> None:
        self.nodes = list(nodes)
        self.trials = 3 if shared else 1
        self._writes: dict[str, bool] = {}

    def snapshot(self) -> tuple[Mapping[str, int], Mapping[str, int]]:
        totals: Counter[str] = Counter()
        for node in self.nodes:
            for name, value in node.info("commandstats").items():
                command = name.removeprefix("cmdstat_").lower()
                if command not in self.IGNORED:
                    totals[command] += int(value["calls"])
        return totals, {}

    def classify(self, delta: Mapping[str, int]) -> Classified:
        for command in delta.keys() - self._writes.keys():  # the flags Redis gives it
            reply = self.nodes[0].execute_command("COMMAND", "INFO", command.split("|")[0])
            self._writes[command] = "write" in _flags_of(reply)
        writes = sum(value for name, value in delta.items() if self._writes[name])
        return sum(delta.values()), writes, dict(delta)


def _flags_of(reply: Any) -> set[str]:
    """The flags in a ``COMMAND INFO`` reply, whichever shape redis-py parsed it into."""
    flags: set[str] = set()
    for entry in reply.values() if isinstance(reply, dict) else reply or ():
        if isinstance(entry, dict):
            values = entry.get("flags", [])
        elif isinstance(entry, list | tuple) and len(entry) > 2:
            values = entry[2]
        else:
            continue
        flags.update(v.decode() if isinstance(v, bytes) else str(v) for v in values)
    return flags


class CouchbaseOpCounter(ServerCounter):
    """The test server's per-opcode counts (``read`` returns ``{opcode name: count}``)."""

    unit = "op"
    IGNORED = _words(
        "NOOP HELLO SASL_LIST_MECHS SASL_AUTH SASL_STEP SELECT_BUCKET GET_CLUSTER_CONFIG "
        "GET_COLLECTION_ID"
    )
    writes = _words("set add replace delete touch gat increment decrement")

    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self.read = read

    def snapshot(self) -> tuple[Mapping[str, int], Mapping[str, int]]:
        return {k.lower(): v for k, v in self.read().items() if k not in self.IGNORED}, {}
