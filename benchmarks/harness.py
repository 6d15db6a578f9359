"""``python -m benchmarks``: for every store that can be set up, ormsession's operations and
full Flask / Starlette requests against the floor in interleaved rounds, the statements each
cost as counted by the server, then the scale part; targets as PASS/FAIL lines at the end."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import itertools
import pstats
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import encryption, scale
from benchmarks.counters import ServerCounter
from benchmarks.floors import AsyncFloor, Floor, new_id
from benchmarks.report import (
    READ_REQUEST_LIMIT,
    SCRIPTED_CAS_WRITE_REQUEST_LIMIT,
    WRITE_REQUEST_LIMIT,
    Report,
    Row,
    load_average,
    machine_info,
)
from benchmarks.requests import SEED, AsgiRunner, flask_app, flask_runner, starlette_app
from benchmarks.stores import ALL_STORES, CPU_ONLY, StoreEnv, open_store, sides_for
from benchmarks.stores import StoreUnavailableError as Unavailable
from benchmarks.timing import OpRunner, Settings, calibrate, compare, run_rounds, timed

SCALE_READ_STORES = ("postgresql", "mariadb", "redis")
SCALE_GC_STORES = ("postgresql", "mariadb")


@dataclass
class Scenario:
    operation: str
    ours: OpRunner
    floor: OpRunner
    limit: float | None = None
    read_only: bool = False


@dataclass(frozen=True)
class Plan:
    stores: tuple[str, ...]
    timing: Settings
    #: The scale part's sets (``small``, ``big``, ``gc``, ``memory``) and the operations
    #: counted on the server (``count``).
    sizes: dict[str, int]
    scale: bool = True
    operations: bool = True
    profile: str | None = None
    #: The SQL stores' extra rows: the floor on SQLAlchemy's pool against the driver floor.
    pool_rows: bool = True


# -- scenarios --------------------------------------------------------------------------
def manager_scenarios(manager: Any, floor: Floor) -> list[Scenario]:
    """The manager's own operations, each against the floor doing the same by hand."""

    def stored() -> Any:
        session = manager.open(None)
        session.update(SEED)
        manager.save(session)
        reopened = manager.open(session.id)
        assert not reopened.is_new, "a saved session must open again"
        return reopened

    def floor_stored() -> str:
        session_id = new_id()
        floor.write(session_id, dict(SEED))
        assert floor.read(session_id) is not None
        return session_id

    # open an existing session
    open_id, floor_open_id = stored().id, floor_stored()
    # save a modified one (a fresh value each time, so every save must write)
    modified, floor_modified_id, floor_data = stored(), floor_stored(), dict(SEED)
    counter = itertools.count()

    def save_modified() -> None:
        modified["visits"] = next(counter)
        manager.save(modified)

    def floor_save_modified() -> None:
        floor_data["visits"] = next(counter)
        floor.write(floor_modified_id, floor_data)

    # open + save an unmodified one: the floor reads, and has nothing to write
    unmodified_id, floor_unmodified_id = stored().id, floor_stored()
    # regenerate: the same session again and again (each call renames it)
    regenerated = stored()
    floor_regenerated = [floor_stored()]

    def floor_regenerate() -> None:
        floor_regenerated[0] = floor.regenerate(floor_regenerated[0], SEED)

    return [
        Scenario(
            "open", timed(lambda: manager.open(open_id)), timed(lambda: floor.read(floor_open_id))
        ),
        Scenario("save (modified)", timed(save_modified), timed(floor_save_modified)),
        Scenario(
            "open + save (unmodified)",
            timed(lambda: manager.save(manager.open(unmodified_id))),
            timed(lambda: floor.read(floor_unmodified_id)),
        ),
        Scenario(
            "regenerate", timed(lambda: manager.regenerate(regenerated)), timed(floor_regenerate)
        ),
    ]


