"""Scale: reads at 1,000 vs 1,000,000 stored sessions, gc of 1,000,000 expired rows, and the
memory a held session costs. Sessions are bulk-loaded (``COPY``; multi-row ``INSERT`` in key
order; pipelined ``SET``) with ids derived from a seed (:func:`scale_id`). The small and the
big set live side by side (two tables; two Redis databases) and are read in the same
interleaved rounds: phases minutes apart let the machine's drift decide. The bulk-loaded
sessions are stored as serialized (the managers reading them run with ``encrypt=False``):
sealing costs the same few microseconds at any set size, and ``make bench`` measures it on
its own (:mod:`benchmarks.encryption`)."""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import io
import itertools
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.floors import SqlFloor, key_of, loads, new_id
from benchmarks.requests import SEED
from benchmarks.stores import StoreEnv
from benchmarks.timing import Comparison, OpRunner, Settings, compare, run_rounds
from ormsession.repositories.redis.base import HEADER_SIZE, KeyLayout

SMALL_TABLE, BIG_TABLE, GC_TABLE = "bench_small", "bench_big", "bench_gc"
#: The Redis database of the big set (the small one is in the store's own, 0).
BIG_REDIS_DB = 1
SCALE_SEED = b"ormsession-bench-scale"
_COLUMNS = "session_key, session_data, session_expiry, session_created, session_version"


@dataclass(frozen=True)
class ReadScaleResult:
    store: str
    small: int
    big: int
    ours: Comparison  # big vs small
    floor: Comparison
    load_seconds: float
    operation: str = "read"
    #: On-disk size of the big set (table and indexes), where the store tells it.
    big_megabytes: float | None = None
    #: How the server's cache was sized for the measurement, when the benchmark changed it.
    cache_note: str | None = None


@dataclass(frozen=True)
class GcResult:
    store: str
    rows: int
    batch_size: int
    smallest_batch: int  # the smallest full batch (gc shrinks batches after slow ones)
    deleted: int
    batches: int
    total_seconds: float
    max_batch_seconds: float
    median_batch_ms: float
    p99_batch_ms: float
    remaining: int
    load_seconds: float


@dataclass(frozen=True)
class MemoryResult:
    sessions: int
    ours_bytes: float
    floor_bytes: float


def scale_id(seed: bytes, index: int) -> str:
    """Session ``index``'s id: 43 URL-safe characters, the format ormsession issues."""
    digest = hashlib.sha256(seed + index.to_bytes(8, "big")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _payload(index: int) -> bytes:
    # What ormsession's JSON serializer writes for SEED with this user id.
    return f'{{"user_id":{index},"name":"ada","cart":["apple","pear"],"visits":0}}'.encode()


Record = tuple[str, bytes, datetime, datetime]  # key, data, expiry, creation


def _records(seed: bytes, count: int, *, live: bool) -> Iterator[Record]:
    """Sessions ``0..count`` in key order (B-tree and clustered-index inserts then append),
    expiring over the next hour (live) or in the past day (expired)."""
    now = datetime.now(UTC)
    for key, i in sorted((key_of(scale_id(seed, i)), i) for i in range(count)):
        if live:
            expiry, created = now + timedelta(hours=1, seconds=i % 3600), now - timedelta(hours=1)
        else:
            expiry = now - timedelta(minutes=1, seconds=i % 86400)
            created = expiry - timedelta(days=1)
        yield key, _payload(i), expiry, created


def _batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while batch := list(itertools.islice(records, size)):
        yield batch


# -- bulk loading -------------------------------------------------------------------------
def load_sql(env: StoreEnv, table: str, seed: bytes, count: int, *, live: bool) -> float:
    """Load sessions ``0..count`` into ``table``; return the seconds it took."""
    began = time.perf_counter()
    load = _copy_postgresql if env.name == "postgresql" else _insert_mariadb
    with contextlib.closing(env.extra["connect"]()) as connection:
        load(connection, table, _records(seed, count, live=live))
    return time.perf_counter() - began


def _copy_postgresql(connection: Any, table: str, records: Iterator[Record]) -> None:
    connection.autocommit = False
    with connection.cursor() as cursor:
        for batch in _batches(records, 100_000):
            lines = (
                f"{key}\t\\\\x{data.hex()}\t{expiry.isoformat()}\t{created.isoformat()}\t1\n"
                for key, data, expiry, created in batch
            )
            cursor.copy_expert(f"COPY {table} ({_COLUMNS}) FROM STDIN", io.StringIO("".join(lines)))
        connection.commit()
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("CHECKPOINT")  # not during the timed reads: it stalled some rounds


def _insert_mariadb(connection: Any, table: str, records: Iterator[Record]) -> None:
    """Multi-row INSERTs in one transaction, the secondary indexes dropped and rebuilt after
    (row by row, random expiries thrash a small buffer pool: 10x slower)."""
    sql = f"INSERT INTO {table} ({_COLUMNS}) VALUES (%s, %s, %s, %s, 1)"

    def naive(moment: datetime) -> datetime:  # MySQL DATETIME: naive UTC
        return moment.astimezone(UTC).replace(tzinfo=None)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT INDEX_NAME, COLUMN_NAME, NON_UNIQUE FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND INDEX_NAME != 'PRIMARY' "
            "ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (table,),
        )
        indexes: dict[str, tuple[bool, list[str]]] = {}
        for name, column, non_unique in cursor.fetchall():
            indexes.setdefault(name, (not int(non_unique), []))[1].append(column)
        for name in indexes:
            cursor.execute(f"ALTER TABLE {table} DROP INDEX {name}")
        connection.autocommit(False)
        for batch in _batches(records, 5_000):
            cursor.executemany(sql, [(k, d, naive(e), naive(c)) for k, d, e, c in batch])
        connection.commit()
        connection.autocommit(True)
        for name, (unique, columns) in indexes.items():
            kind = "UNIQUE INDEX" if unique else "INDEX"
            cursor.execute(f"ALTER TABLE {table} ADD {kind} {name} ({', '.join(columns)})")
        cursor.execute(f"ANALYZE TABLE {table}")
        cursor.fetchall()


