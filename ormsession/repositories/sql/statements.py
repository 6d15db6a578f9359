"""The SQL of every repository operation, built once per table and dialect.

Shared by the sync and async SQL repositories. Every statement is atomic on its own and
runs in autocommit (on the app's engine, in a transaction of its own): compare-and-set is an
``UPDATE ... WHERE version = :expected``; gc deletes one bounded, index-backed batch per
statement. Read, create, update, touch and count are one statement (one round trip) each;
rename and delete, rare and multi-step, are flows over several (:mod:`.moves`). Expiry is
compared with a ``now`` bound from Python, never the database clock, so app and database
time zones cannot disagree.

A row whose ``session_moved_to`` is set is a moved marker (see the repository contract):
every statement that looks for a session (``live``) skips it.

The user index is the ``session_user_id`` column and its index (user, expiry): ``create``
and ``rename`` write the owner columns, ``update`` and ``touch`` never do (they set
``session_seen``, in the statement they already run). The read returns the owner as one
more column, NULL for an unbound session: JSON text built by the server, parsed only when
there is an owner.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import (
    Delete,
    Executable,
    LargeBinary,
    Select,
    Table,
    Text,
    Update,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    null,
    select,
)
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import BindParameter

from ormsession.errors import StoreError
from ormsession.expiry import from_us
from ormsession.repositories.base import (
    REPLACED_ID_GRACE_US,
    OwnedSession,
    Owner,
    StoredSession,
)
from ormsession.repositories.sql.types import SessionBytes, us_from_column, us_from_text

__all__ = [
    "BUFFERED",
    "Query",
    "ResultLike",
    "RowReader",
    "SqlQueries",
    "SqlStatements",
    "columns_record",
    "owner_from_text",
    "packed_record",
    "pg_packed_record",
    "row_reader",
]

T = TypeVar("T")

logger = logging.getLogger("ormsession")

#: What parsing a row written by hand (or by a bug) can raise; such a row reads as absent.
_UNREADABLE = (ValueError, TypeError, OverflowError, IndexError, struct.error)


@dataclass(frozen=True, slots=True)
class SqlStatements:
    read: Select[Any]
    insert: Insert
    reclaim_expired_key: Delete
    update: Update
    touch: Update
    delete_record: Delete
    moved_to: Select[Any]
    delete_marker: Delete
    mark_moved: Update
    mark_moved_owned: Update
    mark_resealed: Update
    mark_resealed_owned: Update
    copy_moved: Insert
    copy_resealed: Insert
    clear_marker: Update
    moved: Select[Any]
    count: Select[Any]
    count_expired: Select[Any]
    sessions_of: Select[Any]
    owned_keys: Select[Any]
    owned_handle_keys: Select[Any]
    table: Table
    dialect_name: str

    def delete_expired(self, limit: int) -> Delete:
        """One gc batch of at most ``limit`` rows (cached: MySQL needs a literal LIMIT)."""
        return _delete_expired(self.table, self.dialect_name, limit)

    @classmethod
    def build(cls, table: Table, dialect_name: str) -> SqlStatements:
        c = table.c
        key: BindParameter[str] = bindparam("key")
        now: BindParameter[Any] = bindparam("now", type_=c.session_expiry.type)
        live = (c.session_key == key) & (c.session_expiry > now) & c.session_moved_to.is_(None)
        owner = _owner_text(table, dialect_name).label("session_owner")
        if dialect_name in ("mysql", "mariadb"):
            # PyMySQL decodes every result column's metadata, and every DATETIME, in Python:
            # one column, "version created expiry data" as bytes, reads ~12 µs faster than
            # four (see packed_record).
            packed = func.concat_ws(
                literal_column("' '"),  # a bound ' ' costs the server ~10 µs more a read
                c.session_version,
                c.session_created,
                c.session_expiry,
                c.session_data,
                type_=SessionBytes,
            )
            read = select(packed.label("session_packed"), owner).where(live)
        elif dialect_name == "postgresql":
            # asyncpg and psycopg build an aware datetime for each timestamptz: the four
            # columns cost the client 10-13 µs more CPU a read than one (measured on asyncpg).
            # The server's own binary send functions pack version
            # and both times (int8 µs since 2000-01-01) ahead of the data in one bytea
            # instead, read back with one struct unpack (see pg_packed_record).
            packed = _concat_bytes(
                func.int8send(c.session_version),
                func.timestamptz_send(c.session_created),
                func.timestamptz_send(c.session_expiry),
                c.session_data,
            )
            read = select(packed.label("session_packed"), owner).where(live)
        else:
            # SQLite keeps whatever type a value was written with: a TEXT value in the data
            # column would come back as str, or fail inside the driver (with the text in
            # its message) when it is not UTF-8. As a BLOB it is the bytes it holds.
            data = cast(c.session_data, SessionBytes) if dialect_name == "sqlite" else None
            read = select(
                c.session_data if data is None else data.label("session_data"),
                c.session_version,
                c.session_created,
                c.session_expiry,
                owner,
            ).where(live)
        return cls(
            read=read,
            insert=insert(table),
            reclaim_expired_key=delete(table).where(
                (c.session_key == key) & (c.session_expiry <= now)
            ),
            update=update_cas(table, live, now),
            touch=table.update()
            .where(live)
            .values(session_expiry=bindparam("expires_at"), session_seen=now),
            **_move_statements(table, live, now),
            **_user_statements(table, dialect_name, now),
            count=select(func.count())
            .select_from(table)
            .where((c.session_expiry > now) & c.session_moved_to.is_(None)),
            count_expired=select(func.count()).select_from(table).where(c.session_expiry <= now),
            table=table,
            dialect_name=dialect_name,
        )


def _concat_bytes(*parts: Any) -> Any:
    """``a || b || ...`` typed as the session's bytes (PostgreSQL bytea concatenation)."""
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.op("||", return_type=SessionBytes)(part)
    return joined


