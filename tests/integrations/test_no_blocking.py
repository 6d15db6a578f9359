"""The ASGI middleware never blocks the event loop, even when the store is slow.

Method: make the store genuinely slow, then watch the loop. Another SQLite connection holds
the database's write lock for ``HOLD`` seconds, so a request that writes its session must
wait that long for the store. Meanwhile a ticker task wakes every 5 ms and records the
longest gap between its wake-ups, and asyncio runs in debug mode with a small
``slow_callback_duration``, so it logs any single step of the loop that runs too long.

An implementation that waits for the store on the loop thread (a synchronous manager, a
blocking driver) freezes the ticker for the whole wait and trips the debug warning; one that
awaits a driver running elsewhere (aiosqlite's thread here) keeps the ticker on time. The
control test runs exactly such a blocking implementation and checks that the detector
catches it, so the main test cannot pass by measuring nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import ormsession
from ormsession.integrations.asgi import SessionMiddleware

HOLD = 0.4  # seconds the store stays locked
TICK = 0.005
MAX_GAP = 0.15  # far below HOLD, far above scheduling noise
SLOW_STEP = 0.1  # asyncio debug: log any loop step longer than this


async def count(request: Request) -> Response:
    request.session["count"] = request.session.get("count", 0) + 1
    return PlainTextResponse(str(request.session["count"]))


ROUTES = [Route("/count", count)]


class BlockingSessionMiddleware:
    """The mistake the test guards against: a synchronous manager inside async code."""

    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.manager = ormsession.configure(url)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = self.manager.open_from_cookie_header(
            dict(scope["headers"]).get(b"cookie", b"").decode()
        )
        scope["session"] = session

        async def send_with_cookie(message: Any) -> None:
            if message["type"] == "http.response.start":
                cookie = self.manager.save(session)  # blocks the loop while the store waits
                if cookie:
                    message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def lock_store_for(path: Path, seconds: float) -> threading.Event:
    """Hold SQLite's write lock from another connection; return an event set once held."""
    held = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            held.set()
            time.sleep(seconds)
            connection.execute("COMMIT")
        finally:
            connection.close()

    threading.Thread(target=hold, daemon=True).start()
    return held


def measure(app: Any, path: Path) -> tuple[float, float, list[str]]:
    """Warm up, then time one write request under a held store lock.

    Returns (request seconds, longest ticker gap, asyncio slow-step warnings).
    """
    slow: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "took" in record.getMessage():
                slow.append(record.getMessage())

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            # Warm-up: connections, imports and the schema check happen here, unmeasured.
            assert (await client.get("/count")).text == "1"
            loop.slow_callback_duration = SLOW_STEP
            handler = Collect()
            logging.getLogger("asyncio").addHandler(handler)
            try:
                held = lock_store_for(path, HOLD)
                await loop.run_in_executor(None, held.wait)
                return await _timed_with_ticker(lambda: client.get("/count"))
            finally:
                logging.getLogger("asyncio").removeHandler(handler)

    elapsed, gap = asyncio.run(main(), debug=True)
    return elapsed, gap, slow


async def _timed_with_ticker(
    request: Callable[[], Awaitable[httpx.Response]],
) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(TICK)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(TICK)  # let the ticker start before the request does
    started = time.monotonic()
    try:
        response = await request()
    finally:
        done.set()
        await task
    assert response.text == "2"
    return time.monotonic() - started, max(gaps)


@pytest.fixture(autouse=True)
def _asyncio_warnings_visible() -> Any:
    logger = logging.getLogger("asyncio")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def test_middleware_keeps_the_loop_running_while_the_store_is_slow(tmp_path: Path) -> None:
    path = tmp_path / "slow.sqlite3"
    app = SessionMiddleware(Starlette(routes=ROUTES), url=f"sqlite+aiosqlite:///{path}")
    elapsed, gap, slow = measure(app, path)
    assert elapsed >= HOLD * 0.8, "the store lock did not slow the request: test is void"
    assert gap < MAX_GAP, f"the event loop stalled for {gap:.3f}s"
    assert slow == []


def test_detector_catches_a_blocking_implementation(tmp_path: Path) -> None:
    path = tmp_path / "slow.sqlite3"
    app = BlockingSessionMiddleware(Starlette(routes=ROUTES), f"sqlite:///{path}")
    elapsed, gap, slow = measure(app, path)
    app.manager.close()
    assert elapsed >= HOLD * 0.8
    assert gap >= HOLD * 0.8, "a blocking store call went unnoticed"
    assert slow, "asyncio debug mode did not report the blocked step"
