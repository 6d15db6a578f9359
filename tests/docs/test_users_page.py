"""docs/users.md's Flask and FastAPI examples run as written (with a password check and a
template of our own) and do what the page says."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from tests.integrations.helpers import starlette_test_client

if TYPE_CHECKING:
    from starlette.testclient import TestClient
else:
    TestClient = starlette_test_client()

PAGE = Path(__file__).resolve().parents[2] / "docs" / "users.md"
USERS = {"ada": "secret"}


def example(heading: str) -> str:
    """The first ``python`` block after ``heading`` on the page."""
    text = PAGE.read_text()
    start = text.index(f"\n{heading}\n")
    found = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert found, f"no python example under {heading!r}"
    return found.group(1)


def run(source: str, name: str, **extra: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": name, **extra}
    exec(compile(source, f"docs/users.md ({name})", "exec"), namespace)
    return namespace


def check_password(name: str, password: str) -> Any:
    return SimpleNamespace(id=name) if USERS.get(name) == password else None


async def acheck_password(name: str, password: str) -> Any:
    return check_password(name, password)


def test_the_flask_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # Flask finds templates/ here; the SQLite file would land here
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "sessions.html").write_text(
        "{% for s in sessions %}{{ s.handle }} {{ s.current }} {{ s.user_agent }}\n{% endfor %}"
    )
    source = example("### Flask").replace("sqlite:///sessions.sqlite3", "memory://")
    app = run(source, "users_flask_example", check_password=check_password)["app"]
    app.testing = True
    laptop, phone = app.test_client(), app.test_client()
    assert laptop.post("/login", data={"name": "ada", "password": "wrong"}).status_code == 403
    for browser in (laptop, phone):
        form = {"name": "ada", "password": "secret", "remember": "on"}
        assert browser.post("/login", data=form).status_code == 302
    rows = [line.split(" ", 2) for line in laptop.get("/account/sessions").text.splitlines()]
    assert sorted(current for _, current, _ in rows) == ["False", "True"]
    (phone_handle,) = [handle for handle, current, _ in rows if current == "False"]
    laptop.post("/account/sessions/revoke", data={"handle": phone_handle})
    assert phone.get("/account/sessions").text == "", "the phone is signed out"
    phone.post("/login", data={"name": "ada", "password": "secret"})
    laptop.post("/account/sessions/revoke-others")
    assert phone.get("/account/sessions").text == ""
    assert len(laptop.get("/account/sessions").text.splitlines()) == 1
    laptop.post("/logout")
    assert laptop.get("/account/sessions").text == ""


def test_the_fastapi_example() -> None:
    source = example("### FastAPI").replace("sqlite+aiosqlite:///sessions.sqlite3", "memory://")
    app = run(source, "users_fastapi_example", check_password=acheck_password)["app"]
    with TestClient(app) as client:
        assert client.post("/login?name=ada&password=nope").status_code == 403
        assert client.post("/login?name=ada&password=secret").json() == {"user": "ada"}
        assert client.get("/me").json() == {"user": "ada"}
        (here,) = client.get("/account/sessions").json()
        assert here["this_device"] is True and here["device"] == "testclient"
        assert client.post("/account/sessions/revoke-others").json() == {"ended": 0}
        assert client.post("/account/sessions/not-a-handle/revoke").json() == {"ended": False}
        client.post("/logout")
        assert client.get("/me").json() == {"user": None}
        assert client.get("/account/sessions").json() == []
