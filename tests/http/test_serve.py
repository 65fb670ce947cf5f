"""`parallel-gateway serve` as a real process, and the gateway without a team key."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.config import Settings
from tests.conftest import StartGateway, run_cli
from tests.fake_upstream import TEAM_KEY, FakeUpstream, task_run_input
from tests.serve_support import launch_serve

RUN = "/v1/tasks/runs/trun_serve/input"


async def test_healthz_needs_no_key(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    reply = await gateway.get("/healthz", key=None)
    assert reply.status == 200
    assert orjson.loads(reply.body) == {
        "status": "ok",
        "mode": "online",
        "upstream_configured": True,
    }


async def test_without_team_key_hits_are_served_and_misses_get_503(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    settings = make_settings()
    with_key = await start_gateway(settings)
    body = upstream.add("trun_serve", task_run_input())
    assert (await with_key.get(RUN)).status == 200
    await with_key.server.close()

    gateway = await start_gateway(settings, env={}, app="keyless")
    hit = await gateway.get(RUN)
    miss = await gateway.get("/v1/tasks/runs/trun_other/input")
    health = await gateway.get("/healthz", key=None)

    assert (hit.status, hit.body) == (200, body)
    assert miss.status == 503
    assert miss.headers["x-should-retry"] == "false"
    assert miss.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; detail=no-team-key"
    message = orjson.loads(miss.body)["error"]["message"]
    assert "PARALLEL_API_KEY" in message
    assert orjson.loads(health.body) == {
        "status": "ok",
        "mode": "online",
        "upstream_configured": False,
    }
    assert upstream.count() == 1


class ServeProcess:
    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        self.lines: list[dict[str, Any]] = []  # read from stderr so far

    async def next_line(self, event: str) -> dict[str, Any]:
        """Read stderr up to the next JSON line whose event is `event` (10 s at most)."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(10):
            while raw := await self.proc.stderr.readline():
                self.lines.append(orjson.loads(raw))
                if self.lines[-1]["event"] == event:
                    return self.lines[-1]
        raise AssertionError(f"serve ended without writing {event}")

    async def stop(self) -> list[dict[str, Any]]:
        """SIGINT, wait for exit, and return the JSON log lines written to stderr."""
        self.proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(self.proc.communicate(), 10)
        assert self.proc.returncode == 0, err.decode()
        return self.lines + [orjson.loads(line) for line in err.splitlines()]


@pytest.fixture
async def serve(
    tmp_path: Path, upstream: FakeUpstream
) -> AsyncIterator[Callable[..., Awaitable[ServeProcess]]]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(
        env_extra: dict[str, str], *args: str, upstream_toml: str = "", server_toml: str = ""
    ) -> ServeProcess:
        config = tmp_path / "gateway.toml"
        config.write_text(
            f'[server]\nport = 1\n{server_toml}[storage]\ndatabase = "{tmp_path / "gw.db"}"\n'
            f'[upstream]\nbase_url = "{upstream.base_url}"\n{upstream_toml}'
        )
        proc, url = await launch_serve(config, *args, env=env_extra)
        procs.append(proc)
        return ServeProcess(proc, url)

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_writes_json_access_lines_and_never_a_key(
    serve: Callable[..., Awaitable[ServeProcess]], tmp_path: Path, upstream: FakeUpstream
) -> None:
    body = upstream.add("trun_serve", task_run_input())
    process = await serve({"PARALLEL_API_KEY": TEAM_KEY})
    created = await run_cli(tmp_path / "gateway.toml", "keys", "create", "billing")
    app_key = created.out.decode().strip()
    async with aiohttp.ClientSession(headers={"x-api-key": app_key}) as session:
        # The running gateway picks up the new key within its refresh interval (1 s).
        for _ in range(40):
            async with session.get(process.url + "/not-an-api-route") as resp:
                if resp.status != 401:
                    break
            await asyncio.sleep(0.05)
        for expected in ("fwd=uri-miss; stored", "hit"):
            async with session.get(process.url + RUN) as resp:
                assert (resp.status, await resp.read()) == (200, body)
                assert resp.headers["Cache-Status"] == f"parallel-gateway; {expected}"
        async with session.get(process.url + "/v1/tasks/runs/trun_missing/input") as resp:
            assert resp.status == 404
    lines = await process.stop()

    access = [line for line in lines if line["event"] == "access"]
    assert [(a["status"], a["cache"], a["app"]) for a in access[-3:]] == [
        (200, "fwd=uri-miss; stored", "billing"),
        (200, "hit", "billing"),
        (404, "fwd=uri-miss; fwd-status=404", "billing"),
    ]
    for line in access:
        assert set(line) >= {
            "method",
            "path",
            "status",
            "app",
            "cache",
            "duration_ms",
            "request_id",
            "timestamp",
            "level",
        }
    errors = [line for line in lines if line["event"] == "upstream.error"]
    assert [(e["status"], e["app"], e["run_id"]) for e in errors] == [
        (404, "billing", "trun_missing")
    ]
    assert isinstance(errors[0]["ref_id"], str)
    everything = repr(lines)
    assert TEAM_KEY not in everything
    assert app_key not in everything


async def test_serve_without_team_key_says_so_in_one_warning(
    serve: Callable[..., Awaitable[ServeProcess]],
) -> None:
    process = await serve({})
    lines = await process.stop()

    warnings = [line for line in lines if line["level"] == "warning"]
    assert [w["event"] for w in warnings] == ["upstream.no_team_key"]
    assert "PARALLEL_API_KEY" in str(warnings[0]["message"])


