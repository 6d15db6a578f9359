"""``python -m benchmarks.sql_reads``: what the shape of ormsession's read costs, per SQL server.

The floor reads one column (the data; the expiry is checked in ``WHERE``). ormsession's
read returns the version too (for its compare-and-set) and both times (for the timeouts
and the touch decision), packed by the server into one column: MariaDB's ``concat_ws``,
PostgreSQL's binary send functions into one ``bytea``. This times three selects of the same
row, taking turns on the asyncio driver's own connection from the engine's pool (asyncmy,
asyncpg), as a Starlette request runs them:

- ``floor``: the floor's select;
- ``ormsession``: the read ormsession ships, compiled for the dialect;
- ``four columns``: the same four values as they are (the driver builds each time object).

Each fetches the row, the driver's own decoding included, and nothing more: no Python
decoding of the record. The difference is the server's and the driver's work for the shape.

    .venv/bin/python -m benchmarks.sql_reads
    .venv/bin/python -m benchmarks.sql_reads --stores mariadb --count 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import Select

from benchmarks.floors import AsyncSqlFloor
from benchmarks.options import chosen
from benchmarks.requests import SEED
from benchmarks.stores import StoreEnv, open_store
from benchmarks.timing import spread_lines
from ormsession import configure
from ormsession.repositories.sql.model import session_table
from ormsession.repositories.sql.statements import SqlStatements

__all__ = ["SHAPES", "STORES", "main", "measure_reads", "read_statements"]

STORES = ("postgresql", "mariadb")
SHAPES = ("floor", "ormsession", "four columns")


def _compiled(statement: Select[Any], dialect: Any) -> str:
    compiled = statement.compile(dialect=dialect)
    # Every shape takes (key, now) in that order, as the floor's select does.
    if list(compiled.positiontup or ()) != ["key", "now"]:
        raise RuntimeError(f"unexpected parameters {compiled.positiontup!r} in {compiled}")
    return compiled.string


def read_statements(floor: AsyncSqlFloor) -> dict[str, str]:
    """Each shape's SQL for ``floor``'s engine, in its driver's parameter style."""
    dialect = floor.engine.dialect
    table = session_table()
    c = table.c
    live = (c.session_key == bindparam("key")) & (c.session_expiry > bindparam("now"))
    columns = select(c.session_data, c.session_version, c.session_created, c.session_expiry)
    return {
        "floor": floor.sql.read,
        "ormsession": _compiled(SqlStatements.build(table, dialect.name).read, dialect),
        "four columns": _compiled(columns.where(live), dialect),
    }


async def _time_shapes(engine: Any, count: int) -> dict[str, list[float]]:
    floor = AsyncSqlFloor(engine)
    statements = read_statements(floor)
    times: dict[str, list[float]] = {shape: [] for shape in SHAPES}
    # One connection for the whole run: the pool's checkout is the same for every shape,
    # and left out so that its noise does not hide the shapes' difference.
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        (key,) = await floor.on_connection(raw, "SELECT session_key FROM session", (), True)
        for _ in range(count):
            params = (key, floor.bind_time(datetime.now(UTC)))
            for shape in SHAPES:
                start = time.perf_counter_ns()
                row = await floor.on_connection(raw, statements[shape], params, True)
                times[shape].append((time.perf_counter_ns() - start) / 1000)
                if row is None:
                    raise RuntimeError(f"the {shape} read found no row for the stored session")
    return {shape: sorted(values) for shape, values in times.items()}


def measure_reads(env: StoreEnv, count: int) -> dict[str, list[float]]:
    """Each shape's read times (µs), sorted, ``count`` of each, of one session stored in
    ``env``'s database by ormsession."""
    with contextlib.ExitStack() as stack:
        manager = configure(url=env.url, **env.options)
        stack.callback(manager.close)
        session = manager.open(None)
        session.update(SEED)
        manager.save(session)
        runner = stack.enter_context(asyncio.Runner())
        engine = create_async_engine(env.async_url)
        stack.callback(lambda: runner.run(engine.dispose()))
        return runner.run(_time_shapes(engine, count))


def report(times: dict[str, list[float]]) -> list[str]:
    """One line a shape: p10, median and p90 (µs), and the median over the floor's."""
    return spread_lines(times, "floor", "the floor")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sql_reads", description=__doc__)
    parser.add_argument(
        "--stores", default=",".join(STORES), help=f"comma-separated: {','.join(STORES)}"
    )
    parser.add_argument("--count", type=int, default=3000, help="reads of each shape (3000)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, not {args.count}")
    args.stores = chosen(parser, args.stores, STORES, "store")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    for store in args.stores:
        with open_store(store) as env:
            times = measure_reads(env, args.count)
        for line in report(times):
            print(f"{store:10} {line}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
