"""Column types shared by the model and the statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Dialect, LargeBinary, String
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine

from ormsession.expiry import to_us

__all__ = [
    "SessionBytes",
    "UTCDateTime",
    "aware_utc",
    "exact_text",
    "naive_from_us",
    "naive_utc",
    "stored_utc",
    "text_from_us",
    "us_from_column",
    "us_from_text",
    "utc_text",
]

#: Session data: MySQL's plain BLOB stops at 64 KiB, below our default size limit, so
#: MySQL/MariaDB get LONGBLOB; PostgreSQL bytea and SQLite BLOB have no such ceiling.
SessionBytes = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def exact_text(length: int) -> TypeEngine[str]:
    """Text of up to ``length`` characters that compares exactly (user ids, handles).

    MySQL's and MariaDB's default collations are case-insensitive: there ``Alice`` and
    ``alice`` would be one user. So those columns are utf8mb4 (whatever the table's
    charset: a user id is any Unicode) with a binary collation. That collation still pads
    (``'bob' = 'bob '``), so the statements compare exactly on top of it (see
    ``statements._exactly``). 255 characters of utf8mb4 are 1020 bytes, well under
    InnoDB's 3072-byte index key. PostgreSQL's and SQLite's default comparisons are exact.
    """
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def aware_utc(value: datetime) -> datetime:
    """``value`` as aware UTC; a naive datetime is refused (its zone would be a guess)."""
    if value.tzinfo is UTC:  # the manager's clock already hands out UTC
        return value
    if value.tzinfo is None:
        raise ValueError("ormsession stores aware datetimes only")
    return value.astimezone(UTC)


def naive_utc(value: datetime) -> datetime:
    """``value`` as naive UTC, for columns with no time zone (MySQL, SQLite)."""
    return aware_utc(value).replace(tzinfo=None)


def stored_utc(value: datetime) -> datetime:
    """A datetime read back from a column: naive ones are UTC by construction."""
    tzinfo = value.tzinfo
    if tzinfo is UTC:  # PostgreSQL in UTC, or fromisoformat() of our own text
        return value
    return value.replace(tzinfo=UTC) if tzinfo is None else value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    """``value`` as naive-UTC ISO text with all six fractional digits, the way SQLAlchemy
    stores SQLite DATETIMEs (fixed width, so the texts compare like the instants)."""
    # Slicing off "+00:00" costs a fraction of replace(tzinfo=None) on every statement.
    return aware_utc(value).isoformat(" ", "microseconds")[:-6]


# The columns hold UTC; the repository contract speaks µs (see ormsession.expiry). A naive
# UTC value converts against a naive epoch: no time zone to attach or check on a read.
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def naive_from_us(moment_us: int) -> datetime:
    """µs as a naive UTC datetime (MySQL's DATETIME, SQLite's text)."""
    return _NAIVE_EPOCH + moment_us * _MICROSECOND


def text_from_us(moment_us: int) -> str:
    """µs as SQLite DATETIME text, the format :func:`utc_text` writes."""
    return naive_from_us(moment_us).isoformat(" ", "microseconds")


def us_from_text(text: str) -> int:
    """µs from naive-UTC ISO text (SQLite columns, MySQL's packed read)."""
    return (datetime.fromisoformat(text) - _NAIVE_EPOCH) // _MICROSECOND


def us_from_column(value: Any) -> int:
    """µs from a time column as a driver returns it: text (SQLite), a naive UTC datetime
    (MySQL) or an aware one (PostgreSQL)."""
    if isinstance(value, str):
        return us_from_text(value)
    moment: datetime = value
    if moment.tzinfo is None:
        return (moment - _NAIVE_EPOCH) // _MICROSECOND
    return to_us(moment)


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC instant in and out, whatever the dialect.

    PostgreSQL gets ``timestamp with time zone``, so no session or server time zone can
    shift lifetimes (beego stored local wall-clock time in a zone-less column). MySQL and
    SQLite have no zone-aware type: they store naive UTC, always converted here.
    MySQL gets microsecond precision, like the others.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return aware_utc(value) if dialect.name == "postgresql" else naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else stored_utc(value)
