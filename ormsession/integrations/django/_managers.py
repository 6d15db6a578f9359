"""The session managers a Django process uses: one synchronous, one asyncio per event loop.

Built on first use from the settings (see :mod:`._settings`) and dropped when a test
changes an ``ORMSESSION_*`` setting or ``DATABASES`` (Django's ``setting_changed``), so
``override_settings`` works as it does for Django's own backends.

A Django process may use both: the session middleware saves through the synchronous
manager (Django runs it in a worker thread under ASGI), an async view reads through
``aget()`` and the asyncio manager of the server's event loop. Both run the same policy on
the same store; for ``memory://`` the asyncio side wraps the synchronous side's store,
or the two would see two different stores.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed

from ormsession.config import Config
from ormsession.integrations.django._settings import async_url_of, config_from_settings
from ormsession.urls import scheme_of

if TYPE_CHECKING:
    from ormsession.async_manager import AsyncSessionManager
    from ormsession.integrations._asgi_loops import LoopManagers
    from ormsession.manager import SessionManager

__all__ = ["async_manager", "config", "reset", "sync_manager"]


class _Managers:
    """What one version of the settings built (each part on first use)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config: Config | None = None
        self.sync: SessionManager | None = None
        self.loops: LoopManagers | None = None
        #: What later event loops' managers are built with, once one was (see
        #: ``config_for_later_loops``): under WSGI, every async view runs on a new loop.
        self.later_loops: Config | None = None


_current = _Managers()


def config() -> Config:
    """The configuration the settings describe (read once)."""
    current = _current
    if current.config is None:
        with current.lock:
            if current.config is None:
                current.config = config_from_settings()
    return current.config


def sync_manager() -> SessionManager:
    """The process's synchronous manager."""
    current = _current
    if current.sync is None:
        with current.lock:
            if current.sync is None:
                current.sync = _build_sync(config())
    return current.sync


def _build_sync(resolved: Config) -> SessionManager:
    from ormsession.configure import configure
    from ormsession.integrations.django.store import DjangoSession

    return configure(config=resolved, session_class=DjangoSession)


async def async_manager() -> AsyncSessionManager:
    """The asyncio manager of the running event loop."""
    current = _current
    if current.loops is None:
        from ormsession.integrations._asgi_loops import LoopManagers

        with current.lock:
            if current.loops is None:
                current.loops = LoopManagers(lambda: _build_async(current))
    return await current.loops.get()


async def _build_async(current: _Managers) -> AsyncSessionManager:
    from ormsession.async_manager import AsyncSessionManager
    from ormsession.configure import configure_async
    from ormsession.integrations._asgi_loops import config_for_later_loops
    from ormsession.integrations.django.store import DjangoSession
    from ormsession.repositories.memory import AsyncMemoryRepository, MemoryRepository

    resolved = config()
    url = resolved.url.get_secret_value()
    if scheme_of(url) == "memory":
        # Building the synchronous side does no I/O for memory://.
        repository = sync_manager().repository
        assert isinstance(repository, MemoryRepository)
        return AsyncSessionManager(
            AsyncMemoryRepository(repository),
            resolved,
            session_class=DjangoSession,
            owns_repository=False,
        )
    built = current.later_loops or resolved.replace(url=async_url_of(url))
    manager = await configure_async(config=built, session_class=DjangoSession)
    current.later_loops = config_for_later_loops(built)
    return manager


def reset() -> None:
    """Forget the managers: the next session builds them from the settings again. The
    synchronous one is closed; asyncio ones are closed by their loops' guardians."""
    global _current
    old, _current = _current, _Managers()
    if old.sync is not None:
        old.sync.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("ORMSESSION_") or setting == "DATABASES":
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="ormsession.django.settings")
