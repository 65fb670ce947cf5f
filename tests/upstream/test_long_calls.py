"""Long polls and event streams take no short-call slot: a batch of waiting runs starves nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from parallel import AsyncParallel

from gateway.config import Settings, StorageSettings
from gateway.http.fdlimit import raise_open_files_limit
from gateway.keys.app_keys import create_key
from tests.conftest import ServerFactory, StartGateway, eventually
from tests.fake_upstream import TEAM_KEY
from tests.passthrough_support import WatchedParallel, error_of, watched_parallel
from tests.serve_support import launch_serve
from tests.storage_support import opened_storage

LONG_POLLS = 1000
STREAMS = 500
RUNS = 10
CREATES = 20
EVENTS = 4  # what FakeParallel's run stream sends: two state events around two progress events


@pytest.fixture
async def fake(aiohttp_server: ServerFactory) -> WatchedParallel:
    return await watched_parallel(aiohttp_server)


async def keys_for(database: Path, *apps: str) -> dict[str, str]:
    async with opened_storage(StorageSettings(database=str(database))) as storage:
        return {app: await create_key(storage.app_keys, app) for app in apps}


def events_in(body: bytes) -> int:
    return sum(block.startswith(b"event: ") for block in body.split(b"\n\n"))


async def serve_defaults(
    tmp_path: Path, database: Path, fake: WatchedParallel
) -> tuple[asyncio.subprocess.Process, str]:
    """A real `serve` with the default config, but for its database and upstream."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[storage]\ndatabase = "{database}"\n[upstream]\nbase_url = "{fake.base_url}"\n'
    )
    # Its log goes to a file: a pipe that nobody reads would fill up, and stop it.
    log = os.open(tmp_path / "serve.log", os.O_WRONLY | os.O_CREAT)
    try:
        return await launch_serve(config, env={"PARALLEL_API_KEY": TEAM_KEY}, stderr=log)
    finally:
        os.close(log)


@pytest.mark.timeout(120)
async def test_a_batch_of_long_polls_and_streams_starves_no_other_call(
    tmp_path: Path, fake: WatchedParallel
) -> None:
    # This process holds both ends of every call: the app's and the fake upstream's.
    _, soft, _ = raise_open_files_limit()
    assert soft > 4 * (LONG_POLLS + STREAMS), f"needs more open files than RLIMIT_NOFILE {soft}"
    database = tmp_path / "gateway.db"
    keys = await keys_for(database, "batch", "other")
    proc, url = await serve_defaults(tmp_path, database, fake)
    batch = AsyncParallel(api_key=keys["batch"], base_url=url, max_retries=0)
    other = AsyncParallel(api_key=keys["other"], base_url=url, max_retries=0)
    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector, headers={"x-api-key": keys["batch"]})
    try:
        run_ids = [
            (await batch.task_run.create(input=f"q{n}", processor="lite")).run_id
            for n in range(RUNS)
        ]
        fake.hold_result = asyncio.Event()
        fake.hold_stream = asyncio.Event()

        async def long_poll(n: int) -> tuple[int, bytes]:
            path = f"/v1/tasks/runs/{run_ids[n % RUNS]}/result"
            async with session.get(url + path) as resp:
                return resp.status, await resp.read()

        async def stream(n: int) -> tuple[int, bytes]:
            path = f"/v1/tasks/runs/{run_ids[n % RUNS]}/events"
            async with session.get(url + path, headers={"accept": "text/event-stream"}) as resp:
                return resp.status, await resp.read()

        waiting = [asyncio.create_task(long_poll(n)) for n in range(LONG_POLLS)]
        waiting += [asyncio.create_task(stream(n)) for n in range(STREAMS)]
        await eventually(lambda: len(fake.started) == RUNS + LONG_POLLS + STREAMS, within=60)

        # Every long poll and stream is open upstream, and held there: another app's creates
        # still go through, each while all of them stay open.
        for n in range(CREATES):
            raw = await other.task_run.with_raw_response.create(
                input=f"other {n}", processor="lite"
            )
            assert (raw.status_code, (await raw.parse()).status) == (202, "queued")
        assert not any(task.done() for task in waiting)

        fake.hold_result.set()
        fake.hold_stream.set()
        answers = await asyncio.gather(*waiting)
    finally:
        await session.close()
        await batch.close()
        await other.close()
        proc.terminate()
        await proc.wait()

    assert [status for status, _ in answers] == [200] * (LONG_POLLS + STREAMS)
    assert all(b'"output"' in body for _, body in answers[:LONG_POLLS])
    assert [events_in(body) for _, body in answers[LONG_POLLS:]] == [EVENTS] * STREAMS
    assert len(fake.started) == RUNS + LONG_POLLS + STREAMS + CREATES


