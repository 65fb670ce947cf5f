"""Replicas when things break: PostgreSQL stopped and started under them, a replica killed
under write load, and a team moving up from SQLite with `storage copy`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import psycopg
import pytest

from tests.cli_support import KEY_LINE
from tests.conftest import run_cli
from tests.fake_upstream import TEAM_KEY, FakeUpstream, ServerFactory, task_run_input
from tests.postgres_server import PostgresServer
from tests.serve_support import launch_serve
from tests.storage.test_replicas import until

STORED = "parallel-gateway; fwd=uri-miss; stored"
UNSTORED = "parallel-gateway; fwd=uri-miss"
HIT = "parallel-gateway; hit"


def run_id(n: int) -> str:
    return f"trun_{n:032x}"


def path(n: int) -> str:
    return f"/v1/tasks/runs/{run_id(n)}/input"


async def get(url: str, path: str, key: str) -> tuple[int, str | None, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + path, headers={"x-api-key": key}) as resp,
    ):
        return resp.status, resp.headers.get("Cache-Status"), await resp.read()


def stored_runs(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT run_id FROM run_inputs")}


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, to crash and start under the replicas."""
    own = PostgresServer.create(durable=True)
    own.start()
    yield own
    own.stop()


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> FakeUpstream:
    fake = await FakeUpstream().listen(aiohttp_server)
    for n in range(200):
        fake.add(run_id(n), task_run_input(n))
    return fake


async def start_replicas(
    tmp_path: Path, database: str, upstream: FakeUpstream, count: int
) -> tuple[list[asyncio.subprocess.Process], list[str], Path, dict[str, str]]:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[upstream]\nbase_url = "{upstream.base_url}"\nmax_attempts = 1\n')
    env = {"PARALLEL_GATEWAY_DATABASE": database, "PARALLEL_API_KEY": TEAM_KEY}
    quiet = asyncio.subprocess.DEVNULL
    started = [await launch_serve(config, env=env, stderr=quiet) for _ in range(count)]
    return [p for p, _ in started], [u for _, u in started], config, env


async def stop_all(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def procs() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    await stop_all(started)


async def new_key(config: Path, env: dict[str, str], *options: str) -> str:
    made = await run_cli(config, "keys", "create", "billing", *options, env=env)
    assert KEY_LINE.fullmatch(made.out.decode()), made.err
    return made.out.decode().strip()


async def test_replicas_serve_statically_while_postgresql_is_down(
    tmp_path: Path,
    server: PostgresServer,
    upstream: FakeUpstream,
    procs: list[asyncio.subprocess.Process],
) -> None:
    database = server.url()
    started, urls, config, env = await start_replicas(tmp_path, database, upstream, 2)
    procs += started
    key = await new_key(config, env)
    await until(lambda: _accepted(urls, key))
    assert (await get(urls[0], path(1), key))[:2] == (200, STORED)
    assert (await get(urls[0], path(1), key))[:2] == (200, HIT)

    server.halt()
    # A memory hit, a miss (answered, not stored), and pass-through, with the key it knows.
    assert (await get(urls[0], path(1), key))[:2] == (200, HIT)
    assert (await get(urls[0], path(2), key))[:2] == (200, UNSTORED)
    assert (await get(urls[1], path(3), key))[:2] == (200, UNSTORED)
    assert (await get(urls[1], "/v1/tasks/runs/trun_elsewhere", key))[0] == 404
    async with aiohttp.ClientSession() as session, session.get(urls[0] + "/readyz") as resp:
        ready = orjson.loads(await resp.read())
        assert resp.status == 200
    assert (ready["status"], ready["serving"], ready["database"]) == (
        "ready",
        "static",
        "error: cannot-open",
    )
    assert ready["storage"]["reachable"] is False

    server.start()

    async def reconnected() -> bool:
        answer = await get(urls[1], path(4), key)
        return answer[:2] == (200, STORED)

    await until(reconnected, within=20.0)
    assert stored_runs(database) == {run_id(1), run_id(4)}  # every answer marked stored is there


async def test_every_answer_marked_stored_survives_a_replica_killed_under_load(
    tmp_path: Path,
    postgres_url: str,
    upstream: FakeUpstream,
    procs: list[asyncio.subprocess.Process],
) -> None:
    started, urls, config, env = await start_replicas(tmp_path, postgres_url, upstream, 2)
    procs += started
    key = await new_key(config, env)
    await until(lambda: _accepted(urls, key))
    marked: set[str] = set()

    async def load(n: int) -> None:
        try:
            status, cache, _ = await get(urls[0], path(n), key)
        except aiohttp.ClientError:
            return  # cut off by the kill
        if status == 200 and cache == STORED:
            marked.add(run_id(n))

    tasks = [asyncio.create_task(load(n)) for n in range(200)]
    await until(lambda: _some_stored(postgres_url))
    started[0].send_signal(signal.SIGKILL)
    await asyncio.gather(*tasks)
    assert marked  # some answers went out before the kill
    assert marked <= stored_runs(postgres_url)


async def test_a_copied_sqlite_store_serves_its_keys_and_runs_from_every_replica(
    tmp_path: Path,
    postgres_url: str,
    upstream: FakeUpstream,
    procs: list[asyncio.subprocess.Process],
) -> None:
    sqlite = tmp_path / "old" / "gw.db"
    old = tmp_path / "old" / "gateway.toml"
    sqlite.parent.mkdir()
    old.write_text(
        f'[storage]\ndatabase = "{sqlite}"\n[upstream]\nbase_url = "{upstream.base_url}"\n'
    )
    team = {"PARALLEL_API_KEY": TEAM_KEY}
    key = await new_key(old, team, "--create")
    warmed = await run_cli(old, "cache", "warm", run_id(7), run_id(8), env=team)
    assert warmed.code == 0, warmed.err
    copied = await run_cli(old, "storage", "copy", "--from", str(sqlite), "--to", postgres_url)
    assert copied.code == 0, copied.err
    assert ["run_inputs", "2", "2"] in [line.split() for line in copied.out.decode().splitlines()]
    fetched = upstream.count()

    started, urls, _, _ = await start_replicas(tmp_path, postgres_url, upstream, 2)
    procs += started
    for url in urls:
        for n in (7, 8):
            status, cache, body = await get(url, path(n), key)
            assert (status, cache, body) == (200, HIT, upstream.inputs[run_id(n)])
    assert upstream.count() == fetched  # served from what was copied


async def _accepted(urls: list[str], key: str) -> bool:
    answers = [await get(url, "/v1/tasks/runs/trun_x", key) for url in urls]
    return all(status != 401 for status, _, _ in answers)


async def _some_stored(url: str) -> bool:
    return len(stored_runs(url)) >= 20
