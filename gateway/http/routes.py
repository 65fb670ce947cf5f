"""HTTP handlers: thin, routing on the raw path so %2F never becomes a separator."""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog
from aiohttp import web
from multidict import CIMultiDict

from ..billing.calls import RUN_INPUT
from ..cache.policy import (
    CACHE_BYPASS,
    CACHE_HIT,
    cache_status,
    match_input_path,
    unconsulted_status,
)
from ..errors import (
    AuthenticationError,
    DrainingError,
    GatewayError,
    RunNotFoundError,
)
from ..ops.endpoints import add_ops_routes
from ..state import (
    APP_NAME,
    CACHE,
    DRAINING,
    KEYRING,
    METRICS,
    OPEN_FOR,
    OWNERSHIP,
    REQUEST_ID,
    ROUTE,
    SETTINGS,
    TALLY,
    UPSTREAM_WAIT,
)
from .catalog import CREATE_ROUTE, INPUT_ROUTE, known_route, resolve
from .final_route import answer_kind, answer_or_forward
from .forward import forward
from .input_route import check_input
from .replay_route import create_run

JSON = "application/json"
HIT_HEADERS = {"Cache-Status": CACHE_HIT}


async def handle(request: web.Request) -> web.StreamResponse:
    """Every path but /healthz: route on the raw path, authenticate, then serve or forward."""
    try:
        return await _serve(request)
    finally:
        app_name = request.get(OPEN_FOR)
        if app_name is not None:  # a stream is open until here, not only until its head
            request.app[KEYRING].close_call(app_name)


async def _serve(request: web.Request) -> web.StreamResponse:
    if request.app[DRAINING][0]:
        raise DrainingError("The gateway is shutting down; retry on another instance.")
    raw_path = request.raw_path.partition("?")[0]
    run_id = match_input_path(raw_path) if request.method == "GET" else None
    if run_id is not None:
        request[ROUTE] = INPUT_ROUTE
        try:
            return await run_input(request, run_id, raw_path)
        except GatewayError as e:
            if "Cache-Status" in e.headers:
                raise
            # Every answer on this route carries Cache-Status (RFC 9211), refusals included.
            raise e.with_headers({"Cache-Status": unconsulted_status(e.reason)}) from None
    keyring = request.app[KEYRING]
    try:
        app_name = _authenticate(request)
        keyring.authorize(app_name, request.method, raw_path)
    except GatewayError:
        # Refused before the route is resolved: its access line still names a known route.
        route_name = known_route(request.method, raw_path)
        if route_name is not None:
            request[ROUTE] = route_name
        raise
    app_mode = _app_mode(request)
    strict = app_mode or keyring.restricted(app_name)
    route = resolve(request.method, raw_path, request.headers.get("accept", ""), strict=strict)
    request[ROUTE] = route.name
    try:
        _take_turn(request, app_name)
        if route.owned and app_mode:
            await _check_isolation(request, app_name, route.owned)
        if route.name == CREATE_ROUTE:
            return await create_run(request, route, app_name)
        kind = answer_kind(route)
        if kind is not None:
            return await answer_or_forward(request, route, kind)
        return await forward(request, route)
    except GatewayError as e:
        if "Cache-Status" in e.headers:  # a cacheable route's miss says so itself
            raise
        # A forwarded route's every answer says the cache was not used (RFC 9211 2.2), and why
        # the gateway answered itself (2.8).
        raise e.with_headers({"Cache-Status": f"{CACHE_BYPASS}; detail={e.reason}"}) from None


def _authenticate(request: web.Request) -> str:
    """The request's app (KeyRing.authenticate). A known key that no longer works is refused
    with its app named too, so that the refusal's log lines say which app sent it."""
    try:
        app_name = request.app[KEYRING].authenticate(request.headers)
    except AuthenticationError as e:
        if e.app is not None:
            request[APP_NAME] = e.app
        raise
    request[APP_NAME] = app_name
    return app_name


def _take_turn(request: web.Request, app_name: str) -> None:
    """Once no other refusal applies: the app's open calls and rate limit (429), the call then
    counted as open until `handle` ends."""
    request.app[KEYRING].take_turn(app_name, hold=True)
    request[OPEN_FOR] = app_name


def _app_mode(request: web.Request) -> bool:
    """Whether calls naming a run must pass the isolation check (isolation.mode = "app")."""
    return request.app[SETTINGS].isolation.mode == "app"


async def _check_isolation(request: web.Request, app_name: str, owned: Sequence[str]) -> None:
    """Under isolation mode "app", another app's run is answered as if it did not exist."""
    if not await request.app[OWNERSHIP].may_read(app_name, owned):
        raise RunNotFoundError("Run id not found")


async def run_input(request: web.Request, run_id: str, raw_path: str) -> web.Response:
    """GET /v1/tasks/runs/{run_id}/input: from memory, else SQLite, else upstream."""
    app = request.app
    keyring = app[KEYRING]
    app_name = _authenticate(request)
    check_input(keyring, app_name, raw_path, run_id)
    _take_turn(request, app_name)
    if _app_mode(request):
        await _check_isolation(request, app_name, (run_id,))
    cache = app[CACHE]
    # The hot path: a memory hit touches neither SQLite nor upstream.
    body = cache.memory.get(run_id)
    if body is not None:
        app[TALLY].count_saved(app_name, RUN_INPUT)
        return web.Response(body=body, content_type=JSON, headers=HIT_HEADERS)
    collapsed = cache.in_flight(run_id)
    if collapsed:
        app[METRICS].singleflight_waits.inc()
    waiting = time.perf_counter()
    try:
        with structlog.contextvars.bound_contextvars(
            request_id=request[REQUEST_ID], app=app_name, run_id=run_id
        ):
            lookup = await cache.lookup(run_id)
    except GatewayError as e:
        status = cache_status(stored=False, collapsed=collapsed, detail=e.reason)
        raise e.with_headers({"Cache-Status": status}) from None
    finally:
        request[UPSTREAM_WAIT] = time.perf_counter() - waiting
    if not lookup.fetched:
        app[TALLY].count_saved(app_name, RUN_INPUT)
    # Upstream's own Content-Type where it sent one (errors, unstorable bodies), else JSON.
    headers = CIMultiDict(lookup.headers)
    headers.setdefault("Content-Type", JSON)
    headers["Cache-Status"] = lookup.cache_status(collapsed)
    return web.Response(status=lookup.status, body=lookup.body, headers=headers)


def add_routes(app: web.Application) -> None:
    add_ops_routes(app)
    # Every path, newlines included: aiohttp matches the decoded path, where %0A is a newline,
    # which `.*` does not match (the request would get aiohttp's bare 404, not the gateway's).
    app.router.add_route("*", "/{path:[\\s\\S]*}", handle)
