"""The servers behind the pass-through benchmark: a fake Parallel and a bare aiohttp proxy.

Each runs in its own process (`python -m bench.passthrough_bench --serve upstream|proxy`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.http.fdlimit import raise_open_files_limit
from gateway.http.server import new_event_loop

HOST = "127.0.0.1"
RUN = b'{"run_id":"trun_0123456789abcdef0123456789abcdef","status":"queued","is_active":true}'
EVENT = b'event: task_run.state\ndata: {"type":"task_run.state"}\n\n'
JSON = "application/json"


class HeldCalls:
    """Long polls and event streams held open until the caller goes away, counted."""

    def __init__(self) -> None:
        self.open = 0

    async def result(self, request: web.Request) -> web.StreamResponse:
        self.open += 1
        try:
            await asyncio.Event().wait()  # until the gateway closes the connection
        finally:
            self.open -= 1
        raise AssertionError("unreachable")

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(EVENT)
        self.open += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.open -= 1
        return response

    async def count(self, request: web.Request) -> web.Response:
        return web.json_response({"open": self.open})


def upstream_app() -> web.Application:
    """Answers at once: a run for GET, a created run (202) for POST; holds /result and /events."""

    async def get_run(request: web.Request) -> web.Response:
        return web.Response(body=RUN, content_type=JSON)

    async def create_run(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=RUN, content_type=JSON)

    held = HeldCalls()
    app = web.Application()
    app.router.add_get("/v1/tasks/runs/{run_id}", get_run)
    app.router.add_post("/v1/tasks/runs", create_run)
    app.router.add_get("/v1/tasks/runs/{run_id}/result", held.result)
    app.router.add_get("/v1/tasks/runs/{run_id}/events", held.events)
    app.router.add_get("/held", held.count)
    return app


def proxy_app(upstream: str, team_key: str) -> web.Application:
    """The floor: one handler, one ClientSession, no checks; the body read whole each way."""
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(upstream, connector=connector) as client:
            app[session_key] = client
            yield

    async def forward(request: web.Request) -> web.Response:
        headers = {"x-api-key": team_key, "content-type": request.headers.get("content-type", "")}
        body = await request.read() if request.body_exists else None
        async with request.app[session_key].request(
            request.method, request.raw_path, headers=headers, data=body
        ) as resp:
            return web.Response(
                status=resp.status, body=await resp.read(), content_type=resp.content_type
            )

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{path:.*}", forward)
    return app


def serve(role: str, port: int, *, uvloop: bool, upstream: str = "", team_key: str = "") -> None:
    raise_open_files_limit()  # the memory rows hold thousands of calls open
    app = upstream_app() if role == "upstream" else proxy_app(upstream, team_key)
    web.run_app(
        app,
        host=HOST,
        port=port,
        access_log=None,
        print=None,
        handler_cancellation=True,
        loop=new_event_loop(uvloop),
    )
