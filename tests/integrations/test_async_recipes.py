"""The Quart, aiohttp and Litestar pages' examples, run as written on real stores: the
page's SQLite file (``sqlite:///sessions.sqlite3`` in a temporary directory) and Redis
(under a key prefix of this test).

Each example serves ``GET /``, ``POST /login`` and ``POST /logout`` (and a cart, for the
ASGI ones); the checks are ormsession's guarantees as a browser sees them: the data
survives requests, a login rotates the cookie and the old id is worthless at once, a
logout deletes the session and its cookie.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integrations.helpers import parse_set_cookie

STORES = ("sqlite", "redis")


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A Litestar app configures logging when it starts (the root logger at INFO, its
    handlers): put every logger back afterwards, so other tests' log checks see theirs."""
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    saved = [(lg, lg.level, lg.handlers[:], lg.propagate, lg.disabled) for lg in loggers]
    yield
    for logger, level, handlers, propagate, disabled in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate, logger.disabled = propagate, disabled


@pytest.fixture(params=STORES)
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[dict[str, Any], Callable[[], bool]]:
    """The options that point an example at the store (none: the page's own SQLite file),
    and whether the store holds anything of the example's (proof the run used it)."""
    if request.param == "sqlite":
        return {}, (tmp_path / "sessions.sqlite3").exists
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_key_prefix")  # its keys deleted afterwards

    def any_key() -> bool:
        with redis.Redis.from_url(url) as client:
            return any(True for _ in client.scan_iter(match=f"{prefix}*"))

    return {"url": url, "key_prefix": prefix}, any_key


def cookie_value(client: Any) -> str:
    """The session cookie an aiohttp test client holds."""
    (cookie,) = [c for c in client.session.cookie_jar if c.key == "session"]
    return str(cookie.value)


def deletes_cookie(response: Any) -> bool:
    headers = response.headers
    values = headers.getall("Set-Cookie", []) if hasattr(headers, "getall") else None
    if values is None:
        values = headers.get_list("set-cookie")
    return [parse_set_cookie(header).deletes for header in values] == [True]


# -- Quart ------------------------------------------------------------------------------------
def test_quart_example(load_example: Any, store: Any) -> None:
    options, used_store = store
    replace = {}
    if options:  # the page's app, its URL line pointed at Redis
        url, prefix = options["url"], options["key_prefix"]
        replace = {
            'ORMSESSION_URL="sqlite:///sessions.sqlite3",': (
                f'ORMSESSION_URL="{url}", ORMSESSION_KEY_PREFIX="{prefix}",'
            )
        }
    app = load_example("quart.md", replace=replace).app

    async def scenario() -> None:
        async with app.test_app() as served:
            manager = await app.extensions["ormsession"].get_manager()
            client = served.test_client()
            assert "Visits: 1" in await (await client.get("/")).get_data(as_text=True)
            anonymous = next(iter(client.cookie_jar)).value
            response = await client.post("/login", form={"name": "<Ada>"}, follow_redirects=True)
            page = await response.get_data(as_text=True)
            assert "Welcome, <b>&lt;Ada&gt;</b>!" in page
            assert "Signed in: &lt;Ada&gt; since" in page and "Visits: 2" in page
            assert next(iter(client.cookie_jar)).value != anonymous
            assert len(await manager.sessions_of("<Ada>")) == 1
            # The id from before the login is worthless: a client still holding it is nobody.
            stale = await served.test_client().get("/", headers={"Cookie": f"session={anonymous}"})
            assert "Signed in: nobody. Visits: 1." in await stale.get_data(as_text=True)
            before = await manager.count()
            await client.post("/logout")
            assert await manager.count() == before - 1
            assert await manager.sessions_of("<Ada>") == []
            page = await (await client.get("/")).get_data(as_text=True)
            assert "Signed in: nobody. Visits: 1." in page
            assert used_store()

    asyncio.run(scenario())


# -- aiohttp ----------------------------------------------------------------------------------
def test_aiohttp_example(load_example: Any, store: Any) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    options, used_store = store
    module = load_example("aiohttp.md")

    async def scenario() -> None:
        async with TestClient(TestServer(module.make_app(**options))) as client:
            manager = client.app[module.STORAGE].manager
            assert await (await client.post("/cart/apple")).json() == {"cart": ["apple"]}
            anonymous = cookie_value(client)
            # A change inside a value (the cart list) is saved: no session.changed() needed.
            response = await client.post("/cart/pear")
            assert await response.json() == {"cart": ["apple", "pear"]}
            assert "Set-Cookie" not in response.headers  # the id did not change
            assert response.headers["Vary"] == "Cookie"

            response = await client.post("/login?name=grace")
            assert await response.json() == {"user": "grace"}
            assert cookie_value(client) != anonymous
            assert await (await client.get("/")).json() == {
                "user": "grace",
                "cart": ["apple", "pear"],
            }
            assert "Set-Cookie" not in (await client.get("/")).headers  # read-only
            (bound,) = await manager.sessions_of("grace")
            assert bound.user_agent  # aiohttp's client names itself
            # The id from before the login is worthless.
            client.session.cookie_jar.clear()
            stale = await client.get("/", headers={"Cookie": f"session={anonymous}"})
            assert await stale.json() == {"user": None, "cart": []}
            assert await manager.count() == 1  # a read-only request stored nothing
            assert used_store()

    asyncio.run(scenario())


