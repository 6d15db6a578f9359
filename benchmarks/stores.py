"""The stores the benchmark runs on: each one set up, reachable by URL, and torn down.

- ``sqlite``: a file in a temp dir (the embedded default).
- ``postgresql``, ``mariadb``: a private database ``ormsession_bench_<hex>`` on the local
  server, created, migrated and dropped again.
- ``redis``: the shared Redis on 127.0.0.1:6379, only keys under a private prefix (deleted
  afterwards; nothing is flushed).
- ``sentinel``: its own master + replica + 3 sentinels (``SentinelTopology``).
- ``cluster``: its own 3-master Redis Cluster (``ClusterTopology``).
- ``couchbase``: the project's protocol-level Couchbase test server, in a child process.

A store that cannot be set up (server down, binary or driver missing) raises
:class:`StoreUnavailableError`; the benchmark reports it as skipped and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from benchmarks.counters import (
    CouchbaseOpCounter,
    MariaDbStatusCounter,
    PgStatCounter,
    Pool,
    RedisCommandCounter,
    ServerCounter,
    SqliteTraceCounter,
)
from benchmarks.floors import (
    AsyncCouchbaseFloor,
    AsyncDictFloor,
    AsyncFloor,
    AsyncRedisFloor,
    AsyncSqlFloor,
    CouchbaseFloor,
    DictFloor,
    Floor,
    RedisFloor,
    SqlFloor,
)

__all__ = [
    "ALL_STORES",
    "CPU_ONLY",
    "SQL_STORES",
    "StoreEnv",
    "StoreUnavailableError",
    "open_store",
]

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
MARIADB_HOST, MARIADB_PORT, MARIADB_USER = "127.0.0.1", 3306, "root"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

ALL_STORES = ("sqlite", "postgresql", "mariadb", "redis", "sentinel", "cluster", "couchbase")
#: Not a store: ``memory://`` against a dict, so the rows show ormsession's own CPU cost per
#: operation with no I/O (and no noise from it). No targets, no server to count.
CPU_ONLY = "memory"
SQL_STORES = ("sqlite", "postgresql", "mariadb")


class StoreUnavailableError(RuntimeError):
    """The store cannot be benchmarked here (the message says why)."""


ManagerPair = tuple[Any, Any]  # (SessionManager, AsyncSessionManager)


@dataclass
class StoreEnv:
    """One store, ready: URLs for ``configure``/``configure_async`` and how to build its
    floors and its server-side counter around the managers built from them."""

    name: str
    url: str
    async_url: str
    version: str
    options: dict[str, Any] = field(default_factory=dict)
    floor: Callable[[Any], Floor] = field(default=lambda manager: _missing())
    async_floor: Callable[[Any], AsyncFloor] = field(default=lambda manager: _missing())
    counter: Callable[[Any, Any, asyncio.Runner], ServerCounter] = field(
        default=lambda m, a, r: _missing()
    )
    #: Store-specific handles the scale benchmarks need (connection parameters, clients).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Whether the store writes conditionally in one native command or statement. The Redis
    #: family (Redis 7) compare-and-sets in a Lua script: its write requests get a higher limit.
    native_conditional_write: bool = True


def _missing() -> Any:
    raise NotImplementedError


def _need(module: str, extra: str) -> None:
    if find_spec(module) is None:
        raise StoreUnavailableError(f"{module} is not installed: pip install 'ormsession[{extra}]'")


def _prefix() -> str:
    return f"ormsession-bench-{uuid.uuid4().hex[:12]}:"


# -- SQL ----------------------------------------------------------------------------------
def _sql_floors(env: StoreEnv) -> None:
    env.floor = lambda manager: SqlFloor(manager.repository.engine)
    env.async_floor = lambda manager: AsyncSqlFloor(manager.repository.engine)


@contextlib.contextmanager
def sqlite_env() -> Iterator[StoreEnv]:
    _need("aiosqlite", "async-sqlite")
    import sqlite3

    with tempfile.TemporaryDirectory(prefix="ormsession-bench-") as directory:
        path = Path(directory) / "sessions.sqlite3"
        env = StoreEnv(
            "sqlite", f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}", sqlite3.sqlite_version
        )
        _sql_floors(env)

        def counter(manager: Any, async_manager: Any, runner: asyncio.Runner) -> ServerCounter:
            traced = SqliteTraceCounter()
            traced.install(manager.repository.engine)
            traced.install(async_manager.repository.engine, runner)
            return traced

        env.counter = counter
        yield env


def _migrate(url: str, table_name: str = "session") -> None:
    from ormsession.schema import upgrade

    upgrade(url, table_name=table_name)


@contextlib.contextmanager
def postgresql_env() -> Iterator[StoreEnv]:
    _need("psycopg2", "postgres")
    _need("asyncpg", "async-postgres")
    import psycopg2

    name = f"ormsession_bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3
        )
    except psycopg2.Error as exc:
        raise StoreUnavailableError(f"PostgreSQL at {PG_HOST}:{PG_PORT}: {exc}".strip()) from exc
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version')")
            row = cursor.fetchone()
            version = str(row[0]) if row else "?"
            cursor.execute(f"CREATE DATABASE {name}")
        try:
            where = f"{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
            env = StoreEnv(
                "postgresql",
                f"postgresql+psycopg2://{where}",
                f"postgresql+asyncpg://{where}",
                version,
            )
            _migrate(env.url)
            _sql_floors(env)
            env.counter = lambda manager, async_manager, runner: PgStatCounter(
                admin,
                name,
                [Pool(manager.repository.engine), Pool(async_manager.repository.engine, runner)],
            )
            env.extra = {
                "connect": lambda: psycopg2.connect(
                    host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=name
                )
            }
            yield env
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


@contextlib.contextmanager
def mariadb_env() -> Iterator[StoreEnv]:
    _need("pymysql", "mysql")
    _need("asyncmy", "async-mysql")
    import pymysql

    name = f"ormsession_bench_{uuid.uuid4().hex[:12]}"

    def connect(database: str | None = None) -> Any:
        return pymysql.connect(
            host=MARIADB_HOST,
            port=MARIADB_PORT,
            user=MARIADB_USER,
            database=database,
            connect_timeout=3,
            autocommit=True,
        )

    try:
        admin = connect()
    except pymysql.MySQLError as exc:
        raise StoreUnavailableError(f"MariaDB at {MARIADB_HOST}:{MARIADB_PORT}: {exc}") from exc
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            row = cursor.fetchone()
            version = str(row[0]) if row else "?"
            cursor.execute(f"CREATE DATABASE {name}")
        try:
            where = f"{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/{name}"
            env = StoreEnv(
                "mariadb", f"mysql+pymysql://{where}", f"mysql+asyncmy://{where}", version
            )
            _migrate(env.url)
            _sql_floors(env)
            env.counter = lambda manager, async_manager, runner: MariaDbStatusCounter(
                [Pool(manager.repository.engine), Pool(async_manager.repository.engine, runner)]
            )
            env.extra = {"connect": lambda: connect(name)}
            yield env
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        admin.close()


# -- Redis --------------------------------------------------------------------------------
def _redis_family(env: StoreEnv, prefix: str, *, cluster: bool = False) -> None:
    env.native_conditional_write = False
    env.floor = lambda manager: RedisFloor(manager.repository.client, prefix, cluster=cluster)
    env.async_floor = lambda manager: AsyncRedisFloor(manager.repository.client, prefix)


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
    prefix = _prefix()
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    env = StoreEnv("redis", url, url, version, options={"key_prefix": prefix})
    _redis_family(env, prefix)
    env.counter = lambda manager, async_manager, runner: RedisCommandCounter([admin], shared=True)
    env.extra = {"admin": admin, "prefix": prefix}
    try:
        yield env
    finally:
        delete_keys_with_prefix(admin, prefix)
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
        version = str(master.info("server")["redis_version"])
        prefix = _prefix()
        env = StoreEnv("sentinel", url, url, version, options={"key_prefix": prefix})
        _redis_family(env, prefix)
        env.counter = lambda manager, async_manager, runner: RedisCommandCounter([master])
        try:
            yield env
        finally:
            master.close()


@contextlib.contextmanager
def cluster_env() -> Iterator[StoreEnv]:
    _need_redis_binaries()
    from tests.support.redis_servers import ClusterTopology

    with ClusterTopology(masters=3) as topology:
        nodes = [node.client() for node in topology.nodes]
        hosts = ",".join(f"{host}:{port}" for host, port in topology.addresses)
        url = f"redis+cluster://{hosts}"
        version = str(nodes[0].info("server")["redis_version"])
        prefix = _prefix()
        env = StoreEnv("cluster", url, url, version, options={"key_prefix": prefix})
        _redis_family(env, prefix, cluster=True)
        env.counter = lambda manager, async_manager, runner: RedisCommandCounter(nodes)
        try:
            yield env
        finally:
            for node in nodes:
                node.close()


# -- Couchbase ----------------------------------------------------------------------------
@contextlib.contextmanager
def couchbase_env() -> Iterator[StoreEnv]:
    _need("couchbase", "couchbase")
    from benchmarks.couchbase_server import CouchbaseProcess

    with CouchbaseProcess() as server:
        prefix = _prefix().replace("-", "_")
        from couchbase import __version__ as sdk_version

        env = StoreEnv(
            "couchbase",
            server.url,
            server.url,
            f"test server (SDK {sdk_version})",
            options={"key_prefix": prefix},
        )
        env.floor = lambda manager: CouchbaseFloor(manager.repository.collection, prefix)
        # The async repository connects on start(); its collection is then ready.
        env.async_floor = lambda manager: AsyncCouchbaseFloor(
            manager.repository._collection, prefix
        )
        env.counter = lambda manager, async_manager, runner: CouchbaseOpCounter(server.counts)
        yield env


@contextlib.contextmanager
def memory_env() -> Iterator[StoreEnv]:
    env = StoreEnv(CPU_ONLY, "memory://", "memory://", "in-process")
    env.floor = lambda manager: DictFloor()
    env.async_floor = lambda manager: AsyncDictFloor()
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
    """The store ``name`` (one of :data:`ALL_STORES`), set up for the ``with`` block."""
    return _FACTORIES[name]()


def managers_for(
    env: StoreEnv, runner: asyncio.Runner, stack: contextlib.ExitStack
) -> tuple[Any, Any]:
    """A sync and an async manager on ``env``'s store, built as an app would, both closed
    with ``stack``. Sessions are the Flask integration's ``FlaskSession``, so the Flask
    extension takes the manager's sessions as they are."""
    from ormsession import configure, configure_async
    from ormsession.integrations.flask import FlaskSession

    manager = configure(url=env.url, session_class=FlaskSession, **env.options)
    stack.callback(manager.close)
    async_manager = runner.run(configure_async(url=env.async_url, **env.options))
    stack.callback(lambda: runner.run(async_manager.close()))
    return manager, async_manager
