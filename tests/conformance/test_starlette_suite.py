"""Starlette 1.10.0's own session tests, unmodified, against ormsession on every store.

For each store this runs ``python -m pytest`` in the unpacked Starlette sdist with
``starlette_plugin`` (which swaps ormsession's middleware in for Starlette's) and the store
in ``ORMSESSION_*`` variables, reads the outcome from a JUnit XML report, and asserts that
exactly the selected cases ran and all passed. Starlette's own pytest configuration applies,
``filterwarnings = error`` included: a leaked connection's ResourceWarning fails a case.

Excluded: ``test_session_tracks_modification``, a unit test of Starlette's own ``Session``
class (ormsession's ``RequestSession`` is a different class), and the ``trio`` parameters
(trio is not installed: it would also switch on Starlette's blocking-call detector).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ormsession.schema import upgrade
from tests.conformance.runner import Outcome, outcomes, run_tests
from tests.conformance.sources import STARLETTE, unpacked
from tests.support.sql_fixtures import (
    MARIADB_ADMIN_URL,
    POSTGRES_ADMIN_URL,
    _private_database,
    async_url,
)

PLUGIN_DIR = Path(__file__).resolve().parent

SESSION_TESTS = "tests/middleware/test_session.py"
EXCLUDED = f"{SESSION_TESTS}::test_session_tracks_modification"
MIDDLEWARE_CASE = "tests/middleware/test_middleware.py::test_response_start_without_headers"
EXPECTED = frozenset(
    {
        f"{SESSION_TESTS}::test_session[asyncio]",
        f"{SESSION_TESTS}::test_partitioned_session[asyncio-False]",
        f"{SESSION_TESTS}::test_partitioned_session[asyncio-True]",
        f"{SESSION_TESTS}::test_session_expires[asyncio]",
        f"{SESSION_TESTS}::test_secure_session[asyncio]",
        f"{SESSION_TESTS}::test_session_cookie_subpath[asyncio]",
        f"{SESSION_TESTS}::test_invalid_session_cookie[asyncio]",
        f"{SESSION_TESTS}::test_session_cookie[asyncio]",
        f"{SESSION_TESTS}::test_session_zero_max_age[asyncio]",
        f"{SESSION_TESTS}::test_domain_cookie[asyncio]",
        f"{SESSION_TESTS}::test_set_cookie_only_on_modification[asyncio]",
        f"{SESSION_TESTS}::test_vary_cookie_on_access[asyncio]",
        f"{SESSION_TESTS}::test_session_persists_mutations"
        "[asyncio-/inplace_update_session-data0-expected0]",
        f"{SESSION_TESTS}::test_session_persists_mutations[asyncio-/popitem_session-None-expected1]",
        f"{MIDDLEWARE_CASE}[asyncio-session]",
    }
)


@pytest.fixture(scope="module")
def starlette_source() -> Path:
    return unpacked(STARLETTE)


# -- the stores: each in its own database or key prefix, made and removed here -----------
StoreEnv = dict[str, str]


@contextmanager
def _sql_store(admin_url: str) -> Iterator[tuple[StoreEnv, Callable[[], int]]]:
    name = f"ormsession_starlette_{uuid.uuid4().hex[:12]}"
    databases = _private_database(admin_url, name)
    url = next(databases)
    try:
        upgrade(url)
        yield {"ORMSESSION_URL": async_url(url)}, lambda: _count_rows(url)
    finally:
        next(databases, None)  # drops the database


def _count_rows(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT COUNT(*) FROM session")).scalar_one())
    finally:
        engine.dispose()


@contextmanager
def store(
    request: pytest.FixtureRequest, name: str
) -> Iterator[tuple[StoreEnv, Callable[[], int]]]:
    """The ``ORMSESSION_*`` variables that point at ``name``'s store, and a count of the
    sessions it holds (to prove the run really used it)."""
    if name == "memory":
        yield {"ORMSESSION_URL": "memory://"}, lambda: -1
    elif name == "sqlite":
        path = request.getfixturevalue("tmp_path") / "starlette.sqlite3"
        yield (
            {"ORMSESSION_URL": f"sqlite+aiosqlite:///{path}"},
            lambda: _count_rows(f"sqlite:///{path}"),
        )
    elif name in ("postgresql", "mysql"):
        with _sql_store(POSTGRES_ADMIN_URL if name == "postgresql" else MARIADB_ADMIN_URL) as env:
            yield env
    else:
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_key_prefix")  # deleted afterwards

        def count_keys() -> int:
            with redis.Redis.from_url(url) as client:
                return sum(1 for _ in client.scan_iter(match=f"{prefix}*"))

        yield {"ORMSESSION_URL": url, "ORMSESSION_KEY_PREFIX": prefix}, count_keys


# -- running Starlette's tests -------------------------------------------------------------
def run_starlette_tests(
    source: Path, env: StoreEnv, report: Path
) -> subprocess.CompletedProcess[str]:
    return run_tests(
        source,
        plugin="starlette_plugin",
        store_env=env,
        args=[
            *("--no-header", SESSION_TESTS, "--deselect", EXCLUDED),
            f"{MIDDLEWARE_CASE}[asyncio-session]",
        ],
        report=report,
        timeout=120,
        path=[PLUGIN_DIR],
    )


def describe(results: dict[str, Outcome], run: subprocess.CompletedProcess[str]) -> str:
    lines = []
    for node_id, outcome in sorted(results.items()):
        if not outcome.passed:
            lines.append(f"{node_id}: {outcome.message}")
    missing = sorted(EXPECTED - results.keys())
    extra = sorted(results.keys() - EXPECTED)
    if missing:
        lines.append("did not run: " + ", ".join(missing))
    if extra:
        lines.append("ran but not selected: " + ", ".join(extra))
    lines.append("--- pytest output (end) ---\n" + (run.stdout + run.stderr)[-3000:])
    return "\n".join(lines)


@pytest.mark.parametrize("store_name", ["memory", "sqlite", "postgresql", "mysql", "redis"])
def test_starlette_session_suite(
    request: pytest.FixtureRequest, starlette_source: Path, tmp_path: Path, store_name: str
) -> None:
    report = tmp_path / "junit.xml"
    with store(request, store_name) as (env, sessions_held):
        run = run_starlette_tests(starlette_source, env, report)
        assert report.exists(), f"no report (exit {run.returncode}):\n{run.stdout}{run.stderr}"
        results = outcomes(report)
        passed = sum(outcome.passed for outcome in results.values())
        summary = f"{store_name}: {passed}/{len(EXPECTED)} of Starlette's session tests passed"
        assert results.keys() == EXPECTED and passed == len(EXPECTED), (
            summary + "\n" + describe(results, run)
        )
        # The run went through the store (not a stray default): sessions stayed behind.
        assert sessions_held() != 0, f"{store_name}: the store holds no session after the run"
