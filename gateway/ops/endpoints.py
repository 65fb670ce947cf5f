"""Operations endpoints: /healthz (liveness), /readyz (readiness), /metrics (Prometheus)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import AuthenticationError
from ..state import CACHE, DRAINING, METRICS, SETTINGS, STORAGE, STORAGE_HEALTH, UPSTREAM
from ..storage.types import StoreError
from .activity import totals_of

JSON = "application/json"
log = structlog.get_logger("gateway.ops")


async def healthz(request: web.Request) -> web.Response:
    """Liveness, with no key needed: the status, the mode, and whether a team key is set."""
    upstream = request.app[UPSTREAM]
    body = {
        "status": "ok",
        "mode": "offline" if upstream.offline else "online",
        "upstream_configured": upstream.configured,
    }
    return web.Response(body=orjson.dumps(body), content_type=JSON)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers, migrations are applied, the store takes writes, and
    the gateway is not draining. The store's faults are reported by kind.

    The last upstream contact is reported but does not decide readiness: cached runs are still
    served while Parallel is unreachable.
    """
    ready, body = await readiness(request.app)
    return web.Response(status=200 if ready else 503, body=orjson.dumps(body), content_type=JSON)


async def readiness(app: web.Application) -> tuple[bool, dict[str, object]]:
    """Whether the gateway is ready, and the checks that say so (/readyz, and status)."""
    checks: dict[str, object] = {"draining": app[DRAINING][0]}
    health = app[STORAGE_HEALTH]
    static = False
    try:
        missing = await app[STORAGE].status.missing_migrations()
        checks["database"] = "ok"
        checks["migrations"] = "ok" if not missing else f"missing {missing}"
        health.answered()
    except StoreError as e:
        checks["database"] = f"error: {e.kind}"
        checks["migrations"] = "unknown"
        # A shared store out of reach is every replica's outage: serving statically (memory
        # hits, pass-through, misses unstored) beats every replica leaving the balancer.
        static = e.kind == "cannot-open" and health.shared
        if static:
            health.failed(e, "read")
    except Exception as e:  # an unreadable database is exactly what this reports
        checks["database"] = f"error: {type(e).__name__}"
        checks["migrations"] = "unknown"
    checks["storage"] = health.report()
    if static:
        checks["serving"] = "static"
    contact = app[UPSTREAM].last_contact
    checks["upstream"] = {"last_contact": "never"} if contact is None else contact.report()
    ready = (
        (static or (checks["database"] == "ok" and checks["migrations"] == "ok"))
        and health.writable
        and not checks["draining"]
    )
    return ready, {"status": "ready" if ready else "not-ready", **checks}


def _refused(app: web.Application, request: web.Request) -> web.Response | None:
    """401 unless the request carries `metrics.token` (when one is set)."""
    token = app[SETTINGS].metrics.token
    if token and not hmac.compare_digest(
        request.headers.get("authorization", "").encode(), f"Bearer {token}".encode()
    ):
        error = AuthenticationError(
            f"Unauthorized: {request.path} needs Authorization: Bearer <token>."
        )
        log.warning("gateway.error", status=401, reason=error.reason, ref_id=error.ref_id)
        return web.Response(status=401, body=error.body(), content_type=JSON)
    return None


async def render_status(app: web.Application, request: web.Request) -> web.Response:
    """What `parallel-gateway status` shows, as JSON: requests per app over the last minutes,
    readiness and upstream's state, and the last upstream errors with their ref_ids."""
    refused = _refused(app, request)
    if refused is not None:
        return refused
    _, ready = await readiness(app)
    activity = app[UPSTREAM].activity.summary(totals_of(app[METRICS].request_samples()))
    return web.Response(body=orjson.dumps({"ready": ready, **activity}), content_type=JSON)


async def render_metrics(app: web.Application, request: web.Request) -> web.Response:
    """Prometheus exposition of `app`'s metrics, behind `metrics.token` when one is set."""
    refused = _refused(app, request)
    if refused is not None:
        return refused
    registry = app[METRICS]
    record_memory_layer(app)
    try:
        stats = await app[CACHE].store_stats()
    except StoreError as e:  # counted in gateway_storage_errors_total; the rest still shows
        app[STORAGE_HEALTH].failed(e, "read")
    else:
        registry.cache_entries.set(stats.entries)
        registry.cache_bytes.set(stats.bytes)
    return web.Response(body=registry.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def record_memory_layer(app: web.Application) -> None:
    """Set this worker's memory-layer gauges (at each scrape, and every sync interval)."""
    memory = app[CACHE].memory
    app[METRICS].memory_entries.set(len(memory))
    app[METRICS].memory_bytes.set(memory.bytes)


def add_ops_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    if not app[SETTINGS].metrics.port:
        app.router.add_get("/metrics", _metrics_here, allow_head=False)
        app.router.add_get("/status", _status_here, allow_head=False)


async def _metrics_here(request: web.Request) -> web.Response:
    return await render_metrics(request.app, request)


async def _status_here(request: web.Request) -> web.Response:
    return await render_status(request.app, request)


async def serve_metrics_apart(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: with metrics.port set, /metrics is served there and not on the main port."""
    settings = app[SETTINGS]
    if not settings.metrics.port:
        yield
        return

    async def metrics_of_main_app(request: web.Request) -> web.Response:
        return await render_metrics(app, request)

    async def status_of_main_app(request: web.Request) -> web.Response:
        return await render_status(app, request)

    side = web.Application()
    side.router.add_get("/metrics", metrics_of_main_app, allow_head=False)
    side.router.add_get("/status", status_of_main_app, allow_head=False)
    runner = web.AppRunner(side, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.metrics.port)
    await site.start()
    log.info("metrics.listening", host=settings.server.host, port=settings.metrics.port)
    yield
    await runner.cleanup()
