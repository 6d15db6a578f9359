"""The Redis scale read: both sets in one run of interleaved rounds, nothing left behind."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from benchmarks.scale import BIG_REDIS_DB, read_scale_redis
from benchmarks.stores import REDIS_HOST, REDIS_PORT, StoreEnv
from benchmarks.timing import Settings


def _keys_under(db: int, prefix: str) -> list[bytes]:
    with redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db) as client:
        return list(client.scan_iter(match=prefix + "*", count=1000))


def test_the_big_set_is_read_in_its_own_database_beside_the_small_one(
    redis_env: StoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.scale as scale

    prefix = str(redis_env.extra["prefix"])
    seen: list[tuple[list[str], int, int]] = []
    real_rounds = scale.run_rounds

    def watched_rounds(series: Any, **kwargs: Any) -> dict[str, list[float]]:
        seen.append(
            (sorted(series), len(_keys_under(0, prefix)), len(_keys_under(BIG_REDIS_DB, prefix)))
        )
        return real_rounds(series, **kwargs)

    monkeypatch.setattr(scale, "run_rounds", watched_rounds)
    settings = Settings(rounds=3, round_seconds=0.002, min_ops=5, max_ops=20, warmup_ops=2)
    result = read_scale_redis(redis_env, settings, small=20, big=300)

    # One set of rounds for all four series, each set in its own keyspace meanwhile: both
    # comparisons are paired round by round, not phases apart.
    assert seen == [(["floor_big", "floor_small", "ours_big", "ours_small"], 20, 300)]
    assert (result.ours.rounds, result.floor.rounds) == (3, 3)
    assert result.ours.a_us > 0 and result.ours.b_us > 0
    assert result.floor.a_us > 0 and result.floor.b_us > 0
    assert result.load_seconds > 0
    assert _keys_under(0, prefix) == []
    assert _keys_under(BIG_REDIS_DB, prefix) == []


def test_a_failed_read_still_deletes_both_sets(
    redis_env: StoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.scale as scale

    def broken_rounds(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the rounds broke")

    monkeypatch.setattr(scale, "run_rounds", broken_rounds)
    with pytest.raises(RuntimeError, match="the rounds broke"):
        read_scale_redis(redis_env, Settings(rounds=1, warmup_ops=1), small=10, big=50)
    prefix = str(redis_env.extra["prefix"])
    assert _keys_under(0, prefix) == []
    assert _keys_under(BIG_REDIS_DB, prefix) == []
