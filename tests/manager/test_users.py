"""The policy of a user's sessions (issue 28) through the managers, sync and async.

``login`` (regenerate + bind), ``sessions_of``, ``revoke``, ``revoke_all``, and how a bound
session ends (``destroy``, ``clear()``), on every store.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import pytest

from ormsession import UserIdError, UserSession
from ormsession.cookies import parse_cookie_header
from tests.support.stores import FakeClock, open_manager, record_calls, store_params


@pytest.fixture(params=store_params())
def manager(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Any]:
    name, mode = request.param
    with open_manager(request, name, mode, clock=clock) as manager:
        yield manager


def cookie_id(set_cookie: str | None) -> str:
    assert set_cookie is not None, "expected a Set-Cookie value"
    return parse_cookie_header(set_cookie.split(";", 1)[0])["session"]


def deletes(set_cookie: str | None) -> bool:
    return set_cookie is not None and "Max-Age=0" in set_cookie


def logged_in(manager: Any, user_id: Any, **data: Any) -> Any:
    """A session of ``user_id``, saved, as the next request opens it."""
    session = manager.open(None)
    session.update(data)
    manager.login(session, user_id, user_agent="test agent", ip="192.0.2.1")
    return manager.open(cookie_id(manager.save(session)))


def handles(listing: list[UserSession]) -> list[str]:
    return [item.handle for item in listing]


def test_login_of_a_new_session_stores_it_bound_even_while_empty(manager: Any) -> None:
    session = manager.open(None)
    manager.login(session, "ada", user_agent="Firefox", ip="192.0.2.7")
    assert not session.is_new, "login stores the session at once"
    assert session.user_id == "ada" and session.handle is not None
    assert len(session) == 0
    sid = cookie_id(manager.save(session))
    assert manager.count() == 1

    again = manager.open(sid)
    assert not again.is_new and again.user_id == "ada" and again.handle == session.handle
    (listed,) = manager.sessions_of("ada", current=again)
    assert listed.handle == session.handle
    assert (listed.user_agent, listed.ip, listed.current) == ("Firefox", "192.0.2.7", True)
    assert listed.created <= listed.last_seen < listed.expires


def test_a_second_login_keeps_the_handle_and_changes_the_id(manager: Any) -> None:
    session = logged_in(manager, "ada", cart=["tea"])
    handle, old_id = session.handle, session.id
    manager.login(session, "ada")
    assert session.handle == handle
    assert session.id != old_id
    new_id = cookie_id(manager.save(session))
    assert new_id == session.id
    assert manager.open(old_id).is_new, "the id before the login is worthless"
    reopened = manager.open(new_id)
    assert reopened["cart"] == ["tea"] and reopened.handle == handle
    assert handles(manager.sessions_of("ada")) == [handle]


def test_login_as_another_user_starts_an_empty_session_of_that_user(manager: Any) -> None:
    # As Django does: nothing of ada's session (her cart, a CSRF token, her handle) is
    # bob's, and ada's logout everywhere no longer reaches it.
    session = logged_in(manager, "ada", cart=["tea"], csrf="ada-token")
    adas_id, adas_handle = session.id, session.handle
    manager.login(session, "bob")
    assert dict(session) == {} and session.handle != adas_handle
    sid = cookie_id(manager.save(session))
    assert manager.sessions_of("ada") == []
    assert handles(manager.sessions_of("bob")) == [session.handle]
    assert manager.revoke_all("ada") == 0
    reopened = manager.open(sid)
    assert reopened.user_id == "bob" and dict(reopened) == {}
    assert manager.open(adas_id).is_new


def test_clear_on_a_bound_session_with_empty_data_logs_out(manager: Any) -> None:
    session = manager.open(None)
    manager.login(session, "ada")
    sid = cookie_id(manager.save(session))
    request = manager.open(sid)
    assert len(request) == 0 and request.user_id == "ada"
    request.clear()  # the usual logout of a Flask or Starlette app
    assert deletes(manager.save(request))
    assert manager.sessions_of("ada") == []
    assert manager.count() == 0
    assert manager.open(sid).is_new


def test_destroy_removes_the_session_from_the_listing(manager: Any) -> None:
    session = logged_in(manager, "ada")
    other = logged_in(manager, "ada")
    manager.destroy(session)
    assert deletes(manager.save(session))
    assert handles(manager.sessions_of("ada")) == [other.handle]


def test_a_login_racing_a_destroy_continues_in_a_fresh_bound_session(manager: Any) -> None:
    sid = cookie_id(manager.save(_with(manager.open(None), cart=["secret"])))
    logging_in = manager.open(sid)  # this request checks the credentials...
    logging_out = manager.open(sid)
    manager.destroy(logging_out)  # ...while another one logs out
    manager.save(logging_out)

    manager.login(logging_in, "ada")
    assert logging_in.user_id == "ada", "the credentials were checked: the user is logged in"
    assert "cart" not in logging_in, "the destroyed session's data does not come back"
    new_id = cookie_id(manager.save(logging_in))
    assert new_id != sid
    assert manager.open(sid).is_new
    reopened = manager.open(new_id)
    assert reopened.user_id == "ada" and dict(reopened) == {}
    assert handles(manager.sessions_of("ada")) == [logging_in.handle]


def _with(session: Any, **data: Any) -> Any:
    session.update(data)
    return session


def test_sessions_of_lists_the_most_recently_seen_first_and_flags_current(
    manager: Any, clock: FakeClock
) -> None:
    first = logged_in(manager, "ada", n=1)
    clock.advance(seconds=10)
    second = logged_in(manager, "ada", n=2)
    clock.advance(seconds=10)
    third = logged_in(manager, "ada", n=3)
    clock.advance(seconds=10)
    first["n"] = 10  # the oldest session is used again: it is now the last seen
    manager.save(first)
    logged_in(manager, "bob")

    listing = manager.sessions_of("ada", current=second)
    assert handles(listing) == [first.handle, third.handle, second.handle]
    assert [item.current for item in listing] == [False, False, True]
    seen = [item.last_seen for item in listing]
    assert seen == sorted(seen, reverse=True)
    assert listing[0].last_seen > listing[0].created
    assert not any(item.current for item in manager.sessions_of("ada"))


def test_sessions_of_leaves_out_expired_sessions(manager: Any, clock: FakeClock) -> None:
    stale = logged_in(manager, "ada")
    clock.advance(seconds=manager.expiry.idle_timeout.total_seconds() - 5)
    fresh = logged_in(manager, "ada")
    clock.advance(seconds=10)
    assert handles(manager.sessions_of("ada")) == [fresh.handle]
    assert manager.revoke("ada", stale.handle) is False


def test_revoke_ends_one_session_even_for_a_request_in_flight(manager: Any) -> None:
    phone = logged_in(manager, "ada", cart=["tea"])
    laptop = logged_in(manager, "ada")
    in_flight = manager.open(phone.id)  # a request of the phone, already past its read
    assert manager.revoke("ada", phone.handle) is True
    in_flight["cart"] = ["tea", "bread"]
    assert manager.save(in_flight) is None
    assert in_flight.lost
    assert manager.open(phone.id).is_new, "nothing of the revoked session comes back"
    assert handles(manager.sessions_of("ada")) == [laptop.handle]
    assert manager.revoke("ada", phone.handle) is False, "already gone"


def test_revoke_with_a_malformed_handle_is_false_without_a_store_call(manager: Any) -> None:
    session = logged_in(manager, "ada")
    calls = record_calls(manager)
    for handle in ("", "short", "x" * 33, "not a handle at all!", session.id + "?"):
        assert manager.revoke("ada", handle) is False
    assert calls.calls == []
    assert not manager.open(session.id).is_new


def test_revoke_with_another_users_handle_ends_nothing(manager: Any) -> None:
    bobs = logged_in(manager, "bob")
    assert manager.revoke("ada", bobs.handle) is False
    assert not manager.open(bobs.id).is_new


def test_revoke_all_keeps_the_given_session_only_when_it_is_that_users(manager: Any) -> None:
    here = logged_in(manager, "ada")
    elsewhere = logged_in(manager, "ada")
    bobs = logged_in(manager, "bob")
    assert manager.revoke_all("ada", keep=here) == 1
    assert handles(manager.sessions_of("ada")) == [here.handle]
    assert manager.open(elsewhere.id).is_new

    again = logged_in(manager, "ada")
    # Another user's session is no reason to keep any of ada's: all of them end.
    assert manager.revoke_all("ada", keep=bobs) == 2
    assert manager.sessions_of("ada") == []
    assert manager.open(here.id).is_new and manager.open(again.id).is_new
    assert not manager.open(bobs.id).is_new, "bob's session is not ada's to end"
    assert manager.revoke_all("ada") == 0


@pytest.mark.parametrize(
    "user_id", [None, True, False, "", "a\x00b", "tab\there", "\x7f", "u" * 256, 4.2, b"ada"]
)
def test_a_bad_user_id_is_a_user_id_error_before_any_store_call(manager: Any, user_id: Any) -> None:
    session = manager.open(None)
    calls = record_calls(manager)
    with pytest.raises(UserIdError):
        manager.login(session, user_id)
    with pytest.raises(UserIdError):
        manager.sessions_of(user_id)
    with pytest.raises(UserIdError):
        manager.revoke(user_id, "A" * 22)
    with pytest.raises(UserIdError):
        manager.revoke_all(user_id)
    assert calls.calls == []
    assert session.is_new and session.user_id is None


def test_the_longest_and_oddest_user_ids_are_kept_as_given(manager: Any) -> None:
    for user_id in ("u" * 255, "{ada}:1 2", "Zoë ✓"):
        session = logged_in(manager, user_id)
        assert session.user_id == user_id
        assert handles(manager.sessions_of(user_id)) == [session.handle]


def test_an_int_user_id_becomes_its_string(manager: Any) -> None:
    session = logged_in(manager, 42)
    assert session.user_id == "42"
    assert manager.sessions_of(42) == manager.sessions_of("42")
    assert handles(manager.sessions_of("42")) == [session.handle]
    assert manager.revoke(42, session.handle) is True


class _AccountId(int, enum.Enum):
    """An int enum in its pre-3.11 spelling: ``str()`` gives ``"_AccountId.ADMIN"``."""

    ADMIN = 1


class _Username(str):
    def __str__(self) -> str:
        return "someone else"


def test_int_and_str_subclass_user_ids_are_the_value_they_hold(manager: Any) -> None:
    # A user id is its value, however a subclass spells its str(): revoke_all(1) must reach
    # the sessions logged in as _AccountId.ADMIN (== 1), or "sign out everywhere" misses some.
    admin = logged_in(manager, _AccountId.ADMIN)
    assert admin.user_id == "1" and type(admin.user_id) is str
    assert handles(manager.sessions_of(1)) == [admin.handle]
    ada = logged_in(manager, _Username("ada"))
    assert ada.user_id == "ada" and type(ada.user_id) is str
    assert handles(manager.sessions_of("ada")) == [ada.handle]
    assert manager.revoke_all(1) == 1 and manager.open(admin.id).is_new


def test_a_login_on_the_id_a_regenerate_replaced_sends_its_cookie(manager: Any) -> None:
    """A login form submitted twice: the first submission's login regenerated the session,
    the second arrives with the replaced id (its session is *lost*: never saved, no
    cookie). Its login checked credentials too, so it goes on in a fresh bound session
    whose cookie is sent, not a session stored and listed that no browser holds."""
    sid = cookie_id(manager.save(_with(manager.open(None), cart=["tea"])))
    first = manager.open(sid)
    manager.login(first, "ada")
    first_id = cookie_id(manager.save(first))

    second = manager.open(sid)
    assert second.lost
    manager.login(second, "ada")
    second_id = cookie_id(manager.save(second))
    assert second_id not in (sid, first_id)
    assert manager.open(second_id).user_id == "ada"
    assert manager.open(first_id)["cart"] == ["tea"]
    assert sorted(handles(manager.sessions_of("ada"))) == sorted([first.handle, second.handle])


def test_only_clear_logs_out_a_bound_session_with_empty_data(manager: Any) -> None:
    """A login that stores nothing else leaves a bound session with empty data. Forcing a
    write (``session.modified = True``, an empty ``update``) must not end it: only
    ``clear()`` (or destroy) is a logout."""
    session = manager.open(None)
    manager.login(session, "ada")
    sid = cookie_id(manager.save(session))
    for force in (
        lambda s: setattr(s, "modified", True),
        lambda s: s.update({}),
        lambda s: s.mark_modified(),
    ):
        request = manager.open(sid)
        force(request)
        assert not deletes(manager.save(request))
        assert manager.open(sid).user_id == "ada"
    assert handles(manager.sessions_of("ada")) == [session.handle]


def test_emptying_a_bound_sessions_data_keeps_the_user_logged_in(manager: Any) -> None:
    # Only clear() (or destroy) logs out: the last key of a cart removed is no logout.
    session = logged_in(manager, "ada", cart=["tea"])
    session.pop("cart")
    assert not deletes(manager.save(session))
    reopened = manager.open(session.id)
    assert reopened.user_id == "ada" and dict(reopened) == {}
    assert handles(manager.sessions_of("ada")) == [session.handle]


def test_clear_then_login_is_a_login(manager: Any) -> None:
    session = logged_in(manager, "ada", cart=["tea"])
    session.clear()  # a common idiom before logging in again
    manager.login(session, "ada")
    sid = cookie_id(manager.save(session))
    assert manager.open(sid).user_id == "ada"
    assert handles(manager.sessions_of("ada")) == [session.handle]


def test_clear_then_a_flash_message_still_logs_out(manager: Any) -> None:
    # Flask's usual logout view: session.clear(); flash("Logged out").
    session = logged_in(manager, "ada", cart=["tea"])
    old_id = session.id
    session.clear()
    session["_flashes"] = [["message", "Logged out"]]
    new_id = cookie_id(manager.save(session))
    assert new_id != old_id
    assert session.user_id is None
    assert manager.sessions_of("ada") == []
    assert manager.open(old_id).is_new
    after = manager.open(new_id)
    assert after.user_id is None and dict(after) == {"_flashes": [["message", "Logged out"]]}


def test_a_double_submitted_login_leaves_one_session(manager: Any) -> None:
    sid = cookie_id(manager.save(_with(manager.open(None), cart=["tea"])))
    first, second = manager.open(sid), manager.open(sid)  # both on their way
    manager.login(first, "ada")
    first_id = cookie_id(manager.save(first))
    manager.login(second, "ada")  # its session was regenerated by the first
    assert second.lost
    assert manager.save(second) is None, "the browser keeps the first login's cookie"
    assert handles(manager.sessions_of("ada")) == [first.handle]
    assert manager.open(first_id)["cart"] == ["tea"]


def test_a_login_in_flight_on_a_revoked_session_does_not_bring_its_handle_back(
    manager: Any,
) -> None:
    session = logged_in(manager, "ada")
    in_flight = manager.open(session.id)
    revoked = session.handle
    assert manager.revoke("ada", revoked)
    manager.login(in_flight, "ada")  # credentials checked: logged in, in a new session
    manager.save(in_flight)
    assert handles(manager.sessions_of("ada")) == [in_flight.handle]
    assert in_flight.handle != revoked


@pytest.mark.parametrize("user_id", [10**300, "\ud800", "a\udcffb"])
def test_user_ids_no_store_can_keep_are_refused(manager: Any, user_id: Any) -> None:
    with pytest.raises(UserIdError):
        manager.login(manager.open(None), user_id)
