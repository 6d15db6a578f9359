"""The Couchbase store, on the official ``couchbase`` SDK 4.x (``acouchbase`` for asyncio).

Layout of this package (see ``docs/stores/couchbase.md``):

- :mod:`.urls`: ``couchbase://`` URLs into a :class:`~.urls.CouchbaseTarget`, no I/O;
- :mod:`.clients`: opening a cluster from a parsed URL, and the collection in an app's client;
- :mod:`.base`: key layout, record encoding, the KV operations flows yield and their SDK calls;
- :mod:`.counters`: the expiry-bucket counters behind ``count``, pure functions;
- :mod:`.cache`: the bounded LRU of CAS hints that lets a write skip its read;
- :mod:`.flows`: the compare-and-set loops and the counting, as sans-I/O flows;
- :mod:`.repository` / :mod:`.async_repository`: the twins, which only do I/O;
- :mod:`.errors`: SDK exceptions into ormsession's, without passwords;
- :mod:`.factory`: the registry's entry points; :mod:`.beego`: beego provider strings.

This package's ``__init__`` imports nothing, so the beego parser and the URL parser work
without the SDK installed.
"""
