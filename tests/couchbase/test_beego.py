"""beego's couchbase provider strings as ormsession URLs."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ormsession.beego
from ormsession.beego import config_from_beego
from ormsession.errors import ConfigurationError
from ormsession.repositories.couchbase.beego import parse_couchbase_provider
from tests.support.couchbase_fixtures import (
    COUCHBASE_PASSWORD,
    COUCHBASE_USER,
    unique_prefix,
)
from tests.support.couchbase_server import CouchbaseTestServer


@pytest.mark.parametrize(
    ("config", "url"),
    [
        ("http://127.0.0.1:8091/,default,sessions", "couchbase://127.0.0.1/sessions"),
        # beego did not trim: " sessions" was a bucket name with a space.
        ("  http://cb.local:8091/ , default ,  sessions ", "couchbase://cb.local/sessions"),
        ("http://cb.local/,,sessions", "couchbase://cb.local/sessions"),
        ("cb.local:8091,default,sessions", "couchbase://cb.local/sessions"),
        ("https://cb.local:18091/,default,sessions", "couchbases://cb.local/sessions"),
        ("http://app:p%40ss@cb.local:8091/pools,default,s", "couchbase://app:p%40ss@cb.local/s"),
        ("http://[::1]:8091/,default,sessions", "couchbase://[::1]/sessions"),
        ("couchbase://cb.local:12000,default,sessions", "couchbase://cb.local:12000/sessions"),
        (
            '{"save_path": "http://cb.local:8091/", "pool": "default", "bucket": "sessions"}',
            "couchbase://cb.local/sessions",
        ),
        (
            '{"save_path": " http://cb.local:8091/ ", "bucket": " sessions "}',
            "couchbase://cb.local/sessions",
        ),
    ],
)
def test_provider_strings(config: str, url: str) -> None:
    assert parse_couchbase_provider(config) == (url, {})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("http://cb.local:8091/,default", "names no bucket"),
        ("http://cb.local:8091/,default,", "names no bucket"),
        ('{"save_path": "http://cb.local:8091/"}', "names no bucket"),
        (",default,sessions", "no save_path"),
        ("http://cb.local:9000/,default,sessions", "uses port 9000"),
        ("https://cb.local:8091/,default,sessions", "uses port 8091"),
        ("ftp://cb.local/,default,sessions", "must be http:// or https://"),
        ("http://cb.local:8091/,default,sessions,extra", "more than three fields"),
        ('{"save_path": ', "not valid JSON"),
        ("http://cb.local:8091/,default,bad/bucket", "bucket name"),
    ],
)
def test_bad_provider_strings(config: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_couchbase_provider(config)


def test_a_password_in_save_path_never_shows_in_errors() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_couchbase_provider("http://app:hunter2@cb.local:9000/,default,sessions")
    assert "hunter2" not in str(caught.value)


def test_beego_configure_end_to_end(couchbase_server: CouchbaseTestServer) -> None:
    # A custom key-value port can only be given in couchbase:// form (see the module doc).
    save_path = (
        f"couchbase://{COUCHBASE_USER}:{COUCHBASE_PASSWORD}@127.0.0.1:{couchbase_server.port}"
    )
    config = {
        "cookieName": "gosessionid",
        "gclifetime": 3600,
        "providerConfig": f"{save_path} , default , sessions",
    }
    settings = config_from_beego("couchbase", config, key_prefix=unique_prefix())
    assert settings.url.get_secret_value().endswith(f"127.0.0.1:{couchbase_server.port}/sessions")
    with ormsession.beego.configure("couchbase", config, key_prefix=unique_prefix()) as manager:
        session = manager.open(None)
        session["uid"] = 7
        cookie = manager.save(session)
        assert cookie is not None
        name, _, sid = cookie.split(";", 1)[0].partition("=")
        assert name == "gosessionid"
        assert dict(manager.open(sid)) == {"uid": 7}


def test_the_parsers_need_no_sdk() -> None:
    # Config tooling (and beego migration scripts) must work without the driver installed.
    code = (
        "import sys; sys.modules['couchbase'] = None; sys.modules['acouchbase'] = None\n"
        "from ormsession.repositories.couchbase.beego import parse_couchbase_provider\n"
        "from ormsession.repositories.couchbase.urls import parse_couchbase_url\n"
        "print(parse_couchbase_provider('http://h:8091/,default,b')[0])\n"
        "print(parse_couchbase_url('couchbase://u:p@h/b').bucket)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["couchbase://h/b", "b"]


def test_without_the_sdk_the_registry_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['couchbase'] = None; sys.modules['acouchbase'] = None\n"
        "import ormsession\n"
        "try:\n"
        "    ormsession.configure(url='couchbase://u:p@127.0.0.1:1/b')\n"
        "except ormsession.errors.MissingDriverError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert "pip install 'ormsession[couchbase]'" in done.stdout, done.stderr
