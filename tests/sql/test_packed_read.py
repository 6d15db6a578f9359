"""The MySQL/MariaDB read returns one packed column; the parser must give the record back
intact whatever bytes the data holds (no database needed for these)."""

from __future__ import annotations

import datetime as dt

import pytest

from ormsession.errors import StoreError
from ormsession.repositories.sql.statements import packed_record


@pytest.mark.parametrize(
    "data",
    [b'{"a":"x y"}', b"", b" leading and trailing ", b"\x00\xff binary \x20\x20", b"  "],
)
def test_a_packed_row_parses_back_to_the_record(data: bytes) -> None:
    packed = b"42 2026-11-25 15:00:00.000001 2026-11-26 15:00:00.123456 " + data
    record = packed_record(packed)
    assert record.data == data and record.version == 42
    assert record.created_at == dt.datetime(2026, 11, 25, 15, 0, 0, 1, tzinfo=dt.UTC)
    assert record.expires_at == dt.datetime(2026, 11, 26, 15, 0, 0, 123456, tzinfo=dt.UTC)


def test_a_row_too_large_for_the_packet_is_a_clear_store_error() -> None:
    with pytest.raises(StoreError, match="max_allowed_packet"):
        packed_record(None)
