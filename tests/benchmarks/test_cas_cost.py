"""``python -m benchmarks.cas_cost``: its stand-ins write what they claim, on the real Redis,
and a tiny run prints every side of every request."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
import redis

from benchmarks.cas_cost import (
    AsyncPlainSet,
    AsyncScriptNoCompare,
    PlainSet,
    ScriptNoCompare,
    main,
)
from benchmarks.stores import REDIS_HOST, REDIS_PORT, StoreEnv
from ormsession.repositories.base import StoredSession
from ormsession.repositories.redis.async_repository import AsyncRedisRepository
from ormsession.repositories.redis.repository import RedisRepository

HOUR = 3_600_000_000
NOW = 1_760_000_000_000_000
KEY = "ab" * 32


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    with redis.Redis(host=REDIS_HOST, port=REDIS_PORT) as client:
        yield client


@pytest.mark.parametrize("stand_in", [PlainSet, ScriptNoCompare])
def test_a_stand_in_writes_without_comparing_what_the_shipped_update_would_refuse(
    redis_env: StoreEnv, client: redis.Redis, stand_in: type[RedisRepository]
) -> None:
    prefix = str(redis_env.options["key_prefix"])
    shipped = RedisRepository(client, key_prefix=prefix)
    assert shipped.create(KEY, StoredSession(b"v1", 1, NOW - HOUR, NOW + HOUR), NOW)

    # Version 7 is not the stored one: the shipped compare-and-set refuses it...
    assert shipped.update(KEY, b"refused", NOW + 2 * HOUR, 7, NOW) is None
    # ...the stand-in writes anyway: it measures the write without the compare.
    assert stand_in(client, key_prefix=prefix).update(KEY, b"v2", NOW + 2 * HOUR, 7, NOW) == 8

    # What it stored is a record the shipped repository reads, with the write's time as
    # its creation time.
    assert shipped.read(KEY, NOW) == StoredSession(b"v2", 8, NOW, NOW + 2 * HOUR)
    ttl_ms = client.pttl(shipped.core.layout.session(KEY))
    assert 2 * HOUR // 1000 - 60_000 < ttl_ms <= 2 * HOUR // 1000


@pytest.mark.parametrize("stand_in", [AsyncPlainSet, AsyncScriptNoCompare])
def test_the_async_stand_ins_write_the_same(
    redis_env: StoreEnv, stand_in: type[AsyncRedisRepository]
) -> None:
    import redis.asyncio

    prefix = str(redis_env.options["key_prefix"])

    async def scenario() -> StoredSession | None:
        async with redis.asyncio.Redis(host=REDIS_HOST, port=REDIS_PORT) as client:
            shipped = AsyncRedisRepository(client, key_prefix=prefix)
            assert await shipped.create(KEY, StoredSession(b"v1", 1, NOW - HOUR, NOW + HOUR), NOW)
            assert await shipped.update(KEY, b"refused", NOW + 2 * HOUR, 7, NOW) is None
            written = await stand_in(client, key_prefix=prefix).update(
                KEY, b"v2", NOW + 2 * HOUR, 7, NOW
            )
            assert written == 8
            return await shipped.read(KEY, NOW)

    assert asyncio.run(scenario()) == StoredSession(b"v2", 8, NOW, NOW + 2 * HOUR)


def test_a_tiny_run_prints_every_side_of_every_request(
    redis_env: StoreEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--stores", "redis", "--rounds", "3", "--ops", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["redis", "flask-write"],
        ["redis", "starlette-write"],
    ]
    side = r"[\d.]+ \([\d.]+-[\d.]+\) [\d.]+ waits"
    shape = re.compile(
        rf"ormsession {side} \| script, no compare {side} \| plain SET {side} \| "
        r"floor \d+ µs [\d.]+ waits$"
    )
    assert all(shape.search(line) for line in lines), lines


def test_requests_in_flight_are_labelled(
    redis_env: StoreEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--requests", "starlette-write", "--in-flight", "2", "--rounds", "3", "--ops", "4"]
    assert main(argv) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.split()[:3] == ["redis", "starlette-write", "x2"]
    assert "plain SET" in line


@pytest.mark.parametrize(
    "argv",
    [["--stores", "postgresql"], ["--requests", "starlette-read"], ["--in-flight", "0"]],
    ids=["store", "request", "in-flight"],
)
def test_what_it_cannot_measure_is_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        main(argv)
