"""The manager's policy on every store, sync and async: open, save, regenerate, destroy."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal
from typing import Any

from ormsession.cookies import parse_cookie_header
from ormsession.ids import storage_key
from tests.support.stores import FakeClock, record_calls


def cookie_id(set_cookie: str | None) -> str:
    assert set_cookie is not None, "expected a Set-Cookie value"
    first = set_cookie.split(";", 1)[0]
    return parse_cookie_header(first)["session"]


def stored_session(manager: Any, **data: Any) -> str:
    """Create a stored session holding ``data``; return its id."""
    session = manager.open(None)
    session.update(data)
    return cookie_id(manager.save(session))


def test_a_new_empty_session_is_never_stored(manager: Any) -> None:
    before = manager.count()
    calls = record_calls(manager)
    session = manager.open(None)
    assert session.is_new and len(session) == 0
    assert manager.save(session) is None
    assert calls.writes() == []
    assert manager.count() == before


def test_a_new_session_with_data_is_stored_and_reopened(manager: Any) -> None:
    values = {
        "user_id": 42,
        "name": "Zoë",
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2026, 1, 2),
        "blob": b"\x00\xff",
        "uid": uuid.UUID(int=7),
        "price": Decimal("9.99"),
        "tags": {"a", "b"},
        "pair": (1, 2),
        "nested": {"k": [1, {"x": None}]},
    }
    sid = stored_session(manager, **values)
    reopened = manager.open(sid)
    assert not reopened.is_new
    assert reopened.id == sid
    assert dict(reopened) == values


def test_the_set_cookie_carries_the_id_and_safe_defaults(manager: Any) -> None:
    session = manager.open(None)
    session["x"] = 1
    header = manager.save(session)
    assert header.startswith(f"session={session.id};")
    attributes = {part.strip().split("=")[0] for part in header.split(";")[1:]}
    assert {"Path", "HttpOnly", "SameSite"} <= attributes
    assert "Secure" not in attributes and "Max-Age" not in attributes
    session["x"] = 2
    assert manager.save(session, https=True) is None, "unchanged id: no cookie needed"


def test_an_unmodified_session_writes_nothing(manager: Any, clock: FakeClock) -> None:
    sid = stored_session(manager, cart=[1, 2], user=7)
    calls = record_calls(manager)
    session = manager.open(sid)
    assert session["user"] == 7 and session["cart"] == [1, 2]
    session["user"] = 7  # reassigning an equal value is no change either
    clock.advance(seconds=60)
    assert manager.save(session) is None
    assert calls.writes() == []


def test_in_place_mutation_of_a_value_is_saved(manager: Any) -> None:
    sid = stored_session(manager, cart=[1])
    session = manager.open(sid)
    session["cart"].append(2)
    manager.save(session)
    assert manager.open(sid)["cart"] == [1, 2]


def test_every_kind_of_in_place_change_is_saved(manager: Any) -> None:
    sid = stored_session(
        manager, flags={"a": 1}, nested=[{"qty": 1}], deep={"x": {"y": [1]}}, tags={"t"}
    )
    changes = [
        lambda s: s["flags"].update(b=2),  # a flat dict
        lambda s: s["nested"][0].update(qty=2),  # a dict inside a list
        lambda s: s["deep"]["x"]["y"].append(2),  # three levels down
        lambda s: s["tags"].add("u"),  # a set (a tagged type)
        lambda s: s.get("flags").pop("a"),  # through get()
    ]
    for change in changes:
        session = manager.open(sid)
        before = dict(manager.open(sid))
        change(session)
        manager.save(session)
        assert dict(manager.open(sid)) != before, change
    assert dict(manager.open(sid)) == {
        "flags": {"b": 2},
        "nested": [{"qty": 2}],
        "deep": {"x": {"y": [1, 2]}},
        "tags": {"t", "u"},
    }


def test_reading_values_of_every_kind_writes_nothing(manager: Any) -> None:
    sid = stored_session(manager, flat=[1, 2], nested=[{"a": [1]}], when=[dt.date(2026, 1, 1)])
    calls = record_calls(manager)
    session = manager.open(sid)
    assert session["flat"] == [1, 2] and session["nested"][0]["a"] == [1]
    assert list(session.values()) and session["when"][0].year == 2026
    assert manager.save(session) is None
    assert calls.writes() == []


def test_deleting_and_clearing_keys_is_saved(manager: Any) -> None:
    sid = stored_session(manager, a=1, b=2, c=3)
    session = manager.open(sid)
    del session["a"]
    session.pop("b")
    manager.save(session)
    assert dict(manager.open(sid)) == {"c": 3}
    session = manager.open(sid)
    session.clear()
    manager.save(session)
    assert dict(manager.open(sid)) == {}


def test_touch_is_throttled_by_the_refresh_ratio(manager: Any, clock: FakeClock) -> None:
    # idle 1 day, ratio 0.1: a touch is due after 2.4 h without writes.
    sid = stored_session(manager, n=1)
    first_expiry = manager.open(sid).expires_at
    calls = record_calls(manager)
    clock.advance(hours=2)
    session = manager.open(sid)
    manager.save(session)
    assert calls.writes() == []
    clock.advance(hours=1)
    session = manager.open(sid)
    manager.save(session)
    assert calls.writes() == ["touch"]
    reopened = manager.open(sid)
    assert reopened.expires_at == first_expiry + dt.timedelta(hours=3)
    assert dict(reopened) == {"n": 1}


def test_regular_use_keeps_a_session_alive_past_its_first_idle_window(
    manager: Any, clock: FakeClock
) -> None:
    sid = stored_session(manager, n=1)
    for _ in range(6):  # 6 x 20 h > 1 day idle, but never 1 day without a request
        clock.advance(hours=20)
        manager.save(manager.open(sid))
    assert manager.open(sid)["n"] == 1


def test_an_idle_session_expires(manager: Any, clock: FakeClock) -> None:
    sid = stored_session(manager, n=1)
    clock.advance(hours=24, seconds=1)
    session = manager.open(sid)
    assert session.is_new and session.id != sid and len(session) == 0


def test_the_absolute_timeout_ends_even_an_active_session(
    make_manager: Any, clock: FakeClock
) -> None:
    timeouts = {"idle_timeout": dt.timedelta(hours=1), "absolute_timeout": dt.timedelta(hours=3)}
    with make_manager(**timeouts) as manager:
        sid = stored_session(manager, n=0)
        for n in range(1, 5):  # 4 x 40 min: active, and within 3 h of its creation
            clock.advance(minutes=40)
            session = manager.open(sid)
            assert session["n"] == n - 1
            session["n"] = n
            manager.save(session)
        clock.advance(minutes=40)  # 3 h 20 min after creation, 40 min after the last use
        session = manager.open(sid)
        assert session.is_new and len(session) == 0


def test_regenerate_moves_the_data_to_a_new_id(manager: Any) -> None:
    sid = stored_session(manager, cart=["apple"])
    session = manager.open(sid)
    manager.regenerate(session)
    assert session.id != sid
    session["user"] = "ann"
    new_sid = cookie_id(manager.save(session))
    assert new_sid == session.id
    assert dict(manager.open(new_sid)) == {"cart": ["apple"], "user": "ann"}
    old = manager.open(sid)
    assert old.is_new and len(old) == 0, "the old id must stop working"


def test_regenerate_without_changes_still_sends_the_new_cookie(manager: Any) -> None:
    sid = stored_session(manager, a=1)
    session = manager.open(sid)
    manager.regenerate(session)
    assert cookie_id(manager.save(session)) == session.id != sid
    assert manager.open(session.id)["a"] == 1


def test_regenerate_of_a_new_session(manager: Any) -> None:
    session = manager.open(None)
    first = session.id
    manager.regenerate(session)
    session["x"] = 1
    assert cookie_id(manager.save(session)) == session.id != first


def test_destroy_deletes_now_and_the_save_deletes_the_cookie(manager: Any) -> None:
    sid = stored_session(manager, user=1)
    before = manager.count()
    session = manager.open(sid)
    manager.destroy(session)
    assert manager.count() == before - 1
    assert manager.open(sid).is_new
    header = manager.save(session)
    assert header is not None and header.startswith("session=;") and "Max-Age=0" in header
    assert "Path=/" in header and "HttpOnly" in header and "SameSite=Lax" in header


def test_data_set_after_destroy_starts_a_new_session(manager: Any) -> None:
    sid = stored_session(manager, user=1)
    session = manager.open(sid)
    manager.destroy(session)
    session["flash"] = "bye"
    new_sid = cookie_id(manager.save(session))
    assert new_sid != sid
    assert dict(manager.open(new_sid)) == {"flash": "bye"}
    assert manager.open(sid).is_new


def test_a_logout_is_not_undone_by_a_slower_request(manager: Any) -> None:
    sid = stored_session(manager, user=1)
    slow, logout = manager.open(sid), manager.open(sid)
    manager.destroy(logout)
    manager.save(logout)
    slow["cart"] = ["late"]
    before = manager.count()
    # No Set-Cookie: the browser keeps what the logout's response told it (a deleting cookie).
    assert manager.save(slow) is None
    assert slow.lost and len(slow) == 0
    assert manager.open(sid).is_new, "destroyed sessions stay destroyed"
    assert manager.count() == before, "and their data is not saved under another id"


def test_concurrent_requests_changing_different_keys_both_persist(manager: Any) -> None:
    sid = stored_session(manager, base=0)
    first, second = manager.open(sid), manager.open(sid)
    first["a"] = 1
    second["b"] = 2
    del second["base"]
    manager.save(first)
    manager.save(second)
    assert dict(manager.open(sid)) == {"a": 1, "b": 2}


def test_when_both_change_one_key_the_later_save_wins(manager: Any) -> None:
    sid = stored_session(manager, counter=0, other="x")
    first, second = manager.open(sid), manager.open(sid)
    first["counter"] = 1
    second["counter"] = 2
    manager.save(first)
    manager.save(second)
    assert dict(manager.open(sid)) == {"counter": 2, "other": "x"}


def test_a_merged_save_updates_the_request_view(manager: Any) -> None:
    sid = stored_session(manager, a=0)
    first, second = manager.open(sid), manager.open(sid)
    first["a"] = 1
    manager.save(first)
    second["b"] = 2
    manager.save(second)
    assert dict(second) == {"a": 1, "b": 2}
    second["c"] = 3
    manager.save(second)  # its version is current: no conflict, nothing lost
    assert dict(manager.open(sid)) == {"a": 1, "b": 2, "c": 3}


def test_count_and_gc(manager: Any, clock: FakeClock) -> None:
    start = manager.count()
    for n in range(3):
        stored_session(manager, n=n)
    assert manager.count() == start + 3
    clock.advance(days=2)
    assert manager.count() == 0
    removed = manager.gc(batch_size=2)
    assert removed == (0 if manager.repository.native_ttl else start + 3)


def test_gc_makes_the_next_batch_smaller_after_a_slow_one(
    make_manager: Any, clock: FakeClock
) -> None:
    # A budget no statement meets: every full batch is too slow, so the next one is as small
    # as it can be (one row), and gc still deletes every expired session and nothing else.
    with make_manager(gc_batch_seconds=1e-9) as manager:
        start = manager.count()
        for n in range(6):
            stored_session(manager, n=n)
        clock.advance(days=2)
        kept = stored_session(manager, n=99)
        totals: list[int] = []
        removed = manager.gc(batch_size=4, progress=totals.append)
        if manager.repository.native_ttl:
            assert (removed, totals) == (0, [])
        else:
            assert removed == start + 6
            steps = [b - a for a, b in itertools.pairwise([0, *totals])]
            assert steps[0] == 4 and set(steps[1:]) == {1}
        assert not manager.open(kept).is_new
        assert manager.count() == 1


def test_gc_keeps_its_batch_size_while_batches_are_fast(manager: Any, clock: FakeClock) -> None:
    start = manager.count()
    for n in range(6):
        stored_session(manager, n=n)
    clock.advance(days=2)
    totals: list[int] = []
    removed = manager.gc(batch_size=4, batch_seconds=60, progress=totals.append)
    if manager.repository.native_ttl:
        assert (removed, totals) == (0, [])
    else:
        assert removed == start + 6
        assert totals[:2] == [4, min(8, start + 6)]


def test_session_ids_are_distinct_and_only_their_hash_is_a_key(manager: Any) -> None:
    ids = {stored_session(manager, n=n) for n in range(20)}
    assert len(ids) == 20
    for sid in ids:
        assert len(sid) == 43
        assert storage_key(sid) != sid and len(storage_key(sid)) == 64
