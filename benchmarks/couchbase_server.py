"""The project's Couchbase test server in its own process, for the benchmarks.

Run in-process, the server's protocol handling would share the benchmark's interpreter (and
its GIL) and be timed as client overhead; in its own process it is a server like the
others. ``python -m benchmarks.couchbase_server`` prints ``{"port": N}`` once listening,
then answers ``counts`` on stdin with its ``op_counts`` as JSON, and stops on ``quit`` or
end of input. :class:`CouchbaseProcess` is the benchmark's side of that pipe.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["BUCKET", "PASSWORD", "USER", "CouchbaseProcess"]

USER = "bench"
PASSWORD = "bench-pw"
BUCKET = "sessions"
ROOT = Path(__file__).resolve().parent.parent


def serve() -> None:
    from tests.support.couchbase_server import CouchbaseTestServer

    server = CouchbaseTestServer(users={USER: PASSWORD}, buckets={BUCKET: ()})
    server.start()
    try:
        print(json.dumps({"port": server.port}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "counts":
                counts = {getattr(op, "name", str(op)): n for op, n in server.op_counts.items()}
                print(json.dumps(counts), flush=True)
            elif command == "quit":
                break
    finally:
        server.stop()


class CouchbaseProcess:
    """Starts :func:`serve` in a child process; ``counts()`` reads its op counts."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> Self:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.couchbase_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.port = int(json.loads(self._readline())["port"])
        return self

    def _readline(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the Couchbase test server process exited")
        return line

    @property
    def url(self) -> str:
        return f"couchbase://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{BUCKET}"

    def counts(self) -> dict[str, int]:
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write("counts\n")
        self._proc.stdin.flush()
        return {str(k): int(v) for k, v in json.loads(self._readline()).items()}

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    serve()
