"""Ids, cookies and expiry arithmetic: the no-I/O core."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import replace

import pytest

from ormsession.config import Config
from ormsession.cookies import CookieOptions, cookie_value, parse_cookie_header
from ormsession.errors import ConfigurationError
from ormsession.expiry import (
    ExpiryPolicy,
    from_us,
    now_us,
    to_us,
    us_clock,
    utcnow,
)
from ormsession.ids import SessionIds, storage_key

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
NOW_US = to_us(NOW)


def cookie_options(**options: object) -> CookieOptions:
    """The cookie rules a Config builds from its ``cookie_*`` options (``max_age``:
    ``cookie_lifetime``)."""
    names = {"max_age": "cookie_lifetime"}
    return Config(**{names.get(k, f"cookie_{k}"): v for k, v in options.items()}).cookie


def expiry_policy(**options: object) -> ExpiryPolicy:
    return Config(**options).expiry


def us(**span: float) -> int:
    """A timedelta's worth of µs."""
    return dt.timedelta(**span) // dt.timedelta(microseconds=1)


def test_ids_carry_256_random_bits_in_url_safe_characters() -> None:
    ids = SessionIds()
    generated = {ids.generate() for _ in range(2000)}
    assert len(generated) == 2000
    for value in generated:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
        assert ids.is_valid(value)
    # 43 base64url characters = 258 bits of room; all 64 symbols actually occur
    assert len(set("".join(generated))) == 64


def test_validation_is_strict() -> None:
    ids = SessionIds(prefix="app-")
    good = ids.generate()
    assert good.startswith("app-") and ids.is_valid(good)
    assert not ids.is_valid(good[4:]), "the prefix is part of the format"
    assert not SessionIds().is_valid(good)
    for bad in (None, 5, b"x", good + "a", good[:-1], good[:-1] + "=", good + "\n"):
        assert not ids.is_valid(bad)
        assert ids.storage_key_of(bad) is None
    assert ids.storage_key_of(good) == storage_key(good)


def test_bad_id_options_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        SessionIds(nbytes=16)
    with pytest.raises(ConfigurationError):
        SessionIds(prefix="has space")


def test_storage_key_is_sha256_hex() -> None:
    value = SessionIds().generate()
    assert storage_key(value) == hashlib.sha256(value.encode()).hexdigest()
    assert len(storage_key(value)) == 64


def test_set_cookie_defaults() -> None:
    header = cookie_options().set_cookie("abc", https=False, now_us=NOW_US)
    assert header == "session=abc; Path=/; HttpOnly; SameSite=Lax"
    assert "Secure" in cookie_options().set_cookie("abc", https=True, now_us=NOW_US)
    assert "Secure" not in cookie_options(secure=False).set_cookie("abc", https=True, now_us=NOW_US)
    assert "Secure" in cookie_options(secure=True).set_cookie("abc", https=False, now_us=NOW_US)


def test_a_lifetime_cookie_has_max_age_and_expires() -> None:
    options = cookie_options(
        max_age=dt.timedelta(hours=2),
        domain="example.com",
        path="/app",
        samesite="strict",
        httponly=False,
    )
    header = options.set_cookie("abc", https=True, now_us=NOW_US)
    assert header == (
        "session=abc; Max-Age=7200; Expires=Wed, 25 Nov 2026 14:00:00 GMT; "
        "Domain=example.com; Path=/app; Secure; SameSite=Strict"
    )


def test_the_delete_cookie_carries_the_same_attributes() -> None:
    options = cookie_options(domain="example.com", path="/app", secure=True, samesite="none")
    header = options.delete_cookie(https=False)
    assert header == (
        "session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; "
        "Domain=example.com; Path=/app; Secure; HttpOnly; SameSite=None"
    )


