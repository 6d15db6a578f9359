"""RequestSession: a real dict that tracks what a request did to it."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from ormsession import Config, RequestSession, SessionManager
from ormsession.repositories.memory import MemoryRepository


@pytest.fixture
def manager() -> SessionManager:
    return SessionManager(MemoryRepository(), Config())


def stored(manager: SessionManager, **data: Any) -> RequestSession:
    """A session as the next request opens it, holding ``data``."""
    session = manager.open(None)
    session.update(data)
    manager.save(session)
    return manager.open(session.id)


def test_it_is_a_dict(manager: SessionManager) -> None:
    session = stored(manager, user=42, cart=["a"])
    assert isinstance(session, dict)
    assert json.loads(json.dumps(session)) == {"user": 42, "cart": ["a"]}
    assert session == {"user": 42, "cart": ["a"]}
    plain = session.copy()
    assert type(plain) is dict and plain == session
    session["later"] = 1
    assert session.popitem() == ("later", 1), "popitem is LIFO, as a dict's"


# Every way a dict can change, including those that bypass __setitem__ in CPython.
CHANGES: list[tuple[str, Callable[[RequestSession], Any]]] = [
    ("setitem", lambda s: s.__setitem__("user", 43)),
    ("delitem", lambda s: s.__delitem__("user")),
    ("update", lambda s: s.update(extra=1)),
    ("update with a mapping", lambda s: s.update({"extra": 1})),
    ("setdefault of a new key", lambda s: s.setdefault("extra", 1)),
    ("pop", lambda s: s.pop("user")),
    ("popitem", lambda s: s.popitem()),
    ("clear", lambda s: s.clear()),
    ("|=", lambda s: s.__ior__({"extra": 1})),
]


@pytest.mark.parametrize("change", [c for _, c in CHANGES], ids=[n for n, _ in CHANGES])
def test_every_change_is_tracked_and_saved(
    manager: SessionManager, change: Callable[[RequestSession], Any]
) -> None:
    session = stored(manager, user=42, cart=["a"])
    assert not session.modified
    expected = dict(session)
    change(session)
    change(expected)  # type: ignore[arg-type]
    assert session.modified and session.accessed
    manager.save(session)
    assert dict(manager.open(session.id)) == expected


def test_in_place_operator_returns_the_session_itself(manager: SessionManager) -> None:
    session = stored(manager, user=42)
    same = session
    same |= {"extra": 1}
    assert same is session and session.modified


@pytest.mark.parametrize(
    "no_change",
    [
        lambda s: s.pop("missing", None),
        lambda s: s.setdefault("user", 0),
        lambda s: s.get("user"),
    ],
    ids=["pop of a missing key", "setdefault of a present key", "get"],
)
def test_calls_that_change_nothing_do_not_mark_it_modified(
    manager: SessionManager, no_change: Callable[[RequestSession], Any]
) -> None:
    session = stored(manager, user=42)
    no_change(session)
    assert not session.modified and session.accessed


@pytest.mark.parametrize(
    "read",
    [
        lambda s: s["user"],
        lambda s: s.get("user"),
        lambda s: "user" in s,
        lambda s: list(s),
        lambda s: len(s),
        lambda s: s.keys(),
        lambda s: s.values(),
        lambda s: s.items(),
        lambda s: dict(s),
        lambda s: s == {},
        lambda s: s != {},
        lambda s: list(reversed(s)),
        lambda s: s.copy(),
    ],
    ids=[
        "getitem",
        "get",
        "in",
        "iter",
        "len",
        "keys",
        "values",
        "items",
        "dict()",
        "==",
        "!=",
        "reversed",
        "copy",
    ],
)
def test_reads_mark_it_accessed(
    manager: SessionManager, read: Callable[[RequestSession], Any]
) -> None:
    session = stored(manager, user=42)
    assert not session.accessed
    read(session)
    assert session.accessed and not session.modified


def test_saving_does_not_mark_it_accessed(manager: SessionManager) -> None:
    session = stored(manager, cart=["a"])
    session.accessed = False
    manager.save(session)
    assert not session.accessed, "save's own reads must not add Vary to the response"


def test_a_value_changed_in_place_is_found_at_save(manager: SessionManager) -> None:
    session = stored(manager, cart=["a"], flags={"x": 1})
    session["cart"].append("b")
    assert not session.modified
    manager.save(session)
    reopened = manager.open(session.id)
    assert reopened["cart"] == ["a", "b"]
    reopened["flags"]["nested"] = {"deep": [1]}
    manager.save(reopened)
    assert manager.open(session.id)["flags"] == {"x": 1, "nested": {"deep": [1]}}


def test_values_that_refuse_comparison_are_found_changed_by_their_bytes(
    manager: SessionManager,
) -> None:
    # A signaling NaN raises InvalidOperation on ==: the quick check of a flat list must
    # not let that escape save(); the serialized bytes decide instead.
    session = stored(manager, amounts=[Decimal("sNaN")], flags={"x": Decimal("sNaN")})
    session["amounts"][0] = Decimal("sNaN")
    session["flags"]["x"] = Decimal("sNaN")
    assert manager.save(session) is None, "equal bytes: nothing to write"
    session["amounts"].append(Decimal("1"))
    manager.save(session)
    assert manager.open(session.id)["amounts"][1] == Decimal("1")


def test_reading_mutable_values_writes_nothing(manager: SessionManager) -> None:
    session = stored(manager, cart=["a"])
    version = session.stored
    assert session["cart"] == ["a"]
    assert manager.save(session) is None
    assert session.stored is version, "an unchanged session is not rewritten"


@pytest.mark.parametrize("change", [False, True], ids=["unchanged", "changed"])
def test_copies_and_pickles_keep_data_and_state(manager: SessionManager, change: bool) -> None:
    session = stored(manager, user=42, cart=["a"])
    if change:
        session["x"] = 1
    session.accessed = False
    clones = [copy.copy(session), copy.deepcopy(session), pickle.loads(pickle.dumps(session))]
    for clone in clones:
        assert type(clone) is RequestSession
        assert (clone.modified, clone.accessed) == (change, False), "the copy kept the state"
        assert clone.contents() == session.contents() and clone.id == session.id
        assert clone.stored == session.stored
    assert clones[1]["cart"] is not session["cart"], "a deep copy copies the values"


def test_fromkeys_gives_a_plain_dict() -> None:
    # dict.fromkeys on a subclass calls cls(), which a session cannot be built from.
    made = RequestSession.fromkeys(["a", "b"], 0)
    assert made == {"a": 0, "b": 0} and type(made) is dict
