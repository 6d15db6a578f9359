"""``ormsession demo``: a small web app that shows server-side sessions at work.

Sign in with just a name, sign out, bump a counter, fill a cart, and watch the session id
(a short hash of it, never the id itself) rotate on sign-in while the data stays. It runs
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
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ormsession.integrations.wsgi import (
    SessionMiddleware,
    destroy_session,
    get_session,
    regenerate_session,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ormsession.config import Config
    from ormsession.session import RequestSession

__all__ = ["CATALOGUE", "demo_app", "fingerprint", "make_app", "serve"]

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
        notice = "signed_out" in parse_qs(environ.get("QUERY_STRING", ""))
        return _send(start_response, "200 OK", "text/html", _page(session, notice))
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
    name = " ".join(form.get("name", "").split())[:MAX_NAME]
    if not name:
        return "/"
    before = fingerprint(session.id) if not session.is_new else None
    # A new id at every privilege change, so an id planted before sign-in is worthless.
    regenerate_session(environ)
    session["user"] = name
    session["rotation"] = [before, fingerprint(session.id)]
    return "/"


def _sign_out(environ: WSGIEnvironment, session: RequestSession, form: dict[str, str]) -> str:
    destroy_session(environ)
    return "/?signed_out=1"


_ACTIONS = {
    "/counter": _count,
    "/cart/add": _add,
    "/cart/clear": _clear_cart,
    "/login": _sign_in,
    "/logout": _sign_out,
}


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
"""


def _page(session: RequestSession, signed_out: bool) -> str:
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
    if signed_out and not user:
        notes.append('<p class="note">Signed out: the session was deleted from the store.</p>')
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