def test_aiohttp_logout_and_invalidate_delete_the_session(load_example: Any, store: Any) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from aiohttp_session import get_session

    options, _ = store
    module = load_example("aiohttp.md")
    app = module.make_app(**options)

    async def invalidate(request: web.Request) -> web.Response:
        (await get_session(request)).invalidate()
        return web.json_response({})

    app.router.add_post("/invalidate", invalidate)

    async def scenario() -> None:
        async with TestClient(TestServer(app)) as client:
            manager = client.app[module.STORAGE].manager
            await client.post("/cart/apple")
            await client.post("/login?name=ada")
            assert await manager.count() == 1
            response = await client.post("/logout")
            assert deletes_cookie(response)
            assert await manager.count() == 0
            assert await manager.sessions_of("ada") == []
            assert await (await client.get("/")).json() == {"user": None, "cart": []}
            await client.post("/cart/fig")
            assert await manager.count() == 1
            assert deletes_cookie(await client.post("/invalidate"))
            assert await manager.count() == 0

    asyncio.run(scenario())


# -- Litestar ---------------------------------------------------------------------------------
def litestar_app(module: Any, options: dict[str, Any], *extra_handlers: Any) -> Any:
    """The page's app (as ``make_app`` builds it), with ``extra_handlers`` if any."""
    from litestar import Litestar

    sessions = module.OrmSessions(**({"url": "sqlite:///sessions.sqlite3"} | options))
    return Litestar(
        route_handlers=[module.index, module.add, module.login, module.logout, *extra_handlers],
        middleware=[sessions],
        on_startup=[sessions.startup],
        on_shutdown=[sessions.shutdown],
    ), sessions


def test_litestar_example(load_example: Any, store: Any) -> None:
    from litestar.testing import TestClient

    options, used_store = store
    module = load_example("litestar.md")
    app = module.make_app(**options) if options else module.app
    (sessions,) = [item for item in app.middleware if isinstance(item, module.OrmSessions)]
    with TestClient(app) as client:
        manager = client.blocking_portal.call(sessions.sessions.get_manager)
        assert client.post("/cart/apple").json() == {"cart": ["apple"]}
        assert client.post("/cart/pear").json() == {"cart": ["apple", "pear"]}
        anonymous = client.cookies["session"]
        response = client.post("/login?name=grace")
        assert response.json() == {"user": "grace"}
        assert client.cookies["session"] != anonymous
        assert client.get("/").json() == {"user": "grace", "cart": ["apple", "pear"]}
        assert len(client.blocking_portal.call(manager.sessions_of, "grace")) == 1
        # Every route used the one manager: one connection pool for the app.
        assert client.blocking_portal.call(sessions.sessions.get_manager) is manager
        stale = client.get("/", headers={"Cookie": f"session={anonymous}"})
        assert stale.json() == {"user": None, "cart": []}
        assert deletes_cookie(client.post("/logout"))
        assert client.blocking_portal.call(manager.count) == 0
        assert client.get("/").json() == {"user": None, "cart": []}
        assert used_store()


def test_litestar_set_session_and_clear_session(load_example: Any, store: Any) -> None:
    from litestar import Request, post
    from litestar.testing import TestClient

    options, _ = store
    module = load_example("litestar.md")

    @post("/replace")
    async def replace(request: Request[Any, Any, Any]) -> None:
        request.set_session({"user": "ada", "cart": ["fig"]})

    @post("/forget")
    async def forget(request: Request[Any, Any, Any]) -> None:
        request.clear_session()

    app, sessions = litestar_app(module, options, replace, forget)
    with TestClient(app) as client:
        manager = client.blocking_portal.call(sessions.sessions.get_manager)
        client.post("/cart/apple")
        client.post("/replace")
        assert client.get("/").json() == {"user": "ada", "cart": ["fig"]}
        assert client.blocking_portal.call(manager.count) == 1
        assert deletes_cookie(client.post("/forget"))
        assert client.blocking_portal.call(manager.count) == 0
        assert client.get("/").json() == {"user": None, "cart": []}


@dataclasses.dataclass
class CartLine:
    item: str
    added: dt.datetime


def test_litestar_set_session_with_a_data_container(load_example: Any, store: Any) -> None:
    # Litestar's set_session() takes a dataclass, a pydantic model or a msgspec Struct as
    # well as a dict; its own backends store the mapping it serializes to.
    import msgspec
    import pydantic
    from litestar import Request, post
    from litestar.testing import TestClient

    class Profile(pydantic.BaseModel):
        user: str
        cart: list[str]

    class Prefs(msgspec.Struct):
        user: str
        since: dt.date

    added = dt.datetime(2026, 12, 7, 9, 30, tzinfo=dt.UTC)
    containers: dict[str, Any] = {
        "dataclass": CartLine("fig", added),
        "pydantic": Profile(user="ada", cart=["fig"]),
        "msgspec": Prefs(user="ada", since=dt.date(2026, 1, 2)),
    }
    expected = {
        "dataclass": {"item": "fig", "added": added},
        "pydantic": {"user": "ada", "cart": ["fig"]},
        "msgspec": {"user": "ada", "since": dt.date(2026, 1, 2)},
    }

    @post("/replace")
    async def replace(request: Request[Any, Any, Any]) -> None:
        request.set_session(containers[request.query_params["kind"]])

    options, _ = store
    module = load_example("litestar.md")
    app, sessions = litestar_app(module, options, replace)
    with TestClient(app) as client:
        manager = client.blocking_portal.call(sessions.sessions.get_manager)
        for kind, content in expected.items():
            client.post("/cart/apple")
            client.post(f"/replace?kind={kind}")
            session_id = client.cookies["session"]
            stored = client.blocking_portal.call(manager.open, session_id)
            assert dict(stored) == content, kind


def test_the_recipes_are_linked_from_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for page in ("quart", "litestar", "aiohttp"):
        assert re.search(rf"\(docs/integrations/{page}\.md\)", readme), page
