"""``configure()`` and ``configure_async()``: settings in, a ready manager out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from typing_extensions import Unpack

from ormsession.errors import ConfigurationError
from ormsession.manager import SessionManager
from ormsession.options import ManagerOptions
from ormsession.session import RequestSession
from ormsession.settings import OrmsessionSettings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ormsession.async_manager import AsyncSessionManager

__all__ = ["configure", "configure_async", "load_settings"]


def load_settings(settings: OrmsessionSettings | None = None, **options: Any) -> OrmsessionSettings:
    """Settings from the environment and ``.env``, overridden by explicit ``options``.

    Errors name the option and the problem, never the value (it may be a password).
    """
    unknown = sorted(set(options) - set(OrmsessionSettings.model_fields))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)}; valid options: "
            + ", ".join(OrmsessionSettings.model_fields)
        )
    try:
        if settings is None:
            return OrmsessionSettings(**options)
        merged = settings.model_dump() | options
        return OrmsessionSettings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise ConfigurationError(f"invalid ormsession settings: {problems}") from None


def _explicit(url: str | None, options: dict[str, Any]) -> dict[str, Any]:
    return options | {"url": url} if url is not None else options


def configure(
    url: str | None = None,
    *,
    engine: Engine | None = None,
    client: Any = None,
    settings: OrmsessionSettings | None = None,
    session_class: type[RequestSession] = RequestSession,
    **options: Unpack[ManagerOptions],
) -> SessionManager:
    """A synchronous :class:`SessionManager`.

    - ``configure(url="postgresql+psycopg2://app@db/app")``: the store the URL names
      (``mysql+pymysql://``, ``sqlite:///x.db``, ``redis://``, ``redis+sentinel://``,
      ``redis+cluster://``, ``couchbase://``, ``memory://``).
    - ``configure(engine=app_engine)``: sessions in the app's own SQLAlchemy engine and pool
      (ormsession never disposes it and never joins the app's transactions).
    - ``configure(client=redis_client)``: a ready Redis or Couchbase client.
    - ``configure()``: everything from ``ORMSESSION_*`` / ``.env``; default a SQLite file.
    Any option of :class:`~ormsession.settings.OrmsessionSettings` may be passed by name.
    ``session_class`` (a :class:`RequestSession` subclass) is what ``open`` returns; the
    Flask integration uses it to add Flask's session interface.
    """
    resolved = load_settings(settings, **_explicit(url, dict(options)))
    manager_options = resolved.manager_options()
    if engine is not None:
        from ormsession.repositories.sql.repository import SqlRepository

        _check_engine(engine, want_async=False)
        if resolved.auto_migrate:
            from ormsession.schema import upgrade

            upgrade(engine, table_name=resolved.table_name)
        repository: Any = SqlRepository(
            engine, table_name=resolved.table_name, schema_check=resolved.schema_check
        )
    elif client is not None:
        from ormsession.repositories.registry import repository_for_client

        repository = repository_for_client(client, resolved, want_async=False)
    else:
        from ormsession.repositories.registry import open_repository

        repository = open_repository(resolved.url, resolved)
    return SessionManager(repository, session_class=session_class, **manager_options)


async def configure_async(
    url: str | None = None,
    *,
    engine: Any = None,
    client: Any = None,
    settings: OrmsessionSettings | None = None,
    session_class: type[RequestSession] = RequestSession,
    **options: Unpack[ManagerOptions],
) -> AsyncSessionManager:
    """The asyncio twin of :func:`configure`: ``manager = await configure_async(...)``.

    Returns an :class:`AsyncSessionManager` whose methods are awaited; ``engine`` is an
    ``AsyncEngine``, ``client`` a ``redis.asyncio`` client. Awaited because start-up checks
    (the SQL schema revision, migrations when asked) talk to the store.
    """
    from ormsession.async_manager import AsyncSessionManager

    resolved = load_settings(settings, **_explicit(url, dict(options)))
    manager_options = resolved.manager_options()
    if engine is not None:
        from ormsession.repositories.sql.async_repository import AsyncSqlRepository

        _check_engine(engine, want_async=True)
        repository: Any = AsyncSqlRepository(
            engine,
            table_name=resolved.table_name,
            schema_check=resolved.schema_check,
            auto_migrate=bool(resolved.auto_migrate),
        )
    elif client is not None:
        from ormsession.repositories.registry import repository_for_client

        repository = repository_for_client(client, resolved, want_async=True)
    else:
        from ormsession.repositories.registry import open_async_repository

        repository = open_async_repository(resolved.url, resolved)
    start = getattr(repository, "start", None)
    if start is not None:
        try:
            await start()
        except BaseException:
            await repository.close()
            raise
    return AsyncSessionManager(repository, session_class=session_class, **manager_options)


def _check_engine(engine: Any, *, want_async: bool) -> None:
    is_async = type(engine).__name__ == "AsyncEngine"
    if is_async and not want_async:
        raise ConfigurationError("that is an AsyncEngine: use ormsession.configure_async()")
    if want_async and not is_async:
        raise ConfigurationError(
            "configure_async(engine=...) needs an AsyncEngine; for a sync Engine use "
            "ormsession.configure()"
        )
    if not is_async and not hasattr(engine, "connect"):
        raise ConfigurationError(f"engine must be a SQLAlchemy Engine, not {type(engine)!r}")
