"""Root fixtures: backend fixture plugins shared by every test directory."""

pytest_plugins = [
    "tests.support.sql_fixtures",
    "tests.support.couchbase_fixtures",
    "tests.support.redis_fixtures",
    # pytester runs a documented third-party test module in-process (test_third_party_store).
    "pytester",
]
