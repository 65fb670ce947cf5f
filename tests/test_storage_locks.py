"""Writes while another process holds SQLite's write lock: every wait is bounded."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager

from gateway.config import Settings
from gateway.state import DATABASE
from tests.conftest import StartGateway
from tests.fake_upstream import FakeUpstream, task_run_input

MISS = "parallel-gateway; fwd=uri-miss"
STORED = "parallel-gateway; fwd=uri-miss; stored"
# Key use is recorded every keys.refresh_interval: no such write may land inside a test.
QUIET = {"refresh_interval": 3600.0}


@contextmanager
def held_write_lock(database: str) -> Iterator[None]:
    """Another process's write lock on `database` (a second, real connection) until exit."""
    with closing(sqlite3.connect(database, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")


async def test_misses_behind_a_held_lock_answer_unstored_each_write_tried_once(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    gateway = await start_gateway(make_settings(storage={"busy_timeout_ms": 50}, keys=QUIET))
    db = gateway.server.app[DATABASE]
    run_ids = [f"trun_locked{n:02d}" for n in range(30)]
    bodies = {run_id: upstream.add(run_id, task_run_input(n)) for n, run_id in enumerate(run_ids)}
    tried = db.write_attempts

    with held_write_lock(gateway.settings.storage.database):
        replies = await asyncio.gather(
            *(gateway.get(f"/v1/tasks/runs/{run_id}/input") for run_id in run_ids)
        )

    answers = [(reply.status, reply.headers["Cache-Status"], reply.body) for reply in replies]
    assert answers == [(200, MISS, bodies[run_id]) for run_id in run_ids]
    # Each miss's write was tried once, within busy_timeout of its queueing; before, a failed
    # batch was retried write by write, each waiting busy_timeout again (30 misses, 39 s).
    assert db.write_attempts - tried == len(run_ids)
    assert [upstream.count(run_id) for run_id in run_ids] == [1] * len(run_ids)

    again = await gateway.get(f"/v1/tasks/runs/{run_ids[0]}/input")
    assert (again.status, again.headers["Cache-Status"], again.body) == (
        200,
        STORED,
        bodies[run_ids[0]],
    )
    assert upstream.count(run_ids[0]) == 2