def _owner_text(table: Table, dialect_name: str) -> Any:
    """The owner as one JSON array (user id, handle, user agent, ip), or NULL when the
    row is not bound: any text survives the trip, and an unbound read parses nothing."""
    c = table.c
    fields = (c.session_user_id, c.session_handle, c.session_user_agent, c.session_ip)
    as_json: Any
    if dialect_name == "postgresql":
        # As text: psycopg2 and psycopg would parse a json column into a list themselves.
        as_json = cast(func.json_build_array(*fields), Text)
    else:
        as_json = func.json_array(*fields, type_=Text)
    return case((c.session_user_id.is_not(None), as_json), else_=null())


#: The owner columns a login writes (rename with an owner), bound from these parameters.
_OWNER_VALUES = {
    "session_user_id": "owner_user_id",
    "session_handle": "owner_handle",
    "session_user_agent": "owner_user_agent",
    "session_ip": "owner_ip",
}


def _owner_params(owner: Owner | None) -> dict[str, str | None]:
    if owner is None:
        return dict.fromkeys(_OWNER_VALUES.values())
    user_id, handle, user_agent, ip = owner
    return {
        "owner_user_id": user_id,
        "owner_handle": handle,
        "owner_user_agent": user_agent,
        "owner_ip": ip,
    }


def _exactly(column: Any, value: BindParameter[str], dialect_name: str) -> Any:
    """``column = value``, exactly. MySQL's and MariaDB's collations pad (``'bob' =
    'bob '`` even in utf8mb4_bin), so there the bytes are compared as well: the plain
    comparison still finds the index range, the binary one decides."""
    if dialect_name not in ("mysql", "mariadb"):
        return column == value
    return (column == value) & (cast(column, LargeBinary) == cast(value, LargeBinary))


def _user_statements(table: Table, dialect_name: str, now: Any) -> dict[str, Any]:
    """The user index's lookups: each one index range of (user, expiry)."""
    c = table.c
    user = _exactly(c.session_user_id, bindparam("user_id", type_=Text), dialect_name)
    handle = _exactly(c.session_handle, bindparam("handle", type_=Text), dialect_name)
    unexpired = c.session_expiry > now
    return {
        "sessions_of": select(
            c.session_key,
            c.session_user_id,
            c.session_handle,
            c.session_user_agent,
            c.session_ip,
            c.session_created,
            c.session_seen,
            c.session_expiry,
        )
        .where(user & unexpired & c.session_moved_to.is_(None))
        .order_by(c.session_created, c.session_key),
        # Sessions and the markers of renames in flight (only those keep an owner).
        "owned_keys": select(c.session_key, c.session_moved_to).where(user & unexpired),
        "owned_handle_keys": select(c.session_key, c.session_moved_to).where(
            user & handle & unexpired
        ),
    }


