"""``python -m benchmarks.in_flight``: Starlette requests with several in flight, on every store.

The main benchmark sends one request at a time, as the issue's targets ask. An app under
load has several requests in flight at once, and then other things decide its speed: the
connection pool, the event loop's other work while a reply is on its way, contention on a
store's shared keys. Here N cookie-keeping clients, each with its own session, send their
requests at the same time (``asyncio.gather``), on both sides, in the same interleaved
rounds: ormsession's middleware against the floor's, on the same engine or client and so the
same pool. No two requests share a session, so none of ormsession's compare-and-sets fail.

Each line: the ratio ormsession / floor (the per-round IQR), then each side's time per
request (the round's time over the requests it sent, so N in flight take about 1/N of a
request's latency if they overlap fully) and its thread's waits per request.

    .venv/bin/python -m benchmarks.in_flight
    .venv/bin/python -m benchmarks.in_flight --stores postgresql,redis --in-flight 1,4,16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence

from benchmarks.options import add_round_options, chosen
from benchmarks.requests import rounds_against_floor
from benchmarks.stores import (
    ALL_STORES,
    CPU_ONLY,
    StoreUnavailableError,
    managers_for,
    open_store,
)
from benchmarks.timing import compare

__all__ = ["REQUESTS", "STORES", "compare_store", "main"]

STORES = (CPU_ONLY, *ALL_STORES)
REQUESTS = ("starlette-read", "starlette-write")


def compare_store(
    store: str, kinds: Sequence[str], in_flight: Sequence[int], rounds: int, ops: int
) -> list[str]:
    """One line per request kind and number in flight, for ``store``."""
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(open_store(store))
        runner = stack.enter_context(asyncio.Runner())
        managers = managers_for(env, runner, stack)
        floors = (env.floor(managers[0]), env.async_floor(managers[1]))
        for kind in kinds:
            for count in in_flight:
                sides = {"ormsession": managers}
                per_op, waits = rounds_against_floor(
                    kind, runner, stack, sides, floors, rounds=rounds, ops=ops, in_flight=count
                )
                ratio = compare(per_op, "ormsession", "floor", ops)
                lines.append(
                    f"{store:10} {kind:16} x{count:<3} {ratio.ratio:.3f} "
                    f"({ratio.low:.3f}-{ratio.high:.3f})  "
                    f"ormsession {ratio.a_us:7.1f} µs {waits['ormsession'].per_operation:.2f} "
                    f"waits | floor {ratio.b_us:7.1f} µs {waits['floor'].per_operation:.2f} waits"
                )
                print(lines[-1], flush=True)
    return lines


def _counts(parser: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        counts = [int(item) for item in text.split(",")]
    except ValueError:
        parser.error(f"--in-flight takes whole numbers separated by commas, not {text!r}")
    if any(count < 1 for count in counts):
        parser.error(f"--in-flight counts must be at least 1, not {text!r}")
    return counts


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.in_flight", description=__doc__)
    parser.add_argument(
        "--stores", default=",".join(STORES), help=f"comma-separated: {','.join(STORES)}"
    )
    add_round_options(parser, REQUESTS)
    parser.add_argument(
        "--in-flight", default="1,4", help="comma-separated numbers of requests at once (1,4)"
    )
    args = parser.parse_args(argv)
    args.stores = chosen(parser, args.stores, STORES, "store")
    args.requests = chosen(parser, args.requests, REQUESTS, "request")
    args.in_flight = _counts(parser, args.in_flight)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    for store in args.stores:
        try:
            compare_store(store, args.requests, args.in_flight, args.rounds, args.ops)
        except StoreUnavailableError as exc:
            print(f"{store:10} skipped: {exc}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
