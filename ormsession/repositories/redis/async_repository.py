"""The asyncio Redis repository: the flows of :class:`RedisStoreCore`, awaited on
``redis.asyncio`` clients (plain, Sentinel ``master_for``, ``RedisCluster``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from redis.exceptions import NoScriptError

from ormsession.repositories.base import AsyncSessionRepository, StoredSession
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

__all__ = ["AsyncRedisRepository"]

T = TypeVar("T")


class AsyncRedisRepository(RedisRepositoryBase, AsyncSessionRepository):
    """The asyncio twin of :class:`~ormsession.repositories.redis.repository.RedisRepository`:
    the same options, the same flows; ``owned`` resources are closed with ``aclose()``."""

    # -- the contract ---------------------------------------------------------------
    async def read(self, key: str, now_us: int) -> StoredSession | None:
        # The one call on every request: a plain GET, without the flow machinery.
        try:
            raw = await self.client.execute_command("GET", self.core.layout.session(key), **RAW)
        except REDIS_ERRORS as exc:
            raise self._wrap(exc, "read") from exc
        return self.core.record_from(raw, key, now_us)

    async def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        return await self._run(self.core.create(key, record, now_us), "create")

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        script = self.core.update_script(key, data, expires_us, expected_version, now_us)
        try:
            stored = await self._execute(script)
        except REDIS_ERRORS as exc:
            raise self._wrap(exc, "update") from exc
        return expected_version + 1 if stored else None

    async def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return await self._run(self.core.touch(key, expires_us, now_us), "touch")

    async def delete(self, key: str) -> None:
        await self._run(self.core.delete(key), "delete")

    async def rename(self, old_key: str, new_key: str, expires_us: int, now_us: int) -> bool:
        return await self._run(self.core.rename(old_key, new_key, expires_us, now_us), "rename")

    async def count(self, now_us: int) -> int:
        return await self._run(self.core.count(now_us), "count")

    async def delete_expired(self, now_us: int, limit: int) -> int:
        return await self._run(self.core.delete_expired(now_us, limit), "delete_expired")

    async def close(self) -> None:
        """Close the clients this repository created (never one the app handed in)."""
        owned, self._owned = self._owned, []
        async with AsyncExitStack() as stack:  # closes every one, even if one raises
            for resource in owned:
                # aclose() since redis-py 5.0.1; close() before (now a deprecated alias).
                stack.push_async_callback(getattr(resource, "aclose", None) or resource.close)

    # -- plumbing -------------------------------------------------------------------
    async def _run(self, flow: Flow[T], operation: str) -> T:
        try:
            command = next(flow)
            while True:
                try:
                    result = await self._execute(command)
                except REDIS_ERRORS as exc:
                    command = throw_into(flow, self._wrap(exc, operation), exc)
                else:
                    command = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _execute(self, command: Command) -> Any:
        match command:
            case Get(key):
                return await self.client.execute_command("GET", key, **RAW)
            case Eval():
                if self.wait_replicas and not self.cluster:
                    return await self._eval_and_wait(command)
                return await self._eval(command)
            case CountLive(keys, above):
                counts = await self._pipelined(
                    keys, lambda pipe, key: pipe.zcount(key, f"({above}", "+inf")
                )
                return sum(counts)
            case TrimIndexes(keys, upto):
                return await self._pipelined(
                    keys, lambda pipe, key: pipe.zremrangebyscore(key, "-inf", upto)
                )
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover

    async def _eval(self, command: Eval) -> Any:
        keys, args = command.keys, command.args
        try:
            return await self.client.execute_command(
                "EVALSHA", command.script.sha, len(keys), *keys, *args, **RAW
            )
        except NoScriptError:
            return await self.client.execute_command(
                "EVAL", command.script.source, len(keys), *keys, *args, **RAW
            )

    async def _eval_and_wait(self, command: Eval) -> Any:
        keys, args = command.keys, command.args
        for verb, script in (("EVALSHA", command.script.sha), ("EVAL", command.script.source)):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.execute_command(verb, script, len(keys), *keys, *args, **RAW)
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                result, acknowledged = await pipe.execute(raise_on_error=False)
            if isinstance(result, NoScriptError):
                continue
            if isinstance(result, Exception):
                raise result
            if isinstance(acknowledged, Exception):
                raise acknowledged
            check_acknowledged(int(acknowledged), self.wait_replicas, self.wait_timeout_ms)
            return result
        raise AssertionError("EVAL cannot answer NOSCRIPT")  # pragma: no cover

    async def _pipelined(self, keys: Sequence[str], add: Callable[[Any, str], Any]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                add(pipe, key)
            return list(await pipe.execute())
