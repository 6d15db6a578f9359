"""Raw access to what the Redis stores wrote, for tests that inspect keys and values."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from tests.support.redis_fixtures import url_fixture
from tests.support.redis_servers import _glob_escape

KINDS = ("redis", "sentinel", "cluster", "valkey", "valkey_sentinel", "valkey_cluster")
#: Every key a Redis store may leave: a session, a shard's count index, a parked session, a
#: user's index.
KEY_LAYOUT = re.compile(
    rb"\{([0-9a-f]{2})\}:(?:([0-9a-f]{64})|index|moving:([0-9a-f]{64}))|user:[0-9a-f]{64}"
)


@dataclass
class StoredKey:
    node: int
    name: bytes
    pttl: int
    kind: bytes
    content: bytes


@contextmanager
def node_clients(request: pytest.FixtureRequest, kind: str) -> Iterator[list[redis.Redis]]:
    """One raw (bytes) client per data node holding ``kind``'s keys: the local Redis (or
    the Valkey node), the Sentinel topology's master, or every Cluster master (on Redis,
    or on Valkey: ``valkey_sentinel``, ``valkey_cluster``)."""
    with ExitStack() as stack:
        if kind in ("redis", "valkey"):
            url = request.getfixturevalue(url_fixture(kind))
            clients = [stack.enter_context(redis.Redis.from_url(url))]
        elif kind.endswith("sentinel"):
            master = request.getfixturevalue(f"{kind}_topology").master
            clients = [stack.enter_context(master.client(decode_responses=False))]
        else:
            nodes = request.getfixturevalue(f"{kind}_topology").nodes
            clients = [stack.enter_context(n.client(decode_responses=False)) for n in nodes]
        yield clients


@contextmanager
def routing_client(request: pytest.FixtureRequest, kind: str) -> Iterator[Any]:
    """A raw (bytes) client that reaches any of ``kind``'s keys (a Cluster client on
    Cluster, the data node otherwise)."""
    if kind.endswith("cluster"):
        topology = request.getfixturevalue(f"{kind}_topology")
        client = topology.cluster_client(decode_responses=False)
        try:
            yield client
        finally:
            client.close()
        return
    with node_clients(request, kind) as clients:
        yield clients[0]


def stored_keys(clients: list[redis.Redis], prefix: str) -> list[StoredKey]:
    """Every key under ``prefix`` on these nodes, with its PTTL, type and raw content."""
    found = []
    for number, client in enumerate(clients):
        for name in client.scan_iter(match=_glob_escape(prefix) + "*", count=500):
            kind = client.type(name)
            if kind == b"zset":
                content = b" ".join(client.zrange(name, 0, -1))
            elif kind == b"hash":
                content = b" ".join(sorted(client.hkeys(name)))
            else:
                content = client.get(name) or b""
            found.append(StoredKey(number, name, client.pttl(name), kind, content))
    return found
