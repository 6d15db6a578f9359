"""``configure()`` and ``configure_async()``: configuration in, a ready manager out."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ormsession.config import Config
from ormsession.expiry import now_us, utcnow
from ormsession.manager import SessionManager
from ormsession.repositories.registry import open_store, store_for_client
from ormsession.session import RequestSession
from ormsession.settings import load_config
from ormsession.urls import redact_url, scheme_of

if TYPE_CHECKING:
    from ormsession.async_manager import AsyncSessionManager

__all__ = ["configure", "configure_async", "where_sessions_go"]

logger = logging.getLogger("ormsession")


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
        if resolved.on_store_error == "raise":
            repository.read(*_probe())
        _announce(resolved, engine, client)
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
        if resolved.on_store_error == "raise":
            await repository.read(*_probe())
        _announce(resolved, engine, client)
        return AsyncSessionManager(repository, resolved, clock=clock, session_class=session_class)
    except BaseException:
        await repository.close()
        raise


def where_sessions_go(config: Config, engine: Any = None, client: Any = None) -> str:
    """Which store holds the sessions and where, for people (never a password): a SQLite
    file by its absolute path, as a relative one depends on the working directory."""
    if engine is not None:
        from ormsession.repositories.sql.urls import display_sql_url

        return f"the app's engine {display_sql_url(engine.url)}, table {config.table_name!r}"
    if client is not None:
        kind = f"{type(client).__module__.split('.')[0]} {type(client).__qualname__}"
        return f"the app's {kind} client, key prefix {config.key_prefix!r}"
    url = config.url.get_secret_value()
    scheme = scheme_of(url).split("+", 1)[0]
    if scheme == "memory":
        return "this process's memory (lost when it ends, not shared between processes)"
    if scheme == "sqlite":
        from sqlalchemy.engine import make_url

        database = make_url(url).database
        if not database or database == ":memory:":
            return "an in-memory SQLite database (lost when the process ends)"
        return f"the SQLite file {Path(database).resolve()}, table {config.table_name!r}"
    if scheme in ("postgresql", "mysql", "mariadb"):
        return f"{redact_url(url)}, table {config.table_name!r}"
    return f"{redact_url(url)}, key prefix {config.key_prefix!r}"


def _announce(config: Config, engine: Any, client: Any) -> None:
    """Say at start-up where the sessions go. Louder when nobody chose the store: the
    default SQLite file lands in whatever directory the process was started from."""
    where = where_sessions_go(config, engine, client)
    if engine is None and client is None and "url" not in config.model_fields_set:
        logger.warning(
            "sessions go to %s (the default store: set ORMSESSION_URL or pass url= to choose one)",
            where,
        )
    else:
        logger.info("sessions go to %s", where)


def _probe() -> tuple[str, int]:
    """A read of a key nothing is stored under: it reaches the store, so an unreachable one
    fails the app's start-up (unless ``on_store_error="fresh"`` says it may start without
    it) rather than its first visitor's request."""
    return secrets.token_hex(32), now_us()


def _with_url(url: str | None, options: dict[str, Any]) -> dict[str, Any]:
    return options | {"url": url} if url is not None else options
