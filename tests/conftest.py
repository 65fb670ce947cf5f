"""Shared fixtures: a fake upstream, gateways on ephemeral ports, app keys, the official SDK."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner
from multidict import CIMultiDict
from parallel import AsyncParallel
from structlog.typing import EventDict
from yarl import URL

from gateway.aiohttp_internals import fast_path_forced_off
from gateway.app import create_app
from gateway.config import ServerSettings, Settings, settings_from_dict
from gateway.db import Database
from gateway.keys import create_key
from gateway.server import GatewayRunner
from tests.cli_support import without_database_line
from tests.fake_upstream import TEAM_KEY, FakeUpstream
from tests.fake_upstream import ServerFactory as ServerFactory  # for the test modules

# For tests about the fast path itself; every behaviour test runs in both modes.
fast_path_only = pytest.mark.skipif(
    fast_path_forced_off(),
    reason="about the fast path itself, which GATEWAY_FAST_PATH=off turns off",
)


def capture_logs() -> AbstractContextManager[list[EventDict]]:
    """structlog's capture, with the per-request context (app, request_id) merged in."""
    return structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars])


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class Gateway:
    server: TestServer
    settings: Settings
    app_key: str

    @property
    def config(self) -> Path:
        """A config file for the CLI, pointing at this gateway's database and upstream."""
        return write_config(
            Path(self.settings.storage.database).with_suffix(".toml"), self.settings
        )

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def get(self, raw_path: str, key: str | None = "app", **headers: str) -> Reply:
        """GET a raw (already encoded) path; key "app" means this gateway's app key."""
        if key is not None:
            headers["x-api-key"] = self.app_key if key == "app" else key
        url = URL(self.url + raw_path, encoded=True)
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers=headers) as resp,
        ):
            return Reply(resp.status, CIMultiDict(resp.headers), await resp.read())


@dataclass
class CliResult:
    code: int
    out: bytes
    err: str


async def run_cli(
    config: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> CliResult:
    """Run the real `python -m gateway` with `--config`; env replaces PARALLEL_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARALLEL")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        "--config",
        str(config),
        env={**base, **(env or {})},
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return CliResult(proc.returncode, out, without_database_line(err.decode()))


async def eventually(check: Callable[[], bool], within: float = 2.0) -> None:
    """Poll `check` every 10 ms; fail if it does not hold within `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.01)


def unused_port() -> int:
    """A loopback port that was free a moment ago: nothing listens on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def write_config(path: Path, settings: Settings) -> Path:
    """A TOML file naming the same database and upstream as `settings`."""
    path.write_text(
        f'[storage]\ndatabase = "{settings.storage.database}"\n'
        f'[upstream]\nbase_url = "{settings.upstream.base_url}"\n'
    )
    return path


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> FakeUpstream:
    return await FakeUpstream().listen(aiohttp_server)


@pytest.fixture
def make_settings(tmp_path: Path, upstream: FakeUpstream) -> Callable[..., Settings]:
    """Settings for tests: a database in tmp_path, the fake upstream, short backoffs."""

    def make(**sections: dict[str, Any]) -> Settings:
        data: dict[str, dict[str, Any]] = {
            "storage": {"database": str(tmp_path / "gateway.db")},
            "upstream": {
                "base_url": upstream.base_url,
                "connect_timeout": 1.0,
                "timeout": 2.0,
                "deadline": 5.0,
                "backoff_initial": 0.01,
                "backoff_max": 0.05,
            },
        }
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        return settings_from_dict(data)

    return make


class GatewayTestServer(TestServer):
    """A TestServer that runs the app as `serve` does: GatewayRunner, the [server] limits (and
    the hit path, unless `hit_path` is False)."""

    def __init__(
        self, app: web.Application, limits: ServerSettings, *, hit_path: bool = True
    ) -> None:
        super().__init__(app)
        self._limits = limits
        self._hit_path = hit_path

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GatewayRunner(self.app, self._limits, hit_path=self._hit_path, **kwargs)


ServeApp = Callable[[web.Application, ServerSettings], Awaitable[TestServer]]


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Start an app on an ephemeral port the way `serve` does; every one is closed after."""
    servers: list[TestServer] = []

    async def start(app: web.Application, limits: ServerSettings) -> TestServer:
        server = GatewayTestServer(app, limits)
        await server.start_server()
        servers.append(server)
        return server

    yield start
    while servers:
        await servers.pop().close()


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def start_gateway(serve_app: ServeApp, make_settings: Callable[..., Settings]) -> StartGateway:
    async def start(
        settings: Settings | None = None, env: dict[str, str] | None = None, app: str = "app"
    ) -> Gateway:
        settings = settings or make_settings()
        db = await Database.open(settings.storage)
        try:
            key = await create_key(db, app)
        finally:
            await db.close()
        env = {"PARALLEL_API_KEY": TEAM_KEY} if env is None else env
        server = await serve_app(create_app(settings, env=env), settings.server)
        return Gateway(server, settings, key)

    return start


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


@pytest.fixture
async def sdk(gateway: Gateway) -> AsyncIterator[AsyncParallel]:
    """The official SDK pointed at the gateway, without its own retries (counts stay exact)."""
    client = AsyncParallel(api_key=gateway.app_key, base_url=gateway.url, max_retries=0)
    yield client
    await client.close()
