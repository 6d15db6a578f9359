"""The open store interface: the base classes, ``register_store`` and the entry-point group.

Every test leaves the registry as it found it (``fresh_registry``), so their order, and
the other suites', never matters.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import ormsession
from ormsession.cli import main as cli
from ormsession.config import Config
from ormsession.errors import ConfigurationError, MissingDriverError
from ormsession.expiry import US_PER_SECOND, now_us
from ormsession.repositories import registry
from ormsession.repositories.base import (
    AsyncSessionRepository,
    OwnedSession,
    SessionRepository,
    StoredSession,
)
from ormsession.repositories.memory import AsyncMemoryRepository, MemoryRepository
from tests.support.distributions import install_distribution

MEMORY = "ormsession.repositories.memory:open_store"


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # register_store() writes to this table: give each test a copy, restored afterwards.
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))


def seeded_store(url: str, config: Config, *, want_async: bool) -> Any:
    """A store factory for the fake distribution: memory, with one live session in it, so
    that ``ormsession count`` printing 1 shows the command used this store."""
    repository = MemoryRepository()
    now = now_us()
    repository.create("0" * 64, StoredSession(b"{}", 1, now, now + 3600 * US_PER_SECOND), now)
    return AsyncMemoryRepository(repository) if want_async else repository


# -- the base classes ------------------------------------------------------------------------
class _SyncWithoutRename(SessionRepository):
    def read(self, key: str, now_us: int) -> StoredSession | None:
        return None

    def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        return True

    def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        return None

    def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return False

    def delete(self, key: str) -> None:
        return None

    def moved(self, key: str, now_us: int) -> bool:
        return False

    def count(self, now_us: int) -> int:
        return 0

    def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        return []

    def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        return False

    def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        return 0


class _AsyncWithoutRename(AsyncSessionRepository):
    async def read(self, key: str, now_us: int) -> StoredSession | None:
        return None

    async def create(self, key: str, record: StoredSession, now_us: int) -> bool:
        return True

    async def update(
        self, key: str, data: bytes, expires_us: int, expected_version: int, now_us: int
    ) -> int | None:
        return None

    async def touch(self, key: str, expires_us: int, now_us: int) -> bool:
        return False

    async def delete(self, key: str) -> None:
        return None

    async def moved(self, key: str, now_us: int) -> bool:
        return False

    async def count(self, now_us: int) -> int:
        return 0

    async def sessions_of(self, user_id: str, now_us: int) -> list[OwnedSession]:
        return []

    async def revoke(self, user_id: str, handle: str, now_us: int) -> bool:
        return False

    async def revoke_all(self, user_id: str, keep_key: str | None, now_us: int) -> int:
        return 0


@pytest.mark.parametrize("incomplete", [_SyncWithoutRename, _AsyncWithoutRename])
def test_the_base_classes_refuse_a_repository_missing_a_method(incomplete: type) -> None:
    with pytest.raises(TypeError, match="rename"):
        incomplete()


def test_the_base_classes_default_what_a_store_may_skip() -> None:
    class SyncComplete(_SyncWithoutRename):
        def rename(self, *args: Any) -> bool:
            return False

    class AsyncComplete(_AsyncWithoutRename):
        async def rename(self, *args: Any) -> bool:
            return False

    class SyncExpiring(SyncComplete):
        native_ttl = True

    class AsyncExpiring(AsyncComplete):
        native_ttl = True

    sync, asynchronous = SyncComplete(), AsyncComplete()
    assert (sync.native_ttl, sync.close()) == (False, None)
    # A store that keeps expired records must write its own gc; one with native TTLs need not.
    with pytest.raises(NotImplementedError, match="delete_expired"):
        sync.delete_expired(now_us(), 10)
    assert SyncExpiring().delete_expired(now_us(), 10) == 0

    async def defaults() -> tuple[Any, ...]:
        with pytest.raises(NotImplementedError, match="delete_expired"):
            await asynchronous.delete_expired(now_us(), 10)
        return (
            asynchronous.native_ttl,
            await asynchronous.start(),
            await AsyncExpiring().delete_expired(now_us(), 10),
            await asynchronous.close(),
        )

    assert asyncio.run(defaults()) == (False, None, 0, None)


# -- register_store ----------------------------------------------------------------------------
def test_register_store_with_a_module_factory_string() -> None:
    ormsession.register_store("Viastring", MEMORY)  # schemes are case-insensitive
    with ormsession.configure(url="viaString://anything") as manager:
        assert type(manager.repository) is MemoryRepository

    async def open_async() -> Any:
        manager = await ormsession.configure_async(url="viastring://")
        await manager.close()
        return manager.repository

    assert type(asyncio.run(open_async())) is AsyncMemoryRepository


def test_register_store_with_a_callable_that_gets_the_url_and_the_config() -> None:
    calls: list[tuple[str, Config, bool]] = []

    def factory(url: str, config: Config, *, want_async: bool) -> Any:
        calls.append((url, config, want_async))
        return AsyncMemoryRepository() if want_async else MemoryRepository()

    ormsession.register_store("viacallable", factory)
    with ormsession.configure(url="viacallable://h/db?x=1", key_prefix="app:") as manager:
        assert type(manager.repository) is MemoryRepository
    [(url, config, want_async)] = calls
    assert (url, want_async) == ("viacallable://h/db?x=1", False)
    assert config is manager.config
    assert config.key_prefix == "app:"


def test_a_registration_replaces_a_built_in_store() -> None:
    ormsession.register_store("memory", lambda url, config, *, want_async: _Marked())
    with ormsession.configure(url="memory://") as manager:
        assert type(manager.repository) is _Marked


class _Marked(MemoryRepository):
    pass


@pytest.mark.parametrize("scheme", ["", "1abc", "has space", "a/b", "ünï", 7])
def test_a_bad_scheme_is_a_configuration_error(scheme: Any) -> None:
    with pytest.raises(ConfigurationError, match="not a URL scheme"):
        ormsession.register_store(scheme, MEMORY)


@pytest.mark.parametrize(
    "target",
    ["ormsession.repositories.memory", "a module:open", ":open", "pkg:", 42, None],
)
def test_a_bad_target_is_a_configuration_error(target: Any) -> None:
    with pytest.raises(ConfigurationError, match="store factory"):
        ormsession.register_store("badtarget", target)


def test_a_target_naming_nothing_is_a_configuration_error_when_used() -> None:
    ormsession.register_store("nothing", "ormsession.repositories.memory:no_such_factory")
    with pytest.raises(ConfigurationError, match=r"no_such_factory.*not found"):
        ormsession.configure(url="nothing://")


def test_a_factory_returning_the_wrong_twin_is_a_configuration_error() -> None:
    ormsession.register_store("synconly", lambda url, config, *, want_async: MemoryRepository())
    ormsession.register_store(
        "asynconly", lambda url, config, *, want_async: AsyncMemoryRepository()
    )
    with pytest.raises(ConfigurationError, match=r"not an AsyncSessionRepository"):
        asyncio.run(ormsession.configure_async(url="synconly://"))
    with pytest.raises(ConfigurationError, match=r"not an SessionRepository.*configure_async"):
        ormsession.configure(url="asynconly://")


def test_an_unknown_scheme_lists_the_supported_ones() -> None:
    ormsession.register_store("mine", MEMORY)
    with pytest.raises(ConfigurationError, match="scheme must be one of") as caught:
        ormsession.configure(url="nosuch://h/db")
    listed = str(caught.value).rsplit("one of", 1)[1]
    for scheme in ("memory", "sqlite", "postgresql", "redis", "couchbase", "mine"):
        assert scheme in listed.replace(",", " ").split()


def test_a_missing_module_names_the_extra_to_install() -> None:
    ormsession.register_store("absent", "ormsession_absent_store:open", extra="ormsession-absent")
    with pytest.raises(MissingDriverError, match=r"pip install 'ormsession-absent'"):
        ormsession.configure(url="absent://")


# -- the ormsession.stores entry-point group -------------------------------------------------
@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution declaring two stores: one that works, one whose module is missing."""
    monkeypatch.chdir(tmp_path)  # no .env of the working directory
    monkeypatch.delenv("ORMSESSION_URL", raising=False)
    install_distribution(
        tmp_path / "site-packages",
        "ormsession-seeded",
        {
            "seeded": f"{__name__}:seeded_store",
            "seeded-broken": "ormsession_seeded_absent.store:open_store",
        },
        monkeypatch,
    )