def write_limit(env: StoreEnv) -> float:
    """A write request's limit: higher where the store must compare-and-set in a script."""
    if env.native_conditional_write:
        return WRITE_REQUEST_LIMIT
    return SCRIPTED_CAS_WRITE_REQUEST_LIMIT


def request_scenarios(
    manager: Any,
    async_manager: Any,
    floor: Floor,
    async_floor: AsyncFloor,
    runner: asyncio.Runner,
    write: float = WRITE_REQUEST_LIMIT,
) -> tuple[list[Scenario], list[AsgiRunner]]:
    """Full requests: Flask (WSGI) and Starlette (ASGI), read-only and writing; ``write`` is
    the write requests' limit."""
    ours_flask, floor_flask = flask_app(manager=manager), flask_app(floor=floor)
    ours_asgi = AsgiRunner(starlette_app(manager=async_manager), runner)
    floor_asgi = AsgiRunner(starlette_app(floor=async_floor), runner)
    sides: dict[str, tuple[Callable[..., OpRunner], Callable[..., OpRunner]]] = {
        "Flask": (partial(flask_runner, ours_flask), partial(flask_runner, floor_flask)),
        "Starlette": (ours_asgi.series, floor_asgi.series),
    }
    kinds = (("read-only", "GET", "/read", b"42 2"), ("write", "POST", "/write", None))
    scenarios = []
    for framework, (ours, theirs) in sides.items():
        for kind, method, path, expect in kinds:
            read_only = kind == "read-only"
            scenarios.append(
                Scenario(
                    f"{framework} request, {kind}",
                    ours(method, path, expect),
                    theirs(method, path, expect),
                    READ_REQUEST_LIMIT if read_only else write,
                    read_only,
                )
            )
    return scenarios, [ours_asgi, floor_asgi]


#: The extra rows' label: their "ormsession" side is the floor on SQLAlchemy's pool.
POOL_ROW = "{}: SQLAlchemy-pool floor"


def pool_scenarios(
    engine_floors: tuple[Floor, AsyncFloor],
    floor: Floor,
    async_floor: AsyncFloor,
    runner: asyncio.Runner,
) -> tuple[list[Scenario], list[AsgiRunner]]:
    """The labelled extra rows of a SQL store: the same hand-written requests with the
    connection from SQLAlchemy's pool (and, under asyncio, its greenlet bridge) against the
    driver floor. No target: the ratio is what that pool costs, which ormsession pays to
    share an app's engine."""
    engine_floor, async_engine_floor = engine_floors
    engine_asgi = AsgiRunner(starlette_app(floor=async_engine_floor), runner)
    floor_asgi = AsgiRunner(starlette_app(floor=async_floor), runner)
    sides = {
        "Flask": (
            partial(flask_runner, flask_app(floor=engine_floor)),
            partial(flask_runner, flask_app(floor=floor)),
        ),
        "Starlette": (engine_asgi.series, floor_asgi.series),
    }
    kinds = (("read-only", "GET", "/read", b"42 2"), ("write", "POST", "/write", None))
    scenarios = [
        Scenario(
            POOL_ROW.format(f"{framework} request, {kind}"),
            pooled(method, path, expect),
            direct(method, path, expect),
        )
        for framework, (pooled, direct) in sides.items()
        for kind, method, path, expect in kinds
    ]
    return scenarios, [engine_asgi, floor_asgi]


# -- one store --------------------------------------------------------------------------
def measure(store: str, scenario: Scenario, counter: ServerCounter | None, plan: Plan) -> Row:
    settings = plan.timing
    ops = calibrate(scenario.floor, settings)
    rounds = settings.rounds if scenario.limit is None else settings.request_rounds
    series = {"ours": scenario.ours, "floor": scenario.floor}
    per_op = run_rounds(series, rounds=rounds, ops=ops, warmup_ops=settings.warmup_ops)
    ours = floor = None
    if counter is not None:
        n = plan.sizes["count"]
        ours = counter.count(lambda: scenario.ours(n), n)
        floor = counter.count(lambda: scenario.floor(n), n)
    limit = None if store == CPU_ONLY else scenario.limit
    comparison = compare(per_op, "ours", "floor", ops)
    row = Row(store, scenario.operation, comparison, ours, floor, limit, scenario.read_only)
    if plan.profile and plan.profile.lower() in f"{store} {scenario.operation}".lower():
        profile(store, scenario, ops * rounds)
    return row


