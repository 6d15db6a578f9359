"""The Redis store through Sentinel: credentials on both layers, WAIT for replicas, and a
real failover."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

import ormsession
from ormsession.errors import StoreUnavailableError
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.redis.base import KeyLayout
from tests.manager.test_lifecycle import cookie_id, stored_session
from tests.support.redis_fixtures import sentinel_url_for, unique_key_prefix
from tests.support.redis_servers import SentinelTopology

pytestmark = pytest.mark.timeout(90)


def _replica_has(topology: SentinelTopology, prefix: str, sid: str) -> bool:
    host, port = topology.replica_addresses[0]
    node = next(n for n in topology.data_nodes if n.address == (host, port))
    with node.client(decode_responses=False) as replica:
        return bool(replica.exists(KeyLayout(prefix).session(storage_key(sid))))


def test_wait_replicas_makes_writes_reach_the_replica_before_returning(
    sentinel_topology: SentinelTopology, sentinel_key_prefix: str
) -> None:
    url = sentinel_url_for(sentinel_topology, wait_replicas=1, wait_timeout_ms=2000)
    with ormsession.configure(url=url, key_prefix=sentinel_key_prefix) as manager:
        for n in range(5):
            sid = stored_session(manager, n=n)
            # Asked straight after save returned: WAIT already had the replica's ack.
            assert _replica_has(sentinel_topology, sentinel_key_prefix, sid)


def test_too_few_replicas_is_logged_after_the_wait_timeout_and_reads_never_wait(
    sentinel_topology: SentinelTopology,
    sentinel_key_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two replicas asked for, one exists: every write waits the full 300 ms, then logs.
    url = sentinel_url_for(sentinel_topology, wait_replicas=2, wait_timeout_ms=300)
    with ormsession.configure(url=url, key_prefix=sentinel_key_prefix) as manager:
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="ormsession"):
            sid = stored_session(manager, n=1)
        assert time.monotonic() - start >= 0.3
        assert "acknowledged by 1 of 2 replicas within 300 ms" in caplog.text
        start = time.monotonic()
        assert manager.open(sid)["n"] == 1, "the write happened: it is not an error"
        assert time.monotonic() - start < 0.2, "reads send no WAIT"


def test_async_wait_replicas(sentinel_topology: SentinelTopology, sentinel_key_prefix: str) -> None:
    url = sentinel_url_for(sentinel_topology, wait_replicas=1, wait_timeout_ms=2000)

    async def scenario() -> str:
        manager = await ormsession.configure_async(url=url, key_prefix=sentinel_key_prefix)
        try:
            session = await manager.open(None)
            session["n"] = 1
            return cookie_id(await manager.save(session))
        finally:
            await manager.close()

    assert _replica_has(sentinel_topology, sentinel_key_prefix, asyncio.run(scenario()))


@pytest.mark.parametrize(
    ("change", "secret"),
    [
        ({"password": "bad-data-pw"}, "bad-data-pw"),
        ({"sentinel_password": "bad-sentinel-pw"}, "bad-sentinel-pw"),
        ({"service_name": "nosuchservice"}, None),
    ],
    ids=["data-password", "sentinel-password", "service"],
)
def test_wrong_credentials_or_service_are_typed_errors_fast(
    sentinel_topology: SentinelTopology, change: dict[str, str], secret: str | None
) -> None:
    real = {
        "password": sentinel_topology.password,
        "sentinel_password": sentinel_topology.sentinel_password,
        "service_name": sentinel_topology.service_name,
    }
    hosts = ",".join(f"{h}:{p}" for h, p in sentinel_topology.sentinel_addresses)
    values = real | change
    url = (
        f"redis+sentinel://:{values['password']}@{hosts}/{values['service_name']}"
        f"?sentinel_password={values['sentinel_password']}"
    )
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        ormsession.configure(url=url, store_timeout=1.0)  # its start-up read
    assert time.monotonic() - start < 2.0
    for value in (secret, sentinel_topology.password, sentinel_topology.sentinel_password):
        assert not value or value not in str(caught.value)


def stored_id() -> str:
    return SessionIds().generate()


def test_a_ready_master_for_client_works_and_stays_open(
    sentinel_topology: SentinelTopology, sentinel_key_prefix: str
) -> None:
    sentinel = sentinel_topology.sentinel_client()
    master = sentinel.master_for(sentinel_topology.service_name)
    try:
        with ormsession.configure(client=master, key_prefix=sentinel_key_prefix) as manager:
            sid = stored_session(manager, n=1)
            assert manager.open(sid)["n"] == 1
        connections = master.connection_pool._available_connections
        assert connections and all(c.is_connected for c in connections)
    finally:
        master.close()
        sentinel.close()


def test_what_a_sentinel_url_opened_is_closed(sentinel_url: str, sentinel_key_prefix: str) -> None:
    manager = ormsession.configure(url=sentinel_url, key_prefix=sentinel_key_prefix)
    stored_session(manager, n=1)
    repository = manager.repository
    pools = [repository.client.connection_pool]
    pools += [client.connection_pool for client in repository._owned[1:]]
    assert len(pools) == 4 and any(c.is_connected for c in pools[0]._available_connections)
    manager.close()
    assert not [c for pool in pools for c in pool._available_connections if c.is_connected]


# -- failover -----------------------------------------------------------------------------------
def _until_ok(action: Callable[[], Any], *, timeout: float) -> tuple[Any, float, int]:
    """Retry ``action`` while the store is unavailable; return its result, the seconds that
    took and how many StoreUnavailableErrors it raised (any other error fails the test)."""
    start, failures = time.monotonic(), 0
    while True:
        try:
            return action(), time.monotonic() - start, failures
        except StoreUnavailableError:
            failures += 1
            if time.monotonic() - start > timeout:
                raise
            time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.usefixtures("redis_binaries")
def test_sessions_survive_a_failover(
    record_property: Callable[[str, object], None], caplog: pytest.LogCaptureFixture
) -> None:
    # Its own topology: killing the session-wide one would break other tests.
    with SentinelTopology(
        password="failover-data-pw", sentinel_password="failover-sent-pw"
    ) as topo:
        prefix = unique_key_prefix()
        url = sentinel_url_for(topo, wait_replicas=1, wait_timeout_ms=500)
        manager = ormsession.configure(url=url, key_prefix=prefix, store_timeout=1.0)
        try:
            created = [stored_session(manager, n=n) for n in range(20)]
            session = manager.open(created[0])
            manager.regenerate(session)
            manager.save(session)
            created[0] = session.id
            sids = dict(zip(created, range(20), strict=True))

            old = topo.kill_master()
            killed = time.monotonic()
            first = next(iter(sids))
            value, read_outage, failures = _until_ok(lambda: manager.open(first), timeout=30)
            assert value["n"] == sids[first]
            assert failures >= 1, "the outage surfaces as StoreUnavailableError"
            with caplog.at_level(logging.WARNING, logger="ormsession"):
                new_sid, _, _ = _until_ok(lambda: stored_session(manager, n=99), timeout=30)
            write_outage = time.monotonic() - killed
            new_master = topo.wait_for_failover(timeout=30)

            assert new_master != old
            for sid, n in sids.items():  # every write WAITed for the replica: none lost
                assert manager.open(sid)["n"] == n
            assert manager.open(new_sid)["n"] == 99
            # The promoted master has no replica left: writes go on, with a warning.
            assert "acknowledged by 0 of 1 replicas" in caplog.text
        finally:
            manager.close()

        async def read_after_failover() -> int:
            async_manager = await ormsession.configure_async(url=url, key_prefix=prefix)
            try:
                return int((await async_manager.open(new_sid))["n"])
            finally:
                await async_manager.close()

        assert asyncio.run(read_after_failover()) == 99

    record_property("failover_read_outage_seconds", round(read_outage, 2))
    record_property("failover_write_outage_seconds", round(write_outage, 2))
    print(
        f"\nsentinel failover: reads back after {read_outage:.2f}s, writes after "
        f"{write_outage:.2f}s ({failures} StoreUnavailableError before recovery)"
    )