def _move_statements(table: Table, live: Any, now: Any) -> dict[str, Any]:
    """The steps of rename and delete (see :mod:`.moves` for how they combine)."""
    c = table.c
    key: BindParameter[str] = bindparam("key")
    new_key: BindParameter[str] = bindparam("new_key", type_=c.session_key.type)
    moved_here = (c.session_key == key) & (c.session_moved_to == new_key)
    resealable = live & (c.session_version == bindparam("expected_version"))
    marking = {
        "session_moved_to": new_key,
        "session_expiry": bindparam("expires_at"),
        "session_seen": now,
    }
    owning = {column: bindparam(name, type_=Text) for column, name in _OWNER_VALUES.items()}
    dropping = {"session_data": b""}
    return {
        # A session under key (live or expired), never a marker.
        "delete_record": delete(table).where((c.session_key == key) & c.session_moved_to.is_(None)),
        "moved_to": select(c.session_moved_to).where(c.session_key == key),
        "delete_marker": delete(table).where(moved_here),
        # Rename, step 1: the live session becomes a marker naming new_key, in one atomic
        # UPDATE that only one of several racing renames can make (the others find no live
        # row). It keeps its data and version until the copy is made.
        "mark_moved": table.update().where(live).values(**marking),
        # The same for a login: the marker takes the new owner at once, so the previous
        # owner's revoke no longer finds it, and the new owner's follows it to new_key.
        "mark_moved_owned": table.update().where(live).values(**marking, **owning),
        # A rename with data (re-sealed for new_key): the version check is in the statement
        # that decides the rename, so a write committed before it fails it (nothing
        # changed), and one after it finds no live row. The old bytes go at once (the copy
        # writes the new ones); the version stays for the copy to carry.
        "mark_resealed": table.update().where(resealable).values(**marking, **dropping),
        "mark_resealed_owned": table.update()
        .where(resealable)
        .values(**marking, **dropping, **owning),
        # Step 2: the session copied from its marker to new_key (the marker's expiry,
        # owner and last write are the rename's). Nothing is copied if a delete removed
        # the marker first.
        "copy_moved": _copy_moved(table, moved_here, new_key, c.session_data),
        # The same with the re-sealed bytes, bound: the old ones are gone from the marker.
        "copy_resealed": _copy_moved(
            table, moved_here, new_key, bindparam("data", type_=c.session_data.type)
        ),
        # Step 3: the marker drops the data, and leaves the user index (the copy is in it
        # now); no row means a delete removed the marker meanwhile, and may not have seen
        # the copy yet.
        "clear_marker": table.update()
        .where(moved_here)
        .values(
            session_data=b"",
            session_version=0,
            **dict.fromkeys(_OWNER_VALUES, null()),
        ),
        # An unexpired marker under key, left by a rename since the grace began (the
        # contract's moved()): step 1 wrote the rename's time into its session_seen. A
        # marker from before revision 0003 has none, and answers for its whole life.
        "moved": select(literal_column("1")).where(
            (c.session_key == key)
            & (c.session_expiry > bindparam("now"))
            & c.session_moved_to.is_not(None)
            & ((c.session_seen >= bindparam("since")) | c.session_seen.is_(None))
        ),
    }


def _copy_moved(table: Table, moved_here: Any, new_key: Any, data: Any) -> Insert:
    """``INSERT ... SELECT`` of the marker's session under ``new_key``, holding ``data``."""
    c = table.c
    return insert(table).from_select(
        [
            "session_key",
            "session_data",
            "session_expiry",
            "session_created",
            "session_version",
            *_OWNER_VALUES,
            "session_seen",
        ],
        select(
            new_key,
            data,
            c.session_expiry,
            c.session_created,
            c.session_version,
            *(c[column] for column in _OWNER_VALUES),
            c.session_seen,
        ).where(moved_here),
    )


def update_cas(table: Table, live: Any, now: Any) -> Update:
    c = table.c
    return (
        table.update()
        .where(live & (c.session_version == bindparam("expected_version")))
        .values(
            session_data=bindparam("data"),
            session_expiry=bindparam("expires_at"),
            session_version=c.session_version + 1,
            session_seen=now,
        )
    )


@lru_cache(maxsize=64)
def _delete_expired(table: Table, dialect_name: str, limit: int) -> Delete:
    """One batch of gc: at most ``limit`` expired rows, found through the expiry index."""
    c = table.c
    expired = c.session_expiry <= bindparam("now")
    if dialect_name in ("mysql", "mariadb"):
        # MySQL refuses LIMIT in a subquery of the table being deleted from, but has
        # DELETE ... ORDER BY ... LIMIT, which walks the index in order.
        # The option is read under the dialect's own name: mariadb:// URLs need theirs.
        return (
            delete(table)
            .where(expired)
            .with_dialect_options(mysql_limit=limit, mariadb_limit=limit)
        )
    batch = select(c.session_key).where(expired).limit(limit)
    if dialect_name == "postgresql":
        # SKIP LOCKED: gc running on several nodes at once shares the work instead of
        # queueing behind each other's row locks.
        batch = batch.with_for_update(skip_locked=True)
    return delete(table).where(c.session_key.in_(batch.scalar_subquery()))


