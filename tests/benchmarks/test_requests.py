"""The ASGI request runner: a cookie-keeping client whose requests all reach one session."""

from __future__ import annotations

import asyncio

import ormsession
from benchmarks.requests import COOKIE, AsgiRunner, starlette_app


def test_the_client_writes_its_own_session_once_a_request() -> None:
    with asyncio.Runner() as runner:
        manager = runner.run(ormsession.configure_async(url="memory://"))
        asgi = AsgiRunner(starlette_app(manager=manager), runner)
        try:
            series = asgi.series("POST", "/write")  # one checked request
            assert series(6) > 0
            session = runner.run(manager.open(asgi.client.cookies[COOKIE]))
            assert session["visits"] == 1 + 6
            assert runner.run(manager.count()) == 1
        finally:
            asgi.close()
            runner.run(manager.close())
