"""Property-based tests (hypothesis): hostile ids, cookies, URLs, beego strings and stored
bytes. Every test bounds its examples with ``@settings(max_examples=...)``; the profile
below adds what they share: no example database in the work tree, and a deadline that a
loaded CI machine does not trip over (the examples are fast; a slow one is a bug only if
it is slow every time, which ``max_examples`` bounds anyway)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ormsession",
    database=None,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("ormsession")
