"""The Couchbase store, on the official ``couchbase`` SDK 4.x (``acouchbase`` for asyncio).

Layout (see ``docs/stores/couchbase.md``):

- ``urls``: ``couchbase://`` URLs into a :class:`~.urls.CouchbaseTarget` (no SDK, no I/O);
- ``base``: key layout, record encoding, SDK options and the KV operations flows yield;
- ``counters``: the expiry-bucket counters behind ``count``, pure functions;
- ``cache``: the bounded LRU of CAS hints that lets a write skip its read;
- ``flows``: every repository method as a sans-I/O generator, shared by both twins;
- ``errors``: SDK exceptions into ormsession's, without passwords;
- ``repository`` / ``async_repository``: the twins, which only run flows on a collection;
- ``factory``: what the registry calls; ``beego``: beego's provider strings.

This package's ``__init__`` imports nothing, so the beego parser and the URL parser work
without the SDK installed.
"""