def profile(store: str, scenario: Scenario, ops: int) -> None:
    """cProfile of ormsession's side of a scenario (``--profile``), to stderr."""
    profiler = cProfile.Profile()
    profiler.enable()
    scenario.ours(ops)
    profiler.disable()
    print(f"\n--- profile: {store} / {scenario.operation} ({ops} operations) ---", file=sys.stderr)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def has_scale_work(name: str, plan: Plan) -> bool:
    return plan.scale and name in {*SCALE_READ_STORES, *SCALE_GC_STORES, "sqlite"}


def bench_operations(env: StoreEnv, plan: Plan, report: Report) -> None:
    with contextlib.ExitStack() as stack:
        runner = stack.enter_context(asyncio.Runner())
        manager, async_manager, floor, async_floor = sides_for(env, runner, stack)
        counter = None
        if env.name != CPU_ONLY:
            counter = env.counter(manager, async_manager, runner, floor, async_floor)
        scenarios = manager_scenarios(manager, floor)
        requests, clients = request_scenarios(
            manager, async_manager, floor, async_floor, runner, write_limit(env)
        )
        if env.engine_floors is not None and plan.pool_rows:
            extra, more_clients = pool_scenarios(
                env.engine_floors(manager, async_manager), floor, async_floor, runner
            )
            requests += extra
            clients += more_clients
        for client in clients:
            stack.callback(client.close)
        for scenario in scenarios + requests:
            started = time.perf_counter()
            row = measure(env.name, scenario, counter, plan)
            report.rows.append(row)
            c = row.comparison
            _progress(
                f"  {scenario.operation:<30} {c.ratio:6.3f}x  ({c.a_us:8.1f} vs {c.b_us:8.1f} µs, "
                f"{time.perf_counter() - started:4.1f} s)"
            )


def bench_scale(env: StoreEnv, plan: Plan, report: Report) -> None:
    sizes = plan.sizes
    if env.name in SCALE_READ_STORES:
        read = scale.read_scale_redis if env.name == "redis" else scale.read_scale_sql
        r = read(env, plan.timing, small=sizes["small"], big=sizes["big"])
        report.scale.append(r)
        _progress(f"  reads {r.small:,} -> {r.big:,} sessions: {r.ours.ratio:.3f}x")
    if env.name in SCALE_GC_STORES:
        gc = scale.gc_sql(env, rows=sizes["gc"])
        report.gc.append(gc)
        _progress(f"  gc of {gc.rows:,} rows: longest batch {gc.max_batch_seconds * 1000:.1f} ms")
    if env.name == "sqlite":
        report.memory = scale.memory_per_session(env, sessions=sizes["memory"])


