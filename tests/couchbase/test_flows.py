"""The sans-I/O flows, driven by a script: the races a live server cannot be made to hit on
cue (a write between our read and our compare-and-set), and the count index's rules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from ormsession.errors import StoreError, StoreUnavailableError
from ormsession.expiry import utcnow
from ormsession.repositories.base import StoredSession
from ormsession.repositories.couchbase import flows
from ormsession.repositories.couchbase.base import (
    Doc,
    Flow,
    Get,
    Insert,
    KeyLayout,
    KvOp,
    Pause,
    Remove,
    Replace,
    encode_record,
    expiry_for,
)
from ormsession.repositories.couchbase.index import (
    Entry,
    apply_changes,
    decode_shard,
    encode_shard,
    live_entries,
    to_us,
)

LAYOUT = KeyLayout("p:", 1)
SHARD = LAYOUT.index.shard_key(0)
OLD, NEW = "a" * 64, "b" * 64
Step = tuple[Callable[[KvOp], bool], Any]


def drive(flow: Flow[Any], script: list[Step]) -> tuple[Any, list[KvOp]]:
    """Run ``flow``, checking each op it yields against the script and answering it (an
    exception in the script is thrown in, as the repositories do with SDK failures)."""
    seen: list[KvOp] = []
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = flow.throw(error) if error else flow.send(reply)
        except StopIteration as stop:
            assert not script, f"flow ended before {len(script)} more steps"
            return stop.value, seen
        seen.append(op)
        assert script, f"unexpected op {op}"
        matches, answer = script.pop(0)
        assert matches(op), op
        reply, error = (None, answer) if isinstance(answer, BaseException) else (answer, None)


def is_(kind: type, key: str | None = None, **fields: Any) -> Callable[[KvOp], bool]:
    def check(op: KvOp) -> bool:
        return (
            isinstance(op, kind)
            and (key is None or getattr(op, "key", None) == key)
            and all(getattr(op, name) == value for name, value in fields.items())
        )

    return check


def doc(record: StoredSession, cas: int) -> Doc:
    return Doc(encode_record(record), cas)


def stored(now: datetime, version: int = 1, data: bytes = b"d") -> StoredSession:
    return StoredSession(data, version, now - timedelta(minutes=1), now + timedelta(hours=1))


def index_steps(cas: int = 900) -> list[Step]:
    """An index update that finds an empty shard and inserts it."""
    return [(is_(Get, SHARD, json=True), None), (is_(Insert, SHARD, json=True), cas)]


# -- update / touch: a CAS mismatch is re-examined by version ------------------------------
def test_update_retries_after_a_concurrent_touch() -> None:
    now = utcnow()
    current = stored(now)
    touched = replace(current, expires_at=now + timedelta(hours=2))
    new_expiry = now + timedelta(hours=3)
    result, _ = drive(
        flows.update(LAYOUT, OLD, b"new", new_expiry, 1, now),
        [
            (is_(Get, "p:" + OLD), doc(current, 10)),
            (is_(Replace, "p:" + OLD, cas=10), None),  # a touch moved the CAS meanwhile
            (is_(Get, "p:" + OLD), doc(touched, 11)),  # same version: try again
            (is_(Replace, "p:" + OLD, cas=11), 12),
            *index_steps(),
        ],
    )
    assert result == 2


def test_update_loses_to_a_concurrent_update() -> None:
    now = utcnow()
    result, _ = drive(
        flows.update(LAYOUT, OLD, b"new", now + timedelta(hours=1), 1, now),
        [
            (is_(Get), doc(stored(now), 10)),
            (is_(Replace, cas=10), None),
            (is_(Get), doc(stored(now, version=2), 11)),  # the version moved: we lost
        ],
    )
    assert result is None


def test_an_update_that_keeps_the_expiry_leaves_the_index_alone() -> None:
    now = utcnow()
    current = stored(now)
    result, ops = drive(
        flows.update(LAYOUT, OLD, b"new", current.expires_at, 1, now),
        [(is_(Get), doc(current, 10)), (is_(Replace, cas=10), 11)],
    )
    assert result == 2 and len(ops) == 2


def test_the_document_ttl_is_a_timedelta_rounded_up() -> None:
    now = utcnow()
    assert expiry_for(now + timedelta(seconds=10, microseconds=1), now) == timedelta(seconds=11)
    assert expiry_for(now + timedelta(milliseconds=1), now) == timedelta(seconds=1)
    assert expiry_for(now - timedelta(hours=1), now) == timedelta(seconds=1), "never 0 (=never)"
    assert expiry_for(now + timedelta(days=40), now) == timedelta(days=40)


# -- create ------------------------------------------------------------------------------
def test_create_replaces_an_expired_document_by_its_cas() -> None:
    now = utcnow()
    expired = replace(stored(now), expires_at=now - timedelta(seconds=1))
    new = stored(now, data=b"fresh")
    result, _ = drive(
        flows.create(LAYOUT, OLD, new, now),
        [
            (is_(Insert, "p:" + OLD), None),
            (is_(Get, "p:" + OLD), doc(expired, 5)),
            (is_(Replace, "p:" + OLD, cas=5, value=encode_record(new)), 6),
            *index_steps(),
        ],
    )
    assert result is True


def test_create_inserts_again_when_the_blocking_document_vanished() -> None:
    now = utcnow()
    result, _ = drive(
        flows.create(LAYOUT, OLD, stored(now), now),
        [(is_(Insert), None), (is_(Get), None), (is_(Insert), 7), *index_steps()],
    )
    assert result is True


# -- rename ------------------------------------------------------------------------------
def test_rename_undoes_its_copy_when_the_old_record_changed_meanwhile() -> None:
    now = utcnow()
    expires = now + timedelta(hours=3)
    result, _ = drive(
        flows.rename(LAYOUT, OLD, NEW, expires, now),
        [
            (is_(Get, "p:" + OLD), doc(stored(now), 10)),
            (is_(Insert, "p:" + NEW), 20),
            (is_(Remove, "p:" + OLD, cas=10), False),  # updated between our read and remove
            (is_(Remove, "p:" + NEW, cas=20), True),  # so the stale copy goes
            (is_(Get, "p:" + OLD), doc(stored(now, version=2, data=b"newer"), 11)),
            (
                is_(
                    Insert,
                    "p:" + NEW,
                    value=encode_record(
                        replace(stored(now, version=2, data=b"newer"), expires_at=expires)
                    ),
                ),
                21,
            ),
            (is_(Remove, "p:" + OLD, cas=11), True),
            (is_(Get, SHARD), None),  # one shard: old removed and new added in one write
            (is_(Insert, SHARD), 900),
        ],
    )
    assert result is True


def test_rename_loses_to_a_destroy_between_its_steps() -> None:
    now = utcnow()
    result, _ = drive(
        flows.rename(LAYOUT, OLD, NEW, now + timedelta(hours=1), now),
        [
            (is_(Get, "p:" + OLD), doc(stored(now), 10)),
            (is_(Insert, "p:" + NEW), 20),
            (is_(Remove, "p:" + OLD), False),
            (is_(Remove, "p:" + NEW), True),
            (is_(Get, "p:" + OLD), None),  # destroyed: the rename reports no session
        ],
    )
    assert result is False


def test_rename_refuses_a_taken_target() -> None:
    now = utcnow()
    with pytest.raises(StoreError, match="is taken"):
        drive(
            flows.rename(LAYOUT, OLD, NEW, now + timedelta(hours=1), now),
            [(is_(Get), doc(stored(now), 10)), (is_(Insert), None)],
        )


# -- the count index is best effort, and never undoes a newer write --------------------------
def test_an_index_failure_is_logged_and_the_write_still_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = utcnow()
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        result, _ = drive(
            flows.create(LAYOUT, OLD, stored(now), now),
            [(is_(Insert), 5), (is_(Get, SHARD), StoreUnavailableError("down"))],
        )
    assert result is True
    assert "could not update the couchbase count index" in caplog.text


def test_index_conflicts_are_retried_with_backoff() -> None:
    now = utcnow()
    existing = encode_shard({NEW: Entry(to_us(now + timedelta(hours=1)), 1)})
    result, _ = drive(
        flows.create(LAYOUT, OLD, stored(now), now),
        [
            (is_(Insert), 5),
            (is_(Get, SHARD), Doc(existing, 30)),
            (is_(Replace, SHARD, cas=30), None),  # another session's index update won
            (is_(Pause), None),
            (is_(Get, SHARD), Doc(existing, 31)),
            (is_(Replace, SHARD, cas=31), 32),
        ],
    )
    assert result is True


def test_index_updates_arriving_out_of_order_keep_the_later_write() -> None:
    now = utcnow()
    later = Entry(to_us(now + timedelta(hours=2)), cas=200)
    earlier = Entry(to_us(now + timedelta(hours=1)), cas=100)
    entries = apply_changes({}, {OLD: later}, now)
    assert entries is not None
    assert apply_changes(entries, {OLD: earlier}, now) is None, "an older write is ignored"
    assert apply_changes(entries, {OLD: None}, now) == {}


def test_index_pruning_and_counting_judge_expiry_like_reads() -> None:
    now = utcnow()
    entries = {
        "k1": Entry(to_us(now), 1),  # expires_at == now: expired, as reads say
        "k2": Entry(to_us(now + timedelta(microseconds=1)), 1),
    }
    assert live_entries(entries, now) == 1
    updated = apply_changes(entries, {"k3": Entry(to_us(now + timedelta(hours=1)), 1)}, now)
    assert updated is not None and set(updated) == {"k2", "k3"}
    assert decode_shard(encode_shard(updated)) == updated


def test_an_unreadable_shard_counts_as_empty(caplog: pytest.LogCaptureFixture) -> None:
    for raw in (b"not json", b'{"format": 99, "sessions": {}}', b'{"format": 1}', b"[]", None):
        assert decode_shard(raw) == {}
    assert "unreadable couchbase count index shard" in caplog.text
