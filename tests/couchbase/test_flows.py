"""The sans-I/O flows, driven by a script: the races a live server cannot be made to hit on
cue (a write between our read and our compare-and-set, a stale CAS hint), the order of the
counter operations around each write, and the pure parts (counters, record format, cache)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.flows import run
from ormsession.repositories.base import REPLACED_ID_GRACE_US, StoredSession
from ormsession.repositories.couchbase import flows
from ormsession.repositories.couchbase.base import (
    Count,
    Doc,
    Flow,
    Get,
    GetMany,
    Insert,
    KvOp,
    Marker,
    Pause,
    Remove,
    Replace,
    decode_marker,
    decode_record,
    encode_marker,
    encode_record,
)
from ormsession.repositories.couchbase.cache import Hint, HintCache
from ormsession.repositories.couchbase.counters import (
    UNCOUNTED,
    Bucket,
    counter_expiry,
    counter_value,
    decode_levels,
    encode_levels,
    expiry_for,
    live_buckets,
    place,
    raise_horizon,
    target,
)

OLD, NEW, NEWER = "a" * 64, "b" * 64, "c" * 64
LEVELS = "p:count:levels"
SECOND = US_PER_SECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
Step = tuple[Callable[[KvOp], bool], Any]


def context(*, registered: bool = True) -> flows.Context:
    """A fresh context; ``registered``: as if every bucket were in the levels document
    already (most tests are not about registering)."""
    ctx = flows.Context("p:")
    if registered:
        ctx.registered = dict.fromkeys(range(26), 1 << 62)
    return ctx


def drive(flow: Flow[Any], script: list[Step]) -> tuple[Any, list[KvOp]]:
    """Run ``flow``, checking each op it yields against the script and answering it (an
    exception in the script is raised, as the repositories raise SDK failures)."""
    seen: list[KvOp] = []

    def perform(op: KvOp) -> Any:
        seen.append(op)
        assert script, f"unexpected op {op}"
        matches, answer = script.pop(0)
        assert matches(op), op
        if isinstance(answer, BaseException):
            raise answer
        return answer

    result = run(flow, perform)
    assert not script, f"flow ended before {len(script)} more steps"
    return result, seen


def is_(kind: type, key: str | None = None, **fields: Any) -> Callable[[KvOp], bool]:
    def check(op: KvOp) -> bool:
        return (
            isinstance(op, kind)
            and (key is None or getattr(op, "key", None) == key)
            and all(getattr(op, name) == value for name, value in fields.items())
        )

    return check


def counter(bucket: Bucket) -> str:
    return f"p:count:{bucket.level}:{bucket.end}"


def incr(bucket: Bucket) -> Callable[[KvOp], bool]:
    return is_(Count, counter(bucket), delta=1)


def decr(bucket: Bucket) -> Callable[[KvOp], bool]:
    return is_(Count, counter(bucket), delta=-1)


def stored(now: int, version: int = 1, data: bytes = b"d") -> StoredSession:
    return StoredSession(data, version, now - MINUTE, now + HOUR)


def mid_bucket_now() -> int:
    """A now near the real clock whose ``now + HOUR`` (the expiry of :func:`stored`) lies
    one second into its count bucket, so an expiry a second later stays in that bucket.
    (Buckets are 2**n seconds aligned to the epoch; with the real clock's now, 1 run in 64
    put the expiry in its bucket's last second.)"""
    aligned = now_us() // (4096 * SECOND) * (4096 * SECOND)
    return aligned + SECOND - HOUR


def bucket_of(record: StoredSession, now: int) -> Bucket:
    return place(record.expires_us, now, 32)


def doc(record: StoredSession, cas: int, bucket: Bucket | None = None) -> Doc:
    return Doc(encode_record(record, bucket if bucket is not None else UNCOUNTED), cas)


def hint(record: StoredSession, cas: int, bucket: Bucket) -> Hint:
    return Hint(cas, record.version, record.created_us, record.expires_us, bucket)


# -- read: the record, and a hint for the save that usually follows ------------------------
def test_a_read_returns_the_record_and_remembers_its_document() -> None:
    now, ctx = mid_bucket_now(), context()
    current = stored(now, version=4, data=b'{"n": 1}')
    bucket = bucket_of(current, now)
    assert flows.record_read(ctx, OLD, doc(current, 10, bucket), now) == current
    # What the next update's guarded replace needs: the CAS, the header and the bucket.
    assert ctx.cache.get(OLD) == hint(current, 10, bucket)


@pytest.mark.parametrize("why", ["missing", "expired", "foreign", "moved"])
def test_a_read_with_nothing_live_is_none_and_remembers_nothing(
    why: str, caplog: pytest.LogCaptureFixture
) -> None:
    now, ctx = mid_bucket_now(), context()
    found = {
        "missing": None,
        "expired": doc(StoredSession(b"d", 1, now - HOUR, now), 10),  # expires at now
        "foreign": Doc(b'{"not": "ours"}', 10),
        "moved": Doc(encode_marker(NEW, now + HOUR, now), 10),
    }[why]
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        assert flows.record_read(ctx, OLD, found, now) is None
    assert ctx.cache.get(OLD) is None
    # Only a document that is not ours is worth a warning; a moved marker is a plain miss.
    assert ("not an ormsession record" in caplog.text) is (why == "foreign")


# -- update: one round trip on a warm hint, the old loop otherwise --------------------------
def test_update_with_a_current_hint_is_one_replace() -> None:
    now, ctx = mid_bucket_now(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    ctx.cache.put(OLD, hint(current, 10, bucket))
    new_expiry = current.expires_us + SECOND  # a second later: same bucket
    assert bucket.holds(new_expiry)
    written = encode_record(StoredSession(b"new", 2, current.created_us, new_expiry), bucket)
    result, ops = drive(
        flows.update(ctx, OLD, b"new", new_expiry, 1, now),
        [(is_(Replace, "p:" + OLD, cas=10, value=written), 11)],
    )
    assert result == 2 and len(ops) == 1
    assert ctx.cache.get(OLD) == Hint(11, 2, current.created_us, new_expiry, bucket)


def test_a_stale_hint_falls_back_to_reading_the_document() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    ctx.cache.put(OLD, hint(current, 10, bucket))
    touched = current._replace(expires_us=current.expires_us + SECOND)
    result, _ = drive(
        flows.update(ctx, OLD, b"new", current.expires_us, 1, now),
        [
            (is_(Replace, cas=10), None),  # another process touched it: the CAS moved
            (is_(Get, "p:" + OLD), doc(touched, 12, bucket)),  # still version 1
            (is_(Replace, cas=12), 13),
        ],
    )
    assert result == 2


def test_a_stale_hint_never_overwrites_a_newer_version() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    ctx.cache.put(OLD, hint(current, 10, bucket_of(current, now)))
    result, _ = drive(
        flows.update(ctx, OLD, b"mine", current.expires_us, 1, now),
        [
            (is_(Replace, cas=10), None),
            (is_(Get), doc(stored(now, version=2), 12)),  # another process updated it
        ],
    )
    assert result is None
    remembered = ctx.cache.get(OLD)
    assert remembered is not None and (remembered.cas, remembered.version) == (12, 2)


def test_a_stale_hint_on_a_deleted_document_is_none() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    ctx.cache.put(OLD, hint(current, 10, bucket_of(current, now)))
    result, _ = drive(
        flows.update(ctx, OLD, b"mine", current.expires_us, 1, now),
        [(is_(Replace, cas=10), None), (is_(Get), None)],
    )
    assert result is None


@pytest.mark.parametrize("why", ["other version", "expired by now"])
def test_a_hint_that_cannot_answer_is_not_tried(why: str) -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    if why == "other version":
        ctx.cache.put(OLD, hint(current._replace(version=3), 10, UNCOUNTED))
    else:
        ctx.cache.put(OLD, hint(current._replace(expires_us=now), 10, UNCOUNTED))
    result, ops = drive(
        flows.update(ctx, OLD, b"x", current.expires_us, 1, now),
        [(is_(Get), doc(current, 11, bucket_of(current, now))), (is_(Replace, cas=11), 12)],
    )
    assert result == 2 and isinstance(ops[0], Get)


def test_update_retries_after_a_concurrent_touch() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    touched = current._replace(expires_us=current.expires_us + SECOND)
    result, _ = drive(
        flows.update(ctx, OLD, b"new", current.expires_us, 1, now),
        [
            (is_(Get, "p:" + OLD), doc(current, 10, bucket)),
            (is_(Replace, "p:" + OLD, cas=10), None),  # a touch moved the CAS meanwhile
            (is_(Get, "p:" + OLD), doc(touched, 11, bucket)),  # same version: try again
            (is_(Replace, "p:" + OLD, cas=11), 12),
        ],
    )
    assert result == 2


def test_update_loses_to_a_concurrent_update() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    result, _ = drive(
        flows.update(ctx, OLD, b"new", current.expires_us, 1, now),
        [
            (is_(Get), doc(current, 10, bucket_of(current, now))),
            (is_(Replace, cas=10), None),
            (is_(Get), doc(stored(now, version=2), 11)),  # the version moved: we lost
        ],
    )
    assert result is None


# -- counting around writes ---------------------------------------------------------------
def test_a_write_that_leaves_its_bucket_counts_first_and_uncounts_after() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    old = bucket_of(current, now)
    later = now + 2 * HOUR
    new = bucket_of(current._replace(expires_us=later), now)
    assert new != old
    ctx.cache.put(OLD, hint(current, 10, old))
    written = encode_record(StoredSession(b"x", 2, current.created_us, later), new)
    result, _ = drive(
        flows.update(ctx, OLD, b"x", later, 1, now),
        [
            (incr(new), True),
            (is_(Replace, cas=10, value=written), 11),
            (decr(old), True),
        ],
    )
    assert result == 2


def test_a_lost_compare_and_set_undoes_its_increment() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    old = bucket_of(current, now)
    later = now + 2 * HOUR
    new = bucket_of(current._replace(expires_us=later), now)
    ctx.cache.put(OLD, hint(current, 10, old))
    result, _ = drive(
        flows.update(ctx, OLD, b"x", later, 1, now),
        [
            (incr(new), True),
            (is_(Replace, cas=10), None),
            (decr(new), True),  # undone: the document did not move there
            (is_(Get), doc(stored(now, version=2), 12, old)),
        ],
    )
    assert result is None


def test_a_failed_increment_keeps_the_session_in_its_old_bucket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    old = bucket_of(current, now)
    later = now + 2 * HOUR
    ctx.cache.put(OLD, hint(current, 10, old))
    written = encode_record(StoredSession(b"x", 2, current.created_us, later), old)
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        result, _ = drive(
            flows.update(ctx, OLD, b"x", later, 1, now),
            [
                (is_(Count, delta=1), StoreUnavailableError("down")),
                (is_(Replace, cas=10, value=written), 11),  # no decrement follows
            ],
        )
    assert result == 2
    assert "could not count a couchbase session" in caplog.text


def test_a_failed_decrement_is_logged_and_the_write_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    later = now + 2 * HOUR
    ctx.cache.put(OLD, hint(current, 10, bucket_of(current, now)))
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        result, _ = drive(
            flows.update(ctx, OLD, b"x", later, 1, now),
            [
                (is_(Count, delta=1), True),
                (is_(Replace), 11),
                (is_(Count, delta=-1), StoreUnavailableError("down")),
            ],
        )
    assert result == 2
    assert "could not uncount a couchbase session" in caplog.text


def test_an_uncounted_session_is_counted_at_its_next_write() -> None:
    now, ctx = mid_bucket_now(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    result, _ = drive(
        flows.touch(ctx, OLD, current.expires_us + SECOND, now),
        [
            (is_(Get), doc(current, 10, UNCOUNTED)),  # e.g. after a failed count
            (incr(bucket), True),
            (is_(Replace, cas=10), 11),  # nothing to decrement
        ],
    )
    assert result is True


def test_a_new_bucket_is_registered_before_it_is_counted() -> None:
    now, ctx = now_us(), context(registered=False)
    record = stored(now)
    bucket = bucket_of(record, now)
    levels = encode_levels({bucket.level: bucket.end})
    result, _ = drive(
        flows.create(ctx, OLD, record, now),
        [
            (is_(Get, LEVELS, json=True), None),
            (is_(Insert, LEVELS, json=True, value=levels), 5),
            (incr(bucket), True),
            (is_(Insert, "p:" + OLD, value=encode_record(record, bucket)), 6),
        ],
    )
    assert result is True
    # Known now: the next session in that bucket registers nothing.
    result, _ = drive(
        flows.create(ctx, NEW, record, now),
        [(incr(bucket), True), (is_(Insert, "p:" + NEW), 7)],
    )
    assert result is True


def test_registering_retries_conflicts_with_backoff() -> None:
    now, ctx = now_us(), context(registered=False)
    record = stored(now)
    bucket = bucket_of(record, now)
    other = encode_levels({0: bucket.end})
    result, _ = drive(
        flows.create(ctx, OLD, record, now),
        [
            (is_(Get, LEVELS), Doc(other, 30)),
            (is_(Replace, LEVELS, cas=30), None),  # another writer registered meanwhile
            (is_(Pause), None),
            (is_(Get, LEVELS), Doc(encode_levels({0: 1, bucket.level: bucket.end}), 31)),
            (incr(bucket), True),  # covered now: nothing to write
            (is_(Insert, "p:" + OLD), 6),
        ],
    )
    assert result is True


# -- create ------------------------------------------------------------------------------
def test_create_replaces_an_expired_document_by_its_cas() -> None:
    now, ctx = now_us(), context()
    expired = stored(now)._replace(expires_us=now - SECOND)
    expired_bucket = place(expired.expires_us, now - HOUR, 32)
    new = stored(now, data=b"fresh")
    bucket = bucket_of(new, now)
    result, _ = drive(
        flows.create(ctx, OLD, new, now),
        [
            (incr(bucket), True),
            (is_(Insert, "p:" + OLD), None),
            (is_(Get, "p:" + OLD), doc(expired, 5, expired_bucket)),
            (is_(Replace, "p:" + OLD, cas=5, value=encode_record(new, bucket)), 6),
            (decr(expired_bucket), True),  # the expired one is gone: uncount it
        ],
    )
    assert result is True


def test_create_inserts_again_when_the_blocking_document_vanished() -> None:
    now, ctx = now_us(), context()
    result, _ = drive(
        flows.create(ctx, OLD, stored(now), now),
        [(is_(Count), True), (is_(Insert), None), (is_(Get), None), (is_(Insert), 7)],
    )
    assert result is True


def test_create_refused_by_a_live_record_undoes_its_count() -> None:
    now, ctx = now_us(), context()
    record = stored(now)
    bucket = bucket_of(record, now)
    result, _ = drive(
        flows.create(ctx, OLD, record, now),
        [
            (incr(bucket), True),
            (is_(Insert), None),
            (is_(Get), doc(stored(now, data=b"theirs"), 5, bucket)),
            (decr(bucket), True),
        ],
    )
    assert result is False


def test_create_refused_by_an_unexpired_moved_marker_undoes_its_count() -> None:
    now, ctx = now_us(), context()
    record = stored(now)
    bucket = bucket_of(record, now)
    result, _ = drive(
        flows.create(ctx, OLD, record, now),
        [
            (incr(bucket), True),
            (is_(Insert), None),
            # Renamed long before (moved() no longer answers): the key stays refused.
            (is_(Get), Doc(encode_marker(NEW, now + SECOND, now - HOUR), 5)),
            (decr(bucket), True),
        ],
    )
    assert result is False and ctx.cache.get(OLD) is None


def test_create_replaces_an_expired_moved_marker_by_its_cas() -> None:
    now, ctx = now_us(), context()
    record = stored(now)
    bucket = bucket_of(record, now)
    result, _ = drive(
        flows.create(ctx, OLD, record, now),
        [
            (incr(bucket), True),
            (is_(Insert), None),
            (is_(Get), Doc(encode_marker(NEW, now, now - HOUR), 5)),  # expires at now
            (is_(Replace, "p:" + OLD, cas=5, value=encode_record(record, bucket)), 6),
            # no decrement: a marker is counted nowhere
        ],
    )
    assert result is True


# -- delete -------------------------------------------------------------------------------
def test_delete_with_a_hint_removes_by_its_cas_and_uncounts() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    ctx.cache.put(OLD, hint(current, 10, bucket))
    _, ops = drive(
        flows.delete(ctx, OLD),
        [(is_(Remove, "p:" + OLD, cas=10), True), (decr(bucket), True)],
    )
    assert len(ops) == 2 and ctx.cache.get(OLD) is None


def test_delete_reads_the_bucket_it_uncounts_from_the_document() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    ctx.cache.put(OLD, hint(current, 10, UNCOUNTED))
    drive(
        flows.delete(ctx, OLD),
        [
            (is_(Remove, cas=10), False),  # the hint is stale
            (is_(Get), doc(current, 11, bucket)),
            (is_(Remove, cas=11), False),  # written again in between
            (is_(Get), doc(current, 12, bucket)),
            (is_(Remove, cas=12), True),
            (decr(bucket), True),
        ],
    )


def test_delete_of_a_missing_session_reads_once() -> None:
    _, ops = drive(flows.delete(context(), OLD), [(is_(Get), None)])
    assert len(ops) == 1


def test_delete_follows_moved_markers_down_the_chain() -> None:
    now, ctx = now_us(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    ctx.cache.put(OLD, hint(current, 10, bucket))  # read before two renames elsewhere
    drive(
        flows.delete(ctx, OLD),
        [
            (is_(Remove, "p:" + OLD, cas=10), False),  # the hint is stale: renamed
            (is_(Get, "p:" + OLD), Doc(encode_marker(NEW, now + HOUR, now), 11)),
            (is_(Remove, "p:" + OLD, cas=11), True),  # no decrement: counted nowhere
            (is_(Get, "p:" + NEW), Doc(encode_marker(NEWER, now + HOUR, now), 21)),
            (is_(Remove, "p:" + NEW, cas=21), True),
            (is_(Get, "p:" + NEWER), doc(current, 31, bucket)),
            (is_(Remove, "p:" + NEWER, cas=31), True),
            (decr(bucket), True),  # the session itself, where it is counted
        ],
    )


def test_delete_follows_a_marker_that_replaced_the_record_it_read() -> None:
    # A rename between the delete's read and its remove: the CAS moved, the delete reads
    # again, finds the marker and follows it.
    now, ctx = now_us(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    drive(
        flows.delete(ctx, OLD),
        [
            (is_(Get, "p:" + OLD), doc(current, 10, bucket)),
            (is_(Remove, "p:" + OLD, cas=10), False),
            (is_(Get, "p:" + OLD), Doc(encode_marker(NEW, now + HOUR, now), 11)),
            (is_(Remove, "p:" + OLD, cas=11), True),
            (is_(Get, "p:" + NEW), doc(current, 20, bucket)),
            (is_(Remove, "p:" + NEW, cas=20), True),
            (decr(bucket), True),
        ],
    )


def test_delete_stops_at_a_key_it_deleted_already() -> None:
    now = now_us()
    _, ops = drive(
        flows.delete(context(), OLD),
        [
            (is_(Get, "p:" + OLD), Doc(encode_marker(NEW, now + HOUR, now), 11)),
            (is_(Remove, cas=11), True),
            (is_(Get, "p:" + NEW), Doc(encode_marker(OLD, now + HOUR, now), 21)),  # never written
            (is_(Remove, cas=21), True),
        ],
    )
    assert len(ops) == 4


# -- rename ------------------------------------------------------------------------------
def test_rename_within_the_bucket_touches_no_counter() -> None:
    now, ctx = mid_bucket_now(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    expires = current.expires_us + SECOND
    result, _ = drive(
        flows.rename(ctx, OLD, NEW, expires, now),
        [
            (is_(Get, "p:" + OLD), doc(current, 10, bucket)),
            (
                is_(
                    Insert,
                    "p:" + NEW,
                    value=encode_record(current._replace(expires_us=expires), bucket),
                ),
                20,
            ),
            (
                is_(
                    Replace,
                    "p:" + OLD,
                    cas=10,
                    value=encode_marker(NEW, expires, now),
                    expiry=expiry_for(expires, now),
                ),
                11,
            ),
        ],
    )
    assert result is True
    assert ctx.cache.get(OLD) is None
    assert ctx.cache.get(NEW) == Hint(20, 1, current.created_us, expires, bucket)


def test_rename_undoes_its_copy_when_the_old_record_changed_meanwhile() -> None:
    now, ctx = now_us(), context()
    expires = now + 3 * HOUR
    old, new = bucket_of(stored(now), now), place(expires, now, 32)
    newer = stored(now, version=2, data=b"newer")
    result, _ = drive(
        flows.rename(ctx, OLD, NEW, expires, now),
        [
            (is_(Get, "p:" + OLD), doc(stored(now), 10, old)),
            (incr(new), True),
            (is_(Insert, "p:" + NEW), 20),
            (is_(Replace, "p:" + OLD, cas=10), None),  # updated between our read and replace
            (is_(Remove, "p:" + NEW, cas=20), True),  # so the stale copy goes
            (decr(new), True),  # and its count
            (is_(Get, "p:" + OLD), doc(newer, 11, old)),
            (incr(new), True),
            (
                is_(
                    Insert, "p:" + NEW, value=encode_record(newer._replace(expires_us=expires), new)
                ),
                21,
            ),
            (is_(Replace, "p:" + OLD, cas=11, value=encode_marker(NEW, expires, now)), 12),
            (decr(old), True),
        ],
    )
    assert result is True


def test_a_re_sealing_rename_copies_the_given_bytes_and_keeps_the_version() -> None:
    now, ctx = mid_bucket_now(), context()
    current = stored(now, version=3, data=b"sealed-for-old")
    bucket = bucket_of(current, now)
    moved = current._replace(data=b"sealed-for-new")
    result, _ = drive(
        flows.rename(ctx, OLD, NEW, current.expires_us, now, None, None, b"sealed-for-new", 3),
        [
            (is_(Get, "p:" + OLD), doc(current, 10, bucket)),
            (is_(Insert, "p:" + NEW, value=encode_record(moved, bucket)), 20),
            (
                is_(Replace, "p:" + OLD, cas=10, value=encode_marker(NEW, current.expires_us, now)),
                11,
            ),
        ],
    )
    assert result is True
    assert ctx.cache.get(NEW) == Hint(20, 3, current.created_us, current.expires_us, bucket)


def test_a_re_sealing_rename_of_a_stale_version_only_reads() -> None:
    now, ctx = now_us(), context()
    current = stored(now, version=2)
    result, _ = drive(
        flows.rename(ctx, OLD, NEW, now + 3 * HOUR, now, None, None, b"sealed-for-new", 1),
        [(is_(Get, "p:" + OLD), doc(current, 10, bucket_of(current, now)))],
    )
    assert result is False


def test_a_re_sealing_rename_loses_to_an_update_between_its_read_and_its_marker() -> None:
    # The copy was sealed from version 1; the update made version 2: the marker is refused
    # (CAS), the stale copy goes, and the next read sees the version moved: False, and the
    # caller re-reads and re-seals the update's data.
    now, ctx = mid_bucket_now(), context()
    bucket = bucket_of(stored(now), now)
    result, _ = drive(
        flows.rename(ctx, OLD, NEW, stored(now).expires_us, now, None, None, b"sealed", 1),
        [
            (is_(Get, "p:" + OLD), doc(stored(now), 10, bucket)),
            (is_(Insert, "p:" + NEW), 20),
            (is_(Replace, "p:" + OLD, cas=10), None),
            (is_(Remove, "p:" + NEW, cas=20), True),
            (is_(Get, "p:" + OLD), doc(stored(now, version=2, data=b"updated"), 12, bucket)),
        ],
    )
    assert result is False


def test_a_re_sealing_rename_retries_after_a_touch_between_its_steps() -> None:
    now, ctx = mid_bucket_now(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    expires = current.expires_us
    result, _ = drive(
        flows.rename(ctx, OLD, NEW, expires, now, None, None, b"sealed", 1),
        [
            (is_(Get, "p:" + OLD), doc(current, 10, bucket)),
            (is_(Insert, "p:" + NEW), 20),
            (is_(Replace, "p:" + OLD, cas=10), None),  # touched: same version, new CAS
            (is_(Remove, "p:" + NEW, cas=20), True),
            (is_(Get, "p:" + OLD), doc(current, 11, bucket)),
            (
                is_(
                    Insert,
                    "p:" + NEW,
                    value=encode_record(current._replace(data=b"sealed"), bucket),
                ),
                21,
            ),
            (is_(Replace, "p:" + OLD, cas=11), 12),
        ],
    )
    assert result is True


def test_rename_loses_to_a_destroy_between_its_steps() -> None:
    now, ctx = now_us(), context()
    bucket = bucket_of(stored(now), now)
    result, _ = drive(
        flows.rename(ctx, OLD, NEW, stored(now).expires_us, now),
        [
            (is_(Get, "p:" + OLD), doc(stored(now), 10, bucket)),
            (is_(Insert, "p:" + NEW), 20),
            (is_(Replace, "p:" + OLD), None),
            (is_(Remove, "p:" + NEW), True),
            (is_(Get, "p:" + OLD), None),  # destroyed: the rename reports no session
        ],
    )
    assert result is False


def test_of_two_racing_renames_the_second_finds_the_first_ones_marker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now, ctx = now_us(), context()
    bucket = bucket_of(stored(now), now)
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        result, _ = drive(
            flows.rename(ctx, OLD, NEWER, stored(now).expires_us, now),
            [
                (is_(Get, "p:" + OLD), doc(stored(now), 10, bucket)),
                (is_(Insert, "p:" + NEWER), 30),
                (is_(Replace, "p:" + OLD, cas=10), None),  # the other rename got there
                (is_(Remove, "p:" + NEWER, cas=30), True),  # so this copy goes
                (is_(Get, "p:" + OLD), Doc(encode_marker(NEW, now + HOUR, now), 11)),
            ],
        )
    assert result is False
    assert not caplog.records


def test_rename_refuses_a_taken_target_and_undoes_its_count() -> None:
    now, ctx = now_us(), context()
    expires = now + 3 * HOUR
    new = place(expires, now, 32)
    with pytest.raises(StoreError, match="is taken"):
        drive(
            flows.rename(ctx, OLD, NEW, expires, now),
            [
                (is_(Get), doc(stored(now), 10, bucket_of(stored(now), now))),
                (incr(new), True),
                (is_(Insert), None),
                (decr(new), True),
            ],
        )


# -- count ---------------------------------------------------------------------------------
def test_count_adds_the_counters_of_the_buckets_ending_after_now() -> None:
    now, ctx = now_us(), context(registered=False)
    now_s = now // SECOND
    fine_end = now_s + 3  # level 0: 1-second buckets
    coarse_end = (now_s // 2048 + 2) * 2048  # level 11: two buckets
    levels = encode_levels({0: fine_end, 11: coarse_end})
    expected = [f"p:count:0:{end}" for end in range(now_s + 1, fine_end + 1)]
    expected += [f"p:count:11:{coarse_end - 2048}", f"p:count:11:{coarse_end}"]
    answers = {expected[0]: Doc(b"2", 1), expected[-1]: Doc(b"5", 2)}
    result, _ = drive(
        flows.count(ctx, now),
        [
            (is_(Get, LEVELS, json=True), Doc(levels, 9)),
            (is_(GetMany, keys=tuple(expected)), answers),
        ],
    )
    assert result == 7
    assert ctx.registered == {0: fine_end, 11: coarse_end}


def test_count_without_a_levels_document_reads_nothing_more() -> None:
    result, ops = drive(flows.count(context(), now_us()), [(is_(Get, LEVELS), None)])
    assert result == 0 and len(ops) == 1


# -- the counters' arithmetic -----------------------------------------------------------------
def test_buckets_are_about_a_32nd_of_the_lifetime_and_hold_the_expiry() -> None:
    now = now_us()
    for lifetime_s, level in (
        (30, 0),
        (63, 0),
        (64, 1),
        (3600, 6),
        (86_400, 11),
        (40 * 86_400, 16),
    ):
        expires = now + lifetime_s * SECOND + 123
        bucket = place(expires, now, 32)
        assert bucket.level == level, lifetime_s
        assert bucket.end % (1 << level) == 0 and bucket.holds(expires)
        assert (1 << level) <= max(1, lifetime_s / 32)
    # An expiry exactly on a boundary belongs to the bucket that ends there.
    assert place(1_000_000_000 * SECOND, 0, 32).holds(1_000_000_000 * SECOND)


def test_a_write_keeps_its_bucket_while_the_expiry_stays_within_it() -> None:
    now = now_us()
    first = place(now + DAY, now, 32)
    width_us = (1 << first.level) * SECOND
    inside = first.end * SECOND - 1
    assert target(first, inside, now + 5 * SECOND, 32) == first
    beyond = first.end * SECOND + 1
    moved = target(first, beyond, now, 32)
    assert moved != first and moved.end == first.end + (1 << first.level)
    assert not UNCOUNTED.holds(inside)
    assert target(UNCOUNTED, inside, now, 32).counted
    assert width_us > 0


def test_live_buckets_exclude_the_bucket_ending_at_now() -> None:
    now = 1_000 * SECOND  # exactly on a boundary of every level up to 2**3
    ends = [bucket.end for bucket in live_buckets({0: 1_003, 3: 1_016}, now)]
    assert ends == [1_001, 1_002, 1_003, 1_008, 1_016]
    assert list(live_buckets({0: 1_000}, now)) == []
    # A `now` in the distant past does not ask for billions of counters.
    assert len(list(live_buckets({0: 2_000_000_000}, 0))) == 100_000


def test_the_levels_document_only_grows_and_drops_long_ended_levels() -> None:
    now = 10_000 * SECOND
    levels = {0: 10_010, 11: 12_288, 5: 1_000}  # level 5 ended long ago
    assert raise_horizon(levels, Bucket(11, 10_240), now) is None, "already covered"
    assert raise_horizon(levels, Bucket(0, 10_020), now) == {0: 10_020, 11: 12_288}
    assert decode_levels(encode_levels(levels)) == levels


def test_unreadable_count_documents_count_nothing(caplog: pytest.LogCaptureFixture) -> None:
    for raw in (b"not json", b'{"format": 9, "levels": {}}', b'{"format": 1}', b"[]", None):
        assert decode_levels(raw) == {}
    assert decode_levels(b'{"format": 1, "levels": {"99": 5}}') == {}
    assert counter_value(b"12") == 12 and counter_value(None) == 0
    assert counter_value(b"x") == 0
    assert "unreadable couchbase count levels document" in caplog.text


def test_counters_outlive_their_bucket_by_the_grace() -> None:
    now = 10_000 * SECOND
    assert counter_expiry(Bucket(0, 10_030), now) == timedelta(seconds=30 + 3600)


# -- record format, TTLs and the cache -----------------------------------------------------
def test_records_round_trip_with_their_bucket() -> None:
    now = now_us()
    record, bucket = stored(now, data=b"\x00payload"), Bucket(11, 1_767_225_600)
    raw = encode_record(record, bucket)
    assert raw[:4] == b"orS2" and raw[37:] == b"\x00payload"
    assert decode_record(raw) == (record, bucket)
    assert decode_record(b"orS9" + bytes(40)) is None
    assert decode_record(b"orS2short") is None


def test_moved_markers_round_trip_and_are_no_records() -> None:
    now = now_us()
    raw = encode_marker(NEW, now + HOUR, now)
    times = (now + HOUR).to_bytes(8, "big") + now.to_bytes(8, "big")
    assert raw == b"orM2" + times + NEW.encode() and len(raw) == 84
    assert decode_marker(raw) == Marker(NEW, now + HOUR, now)
    assert decode_record(raw) is None
    assert decode_marker(raw + b"x") is None and decode_marker(None) is None
    assert decode_marker(b"orM2" + bytes(16) + b"g" * 64) is None, "names no storage key"
    assert decode_marker(b"orM1" + times[:8] + NEW.encode()) is None, "the unreleased orM1"
    assert decode_marker(encode_record(stored(now), UNCOUNTED)) is None


def test_only_an_unexpired_marker_answers_moved() -> None:
    now = now_us()
    assert flows.marker_read(Doc(encode_marker(NEW, now + 1, now), 5), now) is True
    assert flows.marker_read(Doc(encode_marker(NEW, now, now), 5), now) is False
    assert flows.marker_read(doc(stored(now), 5), now) is False
    assert flows.marker_read(None, now) is False


def test_a_marker_answers_moved_only_for_the_grace_after_its_rename() -> None:
    now = now_us()
    renamed = Doc(encode_marker(NEW, now + HOUR, now - REPLACED_ID_GRACE_US), 5)
    assert flows.marker_read(renamed, now) is True, "the grace's last µs"
    assert flows.marker_read(renamed, now + 1) is False, "then the old id gets a new session"
    # A rename stamped by a clock ahead of ours is still within its grace.
    assert flows.marker_read(Doc(encode_marker(NEW, now + HOUR, now + SECOND), 5), now) is True


def test_the_document_ttl_is_a_timedelta_rounded_up() -> None:
    now = now_us()
    assert expiry_for(now + 10 * SECOND + 1, now) == timedelta(seconds=11)
    assert expiry_for(now + 1_000, now) == timedelta(seconds=1)  # a millisecond
    assert expiry_for(now - HOUR, now) == timedelta(seconds=1), "never 0 (=never)"
    assert expiry_for(now + 40 * DAY, now) == timedelta(days=40)


def test_the_hint_cache_is_a_bounded_lru_that_keeps_the_later_state() -> None:
    now = now_us()
    cache = HintCache(2)
    first, second, third = (Hint(n, 1, now, now, UNCOUNTED) for n in (1, 2, 3))
    cache.put("a", first)
    cache.put("b", second)
    assert cache.get("a") == first  # now the most recently used
    cache.put("c", third)
    assert cache.get("b") is None and len(cache) == 2
    cache.put("a", Hint(0, 1, now, now, UNCOUNTED))  # an older answer arriving late
    assert cache.get("a") == first
    assert cache.pop("a") == first and cache.get("a") is None
    off = HintCache(0)
    off.put("a", first)
    assert off.get("a") is None


def test_a_refused_hint_is_replaced_by_what_is_read_even_with_a_lower_cas() -> None:
    # A failover can roll a document back to an older state with a lower CAS.
    now, ctx = now_us(), context()
    current = stored(now)
    bucket = bucket_of(current, now)
    ctx.cache.put(OLD, hint(current, 100, bucket))
    result, _ = drive(
        flows.update(ctx, OLD, b"x", current.expires_us, 1, now),
        [
            (is_(Replace, cas=100), None),
            (is_(Get), doc(current, 50, bucket)),
            (is_(Replace, cas=50), 51),
        ],
    )
    assert result == 2
    remembered = ctx.cache.get(OLD)
    assert remembered is not None and remembered.cas == 51
