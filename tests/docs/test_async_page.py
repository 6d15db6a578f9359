"""docs/async.md's FastAPI example runs as written, and its session persists."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from tests.integrations.helpers import starlette_test_client

if TYPE_CHECKING:
    from starlette.testclient import TestClient
else:
    TestClient = starlette_test_client()

PAGE = Path(__file__).resolve().parents[2] / "docs" / "async.md"


def section_example(heading: str) -> str:
    """The first ``python`` block after ``heading`` on the page."""
    text = PAGE.read_text()
    start = text.index(f"\n{heading}\n")
    found = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert found, f"no python example under {heading!r}"
    return found.group(1)


@pytest.fixture
def lifespan_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.chdir(tmp_path)  # its sqlite+aiosqlite:///sessions.sqlite3 lands here
    path = tmp_path / "async_lifespan_example.py"
    path.write_text(section_example("## FastAPI / Starlette"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(path.stem, None)


def test_the_lifespan_example_counts_visits(lifespan_example: ModuleType, tmp_path: Path) -> None:
    with TestClient(lifespan_example.app) as client:
        first = client.get("/visits")
        assert first.json() == {"visits": 1}
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("session=") and "HttpOnly" in cookie
        assert client.get("/visits").json() == {"visits": 2}
        assert client.get("/visits").json() == {"visits": 3}
        # Another client (no cookie) starts at one: the count is per session.
    with TestClient(lifespan_example.app) as stranger:
        assert stranger.get("/visits").json() == {"visits": 1}
    assert (tmp_path / "sessions.sqlite3").exists(), "the sessions are in the store"
