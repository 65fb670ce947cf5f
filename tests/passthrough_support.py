"""Gateways in front of FakeParallel, with every response body an app got kept for key checks."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict
from parallel import AsyncParallel
from yarl import URL

from gateway.config import Settings
from gateway.keys.app_keys import create_key
from gateway.keys.ratelimit import Limit
from gateway.storage.types import ReplayMode
from tests.conftest import Gateway, Reply, StartGateway
from tests.fake_parallel import FakeParallel
from tests.fake_upstream import TEAM_KEY
from tests.fake_upstream import ServerFactory as ServerFactory  # for the test modules
from tests.storage_support import opened_storage

BYPASS = "parallel-gateway; fwd=bypass"
HIT = "parallel-gateway; hit"
MISS = "parallel-gateway; fwd=uri-miss"
STORED = "parallel-gateway; fwd=uri-miss; stored"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
Body = bytes | AsyncIterable[bytes] | None


class WatchedParallel(FakeParallel):
    """FakeParallel that also notes each request as soon as its headers arrive, before its body
    is read (`exchanges` holds only requests that arrived whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[tuple[str, str]] = []  # (method, raw path with query)
        self.app.middlewares.insert(0, self._note_start)

    @web.middleware
    async def _note_start(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.started.append((request.method, request.raw_path))
        return await handler(request)


async def watched_parallel(aiohttp_server: ServerFactory) -> WatchedParallel:
    fake = WatchedParallel()
    await fake.listen(aiohttp_server)
    return fake


class RecordingStream(httpx.AsyncByteStream):
    """A response body passed through unchanged, its bytes appended to `into`."""

    def __init__(self, inner: httpx.AsyncByteStream, into: bytearray) -> None:
        self._inner = inner
        self._into = into

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._into += chunk
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class RecordingTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, keeping every response body (as far as the app read it)."""

    def __init__(self, bodies: list[bytearray]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._bodies = bodies

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        body = bytearray()
        self._bodies.append(body)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=RecordingStream(response.stream, body),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Harness:
    """One gateway in front of one FakeParallel, and app keys by app name."""

    fake: WatchedParallel
    gateway: Gateway
    keys: dict[str, str]
    bodies: list[bytearray] = field(default_factory=list)  # every body an app was sent
    _clients: list[AsyncParallel] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.gateway.settings

    def sdk(self, app: str = "app", max_retries: int = 0) -> AsyncParallel:
        """The official SDK with `app`'s key, pointed at the gateway."""
        client = AsyncParallel(
            api_key=self.keys[app],
            base_url=self.gateway.url,
            max_retries=max_retries,
            http_client=httpx.AsyncClient(transport=RecordingTransport(self.bodies)),
        )
        self._clients.append(client)
        return client

    async def request(
        self,
        method: str,
        raw_path: str,
        *,
        app: str | None = "app",
        data: Body = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One raw aiohttp call to the gateway: the path is sent as written, byte for byte, and
        a redirect is returned, not followed."""
        headers = dict(headers or {})
        if app is not None:
            headers["x-api-key"] = self.keys[app]
        url = URL(self.gateway.url + raw_path, encoded=True)
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, headers=headers, data=data, allow_redirects=False) as resp,
        ):
            reply = Reply(resp.status, CIMultiDict(resp.headers), await resp.read())
        self.bodies.append(bytearray(reply.body))
        return reply

    def sent(self, start: int = 0) -> list[tuple[str, str]]:
        """(method, raw path with query) of every upstream request since the `start`th, after
        checking that each arrived whole."""
        started = self.fake.started[start:]
        assert [(e.method, e.raw_path) for e in self.fake.exchanges[start:]] == started
        return started

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    def check_keys(self) -> None:
        """Upstream saw only the team key, and no app was ever sent it."""
        for exchange in self.fake.exchanges:
            assert exchange.headers.get("x-api-key") == TEAM_KEY, exchange
            assert "authorization" not in exchange.headers, exchange
            for key in self.keys.values():
                assert key not in repr(exchange.headers), exchange
                assert key.encode() not in exchange.body, exchange
        for body in self.bodies:
            assert TEAM_KEY.encode() not in body


Start = Callable[..., Awaitable[Harness]]


@asynccontextmanager
async def harnesses(
    start_gateway: StartGateway, fake: WatchedParallel, make_settings: Callable[..., Settings]
) -> AsyncIterator[Start]:
    """Start gateways in front of `fake`; on the way out, check which keys crossed."""
    started: list[Harness] = []

    async def start(
        settings: Settings | None = None,
        apps: Sequence[str] = ("app",),
        allow: dict[str, list[str]] | None = None,
        upstream: WatchedParallel | None = None,
    ) -> Harness:
        """A gateway with a key for each app (`allow` limits some apps' keys); `upstream` is
        the fake that settings.upstream.base_url names, when it is not the fixture's."""
        settings = settings or make_settings()
        allow = allow or {}
        keys: dict[str, str] = {}
        async with opened_storage(settings.storage) as storage:
            for app in apps[1:]:
                keys[app] = await create_key(storage.app_keys, app, allow.get(app))
        assert apps[0] not in allow, "the first app's key is made by start_gateway: no allowlist"
        gateway = await start_gateway(settings, app=apps[0])
        keys[apps[0]] = gateway.app_key
        harness = Harness(upstream or fake, gateway, keys)
        started.append(harness)
        return harness

    try:
        yield start
    finally:
        for harness in started:
            await harness.close()
    for harness in started:
        harness.check_keys()


def error_of(body: bytes) -> dict[str, Any]:
    """The `error` object of an ErrorResponse body, after checking the shape around it."""
    data = orjson.loads(body)
    assert isinstance(data, dict)
    assert set(data) == {"type", "error"}
    assert data["type"] == "error"
    error = data["error"]
    assert isinstance(error, dict)
    assert set(error) == {"ref_id", "message", "detail"}
    assert isinstance(error["ref_id"], str)
    assert isinstance(error["message"], str)
    return error


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> WatchedParallel:
    """FakeParallel in place of conftest's FakeUpstream: make_settings points at it. A test
    module takes it, with `start`, by importing both (`upstream as upstream`)."""
    return await watched_parallel(aiohttp_server)


@pytest.fixture
async def start(
    start_gateway: StartGateway,
    upstream: WatchedParallel,
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Start]:
    """Start gateways in front of `upstream` (see harnesses)."""
    async with harnesses(start_gateway, upstream, make_settings) as start:
        yield start


async def with_keys(
    start: Start, settings: Settings, modes: dict[str, ReplayMode], **limits: Limit
) -> Harness:
    """A gateway with a key for each app in `modes`, in that replay mode."""
    keys = {}
    async with opened_storage(settings.storage) as storage:
        for app, mode in modes.items():
            keys[app] = await create_key(storage.app_keys, app, limit=limits.get(app), replay=mode)
    gw = await start(settings)
    gw.keys.update(keys)
    return gw
