"""The stores, each set up, reachable by URL, and torn down: ``sqlite`` (a temp file);
``postgresql``, ``mariadb`` (a private database on the local server, migrated, dropped
after); ``redis`` (the shared server, keys under a private prefix, deleted after; nothing
flushed); ``sentinel``, ``cluster`` (their own servers); ``couchbase`` (the project's test
server, in a child process). One that cannot be set up raises StoreUnavailableError."""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from benchmarks import counters, floors

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
MARIADB_HOST, MARIADB_PORT, MARIADB_USER = "127.0.0.1", 3306, "root"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

ALL_STORES = ("sqlite", "postgresql", "mariadb", "redis", "sentinel", "cluster", "couchbase")
#: Not a store: ``memory://`` against a dict, ormsession's own CPU cost per operation with no
#: I/O. No targets, no server to count.
CPU_ONLY = "memory"


class StoreUnavailableError(RuntimeError):
    """The store cannot be benchmarked here (the message says why)."""


def _missing(*_: Any) -> Any:
    raise NotImplementedError


@dataclass
class StoreEnv:
    """One store, ready: URLs for ``configure``/``configure_async``, and how to build its
    floors and its server-side counter around the managers built from them."""

    name: str
    url: str
    async_url: str
    version: str
    options: dict[str, Any] = field(default_factory=dict)
    floor: Callable[[Any], floors.Floor] = _missing
    async_floor: Callable[[Any], floors.AsyncFloor] = _missing
    #: (manager, async manager, runner, floor, async floor) -> the counter of all four.
    counter: Callable[..., counters.ServerCounter] = _missing
    #: Store-specific handles the scale benchmarks need (connection parameters, clients).
    extra: dict[str, Any] = field(default_factory=dict)
    #: SQL: the earlier floors, on the managers' engines (SQLAlchemy's pools), for the
    #: labelled extra rows that measure what those pools cost against the driver floors.
    engine_floors: Callable[[Any, Any], tuple[floors.Floor, floors.AsyncFloor]] | None = None
    #: Whether the store writes conditionally in one native command or statement. The Redis
    #: family (Redis 7) compare-and-sets in a Lua script: its write requests get a higher limit.
    native_conditional_write: bool = True


def _need(module: str, extra: str) -> None:
    if find_spec(module) is None:
        raise StoreUnavailableError(f"{module} is not installed: pip install 'ormsession[{extra}]'")


def _prefix() -> str:
    return f"ormsession-bench-{uuid.uuid4().hex[:12]}:"


# -- SQL ----------------------------------------------------------------------------------
#: ormsession's default store timeout, which the floors set where the driver has it natively.
TIMEOUT = 5.0


def _sql_env(name: str, drivers: str, where: str, version: str) -> StoreEnv:
    """``drivers``: the sync and the async URL scheme, comma-separated."""
    sync, asyncio_ = drivers.split(",")
    env = StoreEnv(name, f"{sync}://{where}", f"{asyncio_}://{where}", version)
    env.engine_floors = lambda m, a: (
        floors.SqlFloor(m.repository.engine),
        floors.AsyncEngineSqlFloor(a.repository.engine),
    )
    return env


def _pools(
    m: Any, a: Any, runner: asyncio.Runner, floor: Any, async_floor: Any
) -> list[counters.Pool]:
    """The pools of a sync and an async manager ``m`` and ``a``, and of the floors."""
    return [
        counters.Pool(m.repository.engine),
        counters.Pool(a.repository.engine, runner),
        counters.FloorPool(floor),
        counters.FloorPool(async_floor, runner),
    ]


