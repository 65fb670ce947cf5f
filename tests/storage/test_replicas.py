"""Replicas on PostgreSQL: three real `serve` processes sharing one database show that key
changes, purges and cold runs are shared, and that limits hold across them.

Each replica's own polling is set to a minute, so what reaches them sooner came by
announcement (LISTEN/NOTIFY); each test waits at most a few seconds for it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psycopg
import pytest
from aiohttp import web

from tests.cli_support import KEY_LINE
from tests.conftest import run_cli
from tests.fake_upstream import TEAM_KEY, FakeUpstream, ServerFactory, task_run_input
from tests.serve_support import launch_serve

RUN = "trun_0123456789abcdef0123456789abcdef"
INPUT = f"/v1/tasks/runs/{RUN}/input"
SLOW_POLL = "refresh_interval = 60.0\n"


class GatedUpstream(FakeUpstream):
    """Holds every request until `gate` is set; `arrived` is set by a run input's."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()
        self.held: list[str] = []  # the paths of requests that reached the gate, answered or not

    async def intercept(self, request: web.Request) -> web.Response | None:
        self.held.append(request.raw_path)
        if request.raw_path.endswith("/input"):
            self.arrived.set()
        await self.gate.wait()
        return await super().intercept(request)


@dataclass
class Replicas:
    urls: list[str]
    procs: list[asyncio.subprocess.Process]
    config: Path
    env: dict[str, str]
    database: str

    async def cli(self, *args: str) -> str:
        done = await run_cli(self.config, *args, env=self.env)
        assert done.code == 0, done.err
        assert PASSWORD not in done.err
        return done.out.decode()

    async def key(self, name: str, *options: str) -> str:
        out = await self.cli("keys", "create", name, *options)
        assert KEY_LINE.fullmatch(out)
        return out.strip()


