"""The synchronous Redis repository: plain Redis, Sentinel and Cluster, over redis-py.

Commands are built and replies read in :mod:`.base`; this class only sends them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ormsession.errors import StoreError
from ormsession.flows import run
from ormsession.repositories.base import OwnedSession, Owner, SessionRepository, StoredSession
from ormsession.repositories.redis.base import (
    Command,
    CountLive,
    Eval,
    Get,
    HashEntries,
    Heads,
    RedisRepositoryBase,
    SetIfEqual,
    TrimIndexes,
    check_acknowledged,
)
from ormsession.repositories.redis.clients import RAW
from ormsession.repositories.redis.errors import REDIS_ERRORS
from ormsession.repositories.redis.users import pairs

if TYPE_CHECKING:
    from ormsession.repositories.redis.diagnostics import RedisDiagnostics

__all__ = ["RedisRepository"]


class RedisRepository(RedisRepositoryBase, SessionRepository):
    """Sessions in Redis with native TTLs (see ``docs/stores/redis.md``); ``client`` is a
    ``redis.Redis`` (plain, or a Sentinel ``master_for`` client) or a
    ``redis.cluster.RedisCluster``. The options are
    :class:`~ormsession.repositories.redis.base.RedisRepositoryBase`'s."""

    def read(self, key: str, now_us: int) -> StoredSession | None:
        try:
            raw = self._execute(Get(self.layout.session(key)), "read")
        except StoreError as error:
            if self.wrong_type(error, key):
                return None
            raise
        return self.record_from(raw, key, now_us)

    def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool:
        flow = self.create_flow(key, record, now_us, owner_until_us)
        return run(flow, lambda command: self._execute(command, "create"))

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        flow = self.update_flow(key, data, expires_us, expected_version, now_us)
        return run(flow, lambda command: self._execute(command, "update"))

    def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return bool(self._execute(self.touch_script(key, expires_us, now_us), "touch"))

    def delete(self, key: str) -> None:
        flow = self.delete_flow(key)
        run(flow, lambda command: self._execute(command, "delete"))

    def rename(
        self,
        old_key: str,
        new_key: str,
        expires_us: int,
        now_us: int,
        owner: Owner | None = None,
        owner_until_us: int | None = None,
        data: bytes | None = None,
        expected_version: int | None = None,
    ) -> bool:
        flow = self.rename_flow(
            old_key, new_key, expires_us, now_us, owner, owner_until_us, data, expected_version
        )
        return run(flow, lambda command: self._execute(command, "rename"))

    def moved(self, key: str, now_us: int) -> bool:
        try:
            raw = self._execute(Get(self.layout.session(key)), "moved")
        except StoreError as error:
            if self.wrong_type(error, key, log=False):  # read has said so already
                return False
            raise
        return self.marker_from(raw, now_us)

    def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        flow = self.sessions_of_flow(user_id, now_us)
        return run(flow, lambda command: self._execute(command, "sessions_of"))

    def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        flow = self.revoke_flow(user_id, handle, None, now_us)
        return bool(run(flow, lambda command: self._execute(command, "revoke")))

    def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        flow = self.revoke_flow(user_id, "", keep_key, now_us)
        return run(flow, lambda command: self._execute(command, "revoke_all"))

    def count(self, now_us: int) -> int:
        return int(self._execute(CountLive(self.layout.all_indexes(), now_us), "count"))

    def delete_expired(self, now_us: int, limit: int) -> int:
        # Redis expires the records itself; only the count index needs trimming.
        self._execute(TrimIndexes(self.layout.all_indexes(), now_us), "delete_expired")
        return 0

    def diagnostics(self) -> RedisDiagnostics:
        """What ``ormsession stats`` and ``doctor`` ask (beyond the contract)."""
        from ormsession.repositories.redis.diagnostics import RedisDiagnostics

        return RedisDiagnostics(self)

    def close(self) -> None:
        """Close the clients this repository created (never one the app handed in)."""
        owned, self._owned = self._owned, []
        with ExitStack() as stack:  # closes every one, even if one raises
            for resource in owned:
                stack.callback(resource.close)

    # -- I/O --------------------------------------------------------------------------------
    def _execute(self, command: Command, operation: str) -> Any:
        """Send ``command`` and return the reply; a redis-py error comes out as a
        :class:`~ormsession.errors.StoreError` naming ``operation``."""
        try:
            match command:
                case Get(key):
                    return self.client.execute_command("GET", key, **RAW)
                case Eval():
                    return self._eval(command)
                case SetIfEqual(key, value, old, ttl_ms):
                    return self._write(("SET", key, value, "IFEQ", old, "PX", ttl_ms))
                case CountLive(keys, above):
                    counts = self._pipelined(
                        keys, lambda pipe, key: pipe.zcount(key, f"({above}", "+inf")
                    )
                    return sum(counts)
                case HashEntries(key):
                    return pairs(self.client.execute_command("HGETALL", key, **RAW))
                case Heads(keys, size):
                    return self._pipelined(keys, lambda pipe, key: pipe.getrange(key, 0, size - 1))
                case TrimIndexes(keys, upto):
                    return self._pipelined(
                        keys, lambda pipe, key: pipe.zremrangebyscore(key, "-inf", upto)
                    )
        except REDIS_ERRORS as exc:
            raise self._wrap(exc, operation) from exc
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover

    def _eval(self, command: Eval) -> Any:
        try:
            return self._write(self._call(command, "EVALSHA", command.script.sha))
        except NoScriptError:
            # First use on this server (or after a failover or SCRIPT FLUSH): EVAL sends the
            # source, which also caches it for the next EVALSHA.
            return self._write(self._call(command, "EVAL", command.script.source))

    @staticmethod
    def _call(command: Eval, verb: str, script: str) -> tuple[Any, ...]:
        return (verb, script, len(command.keys), *command.keys, *command.args)

    def _write(self, call: tuple[Any, ...]) -> Any:
        """Send a write command (then WAIT, when configured) and return its reply."""
        if not self.wait_replicas or self.cluster:
            return self.client.execute_command(*call, **RAW)
        # WAIT counts the acknowledgements of the writes made on its own connection, so it
        # goes in one pipeline with the script.
        with self.client.pipeline(transaction=False) as pipe:
            pipe.execute_command(*call, **RAW)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            result, acknowledged = pipe.execute(raise_on_error=False)
        for reply in (result, acknowledged):
            if isinstance(reply, Exception):
                raise reply
        check_acknowledged(int(acknowledged), self.wait_replicas, self.wait_timeout_ms)
        return result

    def _pipelined(self, keys: Sequence[str], add: Callable[[Any, str], Any]) -> list[Any]:
        # One round trip on plain Redis; on Cluster, redis-py splits it per master.
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                add(pipe, key)
            return list(pipe.execute())
