"""Flask-Session's configuration keys, refused with the ormsession setting to use instead.

An app switching from Flask-Session keeps its ``SESSION_TYPE = "redis"`` and
``SESSION_REDIS = ...`` lines more often than not. Ignored, they would leave the sessions
in ormsession's default SQLite file while the operator believes they are in Redis, so
:class:`~ormsession.integrations.flask.OrmSession` refuses them, each with its equivalent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ormsession.errors import ConfigurationError

__all__ = ["FLASK_SESSION_KEYS", "refuse_flask_session_keys"]

_STORE = (
    "choose the store with ORMSESSION_URL (postgresql+psycopg2://, mysql+pymysql://, "
    "sqlite:///, redis://, redis+sentinel://, redis+cluster://, couchbase://)"
)

#: Flask-Session's key -> what to do in ormsession.
FLASK_SESSION_KEYS: dict[str, str] = {
    "SESSION_TYPE": _STORE,
    "SESSION_REDIS": (
        'ORMSESSION_URL = "redis://host:6379/0", or OrmSession(app, '
        "manager=ormsession.configure(client=your_redis_client))"
    ),
    "SESSION_SQLALCHEMY": (
        "ORMSESSION_URL = your database URL, or OrmSession(app, "
        "manager=ormsession.configure(engine=db.engine)) to share the app's engine"
    ),
    "SESSION_SQLALCHEMY_TABLE": "ORMSESSION_TABLE_NAME",
    "SESSION_SQLALCHEMY_SCHEMA": "a schema in ORMSESSION_URL, or configure(engine=...)",
    "SESSION_SQLALCHEMY_BIND_KEY": "ORMSESSION_URL of that bind, or configure(engine=...)",
    "SESSION_SQLALCHEMY_SEQUENCE": "nothing: ormsession's table needs no sequence",
    "SESSION_KEY_PREFIX": "ORMSESSION_KEY_PREFIX (Redis, Couchbase)",
    "SESSION_ID_LENGTH": "ORMSESSION_ID_BYTES (at least 32)",
    "SESSION_SERIALIZATION_FORMAT": 'ORMSESSION_SERIALIZER ("json" or "msgpack")',
    "SESSION_USE_SIGNER": (
        "nothing: ids are 256 random bits and stored hashed, there is nothing to sign"
    ),
    "SESSION_PERMANENT": (
        "session.permanent = True where the app decides (a login view), as in Flask; "
        "or ORMSESSION_COOKIE_LIFETIME for a lifetime on every session's cookie"
    ),
    "SESSION_CLEANUP_N_REQUESTS": "the `ormsession gc` command (cron) or manager.gc()",
    "SESSION_FILE_DIR": 'ORMSESSION_URL = "sqlite:///path/sessions.sqlite3"',
    "SESSION_FILE_THRESHOLD": 'ORMSESSION_URL = "sqlite:///path/sessions.sqlite3"',
    "SESSION_FILE_MODE": 'ORMSESSION_URL = "sqlite:///path/sessions.sqlite3"',
    "SESSION_CACHELIB": _STORE,
    "SESSION_MEMCACHED": _STORE + " (ormsession has no Memcached store)",
    "SESSION_MONGODB": _STORE + " (ormsession has no MongoDB store)",
    "SESSION_MONGODB_DB": _STORE,
    "SESSION_MONGODB_COLLECT": _STORE,
    "SESSION_DYNAMODB": _STORE + " (ormsession has no DynamoDB store)",
    "SESSION_DYNAMODB_TABLE": _STORE,
    "SESSION_DYNAMODB_TABLE_EXISTS": _STORE,
}


def refuse_flask_session_keys(settings: Mapping[str, Any], *, where: str) -> None:
    """Raise :class:`ConfigurationError` if ``settings`` (``app.config``, or the options
    given to ``OrmSession``, in any case) holds Flask-Session keys, naming for each the
    ormsession setting that replaces it. Values are never echoed (a client's repr may
    carry a password)."""
    found = sorted(
        {name.upper() for name in settings if name.upper() in FLASK_SESSION_KEYS},
        key=list(FLASK_SESSION_KEYS).index,
    )
    if found:
        advice = dict(FLASK_SESSION_KEYS)
        redis_url = _redis_url_of(_value(settings, "SESSION_REDIS"))
        if redis_url is not None:
            advice["SESSION_REDIS"] = f'ORMSESSION_URL = "{redis_url}" (with your password, if any)'
        lines = "; ".join(f"{name} -> {advice[name]}" for name in found)
        raise ConfigurationError(
            f"Flask-Session setting(s) in {where} are not read by ormsession: {lines}"
        )


def _value(settings: Mapping[str, Any], name: str) -> Any:
    for key, value in settings.items():
        if key.upper() == name:
            return value
    return None


def _redis_url_of(client: Any) -> str | None:
    """The ``redis://`` URL of a redis-py client's server, without its password."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict) or "host" not in kwargs:
        return None
    connection_class = getattr(pool, "connection_class", None)
    tls = "ssl" in getattr(connection_class, "__name__", "").lower()
    scheme = "rediss" if tls else "redis"
    return f"{scheme}://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
