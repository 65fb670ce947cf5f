"""Per-request observation: request id, errors in the ErrorResponse shape, the access line."""

from __future__ import annotations

import itertools
import secrets
import time
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..cache.policy import CACHE_NAME
from ..errors import DO_NOT_RETRY, GatewayError, error_body
from ..ops.log import log_info
from ..ops.metrics import Metrics
from ..state import APP_NAME, METRICS, REQUEST_ID, ROUTE, UPSTREAM_WAIT, LiveSettings
from ..upstream.retry import IDEMPOTENT_METHODS

log = structlog.get_logger("gateway.access")
CACHE_PREFIX = CACHE_NAME + "; "

# Request ids: a random per-process prefix and a counter, unique and cheap on the hot path.
_PROCESS_PREFIX = secrets.token_hex(4)
_counter = itertools.count(1)


def next_request_id() -> str:
    return f"{_PROCESS_PREFIX}-{next(_counter):x}"


def gateway_error_response(error: GatewayError, request: web.Request) -> web.Response:
    request.app[METRICS].errors.labels(error.reason).inc()
    log.warning(
        "gateway.error",
        status=error.status,
        reason=error.reason,
        ref_id=error.ref_id,
        message=error.message,
        request_id=request[REQUEST_ID],
        app=request.get(APP_NAME),
    )
    return web.Response(
        status=error.status,
        body=error.body(),
        content_type="application/json",
        headers=error.headers,
    )


def http_exception_response(exc: web.HTTPException, request: web.Request) -> web.Response:
    """aiohttp's own errors (such as a body over client_max_size), in the ErrorResponse shape."""
    ref_id = str(uuid.uuid4())
    request.app[METRICS].errors.labels(f"http-{exc.status}").inc()
    log.warning(
        "gateway.error",
        status=exc.status,
        reason=exc.reason,
        ref_id=ref_id,
        request_id=request[REQUEST_ID],
    )
    return web.Response(
        status=exc.status, body=error_body(exc.reason, ref_id), content_type="application/json"
    )


def create_observer(live: LiveSettings, metrics: Metrics) -> Middleware:
    """Middleware that gives each request an id, turns errors into ErrorResponses, counts it,
    and writes its access line (unless log.access_log is off)."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request[REQUEST_ID] = next_request_id()
        try:
            response: web.StreamResponse = await handler(request)
        except GatewayError as e:
            response = gateway_error_response(e, request)
        except web.HTTPException as e:
            response = http_exception_response(e, request)
        except Exception:
            response = internal_error_response(request)
        if not response.prepared:  # a stream sets it itself, before its headers go out
            response.headers["x-gateway-request-id"] = request_id
        duration = time.perf_counter() - started
        cache = response.headers.get("Cache-Status")
        outcome = cache.removeprefix(CACHE_PREFIX) if cache else ""
        metrics.observe_request(
            request.get(ROUTE, "other"),
            response.status,
            request.get(APP_NAME, ""),
            outcome,
            duration - request.get(UPSTREAM_WAIT, 0.0),
        )
        if live.current.log.access_log:
            access_line(
                request.method,
                request.raw_path,
                request.get(ROUTE),
                response.status,
                request.get(APP_NAME),
                outcome,
                duration,
                request_id,
            )
        return response

    return observe


def internal_error_response(request: web.Request) -> web.Response:
    ref_id = str(uuid.uuid4())
    request.app[METRICS].errors.labels("internal").inc()
    log.exception("gateway.internal_error", ref_id=ref_id, request_id=request[REQUEST_ID])
    if request.method in IDEMPOTENT_METHODS:
        message, headers = "Internal gateway error", None
    else:
        # It may have come after Parallel's answer: the SDK must not send a create again.
        message = (
            "Internal gateway error. Parallel API may have received the request; check before"
            " repeating it."
        )
        headers = DO_NOT_RETRY
    body = error_body(message, ref_id)
    return web.Response(status=500, body=body, content_type="application/json", headers=headers)


def access_line(
    method: str,
    path: str,
    route: str | None,
    status: int,
    app: str | None,
    cache: str,
    duration: float,
    request_id: str,
) -> None:
    """Write one request's access line."""
    fields = {
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "app": app,
        "cache": cache or None,
        "duration_ms": round(duration * 1000, 3),
        "request_id": request_id,
    }
    log_info(log, "access", fields)
