"""A loopback TCP proxy of the project's own, for fault tests: it sits between a client and a
real server and can delay, stall and cut the traffic, so tests can make a healthy shared
server look stalled, slow or restarted without touching the server itself::

    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{proxy.port}/db"
        proxy.stall()    # stop forwarding, keep every connection open (a SIGSTOPped server)
        proxy.resume()   # forward again what was held back
        proxy.cut()      # reset every open connection (a server restart, a dropped link)
        proxy.refuse()   # refuse new connections (a server that is down); accept() again
        proxy.delay = 0.2  # every chunk of data held this many seconds

The proxy runs in a process of its own (this file, run as a script), so that its work
never competes with the code under test for the interpreter's lock: the times a test
measures are the client's. There one thread runs a ``selectors`` loop over every socket. A
stalled proxy stops *reading*, so the data piles up in the kernel's buffers and TCP flow
control pushes back, exactly as a stopped server process does; nothing is dropped, and
``resume()`` delivers it in order. Connections accepted while stalled are connected
upstream but forward nothing. The test process drives it with one-line commands on the
child's stdin; the child exits when that pipe closes (the test process ended).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from types import TracebackType
from typing import Self

Address = tuple[str, int]
_CHUNK = 65536
#: Stop reading from a side while this much is waiting to be written to the other.
_HIGH_WATER = 4 * _CHUNK


class _Pipe:
    """One direction of one proxied connection: bytes read from ``source``, held for the
    proxy's delay, then written to ``sink``."""

    def __init__(self, source: socket.socket, sink: socket.socket, *, up: bool) -> None:
        self.source = source
        self.sink = sink
        self.up = up  # client -> server (counted in TcpProxy.bytes_up)
        self.pending: deque[tuple[float, bytes]] = deque()  # (release time, data)
        self.pending_bytes = 0
        self.eof = False  # the source closed its side: shut down the sink's once flushed


