"""``python -m benchmarks.cas_cost``: what the compare-and-set costs a write request on Redis.

Every ormsession write on Redis is one ``EVALSHA``: a Lua script reads the stored header,
compares the version and writes (concurrent requests must not silently overwrite each
other). The floor's write is a blind ``SET``. This runs four sides of the same write request
in the same interleaved rounds, each against the floor:

- ``ormsession``: as shipped;
- ``script, no compare``: ormsession with its update replaced by a Lua script of one
  ``SET`` that writes the same bytes without reading anything first;
- ``plain SET``: ormsession with its update replaced by a ``SET`` of the same bytes;
- the floor.

``plain SET`` against the floor is what ormsession's own client-side work costs; the step up
to ``script, no compare`` is what running any script costs, and the step up to ormsession is
what the compare adds. The two stand-ins are measurements, never stores: they skip the
compare, and they store the write's time as the creation time.

``waits`` is the voluntary context switches of the benchmark's thread per request: how often
the client ran out of work and slept until a reply came. A request whose replies come back
before the client asks for them never sleeps.

    .venv/bin/python -m benchmarks.cas_cost
    .venv/bin/python -m benchmarks.cas_cost --stores redis,sentinel,cluster --rounds 121
    .venv/bin/python -m benchmarks.cas_cost --requests starlette-write --in-flight 4

With ``--in-flight N``, N clients, each with its own session, send their Starlette requests
at the same time (on both sides), so the client has other requests to serve while a reply
is on its way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
from collections.abc import Sequence
from typing import Any

from benchmarks.options import add_round_options, chosen
from benchmarks.requests import rounds_against_floor
from benchmarks.stores import managers_for, open_store
from benchmarks.timing import compare
from ormsession import AsyncSessionManager, SessionManager
from ormsession.integrations.flask import FlaskSession
from ormsession.repositories.redis.async_repository import AsyncRedisRepository
from ormsession.repositories.redis.base import Eval
from ormsession.repositories.redis.common import RAW
from ormsession.repositories.redis.repository import RedisRepository
from ormsession.repositories.redis.scripts import Script

__all__ = [
    "REDIS_STORES",
    "WRITE_ONLY",
    "AsyncPlainSet",
    "AsyncScriptNoCompare",
    "PlainSet",
    "ScriptNoCompare",
    "main",
    "write_only",
]

REDIS_STORES = ("redis", "sentinel", "cluster")
REQUESTS = ("flask-write", "starlette-write")
SIDES = ("ormsession", "script, no compare", "plain SET")

#: The update script's write without its read: the header (format 2, the new version, the
#: write's time as the creation time, the clock's expiry and bucket) and the data, ``PX``.
WRITE_ONLY = Script.define(
    "bench_write_only",
    """
local a = ARGV[1]
redis.call('SET', KEYS[1], string.char(2) .. string.sub(a, 42, 49) .. string.sub(a, 1, 8)
  .. string.sub(a, 17, 33) .. ARGV[2], 'PX', (struct.unpack('>I8', a, 9)))
