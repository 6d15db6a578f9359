"""The demo app's behaviour, in-process (the real-browser run is in tests/browser)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

import ormsession
from ormsession.demo import fingerprint, make_app, serve
from tests.integrations.helpers import only_set_cookie


@pytest.fixture
def demo(tmp_path: Path) -> Any:
    app = make_app(ormsession.load_config(url=f"sqlite:///{tmp_path / 'demo.sqlite3'}"))
    yield app
    app.close()


def state(client: Client) -> dict[str, Any]:
    response = client.get("/state.json")
    assert response.headers.getlist("Set-Cookie") == []  # reading never writes
    return response.json  # type: ignore[return-value]


def test_demo_story(demo: Any) -> None:
    client = Client(demo)
    page = client.get("/")
    assert page.status_code == 200 and "Not signed in" in page.text
    assert page.headers.getlist("Set-Cookie") == []
    assert state(client) == {"user": None, "counter": 0, "cart": [], "session": None}

    assert client.post("/counter").status_code == 303
    client.post("/counter")
    client.post("/cart/add", data={"item": "apple"})
    client.post("/cart/add", data={"item": "not-for-sale"})
    before = state(client)
    assert before["counter"] == 2 and before["cart"] == ["apple"]
    old_cookie = client.get_cookie("session")
    assert old_cookie is not None and before["session"] == fingerprint(old_cookie.value)

    client.post("/login", data={"name": "  Ada   Lovelace "})
    after = state(client)
    assert after["user"] == "Ada Lovelace" and after["cart"] == ["apple"]
    assert after["counter"] == 2 and after["session"] not in (None, before["session"])
    html = client.get("/").text
    assert f"<code>{before['session']}</code> → <code>{after['session']}</code>" in html
    assert old_cookie.value not in html  # the id itself is never shown

    stale = Client(demo)
    stale.set_cookie("session", old_cookie.value)
    assert state(stale)["counter"] == 0

    response = client.post("/logout")
    assert response.headers["Location"] == "/?signed_out=1"
    assert only_set_cookie(response.headers.getlist("Set-Cookie")).deletes
    assert state(client) == {"user": None, "counter": 0, "cart": [], "session": None}
    assert "Signed out" in client.get("/?signed_out=1").text


def test_names_are_escaped(demo: Any) -> None:
    client = Client(demo)
    client.post("/login", data={"name": "<script>alert(1)</script>"})
    page = client.get("/").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_empty_name_does_not_sign_in(demo: Any) -> None:
    client = Client(demo)
    client.post("/login", data={"name": "   "})
    assert state(client)["user"] is None


def test_unknown_route(demo: Any) -> None:
    assert Client(demo).get("/nope").status_code == 404
    assert Client(demo).get("/counter").status_code == 404  # actions are POST only


def test_serve_reports_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = ormsession.load_config(url=f"sqlite:///{tmp_path / 'x.sqlite3'}")
        assert serve(settings, host="127.0.0.1", port=port) == 1
    assert "cannot listen" in capsys.readouterr().err