async def get(url: str, path: str, key: str) -> tuple[int, bytes]:
    """One call; a call held past 30 s fails the test rather than waiting out aiohttp's 300 s."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.get(url + path, headers={"x-api-key": key}) as resp,
    ):
        return resp.status, await resp.read()


async def until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Wait for `check` to hold, trying every 20 ms; fail if it does not within `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> GatedUpstream:
    return await GatedUpstream().listen(aiohttp_server)


# The suite's server trusts every local connection, so any password is let in: it shows that
# this one is never written anywhere.
PASSWORD = "hunter2-not-for-logs"


@pytest.fixture
async def replicas(
    tmp_path: Path, postgres_url: str, upstream: GatedUpstream
) -> AsyncIterator[Replicas]:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[upstream]\nbase_url = "{upstream.base_url}"\nmax_attempts = 1\n'
        f"[keys]\n{SLOW_POLL}share_interval = 0.05\n[cache]\nsync_interval = 60.0\n"
    )
    with_password = postgres_url.replace("gateway@", f"gateway:{PASSWORD}@")
    env = {"PARALLEL_GATEWAY_DATABASE": with_password, "PARALLEL_API_KEY": TEAM_KEY}
    migrated = await run_cli(config, "migrate", env=env)
    assert migrated.out.decode().endswith(
        f"Database {postgres_url.replace('gateway@', 'gateway:***@')} is at the latest schema.\n"
    )
    logs = [(tmp_path / f"replica-{i}.log").open("wb") for i in range(3)]
    started = [await launch_serve(config, env=env, stderr=log) for log in logs]
    yield Replicas([u for _, u in started], [p for p, _ in started], config, env, postgres_url)
    for proc, _ in started:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    for log in logs:
        log.close()
    for i in range(3):
        written = (tmp_path / f"replica-{i}.log").read_bytes()
        assert b'"event":"gateway.listening"' in written
        assert PASSWORD.encode() not in written


async def test_a_revoked_key_is_refused_by_every_replica_at_once(replicas: Replicas) -> None:
    key = await replicas.key("billing")

    async def everywhere(status: int) -> bool:
        answers = [await get(url, "/v1/tasks/runs/trun_x", key) for url in replicas.urls]
        return all(code == status for code, _ in answers)

    await until(lambda: everywhere(404))  # the fake has no such run: the key was let through
    await replicas.cli("keys", "revoke", "billing")
    await until(lambda: everywhere(401), within=1.0)


async def test_a_cold_run_costs_one_upstream_request_across_replicas(
    replicas: Replicas, upstream: GatedUpstream
) -> None:
    key = await replicas.key("billing")
    body = upstream.add(RUN, task_run_input(1))
    await until(lambda: _known(replicas, key))
    upstream.gate.clear()
    upstream.arrived.clear()
    answers = [asyncio.create_task(get(url, INPUT, key)) for url in replicas.urls * 2]
    await asyncio.wait_for(upstream.arrived.wait(), 10)
    await asyncio.sleep(0.2)  # the other replicas' misses reach their leases meanwhile
    upstream.gate.set()
    assert await asyncio.gather(*answers) == [(200, body)] * 6
    assert upstream.count(RUN) == 1


async def test_a_replica_killed_while_fetching_is_taken_over(
    replicas: Replicas, upstream: GatedUpstream
) -> None:
    key = await replicas.key("billing")
    body = upstream.add(RUN, task_run_input(2))
    await until(lambda: _known(replicas, key))
    upstream.gate.clear()
    first = asyncio.create_task(get(replicas.urls[0], INPUT, key))
    await asyncio.wait_for(upstream.arrived.wait(), 10)
    waiting = [asyncio.create_task(get(url, INPUT, key)) for url in replicas.urls[1:]]
    await asyncio.sleep(0.2)
    assert not any(task.done() for task in waiting)
    replicas.procs[0].send_signal(signal.SIGKILL)
    await replicas.procs[0].wait()
    upstream.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 20) == [(200, body)] * 2
    with pytest.raises(aiohttp.ClientError):
        await first
    # The dead replica's request, cut off with it, and the one that took over, answered.
    assert (upstream.held.count(INPUT), upstream.count(RUN)) == (2, 1)


async def test_a_purge_reaches_every_replica(replicas: Replicas, upstream: GatedUpstream) -> None:
    key = await replicas.key("billing")
    upstream.add(RUN, task_run_input(3))
    await until(lambda: _known(replicas, key))
    for url in replicas.urls:
        assert (await get(url, INPUT, key))[0] == 200
    assert upstream.count(RUN) == 1
    await replicas.cli("cache", "purge", RUN)
    fresh = upstream.add(RUN, task_run_input(4))

    async def purged_everywhere() -> bool:
        return all([await get(url, INPUT, key) == (200, fresh) for url in replicas.urls])

    await until(purged_everywhere, within=2.0)
    assert upstream.count(RUN) == 2  # refetched once, for all three


async def test_rate_limits_hold_across_replicas(
    replicas: Replicas, upstream: GatedUpstream
) -> None:
    key = await replicas.key("billing", "--rate", "0.01", "--burst", "3")
    upstream.add(RUN, task_run_input(5))
    await until(lambda: _limited_everywhere(replicas))
    a, b, c = replicas.urls
    assert [(await get(a, INPUT, key))[0] for _ in range(3)] == [200, 200, 200]
    await _shared_since(replicas)
    assert [(await get(url, INPUT, key))[0] for url in (b, c)] == [429, 429]


async def test_open_call_caps_hold_across_replicas(
    replicas: Replicas, upstream: GatedUpstream
) -> None:
    key = await replicas.key("billing", "--max-open", "2")
    await until(lambda: _limited_everywhere(replicas))
    upstream.gate.clear()
    a, b = replicas.urls[:2]
    held = [asyncio.create_task(get(a, f"/v1/tasks/runs/trun_{n}/result", key)) for n in (1, 2)]
    await until(lambda: _open_on_one_replica(replicas, 2))
    status, body = await get(b, "/v1/tasks/runs/trun_3/result", key)
    assert status == 429
    assert b"may have 2 calls open at once" in body
    upstream.gate.set()
    assert [status for status, _ in await asyncio.gather(*held)] == [404, 404]


async def test_the_listener_survives_its_connection_being_killed(replicas: Replicas) -> None:
    key = await replicas.key("billing")
    await until(lambda: _known(replicas, key))
    with psycopg.connect(replicas.database, autocommit=True) as admin:
        # By its name: its last query is LISTEN only until its first liveness check (5 s).
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'parallel-gateway listener'"
            " AND datname = current_database()"
        ).fetchall()
    assert killed == [(True,)] * 3
    await replicas.cli("keys", "revoke", "billing")

    async def refused_everywhere() -> bool:
        answers = [await get(url, "/v1/tasks/runs/trun_x", key) for url in replicas.urls]
        return all(code == 401 for code, _ in answers)

    await until(refused_everywhere, within=5.0)


async def _known(replicas: Replicas, key: str) -> bool:
    """Whether every replica accepts `key` (a run the fake does not have: 404 means let in)."""
    answers = [await get(url, "/v1/tasks/runs/trun_x", key) for url in replicas.urls]
    return all(code != 401 for code, _ in answers)


async def _limited_everywhere(replicas: Replicas) -> bool:
    """Whether every replica has loaded the key and its limit: a row of its usage is shared."""
    with psycopg.connect(replicas.database) as conn:
        rows = conn.execute("SELECT count(DISTINCT replica) FROM replica_usage").fetchone()
    return rows == (3,)


async def _open_on_one_replica(replicas: Replicas, calls: int) -> bool:
    """Whether one replica has shared `calls` open calls, and the others have read it."""
    with psycopg.connect(replicas.database) as conn:
        row = conn.execute("SELECT 1 FROM replica_usage WHERE open = %s", (calls,)).fetchone()
    if row is None:
        return False
    await _read_by_the_others(replicas, "open", time.time())
    return True


async def _shared_since(replicas: Replicas) -> None:
    """Wait until one replica has shared the 3 calls it admitted, and the other two have
    read its figures."""

    async def admitted() -> bool:
        with psycopg.connect(replicas.database) as conn:
            row = conn.execute("SELECT 1 FROM replica_usage WHERE taken = 3").fetchone()
        return row is not None

    await until(admitted)
    await _read_by_the_others(replicas, "taken", time.time())


NOT_YET_COUNTED = {
    "open": "SELECT count(*) FROM replica_usage WHERE open = 0 AND at > %s",
    "taken": "SELECT count(*) FROM replica_usage WHERE taken = 0 AND at > %s",
}


async def _read_by_the_others(replicas: Replicas, column: str, seen: float) -> None:
    """Wait until the two replicas showing 0 in `column` have each read and applied figures
    committed before `seen`.

    A replica stamps its row with the time its exchange began, writes, then reads the others
    and applies what it read. A row stamped after `seen` proves that exchange began after the
    commit (one clock, one machine), but it may not have read or applied yet. Exchanges run one
    after another, so a second stamp, after a moment taken once the first was seen, proves the
    first exchange has finished. (A stamp later than the other replica's own row is not enough:
    that replica may have taken its stamp before committing.)"""

    def stamped_after(moment: float) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            with psycopg.connect(replicas.database) as conn:
                row = conn.execute(NOT_YET_COUNTED[column], (moment,)).fetchone()
            return row == (2,)

        return check

    await until(stamped_after(seen))
    await until(stamped_after(time.time()))