async def test_serve_offline_says_so_and_never_calls_upstream(
    serve: Callable[..., Awaitable[ServeProcess]], tmp_path: Path, upstream: FakeUpstream
) -> None:
    upstream.add("trun_serve", task_run_input())
    process = await serve({"PARALLEL_API_KEY": TEAM_KEY}, "--offline")
    created = await run_cli(tmp_path / "gateway.toml", "keys", "create", "ci")
    headers = {"x-api-key": created.out.decode().strip()}

    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(process.url + "/healthz") as resp:
            assert await resp.json() == {
                "status": "ok",
                "mode": "offline",
                "upstream_configured": True,
            }
        for _ in range(40):  # until the new key is picked up
            async with session.get(process.url + RUN) as resp:
                if resp.status != 401:
                    break
            await asyncio.sleep(0.05)
        assert resp.status == 503
        assert resp.headers["x-should-retry"] == "false"
    lines = await process.stop()

    assert upstream.count() == 0
    assert [line["mode"] for line in lines if line["event"] == "gateway.starting"] == ["offline"]


@pytest.mark.parametrize(("server_toml", "loop"), [("", "uvloop"), ("uvloop = false\n", "asyncio")])
async def test_serve_runs_on_uvloop_unless_configured_not_to(
    serve: Callable[..., Awaitable[ServeProcess]], server_toml: str, loop: str
) -> None:
    process = await serve({"PARALLEL_API_KEY": TEAM_KEY}, server_toml=server_toml)
    async with aiohttp.ClientSession() as session, session.get(process.url + "/healthz") as resp:
        assert resp.status == 200
    lines = await process.stop()

    assert [line["loop"] for line in lines if line["event"] == "gateway.event_loop"] == [loop]


async def test_sigterm_lets_every_slow_call_in_flight_finish(
    serve: Callable[..., Awaitable[ServeProcess]], tmp_path: Path, upstream: FakeUpstream
) -> None:
    run_ids = [f"trun_slow{n}" for n in range(10)]
    bodies = {run_id: upstream.add(run_id, task_run_input(n)) for n, run_id in enumerate(run_ids)}
    process = await serve({"PARALLEL_API_KEY": TEAM_KEY})
    created = await run_cli(tmp_path / "gateway.toml", "keys", "create", "drain")
    headers = {"x-api-key": created.out.decode().strip()}

    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(40):  # until the new key is picked up
            async with session.get(process.url + "/not-an-api-route") as resp:
                if resp.status != 401:
                    break
            await asyncio.sleep(0.05)
        upstream.delay = 1.0

        async def fetch(run_id: str) -> tuple[int, bytes, str]:
            async with session.get(f"{process.url}/v1/tasks/runs/{run_id}/input") as resp:
                return resp.status, await resp.read(), resp.headers["Cache-Status"]

        calls = [asyncio.create_task(fetch(run_id)) for run_id in run_ids]
        for _ in range(100):  # until every call is waiting on the slow upstream
            if upstream.count() == len(run_ids):
                break
            await asyncio.sleep(0.02)
        assert upstream.count() == len(run_ids)
        process.proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*calls)

    assert [(status, cache) for status, _, cache in results] == [
        (200, "parallel-gateway; fwd=uri-miss; stored")
    ] * len(run_ids)
    assert [body for _, body, _ in results] == [bodies[run_id] for run_id in run_ids]
    _, err = await asyncio.wait_for(process.proc.communicate(), 10)
    assert process.proc.returncode == 0
    events = [orjson.loads(line)["event"] for line in err.splitlines()]
    assert "gateway.draining" in events
    with sqlite3.connect(tmp_path / "gw.db") as conn:
        stored = [row[0] for row in conn.execute("SELECT run_id FROM run_inputs ORDER BY run_id")]
    assert stored == sorted(run_ids)


async def test_serve_says_where_it_listens_and_when_it_stopped(
    serve: Callable[..., Awaitable[ServeProcess]],
) -> None:
    process = await serve({"PARALLEL_API_KEY": TEAM_KEY})
    lines = await process.stop()
    events = [line["event"] for line in lines]
    listening = next(line for line in lines if line["event"] == "gateway.listening")
    assert listening["addresses"] == [process.url.removeprefix("http://")]
    assert events.index("gateway.listening") < events.index("gateway.draining")
    assert events[-1] == "gateway.stopped"


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("127.0.0.1", "the address is already in use (is another gateway running there?)."),
        ("no-such-host.invalid", "the host name could not be resolved ("),
        ("192.0.2.1", "no network interface of this machine has that address."),
    ],
    ids=["in-use", "unresolvable", "not-this-machine"],
)
async def test_an_address_it_cannot_listen_on_is_one_clear_line(
    tmp_path: Path, upstream: FakeUpstream, host: str, problem: str
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[storage]\ndatabase = "{tmp_path / "gw.db"}"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli(config, "serve", "--host", host, "--port", str(port))
    assert (result.code, result.out) == (1, b"")
    # One plain line for the operator among the JSON log lines, and no traceback.
    [said] = [line for line in result.err.splitlines() if not line.startswith("{")]
    assert said.startswith(f"parallel-gateway: Cannot listen on {host}:{port}: {problem}")


async def test_version() -> None:
    result = await run_cli(Path("/nonexistent.toml"), "--version")
    assert (result.code, result.out, result.err) == (0, b"parallel-gateway 0.1.0\n", "")
