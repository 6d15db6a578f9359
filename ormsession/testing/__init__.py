"""The repository contract suite, for any store: ormsession's own and third-party ones.

Install with ``pip install 'ormsession[testing]'`` (it needs pytest; ``import ormsession``
never imports this package). In a test module of your store, subclass one class per twin
and give it the fixture it asks for; pytest then runs every test of the contract on it::

    import pytest
    from ormsession.testing import AsyncRepositoryContract, RepositoryContract

    class TestMyStore(RepositoryContract):
        @pytest.fixture
        def repository(self):  # a fresh, empty SessionRepository; closed afterwards
            repository = MyRepository(...)
            yield repository
            repository.close()

    class TestMyAsyncStore(AsyncRepositoryContract):
        @pytest.fixture
        def async_repository(self):  # an AsyncSessionRepository, not started
            return MyAsyncRepository(...)  # the suite awaits start() and close()

Parametrize the fixture (``@pytest.fixture(params=[...])``) to run the suite on several
configurations of the store. A store whose records expire by themselves
(``native_ttl = True``) sees the ``delete_expired`` test skipped, with the reason. The
whole contract, with a complete example store and its test module, is in
``docs/repository-contract.md``.
"""

import pytest

# Before the import below, so pytest rewrites the suite's asserts: a failure then shows the
# values compared, as in the store's own test modules.
pytest.register_assert_rewrite("ormsession.testing.contract")

from ormsession.testing.blocking import BlockingRepository  # noqa: E402
from ormsession.testing.contract import (  # noqa: E402
    AsyncRepositoryContract,
    RepositoryContract,
    RepositoryTests,
)

__all__ = [
    "AsyncRepositoryContract",
    "BlockingRepository",
    "RepositoryContract",
    "RepositoryTests",
]
