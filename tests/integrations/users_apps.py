"""The integration tests of a user's sessions, written once, run through each framework's
own test client (``test_users_flask``, ``test_users_asgi``, ``test_users_wsgi``).

Each framework's test app serves the same routes:

- ``POST /login?user=<id>``: ``login_session`` (``&int=1`` passes the id as an int,
  ``&agent=`` overrides the user agent, ``&blank=1`` passes ``user_agent=None, ip=None``);
- ``GET /me``: ``{"user": session.user_id, "handle": session.handle, "note": ...}``;
- ``GET /sessions``: ``list_sessions`` as :func:`listed` shows it;
- ``POST /revoke?handle=``, ``POST /revoke-others``: ``{"ended": <the helper's answer>}``;
- ``POST /logout`` (``destroy_session``), ``POST /clear`` (``session.clear()``);
- ``POST /note?text=``: ``session["note"] = text`` (a request that is no login);
- ``GET /whose``: ``session.user_id`` as text, and nothing else read.

A *browser* is ``make_browser()``: a fresh test client with its own cookie jar.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ormsession import UserIdError
from ormsession.users import UserSession
from tests.integrations.helpers import parse_set_cookie

Browser = Any
MakeBrowser = Callable[[], Browser]


def listed(sessions: list[UserSession]) -> list[dict[str, Any]]:
    """``list_sessions``' answer as the routes return it."""
    return [
        {
            "handle": item.handle,
            "current": item.current,
            "user_agent": item.user_agent,
            "ip": item.ip,
            "created": item.created.isoformat(),
            "last_seen": item.last_seen.isoformat(),
            "expires": item.expires.isoformat(),
        }
        for item in sessions
    ]


def a_user() -> str:
    """A user id of this test alone (a PostgreSQL database is shared by a test session)."""
    return f"ada-{uuid.uuid4().hex[:10]}"


def body(response: Any) -> Any:
    """The JSON body (Werkzeug's ``json`` is a property, httpx's a method)."""
    return response.json() if callable(response.json) else response.json


def set_cookies(response: Any) -> list[str]:
    headers = response.headers
    if hasattr(headers, "getlist"):
        return list(headers.getlist("Set-Cookie"))
    return list(headers.get_list("set-cookie"))


def the_cookie(response: Any) -> str:
    """The value of the one session cookie the response sets."""
    (header,) = set_cookies(response)
    return parse_set_cookie(header).value


def deletes_cookie(response: Any) -> bool:
    return [parse_set_cookie(header).deletes for header in set_cookies(response)] == [True]


def login(browser: Browser, user: str, query: str = "") -> str:
    """Log ``browser`` in as ``user``; the new session's cookie value."""
    response = browser.post(f"/login?user={user}{query}")
    assert response.status_code == 200, response.text
    return the_cookie(response)


def me(browser: Browser) -> dict[str, Any]:
    return dict(body(browser.get("/me")))


def sessions(browser: Browser) -> list[dict[str, Any]]:
    return list(body(browser.get("/sessions")))


