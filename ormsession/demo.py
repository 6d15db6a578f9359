"""``ormsession demo``: a small web app that shows server-side sessions at work.

Sign in with just a name, sign out, bump a counter, fill a cart, and watch the session id
(a short hash of it, never the id itself) rotate on sign-in while the data stays. Signed
in, a card lists every session of that name ("where you're signed in"), from any browser,
and signs one out, or all the others. It runs
on the standard library's WSGI server through :mod:`ormsession.integrations.wsgi`, so it
needs no web framework; the store is whatever the configuration's URL names (SQLite by default).
"""

from __future__ import annotations

import hashlib
import html
import json
import signal
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ormsession.integrations.wsgi import (
    SessionMiddleware,
    destroy_session,
    get_session,
    list_sessions,
    login_session,
    revoke_other_sessions,
    revoke_session,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ormsession.config import Config
    from ormsession.session import RequestSession
    from ormsession.users import UserSession

__all__ = ["CATALOGUE", "demo_app", "device_name", "fingerprint", "make_app", "serve"]

CATALOGUE = {"apple": "Apple", "bread": "Bread", "cheese": "Cheese", "tea": "Tea"}
MAX_NAME = 40
MAX_FORM_BYTES = 4096


def fingerprint(session_id: str) -> str:
    """A short, safe label for a session id: the first 8 hex digits of its SHA-256 (the
    stored key's prefix). The id itself is a bearer credential and is never shown."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()[:8]


def demo_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The demo's routes (wrap it in :class:`SessionMiddleware`, as :func:`make_app` does)."""
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
    session = get_session(environ)
    if method == "GET" and path == "/":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        sessions = list_sessions(environ)
        page = _page(session, sessions, _notice(query))
        return _send(start_response, "200 OK", "text/html", page)
    if method == "GET" and path == "/state.json":
        return _send(start_response, "200 OK", "application/json", json.dumps(_state(session)))
    action = _ACTIONS.get(path)
    if method == "POST" and action is not None:
        target = action(environ, session, _form(environ))
        start_response("303 See Other", [("Location", target), ("Content-Length", "0")])
        return [b""]
    return _send(start_response, "404 Not Found", "text/plain", "not found")


def _send(start_response: StartResponse, status: str, kind: str, text: str) -> list[bytes]:
    body = text.encode("utf-8")
    start_response(
        status,
        [
            ("Content-Type", f"{kind}; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]


def _form(environ: WSGIEnvironment) -> dict[str, str]:
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_FORM_BYTES)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length).decode("utf-8", "replace") if length else ""
    return {key: values[0] for key, values in parse_qs(raw).items()}


def _count(environ: WSGIEnvironment, session: RequestSession, form: dict[str, str]) -> str:
    session["counter"] = int(session.get("counter", 0)) + 1
    return "/"


def _add(environ: WSGIEnvironment, session: RequestSession, form: dict[str, str]) -> str:
    item = form.get("item", "")
    if item in CATALOGUE:
        # Mutated in place: the session notices at save time, no mark_modified() needed.
        session.setdefault("cart", []).append(item)
    return "/"


def _clear_cart(environ: WSGIEnvironment, session: RequestSession, form: dict[str, str]) -> str:
    session.pop("cart", None)
    return "/"


def _sign_in(environ: WSGIEnvironment, session: RequestSession, form: dict[str, str]) -> str:
    printable = "".join(ch for ch in form.get("name", "") if ch.isprintable())
    name = " ".join(printable.split())[:MAX_NAME]
    if not name:
        return "/"
    before = fingerprint(session.id) if not session.is_new else None
    # A new id at every privilege change, so an id planted before sign-in is worthless;
    # the session is bound to the name (the demo's user id), so it is listed with the
    # name's other sessions and can be signed out from any of them.
    login_session(environ, name)
    session["user"] = name
    session["rotation"] = [before, fingerprint(session.id)]
    return "/"


def _sign_out(environ: WSGIEnvironment, session: RequestSession, form: dict[str, str]) -> str:
    destroy_session(environ)
    return "/?signed_out=1"


def _sign_out_one(environ: WSGIEnvironment, session: RequestSession, form: dict[str, str]) -> str:
    here = form.get("handle") == session.handle
    ended = revoke_session(environ, form.get("handle", ""))
    if here:
        return "/?signed_out=1"
    return f"/?revoked={int(ended)}"


def _sign_out_others(
    environ: WSGIEnvironment, session: RequestSession, form: dict[str, str]
) -> str:
    return f"/?revoked={revoke_other_sessions(environ)}"


_ACTIONS = {
    "/counter": _count,
    "/cart/add": _add,
    "/cart/clear": _clear_cart,
    "/login": _sign_in,
    "/logout": _sign_out,
    "/sessions/revoke": _sign_out_one,
    "/sessions/revoke-others": _sign_out_others,
}


def _notice(query: dict[str, list[str]]) -> str | None:
    """The note a redirect asked for (``?signed_out=1``, ``?revoked=N``)."""
    if "signed_out" in query:
        return "signed_out"
    revoked = query.get("revoked", [""])[0]
    return f"revoked:{int(revoked)}" if revoked.isdigit() else None


def _state(session: RequestSession) -> dict[str, Any]:
    return {
        "user": session.get("user"),
        "counter": session.get("counter", 0),
        "cart": list(session.get("cart", [])),
        "session": None if session.is_new else fingerprint(session.id),
    }


_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;background:#f4f1ea;color:#222;margin:0}
main{max-width:40rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 1rem} h2{font-size:1.05rem;margin:0 0 .5rem}
section{background:#fff;border-radius:.6rem;padding:1rem 1.2rem;margin:0 0 1rem;
box-shadow:0 1px 3px #0002}
form{display:inline} input{font:inherit;padding:.3rem .5rem;border:1px solid #bbb;
border-radius:.3rem} button{font:inherit;padding:.3rem .8rem;border:0;border-radius:.3rem;
background:#2f6f5e;color:#fff;cursor:pointer;margin:.15rem} button.quiet{background:#999}
code{background:#eee;padding:.1rem .35rem;border-radius:.25rem} .muted{color:#666;
font-size:.9rem} .note{background:#e6f2ee;border-left:4px solid #2f6f5e;padding:.5rem .8rem}
ul.devices{list-style:none;padding:0;margin:0 0 .5rem} ul.devices li{display:flex;
justify-content:space-between;align-items:center;gap:.5rem;padding:.4rem 0;
border-bottom:1px solid #eee} .here{background:#2f6f5e;color:#fff;border-radius:.3rem;
padding:.05rem .4rem;font-size:.8rem}
"""

#: (what a User-Agent contains, the name shown), first match wins: Edge and Chrome also say
#: "Safari", Chrome says "Chrome", so the more specific names come first.
_BROWSERS = (
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def device_name(user_agent: str | None) -> str:
    """ "Chrome on Linux" for a User-Agent, roughly (shown next to the full string)."""
    if not user_agent:
        return "Unknown device"
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "A browser")
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    return f"{browser} on {system}" if system else browser


def _ago(when: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _devices(sessions: list[UserSession]) -> str:
    """The "where you're signed in" card: one row per live session of the user."""
    e = html.escape
    rows = []
    for listed in sessions:
        here = ' <span class="here" data-testid="this-device">this device</span>'
        label = "Sign out here" if listed.current else "Sign out"
        seen = listed.last_seen.strftime("%Y-%m-%d %H:%M:%S UTC")
        rows.append(
            f'<li data-testid="device" data-current="{str(listed.current).lower()}">'
            f'<span><strong title="{e(listed.user_agent or "")}">'
            f"{e(device_name(listed.user_agent))}</strong>{here if listed.current else ''}<br>"
            f'<span class="muted">{e(listed.ip or "unknown address")} · last seen '
            f'<span title="{seen}">{_ago(listed.last_seen)}</span></span></span>'
            '<form method="post" action="/sessions/revoke">'
            f'<input type="hidden" name="handle" value="{e(listed.handle)}">'
            f'<button class="quiet" data-testid="revoke">{label}</button></form></li>'
        )
    others = len(sessions) - sum(listed.current for listed in sessions)
    everywhere = (
        '<form method="post" action="/sessions/revoke-others"><button '
        f'data-testid="revoke-others">Sign out everywhere else ({others})</button></form>'
        '<p class="muted">Signs out every other browser signed in with this name; this one '
        "stays signed in.</p>"
        if others
        else '<p class="muted">Signed in nowhere else. Sign in with the same name in '
        "another browser (or a private window) and it shows up here.</p>"
    )
    return (
        '<section data-testid="devices"><h2>Where you\'re signed in</h2>'
        f'<ul class="devices">{"".join(rows)}</ul>{everywhere}</section>'
    )


def _page(session: RequestSession, sessions: list[UserSession], notice: str | None) -> str:
    state, e = _state(session), html.escape
    user = state["user"]
    fp = state["session"]
    rotation = session.get("rotation") if user else None
    cart = state["cart"]
    items = "".join(
        f'<form method="post" action="/cart/add"><input type="hidden" name="item" '
        f'value="{key}"><button data-testid="add-{key}">+ {e(label)}</button></form>'
        for key, label in CATALOGUE.items()
    )
    who = (
        f'<p>Signed in as <strong data-testid="user">{e(user)}</strong></p>'
        '<form method="post" action="/logout"><button data-testid="logout">Sign out'
        "</button></form>"
        if user
        else '<p data-testid="user">Not signed in.</p><form method="post" action="/login">'
        '<input name="name" data-testid="name" placeholder="Your name" '
        f'maxlength="{MAX_NAME}" required> <button data-testid="login">Sign in</button></form>'
    )
    notes = []
    if rotation:
        old = f"<code>{e(rotation[0])}</code>" if rotation[0] else "a new session"
        notes.append(
            f'<p class="note" data-testid="rotation">Signing in rotated the session id: '
            f"{old} → <code>{e(rotation[1])}</code>. Your cart came along.</p>"
        )
    if notice == "signed_out" and not user:
        notes.append('<p class="note">Signed out: the session was deleted from the store.</p>')
    if notice is not None and notice.startswith("revoked:") and user:
        ended = int(notice.partition(":")[2])
        what = "1 other session" if ended == 1 else f"{ended} other sessions"
        notes.append(
            f'<p class="note" data-testid="revoked">Signed out {what}: gone from the store, '
            "so its next request finds no session.</p>"
        )
    status = (
        "Nothing stored yet: no cookie until you change something."
        if fp is None
        else "Stored server-side; your browser holds only the id, in an HttpOnly cookie."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ormsession demo</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">
<style>{_STYLE}</style>
</head><body><main>
<h1>ormsession demo</h1>
{"".join(notes)}
<section><h2>Who you are</h2>{who}</section>
{_devices(sessions) if user and sessions else ""}
<section><h2>Counter</h2>
<p>You pressed it <strong data-testid="counter">{state["counter"]}</strong> time(s).</p>
<form method="post" action="/counter"><button data-testid="increment">+1</button></form>
</section>
<section><h2>Cart</h2>
<p data-testid="cart">{e(", ".join(cart)) or "empty"}</p>{items}
<form method="post" action="/cart/clear">
<button class="quiet" data-testid="clear">Empty</button></form></section>
<section><h2>Your session</h2>
<p>Session <code data-testid="fingerprint">{e(fp or "none")}</code>
<span class="muted">(the first 8 hex digits of the id's SHA-256: the store keeps only the
hash, and this page never shows the id itself)</span></p>
<p class="muted">{status}</p></section>
</main></body></html>"""


def make_app(config: Config) -> SessionMiddleware:
    """The demo app wrapped in the session middleware, on the store ``config`` names."""
    return SessionMiddleware(demo_app, config=config)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's idle keep-alive must not hold up shutdown


def serve(config: Config, *, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Run the demo until Ctrl+C (or SIGTERM); return the process exit code."""
    app = make_app(config)
    try:
        server = make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=WSGIRequestHandler
        )
    except OSError as exc:
        app.close()
        print(f"ormsession demo: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    print(
        f"ormsession demo: serving on http://{host}:{server.server_port}/ "
        f"(store: {config.url}; Ctrl+C to stop)",
        flush=True,
    )
    # Signal handlers can only be set from the main thread (the CLI's case).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        server.server_close()
        app.close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM (a process manager or a test stopping the demo) shuts down like Ctrl+C.
    raise KeyboardInterrupt
