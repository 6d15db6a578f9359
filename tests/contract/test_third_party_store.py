"""The third-party store of ``docs/repository-contract.md``, run as the page says.

The page's code blocks whose first line names a file (``# tinystore.py``) are written into
a directory outside the package and used from there: the documented test module must pass
the shipped suite, the documented registration must open, save and reopen sessions, and the
documented entry point must find the store. So the page's example cannot rot.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import ormsession
from ormsession.repositories import registry
from ormsession.testing import AsyncRepositoryContract, RepositoryContract
from tests.support.distributions import install_distribution

PAGE = Path(__file__).parents[2] / "docs" / "repository-contract.md"
#: The documented files, and the modules importing them creates.
FILES = ("tinystore.py", "test_tinystore.py", "app.py", "pyproject.toml")
MODULES = ("tinystore", "test_tinystore", "app")


def documented_files() -> dict[str, str]:
    """Each fenced code block of the page that starts with ``# <file name>``, by name."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", PAGE.read_text(), re.MULTILINE | re.DOTALL)
    files = {}
    for block in blocks:
        named = re.fullmatch(r"# ([\w.-]+\.(?:py|toml))", block.split("\n", 1)[0])
        if named:
            assert named[1] not in files, f"{named[1]} twice in {PAGE.name}"
            files[named[1]] = block
    assert sorted(files) == sorted(FILES)
    return files


def contract_tests() -> set[str]:
    names = {name for name in dir(RepositoryContract) if name.startswith("test_")}
    assert names == {name for name in dir(AsyncRepositoryContract) if name.startswith("test_")}
    return names


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The documented files in a directory on ``sys.path`` (not in the package); the
    registry and ``sys.modules`` as they were afterwards."""
    for name, text in documented_files().items():
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no .env of the working directory
    monkeypatch.delenv("ORMSESSION_URL", raising=False)
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    for module in MODULES:
        assert module not in sys.modules
    yield tmp_path
    for module in MODULES:
        sys.modules.pop(module, None)


def documented(module: str) -> ModuleType:
    imported = importlib.import_module(module)
    assert imported.__file__ is not None
    assert Path(imported.__file__).parent != Path(ormsession.__file__).parent.parent
    return imported


def test_the_documented_test_module_passes_the_shipped_suite(pytester: pytest.Pytester) -> None:
    files = documented_files()
    pytester.makepyfile(tinystore=files["tinystore.py"], test_tinystore=files["test_tinystore.py"])
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v")
    # Every test of the contract passed on both twins, and none was skipped.
    result.assert_outcomes(passed=2 * len(contract_tests()))
    passed = re.findall(r"::(\w+)::(test_\w+) PASSED", result.stdout.str())
    twins = ("TestTinyStore", "TestAsyncTinyStore")
    assert sorted(passed) == sorted((twin, test) for twin in twins for test in contract_tests())


def test_the_documented_registration_opens_saves_and_reopens(outside: Path) -> None:
    app = documented("app")
    tinystore = documented("tinystore")
    with app.manager as manager:
        assert type(manager.repository) is tinystore.TinyRepository
        session = manager.open(None)
        session["user_id"] = 42
        set_cookie = manager.save(session)
        assert set_cookie is not None
        cookie = set_cookie.split(";", 1)[0]
        assert manager.open_from_cookie_header(cookie)["user_id"] == 42
        assert manager.count() == 1

    # In a file, sessions outlive the manager: another process (here a second manager,
    # then an asyncio one) finds them.
    url = f"tiny://{outside / 'sessions.db'}"
    with ormsession.configure(url=url) as manager:
        session = manager.open(None)
        session["cart"] = ["tea"]
        cookie = (manager.save(session) or "").split(";", 1)[0]
    with ormsession.configure(url=url) as manager:
        assert manager.open_from_cookie_header(cookie)["cart"] == ["tea"]

    async def reopen() -> object:
        async with await ormsession.configure_async(url=url) as manager:
            assert type(manager.repository) is tinystore.AsyncTinyRepository
            return (await manager.open_from_cookie_header(cookie))["cart"]

    assert asyncio.run(reopen()) == ["tea"]


def test_the_documented_entry_point_finds_the_store(
    outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tomllib.loads(documented_files()["pyproject.toml"])["project"]
    stores = project["entry-points"][registry.ENTRY_POINT_GROUP]
    assert "tiny" not in registry.supported_schemes()
    install_distribution(outside / "site-packages", project["name"], stores, monkeypatch)
    with ormsession.configure(url="tiny://") as manager:
        assert type(manager.repository) is documented("tinystore").TinyRepository
