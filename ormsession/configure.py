"""``configure()`` and ``configure_async()``: configuration in, a ready manager out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ormsession.config import Config
from ormsession.expiry import utcnow
from ormsession.manager import SessionManager
from ormsession.repositories.registry import open_store, store_for_client
from ormsession.session import RequestSession
from ormsession.settings import load_config

if TYPE_CHECKING:
    from ormsession.async_manager import AsyncSessionManager

__all__ = ["configure", "configure_async"]


def _repository(config: Config, engine: Any, client: Any, *, want_async: bool) -> Any:
    if engine is not None:
        from ormsession.repositories.sql.factory import store_for_engine

        return store_for_engine(engine, config, want_async=want_async)
    if client is not None:
        return store_for_client(client, config, want_async=want_async)
    return open_store(config.url.get_secret_value(), config, want_async=want_async)


def configure(
    url: str | None = None,
    *,
    engine: Any = None,
    client: Any = None,
    config: Config | None = None,
    clock: Callable[[], datetime] = utcnow,
    session_class: type[RequestSession] = RequestSession,
    **options: Any,
) -> SessionManager:
    """A synchronous :class:`SessionManager`.

    - ``configure(url="postgresql+psycopg2://app@db/app")``: the store the URL names
      (``mysql+pymysql://``, ``sqlite:///x.db``, ``redis://``, ``redis+sentinel://``,
      ``redis+cluster://``, ``couchbase://``, ``memory://``, or a registered store's).
    - ``configure(engine=app_engine)``: sessions in the app's own SQLAlchemy engine and pool
      (ormsession never disposes it and never joins the app's transactions).
    - ``configure(client=redis_client)``: a ready Redis or Couchbase client.
    - ``configure()``: everything from ``ORMSESSION_*`` / ``.env``; default a SQLite file.

    ``options`` are :class:`~ormsession.Config` fields by name; ``config`` a ready
    ``Config`` (then the environment is not read). ``session_class`` (a
    :class:`RequestSession` subclass) is what ``open`` returns.
    """
    resolved = load_config(config, **_with_url(url, options))
    repository = _repository(resolved, engine, client, want_async=False)
    try:
        return SessionManager(repository, resolved, clock=clock, session_class=session_class)
    except BaseException:
        repository.close()
        raise


async def configure_async(
    url: str | None = None,
    *,
    engine: Any = None,
    client: Any = None,
    config: Config | None = None,
    clock: Callable[[], datetime] = utcnow,
    session_class: type[RequestSession] = RequestSession,
    **options: Any,
) -> AsyncSessionManager:
    """The asyncio twin of :func:`configure`: ``manager = await configure_async(...)``.

    Returns an :class:`AsyncSessionManager` whose methods are awaited; ``engine`` is an
    ``AsyncEngine``, ``client`` a ``redis.asyncio`` client. Awaited because start-up checks
    (the SQL schema revision, migrations when asked) talk to the store.
    """
    from ormsession.async_manager import AsyncSessionManager

    resolved = load_config(config, **_with_url(url, options))
    repository = _repository(resolved, engine, client, want_async=True)
    try:
        await repository.start()
        return AsyncSessionManager(repository, resolved, clock=clock, session_class=session_class)
    except BaseException:
        await repository.close()
        raise


def _with_url(url: str | None, options: dict[str, Any]) -> dict[str, Any]:
    return options | {"url": url} if url is not None else options