def test_host_prefix_forces_secure_and_root_path() -> None:
    options = cookie_options(host_prefix=True)
    assert options.cookie_name == "__Host-session"
    header = options.set_cookie("abc", https=False, now_us=NOW_US)
    assert header.startswith("__Host-session=abc;") and "Secure" in header
    for bad in ({"secure": False}, {"domain": "example.com"}, {"path": "/x"}):
        with pytest.raises(ConfigurationError):
            cookie_options(host_prefix=True, **bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "a b"},
        {"name": "a;b"},
        {"path": "x"},
        {"path": "/a;b"},
        {"domain": "a b"},
        {"samesite": "lenient"},
        {"samesite": "none", "secure": False},
        {"max_age": dt.timedelta(seconds=-1)},
    ],
)
def test_invalid_cookie_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        cookie_options(**bad)


def test_parse_cookie_header() -> None:
    assert parse_cookie_header('a=1; session="xyz"; b; =c; session=second; d=4') == {
        "a": "1",
        "session": "xyz",
        "d": "4",
    }
    assert parse_cookie_header(None) == {} and parse_cookie_header("") == {}


@pytest.mark.parametrize(
    "header",
    [
        'a=1; session="xyz"; b; =c; session=second; d=4',
        "session=",
        "session=; session=later",
        " session = spaced ; x=1",
        'session="',
        "sessionx=1; xsession=2",
        "a=1;;session=v=with=equals",
        "",
        "no-equals-at-all",
        "x=session=1; a=2",
        "a=1;session",
        "\tsession\t=\tv\t;d=4",
        "\u00a0session\u00a0=\u00a0v",
        "a=1;\n session=v\n",
        'session=""; a="1"',
    ],
)
def test_cookie_value_agrees_with_parse_cookie_header(header: str) -> None:
    # The integrations' fast lookup must find exactly what the full parser finds.
    for name in ("session", "a", "d", "missing"):
        assert cookie_value(header, name) == parse_cookie_header(header).get(name)


def test_expiry_is_idle_capped_by_absolute() -> None:
    policy = expiry_policy(
        idle_timeout=dt.timedelta(hours=1), absolute_timeout=dt.timedelta(hours=3)
    )
    assert policy.expires_at(NOW_US, NOW_US) == NOW_US + us(hours=1)
    later = NOW_US + us(hours=2, minutes=30)
    assert policy.expires_at(NOW_US, later) == NOW_US + us(hours=3)
    assert not policy.is_over(NOW_US, NOW_US + us(hours=1), NOW_US + us(minutes=59))
    assert policy.is_over(NOW_US, NOW_US + us(hours=1), NOW_US + us(hours=1))
    assert policy.is_over(NOW_US, NOW_US + us(hours=9), NOW_US + us(hours=3))
    assert expiry_policy(absolute_timeout=None).deadline(NOW_US) is None
    assert not expiry_policy(absolute_timeout=None).is_over(0, NOW_US + 1, NOW_US)


def test_touch_is_due_after_the_refresh_share_and_never_past_the_deadline() -> None:
    policy = expiry_policy(
        idle_timeout=dt.timedelta(hours=10),
        absolute_timeout=dt.timedelta(hours=12),
        refresh_ratio=0.1,
    )
    expires = NOW_US + us(hours=10)
    assert not policy.touch_due(NOW_US, expires, NOW_US + us(minutes=59))
    assert policy.touch_due(NOW_US, expires, NOW_US + us(hours=1))
    capped = NOW_US + us(hours=12)
    assert not policy.touch_due(NOW_US, capped, NOW_US + us(hours=5)), (
        "a touch that cannot move a capped expiry is useless"
    )
    assert expiry_policy(refresh_ratio=0).touch_due(
        NOW_US, NOW_US + us(days=1), NOW_US + us(seconds=1)
    )


def test_times_convert_to_and_from_microseconds_exactly() -> None:
    for moment in (
        NOW,
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2255, 6, 1, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 1, 2, 30, 0, 123_456, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ):
        assert from_us(to_us(moment)) == moment
        assert from_us(to_us(moment)).tzinfo is dt.UTC
    assert to_us(dt.datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=dt.UTC)) == 1_000_005
    with pytest.raises(ValueError, match="aware"):
        to_us(dt.datetime(2026, 1, 1))  # a naive time's zone would be a guess


