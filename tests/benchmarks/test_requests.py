"""The ASGI request runner: one request at a time, or several clients' requests at once."""

from __future__ import annotations

import asyncio

import pytest

import ormsession
from benchmarks.requests import COOKIE, AsgiRunner, starlette_app


@pytest.mark.parametrize("in_flight", [1, 3])
def test_every_client_writes_its_own_session_its_share_of_the_requests(in_flight: int) -> None:
    with asyncio.Runner() as runner:
        manager = runner.run(ormsession.configure_async(url="memory://"))
        asgi = AsgiRunner(starlette_app(manager=manager), runner, in_flight=in_flight)
        try:
            series = asgi.series("POST", "/write")  # one checked request per client
            assert series(6) > 0  # then 6 in all: 6 // in_flight from each client

            async def visits() -> list[int]:
                sessions = [await manager.open(c.cookies[COOKIE]) for c in asgi.clients]
                return [session["visits"] for session in sessions]

            assert runner.run(visits()) == [1 + 6 // in_flight] * in_flight
            assert runner.run(manager.count()) == in_flight
        finally:
            asgi.close()
            runner.run(manager.close())


def test_no_client_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AsgiRunner(object(), None, in_flight=0)
