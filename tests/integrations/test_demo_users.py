"""The demo's "Where you're signed in" card, in-process (the browser run is in
tests/browser): on the memory store, and on the demo's SQLite once its user index lands."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

import ormsession
from ormsession.demo import device_name, make_app

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
HOSTILE = '<script>alert(1)</script>" onmouseover="x'


@pytest.fixture(params=["memory", "sqlite"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    app = make_app(ormsession.load_config(url=url))
    yield app
    app.close()


class Device(Client):
    """A browser with a User-Agent and an address."""

    def __init__(self, app: Any, agent: str, address: str) -> None:
        super().__init__(app)
        self.environ = {"HTTP_USER_AGENT": agent, "REMOTE_ADDR": address}

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("environ_base", self.environ)
        return super().open(*args, **kwargs)


def rows(page: str) -> list[dict[str, str]]:
    found = re.findall(
        r'<li data-testid="device" data-current="(\w+)">(.*?)name="handle" value="([^"]+)"',
        page,
        re.DOTALL,
    )
    return [{"current": current, "html": html, "handle": handle} for current, html, handle in found]


def test_the_card_lists_signs_out_one_and_everywhere_else(demo: Any) -> None:
    laptop = Device(demo, FIREFOX, "192.0.2.1")
    phone = Device(demo, HOSTILE, "192.0.2.2")
    assert "Where you" not in laptop.get("/").text  # nobody signed in: no card
    laptop.post("/login", data={"name": "Ada"})
    page = laptop.get("/").text
    (only,) = rows(page)
    assert only["current"] == "true" and "Firefox on Windows" in only["html"]
    assert "192.0.2.1" in only["html"] and "this device" in only["html"]
    assert "revoke-others" not in page and "Signed in nowhere else" in page

    phone.post("/login", data={"name": "Ada"})
    page = laptop.get("/").text
    assert HOSTILE not in page and "&lt;script&gt;" in page, "a User-Agent is escaped"
    (there,) = [row for row in rows(page) if row["current"] == "false"]
    assert "192.0.2.2" in there["html"]
    assert "Sign out everywhere else (1)" in page

    response = laptop.post("/sessions/revoke", data={"handle": there["handle"]})
    assert response.headers["Location"] == "/?revoked=1"
    assert "Signed out 1 other session" in laptop.get("/?revoked=1").text
    assert "Not signed in" in phone.get("/").text
    assert [row["current"] for row in rows(laptop.get("/").text)] == ["true"]

    for _ in range(2):
        Device(demo, FIREFOX, "192.0.2.3").post("/login", data={"name": "Ada"})
    assert laptop.post("/sessions/revoke-others").headers["Location"] == "/?revoked=2"
    assert "Signed out 2 other sessions" in laptop.get("/?revoked=2").text
    assert len(rows(laptop.get("/").text)) == 1

    # "Sign out here" on this device's row is a sign-out.
    (here,) = rows(laptop.get("/").text)
    response = laptop.post("/sessions/revoke", data={"handle": here["handle"]})
    assert response.headers["Location"] == "/?signed_out=1"
    assert "Not signed in" in laptop.get("/").text


def test_other_names_and_forged_handles_end_nothing(demo: Any) -> None:
    ada, grace = Device(demo, FIREFOX, "192.0.2.1"), Device(demo, FIREFOX, "192.0.2.9")
    ada.post("/login", data={"name": "Ada"})
    grace.post("/login", data={"name": "Grace"})
    (graces,) = rows(grace.get("/").text)
    assert (
        ada.post("/sessions/revoke", data={"handle": graces["handle"]}).headers["Location"]
        == "/?revoked=0"
    )
    assert ada.post("/sessions/revoke", data={"handle": "forged"}).headers["Location"] == (
        "/?revoked=0"
    )
    assert "Grace" in grace.get("/").text and len(rows(ada.get("/").text)) == 1
    # Signed out, the card's forms do nothing.
    nobody = Device(demo, FIREFOX, "192.0.2.5")
    nobody.post("/sessions/revoke", data={"handle": graces["handle"]})
    nobody.post("/sessions/revoke-others")
    assert "Grace" in grace.get("/").text


def test_a_name_with_control_characters_signs_in_without_them(demo: Any) -> None:
    client = Device(demo, FIREFOX, "192.0.2.1")
    client.post("/login", data={"name": "A\x00d\x7fa"})
    assert client.get("/state.json").json["user"] == "Ada"
    assert len(rows(client.get("/").text)) == 1


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        (FIREFOX, "Firefox on Windows"),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36",
            "Chrome on Linux",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120 Safari/537.36 Edg/120",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Version/18.0 Safari/604.1",
            "Safari on iPhone",
        ),
        ("Mozilla/5.0 (Linux; Android 14) Chrome/120 Mobile Safari/537.36", "Chrome on Android"),
        ("curl/8.5.0", "curl"),
        ("something else", "A browser"),
        (None, "Unknown device"),
    ],
)
def test_device_names(agent: str | None, name: str) -> None:
    assert device_name(agent) == name
