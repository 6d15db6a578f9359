"""Redis stores: plain Redis, Redis Sentinel and Redis Cluster, sync and asyncio.

Layout of this package (nothing here imports redis-py at import time; the registry imports
:mod:`.factory` only when a ``redis://``-family URL or a redis-py client is used):

- :mod:`.urls`: URL parsing and validation, no I/O;
- :mod:`.clients`: building redis-py clients from a parsed URL and the configuration;
- :mod:`.base`: the shared, I/O-free part: key layout, record encoding, the command each
  operation sends, the Cluster rename flow, and the class the twins share;
- :mod:`.scripts`: the Lua scripts every write runs;
- :mod:`.users`: the user index: bound values' owner, index entries, the Cluster
  protocol's rules (``sessions_of``, ``revoke`` and ``revoke_all`` flows live in :mod:`.base`);
- :mod:`.recent`: the values last read or written, which an update's ``SET ... IFEQ``
  compares with (Valkey 8.1 and later);
- :mod:`.repository` / :mod:`.async_repository`: the twins, which only do I/O;
- :mod:`.errors`: redis-py errors into ormsession's;
- :mod:`.factory`: the registry's ``open_store`` and ``store_for_client``;
- :mod:`.beego`: beego provider strings.

See ``docs/stores/redis.md``.
"""
