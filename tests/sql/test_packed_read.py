"""The MySQL/MariaDB read returns one packed column; the parser must give the record back
intact whatever bytes the data holds (no database needed for these)."""

from __future__ import annotations

import datetime as dt

import pytest

from ormsession.errors import StoreError
from ormsession.expiry import to_us
from ormsession.repositories.sql.statements import packed_record
from ormsession.repositories.sql.types import naive_from_us, us_from_column


@pytest.mark.parametrize(
    "data",
    [b'{"a":"x y"}', b"", b" leading and trailing ", b"\x00\xff binary \x20\x20", b"  "],
)
def test_a_packed_row_parses_back_to_the_record(data: bytes) -> None:
    packed = b"42 2026-11-25 15:00:00.000001 2026-11-26 15:00:00.123456 " + data
    record = packed_record(packed)
    assert record.data == data and record.version == 42
    assert record.created_us == to_us(dt.datetime(2026, 11, 25, 15, 0, 0, 1, tzinfo=dt.UTC))
    assert record.expires_us == to_us(dt.datetime(2026, 11, 26, 15, 0, 0, 123456, tzinfo=dt.UTC))


def test_a_row_too_large_for_the_packet_is_a_clear_store_error() -> None:
    with pytest.raises(StoreError, match="max_allowed_packet"):
        packed_record(None)


@pytest.mark.parametrize("fraction", ["", ".1", ".123", ".12345"])
def test_other_datetime_precisions_parse_too(fraction: str) -> None:
    # An app's own table may have DATETIME columns of another precision than ours (6).
    packed = f"7 2026-11-25 15:00:00{fraction} 2026-11-26 16:30:00{fraction} a b".encode()
    record = packed_record(packed)
    micros = int((fraction[1:] or "0").ljust(6, "0"))
    assert record.data == b"a b" and record.version == 7
    created = dt.datetime(2026, 11, 25, 15, 0, 0, micros, tzinfo=dt.UTC)
    assert record.created_us == to_us(created)
    assert record.expires_us == to_us(dt.datetime(2026, 11, 26, 16, 30, 0, micros, tzinfo=dt.UTC))


def test_time_columns_in_every_driver_form_read_as_the_same_microseconds() -> None:
    moment = dt.datetime(2026, 11, 25, 15, 0, 0, 654321, tzinfo=dt.UTC)
    forms = [
        "2026-11-25 15:00:00.654321",  # SQLite's text
        moment.replace(tzinfo=None),  # MySQL's naive UTC DATETIME
        moment,  # PostgreSQL's timestamptz in a UTC session
        moment.astimezone(dt.timezone(dt.timedelta(hours=9))),  # ... in another session zone
    ]
    assert {us_from_column(form) for form in forms} == {to_us(moment)}
    assert naive_from_us(to_us(moment)) == moment.replace(tzinfo=None)
