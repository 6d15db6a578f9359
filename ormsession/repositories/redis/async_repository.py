"""The asyncio Redis repository, on ``redis.asyncio`` clients (plain, Sentinel
``master_for``, ``RedisCluster``): :mod:`.repository`'s twin, line for line, awaited."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from redis.exceptions import NoScriptError

from ormsession.errors import StoreError
from ormsession.flows import arun
from ormsession.repositories.base import AsyncSessionRepository, OwnedSession, Owner, StoredSession
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

__all__ = ["AsyncRedisRepository"]


class AsyncRedisRepository(RedisRepositoryBase, AsyncSessionRepository):
    """The asyncio twin of :class:`~ormsession.repositories.redis.repository.RedisRepository`:
    the same options; ``owned`` resources are closed with ``aclose()``."""

    async def read(self, key: str, now_us: int) -> StoredSession | None:
        try:
            raw = await self._execute(Get(self.layout.session(key)), "read")
        except StoreError as error:
            if self.wrong_type(error, key):
                return None
            raise
        return self.record_from(raw, key, now_us)

    async def create(
        self, key: str, record: StoredSession, now_us: int, owner_until_us: int | None = None
    ) -> bool:
        flow = self.create_flow(key, record, now_us, owner_until_us)
        return await arun(flow, lambda command: self._execute(command, "create"))

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        flow = self.update_flow(key, data, expires_us, expected_version, now_us)
        return await arun(flow, lambda command: self._execute(command, "update"))

    async def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return bool(await self._execute(self.touch_script(key, expires_us, now_us), "touch"))

    async def delete(self, key: str) -> None:
        flow = self.delete_flow(key)
        await arun(flow, lambda command: self._execute(command, "delete"))

    async def rename(
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
        return await arun(flow, lambda command: self._execute(command, "rename"))

    async def moved(self, key: str, now_us: int) -> bool:
        try:
            raw = await self._execute(Get(self.layout.session(key)), "moved")
        except StoreError as error:
            if self.wrong_type(error, key, log=False):  # read has said so already
                return False
            raise
        return self.marker_from(raw, now_us)

    async def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        flow = self.sessions_of_flow(user_id, now_us)
        return await arun(flow, lambda command: self._execute(command, "sessions_of"))

    async def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        flow = self.revoke_flow(user_id, handle, None, now_us)
        return bool(await arun(flow, lambda command: self._execute(command, "revoke")))

    async def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        flow = self.revoke_flow(user_id, "", keep_key, now_us)
        return await arun(flow, lambda command: self._execute(command, "revoke_all"))

    async def count(self, now_us: int) -> int:
        return int(await self._execute(CountLive(self.layout.all_indexes(), now_us), "count"))

    async def delete_expired(self, now_us: int, limit: int) -> int:
        # Redis expires the records itself; only the count index needs trimming.
        await self._execute(TrimIndexes(self.layout.all_indexes(), now_us), "delete_expired")
        return 0

    async def close(self) -> None:
        """Close the clients this repository created (never one the app handed in)."""
        owned, self._owned = self._owned, []
        async with AsyncExitStack() as stack:  # closes every one, even if one raises
            for resource in owned:
                # aclose() since redis-py 5.0.1; close() before (now a deprecated alias).
                stack.push_async_callback(getattr(resource, "aclose", None) or resource.close)

    # -- I/O --------------------------------------------------------------------------------
    async def _execute(self, command: Command, operation: str) -> Any:
        """Send ``command`` and return the reply; a redis-py error comes out as a
        :class:`~ormsession.errors.StoreError` naming ``operation``."""
        try:
            match command:
                case Get(key):
                    return await self.client.execute_command("GET", key, **RAW)
                case Eval():
                    return await self._eval(command)
                case SetIfEqual(key, value, old, ttl_ms):
                    return await self._write(("SET", key, value, "IFEQ", old, "PX", ttl_ms))
                case CountLive(keys, above):
                    counts = await self._pipelined(
                        keys, lambda pipe, key: pipe.zcount(key, f"({above}", "+inf")
                    )
                    return sum(counts)
                case HashEntries(key):
                    return pairs(await self.client.execute_command("HGETALL", key, **RAW))
                case Heads(keys, size):
                    return await self._pipelined(
                        keys, lambda pipe, key: pipe.getrange(key, 0, size - 1)
                    )
                case TrimIndexes(keys, upto):
                    return await self._pipelined(
                        keys, lambda pipe, key: pipe.zremrangebyscore(key, "-inf", upto)
                    )
        except REDIS_ERRORS as exc:
            raise self._wrap(exc, operation) from exc
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover

    async def _eval(self, command: Eval) -> Any:
        try:
            return await self._write(self._call(command, "EVALSHA", command.script.sha))
        except NoScriptError:
            return await self._write(self._call(command, "EVAL", command.script.source))

    @staticmethod
    def _call(command: Eval, verb: str, script: str) -> tuple[Any, ...]:
        return (verb, script, len(command.keys), *command.keys, *command.args)

    async def _write(self, call: tuple[Any, ...]) -> Any:
        """Send a write command (then WAIT, when configured) and return its reply."""
        if not self.wait_replicas or self.cluster:
            return await self.client.execute_command(*call, **RAW)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.execute_command(*call, **RAW)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            result, acknowledged = await pipe.execute(raise_on_error=False)
        for reply in (result, acknowledged):
            if isinstance(reply, Exception):
                raise reply
        check_acknowledged(int(acknowledged), self.wait_replicas, self.wait_timeout_ms)
        return result

    async def _pipelined(self, keys: Sequence[str], add: Callable[[Any, str], Any]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                add(pipe, key)
            return list(await pipe.execute())
