"""A deadline for blocking drivers that have no read timeout of their own (psycopg2).

libpq waits for a reply with ``poll()`` and no time limit, and a stalled server (stopped, or
behind a link that stopped forwarding) keeps its TCP connection alive: the kernel still
acknowledges, so keepalives never fire, and a server-side ``statement_timeout`` cannot run
in a stopped process. What ends the wait is the client closing the socket. So a statement
is *armed* with its socket and its deadline before it runs and disarmed after; one daemon
thread shuts down (``shutdown(2)``, both directions) the socket of any statement still armed
at its deadline. libpq then sees the connection closed, the driver raises, and the caller,
told by :meth:`Watchdog.disarm` that the watchdog fired, discards the connection.

Why not psycopg2's ``set_wait_callback``: it is process-global, so it would change how the
application's own connections wait. Why not a timer per statement: a thread start (tens
of µs) per statement. Arming costs two uncontended lock round trips and a dict update
(about a microsecond, measured in docs/reliability.md); the thread sleeps until the
soonest deadline and is woken only when an earlier one is armed.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import socket
import threading
import time

__all__ = ["WATCHDOG", "Watchdog", "shut_down"]


class Watchdog:
    """Shuts down the sockets of statements still running at their deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, int]] = {}  # token -> (deadline, socket fd)
        self._tokens = itertools.count()
        self._soonest = math.inf  # the deadline the thread sleeps until
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._forget)

    def arm(self, fd: int, deadline: float) -> int:
        """Watch socket ``fd`` until :meth:`disarm`; shut it down at ``deadline``
        (``time.monotonic()`` seconds). The caller must not close ``fd`` before disarming."""
        token = next(self._tokens)
        with self._lock:
            self._armed[token] = (deadline, fd)
            earlier = deadline < self._soonest
            if earlier:
                self._soonest = deadline
        if earlier:
            self._ensure_thread()
            self._wakeup.set()
        return token

    def disarm(self, token: int) -> bool:
        """Stop watching; True when the deadline came first (the socket was shut down, so
        the connection is dead whatever the statement returned)."""
        with self._lock:
            return self._armed.pop(token, None) is None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="ormsession-sql-watchdog", daemon=True
            )
            self._thread.start()

    def _forget(self) -> None:
        """In a forked child: no thread runs there, and the parent's statements are not
        the child's (a pre-fork server forks workers after importing the app)."""
        self._lock = threading.Lock()
        self._armed = {}
        self._soonest = math.inf
        self._wakeup = threading.Event()
        self._thread = None

    def _watch(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                for token, (deadline, fd) in list(self._armed.items()):
                    if deadline <= now:
                        # Under the lock: a statement that disarms has its fd left alone
                        # from then on, so a closed and reused fd is never touched.
                        del self._armed[token]
                        shut_down(fd)
                self._soonest = min((d for d, _ in self._armed.values()), default=math.inf)
                wait = None if self._soonest == math.inf else self._soonest - now
            self._wakeup.wait(wait)
            self._wakeup.clear()


def shut_down(fd: int) -> None:
    """Shut the socket down in both directions (on a duplicate of ``fd``: the driver still
    owns, and will close, the original)."""
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fd))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


#: The process's one watchdog (its thread starts on first use).
WATCHDOG = Watchdog()
