"""A Django project made by ``django-admin startproject``, switched to ormsession with the
two settings docs/integrations/django.md gives, logs in to its admin in a real browser.

Debian's Chromium, driven by Playwright, against ``manage.py runserver``: the project is
made fresh in a temporary directory, migrated, given a superuser, and served; the browser
signs in to ``/admin/`` and out again. Skipped without /usr/bin/chromium (failed under
``ORMSESSION_REQUIRE_BACKENDS=1``).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_demo_browser import browser_context, free_port  # noqa: F401

CHECKOUT = str(Path(__file__).resolve().parents[2])
#: What docs/integrations/django.md tells a project to add to its settings.
DOCUMENTED_SETTINGS = """
SESSION_ENGINE = "ormsession.integrations.django"
ORMSESSION_DATABASE = "default"
"""
PASSWORD = "correct horse battery staple"


def project_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORMSESSION_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [CHECKOUT, env.get("PYTHONPATH")]))
    return env


def manage(project: Path, *args: str, **extra_env: str) -> None:
    completed = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=project_env() | extra_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"manage.py {args}: {completed.stdout}{completed.stderr}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)],
        check=True,
        env=project_env(),
        timeout=60,
    )
    settings = tmp_path / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + DOCUMENTED_SETTINGS)
    manage(tmp_path, "migrate", "--verbosity", "0")
    manage(
        tmp_path,
        *("createsuperuser", "--noinput", "--username", "admin", "--email", "a@example.com"),
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    return tmp_path


@pytest.fixture
def server(project: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = (project / "runserver.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=project,
        env=project_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "admin/login/", timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(
                        f"runserver did not start:\n{(project / 'runserver.log').read_text()}"
                    )
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def sessions_in(project: Path) -> tuple[int, int]:
    """How many sessions ormsession's table and Django's own table hold."""
    with sqlite3.connect(project / "db.sqlite3") as db:
        (ours,) = db.execute("SELECT count(*) FROM session").fetchone()
        (djangos,) = db.execute("SELECT count(*) FROM django_session").fetchone()
    return ours, djangos


def status_with_cookie(url: str, cookie: str) -> int:
    """The status of ``url`` for a client that sends ``sessionid=cookie`` (no redirects)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Cookie": f"sessionid={cookie}"})
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_admin_login_in_chromium(
    browser_context: Any,  # noqa: F811
    server: str,
    project: Path,
) -> None:
    page = browser_context.pages[0] if browser_context.pages else browser_context.new_page()
    page.goto(server + "admin/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert "Site administration" in page.content()

    cookies = [c for c in browser_context.cookies(server) if c["name"] == "sessionid"]
    assert len(cookies) == 1
    session_id = cookies[0]["value"]
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Lax"
    assert len(session_id) >= 43, "an ormsession id (256 bits), not Django's 32 characters"
    assert sessions_in(project) == (1, 0), "the session is in ormsession's table, not Django's"

    page.goto(server + "admin/auth/user/")
    assert "Select user to change" in page.content()
    assert status_with_cookie(server + "admin/", session_id) == 200

    page.goto(server + "admin/")
    page.click("#logout-form button[type=submit]")
    page.wait_for_load_state()
    assert "Logged out" in page.content()
    assert status_with_cookie(server + "admin/", session_id) == 302, "the logout sticks"
    assert sessions_in(project) == (0, 0)
    page.goto(server + "admin/")
    assert "/admin/login/" in page.url
