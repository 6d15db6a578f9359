"""The project's Couchbase test server in a child process (in-process, its protocol handling
would be timed as client overhead): it prints ``{"port": N}``, answers ``counts`` on stdin
with its ``op_counts`` as JSON, and stops on ``quit`` or end of input."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

USER, PASSWORD, BUCKET = "bench", "bench-pw", "sessions"


def serve() -> None:
    from tests.support.couchbase_server import CouchbaseTestServer

    server = CouchbaseTestServer(users={USER: PASSWORD}, buckets={BUCKET: ()})
    server.start()
    try:
        print(json.dumps({"port": server.port}), flush=True)
        for line in sys.stdin:
            if line.strip() == "counts":
                counts = {getattr(op, "name", str(op)): n for op, n in server.op_counts.items()}
                print(json.dumps(counts), flush=True)
            elif line.strip() == "quit":
                break
    finally:
        server.stop()


@contextlib.contextmanager
def couchbase_process() -> Iterator[tuple[str, Callable[[], dict[str, int]]]]:
    """:func:`serve` in a child process: its URL, and a function that reads its op counts."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.couchbase_server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None
    assert stdout is not None

    def reply() -> str:
        line = stdout.readline()
        if not line:
            raise RuntimeError("the Couchbase test server process exited")
        return line

    def counts() -> dict[str, int]:
        stdin.write("counts\n")
        stdin.flush()
        return {str(k): int(v) for k, v in json.loads(reply()).items()}

    try:
        port = int(json.loads(reply())["port"])
        yield f"couchbase://{USER}:{PASSWORD}@127.0.0.1:{port}/{BUCKET}", counts
    finally:
        try:
            stdin.write("quit\n")
            stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        stdout.close()


if __name__ == "__main__":
    serve()
