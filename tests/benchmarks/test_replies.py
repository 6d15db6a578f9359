"""``python -m benchmarks.replies``: every side's commands do what they claim on the real Redis
(the updates all succeed, in turn), and a wrong reply stops the run."""

from __future__ import annotations

import re
import time

import pytest

from benchmarks.replies import (
    SIDE_KEYS,
    SIDES,
    connect,
    main,
    measure_replies,
    round_trip,
    side_commands,
)
from benchmarks.stores import StoreEnv
from ormsession.repositories.base import StoredSession
from ormsession.repositories.redis.repository import RedisRepository
from ormsession.repositories.redis.scripts import UPDATE


def test_each_side_is_timed_count_times_and_every_update_succeeds(redis_env: StoreEnv) -> None:
    times = measure_replies(redis_env, count=6, gap_us=0)
    assert list(times) == list(SIDES)
    for values in times.values():
        assert len(values) == 6
        assert values == sorted(values)
        assert values[0] > 0


def test_an_update_out_of_turn_is_refused_and_stops_the_run(redis_env: StoreEnv) -> None:
    admin = redis_env.extra["admin"]
    repository = RedisRepository(admin, key_prefix=str(redis_env.options["key_prefix"]))
    now = time.time_ns() // 1000
    key = "ormsession update"
    commands = side_commands(repository, 2, now)
    admin.script_load(UPDATE.source)
    stored_key = SIDE_KEYS[key]
    assert repository.create(stored_key, StoredSession(b"{}", 1, now, now + 10**9), now)
    with connect() as sock:
        # The second update expects version 2; the stored one is 1: the script answers 0.
        with pytest.raises(RuntimeError, match=re.escape("got b':0\\r\\n'")):
            round_trip(sock, commands[key][1], b":1\r\n")
        round_trip(sock, commands[key][0], b":1\r\n")
        round_trip(sock, commands[key][1], b":1\r\n")
    stored = repository.read(stored_key, now)
    assert stored is not None and stored.version == 3


def test_a_tiny_run_prints_a_line_a_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--count", "5", "--gap-us", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    number = r"\s+[\d.]+"
    for side, line in zip(SIDES, lines, strict=True):
        assert re.fullmatch(
            rf"{re.escape(side)}\s+p10{number}\s+p50{number}\s+p90{number} µs  "
            r"\(p50\s+[+-][\d.]+ µs on SET\)",
            line,
        ), line
    assert "(p50  +0.0 µs on SET)" in lines[0]


@pytest.mark.parametrize("argv", [["--count", "0"], ["--gap-us", "-1"]], ids=["count", "gap"])
def test_bad_options_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
