"""Tests of the Redis test-topology helpers in tests/support/redis_servers.py, via redis-py."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from tests.support import redis_servers
from tests.support.redis_servers import (
    ClusterTopology,
    RedisProcess,
    RedisStartError,
    SentinelTopology,
    delete_keys_with_prefix,
)

pytestmark = pytest.mark.timeout(120)


def _our_server_pids(dirs: list[Path]) -> list[int]:
    """PIDs of processes whose command line mentions one of our temp dirs."""
    markers = [str(d).encode() for d in dirs]
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:  # exited while we looked
            continue
        if any(m in cmdline for m in markers):
            pids.append(int(proc.name))
    return pids


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _assert_cleaned_up(processes: list[RedisProcess], dirs: list[Path]) -> None:
    assert dirs, "expected the topology to have created temp dirs"
    assert not [d for d in dirs if d.exists()]
    assert not _our_server_pids(dirs)
    assert not [p.pid for p in processes if p.pid is not None and _pid_exists(p.pid)]


def _dirs(processes: list[RedisProcess]) -> list[Path]:
    return [p.dir for p in processes if p.dir is not None]


def _retry_until_ok(action: Callable[[], object], timeout: float) -> float:
    """Run ``action`` until it stops failing over; return the seconds that took."""
    start = time.monotonic()
    while True:
        try:
            action()
            return time.monotonic() - start
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
            if time.monotonic() - start > timeout:
                raise
            time.sleep(0.05)


# --------------------------------------------------------------------------- single nodes


@pytest.mark.usefixtures("redis_binaries")
def test_redis_process_serves_and_stop_cleans_up() -> None:
    with RedisProcess(password='p"w 1') as node, node.client() as client:
        assert client.ping()
        config = client.config_get("save")
        assert config["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        assert node.dir is not None
        dirs = [node.dir]
    assert not node.running
    _assert_cleaned_up([node], dirs)


@pytest.mark.usefixtures("redis_binaries")
def test_redis_process_kill_reaps_and_removes_dir() -> None:
    node = RedisProcess().start()
    dirs = _dirs([node])
    node.kill()
    _assert_cleaned_up([node], dirs)
    node.stop()  # stopping a dead process is a no-op


@pytest.mark.usefixtures("redis_binaries")
def test_redis_process_start_failure_shows_log_and_cleans_up() -> None:
    node = RedisProcess(extra_config=["no-such-directive yes"], startup_timeout=5)
    with pytest.raises(RedisStartError, match="no-such-directive"):
        node.start()
    assert not node.running
    leftovers = Path(tempfile.gettempdir()).glob(f"ormsession-redis-{node.port}-*")
    assert not list(leftovers)


@pytest.mark.usefixtures("redis_binaries")
def test_redis_process_moves_on_when_its_port_was_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_port = redis_servers.free_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        first = iter([busy])  # hand out the squatted port once, then real free ports
        monkeypatch.setattr(
            redis_servers, "free_port", lambda **kw: next(first, None) or real_free_port(**kw)
        )
        with RedisProcess() as node, node.client() as client:
            assert node.port != busy
            assert client.ping()


def test_delete_keys_with_prefix_only_touches_the_prefix(
    redis_url: str, redis_key_prefix: str
) -> None:
    assert redis_key_prefix.startswith("ormsession-test-")
    sibling = redis_key_prefix.rstrip(":") + "-sibling:"
    glob_prefix = f"{redis_key_prefix}[*]:"
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        try:
            client.mset({f"{redis_key_prefix}{i}": i for i in range(1_200)})
            client.set(f"{sibling}keep", 1)
            client.set(f"{redis_key_prefix}[x]:keep", 1)  # must not match "[*]" as a glob
            client.set(f"{glob_prefix}gone", 1)
            assert delete_keys_with_prefix(client, glob_prefix) == 1
            assert delete_keys_with_prefix(client, redis_key_prefix) == 1_201
            assert client.get(f"{sibling}keep") == "1"
        finally:
            client.delete(f"{sibling}keep")


# --------------------------------------------------------------------------- Sentinel


def test_sentinel_serves_master_and_replicates(sentinel_topology: SentinelTopology) -> None:
    topology = sentinel_topology
    sentinel = topology.sentinel_client(decode_responses=True)
    assert sentinel.discover_master(topology.service_name) == topology.master_address
    assert sentinel.discover_slaves(topology.service_name) == topology.replica_addresses

    master = sentinel.master_for(topology.service_name)
    replica = sentinel.slave_for(topology.service_name)
    key = f"ormsession-test-{uuid.uuid4().hex}"
    try:
        master.set(key, "hello")
        assert master.wait(1, 5_000) == 1  # replication is async: wait for the ack
        assert replica.get(key) == "hello"
        assert replica.info("replication")["role"] == "slave"
    finally:
        master.delete(key)
        master.close()
        replica.close()


def test_sentinel_topology_with_bad_password_is_rejected(
    sentinel_topology: SentinelTopology,
) -> None:
    host, port = sentinel_topology.sentinel_addresses[0]
    # No retries: redis-py 8 retries AuthenticationError (a ConnectionError) with backoff.
    no_retry = Retry(NoBackoff(), 0)
    with (
        redis.Redis(host=host, port=port, password="wrong", retry=no_retry) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()


@pytest.mark.slow
@pytest.mark.usefixtures("redis_binaries")
def test_sentinel_failover_promotes_replica(record_property: Callable[[str, object], None]) -> None:
    # Own topology (data-node password only): killing the session one would break others.
    with SentinelTopology(password="failover-pw") as topology:
        replica = topology.replica_addresses[0]
        sentinel = topology.sentinel_client(decode_responses=True)
        master = sentinel.master_for(topology.service_name)
        master.set("before", "1")
        assert master.wait(1, 5_000) == 1

        old = topology.kill_master()
        killed_at = time.monotonic()
        new = topology.wait_for_failover(timeout=30)
        reported_after = time.monotonic() - killed_at
        _retry_until_ok(lambda: master.set("after", "2"), timeout=10)
        outage = time.monotonic() - killed_at

        record_property("failover_reported_seconds", round(reported_after, 2))
        record_property("failover_outage_seconds", round(outage, 2))
        print(f"\nfailover: reported after {reported_after:.2f}s, writes back after {outage:.2f}s")

        assert new == replica != old
        assert topology.master_address == new
        assert sentinel.discover_master(topology.service_name) == new
        assert topology.master is not None
        with topology.master.client() as node:
            assert node.info("replication")["role"] == "master"
            assert node.get("before") == "1"
            assert node.get("after") == "2"
        master.close()


@pytest.mark.usefixtures("redis_binaries")
def test_sentinel_topology_stop_leaves_nothing_behind() -> None:
    topology = SentinelTopology(sentinel_password="spw")
    with topology:
        processes = list(topology.processes)
        dirs = _dirs(processes)
        assert len(processes) == 5
        assert all(p.running for p in processes)
    _assert_cleaned_up(processes, dirs)


@pytest.mark.usefixtures("redis_binaries")
def test_half_started_topology_is_cleaned_up(monkeypatch: pytest.MonkeyPatch) -> None:
    topology = SentinelTopology(startup_timeout=5)
    # Break the sentinels' config: start() fails after master and replica are running.
    monkeypatch.setattr(topology, "_sentinel_config", lambda master: ["sentinel bogus 1"])
    started: list[RedisProcess] = []
    dirs: list[Path] = []
    original_launch = topology._launch

    def recording_launch(process: RedisProcess) -> RedisProcess:
        started.append(process)
        result = original_launch(process)
        dirs.extend(_dirs([process]))
        return result

    monkeypatch.setattr(topology, "_launch", recording_launch)
    with pytest.raises(RedisStartError, match="Unrecognized sentinel configuration"):
        topology.start()
    assert len(started) == 3  # master, replica, first (broken) sentinel
    _assert_cleaned_up(started, dirs)


# --------------------------------------------------------------------------- Cluster


@pytest.fixture
def cluster_client(cluster_topology: ClusterTopology) -> Iterator[RedisCluster]:
    client = cluster_topology.cluster_client()
    yield client
    client.close()


def test_cluster_spreads_keys_over_all_masters(
    cluster_topology: ClusterTopology, cluster_client: RedisCluster
) -> None:
    prefix = f"ormsession-test-{uuid.uuid4().hex}:"
    keys = [f"{prefix}{i}" for i in range(60)]
    by_node: dict[tuple[str, int], list[str]] = defaultdict(list)
    try:
        for key in keys:
            cluster_client.set(key, key)
            node = cluster_client.get_node_from_key(key)
            by_node[(node.host, node.port)].append(key)
        assert [cluster_client.get(k) for k in keys] == keys
        assert sorted(by_node) == sorted(cluster_topology.master_addresses())
        assert len(by_node) == 3
        # Ask each node directly: the key really lives where the slot map says.
        for node in cluster_topology.nodes:
            with node.client() as client:
                for key in by_node[node.address]:
                    assert client.get(key) == key
                    assert client.cluster("KEYSLOT", key) == cluster_client.keyslot(key)
    finally:
        for key in keys:
            cluster_client.delete(key)


@pytest.mark.usefixtures("redis_binaries")
def test_cluster_topology_stop_leaves_nothing_behind() -> None:
    topology = ClusterTopology(masters=3)
    with topology:
        processes = list(topology.nodes)
        dirs = _dirs(processes)
        assert all((d / "nodes.conf").exists() for d in dirs)
    _assert_cleaned_up(processes, dirs)