async def test_an_app_that_leaves_a_long_poll_closes_its_upstream_connection(
    tmp_path: Path, fake: WatchedParallel
) -> None:
    database = tmp_path / "gateway.db"
    keys = await keys_for(database, "app")
    proc, url = await serve_defaults(tmp_path, database, fake)
    assert fake.server is not None
    assert fake.server.runner is not None
    upstream_side = fake.server.runner.server
    assert upstream_side is not None
    try:
        async with AsyncParallel(api_key=keys["app"], base_url=url, max_retries=0) as client:
            run = await client.task_run.create(input="q", processor="lite")
        fake.hold_result = asyncio.Event()
        async with aiohttp.ClientSession(headers={"x-api-key": keys["app"]}) as session:
            poll = asyncio.create_task(session.get(f"{url}/v1/tasks/runs/{run.run_id}/result"))
            await eventually(lambda: len(fake.started) == 2)
            open_during = len(upstream_side.connections)
            poll.cancel()  # the app gives up, and its connection closes
            await eventually(lambda: len(upstream_side.connections) == open_during - 1)
    finally:
        proc.terminate()
        await proc.wait()


async def test_an_app_past_its_open_call_cap_gets_429_and_no_other_app_notices(
    fake: WatchedParallel, start_gateway: StartGateway, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(upstream={"base_url": fake.base_url})
    async with opened_storage(settings.storage) as storage:
        batch_key = await create_key(storage.app_keys, "batch", max_open=2)
    gateway = await start_gateway(settings, app="other")
    batch = AsyncParallel(api_key=batch_key, base_url=gateway.url, max_retries=0)
    other = AsyncParallel(api_key=gateway.app_key, base_url=gateway.url, max_retries=0)
    try:
        run = await batch.task_run.create(input="q", processor="lite")
        await batch.task_run.retrieve_input(run.run_id)  # now a memory hit
        fake.hold_result = asyncio.Event()
        polls = [asyncio.create_task(batch.task_run.result(run.run_id)) for _ in range(2)]
        await eventually(lambda: len(fake.started) == 4)

        for path in (f"/v1/tasks/runs/{run.run_id}", f"/v1/tasks/runs/{run.run_id}/input"):
            reply = await gateway.get(path, key=batch_key)
            assert (reply.status, reply.headers["retry-after"]) == (429, "1"), path
            assert error_of(reply.body)["message"] == (
                "Too many open calls: app 'batch' may have 2 calls open at once through the "
                "gateway; retry when one has ended."
            )
        assert len(fake.started) == 4
        # Another app is unaffected, long polls included.
        mine = await other.task_run.create(input="mine", processor="lite")
        assert (await other.task_run.retrieve(mine.run_id)).run_id == mine.run_id
        other_poll = asyncio.create_task(other.task_run.result(mine.run_id))
        await eventually(lambda: len(fake.started) == 7)

        fake.hold_result.set()
        assert [(await poll).run.run_id for poll in polls] == [run.run_id] * 2
        assert (await other_poll).run.run_id == mine.run_id
        assert (await batch.task_run.retrieve(run.run_id)).run_id == run.run_id
    finally:
        await batch.close()
        await other.close()