@contextlib.contextmanager
def sqlite_env() -> Iterator[StoreEnv]:
    _need("aiosqlite", "async-sqlite")
    import sqlite3

    with tempfile.TemporaryDirectory(prefix="ormsession-bench-") as directory:
        path = f"/{Path(directory) / 'sessions.sqlite3'}"
        env = _sql_env("sqlite", "sqlite,sqlite+aiosqlite", path, sqlite3.sqlite_version)

        def connect() -> sqlite3.Connection:
            # As ormsession's engine: autocommit, WAL, synchronous=NORMAL, busy timeout.
            connection = sqlite3.connect(
                path, timeout=TIMEOUT, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection

        env.floor = lambda m: floors.DriverSqlFloor(connect, "sqlite")
        env.async_floor = lambda m: floors.AiosqliteFloor(path, TIMEOUT)

        def counter(
            m: Any, a: Any, runner: asyncio.Runner, floor: Any, async_floor: Any
        ) -> counters.ServerCounter:
            traced = counters.SqliteTraceCounter()
            traced.install(m.repository.engine)
            traced.install(a.repository.engine, runner)
            traced.install_floor(floor, async_floor, runner)
            return traced

        env.counter = counter
        yield env


@contextlib.contextmanager
def _private_database(admin: Any, version_sql: str, drop: str) -> Iterator[tuple[str, str]]:
    """A new database on ``admin``'s server, dropped after: its name, the server's version."""
    name = f"ormsession_bench_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(admin), admin.cursor() as cursor:
        cursor.execute(version_sql)
        row = cursor.fetchone()
        cursor.execute(f"CREATE DATABASE {name}")
        try:
            yield name, str(row[0]) if row else "?"
        finally:
            cursor.execute(drop.format(name))


def _migrated(env: StoreEnv) -> StoreEnv:
    from ormsession.schema import upgrade

    upgrade(env.url, table_name="session")
    return env


@contextlib.contextmanager
def postgresql_env() -> Iterator[StoreEnv]:
    _need("psycopg2", "postgres")
    _need("asyncpg", "async-postgres")
    import psycopg2

    def connect(database: str = "postgres", **more: Any) -> Any:
        return psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database, **more)

    try:
        admin = connect(connect_timeout=3)
    except psycopg2.Error as exc:
        raise StoreUnavailableError(f"PostgreSQL at {PG_HOST}:{PG_PORT}: {exc}".strip()) from exc
    admin.autocommit = True
    drop = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
    with _private_database(admin, "SELECT current_setting('server_version')", drop) as db:
        name, version = db
        where = f"{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
        env = _sql_env("postgresql", "postgresql+psycopg2,postgresql+asyncpg", where, version)

        def floor_connect() -> Any:
            # libpq's connect timeout is in whole seconds; psycopg2 has no read timeout.
            connection = connect(name, connect_timeout=math.ceil(TIMEOUT))
            connection.autocommit = True
            return connection

        env.floor = lambda m: floors.DriverSqlFloor(floor_connect, "postgresql")
        dsn = f"postgresql://{where}"
        env.async_floor = lambda m: floors.AsyncpgFloor(dsn, TIMEOUT)
        env.counter = lambda m, a, runner, *fl: counters.PgStatCounter(
            admin, name, _pools(m, a, runner, *fl)
        )
        env.extra = {"connect": lambda: connect(name)}
        yield _migrated(env)


@contextlib.contextmanager
def mariadb_env() -> Iterator[StoreEnv]:
    _need("pymysql", "mysql")
    _need("asyncmy", "async-mysql")
    import pymysql

    def connect(database: str | None = None, timeout: float = 3, **more: Any) -> Any:
        return pymysql.connect(
            host=MARIADB_HOST,
            port=MARIADB_PORT,
            user=MARIADB_USER,
            database=database,
            connect_timeout=timeout,
            autocommit=True,
            **more,
        )

    try:
        admin = connect()
    except pymysql.MySQLError as exc:
        raise StoreUnavailableError(f"MariaDB at {MARIADB_HOST}:{MARIADB_PORT}: {exc}") from exc
    with _private_database(admin, "SELECT VERSION()", "DROP DATABASE IF EXISTS {}") as db:
        name, version = db
        where = f"{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/{name}"
        env = _sql_env("mariadb", "mysql+pymysql,mysql+asyncmy", where, version)
        env.floor = lambda m: floors.DriverSqlFloor(
            lambda: connect(name, TIMEOUT, read_timeout=TIMEOUT, write_timeout=TIMEOUT), "mysql"
        )
        where_async = {
            "host": MARIADB_HOST, "port": MARIADB_PORT, "user": MARIADB_USER, "db": name
        }  # fmt: skip
        env.async_floor = lambda m: floors.AsyncmyFloor(where_async, TIMEOUT)
        env.counter = lambda m, a, runner, *fl: counters.MariaDbStatusCounter(
            _pools(m, a, runner, *fl)
        )
        env.extra = {"connect": lambda: connect(name)}
        yield _migrated(env)


# -- Redis --------------------------------------------------------------------------------
def _redis_env(name: str, url: str, version: str, nodes: list[Any]) -> StoreEnv:
    """The Redis family: floors on the manager's client, commands counted on ``nodes``; no
    native conditional write (Redis 7: the compare-and-set is a Lua script)."""
    prefix = _prefix()
    cluster, shared = name == "cluster", name == "redis"
    env = StoreEnv(name, url, url, version, options={"key_prefix": prefix})
    env.native_conditional_write = False
    env.floor = lambda m: floors.RedisFloor(m.repository.client, prefix, cluster=cluster)
    env.async_floor = lambda m: floors.AsyncRedisFloor(m.repository.client, prefix)
    env.counter = lambda m, a, r, *fl: counters.RedisCommandCounter(nodes, shared=shared)
    return env


