"""Store URLs of every scheme, with arbitrary text: building the store gives a working
repository or a ConfigurationError, nothing else, and no message shows a password."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ormsession.config import Config
from ormsession.errors import ConfigurationError
from tests.properties.offline import configure_offline, shown_cause

#: Every built-in scheme, and spellings with a driver or a typo.
SCHEMES = [
    "memory", "sqlite", "sqlite+pysqlite", "sqlite+aiosqlite", "postgresql",
    "postgresql+psycopg2", "postgresql+asyncpg", "postgres", "mysql", "mysql+pymysql",
    "mysql+asyncmy", "mariadb", "redis", "rediss", "unix", "redis+sentinel", "redis+cluster",
    "couchbase", "couchbases", "redis+bogus", "postgresql+bogus", "bogus", "",
]  # fmt: skip
#: The password planted in URLs: it must never come back in a message or a repr.
SECRET = "Pw9zQx"
#: Characters URLs are made of, odd ones included (an unencoded '/', '#', '@' or '?' in a
#: password, '%' escapes, brackets, NUL, spaces, non-ASCII).
URL_ALPHABET = st.sampled_from(
    [*"abcxyz019AZ:/@?#&=;%[]._-+, ~", "\x00", "é", "²", "\n", "\t", "\U0001f600"]
)
text = st.text(URL_ALPHABET, max_size=30)
hosts = st.sampled_from(["127.0.0.1", "h", "[::1]", "a" * 64, "x.y", ""])
paths = st.sampled_from(["", "/", "/0", "/db", "/b", "/mymaster/0", "/:memory:"])
queries = st.sampled_from(
    ["", "?charset=utf8mb4", "?bogus=1", "?timeout=x", "?key_prefix=p:", "?db=3"]
)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


def check(url: str, runner: asyncio.Runner) -> None:
    try:
        shown = configure_offline(url, runner)
    except ConfigurationError as exc:
        event("refused")
        error: BaseException | None = exc
        while error is not None:  # the whole chain: a traceback prints every link
            assert SECRET not in str(error) and SECRET not in repr(error), url
            error = shown_cause(error)
        return
    event("configured")
    for text_shown in shown:
        assert SECRET not in text_shown, url
    config = Config(url=url)
    for rendering in (repr(config), str(config), config.model_dump_json(), repr(config.url)):
        assert SECRET not in rendering


@settings(max_examples=400)
@given(scheme=st.sampled_from(SCHEMES), tail=text)
def test_arbitrary_text_after_any_scheme(runner: asyncio.Runner, scheme: str, tail: str) -> None:
    check(f"{scheme}://{tail}" if scheme else tail, runner)


@settings(max_examples=400)
@given(
    scheme=st.sampled_from(SCHEMES),
    user=st.sampled_from(["", "u", "user"]),
    password_tail=text,
    host=hosts,
    port=st.sampled_from(["", ":1", ":6379", ":99999", ":x"]),
    path=paths,
    query=queries,
    junk=text,
)
def test_a_password_in_the_userinfo_is_never_shown(
    runner: asyncio.Runner,
    scheme: str,
    user: str,
    password_tail: str,
    host: str,
    port: str,
    path: str,
    query: str,
    junk: str,
) -> None:
    head = f"{scheme}://" if scheme else ""
    check(f"{head}{user}:{SECRET}{password_tail}@{host}{port}{path}{query}{junk}", runner)


@settings(max_examples=300)
@given(
    scheme=st.sampled_from(SCHEMES),
    host=hosts,
    path=paths,
    name=st.sampled_from(["password", "passwd", "sentinel_password", "PASSWORD"]),
    junk=text,
)
def test_a_password_in_the_query_is_never_shown(
    runner: asyncio.Runner, scheme: str, host: str, path: str, name: str, junk: str
) -> None:
    head = f"{scheme}://" if scheme else ""
    check(f"{head}{host}{path}?{name}={SECRET}{junk}", runner)
