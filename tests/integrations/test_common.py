"""The framework-free request rules every integration shares."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import ormsession
from ormsession.errors import ConfigurationError
from ormsession.integrations._common import (
    RequestOptions,
    SessionRequest,
    config_for,
    is_https,
    late_change,
    merge_vary,
    warn_cookie_lost,
)
from ormsession.integrations.asgi import _add_headers

VALID = "A" * 43  # the shape of a 32-byte token_urlsafe id
OTHER = "B" * 43


def wsgi_request(options: RequestOptions, **environ: str) -> SessionRequest:
    base = {"wsgi.url_scheme": "http", "QUERY_STRING": ""}
    return SessionRequest.from_wsgi(base | environ, options, "session")


def asgi_request(
    options: RequestOptions, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> SessionRequest:
    scope = {"type": "http", "scheme": "http", "headers": headers, "query_string": query}
    return SessionRequest.from_asgi(scope, options, "session")


class TestWhereTheIdComesFrom:
    def test_cookie(self) -> None:
        request = wsgi_request(RequestOptions(), HTTP_COOKIE=f"a=1; session={VALID}")
        assert (request.session_id, request.source) == (VALID, "cookie")

    def test_header_and_query_are_ignored_unless_enabled(self) -> None:
        request = wsgi_request(
            RequestOptions(), HTTP_X_SESSION_ID=VALID, QUERY_STRING=f"sid={VALID}"
        )
        assert (request.session_id, request.source) == (None, None)

    def test_header_when_enabled(self) -> None:
        request = wsgi_request(RequestOptions(id_header="X-Session-Id"), HTTP_X_SESSION_ID=VALID)
        assert (request.session_id, request.source) == (VALID, "header")

    def test_query_when_enabled(self) -> None:
        options = RequestOptions(id_query_param="sid")
        request = wsgi_request(options, QUERY_STRING=f"x=1&sid={VALID}")
        assert (request.session_id, request.source) == (VALID, "query")

    def test_order_is_cookie_then_header_then_query(self) -> None:
        options = RequestOptions(id_header="X-Session-Id", id_query_param="sid")
        both = wsgi_request(options, HTTP_X_SESSION_ID=OTHER, QUERY_STRING=f"sid={VALID}")
        assert (both.session_id, both.source) == (OTHER, "header")
        all_three = wsgi_request(
            options,
            HTTP_COOKIE=f"session={VALID}",
            HTTP_X_SESSION_ID=OTHER,
            QUERY_STRING=f"sid={OTHER}",
        )
        assert (all_three.session_id, all_three.source) == (VALID, "cookie")

    def test_asgi_headers_and_split_cookie_headers(self) -> None:
        options = RequestOptions(id_header="X-Session-Id", id_query_param="sid")
        split = [(b"cookie", b"a=1"), (b"cookie", f"session={VALID}".encode())]
        request = asgi_request(options, split)
        assert (request.session_id, request.source) == (VALID, "cookie")
        by_header = asgi_request(options, [(b"x-session-id", OTHER.encode())])
        assert (by_header.session_id, by_header.source) == (OTHER, "header")
        by_query = asgi_request(options, [], query=f"sid={VALID}".encode())
        assert (by_query.session_id, by_query.source) == (VALID, "query")

    def test_asgi_cookie_lookup_with_the_default_options(self) -> None:
        # One Cookie header, several, none, other shapes.
        options = RequestOptions()
        others = [(b"host", b"x"), (b"accept", b"*/*")]
        one = asgi_request(options, [*others, (b"cookie", f"a=1; session={VALID}".encode())])
        assert (one.session_id, one.source) == (VALID, "cookie")
        split = [(b"cookie", b"a=1"), *others, (b"cookie", f"session={VALID}".encode())]
        assert asgi_request(options, split).session_id == VALID
        first_wins = [
            (b"cookie", f"session={OTHER}".encode()),
            (b"cookie", f"session={VALID}".encode()),
        ]
        assert asgi_request(options, first_wins).session_id == OTHER
        assert asgi_request(options, others).session_id is None
        assert asgi_request(options, [(b"cookie", b"a=1"), (b"cookie", b"b=2")]).source is None
        # Not a cookie header, though it names one; an empty value is no id.
        assert asgi_request(options, [(b"x-cookie", f"session={VALID}".encode())]).source is None
        assert asgi_request(options, [(b"cookie", b"session=")]).session_id is None
        # ASGI allows any iterable of two-item iterables.
        pairs = [[b"accept", b"*/*"], [b"cookie", f"session={VALID}".encode()]]
        assert asgi_request(options, pairs).session_id == VALID  # type: ignore[arg-type]

    def test_bad_header_name_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigurationError):
            RequestOptions(id_header="X Session")
        with pytest.raises(ConfigurationError):
            RequestOptions(id_query_param="")


def test_vary_cookie_joins_the_apps_own_vary_whatever_its_case() -> None:
    def with_vary_cookie(headers: object) -> list[tuple[bytes, bytes]]:
        return _add_headers(headers, [("Vary", "Cookie")])

    headers = [(b"content-type", b"text/plain"), (b"X-Vary-Reason", b"vary"), (b"vare", b"x")]
    # A name containing "vary", a value equal to it, a name of its length: none is Vary.
    assert with_vary_cookie(headers) == [*headers, (b"vary", b"Cookie")]
    assert with_vary_cookie(iter(headers)) == [*headers, (b"vary", b"Cookie")]
    assert with_vary_cookie(None) == [(b"vary", b"Cookie")]
    own = [(b"VARY", b"Accept-Encoding"), (b"content-length", b"2")]
    assert with_vary_cookie(own) == [(b"VARY", b"Accept-Encoding, Cookie"), own[1]]
    assert with_vary_cookie([(b"Vary", b"cookie")]) == [(b"Vary", b"cookie")]  # once only
    assert with_vary_cookie([(b"vary", b"*")]) == [(b"vary", b"*")]
    assert own == [(b"VARY", b"Accept-Encoding"), (b"content-length", b"2")], "not mutated"


class TestHttps:
    def test_scheme(self) -> None:
        assert is_https("https", None, trust_forwarded=False)
        assert not is_https("http", None, trust_forwarded=False)

    def test_forwarded_proto_only_when_trusted(self) -> None:
        assert not is_https("http", "https", trust_forwarded=False)
        assert is_https("http", "https", trust_forwarded=True)
        assert not is_https("https", "http", trust_forwarded=True)

    def test_nearest_proxy_wins_in_a_list(self) -> None:
        # A client may prepend its own value; the last one is our proxy's.
        assert not is_https("http", "https, http", trust_forwarded=True)
        assert is_https("http", "http, HTTPS", trust_forwarded=True)

    def test_request_reads_the_header(self) -> None:
        trusted = RequestOptions(trust_forwarded_proto=True)
        assert wsgi_request(trusted, HTTP_X_FORWARDED_PROTO="https").https
        assert not wsgi_request(RequestOptions(), HTTP_X_FORWARDED_PROTO="https").https
        asgi = asgi_request(trusted, [(b"x-forwarded-proto", b"https")])
        assert asgi.https


def test_merge_vary() -> None:
    assert merge_vary(None, ["Cookie"]) == "Cookie"
    assert merge_vary("Accept-Encoding", ["Cookie"]) == "Accept-Encoding, Cookie"
    assert merge_vary("cookie, Accept", ["Cookie", "X-Id"]) == "cookie, Accept, X-Id"
    assert merge_vary("*", ["Cookie"]) == "*"


class TestResponseHeaders:
    def manager(self) -> ormsession.SessionManager:
        return ormsession.configure("memory://")

    def test_untouched_session_adds_nothing(self) -> None:
        manager = self.manager()
        session = manager.open(None)
        request = wsgi_request(RequestOptions())
        assert request.headers_for(session, manager.save(session)) == []

    def test_read_session_adds_vary_only(self) -> None:
        manager = self.manager()
        session = manager.open(None)
        session.get("x")
        request = wsgi_request(RequestOptions(id_header="X-Session-Id"))
        assert request.headers_for(session, manager.save(session)) == [
            ("Vary", "Cookie, X-Session-Id")
        ]

    def test_header_client_learns_its_new_id(self) -> None:
        manager = self.manager()
        session = manager.open(None)
        session["a"] = 1
        manager.save(session)
        options = RequestOptions(id_header="X-Session-Id")
        request = wsgi_request(options, HTTP_X_SESSION_ID=session.id)
        loaded = manager.open(request.session_id)
        assert dict(loaded) == {"a": 1}
        # Unchanged id: no header echoed back.
        assert ("X-Session-Id", loaded.id) not in request.headers_for(loaded, None)
        manager.regenerate(loaded)
        headers = dict(request.headers_for(loaded, manager.save(loaded)))
        assert headers["X-Session-Id"] == loaded.id != request.session_id
        manager.destroy(loaded)
        headers = dict(request.headers_for(loaded, manager.save(loaded)))
        assert headers["X-Session-Id"] == ""

    def test_cookie_client_gets_no_id_header(self) -> None:
        manager = self.manager()
        session = manager.open(None)
        session["a"] = 1
        request = wsgi_request(RequestOptions(id_header="X-Session-Id"))
        names = [name for name, _ in request.headers_for(session, manager.save(session))]
        assert names == ["Set-Cookie", "Vary"]


def test_config_for_rejects_manager_options_next_to_a_manager() -> None:
    with pytest.raises(ConfigurationError, match="cookie_name"):
        config_for(None, {"cookie_name": "x", "id_header": "X-Id"}, manager_given=True)
    assert config_for(None, {"id_header": "X-Id"}, manager_given=True).id_header == "X-Id"
    with pytest.raises(ConfigurationError, match="unknown option"):
        config_for(None, {"no_such_option": 1}, manager_given=False)


def test_late_change_is_a_write_or_a_new_id_after_the_headers() -> None:
    manager = ormsession.configure("memory://")
    session = manager.open(None)
    session["user"] = "ada"
    manager.save(session)
    sent = session.id
    assert not late_change(session, sent)
    session.get("user")  # a read after the headers needs no second save
    assert not late_change(session, sent)
    manager.regenerate(session)  # a new id (stored at once) the client never got
    assert late_change(session, sent)
    session = manager.open(session.id)
    session["user"] = "grace"
    assert late_change(session, session.id)


def test_lost_cookie_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    manager = ormsession.configure("memory://")
    session = manager.open(None)
    with caplog.at_level(logging.WARNING, logger="ormsession"):
        warn_cookie_lost(session, session.id, None)
        assert not caplog.records
        warn_cookie_lost(session, session.id, "session=x")
    assert "did not get the new cookie" in caplog.text


def test_import_ormsession_imports_no_framework() -> None:
    code = (
        "import sys, ormsession, ormsession.integrations.wsgi, ormsession.integrations.asgi\n"
        "loaded = sorted(m for m in ('flask', 'starlette', 'fastapi') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
