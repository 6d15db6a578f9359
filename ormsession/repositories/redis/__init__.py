"""Redis stores: plain Redis, Redis Sentinel and Redis Cluster, sync and asyncio.

Layout of this package (nothing here imports redis-py at import time; the registry imports
:mod:`.factory` only when a ``redis://``-family URL is used):

- :mod:`.urls`: URL parsing and validation, no I/O;
- :mod:`.base`: key layout, record encoding and every operation as an I/O-free flow;
- :mod:`.scripts`: the Lua scripts those flows run;
- :mod:`.repository` / :mod:`.async_repository`: the twins that only do I/O;
- :mod:`.clients`: building redis-py clients from a parsed URL;
- :mod:`.errors`: wrapping redis-py errors into ormsession's;
- :mod:`.factory`: the registry's entry points; :mod:`.beego`: beego provider strings.

See ``docs/stores/redis.md``.
"""
