"""The verdicts are regression guards: a ratio fails only when its whole 95% interval lies
above its limit, and a read-only request also fails when the server counted a write."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.counters import Counts
from benchmarks.encryption import EncryptionCost, requests_of
from benchmarks.encryption import measure as measure_encryption
from benchmarks.harness import write_limit
from benchmarks.report import Report, Row
from benchmarks.scale import ReadScaleResult
from benchmarks.stores import StoreEnv
from benchmarks.timing import Comparison, Settings
from ormsession import Config, SessionManager
from ormsession.encryption import DataCipher
from ormsession.repositories.memory import MemoryRepository


def _comparison(ratio: float, ci_low: float, ci_high: float) -> Comparison:
    return Comparison(
        a_us=ratio * 100, b_us=100, ratio=ratio, low=ratio, high=ratio, rounds=91, ops=10,
        ci_low=ci_low, ci_high=ci_high,
    )  # fmt: skip


def _write_row(ratio: float, ci_low: float, ci_high: float, limit: float = 1.10) -> Row:
    comparison = _comparison(ratio, ci_low, ci_high)
    return Row("redis", "Starlette request, write", comparison, limit=limit)


def _read_row(writes: float | None) -> Row:
    ours = None if writes is None else Counts(total=1, writes=writes, unit="cmd")
    comparison = _comparison(1.00, 0.98, 1.02)
    return Row("redis", "Flask request, read-only", comparison, ours, limit=1.05, read_only=True)


def test_a_ratio_over_its_limit_passes_while_the_limit_is_inside_its_interval() -> None:
    verdict = _write_row(1.12, 1.08, 1.16).verdict()
    assert verdict is not None and verdict.passed
    assert verdict.text.endswith(
        "1.120x the floor (95% CI 1.080-1.160; limit 1.10x); "
        "the limit is inside the interval: inside the noise"
    )


def test_a_ratio_fails_when_its_whole_interval_lies_above_the_limit() -> None:
    verdict = _write_row(1.12, 1.11, 1.14).verdict()
    assert verdict is not None and not verdict.passed
    assert "noise" not in verdict.text
    assert verdict.line().startswith("FAIL  redis ")


def test_a_clear_pass_has_no_note() -> None:
    verdict = _write_row(1.04, 1.03, 1.06).verdict()
    assert verdict is not None and verdict.passed
    assert verdict.text.endswith("1.040x the floor (95% CI 1.030-1.060; limit 1.10x)")


def test_a_read_only_request_that_writes_fails_whatever_its_time() -> None:
    clean, writing, uncounted = _read_row(0).verdict(), _read_row(1).verdict(), _read_row(None)
    assert clean is not None and clean.passed
    assert clean.text.endswith(", 0 writes/request (target 0)")
    assert writing is not None and not writing.passed
    assert writing.text.endswith(", 1 writes/request (target 0)")
    verdict = uncounted.verdict()
    assert verdict is not None and not verdict.passed  # no count cannot show zero writes


def test_a_store_that_must_compare_and_set_in_a_script_gets_the_higher_write_limit() -> None:
    redis = StoreEnv("redis", "redis://", "redis://", "7", native_conditional_write=False)
    postgresql = StoreEnv("postgresql", "postgresql://", "postgresql+asyncpg://", "15")
    assert (write_limit(redis), write_limit(postgresql)) == (1.15, 1.10)
    verdict = _write_row(1.12, 1.11, 1.14, limit=write_limit(redis)).verdict()
    assert verdict is not None and verdict.passed
    assert "noise" not in verdict.text


def test_the_scale_read_follows_the_same_rule() -> None:
    def report(ci_low: float) -> Report:
        result = ReadScaleResult(
            "redis", 1_000, 1_000_000, _comparison(1.25, ci_low, 1.30), _comparison(1, 1, 1), 1.0
        )
        return Report(machine={}, settings={}, scale=[result])

    [inside] = report(1.15).verdicts()
    [above] = report(1.21).verdicts()
    assert inside.passed and inside.text.endswith("inside the noise")
    assert not above.passed
    assert "| **FAIL** |" in report(1.21).markdown()


def test_the_encryption_cost_fails_only_when_its_whole_interval_is_over_the_limit() -> None:
    def cost(low: float, high: float) -> EncryptionCost:
        return EncryptionCost("read-only request", 30.0, 25.0, (low + high) / 2, low, high, 31)

    assert cost(4.0, 6.0).passed
    assert cost(8.0, 12.0).passed, "the limit inside the interval is inside the noise"
    assert not cost(10.5, 14.0).passed
    report = Report(machine={}, settings={}, encryption=[cost(10.5, 14.0), cost(3.0, 5.0)])
    assert [v.passed for v in report.verdicts()] == [False, True]
    assert "What encryption at rest costs a request" in report.markdown()


def test_the_encryption_cost_is_measured_for_each_kind_of_request() -> None:
    costs = measure_encryption(Settings(rounds=3, round_seconds=0.002, warmup_ops=2))
    assert [c.operation for c in costs] == [
        "read-only request",
        "write request",
        "new session",
        "login (regenerate)",
    ]
    assert all(c.rounds == 3 and c.encrypted_us > 0 and c.plain_us > 0 for c in costs)


def test_each_measured_login_opens_the_session_the_last_one_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A login that opened a moved id would get a fresh session and derive one key, not two.
    derived: list[str] = []
    key = DataCipher.key

    def counting_key(self: DataCipher, session_id: str, secret_id: bytes | None = None) -> Any:
        derived.append(session_id)
        return key(self, session_id, secret_id)

    monkeypatch.setattr(DataCipher, "key", counting_key)
    manager = SessionManager(MemoryRepository(), Config(url="memory://"))
    login = requests_of(manager)["login (regenerate)"]
    derived.clear()
    for _ in range(3):
        login()
    assert len(derived) == 6 and len(set(derived)) == 4, "each login: the last id, a new one"
