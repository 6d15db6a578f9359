"""Conformance tests of the Couchbase test server, driven by the real ``couchbase`` SDK.

Each test checks both what the SDK sees and, where it matters, what the server stored, so a
server that answered plausibly but stored the wrong thing (or vice versa) fails.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from acouchbase.cluster import Cluster as AsyncCluster
from couchbase.auth import PasswordAuthenticator
from couchbase.bucket import Bucket
from couchbase.cluster import Cluster
from couchbase.collection import Collection
from couchbase.diagnostics import PingState, ServiceType
from couchbase.exceptions import (
    AuthenticationException,
    BucketNotFoundException,
    CasMismatchException,
    CouchbaseException,
    DocumentExistsException,
    DocumentNotFoundException,
)
from couchbase.options import (
    ClusterOptions,
    ClusterTimeoutOptions,
    DecrementOptions,
    DeltaValue,
    GetOptions,
    IncrementOptions,
    InsertOptions,
    RemoveOptions,
    ReplaceOptions,
    SignedInt64,
    UpsertOptions,
    WaitUntilReadyOptions,
)
from couchbase.transcoder import RawBinaryTranscoder, RawJSONTranscoder

from tests.couchbase.conftest import COUCHBASE_BUCKET, COUCHBASE_PASSWORD, COUCHBASE_USER
from tests.support.couchbase_server import (
    HEADER,
    CouchbaseTestServer,
    Opcode,
    Status,
    StoredDocument,
)

# The SDK's "common flags" format lives in the top byte (it also sets legacy low bits).
JSON_FORMAT = 0x02
BINARY_FORMAT = 0x03
DATATYPE_JSON = 0x01
DAY = 24 * 60 * 60


def cluster_options(password: str = COUCHBASE_PASSWORD, **auth: object) -> ClusterOptions:
    # Short timeouts so that a misbehaving server fails the test instead of hanging it.
    timeouts = ClusterTimeoutOptions(
        kv_timeout=timedelta(seconds=2),
        connect_timeout=timedelta(seconds=5),
        bootstrap_timeout=timedelta(seconds=5),
    )
    authenticator = PasswordAuthenticator(COUCHBASE_USER, password, **auth)
    return ClusterOptions(authenticator, timeout_options=timeouts)


@pytest.fixture(scope="module")
def cluster(couchbase_server: CouchbaseTestServer) -> Iterator[Cluster]:
    cluster = Cluster(couchbase_server.connection_string, cluster_options())
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def bucket(cluster: Cluster) -> Bucket:
    return cluster.bucket(COUCHBASE_BUCKET)


@pytest.fixture
def collection(bucket: Bucket) -> Collection:
    return bucket.default_collection()


@pytest.fixture(autouse=True)
def real_clock(couchbase_server: CouchbaseTestServer) -> Iterator[None]:
    # The server is shared by the session; do not leak an advanced clock into other tests.
    couchbase_server.reset_clock()
    yield
    couchbase_server.reset_clock()


@pytest.fixture
def key() -> str:
    return f"test-{uuid.uuid4().hex}"


def stored(
    server: CouchbaseTestServer, key: str, scope: str = "_default", coll: str = "_default"
) -> StoredDocument | None:
    return server.documents(COUCHBASE_BUCKET, scope, coll).get(key.encode())


# -- connecting --------------------------------------------------------------------------------


def test_wait_until_ready_and_ping(cluster: Cluster, bucket: Bucket) -> None:
    cluster.wait_until_ready(
        timedelta(seconds=5), WaitUntilReadyOptions(service_types=[ServiceType.KeyValue])
    )
    report = bucket.ping()
    kv_endpoints = report.endpoints[ServiceType.KeyValue]
    assert kv_endpoints
    assert all(endpoint.state == PingState.OK for endpoint in kv_endpoints)


def test_wrong_password_is_rejected_quickly(couchbase_server: CouchbaseTestServer) -> None:
    started = time.monotonic()
    with pytest.raises(AuthenticationException):
        Cluster(couchbase_server.connection_string, cluster_options("not-the-password"))
    assert time.monotonic() - started < 5


def test_plain_authentication(couchbase_server: CouchbaseTestServer, key: str) -> None:
    options = cluster_options(allowed_sasl_mechanisms=["PLAIN"])
    cluster = Cluster(couchbase_server.connection_string, options)
    try:
        cluster.bucket(COUCHBASE_BUCKET).default_collection().upsert(key, {"via": "plain"})
        assert stored(couchbase_server, key) is not None
    finally:
        cluster.close()
    with pytest.raises(AuthenticationException):
        Cluster(
            couchbase_server.connection_string,
            cluster_options("wrong", allowed_sasl_mechanisms=["PLAIN"]),
        )


def test_unknown_bucket_is_reported_quickly(cluster: Cluster) -> None:
    started = time.monotonic()
    with pytest.raises(BucketNotFoundException):
        cluster.bucket("no-such-bucket").default_collection().get("anything")
    assert time.monotonic() - started < 5


# -- documents ---------------------------------------------------------------------------------


def test_json_round_trip_and_stored_form(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    result = collection.upsert(key, {"user": 42, "roles": ["a", "b"]})
    assert collection.get(key).content_as[dict] == {"user": 42, "roles": ["a", "b"]}
    doc = stored(couchbase_server, key)
    assert doc is not None
    assert doc.flags >> 24 == JSON_FORMAT
    assert doc.datatype == DATATYPE_JSON
    assert doc.cas == result.cas
    assert doc.expiry == 0


def test_bytes_with_raw_binary_transcoder(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    payload = bytes(range(256))
    transcoder = RawBinaryTranscoder()
    collection.upsert(key, payload, UpsertOptions(transcoder=transcoder))
    assert collection.get(key, GetOptions(transcoder=transcoder)).value == payload
    doc = stored(couchbase_server, key)
    assert doc is not None
    assert (doc.value, doc.flags >> 24, doc.datatype) == (payload, BINARY_FORMAT, 0)


def test_every_mutation_gets_a_new_cas(collection: Collection, key: str) -> None:
    first = collection.upsert(key, {"n": 1}).cas
    second = collection.upsert(key, {"n": 2}).cas
    assert first != second
    assert collection.get(key).cas == second


def test_insert_of_existing_document_fails(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    collection.insert(key, {"n": 1})
    with pytest.raises(DocumentExistsException):
        collection.insert(key, {"n": 2})
    assert collection.get(key).content_as[dict] == {"n": 1}


def test_replace_honours_cas(collection: Collection, key: str) -> None:
    original = collection.upsert(key, {"n": 1}).cas
    replaced = collection.replace(key, {"n": 2}, ReplaceOptions(cas=original)).cas
    assert replaced != original
    with pytest.raises(CasMismatchException):
        collection.replace(key, {"n": 3}, ReplaceOptions(cas=original))
    assert collection.get(key).content_as[dict] == {"n": 2}


def test_replace_of_missing_document_fails(collection: Collection, key: str) -> None:
    with pytest.raises(DocumentNotFoundException):
        collection.replace(key, {"n": 1})


def test_remove(couchbase_server: CouchbaseTestServer, collection: Collection, key: str) -> None:
    stale = collection.upsert(key, {"n": 1}).cas
    current = collection.upsert(key, {"n": 2}).cas
    with pytest.raises(CasMismatchException):
        collection.remove(key, RemoveOptions(cas=stale))
    collection.remove(key, RemoveOptions(cas=current))
    assert stored(couchbase_server, key) is None
    with pytest.raises(DocumentNotFoundException):
        collection.get(key)
    with pytest.raises(DocumentNotFoundException):
        collection.remove(key)


def test_exists(collection: Collection, key: str) -> None:
    assert collection.exists(key).exists is False
    collection.upsert(key, {"n": 1})
    assert collection.exists(key).exists is True


def test_named_collection_is_separate_from_default(
    couchbase_server: CouchbaseTestServer, bucket: Bucket, collection: Collection, key: str
) -> None:
    items = bucket.scope("sessions").collection("items")
    items.upsert(key, {"where": "items"})
    collection.upsert(key, {"where": "default"})
    assert items.get(key).content_as[dict] == {"where": "items"}
    assert collection.get(key).content_as[dict] == {"where": "default"}
    items.remove(key)
    assert items.exists(key).exists is False
    assert collection.exists(key).exists is True
    assert stored(couchbase_server, key, "sessions", "items") is None


# -- expiry ------------------------------------------------------------------------------------


def test_short_expiry(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    collection.upsert(key, {"n": 1}, UpsertOptions(expiry=timedelta(seconds=10)))
    doc = stored(couchbase_server, key)
    assert doc is not None
    assert abs(doc.expiry - (couchbase_server.now() + 10)) <= 2
    assert collection.get(key).content_as[dict] == {"n": 1}
    couchbase_server.advance_clock(11)
    with pytest.raises(DocumentNotFoundException):
        collection.get(key)
    assert collection.exists(key).exists is False
    with pytest.raises(DocumentNotFoundException):
        collection.replace(key, {"n": 2})
    collection.insert(key, {"n": 3})  # an expired document no longer blocks ADD


def test_expiry_above_thirty_days(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    # The SDK sends this as an absolute Unix time; a server that read it as relative seconds
    # (or used its own epoch) would expire the document at once or never.
    collection.insert(key, {"n": 1}, InsertOptions(expiry=timedelta(days=40)))
    doc = stored(couchbase_server, key)
    assert doc is not None
    assert abs(doc.expiry - (time.time() + 40 * DAY)) <= 2
    assert collection.get(key).content_as[dict] == {"n": 1}
    couchbase_server.advance_clock(39 * DAY)
    assert collection.exists(key).exists is True
    couchbase_server.advance_clock(2 * DAY)
    with pytest.raises(DocumentNotFoundException):
        collection.get(key)


def test_touch(couchbase_server: CouchbaseTestServer, collection: Collection, key: str) -> None:
    before = collection.upsert(key, {"n": 1}).cas
    touched = collection.touch(key, timedelta(seconds=5))
    assert touched.cas != before
    couchbase_server.advance_clock(4)
    assert collection.exists(key).exists is True
    couchbase_server.advance_clock(2)
    assert collection.exists(key).exists is False
    with pytest.raises(DocumentNotFoundException):
        collection.touch(key, timedelta(seconds=5))


def test_get_and_touch(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    collection.upsert(key, {"n": 1})
    result = collection.get_and_touch(key, timedelta(days=31))
    assert result.content_as[dict] == {"n": 1}
    doc = stored(couchbase_server, key)
    assert doc is not None
    assert abs(doc.expiry - (time.time() + 31 * DAY)) <= 2
    couchbase_server.advance_clock(32 * DAY)
    with pytest.raises(DocumentNotFoundException):
        collection.get_and_touch(key, timedelta(seconds=5))


# -- asyncio SDK -------------------------------------------------------------------------------


def test_acouchbase_round_trip(couchbase_server: CouchbaseTestServer, key: str) -> None:
    async def round_trip() -> dict[str, object]:
        cluster = await AsyncCluster.connect(couchbase_server.connection_string, cluster_options())
        try:
            bucket = cluster.bucket(COUCHBASE_BUCKET)
            await bucket.on_connect()
            items = bucket.scope("sessions").collection("items")
            await items.upsert(key, {"async": True})
            result = await items.get(key)
            content: dict[str, object] = result.content_as[dict]
            return content
        finally:
            await cluster.close()

    assert asyncio.run(round_trip()) == {"async": True}
    assert stored(couchbase_server, key, "sessions", "items") is not None


# -- raw protocol ------------------------------------------------------------------------------


def raw_request(opcode: int, opaque: int, key: bytes = b"", magic: int = 0x80) -> bytes:
    return HEADER.pack(magic, opcode, len(key), 0, 0, 0, len(key), opaque, 0) + key


def read_response(sock: socket.socket) -> tuple[int, int, int, int, bytes]:
    """Return (magic, opcode, status, opaque, body) of one response."""
    header = recv_exactly(sock, HEADER.size)
    magic, opcode, _keylen, _extlen, _datatype, status, bodylen, opaque, _cas = HEADER.unpack(
        header
    )
    return magic, opcode, status, opaque, recv_exactly(sock, bodylen)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def connect_raw(server: CouchbaseTestServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.settimeout(5)
    return sock


def test_unknown_command_gets_an_error_response(couchbase_server: CouchbaseTestServer) -> None:
    with connect_raw(couchbase_server) as sock:
        sock.sendall(raw_request(0xE5, opaque=0xDEADBEEF) + raw_request(Opcode.NOOP, opaque=7))
        assert read_response(sock)[:4] == (0x81, 0xE5, Status.UNKNOWN_COMMAND, 0xDEADBEEF)
        assert read_response(sock)[:4] == (0x81, Opcode.NOOP, Status.SUCCESS, 7)


def test_unauthenticated_connection_cannot_select_a_bucket(
    couchbase_server: CouchbaseTestServer,
) -> None:
    with connect_raw(couchbase_server) as sock:
        sock.sendall(raw_request(Opcode.SELECT_BUCKET, opaque=1, key=COUCHBASE_BUCKET.encode()))
        assert read_response(sock)[2] == Status.NO_ACCESS


def test_malformed_frame_closes_only_that_connection(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    bystander = connect_raw(couchbase_server)
    with bystander, connect_raw(couchbase_server) as bad:
        bad.sendall(raw_request(Opcode.NOOP, opaque=1, magic=0x42))
        assert bad.recv(1) == b""  # the server hung up on the broken client
        # A header whose key and extras exceed the body length is broken framing too.
        with connect_raw(couchbase_server) as bad_lengths:
            bad_lengths.sendall(HEADER.pack(0x80, 0, 10, 0, 0, 0, 4, 1, 0) + b"abcd")
            assert bad_lengths.recv(1) == b""
        bystander.sendall(raw_request(Opcode.NOOP, opaque=2))
        assert read_response(bystander)[:4] == (0x81, Opcode.NOOP, Status.SUCCESS, 2)
    collection.upsert(key, {"still": "serving"})
    assert collection.get(key).content_as[dict] == {"still": "serving"}


def test_many_concurrent_connections(couchbase_server: CouchbaseTestServer) -> None:
    sockets = [connect_raw(couchbase_server) for _ in range(50)]
    try:
        for opaque, sock in enumerate(sockets):
            sock.sendall(raw_request(Opcode.NOOP, opaque=opaque))
        for opaque, sock in enumerate(sockets):
            assert read_response(sock)[3] == opaque
    finally:
        for sock in sockets:
            sock.close()


def test_op_counts_track_requests(couchbase_server: CouchbaseTestServer) -> None:
    before = couchbase_server.op_counts[Opcode.NOOP]
    with connect_raw(couchbase_server) as sock:
        for opaque in range(3):
            sock.sendall(raw_request(Opcode.NOOP, opaque=opaque))
            read_response(sock)
    assert couchbase_server.op_counts[Opcode.NOOP] - before >= 3


def test_stop_closes_client_connections() -> None:
    server = CouchbaseTestServer(users={"u": "p"}, buckets={"b": []}).start()
    sock = connect_raw(server)
    try:
        sock.sendall(raw_request(Opcode.NOOP, opaque=1))
        read_response(sock)
        server.stop()
        assert sock.recv(1) == b""
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    finally:
        sock.close()
        server.stop()


def test_sasl_list_mechs_offers_scram_sha512(couchbase_server: CouchbaseTestServer) -> None:
    with connect_raw(couchbase_server) as sock:
        sock.sendall(raw_request(Opcode.SASL_LIST_MECHS, opaque=3))
        _magic, _opcode, status, _opaque, body = read_response(sock)
    assert status == Status.SUCCESS
    assert "SCRAM-SHA512" in body.decode().split()


def test_hello_grants_only_implemented_features(couchbase_server: CouchbaseTestServer) -> None:
    requested = [0x03, 0x04, 0x07, 0x08, 0x0B, 0x10, 0x12, 0x1E]
    value = struct.pack(f">{len(requested)}H", *requested)
    frame = HEADER.pack(0x80, Opcode.HELLO, 0, 0, 0, 0, len(value), 9, 0) + value
    with connect_raw(couchbase_server) as sock:
        sock.sendall(frame)
        body = read_response(sock)[4]
    assert struct.unpack(f">{len(body) // 2}H", body) == (0x03, 0x08, 0x0B, 0x12)


# -- counters (INCREMENT 0x05 / DECREMENT 0x06) ------------------------------------------------


def increment(collection: Collection, key: str, expiry: timedelta) -> int | None:
    options = IncrementOptions(delta=DeltaValue(1), initial=SignedInt64(1), expiry=expiry)
    value: int | None = collection.binary().increment(key, options).content
    return value


def decrement(collection: Collection, key: str) -> int | None:
    options = DecrementOptions(delta=DeltaValue(1), initial=SignedInt64(-1))
    value: int | None = collection.binary().decrement(key, options).content
    return value


def test_increment_creates_a_counter_with_its_expiry_then_adds(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    before = couchbase_server.op_counts[Opcode.INCREMENT]
    assert increment(collection, key, timedelta(seconds=100)) == 1  # the initial value
    doc = stored(couchbase_server, key)
    assert doc is not None
    assert (doc.value, doc.flags, doc.datatype) == (b"1", 0, DATATYPE_JSON)
    assert abs(doc.expiry - (couchbase_server.now() + 100)) <= 2
    # An existing counter keeps its expiry, whatever the increment asks for.
    assert increment(collection, key, timedelta(seconds=5000)) == 2
    after = stored(couchbase_server, key)
    assert after is not None and after.expiry == doc.expiry and after.cas != doc.cas
    assert couchbase_server.op_counts[Opcode.INCREMENT] - before == 2
    # A counter reads back as JSON bytes (legacy flags 0), as the count flows read it.
    assert collection.get(key, GetOptions(transcoder=RawJSONTranscoder())).value == b"2"
    couchbase_server.advance_clock(101)
    assert stored(couchbase_server, key) is None
    assert increment(collection, key, timedelta(seconds=100)) == 1, "expired: created anew"


def test_counter_expiry_above_thirty_days_is_absolute(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    assert increment(collection, key, timedelta(days=40)) == 1
    doc = stored(couchbase_server, key)
    assert doc is not None and abs(doc.expiry - (time.time() + 40 * DAY)) <= 2


def test_decrement_never_creates_and_stops_at_zero(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    with pytest.raises(DocumentNotFoundException):
        decrement(collection, key)
    assert stored(couchbase_server, key) is None
    increment(collection, key, timedelta(seconds=100))
    assert decrement(collection, key) == 0
    assert decrement(collection, key) == 0
    doc = stored(couchbase_server, key)
    assert doc is not None and doc.value == b"0"


def test_a_counter_op_on_a_non_counter_fails_and_changes_nothing(
    couchbase_server: CouchbaseTestServer, collection: Collection, key: str
) -> None:
    collection.upsert(key, {"not": "a counter"})
    with pytest.raises(CouchbaseException):
        increment(collection, key, timedelta(seconds=100))
    assert collection.get(key).content_as[dict] == {"not": "a counter"}


def test_acouchbase_counters(couchbase_server: CouchbaseTestServer, key: str) -> None:
    async def scenario() -> tuple[int | None, int | None]:
        cluster = await AsyncCluster.connect(couchbase_server.connection_string, cluster_options())
        try:
            bucket = cluster.bucket(COUCHBASE_BUCKET)
            await bucket.on_connect()
            binary = bucket.default_collection().binary()
            up = await binary.increment(
                key, IncrementOptions(initial=SignedInt64(1), expiry=timedelta(seconds=60))
            )
            down = await binary.decrement(key, DecrementOptions(initial=SignedInt64(-1)))
            return up.content, down.content
        finally:
            await cluster.close()

    assert asyncio.run(scenario()) == (1, 0)


def authenticated_raw(server: CouchbaseTestServer) -> socket.socket:
    """A raw connection, PLAIN-authenticated with the bucket selected (no collections)."""
    sock = connect_raw(server)
    credentials = f"\0{COUCHBASE_USER}\0{COUCHBASE_PASSWORD}".encode()
    sock.sendall(frame(Opcode.SASL_AUTH, key=b"PLAIN", value=credentials))
    assert read_response(sock)[2] == Status.SUCCESS
    sock.sendall(frame(Opcode.SELECT_BUCKET, key=COUCHBASE_BUCKET.encode()))
    assert read_response(sock)[2] == Status.SUCCESS
    return sock


def frame(
    opcode: int, *, key: bytes = b"", extras: bytes = b"", value: bytes = b"", cas: int = 0
) -> bytes:
    body = extras + key + value
    header = HEADER.pack(0x80, opcode, len(key), len(extras), 0, 0, len(body), 1, cas)
    return header + body


def counter_extras(delta: int, initial: int, expiry: int) -> bytes:
    return struct.pack(">QQI", delta, initial, expiry)


def test_counters_over_the_raw_protocol(couchbase_server: CouchbaseTestServer, key: str) -> None:
    raw_key = key.encode()
    with authenticated_raw(couchbase_server) as sock:
        # "Do not create" (expiration 0xffffffff) on a missing counter.
        sock.sendall(frame(Opcode.INCREMENT, key=raw_key, extras=counter_extras(1, 5, 0xFFFFFFFF)))
        assert read_response(sock)[2] == Status.NOT_FOUND
        # Created at the initial value, which comes back as 8 bytes big-endian.
        sock.sendall(frame(Opcode.INCREMENT, key=raw_key, extras=counter_extras(1, 2**64 - 1, 0)))
        _magic, _opcode, status, _opaque, body = read_response(sock)
        assert status == Status.SUCCESS and body == struct.pack(">Q", 2**64 - 1)
        # Increments wrap at 2**64.
        sock.sendall(frame(Opcode.INCREMENT, key=raw_key, extras=counter_extras(3, 0, 0)))
        assert read_response(sock)[4] == struct.pack(">Q", 2)
        # A CAS that does not match is refused.
        doc = stored(couchbase_server, key)
        assert doc is not None and doc.expiry == 0
        stale = frame(
            Opcode.DECREMENT, key=raw_key, extras=counter_extras(1, 0, 0), cas=doc.cas - 1
        )
        sock.sendall(stale)
        assert read_response(sock)[2] == Status.EXISTS
        sock.sendall(
            frame(Opcode.DECREMENT, key=raw_key, extras=counter_extras(5, 0, 0), cas=doc.cas)
        )
        assert read_response(sock)[4] == struct.pack(">Q", 0)
        # Extras of the wrong size are an invalid request, not a dropped connection.
        sock.sendall(frame(Opcode.INCREMENT, key=raw_key, extras=b"\x00" * 8))
        assert read_response(sock)[2] == Status.INVALID
        sock.sendall(raw_request(Opcode.NOOP, opaque=3))
        assert read_response(sock)[2] == Status.SUCCESS
