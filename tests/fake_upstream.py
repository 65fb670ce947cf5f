"""A fake Parallel API: a real aiohttp app that records requests and misbehaves on demand."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

ServerFactory = Callable[..., Awaitable[TestServer]]

TEAM_KEY = "team-secret-key-0123456789abcdef"
INPUT_PREFIX = "/v1/tasks/runs/"


@dataclass(frozen=True)
class Recorded:
    method: str
    raw_path: str
    headers: dict[str, str]


@dataclass
class Scripted:
    """One canned answer, used once, before the fake's normal behaviour."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def error_json(message: str, ref_id: str | None = None) -> bytes:
    ref_id = ref_id or str(uuid.uuid4())
    return orjson.dumps(
        {"type": "error", "error": {"ref_id": ref_id, "message": message, "detail": None}}
    )


def task_run_input(n: int = 0, **extra: object) -> dict[str, object]:
    return {
        "processor": "core",
        "metadata": {"my_key": f"value-{n}"},
        "task_spec": {"output_schema": {"type": "text", "description": "GDP"}},
        "input": {"country": "France", "year": 2023 + n},
        **extra,
    }


class FakeUpstream:
    """Serves GET /v1/tasks/runs/{id}/input from `inputs`, after any `script`ed answers."""

    def __init__(self) -> None:
        self.inputs: dict[str, bytes] = {}
        self.requests: list[Recorded] = []
        self.script: deque[Scripted] = deque()
        self.delay = 0.0
        self.base_url = ""  # set once the server listens
        self.server: TestServer | None = None
        self.on_request: Callable[[], None] = lambda: None
        self.last_error = b""  # the body of the last 404 it made
        self.team_keys = {TEAM_KEY}  # the keys it accepts
        self.app = web.Application()
        self.app.router.add_route("*", "/{path:.*}", self.handle)

    async def listen(self, aiohttp_server: ServerFactory, **server: Any) -> Self:
        """Serve on an ephemeral port (pass pytest-aiohttp's `aiohttp_server`, and any server
        options, such as auto_decompress)."""
        self.server = await aiohttp_server(self.app, **server)
        self.base_url = str(self.server.make_url("")).rstrip("/")
        return self

    def add(self, run_id: str, body: dict[str, object] | bytes) -> bytes:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        self.inputs[run_id] = raw
        return raw

    async def stop(self) -> None:
        """Stop listening: from now on, connections to base_url are refused."""
        if self.server is not None:
            await self.server.close()

    def count(self, run_id: str | None = None) -> int:
        if run_id is None:
            return len(self.requests)
        path = f"{INPUT_PREFIX}{run_id}/input"
        return sum(1 for r in self.requests if r.raw_path == path)

    async def intercept(self, request: web.Request) -> web.Response | None:
        """Record the request; answer it if a script, the delay or a bad key says so."""
        self.requests.append(Recorded(request.method, request.raw_path, dict(request.headers)))
        self.on_request()
        if self.script:
            answer = self.script.popleft()
            await asyncio.sleep(answer.delay)
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        await asyncio.sleep(self.delay)
        if request.headers.get("x-api-key") not in self.team_keys:
            return _json(401, error_json("Unauthorized: invalid or missing credentials"))
        return None

    async def handle(self, request: web.Request) -> web.Response:
        intercepted = await self.intercept(request)
        if intercepted is not None:
            return intercepted
        path = request.raw_path
        if request.method == "GET" and path.startswith(INPUT_PREFIX) and path.endswith("/input"):
            body = self.inputs.get(path[len(INPUT_PREFIX) : -len("/input")])
            if body is not None:
                return _json(200, body)
        self.last_error = error_json("Run id not found")
        return _json(404, self.last_error)


def _json(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")