@contextlib.contextmanager
def redis_env() -> Iterator[StoreEnv]:
    _need("redis", "redis")
    import redis

    from tests.support.redis_servers import delete_keys_with_prefix

    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=10)
    try:
        version = str(admin.info("server")["redis_version"])
    except redis.RedisError as exc:
        admin.close()
        raise StoreUnavailableError(f"Redis at {REDIS_HOST}:{REDIS_PORT}: {exc}") from exc
    env = _redis_env("redis", f"redis://{REDIS_HOST}:{REDIS_PORT}/0", version, [admin])
    env.extra = {"admin": admin, "prefix": env.options["key_prefix"]}
    try:
        yield env
    finally:
        delete_keys_with_prefix(admin, env.options["key_prefix"])
        admin.close()


def _need_redis_binaries() -> None:
    _need("redis", "redis")
    from tests.support.redis_servers import redis_cli_path, redis_server_path

    if redis_server_path() is None or redis_cli_path() is None:
        raise StoreUnavailableError("redis-server / redis-cli are not installed")


@contextlib.contextmanager
def sentinel_env() -> Iterator[StoreEnv]:
    _need_redis_binaries()
    from tests.support.redis_servers import SentinelTopology

    with SentinelTopology() as topology:
        assert topology.master is not None
        master = topology.master.client()
        hosts = ",".join(f"{host}:{port}" for host, port in topology.sentinel_addresses)
        url = f"redis+sentinel://{hosts}/{topology.service_name}"
        try:
            yield _redis_env("sentinel", url, str(master.info("server")["redis_version"]), [master])
        finally:
            master.close()


@contextlib.contextmanager
def cluster_env() -> Iterator[StoreEnv]:
    _need_redis_binaries()
    from tests.support.redis_servers import ClusterTopology

    with ClusterTopology(masters=3) as topology:
        nodes = [node.client() for node in topology.nodes]
        url = "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in topology.addresses)
        try:
            yield _redis_env("cluster", url, str(nodes[0].info("server")["redis_version"]), nodes)
        finally:
            for node in nodes:
                node.close()


# -- Couchbase and no store ---------------------------------------------------------------
@contextlib.contextmanager
def couchbase_env() -> Iterator[StoreEnv]:
    _need("couchbase", "couchbase")
    from couchbase import __version__ as sdk_version

    from benchmarks.couchbase_server import couchbase_process

    with couchbase_process() as (url, counts):
        prefix = _prefix().replace("-", "_")
        env = StoreEnv("couchbase", url, url, f"test server (SDK {sdk_version})")
        env.options = {"key_prefix": prefix}
        env.floor = lambda manager: floors.CouchbaseFloor(manager.repository.collection, prefix)
        # The async repository connects on start(); its collection is then ready.
        env.async_floor = lambda m: floors.AsyncCouchbaseFloor(m.repository._collection, prefix)
        env.counter = lambda m, a, r, *fl: counters.CouchbaseOpCounter(counts)
        yield env


@contextlib.contextmanager
def memory_env() -> Iterator[StoreEnv]:
    env = StoreEnv(CPU_ONLY, "memory://", "memory://", "in-process")
    env.floor = lambda manager: floors.DictFloor()
    env.async_floor = lambda manager: floors.AsyncDictFloor()
    yield env


_FACTORIES: dict[str, Callable[[], contextlib.AbstractContextManager[StoreEnv]]] = {
    CPU_ONLY: memory_env,
    "sqlite": sqlite_env,
    "postgresql": postgresql_env,
    "mariadb": mariadb_env,
    "redis": redis_env,
    "sentinel": sentinel_env,
    "cluster": cluster_env,
    "couchbase": couchbase_env,
}


def open_store(name: str) -> contextlib.AbstractContextManager[StoreEnv]:
    """The store ``name`` (one of :data:`ALL_STORES` or :data:`CPU_ONLY`), set up."""
    return _FACTORIES[name]()


def managers_for(
    env: StoreEnv, runner: asyncio.Runner, stack: contextlib.ExitStack
) -> tuple[Any, Any]:
    """A sync and an async manager on ``env``'s store, built as an app would (sessions are
    ``FlaskSession``, as the Flask extension takes them), both closed with ``stack``."""
    from ormsession import configure, configure_async
    from ormsession.integrations.flask import FlaskSession

    manager = configure(url=env.url, session_class=FlaskSession, **env.options)
    stack.callback(manager.close)
    async_manager = runner.run(configure_async(url=env.async_url, **env.options))
    stack.callback(lambda: runner.run(async_manager.close()))
    return manager, async_manager


def sides_for(
    env: StoreEnv, runner: asyncio.Runner, stack: contextlib.ExitStack
) -> tuple[Any, Any, Any, Any]:
    """ormsession's sync and async managers on ``env``'s store (:func:`managers_for`) and the
    floors beside them, started; all closed with ``stack``."""
    manager, async_manager = managers_for(env, runner, stack)
    floor, async_floor = env.floor(manager), env.async_floor(async_manager)
    stack.callback(floor.close)
    runner.run(async_floor.start())
    stack.callback(lambda: runner.run(async_floor.close()))
    return manager, async_manager, floor, async_floor