class _Link:
    """A proxied connection: the client's socket, the server's, and both directions."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.up = _Pipe(client, server, up=True)
        self.down = _Pipe(server, client, up=False)

    def close(self, *, reset: bool) -> None:
        for sock in (self.client, self.server):
            if reset:  # RST instead of FIN, as a crashed or restarted server sends
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()


class _Proxy:
    """The proxy itself, run by the proxy process (see :class:`TcpProxy`)."""

    def __init__(self, upstream: Address, *, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self._host = host
        #: Seconds each chunk of data is held before it is forwarded (0: none).
        self.delay = 0.0
        #: Bytes forwarded from clients to the server, and connections accepted, so far.
        self.bytes_up = 0
        self.accepted = 0
        self._stalled = False
        self._refusing = False
        self._links: list[_Link] = []
        self._cut_pending = False
        self._acks: list[threading.Event] = []  # control calls waiting for the loop
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._listener = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._running = False
        self._thread = threading.Thread(target=self._loop, name="tcp-proxy", daemon=True)

    # -- control (any thread); each returns once the proxy's loop has carried it out --
    @property
    def address(self) -> Address:
        return (self._host, self.port)

    def start(self) -> Self:
        self._running = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listener; the proxy cannot be restarted."""
        self._running = False
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close(reset=True)
        for sock in (self._listener, self._wake_reader, self._wake_writer):
            with contextlib.suppress(OSError):
                sock.close()
        self._selector.close()

    def stall(self) -> None:
        """Stop forwarding in both directions; connections stay open, new ones are accepted
        (and connected upstream) but forward nothing either."""
        self._stalled = True
        self._barrier()

    def resume(self) -> None:
        """Forward again, starting with what was held back."""
        self._stalled = False
        self._barrier()

    def cut(self) -> None:
        """Reset every open connection (both sides see a connection reset)."""
        self._cut_pending = True
        self._barrier()

    def refuse(self) -> None:
        """Refuse new connections (the port is closed: connection refused), as a server
        that is down does. Open connections are left alone; :meth:`cut` them too for a
        server that went down."""
        self._refusing = True
        self._barrier()

    def accept(self) -> None:
        """Accept connections again (after :meth:`refuse`)."""
        self._refusing = False
        self._barrier()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._links)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _barrier(self) -> None:
        """Wait until the loop has started a new round, seeing the flags just set."""
        if not self._running:
            return
        done = threading.Event()
        with self._lock:
            self._acks.append(done)
        self._wake()
        if not done.wait(timeout=5):
            raise RuntimeError("the TCP proxy's loop does not answer")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")

    # -- the loop (the proxy's thread) ------------------------------------------------
    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._host, port))
        listener.listen(128)
        listener.setblocking(False)
        return listener

    def _loop(self) -> None:
        listening = True
        while self._running:
            if self._refusing and listening:
                # Closing the listening socket is what makes new connections be refused.
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(self._listener)
                self._listener.close()
                listening = False
            elif not self._refusing and not listening:
                self._listener = self._listen(self.port)
                listening = True
            self._carry_out_controls()
            timeout = self._register(listening)
            for key, events in self._selector.select(timeout):
                self._handle(key.fileobj, key.data, events)  # type: ignore[arg-type]
            self._flush_due()

    def _carry_out_controls(self) -> None:
        with self._lock:
            acks, self._acks = self._acks, []
            links: list[_Link] = []
            if self._cut_pending:
                links, self._links, self._cut_pending = self._links, [], False
        for link in links:
            self._forget(link)
            link.close(reset=True)
        for done in acks:
            done.set()

    def _forget(self, link: _Link) -> None:
        for sock in (link.client, link.server):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)

    def _register(self, listening: bool) -> float | None:
        """(Re)build what the selector waits for; the time until the next delayed chunk."""
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(key.fileobj)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, "wake")
        if listening:
            self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        now = time.monotonic()
        soonest: float | None = None
        with self._lock:
            links = list(self._links)
        interest: dict[socket.socket, tuple[int, list[_Pipe]]] = {}
        for link in links:
            for pipe in (link.up, link.down):
                if self._stalled:
                    continue
                if not pipe.eof and pipe.pending_bytes < _HIGH_WATER:
                    self._want(interest, pipe.source, selectors.EVENT_READ, pipe)
                if pipe.pending:
                    due = pipe.pending[0][0]
                    if due <= now:
                        self._want(interest, pipe.sink, selectors.EVENT_WRITE, pipe)
                    else:
                        wait = due - now
                        soonest = wait if soonest is None else min(soonest, wait)
        for sock, (events, pipes) in interest.items():
            self._selector.register(sock, events, pipes)
        return soonest

    @staticmethod
    def _want(
        interest: dict[socket.socket, tuple[int, list[_Pipe]]],
        sock: socket.socket,
        event: int,
        pipe: _Pipe,
    ) -> None:
        events, pipes = interest.get(sock, (0, []))
        interest[sock] = (events | event, [*pipes, pipe])

    def _handle(self, sock: socket.socket, data: object, events: int) -> None:
        if data == "wake":
            with contextlib.suppress(OSError):
                sock.recv(4096)
        elif data == "accept":
            self._accept()
        else:
            assert isinstance(data, list)
            for pipe in data:
                if events & selectors.EVENT_READ and pipe.source is sock:
                    self._read(pipe)
                if events & selectors.EVENT_WRITE and pipe.sink is sock:
                    self._write(pipe)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self.accepted += 1
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _Link(client, socket.socket()).close(reset=True)
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._links.append(_Link(client, server))

    def _read(self, pipe: _Pipe) -> None:
        try:
            chunk = pipe.source.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pipe)
            return
        if not chunk:
            pipe.eof = True
            if not pipe.pending:
                self._shutdown_sink(pipe)
            return
        pipe.pending.append((time.monotonic() + self.delay, chunk))
        pipe.pending_bytes += len(chunk)

    def _write(self, pipe: _Pipe) -> None:
        now = time.monotonic()
        while pipe.pending and pipe.pending[0][0] <= now:
            due, chunk = pipe.pending[0]
            try:
                sent = pipe.sink.send(chunk)
            except BlockingIOError:
                return
            except OSError:
                self._drop(pipe)
                return
            if pipe.up:
                self.bytes_up += sent
            pipe.pending_bytes -= sent
            if sent < len(chunk):
                pipe.pending[0] = (due, chunk[sent:])
                return
            pipe.pending.popleft()
        if pipe.eof and not pipe.pending:
            self._shutdown_sink(pipe)

    def _flush_due(self) -> None:
        """Delayed chunks whose time came while no socket event woke the loop."""
        if self._stalled:
            return
        with self._lock:
            links = list(self._links)
        now = time.monotonic()
        for link in links:
            for pipe in (link.up, link.down):
                if pipe.pending and pipe.pending[0][0] <= now:
                    self._write(pipe)

    def _shutdown_sink(self, pipe: _Pipe) -> None:
        with contextlib.suppress(OSError):
            pipe.sink.shutdown(socket.SHUT_WR)
        link = self._link_of(pipe)
        if link is not None and link.up.eof and link.down.eof:
            self._remove(link, reset=False)

    def _drop(self, pipe: _Pipe) -> None:
        link = self._link_of(pipe)
        if link is not None:
            self._remove(link, reset=True)

    def _link_of(self, pipe: _Pipe) -> _Link | None:
        with self._lock:
            for link in self._links:
                if pipe is link.up or pipe is link.down:
                    return link
        return None

    def _remove(self, link: _Link, *, reset: bool) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        self._forget(link)
        link.close(reset=reset)


