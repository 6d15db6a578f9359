"""A pre-fork server's workers (gunicorn --preload) each get a pool of their own.

``configure()`` at import time checks the schema, which leaves a connection in the pool;
the workers forked afterwards used to share its socket and read one another's replies
(psycopg2: "no results to fetch", a closed connection; PyMySQL: reads answered with
another worker's reply, so a live session looked destroyed).
"""

from __future__ import annotations

import os
import sys

import pytest

import ormsession
from tests.support.sql_fixtures import SQL_BACKENDS, sql_url
from tests.support.stores import STORE_TARGETS

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

WORKERS = 3
REQUESTS = 20


@pytest.fixture(params=SQL_BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    STORE_TARGETS[request.param](request)
    return sql_url(request, request.param)


def test_forked_workers_do_not_share_the_parents_connections(url: str) -> None:
    manager = ormsession.configure(url=url)  # the start-up check fills the pool
    ids = [_saved_session(manager, worker) for worker in range(WORKERS)]
    children = []
    for worker, session_id in enumerate(ids):  # a session each: no compare-and-set races
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports by its exit status
            status = 0
            try:
                for request in range(REQUESTS):
                    mine = manager.open(session_id)
                    assert mine.get("worker") == worker, f"read {dict(mine)}"
                    mine["requests"] = request + 1
                    manager.save(mine)
            except BaseException as exc:
                print(f"worker {worker}: {type(exc).__name__}: {exc}", file=sys.stderr)
                status = 1
            os._exit(status)
        children.append(pid)
    statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    assert statuses == [0] * WORKERS
    for worker, session_id in enumerate(ids):
        assert dict(manager.open(session_id)) == {"worker": worker, "requests": REQUESTS}
    manager.close()


def _saved_session(manager: ormsession.SessionManager, worker: int) -> str:
    session = manager.open(None)
    session["worker"] = worker
    cookie = manager.save(session)
    assert cookie is not None
    return cookie.split(";", 1)[0].split("=", 1)[1]
