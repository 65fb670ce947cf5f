"""Creates: ownership is recorded only in app mode, and a failed record never costs the app its
run, nor makes the SDK create it again."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

import pytest

from gateway.config import Settings, StorageSettings
from gateway.db import Database
from gateway.ownership import OwnershipRecorder
from tests.conftest import StartGateway, capture_logs, eventually
from tests.passthrough_support import (
    BYPASS,
    Harness,
    ServerFactory,
    Start,
    WatchedParallel,
    harnesses,
    watched_parallel,
)
from tests.test_storage_locks import held_write_lock

SDK_RETRIES = 2  # the SDK's default: a 5xx, 408, 409, 429 or a broken connection is sent again


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> WatchedParallel:
    """FakeParallel in place of conftest's FakeUpstream: make_settings points at it."""
    return await watched_parallel(aiohttp_server)


@pytest.fixture
async def start(
    start_gateway: StartGateway,
    upstream: WatchedParallel,
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Start]:
    async with harnesses(start_gateway, upstream, make_settings) as start:
        yield start


def access_rows(gw: Harness) -> list[tuple[str, str, str]]:
    """run_access, read through a connection of our own: only committed rows."""
    with closing(sqlite3.connect(gw.settings.storage.database)) as conn:
        return conn.execute("SELECT id, app, how FROM run_access ORDER BY id").fetchall()


async def test_a_create_whose_ownership_write_fails_is_answered_once_and_recorded_later(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(isolation={"mode": "app"}, storage={"busy_timeout_ms": 50}))
    sdk = gw.sdk(max_retries=SDK_RETRIES)

    with capture_logs() as logs, held_write_lock(gw.settings.storage.database):
        raw = await sdk.task_run.with_raw_response.create(input="q", processor="lite")
        run = await raw.parse()
        # Still locked: nothing is recorded yet, and the app has its run all the same.
        assert access_rows(gw) == []

    assert (raw.status_code, raw.headers["cache-status"]) == (202, BYPASS)
    assert run.run_id in gw.fake.runs
    assert gw.sent() == [("POST", "/v1/tasks/runs")]  # one create upstream, never repeated
    failed = [line for line in logs if line["event"] == "ownership.record_failed"]
    assert failed == [
        {
            "event": "ownership.record_failed",
            "log_level": "warning",
            "app": "app",
            "run_ids": [run.run_id],
            "error": "OperationalError: database is locked",
            "retry_in": 1.0,
            "replay": [f"parallel-gateway runs grant {run.run_id} app"],
            "request_id": failed[0]["request_id"],
            "route": "tasks.runs.create",
        }
    ]

    # The lock is gone: the retry records the run, and the app can read it in app mode.
    await eventually(lambda: access_rows(gw) == [(run.run_id, "app", "created")], within=5)
    assert (await sdk.task_run.retrieve(run.run_id)).run_id == run.run_id


async def test_team_mode_records_no_ownership_and_needs_no_write(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(storage={"busy_timeout_ms": 50}))
    sdk = gw.sdk(max_retries=SDK_RETRIES)

    with held_write_lock(gw.settings.storage.database):
        run = await sdk.task_run.create(input="q", processor="lite")
        group = await sdk.task_group.create()
        added = await sdk.task_group.add_runs(
            group.task_group_id, inputs=[{"input": "x", "processor": "lite"}]
        )

    assert len(added.run_ids) == 1
    assert gw.sent() == [
        ("POST", "/v1/tasks/runs"),
        ("POST", "/v1/tasks/groups"),
        ("POST", f"/v1/tasks/groups/{group.task_group_id}/runs"),
    ]
    assert run.run_id in gw.fake.runs
    assert access_rows(gw) == []


async def test_a_record_still_failing_at_shutdown_is_logged_with_the_grants_to_replay(
    tmp_path: Path,
) -> None:
    settings = StorageSettings(database=str(tmp_path / "gw.db"), busy_timeout_ms=50)
    db = await Database.open(settings)
    try:
        recorder = OwnershipRecorder(db)
        with held_write_lock(settings.database):
            await recorder.record("billing app", ["trun_a", "trun_b"])
            with capture_logs() as logs:
                await recorder.flush()
        assert [line for line in logs if line["log_level"] != "debug"] == [
            {
                "event": "ownership.unrecorded",
                "log_level": "error",
                "app": "billing app",
                "run_ids": ["trun_a", "trun_b"],
                "replay": [
                    "parallel-gateway runs grant trun_a 'billing app'",
                    "parallel-gateway runs grant trun_b 'billing app'",
                ],
            }
        ]
        with capture_logs() as logs:
            await recorder.flush()  # the lock is gone: written now, and nothing left over
        assert [line["event"] for line in logs] == ["ownership.recorded"]
        rows = await db.fetchall("SELECT id, app, how FROM run_access ORDER BY id")
        assert [tuple(row) for row in rows] == [
            ("trun_a", "billing app", "created"),
            ("trun_b", "billing app", "created"),
        ]
    finally:
        await db.close()