class ResultLike(Protocol):
    """What queries read from a result: SQLAlchemy's CursorResult, or the DBAPI wrapper."""

    @property
    def rowcount(self) -> int: ...

    def first(self) -> Any: ...

    def all(self) -> Sequence[Any]: ...

    def scalar_one(self) -> Any: ...


#: Execution options for every statement ormsession runs through SQLAlchemy: an app's engine
#: may ask for server-side cursors for its own queries (``stream_results``, ``yield_per``),
#: which PostgreSQL opens only inside a transaction, the SQLAlchemy asyncio layer only for
#: ``stream()``, and which some drivers open for an INSERT too. Options given to
#: ``execute()`` win over the engine's.
BUFFERED: dict[str, Any] = {"stream_results": False, "yield_per": None}


@dataclass(frozen=True, slots=True)
class Query(Generic[T]):
    """One repository operation: a statement, its parameters, and how to read the result.

    Built by :class:`SqlQueries` and executed by the sync or the async repository, which
    differ only in how they get a connection and await it.
    """

    operation: str
    statement: Executable
    params: dict[str, Any]
    extract: Callable[[ResultLike], T]
    #: The statement returns any number of rows (the user index's lookups), not one.
    many: bool = False


def owner_from_text(text: str | None) -> Owner | None:
    """The owner column of a read (see ``_owner_text``): None for an unbound session."""
    if text is None:
        return None
    user_id, handle, user_agent, ip = json.loads(text)
    return Owner(user_id, handle, user_agent, ip)


def columns_record(row: Any) -> StoredSession | None:
    """The record in the read statement's row of five columns, as a driver or SQLAlchemy
    returned it (None: no row)."""
    if row is None:
        return None
    data, version, created, expires, owner = row
    try:
        # psycopg2 and asyncpg hand bytea back as memoryview/bytes; normalise to bytes.
        return StoredSession(
            _data_bytes(data),
            int(version),
            us_from_column(created),
            us_from_column(expires),
            owner_from_text(owner),
        )
    except _UNREADABLE as exc:
        _unreadable(exc)
        return None


def _data_bytes(data: Any) -> bytes:
    """The data column as bytes: a str (a TEXT value an app's own engine returned as such)
    is its UTF-8, which the serializer then judges like any stored bytes."""
    if type(data) is str:
        return data.encode("utf-8", "surrogatepass")
    return b"" if data is None else bytes(data)


def _unreadable(exc: Exception) -> None:
    """A row whose version or times cannot be parsed: nothing ormsession wrote. The session
    reads as absent, so the client gets a fresh one (and the row expires or is replaced)."""
    logger.warning(
        "unreadable session row (%s), treating the session as absent", type(exc).__name__
    )


#: PostgreSQL's packed read: int8 version, then created and expiry as timestamptz_send
#: gives them (int8 µs since 2000-01-01 UTC, the server's own representation), then data.
_PG_HEADER = struct.Struct(">qqq")
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in µs since the Unix epoch


def pg_packed_record(packed: bytes | memoryview, owner: Owner | None = None) -> StoredSession:
    """A PostgreSQL read (see :meth:`SqlStatements.build`): one bytea, header then data."""
    version, created, expires = _PG_HEADER.unpack_from(packed)
    # psycopg2 hands bytea back as a memoryview (sliced without a copy), asyncpg as bytes.
    data = bytes(packed[_PG_HEADER.size :])
    return StoredSession(data, version, created + _PG_EPOCH_US, expires + _PG_EPOCH_US, owner)


