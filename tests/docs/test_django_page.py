"""docs/integrations/django.md's complete example runs as written and does what the page says.

The example configures Django's settings when imported, and settings are configured once
per process: so it runs in subprocesses, as a user runs it (``python app.py migrate``,
``python app.py clearsessions``), and a driver script imports it and goes through it with
Django's test client.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
PAGE = PROJECT / "docs" / "integrations" / "django.md"

DRIVER = r"""
import app  # configures the settings
import django

django.setup()
from django.contrib.auth.models import User
from django.test import Client

User.objects.create_user("ada", password="secret")
laptop, phone = Client(HTTP_USER_AGENT="laptop"), Client(HTTP_USER_AGENT="phone")
assert "Visits: 1." in laptop.get("/").text
assert "Visits: 2." in laptop.get("/").text
before = laptop.cookies["sessionid"].value
assert laptop.post("/login", {"username": "ada", "password": "wrong"}).status_code == 403
for browser in (laptop, phone):
    assert browser.post("/login", {"username": "ada", "password": "secret"}).status_code == 303
after = laptop.cookies["sessionid"].value
assert after != before, "login cycles the key"
assert Client(cookies={"sessionid": before}).get("/whoami").text == "nobody 0", "old key dead"
page = laptop.get("/").text
assert "Signed in: ada. Visits: 3." in page, page
assert "<li>laptop (this one)</li>" in page and "<li>phone</li>" in page, page
assert laptop.get("/whoami").text == "ada 3"
assert phone.post("/others").text == "signed out of 1 other session(s)"
assert laptop.get("/whoami").text == "nobody 0", "signed out elsewhere"
assert phone.get("/whoami").text.startswith("ada ")
kept = phone.cookies["sessionid"].value
assert phone.post("/logout").status_code == 303
assert Client(cookies={"sessionid": kept}).get("/whoami").text == "nobody 0", "logout sticks"
print("example ok")
"""


def example() -> str:
    text = PAGE.read_text(encoding="utf-8")
    start = text.index("## A complete example")
    found = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert found, "no python example on the page"
    return found.group(1)


def run(directory: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORMSESSION_")}
    env["PYTHONPATH"] = os.pathsep.join([str(directory), str(PROJECT)])
    completed = subprocess.run(
        [sys.executable, *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"{args}: {completed.stdout}\n{completed.stderr}"
    return completed.stdout


def test_the_complete_example_runs(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(example(), encoding="utf-8")
    run(tmp_path, "app.py", "migrate", "--verbosity", "0")
    (tmp_path / "driver.py").write_text(DRIVER, encoding="utf-8")
    assert "example ok" in run(tmp_path, "driver.py")
    # The sessions went to the project's own database, in ormsession's table.
    import sqlite3

    with sqlite3.connect(tmp_path / "app.sqlite3") as db:
        (stored,) = db.execute("SELECT count(*) FROM session").fetchone()
    assert stored >= 1
    run(tmp_path, "app.py", "clearsessions")