def _on_store(name: str, report: Report, work: Callable[[StoreEnv], None], phase: str = "") -> None:
    """Set the store up, run ``work`` on it, tear it down; failures go into the report."""
    label = f"{name} ({phase})" if phase else name
    _progress(f"{label}:")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        try:
            env = stack.enter_context(open_store(name))
        except Exception as exc:  # unavailable, or a server that would not start: go on
            kind = "" if isinstance(exc, Unavailable) else f"{type(exc).__name__}: "
            report.skipped[name] = why = f"{kind}{exc}"
            _progress(f"  skipped: {why}")
            return
        report.versions[name] = env.version
        try:
            work(env)
        except Exception as exc:
            report.errors[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
    _progress(f"  ({label}: {time.perf_counter() - started:.1f} s with set-up and tear-down)")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the command ------------------------------------------------------------------------
QUICK = Settings(
    rounds=3, request_rounds=3, round_seconds=0.004, min_ops=2, max_ops=10, warmup_ops=2
)
#: (full run, --quick): sizes of the scale part and the operations counted on the server.
SIZES = {
    "small": (1_000, 100),
    "big": (1_000_000, 1_000),
    "gc": (1_000_000, 2_500),
    "count": (40, 4),
    "memory": (2_000, 200),
}


def parse(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    every = ",".join((CPU_ONLY, *ALL_STORES))
    add = parser.add_argument
    add("--stores", default=every, help=f"comma-separated, from {every} (default: all)")
    add("--quick", action="store_true", help="tiny counts: a smoke run, not a measurement")
    add(
        "--scale",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the scale part (default) or not",
    )
    add("--no-ops", dest="operations", action="store_false", help="skip operations and requests")
    add("--scale-small", type=int, help="sessions in the small set (1,000)")
    add("--scale-big", type=int, help="sessions in the big set (1,000,000)")
    add("--gc-rows", type=int, help="expired rows for gc (1,000,000)")
    add("--rounds", type=int, help="interleaved rounds (31; also the requests')")
    add("--request-rounds", type=int, help="rounds of the full requests, the targets' (91)")
    add("--round-ms", type=float, help="target length of a round (50 ms)")
    add("--markdown", type=Path, help="also write the report to this file")
    add("--json", type=Path, help="also write the raw results as JSON")
    add("--profile", help="cProfile ormsession's side of matching operations (stderr)")
    add(
        "--pool-rows",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the SQL stores' extra rows: the floor on SQLAlchemy's pool (default) or not",
    )
    args = parser.parse_args(argv)
    stores = tuple(name.strip() for name in args.stores.split(",") if name.strip())
    unknown = sorted(set(stores) - {CPU_ONLY, *ALL_STORES})
    if unknown:
        parser.error(f"unknown store(s): {', '.join(unknown)}")
    for option, count in (("--rounds", args.rounds), ("--request-rounds", args.request_rounds)):
        if count is not None and count < 1:
            parser.error(f"{option} must be at least 1, not {count}")
    sizes = {name: both[1 if args.quick else 0] for name, both in SIZES.items()}
    for name, size in (("small", args.scale_small), ("big", args.scale_big), ("gc", args.gc_rows)):
        sizes[name] = size or sizes[name]
    # --rounds alone sets every row's rounds; --request-rounds then overrides the requests'.
    given = {
        "rounds": args.rounds,
        "request_rounds": args.request_rounds or args.rounds,
        "round_seconds": None if args.round_ms is None else args.round_ms / 1000,
    }
    timing = dataclasses.replace(
        QUICK if args.quick else Settings(), **{k: v for k, v in given.items() if v is not None}
    )
    plan = Plan(stores, timing, sizes, args.scale, args.operations, args.profile, args.pool_rows)
    return plan, args


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse(argv)
    started = time.perf_counter()
    settings = {
        "rounds": plan.timing.rounds,
        "request rounds": plan.timing.request_rounds,
        "round": f"{plan.timing.round_seconds * 1000:g} ms",
        "counted ops": plan.sizes["count"],
        "quick": bool(args.quick),
    }
    report = Report(machine=machine_info(), settings=settings)
    # Every store's operations first, then the scale work: the servers' clean-up after bulk
    # loads and gc (InnoDB purge, autovacuum) must not overlap another store's timings.
    if plan.operations:
        for name in plan.stores:
            _on_store(name, report, lambda env: bench_operations(env, plan, report))
        _progress("encryption cost")
        report.encryption = encryption.measure(plan.timing)
    for name in plan.stores:
        if has_scale_work(name, plan) and name not in report.skipped:
            _on_store(name, report, lambda env: bench_scale(env, plan, report), "scale")
    report.finished = {
        "load average at end (1, 5, 15 min)": load_average(),
        "run time": f"{time.perf_counter() - started:.0f} s",
    }
    text = report.markdown()
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(report.to_json(), encoding="utf-8")
    return 1 if report.errors else 0
