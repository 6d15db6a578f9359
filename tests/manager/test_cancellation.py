"""A request task cancelled in the middle of a session operation (asyncio manager).

ASGI servers cancel the app's task when the client goes away (hypercorn, Starlette's
``BaseHTTPMiddleware``, anyio task groups), and an app may cut a handler short with its own
``asyncio.timeout``. Logout, "log out everywhere" and the rename of a regenerate or login are
several store calls on some stores (SQL statements, Redis Cluster scripts, Couchbase KV
operations): the request task is cancelled as each low-level call starts, and as each
returns, and the store must hold what the operation promised, not half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from ormsession.async_manager import AsyncSessionManager
from ormsession.config import Config
from ormsession.cookies import parse_cookie_header
from ormsession.expiry import now_us
from ormsession.repositories.base import AsyncSessionRepository
from ormsession.session import RequestSession
from tests.support.stores import open_store

STORES = ["sqlite", "postgresql", "mysql", "redis", "cluster", "couchbase"]


class CancelAtCall:
    """Cancels a task as the store's ``at``-th low-level call starts (before it is sent)
    or once it has returned: the SQL repository's statements, Redis commands and scripts,
    Couchbase KV operations."""

    def __init__(self, repository: AsyncSessionRepository) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.at, self.after, self.calls, self.fired = 0, False, 0, False
        attribute = "_perform" if "couchbase" in type(repository).__module__ else "_execute"
        real = getattr(repository, attribute)

        async def hooked(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            cue = self.task is not None and self.calls == self.at
            if cue and not self.after:
                self._cancel()
                await asyncio.sleep(0)  # where a cancelled caller stops
            result = await real(*args, **kwargs)
            if cue and self.after:
                self._cancel()
                await asyncio.sleep(0)  # before the caller's next call, whatever it is
            return result

        setattr(repository, attribute, hooked)

    async def run(self, operation: Awaitable[Any], at: int, *, after: bool) -> None:
        """Run ``operation`` in a task of its own (a request's), cancelled on cue."""
        task = asyncio.ensure_future(operation)
        self.task, self.at, self.after, self.calls, self.fired = task, at, after, 0, False
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.task = None

    def _cancel(self) -> None:
        assert self.task is not None
        self.fired = True
        self.task.cancel()


def cookie_id(set_cookie: str | None) -> str:
    assert set_cookie is not None, "expected a Set-Cookie value"
    return parse_cookie_header(set_cookie.split(";", 1)[0])["session"]


async def saved(manager: AsyncSessionManager, user: str | None = None) -> str:
    """A stored session (of ``user``, when given) holding ``{"a": 1}``; its id."""
    session = await manager.open(None)
    session["a"] = 1
    if user is not None:
        await manager.login(session, user)
    return cookie_id(await manager.save(session))


async def live(manager: AsyncSessionManager, session_id: str) -> bool:
    return not (await manager.open(session_id)).is_new


#: A case: set up (on a manager), return the operation to cancel and the check of what the
#: store holds after it (run once the manager is closed).
Check = Callable[[AsyncSessionManager], Awaitable[None]]
Case = Callable[[AsyncSessionManager, str], Awaitable[tuple[Awaitable[Any], Check]]]


async def logout(manager: AsyncSessionManager, user: str) -> tuple[Awaitable[Any], Check]:
    sid = await saved(manager, user)
    session = await manager.open(sid)

    async def check(manager: AsyncSessionManager) -> None:
        assert not await live(manager, sid), "the logout was undone by a cancellation"

    return manager.destroy(session), check


async def logout_through_a_replaced_id(
    manager: AsyncSessionManager, user: str
) -> tuple[Awaitable[Any], Check]:
    """A tab loaded before a login in another tab logs out: the delete follows the marker
    the login left under the old id to the new one."""
    sid = await saved(manager, user)
    stale = await manager.open(sid)
    tab = await manager.open(sid)
    await manager.login(tab, user)
    new_sid = cookie_id(await manager.save(tab))

    async def check(manager: AsyncSessionManager) -> None:
        assert not await live(manager, new_sid), "the logout was undone by a cancellation"

    return manager.destroy(stale), check


async def clear_and_save(manager: AsyncSessionManager, user: str) -> tuple[Awaitable[Any], Check]:
    """Flask's and Starlette's logout: ``clear()``, then the save (a delete, then a new
    session for what the request stored after clearing)."""
    sid = await saved(manager, user)
    session = await manager.open(sid)
    session.clear()
    session["flash"] = "bye"

    async def check(manager: AsyncSessionManager) -> None:
        assert not await live(manager, sid), "the logout was undone by a cancellation"

    return manager.save(session), check


async def log_out_everywhere(
    manager: AsyncSessionManager, user: str
) -> tuple[Awaitable[Any], Check]:
    sids = [await saved(manager, user) for _ in range(3)]
    stale = await manager.open(sids[0])
    await manager.login(await manager.open(sids[0]), user)  # one renamed: a marker to follow
    del stale

    async def check(manager: AsyncSessionManager) -> None:
        assert await manager.sessions_of(user) == [], "a session outlived 'log out everywhere'"

    return manager.revoke_all(user), check


async def revoke_one(manager: AsyncSessionManager, user: str) -> tuple[Awaitable[Any], Check]:
    sid = await saved(manager, user)
    tab = await manager.open(sid)
    handle = tab.handle
    assert handle is not None
    await manager.login(tab, user)
    await manager.save(tab)

    async def check(manager: AsyncSessionManager) -> None:
        assert await manager.sessions_of(user) == [], "a revoked session lives on"

    return manager.revoke(user, handle), check


CASES: dict[str, Case] = {
    "destroy": logout,
    "destroy-followed": logout_through_a_replaced_id,
    "clear-save": clear_and_save,
    "revoke_all": log_out_everywhere,
    "revoke": revoke_one,
}


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    with open_store(request, request.param, "async") as facade:
        yield facade


def run(store: Any, coroutine: Awaitable[Any]) -> Any:
    return store._runner.run(coroutine)


def at_each_store_call(store: Any, cancelled_at: Callable[[int], Awaitable[bool]]) -> None:
    """``cancelled_at(at)`` for at = 1, 2, ...: each run cancels the operation at its
    at-th store call, until the operation makes fewer calls than that (it reports
    whether the cancellation fired)."""
    at = 1
    while run(store, cancelled_at(at)):
        at += 1
    assert at > 1, "the operation made no store call"


@pytest.mark.parametrize("after", [False, True], ids=["as-a-call-starts", "after-a-call"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_logout_cancelled_anywhere_is_finished(store: Any, case: str, after: bool) -> None:
    """A client that disconnects (or an app's timeout) during a logout never leaves the
    user logged in: once the logout's store call has started, it finishes."""
    repository: AsyncSessionRepository = store.inner
    hook = CancelAtCall(repository)

    async def cancelled_at(at: int) -> bool:
        manager = AsyncSessionManager(repository, Config(), owns_repository=False)
        operation, check = await CASES[case](manager, f"u{at}{after}{case}")
        await hook.run(operation, at, after=after)
        await manager.close()  # lets what was left running finish
        try:
            await check(AsyncSessionManager(repository, Config(), owns_repository=False))
        except AssertionError as exc:
            raise AssertionError(f"cancelled at call {at}: {exc}") from None
        return hook.fired

    at_each_store_call(store, cancelled_at)


@pytest.mark.parametrize("login", [False, True], ids=["regenerate", "login"])
@pytest.mark.parametrize("after", [False, True], ids=["as-a-call-starts", "after-a-call"])
def test_a_rename_cancelled_anywhere_leaves_one_live_copy(
    store: Any, login: bool, after: bool
) -> None:
    """A regenerate or login cut short leaves the session whole under one id, the old one
    (cancelled before the rename began) or the new one: never under a marker with no
    copy, data gone (the user silently logged out)."""
    repository: AsyncSessionRepository = store.inner
    hook = CancelAtCall(repository)
    new_keys: list[str] = []
    rename = repository.rename

    def recording(*args: Any) -> Any:
        new_keys.append(args[1])
        return rename(*args)

    repository.rename = recording  # type: ignore[method-assign,assignment]

    async def cancelled_at(at: int) -> bool:
        manager = AsyncSessionManager(repository, Config(), owns_repository=False)
        session: RequestSession = await manager.open(await saved(manager, "ada"))
        old_key = session.storage_key
        new_keys.clear()
        operation = manager.login(session, "ada") if login else manager.regenerate(session)
        await hook.run(operation, at, after=after)
        await manager.close()
        copies = [
            record
            for key in [old_key, *new_keys]
            if (record := await repository.read(key, now_us())) is not None
        ]
        assert len(copies) == 1, f"cancelled at call {at}: {len(copies)} live copies"
        return hook.fired

    at_each_store_call(store, cancelled_at)


@pytest.mark.parametrize("after", [False, True], ids=["as-a-call-starts", "after-a-call"])
def test_a_login_cancelled_anywhere_binds_nothing(store: Any, after: bool) -> None:
    """A login whose task is cancelled fails as any failed login does: the session is not
    left bound, so a save the app or its middleware makes afterwards (an app's timeout
    answered with an error page) stores no session of the user."""
    repository: AsyncSessionRepository = store.inner
    hook = CancelAtCall(repository)

    async def cancelled_at(at: int) -> bool:
        manager = AsyncSessionManager(repository, Config(), owns_repository=False)
        user = f"u{at}{after}"
        session = await manager.open(None)
        session["a"] = 1
        await hook.run(manager.login(session, user), at, after=after)
        if hook.fired:
            assert session.user_id is None, f"cancelled at call {at}: the session is bound"
            saved_id = cookie_id(await manager.save(session))
            opened = await manager.open(saved_id)
            assert opened.user_id is None, f"cancelled at call {at}: logged in after all"
        await manager.close()
        return hook.fired

    at_each_store_call(store, cancelled_at)


@pytest.mark.parametrize("after", [False, True], ids=["as-a-call-starts", "after-a-call"])
def test_a_save_cancelled_anywhere_leaves_the_session_whole(store: Any, after: bool) -> None:
    """A save cut short (one compare-and-set, or a create, a conflict's re-read and second
    compare-and-set) runs on the request's own task, with no task of its own: whatever was
    written is one whole version of the session, the old or the new, and it stays live."""
    repository: AsyncSessionRepository = store.inner
    hook = CancelAtCall(repository)

    async def cancelled_at(at: int) -> bool:
        manager = AsyncSessionManager(repository, Config(), owns_repository=False)
        sid = await saved(manager)
        mine = await manager.open(sid)
        other = await manager.open(sid)
        other["b"] = 2
        await manager.save(other)  # so this save conflicts: update, read, update
        mine["a"] = 3
        await hook.run(manager.save(mine), at, after=after)
        opened = await manager.open(sid)
        assert not opened.is_new, f"cancelled at call {at}: the session is gone"
        assert dict(opened) in ({"a": 1, "b": 2}, {"a": 3, "b": 2}), f"at call {at}: {opened}"
        await manager.close()
        return hook.fired

    at_each_store_call(store, cancelled_at)