@pytest.mark.usefixtures("installed")
def test_an_installed_store_works_from_configure() -> None:
    assert {"seeded", "seeded-broken"} <= set(registry.supported_schemes())
    with ormsession.configure(url="seeded://") as manager:
        assert manager.count() == 1


@pytest.mark.usefixtures("installed")
def test_an_installed_store_works_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORMSESSION_URL", "seeded://")
    with ormsession.configure() as manager:
        assert manager.count() == 1

    async def count() -> int:
        manager = await ormsession.configure_async()
        try:
            return await manager.count()
        finally:
            await manager.close()

    assert asyncio.run(count()) == 1


@pytest.mark.usefixtures("installed")
def test_an_installed_store_works_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["count", "--url", "seeded://"]) == 0
    assert capsys.readouterr().out == "1\n"


@pytest.mark.usefixtures("installed")
def test_an_installed_store_with_a_missing_module_names_its_distribution() -> None:
    with pytest.raises(MissingDriverError, match=r"pip install 'ormsession-seeded'"):
        ormsession.configure(url="seeded-broken://")


def test_built_in_stores_come_before_installed_ones_whatever_the_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(
        tmp_path / "site-packages",
        "ormsession-shadow",
        {"sqlite+pysqlite": "ormsession_shadow_absent:open_store"},
        monkeypatch,
    )
    url = f"sqlite+pysqlite:///{tmp_path / 'x.sqlite3'}"
    with ormsession.configure(url=url) as manager:  # the built-in SQL store, not the shadow
        assert type(manager.repository).__name__ == "SqlRepository"