def _ids(seed: bytes, population: int, count: int, stream: str) -> Iterator[str]:
    """Endless random ids of the ``population`` loaded (``count`` draws, cycled); each
    ``stream`` its own, or one series would warm the cache for the other."""
    draw = random.Random(seed + stream.encode())  # sampling for a benchmark, not security
    ids = [scale_id(seed, draw.randrange(population)) for _ in range(count)]
    while True:
        yield from ids


def _reads(read: Callable[[str], Any], ids: Iterator[str]) -> OpRunner:
    def run(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            read(next(ids))
        return time.perf_counter_ns() - start

    return run


ReadSets = dict[str, tuple[Any, int, Callable[[str], Any]]]  # size: manager, population, floor


def _read_scale(
    env: StoreEnv, settings: Settings, sets: ReadSets, seconds_per_op: float, **more: Any
) -> ReadScaleResult:
    """Interleaved rounds of random reads, ours and the floor's, on the ``small`` and the
    ``big`` set; each side on the big set against itself on the small one."""
    ops = max(settings.min_ops, min(settings.max_ops, int(settings.round_seconds / seconds_per_op)))
    draws = settings.rounds * ops + 4 * settings.warmup_ops + 100
    series = {}
    for size, (manager, population, floor_read) in sets.items():
        probe = manager.open(scale_id(SCALE_SEED, population - 1))
        assert not probe.is_new, f"the {size} set lost session {population - 1}"
        series[f"ours_{size}"] = _reads(manager.open, _ids(SCALE_SEED, population, draws, "ours"))
        floor_ids = _ids(SCALE_SEED, population, draws, "floor")
        series[f"floor_{size}"] = _reads(floor_read, floor_ids)
    per_op = run_rounds(series, rounds=settings.rounds, ops=ops, warmup_ops=settings.warmup_ops)
    ours, floor = (
        compare(per_op, f"{side}_big", f"{side}_small", ops) for side in ("ours", "floor")
    )
    small, big = sets["small"][1], sets["big"][1]
    return ReadScaleResult(env.name, small, big, ours, floor, **more)


# -- reads at scale: SQL ------------------------------------------------------------------
def read_scale_sql(env: StoreEnv, settings: Settings, *, small: int, big: int) -> ReadScaleResult:
    from ormsession import configure
    from ormsession.schema import upgrade

    tables = {"small": (SMALL_TABLE, small), "big": (BIG_TABLE, big)}
    for table, _ in tables.values():
        upgrade(env.url, table_name=table)
    loaded = sum(load_sql(env, t, SCALE_SEED, n, live=True) for t, n in tables.values())
    megabytes = _table_megabytes(env, BIG_TABLE)
    cache: contextlib.AbstractContextManager[str | None] = (
        _innodb_pool_holding(env, megabytes) if env.name == "mariadb" else contextlib.nullcontext()
    )
    with cache as cache_note, contextlib.ExitStack() as stack:
        sets: ReadSets = {}
        for size, (table, population) in tables.items():
            manager = configure(url=env.url, table_name=table, encrypt=False)
            stack.callback(manager.close)
            sets[size] = manager, population, SqlFloor(manager.repository.engine, table).read
        more = {"load_seconds": loaded, "big_megabytes": megabytes, "cache_note": cache_note}
        return _read_scale(env, settings, sets, 100e-6, **more)


@contextlib.contextmanager
def _innodb_pool_holding(env: StoreEnv, megabytes: float) -> Iterator[str | None]:
    """Size InnoDB's buffer pool to hold the tables for the reads, and restore it after:
    MariaDB reads with O_DIRECT, and the default 128 MB pool does not hold a million sessions
    (~260 MB), so the reads would measure the disk (a real server is sized for its table)."""
    with contextlib.closing(env.extra["connect"]()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT @@GLOBAL.innodb_buffer_pool_size")
        original = int(cursor.fetchone()[0])
        needed = int(megabytes * 1.5 * 1024 * 1024)  # the tables, with room to spare
        if original >= needed:  # it fits already (always, for --quick): change nothing
            yield None
            return
        unit = 128 * 1024 * 1024
        wanted = -(-(needed + 2 * unit) // unit) * unit  # + 256 MB, rounded up to 128 MB
        _resize_pool(cursor, wanted)
        try:
            for table in (SMALL_TABLE, BIG_TABLE):  # a full scan pulls every page in
                cursor.execute(f"SELECT COUNT(*) FROM {table} FORCE INDEX (PRIMARY)")
                cursor.fetchall()
            yield (
                f"innodb_buffer_pool_size {original / 2**20:.0f} MB → "
                f"{wanted / 2**20:.0f} MB for the reads (restored after)"
            )
        finally:
            _resize_pool(cursor, original)


def _resize_pool(cursor: Any, size: int) -> None:
    """``SET GLOBAL innodb_buffer_pool_size`` and wait until the resize has finished."""
    cursor.execute(f"SET GLOBAL innodb_buffer_pool_size = {int(size)}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cursor.execute("SHOW STATUS LIKE 'Innodb_buffer_pool_resize_status'")
        row = cursor.fetchone()  # no such status on servers that resize at once
        status = str(row[1]) if row else ""
        cursor.execute("SELECT @@GLOBAL.innodb_buffer_pool_size")
        # The server may round the size to its chunk size.
        if abs(int(cursor.fetchone()[0]) - size) < 128 * 1024 * 1024 and (
            not status or "ompleted" in status
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"MariaDB did not resize its buffer pool to {size} bytes within 60 s")


def _table_megabytes(env: StoreEnv, table: str) -> float:
    """Table plus indexes, as the database reports it (what its cache has to hold)."""
    with contextlib.closing(env.extra["connect"]()) as connection, connection.cursor() as cursor:
        if env.name == "postgresql":
            cursor.execute("SELECT pg_total_relation_size(%s)", (table,))
        else:
            cursor.execute(
                "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (table,),
            )
        row = cursor.fetchone()
    return float(row[0]) / 1024 / 1024 if row else float("nan")


# -- reads at scale: Redis ----------------------------------------------------------------
def _each_key(
    client: Any, layout: KeyLayout, population: int, command: Callable[[Any, str, int], object]
) -> None:
    """``command(pipeline, key, index)`` for every session of the set, pipelined."""
    pipe = client.pipeline(transaction=False)
    for index in range(population):
        command(pipe, layout.session(key_of(scale_id(SCALE_SEED, index))), index)
        if (index + 1) % 10_000 == 0:
            pipe.execute()
    pipe.execute()


def load_redis(client: Any, layout: KeyLayout, population: int) -> float:
    from ormsession.expiry import US_PER_SECOND, now_us
    from ormsession.repositories.base import StoredSession
    from ormsession.repositories.buckets import DEFAULT_RESOLUTION, place
    from ormsession.repositories.redis.base import encode_record

    began = time.perf_counter()
    now = now_us()
    ttl_ms = 3_600_000  # an aborted run's keys vanish within the hour
    created, expires = now - 5 * 60 * US_PER_SECOND, now + ttl_ms * 1000
    bucket = place(expires, now, DEFAULT_RESOLUTION)

    def store(pipe: Any, key: str, index: int) -> None:
        record = StoredSession(_payload(index), 1, created, expires)
        pipe.set(key, encode_record(record, bucket), px=ttl_ms)

    _each_key(client, layout, population, store)
    return time.perf_counter() - began


def read_scale_redis(env: StoreEnv, settings: Settings, *, small: int, big: int) -> ReadScaleResult:
    """The small set in the store's database, the big one in :data:`BIG_REDIS_DB` of the
    same server, read in the same interleaved rounds as the SQL tables are."""
    from ormsession import configure

    prefix = str(env.extra["prefix"]) + "scale:"
    layout = KeyLayout(prefix)
    urls = {"small": env.url, "big": f"{env.url.rpartition('/')[0]}/{BIG_REDIS_DB}"}
    with contextlib.ExitStack() as stack:
        sets: ReadSets = {}
        for size, population in (("small", small), ("big", big)):
            manager = configure(url=urls[size], key_prefix=prefix, encrypt=False)
            client = manager.repository.client
            stack.callback(manager.close)
            stack.callback(_each_key, client, layout, population, _unlink)

            def floor_read(session_id: str, client: Any = client) -> Any:
                raw = client.get(layout.session(key_of(session_id)))
                return None if raw is None else loads(raw[HEADER_SIZE:])  # past our header

            sets[size] = manager, population, floor_read
        loaded = sum(load_redis(m.repository.client, layout, n) for m, n, _ in sets.values())
        return _read_scale(env, settings, sets, 60e-6, load_seconds=loaded)


def _unlink(pipe: Any, key: str, _: int) -> None:
    pipe.unlink(key)


# -- gc -----------------------------------------------------------------------------------
def gc_sql(env: StoreEnv, *, rows: int) -> GcResult:
    from sqlalchemy import text

    from ormsession import configure
    from ormsession.schema import upgrade

    upgrade(env.url, table_name=GC_TABLE)
    loaded = load_sql(env, GC_TABLE, b"ormsession-bench-gc", rows, live=False)
    manager = configure(url=env.url, table_name=GC_TABLE)
    try:
        stamps, totals = [time.perf_counter()], [0]

        def progress(total: int) -> None:
            stamps.append(time.perf_counter())
            totals.append(total)

        deleted = manager.gc(progress=progress)
        stamps.append(time.perf_counter())  # the last, short batch reports no progress
        with manager.repository.engine.connect() as connection:
            count = connection.execute(text(f"SELECT count(*) FROM {GC_TABLE}"))
            remaining = int(count.scalar_one())
        batch_size = manager.config.gc_batch_size
    finally:
        manager.close()
    durations = sorted(b - a for a, b in itertools.pairwise(stamps))
    p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))]
    # The last reported batch may be the short one that ended the run.
    full_batches = [b - a for a, b in itertools.pairwise(totals)][:-1]
    median = statistics.median(durations)
    return GcResult(
        env.name, rows, batch_size, min(full_batches or [batch_size]), deleted, len(durations),
        stamps[-1] - stamps[0], max(durations), median * 1000, p99 * 1000, remaining, loaded,
    )  # fmt: skip


# -- memory -------------------------------------------------------------------------------
def memory_per_session(env: StoreEnv, *, sessions: int) -> MemoryResult:
    """Bytes of Python heap one opened session holds (tracemalloc), ours vs the floor's
    (the dict ``json.loads`` returns), with ``sessions`` of them held at once."""
    from ormsession import configure

    manager = configure(url=env.url, **env.options)
    try:
        floor = SqlFloor(manager.repository.engine)
        ours_ids, floor_ids = [], []
        for _ in range(sessions):
            session = manager.open(None)
            session.update(SEED)
            manager.save(session)
            ours_ids.append(session.id)
            floor_ids.append(new_id())
            floor.write(floor_ids[-1], SEED)
        ours = _held_bytes(lambda: [manager.open(i) for i in ours_ids])
        theirs = _held_bytes(lambda: [floor.read(i) for i in floor_ids])
    finally:
        manager.close()
    return MemoryResult(sessions, ours / sessions, theirs / sessions)


def _held_bytes(build: Callable[[], list[Any]]) -> float:
    build()  # warm caches (compiled statements, pools) outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        held = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del held
    return float(after - before)
