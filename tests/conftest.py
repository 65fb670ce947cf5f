"""Shared fixtures: a fake upstream, gateways on ephemeral ports, app keys, the official SDK."""

from __future__ import annotations

import asyncio
import json
import socket
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

from gateway.app import create_app
from gateway.config import Settings, settings_from_dict
from gateway.http.internals import fast_path_forced_off
from gateway.http.server import GatewayRunner
from gateway.keys.app_keys import create_key
from gateway.ops.log import merge_call
from tests.cli_support import Result, cli, without_database_line, write_config
from tests.fake_upstream import TEAM_KEY, FakeUpstream
from tests.fake_upstream import ServerFactory as ServerFactory  # for the test modules
from tests.postgres_server import (  # noqa: F401  (fixtures)
    postgres_server,
    postgres_storage,
    postgres_url,
)
from tests.storage_support import opened_storage

# For tests about the fast path itself; every behaviour test runs in both modes.
fast_path_only = pytest.mark.skipif(
    fast_path_forced_off(),
    reason="about the fast path itself, which GATEWAY_FAST_PATH=off turns off",
)


def capture_logs() -> AbstractContextManager[list[EventDict]]:
    """structlog's capture, with the per-request context (app, request_id, route) merged in."""
    return structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, merge_call]
    )


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
        return config_for(Path(self.settings.storage.database).with_suffix(".toml"), self.settings)

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


async def run_cli(
    config: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> Result[bytes]:
    """cli_support's `cli` with `--config`, run off the event loop (a gateway under test may be
    serving on it), stderr less its "Database:" line."""
    done = await asyncio.to_thread(
        cli, *args, "--config", str(config), cwd=config.parent, env=env, stdin=stdin
    )
    return Result(done.code, done.out, without_database_line(done.err))


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


def config_for(path: Path, settings: Settings) -> Path:
    """A TOML file naming the same database and upstream as `settings`."""
    upstream = f"[upstream]\nbase_url = {json.dumps(settings.upstream.base_url)}\n"
    return write_config(path, settings.storage.database, upstream)


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
    """A TestServer that runs the app as `serve` does: GatewayRunner, the app's [server] limits
    (and the hit path, unless `hit_path` is False)."""

    def __init__(self, app: web.Application, *, hit_path: bool = True) -> None:
        super().__init__(app)
        self._hit_path = hit_path

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GatewayRunner(self.app, hit_path=self._hit_path, **kwargs)


ServeApp = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Start an app on an ephemeral port the way `serve` does; every one is closed after."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> TestServer:
        server = GatewayTestServer(app)
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
        async with opened_storage(settings.storage) as storage:
            key = await create_key(storage.app_keys, app)
        env = {"PARALLEL_API_KEY": TEAM_KEY} if env is None else env
        server = await serve_app(create_app(settings, env=env))
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
