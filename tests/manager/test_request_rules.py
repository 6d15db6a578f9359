"""Per-request rules every framework integration relies on, on every store, sync and async:
``modified`` as Flask and Starlette keep it, an emptied session ending, and a save or open
under a request's own cookie options and timeouts."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from ormsession.expiry import ExpiryPolicy
from ormsession.repositories.base import REPLACED_ID_GRACE_US
from tests.manager.test_lifecycle import cookie_id, stored_session
from tests.support.stores import FakeClock, record_calls


def test_modified_stays_true_after_the_save_while_dirty_clears(manager: Any) -> None:
    sid = stored_session(manager, user=1)
    session = manager.open(sid)
    assert not session.modified and not session.dirty
    session["user"] = 2
    assert session.modified and session.dirty
    manager.save(session)
    assert session.modified, "Flask and Starlette apps read modified after the save"
    assert not session.dirty
    calls = record_calls(manager)
    manager.save(session)
    assert calls.writes() == [], "a saved change is not written twice"
    assert dict(manager.open(sid)) == {"user": 2}


def test_setting_modified_false_skips_the_write_of_dict_changes(manager: Any) -> None:
    sid = stored_session(manager, user=1)
    session = manager.open(sid)
    session["user"] = 2
    session.modified = False
    assert not session.dirty
    manager.save(session)
    assert dict(manager.open(sid)) == {"user": 1}


@pytest.mark.parametrize("empty", ["clear", "pop", "del", "popitem"])
def test_a_stored_session_the_request_empties_ends(manager: Any, empty: str) -> None:
    sid = stored_session(manager, user=1)
    before = manager.count()
    session = manager.open(sid)
    if empty == "clear":
        session.clear()
    elif empty == "pop":
        session.pop("user")
    elif empty == "del":
        del session["user"]
    else:
        session.popitem()
    header = manager.save(session)
    assert header is not None and header.startswith("session=;")
    assert "Max-Age=0" in header
    assert session.is_new and session.destroyed and session.id != sid
    assert manager.count() == before - 1, "no empty record is left behind"
    reopened = manager.open(sid)
    assert reopened.is_new and dict(reopened) == {}


def test_an_emptied_session_that_gets_data_again_is_a_new_session(manager: Any) -> None:
    sid = stored_session(manager, user=1)
    session = manager.open(sid)
    session.clear()
    manager.save(session)
    session["user"] = 2
    new_id = cookie_id(manager.save(session))
    assert new_id != sid
    assert manager.open(sid).is_new
    assert dict(manager.open(new_id)) == {"user": 2}


def test_a_save_under_the_requests_own_cookie_options(manager: Any) -> None:
    session = manager.open(None)
    session["x"] = 1
    options = replace(manager.cookie, name="app_session", partitioned=True, domain=".example.com")
    header = manager.save(session, cookie=options)
    assert header.startswith(f"app_session={session.id};")
    attributes = [part.strip() for part in header.split(";")[1:]]
    assert "Partitioned" in attributes and "Secure" in attributes
    assert "Domain=example.com" in attributes, "a leading dot is dropped"
    assert manager.open(session.id).get("x") == 1


def test_a_save_and_open_under_the_requests_own_timeouts(manager: Any, clock: FakeClock) -> None:
    long = ExpiryPolicy(idle_timeout=timedelta(days=31), absolute_timeout=None, refresh_ratio=0.1)
    session = manager.open(None)
    session["remember"] = True
    manager.save(session, expiry=long)
    assert session.expires_at == clock.now + timedelta(days=31)
    clock.advance(days=2)  # past the config's idle timeout of one day
    assert manager.open(session.id).get("remember") is True, "the stored expiry rules"
    clock.advance(days=28)  # 30 days: the config's absolute timeout
    assert manager.open(session.id).is_new
    assert manager.open(session.id, expiry=long).get("remember") is True


@pytest.mark.parametrize("seconds", [0, -1])
def test_a_cookie_expired_when_sent_stores_nothing(manager: Any, seconds: int) -> None:
    before = manager.count()
    calls = record_calls(manager)
    expired = replace(manager.cookie, max_age=timedelta(seconds=seconds), style="starlette")
    session = manager.open(None)
    session["some"] = "data"
    header = manager.save(session, cookie=expired)
    assert header.startswith(f"session={session.id}; path=/; Max-Age={seconds};")
    assert calls.writes() == [] and manager.count() == before
    assert manager.open(session.id).is_new, "a replayed expired cookie gives a new session"


def test_after_a_save_under_an_expired_cookie_nothing_is_left_to_save(manager: Any) -> None:
    expired = replace(manager.cookie, max_age=timedelta(seconds=0))
    session = manager.open(None)
    session["cart"] = [1]
    assert manager.save(session, cookie=expired) is not None
    assert not session.dirty, "a late save (after a streamed body) has nothing to do"
    assert manager.save(session, cookie=expired) is None
    session["cart"].append(2)
    assert manager.save(session, cookie=expired) is not None, "a new change: a new cookie"


def test_an_emptying_request_that_raced_a_login_never_logs_the_user_out(manager: Any) -> None:
    # The page request pops the last flash while the login request of the same browser
    # regenerates and saves first: the login stands, the page sets no cookie.
    sid = stored_session(manager, _flashes=["please log in"])
    page, login = manager.open(sid), manager.open(sid)
    login["user"] = "ada"
    manager.regenerate(login)
    login_id = cookie_id(manager.save(login))
    page.pop("_flashes")
    assert manager.save(page) is None, "no deleting cookie over the login's cookie"
    assert page.lost
    assert manager.open(login_id).get("user") == "ada"


@pytest.mark.parametrize("then_flash", [False, True], ids=["clear", "clear-then-flash"])
def test_a_clear_sent_with_the_id_a_login_replaced_logs_out(manager: Any, then_flash: bool) -> None:
    # The logout form was loaded before a login in another tab replaced the id; the app
    # logs out with clear() (its own "user" key), as Flask and Starlette apps do.
    sid = stored_session(manager, user="ada")
    login = manager.open(sid)
    manager.regenerate(login)
    login_id = cookie_id(manager.save(login))
    logout = manager.open(sid)
    assert logout.lost
    logout.clear()
    if then_flash:
        logout["_flashes"] = ["signed out"]
    header = manager.save(logout)
    assert header is not None and "Max-Age=0" in header, "the browser's cookie is deleted"
    assert manager.open(login_id).is_new, "the session the login moved to ended too"


def test_a_clear_logout_wins_over_a_login_in_another_tab(manager: Any) -> None:
    # An app that keeps its own user key logs out with clear(); the logout page was opened
    # before a login in another tab regenerated the session, and saves after it.
    sid = stored_session(manager, user="ada", cart=[1])
    logout, login = manager.open(sid), manager.open(sid)
    manager.regenerate(login)
    login["user"] = "bob"
    login_id = cookie_id(manager.save(login))
    logout.clear()
    header = manager.save(logout)
    assert header is not None and "Max-Age=0" in header
    assert manager.open(login_id).is_new, "the logout is not undone by the racing login"


def test_clear_then_new_data_is_a_new_session_under_a_new_id(manager: Any) -> None:
    # Flask's tutorial logs in with session.clear(); session["user_id"] = ...: the cleared
    # session ends, and what the request set goes into a new one (a planted id is no use).
    sid = stored_session(manager, visits=3)
    session = manager.open(sid)
    session.clear()
    session["user_id"] = 7
    new_id = cookie_id(manager.save(session))
    assert new_id != sid and dict(manager.open(new_id)) == {"user_id": 7}
    assert manager.open(sid).is_new


@pytest.mark.parametrize("how", ["login", "regenerate"])
def test_a_double_submitted_clear_and_login_keeps_the_first_login(manager: Any, how: str) -> None:
    # Both requests of a double-submitted form open the session, clear it and log in (the
    # usual Flask login); the second loses the race: its clear() was the start of a login,
    # not a logout, so the first login stands and the second sets no cookie.
    sid = stored_session(manager, visits=1)
    first, second = manager.open(sid), manager.open(sid)
    for request in (first, second):
        request.clear()
        if how == "login":
            manager.login(request, "ada")
        else:
            manager.regenerate(request)
        request["user"] = "ada"
        header = manager.save(request)
        if request is first:
            first_id = cookie_id(header)
    assert second.lost and header is None
    assert manager.open(first_id).get("user") == "ada"


def test_what_a_logout_through_a_replaced_id_stored_after_it_is_reported_dropped(
    manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sid = stored_session(manager, user="ada")
    login = manager.open(sid)
    manager.regenerate(login)
    manager.save(login)
    logout = manager.open(sid)
    logout.clear()
    logout["_flashes"] = ["signed out"]
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        manager.save(logout)
    assert "not saved" in caplog.text


def test_a_replaced_id_that_is_only_read_ends_nothing(manager: Any) -> None:
    sid = stored_session(manager, user="ada")
    login = manager.open(sid)
    manager.regenerate(login)
    login_id = cookie_id(manager.save(login))
    page = manager.open(sid)
    page["x"] = 1
    assert manager.save(page) is None
    assert manager.open(login_id).get("user") == "ada"


@pytest.mark.parametrize("how", ["regenerate", "login"])
def test_a_browser_that_missed_a_logins_response_is_served_again_after_the_grace(
    manager: Any, clock: FakeClock, how: str
) -> None:
    # The login committed, but its response (the new cookie) never reached the browser:
    # a double-submitted form whose first response the browser dropped, a lost connection.
    sid = stored_session(manager, user="ada")
    login = manager.open(sid)
    if how == "regenerate":
        manager.regenerate(login)
    else:
        manager.login(login, "ada")
    login_id = cookie_id(manager.save(login))
    in_flight = manager.open(sid)
    in_flight["csrf"] = "t1"
    assert in_flight.lost and manager.save(in_flight) is None, "no cookie over the login's"
    clock.advance(seconds=REPLACED_ID_GRACE_US // 1_000_000 + 1)
    page = manager.open(sid)
    assert page.is_new and not page.lost
    page["csrf"] = "t2"
    page_id = cookie_id(manager.save(page))
    assert page_id != sid and manager.open(page_id)["csrf"] == "t2", "the browser has one again"
    assert manager.open(login_id).get("user") == "ada", "the login's session is left alone"


def test_after_the_grace_the_replaced_id_reaches_nothing(manager: Any, clock: FakeClock) -> None:
    # Within the grace a logout through the old id follows the rename (a logout racing a
    # login wins); after it, whoever still holds the old id (one planted before the login,
    # a browser that missed its response) can neither read nor end the new session.
    sid = stored_session(manager, user="ada")
    login = manager.open(sid)
    manager.regenerate(login)
    login_id = cookie_id(manager.save(login))
    clock.advance(seconds=REPLACED_ID_GRACE_US // 1_000_000 + 1)
    stale = manager.open(sid)
    assert stale.is_new and "user" not in stale
    manager.destroy(stale)
    assert manager.open(login_id).get("user") == "ada"


def test_an_emptying_request_that_raced_a_writer_keeps_the_writers_keys(manager: Any) -> None:
    sid = stored_session(manager, _flashes=["hello"])
    page, cart = manager.open(sid), manager.open(sid)
    cart["cart"] = [1]
    manager.save(cart)
    page.pop("_flashes")
    assert manager.save(page) is None
    assert dict(manager.open(sid)) == {"cart": [1]}


def test_two_requests_that_each_remove_the_others_last_key_end_the_session(
    manager: Any,
) -> None:
    sid = stored_session(manager, x=1, y=2)
    before = manager.count()
    first, second = manager.open(sid), manager.open(sid)
    first.pop("x")
    assert manager.save(first) is None
    second.pop("y")
    header = manager.save(second)
    assert header is not None and "Max-Age=0" in header
    assert manager.count() == before - 1, "no empty record is left behind"
    assert manager.open(sid).is_new


def test_a_regenerate_follows_the_requests_own_timeouts(manager: Any, clock: FakeClock) -> None:
    long = ExpiryPolicy(idle_timeout=timedelta(days=90), absolute_timeout=None, refresh_ratio=0.1)
    session = manager.open(None)
    session["user"] = "ada"
    manager.save(session, expiry=long)
    clock.advance(days=40)  # past the config's absolute timeout of 30 days
    session = manager.open(session.id, expiry=long)
    manager.regenerate(session, expiry=long)
    assert not session.lost, "the request's own rules keep the session alive"
    assert session.expires_at == clock.now + timedelta(days=90)
    new_id = cookie_id(manager.save(session, expiry=long))
    assert manager.open(new_id, expiry=long).get("user") == "ada"

    short = ExpiryPolicy(idle_timeout=timedelta(hours=1), absolute_timeout=None, refresh_ratio=0.1)
    manager.regenerate(session, expiry=short)
    assert session.expires_at == clock.now + timedelta(hours=1)


def test_a_merge_never_shortens_the_other_writers_expiry(manager: Any, clock: FakeClock) -> None:
    # A "remember me" login saves under longer rules while a request that opened the
    # session before it writes too: the merge keeps the login's expiry.
    long = ExpiryPolicy(idle_timeout=timedelta(days=31), absolute_timeout=None, refresh_ratio=0.1)
    sid = stored_session(manager, cart=[])
    page, login = manager.open(sid), manager.open(sid)
    login["_permanent"] = True
    manager.save(login, expiry=long)
    page["cart"] = [1]
    manager.save(page)
    assert page.expires_at == clock.now + timedelta(days=31)
    clock.advance(days=2)  # past the default idle timeout of one day
    assert dict(manager.open(sid, expiry=long)) == {"_permanent": True, "cart": [1]}


@pytest.mark.parametrize("operation", ["save", "regenerate", "destroy", "login"])
def test_a_plain_dict_for_the_session_is_a_type_error_naming_it(
    manager: Any, operation: str
) -> None:
    call = getattr(manager, operation)
    args = ({"user": 1}, "ada") if operation == "login" else ({"user": 1},)
    with pytest.raises(TypeError, match=r"open\(\) returned.*not a dict"):
        call(*args)