return 1
""",
)
_U64 = struct.Struct(">Q")


def write_only(script: Eval) -> Eval:
    """``script`` (an update) as :data:`WRITE_ONLY`: the same keys and arguments."""
    return Eval(WRITE_ONLY, script.keys, script.args)


def _set_args(script: Eval) -> tuple[str, bytes, str, int]:
    """``SET`` arguments writing what :data:`WRITE_ONLY` writes, built in Python."""
    clock, data = script.args
    assert isinstance(clock, bytes)
    assert isinstance(data, bytes)
    value = b"\x02" + clock[41:49] + clock[0:8] + clock[16:33] + data
    return script.keys[0], value, "PX", _U64.unpack_from(clock, 8)[0]


class ScriptNoCompare(RedisRepository):
    """The update's write without its compare: the one-``SET`` script, or (``plain``) a
    ``SET`` of the same bytes. Returns the next version whatever the stored one."""

    plain = False

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        script = self.core.update_script(key, data, expires_us, expected_version, now_us)
        if self.plain:
            self.client.execute_command("SET", *_set_args(script), **RAW)
        else:
            self._execute(write_only(script))
        return expected_version + 1


class PlainSet(ScriptNoCompare):
    plain = True


class AsyncScriptNoCompare(AsyncRedisRepository):
    """The asyncio twin of :class:`ScriptNoCompare`."""

    plain = False

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        script = self.core.update_script(key, data, expires_us, expected_version, now_us)
        if self.plain:
            await self.client.execute_command("SET", *_set_args(script), **RAW)
        else:
            await self._execute(write_only(script))
        return expected_version + 1


class AsyncPlainSet(AsyncScriptNoCompare):
    plain = True


_STAND_INS: dict[str, tuple[type[RedisRepository], type[AsyncRedisRepository]]] = {
    "script, no compare": (ScriptNoCompare, AsyncScriptNoCompare),
    "plain SET": (PlainSet, AsyncPlainSet),
}


def _managers(
    env: Any, runner: asyncio.Runner, stack: contextlib.ExitStack
) -> dict[str, tuple[Any, Any]]:
    """Each side's sync and async manager, all on ormsession's own clients and key prefix."""
    shipped, async_shipped = managers_for(env, runner, stack)
    managers = {"ormsession": (shipped, async_shipped)}
    repository, async_repository = shipped.repository, async_shipped.repository
    assert isinstance(repository, RedisRepository)
    assert isinstance(async_repository, AsyncRedisRepository)
    prefix = env.options["key_prefix"]
    for side, (sync_kind, async_kind) in _STAND_INS.items():
        managers[side] = (
            SessionManager(
                sync_kind(repository.client, key_prefix=prefix), session_class=FlaskSession
            ),
            AsyncSessionManager(async_kind(async_repository.client, key_prefix=prefix)),
        )
    return managers


def compare_store(
    store: str, kinds: Sequence[str], rounds: int, ops: int, in_flight: int = 1
) -> list[str]:
    """The lines for one store: each side's ratio to the floor (IQR) and its waits.
    ``in_flight``: Starlette requests sent at once (Flask's test client sends one at a time).
    """
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(open_store(store))
        runner = stack.enter_context(asyncio.Runner())
        managers = _managers(env, runner, stack)
        ours_sync, ours_async = managers["ormsession"]
        floors = (env.floor(ours_sync), env.async_floor(ours_async))
        for kind in kinds:
            per_op, waits = rounds_against_floor(
                kind, runner, stack, managers, floors, rounds=rounds, ops=ops, in_flight=in_flight
            )
            ratios = {side: compare(per_op, side, "floor", ops) for side in SIDES}
            cells = [
                f"{side} {ratio.ratio:.3f} ({ratio.low:.3f}-{ratio.high:.3f}) "
                f"{waits[side].per_operation:.2f} waits"
                for side, ratio in ratios.items()
            ]
            floor_us = ratios["ormsession"].b_us
            cells.append(f"floor {floor_us:.0f} µs {waits['floor'].per_operation:.2f} waits")
            label = kind if kind == "flask-write" or in_flight == 1 else f"{kind} x{in_flight}"
            lines.append(f"{store:9} {label:16} " + " | ".join(cells))
            print(lines[-1], flush=True)
    return lines


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cas_cost", description=__doc__)
    parser.add_argument(
        "--stores", default="redis", help=f"comma-separated: {','.join(REDIS_STORES)}"
    )
    add_round_options(parser, REQUESTS)
    parser.add_argument(
        "--in-flight", type=int, default=1, help="Starlette requests sent at once (1)"
    )
    args = parser.parse_args(argv)
    if args.in_flight < 1:
        parser.error(f"--in-flight must be at least 1, not {args.in_flight}")
    args.stores = chosen(parser, args.stores, REDIS_STORES, "store")
    args.requests = chosen(parser, args.requests, REQUESTS, "request")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    for store in args.stores:
        compare_store(store, args.requests, args.rounds, args.ops, args.in_flight)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
