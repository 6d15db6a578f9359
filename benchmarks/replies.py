"""``python -m benchmarks.replies``: how soon Redis answers a write, with the client never asleep.

An asyncio client asks for its reply a short, fixed time after sending (its own code to the
event loop's ``epoll_wait``). A reply that comes back by then costs nothing more; one that
comes later makes the client sleep, and waking a sleeping thread on a virtual machine costs
tens of µs. So what matters for the Starlette write is when each reply *arrives*, which a
sleeping client cannot see. Here the client sends each command on its own loopback socket and
spins on a non-blocking ``recv`` until the reply is in, then pauses (``--gap-us``) so that
Redis goes idle as it does between requests. The commands take turns, so the machine's noise
falls on all of them alike:

- ``SET``: the floor's write, a value of the same size with ``PX``;
- ``empty script``: ``EVALSHA`` of ``return 1`` with the update's keys and arguments (what
  running any script costs);
- ``script of one SET``: the update's write without its read (``benchmarks.cas_cost``'s
  stand-in);
- ``ormsession update``: the shipped compare-and-set, each one a successful update (the
  stored version is checked at the end).

    .venv/bin/python -m benchmarks.replies
    .venv/bin/python -m benchmarks.replies --count 5000 --gap-us 500
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from collections.abc import Sequence

from benchmarks.cas_cost import WRITE_ONLY, write_only
from benchmarks.requests import SEED
from benchmarks.stores import REDIS_HOST, REDIS_PORT, StoreEnv, open_store
from benchmarks.timing import spread_lines
from ormsession.repositories.base import StoredSession
from ormsession.repositories.redis.base import HEADER_SIZE, Eval
from ormsession.repositories.redis.repository import RedisRepository
from ormsession.repositories.redis.scripts import UPDATE, Script

__all__ = [
    "SIDES",
    "SIDE_KEYS",
    "connect",
    "main",
    "measure_replies",
    "report",
    "round_trip",
    "side_commands",
]

SIDES = ("SET", "empty script", "script of one SET", "ormsession update")
_EMPTY = Script.define("bench_empty", "return 1\n")
_HOUR_US = 3_600_000_000
#: The session key each side writes (its own, so the updates' versions stay in turn).
SIDE_KEYS = {side: format(index, "x") * 64 for index, side in enumerate(SIDES, start=10)}
_SPIN_LIMIT_NS = 1_000_000_000


def _pack(*args: bytes | int | str) -> bytes:
    """A command in RESP, as redis-py sends it (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def _evalsha(script: Eval) -> bytes:
    return _pack("EVALSHA", script.script.sha, len(script.keys), *script.keys, *script.args)


def round_trip(sock: socket.socket, command: bytes, expected: bytes) -> int:
    """Nanoseconds from sending ``command`` to its whole reply, spinning (never sleeping)."""
    start = time.perf_counter_ns()
    sock.send(command)
    reply = b""
    while not reply.endswith(b"\r\n"):
        try:
            chunk = sock.recv(64)
        except BlockingIOError:
            if time.perf_counter_ns() - start > _SPIN_LIMIT_NS:
                raise TimeoutError("Redis did not answer within 1 s") from None
            continue
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        reply += chunk
    elapsed = time.perf_counter_ns() - start
    if reply != expected:
        raise RuntimeError(f"expected {expected!r} from Redis, got {reply!r}")
    return elapsed


def side_commands(repository: RedisRepository, count: int, now_us: int) -> dict[str, list[bytes]]:
    """Each side's commands, one per turn; the updates expect versions 1, 2, ..., count."""
    data = json.dumps(SEED).encode()
    expires = now_us + _HOUR_US
    core = repository.core
    updates = [
        _evalsha(core.update_script(SIDE_KEYS["ormsession update"], data, expires, version, now_us))
        for version in range(1, count + 1)
    ]
    stand_in = core.update_script(SIDE_KEYS["script of one SET"], data, expires, 1, now_us)
    empty = Eval(_EMPTY, stand_in.keys, stand_in.args)
    value = bytes(HEADER_SIZE) + data  # a stored value's size: header and data
    plain = _pack("SET", core.layout.session(SIDE_KEYS["SET"]), value, "PX", _HOUR_US // 1000)
    return {
        "SET": [plain] * count,
        "empty script": [_evalsha(empty)] * count,
        "script of one SET": [_evalsha(write_only(stand_in))] * count,
        "ormsession update": updates,
    }


def connect() -> socket.socket:
    """A non-blocking loopback connection to the benchmark's Redis, without Nagle's delay."""
    sock = socket.create_connection((REDIS_HOST, REDIS_PORT))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def measure_replies(env: StoreEnv, count: int, gap_us: int) -> dict[str, list[float]]:
    """Each side's reply times (µs), sorted, ``count`` of each, under ``env``'s key prefix."""
    expected = dict.fromkeys(SIDES, b":1\r\n") | {"SET": b"+OK\r\n"}
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    admin = env.extra["admin"]
    repository = RedisRepository(admin, key_prefix=str(env.options["key_prefix"]))
    now_us = time.time_ns() // 1000
    record = StoredSession(json.dumps(SEED).encode(), 1, now_us, now_us + _HOUR_US)
    if not repository.create(SIDE_KEYS["ormsession update"], record, now_us):
        raise RuntimeError("could not create the record the updates compare against")
    for script in (_EMPTY, WRITE_ONLY, UPDATE):
        admin.script_load(script.source)  # EVALSHA finds them: no EVAL fallback here
    commands = side_commands(repository, count, now_us)
    with connect() as sock:
        for turn in range(count):
            for side in SIDES:
                elapsed = round_trip(sock, commands[side][turn], expected[side])
                times[side].append(elapsed / 1000)
                time.sleep(gap_us / 1_000_000)
    stored = repository.read(SIDE_KEYS["ormsession update"], now_us)
    if stored is None or stored.version != count + 1:
        raise RuntimeError(f"the updates did not all succeed: stored {stored!r}")
    return {side: sorted(values) for side, values in times.items()}


def report(times: dict[str, list[float]]) -> list[str]:
    """One line a side: p10, median and p90 (µs), and the median over ``SET``'s."""
    return spread_lines(times, "SET", "SET")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replies", description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="commands of each side (2000)")
    parser.add_argument("--gap-us", type=int, default=200, help="pause after each reply, µs (200)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, not {args.count}")
    if args.gap_us < 0:
        parser.error(f"--gap-us must not be negative, not {args.gap_us}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    with open_store("redis") as env:
        times = measure_replies(env, args.count, args.gap_us)
    for line in report(times):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
