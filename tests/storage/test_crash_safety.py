"""`kill -9` of a real `serve` under a load of misses: every answer marked `stored` survives it."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import pytest

from gateway.config import StorageSettings
from gateway.keys.app_keys import create_key
from tests.fake_upstream import INPUT_PREFIX, TEAM_KEY, FakeUpstream, task_run_input
from tests.serve_support import launch_serve
from tests.storage_support import opened_storage

RUNS = 2_000
CLIENTS = 32
KILL_AFTER = 200  # `stored` answers seen before the SIGKILL
STORED = "parallel-gateway; fwd=uri-miss; stored"
HIT = "parallel-gateway; hit"
ROWS = "SELECT run_id, body FROM run_inputs"


@dataclass
class Serve:
    proc: asyncio.subprocess.Process
    url: str


@dataclass
class Load:
    """What the clients saw: the runs answered `stored` (body None if cut off), and the rest."""

    stored: dict[str, bytes | None] = field(default_factory=dict)
    unexpected: list[tuple[str, int, str]] = field(default_factory=list)
    interrupted: int = 0


class Launcher:
    """Starts `python -m gateway serve` on the same database, each time on a fresh port."""

    def __init__(self, directory: Path, upstream_url: str) -> None:
        self.database = directory / "gw.db"
        self.config = directory / "gateway.toml"
        self.config.write_text(
            f'[storage]\ndatabase = "{self.database}"\n[upstream]\nbase_url = "{upstream_url}"\n'
        )
        self.log = directory / "serve.log"
        self.procs: list[asyncio.subprocess.Process] = []
        self._logs: list[IO[bytes]] = []

    async def create_key(self) -> str:
        async with opened_storage(StorageSettings(database=str(self.database))) as storage:
            return await create_key(storage.app_keys, "crash")

    async def start(self) -> Serve:
        # Access lines go to a file: a pipe nobody reads would stall the gateway under load.
        log = self.log.open("ab")
        self._logs.append(log)
        try:
            proc, url = await launch_serve(
                self.config,
                env={"PARALLEL_API_KEY": TEAM_KEY},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        except AssertionError as e:
            raise AssertionError(f"{e}{self.log.read_text()[-2000:]}") from None
        self.procs.append(proc)
        return Serve(proc, url)

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for log in self._logs:
            log.close()


@pytest.fixture
async def launcher(tmp_path: Path, upstream: FakeUpstream) -> AsyncIterator[Launcher]:
    launcher = Launcher(tmp_path, upstream.base_url)
    yield launcher
    await launcher.close()


def input_path(run_id: str) -> str:
    return f"{INPUT_PREFIX}{run_id}/input"


async def drive_misses_then_kill(serve: Serve, key: str, run_ids: list[str]) -> Load:
    """CLIENTS clients fetch each run once; the KILL_AFTER-th `stored` answer sends SIGKILL."""
    load = Load()
    pending: Iterator[str] = iter(run_ids)

    async def client(session: aiohttp.ClientSession) -> None:
        for run_id in pending:
            try:
                async with session.get(serve.url + input_path(run_id)) as resp:
                    cache = resp.headers.get("Cache-Status", "")
                    if "stored" in cache.split("; "):
                        # The gateway has claimed it committed the run, whatever happens next.
                        load.stored[run_id] = None
                        if len(load.stored) == KILL_AFTER:
                            serve.proc.send_signal(signal.SIGKILL)
                    body = await resp.read()
            except aiohttp.ClientError:
                load.interrupted += 1
                return
            if run_id in load.stored:
                load.stored[run_id] = body
            if (resp.status, cache) != (200, STORED):
                load.unexpected.append((run_id, resp.status, cache))

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(headers={"x-api-key": key}, connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
    return load


async def replay(serve: Serve, key: str, run_ids: list[str]) -> dict[str, tuple[int, str, bytes]]:
    """Fetch each run once, CLIENTS at a time: status, Cache-Status and body by run id."""
    pending: Iterator[str] = iter(run_ids)
    answers: dict[str, tuple[int, str, bytes]] = {}

    async def client(session: aiohttp.ClientSession) -> None:
        for run_id in pending:
            async with session.get(serve.url + input_path(run_id)) as resp:
                answers[run_id] = (resp.status, resp.headers["Cache-Status"], await resp.read())

    async with aiohttp.ClientSession(headers={"x-api-key": key}) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
    return answers


async def test_sigkill_under_load_loses_no_run_answered_stored(
    launcher: Launcher, upstream: FakeUpstream
) -> None:
    run_ids = [f"trun_crash{n:05d}" for n in range(RUNS)]
    bodies = {run_id: upstream.add(run_id, task_run_input(n)) for n, run_id in enumerate(run_ids)}
    key = await launcher.create_key()

    first = await launcher.start()
    load = await drive_misses_then_kill(first, key, run_ids)
    await asyncio.wait_for(first.proc.wait(), 10)

    assert first.proc.returncode == -signal.SIGKILL  # killed, not shut down
    assert load.unexpected == []
    assert KILL_AFTER <= len(load.stored) < RUNS  # the kill came mid-load
    assert load.interrupted == CLIENTS  # each client ended on a call the dead gateway broke
    for run_id, body in load.stored.items():
        assert body in (None, bodies[run_id]), run_id

    with closing(sqlite3.connect(launcher.database)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = {run_id: bytes(body) for run_id, body in conn.execute(ROWS)}
    assert sorted(set(load.stored) - set(rows)) == []  # nothing acknowledged was lost
    assert len(rows) >= len(load.stored)
    assert all(rows[run_id] == bodies[run_id] for run_id in rows)

    requests_before = len(upstream.requests)
    second = await launcher.start()
    answers = await replay(second, key, sorted(load.stored))

    not_hits = {
        run_id: (status, cache)
        for run_id, (status, cache, body) in answers.items()
        if (status, cache, body) != (200, HIT, bodies[run_id])
    }
    assert not_hits == {}
    assert len(answers) == len(load.stored)
    assert len(upstream.requests) == requests_before  # the restarted gateway asked upstream nothing
    fetches = Counter(r.raw_path for r in upstream.requests)
    assert {fetches[input_path(run_id)] for run_id in load.stored} == {1}
