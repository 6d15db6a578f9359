"""End to end in a real browser: Debian's Chromium, driven by Playwright, against the real
``ormsession demo`` command on a SQLite file.

Needs /usr/bin/chromium (``bash scripts/install-chromium``); skipped without it, failed
under ``ORMSESSION_REQUIRE_BACKENDS=1``. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import backend_missing

CHECKOUT = str(Path(__file__).resolve().parents[2])
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COOKIE = "demo_session"
LIFETIME = 3600
# The demo is configured the way an operator would: through ORMSESSION_* variables.
DEMO_ENV = {
    "ORMSESSION_COOKIE_NAME": COOKIE,
    "ORMSESSION_COOKIE_SAMESITE": "strict",
    "ORMSESSION_COOKIE_LIFETIME": str(LIFETIME),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_command() -> list[str]:
    """The installed ``ormsession`` console script next to this Python, else ``-m``."""
    script = Path(sys.executable).with_name("ormsession")
    if script.exists():
        return [str(script), "demo"]
    found = shutil.which("ormsession")
    return [found, "demo"] if found else [sys.executable, "-m", "ormsession", "demo"]


class DemoServer:
    """``ormsession demo`` in a subprocess; restartable on the same port and file."""

    def __init__(self, workdir: Path, database: Path, port: int, *, url: str | None = None) -> None:
        self.workdir, self.database, self.port = workdir, database, port
        self.store_url = url or f"sqlite:///{database}"
        self.process: subprocess.Popen[str] | None = None
        self.url = f"http://127.0.0.1:{port}/"
        self.log = workdir / "demo.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORMSESSION_")}
        # The command runs this checkout's package, even where the virtualenv's is another
        # checkout's (a git worktree sharing one virtualenv).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [CHECKOUT, env.get("PYTHONPATH")]))
        command = [
            *demo_command(),
            "--url",
            self.store_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env | DEMO_ENV,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 20)
        line = self.process.stdout.readline() if ready else ""
        if f"serving on {self.url}" not in line:
            self.stop()
            pytest.fail(f"demo did not start: {line!r}\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        assert code == 0, f"demo exited with {code}\n{self.log.read_text()}"

    def state(self, cookie: str | None) -> dict[str, Any]:
        """What the server makes of a given cookie value, asked outside the browser."""
        request = urllib.request.Request(self.url + "state.json")
        if cookie is not None:
            request.add_header("Cookie", f"{COOKIE}={cookie}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DemoServer]:
    demo = DemoServer(tmp_path, tmp_path / "demo.sqlite3", free_port())
    demo.start()
    try:
        yield demo
    finally:
        demo.stop()


def _playwright() -> Any:
    if not Path(CHROMIUM).exists():
        backend_missing(f"{CHROMIUM} is missing: run `bash scripts/install-chromium` as root")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        backend_missing(f"playwright is not installed: {exc}")
    return sync_playwright()


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[Any]:
    with _playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"),  # a fresh profile: no old cookies
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


def session_cookie(context: Any, url: str) -> dict[str, Any] | None:
    cookies = [cookie for cookie in context.cookies(url) if cookie["name"] == COOKIE]
    assert len(cookies) <= 1
    return cookies[0] if cookies else None


def text(page: Any, test_id: str) -> str:
    return str(page.get_by_test_id(test_id).inner_text()).strip()


def test_demo_in_chromium(browser_context: Any, server: DemoServer, tmp_path: Path) -> None:
    page = browser_context.pages[0] if browser_context.pages else browser_context.new_page()
    page.goto(server.url)
    assert text(page, "user") == "Not signed in."
    assert text(page, "counter") == "0"
    assert session_cookie(browser_context, server.url) is None, "a read-only visit set a cookie"

    # The counter: three writes, one cookie.
    for expected in ("1", "2", "3"):
        page.get_by_test_id("increment").click()
        page.wait_for_load_state()
        assert text(page, "counter") == expected
    cookie = session_cookie(browser_context, server.url)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["secure"] is False  # plain http
    assert cookie["domain"] == "127.0.0.1"
    assert time.time() + LIFETIME - 120 < cookie["expires"] <= time.time() + LIFETIME + 5
    anonymous_id = cookie["value"]
    assert anonymous_id not in page.content()  # the page shows a hash prefix, never the id

    page.reload()
    assert text(page, "counter") == "3"
    assert session_cookie(browser_context, server.url)["value"] == anonymous_id  # type: ignore[index]

    page.get_by_test_id("add-apple").click()
    page.wait_for_load_state()
    page.get_by_test_id("add-tea").click()
    page.wait_for_load_state()
    assert text(page, "cart") == "apple, tea"
    fingerprint = text(page, "fingerprint")
    assert re.fullmatch(r"[0-9a-f]{8}", fingerprint)

    # A server restart: the same SQLite file, a new process.
    server.stop()
    server.start()
    page.reload()
    assert text(page, "counter") == "3"
    assert text(page, "cart") == "apple, tea"
    assert text(page, "fingerprint") == fingerprint

    # Sign in: a new id, the same cart and counter; the old id is dead.
    page.get_by_test_id("name").fill("Ada")
    page.get_by_test_id("login").click()
    page.wait_for_load_state()
    assert text(page, "user") == "Ada"
    assert text(page, "cart") == "apple, tea"
    assert text(page, "counter") == "3"
    signed_in = session_cookie(browser_context, server.url)
    assert signed_in is not None and signed_in["value"] != anonymous_id
    assert signed_in["httpOnly"] is True and signed_in["sameSite"] == "Strict"
    new_fingerprint = text(page, "fingerprint")
    assert new_fingerprint != fingerprint
    assert f"{fingerprint} → {new_fingerprint}" in text(page, "rotation")
    assert server.state(anonymous_id)["counter"] == 0
    assert server.state(signed_in["value"])["user"] == "Ada"
    page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)

    # Sign out: the store forgets the session and the browser drops the cookie.
    page.get_by_test_id("logout").click()
    page.wait_for_load_state()
    assert text(page, "user") == "Not signed in."
    assert text(page, "counter") == "0"
    assert text(page, "cart") == "empty"
    assert session_cookie(browser_context, server.url) is None
    assert server.state(signed_in["value"]) == {
        "user": None,
        "counter": 0,
        "cart": [],
        "session": None,
    }


# -- a user's sessions: "where you're signed in" ------------------------------------------

LAPTOP_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
PHONE_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)


@pytest.fixture(params=["memory", "sqlite"])
def users_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DemoServer]:
    """The demo on the memory store and on its embedded SQLite."""
    database = tmp_path / "demo.sqlite3"
    url = "memory://" if request.param == "memory" else f"sqlite:///{database}"
    demo = DemoServer(tmp_path, database, free_port(), url=url)
    demo.start()
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture
def two_browsers() -> Iterator[tuple[Any, Any]]:
    """Two separate browsing contexts (two devices: their own cookies, their own
    User-Agent) of one Chromium."""
    with _playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            laptop = browser.new_context(user_agent=LAPTOP_AGENT)
            phone = browser.new_context(user_agent=PHONE_AGENT)
            for context in (laptop, phone):
                context.set_default_timeout(15_000)
            yield laptop, phone
        finally:
            browser.close()


def sign_in(page: Any, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_test_id("name").fill(name)
    page.get_by_test_id("login").click()
    page.wait_for_load_state()
    assert text(page, "user") == name


def devices(page: Any) -> list[dict[str, str]]:
    """The rows of the "where you're signed in" card."""
    rows = page.get_by_test_id("device")
    return [
        {
            "current": rows.nth(i).get_attribute("data-current"),
            "text": " ".join(rows.nth(i).inner_text().split()),
        }
        for i in range(rows.count())
    ]


def test_where_you_are_signed_in(
    two_browsers: tuple[Any, Any], users_server: DemoServer, tmp_path: Path
) -> None:
    laptop_context, phone_context = two_browsers
    laptop, phone = laptop_context.new_page(), phone_context.new_page()
    sign_in(laptop, users_server.url, "Ada")
    (only,) = devices(laptop)
    assert only["current"] == "true" and "this device" in only["text"]
    assert page_has_no_card_for_others(laptop)

    sign_in(phone, users_server.url, "Ada")
    laptop.reload()
    rows = devices(laptop)
    assert len(rows) == 2
    (here,) = [row for row in rows if row["current"] == "true"]
    (there,) = [row for row in rows if row["current"] == "false"]
    assert "Chrome on Linux" in here["text"] and "this device" in here["text"]
    assert "Safari on iPhone" in there["text"] and "this device" not in there["text"]
    assert "127.0.0.1" in there["text"] and "last seen" in there["text"]
    phone_cookie = session_cookie(phone_context, users_server.url)
    assert phone_cookie is not None
    assert phone_cookie["value"] not in laptop.content(), "the page shows handles, never ids"
    laptop.screenshot(path=str(tmp_path / "two-devices.png"), full_page=True)

    # Sign the phone out from the laptop; the phone's next page load is signed out.
    laptop.locator('[data-testid="device"][data-current="false"]').get_by_test_id("revoke").click()
    laptop.wait_for_load_state()
    assert "Signed out 1 other session" in text(laptop, "revoked")
    assert [row["current"] for row in devices(laptop)] == ["true"]
    assert text(laptop, "user") == "Ada"
    phone.reload()
    assert text(phone, "user") == "Not signed in."
    assert users_server.state(phone_cookie["value"])["user"] is None

    # "Sign out everywhere else": the phone again, and the laptop stays signed in.
    sign_in(phone, users_server.url, "Ada")
    laptop.reload()
    assert len(devices(laptop)) == 2
    laptop.get_by_test_id("revoke-others").click()
    laptop.wait_for_load_state()
    assert "Signed out 1 other session" in text(laptop, "revoked")
    assert text(laptop, "user") == "Ada"
    phone.reload()
    assert text(phone, "user") == "Not signed in."

    # Signing out here (this device's row) ends this session as the sign-out button does.
    laptop.locator('[data-testid="device"][data-current="true"]').get_by_test_id("revoke").click()
    laptop.wait_for_load_state()
    assert text(laptop, "user") == "Not signed in."
    assert session_cookie(laptop_context, users_server.url) is None


def page_has_no_card_for_others(page: Any) -> bool:
    """Signed in on one device only: no "sign out everywhere else" button."""
    return bool(page.get_by_test_id("revoke-others").count() == 0)