def ended(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return body(response)["ended"]


# -- the checks ---------------------------------------------------------------------


def check_login_binds_and_rotates_the_cookie(make_browser: MakeBrowser, user: str) -> None:
    browser = make_browser()
    anonymous = the_cookie(browser.post("/note?text=before"))
    assert me(browser)["user"] is None
    bound = login(browser, user)
    assert bound not in (anonymous, "")
    assert me(browser) == {"user": user, "handle": me(browser)["handle"], "note": "before"}
    assert me(browser)["handle"]
    # The id from before the login is worthless: a client still holding it is nobody.
    stranger = make_browser().get("/me", headers={"Cookie": f"session={anonymous}"})
    assert body(stranger) == {"user": None, "handle": None, "note": None}
    # A second login keeps the handle and rotates the cookie again.
    handle = me(browser)["handle"]
    assert login(browser, user) not in (bound, anonymous)
    assert me(browser)["handle"] == handle
    assert [item["handle"] for item in sessions(browser)] == [handle]


def check_login_takes_agent_and_address_from_the_request(
    make_browser: MakeBrowser, user: str, agent: str | None, ip: str | None
) -> None:
    browser = make_browser()
    login(browser, user)
    (item,) = sessions(browser)
    assert (item["user_agent"], item["ip"]) == (agent, ip)
    other = make_browser()
    login(other, user, "&agent=Lynx/2.9")
    blank = make_browser()
    login(blank, user, "&blank=1")
    seen = {(item["user_agent"], item["ip"]) for item in sessions(browser)}
    assert seen == {(agent, ip), ("Lynx/2.9", ip), (None, None)}


def check_listing_flags_the_current_session(make_browser: MakeBrowser, user: str) -> None:
    laptop, phone = make_browser(), make_browser()
    login(laptop, user)
    login(phone, user)
    stranger = make_browser()
    login(stranger, user + "-other")
    for browser in (laptop, phone):
        listing = sessions(browser)
        assert len(listing) == 2
        assert [item["handle"] for item in listing if item["current"]] == [me(browser)["handle"]]
    anonymous = make_browser()
    anonymous.post("/note?text=x")
    assert sessions(anonymous) == []


def check_revoke_ends_the_other_session_for_its_next_request(
    make_browser: MakeBrowser, user: str
) -> None:
    laptop, phone = make_browser(), make_browser()
    login(laptop, user)
    login(phone, user)
    phone.post("/note?text=on the phone")
    phone_handle = me(phone)["handle"]
    assert ended(laptop.post(f"/revoke?handle={phone_handle}")) is True
    assert me(phone) == {"user": None, "handle": None, "note": None}
    assert ended(laptop.post(f"/revoke?handle={phone_handle}")) is False
    assert [item["handle"] for item in sessions(laptop)] == [me(laptop)["handle"]]
    # Neither a forged handle nor another user's ends anything.
    outsider = make_browser()
    login(outsider, user + "-other")
    assert ended(laptop.post(f"/revoke?handle={me(outsider)['handle']}")) is False
    assert ended(laptop.post("/revoke?handle=not-a-handle")) is False
    assert me(outsider)["user"] == user + "-other"
    # Logged in as nobody, there is nothing to revoke.
    assert ended(make_browser().post(f"/revoke?handle={me(laptop)['handle']}")) is False
    assert me(laptop)["user"] == user


def check_revoking_this_sessions_handle_logs_out_here(make_browser: MakeBrowser, user: str) -> None:
    browser = make_browser()
    login(browser, user)
    response = browser.post(f"/revoke?handle={me(browser)['handle']}")
    assert ended(response) is True
    assert deletes_cookie(response)
    assert me(browser)["user"] is None
    assert sessions(make_browser()) == []


def check_revoke_others_keeps_the_current_session(make_browser: MakeBrowser, user: str) -> None:
    here, phone, tablet = make_browser(), make_browser(), make_browser()
    for browser in (here, phone, tablet):
        login(browser, user)
    response = here.post("/revoke-others")
    assert ended(response) == 2
    assert set_cookies(response) == [] or not deletes_cookie(response)
    assert me(phone)["user"] is None and me(tablet)["user"] is None
    (only,) = sessions(here)
    assert only["current"] and only["handle"] == me(here)["handle"]
    assert ended(here.post("/revoke-others")) == 0
    assert ended(make_browser().post("/revoke-others")) == 0


def check_logout_leaves_the_listing(make_browser: MakeBrowser, user: str) -> None:
    stays, destroyed, cleared = make_browser(), make_browser(), make_browser()
    for browser in (stays, destroyed, cleared):
        login(browser, user)
    assert len(sessions(stays)) == 3
    assert deletes_cookie(destroyed.post("/logout"))
    assert len(sessions(stays)) == 2
    # clear() of a bound session logs out, even with no data in it.
    assert deletes_cookie(cleared.post("/clear"))
    assert [item["handle"] for item in sessions(stays)] == [me(stays)["handle"]]
    assert me(cleared)["user"] is None and me(destroyed)["user"] is None


def check_a_request_that_is_no_login_keeps_the_binding(
    make_browser: MakeBrowser, user: str
) -> None:
    browser = make_browser()
    login(browser, user)
    handle = me(browser)["handle"]
    browser.post("/note?text=hello")
    assert me(browser) == {"user": user, "handle": handle, "note": "hello"}
    (item,) = sessions(browser)
    assert item["handle"] == handle and item["current"]


def check_an_int_user_id_is_its_string(make_browser: MakeBrowser, user: str) -> None:
    number = str(uuid.uuid4().int % 10**12)
    browser = make_browser()
    login(browser, number, "&int=1")
    assert me(browser)["user"] == number


def check_a_bad_user_id_is_a_user_id_error(make_browser: MakeBrowser, bad: str) -> None:
    browser = make_browser()
    with pytest.raises(UserIdError):
        browser.post(f"/login?user={bad}")


def check_a_page_of_the_user_id_varies_on_the_cookie(make_browser: MakeBrowser, user: str) -> None:
    """A page rendered from ``session.user_id`` alone depends on the cookie: a shared
    cache must not hand it to another user (``Vary: Cookie``); reading writes nothing."""
    browser = make_browser()
    login(browser, user)
    for path in ("/whose", "/sessions"):
        response = browser.get(path)
        assert response.headers.get("Vary") == "Cookie", path
        assert set_cookies(response) == [], path
    assert browser.get("/whose").text == user


#: Every check that takes (make_browser, user), for the modules to parametrize over.
CHECKS = [
    check_login_binds_and_rotates_the_cookie,
    check_listing_flags_the_current_session,
    check_revoke_ends_the_other_session_for_its_next_request,
    check_revoking_this_sessions_handle_logs_out_here,
    check_revoke_others_keeps_the_current_session,
    check_logout_leaves_the_listing,
    check_a_request_that_is_no_login_keeps_the_binding,
    check_an_int_user_id_is_its_string,
    check_a_page_of_the_user_id_varies_on_the_cookie,
]
BAD_USER_IDS = ["", "%00", "tab%09", "u" * 256]