def packed_record(packed: bytes | None, owner: Owner | None = None) -> StoredSession:
    """A MySQL read: b"version created-date created-time expiry-date expiry-time data"
    (see :meth:`SqlStatements.build`); the data is everything after the fifth space."""
    if packed is None:
        # CONCAT_WS gives NULL when its result would exceed max_allowed_packet.
        raise StoreError(
            "a session row is larger than the MySQL server's max_allowed_packet; raise it, "
            "or lower max_data_bytes"
        )
    version, rest = bytes(packed).split(b" ", 1)
    if rest[26:27] == b" " == rest[53:54]:
        # DATETIME(6) prints fixed width, "YYYY-MM-DD HH:MM:SS.ffffff": slice, don't split.
        times = rest[:53].decode()
        created, expires = us_from_text(times[:26]), us_from_text(times[27:])
        return StoredSession(rest[54:], int(version), created, expires, owner)
    # Another precision (an app's own table): split on the spaces inside the times.
    created_day, created_time, expiry_day, expiry_time, data = rest.split(b" ", 4)
    created = us_from_text(f"{created_day.decode()} {created_time.decode()}")
    expires = us_from_text(f"{expiry_day.decode()} {expiry_time.decode()}")
    return StoredSession(data, int(version), created, expires, owner)


def _mysql_packed_row(row: Any) -> StoredSession | None:
    if row is None:
        return None
    try:
        return packed_record(row[0], owner_from_text(row[1]))
    except _UNREADABLE as exc:
        _unreadable(exc)
        return None


def _pg_packed_row(row: Any) -> StoredSession | None:
    if row is None:
        return None
    try:
        return pg_packed_record(row[0], owner_from_text(row[1]))
    except _UNREADABLE as exc:
        _unreadable(exc)
        return None


RowReader = Callable[[Any], StoredSession | None]

#: How each dialect's read row holds the record; the others return four columns.
_ROW_READERS: dict[str, RowReader] = {
    "mysql": _mysql_packed_row,
    "mariadb": _mysql_packed_row,
    "postgresql": _pg_packed_row,
}


def row_reader(dialect_name: str) -> RowReader:
    """The record in a row of the read statement, as a driver or SQLAlchemy returned it
    (None: no row). The read runs on every request: the DBAPI paths call this on the
    driver's own row, skipping the generic result handling."""
    return _ROW_READERS.get(dialect_name, columns_record)


def _one_row(result: ResultLike) -> bool:
    return result.rowcount == 1


def _rowcount(result: ResultLike) -> int:
    return result.rowcount


def _scalar_int(result: ResultLike) -> int:
    return int(result.scalar_one())


def _nothing(result: ResultLike) -> None:
    return None


def _has_row(result: ResultLike) -> bool:
    return result.first() is not None


def _first_row(result: ResultLike) -> Any:
    row = result.first()
    return None if row is None else tuple(row)


def _key_pairs(result: ResultLike) -> list[tuple[str, str | None]]:
    return [(key, moved_to) for key, moved_to in result.all()]


def _owned_sessions(result: ResultLike) -> list[OwnedSession]:
    owned = []
    for key, user_id, handle, user_agent, ip, created, seen, expires in result.all():
        created_us = us_from_column(created)
        owned.append(
            OwnedSession(
                key,
                Owner(user_id, handle, user_agent, ip),
                created_us,
                # Written before revision 0003 (and never since): its creation is all we know.
                created_us if seen is None else us_from_column(seen),
                us_from_column(expires),
            )
        )
    return owned


