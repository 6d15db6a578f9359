"""``ManagerOptions``: the typed keyword arguments of ``configure()``/``configure_async()``.

One key per :class:`~ormsession.settings.OrmsessionSettings` field but ``url`` (a test keeps
them equal),
so type checkers see every option and its type at the call site.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, TypedDict

from ormsession.cookies import SameSite

__all__ = ["ManagerOptions"]


class ManagerOptions(TypedDict, total=False):
    """Every setting but ``url`` (a positional parameter of ``configure`` itself)."""

    table_name: str
    key_prefix: str
    connect_timeout: float
    pool_size: int | None
    schema_check: bool
    auto_migrate: bool | None
    cookie_name: str
    cookie_path: str
    cookie_domain: str | None
    cookie_secure: bool | None
    cookie_httponly: bool
    cookie_samesite: SameSite | None
    cookie_lifetime: timedelta | int | None
    cookie_host_prefix: bool
    set_cookie: bool
    id_header: str | None
    id_query_param: str | None
    trust_forwarded_proto: bool
    idle_timeout: timedelta | int | str
    absolute_timeout: timedelta | int | str | None
    refresh_ratio: float
    max_data_bytes: int
    serializer: Literal["json", "msgpack"]
    id_prefix: str
    id_bytes: int
    on_store_error: Literal["raise", "fresh"]
    max_attempts: int
    gc_batch_size: int
    gc_batch_seconds: float | None
