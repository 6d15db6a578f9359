"""The integration docs' examples run as written (each page's first ``python`` block)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.test import Client

from tests.integrations.helpers import only_set_cookie, starlette_test_client

if TYPE_CHECKING:
    from starlette.testclient import TestClient
else:
    TestClient = starlette_test_client()


def test_wsgi_example(load_example: Any, tmp_path: Path) -> None:
    app = load_example("wsgi.md").app
    client = Client(app)
    client.get("/visit")
    assert client.get("/visit").text == "user=None visits=2\n"
    assert client.get("/login").text == "user=ada visits=2\n"
    assert only_set_cookie(client.get("/logout").headers.getlist("Set-Cookie")).deletes
    assert client.get("/").text == "user=None visits=0\n"
    assert (tmp_path / "sessions.sqlite3").exists()
    app.close()


def test_flask_example(load_example: Any) -> None:
    module = load_example("flask.md")
    client = module.app.test_client()
    assert "Visits: 1" in client.get("/").text
    response = client.post("/login", data={"name": "<Ada>"}, follow_redirects=True)
    assert "Welcome, <b>&lt;Ada&gt;</b>!" in response.text
    assert "Signed in: &lt;Ada&gt; since" in response.text and "Visits: 2" in response.text
    client.post("/logout")
    assert "Signed in: nobody. Visits: 1." in client.get("/").text


def test_starlette_example(load_example: Any) -> None:
    with TestClient(load_example("starlette.md").app) as client:
        client.post("/cart/apple")
        assert client.post("/login?name=grace").json() == {"user": "grace"}
        assert client.get("/").json() == {"user": "grace", "cart": ["apple"]}
        client.post("/logout")
        assert client.get("/").json() == {"user": None, "cart": []}


def test_fastapi_example(load_example: Any) -> None:
    with TestClient(load_example("fastapi.md").app) as client:
        client.post("/cart/apple")
        assert client.post("/login", json={"name": "ada"}).json() == {"user": "ada"}
        assert client.get("/me").json() == {"user": "ada", "cart": ["apple"]}
        client.post("/logout")
        assert client.get("/me").json() == {"user": None, "cart": []}
