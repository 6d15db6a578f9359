"""The shipped suite fails the stores it should: run in-process on deliberately broken ones.

A contract suite that passes everything proves nothing. Here a store whose compare-and-set
is not atomic must fail the concurrency test in both twins (so the racing calls really do
overlap: threads for the sync twin, concurrent tasks for the async one), a class that only
looks like a repository must fail the base-class test, and a native-TTL store must see the
gc test skipped with the reason.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

RACY = """
import asyncio
import time

import pytest

from ormsession.repositories.memory import AsyncMemoryRepository, MemoryRepository
from ormsession.testing import AsyncRepositoryContract, RepositoryContract


class RacyRepository(MemoryRepository):
    def update(self, key, data, expires_us, expected_version, now_us):
        record = self.read(key, now_us)
        time.sleep(0.05)  # between the compare and the set: every racer has compared
        if record is None or record.version != expected_version:
            return None
        new = record._replace(data=data, version=expected_version + 1, expires_us=expires_us)
        self._records[key] = new
        return new.version


class RacyAsyncRepository(AsyncMemoryRepository):
    async def update(self, key, data, expires_us, expected_version, now_us):
        record = await self.read(key, now_us)
        await asyncio.sleep(0.05)  # likewise, at an await
        if record is None or record.version != expected_version:
            return None
        new = record._replace(data=data, version=expected_version + 1, expires_us=expires_us)
        self.inner._records[key] = new
        return new.version


class TestRacy(RepositoryContract):
    @pytest.fixture
    def repository(self):
        return RacyRepository()


class TestAsyncRacy(AsyncRepositoryContract):
    @pytest.fixture
    def async_repository(self):
        return RacyAsyncRepository()
"""

LOOKALIKE = """
import pytest

from ormsession.repositories.memory import AsyncMemoryRepository, MemoryRepository
from ormsession.testing import AsyncRepositoryContract, RepositoryContract


class LookAlike:
    # Every method of the contract, but not a subclass of the base class.
    def __init__(self, inner):
        self._inner = inner
        self.native_ttl = False

    def __getattr__(self, name):
        return getattr(self._inner, name)


class TestLookAlike(RepositoryContract):
    @pytest.fixture
    def repository(self):
        return LookAlike(MemoryRepository())


class TestAsyncLookAlike(AsyncRepositoryContract):
    @pytest.fixture
    def async_repository(self):
        return LookAlike(AsyncMemoryRepository())
"""

NATIVE_TTL = """
import pytest

from ormsession.repositories.memory import AsyncMemoryRepository, MemoryRepository
from ormsession.testing import AsyncRepositoryContract, RepositoryContract


class Expiring(MemoryRepository):
    native_ttl = True

    def delete_expired(self, now_us, limit):
        return 0


class AsyncExpiring(AsyncMemoryRepository):
    native_ttl = True

    async def start(self):
        pass

    async def delete_expired(self, now_us, limit):
        return 0


class TestExpiring(RepositoryContract):
    @pytest.fixture
    def repository(self):
        return Expiring()


class TestAsyncExpiring(AsyncRepositoryContract):
    @pytest.fixture
    def async_repository(self):
        return AsyncExpiring()
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_store=source)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rfs", *args)


def test_a_compare_and_set_that_is_not_atomic_fails_in_both_twins(
    pytester: pytest.Pytester,
) -> None:
    result = run(pytester, RACY, "-k", "concurrent")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["FAILED *TestRacy::test_concurrent_*", "FAILED *TestAsyncRacy::*"])


def test_a_repository_that_is_no_subclass_of_the_base_class_fails(
    pytester: pytest.Pytester,
) -> None:
    result = run(pytester, LOOKALIKE, "-k", "base_class")
    result.assert_outcomes(failed=2)


def test_a_native_ttl_store_skips_only_the_gc_tests_with_the_reason(
    pytester: pytest.Pytester,
) -> None:
    result = run(pytester, NATIVE_TTL)
    outcomes = result.parseoutcomes()
    assert outcomes["skipped"] == 4  # gc of records and of moved markers, in both twins
    assert "failed" not in outcomes
    reason = "SKIPPED [[]2[]] *the store expires records itself*"
    result.stdout.fnmatch_lines([reason, reason])


def test_import_ormsession_imports_neither_the_suite_nor_pytest() -> None:
    # The suite is an optional extra ('ormsession[testing]'): applications never load it.
    code = (
        "import sys, ormsession; "
        "print('ormsession.testing' in sys.modules, 'pytest' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
