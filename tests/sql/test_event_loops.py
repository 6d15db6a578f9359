"""An asyncio manager used on another event loop than the one it was made on: asyncpg's and
asyncmy's connections belong to their loop, and fail on another with bare RuntimeErrors; the
manager names the mistake instead (a typed ConfigurationError), and a manager made inside
the loop that uses it works."""

from __future__ import annotations

import asyncio

import pytest

from ormsession import ConfigurationError, configure_async
from ormsession.ids import SessionIds
from tests.support.sql_fixtures import async_url, sql_url

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_manager_made_on_another_loop_names_the_mistake(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = async_url(sql_url(request, backend))
    manager = asyncio.run(configure_async(url=url, auto_migrate=True))  # that loop then closes
    a_stored_id = SessionIds().generate()  # well-formed: open() asks the store

    async def serve() -> None:
        with pytest.raises(ConfigurationError, match="made on another event loop"):
            await manager.open(a_stored_id)

    asyncio.run(serve())

    async def made_here() -> None:
        async with await configure_async(url=url) as fresh:
            session = await fresh.open(a_stored_id)
            assert session.is_new

    asyncio.run(made_here())
