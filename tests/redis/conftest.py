"""The Redis tests' fixtures live in ``tests/support/redis_fixtures.py`` (a root plugin,
so the contract and manager suites can use them too)."""
