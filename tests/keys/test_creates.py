"""Creates: ownership is recorded only in app mode, and a failed record never costs the app its
run, nor makes the SDK create it again."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from parallel import APIStatusError, AsyncParallel

from gateway.config import LogSettings, Settings, StorageSettings
from gateway.http.middleware import create_observer
from gateway.keys.ownership import OwnershipRecorder
from gateway.ops.metrics import Metrics
from gateway.state import METRICS, LiveSettings
from tests.conftest import StartGateway, capture_logs, eventually, unused_port
from tests.fault_servers import Answer, FaultServer, cut, hang_up, swallow
from tests.fault_servers import faulty as faulty  # the fixture
from tests.passthrough_support import (
    BYPASS,
    Harness,
    Start,
    error_of,
)
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel
from tests.raw_http import connect
from tests.storage.test_storage_faults import QUIET_KEYS, fill, metric, readyz
from tests.storage.test_storage_faults import small_disk as small_disk  # the fixture
from tests.storage.test_storage_locks import held_write_lock
from tests.storage_support import opened_storage

SDK_RETRIES = 2  # the SDK's default: a 5xx, 408, 409, 429 or a broken connection is sent again


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
            "error": "StoreError: database is locked",
            "retry_in": 1.0,
            "replay": [f"parallel-gateway runs grant {run.run_id} app"],
            "request_id": failed[0]["request_id"],
            "route": "tasks.runs.create",
        }
    ]

    # The lock is gone: the retry records the run, and the app can read it in app mode.
    await eventually(lambda: access_rows(gw) == [(run.run_id, "app", "created")], within=5)
    assert (await sdk.task_run.retrieve(run.run_id)).run_id == run.run_id


async def test_the_creator_reads_its_run_while_its_record_waits_to_be_written(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(isolation={"mode": "app"}, storage={"busy_timeout_ms": 50})
    gw = await start(settings, apps=("app", "other"))
    sdk = gw.sdk()

    with held_write_lock(gw.settings.storage.database):
        run = await sdk.task_run.create(input="q", processor="lite")
        group = await sdk.task_group.create()
        # Nothing is written yet: the creator reads its run and group all the same (the SDK's
        # create-then-poll would otherwise end in 404), and another app still cannot.
        assert access_rows(gw) == []
        assert (await sdk.task_run.retrieve(run.run_id)).run_id == run.run_id
        assert (await sdk.task_group.retrieve(group.task_group_id)).status.num_task_runs == 0
        reply = await gw.request("GET", f"/v1/tasks/runs/{run.run_id}", app="other")
        assert (reply.status, error_of(reply.body)["message"]) == (404, "Run id not found")

    assert gw.sent() == [
        ("POST", "/v1/tasks/runs"),
        ("POST", "/v1/tasks/groups"),
        ("GET", f"/v1/tasks/runs/{run.run_id}"),
        ("GET", f"/v1/tasks/groups/{group.task_group_id}"),
    ]


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
    async with opened_storage(settings) as storage:
        recorder = OwnershipRecorder(storage.run_access)
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
        records = await storage.run_access.list_records()
        assert [(r.id, r.app, r.how) for r in records] == [
            ("trun_a", "billing app", "created"),
            ("trun_b", "billing app", "created"),
        ]


UNSURE = (
    " Parallel API may have received the request, so the gateway did not send it again;"
    " check before repeating it (a repeated create makes another run)."
)
AFTER_SENDING = {
    "timed-out": (swallow(), 504, "did not answer in time."),
    "closed": (hang_up(reset=False), 502, "closed the connection before answering."),
    # In app mode the gateway reads a create's answer whole, for its run id.
    "cut-mid-body": (
        cut(b'{"run_id": "trun_cut", "status": "queued"}', 10, reset=True),
        502,
        "broke off its answer midway.",
    ),
}


@pytest.mark.parametrize(("answer", "status", "message"), AFTER_SENDING.values(), ids=AFTER_SENDING)
async def test_a_create_that_upstream_may_have_received_is_not_sent_again(
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
    faulty: FaultServer,
    answer: Answer,
    status: int,
    message: str,
) -> None:
    settings = make_settings(
        upstream={"base_url": faulty.base_url, "timeout": 0.2}, isolation={"mode": "app"}
    )
    gateway = await start_gateway(settings)
    faulty.add("/v1/tasks/runs", [answer] * (1 + SDK_RETRIES))

    async with AsyncParallel(api_key=gateway.app_key, base_url=gateway.url) as sdk:
        with pytest.raises(APIStatusError) as caught:
            await sdk.task_run.create(input="q", processor="lite")

    assert faulty.count("/v1/tasks/runs") == 1  # the SDK's default retries made no second POST
    assert caught.value.status_code == status
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in caught.value.response.headers  # no retry suggested at all
    host = faulty.base_url.removeprefix("http://")
    said = error_of(caught.value.response.content)["message"]
    assert said == f"Parallel API at {host} {message}{UNSURE}"


async def test_a_create_that_never_left_the_gateway_is_retried_by_the_gateway_alone(
    start_gateway: StartGateway, make_settings: Callable[..., Settings]
) -> None:
    host = f"127.0.0.1:{unused_port()}"
    gateway = await start_gateway(make_settings(upstream={"base_url": f"http://{host}"}))

    with capture_logs() as logs:
        async with AsyncParallel(api_key=gateway.app_key, base_url=gateway.url) as sdk:
            with pytest.raises(APIStatusError) as caught:
                await sdk.task_run.create(input="q", processor="lite")

    # Nothing was sent, so the gateway tried again itself; then the SDK was told not to.
    failed = [line["attempt"] for line in logs if line["event"] == "upstream.attempt_failed"]
    assert failed == [1, 2, 3, 4]  # upstream.max_attempts, though the SDK may retry twice
    assert caught.value.status_code == 502
    headers = caught.value.response.headers
    assert (headers["x-should-retry"], headers["retry-after"]) == ("false", "1")
    assert error_of(caught.value.response.content)["message"] == (
        f"Parallel API at {host} could not be reached: the connection was refused."
    )


async def test_an_internal_error_on_a_post_tells_the_sdk_not_to_retry(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug after upstream answered")

    app = web.Application(
        middlewares=[
            create_observer(LiveSettings(Settings(log=LogSettings(access_log=False))), Metrics())
        ]
    )
    app[METRICS] = Metrics()
    app.router.add_route("*", "/v1/tasks/runs", broken)
    client = await aiohttp_client(app)

    with capture_logs():
        post = await client.post("/v1/tasks/runs", data=b"{}")
        get = await client.get("/v1/tasks/runs")

    assert post.status == 500
    assert post.headers["x-should-retry"] == "false"
    assert error_of(await post.read())["message"] == (
        "Internal gateway error. Parallel API may have received the request; check before"
        " repeating it."
    )
    assert get.status == 500
    assert "x-should-retry" not in get.headers  # a GET may be repeated
    assert error_of(await get.read())["message"] == "Internal gateway error"


async def test_a_create_whose_record_meets_a_full_disk_is_a_storage_fault_until_it_lands(
    small_disk: Path, start: Start, make_settings: Callable[..., Settings]
) -> None:
    storage = {"database": str(small_disk / "gw.db")}
    gw = await start(make_settings(isolation={"mode": "app"}, storage=storage, keys=QUIET_KEYS))
    sdk = gw.sdk(max_retries=SDK_RETRIES)
    filler = fill(small_disk)

    with capture_logs() as logs:
        run = await sdk.task_run.create(input="q", processor="lite")
        status, ready = await readyz(gw.gateway)

    assert gw.sent() == [("POST", "/v1/tasks/runs")]
    assert [line["event"] for line in logs if line["log_level"] != "info"] == [
        "storage.error",
        "ownership.record_failed",
    ]
    assert (status, ready["storage"]["writable"]) == (503, False)
    assert ready["storage"]["errors"] == {"disk-full": 1}
    assert await metric(gw.gateway, "gateway_storage_errors_total", kind="disk-full") == 1.0

    filler.unlink()
    await eventually(lambda: access_rows(gw) == [(run.run_id, "app", "created")], within=5)
    status, ready = await readyz(gw.gateway)
    assert (status, ready["storage"]["writable"]) == (200, True)


async def test_a_create_whose_app_hangs_up_while_its_record_waits_is_still_recorded(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    storage = {"busy_timeout_ms": 2000}
    gw = await start(make_settings(isolation={"mode": "app"}, storage=storage, keys=QUIET_KEYS))
    create = (
        b"POST /v1/tasks/runs HTTP/1.1\r\nHost: gw\r\nx-api-key: "
        + gw.keys["app"].encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n"
        + b'{"input": "q", "processor": "lite"}'
    )

    with capture_logs() as logs, held_write_lock(gw.settings.storage.database):
        _, writer = await connect(gw.gateway.url)
        writer.write(create)
        await eventually(lambda: len(gw.fake.exchanges) == 1, within=5)
        await asyncio.sleep(0.5)  # the gateway has the answer, and waits on the lock to record it
        writer.close()  # the app goes away: its handler is cancelled
        await asyncio.sleep(2.5)  # the record's wait for the lock ends, and it fails
    [run_id] = gw.fake.runs

    assert [line["run_ids"] for line in logs if line["event"] == "ownership.record_failed"] == [
        [run_id]
    ]
    await eventually(lambda: access_rows(gw) == [(run_id, "app", "created")], within=5)
