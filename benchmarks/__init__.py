"""ormsession's benchmarks against the raw driver floor (GitHub issue 8).

``python -m benchmarks`` (``make bench``) measures, in one process run and for every store
that is available, ormsession's session operations and full Flask / Starlette requests
against the same work written by hand on the same driver and pool (the *floor*), in
interleaved rounds, with the store's own counters telling how many statements or commands
each request cost. See ``docs/performance.md``.
"""