def test_the_default_clock_reads_microseconds_without_a_datetime() -> None:
    assert us_clock(utcnow) is now_us
    before, reading, after = to_us(utcnow()), now_us(), to_us(utcnow())
    assert before <= reading <= after
    frozen = dt.datetime(2030, 5, 5, 5, 5, 5, 5, tzinfo=dt.UTC)
    assert us_clock(lambda: frozen)() == to_us(frozen)  # an app's own clock is honoured


@pytest.mark.parametrize(
    "bad",
    [
        {"idle_timeout": dt.timedelta(0)},
        {"absolute_timeout": dt.timedelta(seconds=-1)},
        {"refresh_ratio": 1.0},
        {"refresh_ratio": -0.1},
    ],
)
def test_invalid_expiry_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        expiry_policy(**bad)


def cookie_rules(**options: object) -> CookieOptions:
    """CookieOptions as the default Config builds them, with ``options`` (fields of
    CookieOptions that no Config option sets, such as ``style``) replaced."""
    return replace(Config().cookie, **options)  # type: ignore[arg-type]


def test_the_starlette_style_lays_the_cookie_out_as_starlette_does() -> None:
    options = cookie_rules(
        style="starlette",
        max_age=dt.timedelta(days=14),
        domain="example.com",
        partitioned=True,
        samesite="none",
    )
    assert options.set_cookie("abc", https=True, now_us=0) == (
        "session=abc; path=/; Max-Age=1209600; httponly; samesite=none; secure; "
        "domain=example.com; partitioned"
    )
    assert options.delete_cookie(https=False) == (
        "session=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; samesite=none; "
        "secure; domain=example.com; partitioned"
    )
    browser_session = cookie_rules(style="starlette", samesite="lax")
    assert browser_session.set_cookie("abc", https=False, now_us=0) == (
        "session=abc; path=/; httponly; samesite=lax"
    )


def test_partitioned_cookies_are_secure_and_a_domains_leading_dot_is_dropped() -> None:
    options = cookie_rules(partitioned=True, domain=".example.com")
    header = options.set_cookie("abc", https=False, now_us=0)
    assert header.endswith(
        "Domain=example.com; Path=/; Secure; HttpOnly; SameSite=Lax; Partitioned"
    )
    with pytest.raises(ConfigurationError, match="partitioned cookie must be Secure"):
        cookie_rules(partitioned=True, secure=False)
    with pytest.raises(ConfigurationError, match="style"):
        cookie_rules(style="django")


def test_a_cookie_expired_when_sent() -> None:
    options = cookie_rules(max_age=dt.timedelta(seconds=-1))
    assert options.expired_at_once
    header = options.set_cookie("abc", https=False, now_us=5_000_000)
    assert "Max-Age=-1; Expires=Thu, 01 Jan 1970 00:00:05 GMT" in header
    assert not cookie_rules(max_age=dt.timedelta(seconds=1)).expired_at_once
    assert not cookie_rules(max_age=None).expired_at_once


def test_config_cookie_lifetime_zero_is_a_browser_session_and_negative_an_error() -> None:
    assert Config(cookie_lifetime=0).cookie.max_age is None
    with pytest.raises(ConfigurationError, match="cookie_lifetime must be positive"):
        Config(cookie_lifetime=dt.timedelta(seconds=-5))
    assert Config(cookie_partitioned=True).cookie.partitioned


def test_a_configuration_error_is_also_a_value_error() -> None:
    # Flask raises ValueError for a bad SameSite at request time; apps catch either.
    with pytest.raises(ValueError, match="samesite"):
        Config(cookie_samesite="bogus")
    with pytest.raises(ValueError, match="samesite"):
        cookie_rules(samesite="bogus")
