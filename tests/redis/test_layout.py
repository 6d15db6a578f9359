"""The I/O-free part of the Redis store: key layout, prefix validation, record encoding."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from redis.crc import key_slot

from ormsession.errors import ConfigurationError
from ormsession.expiry import US_PER_SECOND, to_us
from ormsession.ids import SessionIds, storage_key
from ormsession.repositories.base import Owner, StoredSession
from ormsession.repositories.buckets import DEFAULT_RESOLUTION, UNCOUNTED, place
from ormsession.repositories.redis.base import (
    MAX_PREFIX_LENGTH,
    SHARDS,
    KeyLayout,
    Marker,
    decode_marker,
    decode_record,
    encode_marker,
    encode_record,
    stored_bucket,
    ttl_millis,
    validate_key_prefix,
)
from ormsession.repositories.redis.users import HEAD_BYTES, decode_head

DAY = 86_400 * US_PER_SECOND


def test_keys_share_a_hash_tag_with_their_index_and_parking_key() -> None:
    layout = KeyLayout("app:")
    key = storage_key(SessionIds().generate())
    session, index, parking = layout.session(key), layout.index_of(key), layout.parking(key)
    assert session == f"app:{{{key[:2]}}}:{key}"
    assert index == f"app:{{{key[:2]}}}:index"
    assert parking == f"app:{{{key[:2]}}}:moving:{key}"
    assert key_slot(session.encode()) == key_slot(index.encode()) == key_slot(parking.encode())


def test_the_shards_cover_every_key_and_spread_over_the_slot_space() -> None:
    layout = KeyLayout()
    indexes = layout.all_indexes()
    assert len(indexes) == len(set(indexes)) == SHARDS
    for n in range(200):
        key = storage_key(f"id-{n}")
        assert layout.index_of(key) in indexes
    # The default three-master split of the slot space gets a fair share of the tags.
    thirds = [0, 0, 0]
    for index in indexes:
        thirds[min(2, key_slot(index.encode()) * 3 // 16384)] += 1
    assert all(SHARDS // 3 - 25 <= third <= SHARDS // 3 + 25 for third in thirds), thirds


def test_keys_other_than_64_hex_are_refused() -> None:
    layout = KeyLayout()
    for bad in ("", "x" * 64, "A" * 64, "a" * 63, "a" * 64 + "}", "ab*" + "a" * 61):
        with pytest.raises(ValueError, match="64 lowercase hex"):
            layout.session(bad)


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("", "must not be empty"),
        ("app *", "printable ASCII without spaces"),
        ("app\n", "printable ASCII"),
        ("säx:", "printable ASCII"),
        ("app*:", "must not contain"),
        ("app?:", "must not contain"),
        ("app[1]:", "must not contain"),
        ("{app}:", "must not contain"),
        ("app\\:", "must not contain"),
        ("a" * (MAX_PREFIX_LENGTH + 1), "longer than"),
    ],
)
def test_bad_prefixes_are_refused(prefix: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="key_prefix") as caught:
        validate_key_prefix(prefix)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "prefix", ["ormsession:", "a", "my-app/sessions:", "x" * MAX_PREFIX_LENGTH]
)
def test_good_prefixes_are_kept(prefix: str) -> None:
    assert validate_key_prefix(prefix) == prefix


def test_records_round_trip_exactly() -> None:
    created = to_us(datetime(2026, 11, 3, 4, 5, 6, 789012, tzinfo=UTC))
    record = StoredSession(bytes(range(256)), 2**40 + 3, created, created + 30 * DAY)
    bucket = place(record.expires_us, created, DEFAULT_RESOLUTION)
    raw = encode_record(record, bucket)
    assert len(raw) == 34 + 256
    assert decode_record(raw) == record
    assert stored_bucket(raw) == bucket and bucket.holds(record.expires_us)
    with pytest.raises(ValueError, match="before 1970"):
        encode_record(record._replace(created_us=-1), bucket)


@pytest.mark.parametrize(
    "owner",
    [
        Owner("42", "h" * 22),
        Owner("ü {tag}:" + "é" * 240, "H" * 32, "a" * 512, "2001:db8::1"),
        Owner("\U0001f600" * 255, "h" * 22, "\U0001f600" * 512, "\U0001f600" * 45),
    ],
)
def test_bound_records_round_trip_with_owner_and_last_write(owner: Owner) -> None:
    created = to_us(datetime(2026, 11, 3, 4, 5, 6, 789012, tzinfo=UTC))
    record = StoredSession(b"\x00data", 9, created, created + DAY, owner)
    bucket = place(record.expires_us, created, DEFAULT_RESOLUTION)
    raw = encode_record(record, bucket, created + 5)
    assert raw[0] == 4 and decode_record(raw) == record and stored_bucket(raw) == bucket
    head = decode_head(raw)
    assert head is not None and (head.seen_us, head.owner) == (created + 5, owner)
    assert len(raw) - len(record.data) <= HEAD_BYTES, "a Cluster listing reads all of it"
    cut = decode_head(raw[: head.data_at])
    assert cut is not None and cut.owner == owner
    assert decode_record(raw[: head.data_at - 1]) is None, "a cut owner is no record"


def test_values_in_another_format_are_not_records() -> None:
    assert decode_record(b"") is None
    assert decode_record(b"\x01short") is None
    assert decode_record(b"\x02" + bytes(24)) is None
    assert decode_record(b'{"gob": "beego wrote this"}') is None
    # A 25-byte header without a count bucket, marked 1: no such value is ours.
    other = struct.pack(">BQQQ", 1, 7, 1_700_000_000_000_000, 1_700_086_400_000_001) + b"{}"
    assert decode_record(other) is None
    assert stored_bucket(other) == UNCOUNTED


def test_a_moved_marker_names_the_new_key_its_expiry_and_the_renames_time() -> None:
    new = storage_key(SessionIds().generate())
    renamed = to_us(datetime(2026, 11, 3, 3, 5, 6, 789012, tzinfo=UTC))
    expires = renamed + 3600 * 1_000_000
    raw = encode_marker(new, expires, renamed)
    assert raw == b"\x03" + struct.pack(">QQ", expires, renamed) + new.encode()
    assert len(raw) == 81
    assert decode_marker(raw) == (new, expires, renamed)
    assert decode_marker(raw) == Marker(to=new, expires_us=expires, renamed_us=renamed)
    assert decode_record(raw) is None and stored_bucket(raw) == UNCOUNTED
    assert decode_marker(raw + b"x") is None, "a marker has exactly one length"
    assert decode_marker(raw[:73]) is None
    assert decode_marker(b"\x02" + raw[1:]) is None
    assert decode_marker(b"\x03" + bytes(16) + b"g" * 64) is None, "names no session key"
    record = StoredSession(bytes(47), 1, expires, expires)
    assert decode_marker(encode_record(record, UNCOUNTED)) is None, "81 bytes, format 2"


def test_ttl_is_rounded_up_and_never_zero() -> None:
    now = to_us(datetime(2026, 1, 1, tzinfo=UTC))
    assert ttl_millis(now + 90 * US_PER_SECOND, now) == 90_000
    assert ttl_millis(now + 1500, now) == 2
    assert ttl_millis(now + 1, now) == 1
    assert ttl_millis(now, now) == 1
    assert ttl_millis(now - 3600 * US_PER_SECOND, now) == 1
