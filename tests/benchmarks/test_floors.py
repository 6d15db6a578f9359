"""The driver floors serve the benchmark's apps correctly on each store, sync and asyncio:
a login stores the seed, a read-only request reads it without writing, a write request's
change is there on the next request and in the store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.floors import key_of
from benchmarks.requests import COOKIE, SEED, AsgiRunner, flask_app, starlette_app
from benchmarks.stores import StoreEnv, StoreUnavailableError, managers_for, open_store
from tests.support.backends import backend_missing

STORES = ("sqlite", "postgresql", "mariadb", "redis")


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[tuple[StoreEnv, Any, Any, Any]]:
    """A store, its managers (the floors of the Redis family use their client) and an event
    loop runner."""
    try:
        with open_store(request.param) as env, contextlib.ExitStack() as stack:
            runner = stack.enter_context(asyncio.Runner())
            manager, async_manager = managers_for(env, runner, stack)
            yield env, manager, async_manager, runner
    except StoreUnavailableError as exc:
        backend_missing(str(exc))


def test_the_sync_floor_serves_the_flask_app(store: tuple[StoreEnv, Any, Any, Any]) -> None:
    env, manager, _, _ = store
    floor = env.floor(manager)
    try:
        client = flask_app(floor=floor).test_client()
        assert client.post("/login").status_code == 200
        sid = client.get_cookie(COOKIE)
        assert sid is not None
        assert client.get("/read").data == b"42 2"
        assert client.post("/write").data == b"ok"
        assert client.post("/write").data == b"ok"
        stored = floor.read(sid.value)
        assert stored is not None and stored["visits"] == 2
        assert set(stored) == set(SEED)
        assert floor.read("no-such-session") is None
    finally:
        floor.close()


def test_the_async_floor_serves_the_starlette_app(
    store: tuple[StoreEnv, Any, Any, Any],
) -> None:
    env, _, async_manager, runner = store
    floor = env.async_floor(async_manager)
    runner.run(floor.start())
    asgi = AsgiRunner(starlette_app(floor=floor), runner)  # logs in
    try:
        sid = asgi.client.cookies[COOKIE]
        assert asgi.series("GET", "/read", b"42 2")(3) > 0
        assert asgi.series("POST", "/write")(2) > 0  # one checked request, then two
        stored = runner.run(floor.read(sid))
        assert stored is not None and stored["visits"] == 3
        assert runner.run(floor.read("no-such-session")) is None
    finally:
        asgi.close()
        runner.run(floor.close())


def test_the_sql_floors_write_rows_of_ormsessions_table(
    store: tuple[StoreEnv, Any, Any, Any],
) -> None:
    """The floors' statements run on ormsession's own table: a row a floor writes is one
    ormsession's ``count`` sees (same key column, same expiry format)."""
    env, manager, _, _ = store
    if env.name == "redis":
        pytest.skip("the Redis floor writes plain keys under its own prefix")
    floor = env.floor(manager)
    try:
        before = manager.count()
        floor.write("an-id", {"user_id": 1})
        assert manager.count() == before + 1
        assert floor.read("an-id") == {"user_id": 1}
        assert len(key_of("an-id")) == 64
    finally:
        floor.close()
