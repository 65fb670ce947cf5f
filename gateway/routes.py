"""HTTP handlers: thin, routing on the raw path so %2F never becomes a separator."""

from __future__ import annotations

import orjson
import structlog
from aiohttp import web
from multidict import CIMultiDict

from .errors import GatewayError, InvalidRunIdError, MethodNotAllowedError, NotFoundError
from .policy import (
    CACHE_HIT,
    cache_status,
    is_valid_run_id,
    match_input_path,
    unconsulted_status,
)
from .state import APP_NAME, CACHE, KEYRING, REQUEST_ID, UPSTREAM

JSON = "application/json"
HIT_HEADERS = {"Cache-Status": CACHE_HIT}


async def handle(request: web.Request) -> web.Response:
    """Every path but /healthz: route on the raw path, then authenticate."""
    raw_path = request.raw_path.partition("?")[0]
    run_id = match_input_path(raw_path)
    if run_id is None:
        request[APP_NAME] = request.app[KEYRING].authenticate(request.headers)
        raise NotFoundError(f"No such route on this gateway: {request.method} {raw_path[:200]}")
    try:
        return await run_input(request, run_id)
    except GatewayError as e:
        if "Cache-Status" in e.headers:
            raise
        # Every answer on this route carries Cache-Status (RFC 9211), refusals included.
        raise e.with_headers({"Cache-Status": unconsulted_status(e.reason)}) from None


async def run_input(request: web.Request, run_id: str) -> web.Response:
    """GET /v1/tasks/runs/{run_id}/input: from memory, else SQLite, else upstream."""
    app = request.app
    request[APP_NAME] = app[KEYRING].authenticate(request.headers)
    if request.method != "GET":
        raise MethodNotAllowedError(f"{request.method} is not allowed here; use GET.")
    if not is_valid_run_id(run_id):
        raise InvalidRunIdError(
            "Request validation error: run_id must be 1 to 128 characters from "
            "A-Z, a-z, 0-9, '_' and '-'."
        )
    cache = app[CACHE]
    # The hot path: a memory hit touches neither SQLite nor upstream.
    body = cache.memory.get(run_id)
    if body is not None:
        return web.Response(body=body, content_type=JSON, headers=HIT_HEADERS)
    collapsed = cache.in_flight(run_id)
    try:
        with structlog.contextvars.bound_contextvars(
            request_id=request[REQUEST_ID], app=request[APP_NAME], run_id=run_id
        ):
            lookup = await cache.lookup(run_id)
    except GatewayError as e:
        status = cache_status(stored=False, collapsed=collapsed, detail=e.reason)
        raise e.with_headers({"Cache-Status": status}) from None
    # Upstream's own Content-Type where it sent one (errors, unstorable bodies), else JSON.
    headers = CIMultiDict(lookup.headers)
    headers.setdefault("Content-Type", JSON)
    headers["Cache-Status"] = lookup.cache_status(collapsed)
    return web.Response(status=lookup.status, body=lookup.body, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """Liveness, with no key needed: the status, the mode, and whether a team key is set."""
    upstream = request.app[UPSTREAM]
    body = {
        "status": "ok",
        "mode": "offline" if upstream.offline else "online",
        "upstream_configured": upstream.configured,
    }
    return web.Response(body=orjson.dumps(body), content_type=JSON)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_route("*", "/{path:.*}", handle)
