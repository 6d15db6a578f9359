"""The synchronous Redis repository: plain Redis, Sentinel and Cluster, over redis-py.

Every rule lives in :class:`~ormsession.repositories.redis.base.RedisStoreCore`; this
class only answers its commands with redis-py calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, TypeVar

from redis.exceptions import NoScriptError

from ormsession.repositories.base import SessionRepository, StoredSession
from ormsession.repositories.redis.base import (
    Command,
    CountLive,
    Eval,
    Flow,
    Get,
    TrimIndexes,
    check_acknowledged,
    throw_into,
)
from ormsession.repositories.redis.common import RAW, RedisRepositoryBase
from ormsession.repositories.redis.errors import REDIS_ERRORS

__all__ = ["RedisRepository"]

T = TypeVar("T")


class RedisRepository(RedisRepositoryBase, SessionRepository):
    """Sessions in Redis with native TTLs (see ``docs/stores/redis.md``).

    ``client`` is a ``redis.Redis`` (plain, or a Sentinel ``master_for`` client) or a
    ``redis.cluster.RedisCluster``. A client the app hands in is never closed; ``owned``
    lists what this repository created and closes in :meth:`close`. ``wait_replicas``: after
    each write, WAIT for that many replicas (not on Cluster), up to ``wait_timeout_ms``.
    """

    # -- the contract ---------------------------------------------------------------
    def read(self, key: str, now_us: int) -> StoredSession | None:
        # The one call on every request: a plain GET, without the flow machinery.
        try:
            raw = self.client.execute_command("GET", self.core.layout.session(key), **RAW)
        except REDIS_ERRORS as exc:
            raise self._wrap(exc, "read") from exc
        return self.core.record_from(raw, key, now_us)

    def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        return self._run(self.core.create(key, record, now_us), "create")

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        script = self.core.update_script(key, data, expires_us, expected_version, now_us)
        try:
            stored = self._execute(script)
        except REDIS_ERRORS as exc:
            raise self._wrap(exc, "update") from exc
        return expected_version + 1 if stored else None

    def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return self._run(self.core.touch(key, expires_us, now_us), "touch")

    def delete(self, key: str) -> None:
        self._run(self.core.delete(key), "delete")

    def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool:
        return self._run(self.core.rename(old_key, new_key, expires_us, now_us), "rename")

    def count(self, now_us: int) -> int:
        return self._run(self.core.count(now_us), "count")

    def delete_expired(self, now_us: int, limit: int) -> int:
        return self._run(self.core.delete_expired(now_us, limit), "delete_expired")

    def close(self) -> None:
        """Close the clients this repository created (never one the app handed in)."""
        owned, self._owned = self._owned, []
        with ExitStack() as stack:  # closes every one, even if one raises
            for resource in owned:
                stack.callback(resource.close)

    # -- plumbing -------------------------------------------------------------------
    def _run(self, flow: Flow[T], operation: str) -> T:
        """Answer ``flow``'s commands; redis errors go back into it wrapped, so its
        roll-backs run, and come out of it as ormsession errors."""
        try:
            command = next(flow)
            while True:
                try:
                    result = self._execute(command)
                except REDIS_ERRORS as exc:
                    command = throw_into(flow, self._wrap(exc, operation), exc)
                else:
                    command = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _execute(self, command: Command) -> Any:
        match command:
            case Get(key):
                return self.client.execute_command("GET", key, **RAW)
            case Eval():
                if self.wait_replicas and not self.cluster:
                    return self._eval_and_wait(command)
                return self._eval(command)
            case CountLive(keys, above):
                return sum(
                    self._pipelined(keys, lambda pipe, key: pipe.zcount(key, f"({above}", "+inf"))
                )
            case TrimIndexes(keys, upto):
                return self._pipelined(
                    keys, lambda pipe, key: pipe.zremrangebyscore(key, "-inf", upto)
                )
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover

    def _eval(self, command: Eval) -> Any:
        keys, args = command.keys, command.args
        try:
            return self.client.execute_command(
                "EVALSHA", command.script.sha, len(keys), *keys, *args, **RAW
            )
        except NoScriptError:
            # First use on this server (or after a failover or SCRIPT FLUSH): EVAL sends the
            # source, which also caches it for the next EVALSHA.
            return self.client.execute_command(
                "EVAL", command.script.source, len(keys), *keys, *args, **RAW
            )

    def _eval_and_wait(self, command: Eval) -> Any:
        """The script and WAIT in one pipeline: WAIT counts the acknowledgements of the
        writes made on its own connection, so it must share the script's."""
        keys, args = command.keys, command.args
        for verb, script in (("EVALSHA", command.script.sha), ("EVAL", command.script.source)):
            with self.client.pipeline(transaction=False) as pipe:
                pipe.execute_command(verb, script, len(keys), *keys, *args, **RAW)
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                result, acknowledged = pipe.execute(raise_on_error=False)
            if isinstance(result, NoScriptError):
                continue
            if isinstance(result, Exception):
                raise result
            if isinstance(acknowledged, Exception):
                raise acknowledged
            check_acknowledged(int(acknowledged), self.wait_replicas, self.wait_timeout_ms)
            return result
        raise AssertionError("EVAL cannot answer NOSCRIPT")  # pragma: no cover

    def _pipelined(self, keys: Sequence[str], add: Callable[[Any, str], Any]) -> list[Any]:
        # One round trip on plain Redis; on Cluster, redis-py splits it per master.
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                add(pipe, key)
            return list(pipe.execute())
