"""A small Couchbase KV test server speaking the memcached binary protocol.

No Couchbase Server can run in the test environment, so the tests drive the real ``couchbase``
SDK against this stand-in. It implements just what a session store needs: HELLO, SASL
(SCRAM-SHA* and PLAIN), SELECT_BUCKET, cluster configs, collections, the basic document
operations with CAS, flags and memcached expiry, and counters (INCREMENT/DECREMENT). Everything
else answers "unknown command".

The server runs its own event loop in a background thread, so synchronous tests can use it::

    with CouchbaseTestServer(users={"u": "pw"}, buckets={"b": ["app.items"]}) as server:
        cluster = Cluster(server.connection_string, ...)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import IntEnum
from types import TracebackType

log = logging.getLogger(__name__)

HEADER = struct.Struct(">BBHBBHIIQ")
REQUEST_MAGIC = 0x80
RESPONSE_MAGIC = 0x81
# Larger than Couchbase's 20 MiB document limit; anything bigger is a broken frame.
MAX_BODY = 21 * 1024 * 1024
# memcached rule: expiry values up to 30 days are relative, larger ones are Unix times.
RELATIVE_EXPIRY_LIMIT = 30 * 24 * 60 * 60
SCRAM_ITERATIONS = 4096
DEFAULT_COLLECTION = "_default._default"
FIRST_COLLECTION_ID = 8  # ids below 8 are reserved by Couchbase
#: An INCREMENT/DECREMENT expiration meaning "fail on a missing counter, do not create it".
NO_CREATE = 0xFFFFFFFF
DATATYPE_JSON = 0x01


class Opcode(IntEnum):
    GET = 0x00
    SET = 0x01
    ADD = 0x02
    REPLACE = 0x03
    DELETE = 0x04
    INCREMENT = 0x05
    DECREMENT = 0x06
    NOOP = 0x0A
    TOUCH = 0x1C
    GAT = 0x1D
    HELLO = 0x1F
    SASL_LIST_MECHS = 0x20
    SASL_AUTH = 0x21
    SASL_STEP = 0x22
    SELECT_BUCKET = 0x89
    GET_META = 0xA0
    GET_CLUSTER_CONFIG = 0xB5
    GET_COLLECTION_ID = 0xBB


class Status(IntEnum):
    SUCCESS = 0x00
    NOT_FOUND = 0x01
    EXISTS = 0x02
    INVALID = 0x04
    NOT_STORED = 0x05
    DELTA_BADVAL = 0x06
    AUTH_ERROR = 0x20
    AUTH_CONTINUE = 0x21
    NO_ACCESS = 0x24
    UNKNOWN_COMMAND = 0x81
    UNKNOWN_COLLECTION = 0x88


# HELLO features we implement: TCP nodelay, select bucket, JSON datatype, collections.
SUPPORTED_FEATURES = frozenset({0x03, 0x08, 0x0B, 0x12})
FEATURE_COLLECTIONS = 0x12
SCRAM_HASHES = {"SCRAM-SHA512": "sha512", "SCRAM-SHA256": "sha256", "SCRAM-SHA1": "sha1"}


class FrameError(Exception):
    """The byte stream is not a valid request; the connection must be dropped."""


class InvalidRequestError(Exception):
    """A well-framed request whose contents are wrong; answered with status INVALID."""


class _StatusError(Exception):
    """Raised by a handler to answer with a bare error status."""

    def __init__(self, status: Status) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class StoredDocument:
    value: bytes
    flags: int
    expiry: int  # absolute server time in seconds, 0 = never
    cas: int
    datatype: int


@dataclass(frozen=True)
class Request:
    opcode: int
    datatype: int
    vbucket: int
    opaque: int
    cas: int
    extras: bytes
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Response:
    status: int = Status.SUCCESS
    extras: bytes = b""
    value: bytes = b""
    cas: int = 0
    datatype: int = 0


@dataclass
class _Bucket:
    name: str
    collection_ids: dict[str, int]  # "scope.collection" -> id
    docs: dict[int, dict[bytes, StoredDocument]]


@dataclass
class _Connection:
    """Per-connection protocol state."""

    user: str | None = None
    bucket: _Bucket | None = None
    collections: bool = False
    scram: _ScramExchange | None = None


@dataclass
class _ScramExchange:
    """Server side of one RFC 5802 exchange, between SASL_AUTH and SASL_STEP."""

    user: str
    hash_name: str
    salted_password: bytes
    client_first_bare: str
    server_first: str
    nonce: str

    def verify(self, client_final: str) -> str | None:
        """Return the server-final message, or None when the proof is wrong."""
        without_proof, _, proof_attr = client_final.rpartition(",p=")
        attrs = dict(part.split("=", 1) for part in without_proof.split(",") if "=" in part)
        if not proof_attr or attrs.get("r") != self.nonce:
            return None
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        client_key = self._hmac(self.salted_password, b"Client Key")
        stored_key = hashlib.new(self.hash_name, client_key).digest()
        signature = self._hmac(stored_key, auth_message)
        proof = base64.b64decode(proof_attr)
        recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=False))
        if not hmac.compare_digest(hashlib.new(self.hash_name, recovered).digest(), stored_key):
            return None
        server_key = self._hmac(self.salted_password, b"Server Key")
        return "v=" + base64.b64encode(self._hmac(server_key, auth_message)).decode()

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash_name).digest()


def _split_collection_id(key: bytes) -> tuple[int, bytes]:
    """Split an unsigned-LEB128 collection id (at most 5 bytes) off a key."""
    cid = 0
    for index, byte in enumerate(key[:5]):
        cid |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return cid, key[index + 1 :]
    raise InvalidRequestError("bad LEB128 collection id")


def _encode_response(request: Request, response: Response) -> bytes:
    body_length = len(response.extras) + len(response.value)
    header = HEADER.pack(
        RESPONSE_MAGIC, request.opcode, 0, len(response.extras), response.datatype,
        response.status, body_length, request.opaque, response.cas,
    )  # fmt: skip
    return header + response.extras + response.value


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one request frame; None on a clean EOF between frames."""
    header = await reader.read(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        header += await reader.readexactly(HEADER.size - len(header))
    magic, opcode, keylen, extlen, datatype, vbucket, bodylen, opaque, cas = HEADER.unpack(header)
    # Alt-request framing (0x08) is never granted, so only plain requests are valid.
    if magic != REQUEST_MAGIC or keylen + extlen > bodylen or bodylen > MAX_BODY:
        raise FrameError(f"bad header {header.hex()}")
    body = await reader.readexactly(bodylen)
    extras, key, value = body[:extlen], body[extlen : extlen + keylen], body[extlen + keylen :]
    return Request(opcode, datatype, vbucket, opaque, cas, extras, key, value)


Handler = Callable[[_Connection, Request], Response]


class CouchbaseTestServer:
    """In-memory Couchbase KV node on 127.0.0.1, for tests driving the real SDK.

    ``users`` maps usernames to passwords; ``buckets`` maps bucket names to extra
    ``"scope.collection"`` names (``_default._default`` always exists).
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        buckets: Mapping[str, Iterable[str]] | None = None,
        *,
        num_vbuckets: int = 64,
    ) -> None:
        self._users = dict(users or {"Administrator": "password"})
        self._buckets = {
            name: self._make_bucket(name, extra)
            for name, extra in (buckets or {"default": ()}).items()
        }
        self._num_vbuckets = num_vbuckets
        self._salts = {user: secrets.token_bytes(16) for user in self._users}
        self._salted: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()  # guards documents, CAS and counters across threads
        self._last_cas = time.time_ns()
        self._clock_offset = 0.0
        self.op_counts: Counter[int] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._answering: asyncio.Event | None = None  # cleared while paused
        self._port = 0
        self._handlers: dict[int, Handler] = {
            Opcode.HELLO: self._hello,
            Opcode.SASL_LIST_MECHS: self._sasl_list_mechs,
            Opcode.SASL_AUTH: self._sasl_auth,
            Opcode.SASL_STEP: self._sasl_step,
            Opcode.SELECT_BUCKET: self._select_bucket,
            Opcode.GET_CLUSTER_CONFIG: self._cluster_config,
            Opcode.GET_COLLECTION_ID: self._collection_id,
            Opcode.NOOP: lambda _conn, _req: Response(),
            Opcode.GET: self._get,
            Opcode.GAT: self._get,
            Opcode.SET: self._store,
            Opcode.ADD: self._store,
            Opcode.REPLACE: self._store,
            Opcode.DELETE: self._delete,
            Opcode.INCREMENT: self._arithmetic,
            Opcode.DECREMENT: self._arithmetic,
            Opcode.TOUCH: self._touch,
            Opcode.GET_META: self._get_meta,
        }

    @staticmethod
    def _make_bucket(name: str, extra: Iterable[str]) -> _Bucket:
        paths = [DEFAULT_COLLECTION, *(p for p in extra if p != DEFAULT_COLLECTION)]
        ids = {path: (0 if i == 0 else FIRST_COLLECTION_ID + i - 1) for i, path in enumerate(paths)}
        return _Bucket(name, ids, {cid: {} for cid in ids.values()})

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def connection_string(self) -> str:
        return f"couchbase://127.0.0.1:{self._port}"

    def start(self) -> CouchbaseTestServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="couchbase-test-server", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> CouchbaseTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def pause(self) -> None:
        """Stop answering (a stalled node): requests are read, connections accepted and
        kept open, but no reply is sent until :meth:`resume`, in order."""
        self._set_answering(False)

    def resume(self) -> None:
        self._set_answering(True)

    def _set_answering(self, answering: bool) -> None:
        assert self._loop is not None, "server not started"

        async def switch() -> None:
            assert self._answering is not None
            if answering:
                self._answering.set()
            else:
                self._answering.clear()

        asyncio.run_coroutine_threadsafe(switch(), self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._answering = asyncio.Event()
        self._answering.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        # Closing the transports makes every handler see EOF and finish on its own; cancelling
        # them instead makes asyncio's stream callback log the cancellation as an error.
        for writer in self._clients.values():
            writer.close()
        if self._clients:
            _done, stuck = await asyncio.wait(list(self._clients), timeout=5)
            for task in stuck:
                task.cancel()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        conn = _Connection()
        try:
            while (request := await _read_request(reader)) is not None:
                assert self._answering is not None
                await self._answering.wait()
                writer.write(_encode_response(request, self._dispatch(conn, request)))
                await writer.drain()
        except (FrameError, asyncio.IncompleteReadError, ConnectionError) as exc:
            # A broken client only loses its own connection.
            log.debug("closing connection: %r", exc)
        except Exception:
            # A bug in a handler must not take the server down either; make it visible.
            log.exception("closing connection after an unexpected error")
        finally:
            del self._clients[task]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _dispatch(self, conn: _Connection, request: Request) -> Response:
        with self._lock:
            self.op_counts[_opcode_key(request.opcode)] += 1
        handler = self._handlers.get(request.opcode)
        log.debug("request %#04x key=%r", request.opcode, request.key[:64])
        if handler is None:
            return Response(Status.UNKNOWN_COMMAND)
        try:
            return handler(conn, request)
        except _StatusError as exc:
            return Response(exc.status)
        except (InvalidRequestError, struct.error, ValueError, KeyError, IndexError) as exc:
            log.debug("invalid request %#04x: %r", request.opcode, exc)
            return Response(Status.INVALID)

    # -- clock and test hooks ----------------------------------------------------------------

    def now(self) -> int:
        """Server time in Unix seconds: the real clock plus the advanced offset."""
        return int(time.time() + self._clock_offset)

    def advance_clock(self, seconds: float) -> None:
        with self._lock:
            self._clock_offset += seconds

    def reset_clock(self) -> None:
        """Go back to the real clock. Expiries above 30 days are absolute times computed from
        the client's real clock, so a clock left advanced makes them expire early."""
        with self._lock:
            self._clock_offset = 0.0

    def documents(
        self, bucket: str, scope: str = "_default", collection: str = "_default"
    ) -> dict[bytes, StoredDocument]:
        """Snapshot of the live (unexpired) documents of one collection."""
        target = self._buckets[bucket]
        cid = target.collection_ids[f"{scope}.{collection}"]
        with self._lock:
            now = self.now()
            return {k: d for k, d in target.docs[cid].items() if not _expired(d, now)}

    def clear(self) -> None:
        """Remove every document from every bucket (the CAS sequence keeps growing)."""
        with self._lock:
            for bucket in self._buckets.values():
                for docs in bucket.docs.values():
                    docs.clear()

    # -- connection setup --------------------------------------------------------------------

    def _hello(self, conn: _Connection, request: Request) -> Response:
        requested = struct.unpack(f">{len(request.value) // 2}H", request.value)
        granted = [f for f in requested if f in SUPPORTED_FEATURES]
        conn.collections = FEATURE_COLLECTIONS in granted
        return Response(value=struct.pack(f">{len(granted)}H", *granted))

    def _sasl_list_mechs(self, conn: _Connection, request: Request) -> Response:
        return Response(value=" ".join([*SCRAM_HASHES, "PLAIN"]).encode())

    def _sasl_auth(self, conn: _Connection, request: Request) -> Response:
        mechanism = request.key.decode()
        conn.user, conn.scram = None, None
        if mechanism == "PLAIN":
            _authzid, user, password = request.value.decode().split("\0")
            if not self._password_ok(user, password):
                return Response(Status.AUTH_ERROR, value=b"Auth failure")
            conn.user = user
            return Response(value=b"Authenticated")
        if mechanism not in SCRAM_HASHES:
            return Response(Status.AUTH_ERROR, value=b"Unsupported mechanism")
        return self._scram_first(conn, SCRAM_HASHES[mechanism], request.value.decode())

    def _scram_first(self, conn: _Connection, hash_name: str, client_first: str) -> Response:
        # client-first = "n,," gs2 header + "n=USER,r=NONCE"; the nonce may contain spaces.
        bare = client_first.split(",", 2)[2]
        attrs = dict(part.split("=", 1) for part in bare.split(","))
        user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
        if user not in self._users:
            return Response(Status.AUTH_ERROR, value=b"Auth failure")
        nonce = attrs["r"] + secrets.token_urlsafe(18)
        salt = self._salts[user]
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={SCRAM_ITERATIONS}"
        salted = self._salted_password(user, hash_name)
        conn.scram = _ScramExchange(user, hash_name, salted, bare, server_first, nonce)
        return Response(Status.AUTH_CONTINUE, value=server_first.encode())

    def _sasl_step(self, conn: _Connection, request: Request) -> Response:
        exchange, conn.scram = conn.scram, None
        server_final = exchange.verify(request.value.decode()) if exchange else None
        if exchange is None or server_final is None:
            return Response(Status.AUTH_ERROR, value=b"Auth failure")
        conn.user = exchange.user
        return Response(value=server_final.encode())

    def _salted_password(self, user: str, hash_name: str) -> bytes:
        # PBKDF2 is deliberately slow; cache it so repeated connections stay fast.
        key = (user, hash_name)
        if key not in self._salted:
            password = self._users[user].encode()
            self._salted[key] = hashlib.pbkdf2_hmac(
                hash_name, password, self._salts[user], SCRAM_ITERATIONS
            )
        return self._salted[key]

    def _password_ok(self, user: str, password: str) -> bool:
        expected = self._users.get(user)
        return expected is not None and hmac.compare_digest(expected, password)

    def _select_bucket(self, conn: _Connection, request: Request) -> Response:
        bucket = self._buckets.get(request.key.decode())
        if conn.user is None or bucket is None:
            return Response(Status.NO_ACCESS)
        conn.bucket = bucket
        return Response()

    def _cluster_config(self, conn: _Connection, request: Request) -> Response:
        config: dict[str, object] = {
            "rev": 1,
            "nodesExt": [
                {"hostname": "127.0.0.1", "thisNode": True, "services": {"kv": self._port}}
            ],
        }
        if conn.bucket is not None:
            config |= {
                "name": conn.bucket.name,
                "uuid": conn.bucket.name,
                "nodeLocator": "vbucket",
                "bucketCapabilities": ["collections", "couchapi", "dcp", "cbhello", "touch"],
                "vBucketServerMap": {
                    "hashAlgorithm": "CRC",
                    "numReplicas": 0,
                    "serverList": [f"127.0.0.1:{self._port}"],
                    "vBucketMap": [[0]] * self._num_vbuckets,
                },
            }
        return Response(value=json.dumps(config).encode(), datatype=0x01)

    def _collection_id(self, conn: _Connection, request: Request) -> Response:
        if conn.bucket is None:
            return Response(Status.NO_ACCESS)
        path = (request.value or request.key).decode()
        cid = conn.bucket.collection_ids.get(path)
        if cid is None:
            return Response(Status.UNKNOWN_COLLECTION)
        return Response(extras=struct.pack(">QI", 0, cid))

    # -- documents ---------------------------------------------------------------------------

    def _locate(self, conn: _Connection, key: bytes) -> tuple[dict[bytes, StoredDocument], bytes]:
        """Resolve a request key to its collection's document table and the bare key."""
        if conn.bucket is None:
            raise _StatusError(Status.NO_ACCESS)
        cid, bare = _split_collection_id(key) if conn.collections else (0, key)
        docs = conn.bucket.docs.get(cid)
        if docs is None:
            raise _StatusError(Status.UNKNOWN_COLLECTION)
        return docs, bare

    def _live(self, docs: dict[bytes, StoredDocument], key: bytes) -> StoredDocument | None:
        doc = docs.get(key)
        if doc is not None and _expired(doc, self.now()):
            del docs[key]  # expired documents are gone for every operation
            return None
        return doc

    def _next_cas(self) -> int:
        # Nanosecond timestamps like Couchbase's hybrid logical clock, strictly increasing.
        self._last_cas = max(self._last_cas + 1, time.time_ns())
        return self._last_cas

    def _absolute_expiry(self, expiry: int) -> int:
        if expiry == 0 or expiry > RELATIVE_EXPIRY_LIMIT:
            return expiry
        return self.now() + expiry

    def _get(self, conn: _Connection, request: Request) -> Response:
        with self._lock:
            docs, key = self._locate(conn, request.key)
            doc = self._live(docs, key)
            if doc is None:
                return Response(Status.NOT_FOUND)
            if request.opcode == Opcode.GAT:
                (expiry,) = struct.unpack(">I", request.extras)
                expiry = self._absolute_expiry(expiry)
                doc = docs[key] = replace(doc, expiry=expiry, cas=self._next_cas())
            flags = struct.pack(">I", doc.flags)
            return Response(extras=flags, value=doc.value, cas=doc.cas, datatype=doc.datatype)

    def _store(self, conn: _Connection, request: Request) -> Response:
        flags, expiry = struct.unpack(">II", request.extras)
        with self._lock:
            docs, key = self._locate(conn, request.key)
            current = self._live(docs, key)
            status = _store_precondition(request.opcode, request.cas, current)
            if status != Status.SUCCESS:
                return Response(status)
            cas = self._next_cas()
            docs[key] = StoredDocument(
                request.value, flags, self._absolute_expiry(expiry), cas, request.datatype
            )
            return Response(cas=cas)

    def _delete(self, conn: _Connection, request: Request) -> Response:
        with self._lock:
            docs, key = self._locate(conn, request.key)
            current = self._live(docs, key)
            if current is None:
                return Response(Status.NOT_FOUND)
            if request.cas and request.cas != current.cas:
                return Response(Status.EXISTS)
            del docs[key]
            return Response(cas=self._next_cas())

    def _arithmetic(self, conn: _Connection, request: Request) -> Response:
        """INCREMENT / DECREMENT of a counter document (an ASCII decimal value).

        Extras: delta (8), initial (8), expiration (4). A missing document is created with
        ``initial`` (delta not applied) and that expiration, unless the expiration is
        0xffffffff ("do not create": NOT_FOUND). An existing document keeps its flags and
        expiry; increments wrap at 2**64, decrements stop at 0 (memcached semantics). The
        response value is the new value, 8 bytes big-endian.
        """
        delta, initial, expiry = struct.unpack(">QQI", request.extras)
        with self._lock:
            docs, key = self._locate(conn, request.key)
            current = self._live(docs, key)
            if current is None:
                if expiry == NO_CREATE:
                    return Response(Status.NOT_FOUND)
                value, flags, expires = initial, 0, self._absolute_expiry(expiry)
            else:
                if request.cas and request.cas != current.cas:
                    return Response(Status.EXISTS)
                text = current.value.strip()
                if not text.isdigit() or len(text) > 20 or int(text) >= 1 << 64:
                    return Response(Status.DELTA_BADVAL)
                value, flags, expires = int(text), current.flags, current.expiry
                if request.opcode == Opcode.INCREMENT:
                    value = (value + delta) % (1 << 64)
                else:
                    value = max(0, value - delta)
            cas = self._next_cas()
            docs[key] = StoredDocument(str(value).encode(), flags, expires, cas, DATATYPE_JSON)
            return Response(value=struct.pack(">Q", value), cas=cas)

    def _touch(self, conn: _Connection, request: Request) -> Response:
        (expiry,) = struct.unpack(">I", request.extras)
        with self._lock:
            docs, key = self._locate(conn, request.key)
            current = self._live(docs, key)
            if current is None:
                return Response(Status.NOT_FOUND)
            cas = self._next_cas()
            docs[key] = replace(current, expiry=self._absolute_expiry(expiry), cas=cas)
            return Response(cas=cas)

    def _get_meta(self, conn: _Connection, request: Request) -> Response:
        with self._lock:
            docs, key = self._locate(conn, request.key)
            doc = self._live(docs, key)
            if doc is None:
                return Response(Status.NOT_FOUND)
            # deleted, flags, exptime, seqno; version 2 of the request also asks for datatype.
            extras = struct.pack(">IIIQ", 0, doc.flags, doc.expiry, doc.cas)
            if request.extras == b"\x02":
                extras += bytes([doc.datatype])
            return Response(extras=extras, cas=doc.cas)


def _store_precondition(opcode: int, cas: int, current: StoredDocument | None) -> Status:
    if opcode == Opcode.ADD:
        return Status.EXISTS if current is not None else Status.SUCCESS
    if current is None:
        # REPLACE needs a document; so does a CAS-guarded SET (memcached semantics).
        return Status.NOT_FOUND if opcode == Opcode.REPLACE or cas else Status.SUCCESS
    return Status.EXISTS if cas and cas != current.cas else Status.SUCCESS


def _expired(doc: StoredDocument, now: int) -> bool:
    return doc.expiry != 0 and doc.expiry <= now


def _opcode_key(opcode: int) -> int:
    # IntEnum members compare and hash like ints, so counts read well and index by number.
    try:
        return Opcode(opcode)
    except ValueError:
        return opcode
