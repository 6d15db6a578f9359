"""Failures are typed, fast (within the configured timeout) and never show the password."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest

import ormsession
from ormsession.errors import ConfigurationError, StoreError, StoreUnavailableError
from ormsession.expiry import now_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.couchbase.factory import open_store
from ormsession.settings import load_config
from tests.support.couchbase_fixtures import (
    COUCHBASE_PASSWORD,
    COUCHBASE_USER,
    couchbase_url,
    unique_prefix,
)
from tests.support.couchbase_server import CouchbaseTestServer

WRONG = "Wr0ng-Pa55word"
SLACK = 1.5  # seconds of scheduling slack on top of a configured timeout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def open_sync(url: str) -> None:
    ormsession.configure(url=url, key_prefix=unique_prefix()).close()


def open_async(url: str) -> None:
    async def scenario() -> None:
        manager = await ormsession.configure_async(url=url, key_prefix=unique_prefix())
        await manager.close()

    asyncio.run(scenario())


OPENERS = [pytest.param(open_sync, id="sync"), pytest.param(open_async, id="async")]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def assert_fails_fast(
    opener: Callable[[str], None], url: str, error: type[Exception], match: str, within: float
) -> str:
    started = time.monotonic()
    with pytest.raises(error, match=match) as caught:
        opener(url)
    assert time.monotonic() - started < within
    message = str(caught.value)
    assert WRONG not in message and COUCHBASE_PASSWORD not in message
    return message


@pytest.mark.parametrize("opener", OPENERS)
def test_a_wrong_password(
    couchbase_server: CouchbaseTestServer,
    opener: Callable[[str], None],
    logs: pytest.LogCaptureFixture,
) -> None:
    url = couchbase_url(couchbase_server, password=WRONG, connect_timeout=2)
    message = assert_fails_fast(
        opener, url, StoreUnavailableError, "AuthenticationException", within=2 + SLACK
    )
    assert f"{COUCHBASE_USER}:***@" in message
    assert WRONG not in logs.text


@pytest.mark.parametrize("opener", OPENERS)
def test_an_unknown_bucket(
    couchbase_server: CouchbaseTestServer, opener: Callable[[str], None]
) -> None:
    url = couchbase_url(couchbase_server, bucket="no-such-bucket", connect_timeout=2)
    assert_fails_fast(opener, url, StoreUnavailableError, "no such bucket", within=2 + SLACK)


@pytest.mark.parametrize("opener", OPENERS)
def test_an_unreachable_host(opener: Callable[[str], None]) -> None:
    url = f"couchbase://{COUCHBASE_USER}:{WRONG}@127.0.0.1:{free_port()}/sessions?connect_timeout=1"
    assert_fails_fast(opener, url, StoreUnavailableError, "unreachable", within=1 + SLACK)


@pytest.mark.parametrize("opener", OPENERS)
def test_an_unknown_collection(
    couchbase_server: CouchbaseTestServer, opener: Callable[[str], None]
) -> None:
    # The SDK retries an unknown collection until the key-value timeout.
    url = couchbase_url(couchbase_server, scope="nope", collection="nope", kv_timeout=1)
    assert_fails_fast(
        opener, url, StoreUnavailableError, "collection does not exist", within=1 + SLACK
    )


@pytest.mark.parametrize("opener", OPENERS)
def test_an_unknown_option_is_a_configuration_error(
    couchbase_server: CouchbaseTestServer, opener: Callable[[str], None]
) -> None:
    url = couchbase_url(couchbase_server, password=WRONG, durability="majority")
    assert_fails_fast(opener, url, ConfigurationError, "'durability'", within=SLACK)


def test_a_server_gone_after_connecting() -> None:
    server = CouchbaseTestServer(
        users={COUCHBASE_USER: COUCHBASE_PASSWORD}, buckets={"sessions": []}
    ).start()
    url = couchbase_url(server, kv_timeout=1)
    repository = open_store(url, load_config(key_prefix=unique_prefix()), want_async=False)
    try:
        server.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="during read") as caught:
            repository.read(storage_key(SessionIds().generate()), now_us())
        assert time.monotonic() - started < 1 + SLACK
        assert COUCHBASE_PASSWORD not in str(caught.value)
        assert isinstance(caught.value.__cause__, Exception)
    finally:
        repository.close()
        server.stop()


def test_the_repository_repr_hides_the_password(couchbase_server: CouchbaseTestServer) -> None:
    repository = open_store(
        couchbase_url(couchbase_server), load_config(key_prefix=unique_prefix()), want_async=False
    )
    try:
        assert COUCHBASE_PASSWORD not in repr(repository)
        assert "ormsession:***@127.0.0.1" in repr(repository)
    finally:
        repository.close()


def test_a_closed_repository_is_a_store_error(couchbase_server: CouchbaseTestServer) -> None:
    repository = open_store(
        couchbase_url(couchbase_server), load_config(key_prefix=unique_prefix()), want_async=False
    )
    repository.close()
    with pytest.raises(StoreError, match="closed"):
        repository.count(now_us())
    with pytest.raises(StoreError, match="closed"):
        repository.read(storage_key(SessionIds().generate()), now_us())


def test_a_closed_async_repository_is_a_store_error(
    couchbase_server: CouchbaseTestServer,
) -> None:
    async def scenario() -> None:
        settings = load_config(key_prefix=unique_prefix())
        repository = open_store(couchbase_url(couchbase_server), settings, want_async=True)
        key = storage_key(SessionIds().generate())
        assert await repository.read(key, now_us()) is None  # connected, then closed
        await repository.close()
        with pytest.raises(StoreError, match="closed"):
            await repository.read(key, now_us())

    asyncio.run(scenario())
