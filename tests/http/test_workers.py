"""`serve --workers 2`: one port, two processes, one SQLite file, keys and purges reach both."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import run_cli
from tests.fake_upstream import TEAM_KEY, FakeUpstream, task_run_input
from tests.serve_support import launch_serve

RUN = "/v1/tasks/runs/trun_workers/input"
ROUNDS = 24  # fresh connections per check: SO_REUSEPORT spreads them over both workers


class Workers:
    def __init__(self, proc: asyncio.subprocess.Process, url: str, config: Path) -> None:
        self.proc = proc
        self.url = url
        self.config = config
        self.ok = 0  # 200s answered on RUN so far

    async def round(self, path: str, key: str | None) -> list[tuple[int, str, str]]:
        """(status, Cache-Status, request id) for ROUNDS requests, each on a new connection."""
        headers = {"x-api-key": key} if key else {}
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            out = []
            for _ in range(ROUNDS):
                async with session.get(self.url + path) as resp:
                    await resp.read()
                    self.ok += resp.status == 200 and path == RUN
                    out.append(
                        (
                            resp.status,
                            resp.headers.get("Cache-Status", ""),
                            resp.headers["x-gateway-request-id"],
                        )
                    )
            return out

    async def until(self, path: str, key: str | None, status: int) -> list[int]:
        """Poll whole rounds until every answer has `status`, for at most the promised 2 s."""
        deadline = asyncio.get_running_loop().time() + 2.0
        while True:
            statuses = [s for s, _, _ in await self.round(path, key)]
            if set(statuses) == {status} or asyncio.get_running_loop().time() > deadline:
                return statuses
            await asyncio.sleep(0.05)


@pytest.fixture
async def workers(tmp_path: Path, upstream: FakeUpstream) -> AsyncIterator[Workers]:
    config = tmp_path / "gateway.toml"
    key_file = tmp_path / "team-key"
    key_file.write_text(TEAM_KEY)
    # The team key from a file, checked hourly: in these tests only SIGHUP re-reads it.
    config.write_text(
        f'[storage]\ndatabase = "{tmp_path / "gw.db"}"\n'
        f'[upstream]\nbase_url = "{upstream.base_url}"\napi_key_file = "{key_file}"\n'
        "api_key_file_interval = 3600.0\n"
    )
    proc, url = await launch_serve(
        config, "--workers", "2", env={}, stderr=asyncio.subprocess.DEVNULL, probe="/readyz"
    )
    yield Workers(proc, url, config)
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0


async def test_two_workers_share_the_port_and_the_keys(
    workers: Workers, upstream: FakeUpstream
) -> None:
    upstream.add("trun_workers", task_run_input())
    created = await run_cli(workers.config, "keys", "create", "shared")
    key = created.out.decode().strip()

    assert await workers.until(RUN, key, 200) == [200] * ROUNDS
    answers = await workers.round(RUN, key)
    prefixes = {request_id.split("-")[0] for _, _, request_id in answers}
    assert len(prefixes) == 2  # both processes answered
    assert upstream.count("trun_workers") <= 2  # at most one fetch per worker; then SQLite

    assert (await run_cli(workers.config, "keys", "revoke", "shared")).code == 0
    assert await workers.until(RUN, key, 401) == [401] * ROUNDS


async def test_a_purge_reaches_both_workers_memory(
    workers: Workers, upstream: FakeUpstream
) -> None:
    upstream.add("trun_workers", task_run_input())
    key = (await run_cli(workers.config, "keys", "create", "purger")).out.decode().strip()
    assert await workers.until(RUN, key, 200) == [200] * ROUNDS
    hits = await workers.round(RUN, key)
    assert {cache for _, cache, _ in hits} == {"parallel-gateway; hit"}
    assert len({request_id.split("-")[0] for _, _, request_id in hits}) == 2

    del upstream.inputs["trun_workers"]  # from now on a fetch finds nothing
    assert (await run_cli(workers.config, "cache", "purge", "trun_workers")).code == 0

    assert await workers.until(RUN, key, 404) == [404] * ROUNDS


async def test_sighup_to_the_supervisor_rotates_the_team_key_in_both_workers(
    workers: Workers, upstream: FakeUpstream
) -> None:
    new_key = "team-secret-key-rotated-0000000000000000"
    upstream.team_keys = {TEAM_KEY, new_key}
    for n in range(200):
        upstream.add(f"trun_hup{n}", task_run_input(n))
    upstream.add("trun_workers", task_run_input())
    key = (await run_cli(workers.config, "keys", "create", "hup")).out.decode().strip()
    assert await workers.until(RUN, key, 200) == [200] * ROUNDS  # both workers know the key
    assert {r.headers["x-api-key"] for r in upstream.requests} == {TEAM_KEY}
    (workers.config.parent / "team-key").write_text(new_key)

    workers.proc.send_signal(signal.SIGHUP)

    loop = asyncio.get_running_loop()
    deadline, runs = loop.time() + 2.0, iter(range(200))
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, headers={"x-api-key": key}) as session:

        async def miss() -> tuple[int, str, str | None]:
            """A fresh run: (status, which worker answered, the team key it sent upstream)."""
            async with session.get(f"{workers.url}/v1/tasks/runs/trun_hup{next(runs)}/input") as r:
                worker = r.headers["x-gateway-request-id"].split("-")[0]
                return r.status, worker, upstream.requests[-1].headers.get("x-api-key")

        while True:
            answers = [await miss() for _ in range(ROUNDS)]
            if {sent for _, _, sent in answers} == {new_key} or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)

    assert {(status, sent) for status, _, sent in answers} == {(200, new_key)}
    assert len({worker for _, worker, _ in answers}) == 2  # both workers use the new key
    assert workers.proc.returncode is None  # SIGHUP stopped neither supervisor nor workers


async def test_metrics_add_up_across_workers(workers: Workers, upstream: FakeUpstream) -> None:
    upstream.add("trun_workers", task_run_input())
    key = (await run_cli(workers.config, "keys", "create", "counted")).out.decode().strip()
    assert await workers.until(RUN, key, 200) == [200] * ROUNDS
    answers = await workers.round(RUN, key)
    assert len({request_id.split("-")[0] for _, _, request_id in answers}) == 2

    async with aiohttp.ClientSession() as session, session.get(workers.url + "/metrics") as resp:
        text = await resp.text()
    counted = sum(
        float(m.group(1))
        for m in re.finditer(
            r'^gateway_requests_total\{app="counted",cache="[^"]*",route="tasks.runs.input",'
            r'status="200"\} (\S+)$',
            text,
            re.MULTILINE,
        )
    )
    # Every 200 the polling and the round got, whichever worker answered it.
    assert counted == workers.ok