class SqlQueries:
    """The contract's operations as :class:`Query` objects for one table and dialect.

    Times come in as µs (the contract's) and are bound as aware UTC datetimes, the
    columns' own type (:class:`~ormsession.repositories.sql.types.UTCDateTime`)."""

    __slots__ = ("_read_row", "_sql")

    def __init__(self, table: Table, dialect_name: str) -> None:
        self._sql = SqlStatements.build(table, dialect_name)
        self._read_row = row_reader(dialect_name)

    @property
    def read_statement(self) -> Select[Any]:
        return self._sql.read

    def _record_in(self, result: ResultLike) -> StoredSession | None:
        return self._read_row(result.first())

    def read(self, key: str, now_us: int) -> Query[StoredSession | None]:
        params = {"key": key, "now": from_us(now_us)}
        return Query("read", self._sql.read, params, self._record_in)

    def insert(self, key: str, record: StoredSession, now_us: int) -> Query[None]:
        owner = record.owner
        values = {
            "session_key": key,
            "session_data": record.data,
            "session_version": record.version,
            "session_created": from_us(record.created_us),
            "session_expiry": from_us(record.expires_us),
            "session_moved_to": None,  # a session, not a marker
            "session_seen": from_us(now_us),
            "session_user_id": None if owner is None else owner.user_id,
            "session_handle": None if owner is None else owner.handle,
            "session_user_agent": None if owner is None else owner.user_agent,
            "session_ip": None if owner is None else owner.ip,
        }
        return Query("create", self._sql.insert, values, _nothing)

    def reclaim_expired_key(self, key: str, now_us: int) -> Query[bool]:
        params = {"key": key, "now": from_us(now_us)}
        return Query("create", self._sql.reclaim_expired_key, params, _one_row)

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> Query[bool]:
        params = {
            "key": key,
            "now": from_us(now_us),
            "data": data,
            "expires_at": from_us(expires_us),
            "expected_version": expected_version,
        }
        return Query("update", self._sql.update, params, _one_row)

    def touch(self, key: str, expires_us: int, now_us: int) -> Query[bool]:
        params = {"key": key, "now": from_us(now_us), "expires_at": from_us(expires_us)}
        return Query("touch", self._sql.touch, params, _one_row)

    def delete_record(self, key: str) -> Query[bool]:
        return Query("delete", self._sql.delete_record, {"key": key}, _one_row)

    def moved_to(self, key: str) -> Query[tuple[str | None] | None]:
        """What is under ``key``: no row (None), a session (``(None,)``) or a marker
        (``(new_key,)``)."""
        return Query("delete", self._sql.moved_to, {"key": key}, _first_row)

    def delete_marker(self, key: str, moved_to: str) -> Query[bool]:
        params = {"key": key, "new_key": moved_to}
        return Query("delete", self._sql.delete_marker, params, _one_row)

    def mark_moved(
        self,
        old_key: str,
        new_key: str,
        expires_us: int,
        now_us: int,
        owner: Owner | None = None,
        expected_version: int | None = None,
        *,
        resealed: bool = False,
    ) -> Query[bool]:
        """Rename's step 1; ``resealed`` (a rename with data): only at ``expected_version``,
        and the marker drops the old bytes at once."""
        params: dict[str, Any] = {
            "key": old_key,
            "new_key": new_key,
            "now": from_us(now_us),
            "expires_at": from_us(expires_us),
        }
        if resealed:
            params["expected_version"] = expected_version
        if owner is None:
            statement = self._sql.mark_resealed if resealed else self._sql.mark_moved
            return Query("rename", statement, params, _one_row)
        params |= _owner_params(owner)
        statement = self._sql.mark_resealed_owned if resealed else self._sql.mark_moved_owned
        return Query("rename", statement, params, _one_row)

    def copy_moved(self, old_key: str, new_key: str, data: bytes | None = None) -> Query[bool]:
        """Rename's step 2: the marked session under ``new_key``, with ``data`` if given
        (else the marker's own bytes)."""
        params: dict[str, Any] = {"key": old_key, "new_key": new_key}
        if data is None:
            return Query("rename", self._sql.copy_moved, params, _one_row)
        params["data"] = data
        return Query("rename", self._sql.copy_resealed, params, _one_row)

    def clear_marker(self, old_key: str, new_key: str) -> Query[bool]:
        params = {"key": old_key, "new_key": new_key}
        return Query("rename", self._sql.clear_marker, params, _one_row)

    def moved(self, key: str, now_us: int) -> Query[bool]:
        since = from_us(now_us - REPLACED_ID_GRACE_US)
        params = {"key": key, "now": from_us(now_us), "since": since}
        return Query("moved", self._sql.moved, params, _has_row)

    def sessions_of(self, user_id: str, now_us: int) -> Query[list[OwnedSession]]:
        params = {"user_id": user_id, "now": from_us(now_us)}
        return Query("sessions_of", self._sql.sessions_of, params, _owned_sessions, many=True)

    def owned_keys(
        self, operation: str, user_id: str, handle: str | None, now_us: int
    ) -> Query[list[tuple[str, str | None]]]:
        """The keys of the user's sessions (with ``handle``, if given) and of the markers
        of their renames in flight: ``(key, moved_to)`` pairs."""
        params = {"user_id": user_id, "now": from_us(now_us)}
        if handle is None:
            return Query(operation, self._sql.owned_keys, params, _key_pairs, many=True)
        statement = self._sql.owned_handle_keys
        return Query(operation, statement, params | {"handle": handle}, _key_pairs, many=True)

    def count(self, now_us: int) -> Query[int]:
        return Query("count", self._sql.count, {"now": from_us(now_us)}, _scalar_int)

    def count_expired(self, now_us: int) -> Query[int]:
        return Query("count", self._sql.count_expired, {"now": from_us(now_us)}, _scalar_int)

    def delete_expired(self, now_us: int, limit: int) -> Query[int]:
        params = {"now": from_us(now_us)}
        return Query("gc", self._sql.delete_expired(limit), params, _rowcount)
