"""Root fixtures: backend fixture plugins shared by every test directory."""

pytest_plugins = [
    "tests.support.sql_fixtures",
]
