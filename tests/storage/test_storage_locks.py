"""Writes while another process holds SQLite's write lock: every wait is bounded."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager

import orjson

from gateway.cache.admin import IMPORT_BATCH
from gateway.cache.export_format import encode_entry
from gateway.config import Settings
from gateway.state import STORAGE
from gateway.storage.sql.run_inputs import SqlRunInputs
from gateway.storage.sqlite.database import Database
from gateway.storage.types import StoredInput
from tests.conftest import Gateway, StartGateway, eventually
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
    store = gateway.server.app[STORAGE].run_inputs
    assert isinstance(store, SqlRunInputs)
    db = store.database
    assert isinstance(db, Database)  # the writer's attempts are SQLite's to count
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


def stored_count(database: str) -> int:
    with closing(sqlite3.connect(database)) as conn:
        count: int = conn.execute("SELECT count(*) FROM run_inputs").fetchone()[0]
    return count


async def test_a_miss_is_stored_while_an_import_is_under_way(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    database = gateway.settings.storage.database
    at = "2026-01-01T00:00:00.000000Z"
    lines = [
        encode_entry(StoredInput(f"trun_imp{n:05d}", orjson.dumps(task_run_input(n)), at))
        for n in range(IMPORT_BATCH + 10)
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "cache",
        "import",
        "-",
        "--config",
        str(gateway.config),
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stderr is not None
    try:
        # One batch's worth, then the import waits on stdin for the rest of the file.
        proc.stdin.write(b"".join(lines[:IMPORT_BATCH]) + lines[IMPORT_BATCH][:20])
        await proc.stdin.drain()
        await eventually(lambda: stored_count(database) == IMPORT_BATCH, within=20)

        body = upstream.add("trun_during_import", task_run_input(99))
        miss = await gateway.get("/v1/tasks/runs/trun_during_import/input")
        assert (miss.status, miss.headers["Cache-Status"], miss.body) == (200, STORED, body)
        assert proc.returncode is None  # the import is still under way

        proc.stdin.write(lines[IMPORT_BATCH][20:] + b"".join(lines[IMPORT_BATCH + 1 :]))
        proc.stdin.close()
        err = await proc.stderr.read()
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert err.decode() == (
        f"Database: {database}\n"
        f"Imported {len(lines)} new entries; 0 already cached; 0 lines rejected.\n"
    )
    assert stored_count(database) == len(lines) + 1