class TcpProxy:
    """A proxy on ``127.0.0.1:<free port>`` in front of ``upstream``, in a process of its
    own (see the module). Every control call returns once the proxy carried it out."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        self._process: subprocess.Popen[str] | None = None
        self.port = 0
        self._lock = threading.Lock()

    @property
    def address(self) -> Address:
        return ("127.0.0.1", self.port)

    def start(self) -> Self:
        host, port = self.upstream
        self._process = subprocess.Popen(
            [sys.executable, __file__, host, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.port = int(self._answer())
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.close()  # the child exits when its stdin closes
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def stall(self) -> None:
        """Stop forwarding in both directions; connections stay open, new ones are accepted
        (and connected upstream) but forward nothing either."""
        self._command("stall")

    def resume(self) -> None:
        """Forward again, starting with what was held back."""
        self._command("resume")

    def cut(self) -> None:
        """Reset every open connection (both sides see a connection reset)."""
        self._command("cut")

    def refuse(self) -> None:
        """Refuse new connections (connection refused), as a server that is down does;
        :meth:`cut` the open ones too for a server that went down."""
        self._command("refuse")

    def accept(self) -> None:
        """Accept connections again (after :meth:`refuse`)."""
        self._command("accept")

    @property
    def delay(self) -> float:
        return float(self._command("delay"))

    @delay.setter
    def delay(self, seconds: float) -> None:
        """Hold every chunk of data this many seconds before forwarding it (0: none)."""
        self._command(f"delay {seconds!r}")

    @property
    def bytes_up(self) -> int:
        """Bytes forwarded from clients to the server so far."""
        return int(self._command("bytes_up"))

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        return int(self._command("accepted"))

    @property
    def open_connections(self) -> int:
        return int(self._command("open"))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self, line: str) -> str:
        with self._lock:  # one command and its answer at a time (timers call in too)
            process = self._process
            if process is None:
                return "0"
            assert process.stdin is not None
            process.stdin.write(line + "\n")
            process.stdin.flush()
            return self._answer()

    def _answer(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        answer = self._process.stdout.readline().strip()
        status, _, value = answer.partition(" ")
        if status != "ok":
            raise RuntimeError(f"the TCP proxy failed: {answer or 'it exited'}")
        return value


def _serve(upstream: Address) -> None:
    """The proxy process: print the port, then carry out one command per stdin line."""
    proxy = _Proxy(upstream).start()
    print(f"ok {proxy.port}", flush=True)
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            value: object = ""
            if command in ("stall", "resume", "cut", "refuse", "accept"):
                getattr(proxy, command)()
            elif command == "delay":
                if argument:
                    proxy.delay = float(argument)
                value = proxy.delay
            elif command == "bytes_up":
                value = proxy.bytes_up
            elif command == "accepted":
                value = proxy.accepted
            elif command == "open":
                value = proxy.open_connections
            else:
                print(f"error unknown command {command!r}", flush=True)
                continue
            print(f"ok {value}", flush=True)
    finally:
        proxy.stop()


if __name__ == "__main__":
    _serve((sys.argv[1], int(sys.argv[2])))
